//! The operator's commands at the seed, through its real signaling client
//! against a stand-in signal server: a live channel (real ffmpeg `testsrc`)
//! is started by `start_live`, announced with its key, served, then stopped
//! by `stop_live`: no longer announced, ingest ended, `live.json` says so.
//! Bad commands are refused with a reason.
mod common;

use common::signal::{next_link, signal_server};
use common::{init_tracing, wait_until};
use shoal_seed::control::{ControlConfig, SeedControl};
use shoal_seed::live::channel::{self, LiveChannels};
use shoal_seed::live::ingest::ChannelStatus;
use shoal_seed::rtc::{RtcConfig, RtcHost};
use shoal_seed::serve::{HubConfig, SwarmHub};
use shoal_seed::signaling::{self, SignalingConfig};
use shoal_seed::stats::SeedStats;
use std::sync::Arc;
use std::time::Duration;
use swarm_proto::live::LiveManifest;
use swarm_proto::signal::{ClientMsg, SeedCommand, SeedInfo, ServerMsg};

async fn result(
    link: &mut common::signal::SeedLink,
    want: u64,
) -> (bool, String, Option<SeedInfo>) {
    match link.recv().await {
        ClientMsg::SeedCommandResult {
            id,
            ok,
            message,
            seed,
        } => {
            assert_eq!(id, want);
            (ok, message, seed)
        }
        other => panic!("expected a command result, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_channel_is_started_and_stopped_by_command() {
    init_tracing();
    let keys = tempfile::tempdir().unwrap();
    let media = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.mp4"), b"x").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.mp4"),
        media.path().join("link.mp4"),
    )
    .unwrap();
    let stats = Arc::new(SeedStats::default());
    let hub = Arc::new(SwarmHub::new(
        &Default::default(),
        stats.clone(),
        HubConfig::new(4),
    ));
    hub.spawn_timers();
    let live = LiveChannels::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = channel::router(live.clone(), stats);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = SeedInfo {
        seed_id: "seed-cmd".into(),
        http_base: origin.clone(),
        contents: Vec::new(),
        capacity: 4,
        live: Vec::new(),
    };
    let control = Arc::new(SeedControl::new(
        ControlConfig {
            key_dir: keys.path().to_owned(),
            segment_ms: 1000,
            push_copies: 1,
            max_live: 1,
            media_dir: Some(media.path().to_owned()),
        },
        hub.clone(),
        live.clone(),
        base.clone(),
    ));
    let (url, mut links) = signal_server().await;
    tokio::spawn(signaling::run_with_control(
        SignalingConfig {
            url,
            seed: base.clone(),
            token: None,
        },
        hub.clone(),
        RtcHost::new(RtcConfig::default()),
        Some(control.clone()),
    ));
    let mut link = next_link(&mut links).await;
    link.welcome(1000).await;

    // Refused: a bad name, a source `--live` would refuse.
    let outside_abs = format!("file:{}", outside.path().join("secret.mp4").display());
    for (id, name, source) in [
        (1, "../x", "testsrc"),
        (2, "news", "ftp://x"),
        (3, "news", "file:../secret.mp4"),
        (10, "news", outside_abs.as_str()),
        (11, "news", "file:link.mp4"),
        (12, "news", "file:missing.mp4"),
    ] {
        link.send(&ServerMsg::SeedCommand {
            id,
            command: SeedCommand::StartLive {
                name: name.into(),
                source: source.into(),
            },
        });
        let (ok, message, seed) = result(&mut link, id).await;
        assert!(!ok && seed.is_none(), "{name} {source}: {message}");
    }
    assert!(live.read().is_empty() && hub.contents().is_empty());

    link.send(&ServerMsg::SeedCommand {
        id: 4,
        command: SeedCommand::StartLive {
            name: "news".into(),
            source: "testsrc".into(),
        },
    });
    let (ok, message, seed) = result(&mut link, 4).await;
    assert!(ok, "{message}");
    let seed = seed.expect("the new announcement comes with the answer");
    assert_eq!(seed.contents, vec!["news".to_string()]);
    let ch = live.get("news").expect("served over HTTP");
    assert_eq!(seed.live[0].public_key, hex::encode(ch.public_key()));
    assert!(hub.has("news"));

    // The bound: a second channel is refused.
    link.send(&ServerMsg::SeedCommand {
        id: 5,
        command: SeedCommand::StartLive {
            name: "sport".into(),
            source: "testsrc".into(),
        },
    });
    let (ok, message, _) = result(&mut link, 5).await;
    assert!(!ok && message.contains("at most 1"), "{message}");

    wait_until("a live segment", Duration::from_secs(20), || {
        ch.newest().is_some()
    })
    .await;
    let http = reqwest::Client::new();
    let get = |u: String| {
        let http = http.clone();
        async move { http.get(u).send().await.unwrap().text().await.unwrap() }
    };
    let m = LiveManifest::from_json(&get(format!("{origin}/live/news/live.json")).await).unwrap();
    assert!(m.interrupted.is_none());

    link.send(&ServerMsg::SeedCommand {
        id: 6,
        command: SeedCommand::StopLive {
            name: "news".into(),
        },
    });
    let (ok, message, seed) = tokio::time::timeout(Duration::from_secs(15), result(&mut link, 6))
        .await
        .expect("stop answered");
    assert!(ok, "{message}");
    let seed = seed.unwrap();
    assert!(seed.contents.is_empty() && seed.live.is_empty(), "{seed:?}");
    assert!(!hub.has("news"));
    assert_eq!(ch.status(), ChannelStatus::Stopped);
    let m = LiveManifest::from_json(&get(format!("{origin}/live/news/live.json")).await).unwrap();
    assert!(
        m.interrupted
            .as_deref()
            .is_some_and(|r| r.contains("stopped")),
        "{m:?}"
    );
    let newest = ch.newest().map(|m| m.seq);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        ch.newest().map(|m| m.seq),
        newest,
        "no segment after the stop"
    );

    // Stopping it again is refused; the name can be used again.
    link.send(&ServerMsg::SeedCommand {
        id: 7,
        command: SeedCommand::StopLive {
            name: "news".into(),
        },
    });
    assert!(!result(&mut link, 7).await.0);
    link.send(&ServerMsg::SeedCommand {
        id: 8,
        command: SeedCommand::StartLive {
            name: "news".into(),
            source: "testsrc:clock".into(),
        },
    });
    let (ok, message, _) = result(&mut link, 8).await;
    assert!(ok, "{message}");
    assert!(!Arc::ptr_eq(&ch, &live.get("news").unwrap()));
    // A reconnecting seed announces what it runs now.
    drop(link);
    let mut link = next_link(&mut links).await;
    match link.welcome(1000).await {
        ClientMsg::Hello { seed: Some(s), .. } => assert_eq!(s.contents, vec!["news".to_string()]),
        other => panic!("{other:?}"),
    }
    link.send(&ServerMsg::SeedCommand {
        id: 9,
        command: SeedCommand::StopLive {
            name: "news".into(),
        },
    });
    assert!(result(&mut link, 9).await.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vod_file_of_the_media_folder_is_packaged_and_announced_by_command() {
    init_tracing();
    let (_root, media, cache) = common::dirs();
    std::fs::create_dir_all(media.join("films")).unwrap();
    common::make_video(&media.join("films"), "new.mp4", 3, true);
    let outside = tempfile::tempdir().unwrap();
    common::make_video(outside.path(), "secret.mp4", 1, false);
    std::os::unix::fs::symlink(outside.path().join("secret.mp4"), media.join("link.mp4")).unwrap();
    let stats = Arc::new(SeedStats::default());
    let lib = Arc::new(shoal_seed::package::Library::default());
    let hub = Arc::new(SwarmHub::new(&lib, stats.clone(), HubConfig::new(4)));
    let added: shoal_seed::http::AddedVods = Default::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = shoal_seed::http::router(shoal_seed::http::HttpState {
        library: lib,
        added: added.clone(),
        stats,
        capacity: 4,
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = SeedInfo {
        seed_id: "seed-vod".into(),
        http_base: origin.clone(),
        contents: Vec::new(),
        capacity: 4,
        live: Vec::new(),
    };
    let control = SeedControl::new(
        ControlConfig {
            key_dir: cache.join("keys"),
            segment_ms: 1000,
            push_copies: 1,
            max_live: 1,
            media_dir: Some(media.clone()),
        },
        hub.clone(),
        LiveChannels::default(),
        base.clone(),
    )
    .with_vod(cache.clone(), added);
    let (url, mut links) = signal_server().await;
    tokio::spawn(signaling::run_with_control(
        SignalingConfig {
            url,
            seed: base,
            token: None,
        },
        hub.clone(),
        RtcHost::new(RtcConfig::default()),
        Some(Arc::new(control)),
    ));
    let mut link = next_link(&mut links).await;
    link.welcome(1000).await;

    let abs = media.join("films/new.mp4").display().to_string();
    for (id, file) in [
        (1, "../x.mp4"),
        (2, abs.as_str()),
        (3, "link.mp4"),
        (4, "films/missing.mp4"),
        (5, "films"),
    ] {
        link.send(&ServerMsg::SeedCommand {
            id,
            command: SeedCommand::AddVod { file: file.into() },
        });
        let (ok, message, _) = result(&mut link, id).await;
        assert!(!ok, "{file}: {message}");
    }
    link.send(&ServerMsg::SeedCommand {
        id: 6,
        command: SeedCommand::AddVod {
            file: "films/new.mp4".into(),
        },
    });
    let (ok, message, seed) = result(&mut link, 6).await;
    assert!(ok && seed.is_none(), "{message}");
    assert!(message.contains("packaging"), "{message}");
    let update = tokio::time::timeout(Duration::from_secs(60), link.recv())
        .await
        .expect("announced once packaged");
    let ClientMsg::SeedUpdate { seed } = update else {
        panic!("expected seed_update, got {update:?}");
    };
    assert_eq!(seed.contents.len(), 1, "{seed:?}");
    let id = &seed.contents[0];
    assert!(hub.has(id));
    let index: Vec<shoal_seed::http::IndexEntry> = reqwest::get(format!("{origin}/vod/index.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(&index[0].content_id, id);
    let m = reqwest::get(format!("{origin}/vod/{id}/manifest.json"))
        .await
        .unwrap();
    assert_eq!(m.status(), 200);

    // Unpublished on command: refused for what it does not hold, then gone
    // from the announcement, the hub and the HTTP origin.
    link.send(&ServerMsg::SeedCommand {
        id: 7,
        command: SeedCommand::RemoveVod {
            name: "nothing".into(),
        },
    });
    let (ok, message, _) = result(&mut link, 7).await;
    assert!(!ok && message.contains("no VOD"), "{message}");
    link.send(&ServerMsg::SeedCommand {
        id: 8,
        command: SeedCommand::RemoveVod { name: id.clone() },
    });
    let (ok, message, seed) = result(&mut link, 8).await;
    assert!(ok, "{message}");
    let seed = seed.expect("the new announcement comes with the answer");
    assert!(seed.contents.is_empty(), "{seed:?}");
    assert!(!hub.has(id));
    let index: Vec<shoal_seed::http::IndexEntry> = reqwest::get(format!("{origin}/vod/index.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(index.is_empty(), "{index:?}");
    let m = reqwest::get(format!("{origin}/vod/{id}/manifest.json"))
        .await
        .unwrap();
    assert_eq!(m.status(), 404);
}
