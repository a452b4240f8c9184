//! What the engine knows about one connected peer, and how far it trusts it.
//!
//! Claims (bitfields, haves) are trusted only as far as delivered, verified
//! bytes bear them out: every request a peer leaves unserved (rejected or
//! timed out) counts against it, every piece it delivers counts for it, and
//! a peer whose unserved requests outrun its deliveries by
//! `Config::max_unserved_claims` is dropped.

use super::maps::Map;
use crate::bitfield::Bitfield;
use crate::ids::SegmentId;
use crate::Millis;

/// Most reject back-off entries kept per peer (oldest dropped first).
pub(super) const MAX_REJECTS_PER_PEER: usize = 64;
/// Seed mode: segments remembered per peer as "refused once because the
/// swarm has copies" (oldest forgotten first).
pub(super) const MAX_REFUSED_PER_PEER: usize = 256;
/// `Fetching` hints remembered per peer (oldest forgotten first, unscored).
pub(super) const MAX_FETCHING_PER_PEER: usize = 16;

#[derive(Debug)]
pub(super) struct Remote {
    pub id: String,
    pub is_seed: bool,
    /// Its connection goes through a TURN relay.
    pub relayed: bool,
    pub hello: bool,
    /// Its bitfield arrived: we know what it holds.
    pub informed: bool,
    pub have: Bitfield,
    /// Segments it said it is fetching from the origin, and when it said so
    /// (bounded, see [`Remote::note_fetching`]).
    pub fetching: Map<SegmentId, Millis>,
    /// Its `Fetching` hints followed by a `Have` in time, and those not.
    pub hints_kept: u64,
    pub hints_broken: u64,
    /// Our requests outstanding at this peer (kept by the piece tracker).
    pub inflight: usize,
    /// Requests we ever sent it, and answers (pieces or rejects) it ever
    /// gave: an honest peer never answers more than it was asked.
    pub asked_total: u64,
    pub answered_total: u64,
    /// Pieces it delivered that we asked for.
    pub delivered: u64,
    /// Requests it left unserved: rejects and timeouts.
    pub unserved: u64,
    /// seg -> time of its last reject of that segment (bounded).
    pub rejected: Map<SegmentId, Millis>,
    /// Bytes queued toward it, as last reported by the driver plus what we
    /// sent since.
    pub buffered: u64,
    /// Seed mode: requests parked until a segment is read from disk.
    pub pending_loads: usize,
    /// Seed mode: when each segment was first refused because the swarm
    /// holds copies; a request for it after the back-off is served (claims
    /// alone cannot shut the seed).
    pub refused_once: Map<SegmentId, Millis>,
    pub last_heard: Millis,
}

impl Remote {
    pub fn new(id: &str, is_seed: bool, segments: u32, now: Millis) -> Remote {
        Remote {
            id: id.to_owned(),
            is_seed,
            relayed: false,
            hello: false,
            informed: false,
            have: Bitfield::new(segments),
            fetching: Map::new(),
            hints_kept: 0,
            hints_broken: 0,
            inflight: 0,
            asked_total: 0,
            answered_total: 0,
            delivered: 0,
            unserved: 0,
            rejected: Map::new(),
            buffered: 0,
            pending_loads: 0,
            refused_once: Map::new(),
            last_heard: now,
        }
    }

    pub fn backed_off(&self, seg: SegmentId, now: Millis, backoff_ms: u64) -> bool {
        self.rejected
            .get(&seg)
            .is_some_and(|&t| t + backoff_ms > now)
    }

    /// Records a reject, keeping at most [`MAX_REJECTS_PER_PEER`] entries.
    pub fn note_reject(&mut self, seg: SegmentId, now: Millis, backoff_ms: u64) {
        self.rejected.retain(|_, &t| t + backoff_ms > now);
        if self.rejected.len() >= MAX_REJECTS_PER_PEER {
            if let Some((&oldest, _)) = self.rejected.iter().min_by_key(|(_, &t)| t) {
                self.rejected.remove(&oldest);
            }
        }
        self.rejected.insert(seg, now);
    }

    /// Whether its claims are borne out well enough to keep it.
    pub fn claims_outrun_deliveries(&self, allowance: u32) -> bool {
        self.unserved > self.delivered + allowance as u64
    }

    /// Seed mode: whether to refuse `seg` to this peer because the swarm
    /// holds copies. The first refusal opens a window of `window_ms` (the
    /// peer's back-off; requests for the segment's other pieces in it are
    /// refused too); a request after it means the claimers did not deliver,
    /// and is served.
    pub fn refuse_once(&mut self, seg: SegmentId, now: Millis, window_ms: u64) -> bool {
        if let Some(&first) = self.refused_once.get(&seg) {
            return now < first + window_ms;
        }
        if self.refused_once.len() >= MAX_REFUSED_PER_PEER {
            super::maps::pop_first(&mut self.refused_once);
        }
        self.refused_once.insert(seg, now);
        true
    }

    /// Records its hint that it is fetching `seg` from the origin. A repeated
    /// hint does not extend the first one; at most
    /// [`MAX_FETCHING_PER_PEER`] are kept.
    pub fn note_fetching(&mut self, seg: SegmentId, now: Millis) {
        if self.is_seed || self.have.get(seg.get()) || self.fetching.contains_key(&seg) {
            return;
        }
        if self.fetching.len() >= MAX_FETCHING_PER_PEER {
            if let Some((&oldest, _)) = self.fetching.iter().min_by_key(|(_, &t)| t) {
                self.fetching.remove(&oldest);
            }
        }
        self.fetching.insert(seg, now);
    }

    /// It now holds `seg`: a hint about it was kept.
    pub fn note_has(&mut self, seg: SegmentId) {
        self.have.set(seg.get());
        if self.fetching.remove(&seg).is_some() {
            self.hints_kept += 1;
        }
    }

    /// A new bitfield: hints about what it now holds were kept.
    pub fn note_bitfield(&mut self, bf: Bitfield) {
        self.have = bf;
        self.informed = true;
        let have = &self.have;
        let before = self.fetching.len();
        self.fetching.retain(|s, _| !have.get(s.get()));
        self.hints_kept += (before - self.fetching.len()) as u64;
    }

    /// Forgets hints older than `grace_ms`, each counted as broken.
    pub fn expire_fetching(&mut self, now: Millis, grace_ms: u64) {
        let before = self.fetching.len();
        self.fetching.retain(|_, &t| t + grace_ms > now);
        self.hints_broken += (before - self.fetching.len()) as u64;
    }

    /// Whether it said, within `grace_ms` and with hints that were borne
    /// out well enough, that it is fetching `seg` from the origin.
    pub fn is_fetching(&self, seg: SegmentId, now: Millis, grace_ms: u64, allowance: u32) -> bool {
        self.hints_broken <= self.hints_kept + allowance as u64
            && self.fetching.get(&seg).is_some_and(|&t| t + grace_ms > now)
    }

    /// Whether it may be asked for `seg` now.
    pub fn can_serve(&self, seg: SegmentId, now: Millis, backoff_ms: u64) -> bool {
        self.hello && self.have.get(seg.get()) && !self.backed_off(seg, now, backoff_ms)
    }
}
