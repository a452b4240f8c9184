//! WebRTC data-channel host of the seed: the only module of `shoal-seed` that imports `webrtc`.
//!
//! Built on webrtc-rs **0.21.1** (pinned exactly: its API breaks at every minor release; it is
//! the 2026 rewrite over a sans-IO core, with event *polling* instead of callbacks). Nothing of
//! `webrtc` leaks out of this module: callers see only SDP strings, bytes and tokio channels.
//!
//! # Usage
//!
//! ```ignore
//! use shoal_seed::rtc::{RtcConfig, RtcEvent, RtcHost};
//!
//! let host = RtcHost::new(RtcConfig { bind_ip: public_ip, ..RtcConfig::default() });
//! // A viewer's offer arrives over signaling (its data channel "shoal" is created by the browser):
//! let (answer_sdp, mut conn) = host.accept_offer(&offer_sdp).await?;
//! // send `answer_sdp` back ({type:"answer", sdp}); it is complete (non-trickle): all our
//! // candidates are inside, so the seed never trickles. If the browser trickles its own
//! // candidates, pass each to `conn.add_remote_candidate(..)` (an empty string = end of candidates).
//! let sender = conn.sender.clone();
//! tokio::spawn(async move {
//!     while let Some(ev) = conn.events.recv().await {
//!         match ev {
//!             RtcEvent::Open => { /* channel usable */ }
//!             RtcEvent::Message(bytes) => { let _ = sender.send(bytes).await; }
//!             RtcEvent::Closed => break,
//!         }
//!     }
//!     // `recv()` returning `None` also means closed.
//! });
//! ```
//!
//! # Semantics
//!
//! * One [`RtcConn`] = one peer connection with one data channel, labelled [`DATA_CHANNEL_LABEL`]
//!   and opened by the remote (browser) side. Other channels the remote opens are closed at once.
//! * [`RtcEvent::Open`] comes first, then binary [`RtcEvent::Message`]s (text messages are
//!   dropped with a log line), then [`RtcEvent::Closed`] once, after which the stream ends.
//!   `Closed` is delivered best-effort (within 5 s if the receiver is full); the stream ending
//!   (`recv()` = `None`) is the definitive signal.
//! * Receive back-pressure: `events` is bounded ([`EVENT_QUEUE`]); while the application does not
//!   read, the library stops draining SCTP and the remote's sends stall (window closes).
//! * Send back-pressure: [`RtcSender::send`] awaits until the channel's unacknowledged bytes are
//!   below [`RtcConfig::send_buffer_limit`], so memory per connection is bounded. `send` before the
//!   channel opened waits for the open; after close it returns an error.
//! * Cleanup: the connection is torn down (UDP socket closed, driver task stopped, every buffer
//!   freed) when the data channel closes, the peer connection fails or closes (ICE failure after
//!   ~15 s of silence), [`RtcSender::close`] is called, the `events` receiver is dropped, or the
//!   channel has not opened within [`OPEN_TIMEOUT`]. Clones of [`RtcSender`] kept after that hold
//!   no connection state (sends just fail). [`RtcHost::live_connections`] counts connections not
//!   yet torn down.
//!
//! # Network settings (see shared/TOOLCHAIN.md)
//!
//! * One UDP socket per connection, bound on `bind_ip:0` (never the wildcard: webrtc-rs expands
//!   `0.0.0.0` to every non-loopback interface). It yields exactly one host candidate, `bind_ip`.
//!   `bind_ip` must be a concrete IPv4 address (127.0.0.1 in tests, the seed's public IP in
//!   production); UDP4 only, no TCP, no STUN/TURN, mDNS disabled.
//! * SCTP max message size advertised 262144 (default 65536 makes larger sends fail), SCTP MTU
//!   1200 (a 16 KiB + 10-byte message is then 14 nearly full fragments instead of 15 with a
//!   154-byte tail at the default 1191; once the socket buffers below stopped the kernel drops,
//!   both measured the same on loopback, 30-40 MB/s, so the earlier "tiny fragment stall" was
//!   most likely drop + retransmission-timeout stalls).
//! * UDP socket buffers of [`UDP_SOCKET_BUFFER`] (kernel-capped by `net.core.rmem_max`/`wmem_max`).
//! * ICE checks every 20 ms while connecting (channel opens ~100 ms after the answer instead of
//!   ~200 ms), with up to 100 checks per pair (2 s) so that slow paths still connect.
//! * ICE timeouts: disconnected after 5 s of silence, failed 10 s later; a peer that vanishes
//!   without a goodbye is thus torn down after ~15 s (measured 14.7 s in the loopback test).
//!
//! # Logging
//!
//! Our own lines use `tracing` (target `shoal_seed::rtc`, span `rtc{conn=N}`). webrtc-rs logs
//! through `log`, with a few harmless per-connection WARNs (`rtc_dtls::config: conn.remote_addr is
//! empty`, `rtc_ice::agent: pingAllCandidates called with no candidate pairs` for trickle offers,
//! `IceHandler.handle_read got error: password is empty`): filter with
//! `rtc_dtls=error,rtc_ice=error,rtc=error,webrtc=error`.
//!
//! The crate is named `rtc` like this module: inside the crate, the webrtc-rs core is `::rtc`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use ::rtc::ice::mdns::MulticastDnsMode;
use ::rtc::ice::network_type::NetworkType;
use ::rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info, warn, Instrument};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
    TokioRuntime,
};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription, SettingEngineBuilder,
};

/// Label of the one data channel a viewer opens to the seed.
pub const DATA_CHANNEL_LABEL: &str = "shoal";
/// Largest message either side may send (advertised in SDP as `a=max-message-size`).
pub const MAX_MESSAGE_SIZE: u32 = 262_144;
/// SCTP MTU: per-DATA-packet budget in bytes.
pub const SCTP_MTU: u32 = 1200;
/// The data channel must open within this time after the answer, or the connection is dropped.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Capacity of [`RtcConn::events`] (messages, not bytes).
pub const EVENT_QUEUE: usize = 64;
/// How long `accept_offer` waits for ICE gathering (completes within milliseconds on a bound socket).
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on `PeerConnection::close` (it waits itself at most ~100 ms for the driver).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Requested `SO_RCVBUF`/`SO_SNDBUF` of each connection's UDP socket. The kernel caps it at
/// `net.core.rmem_max`/`wmem_max` (often 208 KiB: raise them on the seed host). The default
/// buffer overflows under CPU contention when an SCTP window (1 MiB) arrives in a burst; every
/// drop then costs an SCTP retransmission timeout (measured: seconds of stall per 32 MiB).
pub const UDP_SOCKET_BUFFER: usize = 4 << 20;

/// Tokio runtime for webrtc-rs whose only change is larger UDP socket buffers.
#[derive(Debug)]
struct SeedRuntime(TokioRuntime);

impl Runtime for SeedRuntime {
    fn spawn(
        &self,
        future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.0.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.0.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(
        &self,
        socket: std::net::UdpSocket,
    ) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
        let sock = socket2::SockRef::from(&socket);
        if let Err(e) = sock.set_recv_buffer_size(UDP_SOCKET_BUFFER) {
            debug!("SO_RCVBUF: {e}");
        }
        if let Err(e) = sock.set_send_buffer_size(UDP_SOCKET_BUFFER) {
            debug!("SO_SNDBUF: {e}");
        }
        debug!(
            rcvbuf = sock.recv_buffer_size().unwrap_or(0),
            sndbuf = sock.send_buffer_size().unwrap_or(0),
            "udp socket buffers"
        );
        self.0.wrap_udp_socket(socket)
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> std::io::Result<Arc<dyn AsyncTcpListener>> {
        self.0.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>,
    > {
        self.0.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Vec<SocketAddr>>> + Send + 'a>,
    > {
        self.0.resolve_host(host)
    }

    fn now(&self) -> std::time::Instant {
        self.0.now()
    }

    fn sleep(
        &self,
        duration: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        self.0.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.0.interval(period)
    }

    fn block_on(&self, future: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>) {
        self.0.block_on(future)
    }

    fn yield_now(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        self.0.yield_now()
    }

    fn name(&self) -> &'static str {
        "shoal-tokio"
    }
}

/// Configuration of an [`RtcHost`].
#[derive(Clone, Debug)]
pub struct RtcConfig {
    /// Address every connection's UDP socket binds (port chosen by the OS). Concrete IPv4 only:
    /// 127.0.0.1 in tests, the seed's public IP in production.
    pub bind_ip: IpAddr,
    /// Per-connection send buffer: [`RtcSender::send`] waits while this many bytes are unacknowledged.
    pub send_buffer_limit: usize,
}

impl Default for RtcConfig {
    fn default() -> Self {
        RtcConfig {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            send_buffer_limit: 1 << 20,
        }
    }
}

/// Accepts browsers' offers. Cheap to clone (shared state behind an `Arc`).
#[derive(Clone)]
pub struct RtcHost {
    cfg: Arc<RtcConfig>,
    live: Arc<AtomicUsize>,
    runtime: Arc<dyn Runtime>,
}

/// Event of one connection, read from [`RtcConn::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcEvent {
    /// The data channel is open: sends go out from now on.
    Open,
    /// A binary message from the remote.
    Message(Vec<u8>),
    /// The connection is closed and its resources released; no event follows.
    Closed,
}

/// One viewer connection, returned by [`RtcHost::accept_offer`].
///
/// Dropping `events` (or the whole `RtcConn`) closes the connection.
pub struct RtcConn {
    /// Events in order: `Open`, `Message`s, `Closed`.
    pub events: mpsc::Receiver<RtcEvent>,
    /// Sending half; clone it freely.
    pub sender: RtcSender,
    id: u64,
}

/// Sending half of a connection. Clones share the connection; they keep no connection state
/// alive after it closed.
#[derive(Clone)]
pub struct RtcSender {
    id: u64,
    slot: watch::Receiver<Slot>,
    close: Arc<Notify>,
    pc: Weak<dyn PeerConnection>,
}

#[derive(Clone)]
enum Slot {
    Pending,
    Open(Arc<dyn DataChannel>),
    Closed,
}

/// What the library's event handler (running on the connection's driver task) reports to the
/// connection's supervisor task. Never blocks the driver: unbounded, and bounded in practice
/// (a few state changes; extra data channels are closed as they come).
enum Ctl {
    GatheringComplete,
    State(RTCPeerConnectionState),
    DataChannel(Arc<dyn DataChannel>),
}

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
        }
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
    pub async fn accept_offer(&self, offer_sdp: &str) -> anyhow::Result<(String, RtcConn)> {
        let bind_ip = self.cfg.bind_ip;
        if bind_ip.is_unspecified() || !bind_ip.is_ipv4() {
            bail!("rtc bind_ip {bind_ip} is not a concrete IPv4 address");
        }
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned())
            .map_err(|e| anyhow!("invalid offer SDP: {e}"))?;
        if !offer_sdp.contains("m=application") {
            bail!("offer has no data channel (m=application) section");
        }

        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!("rtc", conn = id);
        let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();

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
            )
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(setting_engine)
            .with_handler(Arc::new(Handler { id, ctl: ctl_tx }))
            .with_runtime(self.runtime.clone())
            .with_udp_addrs(vec![SocketAddr::new(bind_ip, 0)])
            .with_data_channel_send_buffer_limit(self.cfg.send_buffer_limit)
            .build()
            .await
            .map_err(|e| anyhow!("creating peer connection on {bind_ip}: {e}"))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        // From here on every failure must close `pc`, which stops its driver task.
        let mut early = Vec::new();
        let answer = async {
            pc.set_remote_description(offer)
                .await
                .map_err(|e| anyhow!("set_remote_description: {e}"))?;
            let answer = pc
                .create_answer(None)
                .await
                .map_err(|e| anyhow!("create_answer: {e}"))?;
            pc.set_local_description(answer)
                .await
                .map_err(|e| anyhow!("set_local_description: {e}"))?;
            tokio::time::timeout(GATHER_TIMEOUT, async {
                loop {
                    match ctl_rx.recv().await {
                        Some(Ctl::GatheringComplete) => return Ok(()),
                        Some(other) => early.push(other),
                        None => bail!("peer connection driver stopped"),
                    }
                }
            })
            .await
            .context("ICE gathering did not complete")??;
            let desc = pc
                .local_description()
                .await
                .ok_or_else(|| anyhow!("no local description"))?;
            if !desc.sdp.contains("a=candidate:") {
                bail!("answer has no ICE candidate (bind {bind_ip} failed?)");
            }
            anyhow::Ok(desc.sdp)
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
            sender: RtcSender {
                id,
                slot,
                close: close.clone(),
                pc: Arc::downgrade(&pc),
            },
            id,
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

/// Decrements the live-connection count when the supervisor task ends (even if it panics).
struct LiveGuard(Arc<AtomicUsize>);
impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn close_pc(pc: &Arc<dyn PeerConnection>) {
    match tokio::time::timeout(CLOSE_TIMEOUT, pc.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!("peer connection close: {e}"),
        Err(_) => warn!("peer connection close timed out"),
    }
}

/// Owns the peer connection (the only strong reference) for its whole life.
struct Supervisor {
    pc: Arc<dyn PeerConnection>,
    ctl_rx: mpsc::UnboundedReceiver<Ctl>,
    early: Vec<Ctl>,
    events_tx: mpsc::Sender<RtcEvent>,
    slot_tx: watch::Sender<Slot>,
    close: Arc<Notify>,
}

/// Why a connection ended.
type Reason = &'static str;

impl Supervisor {
    async fn run(mut self) {
        let reason = self.drive().await;
        info!(reason, "rtc connection closed");
        // Drop the data channel handle held for senders, then stop the driver (closes the
        // socket, ends every stream); then tell the application.
        self.slot_tx.send_replace(Slot::Closed);
        close_pc(&self.pc).await;
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.events_tx.send(RtcEvent::Closed),
        )
        .await;
        // `self` (pc, channels, handler via pc) dropped here.
    }

    /// A control event; `Err` ends the connection.
    async fn on_ctl(&mut self, ctl: Option<Ctl>, open: bool) -> Result<Option<Arc<dyn DataChannel>>, Reason> {
        match ctl {
            None => Err("peer connection driver stopped"),
            Some(Ctl::GatheringComplete) => Ok(None),
            Some(Ctl::State(state)) => match state {
                RTCPeerConnectionState::Failed => Err("peer connection failed"),
                RTCPeerConnectionState::Closed => Err("peer connection closed"),
                RTCPeerConnectionState::Connected => {
                    debug!("peer connection connected");
                    Ok(None)
                }
                _ => Ok(None),
            },
            Some(Ctl::DataChannel(dc)) => {
                let label = dc.label().await.unwrap_or_default();
                if open || label != DATA_CHANNEL_LABEL {
                    warn!(label, "closing unexpected extra data channel");
                    let _ = dc.close().await;
                    Ok(None)
                } else {
                    Ok(Some(dc))
                }
            }
        }
    }

    async fn drive(&mut self) -> Reason {
        // Phase 1: wait for the browser's channel to open.
        let deadline = tokio::time::sleep(OPEN_TIMEOUT);
        tokio::pin!(deadline);
        let mut early = std::mem::take(&mut self.early).into_iter();
        let dc = loop {
            let ctl = if let Some(c) = early.next() {
                Some(c)
            } else {
                tokio::select! {
                    _ = &mut deadline => return "data channel did not open in time",
                    _ = self.close.notified() => return "closed locally",
                    _ = self.events_tx.closed() => return "events receiver dropped",
                    ctl = self.ctl_rx.recv() => ctl,
                }
            };
            match self.on_ctl(ctl, false).await {
                Err(reason) => return reason,
                Ok(Some(dc)) => break dc,
                Ok(None) => {}
            }
        };
        // Whatever else arrived before the answer was returned (state changes).
        for ctl in early {
            if let Err(reason) = self.on_ctl(Some(ctl), true).await {
                return reason;
            }
        }

        self.slot_tx.send_replace(Slot::Open(dc.clone()));
        info!("data channel open");
        if let Err(reason) = self.deliver(RtcEvent::Open).await {
            return reason;
        }

        // Phase 2: pump the channel's events to the application.
        loop {
            tokio::select! {
                ev = dc.poll() => match ev {
                    None | Some(DataChannelEvent::OnClose) => return "data channel closed",
                    Some(DataChannelEvent::OnMessage(msg)) => {
                        if msg.is_string {
                            debug!(len = msg.data.len(), "dropping text message");
                            continue;
                        }
                        if let Err(reason) = self.deliver(RtcEvent::Message(Vec::from(msg.data))).await {
                            return reason;
                        }
                    }
                    Some(DataChannelEvent::OnError) => debug!("data channel error event"),
                    Some(_) => {}
                },
                _ = self.close.notified() => return "closed locally",
                _ = self.events_tx.closed() => return "events receiver dropped",
                ctl = self.ctl_rx.recv() => {
                    if let Err(reason) = self.on_ctl(ctl, true).await {
                        return reason;
                    }
                }
            }
        }
    }

    /// Hands one event to the application, waiting for queue space (receive back-pressure)
    /// but still honouring close requests and connection failure meanwhile.
    async fn deliver(&mut self, ev: RtcEvent) -> Result<(), Reason> {
        let permit = loop {
            tokio::select! {
                permit = self.events_tx.reserve() => match permit {
                    Ok(p) => break p,
                    Err(_) => return Err("events receiver dropped"),
                },
                _ = self.close.notified() => return Err("closed locally"),
                ctl = self.ctl_rx.recv() => {
                    // `self.on_ctl` cannot be called while `reserve` borrows `events_tx`.
                    match ctl {
                        None => return Err("peer connection driver stopped"),
                        Some(Ctl::State(RTCPeerConnectionState::Failed)) => return Err("peer connection failed"),
                        Some(Ctl::State(RTCPeerConnectionState::Closed)) => return Err("peer connection closed"),
                        Some(Ctl::DataChannel(extra)) => {
                            warn!("closing unexpected extra data channel");
                            let _ = extra.close().await;
                        }
                        Some(_) => {}
                    }
                }
            }
        };
        permit.send(ev);
        Ok(())
    }
}

impl RtcSender {
    /// Connection id (for logs).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends one binary message (at most [`MAX_MESSAGE_SIZE`] bytes). Waits for the channel to
    /// open, then for send-buffer capacity (back-pressure). Errors once the connection is closed.
    pub async fn send(&self, data: Vec<u8>) -> anyhow::Result<()> {
        if data.len() > MAX_MESSAGE_SIZE as usize {
            bail!("message of {} bytes exceeds {MAX_MESSAGE_SIZE}", data.len());
        }
        let dc = self.channel().await?;
        // Vec -> Bytes -> BytesMut is zero-copy (unique buffer).
        dc.send(BytesMut::from(Bytes::from(data)))
            .await
            .map_err(|e| anyhow!("rtc send: {e}"))
    }

    /// Bytes handed to `send` and not yet acknowledged by the remote (0 before open/after close).
    pub async fn buffered(&self) -> usize {
        let dc = match &*self.slot.borrow() {
            Slot::Open(dc) => dc.clone(),
            _ => return 0,
        };
        dc.outstanding_bytes().await.unwrap_or(0)
    }

    /// Whether the connection is closed (sends fail).
    pub fn is_closed(&self) -> bool {
        matches!(&*self.slot.borrow(), Slot::Closed)
    }

    /// Closes the connection and waits (at most a few seconds) until it is torn down.
    /// Idempotent; the events stream then yields `Closed`.
    pub async fn close(&self) {
        self.close.notify_one();
        let mut slot = self.slot.clone();
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT + Duration::from_secs(1),
            slot.wait_for(|s| matches!(s, Slot::Closed)),
        )
        .await;
    }

    /// Adds a candidate trickled by the browser (`candidate` as in `RTCIceCandidate.candidate`,
    /// with or without the `candidate:` prefix; empty = end of candidates). mDNS (`.local`),
    /// IPv6 and TCP candidates are ignored (`Ok`): the seed resolves no mDNS and speaks UDP over
    /// IPv4 only. Errors on an unparseable candidate or a closed connection. Not needed for
    /// connectivity as such: a browser that sends us checks is learnt as peer-reflexive anyway.
    pub async fn add_remote_candidate(
        &self,
        candidate: &str,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    ) -> anyhow::Result<()> {
        let fields: Vec<&str> = candidate.split_whitespace().collect();
        if fields.len() > 4
            && (fields[4].ends_with(".local")
                || fields[4].contains(':')
                || !fields[2].eq_ignore_ascii_case("udp"))
        {
            debug!(conn = self.id, candidate, "ignoring remote candidate");
            return Ok(());
        }
        let pc = self
            .pc
            .upgrade()
            .ok_or_else(|| anyhow!("rtc connection closed"))?;
        pc.add_ice_candidate(RTCIceCandidateInit {
            candidate: candidate.to_owned(),
            sdp_mid,
            sdp_mline_index,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("add_ice_candidate: {e}"))
    }

    async fn channel(&self) -> anyhow::Result<Arc<dyn DataChannel>> {
        let mut slot = self.slot.clone();
        let s = slot
            .wait_for(|s| !matches!(s, Slot::Pending))
            .await
            .map_err(|_| anyhow!("rtc connection closed"))?;
        match &*s {
            Slot::Open(dc) => Ok(dc.clone()),
            _ => Err(anyhow!("rtc connection closed")),
        }
    }
}

impl RtcConn {
    /// Connection id (for logs).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Adds a candidate trickled by the browser; see [`RtcSender::add_remote_candidate`] (the
    /// same, usable after `events` was moved out of the `RtcConn`).
    pub async fn add_remote_candidate(
        &self,
        candidate: &str,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    ) -> anyhow::Result<()> {
        self.sender
            .add_remote_candidate(candidate, sdp_mid, sdp_mline_index)
            .await
    }
}
