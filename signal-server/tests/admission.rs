//! Admission against a running server: viewer tokens (valid, expired,
//! forged, wrong channel, missing), open and unknown channels, seed
//! credentials. Each refusal carries its reason, and nothing else changes:
//! the honest clients connected alongside see nothing and keep working.
mod common;

use common::*;
use shoal_signal::auth::{mint_seed_token, mint_viewer_token, unix_now};
use shoal_signal::{AuthConfig, Config, Key, OpenChannels};
use swarm_proto::auth::ViewerClaims;
use swarm_proto::signal::{
    ClientMsg, LiveChannelInfo, RefuseReason, Role, SeedInfo, ServerMsg, MAX_HTTP_BASE_LEN,
    MAX_NAME_LEN, MAX_SEEDS_PER_JOIN, MAX_SIGNAL_FRAME,
};

fn config() -> Config {
    Config {
        auth: AuthConfig {
            viewer_key: Some(Key::new(VIEWER_KEY)),
            seed_key: Some(Key::new(SEED_KEY)),
            open_channels: OpenChannels::from_list(&["free".into()]),
        },
        allow_unknown_channels: false,
        ..test_config()
    }
}

fn token(key: &[u8], channels: &[&str], exp: u64) -> String {
    mint_viewer_token(
        &Key::new(key),
        &ViewerClaims {
            sub: "alice".into(),
            exp,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            group: Some("gold".into()),
        },
    )
}

fn seed_info(id: &str, contents: &[&str]) -> SeedInfo {
    SeedInfo {
        seed_id: id.into(),
        http_base: "http://127.0.0.1:9".into(),
        contents: contents.iter().map(|c| c.to_string()).collect(),
        capacity: 10,
        live: Vec::new(),
    }
}

fn refusal(m: &ServerMsg) -> (Option<String>, RefuseReason) {
    match m {
        ServerMsg::Refused { swarm, reason, .. } => (swarm.clone(), *reason),
        other => panic!("expected refused, got {other:?}"),
    }
}

async fn seeds_listed(addr: std::net::SocketAddr) -> Vec<serde_json::Value> {
    let (status, _, body) = http_get(addr, "/api/seeds").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["seeds"].as_array().unwrap().clone()
}

#[tokio::test]
async fn viewer_tokens_admit_and_refuse_with_reasons() {
    let addr = start(config()).await;
    let _seed = Client::seed(addr, seed_info("s1", &["news", "free", "sport"])).await;
    let now = unix_now();

    // The honest viewer: a valid token for news.
    let (mut honest, first) =
        Client::viewer_with_token(addr, Some(token(VIEWER_KEY, &["news"], now + 600))).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    honest.join("news").await;

    // Refused at hello, with the reason, then closed.
    for (bad, want) in [
        (token(VIEWER_KEY, &["news"], now - 1), RefuseReason::Expired),
        (
            token(b"someone-elses-key-someone-elses-", &["news"], now + 600),
            RefuseReason::BadSignature,
        ),
        ("garbage".to_owned(), RefuseReason::BadToken),
        (
            mint_seed_token(&Key::new(VIEWER_KEY), "s1", None),
            RefuseReason::BadToken,
        ),
    ] {
        let (mut c, first) = Client::viewer_with_token(addr, Some(bad)).await;
        assert_eq!(refusal(&first), (None, want));
        assert_eq!(c.expect_closed().await, Some(1008));
    }

    // Refused at join (the connection stays): wrong channel, no token,
    // unknown channel.
    let (mut wrong, _) =
        Client::viewer_with_token(addr, Some(token(VIEWER_KEY, &["news"], now + 600))).await;
    wrong
        .send(&ClientMsg::Join {
            swarm: "sport".into(),
        })
        .await;
    assert_eq!(
        refusal(&wrong.recv().await),
        (Some("sport".into()), RefuseReason::NotEntitled)
    );
    wrong.ping().await;
    let mut anon = Client::viewer(addr).await;
    anon.send(&ClientMsg::Join {
        swarm: "news".into(),
    })
    .await;
    assert_eq!(
        refusal(&anon.recv().await),
        (Some("news".into()), RefuseReason::TokenRequired)
    );
    anon.send(&ClientMsg::Join {
        swarm: "nowhere".into(),
    })
    .await;
    assert_eq!(
        refusal(&anon.recv().await),
        (Some("nowhere".into()), RefuseReason::UnknownChannel)
    );
    // An open channel needs no token; "*" allows everything.
    anon.join("free").await;
    let (mut all, _) =
        Client::viewer_with_token(addr, Some(token(VIEWER_KEY, &["*"], now + 600))).await;
    all.join("sport").await;

    // A refused viewer is not a member: relaying to it fails, and the honest
    // viewer saw nothing of the refusals.
    honest
        .send(&ClientMsg::Relay {
            swarm: "news".into(),
            to: wrong.peer_id.clone(),
            signal: swarm_proto::signal::RtcSignal::Offer { sdp: "v=0".into() },
        })
        .await;
    honest
        .expect_error(swarm_proto::signal::ErrorCode::UnknownPeer)
        .await;
    honest.ping().await;
    let (_, _, body) = http_get(addr, "/api/swarms").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let news = v["swarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["swarm"] == "news")
        .unwrap();
    // The seed and the honest viewer only.
    assert_eq!(news["peers"].as_array().unwrap().len(), 2, "{news}");
}

#[tokio::test]
async fn seeds_need_their_own_credential() {
    let addr = start(config()).await;
    let mut real = Client::seed(addr, seed_info("s1", &["news"])).await;
    let mut viewer = Client::viewer(addr).await;
    viewer.join_open_check(addr).await;

    let hello = |token: Option<String>, id: &str| ClientMsg::Hello {
        role: Role::Seed,
        token,
        seed: Some(seed_info(id, &["news", "evil"])),
    };
    for msg in [
        // No credential.
        hello(None, "s1"),
        // Someone else's credential for the real seed's id.
        hello(Some(mint_seed_token(&Key::new(SEED_KEY), "s2", None)), "s1"),
        // A forged one.
        hello(
            Some(mint_seed_token(
                &Key::new(b"not-the-operators-key-0123456789"),
                "s1",
                None,
            )),
            "s1",
        ),
        // A viewer token.
        hello(Some(token(SEED_KEY, &["*"], unix_now() + 60)), "alice"),
    ] {
        let mut c = Client::connect(addr).await;
        c.send(&msg).await;
        assert_eq!(
            refusal(&c.recv().await),
            (None, RefuseReason::SeedCredential)
        );
        assert_eq!(c.expect_closed().await, Some(1008));
    }
    // The real seed was not displaced and still works; the fake contents
    // are not channels.
    real.ping().await;
    let seeds = seeds_listed(addr).await;
    assert_eq!(seeds.len(), 1);
    assert_eq!(seeds[0]["peer_id"], real.peer_id.as_str());
    viewer.ping().await;

    // A server without a seed key takes no seeds at all.
    let open = start(Config {
        auth: AuthConfig::default(),
        ..test_config()
    })
    .await;
    let mut c = Client::connect(open).await;
    c.send(&hello(Some(seed_token("s1")), "s1")).await;
    assert_eq!(
        refusal(&c.recv().await),
        (None, RefuseReason::SeedCredential)
    );
}

impl Client {
    /// Joins the open channel `free`... which no seed offers here: refused
    /// as unknown, the connection stays usable.
    async fn join_open_check(&mut self, _addr: std::net::SocketAddr) {
        self.send(&ClientMsg::Join {
            swarm: "free".into(),
        })
        .await;
        assert_eq!(
            refusal(&self.recv().await),
            (Some("free".into()), RefuseReason::UnknownChannel)
        );
        self.ping().await;
    }
}

#[tokio::test]
async fn joined_stays_within_the_viewers_frame_limit() {
    let addr = start(Config {
        auth: AuthConfig {
            seed_key: Some(Key::new(SEED_KEY)),
            ..AuthConfig::default()
        },
        ..test_config()
    })
    .await;
    // 20 seeds with the longest fields a hello frame can carry, all offering
    // the channel.
    let name = |i: usize, j: usize| format!("{i:02}-{j:04}-{}", "c".repeat(MAX_NAME_LEN - 8));
    let mut seeds = Vec::new();
    for i in 0..20 {
        let mut contents = vec!["news".to_owned()];
        contents.extend((0..250).map(|j| name(i, j)));
        // A live channel too: its key and the manifest address travel in
        // `joined` as well.
        let mut live: Vec<LiveChannelInfo> = (0..80)
            .map(|j| LiveChannelInfo {
                channel: name(i, j),
                public_key: "f".repeat(64),
            })
            .collect();
        live.push(LiveChannelInfo {
            channel: "news".into(),
            public_key: format!("{i:02}{}", "a".repeat(62)),
        });
        let info = SeedInfo {
            seed_id: format!("{i:02}{}", "s".repeat(MAX_NAME_LEN - 2)),
            http_base: format!("http://{}", "h".repeat(MAX_HTTP_BASE_LEN - 7)),
            contents,
            capacity: u32::MAX,
            live,
        };
        let hello = ClientMsg::Hello {
            role: Role::Seed,
            token: Some(seed_token(&info.seed_id)),
            seed: Some(info),
        };
        assert!(hello.encode().len() <= MAX_SIGNAL_FRAME);
        let mut c = Client::connect(addr).await;
        c.send(&hello).await;
        assert!(matches!(c.recv().await, ServerMsg::Welcome { .. }));
        seeds.push(c);
    }
    let mut v = Client::viewer(addr).await;
    v.send(&ClientMsg::Join {
        swarm: "news".into(),
    })
    .await;
    let frame = loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut v.ws))
            .await
            .unwrap()
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => break t,
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert!(
        frame.len() <= MAX_SIGNAL_FRAME,
        "joined is {} bytes",
        frame.len()
    );
    match ServerMsg::decode(frame.as_str()).unwrap() {
        ServerMsg::Joined {
            seeds,
            peers,
            manifest,
            ..
        } => {
            assert_eq!(seeds.len(), MAX_SEEDS_PER_JOIN);
            assert!(seeds.iter().all(|s| s.contents == ["news"]));
            assert!(seeds
                .iter()
                .all(|s| s.live.len() == 1 && s.live[0].channel == "news"));
            assert_eq!(
                manifest.as_deref(),
                Some(format!("{}/live/news/live.json", seeds[0].http_base).as_str())
            );
            // The first 8 seeds as peers too (no viewer is there).
            assert_eq!(peers.len(), MAX_SEEDS_PER_JOIN);
            assert!(peers.iter().all(|p| p.is_seed));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn joined_names_the_channels_manifest_at_a_seed() {
    let addr = start(test_config()).await;
    let mut info = seed_info("s1", &["movie", "news"]);
    info.http_base = "http://127.0.0.1:8081/".into();
    info.live = vec![LiveChannelInfo {
        channel: "news".into(),
        public_key: "ab".repeat(32),
    }];
    let _seed = Client::seed(addr, info).await;
    let mut v = Client::viewer(addr).await;
    for (swarm, want) in [
        (
            "movie",
            Some("http://127.0.0.1:8081/vod/movie/manifest.json"),
        ),
        ("news", Some("http://127.0.0.1:8081/live/news/live.json")),
        // No seed offers it (the test config lets viewers create swarms).
        ("nobody", None),
    ] {
        match v.join(swarm).await {
            ServerMsg::Joined {
                manifest, seeds, ..
            } => {
                assert_eq!(manifest.as_deref(), want, "{swarm}");
                assert_eq!(seeds.len(), usize::from(want.is_some()));
            }
            other => panic!("{other:?}"),
        }
    }
}
