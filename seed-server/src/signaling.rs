//! The seed's signaling client: registers with the signal server
//! (`hello` as a seed with its contents and capacity), heartbeats, answers
//! viewers' WebRTC offers and passes their trickled candidates on. The
//! connection is re-established with backoff whenever it drops.

use crate::control::SeedControl;
use crate::report::Reporter;
use crate::rtc::RtcHost;
use crate::serve::{Refusal, RemoteCandidate, SwarmHub};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_proto::signal::{
    ClientMsg, ErrorCode, RefuseReason, Role, RtcSignal, SeedInfo, ServerMsg, SEED_REPORT_EVERY_MS,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tracing::{debug, info, warn};

/// How long to wait for `welcome` after `hello`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(15);

/// Why a signaling session ended (the client then reconnects).
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("websocket: {0}")]
    Ws(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    #[error("signal server answered hello with an error: {code:?}: {message}")]
    Rejected { code: ErrorCode, message: String },
    #[error("signal server refused this seed ({reason:?}): {message}; check --seed-key / --signal-token and --seed-id")]
    Refused {
        reason: RefuseReason,
        message: String,
    },
    #[error("connection closed before welcome{0}")]
    ClosedBeforeWelcome(String),
    #[error("no welcome within {0:?}")]
    NoWelcome(Duration),
    #[error("signal server silent for {0:?}")]
    Silent(Duration),
}

impl From<tokio_tungstenite::tungstenite::Error> for SignalingError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        SignalingError::Ws(Box::new(e))
    }
}

#[derive(Clone, Debug)]
pub struct SignalingConfig {
    /// `ws://host:port/ws` of the signal server.
    pub url: String,
    pub seed: SeedInfo,
    pub token: Option<String>,
}

/// Signs a seed token for `seed_id` with the signal server's seed `key`
/// (HS256 JWT with the claims of [`swarm_proto::auth::SeedClaims`], no
/// expiry: the seed signs a new one at every start).
pub fn mint_seed_token(key: &str, seed_id: &str) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    encode(
        &Header::new(Algorithm::HS256),
        &swarm_proto::auth::SeedClaims::new(seed_id, None),
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .expect("HS256 signing of serializable claims cannot fail")
}

/// Runs the signaling client forever (reconnecting with backoff); the
/// seed answers every command with a refusal.
pub async fn run(cfg: SignalingConfig, hub: Arc<SwarmHub>, host: RtcHost) {
    run_with_control(cfg, hub, host, None).await
}

/// [`run`], carrying out the operator's commands with `control` (whose
/// announcement then replaces `cfg.seed` at every hello). Reports go every
/// [`SEED_REPORT_EVERY_MS`], counted from now.
pub async fn run_with_control(
    cfg: SignalingConfig,
    hub: Arc<SwarmHub>,
    host: RtcHost,
    control: Option<Arc<SeedControl>>,
) {
    let mut reporter = Reporter::new(hub.stats().clone()).with_hub(hub.clone());
    if let Some(c) = &control {
        reporter = reporter.with_live(c.live().clone());
    }
    let every = Duration::from_millis(SEED_REPORT_EVERY_MS);
    run_reporting(cfg, hub, host, control, reporter, every).await
}

/// [`run_with_control`], sending `reporter`'s [`ClientMsg::SeedReport`]
/// right after each welcome and then every `every`.
pub async fn run_reporting(
    cfg: SignalingConfig,
    hub: Arc<SwarmHub>,
    host: RtcHost,
    control: Option<Arc<SeedControl>>,
    reporter: Reporter,
    every: Duration,
) {
    let mut backoff = BACKOFF_MIN;
    let report = (reporter, every.max(Duration::from_millis(10)));
    loop {
        let mut registered = false;
        match session(
            &cfg,
            &hub,
            &host,
            control.as_ref(),
            &report,
            &mut registered,
        )
        .await
        {
            Ok(()) => info!(url = %cfg.url, "signal server closed the connection"),
            Err(e) => warn!(url = %cfg.url, error = %e, "signaling connection lost"),
        }
        if registered {
            backoff = BACKOFF_MIN;
        }
        info!(
            retry_in_ms = backoff.as_millis() as u64,
            "reconnecting to the signal server"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn text(msg: &ClientMsg) -> Message {
    Message::Text(msg.encode().into())
}

async fn session(
    cfg: &SignalingConfig,
    hub: &Arc<SwarmHub>,
    host: &RtcHost,
    control: Option<&Arc<SeedControl>>,
    (reporter, report_every): &(Reporter, Duration),
    registered: &mut bool,
) -> Result<(), SignalingError> {
    let (ws, _) = tokio_tungstenite::connect_async(cfg.url.as_str())
        .await
        .map_err(|e| SignalingError::Connect {
            url: cfg.url.clone(),
            source: Box::new(e),
        })?;
    let (mut sink, mut stream) = ws.split();
    let seed = control.map_or_else(|| cfg.seed.clone(), |c| c.seed_info());
    let hello = ClientMsg::Hello {
        role: Role::Seed,
        token: cfg.token.clone(),
        seed: Some(seed),
    };
    sink.send(text(&hello)).await?;

    let welcome = tokio::time::timeout(WELCOME_TIMEOUT, async {
        while let Some(frame) = stream.next().await {
            match frame? {
                Message::Text(t) => match ServerMsg::decode(t.as_str()) {
                    Ok(ServerMsg::Welcome {
                        peer_id,
                        heartbeat_ms,
                        group,
                        ..
                    }) => return Ok((peer_id, heartbeat_ms, group)),
                    Ok(ServerMsg::Error { code, message }) => {
                        return Err(SignalingError::Rejected { code, message })
                    }
                    Ok(ServerMsg::Refused {
                        reason, message, ..
                    }) => return Err(SignalingError::Refused { reason, message }),
                    Ok(other) => debug!(?other, "message before welcome ignored"),
                    Err(e) => warn!(error = %e, "unreadable message from signal server"),
                },
                Message::Close(c) => {
                    return Err(SignalingError::ClosedBeforeWelcome(
                        c.map(|c| format!(": {} {}", c.code, c.reason))
                            .unwrap_or_default(),
                    ))
                }
                _ => {}
            }
        }
        Err(SignalingError::ClosedBeforeWelcome(String::new()))
    })
    .await
    .map_err(|_| SignalingError::NoWelcome(WELCOME_TIMEOUT))??;
    let (peer_id, heartbeat_ms, group) = welcome;
    *registered = true;
    info!(url = %cfg.url, %peer_id, %group, heartbeat_ms, seed_id = %cfg.seed.seed_id,
        contents = cfg.seed.contents.len(), "registered with the signal server");

    let hb_every = Duration::from_millis(heartbeat_ms.clamp(100, 600_000));
    let mut hb = tokio::time::interval_at(tokio::time::Instant::now() + hb_every, hb_every);
    hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let silence_limit = hb_every * 3 + Duration::from_secs(2);
    let mut last_heard = Instant::now();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ClientMsg>();
    // (swarm, viewer peer id) -> candidate queue of that viewer's connection.
    let mut conns: HashMap<(String, String), mpsc::UnboundedSender<RemoteCandidate>> =
        HashMap::new();

    let mut report_tick = tokio::time::interval(*report_every);
    report_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changes = control.map(|c| c.subscribe());
    if let Some(c) = changes.as_mut() {
        c.mark_unchanged();
    }
    loop {
        tokio::select! {
            Ok(()) = async {
                match changes.as_mut() {
                    Some(c) => c.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Some(c) = control {
                    info!("announcing new contents");
                    sink.send(text(&ClientMsg::SeedUpdate { seed: c.seed_info() })).await?;
                }
            }
            _ = report_tick.tick() => {
                sink.send(text(&ClientMsg::SeedReport { report: reporter.report() })).await?;
            }
            _ = hb.tick() => {
                if last_heard.elapsed() > silence_limit {
                    return Err(SignalingError::Silent(last_heard.elapsed()));
                }
                sink.send(text(&ClientMsg::Heartbeat)).await?;
            }
            Some(msg) = out_rx.recv() => sink.send(text(&msg)).await?,
            frame = stream.next() => {
                let Some(frame) = frame else { return Ok(()) };
                last_heard = Instant::now();
                match frame? {
                    Message::Text(t) => match ServerMsg::decode(t.as_str()) {
                        Ok(ServerMsg::SeedCommand { id, command }) => {
                            on_command(id, command, control, &out_tx)
                        }
                        Ok(msg) => on_message(msg, hub, host, &out_tx, &mut conns),
                        Err(e) => warn!(error = %e, "unreadable message from signal server"),
                    },
                    Message::Close(c) => {
                        info!(frame = ?c, "signal server sent close");
                        return Ok(());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Carries out one operator command in the background and answers it.
fn on_command(
    id: u64,
    command: swarm_proto::signal::SeedCommand,
    control: Option<&Arc<SeedControl>>,
    out: &mpsc::UnboundedSender<ClientMsg>,
) {
    info!(id, ?command, "command from the signal server");
    let Some(control) = control.cloned() else {
        let _ = out.send(ClientMsg::SeedCommandResult {
            id,
            ok: false,
            message: "this seed takes no commands".into(),
            seed: None,
        });
        return;
    };
    let out = out.clone();
    tokio::spawn(async move {
        let done = control.run(command).await;
        let mut message = done.message;
        if message.len() > swarm_proto::signal::MAX_MESSAGE_LEN {
            let mut cut = swarm_proto::signal::MAX_MESSAGE_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let _ = out.send(ClientMsg::SeedCommandResult {
            id,
            ok: done.ok,
            message,
            seed: done.changed.then(|| control.seed_info()),
        });
    });
}

fn on_message(
    msg: ServerMsg,
    hub: &Arc<SwarmHub>,
    host: &RtcHost,
    out: &mpsc::UnboundedSender<ClientMsg>,
    conns: &mut HashMap<(String, String), mpsc::UnboundedSender<RemoteCandidate>>,
) {
    match msg {
        ServerMsg::Relay {
            swarm,
            from,
            signal,
        } => match signal {
            RtcSignal::Offer { sdp } => on_offer(swarm, from, sdp, hub, host, out, conns),
            RtcSignal::Candidate {
                candidate,
                sdp_mid,
                sdp_mline_index,
            } => {
                let key = (swarm, from);
                match conns.get(&key) {
                    Some(tx) => {
                        if tx
                            .send(RemoteCandidate {
                                candidate,
                                sdp_mid,
                                sdp_mline_index,
                            })
                            .is_err()
                        {
                            conns.remove(&key);
                        }
                    }
                    None => {
                        debug!(swarm = %key.0, from = %key.1, "candidate for no connection ignored")
                    }
                }
            }
            RtcSignal::Answer { .. } => {
                debug!(%swarm, %from, "unexpected answer ignored (the seed never offers)")
            }
        },
        ServerMsg::PeerLeft { swarm, peer_id } => {
            conns.remove(&(swarm, peer_id));
        }
        ServerMsg::HeartbeatAck => {}
        ServerMsg::Error { code, message } => {
            warn!(?code, %message, "signal server reported an error")
        }
        other => debug!(?other, "signal message ignored"),
    }
}

fn on_offer(
    swarm: String,
    from: String,
    sdp: String,
    hub: &Arc<SwarmHub>,
    host: &RtcHost,
    out: &mpsc::UnboundedSender<ClientMsg>,
    conns: &mut HashMap<(String, String), mpsc::UnboundedSender<RemoteCandidate>>,
) {
    let slot = match hub.try_admit(&swarm, &from) {
        Ok(slot) => slot,
        Err(refusal @ Refusal::UnknownContent(_)) => {
            warn!(%swarm, peer = %from, reason = %refusal, "offer refused");
            return;
        }
        Err(refusal) => {
            info!(%swarm, peer = %from, reason = %refusal, "offer refused");
            return;
        }
    };
    conns.retain(|_, tx| !tx.is_closed());
    let (cand_tx, cand_rx) = mpsc::unbounded_channel();
    conns.insert((swarm.clone(), from.clone()), cand_tx);
    let hub = hub.clone();
    let host = host.clone();
    let out = out.clone();
    tokio::spawn(async move {
        match host.accept_offer(&sdp).await {
            Ok((answer, conn)) => {
                let reply = ClientMsg::Relay {
                    swarm: swarm.clone(),
                    to: from.clone(),
                    signal: RtcSignal::Answer { sdp: answer },
                };
                if out.send(reply).is_err() {
                    warn!(%swarm, %from, "signaling connection lost before the answer was sent");
                    return;
                }
                debug!(%swarm, %from, "answered offer");
                hub.attach(&swarm, conn, cand_rx, slot);
            }
            Err(e) => warn!(%swarm, peer = %from, error = %e, "cannot accept viewer offer"),
        }
    });
}
