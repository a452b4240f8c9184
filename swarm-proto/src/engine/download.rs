//! The receive path: pieces and rejects from peers, HTTP bodies, assembly,
//! verification, and blame.
//!
//! Only a piece we asked that peer for is accepted. A segment assembled
//! from one peer that fails verification drops that peer at once; from
//! several, it becomes a [`Suspect`] and is fetched from the origin, and
//! when the verified copy arrives the peers whose pieces differ are dropped:
//! an honest contributor is never blamed for another's bytes.

use super::*;
use crate::manifest::verify_segment;

impl Engine {
    pub(super) fn on_piece(
        &mut self,
        peer: PeerKey,
        seg: SegmentId,
        piece: PieceIndex,
        data: &[u8],
    ) {
        let solicited = self
            .partial
            .get(&seg)
            .is_some_and(|p| p.is_asked_of(piece, peer));
        let r = self.peers.get_mut(&peer).expect("caller checked");
        if r.is_seed {
            self.stats.bytes_from_seed += data.len() as u64;
        } else if r.relayed {
            self.stats.bytes_from_relay += data.len() as u64;
        } else {
            self.stats.bytes_from_peers += data.len() as u64;
        }
        if !solicited {
            // A late answer to a request that timed out or was cancelled:
            // counted as traffic, never accepted into a segment.
            self.stats.unsolicited_pieces += 1;
            return;
        }
        r.delivered += 1;
        let p = self.partial.get_mut(&seg).expect("solicited");
        p.unask(piece, peer);
        let others = p.fill(&self.manifest, seg, piece, peer, data);
        let done = p.is_done();
        self.release(peer);
        for k in others {
            self.release(k);
            self.send(
                k,
                &Message::Cancel {
                    seg: seg.get(),
                    piece: piece.get(),
                },
            );
        }
        if done {
            let p = self.partial.remove(&seg).expect("present");
            self.complete_from_peers(seg, p);
        }
    }

    pub(super) fn on_reject(&mut self, peer: PeerKey, seg: SegmentId, piece: PieceIndex) {
        self.stats.requests_rejected += 1;
        let was_asked = self
            .partial
            .get_mut(&seg)
            .is_some_and(|p| p.unask(piece, peer));
        if !was_asked {
            return;
        }
        self.release(peer);
        let (now, backoff) = (self.now, self.cfg.reject_backoff_ms);
        let r = self.peers.get_mut(&peer).expect("caller checked");
        r.note_reject(seg, now, backoff);
        self.note_unserved(peer, 1);
    }

    /// Counts requests a viewer left unserved; drops it when its claims
    /// outrun what it delivers. Seeds may refuse by design and are exempt.
    fn note_unserved(&mut self, peer: PeerKey, n: u64) {
        let allowance = self.cfg.max_unserved_claims;
        let Some(r) = self.peers.get_mut(&peer) else {
            return;
        };
        if r.is_seed {
            return;
        }
        r.unserved += n;
        if r.claims_outrun_deliveries(allowance) {
            let reason = format!(
                "claims segments it does not deliver: {} requests unserved, {} pieces delivered",
                r.unserved, r.delivered
            );
            self.drop_peer(peer, reason);
        }
    }

    fn complete_from_peers(&mut self, seg: SegmentId, p: Partial) {
        let err = match verify_segment(self.manifest.entry(seg), &p.buf) {
            Ok(()) => return self.accept_segment(seg, p.buf.into()),
            Err(e) => e,
        };
        self.stats.verify_failures += 1;
        let contributors = p.contributors();
        if let [only] = contributors[..] {
            return self.drop_peer(
                only,
                format!("sent {seg}, which failed verification: {err}"),
            );
        }
        // Several senders: find the liar against the origin's copy.
        if self.suspects.len() >= self.cfg.max_suspects {
            super::maps::pop_first(&mut self.suspects);
        }
        self.suspects
            .insert(seg, Suspect::new(&self.manifest, seg, &p));
        self.origin_only.insert(seg);
    }

    pub(super) fn on_http(&mut self, res: Resource, data: Vec<u8>) {
        self.http_inflight.remove(&res);
        self.stats.bytes_from_http += data.len() as u64;
        let entry = match res {
            Resource::Init => self.manifest.init(),
            Resource::Segment(seg) => self.manifest.entry(seg),
        };
        if let Err(_e) = verify_segment(entry, &data) {
            self.stats.verify_failures += 1;
            self.http_retry_at
                .insert(res, self.now + self.cfg.http_retry_ms);
            return;
        }
        match res {
            Resource::Init => self.init = Some(data.into()),
            Resource::Segment(seg) => {
                if !self.have.get(seg.get()) {
                    self.cancel_segment_requests(seg);
                    self.accept_segment(seg, data.into());
                }
            }
        }
    }

    pub(super) fn cancel_segment_requests(&mut self, seg: SegmentId) {
        let Some(p) = self.partial.remove(&seg) else {
            return;
        };
        for (piece, k) in p.outstanding().collect::<Vec<_>>() {
            self.release(k);
            self.send(
                k,
                &Message::Cancel {
                    seg: seg.get(),
                    piece,
                },
            );
        }
    }

    pub(super) fn accept_segment(&mut self, seg: SegmentId, data: Arc<[u8]>) {
        if let Some(s) = self.suspects.remove(&seg) {
            for k in s.culprits(&self.manifest, seg, &data) {
                self.drop_peer(
                    k,
                    format!("sent pieces of {seg} that differ from the verified copy"),
                );
            }
        }
        self.origin_only.remove(&seg);
        self.http_retry_at.remove(&Resource::Segment(seg));
        self.store.insert(seg, data);
        self.have.set(seg.get());
        self.stats.segments_verified += 1;
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.send(k, &Message::Have { seg: seg.get() });
        }
    }

    /// Gives up requests unanswered for `piece_timeout_ms`; each counts as
    /// unserved against the peer.
    pub(super) fn expire_requests(&mut self) {
        let (now, timeout) = (self.now, self.cfg.piece_timeout_ms);
        let mut expired = Vec::new();
        for (_, p) in self.partial.iter_mut() {
            expired.extend(p.expire(now, timeout));
        }
        for k in expired {
            self.release(k);
            self.note_unserved(k, 1);
        }
    }
}
