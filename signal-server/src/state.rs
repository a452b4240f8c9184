//! The server's in-memory state: peers, swarms, seeds, reports.
//!
//! Invariants (hold whenever the lock is released):
//! - a peer id is in `swarms[s]` exactly when `s` is in that peer's `swarms`;
//! - no swarm in `swarms` is empty;
//! - `seed_ids[id]` names a live peer whose `seed` has that `seed_id`.
//!
//! Every message to a client goes through that client's outgoing queue (its
//! `tx`), so replies and relayed messages reach it in the order the state
//! produced them. A client whose queue is full (it stopped reading) is
//! removed like a disconnect; dropping its `tx` makes its connection close.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::Serialize;
use swarm_proto::auth::ViewerClaims;
use swarm_proto::matching::{select_peers, Candidate, MatchRule, MemberIndex};
use swarm_proto::signal::{
    manifest_url, ClientMsg, ErrorCode, PeerInfo, PeerReport, RefuseReason, Role, SeedCommand,
    SeedInfo, SeedReport, ServerMsg, MAX_SEEDS_PER_JOIN, MAX_SIGNAL_FRAME, SEED_REPORT_STALE_MS,
};
use tokio::sync::{mpsc, oneshot};

use crate::auth::{unix_now, AuthConfig};
use crate::conns::{ConnTable, GroupConns};
use crate::ice::IceConfig;
use crate::metrics::Metrics;

/// Recent events kept for the admin API.
pub const MAX_EVENTS: usize = 256;
/// A swarm up to this size hears of every member that leaves; in a larger
/// one only the leaver's recent signaling contacts do (the peers it was
/// negotiating or connected with), so a leave costs the same however large
/// the swarm.
pub const BROADCAST_LEFT_MAX: usize = 64;
/// Recent signaling contacts remembered per peer (the oldest is forgotten).
pub const MAX_CONTACTS: usize = 256;

/// Candidates drawn from a swarm for one peer list: at least this many, or
/// four times the list's length (the matching rule picks among them). A
/// join costs the same in a swarm of 100 or of 100,000.
pub const MATCH_SAMPLE_MIN: usize = 200;
/// Admin listings copy at most this many peers (over all swarms) and
/// swarms, and `/api/admin/viewers` at most [`MAX_LISTED_VIEWERS`]; their
/// totals and counts cover everyone.
pub const MAX_LISTED_PEERS: usize = 10_000;
pub const MAX_LISTED_SWARMS: usize = 1_000;
pub const MAX_LISTED_VIEWERS: usize = 5_000;

/// One swarm: its members, its viewers indexed by network group (for
/// drawing match candidates), and running sums of their last reports.
#[derive(Debug, Default)]
struct SwarmEntry {
    members: BTreeSet<String>,
    viewers: MemberIndex,
    sums: Sums,
}

/// Running sums of a swarm's members and their last reports, kept as they
/// change so that no view walks the swarm (u128: no sum of u64 values a
/// client chooses can overflow).
#[derive(Clone, Debug, Default)]
struct Sums {
    viewers: usize,
    seeds: usize,
    bytes_from_peers: u128,
    bytes_from_http: u128,
    bytes_uploaded: u128,
    bytes_from_relay: u128,
    stalls: u128,
    stalled_ms: u128,
}

impl Sums {
    fn add(&mut self, r: &PeerReport) {
        self.bytes_from_peers += u128::from(r.bytes_from_peers);
        self.bytes_from_http += u128::from(r.bytes_from_http);
        self.bytes_uploaded += u128::from(r.bytes_uploaded);
        self.bytes_from_relay += u128::from(r.bytes_from_relay);
        self.stalls += u128::from(r.stalls);
        self.stalled_ms += u128::from(r.stalled_ms);
    }

    fn sub(&mut self, r: &PeerReport) {
        self.bytes_from_peers -= u128::from(r.bytes_from_peers);
        self.bytes_from_http -= u128::from(r.bytes_from_http);
        self.bytes_uploaded -= u128::from(r.bytes_uploaded);
        self.bytes_from_relay -= u128::from(r.bytes_from_relay);
        self.stalls -= u128::from(r.stalls);
        self.stalled_ms -= u128::from(r.stalled_ms);
    }

    /// As reported totals (each clamped to u64).
    fn totals(&self) -> Totals {
        let c = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
        let mut t = Totals {
            peers: self.viewers + self.seeds,
            viewers: self.viewers,
            seeds: self.seeds,
            bytes_from_peers: c(self.bytes_from_peers),
            bytes_from_http: c(self.bytes_from_http),
            bytes_uploaded: c(self.bytes_uploaded),
            bytes_from_relay: c(self.bytes_from_relay),
            stalls: c(self.stalls),
            stalled_ms: c(self.stalled_ms),
            p2p_share: 0.0,
        };
        t.update_share();
        t
    }
}

/// Seed commands waiting for their answer, over all seeds.
pub const MAX_PENDING_COMMANDS: usize = 64;

/// A seed's answer to a command.
#[derive(Clone, Debug, Serialize)]
pub struct CommandResult {
    pub ok: bool,
    pub message: String,
}

struct PendingCommand {
    /// The seed connection (peer id) that must answer.
    peer: String,
    done: oneshot::Sender<CommandResult>,
}

/// One line of the admin event log.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Unix seconds.
    pub at: u64,
    pub kind: &'static str,
    pub peer: Option<String>,
    pub detail: String,
}

/// Most bans kept at once (expired ones are pruned first; past this the
/// soonest to expire goes).
pub const MAX_BANS: usize = 100_000;

/// Most swarms a viewer may be in at once (seeds are not limited).
pub const MAX_SWARMS_PER_VIEWER: usize = 64;

/// Outgoing queue of one client: encoded JSON text frames.
pub type Outbox = mpsc::Sender<String>;

/// Outgoing queue length per client before it counts as a slow consumer.
pub const OUTBOX_LEN: usize = 1024;
/// Relays to a client stop being queued once its queue has fewer free
/// places than this: the sender is refused, the slow receiver keeps room
/// for the server's own messages.
pub const RELAY_HEADROOM: usize = OUTBOX_LEN / 2;

#[derive(Debug)]
struct Peer {
    role: Role,
    group: String,
    addr: IpAddr,
    tx: Outbox,
    swarms: BTreeSet<String>,
    seed: Option<SeedInfo>,
    /// The viewer token it presented at `hello`, once verified.
    viewer: Option<ViewerClaims>,
    /// When it said hello.
    since: Instant,
    /// Peers it relayed signaling to or from, most recent last.
    contacts: VecDeque<String>,
    reports: HashMap<String, ReportEntry>,
    /// A seed's latest own report, and when it came.
    seed_report: Option<(SeedReport, Instant)>,
}

#[derive(Debug, Clone)]
struct ReportEntry {
    report: PeerReport,
    at: Instant,
    /// Upload bytes per second between the last two reports.
    upload_rate: u64,
}

/// Why a peer left, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    Disconnected,
    TimedOut,
    TooManyBadFrames,
    SlowConsumer,
    Replaced,
    Refused,
    Kicked,
}

/// What a ban holds off: a viewer id (token `sub`) or, for a viewer
/// without a token, its address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanKey {
    Viewer(String),
    Addr(IpAddr),
}

/// A kick sent to one connection and not yet acknowledged.
#[derive(Debug)]
struct PendingKick {
    id: u64,
    message: String,
    ban_s: Option<u64>,
    acked: Option<oneshot::Sender<()>>,
}

/// One connection a kick is aimed at: its peer id and the receiver that
/// fires when it acknowledges.
pub struct KickTarget {
    pub peer_id: String,
    pub acked: oneshot::Receiver<()>,
}

/// Who may join what: the parts of the configuration the state applies.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    pub auth: AuthConfig,
    /// Let viewers join swarms that no seed announces (they then create
    /// them). Off by default: such a join is refused as `unknown_channel`.
    pub allow_unknown_channels: bool,
    /// Most swarms at once (a join that would create one more is refused).
    pub max_swarms: usize,
}

pub struct State {
    peers: HashMap<String, Peer>,
    swarms: BTreeMap<String, SwarmEntry>,
    /// Connected viewers (the rest of `peers` are seeds).
    viewer_count: usize,
    seed_ids: HashMap<String, String>,
    /// Channels announced by registered seeds, with how many seeds each.
    channels: HashMap<String, usize>,
    rng: StdRng,
    rule: MatchRule,
    heartbeat_ms: u64,
    admission: Admission,
    /// Ban key -> Unix second the ban ends.
    bans: HashMap<BanKey, u64>,
    kicks: HashMap<String, PendingKick>,
    next_kick: u64,
    events: VecDeque<Event>,
    metrics: Arc<Metrics>,
    /// STUN/TURN servers told to every admitted peer.
    ice: IceConfig,
    /// Connection outcomes viewers reported.
    conns: ConnTable,
    /// Seed commands sent and not answered yet, by id.
    commands: HashMap<u64, PendingCommand>,
    next_command: u64,
    /// A seed silent for longer than this is shown stale.
    seed_stale_ms: u64,
}

impl State {
    pub fn new(
        rule: MatchRule,
        heartbeat_ms: u64,
        rng_seed: Option<u64>,
        admission: Admission,
        metrics: Arc<Metrics>,
    ) -> Self {
        let rng = match rng_seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_entropy(),
        };
        State {
            peers: HashMap::new(),
            swarms: BTreeMap::new(),
            viewer_count: 0,
            seed_ids: HashMap::new(),
            channels: HashMap::new(),
            rng,
            rule,
            heartbeat_ms,
            admission,
            bans: HashMap::new(),
            kicks: HashMap::new(),
            next_kick: 1,
            events: VecDeque::new(),
            metrics,
            ice: IceConfig::default(),
            conns: ConnTable::default(),
            commands: HashMap::new(),
            next_command: 1,
            seed_stale_ms: SEED_REPORT_STALE_MS,
        }
    }

    /// Sends `command` to the registered seed `seed_id`; the receiver gets
    /// its answer. Refused (with a reason) for an unknown seed or when
    /// [`MAX_PENDING_COMMANDS`] wait already.
    pub fn seed_command(
        &mut self,
        seed_id: &str,
        command: SeedCommand,
    ) -> Result<(u64, oneshot::Receiver<CommandResult>), String> {
        let Some(peer) = self.seed_ids.get(seed_id).cloned() else {
            return Err(format!("no seed {seed_id} is connected"));
        };
        if self.commands.len() >= MAX_PENDING_COMMANDS {
            tracing::warn!(
                max = MAX_PENDING_COMMANDS,
                "limit: seed commands pending; command refused"
            );
            self.metrics.limit("seed_commands");
            return Err(format!(
                "{MAX_PENDING_COMMANDS} seed commands are already waiting for an answer"
            ));
        }
        let id = self.next_command;
        self.next_command += 1;
        let (done, rx) = oneshot::channel();
        self.commands.insert(
            id,
            PendingCommand {
                peer: peer.clone(),
                done,
            },
        );
        self.event(
            "seed command",
            Some(&peer),
            format!("{seed_id}: {command:?}"),
        );
        tracing::info!(%seed_id, id, ?command, "seed command sent");
        let mut out = vec![(peer, ServerMsg::SeedCommand { id, command })];
        self.deliver(&mut out);
        Ok((id, rx))
    }

    /// Whether the registered seed `seed_id` announces `name` as one of its
    /// live channels.
    pub fn seed_runs_live(&self, seed_id: &str, name: &str) -> bool {
        (self.seed_ids.get(seed_id))
            .and_then(|p| self.peers.get(p)?.seed.as_ref())
            .is_some_and(|s| s.live.iter().any(|l| l.channel == name))
    }

    /// Forgets a command whose caller stopped waiting.
    pub fn forget_command(&mut self, id: u64) {
        self.commands.remove(&id);
    }

    /// A registered seed's new announcement: swarm memberships and channel
    /// counts follow its contents (members of a channel it dropped get
    /// `peer_left`). Ignored from a viewer or for another `seed_id`.
    fn update_seed(&mut self, me: &str, new: SeedInfo, out: &mut Vec<(String, ServerMsg)>) {
        let Some(old) = self.peers.get(me).and_then(|p| p.seed.clone()) else {
            out.push((
                me.to_owned(),
                ServerMsg::error(ErrorCode::Protocol, "only a seed announces contents"),
            ));
            return;
        };
        if old.seed_id != new.seed_id {
            out.push((
                me.to_owned(),
                ServerMsg::error(ErrorCode::BadMessage, "a seed cannot change its seed_id"),
            ));
            return;
        }
        let before: BTreeSet<&String> = old.contents.iter().collect();
        let after: BTreeSet<&String> = new.contents.iter().collect();
        for gone in before.difference(&after) {
            if let Some(n) = self.channels.get_mut(*gone) {
                *n -= 1;
                if *n == 0 {
                    self.channels.remove(*gone);
                }
            }
            self.remove_member(me, gone, out);
        }
        for added in after.difference(&before) {
            *self.channels.entry((*added).clone()).or_default() += 1;
            self.add_member(me, added);
        }
        tracing::info!(peer = %me, seed_id = %new.seed_id, contents = new.contents.len(), live = new.live.len(), "seed contents updated");
        self.event(
            "seed update",
            Some(me),
            format!(
                "{}: {} contents, {} live",
                new.seed_id,
                new.contents.len(),
                new.live.len()
            ),
        );
        if let Some(p) = self.peers.get_mut(me) {
            p.seed = Some(new);
        }
    }

    /// How long a seed may go without a report before it is shown stale.
    pub fn set_seed_stale_ms(&mut self, ms: u64) {
        self.seed_stale_ms = ms;
    }

    /// The STUN/TURN servers to hand out in `welcome` (checked by the caller).
    pub fn set_ice(&mut self, ice: IceConfig) {
        self.ice = ice;
    }

    /// Connection outcomes per network group, and the failed pairs kept.
    pub fn conns_view(&self) -> (Vec<(String, GroupConns)>, usize) {
        (self.conns.groups(), self.conns.failed_pairs())
    }

    /// Registers a client that said `hello` (and passed admission), queues
    /// its `welcome`, and joins a seed to the swarms of its contents. Returns
    /// its new peer id.
    pub fn register(
        &mut self,
        role: Role,
        seed: Option<SeedInfo>,
        viewer: Option<ViewerClaims>,
        addr: IpAddr,
        group: String,
        tx: Outbox,
    ) -> String {
        let peer_id = loop {
            let id = format!("{:016x}", self.rng.gen::<u64>());
            if !self.peers.contains_key(&id) {
                break id;
            }
        };
        let seed = if role == Role::Seed { seed } else { None };
        if let Some(s) = &seed {
            if let Some(old) = self.seed_ids.get(&s.seed_id).cloned() {
                tracing::warn!(seed_id = %s.seed_id, old_peer = %old, new_peer = %peer_id, "seed registered again; replacing the old connection");
                self.remove(&old, LeaveReason::Replaced);
            }
            self.seed_ids.insert(s.seed_id.clone(), peer_id.clone());
            for c in &s.contents {
                *self.channels.entry(c.clone()).or_default() += 1;
            }
        }
        let contents: Vec<String> = seed
            .as_ref()
            .map(|s| s.contents.clone())
            .unwrap_or_default();
        self.peers.insert(
            peer_id.clone(),
            Peer {
                role,
                group: group.clone(),
                addr,
                tx,
                swarms: BTreeSet::new(),
                seed,
                viewer: if role == Role::Viewer { viewer } else { None },
                since: Instant::now(),
                contacts: VecDeque::new(),
                reports: HashMap::new(),
                seed_report: None,
            },
        );
        if role == Role::Viewer {
            self.viewer_count += 1;
        }
        let viewer = self.peers[&peer_id].viewer.as_ref().map(|v| v.sub.clone());
        tracing::info!(peer = %peer_id, ?role, %group, %addr, ?viewer, "hello");
        let who = match (&self.peers[&peer_id].seed, &viewer) {
            (Some(s), _) => s.seed_id.clone(),
            (None, Some(v)) => v.clone(),
            (None, None) => "anonymous".to_owned(),
        };
        let detail = format!("{role:?} {who} from {addr} ({group})");
        self.metrics
            .hello(if role == Role::Seed { "seed" } else { "viewer" });
        self.event("hello", Some(&peer_id), detail);
        let welcome = ServerMsg::Welcome {
            peer_id: peer_id.clone(),
            heartbeat_ms: self.heartbeat_ms,
            group,
            server_ms: Some(unix_ms()),
            ice_servers: self.ice.servers_for(&peer_id, unix_ms() / 1000),
        };
        let mut out = vec![(peer_id.clone(), welcome)];
        for swarm in contents {
            self.add_member(&peer_id, &swarm);
        }
        self.deliver(&mut out);
        peer_id
    }

    /// Handles one decoded message (other than `hello`) from a registered
    /// peer. Replies and forwarded messages go to the outgoing queues.
    pub fn handle(&mut self, me: &str, msg: ClientMsg, now: Instant) {
        let mut out = Vec::new();
        if !self.peers.contains_key(me) {
            return;
        }
        let reply = |out: &mut Vec<(String, ServerMsg)>, m: ServerMsg| out.push((me.to_owned(), m));
        match msg {
            ClientMsg::Hello { .. } => reply(
                &mut out,
                ServerMsg::error(ErrorCode::Protocol, "hello was already sent"),
            ),
            ClientMsg::Heartbeat => reply(&mut out, ServerMsg::HeartbeatAck),
            ClientMsg::SeedCommandResult {
                id,
                ok,
                message,
                seed,
            } => {
                if self.commands.get(&id).is_none_or(|c| c.peer != me) {
                    reply(
                        &mut out,
                        ServerMsg::error(
                            ErrorCode::Protocol,
                            format!("no command {id} is pending"),
                        ),
                    );
                } else {
                    if let Some(seed) = seed {
                        self.update_seed(me, seed, &mut out);
                    }
                    let c = self.commands.remove(&id).expect("checked");
                    tracing::info!(peer = %me, id, ok, %message, "seed command answered");
                    let _ = c.done.send(CommandResult { ok, message });
                }
            }
            ClientMsg::SeedUpdate { seed } => self.update_seed(me, seed, &mut out),
            ClientMsg::SeedReport { report } => {
                // Only the connection registered under a seed id with its
                // credential (a viewer has no `seed`).
                let peer = self.peers.get_mut(me).expect("checked above");
                if peer.seed.is_some() {
                    peer.seed_report = Some((report, now));
                } else {
                    tracing::info!(peer = %me, "seed report from a viewer refused");
                    reply(
                        &mut out,
                        ServerMsg::error(
                            ErrorCode::Protocol,
                            "only a registered seed sends seed reports",
                        ),
                    );
                }
            }
            ClientMsg::Stopped { kick } => {
                let matches = self.kicks.get(me).is_some_and(|k| k.id == kick);
                if matches {
                    let mut k = self.kicks.remove(me).expect("checked");
                    if let Some(tx) = k.acked.take() {
                        let _ = tx.send(());
                    }
                    tracing::info!(peer = %me, kick, "kick acknowledged");
                    self.remove_into(me, LeaveReason::Kicked, &mut out);
                } else {
                    reply(
                        &mut out,
                        ServerMsg::error(ErrorCode::Protocol, format!("no kick {kick} is pending")),
                    );
                }
            }
            ClientMsg::Join { swarm } => {
                let peer = &self.peers[me];
                if peer.role == Role::Viewer
                    && !peer.swarms.contains(&swarm)
                    && peer.swarms.len() >= MAX_SWARMS_PER_VIEWER
                {
                    reply(
                        &mut out,
                        ServerMsg::error(
                            ErrorCode::BadMessage,
                            format!("a viewer may join at most {MAX_SWARMS_PER_VIEWER} swarms"),
                        ),
                    );
                } else if !self.swarms.contains_key(&swarm)
                    && self.swarms.len() >= self.admission.max_swarms
                {
                    tracing::warn!(peer = %me, %swarm, max = self.admission.max_swarms, "limit: swarm count reached; join refused");
                    self.metrics.limit("swarms");
                    self.metrics.refused(RefuseReason::Limit);
                    reply(
                        &mut out,
                        ServerMsg::refused(
                            Some(&swarm),
                            RefuseReason::Limit,
                            "the server has as many channels as it takes",
                        ),
                    );
                } else if let Err(refusal) = self.may_join(me, &swarm) {
                    tracing::info!(peer = %me, %swarm, reason = ?refusal.0, detail = %refusal.1, "join refused");
                    self.metrics.refused(refusal.0);
                    self.event(
                        "join refused",
                        Some(me),
                        format!("{swarm}: {:?}: {}", refusal.0, refusal.1),
                    );
                    reply(
                        &mut out,
                        ServerMsg::refused(Some(&swarm), refusal.0, &refusal.1),
                    );
                } else {
                    self.add_member(me, &swarm);
                    let peers = self.pick_peers(me, &swarm);
                    let seeds = self.seeds_of(&swarm);
                    let manifest = seeds.first().map(|s| manifest_url(s, &swarm));
                    tracing::info!(peer = %me, %swarm, peers = peers.len(), seeds = seeds.len(), "join");
                    reply(
                        &mut out,
                        fit_peer_list(ServerMsg::Joined {
                            swarm,
                            peers,
                            seeds,
                            manifest,
                        }),
                    );
                }
            }
            ClientMsg::GetPeers { swarm } => {
                if self.is_member(me, &swarm) {
                    let peers = self.pick_peers(me, &swarm);
                    reply(&mut out, fit_peer_list(ServerMsg::Peers { swarm, peers }));
                } else {
                    reply(&mut out, not_joined(&swarm));
                }
            }
            ClientMsg::Leave { swarm } => {
                if self.is_member(me, &swarm) {
                    tracing::info!(peer = %me, %swarm, "leave");
                    self.remove_member(me, &swarm, &mut out);
                } else {
                    reply(&mut out, not_joined(&swarm));
                }
            }
            ClientMsg::Relay { swarm, to, signal } => {
                if !self.is_member(me, &swarm) {
                    reply(&mut out, not_joined(&swarm));
                } else if !self.is_member(&to, &swarm) {
                    reply(
                        &mut out,
                        ServerMsg::error(
                            ErrorCode::UnknownPeer,
                            format!("peer {to} is not in swarm {swarm}"),
                        ),
                    );
                } else {
                    let relay = ServerMsg::Relay {
                        swarm,
                        from: me.to_owned(),
                        signal,
                    };
                    // `from` is two bytes longer than `to`: a frame at the
                    // limit would arrive over it.
                    let room = self.peers.get(&to).map_or(0, |p| p.tx.capacity());
                    if room < RELAY_HEADROOM {
                        tracing::warn!(peer = %me, %to, room, "limit: relay target is not keeping up; relay refused");
                        self.metrics.limit("relay_target_busy");
                        reply(
                            &mut out,
                            ServerMsg::error(
                                ErrorCode::RateLimited,
                                format!("peer {to} is not keeping up: relay dropped"),
                            ),
                        );
                    } else if relay.encode().len() > MAX_SIGNAL_FRAME {
                        reply(
                            &mut out,
                            ServerMsg::error(
                                ErrorCode::TooLarge,
                                format!("relayed, this signal would exceed the {MAX_SIGNAL_FRAME}-byte frame limit"),
                            ),
                        );
                    } else {
                        self.add_contact(me, &to);
                        self.add_contact(&to, me);
                        out.push((to, relay));
                    }
                }
            }
            ClientMsg::ConnResult {
                swarm,
                peer,
                ok,
                ms,
                route,
            } => {
                // Only a pair the server saw signal (one of the reporter's
                // recent contacts) is recorded.
                let contact = self
                    .peers
                    .get(me)
                    .is_some_and(|p| p.contacts.iter().any(|c| *c == peer));
                if !self.is_member(me, &swarm) {
                    reply(&mut out, not_joined(&swarm));
                } else if contact {
                    let group = self.peers[me].group.clone();
                    self.conns.record(me, &group, &peer, ok, ms, route, now);
                    self.metrics.conn_result(ok, route);
                    if !ok {
                        tracing::info!(peer = %me, other = %peer, %group, ms, "connection failed; pair not matched again for a while");
                    }
                }
            }
            ClientMsg::Report { swarm, report } => {
                if let Some(entry) = self
                    .swarms
                    .get_mut(&swarm)
                    .filter(|e| e.members.contains(me))
                {
                    let peer = self.peers.get_mut(me).expect("checked above");
                    let upload_rate = match peer.reports.get(&swarm) {
                        Some(prev) => {
                            let dt = now.saturating_duration_since(prev.at).as_secs_f64();
                            let db = report
                                .bytes_uploaded
                                .saturating_sub(prev.report.bytes_uploaded);
                            if dt > 0.0 {
                                (db as f64 / dt) as u64
                            } else {
                                prev.upload_rate
                            }
                        }
                        None => 0,
                    };
                    entry.sums.add(&report);
                    let old = peer.reports.insert(
                        swarm,
                        ReportEntry {
                            report,
                            at: now,
                            upload_rate,
                        },
                    );
                    if let Some(old) = old {
                        entry.sums.sub(&old.report);
                    }
                } else {
                    reply(&mut out, not_joined(&swarm));
                }
            }
        }
        self.deliver(&mut out);
    }

    /// Queues an error for a registered peer (bad frames after `hello`).
    pub fn send_error(&mut self, me: &str, code: ErrorCode, message: String) {
        let mut out = vec![(me.to_owned(), ServerMsg::Error { code, message })];
        self.deliver(&mut out);
    }

    /// Removes a peer (disconnect, timeout, ...): the other members of its
    /// swarms get `peer_left`. Removing an unknown id does nothing.
    pub fn remove(&mut self, peer_id: &str, reason: LeaveReason) {
        let mut out = Vec::new();
        self.remove_into(peer_id, reason, &mut out);
        self.deliver(&mut out);
    }

    fn remove_into(
        &mut self,
        peer_id: &str,
        reason: LeaveReason,
        out: &mut Vec<(String, ServerMsg)>,
    ) {
        let Some(peer) = self.peers.get(peer_id) else {
            return;
        };
        let swarms: Vec<String> = peer.swarms.iter().cloned().collect();
        for swarm in &swarms {
            self.remove_member(peer_id, swarm, out);
        }
        let peer = self.peers.remove(peer_id).expect("present above");
        if peer.role == Role::Viewer {
            self.viewer_count -= 1;
        }
        // A kick waiting for this peer ends with it (its receiver sees the
        // sender dropped: gone without acknowledging); so do its commands.
        self.kicks.remove(peer_id);
        self.commands.retain(|_, c| c.peer != peer_id);
        if let Some(s) = &peer.seed {
            if self.seed_ids.get(&s.seed_id).is_some_and(|p| p == peer_id) {
                self.seed_ids.remove(&s.seed_id);
            }
            for c in &s.contents {
                if let Some(n) = self.channels.get_mut(c) {
                    *n -= 1;
                    if *n == 0 {
                        self.channels.remove(c);
                    }
                }
            }
        }
        tracing::info!(peer = %peer_id, ?reason, swarms = swarms.len(), "peer removed");
        self.event("removed", Some(peer_id), format!("{reason:?}"));
    }

    /// Admission to one channel: it must be offered by a seed (unless
    /// unknown channels are allowed) and the viewer's token must allow it.
    fn may_join(&self, me: &str, swarm: &str) -> Result<(), (RefuseReason, String)> {
        let peer = &self.peers[me];
        if peer.role == Role::Seed {
            return Ok(());
        }
        if !self.admission.allow_unknown_channels && !self.channels.contains_key(swarm) {
            return Err((
                RefuseReason::UnknownChannel,
                format!("no seed offers channel {swarm}"),
            ));
        }
        self.admission
            .auth
            .may_join(peer.viewer.as_ref(), swarm, unix_now())
            .map_err(|r| (r.reason, r.detail))
    }

    /// Whether a viewer with `viewer` id (or, without a token, at `addr`)
    /// is banned now; returns the seconds left.
    pub fn banned(&self, viewer: Option<&str>, addr: IpAddr, now: u64) -> Option<u64> {
        let key = match viewer {
            Some(v) => BanKey::Viewer(v.to_owned()),
            None => BanKey::Addr(addr),
        };
        self.bans
            .get(&key)
            .filter(|&&until| until > now)
            .map(|until| until - now)
    }

    /// The connections of the viewer `id`: a peer id, or a viewer id (token
    /// `sub`) naming all its connections.
    pub fn viewer_connections(&self, id: &str) -> Vec<String> {
        match self.peers.get(id) {
            Some(p) if p.role == Role::Viewer => vec![id.to_owned()],
            Some(_) => Vec::new(),
            None => self
                .peers
                .iter()
                .filter(|(_, p)| p.viewer.as_ref().is_some_and(|v| v.sub == id))
                .map(|(pid, _)| pid.clone())
                .collect(),
        }
    }

    /// Starts kicking the viewer connection `peer_id`: bans it (by viewer id,
    /// or address without a token) for `ban_s`, and sends `kick`. Returns
    /// the target, or `None` if it is not a connected viewer.
    pub fn kick(&mut self, peer_id: &str, message: &str, ban_s: Option<u64>) -> Option<KickTarget> {
        let p = self.peers.get(peer_id).filter(|p| p.role == Role::Viewer)?;
        if let Some(secs) = ban_s.filter(|&s| s > 0) {
            let key = match &p.viewer {
                Some(v) => BanKey::Viewer(v.sub.clone()),
                None => BanKey::Addr(p.addr),
            };
            self.ban(key, unix_now().saturating_add(secs));
        }
        let (tx, rx) = oneshot::channel();
        let id = self.next_kick;
        self.next_kick += 1;
        self.kicks.insert(
            peer_id.to_owned(),
            PendingKick {
                id,
                message: message.to_owned(),
                ban_s,
                acked: Some(tx),
            },
        );
        tracing::info!(peer = %peer_id, kick = id, ?ban_s, "kicking");
        self.event(
            "kick",
            Some(peer_id),
            format!("{message} (ban {ban_s:?} s)"),
        );
        self.resend_kick(peer_id);
        Some(KickTarget {
            peer_id: peer_id.to_owned(),
            acked: rx,
        })
    }

    /// Sends a pending kick again (it may have been lost with a socket).
    pub fn resend_kick(&mut self, peer_id: &str) {
        let Some(k) = self.kicks.get(peer_id) else {
            return;
        };
        let mut out = vec![(
            peer_id.to_owned(),
            ServerMsg::Kick {
                kick: k.id,
                message: k.message.clone(),
                ban_s: k.ban_s,
            },
        )];
        self.deliver(&mut out);
    }

    /// Ends a kick that was not acknowledged in time: the peer is removed.
    pub fn give_up_kick(&mut self, peer_id: &str) {
        if self.kicks.remove(peer_id).is_some() {
            tracing::warn!(peer = %peer_id, "kick not acknowledged in time; removing the viewer");
            self.remove(peer_id, LeaveReason::Kicked);
        }
    }

    /// Bans the viewer id until the Unix second `until`.
    pub fn ban_viewer(&mut self, viewer: &str, until: u64) {
        self.ban(BanKey::Viewer(viewer.to_owned()), until);
    }

    fn ban(&mut self, key: BanKey, until: u64) {
        if self.bans.len() >= MAX_BANS && !self.bans.contains_key(&key) {
            let now = unix_now();
            self.bans.retain(|_, &mut u| u > now);
            if self.bans.len() >= MAX_BANS {
                if let Some(soonest) = self
                    .bans
                    .iter()
                    .min_by_key(|(_, &u)| u)
                    .map(|(k, _)| k.clone())
                {
                    tracing::warn!(
                        ?soonest,
                        "ban list full ({MAX_BANS}); dropping the ban that ends soonest"
                    );
                    self.bans.remove(&soonest);
                }
            }
        }
        let e = self.bans.entry(key).or_insert(0);
        *e = (*e).max(until);
    }

    /// Adds a line to the admin event log (the oldest goes past
    /// [`MAX_EVENTS`]).
    pub fn event(&mut self, kind: &'static str, peer: Option<&str>, detail: String) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            at: unix_now(),
            kind,
            peer: peer.map(str::to_owned),
            detail,
        });
    }

    /// The admin event log, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.events.iter().cloned().collect()
    }

    /// Matching settings (admin API).
    pub fn match_rule(&self) -> MatchRule {
        self.rule
    }

    pub fn set_match_rule(&mut self, rule: MatchRule) {
        self.event("settings", None, format!("matching: {rule:?}"));
        self.rule = rule;
    }

    /// Connected viewers for the admin API: at most [`MAX_LISTED_VIEWERS`]
    /// (unsorted: the caller sorts outside the lock), and how many there are.
    pub fn viewers_view(&self) -> (Vec<AdminViewer>, usize) {
        let now = Instant::now();
        let v: Vec<AdminViewer> = self
            .peers
            .iter()
            .filter(|(_, p)| p.role == Role::Viewer)
            .take(MAX_LISTED_VIEWERS)
            .map(|(id, p)| {
                let mut r = PeerReport::default();
                for e in p.reports.values() {
                    r.bytes_from_peers =
                        r.bytes_from_peers.saturating_add(e.report.bytes_from_peers);
                    r.bytes_from_http = r.bytes_from_http.saturating_add(e.report.bytes_from_http);
                    r.bytes_uploaded = r.bytes_uploaded.saturating_add(e.report.bytes_uploaded);
                    r.stalls = r.stalls.saturating_add(e.report.stalls);
                    r.stalled_ms = r.stalled_ms.saturating_add(e.report.stalled_ms);
                    r.peers = r.peers.max(e.report.peers);
                    r.startup_ms = r.startup_ms.or(e.report.startup_ms);
                    // The worst of its live channels.
                    r.latency_ms = r.latency_ms.max(e.report.latency_ms);
                }
                AdminViewer {
                    peer_id: id.clone(),
                    viewer: p.viewer.as_ref().map(|c| c.sub.clone()),
                    user_group: p.viewer.as_ref().and_then(|c| c.group.clone()),
                    group: p.group.clone(),
                    addr: p.addr.to_string(),
                    swarms: p.swarms.iter().cloned().collect(),
                    connected_s: now.saturating_duration_since(p.since).as_secs(),
                    report: r,
                }
            })
            .collect();
        (v, self.viewer_count)
    }

    /// Every registered seed with its address and uptime, for the admin API.
    pub fn admin_seeds_view(&self) -> Vec<AdminSeed> {
        let now = Instant::now();
        let mut v: Vec<AdminSeed> = self
            .seed_ids
            .values()
            .filter_map(|id| {
                let p = self.peers.get(id)?;
                let s = p.seed.as_ref()?;
                Some(AdminSeed {
                    peer_id: id.clone(),
                    seed_id: s.seed_id.clone(),
                    http_base: s.http_base.clone(),
                    addr: p.addr.to_string(),
                    group: p.group.clone(),
                    contents: s.contents.len(),
                    capacity: s.capacity,
                    uptime_s: now.saturating_duration_since(p.since).as_secs(),
                    report_age_ms: p
                        .seed_report
                        .as_ref()
                        .map(|(_, at)| now.saturating_duration_since(*at).as_millis() as u64),
                    stale: stale(p, now, self.seed_stale_ms),
                    report: p.seed_report.as_ref().map(|(r, _)| r.clone()),
                })
            })
            .collect();
        v.sort_by(|a, b| a.seed_id.cmp(&b.seed_id));
        v
    }

    /// Lifts the ban on `key`; whether there was one.
    pub fn unban(&mut self, key: &BanKey) -> bool {
        self.bans.remove(key).is_some()
    }

    fn is_member(&self, peer_id: &str, swarm: &str) -> bool {
        self.swarms
            .get(swarm)
            .is_some_and(|e| e.members.contains(peer_id))
    }

    fn add_member(&mut self, peer_id: &str, swarm: &str) {
        if let Some(p) = self.peers.get_mut(peer_id) {
            p.swarms.insert(swarm.to_owned());
            let e = self.swarms.entry(swarm.to_owned()).or_default();
            if e.members.insert(peer_id.to_owned()) {
                match p.role {
                    Role::Viewer => {
                        e.viewers.insert(peer_id, &p.group);
                        e.sums.viewers += 1;
                    }
                    Role::Seed => e.sums.seeds += 1,
                }
            }
        }
    }

    fn remove_member(&mut self, peer_id: &str, swarm: &str, out: &mut Vec<(String, ServerMsg)>) {
        let Some(entry) = self.swarms.get_mut(swarm) else {
            return;
        };
        if let Some(p) = self.peers.get_mut(peer_id) {
            p.swarms.remove(swarm);
            if let Some(r) = p.reports.remove(swarm) {
                entry.sums.sub(&r.report);
            }
        }
        if !entry.members.remove(peer_id) {
            return;
        }
        if entry.viewers.remove(peer_id) {
            entry.sums.viewers -= 1;
        } else {
            entry.sums.seeds -= 1;
        }
        let members = &entry.members;
        let left = ServerMsg::PeerLeft {
            swarm: swarm.to_owned(),
            peer_id: peer_id.to_owned(),
        };
        if members.len() <= BROADCAST_LEFT_MAX {
            for other in members.iter() {
                out.push((other.clone(), left.clone()));
            }
        } else if let Some(p) = self.peers.get(peer_id) {
            for other in p.contacts.iter().filter(|c| members.contains(*c)) {
                out.push((other.clone(), left.clone()));
            }
        }
        if members.is_empty() {
            self.swarms.remove(swarm);
        }
    }

    /// Remembers that `a` signaled with `b` (bounded, most recent last).
    fn add_contact(&mut self, a: &str, b: &str) {
        if let Some(p) = self.peers.get_mut(a) {
            if let Some(i) = p.contacts.iter().position(|c| c == b) {
                p.contacts.remove(i);
            } else if p.contacts.len() >= MAX_CONTACTS {
                p.contacts.pop_front();
            }
            p.contacts.push_back(b.to_owned());
        }
    }

    /// Peers for `me` in `swarm` by the shared matching rule.
    /// The swarm's seeds (up to [`MAX_SEEDS_PER_JOIN`]) always come first,
    /// whatever the swarm's size: the matching rule picks among the viewers.
    fn pick_peers(&mut self, me: &str, swarm: &str) -> Vec<PeerInfo> {
        let Some(entry) = self.swarms.get(swarm) else {
            return Vec::new();
        };
        let members = &entry.members;
        let now = Instant::now();
        let mut seeds: Vec<PeerInfo> = self
            .seed_ids
            .values()
            .filter(|id| id.as_str() != me && members.contains(*id))
            .filter_map(|id| {
                let p = self.peers.get(id)?;
                Some(PeerInfo {
                    peer_id: id.clone(),
                    is_seed: true,
                    group: p.group.clone(),
                })
            })
            .collect();
        seeds.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        seeds.truncate(MAX_SEEDS_PER_JOIN);
        // A bounded random draw, same group first: never the whole swarm.
        let my_group = self.peers.get(me).map_or("", |p| p.group.as_str());
        let k = MATCH_SAMPLE_MIN.max(self.rule.max.saturating_mul(4));
        let (sample, examined) = (entry.viewers).sample_counted(
            me,
            my_group,
            k,
            self.rule.enough_same_group,
            &mut self.rng,
        );
        self.metrics.peer_picks.inc();
        self.metrics.peer_pick_examined.inc_by(examined as u64);
        let candidates: Vec<Candidate> = sample
            .into_iter()
            .filter(|id| *id != me && !self.conns.failed_recently(me, id, now))
            .filter_map(|id| {
                let p = self.peers.get(id).filter(|p| p.role == Role::Viewer)?;
                let rate = p.reports.get(swarm).map_or(0, |r| r.upload_rate);
                Some(Candidate {
                    peer_id: id,
                    group: &p.group,
                    upload_rate: rate,
                    quality: 1.0,
                })
            })
            .collect();
        let chosen = select_peers(me, my_group, &candidates, self.rule, self.rng.gen());
        let viewers = chosen.into_iter().filter_map(|id| {
            let p = self.peers.get(id)?;
            Some(PeerInfo {
                peer_id: id.to_owned(),
                is_seed: false,
                group: p.group.clone(),
            })
        });
        seeds.extend(viewers);
        seeds
    }

    /// Up to [`MAX_SEEDS_PER_JOIN`] seeds of `swarm`, each listed with that
    /// content only (a viewer needs no other seed's library).
    fn seeds_of(&self, swarm: &str) -> Vec<SeedInfo> {
        if !self.channels.contains_key(swarm) {
            return Vec::new();
        }
        let mut seeds: Vec<SeedInfo> = self
            .seed_ids
            .values()
            .filter_map(|id| self.peers.get(id)?.seed.as_ref())
            .filter(|s| s.contents.iter().any(|c| c == swarm))
            .map(|s| SeedInfo {
                seed_id: s.seed_id.clone(),
                http_base: s.http_base.clone(),
                contents: vec![swarm.to_owned()],
                capacity: s.capacity,
                live: (s.live.iter())
                    .filter(|l| l.channel == swarm)
                    .cloned()
                    .collect(),
            })
            .collect();
        seeds.sort_by(|a, b| a.seed_id.cmp(&b.seed_id));
        seeds.truncate(MAX_SEEDS_PER_JOIN);
        seeds
    }

    /// Sends queued messages; a recipient whose queue is full or closed is
    /// removed, which may queue more `peer_left` messages.
    fn deliver(&mut self, out: &mut Vec<(String, ServerMsg)>) {
        while !out.is_empty() {
            let mut dead = Vec::new();
            // A message sent to many in a row (peer_left to a whole swarm)
            // is encoded once.
            let mut last: Option<(ServerMsg, String)> = None;
            for (to, msg) in out.drain(..) {
                let Some(p) = self.peers.get(&to) else {
                    continue;
                };
                let text = match &last {
                    Some((m, t)) if *m == msg => t.clone(),
                    _ => {
                        let t = msg.encode();
                        last = Some((msg, t.clone()));
                        t
                    }
                };
                if let Err(e) = p.tx.try_send(text) {
                    let reason = match e {
                        mpsc::error::TrySendError::Full(_) => LeaveReason::SlowConsumer,
                        mpsc::error::TrySendError::Closed(_) => LeaveReason::Disconnected,
                    };
                    if reason == LeaveReason::SlowConsumer {
                        tracing::warn!(peer = %to, "outgoing queue full; dropping the client");
                    }
                    dead.push((to, reason));
                }
            }
            for (id, reason) in dead {
                self.remove_into(&id, reason, out);
            }
        }
    }

    /// Snapshot for `GET /api/swarms` and the admin channels view: totals
    /// and counts of everything (from running sums, without walking any
    /// swarm), and at most [`MAX_LISTED_SWARMS`] swarms listing at most
    /// [`MAX_LISTED_PEERS`] peers in all, each swarm's seeds first. The
    /// caller sorts it ([`SwarmsView::sorted`]) after releasing the lock.
    pub fn swarms_view(&self) -> SwarmsView {
        self.swarms_view_listing(MAX_LISTED_PEERS)
    }

    /// [`State::swarms_view`] listing at most `max_peers` peers (0: totals
    /// and swarm names only, as `/metrics` needs).
    pub fn swarms_view_listing(&self, max_peers: usize) -> SwarmsView {
        let mut totals = Totals::default();
        for e in self.swarms.values() {
            totals.merge(&e.sums.totals());
        }
        let mut budget = max_peers;
        let swarms: Vec<SwarmView> = (self.swarms.iter())
            .take(MAX_LISTED_SWARMS)
            .map(|(name, e)| {
                let seeds = (self.seed_ids.values()).filter(|id| e.members.contains(*id));
                let viewers = e.viewers.iter();
                let peers: Vec<PeerView> = (seeds.map(String::as_str))
                    .chain(viewers)
                    .take(budget)
                    .filter_map(|id| {
                        let p = self.peers.get(id)?;
                        let report = p.reports.get(name);
                        Some(PeerView {
                            peer_id: id.to_owned(),
                            seed_id: p.seed.as_ref().map(|s| s.seed_id.clone()),
                            live: p
                                .seed
                                .as_ref()
                                .is_some_and(|s| s.live.iter().any(|l| &l.channel == name)),
                            role: p.role,
                            group: p.group.clone(),
                            upload_rate: report.map_or(0, |r| r.upload_rate),
                            report: report.map(|r| r.report.clone()),
                        })
                    })
                    .collect();
                budget -= peers.len();
                SwarmView {
                    swarm: name.clone(),
                    status: self.channel_status(name, &e.members),
                    members: e.members.len(),
                    peers,
                    totals: e.sums.totals(),
                }
            })
            .collect();
        SwarmsView {
            swarm_count: self.swarms.len(),
            swarms,
            connected: Connected {
                peers: self.peers.len(),
                viewers: self.viewer_count,
                seeds: self.peers.len() - self.viewer_count,
            },
            totals,
        }
    }

    /// A channel's state from its seeds (bounded: seeds only): live while
    /// one of the seeds running it live does not report it interrupted.
    fn channel_status(&self, name: &str, members: &BTreeSet<String>) -> ChannelStatus {
        let mut seeds = (self.seed_ids.values())
            .filter(|id| members.contains(*id))
            .filter_map(|id| self.peers.get(id))
            .peekable();
        if seeds.peek().is_none() {
            return ChannelStatus::NoSeed;
        }
        let mut live = seeds
            .filter(|p| (p.seed.as_ref()).is_some_and(|s| s.live.iter().any(|l| l.channel == name)))
            .peekable();
        if live.peek().is_none() {
            return ChannelStatus::Vod;
        }
        let ok = live.any(|p| {
            !(p.seed_report.as_ref()).is_some_and(|(r, _)| r.interrupted.iter().any(|c| c == name))
        });
        if ok {
            ChannelStatus::Live
        } else {
            ChannelStatus::Interrupted
        }
    }

    /// Snapshot for `GET /api/seeds`.
    pub fn seeds_view(&self) -> SeedsView {
        let mut seeds: Vec<SeedView> = self
            .seed_ids
            .values()
            .filter_map(|id| {
                let p = self.peers.get(id)?;
                Some(SeedView {
                    peer_id: id.clone(),
                    group: p.group.clone(),
                    seed: p.seed.clone()?,
                })
            })
            .collect();
        seeds.sort_by(|a, b| a.seed.seed_id.cmp(&b.seed.seed_id));
        SeedsView { seeds }
    }
}

impl SwarmsView {
    /// Peers by id within each swarm (seeds first): done outside the lock.
    pub fn sorted(mut self) -> SwarmsView {
        for s in &mut self.swarms {
            s.peers.sort_by(|a, b| {
                (a.role == Role::Viewer, &a.peer_id).cmp(&(b.role == Role::Viewer, &b.peer_id))
            });
        }
        self
    }
}

/// Trims the peer list of a `joined` or `peers` message until it encodes
/// within [`MAX_SIGNAL_FRAME`] (the most a viewer accepts).
fn fit_peer_list(mut msg: ServerMsg) -> ServerMsg {
    loop {
        let len = msg.encode().len();
        let peers = match &mut msg {
            ServerMsg::Joined { peers, .. } | ServerMsg::Peers { peers, .. } => peers,
            _ => return msg,
        };
        if len <= MAX_SIGNAL_FRAME || peers.is_empty() {
            return msg;
        }
        let keep = peers.len() * MAX_SIGNAL_FRAME / len;
        peers.truncate(keep.min(peers.len() - 1));
    }
}

fn not_joined(swarm: &str) -> ServerMsg {
    ServerMsg::error(ErrorCode::NotJoined, format!("not joined to swarm {swarm}"))
}

#[derive(Debug, Serialize)]
pub struct SwarmsView {
    /// All swarms (at most [`MAX_LISTED_SWARMS`] are listed).
    pub swarm_count: usize,
    pub swarms: Vec<SwarmView>,
    /// Connected clients that said hello, in any swarm or none.
    pub connected: Connected,
    /// Sum of the per-swarm totals.
    pub totals: Totals,
}

#[derive(Debug, Serialize)]
pub struct Connected {
    pub peers: usize,
    pub viewers: usize,
    pub seeds: usize,
}

/// What a channel's seeds say about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelStatus {
    /// A seed runs it live and does not report its source interrupted.
    Live,
    /// Every seed running it live reports its source interrupted.
    Interrupted,
    /// Seeds hold it as a VOD, ready.
    Vod,
    /// No seed holds it (viewers only).
    NoSeed,
}

#[derive(Debug, Serialize)]
pub struct SwarmView {
    pub swarm: String,
    pub status: ChannelStatus,
    /// Its members (`peers` lists some of them when there are many).
    pub members: usize,
    pub peers: Vec<PeerView>,
    pub totals: Totals,
}

#[derive(Debug, Serialize)]
pub struct PeerView {
    pub peer_id: String,
    /// A seed's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_id: Option<String>,
    /// A seed for which this swarm is one of its live channels.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub live: bool,
    pub role: Role,
    pub group: String,
    /// Upload bytes per second between its last two reports.
    pub upload_rate: u64,
    pub report: Option<PeerReport>,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub peers: usize,
    pub viewers: usize,
    pub seeds: usize,
    pub bytes_from_peers: u64,
    pub bytes_from_http: u64,
    pub bytes_uploaded: u64,
    /// Bytes from viewers through TURN relays (paid for, so not in
    /// `p2p_share`).
    pub bytes_from_relay: u64,
    pub stalls: u64,
    pub stalled_ms: u64,
    /// Share of reported downloaded bytes that came directly from peers
    /// (0 when none); relayed bytes count in the total only.
    pub p2p_share: f64,
}

impl Totals {
    fn merge(&mut self, o: &Totals) {
        self.peers += o.peers;
        self.viewers += o.viewers;
        self.seeds += o.seeds;
        self.bytes_from_peers = self.bytes_from_peers.saturating_add(o.bytes_from_peers);
        self.bytes_from_http = self.bytes_from_http.saturating_add(o.bytes_from_http);
        self.bytes_uploaded = self.bytes_uploaded.saturating_add(o.bytes_uploaded);
        self.bytes_from_relay = self.bytes_from_relay.saturating_add(o.bytes_from_relay);
        self.stalls = self.stalls.saturating_add(o.stalls);
        self.stalled_ms = self.stalled_ms.saturating_add(o.stalled_ms);
        self.update_share();
    }

    fn update_share(&mut self) {
        let total = self
            .bytes_from_peers
            .saturating_add(self.bytes_from_http)
            .saturating_add(self.bytes_from_relay);
        self.p2p_share = if total == 0 {
            0.0
        } else {
            self.bytes_from_peers as f64 / total as f64
        };
    }
}

/// A viewer as the admin API shows it (addresses included).
#[derive(Debug, Serialize)]
pub struct AdminViewer {
    pub peer_id: String,
    /// Token `sub`, when it presented one.
    pub viewer: Option<String>,
    /// Token `group` (the website's plan or tier).
    pub user_group: Option<String>,
    /// Network group.
    pub group: String,
    pub addr: String,
    pub swarms: Vec<String>,
    pub connected_s: u64,
    /// Its last reports, summed over its swarms.
    pub report: PeerReport,
}

/// A seed as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct AdminSeed {
    pub peer_id: String,
    pub seed_id: String,
    pub http_base: String,
    pub addr: String,
    pub group: String,
    pub contents: usize,
    pub capacity: u32,
    /// Seconds since this seed connection registered.
    pub uptime_s: u64,
    /// Its latest own report (the seed's uptime, bytes in and out over
    /// WebRTC and HTTP, viewers, channels and cache), `None` before the
    /// first.
    pub report: Option<SeedReport>,
    /// Milliseconds since that report came.
    pub report_age_ms: Option<u64>,
    /// No report for [`SEED_REPORT_STALE_MS`] (none yet, after that long
    /// connected): the seed may be hung.
    pub stale: bool,
}

/// Whether a seed's reports stopped (or never came) for `stale_ms`.
fn stale(p: &Peer, now: Instant, stale_ms: u64) -> bool {
    let since = p.seed_report.as_ref().map_or(p.since, |(_, at)| *at);
    now.saturating_duration_since(since).as_millis() as u64 > stale_ms
}

#[derive(Debug, Serialize)]
pub struct SeedsView {
    pub seeds: Vec<SeedView>,
}

#[derive(Debug, Serialize)]
pub struct SeedView {
    pub peer_id: String,
    pub group: String,
    #[serde(flatten)]
    pub seed: SeedInfo,
}

/// The wall clock in Unix ms (0 if the clock is before 1970).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
