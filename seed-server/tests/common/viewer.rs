//! A webrtc-rs peer bound to 127.0.0.1 standing in for a browser viewer,
//! and a real viewer engine driven over its data channel. Every wait is
//! bounded.

use bytes::BytesMut;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use shoal_seed::rtc::{RtcHost, DATA_CHANNEL_LABEL};
use shoal_seed::serve::SwarmHub;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_proto::engine::{Config, Engine, Input, Output, Resource};
use swarm_proto::Manifest;
use tokio::sync::mpsc;
use tokio::time::timeout;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCSessionDescription, SettingEngineBuilder,
};

pub const STEP: Duration = Duration::from_secs(10);

/// Every `a=candidate` line must name 127.0.0.1 (and there must be one).
pub fn assert_loopback_candidates(who: &str, sdp: &str) {
    let mut n = 0;
    for line in sdp.lines().filter(|l| l.starts_with("a=candidate:")) {
        assert_eq!(
            line.split_whitespace().nth(4),
            Some("127.0.0.1"),
            "{who} SDP has a non-loopback ICE candidate: {line}"
        );
        n += 1;
    }
    assert!(n > 0, "{who} SDP has no ICE candidate:\n{sdp}");
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

/// A viewer's peer connection with its "shoal" data channel.
pub struct Viewer {
    pub pc: Arc<dyn PeerConnection>,
    pub dc: Arc<dyn DataChannel>,
    /// The complete offer (candidates inside).
    pub offer: String,
    open: AtomicBool,
}

impl Viewer {
    /// Creates the peer connection and its offer.
    pub async fn offer() -> Viewer {
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
        let offer = pc.local_description().await.unwrap().sdp;
        assert_loopback_candidates("offer", &offer);
        Viewer {
            pc,
            dc,
            offer,
            open: AtomicBool::new(false),
        }
    }

    /// Applies the seed's answer.
    pub async fn accept(&self, answer: String) {
        assert_loopback_candidates("answer", &answer);
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .unwrap();
    }

    /// Waits until the data channel is open (at once if it already is).
    pub async fn wait_open(&self) {
        if self.open.load(Ordering::Relaxed) {
            return;
        }
        timeout(STEP, async {
            loop {
                match self.dc.poll().await {
                    Some(DataChannelEvent::OnOpen) => return,
                    Some(_) => {}
                    None => panic!("viewer channel ended before open"),
                }
            }
        })
        .await
        .expect("viewer channel did not open in time");
        self.open.store(true, Ordering::Relaxed);
    }

    /// The next binary message from the seed.
    pub async fn recv(&self) -> Vec<u8> {
        timeout(STEP, async {
            loop {
                match self.dc.poll().await {
                    Some(DataChannelEvent::OnMessage(m)) => return m.data.to_vec(),
                    Some(_) => {}
                    None => panic!("viewer channel ended"),
                }
            }
        })
        .await
        .expect("no message from the seed in time")
    }

    pub async fn send(&self, data: &[u8]) {
        self.dc.send(BytesMut::from(data)).await.unwrap();
    }
}

/// Connects a viewer straight to a hub, as the signaling client does:
/// admission under `remote_id`, answer, attach. Does not wait for the open.
pub async fn connect_to_hub(
    hub: &Arc<SwarmHub>,
    host: &RtcHost,
    content: &str,
    remote_id: &str,
) -> Viewer {
    let viewer = Viewer::offer().await;
    let slot = hub
        .try_admit(content, remote_id)
        .unwrap_or_else(|r| panic!("{remote_id} not admitted: {r}"));
    let (answer, conn) = timeout(STEP, host.accept_offer(&viewer.offer))
        .await
        .expect("accept_offer timed out")
        .expect("accept_offer");
    let (_cand_tx, cand_rx) = mpsc::unbounded_channel();
    hub.attach(content, conn, cand_rx, slot)
        .expect("hub serves the content");
    viewer.accept(answer).await;
    viewer
}

/// What a viewer engine got while playing a whole video.
#[derive(Debug, Default)]
pub struct Played {
    /// Segments appended, in order.
    pub appended: Vec<u32>,
    pub init_appended: bool,
    pub ended: bool,
    /// Media segments the engine asked over HTTP (answered as failures).
    pub http_segments: usize,
    pub bytes_from_seed: u64,
}

/// Runs a real viewer engine over `viewer`'s data channel until every
/// segment is appended (at most `limit`). The engine is told to take every
/// segment from the seed; the init segment comes over HTTP from `origin`
/// (the seed's real HTTP origin).
pub async fn play_all(
    viewer: &Viewer,
    manifest: Arc<Manifest>,
    origin: &str,
    limit: Duration,
) -> Played {
    viewer.wait_open().await;
    let cfg = Config {
        critical_ms: 0,
        urgent_ms: 600_000,
        lookahead_ms: 600_000,
        store_ahead_ms: 600_000,
        peer_wait_ms: 600_000,
        ..Config::default()
    };
    let mut engine = Engine::new(manifest.clone(), cfg);
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let http = reqwest::Client::new();
    let mut played = Played::default();
    engine.handle_input(
        now(),
        Input::PeerConnected {
            peer: 1,
            remote_id: "seed",
            is_seed: true,
        },
    );
    let deadline = Instant::now() + limit;
    loop {
        while let Some(out) = engine.poll_output() {
            match out {
                Output::Send { data, .. } => viewer.send(&data).await,
                Output::AppendInit { data } => {
                    assert_eq!(data.len() as u64, manifest.init().size);
                    played.init_appended = true;
                }
                Output::Append { seg, data } => {
                    assert_eq!(data.len() as u64, manifest.entry(seg).size);
                    played.appended.push(seg.get());
                }
                Output::EndOfStream => played.ended = true,
                Output::HttpFetch {
                    res: Resource::Init,
                } => {
                    let url = format!(
                        "{origin}/vod/{}/{}",
                        manifest.content_id(),
                        manifest.init().uri
                    );
                    let body = http.get(url).send().await.unwrap().bytes().await.unwrap();
                    engine.handle_input(
                        now(),
                        Input::HttpDone {
                            res: Resource::Init,
                            data: body.to_vec(),
                        },
                    );
                }
                Output::HttpFetch { res } => {
                    played.http_segments += 1;
                    engine.handle_input(now(), Input::HttpFailed { res });
                }
                Output::DropPeer { reason, .. } | Output::ClosePeer { reason, .. } => {
                    panic!("the viewer engine closed the seed: {reason}")
                }
                Output::RemoveMedia { .. }
                | Output::Load { .. }
                | Output::CheckSignature { .. }
                | Output::SeekTo { .. }
                | Output::RefreshLiveManifest
                | Output::PlaybackRate { .. } => {}
            }
        }
        if played.ended {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {} segments after {limit:?}",
            played.appended.len(),
            manifest.segment_count()
        );
        match timeout(Duration::from_millis(100), viewer.dc.poll()).await {
            Ok(Some(DataChannelEvent::OnMessage(m))) => engine.handle_input(
                now(),
                Input::PeerData {
                    peer: 1,
                    data: &m.data,
                },
            ),
            Ok(Some(_)) => {}
            Ok(None) => panic!("viewer channel closed"),
            Err(_) => engine.handle_input(now(), Input::Timeout),
        }
    }
    played.bytes_from_seed = engine.stats().bytes_from_seed;
    played
}
