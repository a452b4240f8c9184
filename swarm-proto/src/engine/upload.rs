//! The upload path: answering requests.
//!
//! A request is answered at once with the piece or a reject; nothing is
//! queued in the engine except, on a seed, requests waiting for a disk read
//! (bounded per peer). Back-pressure: a peer with more than
//! `max_buffered_bytes` queued toward it gets rejects until its queue
//! drains. A seed refuses a segment once to a viewer when
//! `seed_enough_copies` other viewers claim it, or when it is sending that
//! segment to another viewer right now (that viewer will have it in a
//! moment: viewers that ask at the same time get it from one another, and
//! the segment leaves the seed once); a second request for the same segment
//! is served, so neither claims nor a hostile requester can switch the seed
//! off.

use super::*;
use crate::manifest::verify_segment;

/// Seed mode: segments remembered as being sent to a viewer (the most
/// recent first forgotten when full, after the stale ones).
pub(super) const MAX_SERVING: usize = 64;

impl Engine {
    pub(super) fn on_request(&mut self, peer: PeerKey, seg: SegmentId, piece: PieceIndex) {
        let len = self.manifest.piece_range(seg, piece).len() as u64;
        let max_buffered = self.cfg.max_buffered_bytes;
        let enough = self.cfg.seed_enough_copies;
        let (now, window) = (self.now, self.cfg.reject_backoff_ms);
        let others_have = self.seeding
            && (self.swarm_copies(seg, peer) >= enough || self.sending_elsewhere(seg, peer));
        let r = self.peers.get_mut(&peer).expect("caller checked");
        let refuse =
            (others_have && r.refuse_once(seg, now, window)) || r.buffered + len > max_buffered;
        if refuse || !self.have.get(seg.get()) {
            return self.send(
                peer,
                &Message::Reject {
                    seg: seg.get(),
                    piece: piece.get(),
                },
            );
        }
        if let Some(data) = self.store.get(seg) {
            if self.seeding {
                self.note_sending(seg, peer);
            }
            return self.serve(peer, seg, piece, &data);
        }
        // A seed's segment not in its cache: park the request, read the disk.
        if !self.seeding || r.pending_loads >= self.cfg.max_pending_loads_per_peer {
            return self.send(
                peer,
                &Message::Reject {
                    seg: seg.get(),
                    piece: piece.get(),
                },
            );
        }
        r.pending_loads += 1;
        self.note_sending(seg, peer);
        // One read per segment: the entry lives until the read answers, even
        // if every waiting peer left meanwhile.
        match self.pending_loads.get_mut(&seg) {
            Some(waiting) => waiting.push((peer, piece)),
            None => {
                self.pending_loads.insert(seg, vec![(peer, piece)]);
                self.out.push_back(Output::Load { seg });
            }
        }
    }

    fn serve(&mut self, peer: PeerKey, seg: SegmentId, piece: PieceIndex, data: &[u8]) {
        let range = self.manifest.piece_range(seg, piece);
        self.stats.bytes_uploaded += range.len() as u64;
        self.send(
            peer,
            &Message::Piece {
                seg: seg.get(),
                piece: piece.get(),
                data: &data[range],
            },
        );
    }

    /// Seed mode: whether another viewer, which does not hold `seg` yet,
    /// had a request for it accepted within `reject_backoff_ms`.
    fn sending_elsewhere(&self, seg: SegmentId, asker: PeerKey) -> bool {
        self.sending.get(&seg).is_some_and(|&(k, t)| {
            k != asker
                && t + self.cfg.reject_backoff_ms > self.now
                && self
                    .peers
                    .get(&k)
                    .is_some_and(|r| !r.is_seed && !r.have.get(seg.get()))
        })
    }

    /// Seed mode: records that `seg` is being sent to `peer` (bounded).
    fn note_sending(&mut self, seg: SegmentId, peer: PeerKey) {
        let (now, window) = (self.now, self.cfg.reject_backoff_ms);
        if self.sending.len() >= MAX_SERVING && !self.sending.contains_key(&seg) {
            self.sending.retain(|_, &(_, t)| t + window > now);
            if self.sending.len() >= MAX_SERVING {
                super::maps::pop_first(&mut self.sending);
            }
        }
        self.sending.insert(seg, (peer, now));
    }

    /// How many connected viewers other than `asker` claim `seg`.
    fn swarm_copies(&self, seg: SegmentId, asker: PeerKey) -> usize {
        self.peers
            .iter()
            .filter(|(&k, r)| k != asker && !r.is_seed && r.hello && r.have.get(seg.get()))
            .count()
    }

    fn take_pending(&mut self, seg: SegmentId) -> Vec<(PeerKey, PieceIndex)> {
        let waiting = self.pending_loads.remove(&seg).unwrap_or_default();
        for &(k, _) in &waiting {
            if let Some(r) = self.peers.get_mut(&k) {
                r.pending_loads = r.pending_loads.saturating_sub(1);
            }
        }
        waiting
    }

    pub(super) fn on_loaded(&mut self, seg: SegmentId, data: Vec<u8>) {
        if verify_segment(self.manifest.entry(seg), &data).is_err() {
            self.stats.verify_failures += 1;
            return self.on_load_failed(seg);
        }
        let data: Arc<[u8]> = data.into();
        self.store.insert(seg, data.clone());
        self.store.shrink_to(self.cfg.store_max_bytes);
        for (k, piece) in self.take_pending(seg) {
            if self.peers.contains_key(&k) {
                self.serve(k, seg, piece, &data);
            }
        }
    }

    /// A segment that cannot be read or does not match the manifest is no
    /// longer offered (requests for it are rejected, never re-read).
    pub(super) fn on_load_failed(&mut self, seg: SegmentId) {
        self.have.clear(seg.get());
        for (k, piece) in self.take_pending(seg) {
            if self.peers.contains_key(&k) {
                self.send(
                    k,
                    &Message::Reject {
                        seg: seg.get(),
                        piece: piece.get(),
                    },
                );
            }
        }
    }
}
