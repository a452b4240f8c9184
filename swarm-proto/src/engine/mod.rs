//! The peer engine: one per (peer, content). Sans-IO: the driver feeds
//! [`Input`]s with the current time and drains [`Output`]s. The engine makes
//! every protocol decision (what to ask whom, what to serve, whom to drop,
//! what to keep, what to append and remove from media); drivers translate.
//!
//! Contract: after every [`Engine::handle_input`], drain
//! [`Engine::poll_output`] until it returns `None`, and call
//! `handle_input(now, Input::Timeout)` no later than
//! [`Engine::poll_timeout`].
//!
//! Layout: [`edge`] checks a peer's bytes against the manifest once;
//! [`scheduler`] decides what to fetch from whom (its design note is
//! there); [`download`] assembles, verifies and blames; [`upload`] serves
//! requests with back-pressure and the seed's load rules; [`playback`]
//! keeps the segment store and media buffer inside their windows and
//! appends in order; [`remote`] is what we know of one peer; [`meter`]
//! counts startup and stalls.
//!
//! Bounds (each in [`Config`]): connected peers, requests in flight per
//! peer, reject back-offs per peer, parked disk reads per peer, the ban
//! list, failed segments kept for blame, the store's bytes and window, the
//! media window.

mod config;
mod download;
mod edge;
mod io;
pub(crate) mod maps;
pub(crate) mod meter;
mod pieces;
mod playback;
mod remote;
mod scheduler;
mod store;
mod upload;

pub use config::Config;
pub use io::{Input, MediaEvent, Output, Resource, Stats, Tables};

use crate::bitfield::Bitfield;
use crate::ids::{PieceIndex, SegmentId};
use crate::manifest::{Manifest, Timeline};
use crate::wire::{self, Message};
use crate::Millis;
use edge::PeerMsg;
use maps::{BanList, Map, Set};
use pieces::{Partial, Suspect};
use remote::Remote;
use std::collections::VecDeque;
use std::sync::Arc;
use store::Store;

/// Driver-assigned handle of one remote peer connection (data channel).
pub type PeerKey = u64;

pub struct Engine {
    manifest: Arc<Manifest>,
    timeline: Timeline,
    cfg: Config,
    seeding: bool,
    /// What we hold (viewer) or can read from disk (seed).
    have: Bitfield,
    /// Whether `have` changed since peers were last told.
    have_shrunk: bool,
    store: Store,
    partial: Map<SegmentId, Partial>,
    suspects: Map<SegmentId, Suspect>,
    /// Segments to take from the origin only (a peer copy failed).
    origin_only: Set<SegmentId>,
    peers: Map<PeerKey, Remote>,
    banned: BanList,
    http_inflight: Set<Resource>,
    http_retry_at: Map<Resource, Millis>,
    /// Seed mode: requests waiting for a disk read.
    pending_loads: Map<SegmentId, Vec<(PeerKey, PieceIndex)>>,
    /// Seed mode: the viewer a segment was last sent to, and when (at most
    /// `upload::MAX_SERVING`).
    sending: Map<SegmentId, (PeerKey, Millis)>,
    init: Option<Arc<[u8]>>,
    init_appended: bool,
    /// Segments appended to the media buffer and not removed since.
    in_media: Set<SegmentId>,
    out: VecDeque<Output>,
    position_ms: u64,
    next_append: u32,
    now: Millis,
    started_at: Option<Millis>,
    /// Where startup is counted from, when the driver knows an earlier
    /// moment than the first input (the page's call to attach).
    startup_origin: Option<Millis>,
    /// When the signal server last answered a join, and how many viewers
    /// it listed ([`Input::Joined`]).
    joined: Option<(Millis, usize)>,
    meter: meter::Meter,
    stats: Stats,
}

impl Engine {
    /// A viewer engine: starts empty, fetches the init segment and then
    /// media as playback goes.
    pub fn new(manifest: Arc<Manifest>, cfg: Config) -> Engine {
        let n = manifest.segment_count();
        Engine {
            timeline: Timeline::new(&manifest),
            manifest,
            cfg,
            seeding: false,
            have: Bitfield::new(n),
            have_shrunk: false,
            store: Store::default(),
            partial: Map::new(),
            suspects: Map::new(),
            origin_only: Set::new(),
            peers: Map::new(),
            banned: BanList::new(),
            http_inflight: Set::new(),
            http_retry_at: Map::new(),
            pending_loads: Map::new(),
            sending: Map::new(),
            init: None,
            init_appended: false,
            in_media: Set::new(),
            out: Default::default(),
            position_ms: 0,
            next_append: 0,
            now: 0,
            started_at: None,
            startup_origin: None,
            joined: None,
            meter: meter::Meter::default(),
            stats: Stats::default(),
        }
    }

    /// A seed engine: holds every segment on disk, reads them through
    /// [`Output::Load`] into a cache of `store_max_bytes`, verifies each
    /// read, serves; never fetches, never appends.
    pub fn new_seed(manifest: Arc<Manifest>, cfg: Config) -> Engine {
        let mut e = Engine::new(manifest, cfg);
        e.seeding = true;
        e.have = Bitfield::full(e.manifest.segment_count());
        e
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    pub fn config(&self) -> &Config {
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

    pub fn tables(&self) -> Tables {
        Tables {
            peers: self.peers.len(),
            partial_segments: self.partial.len(),
            stored_segments: self.store.len(),
            stored_bytes: self.store.bytes(),
            rejects: self.peers.values().map(|r| r.rejected.len()).sum(),
            banned: self.banned.len(),
            pending_loads: self.pending_loads.values().map(Vec::len).sum(),
            suspects: self.suspects.len(),
        }
    }

    /// Whether this segment is verified and held (a seed: on disk).
    pub fn has_segment(&self, seg: SegmentId) -> bool {
        self.have.get(seg.get())
    }

    /// Whether a peer id was dropped for misbehaving: do not connect to it or
    /// accept its offers.
    pub fn is_banned(&self, remote_id: &str) -> bool {
        self.banned.contains(remote_id)
    }

    /// Peer ids dropped for misbehaving, most recent last (at most
    /// `max_banned`).
    pub fn banned_ids(&self) -> impl DoubleEndedIterator<Item = &str> + '_ {
        self.banned.iter()
    }

    /// Free peer slots (drivers stop opening connections at 0).
    pub fn peer_slots_free(&self) -> usize {
        self.cfg.max_peers.saturating_sub(self.peers.len())
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When the driver must next call `handle_input(now, Input::Timeout)`.
    pub fn poll_timeout(&self) -> Option<Millis> {
        let idle = self
            .peers
            .values()
            .map(|r| r.last_heard + self.cfg.idle_timeout_ms)
            .min();
        if self.seeding {
            return idle;
        }
        let req = self
            .partial
            .values()
            .filter_map(Partial::earliest_request)
            .map(|t| t + self.cfg.piece_timeout_ms)
            .min();
        let retry = self.http_retry_at.values().copied().min();
        // The playhead moves on its own; re-plan a few times a second.
        let tick = self.now + 250;
        [idle, req, retry, Some(tick)].into_iter().flatten().min()
    }

    /// Counts startup from `at` (on the engine's clock) instead of from the
    /// first input: a driver whose clock starts when the page asked for
    /// playback passes 0, so that loading the player counts too.
    pub fn count_startup_from(&mut self, at: Millis) {
        self.startup_origin = Some(at);
    }

    pub fn handle_input(&mut self, now: Millis, input: Input<'_>) {
        self.now = self.now.max(now);
        self.started_at.get_or_insert(now);
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
                    r.buffered = bytes;
                }
                // Only serving a request reads it (`upload`): no pass of its
                // own (drivers report it after every message sent); the next
                // input runs the passes.
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
            Input::Loaded { seg, data } => self.on_loaded(seg, data),
            Input::LoadFailed { seg } => self.on_load_failed(seg),
            Input::Playhead { position_ms } => self.position_ms = position_ms,
            Input::Seek { position_ms } => {
                self.position_ms = position_ms;
                self.next_append = self.timeline.segment_at(position_ms).get();
                self.meter.on_seek(self.now);
            }
            Input::Media(ev) => {
                let origin = self.startup_origin.or(self.started_at);
                self.meter
                    .on_media(ev, self.now, origin.unwrap_or(self.now))
            }
            Input::Joined { viewers } => self.joined = Some((self.now, viewers)),
            // Live-channel inputs: nothing to do on demand.
            Input::SignatureChecked { .. }
            | Input::Clock { .. }
            | Input::LiveRecent { .. }
            | Input::Timeout => {}
        }
        self.close_idle_peers();
        if !self.seeding {
            self.expire_requests();
            self.expire_fetching();
            self.schedule();
            self.flush_appends();
            self.keep_windows();
        }
    }

    fn send(&mut self, peer: PeerKey, msg: &Message<'_>) {
        let data = wire::encode(msg);
        if let Some(r) = self.peers.get_mut(&peer) {
            r.buffered += data.len() as u64;
        }
        self.out.push_back(Output::Send { peer, data });
    }

    fn on_connected(&mut self, peer: PeerKey, remote_id: &str, is_seed: bool) {
        if self.peers.contains_key(&peer) {
            return;
        }
        if self.is_banned(remote_id) {
            return self.out.push_back(Output::ClosePeer {
                peer,
                reason: format!("peer {remote_id} is banned"),
            });
        }
        if self.peers.len() >= self.cfg.max_peers {
            let reason = format!("peer limit of {} reached", self.cfg.max_peers);
            return self.out.push_back(Output::ClosePeer { peer, reason });
        }
        let n = self.manifest.segment_count();
        self.peers
            .insert(peer, Remote::new(remote_id, is_seed, n, self.now));
        let id = self.manifest.content_id().to_owned();
        self.send(
            peer,
            &Message::Hello {
                content_id: &id,
                segments: n,
            },
        );
        let bf = self.have.clone();
        self.send(peer, &Message::Bitfield(bf));
        // What we are fetching from the origin right now, so that it need
        // not fetch the same.
        if !is_seed {
            let fetching: Vec<u32> = (self.http_inflight.iter())
                .filter_map(|res| match res {
                    Resource::Segment(s) => Some(s.get()),
                    Resource::Init => None,
                })
                .chain(
                    self.partial
                        .iter()
                        .filter(|(_, p)| p.announced)
                        .map(|(s, _)| s.get()),
                )
                .collect();
            for seg in fetching {
                self.send(peer, &Message::Fetching { seg });
            }
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
        self.out.push_back(Output::DropPeer {
            peer,
            reason: reason.clone(),
        });
        // Other connections of the same id go too.
        let twins: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, r)| r.id == id)
            .map(|(&k, _)| k)
            .collect();
        for k in twins {
            self.forget_peer(k);
            self.out.push_back(Output::DropPeer {
                peer: k,
                reason: format!("another connection of {id} misbehaved: {reason}"),
            });
        }
    }

    /// Closes a peer without blame.
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
        for (_, p) in self.partial.iter_mut() {
            p.forget_peer(peer);
        }
        for (_, v) in self.pending_loads.iter_mut() {
            v.retain(|&(k, _)| k != peer);
        }
    }

    fn close_idle_peers(&mut self) {
        let cutoff = self.now.saturating_sub(self.cfg.idle_timeout_ms);
        let idle: Vec<PeerKey> = self
            .peers
            .iter()
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
        let msg = match edge::check(&self.manifest, data) {
            Ok(m) => m,
            Err(reason) => return self.drop_peer(peer, reason),
        };
        let r = self.peers.get_mut(&peer).expect("checked above");
        match msg {
            PeerMsg::Hello => r.hello = true,
            PeerMsg::Bitfield(bf) => r.note_bitfield(bf),
            PeerMsg::Have(s) => r.note_has(s),
            PeerMsg::Fetching(s) => r.note_fetching(s, now),
            PeerMsg::Request(s, p) => self.on_request(peer, s, p),
            PeerMsg::Piece(s, p, data) => {
                if self.count_answer(peer) {
                    self.on_piece(peer, s, p, data);
                }
            }
            PeerMsg::Reject(s, p) => {
                if self.count_answer(peer) {
                    self.on_reject(peer, s, p);
                }
            }
            // Pieces are sent as soon as they are requested: nothing to cancel.
            PeerMsg::Cancel => {}
            PeerMsg::Bye => self.close_peer(peer, "said bye".into()),
        }
    }

    /// Counts a piece or reject from `peer`; drops it (and returns false)
    /// when it answered more requests than it was sent.
    fn count_answer(&mut self, peer: PeerKey) -> bool {
        let r = self.peers.get_mut(&peer).expect("caller checked");
        r.answered_total += 1;
        if r.answered_total > r.asked_total {
            let msg = format!(
                "sent {} pieces or rejects for {} requests: unsolicited data",
                r.answered_total, r.asked_total
            );
            self.stats.unsolicited_pieces += 1;
            self.drop_peer(peer, msg);
            return false;
        }
        true
    }

    /// Ends one of our requests at `peer` (the only place the in-flight
    /// count goes down).
    fn release(&mut self, peer: PeerKey) {
        if let Some(r) = self.peers.get_mut(&peer) {
            debug_assert!(
                r.inflight > 0,
                "in-flight count of peer {peer} went negative"
            );
            r.inflight = r.inflight.saturating_sub(1);
        }
    }
}
