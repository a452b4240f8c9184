//! The admin API's channel commands reach a registered seed, which answers
//! them; the seed registry follows its new contents.

mod common;

use common::*;
use shoal_signal::{Config, Key};
use swarm_proto::signal::{ClientMsg, LiveChannelInfo, SeedCommand, ServerMsg};
use tokio::time::timeout;

const ADMIN: &str = "admin-key-for-seed-commands";

fn config() -> Config {
    Config {
        admin_key: Some(Key::new(ADMIN.as_bytes())),
        allow_unknown_channels: false,
        ..test_config()
    }
}

#[tokio::test]
async fn a_live_channel_is_started_and_stopped_on_a_seed_through_the_admin_api() {
    let addr = start(config()).await;
    let mut seed = Client::seed(addr, seed_info("s1", &["movie"])).await;

    // Without the admin credential nothing reaches the seed.
    let body = r#"{"seed":"s1","kind":"live","name":"news","source":"testsrc"}"#;
    let (status, _, _) = http(addr, "POST", "/api/admin/channels", None, Some(body)).await;
    assert_eq!(status, 401);
    // An unknown seed, a malformed request.
    let other = r#"{"seed":"nope","kind":"live","name":"news","source":"testsrc"}"#;
    let (status, _, _) = http(
        addr,
        "POST",
        "/api/admin/channels",
        Some(ADMIN),
        Some(other),
    )
    .await;
    assert_eq!(status, 404);
    let bad = r#"{"seed":"s1","kind":"live","name":"news"}"#;
    let (status, _, _) = http(addr, "POST", "/api/admin/channels", Some(ADMIN), Some(bad)).await;
    assert_eq!(status, 400);

    let call = tokio::spawn(async move {
        http(addr, "POST", "/api/admin/channels", Some(ADMIN), Some(body)).await
    });
    let (id, command) = match seed.recv().await {
        ServerMsg::SeedCommand { id, command } => (id, command),
        other => panic!("expected a seed command, got {other:?}"),
    };
    assert_eq!(
        command,
        SeedCommand::StartLive {
            name: "news".into(),
            source: "testsrc".into()
        }
    );
    let mut info = seed_info("s1", &["movie", "news"]);
    info.live = vec![LiveChannelInfo {
        channel: "news".into(),
        public_key: "ab".repeat(32),
    }];
    seed.send(&ClientMsg::SeedCommandResult {
        id,
        ok: true,
        message: "live channel news started".into(),
        seed: Some(info),
    })
    .await;
    let (status, _, body) = timeout(WAIT, call).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("news started"), "{body}");

    // The channel is listed with its seed, and viewers may join it.
    let (status, _, body) = http(addr, "GET", "/api/admin/channels", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let news = v["swarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["swarm"] == "news")
        .unwrap_or_else(|| panic!("news not listed: {body}"));
    assert_eq!(news["peers"][0]["seed_id"], "s1");
    assert_eq!(news["peers"][0]["live"], true);
    let mut viewer = Client::viewer(addr).await;
    match viewer.join("news").await {
        ServerMsg::Joined { seeds, .. } => {
            assert_eq!(seeds.len(), 1);
            assert_eq!(seeds[0].live[0].public_key, "ab".repeat(32));
        }
        other => panic!("{other:?}"),
    }

    // Stop: a refusal from the seed is passed on; then a success.
    let call = tokio::spawn(async move {
        http(
            addr,
            "DELETE",
            "/api/admin/channels/news?seed=s1",
            Some(ADMIN),
            None,
        )
        .await
    });
    let id = match seed.recv().await {
        ServerMsg::SeedCommand {
            id,
            command: SeedCommand::StopLive { name },
        } => {
            assert_eq!(name, "news");
            id
        }
        other => panic!("expected stop_live, got {other:?}"),
    };
    seed.send(&ClientMsg::SeedCommandResult {
        id,
        ok: true,
        message: "live channel news stopped".into(),
        seed: Some(seed_info("s1", &["movie"])),
    })
    .await;
    let (status, _, body) = timeout(WAIT, call).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    // The viewer hears the seed left the channel; it is no longer listed.
    loop {
        match viewer.recv().await {
            ServerMsg::PeerLeft { swarm, .. } if swarm == "news" => break,
            ServerMsg::HeartbeatAck => {}
            other => panic!("expected peer_left, got {other:?}"),
        }
    }
    let (_, _, body) = http(addr, "GET", "/api/admin/channels", Some(ADMIN), None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let news = v["swarms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["swarm"] == "news");
    assert!(
        news.is_none_or(|s| s["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["role"] != "seed")),
        "{body}"
    );

    // A refusal is answered 422 with the seed's reason.
    let call = tokio::spawn(async move {
        http(
            addr,
            "DELETE",
            "/api/admin/channels/news?seed=s1",
            Some(ADMIN),
            None,
        )
        .await
    });
    let id = match seed.recv().await {
        ServerMsg::SeedCommand { id, .. } => id,
        other => panic!("{other:?}"),
    };
    seed.send(&ClientMsg::SeedCommandResult {
        id,
        ok: false,
        message: "no live channel news".into(),
        seed: None,
    })
    .await;
    let (status, _, body) = timeout(WAIT, call).await.unwrap().unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("no live channel news"), "{body}");
}

#[tokio::test]
async fn answers_are_accepted_only_from_the_seed_asked_and_a_vod_is_accepted_at_once() {
    let addr = start(config()).await;
    let mut s1 = Client::seed(addr, seed_info("s1", &["a"])).await;
    let mut s2 = Client::seed(addr, seed_info("s2", &["b"])).await;
    let body = r#"{"seed":"s1","kind":"vod","file":"films/new.mp4"}"#;
    let call = tokio::spawn(async move {
        http(addr, "POST", "/api/admin/channels", Some(ADMIN), Some(body)).await
    });
    let id = match s1.recv().await {
        ServerMsg::SeedCommand {
            id,
            command: SeedCommand::AddVod { file },
        } => {
            assert_eq!(file, "films/new.mp4");
            id
        }
        other => panic!("{other:?}"),
    };
    // Another seed cannot answer for s1.
    s2.send(&ClientMsg::SeedCommandResult {
        id,
        ok: true,
        message: String::new(),
        seed: None,
    })
    .await;
    assert!(matches!(s2.recv().await, ServerMsg::Error { .. }));
    s1.send(&ClientMsg::SeedCommandResult {
        id,
        ok: true,
        message: "packaging".into(),
        seed: None,
    })
    .await;
    let (status, _, body) = timeout(WAIT, call).await.unwrap().unwrap();
    assert_eq!(status, 202, "{body}");
    // Later the seed announces the packaged content by itself.
    s1.send(&ClientMsg::SeedUpdate {
        seed: seed_info("s1", &["a", "new"]),
    })
    .await;
    s1.ping().await;
    let mut viewer = Client::viewer(addr).await;
    match viewer.join("new").await {
        ServerMsg::Joined { seeds, .. } => assert_eq!(seeds[0].seed_id, "s1"),
        other => panic!("{other:?}"),
    }
    // A seed cannot take another seed's id.
    s2.send(&ClientMsg::SeedUpdate {
        seed: seed_info("s1", &["x"]),
    })
    .await;
    assert!(matches!(s2.recv().await, ServerMsg::Error { .. }));
}

#[tokio::test]
async fn deleting_a_vod_channel_unpublishes_it_on_its_seed() {
    let addr = start(config()).await;
    let mut seed = Client::seed(addr, seed_info("s1", &["movie", "film2"])).await;
    let mut viewer = Client::viewer(addr).await;
    viewer.join("movie").await;

    // Without the admin credential nothing reaches the seed.
    let (status, _, _) = http(
        addr,
        "DELETE",
        "/api/admin/channels/movie?seed=s1",
        None,
        None,
    )
    .await;
    assert_eq!(status, 401);
    seed.ping().await;

    let call = tokio::spawn(async move {
        http(
            addr,
            "DELETE",
            "/api/admin/channels/movie?seed=s1",
            Some(ADMIN),
            None,
        )
        .await
    });
    // Not one of the seed's live channels: unpublish it as a VOD.
    let id = match seed.recv().await {
        ServerMsg::SeedCommand {
            id,
            command: SeedCommand::RemoveVod { name },
        } => {
            assert_eq!(name, "movie");
            id
        }
        other => panic!("expected remove_vod, got {other:?}"),
    };
    seed.send(&ClientMsg::SeedCommandResult {
        id,
        ok: true,
        message: "VOD movie unpublished".into(),
        seed: Some(seed_info("s1", &["film2"])),
    })
    .await;
    let (status, _, body) = timeout(WAIT, call).await.unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("unpublished"), "{body}");
    // Its viewer hears the seed left; a new viewer is refused the channel.
    match viewer.recv().await {
        ServerMsg::PeerLeft { swarm, peer_id } => {
            assert_eq!(
                (swarm.as_str(), peer_id.as_str()),
                ("movie", seed.peer_id.as_str())
            )
        }
        other => panic!("expected peer_left, got {other:?}"),
    }
    let mut late = Client::viewer(addr).await;
    late.send(&ClientMsg::Join {
        swarm: "movie".into(),
    })
    .await;
    assert!(
        matches!(
            late.recv().await,
            ServerMsg::Refused {
                reason: swarm_proto::signal::RefuseReason::UnknownChannel,
                ..
            }
        ),
        "the channel is gone"
    );
    // The seed's other content stays.
    late.join("film2").await;
}
