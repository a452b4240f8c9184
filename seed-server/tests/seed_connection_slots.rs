//! WebRTC slots of the seed: at most two live connections per signaling
//! peer id, and every way a connection ends (handshake timeout, bye, idle
//! timeout, misbehaviour) frees its slot. Real ffmpeg, real WebRTC on
//! 127.0.0.1; every wait is bounded.
mod common;

use common::signal::{next_link, signal_server, SeedLink};
use common::viewer::{connect_to_hub, Viewer, STEP};
use common::{dirs, init_tracing, make_video, wait_until};
use shoal_seed::package::package_all;
use shoal_seed::rtc::{RtcConfig, RtcHost};
use shoal_seed::serve::{HubConfig, Refusal, SwarmHub};
use shoal_seed::signaling::{self, SignalingConfig};
use shoal_seed::stats::SeedStats;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use swarm_proto::signal::{ClientMsg, RtcSignal, SeedInfo, ServerMsg};
use swarm_proto::wire::{self, Message};
use tokio::sync::mpsc;
use tokio::time::timeout;

/// A packaged 3 s video and a hub serving it (timers running).
struct Seed {
    _root: tempfile::TempDir,
    content: String,
    stats: Arc<SeedStats>,
    hub: Arc<SwarmHub>,
    host: RtcHost,
}

async fn seed(cfg: HubConfig) -> Seed {
    init_tracing();
    let (root, media, cache) = dirs();
    make_video(&media, "clip.mp4", 3, false);
    let lib = package_all(&media, &cache).await.unwrap();
    let stats = Arc::new(SeedStats::default());
    let hub = Arc::new(SwarmHub::new(&lib, stats.clone(), cfg));
    hub.spawn_timers();
    Seed {
        _root: root,
        content: lib.published[0].content_id.clone(),
        stats,
        hub,
        host: RtcHost::new(RtcConfig::default()),
    }
}

impl Seed {
    fn slots(&self) -> u64 {
        self.stats.slots.load(Relaxed)
    }

    /// Connects `remote_id`, waits for the open and the seed's hello.
    async fn open_viewer(&self, remote_id: &str) -> Viewer {
        let before = self.slots();
        let v = connect_to_hub(&self.hub, &self.host, &self.content, remote_id).await;
        v.wait_open().await;
        let hello = v.recv().await;
        assert!(
            matches!(wire::decode(&hello), Ok(Message::Hello { .. })),
            "first message from the seed is its hello"
        );
        assert_eq!(self.slots(), before + 1);
        v
    }
}

async fn answered(link: &mut SeedLink) -> (String, String) {
    match link.recv().await {
        ClientMsg::Relay {
            to,
            signal: RtcSignal::Answer { sdp },
            ..
        } => (to, sdp),
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_offer_from_the_same_peer_id_is_refused_until_one_of_its_connections_ends() {
    let s = seed(HubConfig {
        handshake_timeout: Duration::from_secs(2),
        ..HubConfig::new(10)
    })
    .await;
    let (url, mut links) = signal_server().await;
    let info = SeedInfo {
        seed_id: "seed-slots".into(),
        http_base: "http://127.0.0.1:1".into(),
        contents: s.hub.contents(),
        capacity: 10,
        live: Vec::new(),
    };
    tokio::spawn(signaling::run(
        SignalingConfig {
            url,
            seed: info,
            token: None,
        },
        s.hub.clone(),
        s.host.clone(),
    ));
    let mut link = next_link(&mut links).await;
    link.welcome(1000).await;
    let offer = |from: &str, sdp: String| ServerMsg::Relay {
        swarm: s.content.clone(),
        from: from.into(),
        signal: RtcSignal::Offer { sdp },
    };

    // Two offers from v1 are answered, the third is not; v2 still is.
    let viewers = [
        Viewer::offer().await,
        Viewer::offer().await,
        Viewer::offer().await,
    ];
    for v in &viewers {
        link.send(&offer("v1", v.offer.clone()));
    }
    assert_eq!(answered(&mut link).await.0, "v1");
    assert_eq!(answered(&mut link).await.0, "v1");
    let extra = timeout(Duration::from_millis(1500), link.recv()).await;
    assert!(
        extra.is_err(),
        "a third connection from v1 was answered: {extra:?}"
    );
    assert_eq!(s.stats.refused_per_peer.load(Relaxed), 1);
    let other = Viewer::offer().await;
    link.send(&offer("v2", other.offer.clone()));
    assert_eq!(answered(&mut link).await.0, "v2");
    assert_eq!(s.slots(), 3);
    assert_eq!(s.stats.slots_max.load(Relaxed), 3);

    // Nobody applied the answers: the handshake timeout frees every slot,
    // and v1 may connect again.
    wait_until("handshake timeouts free the slots", STEP, || s.slots() == 0).await;
    assert_eq!(s.stats.handshake_timeouts.load(Relaxed), 3);
    let again = Viewer::offer().await;
    link.send(&offer("v1", again.offer.clone()));
    let (to, answer) = answered(&mut link).await;
    assert_eq!(to, "v1");
    again.accept(answer).await;
    again.wait_open().await;
    assert_eq!(s.slots(), 1);
    assert_eq!(s.stats.slots_max.load(Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_opens_is_closed_after_the_handshake_timeout() {
    let s = seed(HubConfig {
        handshake_timeout: Duration::from_secs(1),
        ..HubConfig::new(4)
    })
    .await;
    let v = Viewer::offer().await;
    let slot = s.hub.try_admit(&s.content, "v1").unwrap();
    let (_answer, conn) = s.host.accept_offer(&v.offer).await.unwrap();
    let (_cand_tx, cand_rx) = mpsc::unbounded_channel();
    s.hub.attach(&s.content, conn, cand_rx, slot).unwrap();
    assert_eq!(s.slots(), 1);
    assert_eq!(s.host.live_connections(), 1);
    // The viewer never applies the answer: the channel cannot open.
    let took = wait_until(
        "slot freed after the handshake timeout",
        Duration::from_secs(8),
        || s.slots() == 0,
    )
    .await;
    assert!(took >= Duration::from_millis(900), "freed after {took:?}");
    assert_eq!(s.stats.handshake_timeouts.load(Relaxed), 1);
    wait_until("connection torn down", STEP, || {
        s.host.live_connections() == 0
    })
    .await;
    let _ = v.pc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bye_frees_the_slot_without_banning_the_viewer() {
    let s = seed(HubConfig::new(4)).await;
    let v = s.open_viewer("v1").await;
    v.send(&wire::encode(&Message::Bye)).await;
    let took = wait_until("slot freed after bye", Duration::from_secs(5), || {
        s.slots() == 0
    })
    .await;
    println!("slot freed {took:?} after bye");
    let swarm = s.hub.swarm(&s.content).unwrap();
    assert_eq!(swarm.engine_stats().peers, 0);
    assert_eq!(swarm.engine_stats().peers_dropped, 0);
    assert!(!swarm.is_banned("v1"));
    assert!(s.hub.try_admit(&s.content, "v1").is_ok());
    let _ = v.pc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_viewer_is_closed_after_the_engine_idle_timeout() {
    let mut cfg = HubConfig::new(4);
    cfg.engine.idle_timeout_ms = 1000;
    let s = seed(cfg).await;
    let v = s.open_viewer("v1").await;
    let took = wait_until(
        "slot freed after the idle timeout",
        Duration::from_secs(8),
        || s.slots() == 0,
    )
    .await;
    assert!(took >= Duration::from_millis(700), "freed after {took:?}");
    assert!(!s.hub.swarm(&s.content).unwrap().is_banned("v1"));
    let _ = v.pc.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_message_drops_the_viewer_and_bans_its_peer_id() {
    let s = seed(HubConfig::new(4)).await;
    let v = s.open_viewer("v1").await;
    v.dc.send_text("hello").await.unwrap();
    wait_until(
        "slot freed after a text message",
        Duration::from_secs(5),
        || s.slots() == 0,
    )
    .await;
    let swarm = s.hub.swarm(&s.content).unwrap();
    assert!(swarm.is_banned("v1"));
    assert_eq!(swarm.engine_stats().peers_dropped, 1);
    assert_eq!(
        s.hub.try_admit(&s.content, "v1").err(),
        Some(Refusal::Banned)
    );
    assert_eq!(s.stats.refused_banned.load(Relaxed), 1);
    // Another viewer is not affected.
    assert!(s.hub.try_admit(&s.content, "v2").is_ok());
    let _ = v.pc.close().await;
}

/// Reads messages from the seed until a piece arrives.
async fn next_piece(v: &Viewer) -> (u32, u32) {
    for _ in 0..16 {
        if let Ok(Message::Piece { seg, piece, .. }) = wire::decode(&v.recv().await) {
            return (seg, piece);
        }
    }
    panic!("no piece among 16 messages from the seed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_capacity_a_new_viewer_takes_the_slot_of_the_longest_idle_connection() {
    let mut cfg = HubConfig::new(2);
    cfg.evict_idle_after = Duration::from_millis(500);
    let s = seed(cfg).await;
    let idle = s.open_viewer("idle").await;
    let busy = s.open_viewer("busy").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Both are idle now; "busy" asks for media and is served, so only "idle" qualifies.
    busy.send(&wire::encode(&Message::Request { seg: 0, piece: 0 }))
        .await;
    assert_eq!(next_piece(&busy).await, (0, 0));
    let newcomer = s
        .hub
        .try_admit(&s.content, "new")
        .expect("the newcomer takes the idle slot");
    assert_eq!(s.stats.evicted_idle.load(Relaxed), 1);
    assert_eq!(s.slots(), 2);
    let swarm = s.hub.swarm(&s.content).unwrap();
    wait_until(
        "the evicted connection ends",
        Duration::from_secs(5),
        || swarm.engine_stats().peers == 1,
    )
    .await;
    // Evicted without blame, and the busy viewer is still served.
    assert!(!swarm.is_banned("idle"));
    assert_eq!(swarm.engine_stats().peers_dropped, 0);
    busy.send(&wire::encode(&Message::Request { seg: 0, piece: 1 }))
        .await;
    assert_eq!(next_piece(&busy).await, (0, 1));
    // A full seed with no idle slot still refuses.
    assert_eq!(
        s.hub.try_admit(&s.content, "late").err(),
        Some(Refusal::OverCapacity(2))
    );
    drop(newcomer);
    let _ = idle.pc.close().await;
    let _ = busy.pc.close().await;
}
