//! The live engine: one per (peer, live channel). Sans-IO like
//! [`crate::Engine`], with the same [`Input`]s and [`Output`]s, so drivers
//! run either.
//!
//! # Design note
//!
//! **Push, then pull.** The seed ([`LiveEngine::publish`]) pushes each new
//! segment whole to `push_copies` viewers (round robin over its viewers, so
//! the duty spreads) and announces it (`LiveMeta`) to its other peers. A
//! viewer that verified a segment announces it to every peer that does not
//! hold it; a peer that lacks it *wants* it whole from the least-loaded
//! viewer holding it. Each hop costs one segment transfer plus a round
//! trip, so the segment crosses a small swarm in a few tens of
//! milliseconds. The seed is asked only for a segment due within
//! `urgent_ms` that no viewer holds, and HTTP only for one due within
//! `critical_ms` (or at startup after `startup_wait_ms` with nobody holding
//! it).
//!
//! **Trust.** A description is believed only once its signature checked
//! out ([`Output::CheckSignature`]); a bad signature, or a description that
//! differs from the believed one for the same sequence, drops its sender. A
//! segment comes whole from one sender, in order, so a hash mismatch blames
//! exactly that sender. Pieces nobody asked for are discarded and counted;
//! past `max_unsolicited` their sender is dropped (a seed, which holds a
//! credential, is only counted: its late pushes are not hostile). Only
//! seed peers may push; a viewer's push is taken as an announcement. A
//! viewer whose wants time out `max_failed_wants` more often than it
//! delivers is dropped: it claims segments it does not send.
//!
//! **The live edge.** Playback starts at the media time whose capture lies
//! `target_latency_ms` before now (the wall clock the driver passes with
//! [`Input::Clock`]), plays at `catchup_permille` while more than
//! `catchup_above_ms` behind the target, jumps back to the target when more
//! than `jump_above_ms` behind, and jumps over a segment it has waited
//! `gap_wait_ms` for when a later one is at hand.
//!
//! **Bounds.** Peers, checks in flight, segments being received, believed
//! descriptions and stored segments (by count and by the window behind the
//! playhead), each peer's announced holdings, the ban list: each in
//! [`LiveConfig`]. An announcement too old or too far ahead of the newest
//! believed one is ignored.

use super::{init_signed_bytes, segment_uri, LiveManifest, LiveMeta, LIVE_SEGMENT_COUNT};
use crate::engine::maps::{BanList, Map, Set};
use crate::engine::meter::Meter;
use crate::engine::{Input, MediaEvent, Output, PeerKey, Resource, Stats};
use crate::ids::SegmentId;
use crate::wire::{self, Message};
use crate::Millis;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::Arc;

/// Tunables and bounds of one [`LiveEngine`].
#[derive(Clone, Debug)]
pub struct LiveConfig {
    /// Wall clock minus capture time of the frame on screen, held steady.
    pub target_latency_ms: u64,
    /// A segment due within this goes to a seed peer if no viewer has it.
    pub urgent_ms: u64,
    /// A segment due within this comes over HTTP if still missing.
    pub critical_ms: u64,
    /// At startup, how long to wait for a viewer to hold the first segment
    /// before taking it from the origin.
    pub startup_wait_ms: u64,
    /// A wanted (or pushed) segment not complete after this is given up.
    pub want_timeout_ms: u64,
    /// Wants outstanding at one peer.
    pub max_wants_per_peer: u32,
    /// Behind the target by more than this, play faster.
    pub catchup_above_ms: u64,
    /// The faster rate, in thousandths.
    pub catchup_permille: u32,
    /// Behind the target by more than this, jump back to it.
    pub jump_above_ms: u64,
    /// Starved this long for a missing segment while a later one is held:
    /// jump over the gap.
    pub gap_wait_ms: u64,
    /// Seed: viewers each new segment is pushed to.
    pub push_copies: usize,
    /// Segments (and their descriptions) kept behind the playhead, for
    /// playback and for viewers behind us; a seed keeps this much behind its
    /// newest segment.
    pub behind_ms: u64,
    /// Media kept in the browser's buffer behind the playhead.
    pub media_behind_ms: u64,
    /// Most believed descriptions and stored segments.
    pub max_segments: usize,
    /// Announcements further than this ahead of the newest believed
    /// description are ignored.
    pub max_ahead: u32,
    /// Signature checks in flight.
    pub max_checks: usize,
    /// Segments being received at once.
    pub max_incoming: usize,
    pub max_peers: usize,
    /// Bytes queued toward a peer above which its wants are refused.
    pub max_buffered_bytes: u64,
    /// Bytes queued toward all peers together above which wants are
    /// refused: the asker takes the segment from another holder, so a
    /// slow uplink does not make everyone wait in its queue.
    pub max_upload_backlog: u64,
    /// A viewer refuses a want when its upload queue (bytes queued toward
    /// all peers, plus the segment) would take longer than this to drain
    /// at its measured uplink rate: the asker takes it from a faster holder
    /// instead of waiting seconds in a slow queue. 0: off (only the byte
    /// bounds apply), as until the rate is known.
    pub max_upload_queue_ms: u64,
    pub max_banned: usize,
    pub idle_timeout_ms: u64,
    /// Unsolicited pieces a viewer may send before it is dropped.
    pub max_unsolicited: u32,
    /// Wants a viewer may leave unanswered (timeouts) beyond the segments
    /// it delivered before it is dropped as claiming what it does not send.
    pub max_failed_wants: u32,
    pub http_retry_ms: u64,
    /// Descriptions sent to a peer that just connected (newest first).
    pub announce_recent: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            target_latency_ms: 2000,
            urgent_ms: 600,
            critical_ms: 300,
            startup_wait_ms: 800,
            want_timeout_ms: 1500,
            max_wants_per_peer: 2,
            catchup_above_ms: 500,
            catchup_permille: 1080,
            jump_above_ms: 8000,
            gap_wait_ms: 1500,
            push_copies: 1,
            behind_ms: 30_000,
            media_behind_ms: 30_000,
            max_segments: 96,
            max_ahead: 64,
            max_checks: 32,
            max_incoming: 8,
            max_peers: 20,
            max_buffered_bytes: 4 << 20,
            max_upload_backlog: 384 << 10,
            max_upload_queue_ms: 0,
            max_banned: 1024,
            idle_timeout_ms: 60_000,
            max_unsolicited: 256,
            max_failed_wants: 4,
            http_retry_ms: 500,
            announce_recent: 8,
        }
    }
}

struct LivePeer {
    id: String,
    is_seed: bool,
    /// Its connection goes through a TURN relay.
    relayed: bool,
    hello: bool,
    /// Sequences it announced (believed ones only), bounded.
    holds: Set<u32>,
    /// Our wants outstanding at it.
    wants: u32,
    /// Our wants it left unanswered (timed out), and segments it delivered.
    failed: u32,
    delivered: u32,
    unsolicited: u32,
    buffered: u64,
    last_heard: Millis,
}

struct Incoming {
    from: PeerKey,
    meta: LiveMeta,
    buf: Vec<u8>,
    next_piece: u32,
    since: Millis,
    /// Pushed by the sender rather than wanted by us.
    pushed: bool,
}

enum CheckOf {
    Init,
    /// `announcers`: the peers that sent it (none when it came from the
    /// origin's manifest).
    Meta {
        meta: LiveMeta,
        announcers: Vec<PeerKey>,
    },
}

/// The uplink rate is measured over windows this long.
const RATE_WINDOW_MS: u64 = 1000;
/// Announcers remembered per description being checked.
const MAX_ANNOUNCERS: usize = 8;
/// Sequences scanned ahead of the next append each round.
const MAX_SCAN: u32 = 16;
/// The least margin kept between the latency target and a segment's
/// duration (encoding, transfer, and jitter).
pub const MIN_LATENCY_MARGIN_MS: u64 = 800;
/// `live.json` is fetched again when no new description came for a
/// segment's duration plus this.
const REFRESH_SLACK_MS: u64 = 500;
/// ... and at most this often.
const REFRESH_EVERY_MS: u64 = 500;

pub struct LiveEngine {
    manifest: Arc<LiveManifest>,
    cfg: LiveConfig,
    seeding: bool,
    now: Millis,
    started_at: Option<Millis>,
    startup_origin: Option<Millis>,
    /// (engine time, Unix ms) of the last [`Input::Clock`].
    wall: Option<(Millis, u64)>,
    metas: Map<u32, LiveMeta>,
    store: Map<u32, Arc<[u8]>>,
    checks: Map<u64, CheckOf>,
    next_check: u64,
    incoming: Map<u32, Incoming>,
    peers: Map<PeerKey, LivePeer>,
    banned: BanList,
    http_inflight: Set<Resource>,
    http_retry_at: Map<Resource, Millis>,
    init_sig_ok: bool,
    init_data: Option<Arc<[u8]>>,
    init_appended: bool,
    next_append: Option<u32>,
    start_pos: u64,
    seeked: bool,
    appended_end_ms: u64,
    starved_since: Option<Millis>,
    in_media: Set<u32>,
    position_ms: u64,
    rate: u32,
    push_cursor: usize,
    /// Viewers the signal server listed when we joined.
    joined_viewers: Option<usize>,
    /// When the newest believed description last advanced.
    newest_at: Millis,
    refreshing: bool,
    refreshed_at: Option<Millis>,
    /// Something the scheduling pass reads changed since it last ran (see
    /// [`LiveEngine::handle_input`]).
    dirty: bool,
    /// Our uplink: bytes drained from the queues toward peers (as the
    /// driver's [`Input::PeerBuffered`] reports show) since `rate_since`,
    /// whether the queues were non-empty when that window began, and the
    /// rate measured (bytes/s, 0 until known).
    drained: u64,
    rate_since: Millis,
    window_busy: bool,
    up_rate: u64,
    /// After a full pass: the playhead position and the time before which
    /// a clock input ([`Input::Playhead`], [`Input::Timeout`]) with nothing
    /// dirty cannot make any pass decide anything new (see `find_wake`).
    wake_pos: u64,
    wake_at: Millis,
    out: VecDeque<Output>,
    meter: Meter,
    stats: Stats,
}

impl LiveEngine {
    /// A viewer: checks the manifest's init signature and descriptions,
    /// then starts near the live edge.
    pub fn new(manifest: Arc<LiveManifest>, cfg: LiveConfig) -> LiveEngine {
        let mut e = LiveEngine::blank(manifest, cfg);
        let m = e.manifest.clone();
        e.check(
            CheckOf::Init,
            init_signed_bytes(&m.channel, &m.init.sha256),
            m.init_sig,
        );
        for meta in &m.recent {
            e.on_meta(None, *meta, false);
        }
        e
    }

    /// The channel's seed: segments come from [`LiveEngine::publish`]; it
    /// needs only the channel name and the piece size.
    pub fn new_seed(channel: &str, piece_size: u32, cfg: LiveConfig) -> LiveEngine {
        let manifest = LiveManifest {
            version: super::LIVE_MANIFEST_VERSION,
            channel: channel.to_owned(),
            title: String::new(),
            mime: String::new(),
            piece_size,
            segment_ms: 0,
            playlist: String::new(),
            init: crate::manifest::SegmentEntry {
                uri: String::new(),
                size: 0,
                sha256: String::new(),
                duration_ms: 0,
            },
            init_sig: [0; 64],
            public_key: [0; 32],
            recent: Vec::new(),
            interrupted: None,
        };
        let mut e = LiveEngine::blank(Arc::new(manifest), cfg);
        e.seeding = true;
        e
    }

    fn blank(manifest: Arc<LiveManifest>, cfg: LiveConfig) -> LiveEngine {
        LiveEngine {
            manifest,
            cfg,
            seeding: false,
            now: 0,
            started_at: None,
            startup_origin: None,
            wall: None,
            metas: Map::new(),
            store: Map::new(),
            checks: Map::new(),
            next_check: 0,
            incoming: Map::new(),
            peers: Map::new(),
            banned: BanList::new(),
            http_inflight: Set::new(),
            http_retry_at: Map::new(),
            init_sig_ok: false,
            init_data: None,
            init_appended: false,
            next_append: None,
            start_pos: 0,
            seeked: false,
            appended_end_ms: 0,
            starved_since: None,
            in_media: Set::new(),
            position_ms: 0,
            rate: 1000,
            push_cursor: 0,
            joined_viewers: None,
            newest_at: 0,
            refreshing: false,
            refreshed_at: None,
            dirty: true,
            drained: 0,
            rate_since: 0,
            window_busy: false,
            up_rate: 0,
            wake_pos: 0,
            wake_at: 0,
            out: VecDeque::new(),
            meter: Meter::default(),
            stats: Stats::default(),
        }
    }

    pub fn manifest(&self) -> &Arc<LiveManifest> {
        &self.manifest
    }

    pub fn config(&self) -> &LiveConfig {
        &self.cfg
    }

    pub fn stats(&self) -> Stats {
        Stats {
            peers: self.peers.len() as u32,
            startup_ms: self.meter.startup_ms,
            stalls: self.meter.stalls,
            stalled_ms: self.meter.stalled_ms(self.now),
            ..self.stats.clone()
        }
    }

    /// The URI of a resource, relative to the live manifest.
    pub fn uri(&self, res: Resource) -> String {
        match res {
            Resource::Init => self.manifest.init.uri.clone(),
            Resource::Segment(s) => segment_uri(s.get()),
        }
    }

    /// The newest believed description.
    pub fn newest(&self) -> Option<&LiveMeta> {
        self.metas.last().map(|(_, m)| m)
    }

    /// Whether this segment is verified and held.
    pub fn has_segment(&self, seq: u32) -> bool {
        self.store.contains_key(&seq)
    }

    pub fn is_banned(&self, remote_id: &str) -> bool {
        self.banned.contains(remote_id)
    }

    pub fn peer_slots_free(&self) -> usize {
        self.cfg.max_peers.saturating_sub(self.peers.len())
    }

    /// Table sizes, each bounded by [`LiveConfig`]: peers, segments being
    /// received (`partial_segments`), stored segments and bytes, bans.
    pub fn tables(&self) -> crate::engine::Tables {
        crate::engine::Tables {
            peers: self.peers.len(),
            partial_segments: self.incoming.len(),
            stored_segments: self.store.len(),
            stored_bytes: self.store.values().map(|d| d.len()).sum(),
            banned: self.banned.len(),
            // Tables only the on-demand engine has.
            rejects: 0,
            pending_loads: 0,
            suspects: 0,
        }
    }

    pub fn count_startup_from(&mut self, at: Millis) {
        self.startup_origin = Some(at);
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        let idle = (self.peers.values())
            .map(|r| r.last_heard + self.cfg.idle_timeout_ms)
            .min();
        let want = (self.incoming.values())
            .map(|i| i.since + self.cfg.want_timeout_ms)
            .min();
        if self.seeding {
            return [idle, want].into_iter().flatten().min();
        }
        let retry = self.http_retry_at.values().copied().min();
        let tick = self.now + 100;
        [idle, want, retry, Some(tick)].into_iter().flatten().min()
    }

    /// Seed: a new segment from the ingest, described and signed. Pushed to
    /// `push_copies` viewers, announced to the other peers.
    pub fn publish(&mut self, now: Millis, meta: LiveMeta, data: Arc<[u8]>) {
        self.now = self.now.max(now);
        let seq = meta.seq;
        self.metas.insert(seq, meta);
        self.store.insert(seq, data.clone());
        self.stats.segments_verified += 1;
        let size = meta.size as u64;
        let max = self.cfg.max_buffered_bytes;
        let viewers: Vec<PeerKey> = (self.peers.iter())
            .filter(|(_, r)| !r.is_seed && r.hello)
            .map(|(&k, _)| k)
            .collect();
        let mut pushed = Vec::new();
        for i in 0..viewers.len() {
            if pushed.len() >= self.cfg.push_copies {
                break;
            }
            let k = viewers[(self.push_cursor + i) % viewers.len()];
            if self.peers[&k].buffered + size <= max {
                pushed.push(k);
            }
        }
        self.push_cursor = self.push_cursor.wrapping_add(pushed.len().max(1));
        let keys: Vec<PeerKey> = (self.peers.iter())
            .filter(|(_, r)| r.hello)
            .map(|(&k, _)| k)
            .collect();
        for k in keys {
            if pushed.contains(&k) {
                self.send(k, &Message::LivePush(meta));
                self.send_pieces(k, &meta, &data);
                if let Some(r) = self.peers.get_mut(&k) {
                    r.holds.insert(seq);
                }
            } else {
                self.send(k, &Message::LiveMeta(meta));
            }
        }
        self.keep_windows();
    }

    /// One input, then the housekeeping and scheduling passes.
    ///
    /// **Incremental scheduling.** A peer's message ([`Input::PeerData`])
    /// runs the passes only if it changed something they read in a way that
    /// can enable a new action (see `dirty`): a peer said hello, a peer
    /// newly holds a segment we lack, a segment completed or was rejected,
    /// a peer went away. The other messages (a want we serve, a piece in
    /// the middle of a segment, an announcement of what we hold or of a
    /// description still being checked) cannot make the pass decide
    /// anything new, so skipping it changes no decision. Every other input
    /// runs the passes: time-driven decisions (timeouts, retries, a segment
    /// becoming due) wait at most for the next [`Input::Timeout`] (the
    /// driver's [`LiveEngine::poll_timeout`], at most 100 ms for a viewer)
    /// or [`Input::Playhead`].
    ///
    /// A clock input ([`Input::Playhead`], [`Input::Timeout`]) with nothing
    /// dirty runs only the steering (latency, rate, gaps) until the playhead
    /// or the clock reaches the first threshold where a pass could decide
    /// something (a segment becoming urgent or critical, a want or a peer
    /// timing out, a retry, a segment leaving the window: `find_wake`).
    pub fn handle_input(&mut self, now: Millis, input: Input<'_>) {
        self.now = self.now.max(now);
        self.started_at.get_or_insert(now);
        let from_peer = matches!(input, Input::PeerData { .. });
        let clock = matches!(input, Input::Playhead { .. } | Input::Timeout);
        match input {
            Input::PeerConnected {
                peer,
                remote_id,
                is_seed,
            } => self.on_connected(peer, remote_id, is_seed),
            Input::PeerData { peer, data } => self.on_data(peer, data),
            Input::PeerBadFrame { peer, what } => {
                self.drop_peer(peer, format!("protocol error: {what}"))
            }
            Input::PeerBuffered { peer, bytes } => {
                if let Some(r) = self.peers.get_mut(&peer) {
                    self.drained += r.buffered.saturating_sub(bytes);
                    r.buffered = bytes;
                }
                self.measure_uplink();
                // A counter the next want or scheduling pass reads: no pass
                // of its own (drivers report it after every message sent).
                return;
            }
            Input::PeerRoute { peer, relayed } => {
                if let Some(r) = self.peers.get_mut(&peer) {
                    r.relayed = relayed;
                }
            }
            Input::PeerClosed { peer } => self.forget_peer(peer),
            Input::HttpDone { res, data } => self.on_http(res, data),
            Input::HttpFailed { res } => {
                self.http_inflight.remove(&res);
                self.http_retry_at
                    .insert(res, self.now + self.cfg.http_retry_ms);
            }
            Input::SignatureChecked { id, ok } => self.on_checked(id, ok),
            Input::Clock { unix_ms } => self.wall = Some((self.now, unix_ms)),
            Input::LiveRecent { metas } => {
                self.refreshing = false;
                for m in metas.iter().take(super::MAX_RECENT) {
                    self.on_meta(None, *m, false);
                }
            }
            Input::Playhead { position_ms } => self.position_ms = position_ms,
            Input::Seek { position_ms } => {
                // The viewer moved the playhead: back to the live edge.
                self.position_ms = position_ms;
                self.restart_playback();
            }
            Input::Media(ev) => {
                let origin = self.startup_origin.or(self.started_at);
                self.meter
                    .on_media(ev, self.now, origin.unwrap_or(self.now));
                if ev == MediaEvent::Playing {
                    self.starved_since = None;
                }
            }
            Input::Joined { viewers } => self.joined_viewers = Some(viewers),
            Input::Loaded { .. } | Input::LoadFailed { .. } => {}
            Input::Timeout => {}
        }
        if from_peer && !self.dirty {
            return;
        }
        if clock && !self.dirty && self.quiet() {
            let before = (self.next_append, self.seeked);
            self.steer();
            if (self.next_append, self.seeked) == before {
                return;
            }
            // It jumped: the full passes follow.
        }
        self.dirty = false;
        self.close_idle_peers();
        self.expire_incoming();
        if !self.seeding {
            self.schedule();
            self.flush_appends();
            self.steer();
        }
        self.keep_windows();
        self.find_wake();
    }

    /// The uplink rate, over windows of [`RATE_WINDOW_MS`]: a window whose
    /// queues were non-empty at both ends measured the uplink itself (an
    /// average with the rate known); any other only shows it is at least
    /// that fast.
    fn measure_uplink(&mut self) {
        let dt = self.now.saturating_sub(self.rate_since);
        if dt < RATE_WINDOW_MS {
            return;
        }
        let backlog: u64 = self.peers.values().map(|r| r.buffered).sum();
        let sample = self.drained * 1000 / dt;
        self.up_rate = if self.window_busy && backlog > 0 && self.up_rate > 0 {
            (self.up_rate * 3 + sample) / 4
        } else {
            self.up_rate.max(sample)
        };
        self.drained = 0;
        self.rate_since = self.now;
        self.window_busy = backlog > 0;
    }

    /// The measured uplink rate, bytes/s (0: not known yet).
    pub fn uplink_rate(&self) -> u64 {
        self.up_rate
    }

    /// Whether the last full pass's thresholds are still ahead.
    fn quiet(&self) -> bool {
        !self.seeding && self.seeked && self.position_ms < self.wake_pos && self.now < self.wake_at
    }

    /// The thresholds of [`LiveEngine::quiet`], after a full pass (the
    /// scheduling pass left its own in `wake_pos` and `wake_at`).
    fn find_wake(&mut self) {
        let mut at = self.wake_at;
        let mut pos = self.wake_pos;
        let min_at = |a: &mut Millis, b: Millis| *a = (*a).min(b);
        for i in self.incoming.values() {
            min_at(&mut at, i.since + self.cfg.want_timeout_ms + 1);
        }
        for r in self.peers.values() {
            min_at(&mut at, r.last_heard + self.cfg.idle_timeout_ms + 1);
        }
        for &t in self.http_retry_at.values() {
            min_at(&mut at, t);
        }
        if !self.refreshing {
            let since = self.newest_at.max(self.started_at.unwrap_or(0));
            let quiet_at = since + self.manifest.segment_ms as u64 + REFRESH_SLACK_MS;
            let again = self.refreshed_at.map_or(0, |t| t + REFRESH_EVERY_MS);
            min_at(&mut at, quiet_at.max(again));
        }
        // A stored segment or description leaves the window, media leaves
        // the buffer.
        for m in self.metas.values() {
            pos = pos.min(m.end_ms() + self.cfg.behind_ms + 1);
        }
        for s in self.in_media.iter() {
            let end = self.metas.get(s).map_or(0, LiveMeta::end_ms);
            pos = pos.min(end + self.cfg.media_behind_ms);
        }
        self.wake_at = at;
        self.wake_pos = pos;
    }

    fn send(&mut self, peer: PeerKey, msg: &Message<'_>) {
        let data = wire::encode(msg);
        if let Some(r) = self.peers.get_mut(&peer) {
            r.buffered += data.len() as u64;
        }
        self.out.push_back(Output::Send { peer, data });
    }

    fn send_pieces(&mut self, peer: PeerKey, meta: &LiveMeta, data: &[u8]) {
        let ps = self.manifest.piece_size as usize;
        for (i, chunk) in data.chunks(ps).enumerate() {
            self.send(
                peer,
                &Message::Piece {
                    seg: meta.seq,
                    piece: i as u32,
                    data: chunk,
                },
            );
        }
        self.stats.bytes_uploaded += data.len() as u64;
    }

    fn check(&mut self, of: CheckOf, message: Vec<u8>, signature: [u8; 64]) {
        let id = self.next_check;
        self.next_check += 1;
        self.checks.insert(id, of);
        self.out.push_back(Output::CheckSignature {
            id,
            message,
            signature,
        });
    }

    fn on_connected(&mut self, peer: PeerKey, remote_id: &str, is_seed: bool) {
        if self.peers.contains_key(&peer) {
            return;
        }
        if self.is_banned(remote_id) {
            let reason = format!("peer {remote_id} is banned");
            return self.out.push_back(Output::ClosePeer { peer, reason });
        }
        if self.peers.len() >= self.cfg.max_peers {
            let reason = format!("peer limit of {} reached", self.cfg.max_peers);
            return self.out.push_back(Output::ClosePeer { peer, reason });
        }
        self.peers.insert(
            peer,
            LivePeer {
                id: remote_id.to_owned(),
                is_seed,
                relayed: false,
                hello: false,
                holds: Set::new(),
                wants: 0,
                failed: 0,
                delivered: 0,
                unsolicited: 0,
                buffered: 0,
                last_heard: self.now,
            },
        );
        let channel = self.manifest.channel.clone();
        self.send(
            peer,
            &Message::Hello {
                content_id: &channel,
                segments: LIVE_SEGMENT_COUNT,
            },
        );
        let recent: Vec<LiveMeta> = (self.store.iter().rev())
            .take(self.cfg.announce_recent)
            .filter_map(|(s, _)| self.metas.get(s).copied())
            .collect();
        for m in recent.into_iter().rev() {
            self.send(peer, &Message::LiveMeta(m));
        }
    }

    /// Closes a peer that misbehaved and bans its id.
    fn drop_peer(&mut self, peer: PeerKey, reason: String) {
        let Some(r) = self.peers.get(&peer) else {
            return;
        };
        let id = r.id.clone();
        self.forget_peer(peer);
        self.banned.insert(&id, self.cfg.max_banned);
        self.stats.peers_dropped += 1;
        self.out.push_back(Output::DropPeer { peer, reason });
    }

    fn close_peer(&mut self, peer: PeerKey, reason: String) {
        if self.peers.contains_key(&peer) {
            self.forget_peer(peer);
            self.out.push_back(Output::ClosePeer { peer, reason });
        }
    }

    fn forget_peer(&mut self, peer: PeerKey) {
        if self.peers.remove(&peer).is_none() {
            return;
        }
        self.dirty = true;
        let gone: Vec<u32> = (self.incoming.iter())
            .filter(|(_, i)| i.from == peer)
            .map(|(&s, _)| s)
            .collect();
        for s in gone {
            self.incoming.remove(&s);
        }
    }

    fn close_idle_peers(&mut self) {
        let cutoff = self.now.saturating_sub(self.cfg.idle_timeout_ms);
        let idle: Vec<PeerKey> = (self.peers.iter())
            .filter(|(_, r)| r.last_heard < cutoff)
            .map(|(&k, _)| k)
            .collect();
        for k in idle {
            self.close_peer(k, format!("silent for {} ms", self.cfg.idle_timeout_ms));
        }
    }

    fn on_data(&mut self, peer: PeerKey, data: &[u8]) {
        let now = self.now;
        let Some(r) = self.peers.get_mut(&peer) else {
            return;
        };
        r.last_heard = now;
        let msg = match wire::decode(data) {
            Ok(m) => m,
            Err(e) => return self.drop_peer(peer, format!("malformed message: {e}")),
        };
        match msg {
            Message::Hello {
                content_id,
                segments,
            } => {
                if content_id != self.manifest.channel || segments != LIVE_SEGMENT_COUNT {
                    let reason = format!(
                        "peer is on {content_id:?} ({segments} segments), we are on live channel {:?}",
                        self.manifest.channel
                    );
                    return self.drop_peer(peer, reason);
                }
                r.hello = true;
                self.dirty = true;
            }
            Message::LiveMeta(m) => self.on_meta(Some(peer), m, false),
            // Only seeds push (viewers announce, then are asked): a viewer's
            // push is taken as a plain announcement, and its pieces as
            // unsolicited.
            Message::LivePush(m) => {
                let seed = r.is_seed;
                self.on_meta(Some(peer), m, seed)
            }
            Message::LiveWant { seq } => self.on_want(peer, seq),
            Message::Piece { seg, piece, data } => self.on_piece(peer, seg, piece, data),
            Message::Reject { seg, .. } => self.on_reject(peer, seg),
            Message::Bye => self.close_peer(peer, "said bye".into()),
            Message::Bitfield(_)
            | Message::Have { .. }
            | Message::Request { .. }
            | Message::Cancel { .. }
            | Message::Fetching { .. } => self.drop_peer(
                peer,
                "sent a video-on-demand message on a live channel".into(),
            ),
        }
    }

    /// Whether an announcement of `seq` is worth a signature check: not
    /// older than what we keep, not too far past the newest believed one.
    fn in_range(&self, seq: u32) -> bool {
        let Some(newest) = self.metas.last().map(|(&s, _)| s) else {
            return true;
        };
        let oldest_wanted = match self.next_append {
            Some(n) => n.min(newest.saturating_sub(self.cfg.max_segments as u32 / 2)),
            None => newest.saturating_sub(self.cfg.max_segments as u32 / 2),
        };
        seq >= oldest_wanted && seq <= newest.saturating_add(self.cfg.max_ahead)
    }

    fn on_meta(&mut self, from: Option<PeerKey>, m: LiveMeta, push: bool) {
        if let Err(e) = m.check_shape() {
            if let Some(p) = from {
                self.drop_peer(p, e);
            }
            return;
        }
        if let Some(known) = self.metas.get(&m.seq) {
            if *known != m {
                if let Some(p) = from {
                    let reason = format!(
                        "sent a description of live segment {} that differs from the signed one",
                        m.seq
                    );
                    self.drop_peer(p, reason);
                }
                return;
            }
            if let Some(p) = from {
                if let Some(r) = self.peers.get_mut(&p) {
                    // A new holder of a segment we lack may be wanted.
                    if r.holds.insert(m.seq) && !self.store.contains_key(&m.seq) {
                        self.dirty = true;
                    }
                    // Bounded here too: passes may be skipped.
                    if r.holds.len() > self.cfg.max_segments {
                        let first = *r.holds.iter().next().expect("not empty");
                        r.holds.remove(&first);
                    }
                }
                if push {
                    self.accept_push(p, m);
                }
            }
            return;
        }
        if !self.in_range(m.seq) {
            return;
        }
        let pending = self.checks.iter_mut().find_map(|(_, c)| match c {
            CheckOf::Meta { meta, announcers } if meta.seq == m.seq => Some((meta, announcers)),
            _ => None,
        });
        match pending {
            Some((meta, announcers)) => {
                // A different description while one is checked is ignored.
                if *meta != m {
                    return;
                }
                if let Some(p) = from {
                    if announcers.len() < MAX_ANNOUNCERS && !announcers.contains(&p) {
                        announcers.push(p);
                    }
                }
            }
            None => {
                if self.checks.len() >= self.cfg.max_checks {
                    return;
                }
                let message = m.signed_bytes(&self.manifest.channel);
                let announcers = from.into_iter().collect();
                self.check(
                    CheckOf::Meta {
                        meta: m,
                        announcers,
                    },
                    message,
                    m.sig,
                );
            }
        }
        if let (Some(p), true) = (from, push) {
            self.accept_push(p, m);
        }
    }

    fn on_checked(&mut self, id: u64, ok: bool) {
        let Some(of) = self.checks.remove(&id) else {
            return;
        };
        match of {
            CheckOf::Init => {
                self.init_sig_ok = ok;
                if ok {
                    self.stats.signatures_verified += 1;
                } else {
                    self.stats.verify_failures += 1;
                }
            }
            CheckOf::Meta { meta, announcers } if ok => {
                self.stats.signatures_verified += 1;
                if self.newest().is_none_or(|n| meta.seq > n.seq) {
                    self.newest_at = self.now;
                }
                self.metas.insert(meta.seq, meta);
                for p in announcers {
                    if let Some(r) = self.peers.get_mut(&p) {
                        r.holds.insert(meta.seq);
                    }
                }
                if (self.incoming.get(&meta.seq))
                    .is_some_and(|i| i.next_piece == i.piece_count(self))
                {
                    self.complete(meta.seq);
                }
            }
            CheckOf::Meta { meta, announcers } => {
                self.stats.verify_failures += 1;
                for p in announcers {
                    let reason = format!("bad signature on live segment {}", meta.seq);
                    self.drop_peer(p, reason);
                }
            }
        }
    }

    fn accept_push(&mut self, from: PeerKey, m: LiveMeta) {
        let busy = self.store.contains_key(&m.seq)
            || self.incoming.contains_key(&m.seq)
            || self
                .http_inflight
                .contains(&Resource::Segment(SegmentId(m.seq)))
            || self.incoming.len() >= self.cfg.max_incoming;
        if busy || self.seeding {
            return;
        }
        self.dirty = true;
        self.incoming.insert(
            m.seq,
            Incoming {
                from,
                meta: m,
                buf: Vec::new(),
                next_piece: 0,
                since: self.now,
                pushed: true,
            },
        );
    }

    fn on_want(&mut self, peer: PeerKey, seq: u32) {
        let data = self.store.get(&seq).cloned();
        let meta = self.metas.get(&seq).copied();
        let backlog: u64 = self.peers.values().map(|r| r.buffered).sum();
        let r = self.peers.get(&peer).expect("caller checked");
        // Time to drain the queues with this segment, at the measured rate.
        let (max_ms, rate) = (self.cfg.max_upload_queue_ms, self.up_rate);
        let in_time =
            |len: u64| max_ms == 0 || rate == 0 || (backlog + len) * 1000 / rate <= max_ms;
        match (data, meta) {
            (Some(data), Some(meta))
                if r.buffered + data.len() as u64 <= self.cfg.max_buffered_bytes
                    && (self.seeding
                        || backlog == 0
                        || (backlog + data.len() as u64 <= self.cfg.max_upload_backlog
                            && in_time(data.len() as u64))) =>
            {
                self.send_pieces(peer, &meta, &data)
            }
            _ => self.send(peer, &Message::Reject { seg: seq, piece: 0 }),
        }
    }

    fn on_reject(&mut self, peer: PeerKey, seq: u32) {
        let ours = (self.incoming.get(&seq)).is_some_and(|i| i.from == peer && !i.pushed);
        if !ours {
            return;
        }
        self.dirty = true;
        self.incoming.remove(&seq);
        if let Some(r) = self.peers.get_mut(&peer) {
            r.wants = r.wants.saturating_sub(1);
            r.holds.remove(&seq);
        }
        self.stats.requests_rejected += 1;
    }

    fn on_piece(&mut self, peer: PeerKey, seq: u32, piece: u32, data: &[u8]) {
        let ps = self.manifest.piece_size;
        let r = self.peers.get_mut(&peer).expect("caller checked");
        if r.is_seed {
            self.stats.bytes_from_seed += data.len() as u64;
        } else if r.relayed {
            self.stats.bytes_from_relay += data.len() as u64;
        } else {
            self.stats.bytes_from_peers += data.len() as u64;
        }
        let Some(inc) = self.incoming.get_mut(&seq).filter(|i| i.from == peer) else {
            // A late answer to a want given up, or bytes nobody asked for.
            self.stats.unsolicited_pieces += 1;
            r.unsolicited += 1;
            // A seed's push that arrives after we gave up on it is late, not
            // hostile: seeds hold a credential and are only counted.
            if r.unsolicited > self.cfg.max_unsolicited && !r.is_seed {
                let reason = format!("sent {} pieces nobody asked for", r.unsolicited);
                self.drop_peer(peer, reason);
            }
            return;
        };
        let count = inc.meta.piece_count(ps);
        let len = inc.meta.piece_len(ps, piece);
        if piece != inc.next_piece || piece >= count || data.len() != len {
            let reason = format!(
                "sent piece {piece} of live segment {seq} ({} bytes) where piece {} of {len} bytes was due",
                data.len(),
                inc.next_piece
            );
            return self.drop_peer(peer, reason);
        }
        inc.buf.extend_from_slice(data);
        inc.next_piece += 1;
        if inc.next_piece == count && self.metas.contains_key(&seq) {
            self.complete(seq);
        }
    }

    /// A segment fully received from one sender, with a believed
    /// description: keep it or blame the sender.
    fn complete(&mut self, seq: u32) {
        let Some(inc) = self.incoming.remove(&seq) else {
            return;
        };
        self.dirty = true;
        let meta = self.metas[&seq];
        if let Some(r) = self.peers.get_mut(&inc.from) {
            if !inc.pushed {
                r.wants = r.wants.saturating_sub(1);
            }
            r.delivered += 1;
        }
        let hash: [u8; 32] = Sha256::digest(&inc.buf).into();
        if inc.buf.len() != meta.size as usize || hash != meta.sha256 {
            self.stats.verify_failures += 1;
            let reason =
                format!("sent live segment {seq}, which does not match its signed SHA-256");
            return self.drop_peer(inc.from, reason);
        }
        self.accept(seq, inc.buf.into());
    }

    fn accept(&mut self, seq: u32, data: Arc<[u8]>) {
        self.dirty = true;
        self.http_retry_at
            .remove(&Resource::Segment(SegmentId(seq)));
        self.store.insert(seq, data);
        self.stats.segments_verified += 1;
        let meta = self.metas[&seq];
        let to: Vec<PeerKey> = (self.peers.iter())
            .filter(|(_, r)| r.hello && !r.holds.contains(&seq))
            .map(|(&k, _)| k)
            .collect();
        for k in to {
            self.send(k, &Message::LiveMeta(meta));
        }
    }

    fn on_http(&mut self, res: Resource, data: Vec<u8>) {
        self.http_inflight.remove(&res);
        self.stats.bytes_from_http += data.len() as u64;
        match res {
            Resource::Init => {
                if crate::manifest::sha256_hex(&data) == self.manifest.init.sha256 {
                    self.init_data = Some(data.into());
                } else {
                    self.stats.verify_failures += 1;
                    self.http_retry_at
                        .insert(res, self.now + self.cfg.http_retry_ms);
                }
            }
            Resource::Segment(s) => {
                let seq = s.get();
                let Some(meta) = self.metas.get(&seq).copied() else {
                    return;
                };
                let hash: [u8; 32] = Sha256::digest(&data).into();
                if data.len() != meta.size as usize || hash != meta.sha256 {
                    self.stats.verify_failures += 1;
                    self.http_retry_at
                        .insert(res, self.now + self.cfg.http_retry_ms);
                    return;
                }
                if !self.store.contains_key(&seq) {
                    self.drop_incoming(seq);
                    self.accept(seq, data.into());
                }
            }
        }
    }

    fn drop_incoming(&mut self, seq: u32) {
        if let Some(inc) = self.incoming.remove(&seq) {
            if let Some(r) = self.peers.get_mut(&inc.from) {
                if !inc.pushed {
                    r.wants = r.wants.saturating_sub(1);
                }
            }
        }
    }

    fn expire_incoming(&mut self) {
        let cutoff = self.now.saturating_sub(self.cfg.want_timeout_ms);
        let late: Vec<u32> = (self.incoming.iter())
            .filter(|(_, i)| i.since < cutoff)
            .map(|(&s, _)| s)
            .collect();
        let allowance = self.cfg.max_failed_wants;
        for seq in late {
            // Dropping a peer below forgets its other wants: gone already.
            let Some(inc) = self.incoming.get(&seq) else {
                continue;
            };
            let (from, pushed) = (inc.from, inc.pushed);
            self.drop_incoming(seq);
            // Ask someone else next time.
            let Some(r) = self.peers.get_mut(&from) else {
                continue;
            };
            r.holds.remove(&seq);
            if pushed || r.is_seed {
                continue;
            }
            r.failed += 1;
            if r.failed > r.delivered + allowance {
                let reason = format!(
                    "left {} wants unanswered against {} segments delivered: it claims segments it does not send",
                    r.failed, r.delivered
                );
                self.drop_peer(from, reason);
            }
        }
    }

    fn http_fetch(&mut self, res: Resource) {
        if self.http_inflight.contains(&res)
            || self.http_retry_at.get(&res).is_some_and(|&t| t > self.now)
        {
            return;
        }
        self.http_inflight.insert(res);
        self.http_retry_at.remove(&res);
        self.out.push_back(Output::HttpFetch { res });
    }

    fn wall_now(&self) -> Option<u64> {
        self.wall
            .map(|(at, unix)| unix + self.now.saturating_sub(at))
    }

    /// The latency held: the configured target, but at least a segment's
    /// duration plus [`MIN_LATENCY_MARGIN_MS`] (a segment exists only once
    /// it has been captured whole).
    fn target_latency(&self) -> u64 {
        (self.cfg.target_latency_ms).max(self.manifest.segment_ms as u64 + MIN_LATENCY_MARGIN_MS)
    }

    /// Where playback is, or will start.
    fn playhead(&self) -> u64 {
        if self.seeked {
            self.position_ms
        } else {
            self.start_pos
        }
    }

    /// Picks where to join: the media time captured `target_latency_ms`
    /// before now (or the newest segment's start if the clock is unknown).
    fn choose_start(&mut self) {
        let Some(newest) = self.newest().copied() else {
            return;
        };
        let wall = (self.wall_now()).unwrap_or(newest.capture_ms + newest.duration_ms as u64);
        let target = wall.saturating_sub(self.target_latency());
        let chosen = (self.metas.values().rev())
            .find(|m| m.capture_ms <= target)
            .or(self.metas.first().map(|(_, m)| m))
            .copied()
            .expect("metas is not empty");
        let into = target
            .saturating_sub(chosen.capture_ms)
            .min(chosen.duration_ms as u64 - 1);
        self.next_append = Some(chosen.seq);
        self.start_pos = chosen.start_ms + into;
        self.seeked = false;
        self.starved_since = None;
    }

    fn restart_playback(&mut self) {
        self.next_append = None;
        self.choose_start();
    }

    /// Asks for `live.json` again when no new description came for longer
    /// than a segment lasts (no peer told us: alone, or the swarm is slow).
    fn refresh_if_quiet(&mut self) {
        let quiet = self.manifest.segment_ms as u64 + REFRESH_SLACK_MS;
        let since = self.newest_at.max(self.started_at.unwrap_or(0));
        let again = self
            .refreshed_at
            .is_none_or(|t| self.now >= t + REFRESH_EVERY_MS);
        if !self.refreshing && again && self.now >= since + quiet {
            self.refreshing = true;
            self.refreshed_at = Some(self.now);
            self.out.push_back(Output::RefreshLiveManifest);
        }
    }

    fn schedule(&mut self) {
        self.wake_pos = u64::MAX;
        self.wake_at = Millis::MAX;
        self.refresh_if_quiet();
        if self.init_data.is_none() {
            self.http_fetch(Resource::Init);
        }
        // Until the first append the start follows the clock and the newest
        // descriptions (once the manifest's own have been checked).
        let origin_checks = (self.checks.values())
            .any(|c| matches!(c, CheckOf::Meta { announcers, .. } if announcers.is_empty()));
        if !self.seeked && !origin_checks {
            self.choose_start();
        }
        let (Some(first), Some(newest)) = (self.next_append, self.newest().map(|m| m.seq)) else {
            return;
        };
        let pos = self.playhead();
        let started = self.stats.segments_appended > 0;
        let waited = self.now >= self.started_at.unwrap_or(self.now) + self.cfg.startup_wait_ms;
        for seq in first..=newest.min(first.saturating_add(MAX_SCAN)) {
            let res = Resource::Segment(SegmentId(seq));
            if self.store.contains_key(&seq)
                || self.incoming.contains_key(&seq)
                || self.http_inflight.contains(&res)
            {
                continue;
            }
            let Some(meta) = self.metas.get(&seq).copied() else {
                continue;
            };
            let due = meta.start_ms.saturating_sub(pos);
            if let Some(k) = self.holder(seq, false) {
                self.want(k, meta);
                continue;
            }
            // The first segment at startup waits (bounded) for a viewer to
            // hold it; the others go by how soon they are due.
            let startup_seg = !started && seq == first;
            let startup_over = waited || self.joined_viewers == Some(0);
            let urgent = if startup_seg {
                startup_over
            } else {
                due < self.cfg.urgent_ms
            };
            if startup_seg && !startup_over {
                let until = self.started_at.unwrap_or(self.now) + self.cfg.startup_wait_ms;
                self.wake_at = self.wake_at.min(until);
            } else if !urgent {
                let from = meta.start_ms - self.cfg.urgent_ms + 1;
                self.wake_pos = self.wake_pos.min(from);
            } else if !startup_seg && due >= self.cfg.critical_ms {
                let from = meta.start_ms.saturating_sub(self.cfg.critical_ms) + 1;
                self.wake_pos = self.wake_pos.min(from);
            }
            if urgent {
                if let Some(k) = self.holder(seq, true) {
                    self.want(k, meta);
                    continue;
                }
            }
            let critical = if startup_seg {
                startup_over
            } else {
                due < self.cfg.critical_ms
            };
            if critical {
                self.http_fetch(res);
            }
        }
    }

    /// The least-loaded peer (viewer or seed) holding `seq` with room for a want.
    fn holder(&self, seq: u32, seed: bool) -> Option<PeerKey> {
        let max = self.cfg.max_wants_per_peer;
        (self.peers.iter())
            .filter(|(_, r)| {
                r.is_seed == seed && r.hello && r.wants < max && r.holds.contains(&seq)
            })
            .min_by_key(|(_, r)| (r.wants, r.buffered))
            .map(|(&k, _)| k)
    }

    fn want(&mut self, peer: PeerKey, meta: LiveMeta) {
        if self.incoming.len() >= self.cfg.max_incoming {
            return;
        }
        self.incoming.insert(
            meta.seq,
            Incoming {
                from: peer,
                meta,
                buf: Vec::new(),
                next_piece: 0,
                since: self.now,
                pushed: false,
            },
        );
        if let Some(r) = self.peers.get_mut(&peer) {
            r.wants += 1;
        }
        self.send(peer, &Message::LiveWant { seq: meta.seq });
    }

    fn flush_appends(&mut self) {
        if !self.init_appended {
            let Some(init) = self.init_data.clone().filter(|_| self.init_sig_ok) else {
                return;
            };
            self.out.push_back(Output::AppendInit { data: init });
            self.init_appended = true;
        }
        while let Some(n) = self.next_append {
            let Some(data) = self.store.get(&n).cloned() else {
                break;
            };
            let meta = self.metas[&n];
            self.out.push_back(Output::Append {
                seg: SegmentId(n),
                data,
            });
            self.in_media.insert(n);
            self.stats.segments_appended += 1;
            self.appended_end_ms = meta.end_ms();
            self.next_append = Some(n + 1);
            self.starved_since = None;
            if !self.seeked {
                self.seeked = true;
                self.position_ms = self.start_pos;
                self.meter.on_seek(self.now);
                self.out.push_back(Output::SeekTo {
                    position_ms: self.start_pos,
                });
            }
        }
    }

    /// Live latency, catch-up rate, and jumps over gaps or back to the edge.
    fn steer(&mut self) {
        if !self.seeked {
            return;
        }
        let pos = self.position_ms;
        let at = (self.in_media.iter())
            .filter_map(|s| self.metas.get(s))
            .find(|m| m.start_ms <= pos && pos < m.end_ms());
        let latency = match (at, self.wall_now()) {
            (Some(m), Some(wall)) => Some(wall.saturating_sub(m.capture_ms + (pos - m.start_ms))),
            _ => None,
        };
        self.stats.latency_ms = latency.or(self.stats.latency_ms);
        let target = self.target_latency();
        if let Some(lat) = latency {
            if lat > target + self.cfg.jump_above_ms {
                return self.restart_playback();
            }
            let rate = if lat > target + self.cfg.catchup_above_ms {
                self.cfg.catchup_permille
            } else if lat <= target + 100 {
                1000
            } else {
                self.rate
            };
            if rate != self.rate {
                self.rate = rate;
                self.out.push_back(Output::PlaybackRate { permille: rate });
            }
        }
        // Starved: the playhead reached the end of what was appended.
        if pos + 100 < self.appended_end_ms {
            self.starved_since = None;
            return;
        }
        let since = *self.starved_since.get_or_insert(self.now);
        if self.now < since + self.cfg.gap_wait_ms {
            return;
        }
        let next = self.next_append.unwrap_or(0);
        if let Some((&later, _)) = self.store.iter().find(|(&s, _)| s > next) {
            let start = self.metas[&later].start_ms;
            self.next_append = Some(later);
            self.starved_since = None;
            self.position_ms = start;
            self.meter.on_seek(self.now);
            self.out.push_back(Output::SeekTo { position_ms: start });
            self.flush_appends();
        }
    }

    fn keep_windows(&mut self) {
        let reference = if self.seeding {
            self.newest().map_or(0, LiveMeta::end_ms)
        } else {
            self.playhead()
        };
        let lo = reference.saturating_sub(self.cfg.behind_ms);
        let keep_from = self.next_append.unwrap_or(u32::MAX);
        // Nothing old (the common case): skip the scans below.
        let any_old = (self.metas.iter()).any(|(&s, m)| m.end_ms() < lo && s < keep_from);
        if !any_old
            && self.store.len() <= self.cfg.max_segments
            && self.metas.len() <= self.cfg.max_segments
        {
            return self.trim_holds_and_media();
        }
        let metas = &self.metas;
        let old = |s: &u32| metas.get(s).is_some_and(|m| m.end_ms() < lo) && *s < keep_from;
        let gone: Vec<u32> = self.store.iter().map(|(&s, _)| s).filter(old).collect();
        for s in gone {
            self.store.remove(&s);
        }
        while self.store.len() > self.cfg.max_segments {
            crate::engine::maps::pop_first(&mut self.store);
        }
        let stale: Vec<u32> = (self.metas.iter())
            .filter(|(s, m)| m.end_ms() < lo && **s < keep_from && !self.store.contains_key(s))
            .map(|(&s, _)| s)
            .collect();
        for s in stale {
            self.metas.remove(&s);
        }
        while self.metas.len() > self.cfg.max_segments {
            crate::engine::maps::pop_first(&mut self.metas);
        }
        self.trim_holds_and_media();
    }

    /// Each peer's announced holdings within the believed descriptions, and
    /// the media buffer.
    fn trim_holds_and_media(&mut self) {
        let oldest = self.metas.first().map_or(0, |(&s, _)| s);
        let max = self.cfg.max_segments;
        for (_, r) in self.peers.iter_mut() {
            while r.holds.len() > max || r.holds.iter().next().is_some_and(|&s| s < oldest) {
                let first = *r.holds.iter().next().expect("not empty");
                r.holds.remove(&first);
            }
        }
        self.trim_media();
    }

    fn trim_media(&mut self) {
        if !self.seeked {
            return;
        }
        let lo = self.position_ms.saturating_sub(self.cfg.media_behind_ms);
        let metas = &self.metas;
        let is_old = |s: &u32| metas.get(s).is_none_or(|m| m.end_ms() <= lo);
        if !self.in_media.iter().any(is_old) {
            return;
        }
        let old: Vec<u32> = (self.in_media.iter())
            .copied()
            .filter(|s| self.metas.get(s).is_none_or(|m| m.end_ms() <= lo))
            .collect();
        if old.is_empty() || !self.seeked {
            return;
        }
        for s in &old {
            self.in_media.remove(s);
        }
        // Everything before `lo` goes in one removal.
        let start = self.metas.first().map_or(0, |(_, m)| m.start_ms).min(lo);
        self.out.push_back(Output::RemoveMedia {
            start_ms: start.saturating_sub(self.cfg.behind_ms),
            end_ms: lo,
        });
    }
}

impl Incoming {
    fn piece_count(&self, e: &LiveEngine) -> u32 {
        self.meta.piece_count(e.manifest.piece_size)
    }
}
