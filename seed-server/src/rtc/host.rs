//! Answering a browser's offer: the webrtc-rs settings (loopback or one public IPv4, UDP4, no
//! mDNS, large messages), the negotiation, and the hand-over of the new peer connection to its
//! [`Supervisor`].
//!
//! Invariant: when [`RtcHost::accept_offer`] returns an error, nothing is left running (the
//! peer connection, if made, is closed); when it returns a connection, its supervisor task owns
//! the peer connection and [`RtcHost::live_connections`] counts it until that task ends.

use super::conn::{close_pc, Ctl, Slot, Supervisor};
use super::runtime::SeedRuntime;
use super::{RtcConfig, RtcConn, RtcError, RtcSender, EVENT_QUEUE, MAX_MESSAGE_SIZE, SCTP_MTU};
use ::rtc::ice::mdns::MulticastDnsMode;
use ::rtc::ice::network_type::NetworkType;
use ::rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, warn, Instrument};
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceConnectionState, RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState,
    RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::runtime::{Runtime, TokioRuntime};

/// How long `accept_offer` waits for ICE gathering (completes within milliseconds on a bound socket).
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts browsers' offers. Cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct RtcHost {
    cfg: Arc<RtcConfig>,
    live: Arc<AtomicUsize>,
    runtime: Arc<dyn Runtime>,
    /// Next port to try in `cfg.udp_ports`.
    port_cursor: Arc<AtomicUsize>,
}

/// Forwards the library's callbacks (run on the connection's driver task) to the supervisor.
/// Never blocks the driver.
struct Handler {
    id: u64,
    ctl: mpsc::UnboundedSender<Ctl>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.ctl.send(Ctl::GatheringComplete);
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        debug!(conn = self.id, %state, "ice connection state");
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        debug!(conn = self.id, %state, "peer connection state");
        let _ = self.ctl.send(Ctl::State(state));
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        // Must return at once: this runs on the driver. The supervisor polls the channel.
        let _ = self.ctl.send(Ctl::DataChannel(dc));
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Decrements the live-connection count when the supervisor task ends (even if it panics).
struct LiveGuard(Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl RtcHost {
    /// A host whose connections bind `cfg.bind_ip`. `bind_ip` is checked by `accept_offer`.
    pub fn new(cfg: RtcConfig) -> Self {
        if cfg.bind_ip.is_unspecified() || !cfg.bind_ip.is_ipv4() {
            warn!(bind_ip = %cfg.bind_ip, "rtc bind_ip must be a concrete IPv4 address: every offer will be refused");
        }
        RtcHost {
            cfg: Arc::new(cfg),
            live: Arc::new(AtomicUsize::new(0)),
            runtime: Arc::new(SeedRuntime(TokioRuntime)),
            port_cursor: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A free UDP port of `cfg.udp_ports` (round robin from the last one
    /// given), or 0 (the OS chooses) without a range.
    fn pick_port(&self) -> Result<u16, RtcError> {
        let Some((lo, hi)) = self.cfg.udp_ports else {
            return Ok(0);
        };
        let n = usize::from(hi - lo) + 1;
        for _ in 0..n {
            let port = lo + (self.port_cursor.fetch_add(1, Ordering::Relaxed) % n) as u16;
            // Probed, then closed for webrtc-rs to bind: another process may
            // take it in between, and the connection then fails to build.
            if std::net::UdpSocket::bind(SocketAddr::new(self.cfg.bind_ip, port)).is_ok() {
                return Ok(port);
            }
        }
        Err(RtcError::NoFreePort(lo, hi))
    }

    /// The configuration this host was built with.
    pub fn config(&self) -> &RtcConfig {
        &self.cfg
    }

    /// Connections accepted and not yet torn down.
    pub fn live_connections(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Answers a browser's offer (trickle or not). Returns the complete answer SDP (all our
    /// candidates inside) and the connection. Errors on an unparseable or unusable offer
    /// (nothing is left running then).
    pub async fn accept_offer(&self, offer_sdp: &str) -> Result<(String, RtcConn), RtcError> {
        let bind_ip = self.cfg.bind_ip;
        if bind_ip.is_unspecified() || !bind_ip.is_ipv4() {
            return Err(RtcError::BadBindIp(bind_ip));
        }
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned())
            .map_err(|e| RtcError::InvalidOffer(e.to_string()))?;
        if !offer_sdp.contains("m=application") {
            return Err(RtcError::NoDataChannel);
        }

        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("rtc", conn = id);
        let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();

        let port = self.pick_port()?;
        let setting_engine = SettingEngineBuilder::new()
            .with_network_types(vec![NetworkType::Udp4])
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(MAX_MESSAGE_SIZE))
            .with_sctp_mtu(SCTP_MTU)
            .with_ice_connection_attempts(Some(Duration::from_millis(20)), Some(100))
            .with_ice_timeouts(
                Some(Duration::from_secs(5)),
                Some(Duration::from_secs(10)),
                Some(Duration::from_secs(2)),
            );
        let mut rtc_cfg = RTCConfigurationBuilder::new();
        if !self.cfg.stun.is_empty() {
            rtc_cfg = rtc_cfg.with_ice_servers(vec![RTCIceServer {
                urls: self.cfg.stun.clone(),
                ..Default::default()
            }]);
        }
        let pc = PeerConnectionBuilder::new()
            .with_configuration(rtc_cfg.build())
            .with_setting_engine(setting_engine.build())
            .with_handler(Arc::new(Handler { id, ctl: ctl_tx }))
            .with_runtime(self.runtime.clone())
            .with_udp_addrs(vec![SocketAddr::new(bind_ip, port)])
            .with_data_channel_send_buffer_limit(self.cfg.effective_send_buffer_limit())
            .build()
            .await
            .map_err(|e| RtcError::negotiation("creating peer connection", e))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        // From here on every failure must close `pc`, which stops its driver task.
        let mut early = Vec::new();
        let answer = async {
            pc.set_remote_description(offer)
                .await
                .map_err(|e| RtcError::negotiation("set_remote_description", e))?;
            let answer = pc
                .create_answer(None)
                .await
                .map_err(|e| RtcError::negotiation("create_answer", e))?;
            pc.set_local_description(answer)
                .await
                .map_err(|e| RtcError::negotiation("set_local_description", e))?;
            tokio::time::timeout(GATHER_TIMEOUT, async {
                loop {
                    match ctl_rx.recv().await {
                        Some(Ctl::GatheringComplete) => return Ok(()),
                        Some(other) => early.push(other),
                        None => return Err(RtcError::DriverStopped),
                    }
                }
            })
            .await
            .map_err(|_| RtcError::GatherTimeout(GATHER_TIMEOUT))??;
            let desc = pc.local_description().await.ok_or_else(|| {
                RtcError::negotiation("local_description", "no local description")
            })?;
            if !desc.sdp.contains("a=candidate:") {
                return Err(RtcError::NoCandidate(bind_ip));
            }
            // webrtc-rs 0.21 keeps SettingEngine's NAT 1:1 list but never
            // applies it: the answer is complete (no trickle), so its
            // candidates are rewritten here.
            Ok(match self.cfg.public_ip {
                Some(public) => announce_as(&desc.sdp, bind_ip, public),
                None => desc.sdp,
            })
        }
        .instrument(span.clone())
        .await;
        let answer = match answer {
            Ok(sdp) => sdp,
            Err(e) => {
                close_pc(&pc).await;
                return Err(e);
            }
        };

        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (slot_tx, slot) = watch::channel(Slot::Pending);
        let close = Arc::new(Notify::new());
        let conn = RtcConn {
            events,
            sender: RtcSender::new(id, slot, close.clone(), Arc::downgrade(&pc)),
        };
        self.live.fetch_add(1, Ordering::AcqRel);
        let live = LiveGuard(self.live.clone());
        let sup = Supervisor {
            pc,
            ctl_rx,
            early,
            events_tx,
            slot_tx,
            close,
        };
        tokio::spawn(
            async move {
                let _live = live;
                sup.run().await;
            }
            .instrument(span),
        );
        debug!(conn = id, "answer ready");
        Ok((answer, conn))
    }
}

/// `sdp` with every candidate (and connection line) that names `bound`
/// naming `public` instead: what a peer outside a 1:1 NAT must dial.
pub(crate) fn announce_as(sdp: &str, bound: IpAddr, public: IpAddr) -> String {
    let (bound, public) = (bound.to_string(), public.to_string());
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("a=candidate:") {
            let mut f: Vec<&str> = line.split(' ').collect();
            if f.len() > 5 && f[4] == bound {
                f[4] = &public;
            }
            out.push_str(&f.join(" "));
        } else if line.trim_end() == format!("c=IN IP4 {bound}") {
            out.push_str(&line.replace(&bound, &public));
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::announce_as;

    #[test]
    fn only_the_bound_address_is_rewritten() {
        let sdp = "v=0\r\nc=IN IP4 10.0.0.5\r\na=candidate:1 1 udp 2130706431 10.0.0.5 50000 typ host\r\na=candidate:2 1 udp 1 10.0.0.6 50001 typ host\r\na=mid:0\r\n";
        let out = announce_as(
            sdp,
            "10.0.0.5".parse().unwrap(),
            "203.0.113.7".parse().unwrap(),
        );
        assert_eq!(out, "v=0\r\nc=IN IP4 203.0.113.7\r\na=candidate:1 1 udp 2130706431 203.0.113.7 50000 typ host\r\na=candidate:2 1 udp 1 10.0.0.6 50001 typ host\r\na=mid:0\r\n");
    }
}
