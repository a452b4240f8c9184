//! The seed's signaling client and WebRTC serving, end to end on 127.0.0.1:
//! a stand-in signal server (a WebSocket endpoint speaking the real
//! `swarm_proto::signal` messages) relays a webrtc-rs viewer's offer to the
//! seed; the viewer runs the real viewer engine over the data channel and
//! must receive every segment from the seed, hash-verified.
mod common;

use common::signal::{next_link, signal_server};
use common::viewer::{play_all, Viewer};
use common::{dirs, init_tracing, make_video, start_origin, wait_until};
use shoal_seed::package::package_all;
use shoal_seed::rtc::{RtcConfig, RtcHost};
use shoal_seed::serve::{HubConfig, SwarmHub};
use shoal_seed::signaling::{self, SignalingConfig};
use shoal_seed::stats::SeedStats;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use swarm_proto::signal::{ClientMsg, Role, RtcSignal, SeedInfo, ServerMsg};
use tokio::time::timeout;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_gets_every_segment_from_the_seed_over_webrtc_via_signaling() {
    init_tracing();
    let (_root, media, cache) = dirs();
    make_video(&media, "clip.mp4", 5, true);
    let lib = Arc::new(package_all(&media, &cache).await.unwrap());
    let published = lib.published[0].clone();
    let id = published.content_id.clone();
    let manifest = Arc::new(published.manifest.clone());

    let stats = Arc::new(SeedStats::default());
    let origin = start_origin(lib.clone(), stats.clone(), 1).await;
    let hub = Arc::new(SwarmHub::new(&lib, stats.clone(), HubConfig::new(1)));
    assert_eq!(hub.contents(), vec![id.clone()]);
    hub.spawn_timers();
    let (url, mut links) = signal_server().await;
    let seed = SeedInfo {
        seed_id: "seed-test".into(),
        http_base: origin.clone(),
        contents: hub.contents(),
        capacity: 1,
        live: Vec::new(),
    };
    let host = RtcHost::new(RtcConfig::default());
    tokio::spawn(signaling::run(
        SignalingConfig {
            url,
            seed: seed.clone(),
            token: None,
        },
        hub.clone(),
        host,
    ));

    // Registration: hello as a seed with its contents, then heartbeats.
    let mut link = next_link(&mut links).await;
    assert_eq!(
        link.welcome(200).await,
        ClientMsg::Hello {
            role: Role::Seed,
            token: None,
            seed: Some(seed.clone())
        }
    );
    // Its first report comes at once; a heartbeat within 2 s.
    let first = timeout(Duration::from_secs(2), link.from_seed.recv())
        .await
        .expect("a report at once")
        .unwrap();
    assert!(matches!(
        ClientMsg::decode(&first).unwrap(),
        ClientMsg::SeedReport { .. }
    ));
    let hb = timeout(Duration::from_secs(2), link.from_seed.recv())
        .await
        .expect("heartbeat within 2 s")
        .unwrap();
    assert_eq!(ClientMsg::decode(&hb).unwrap(), ClientMsg::Heartbeat);

    // An offer for unknown content is ignored; a real one is answered.
    let viewer = Viewer::offer().await;
    link.send(&ServerMsg::Relay {
        swarm: "unknown".into(),
        from: "v0".into(),
        signal: RtcSignal::Offer {
            sdp: viewer.offer.clone(),
        },
    });
    link.send(&ServerMsg::Relay {
        swarm: id.clone(),
        from: "v1".into(),
        signal: RtcSignal::Offer {
            sdp: viewer.offer.clone(),
        },
    });
    let answer = match link.recv().await {
        ClientMsg::Relay {
            swarm,
            to,
            signal: RtcSignal::Answer { sdp },
        } => {
            assert_eq!((swarm.as_str(), to.as_str()), (id.as_str(), "v1"));
            sdp
        }
        other => panic!("expected an answer, got {other:?}"),
    };
    viewer.accept(answer).await;

    // Every segment from the seed; only the init segment over HTTP.
    let played = play_all(&viewer, manifest.clone(), &origin, Duration::from_secs(30)).await;
    assert!(played.init_appended);
    assert_eq!(
        played.appended,
        (0..manifest.segment_count()).collect::<Vec<_>>()
    );
    assert_eq!(played.http_segments, 0);
    let total: u64 = manifest.segments().iter().map(|s| s.size).sum();
    assert!(played.bytes_from_seed >= total);
    assert!(
        stats.rtc_bytes.load(Relaxed) >= total,
        "rtc bytes {} < {total}",
        stats.rtc_bytes.load(Relaxed)
    );
    assert_eq!(stats.slots.load(Relaxed), 1);
    // The viewer is known to the engine by its signaling id.
    assert_eq!(hub.swarm(&id).unwrap().engine_stats().peers, 1);

    // Capacity 1: a second viewer's offer is not answered.
    let second = Viewer::offer().await;
    link.send(&ServerMsg::Relay {
        swarm: id.clone(),
        from: "v2".into(),
        signal: RtcSignal::Offer { sdp: second.offer },
    });
    let extra = timeout(Duration::from_millis(1500), link.recv()).await;
    assert!(
        extra.is_err(),
        "over capacity the seed must not answer: {extra:?}"
    );
    assert_eq!(stats.refused_over_capacity.load(Relaxed), 1);

    // The viewer leaves: its slot is freed.
    viewer.pc.close().await.unwrap();
    wait_until(
        "seed notices the viewer leaving",
        Duration::from_secs(20),
        || stats.slots.load(Relaxed) == 0,
    )
    .await;
    assert_eq!(stats.slots_max.load(Relaxed), 1);

    // The signal server hangs up: the seed reconnects and registers again.
    drop(link);
    let mut link = next_link(&mut links).await;
    assert!(matches!(
        link.recv().await,
        ClientMsg::Hello {
            role: Role::Seed,
            ..
        }
    ));
}
