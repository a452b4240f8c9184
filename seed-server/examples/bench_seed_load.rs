//! Load generator for `npm run bench:seed-load` (scripts/bench-seed-load.sh).
//!
//! Measures ONE release `shoal-seed` serving N viewers over WebRTC, for each
//! N of `NS` (default 50, 100, 200). For each N it starts a fresh real
//! `shoal-signal` and a fresh real `shoal-seed` (child processes, 127.0.0.1
//! only; run the whole thing inside `scripts/netns.sh`), then N viewers in
//! this process. Each viewer is what a browser does, minus the browser:
//! a WebSocket to the signal server (`hello`, `join`, heartbeats), a webrtc-rs
//! peer connection bound to 127.0.0.1 (the tests' `Viewer`, which asserts
//! that every ICE candidate is loopback), an offer relayed to the seed, and
//! the real `swarm_proto` viewer engine driven over the data channel, the
//! init segment and whatever the engine asks over HTTP fetched from the
//! seed's real HTTP origin. A virtual player
//! starts when the first segment is appended and then advances at 1x wall
//! clock; a viewer *falls behind* (a stall) when the playhead reaches media
//! that is not yet appended, i.e. a segment not verified in time.
//!
//! P2P is off, so that the seed serves every byte: each viewer connects only
//! to the seed (it never offers to the other viewers in its peer list, and
//! none offers to it) and tells its engine so (`Input::Joined { viewers: 0
//! }`). What a viewer sends is its engine's output, unfiltered. One setting
//! differs from the browser's: `peer_wait_ms` is a day, so the engine never
//! takes a segment from HTTP merely because no peer can serve it now. The
//! seed refuses a segment once to a viewer when other viewers hold it or
//! are being sent it (to make them share); the browser's engine answers
//! that with an HTTP fetch, so with P2P off most bytes would leave the seed
//! over HTTP and the run would measure the HTTP origin (`VIEWER_CONFIG=browser`
//! runs that: 99 % HTTP with 200 viewers). With the setting, a refused viewer asks
//! the seed again after its back-off (1 s) and gets it over WebRTC; HTTP
//! remains for the init segment, the first segment and anything due within
//! `critical_ms` (1.5 s). `rtc_share` says how it went.
//!
//! Flags the seed gets: `--capacity N` (default 50 slots would refuse the
//! rest) and `--max-conns-per-peer 1`; the signal server gets `--match-max`
//! and `--match-enough` above N, so that every viewer's peer list holds the
//! seed (by default a list is 50 random members of the swarm), and
//! `SHOAL_MAX_CONNS_PER_ADDR` above N where it caps connections per address.
//! Both get the same `SHOAL_SEED_KEY` where seeds need a credential.
//!
//! Viewers join one after the other over `RAMP_S`, each watches `WATCH_S`
//! from its join, then closes its connection and leaves. The seed is
//! measured from /proc over a steady window, when every viewer is playing:
//! from `RAMP_S + SETTLE_S` after the first join until a second before the
//! first viewer leaves (`WATCH_S`).
//!
//! Output, one JSON line per N on stdout:
//! - `viewers`: N; `kept_up`: viewers that started and never fell behind;
//!   `failed`: viewers that could not connect or lost the seed.
//! - `cpu_s_per_viewer_min`: seed utime+stime over the window / (viewers
//!   playing through it x window minutes); `seed_cores`: seed CPU seconds per
//!   wall second in the window. `cpu_s_per_viewer_min_incl_joins`: the same
//!   over the whole run (handshakes and departures included), per
//!   viewer-minute watched.
//! - `rss_mb_per_viewer`: (highest seed VmRSS while the viewers played - VmRSS
//!   before they came) / N, in MiB; `seed_rss_mb`, `seed_hwm_mb` (VmHWM).
//! - `bitrate_kbps`: the content's average bitrate (manifest sizes over its
//!   duration); `delivered_kbps_per_viewer`: seed WebRTC + HTTP bytes in the
//!   window per viewer; `rtc_share`: WebRTC part of the seed's bytes.
//! - `startup_ms_median`/`_max` (join to first segment appended), `stalls`,
//!   `stalled_ms`, `loadgen_cores` (this process: N webrtc-rs viewers),
//!   `signal_cores`, `other_cores` (the rest of the machine) and
//!   `machine_busy_cores` (all of it, in the window: near `machine_cores`,
//!   the seed and its viewers were short of CPU).
//!
//! And a final line: `viewers_per_core` = the largest N that kept up (every
//! viewer) / the seed's cores in use at that N (`null` if none did).
//!
//! Settings (env): NS (50,100,200), WATCH_S (50), RAMP_S (15), SETTLE_S (5),
//! VIEWER_CONFIG (seed-only, or browser), LOADGEN_THREADS (2), MEDIA
//! (.shoal/media-seed-load), CACHE (.shoal/cache-seed-load), SEED_LOG /
//! SIGNAL_LOG (target/bench-seed-load-*.log), SEED_RUST_LOG. Arguments: the
//! signal and seed binaries. Progress goes to stderr. Every wait is bounded.

#[allow(dead_code)]
#[path = "../tests/common/viewer.rs"]
mod viewer;

use bytes::BytesMut;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_proto::engine::{Config, Engine, Input, MediaEvent, Output, Resource};
use swarm_proto::signal::{ClientMsg, Role, RtcSignal, ServerMsg};
use swarm_proto::Manifest;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use viewer::Viewer;
use webrtc::data_channel::DataChannelEvent;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type WsTx = SplitSink<Ws, WsMessage>;
type WsRx = SplitStream<Ws>;

/// Longest wait for one signaling step, the answer or the channel's open.
const STEP: Duration = Duration::from_secs(15);
/// The viewer engine's key for its one peer, the seed.
const SEED_KEY: u64 = 1;
/// How often the virtual player advances and reports its playhead.
const PLAYER_TICK: Duration = Duration::from_millis(100);
/// Most viewers per run, and most runs.
const MAX_VIEWERS: usize = 1000;
const MAX_RUNS: usize = 8;

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| die(&format!("{name}={v} is not a number"))),
        _ => default,
    }
}

fn env_str(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn die(msg: &str) -> ! {
    eprintln!("[bench-seed-load] ERROR: {msg}");
    std::process::exit(1);
}

fn log(msg: &str) {
    eprintln!("[bench-seed-load] {msg}");
}

#[derive(Clone, Debug)]
struct Opts {
    signal_bin: String,
    seed_bin: String,
    ns: Vec<usize>,
    watch: Duration,
    ramp: Duration,
    settle: Duration,
    threads: usize,
    media: String,
    cache: String,
    seed_log: String,
    signal_log: String,
    seed_rust_log: String,
    engine: Config,
}

impl Opts {
    fn from_env() -> Opts {
        let mut args = std::env::args().skip(1);
        let signal_bin = args
            .next()
            .unwrap_or_else(|| "target/release/shoal-signal".into());
        let seed_bin = args
            .next()
            .unwrap_or_else(|| "target/release/shoal-seed".into());
        let ns: Vec<usize> = env_str("NS", "50,100,200")
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| die(&format!("NS: {s:?} is not a number")))
            })
            .collect();
        let o = Opts {
            signal_bin,
            seed_bin,
            ns,
            watch: Duration::from_secs_f64(env_num("WATCH_S", 50.0)),
            ramp: Duration::from_secs_f64(env_num("RAMP_S", 15.0)),
            settle: Duration::from_secs_f64(env_num("SETTLE_S", 5.0)),
            threads: env_num("LOADGEN_THREADS", 2),
            media: env_str("MEDIA", ".shoal/media-seed-load"),
            cache: env_str("CACHE", ".shoal/cache-seed-load"),
            seed_log: env_str("SEED_LOG", "target/bench-seed-load-seed.log"),
            signal_log: env_str("SIGNAL_LOG", "target/bench-seed-load-signal.log"),
            engine: match env_str("VIEWER_CONFIG", "seed-only").as_str() {
                "browser" => Config::default(),
                "seed-only" => Config {
                    peer_wait_ms: 24 * 3600 * 1000,
                    ..Config::default()
                },
                other => die(&format!("VIEWER_CONFIG={other}: seed-only or browser")),
            },
            seed_rust_log: env_str(
                "SEED_RUST_LOG",
                "info,rtc=error,rtc_dtls=error,rtc_ice=error,rtc_sctp=error,webrtc=error",
            ),
        };
        if o.ns.is_empty()
            || o.ns.len() > MAX_RUNS
            || o.ns.iter().any(|&n| n == 0 || n > MAX_VIEWERS)
        {
            die(&format!(
                "NS: 1 to {MAX_RUNS} counts, each in 1..={MAX_VIEWERS}"
            ));
        }
        if !(10.0..=110.0).contains(&o.watch.as_secs_f64())
            || o.ramp.as_secs_f64() > 120.0
            || o.settle.as_secs_f64() > 30.0
            || o.threads == 0
            || o.threads > 16
        {
            die("WATCH_S in 10..=110, RAMP_S <= 120, SETTLE_S <= 30, LOADGEN_THREADS in 1..=16");
        }
        if o.watch < o.ramp + o.settle + Duration::from_secs(10) {
            die("WATCH_S must exceed RAMP_S + SETTLE_S by at least 10 s (the measured window)");
        }
        o
    }
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

/// A `Vm*:` line of /proc/PID/status, in KiB.
fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
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

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// CPU ticks of the seed, the signal server, this process and the machine.
#[derive(Clone, Copy)]
struct Snap {
    at: Instant,
    seed: u64,
    signal: u64,
    me: u64,
    machine: u64,
}

impl Snap {
    fn take(seed: u32, signal: u32) -> Snap {
        Snap {
            at: Instant::now(),
            seed: cpu_ticks(&seed.to_string()),
            signal: cpu_ticks(&signal.to_string()),
            me: cpu_ticks("self"),
            machine: machine_ticks(),
        }
    }
}

/// Cores used between two snapshots.
struct Cores {
    wall_s: f64,
    seed_cpu_s: f64,
    seed: f64,
    signal: f64,
    me: f64,
    other: f64,
}

fn cores(a: &Snap, b: &Snap, tck: f64) -> Cores {
    let wall_s = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / tck;
    let seed_cpu_s = per(a.seed, b.seed);
    let (signal, me) = (per(a.signal, b.signal), per(a.me, b.me));
    let all = per(a.machine, b.machine);
    Cores {
        wall_s,
        seed_cpu_s,
        seed: seed_cpu_s / wall_s,
        signal: signal / wall_s,
        me: me / wall_s,
        other: ((all - seed_cpu_s - signal - me) / wall_s).max(0.0),
    }
}

// ---------------------------------------------------------------- child processes

/// A child process killed when dropped.
struct Proc {
    child: Child,
    what: &'static str,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin args`, stderr to `log_path`, and waits (at most `limit`) for
/// the stdout line starting with `ready`; returns the process and the rest
/// of that line.
fn spawn_ready(
    what: &'static str,
    bin: &str,
    args: &[String],
    env: &[(&str, &str)],
    log_path: &str,
    ready: &str,
    limit: Duration,
) -> Result<(Proc, String), String> {
    let log_file =
        std::fs::File::create(log_path).map_err(|e| format!("cannot create {log_path}: {e}"))?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut proc = Proc { child, what };
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(l)) = lines.next() {
            if line_tx.send(l).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match line_rx.recv_timeout(left) {
            Ok(l) => {
                if let Some(rest) = l.strip_prefix(ready) {
                    return Ok((proc, rest.trim().to_owned()));
                }
            }
            Err(_) => {
                let status = proc.child.try_wait().ok().flatten();
                return Err(format!(
                    "{} did not print {ready} within {:.0} s (exit: {status:?}; log: {log_path})",
                    proc.what,
                    limit.as_secs_f64()
                ));
            }
        }
    }
}

// ---------------------------------------------------------------- one viewer

/// What every viewer of a run shares.
struct Run {
    ws_url: String,
    origin: String,
    content: String,
    manifest: Arc<Manifest>,
    http: reqwest::Client,
    watch: Duration,
    /// The viewers' engine configuration.
    engine: Config,
    t0: Instant,
    progress: Progress,
}

#[derive(Default)]
struct Progress {
    joined: AtomicU64,
    open: AtomicU64,
    playing: AtomicU64,
    fell_behind: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
}

#[derive(Clone, Debug, Default)]
struct Outcome {
    error: Option<String>,
    /// Seconds since the run's start.
    playing_at: Option<f64>,
    left_at: Option<f64>,
    startup_ms: Option<f64>,
    stalls: u32,
    stalled_ms: f64,
    bytes_rtc: u64,
    bytes_http: u64,
    segments_appended: u64,
}

impl Outcome {
    fn kept_up(&self) -> bool {
        self.error.is_none() && self.playing_at.is_some() && self.stalls == 0
    }
}

/// The virtual `<video>`: starts with the first appended segment, then
/// plays at 1x wall clock while media is buffered.
struct Player {
    duration_ms: f64,
    started: bool,
    last: Instant,
    position_ms: f64,
    buffered_to_ms: f64,
    stalled: bool,
    stalls: u32,
    stalled_ms: f64,
}

impl Player {
    fn new(duration_ms: u64) -> Player {
        Player {
            duration_ms: duration_ms as f64,
            started: false,
            last: Instant::now(),
            position_ms: 0.0,
            buffered_to_ms: 0.0,
            stalled: false,
            stalls: 0,
            stalled_ms: 0.0,
        }
    }

    /// Moves the playhead to `t`; true if playback just stalled (the
    /// playhead reached media that is not appended yet).
    fn advance(&mut self, t: Instant) -> bool {
        let dt = t.saturating_duration_since(self.last).as_secs_f64() * 1000.0;
        self.last = t;
        if !self.started {
            return false;
        }
        if self.stalled {
            self.stalled_ms += dt;
            return false;
        }
        let want = self.position_ms + dt;
        if want <= self.buffered_to_ms || self.buffered_to_ms >= self.duration_ms {
            self.position_ms = want.min(self.duration_ms);
            false
        } else {
            self.stalled_ms += want - self.buffered_to_ms;
            self.position_ms = self.buffered_to_ms;
            self.stalled = true;
            self.stalls += 1;
            true
        }
    }

    /// Media up to `end_ms` is appended at `t`. Returns (stalled just
    /// before, started or resumed now).
    fn appended(&mut self, t: Instant, end_ms: f64) -> (bool, bool) {
        let stalled = self.advance(t);
        self.buffered_to_ms = self.buffered_to_ms.max(end_ms);
        if !self.started {
            self.started = true;
            self.last = t;
            return (stalled, true);
        }
        if self.stalled && self.buffered_to_ms > self.position_ms {
            self.stalled = false;
            return (stalled, true);
        }
        (stalled, false)
    }
}

fn ws_text(m: &ClientMsg) -> WsMessage {
    WsMessage::Text(m.encode().into())
}

/// Next server message that matters (bounded by `limit`): heartbeat acks and
/// `peer_left` are skipped, an `error` is an error.
async fn next_msg(rx: &mut WsRx, limit: Duration, what: &str) -> Result<ServerMsg, String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let frame = tokio::time::timeout_at(deadline, rx.next())
            .await
            .map_err(|_| format!("no {what} within {:.0} s", limit.as_secs_f64()))?;
        match frame {
            Some(Ok(WsMessage::Text(t))) => {
                let m = ServerMsg::decode(t.as_str())
                    .map_err(|e| format!("bad signal message: {e}"))?;
                match m {
                    ServerMsg::HeartbeatAck | ServerMsg::PeerLeft { .. } => {}
                    ServerMsg::Error { code, message } => {
                        return Err(format!("signal server error {code:?}: {message}"))
                    }
                    m => return Ok(m),
                }
            }
            Some(Ok(WsMessage::Close(_))) | None => {
                return Err(format!("signal server closed before {what}"))
            }
            Some(Err(e)) => return Err(format!("websocket: {e}")),
            Some(Ok(_)) => {}
        }
    }
}

/// Keeps the viewer's signaling connection alive (heartbeats; whatever the
/// server sends is read and ignored) until `stop` or `hard_end`, then leaves
/// the swarm and closes.
async fn keep_signaling(
    mut tx: WsTx,
    mut rx: WsRx,
    heartbeat: Duration,
    swarm: String,
    mut stop: oneshot::Receiver<()>,
    hard_end: Instant,
) {
    let mut hb = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = tokio::time::sleep_until(hard_end.into());
    tokio::pin!(end);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = &mut end => break,
            _ = hb.tick() => {
                if tx.send(ws_text(&ClientMsg::Heartbeat)).await.is_err() {
                    return;
                }
            }
            m = rx.next() => match m {
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = timeout(
        Duration::from_secs(2),
        tx.send(ws_text(&ClientMsg::Leave { swarm })),
    )
    .await;
    let _ = timeout(Duration::from_secs(2), tx.close()).await;
}

fn resource_url(run: &Run, res: Resource) -> String {
    let uri = match res {
        Resource::Init => &run.manifest.init().uri,
        Resource::Segment(s) => &run.manifest.entry(s).uri,
    };
    format!("{}/vod/{}/{uri}", run.origin, run.content)
}

/// One viewer, from its join at `start` to its departure `watch` later.
async fn viewer_task(run: Arc<Run>, start: Instant) -> Outcome {
    tokio::time::sleep_until(start.into()).await;
    let joined = Instant::now();
    let mut out = Outcome::default();
    run.progress.joined.fetch_add(1, Relaxed);
    if let Err(e) = play(&run, joined, &mut out).await {
        out.error = Some(e);
        run.progress.failed.fetch_add(1, Relaxed);
    }
    out.left_at = Some(run.t0.elapsed().as_secs_f64());
    run.progress.done.fetch_add(1, Relaxed);
    out
}

async fn play(run: &Arc<Run>, joined: Instant, out: &mut Outcome) -> Result<(), String> {
    let leave_at = joined + run.watch;
    // Signaling: hello, join, the seed's peer id from the peer list.
    let (ws, _) = timeout(STEP, tokio_tungstenite::connect_async(run.ws_url.as_str()))
        .await
        .map_err(|_| "signal server: no connection within 15 s".to_string())?
        .map_err(|e| format!("signal server: {e}"))?;
    let (mut tx, mut rx) = ws.split();
    let send_err = |e: tokio_tungstenite::tungstenite::Error| format!("websocket send: {e}");
    tx.send(ws_text(&ClientMsg::Hello {
        role: Role::Viewer,
        token: None,
        seed: None,
    }))
    .await
    .map_err(send_err)?;
    let heartbeat_ms = match next_msg(&mut rx, STEP, "welcome").await? {
        ServerMsg::Welcome { heartbeat_ms, .. } => heartbeat_ms,
        other => return Err(format!("expected welcome, got {other:?}")),
    };
    tx.send(ws_text(&ClientMsg::Join {
        swarm: run.content.clone(),
    }))
    .await
    .map_err(send_err)?;
    let seed_peer = match next_msg(&mut rx, STEP, "joined").await? {
        ServerMsg::Joined { peers, .. } => peers
            .into_iter()
            .find(|p| p.is_seed)
            .map(|p| p.peer_id)
            .ok_or_else(|| "the seed is not in the peer list".to_string())?,
        other => return Err(format!("expected joined, got {other:?}")),
    };

    // WebRTC to the seed only (P2P off): offer (complete, loopback
    // candidates asserted), answer (asserted likewise).
    let viewer = Viewer::offer().await;
    tx.send(ws_text(&ClientMsg::Relay {
        swarm: run.content.clone(),
        to: seed_peer.clone(),
        signal: RtcSignal::Offer {
            sdp: viewer.offer.clone(),
        },
    }))
    .await
    .map_err(send_err)?;
    let answer = loop {
        match next_msg(&mut rx, STEP, "the seed's answer").await? {
            ServerMsg::Relay {
                from,
                signal: RtcSignal::Answer { sdp },
                ..
            } if from == seed_peer => break sdp,
            _ => {}
        }
    };
    viewer.accept(answer).await;
    let (stop_tx, stop_rx) = oneshot::channel();
    let signaling = tokio::spawn(keep_signaling(
        tx,
        rx,
        Duration::from_millis(heartbeat_ms.clamp(100, 60_000)),
        run.content.clone(),
        stop_rx,
        leave_at + Duration::from_secs(5),
    ));
    let result = drive(run, &viewer, &seed_peer, joined, leave_at, out).await;
    let _ = timeout(Duration::from_secs(5), viewer.pc.close()).await;
    let _ = stop_tx.send(());
    let _ = timeout(Duration::from_secs(10), signaling).await;
    result
}

/// Runs the viewer engine and the virtual player over the open channel
/// until `leave_at`.
async fn drive(
    run: &Arc<Run>,
    viewer: &Viewer,
    seed_peer: &str,
    joined: Instant,
    leave_at: Instant,
    out: &mut Outcome,
) -> Result<(), String> {
    timeout(STEP, async {
        loop {
            match viewer.dc.poll().await {
                Some(DataChannelEvent::OnOpen) => return Ok(()),
                Some(DataChannelEvent::OnClose) | None => {
                    return Err("channel closed before it opened".to_string())
                }
                Some(_) => {}
            }
        }
    })
    .await
    .map_err(|_| "data channel did not open within 15 s".to_string())??;
    run.progress.open.fetch_add(1, Relaxed);

    let manifest = run.manifest.clone();
    let origin = Instant::now();
    let now_ms = || origin.elapsed().as_millis() as u64;
    let mut engine = Engine::new(manifest.clone(), run.engine.clone());
    let mut player = Player::new(manifest.duration_ms());
    let (http_tx, mut http_rx) = mpsc::unbounded_channel::<(Resource, Option<Vec<u8>>)>();
    engine.handle_input(now_ms(), Input::Playhead { position_ms: 0 });
    // As the player's driver after `joined`: the viewers it connects to
    // (none, P2P is off), so the engine does not wait for them.
    engine.handle_input(now_ms(), Input::Joined { viewers: 0 });
    engine.handle_input(
        now_ms(),
        Input::PeerConnected {
            peer: SEED_KEY,
            remote_id: seed_peer,
            is_seed: true,
        },
    );
    let mut tick = tokio::time::interval(PLAYER_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let leave = tokio::time::sleep_until(leave_at.into());
    tokio::pin!(leave);
    let mut fell_behind = false;
    loop {
        while let Some(o) = engine.poll_output() {
            match o {
                Output::Send { data, .. } => {
                    timeout(STEP, viewer.dc.send(BytesMut::from(&data[..])))
                        .await
                        .map_err(|_| "send to the seed blocked for 15 s".to_string())?
                        .map_err(|e| format!("send to the seed: {e}"))?;
                }
                Output::HttpFetch { res } => {
                    let (url, http, tx) =
                        (resource_url(run, res), run.http.clone(), http_tx.clone());
                    tokio::spawn(async move {
                        let body = timeout(STEP, async {
                            let r = http.get(url).send().await.ok()?;
                            r.error_for_status().ok()?.bytes().await.ok()
                        })
                        .await
                        .ok()
                        .flatten();
                        let _ = tx.send((res, body.map(|b| b.to_vec())));
                    });
                }
                Output::Append { seg, .. } => {
                    out.segments_appended += 1;
                    let end =
                        (manifest.start_ms(seg) + manifest.entry(seg).duration_ms as u64) as f64;
                    let t = Instant::now();
                    let (stalled, playing) = player.appended(t, end);
                    if stalled {
                        engine.handle_input(now_ms(), Input::Media(MediaEvent::Waiting));
                    }
                    if playing {
                        if out.playing_at.is_none() {
                            out.playing_at = Some(t.duration_since(run.t0).as_secs_f64());
                            out.startup_ms = Some(t.duration_since(joined).as_secs_f64() * 1e3);
                            run.progress.playing.fetch_add(1, Relaxed);
                        }
                        engine.handle_input(now_ms(), Input::Media(MediaEvent::Playing));
                    }
                }
                Output::DropPeer { reason, .. } | Output::ClosePeer { reason, .. } => {
                    return Err(format!("the viewer engine closed the seed: {reason}"));
                }
                // AppendInit, EndOfStream, RemoveMedia: nothing to do for a
                // virtual player (and Load is seed-only).
                _ => {}
            }
        }
        if player.stalls > 0 && !fell_behind {
            fell_behind = true;
            run.progress.fell_behind.fetch_add(1, Relaxed);
        }
        tokio::select! {
            ev = viewer.dc.poll() => match ev {
                Some(DataChannelEvent::OnMessage(m)) => engine.handle_input(
                    now_ms(),
                    Input::PeerData { peer: SEED_KEY, data: &m.data },
                ),
                Some(DataChannelEvent::OnClose) | None => {
                    return Err("the seed closed the channel".to_string())
                }
                Some(_) => {}
            },
            Some((res, body)) = http_rx.recv() => match body {
                Some(data) => engine.handle_input(now_ms(), Input::HttpDone { res, data }),
                None => engine.handle_input(now_ms(), Input::HttpFailed { res }),
            },
            _ = tick.tick() => {
                if player.advance(Instant::now()) {
                    engine.handle_input(now_ms(), Input::Media(MediaEvent::Waiting));
                }
                let now = now_ms();
                engine.handle_input(now, Input::Playhead { position_ms: player.position_ms as u64 });
                if engine.poll_timeout().is_some_and(|t| t <= now) {
                    engine.handle_input(now, Input::Timeout);
                }
            }
            _ = &mut leave => break,
        }
    }
    player.advance(Instant::now());
    let st = engine.stats();
    out.stalls = player.stalls;
    out.stalled_ms = player.stalled_ms;
    out.bytes_rtc = st.bytes_from_seed;
    out.bytes_http = st.bytes_from_http;
    if out.playing_at.is_none() {
        return Err(format!(
            "never started playing ({} segments appended)",
            out.segments_appended
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- one run

async fn get_text(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let r = timeout(Duration::from_secs(10), async {
        http.get(url).send().await?.error_for_status()?.text().await
    })
    .await
    .map_err(|_| format!("GET {url}: no answer within 10 s"))?;
    r.map_err(|e| format!("GET {url}: {e}"))
}

async fn seed_stats(http: &reqwest::Client, origin: &str) -> Value {
    match get_text(http, &format!("{origin}/api/stats")).await {
        Ok(t) => serde_json::from_str(&t).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn stat(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

/// A fresh 256-bit key (hex) for one run's signal server and seed.
fn bench_key() -> String {
    use std::hash::{BuildHasher, Hasher};
    (0..4)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(i);
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            format!("{:016x}", h.finish())
        })
        .collect()
}

async fn run_one(o: &Opts, n: usize, tck: f64) -> Result<Value, String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| format!("http client: {e}"))?;
    // A signal server that verifies seed credentials reads its seed key from
    // SHOAL_SEED_KEY, and the seed signs its token with the same variable;
    // one that caps WebSocket connections per address reads the cap from
    // SHOAL_MAX_CONNS_PER_ADDR (every viewer here comes from 127.0.0.1).
    // Builds without these features ignore the variables.
    let seed_key = bench_key();
    let key_env = [("SHOAL_SEED_KEY", seed_key.as_str())];
    let conns_per_addr = (n + 64).to_string();
    let signal_env = [
        key_env[0],
        ("SHOAL_MAX_CONNS_PER_ADDR", conns_per_addr.as_str()),
    ];
    let big = (n + 16).to_string();
    let (signal, signal_url) = spawn_ready(
        "shoal-signal",
        &o.signal_bin,
        &[
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--match-max".into(),
            big.clone(),
            "--match-enough".into(),
            big,
        ],
        &signal_env,
        &o.signal_log,
        "SHOAL_SIGNAL_LISTENING ",
        Duration::from_secs(10),
    )?;
    if !signal_url.starts_with("http://127.0.0.1:") {
        return Err(format!("the signal server listens on {signal_url}"));
    }
    let ws_url = format!("ws{}/ws", signal_url.trim_start_matches("http"));
    let (seed, origin) = spawn_ready(
        "shoal-seed",
        &o.seed_bin,
        &[
            "--media".into(),
            o.media.clone(),
            "--cache".into(),
            o.cache.clone(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--signal".into(),
            ws_url.clone(),
            "--rtc-ip".into(),
            "127.0.0.1".into(),
            "--capacity".into(),
            n.to_string(),
            "--max-conns-per-peer".into(),
            "1".into(),
        ],
        &[key_env[0], ("RUST_LOG", o.seed_rust_log.as_str())],
        &o.seed_log,
        "SHOAL_SEED_LISTENING ",
        Duration::from_secs(600),
    )?;
    if !origin.starts_with("http://127.0.0.1:") {
        return Err(format!("the seed listens on {origin}"));
    }
    let (seed_pid, signal_pid) = (seed.child.id(), signal.child.id());

    // The one content and its manifest.
    let index: Value =
        serde_json::from_str(&get_text(&http, &format!("{origin}/vod/index.json")).await?)
            .map_err(|e| format!("index.json: {e}"))?;
    let entry = match index.as_array().map(Vec::as_slice) {
        Some([e]) => e.clone(),
        _ => {
            return Err(format!(
                "the seed must publish exactly one content, it has {index}"
            ))
        }
    };
    let content = entry["content_id"].as_str().unwrap_or_default().to_owned();
    let manifest_path = entry["manifest"].as_str().unwrap_or_default();
    let manifest =
        Manifest::from_json(&get_text(&http, &format!("{origin}{manifest_path}")).await?)
            .map_err(|e| format!("manifest: {e}"))?;
    let bytes: u64 = manifest.segments().iter().map(|s| s.size).sum();
    let bitrate_kbps = bytes as f64 * 8.0 / manifest.duration_ms().max(1) as f64;
    if (manifest.duration_ms() as f64) < o.watch.as_secs_f64() * 1000.0 + 5000.0 {
        return Err(format!(
            "the content lasts {} ms, shorter than WATCH_S + 5 s",
            manifest.duration_ms()
        ));
    }

    // Registered with the signal server?
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let seeds = get_text(&http, &format!("{signal_url}/api/seeds")).await?;
        if seeds.contains(&content) {
            break;
        }
        if Instant::now() > deadline {
            return Err("the seed did not register with the signal server within 15 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = status_kib(seed_pid, "VmRSS:");
    log(&format!(
        "N={n}: seed pid {seed_pid} ({origin}, RSS {:.1} MiB), signal pid {signal_pid}; content {content}, {:.0} kbit/s, {} segments",
        rss_before as f64 / 1024.0,
        bitrate_kbps,
        manifest.segment_count()
    ));

    let t0 = Instant::now();
    let run = Arc::new(Run {
        ws_url,
        origin: origin.clone(),
        content,
        manifest: Arc::new(manifest),
        http: http.clone(),
        watch: o.watch,
        engine: o.engine.clone(),
        t0,
        progress: Progress::default(),
    });
    let gap = o.ramp.as_secs_f64() / n as f64;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let start = t0 + Duration::from_secs_f64(gap * i as f64);
            tokio::spawn(viewer_task(run.clone(), start))
        })
        .collect();

    // Monitor: the steady window's snapshots, the seed's RSS, progress.
    let snap_start = Snap::take(seed_pid, signal_pid);
    let stats_start_run = seed_stats(&http, &origin).await;
    let win_from = t0 + o.ramp + o.settle;
    // Ends a second before the first viewer leaves.
    let win_to = t0 + o.watch - Duration::from_secs(1);
    let hard_end = t0 + o.ramp + o.watch + Duration::from_secs(45);
    let mut win_a: Option<(Snap, Value)> = None;
    let mut win_b: Option<(Snap, Value)> = None;
    let mut rss_max = 0u64;
    let mut last_log = Instant::now();
    let mut every = tokio::time::interval(Duration::from_millis(250));
    loop {
        every.tick().await;
        let now = Instant::now();
        if win_a.is_none() && now >= win_from {
            win_a = Some((
                Snap::take(seed_pid, signal_pid),
                seed_stats(&http, &origin).await,
            ));
        }
        if win_a.is_some() && now < win_to {
            rss_max = rss_max.max(status_kib(seed_pid, "VmRSS:"));
        }
        if win_b.is_none() && now >= win_to {
            win_b = Some((
                Snap::take(seed_pid, signal_pid),
                seed_stats(&http, &origin).await,
            ));
        }
        let p = &run.progress;
        let done = p.done.load(Relaxed) as usize;
        if last_log.elapsed() >= Duration::from_secs(5) || done == n {
            last_log = now;
            log(&format!(
                "N={n} t={:.0}s: joined {} open {} playing {} fell_behind {} failed {} done {}; seed RSS {:.1} MiB",
                t0.elapsed().as_secs_f64(),
                p.joined.load(Relaxed),
                p.open.load(Relaxed),
                p.playing.load(Relaxed),
                p.fell_behind.load(Relaxed),
                p.failed.load(Relaxed),
                done,
                status_kib(seed_pid, "VmRSS:") as f64 / 1024.0
            ));
        }
        if done == n || now > hard_end {
            break;
        }
    }
    let snap_end = Snap::take(seed_pid, signal_pid);
    let mut outcomes = Vec::with_capacity(n);
    for t in tasks {
        if !t.is_finished() {
            t.abort();
        }
        outcomes.push(match t.await {
            Ok(o) => o,
            Err(e) => Outcome {
                error: Some(if e.is_panic() {
                    let p = e.into_panic();
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into())
                } else {
                    "did not finish in time".into()
                }),
                ..Outcome::default()
            },
        });
    }
    // The slots must come free once the viewers are gone.
    let mut stats_end = seed_stats(&http, &origin).await;
    for _ in 0..40 {
        if stat(&stats_end, "slots") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        stats_end = seed_stats(&http, &origin).await;
    }
    let hwm = status_kib(seed_pid, "VmHWM:");
    drop(seed);
    drop(signal);

    let (Some((a, sa)), Some((b, sb))) = (win_a, win_b) else {
        return Err("the run ended before its measured window".into());
    };
    let w = cores(&a, &b, tck);
    let whole = cores(&snap_start, &snap_end, tck);
    let (from_s, to_s) = (
        a.at.duration_since(t0).as_secs_f64(),
        b.at.duration_since(t0).as_secs_f64(),
    );
    let playing_through = outcomes
        .iter()
        .filter(|x| {
            x.playing_at.is_some_and(|p| p <= from_s)
                && x.left_at.is_some_and(|l| l >= to_s)
                && x.error.is_none()
        })
        .count();
    let viewer_min_watched: f64 = outcomes
        .iter()
        .filter_map(|x| Some((x.left_at? - x.playing_at?).max(0.0) / 60.0))
        .sum();
    let kept_up = outcomes.iter().filter(|x| x.kept_up()).count();
    let failed = outcomes.iter().filter(|x| x.error.is_some()).count();
    let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
    for e in outcomes.iter().filter_map(|x| x.error.as_ref()) {
        let key: String = e.chars().take(80).collect();
        *errors.entry(key).or_default() += 1;
    }
    let mut startups: Vec<f64> = outcomes.iter().filter_map(|x| x.startup_ms).collect();
    let startup_max = startups
        .iter()
        .copied()
        .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
    let startup_median = median(&mut startups);
    let rtc_win = stat(&sb, "rtc_bytes_served").saturating_sub(stat(&sa, "rtc_bytes_served"));
    let http_win = stat(&sb, "http_bytes_served").saturating_sub(stat(&sa, "http_bytes_served"));
    let rtc_all = stat(&stats_end, "rtc_bytes_served")
        .saturating_sub(stat(&stats_start_run, "rtc_bytes_served"));
    let http_all = stat(&stats_end, "http_bytes_served")
        .saturating_sub(stat(&stats_start_run, "http_bytes_served"));
    let per_viewer_min = |cpu_s: f64, viewer_min: f64| {
        if viewer_min > 0.0 {
            Some(round(cpu_s / viewer_min, 4))
        } else {
            None
        }
    };
    let window_viewer_min = playing_through as f64 * w.wall_s / 60.0;
    let mib = |kib: u64| round(kib as f64 / 1024.0, 1);
    Ok(json!({
        "viewers": n,
        "kept_up": kept_up,
        "cpu_s_per_viewer_min": per_viewer_min(w.seed_cpu_s, window_viewer_min),
        "rss_mb_per_viewer": round(rss_max.saturating_sub(rss_before) as f64 / 1024.0 / n as f64, 3),
        "seed_cores": round(w.seed, 3),
        "bitrate_kbps": round(bitrate_kbps, 0),
        "delivered_kbps_per_viewer": if playing_through > 0 {
            Some(round((rtc_win + http_win) as f64 * 8.0 / 1000.0 / w.wall_s / playing_through as f64, 0))
        } else { None },
        "rtc_share": if rtc_win + http_win > 0 { Some(round(rtc_win as f64 / (rtc_win + http_win) as f64, 3)) } else { None },
        "rtc_share_incl_startup": if rtc_all + http_all > 0 { Some(round(rtc_all as f64 / (rtc_all + http_all) as f64, 3)) } else { None },
        "failed": failed,
        "errors": errors,
        "playing_through_window": playing_through,
        "window_s": round(w.wall_s, 1),
        "cpu_s_per_viewer_min_incl_joins": per_viewer_min(whole.seed_cpu_s, viewer_min_watched),
        "seed_rss_mb_before": mib(rss_before),
        "seed_rss_mb": mib(rss_max),
        "seed_hwm_mb": mib(hwm),
        "startup_ms_median": startup_median.map(|x| round(x, 0)),
        "startup_ms_max": startup_max.map(|x| round(x, 0)),
        "stalls": outcomes.iter().map(|x| x.stalls as u64).sum::<u64>(),
        "stalled_ms": round(outcomes.iter().map(|x| x.stalled_ms).sum::<f64>(), 0),
        "viewer_config": env_str("VIEWER_CONFIG", "seed-only"),
        "viewer_rtc_mb": round(outcomes.iter().map(|x| x.bytes_rtc).sum::<u64>() as f64 / 1048576.0, 1),
        "viewer_http_mb": round(outcomes.iter().map(|x| x.bytes_http).sum::<u64>() as f64 / 1048576.0, 1),
        "seed_refused_over_capacity": stat(&stats_end, "refused_over_capacity"),
        "seed_handshake_timeouts": stat(&stats_end, "handshake_timeouts"),
        "seed_slots_max": stat(&stats_end, "slots_max"),
        "seed_slots_left": stat(&stats_end, "slots"),
        "loadgen_cores": round(w.me, 3),
        "signal_cores": round(w.signal, 3),
        "other_cores": round(w.other, 3),
        "machine_busy_cores": round(w.seed + w.signal + w.me + w.other, 3),
        "machine_cores": std::thread::available_parallelism().map(|x| x.get()).unwrap_or(0),
    }))
}

fn main() {
    let o = Opts::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let tck = clk_tck();
    let total = Instant::now();
    let mut best: Option<(usize, f64, f64)> = None;
    let mut bitrate = None;
    for &n in &o.ns {
        log(&format!(
            "run: {n} viewers, {:.0} s ramp, {:.0} s each",
            o.ramp.as_secs_f64(),
            o.watch.as_secs_f64()
        ));
        match rt.block_on(run_one(&o, n, tck)) {
            Ok(v) => {
                println!("{v}");
                bitrate = v["bitrate_kbps"].as_f64().or(bitrate);
                let cores = v["seed_cores"].as_f64().unwrap_or(0.0);
                if v["kept_up"].as_u64() == Some(n as u64)
                    && cores > 0.0
                    && best.is_none_or(|(b, _, _)| n > b)
                {
                    best = Some((n, cores, n as f64 / cores));
                }
            }
            Err(e) => {
                log(&format!("N={n}: {e}"));
                println!("{}", json!({ "viewers": n, "error": e }));
            }
        }
        // Let sockets of the previous run close before the next.
        std::thread::sleep(Duration::from_secs(2));
    }
    println!(
        "{}",
        json!({
            "viewers_per_core": best.map(|(_, _, v)| round(v, 0)),
            "largest_n_kept_up": best.map(|(n, _, _)| n),
            "seed_cores_at_largest_n": best.map(|(_, c, _)| round(c, 3)),
            "bitrate_kbps": bitrate,
            "target_viewers_per_core": 400,
        })
    );
    log(&format!("done in {:.0} s", total.elapsed().as_secs_f64()));
    rt.shutdown_timeout(Duration::from_secs(2));
}
