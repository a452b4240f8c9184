//! The piece tracker of segments being assembled from peers, and the record
//! that finds who sent bad bytes (libtorrent's "smart ban").
//!
//! Invariant: each piece of a [`Partial`] is in exactly one state: missing,
//! asked (of one peer, or of two in the endgame), or received (from one
//! peer). The tracker never touches peers' in-flight counters; it returns
//! the peers whose request ended so that the engine releases them in one
//! place.
//!
//! When an assembled segment fails verification, [`Suspect`] keeps the
//! SHA-256 of every piece and who sent it. The segment is then fetched from
//! the origin; once a verified copy arrives, the pieces that differ name the
//! peers that lied, and only those are dropped.

use super::PeerKey;
use crate::ids::{PieceIndex, SegmentId};
use crate::manifest::Manifest;
use crate::Millis;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub(super) enum PieceState {
    Missing,
    /// Outstanding requests: (peer, sent at).
    Asked(Vec<(PeerKey, Millis)>),
    Got(PeerKey),
}

#[derive(Debug)]
pub(super) struct Partial {
    pub buf: Vec<u8>,
    pub pieces: Vec<PieceState>,
    pub received: usize,
    /// Peers were told that we fetch it from a seed (`Fetching`).
    pub announced: bool,
}

impl Partial {
    pub fn new(m: &Manifest, seg: SegmentId) -> Partial {
        Partial {
            buf: vec![0; m.entry(seg).size as usize],
            pieces: vec![PieceState::Missing; m.piece_count(seg) as usize],
            received: 0,
            announced: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.received == self.pieces.len()
    }

    /// Whether `peer` has an outstanding request for `piece`.
    pub fn is_asked_of(&self, piece: PieceIndex, peer: PeerKey) -> bool {
        matches!(&self.pieces[piece.index()], PieceState::Asked(v) if v.iter().any(|&(k, _)| k == peer))
    }

    pub fn ask(&mut self, piece: usize, peer: PeerKey, now: Millis) {
        match &mut self.pieces[piece] {
            PieceState::Asked(v) => v.push((peer, now)),
            st @ PieceState::Missing => *st = PieceState::Asked(vec![(peer, now)]),
            PieceState::Got(_) => debug_assert!(false, "asked for a piece already received"),
        }
    }

    /// Ends `peer`'s request for `piece`; true if there was one.
    pub fn unask(&mut self, piece: PieceIndex, peer: PeerKey) -> bool {
        let st = &mut self.pieces[piece.index()];
        let PieceState::Asked(v) = st else {
            return false;
        };
        let before = v.len();
        v.retain(|&(k, _)| k != peer);
        let was = v.len() < before;
        if v.is_empty() {
            *st = PieceState::Missing;
        }
        was
    }

    /// Stores a solicited piece; returns the other peers whose (endgame)
    /// requests for it are now moot.
    pub fn fill(
        &mut self,
        m: &Manifest,
        seg: SegmentId,
        piece: PieceIndex,
        from: PeerKey,
        data: &[u8],
    ) -> Vec<PeerKey> {
        let st = std::mem::replace(&mut self.pieces[piece.index()], PieceState::Got(from));
        let others = match st {
            PieceState::Asked(v) => v
                .into_iter()
                .map(|(k, _)| k)
                .filter(|&k| k != from)
                .collect(),
            _ => Vec::new(),
        };
        self.buf[m.piece_range(seg, piece)].copy_from_slice(data);
        self.received += 1;
        others
    }

    /// Ends every request of `peer`; returns how many there were.
    pub fn forget_peer(&mut self, peer: PeerKey) -> usize {
        let mut n = 0;
        for st in &mut self.pieces {
            if let PieceState::Asked(v) = st {
                let before = v.len();
                v.retain(|&(k, _)| k != peer);
                n += before - v.len();
                if v.is_empty() {
                    *st = PieceState::Missing;
                }
            }
        }
        n
    }

    /// Ends requests outstanding for `timeout` or longer; returns the peers,
    /// one entry per expired request.
    pub fn expire(&mut self, now: Millis, timeout: u64) -> Vec<PeerKey> {
        let mut out = Vec::new();
        for st in &mut self.pieces {
            if let PieceState::Asked(v) = st {
                v.retain(|&(k, t)| {
                    let keep = t + timeout > now;
                    if !keep {
                        out.push(k);
                    }
                    keep
                });
                if v.is_empty() {
                    *st = PieceState::Missing;
                }
            }
        }
        out
    }

    /// Every outstanding request: (piece, peer).
    pub fn outstanding(&self) -> impl Iterator<Item = (u32, PeerKey)> + '_ {
        self.pieces.iter().enumerate().flat_map(|(i, st)| match st {
            PieceState::Asked(v) => v.iter().map(|&(k, _)| (i as u32, k)).collect::<Vec<_>>(),
            _ => Vec::new(),
        })
    }

    pub fn earliest_request(&self) -> Option<Millis> {
        self.pieces
            .iter()
            .filter_map(|st| match st {
                PieceState::Asked(v) => v.iter().map(|&(_, t)| t).min(),
                _ => None,
            })
            .min()
    }

    /// Peers the pieces came from.
    pub fn contributors(&self) -> Vec<PeerKey> {
        let mut v: Vec<PeerKey> = self
            .pieces
            .iter()
            .filter_map(|st| {
                if let PieceState::Got(k) = st {
                    Some(*k)
                } else {
                    None
                }
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Whether the peers working on it have most of it (worth waiting for
    /// rather than starting over on HTTP).
    pub fn nearly_done(&self) -> bool {
        let unasked = self
            .pieces
            .iter()
            .filter(|st| matches!(st, PieceState::Missing))
            .count();
        unasked == 0 && self.received * 2 >= self.pieces.len()
    }
}

/// A segment that failed verification: who sent which bytes.
#[derive(Debug)]
pub(super) struct Suspect {
    /// (piece, sender, SHA-256 of what it sent).
    pub pieces: Vec<(u32, PeerKey, [u8; 32])>,
}

impl Suspect {
    pub fn new(m: &Manifest, seg: SegmentId, p: &Partial) -> Suspect {
        let pieces = p
            .pieces
            .iter()
            .enumerate()
            .filter_map(|(i, st)| match st {
                PieceState::Got(k) => {
                    let range = m.piece_range(seg, m.piece(seg, i as u32)?);
                    Some((i as u32, *k, Sha256::digest(&p.buf[range]).into()))
                }
                _ => None,
            })
            .collect();
        Suspect { pieces }
    }

    /// Given the verified segment, the peers whose pieces differ from it.
    pub fn culprits(&self, m: &Manifest, seg: SegmentId, good: &[u8]) -> Vec<PeerKey> {
        let mut out: Vec<PeerKey> = self
            .pieces
            .iter()
            .filter_map(|&(i, k, digest)| {
                let range = m.piece_range(seg, m.piece(seg, i)?);
                let good: [u8; 32] = Sha256::digest(&good[range]).into();
                (good != digest).then_some(k)
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}
