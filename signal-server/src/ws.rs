//! One WebSocket connection: reads client frames, feeds them to the state,
//! writes the client's outgoing queue back to the socket.
//!
//! Before `hello` the connection has no queue and answers errors directly;
//! after it, everything the client receives comes through its queue (see
//! [`crate::state`]). Any frame from the client resets its silence deadline.
//! When the state drops the client (timeout elsewhere, slow consumer,
//! replaced seed) the queue closes and so does the socket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State as AxState};
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use swarm_proto::signal::{ClientMsg, ErrorCode, RefuseReason, Role, ServerMsg, MAX_SIGNAL_FRAME};

use crate::auth::{unix_now, Refusal};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

use crate::state::{LeaveReason, OUTBOX_LEN};
use crate::AppState;
use crate::{Config, ConnSlot};

/// Largest message the WebSocket layer reads. Frames between
/// [`MAX_SIGNAL_FRAME`] and this are read and answered with `too_large`;
/// larger ones make the WebSocket layer fail and the connection closes.
pub const MAX_WS_MESSAGE: usize = 16 * MAX_SIGNAL_FRAME;
/// Read buffer per WebSocket: what one read takes at most. Signaling frames
/// are a few hundred bytes (an SDP a few KiB, read in several reads); every
/// idle peer holds one, so it is most of an idle peer's memory (8 KiB: 16
/// MiB per 1000 idle peers; 1 KiB: 9.3 MiB).
pub const WS_READ_BUFFER: usize = 1024;

pub(crate) async fn ws_handler(
    ws: WebSocketUpgrade,
    AxState(app): AxState<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
) -> Response {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(a)| a.ip());
    let xff = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let addr = app.client_addr(peer, xff);
    if let Err(why) = origin_allowed(app.config(), &headers) {
        tracing::warn!(%addr, %why, "limit: WebSocket from a page of another origin refused");
        app.metrics().limit("origin");
        return (StatusCode::FORBIDDEN, why).into_response();
    }
    let Some(slot) = app.take_conn_slot(addr) else {
        let max = app.config().limits.max_conns_per_addr;
        tracing::warn!(%addr, max, "limit: connections per address reached; upgrade refused");
        app.metrics().limit("conns_per_addr");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            format!("{addr} has {max} connections open already"),
        )
            .into_response();
    };
    // Signaling frames are small: an 8 KiB read buffer instead of the
    // library's 128 KiB (which was most of the memory per connection).
    ws.read_buffer_size(WS_READ_BUFFER)
        .max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| Conn::new(app, addr, slot).run(socket))
}

/// Whether a browser page of the request's `Origin` may connect (see
/// [`Config::allowed_origins`]); the reason otherwise.
fn origin_allowed(config: &Config, headers: &HeaderMap) -> Result<(), String> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let allowed = &config.allowed_origins;
    if allowed
        .iter()
        .any(|o| o == "*" || o.trim_end_matches('/') == origin)
    {
        return Ok(());
    }
    if allowed.is_empty() {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
        if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
            return Ok(());
        }
    }
    Err(format!(
        "pages from {origin} may not use this signal server (add it with --allowed-origin)"
    ))
}

/// A token bucket: `rate` per second, up to `burst` saved up.
struct Bucket {
    rate: f64,
    burst: f64,
    level: f64,
    at: Instant,
    /// Whether the limit was logged for this connection already.
    logged: bool,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Bucket {
        Bucket {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            level: f64::from(burst.max(1)),
            at: Instant::now(),
            logged: false,
        }
    }

    /// Takes `n`; returns how long the caller must wait to have paid.
    fn take(&mut self, n: f64) -> Duration {
        let now = Instant::now();
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.level = (self.level + dt * self.rate).min(self.burst) - n;
        if self.level >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.level / self.rate)
        }
    }
}

enum Step {
    Continue,
    Close(LeaveReason),
}

struct Conn {
    app: AppState,
    addr: IpAddr,
    _slot: ConnSlot,
    msgs: Bucket,
    relay_bytes: Bucket,
    peer_id: Option<String>,
    rx: Option<mpsc::Receiver<String>>,
    bad_frames: u32,
}

impl Conn {
    fn new(app: AppState, addr: IpAddr, slot: ConnSlot) -> Self {
        let l = &app.config().limits;
        let msgs = Bucket::new(l.msgs_per_s, l.msg_burst);
        let relay_bytes = Bucket::new(l.relay_bytes_per_s, l.relay_burst_bytes);
        Conn {
            app,
            addr,
            _slot: slot,
            msgs,
            relay_bytes,
            peer_id: None,
            rx: None,
            bad_frames: 0,
        }
    }

    /// Serves the connection until it closes. Not an `async fn`: rustc keeps
    /// an async fn's arguments apart from its body's locals, so `self` and
    /// `socket` (560 bytes) would be stored twice in every connection's task.
    #[allow(clippy::manual_async_fn)] // on purpose, see above
    fn run(mut self, mut socket: WebSocket) -> impl std::future::Future<Output = ()> + Send {
        async move {
            let silence = Duration::from_millis(self.app.config().heartbeat_timeout_ms);
            let send_limit = crate::send_timeout(self.app.config());
            let mut deadline = Instant::now() + silence;
            let reason = loop {
                let step = tokio::select! {
                    biased;
                    out = next_out(&mut self.rx) => match out {
                        Some(text) => match timeout(send_limit, socket.send(Message::Text(text.into()))).await {
                            Ok(Ok(())) => Step::Continue,
                            _ => Step::Close(LeaveReason::Disconnected),
                        },
                        // The state dropped this client.
                        None => break None,
                    },
                    _ = sleep_until(deadline) => Step::Close(LeaveReason::TimedOut),
                    inbound = socket.recv() => match inbound {
                        Some(Ok(msg)) => {
                            deadline = Instant::now() + silence;
                            // Boxed: handling a frame (a decoded ClientMsg held
                            // across awaits) is most of this future's size, and
                            // every idle peer's task would keep that room.
                            Box::pin(self.on_message(&mut socket, msg)).await
                        }
                        Some(Err(e)) => {
                            tracing::warn!(addr = %self.addr, peer = ?self.peer_id, error = %e, "websocket read failed");
                            Step::Close(LeaveReason::Disconnected)
                        }
                        None => Step::Close(LeaveReason::Disconnected),
                    },
                };
                if let Step::Close(reason) = step {
                    break Some(reason);
                }
            };
            if let Some(reason) = reason {
                if reason == LeaveReason::TimedOut {
                    tracing::info!(addr = %self.addr, peer = ?self.peer_id, "silent for too long; closing");
                }
                if let Some(id) = &self.peer_id {
                    self.app.lock().remove(id, reason);
                }
            }
            // Flush what is already queued (e.g. the last error), then close.
            if let Some(rx) = &mut self.rx {
                while let Ok(text) = rx.try_recv() {
                    if timeout(
                        Duration::from_millis(200),
                        socket.send(Message::Text(text.into())),
                    )
                    .await
                    .is_err()
                    {
                        break;
                    }
                }
            }
            let (code, why) = match reason {
                Some(LeaveReason::TimedOut) => (1001, "heartbeat timeout"),
                Some(LeaveReason::TooManyBadFrames) => (1008, "too many bad frames"),
                Some(LeaveReason::Refused) => (1008, "refused"),
                Some(LeaveReason::Disconnected) => (1000, "bye"),
                _ => (1008, "removed by the server"),
            };
            let close = Message::Close(Some(CloseFrame {
                code,
                reason: why.into(),
            }));
            let _ = timeout(Duration::from_millis(500), socket.send(close)).await;
        }
    }

    async fn on_message(&mut self, socket: &mut WebSocket, msg: Message) -> Step {
        match msg {
            Message::Text(text) => self.on_text(socket, text.as_str()).await,
            Message::Binary(b) => {
                self.throttle(false, 0).await;
                self.bad(
                    socket,
                    ErrorCode::BadMessage,
                    format!("binary frames are not accepted ({} bytes)", b.len()),
                )
                .await
            }
            Message::Ping(_) | Message::Pong(_) => {
                self.throttle(false, 0).await;
                Step::Continue
            }
            Message::Close(_) => Step::Close(LeaveReason::Disconnected),
        }
    }

    /// Slows a connection that sends faster than its limits: its frames
    /// are read no faster, which is all the sender feels.
    async fn throttle(&mut self, relay: bool, len: usize) {
        let mut wait = self.msgs.take(1.0);
        let mut what = "messages per second";
        if relay {
            let w = self.relay_bytes.take(len as f64);
            if w > wait {
                wait = w;
                what = "relayed bytes per second";
            }
        }
        if wait.is_zero() {
            return;
        }
        let (bucket, name) = if what == "messages per second" {
            (&mut self.msgs, "msgs_per_s")
        } else {
            (&mut self.relay_bytes, "relay_bytes_per_s")
        };
        self.app.metrics().limit(name);
        if !std::mem::replace(&mut bucket.logged, true) {
            tracing::warn!(addr = %self.addr, peer = ?self.peer_id, limit = what, "limit: client sends too fast; reading its frames slower");
        }
        tokio::time::sleep(wait).await;
    }

    async fn on_text(&mut self, socket: &mut WebSocket, text: &str) -> Step {
        let decoded = ClientMsg::decode(text);
        let relay = matches!(decoded, Ok(ClientMsg::Relay { .. }));
        self.throttle(relay, text.len()).await;
        let msg = match decoded {
            Ok(m) => m,
            Err(e) => return self.bad(socket, e.code(), e.to_string()).await,
        };
        match (&self.peer_id, msg) {
            (None, ClientMsg::Hello { role, seed, token }) => {
                let auth = &self.app.config().auth;
                let now = unix_now();
                let viewer = match (role, &seed) {
                    (Role::Seed, None) => {
                        return self
                            .bad(
                                socket,
                                ErrorCode::BadMessage,
                                "a seed's hello must carry `seed` info".into(),
                            )
                            .await;
                    }
                    (Role::Seed, Some(s)) => {
                        match auth.admit_seed(token.as_deref(), &s.seed_id, now) {
                            Ok(()) => None,
                            Err(r) => return self.refuse(socket, r).await,
                        }
                    }
                    (Role::Viewer, _) => match auth.admit_viewer(token.as_deref(), now) {
                        Ok(v) => v,
                        Err(r) => return self.refuse(socket, r).await,
                    },
                };
                if role == Role::Viewer {
                    let who = viewer.as_ref().map(|v| v.sub.as_str());
                    let left = self.app.lock().banned(who, self.addr, now);
                    if let Some(secs) = left {
                        let r = Refusal::new(
                            RefuseReason::Banned,
                            format!("banned for {secs} more seconds"),
                        );
                        return self.refuse(socket, r).await;
                    }
                }
                let (tx, rx) = mpsc::channel(OUTBOX_LEN);
                let group = self.app.config().groups.lookup(self.addr).to_owned();
                let id = self
                    .app
                    .lock()
                    .register(role, seed, viewer, self.addr, group, tx);
                self.peer_id = Some(id);
                self.rx = Some(rx);
                self.bad_frames = 0;
                Step::Continue
            }
            (None, other) => {
                let what = msg_name(&other);
                self.bad(
                    socket,
                    ErrorCode::Protocol,
                    format!("`{what}` before `hello`: send hello first"),
                )
                .await
            }
            (Some(_), ClientMsg::Hello { .. }) => {
                self.bad(socket, ErrorCode::Protocol, "hello was already sent".into())
                    .await
            }
            (Some(id), other) => {
                self.bad_frames = 0;
                self.app.metrics().frames.inc();
                self.app.lock().handle(id, other, std::time::Instant::now());
                Step::Continue
            }
        }
    }

    /// Refuses admission at `hello`: says why, then closes.
    async fn refuse(&mut self, socket: &mut WebSocket, r: Refusal) -> Step {
        tracing::info!(addr = %self.addr, reason = ?r.reason, detail = %r.detail, "hello refused");
        self.app.metrics().refused(r.reason);
        let detail = format!("{:?} from {}: {}", r.reason, self.addr, r.detail);
        self.app.lock().event("hello refused", None, detail);
        let text = ServerMsg::refused(None, r.reason, &r.detail).encode();
        let limit = crate::send_timeout(self.app.config());
        let _ = timeout(limit, socket.send(Message::Text(text.into()))).await;
        Step::Close(LeaveReason::Refused)
    }

    /// Answers a bad frame with an error; closes after too many in a row.
    async fn bad(&mut self, socket: &mut WebSocket, code: ErrorCode, message: String) -> Step {
        self.bad_frames += 1;
        tracing::warn!(addr = %self.addr, peer = ?self.peer_id, ?code, %message, "bad frame");
        match &self.peer_id {
            Some(id) => {
                self.app.lock().send_error(id, code, message);
            }
            None => {
                let text = ServerMsg::Error { code, message }.encode();
                let limit = crate::send_timeout(self.app.config());
                if !matches!(
                    timeout(limit, socket.send(Message::Text(text.into()))).await,
                    Ok(Ok(()))
                ) {
                    return Step::Close(LeaveReason::Disconnected);
                }
            }
        }
        if self.bad_frames >= self.app.config().max_bad_frames {
            tracing::warn!(addr = %self.addr, peer = ?self.peer_id, "closing after {} bad frames in a row", self.bad_frames);
            Step::Close(LeaveReason::TooManyBadFrames)
        } else {
            Step::Continue
        }
    }
}

async fn next_out(rx: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn msg_name(m: &ClientMsg) -> &'static str {
    match m {
        ClientMsg::Hello { .. } => "hello",
        ClientMsg::Join { .. } => "join",
        ClientMsg::Leave { .. } => "leave",
        ClientMsg::GetPeers { .. } => "get_peers",
        ClientMsg::Relay { .. } => "relay",
        ClientMsg::Heartbeat => "heartbeat",
        ClientMsg::Report { .. } => "report",
        ClientMsg::Stopped { .. } => "stopped",
        ClientMsg::ConnResult { .. } => "conn_result",
        ClientMsg::SeedCommandResult { .. } => "seed_command_result",
        ClientMsg::SeedUpdate { .. } => "seed_update",
        ClientMsg::SeedReport { .. } => "seed_report",
    }
}
