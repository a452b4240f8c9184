//! WebRTC data-channel host of the seed: the only module of `shoal-seed` that imports `webrtc`.
//!
//! Built on webrtc-rs **0.21.1** (pinned exactly: its API breaks at every minor release; it is
//! the 2026 rewrite over a sans-IO core, with event *polling* instead of callbacks). Nothing of
//! `webrtc` leaks out of this module: callers see only SDP strings, bytes, tokio channels and
//! [`RtcError`].
//!
//! Layout: `host` answers offers (settings, negotiation); `conn` supervises one connection
//! from answer to teardown; `sender` is the sending half handed to the application;
//! `runtime` is the tokio runtime webrtc-rs runs on (larger UDP buffers); `error` says what
//! went wrong.
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
//!             RtcEvent::BadFrame(what) => { /* a protocol error of the remote */ }
//!             RtcEvent::Closed => break,
//!         }
//!     }
//!     // `recv()` returning `None` also means closed.
//! });
//! ```
//!
//! # Invariants
//!
//! * One [`RtcConn`] = one peer connection with one data channel, labelled [`DATA_CHANNEL_LABEL`]
//!   and opened by the remote (browser) side. Other channels the remote opens are closed at once.
//! * [`RtcEvent::Open`] comes first, then binary [`RtcEvent::Message`]s (a text or over-size
//!   message arrives as [`RtcEvent::BadFrame`], without its bytes), then [`RtcEvent::Closed`]
//!   once, after which the stream ends. `Closed` is delivered best-effort (within 5 s if the
//!   receiver is full); the stream ending (`recv()` = `None`) is the definitive signal.
//! * Receive back-pressure: `events` is bounded ([`EVENT_QUEUE`]); while the application does not
//!   read, the library stops draining SCTP and the remote's sends stall (window closes).
//! * Send back-pressure: [`RtcSender::send`] awaits until the channel's unacknowledged bytes are
//!   below [`RtcConfig::send_buffer_limit`], so memory per connection is bounded. `send` before the
//!   channel opened waits for the open; after close it returns an error.
//! * Cleanup: the connection is torn down (UDP socket closed, driver task stopped, every buffer
//!   freed) when the data channel closes, the peer connection fails or closes (ICE failure after
//!   ~15 s of silence), [`RtcSender::close`] is called, the `events` receiver is dropped, or the
//!   channel has not opened within [`OPEN_TIMEOUT`] (a backstop: the seed's hub closes earlier,
//!   after its own handshake timeout). Clones of [`RtcSender`] kept after that hold no
//!   connection state (sends just fail). [`RtcHost::live_connections`] counts connections not yet
//!   torn down.
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
//! * Send-buffer limit [`RtcConfig::send_buffer_limit`] (1 MiB), but at most
//!   [`LOOPBACK_SEND_BUFFER_LIMIT`] on a loopback `bind_ip`: unpaced loopback bursts overflow the
//!   browser's 128 KiB UDP receive buffer, and each lost burst tail costs a >= 1 s SCTP
//!   retransmission timeout.
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

mod conn;
mod error;
mod host;
mod runtime;
mod sender;

pub use error::RtcError;
pub use host::RtcHost;
pub use sender::RtcSender;

use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::mpsc;

/// Label of the one data channel a viewer opens to the seed.
pub const DATA_CHANNEL_LABEL: &str = "shoal";
/// Largest message either side may send (advertised in SDP as `a=max-message-size`).
pub const MAX_MESSAGE_SIZE: u32 = 262_144;
/// SCTP MTU: per-DATA-packet budget in bytes.
pub const SCTP_MTU: u32 = 1200;
/// The data channel must open within this time after the answer, or the connection is torn
/// down (a backstop for every user of this module; the seed's hub closes earlier).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Capacity of [`RtcConn::events`] (messages, not bytes).
pub const EVENT_QUEUE: usize = 64;
/// Requested `SO_RCVBUF`/`SO_SNDBUF` of each connection's UDP socket. The kernel caps it at
/// `net.core.rmem_max`/`wmem_max` (often 208 KiB: raise them on the seed host). The default
/// buffer overflows under CPU contention when an SCTP window (1 MiB) arrives in a burst; every
/// drop then costs an SCTP retransmission timeout (measured: seconds of stall per 32 MiB).
pub const UDP_SOCKET_BUFFER: usize = 4 << 20;

/// Send-buffer limit used instead of [`RtcConfig::send_buffer_limit`] (when smaller) if
/// `bind_ip` is a loopback address. Chromium's WebRTC UDP socket has a receive buffer of
/// 128 KiB (`ss -uampn`: `rb131072`), about 56 datagrams of 1200 bytes (2304 bytes of kernel
/// accounting each). On loopback nothing paces the seed's sends, so a window of 1 MiB arrives in
/// bursts that overflow it (measured: 60-160 `RcvbufErrors` per 10 MB); the lost tail of a
/// burst is recovered only by SCTP's retransmission timeout, at least 1 s in webrtc-rs
/// (`RTO_MIN`, not configurable), because a request/response viewer sends nothing more until
/// the lost piece arrives. Outstanding bytes stay below this limit plus one message (16 KiB
/// pieces: at most 48 KiB, ~42 datagrams), so the browser's buffer cannot overflow. Measured
/// with `npm run bench:seed-rtc` (release seed, 10.8 MB, busy 2-core machine): 1 MiB gave
/// 1.9-7 MB/s with 70-300 drops per run; 32 KiB 9-24 MB/s with none (2.5-5x in interleaved
/// runs); 64 KiB still dropped. With 16 KiB pieces the window is then two pieces; a webrtc-rs
/// client (4 MiB socket buffers, `tests/rtc_loopback.rs`) still gets ~50 MB/s.
/// Over a real network the bottleneck link paces arrivals and the bandwidth-delay product needs
/// the full window, so other addresses keep [`RtcConfig::send_buffer_limit`].
/// Pacing instead of a small window was tried (a token bucket wrapping the UDP socket,
/// interleaved runs on a loaded machine, `udp_rcvbuf_drops` of the bench): at 300 Mbit/s with
/// 32 KiB bursts and a 256 KiB or 1 MiB window Chromium still dropped (67-674 datagrams per
/// 43 MB, 7.9-14.8 MB/s); at 200 Mbit/s with 16 KiB bursts nothing dropped but tokio's 1 ms timer
/// capped it (9.6-9.9 MB/s); the window alone gave 10.9-18.6 MB/s with no drop. The window is
/// ack-clocked by Chromium's SACKs, which a timer cannot beat at 1 ms granularity.
pub const LOOPBACK_SEND_BUFFER_LIMIT: usize = 32 << 10;

/// Configuration of an [`RtcHost`].
#[derive(Clone, Debug)]
pub struct RtcConfig {
    /// Address every connection's UDP socket binds (port chosen by the OS). Concrete IPv4 only:
    /// 127.0.0.1 in tests, the seed's public IP in production.
    pub bind_ip: IpAddr,
    /// Per-connection send buffer: [`RtcSender::send`] waits while this many bytes are
    /// unacknowledged (on loopback at most [`LOOPBACK_SEND_BUFFER_LIMIT`]).
    pub send_buffer_limit: usize,
    /// STUN servers (`stun:host:port`) the seed asks for its public address,
    /// when it sits behind a NAT that maps its UDP ports as they are.
    pub stun: Vec<String>,
    /// The public IPv4 address a 1:1 NAT (a cloud instance's) maps `bind_ip`
    /// to: announced instead of `bind_ip` in every candidate.
    pub public_ip: Option<IpAddr>,
    /// UDP ports the connections may bind (inclusive), so a firewall can be
    /// opened for them; None: any port the OS chooses.
    pub udp_ports: Option<(u16, u16)>,
}

impl RtcConfig {
    /// Parses `MIN-MAX` (inclusive, MIN <= MAX, MIN > 0).
    pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
        let bad = || format!("{s:?}: expected a UDP port range MIN-MAX such as 50000-50999");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (a, b): (u16, u16) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a == 0 || a > b {
            return Err(bad());
        }
        Ok((a, b))
    }

    /// The send-buffer limit connections get: [`RtcConfig::send_buffer_limit`], capped at
    /// [`LOOPBACK_SEND_BUFFER_LIMIT`] when `bind_ip` is a loopback address.
    pub fn effective_send_buffer_limit(&self) -> usize {
        if self.bind_ip.is_loopback() {
            self.send_buffer_limit.min(LOOPBACK_SEND_BUFFER_LIMIT)
        } else {
            self.send_buffer_limit
        }
    }
}

impl Default for RtcConfig {
    fn default() -> Self {
        RtcConfig {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            send_buffer_limit: 1 << 20,
            stun: Vec::new(),
            public_ip: None,
            udp_ports: None,
        }
    }
}

/// Event of one connection, read from [`RtcConn::events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcEvent {
    /// The data channel is open: sends go out from now on.
    Open,
    /// A binary message from the remote.
    Message(Vec<u8>),
    /// A message the protocol does not allow (a text message, or one over [`MAX_MESSAGE_SIZE`]):
    /// what it was. The bytes are not delivered.
    BadFrame(String),
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
}

impl RtcConn {
    /// Connection id (for logs).
    pub fn id(&self) -> u64 {
        self.sender.id()
    }

    /// Adds a candidate trickled by the browser; see [`RtcSender::add_remote_candidate`] (the
    /// same, usable after `events` was moved out of the `RtcConn`).
    pub async fn add_remote_candidate(
        &self,
        candidate: &str,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    ) -> Result<(), RtcError> {
        self.sender
            .add_remote_candidate(candidate, sdp_mid, sdp_mline_index)
            .await
    }
}
