//! The seed's signaling client and WebRTC serving, end to end on 127.0.0.1:
//! a stand-in signal server (a WebSocket endpoint speaking the real
//! `swarm_proto::signal` messages) relays a webrtc-rs viewer's offer to the
//! seed; the viewer runs the real viewer engine over the data channel and
//! must receive every segment from the seed, hash-verified.
mod common;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use bytes::BytesMut;
use common::{dirs, make_video};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use shoal_seed::package::package_all;
use shoal_seed::rtc::{RtcConfig, RtcHost, DATA_CHANNEL_LABEL};
use shoal_seed::serve::SwarmHub;
use shoal_seed::signaling::{self, SignalingConfig};
use shoal_seed::stats::SeedStats;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_proto::engine::{Config, Engine, Input, Output};
use swarm_proto::signal::{ClientMsg, Role, RtcSignal, SeedInfo, ServerMsg};
use tokio::sync::mpsc;
use tokio::time::timeout;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCSessionDescription, SettingEngineBuilder,
};

const STEP: Duration = Duration::from_secs(10);

/// One WebSocket connection the seed made to the stand-in signal server.
struct SeedLink {
    to_seed: mpsc::UnboundedSender<String>,
    from_seed: mpsc::UnboundedReceiver<String>,
}

impl SeedLink {
    fn send(&self, m: &ServerMsg) {
        self.to_seed.send(m.encode()).unwrap();
    }

    /// Next message from the seed that is not a heartbeat.
    async fn recv(&mut self) -> ClientMsg {
        loop {
            let text = timeout(STEP, self.from_seed.recv())
                .await
                .expect("seed said nothing")
                .expect("seed link closed");
            let m = ClientMsg::decode(&text).expect("seed sends valid messages");
            if m != ClientMsg::Heartbeat {
                return m;
            }
        }
    }
}

async fn ws_conn(mut ws: WebSocket, links: mpsc::UnboundedSender<SeedLink>) {
    let (to_seed, mut to_seed_rx) = mpsc::unbounded_channel::<String>();
    let (from_seed_tx, from_seed) = mpsc::unbounded_channel::<String>();
    links.send(SeedLink { to_seed, from_seed }).unwrap();
    loop {
        tokio::select! {
            out = to_seed_rx.recv() => match out {
                Some(t) => if ws.send(WsMessage::Text(t.into())).await.is_err() { break },
                None => break, // the test dropped the link: hang up
            },
            m = ws.recv() => match m {
                Some(Ok(WsMessage::Text(t))) => { let _ = from_seed_tx.send(t.to_string()); }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Starts the stand-in signal server; yields each seed connection.
async fn signal_server() -> (String, mpsc::UnboundedReceiver<SeedLink>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/ws",
        get(move |up: WebSocketUpgrade| {
            let tx = tx.clone();
            async move { up.on_upgrade(move |ws| ws_conn(ws, tx)) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("ws://{addr}/ws"), rx)
}

struct ClientHandler {
    gathered: mpsc::UnboundedSender<()>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ClientHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }
}

/// A viewer's peer connection (bound to 127.0.0.1) with its offer ready.
async fn viewer_offer() -> (Arc<dyn PeerConnection>, Arc<dyn DataChannel>, String) {
    let (gathered_tx, mut gathered_rx) = mpsc::unbounded_channel();
    let se = SettingEngineBuilder::new()
        .with_network_types(vec![NetworkType::Udp4])
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(262_144))
        .with_sctp_mtu(1200)
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(se)
        .with_handler(Arc::new(ClientHandler {
            gathered: gathered_tx,
        }))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .build()
        .await
        .expect("viewer peer connection");
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let dc = pc
        .create_data_channel(DATA_CHANNEL_LABEL, None)
        .await
        .unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    timeout(STEP, gathered_rx.recv())
        .await
        .expect("viewer gathering timed out");
    let sdp = pc.local_description().await.unwrap().sdp;
    for line in sdp.lines().filter(|l| l.starts_with("a=candidate:")) {
        assert_eq!(
            line.split_whitespace().nth(4),
            Some("127.0.0.1"),
            "non-loopback candidate: {line}"
        );
    }
    (pc, dc, sdp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_gets_every_segment_from_the_seed_over_webrtc_via_signaling() {
    let (_root, media, cache) = dirs();
    make_video(&media, "clip.mp4", 5, true);
    let lib = package_all(&media, &cache).await.unwrap();
    let published = lib.published[0].clone();
    let id = published.content_id.clone();
    let manifest = Arc::new(published.manifest.clone());

    let stats = Arc::new(SeedStats::default());
    let hub = Arc::new(SwarmHub::load(&lib, stats.clone(), 1));
    assert_eq!(hub.contents(), vec![id.clone()]);
    hub.spawn_timers();
    let (url, mut links) = signal_server().await;
    let seed = SeedInfo {
        seed_id: "seed-test".into(),
        http_base: "http://127.0.0.1:1".into(),
        contents: hub.contents(),
        capacity: 1,
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
    let mut link = timeout(STEP, links.recv())
        .await
        .expect("seed connects")
        .unwrap();
    assert_eq!(
        link.recv().await,
        ClientMsg::Hello {
            role: Role::Seed,
            token: None,
            seed: Some(seed.clone())
        }
    );
    link.send(&ServerMsg::Welcome {
        peer_id: "seedpeer".into(),
        heartbeat_ms: 200,
        group: "lo".into(),
    });
    let hb = timeout(Duration::from_secs(2), link.from_seed.recv())
        .await
        .expect("heartbeat within 2 s")
        .unwrap();
    assert_eq!(ClientMsg::decode(&hb).unwrap(), ClientMsg::Heartbeat);

    // An offer for unknown content is ignored; a real one is answered.
    let (pc, dc, offer) = viewer_offer().await;
    link.send(&ServerMsg::Relay {
        swarm: "unknown".into(),
        from: "v0".into(),
        signal: RtcSignal::Offer { sdp: offer.clone() },
    });
    link.send(&ServerMsg::Relay {
        swarm: id.clone(),
        from: "v1".into(),
        signal: RtcSignal::Offer { sdp: offer },
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
    pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();

    // The viewer engine, asked to take everything from the seed (no HTTP).
    let cfg = Config {
        critical_ms: 0,
        urgent_ms: 600_000,
        lookahead_ms: 600_000,
        peer_wait_ms: 600_000,
        ..Config::default()
    };
    let mut viewer = Engine::new(manifest.clone(), cfg);
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let mut appended = Vec::new();
    let mut http_asked = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while appended.len() < manifest.segments.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} segments after 30 s",
            appended.len(),
            manifest.segments.len()
        );
        let ev = timeout(Duration::from_millis(100), dc.poll()).await;
        match ev {
            Ok(Some(DataChannelEvent::OnOpen)) => viewer.handle_input(
                now(),
                Input::PeerConnected {
                    peer: 1,
                    is_seed: true,
                },
            ),
            Ok(Some(DataChannelEvent::OnMessage(m))) => viewer.handle_input(
                now(),
                Input::PeerData {
                    peer: 1,
                    data: &m.data,
                },
            ),
            Ok(Some(_)) => {}
            Ok(None) => panic!("viewer channel closed"),
            Err(_) => viewer.handle_input(now(), Input::Timeout),
        }
        while let Some(out) = viewer.poll_output() {
            match out {
                Output::Send { data, .. } => dc.send(BytesMut::from(&data[..])).await.unwrap(),
                Output::Append { seg, data } => {
                    assert_eq!(data.len() as u64, manifest.entry(seg).size);
                    appended.push(seg.get());
                }
                Output::HttpFetch { seg } => {
                    http_asked += 1;
                    viewer.handle_input(now(), Input::HttpFailed { seg });
                }
                Output::DropPeer { reason, .. } => panic!("viewer dropped the seed: {reason}"),
            }
        }
    }
    assert_eq!(appended, (0..manifest.segment_count()).collect::<Vec<_>>());
    assert_eq!(http_asked, 0);
    let total: u64 = manifest.segments.iter().map(|s| s.size).sum();
    assert!(
        stats.rtc_bytes.load(Relaxed) >= total,
        "rtc bytes {} < {total}",
        stats.rtc_bytes.load(Relaxed)
    );
    assert_eq!(stats.viewers.load(Relaxed), 1);
    assert!(viewer.stats().bytes_from_seed >= total);

    // Capacity 1: a second viewer's offer is not answered.
    let (_pc2, _dc2, offer2) = viewer_offer().await;
    link.send(&ServerMsg::Relay {
        swarm: id.clone(),
        from: "v2".into(),
        signal: RtcSignal::Offer { sdp: offer2 },
    });
    let extra = timeout(Duration::from_millis(1500), link.recv()).await;
    assert!(
        extra.is_err(),
        "over capacity the seed must not answer: {extra:?}"
    );
    assert_eq!(stats.refused_over_capacity.load(Relaxed), 1);

    // The viewer leaves: its place is freed.
    pc.close().await.unwrap();
    timeout(Duration::from_secs(20), async {
        while stats.viewers.load(Relaxed) != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("seed did not notice the viewer leaving");

    // The signal server hangs up: the seed reconnects and registers again.
    drop(link);
    let mut link = timeout(STEP, links.recv())
        .await
        .expect("seed reconnects")
        .unwrap();
    assert!(matches!(
        link.recv().await,
        ClientMsg::Hello {
            role: Role::Seed,
            ..
        }
    ));
}
