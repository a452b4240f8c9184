//! Load generator for `npm run bench:signal` (scripts/bench-signal.sh).
//!
//! Starts ONE signal server (the binary given as the first argument, default
//! `target/release/shoal-signal`) on `127.0.0.1:0`, drives it with WebSocket
//! clients on loopback and prints one JSON line on stdout. Progress goes to
//! stderr; the server's own log goes to `SIGNAL_LOG` (default
//! `target/bench-signal-server.log`).
//!
//! Every client heartbeats at the interval the server announces in
//! `welcome` (`HEARTBEAT_MS` overrides it), as the player does.
//!
//! 1. memory: `PEERS` idle viewers connect, say hello and join one swarm
//!    each (`SWARM_SIZE` peers per swarm). `rss_mb_per_1k_peers` = (server
//!    VmRSS with all of them joined - VmRSS before they connected) / PEERS *
//!    1000, in MiB. They stay connected (and heartbeating) through phase 2.
//!    `peers_connected` counts those that completed hello + join (the run
//!    fails, after printing the JSON, if any is missing), `rss_mb_total` is
//!    the server's VmRSS with all of them, `loadgen_rss_mb` this process's.
//!    Clients connect from 127.0.0.1, 127.0.0.2, ... as many as the
//!    namespace's ephemeral port range needs (`SOURCE_ADDRS` overrides).
//! 2. throughput: `ACTIVE` more viewers in swarms of `ACTIVE_SWARM_SIZE`,
//!    paired within their swarm. Each pair runs `PIPELINE` WebRTC-like
//!    negotiations at once through the relay: offer, answer, 8 ICE
//!    candidates in turn, then a new offer; each relay delivered to its
//!    target triggers the next one. After `WARMUP_SECONDS`, the phase is
//!    measured for `BENCH_SECONDS`: `msgs_per_s` = (relays delivered to their
//!    target + heartbeats acked, idle peers' included) / wall time;
//!    `msgs_per_s_per_core` divides it by the cores the server used (utime +
//!    stime from /proc/PID/stat over the same window / wall time). The load
//!    generator's own CPU is reported apart (`loadgen_cores`), never counted.
//!    Then the active clients stop, leave and disconnect.
//! 3. trickle: one more pair runs `PROBE_ROUNDS` negotiations one at a
//!    time as browsers do with trickle ICE: A sends an offer, B answers and
//!    then sends `BURST` candidates back to back; `trickle_burst_ms_*` is the
//!    time from A's offer until A holds the answer and all candidates.
//! 4. leave: the idle peers leave (each remaining member of a swarm must get
//!    `peer_left`) and disconnect; the RSS after that is reported.
//!
//! Anything the server refuses or drops is counted in the JSON (`refused`,
//! `errors`, `dropped`, `unexpected`), never hidden. Every wait is bounded.

// The JSON line has more keys than serde_json::json! expands by default.
#![recursion_limit = "256"]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;
type Tx = SplitSink<Ws, Message>;
type Rx = SplitStream<Ws>;

/// Longest wait for one connect / hello / join answer.
const OPEN_WAIT: Duration = Duration::from_secs(10);
/// Connections being opened at once.
const OPEN_CONCURRENCY: usize = 128;
/// ICE candidates per negotiation (both directions together).
const CANDIDATES: u32 = 8;
/// Most idle peers one run may ask for.
const MAX_PEERS: usize = 200_000;
/// The clients' WebSocket read buffer (tungstenite's default is 128 KiB,
/// which 100,000 idle clients cannot afford); it grows for a larger frame.
const CLIENT_READ_BUFFER: usize = 2048;

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| die(&format!("{name}={v} is not a number"))),
        _ => default,
    }
}

fn die(msg: &str) -> ! {
    eprintln!("[bench-signal] ERROR: {msg}");
    std::process::exit(1);
}

fn log(msg: &str) {
    eprintln!("[bench-signal] {msg}");
}

#[derive(Clone, Debug)]
struct Opts {
    server: String,
    peers: usize,
    swarm_size: usize,
    active: usize,
    active_swarm_size: usize,
    seconds: f64,
    warmup: f64,
    pipeline: usize,
    heartbeat_ms: Option<u64>,
    burst: u32,
    probe_rounds: u32,
    threads: usize,
    log_path: String,
}

impl Opts {
    fn from_env() -> Opts {
        let o = Opts {
            server: std::env::args()
                .nth(1)
                .unwrap_or_else(|| "target/release/shoal-signal".into()),
            peers: env_num("PEERS", 5000),
            swarm_size: env_num("SWARM_SIZE", 100),
            active: env_num("ACTIVE", 200),
            active_swarm_size: env_num("ACTIVE_SWARM_SIZE", 20),
            seconds: env_num("BENCH_SECONDS", 10.0),
            warmup: env_num("WARMUP_SECONDS", 2.0),
            pipeline: env_num("PIPELINE", 16),
            heartbeat_ms: std::env::var("HEARTBEAT_MS")
                .ok()
                .map(|_| env_num("HEARTBEAT_MS", 5000)),
            burst: env_num("BURST", 4),
            probe_rounds: env_num("PROBE_ROUNDS", 15),
            threads: env_num("LOADGEN_THREADS", 1),
            log_path: std::env::var("SIGNAL_LOG")
                .unwrap_or_else(|_| "target/bench-signal-server.log".into()),
        };
        if o.peers > MAX_PEERS || o.active > 10_000 {
            die(&format!(
                "PEERS is limited to {MAX_PEERS} and ACTIVE to 10000"
            ));
        }
        if o.active < 2 || !o.active.is_multiple_of(2) {
            die("ACTIVE must be an even number >= 2 (clients are paired)");
        }
        if o.active_swarm_size < 2 || !o.active_swarm_size.is_multiple_of(2) {
            die("ACTIVE_SWARM_SIZE must be an even number >= 2");
        }
        if o.swarm_size < 1
            || !(1.0..=120.0).contains(&o.seconds)
            || !(0.0..=30.0).contains(&o.warmup)
        {
            die("SWARM_SIZE >= 1, BENCH_SECONDS in 1..=120, WARMUP_SECONDS in 0..=30");
        }
        if o.pipeline < 1
            || o.pipeline > 64
            || o.heartbeat_ms.is_some_and(|h| h < 10)
            || o.threads < 1
            || !(1..=CANDIDATES).contains(&o.burst)
            || o.probe_rounds > 100
        {
            die("PIPELINE in 1..=64, HEARTBEAT_MS >= 10, LOADGEN_THREADS >= 1, BURST in 1..=8, PROBE_ROUNDS <= 100");
        }
        o
    }
}

/// What the clients saw. Everything is counted, nothing is retried.
#[derive(Default)]
struct Counters {
    connect_failed: AtomicU64,
    hello_failed: AtomicU64,
    join_refused: AtomicU64,
    /// Connections the server closed (or that failed) before we asked.
    dropped: AtomicU64,
    relays_sent: AtomicU64,
    relays_delivered: AtomicU64,
    relay_bytes_delivered: AtomicU64,
    heartbeats_sent: AtomicU64,
    heartbeats_acked: AtomicU64,
    peer_left: AtomicU64,
    /// Messages that were not what the protocol promised (wrong sender...).
    unexpected: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    fn error(&self, code: &str) {
        *self
            .errors
            .lock()
            .unwrap()
            .entry(code.to_owned())
            .or_default() += 1;
    }
    fn refused(&self) -> u64 {
        self.connect_failed.load(Relaxed)
            + self.hello_failed.load(Relaxed)
            + self.join_refused.load(Relaxed)
    }
}

/// The part of a server message the generator looks at (the SDP is skipped).
#[derive(Deserialize)]
struct In<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(default, borrow)]
    from: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    swarm: Option<Cow<'a, str>>,
    #[serde(default)]
    signal: Option<Sig<'a>>,
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    peer_id: Option<Cow<'a, str>>,
    #[serde(default)]
    heartbeat_ms: Option<u64>,
}

#[derive(Deserialize)]
struct Sig<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    candidate: Option<Cow<'a, str>>,
}

/// A data-channel-only SDP of the size browsers produce (about 600 bytes).
fn sdp(kind: &str, ufrag: &str, port: u32) -> String {
    let setup = if kind == "offer" { "actpass" } else { "active" };
    format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n\
         m=application {port} UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 127.0.0.1\r\n\
         a=candidate:1467250027 1 udp 2122260223 127.0.0.1 {port} typ host generation 0 network-id 1\r\n\
         a=ice-ufrag:{ufrag}\r\na=ice-pwd:asd88fgpdd777uzjYhagZg1sq2Tn4pzd\r\na=ice-options:trickle\r\n\
         a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
         a=setup:{setup}\r\na=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    )
}

/// Pre-encoded frames for one client talking to one partner.
struct Frames {
    offer: String,
    answer: String,
    cand_head: String,
    cand_tail: String,
}

impl Frames {
    fn new(swarm: &str, to: &str, me: &str) -> Frames {
        let ufrag = &me[..4.min(me.len())];
        let relay = |signal: serde_json::Value| {
            serde_json::json!({"type": "relay", "swarm": swarm, "to": to, "signal": signal})
                .to_string()
        };
        let offer = relay(serde_json::json!({"kind": "offer", "sdp": sdp("offer", ufrag, 50000)}));
        let answer =
            relay(serde_json::json!({"kind": "answer", "sdp": sdp("answer", ufrag, 50001)}));
        // The step number rides in the candidate's foundation field.
        let cand = relay(serde_json::json!({"kind": "candidate",
            "candidate": "candidate:@STEP@ 1 udp 2122260223 127.0.0.1 50002 typ host generation 0 ufrag xxxx network-id 1",
            "sdpMid": "0", "sdpMLineIndex": 0}));
        let (cand_head, cand_tail) = cand.split_once("@STEP@").expect("marker present");
        Frames {
            offer,
            answer,
            cand_head: cand_head.to_owned(),
            cand_tail: cand_tail.to_owned(),
        }
    }

    fn candidate(&self, step: u32) -> String {
        format!("{}{step}{}", self.cand_head, self.cand_tail)
    }
}

fn hello_frame() -> &'static str {
    r#"{"type":"hello","role":"viewer"}"#
}

/// Connects, says hello, joins `swarm`. Returns the halves and the peer id
/// and heartbeat interval, or None (counted) when the server refused.
async fn open(target: &Target, swarm: &str, c: &Counters) -> Option<(Tx, Rx, String, u64)> {
    let ws = match timeout(OPEN_WAIT, target.connect()).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            c.connect_failed.fetch_add(1, Relaxed);
            log(&format!("connect failed: {e}"));
            return None;
        }
        Err(_) => {
            c.connect_failed.fetch_add(1, Relaxed);
            return None;
        }
    };
    let (mut tx, mut rx) = ws.split();
    if tx.send(Message::text(hello_frame())).await.is_err() {
        c.hello_failed.fetch_add(1, Relaxed);
        return None;
    }
    let (peer_id, hb) = match next_text(&mut rx).await {
        Some(t) => match serde_json::from_str::<In>(&t) {
            Ok(m) if m.ty == "welcome" => (
                m.peer_id.unwrap_or_default().into_owned(),
                m.heartbeat_ms.unwrap_or(5000),
            ),
            Ok(m) => {
                if let Some(code) = m.code {
                    c.error(&code);
                }
                c.hello_failed.fetch_add(1, Relaxed);
                return None;
            }
            Err(_) => {
                c.hello_failed.fetch_add(1, Relaxed);
                return None;
            }
        },
        None => {
            c.hello_failed.fetch_add(1, Relaxed);
            return None;
        }
    };
    let join = serde_json::json!({"type": "join", "swarm": swarm}).to_string();
    if tx.send(Message::text(join)).await.is_err() {
        c.join_refused.fetch_add(1, Relaxed);
        return None;
    }
    match next_text(&mut rx).await {
        Some(t) => match serde_json::from_str::<In>(&t) {
            Ok(m) if m.ty == "joined" && m.swarm.as_deref() == Some(swarm) => {}
            Ok(m) => {
                if let Some(code) = m.code {
                    c.error(&code);
                }
                c.join_refused.fetch_add(1, Relaxed);
                return None;
            }
            Err(_) => {
                c.join_refused.fetch_add(1, Relaxed);
                return None;
            }
        },
        None => {
            c.join_refused.fetch_add(1, Relaxed);
            return None;
        }
    }
    Some((tx, rx, peer_id, hb))
}

/// Where the clients connect to, and from which loopback source addresses:
/// one address has only `ip_local_port_range` ephemeral ports (about 28,000
/// by default), so many peers are spread over 127.0.0.1, 127.0.0.2, ...
/// (all of 127/8 is on `lo`).
struct Target {
    url: String,
    server: SocketAddr,
    sources: Vec<Ipv4Addr>,
    next: AtomicUsize,
}

impl Target {
    fn new(server: &str, conns: usize) -> Target {
        let server: SocketAddr = server
            .parse()
            .unwrap_or_else(|e| die(&format!("server address {server}: {e}")));
        let ports = ephemeral_ports();
        // Leave a quarter of each address's ports free (TIME_WAIT, the
        // kernel's own choice of port).
        let per_addr = (ports * 3 / 4).max(1);
        let n = match std::env::var("SOURCE_ADDRS") {
            Ok(v) if !v.trim().is_empty() => env_num("SOURCE_ADDRS", 1usize),
            _ => conns.div_ceil(per_addr).max(1),
        };
        if !(1..=250).contains(&n) {
            die("SOURCE_ADDRS must be in 1..=250");
        }
        let sources: Vec<Ipv4Addr> = (1..=n as u8).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
        log(&format!(
            "{conns} connections from {n} source address(es) 127.0.0.1..127.0.0.{n} ({ports} ephemeral ports each)"
        ));
        Target {
            url: format!("ws://{server}/ws"),
            server,
            sources,
            next: AtomicUsize::new(0),
        }
    }

    /// A TCP connection from the next source address, upgraded to a
    /// WebSocket with a small read buffer.
    async fn connect(&self) -> Result<Ws, String> {
        let src = self.sources[self.next.fetch_add(1, Relaxed) % self.sources.len()];
        let sock = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
        sock.bind(SocketAddr::from((src, 0)))
            .map_err(|e| format!("bind {src}: {e} (out of ephemeral ports? raise SOURCE_ADDRS)"))?;
        let stream = sock
            .connect(self.server)
            .await
            .map_err(|e| format!("connect from {src} to {}: {e}", self.server))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(self.url.as_str(), stream, Some(config))
                .await
                .map_err(|e| format!("WebSocket handshake: {e}"))?;
        Ok(ws)
    }
}

/// How many ephemeral ports one source address has in this namespace.
fn ephemeral_ports() -> usize {
    let s = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = s.split_whitespace().filter_map(|v| v.parse::<usize>().ok());
    match (it.next(), it.next()) {
        (Some(lo), Some(hi)) if hi >= lo => hi - lo + 1,
        _ => 28_232,
    }
}

/// Next text frame within OPEN_WAIT (pings skipped); None on close/timeout.
async fn next_text(rx: &mut Rx) -> Option<String> {
    let deadline = tokio::time::Instant::now() + OPEN_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.as_str().to_owned()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// Counts what arrives after `leave` until the server closes (bounded).
async fn leave_and_close(mut tx: Tx, mut rx: Rx, swarm: &str, c: &Counters) {
    let leave = serde_json::json!({"type": "leave", "swarm": swarm}).to_string();
    let _ = tx.send(Message::text(leave)).await;
    let _ = tx.send(Message::Close(None)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, rx.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => count_misc(&t, c),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => break,
            Err(_) => {
                log("a client got no close from the server within 15 s");
                c.unexpected.fetch_add(1, Relaxed);
                break;
            }
        }
    }
}

/// Counts a message that is not part of the relay game.
fn count_misc(t: &str, c: &Counters) {
    match serde_json::from_str::<In>(t) {
        Ok(m) => match m.ty.as_ref() {
            "peer_left" => {
                c.peer_left.fetch_add(1, Relaxed);
            }
            "heartbeat_ack" => {
                c.heartbeats_acked.fetch_add(1, Relaxed);
            }
            "error" => c.error(m.code.as_deref().unwrap_or("?")),
            // Relays still in flight when the phase stopped.
            "relay" => {}
            _ => {
                c.unexpected.fetch_add(1, Relaxed);
            }
        },
        Err(_) => {
            c.unexpected.fetch_add(1, Relaxed);
        }
    }
}

// ---------------------------------------------------------------- clients

/// A heartbeat timer whose first tick is `phase` (0..1) of a period away,
/// so thousands of clients do not heartbeat in step.
fn heartbeat_timer(period_ms: u64, phase: f64) -> tokio::time::Interval {
    let period = Duration::from_millis(period_ms);
    let mut t = tokio::time::interval_at(
        tokio::time::Instant::now() + period.mul_f64(phase.clamp(0.0, 1.0)),
        period,
    );
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

const HEARTBEAT: &str = r#"{"type":"heartbeat"}"#;

/// Phase 1: connects, joins, heartbeats until told to leave.
#[allow(clippy::too_many_arguments)]
async fn idle_client(
    index: usize,
    target: Arc<Target>,
    swarm: String,
    o: Arc<Opts>,
    c: Arc<Counters>,
    open_permits: Arc<Semaphore>,
    joined: Arc<AtomicU64>,
    settled: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let opened = {
        let _permit = open_permits.acquire().await.expect("semaphore open");
        // Boxed: the handshake's state is freed once open, so the idle
        // task that stays is small.
        Box::pin(open(&target, &swarm, &c)).await
    };
    settled.fetch_add(1, Relaxed);
    let Some((mut tx, mut rx, _id, announced)) = opened else {
        return;
    };
    joined.fetch_add(1, Relaxed);
    let mut hb = heartbeat_timer(
        o.heartbeat_ms.unwrap_or(announced),
        (index % 997) as f64 / 997.0,
    );
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = hb.tick() => {
                c.heartbeats_sent.fetch_add(1, Relaxed);
                if tx.send(Message::text(HEARTBEAT)).await.is_err() {
                    c.dropped.fetch_add(1, Relaxed);
                    return;
                }
            }
            m = rx.next() => match m {
                Some(Ok(Message::Text(t))) => count_misc(t.as_str(), &c),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    c.dropped.fetch_add(1, Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    }
    leave_and_close(tx, rx, &swarm, &c).await;
}

struct Active {
    tx: Tx,
    rx: Rx,
    id: String,
    swarm: String,
    heartbeat_ms: u64,
}

/// Phase 2, one client of a pair: answers every relay from its partner with
/// the next step of the negotiation, so the relays in flight stay constant.
async fn active_client(
    index: usize,
    mut me: Active,
    partner: String,
    initiator: bool,
    o: Arc<Opts>,
    c: Arc<Counters>,
    mut stop: watch::Receiver<u8>,
) {
    let frames = Frames::new(&me.swarm, &partner, &me.id);
    let mut hb = heartbeat_timer(
        o.heartbeat_ms.unwrap_or(me.heartbeat_ms),
        (index % 101) as f64 / 101.0,
    );
    macro_rules! send {
        ($frame:expr) => {{
            if me.tx.send(Message::text($frame)).await.is_err() {
                c.dropped.fetch_add(1, Relaxed);
                return;
            }
        }};
    }
    if initiator {
        for _ in 0..o.pipeline {
            c.relays_sent.fetch_add(1, Relaxed);
            send!(frames.offer.clone());
        }
    }
    // 0: play, 1: quiet (answer nothing, let relays in flight land), 2: leave.
    let mut quiet = false;
    loop {
        let frame = tokio::select! {
            biased;
            r = stop.changed() => {
                let phase = if r.is_ok() { *stop.borrow_and_update() } else { 2 };
                if phase >= 2 {
                    break;
                }
                quiet = true;
                continue;
            }
            _ = hb.tick() => {
                c.heartbeats_sent.fetch_add(1, Relaxed);
                send!(HEARTBEAT);
                continue;
            }
            m = me.rx.next() => m,
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                c.dropped.fetch_add(1, Relaxed);
                return;
            }
            Some(Ok(_)) => continue,
        };
        let m = match serde_json::from_str::<In>(text.as_str()) {
            Ok(m) => m,
            Err(_) => {
                c.unexpected.fetch_add(1, Relaxed);
                continue;
            }
        };
        match m.ty.as_ref() {
            "relay" => {
                let ok = m.from.as_deref() == Some(partner.as_str())
                    && m.swarm.as_deref() == Some(me.swarm.as_str());
                let Some(sig) = m.signal.filter(|_| ok) else {
                    c.unexpected.fetch_add(1, Relaxed);
                    continue;
                };
                c.relays_delivered.fetch_add(1, Relaxed);
                c.relay_bytes_delivered
                    .fetch_add(text.len() as u64, Relaxed);
                if quiet {
                    continue;
                }
                let next = match sig.kind.as_ref() {
                    "offer" => frames.answer.clone(),
                    "answer" => frames.candidate(1),
                    "candidate" => match candidate_step(sig.candidate.as_deref()) {
                        Some(step) if step < CANDIDATES => frames.candidate(step + 1),
                        _ => frames.offer.clone(),
                    },
                    _ => {
                        c.unexpected.fetch_add(1, Relaxed);
                        continue;
                    }
                };
                c.relays_sent.fetch_add(1, Relaxed);
                send!(next);
            }
            "heartbeat_ack" => {
                c.heartbeats_acked.fetch_add(1, Relaxed);
            }
            "peer_left" => {
                c.peer_left.fetch_add(1, Relaxed);
            }
            "error" => c.error(m.code.as_deref().unwrap_or("?")),
            _ => {
                c.unexpected.fetch_add(1, Relaxed);
            }
        }
    }
    leave_and_close(me.tx, me.rx, &me.swarm, &c).await;
}

/// The step number carried in a candidate's foundation field.
fn candidate_step(candidate: Option<&str>) -> Option<u32> {
    candidate?
        .strip_prefix("candidate:")?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

/// Phase 3, one WebRTC negotiation at a time as browsers run it with trickle
/// ICE: A sends an offer; B, on receiving it, sends its answer and then
/// `burst` candidates back to back. Returns, for each round, the milliseconds
/// from A's offer until A holds the answer and every candidate. Empty if the
/// pair could not join.
async fn trickle_probe(url: &Target, o: &Opts, c: &Counters) -> Vec<f64> {
    let swarm = "trickle-probe";
    let Some((mut atx, mut arx, aid, _)) = open(url, swarm, c).await else {
        return Vec::new();
    };
    let Some((mut btx, mut brx, bid, _)) = open(url, swarm, c).await else {
        return Vec::new();
    };
    let a_frames = Frames::new(swarm, &bid, &aid);
    let b_frames = Frames::new(swarm, &aid, &bid);
    // Next relay from `from` on `rx` within 2 s (other messages counted).
    async fn relay_from(rx: &mut Rx, from: &str, c: &Counters) -> bool {
        loop {
            match timeout(Duration::from_secs(2), rx.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<In>(t.as_str()) {
                    Ok(m) if m.ty == "relay" && m.from.as_deref() == Some(from) => return true,
                    _ => count_misc(t.as_str(), c),
                },
                Ok(Some(Ok(_))) => {}
                _ => return false,
            }
        }
    }
    let mut times = Vec::new();
    'rounds: for _ in 0..o.probe_rounds {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t0 = Instant::now();
        let mut ok = atx
            .send(Message::text(a_frames.offer.clone()))
            .await
            .is_ok()
            && relay_from(&mut brx, &aid, c).await
            && btx
                .send(Message::text(b_frames.answer.clone()))
                .await
                .is_ok();
        for k in 1..=o.burst {
            ok = ok && btx.send(Message::text(b_frames.candidate(k))).await.is_ok();
        }
        for _ in 0..=o.burst {
            ok = ok && relay_from(&mut arx, &bid, c).await;
        }
        if !ok {
            log("trickle probe: a relay did not arrive within 2 s");
            c.dropped.fetch_add(1, Relaxed);
            break 'rounds;
        }
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    leave_and_close(atx, arx, swarm, c).await;
    leave_and_close(btx, brx, swarm, c).await;
    times
}

// ---------------------------------------------------------------- /proc

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = s.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}

/// VmRSS of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    round(kib as f64 / 1024.0, 2)
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// Busy ticks of the whole machine (all CPUs), from /proc/stat.
fn machine_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = s.lines().find(|l| l.starts_with("cpu ")) else {
        return 0;
    };
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    cpu.split_whitespace()
        .skip(1)
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum()
}

/// A CPU + wall clock snapshot of the server, of this process and of the
/// machine.
struct Snap {
    at: Instant,
    server: u64,
    me: u64,
    machine: u64,
}

impl Snap {
    fn take(pid: u32) -> Snap {
        Snap {
            at: Instant::now(),
            server: cpu_ticks(&pid.to_string()),
            me: cpu_ticks("self"),
            machine: machine_ticks(),
        }
    }
    /// (wall seconds, server cores used, load generator cores used).
    fn since(&self, earlier: &Snap, tck: f64) -> (f64, f64, f64) {
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        let s = (self.server - earlier.server) as f64 / tck / wall;
        let m = (self.me - earlier.me) as f64 / tck / wall;
        (wall, s, m)
    }
    /// Cores busy with anything else than the server and this process.
    fn others_since(&self, earlier: &Snap, tck: f64) -> f64 {
        let (wall, s, m) = self.since(earlier, tck);
        let all = self.machine.saturating_sub(earlier.machine) as f64 / tck / wall;
        (all - s - m).max(0.0)
    }
}

// ---------------------------------------------------------------- main

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(o: &Opts) -> Server {
        let log_file = std::fs::File::create(&o.log_path)
            .unwrap_or_else(|e| die(&format!("cannot create {}: {e}", o.log_path)));
        let mut child = Command::new(&o.server)
            // The swarms here have no seed: let viewers create them. Every
            // client is on 127.0.0.1 and sends as fast as it can: the
            // per-address and per-connection limits are lifted, to measure
            // the tracker's own capacity.
            .args([
                "--listen",
                "127.0.0.1:0",
                "--allow-unknown-channels",
                "--max-conns-per-addr",
                "0",
                "--msgs-per-s",
                "1000000000",
                "--relay-bytes-per-s",
                "1000000000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| die(&format!("cannot start {}: {e}", o.server)));
        let stdout = child.stdout.take().expect("piped");
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(l)) = lines.next() {
                if line_tx.send(l).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match line_rx.recv_timeout(left) {
                Ok(l) => {
                    if let Some(url) = l.strip_prefix("SHOAL_SIGNAL_LISTENING http://") {
                        break url.trim().to_owned();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    die(&format!(
                        "the server did not print SHOAL_SIGNAL_LISTENING within 10 s (log: {})",
                        o.log_path
                    ));
                }
            }
        };
        if !addr.starts_with("127.0.0.1:") {
            let _ = child.kill();
            die(&format!("the server listens on {addr}, not on 127.0.0.1"));
        }
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until `done()`; logs progress every second.
async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> (bool, String)) -> bool {
    let start = Instant::now();
    let mut last_log = Instant::now();
    loop {
        let (ok, progress) = done();
        if ok {
            return true;
        }
        if start.elapsed() > limit {
            log(&format!(
                "{what}: gave up after {:.0} s ({progress})",
                limit.as_secs_f64()
            ));
            return false;
        }
        if last_log.elapsed() >= Duration::from_secs(2) {
            log(&format!("{what}: {progress}"));
            last_log = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn main() {
    let o = Opts::from_env();
    let rt = if o.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(o.threads)
            .enable_all()
            .build()
    }
    .expect("tokio runtime");
    let total = Instant::now();
    let json = rt.block_on(run(o));
    println!("{json}");
    log(&format!("done in {:.1} s", total.elapsed().as_secs_f64()));
    if json["peers_missing"].as_u64() != Some(0) {
        die(&format!(
            "{} of {} idle peers did not complete hello + join: the memory figures are for peers_connected only",
            json["peers_missing"], json["peers"]
        ));
    }
}

async fn run(o: Opts) -> serde_json::Value {
    let o = Arc::new(o);
    let tck = clk_tck();
    let server = Server::start(&o);
    let pid = server.child.id();
    let url = Arc::new(Target::new(&server.addr, o.peers + o.active + 64));
    log(&format!(
        "server pid {pid} on {} (log: {})",
        server.addr, o.log_path
    ));
    let c = Arc::new(Counters::default());
    let open_permits = Arc::new(Semaphore::new(OPEN_CONCURRENCY));

    // Warm-up: a few connections come and go, so one-time allocations (worker
    // threads' stacks, lazy tables) are not charged to the idle peers.
    {
        let warm = Counters::default();
        for i in 0..8 {
            let swarm = format!("warmup-{i}");
            if let Some((tx, rx, _, _)) = open(&url, &swarm, &warm).await {
                leave_and_close(tx, rx, &swarm, &warm).await;
            }
        }
        if warm.refused() > 0 {
            drop(server); // kills it: die() exits without running destructors
            die("the server refused the warm-up clients");
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_base = rss_kib(pid);

    // ---- phase 1: idle peers, memory.
    log(&format!(
        "phase 1: {} idle peers in swarms of {} (server RSS before: {:.1} MiB)",
        o.peers,
        o.swarm_size,
        rss_base as f64 / 1024.0
    ));
    let (idle_stop, idle_stop_rx) = watch::channel(false);
    let n_swarms = o.peers.div_ceil(o.swarm_size).max(1);
    let per_swarm: Vec<Arc<AtomicU64>> =
        (0..n_swarms).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let settled = Arc::new(AtomicU64::new(0));
    let p1_start = Snap::take(pid);
    let mut idle_tasks = Vec::with_capacity(o.peers);
    for i in 0..o.peers {
        let s = i / o.swarm_size;
        idle_tasks.push(tokio::spawn(idle_client(
            i,
            url.clone(),
            format!("idle-swarm-{s}"),
            o.clone(),
            c.clone(),
            open_permits.clone(),
            per_swarm[s].clone(),
            settled.clone(),
            idle_stop_rx.clone(),
        )));
    }
    let peers = o.peers as u64;
    // 60 s, or 2 s per 1000 peers for a big run on a busy machine.
    let join_limit = Duration::from_secs((o.peers as u64 / 500).max(60));
    wait_until("idle peers joining", join_limit, || {
        let s = settled.load(Relaxed);
        (s >= peers, format!("{s}/{peers} settled"))
    })
    .await;
    let p1_joined = Snap::take(pid);
    let idle_joined: u64 = per_swarm.iter().map(|a| a.load(Relaxed)).sum();
    let (join_wall, join_cores, _) = p1_joined.since(&p1_start, tck);
    log(&format!(
        "{idle_joined}/{peers} idle peers joined in {join_wall:.1} s (server {join_cores:.2} cores); refused so far {}",
        c.refused()
    ));
    // Let the allocator and the sockets settle, then read the RSS.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss_idle = rss_kib(pid);
    let loadgen_rss_idle = rss_kib(std::process::id());
    let rss_per_1k = if idle_joined > 0 {
        (rss_idle.saturating_sub(rss_base)) as f64 / 1024.0 / idle_joined as f64 * 1000.0
    } else {
        0.0
    };
    log(&format!(
        "server RSS with {idle_joined} idle peers: {:.1} MiB -> {rss_per_1k:.2} MiB per 1k peers (load generator {:.1} MiB)",
        rss_idle as f64 / 1024.0,
        loadgen_rss_idle as f64 / 1024.0
    ));
    if idle_joined < peers {
        log(&format!(
            "ERROR: only {idle_joined} of {peers} idle peers completed hello + join ({} refused, see the errors in the JSON)",
            c.refused()
        ));
    }

    // ---- phase 2: active clients, throughput (idle peers still connected).
    log(&format!(
        "phase 2: {} active clients in swarms of {}, {} negotiations in flight per pair",
        o.active, o.active_swarm_size, o.pipeline
    ));
    let (stop_tx, stop_rx) = watch::channel(0u8);
    let mut opening = Vec::with_capacity(o.active);
    for i in 0..o.active {
        let url = url.clone();
        let c = c.clone();
        let permits = open_permits.clone();
        let swarm = format!("active-swarm-{}", i / o.active_swarm_size);
        opening.push(tokio::spawn(async move {
            let _permit = permits.acquire().await.expect("semaphore open");
            open(&url, &swarm, &c)
                .await
                .map(|(tx, rx, id, heartbeat_ms)| Active {
                    tx,
                    rx,
                    id,
                    swarm,
                    heartbeat_ms,
                })
        }));
    }
    let mut actives = Vec::with_capacity(o.active);
    for t in opening {
        actives.push(t.await.ok().flatten());
    }
    let ready = actives.iter().filter(|a| a.is_some()).count();
    log(&format!("{ready}/{} active clients joined", o.active));
    let mut tasks = Vec::new();
    // Members per swarm that play (an unpaired survivor is dropped at once).
    let mut active_swarms: BTreeMap<String, u64> = BTreeMap::new();
    let mut it = actives.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        // A pair whose other half was refused has nobody to talk to.
        let (Some(a), Some(b)) = (a, b) else { continue };
        *active_swarms.entry(a.swarm.clone()).or_default() += 2;
        let (ida, idb) = (a.id.clone(), b.id.clone());
        let n = tasks.len();
        tasks.push(tokio::spawn(active_client(
            n,
            a,
            idb,
            true,
            o.clone(),
            c.clone(),
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(active_client(
            n + 1,
            b,
            ida,
            false,
            o.clone(),
            c.clone(),
            stop_rx.clone(),
        )));
    }
    if tasks.is_empty() {
        drop(server); // kills it: die() exits without running destructors
        die("no active pair could join; see the server log");
    }
    tokio::time::sleep(Duration::from_secs_f64(o.warmup)).await;
    let count = |c: &Counters| {
        (
            c.relays_delivered.load(Relaxed),
            c.heartbeats_acked.load(Relaxed),
            c.relay_bytes_delivered.load(Relaxed),
        )
    };
    let (r0, h0, b0) = count(&c);
    let s0 = Snap::take(pid);
    log(&format!("measuring for {} s", o.seconds));
    tokio::time::sleep(Duration::from_secs_f64(o.seconds)).await;
    let (r1, h1, b1) = count(&c);
    let s1 = Snap::take(pid);
    let rss_active = rss_kib(pid);
    let (wall, server_cores, loadgen_cores) = s1.since(&s0, tck);
    let other_cores = s1.others_since(&s0, tck);
    if other_cores > 0.2 {
        log(&format!(
            "WARNING: other processes used {other_cores:.2} cores during the measurement; figures are disturbed"
        ));
    }
    let relays = r1 - r0;
    let hbs = h1 - h0;
    let msgs_per_s = (relays + hbs) as f64 / wall;
    let per_core = if server_cores > 0.0 {
        msgs_per_s / server_cores
    } else {
        0.0
    };
    log(&format!(
        "{msgs_per_s:.0} msgs/s with the server on {server_cores:.2} cores (load generator {loadgen_cores:.2} cores)"
    ));
    // Stop answering, let the relays in flight land, then they all leave.
    let _ = stop_tx.send(1);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let left_before = c.peer_left.load(Relaxed);
    let _ = stop_tx.send(2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for t in tasks {
        if tokio::time::timeout_at(deadline, t).await.is_err() {
            log("active clients did not finish leaving within 20 s");
            break;
        }
    }
    let active_peer_left = c.peer_left.load(Relaxed) - left_before;
    let active_left_expected: u64 = active_swarms
        .values()
        .map(|&m| m * m.saturating_sub(1) / 2)
        .sum();

    // ---- phase 3: latency of a trickled burst of candidates.
    let mut trickle = trickle_probe(&url, &o, &c).await;
    trickle.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| {
        trickle
            .get(((trickle.len() as f64 - 1.0) * q).round() as usize)
            .map_or(serde_json::Value::Null, |v| round(*v, 2).into())
    };
    log(&format!(
        "trickle: offer -> answer + {} candidates in {} ms (median of {})",
        o.burst,
        pct(0.5),
        trickle.len()
    ));

    // ---- phase 4: the idle peers leave.
    let expected_left: u64 = per_swarm
        .iter()
        .map(|a| {
            let m = a.load(Relaxed);
            m * m.saturating_sub(1) / 2
        })
        .sum();
    let left_before = c.peer_left.load(Relaxed);
    let leave_start = Snap::take(pid);
    let _ = idle_stop.send(true);
    let leave_limit = (o.peers as u64 / 1000).max(30);
    let leave_deadline = tokio::time::Instant::now() + Duration::from_secs(leave_limit);
    for t in idle_tasks {
        if tokio::time::timeout_at(leave_deadline, t).await.is_err() {
            log(&format!(
                "idle clients did not finish leaving within {leave_limit} s"
            ));
            break;
        }
    }
    let leave_end = Snap::take(pid);
    let (leave_wall, leave_cores, _) = leave_end.since(&leave_start, tck);
    let idle_peer_left = c.peer_left.load(Relaxed) - left_before;
    log(&format!(
        "idle peers left in {leave_wall:.1} s (server {leave_cores:.2} cores): peer_left {idle_peer_left}/{expected_left}"
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after_leave = rss_kib(pid);
    let server_alive = rss_after_leave > 0;
    drop(server);

    let errors = c.errors.lock().unwrap().clone();
    serde_json::json!({
        "peers": o.peers,
        "msgs_per_s": round(msgs_per_s, 0),
        "msgs_per_s_per_core": round(per_core, 0),
        "rss_mb_per_1k_peers": round(rss_per_1k, 2),
        "peers_connected": idle_joined,
        "peers_missing": peers - idle_joined,
        "rss_mb_total": mib(rss_idle),
        "loadgen_rss_mb": mib(loadgen_rss_idle),
        "source_addrs": url.sources.len(),
        "active": ready,
        "seconds": round(wall, 2),
        "relays_per_s": round(relays as f64 / wall, 0),
        "heartbeats_per_s": round(hbs as f64 / wall, 0),
        "relay_bytes_avg": (b1 - b0).checked_div(relays).unwrap_or(0),
        "server_cores": round(server_cores, 2),
        "loadgen_cores": round(loadgen_cores, 2),
        "other_cores": round(other_cores, 2),
        "machine_cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "rss_mb_before": mib(rss_base),
        "rss_mb_idle": mib(rss_idle),
        "rss_mb_active": mib(rss_active),
        "rss_mb_after_leave": mib(rss_after_leave),
        "idle_join_s": round(join_wall, 2),
        "idle_join_server_cores": round(join_cores, 2),
        "trickle_burst": o.burst,
        "trickle_burst_ms_median": pct(0.5),
        "trickle_burst_ms_max": pct(1.0),
        "trickle_burst_ms_min": pct(0.0),
        "idle_leave_s": round(leave_wall, 2),
        "idle_leave_peer_left": idle_peer_left,
        "idle_leave_peer_left_expected": expected_left,
        "active_leave_peer_left": active_peer_left,
        "active_leave_peer_left_expected": active_left_expected,
        "swarm_size": o.swarm_size,
        "active_swarm_size": o.active_swarm_size,
        "pipeline": o.pipeline,
        "refused": c.refused(),
        "connect_failed": c.connect_failed.load(Relaxed),
        "hello_failed": c.hello_failed.load(Relaxed),
        "join_refused": c.join_refused.load(Relaxed),
        "dropped": c.dropped.load(Relaxed),
        "unexpected": c.unexpected.load(Relaxed),
        "errors": errors,
        "server_alive_at_end": server_alive,
    })
}
