//! The peer engine: one per (peer, content). Sans-IO: the driver feeds
//! [`Input`]s with the current time and drains [`Output`]s.
//!
//! Contract: after every [`Engine::handle_input`], drain
//! [`Engine::poll_output`] until it returns `None`, and call
//! `handle_input(now, Input::Timeout)` no later than
//! [`Engine::poll_timeout`].
//!
//! # Scheduler design note
//!
//! Each segment has a *deadline*: its start time minus the playhead. Three
//! sources, cheapest first:
//!
//! 1. **Viewers** (peers not marked as seeds) serve anything they hold, for
//!    every segment within `lookahead_ms` of the playhead. Missing pieces
//!    of the earliest-deadline segment go first, each to the least-loaded
//!    viewer that holds the segment, at most `max_inflight_per_peer`
//!    requests per viewer. A segment therefore comes from several viewers
//!    at once, piece by piece.
//! 2. **Seed peers** (the native seed over WebRTC) are asked only for
//!    segments due within `urgent_ms` that no viewer holds: the swarm's
//!    first copy. A seed may refuse ([`wire::Message::Reject`]) when enough
//!    of its viewers already hold the segment.
//! 3. **HTTP** (the seed's origin) fetches a whole segment when it is due
//!    within `critical_ms` and not yet complete, when nothing else can
//!    serve it, and at startup. Pending peer requests for it are cancelled.
//!
//! Invariants: a piece has at most one outstanding request, except in the
//! *endgame* (every missing piece of an urgent segment requested, one of
//! them outstanding for `endgame_after_ms`, and another peer holding the
//! segment has room), where that piece may have two; a segment is
//! fetched over HTTP at most once at a time; a segment is appended to
//! media only after its SHA-256 matched the manifest, and in order.
//!
//! A segment that fails verification is discarded. If one peer supplied
//! all of it, that peer is dropped ([`Output::DropPeer`]); otherwise every
//! contributor gets a strike, and a second strike drops it.

use crate::bitfield::Bitfield;
use crate::ids::SegmentId;
use crate::manifest::{verify_segment, Manifest, Timeline, VerifyError};
use crate::wire::{self, Message};
use crate::Millis;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Driver-assigned handle of one remote peer connection (data channel).
pub type PeerKey = u64;

#[derive(Clone, Debug)]
pub struct Config {
    /// Segments due within this go to a seed peer when no viewer has them.
    pub urgent_ms: u64,
    /// Segments due within this come over HTTP if still incomplete.
    pub critical_ms: u64,
    /// How far ahead of the playhead to fetch from viewers.
    pub lookahead_ms: u64,
    /// Outstanding piece requests per remote peer.
    pub max_inflight_per_peer: usize,
    /// A request unanswered this long is given up and re-assigned.
    pub piece_timeout_ms: u64,
    /// In the endgame, a piece outstanding this long may be asked of a
    /// second peer.
    pub endgame_after_ms: u64,
    /// After a reject, do not ask that peer for that segment for this long.
    pub reject_backoff_ms: u64,
    /// Wait before retrying a failed HTTP fetch.
    pub http_retry_ms: u64,
    /// Seed mode: refuse a segment when this many connected viewers hold it.
    pub seed_enough_copies: usize,
    /// For this long after start, segments that are not yet critical are not
    /// fetched over HTTP, so that peers can connect first.
    pub peer_wait_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            urgent_ms: 4000,
            critical_ms: 1500,
            lookahead_ms: 20_000,
            max_inflight_per_peer: 16,
            piece_timeout_ms: 2000,
            endgame_after_ms: 400,
            reject_backoff_ms: 1000,
            http_retry_ms: 500,
            seed_enough_copies: 2,
            peer_wait_ms: 1000,
        }
    }
}

pub enum Input<'a> {
    /// A data channel to a peer opened.
    PeerConnected { peer: PeerKey, is_seed: bool },
    /// One binary message from a peer.
    PeerData { peer: PeerKey, data: &'a [u8] },
    /// The data channel closed (or the driver dropped it).
    PeerClosed { peer: PeerKey },
    /// An HTTP fetch asked by [`Output::HttpFetch`] completed.
    HttpSegment { seg: SegmentId, data: Vec<u8> },
    HttpFailed { seg: SegmentId },
    /// Where playback is (sent a few times a second, and after a seek).
    Playhead { position_ms: u64 },
    /// Playback jumped: media before `position_ms` need not be re-fetched,
    /// and appends restart from the segment at `position_ms`.
    Seek { position_ms: u64 },
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send { peer: PeerKey, data: Vec<u8> },
    /// Fetch this segment (its `uri` in the manifest) over HTTP.
    HttpFetch { seg: SegmentId },
    /// A verified segment, in playback order, for the media buffer.
    Append { seg: SegmentId, data: Arc<[u8]> },
    /// Close this peer and do not match with it again.
    DropPeer { peer: PeerKey, reason: String },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes received from other viewers (the P2P part).
    pub bytes_from_peers: u64,
    /// Bytes received from seed peers over WebRTC.
    pub bytes_from_seed: u64,
    pub bytes_from_http: u64,
    pub bytes_uploaded: u64,
    pub segments_verified: u64,
    pub segments_appended: u64,
    pub verify_failures: u64,
    pub peers_dropped: u64,
    pub requests_rejected: u64,
    pub peers: u32,
}

#[derive(Debug)]
struct Remote {
    is_seed: bool,
    have: Bitfield,
    hello: bool,
    inflight: usize,
    strikes: u32,
    /// seg -> time of the last reject for it.
    rejected: BTreeMap<u32, Millis>,
}

#[derive(Debug)]
struct Partial {
    buf: Vec<u8>,
    got: Vec<bool>,
    received: usize,
    /// Who supplied each piece.
    from: Vec<Option<PeerKey>>,
    /// Outstanding requests per piece: (peer, sent at).
    asked: Vec<Vec<(PeerKey, Millis)>>,
}

pub struct Engine {
    manifest: Arc<Manifest>,
    timeline: Timeline,
    cfg: Config,
    seeding: bool,
    have: Bitfield,
    store: BTreeMap<u32, Arc<[u8]>>,
    partial: BTreeMap<u32, Partial>,
    peers: BTreeMap<PeerKey, Remote>,
    http_inflight: BTreeSet<u32>,
    http_retry_at: BTreeMap<u32, Millis>,
    out: std::collections::VecDeque<Output>,
    position_ms: u64,
    next_append: u32,
    now: Millis,
    started_at: Option<Millis>,
    stats: Stats,
}

impl Engine {
    /// A viewer engine: starts empty and fetches as playback goes.
    pub fn new(manifest: Arc<Manifest>, cfg: Config) -> Engine {
        let n = manifest.segment_count();
        Engine {
            timeline: Timeline::new(&manifest),
            manifest,
            cfg,
            seeding: false,
            have: Bitfield::new(n),
            store: BTreeMap::new(),
            partial: BTreeMap::new(),
            peers: BTreeMap::new(),
            http_inflight: BTreeSet::new(),
            http_retry_at: BTreeMap::new(),
            out: Default::default(),
            position_ms: 0,
            next_append: 0,
            now: 0,
            started_at: None,
            stats: Stats::default(),
        }
    }

    /// A seed engine: serves what [`Engine::insert_verified`] gave it, never
    /// fetches, never appends.
    pub fn new_seed(manifest: Arc<Manifest>, cfg: Config) -> Engine {
        let mut e = Engine::new(manifest, cfg);
        e.seeding = true;
        e
    }

    pub fn manifest(&self) -> &Arc<Manifest> {
        &self.manifest
    }

    pub fn stats(&self) -> Stats {
        Stats { peers: self.peers.len() as u32, ..self.stats.clone() }
    }

    pub fn has_segment(&self, seg: SegmentId) -> bool {
        self.have.get(seg.get())
    }

    /// Adds a segment the driver got elsewhere (the seed's disk), after
    /// checking it against the manifest.
    pub fn insert_verified(&mut self, seg: SegmentId, data: Vec<u8>) -> Result<(), VerifyError> {
        verify_segment(self.manifest.entry(seg), &data)?;
        self.accept_segment(seg, data.into());
        Ok(())
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When the driver must next call `handle_input(now, Input::Timeout)`.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.seeding {
            return None;
        }
        let req = self
            .partial
            .values()
            .flat_map(|p| p.asked.iter().flatten())
            .map(|&(_, t)| t + self.cfg.piece_timeout_ms)
            .min();
        let retry = self.http_retry_at.values().copied().min();
        // The playhead moves on its own; re-plan a few times a second.
        let tick = self.now + 250;
        [req, retry, Some(tick)].into_iter().flatten().min()
    }

    pub fn handle_input(&mut self, now: Millis, input: Input<'_>) {
        self.now = self.now.max(now);
        self.started_at.get_or_insert(now);
        match input {
            Input::PeerConnected { peer, is_seed } => self.on_connected(peer, is_seed),
            Input::PeerData { peer, data } => self.on_data(peer, data),
            Input::PeerClosed { peer } => self.forget_peer(peer),
            Input::HttpSegment { seg, data } => self.on_http(seg, data),
            Input::HttpFailed { seg } => {
                self.http_inflight.remove(&seg.get());
                self.http_retry_at.insert(seg.get(), self.now + self.cfg.http_retry_ms);
            }
            Input::Playhead { position_ms } => self.position_ms = position_ms,
            Input::Seek { position_ms } => {
                self.position_ms = position_ms;
                self.next_append = self.timeline.segment_at(position_ms).get();
            }
            Input::Timeout => {}
        }
        self.expire_requests();
        self.schedule();
        self.flush_appends();
    }

    fn send(&mut self, peer: PeerKey, msg: &Message<'_>) {
        self.out.push_back(Output::Send { peer, data: wire::encode(msg) });
    }

    fn on_connected(&mut self, peer: PeerKey, is_seed: bool) {
        let n = self.manifest.segment_count();
        self.peers.insert(
            peer,
            Remote { is_seed, have: Bitfield::new(n), hello: false, inflight: 0, strikes: 0, rejected: BTreeMap::new() },
        );
        let id = self.manifest.content_id.clone();
        self.send(peer, &Message::Hello { content_id: &id, segments: n });
        let bf = self.have.clone();
        self.send(peer, &Message::Bitfield(bf));
    }

    fn drop_peer(&mut self, peer: PeerKey, reason: String) {
        if self.peers.contains_key(&peer) {
            self.forget_peer(peer);
            self.stats.peers_dropped += 1;
            self.out.push_back(Output::DropPeer { peer, reason });
        }
    }

    fn forget_peer(&mut self, peer: PeerKey) {
        self.peers.remove(&peer);
        for p in self.partial.values_mut() {
            for asked in &mut p.asked {
                asked.retain(|&(k, _)| k != peer);
            }
        }
    }

    fn on_data(&mut self, peer: PeerKey, data: &[u8]) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        let msg = match wire::decode(data) {
            Ok(m) => m,
            Err(e) => return self.drop_peer(peer, format!("malformed message: {e}")),
        };
        let n = self.manifest.segment_count();
        match msg {
            Message::Hello { content_id, segments } => {
                if content_id != self.manifest.content_id || segments != n {
                    return self.drop_peer(
                        peer,
                        format!("peer is on content {content_id:?} with {segments} segments, we are on {:?} with {n}", self.manifest.content_id),
                    );
                }
                self.peers.get_mut(&peer).unwrap().hello = true;
            }
            Message::Bitfield(bf) => {
                if bf.len() != n {
                    return self.drop_peer(peer, format!("bitfield of {} bits for {n} segments", bf.len()));
                }
                self.peers.get_mut(&peer).unwrap().have = bf;
            }
            Message::Have { seg } => match self.manifest.segment(seg) {
                Some(s) => self.peers.get_mut(&peer).unwrap().have.set(s.get()),
                None => self.drop_peer(peer, format!("have for segment {seg} of {n}")),
            },
            Message::Request { seg, piece } => self.on_request(peer, seg, piece),
            Message::Piece { seg, piece, data } => self.on_piece(peer, seg, piece, data),
            Message::Reject { seg, piece } => {
                self.stats.requests_rejected += 1;
                let now = self.now;
                if let Some(r) = self.peers.get_mut(&peer) {
                    r.rejected.insert(seg, now);
                }
                self.clear_request(peer, seg, piece);
            }
            // Pieces are sent as soon as they are requested, so there is
            // nothing queued to cancel.
            Message::Cancel { .. } => {}
            Message::Bye => self.forget_peer(peer),
        }
    }

    fn on_request(&mut self, peer: PeerKey, seg: u32, piece: u32) {
        let Some(s) = self.manifest.segment(seg) else {
            return self.drop_peer(peer, format!("request for segment {seg} of {}", self.manifest.segment_count()));
        };
        let Some(p) = self.manifest.piece(s, piece) else {
            return self.drop_peer(peer, format!("request for piece {piece} of {s}"));
        };
        if self.seeding && self.swarm_copies(s, peer) >= self.cfg.seed_enough_copies {
            return self.send(peer, &Message::Reject { seg, piece });
        }
        let Some(data) = self.store.get(&seg).cloned() else {
            return self.send(peer, &Message::Reject { seg, piece });
        };
        let range = self.manifest.piece_range(s, p);
        self.stats.bytes_uploaded += range.len() as u64;
        self.send(peer, &Message::Piece { seg, piece, data: &data[range] });
    }

    /// How many connected viewers other than `asker` hold `seg`.
    fn swarm_copies(&self, seg: SegmentId, asker: PeerKey) -> usize {
        self.peers.iter().filter(|(&k, r)| k != asker && !r.is_seed && r.have.get(seg.get())).count()
    }

    fn clear_request(&mut self, peer: PeerKey, seg: u32, piece: u32) -> bool {
        let Some(p) = self.partial.get_mut(&seg) else { return false };
        let Some(asked) = p.asked.get_mut(piece as usize) else { return false };
        let before = asked.len();
        asked.retain(|&(k, _)| k != peer);
        let was = asked.len() < before;
        if was {
            if let Some(r) = self.peers.get_mut(&peer) {
                r.inflight = r.inflight.saturating_sub(1);
            }
        }
        was
    }

    fn on_piece(&mut self, peer: PeerKey, seg: u32, piece: u32, data: &[u8]) {
        let Some(s) = self.manifest.segment(seg) else {
            return self.drop_peer(peer, format!("piece for segment {seg} of {}", self.manifest.segment_count()));
        };
        let Some(pi) = self.manifest.piece(s, piece) else {
            return self.drop_peer(peer, format!("piece {piece} of {s} does not exist"));
        };
        let range = self.manifest.piece_range(s, pi);
        if data.len() != range.len() {
            return self.drop_peer(peer, format!("piece {piece} of {s} has {} bytes, expected {}", data.len(), range.len()));
        }
        let is_seed = self.peers.get(&peer).is_some_and(|r| r.is_seed);
        if is_seed {
            self.stats.bytes_from_seed += data.len() as u64;
        } else {
            self.stats.bytes_from_peers += data.len() as u64;
        }
        let was_asked = self.clear_request(peer, seg, piece);
        if self.have.get(seg) || !was_asked && !self.partial.contains_key(&seg) {
            return; // late duplicate or unsolicited: counted, ignored
        }
        let p = self.partial.entry(seg).or_insert_with(|| Partial::new(&self.manifest, s));
        if p.got[pi.index()] {
            return;
        }
        p.buf[range].copy_from_slice(data);
        p.got[pi.index()] = true;
        p.from[pi.index()] = Some(peer);
        p.received += 1;
        // Endgame duplicates of this piece are no longer needed.
        let others: Vec<PeerKey> = std::mem::take(&mut p.asked[pi.index()]).into_iter().map(|(k, _)| k).collect();
        let done = p.received == p.got.len();
        for k in others {
            if let Some(r) = self.peers.get_mut(&k) {
                r.inflight = r.inflight.saturating_sub(1);
            }
            self.send(k, &Message::Cancel { seg, piece });
        }
        if done {
            let p = self.partial.remove(&seg).unwrap();
            self.complete_from_peers(s, p);
        }
    }

    fn complete_from_peers(&mut self, seg: SegmentId, p: Partial) {
        match verify_segment(self.manifest.entry(seg), &p.buf) {
            Ok(()) => self.accept_segment(seg, p.buf.into()),
            Err(e) => {
                self.stats.verify_failures += 1;
                let contributors: BTreeSet<PeerKey> = p.from.iter().flatten().copied().collect();
                let single = contributors.len() == 1;
                for k in contributors {
                    let strikes = self.peers.get_mut(&k).map(|r| {
                        r.strikes += 1;
                        r.strikes
                    });
                    if single || strikes >= Some(2) {
                        self.drop_peer(k, format!("sent data for {seg} that failed verification: {e}"));
                    }
                }
            }
        }
    }

    fn on_http(&mut self, seg: SegmentId, data: Vec<u8>) {
        self.http_inflight.remove(&seg.get());
        self.stats.bytes_from_http += data.len() as u64;
        if self.have.get(seg.get()) {
            return;
        }
        match verify_segment(self.manifest.entry(seg), &data) {
            Ok(()) => {
                self.cancel_segment_requests(seg.get());
                self.accept_segment(seg, data.into());
            }
            Err(_) => {
                self.stats.verify_failures += 1;
                self.http_retry_at.insert(seg.get(), self.now + self.cfg.http_retry_ms);
            }
        }
    }

    fn cancel_segment_requests(&mut self, seg: u32) {
        if let Some(p) = self.partial.remove(&seg) {
            for (piece, asked) in p.asked.into_iter().enumerate() {
                for (k, _) in asked {
                    if let Some(r) = self.peers.get_mut(&k) {
                        r.inflight = r.inflight.saturating_sub(1);
                    }
                    self.send(k, &Message::Cancel { seg, piece: piece as u32 });
                }
            }
        }
    }

    fn accept_segment(&mut self, seg: SegmentId, data: Arc<[u8]>) {
        self.partial.remove(&seg.get());
        self.http_retry_at.remove(&seg.get());
        self.store.insert(seg.get(), data);
        self.have.set(seg.get());
        self.stats.segments_verified += 1;
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.send(k, &Message::Have { seg: seg.get() });
        }
    }

    fn flush_appends(&mut self) {
        if self.seeding {
            return;
        }
        while let Some(data) = self.store.get(&self.next_append) {
            let seg = SegmentId(self.next_append);
            self.out.push_back(Output::Append { seg, data: data.clone() });
            self.stats.segments_appended += 1;
            self.next_append += 1;
        }
    }

    fn expire_requests(&mut self) {
        let (now, timeout) = (self.now, self.cfg.piece_timeout_ms);
        let mut expired = Vec::new();
        for p in self.partial.values_mut() {
            for asked in &mut p.asked {
                asked.retain(|&(k, t)| {
                    let keep = t + timeout > now;
                    if !keep {
                        expired.push(k);
                    }
                    keep
                });
            }
        }
        for k in expired {
            if let Some(r) = self.peers.get_mut(&k) {
                r.inflight = r.inflight.saturating_sub(1);
            }
        }
    }

    /// Milliseconds until `seg` plays (0 if it is playing or past).
    fn due_in(&self, seg: SegmentId) -> u64 {
        self.timeline.start_ms(seg).saturating_sub(self.position_ms)
    }

    fn schedule(&mut self) {
        if self.seeding {
            return;
        }
        let first = self.timeline.segment_at(self.position_ms).get();
        // Until peers had a chance to connect, only what is critical goes to HTTP.
        let warm = self.now >= self.started_at.unwrap_or(self.now) + self.cfg.peer_wait_ms;
        let last = self.timeline.segment_at(self.position_ms + self.cfg.lookahead_ms).get();
        for raw in first..=last {
            let seg = SegmentId(raw);
            if self.have.get(raw) || self.http_inflight.contains(&raw) {
                continue;
            }
            let due = self.due_in(seg);
            let viewer_has = self.peers.values().any(|r| !r.is_seed && r.have.get(raw) && !self.backed_off(r, raw));
            let seed_has = self.peers.values().any(|r| r.is_seed && r.hello && r.have.get(raw) && !self.backed_off(r, raw));
            let critical = due < self.cfg.critical_ms;
            let nobody_has = !viewer_has && !seed_has && due < self.cfg.urgent_ms && warm;
            if critical && !self.peers_nearly_done(raw) || nobody_has {
                if self.http_retry_at.get(&raw).is_some_and(|&t| t > self.now) {
                    continue;
                }
                self.cancel_segment_requests(raw);
                self.http_inflight.insert(raw);
                self.http_retry_at.remove(&raw);
                self.out.push_back(Output::HttpFetch { seg });
                continue;
            }
            if viewer_has {
                self.request_pieces(seg, false, due < self.cfg.urgent_ms);
            } else if seed_has && due < self.cfg.urgent_ms {
                self.request_pieces(seg, true, true);
            }
        }
    }

    fn backed_off(&self, r: &Remote, seg: u32) -> bool {
        r.rejected.get(&seg).is_some_and(|&t| t + self.cfg.reject_backoff_ms > self.now)
    }

    /// Whether the peers working on `seg` have most of it (worth waiting for
    /// rather than starting over on HTTP).
    fn peers_nearly_done(&self, seg: u32) -> bool {
        self.partial.get(&seg).is_some_and(|p| {
            let missing_unasked = p.got.iter().zip(&p.asked).filter(|(g, a)| !**g && a.is_empty()).count();
            missing_unasked == 0 && p.received * 2 >= p.got.len()
        })
    }

    /// Requests missing pieces of `seg` from viewers (or seeds) holding it.
    fn request_pieces(&mut self, seg: SegmentId, from_seeds: bool, urgent: bool) {
        let raw = seg.get();
        let max = self.cfg.max_inflight_per_peer;
        let now = self.now;
        let mut candidates: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, r)| r.is_seed == from_seeds && r.hello && r.have.get(raw) && !self.backed_off(r, raw) && r.inflight < max)
            .map(|(&k, _)| k)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let manifest = self.manifest.clone();
        let p = self.partial.entry(raw).or_insert_with(|| Partial::new(&manifest, seg));
        let mut sends = Vec::new();
        for pass in 0..2 {
            // Pass 0: unrequested pieces. Pass 1 (endgame, urgent only): a
            // second request for pieces with one outstanding.
            if pass == 1 && !urgent {
                break;
            }
            let slow_before = now.saturating_sub(self.cfg.endgame_after_ms);
            for piece in 0..p.got.len() {
                if p.got[piece] || p.asked[piece].len() != pass {
                    continue;
                }
                if pass == 1 && p.asked[piece][0].1 > slow_before {
                    continue;
                }
                candidates.retain(|k| self.peers[k].inflight < max);
                let Some(&k) = candidates
                    .iter()
                    .filter(|k| !p.asked[piece].iter().any(|(a, _)| a == *k))
                    .min_by_key(|k| self.peers[k].inflight)
                else {
                    break;
                };
                p.asked[piece].push((k, now));
                self.peers.get_mut(&k).unwrap().inflight += 1;
                sends.push((k, piece as u32));
            }
        }
        for (k, piece) in sends {
            self.send(k, &Message::Request { seg: raw, piece });
        }
    }

}

impl Partial {
    fn new(m: &Manifest, seg: SegmentId) -> Partial {
        let n = m.piece_count(seg) as usize;
        Partial {
            buf: vec![0; m.entry(seg).size as usize],
            got: vec![false; n],
            received: 0,
            from: vec![None; n],
            asked: vec![Vec::new(); n],
        }
    }
}
