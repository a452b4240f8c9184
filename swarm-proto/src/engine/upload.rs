//! The upload path: answering requests.
//!
//! A request is answered at once with the piece or a reject; nothing is
//! queued in the engine except, on a seed, requests waiting for a disk read
//! (bounded per peer). Back-pressure: a peer with more than
//! `max_buffered_bytes` queued toward it gets rejects until its queue
//! drains. A seed refuses a segment once to a viewer when
//! `seed_enough_copies` other viewers claim it; a second request for the
//! same segment is served, so claims alone cannot switch the seed off.

use super::*;
use crate::manifest::verify_segment;

impl Engine {
    pub(super) fn on_request(&mut self, peer: PeerKey, seg: SegmentId, piece: PieceIndex) {
        let len = self.manifest.piece_range(seg, piece).len() as u64;
        let max_buffered = self.cfg.max_buffered_bytes;
        let enough = self.cfg.seed_enough_copies;
        let copies = if self.seeding {
            self.swarm_copies(seg, peer)
        } else {
            0
        };
        let (now, window) = (self.now, self.cfg.reject_backoff_ms);
        let r = self.peers.get_mut(&peer).expect("caller checked");
        let refuse = (self.seeding && copies >= enough && r.refuse_once(seg, now, window))
            || r.buffered + len > max_buffered;
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
