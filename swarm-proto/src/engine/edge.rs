//! The engine's edge: a peer's bytes become a [`PeerMsg`] checked against the
//! manifest, once. Past this point segment and piece indexes are valid.

use crate::bitfield::Bitfield;
use crate::ids::{PieceIndex, SegmentId};
use crate::manifest::Manifest;
use crate::wire::{self, Message};

#[derive(Debug)]
pub(super) enum PeerMsg<'a> {
    Hello,
    Bitfield(Bitfield),
    Have(SegmentId),
    Request(SegmentId, PieceIndex),
    Piece(SegmentId, PieceIndex, &'a [u8]),
    /// A valid cancel (pieces go out at once, so there is nothing to cancel).
    Cancel,
    Reject(SegmentId, PieceIndex),
    Bye,
    Fetching(SegmentId),
}

/// Decodes and checks one message; the error is the reason to drop the peer.
pub(super) fn check<'a>(m: &Manifest, data: &'a [u8]) -> Result<PeerMsg<'a>, String> {
    let msg = wire::decode(data).map_err(|e| format!("malformed message: {e}"))?;
    let n = m.segment_count();
    let seg = |what: &str, raw: u32| {
        m.segment(raw)
            .ok_or_else(|| format!("{what} for segment {raw} of {n}"))
    };
    let piece =
        |what: &str, raw_seg: u32, raw_piece: u32| -> Result<(SegmentId, PieceIndex), String> {
            let s = seg(what, raw_seg)?;
            let p = m.piece(s, raw_piece).ok_or_else(|| {
                format!(
                    "{what} for piece {raw_piece} of {s}, which has {}",
                    m.piece_count(s)
                )
            })?;
            Ok((s, p))
        };
    Ok(match msg {
        Message::Hello {
            content_id,
            segments,
        } => {
            if content_id != m.content_id() || segments != n {
                return Err(format!(
                    "peer is on content {content_id:?} with {segments} segments, we are on {:?} with {n}",
                    m.content_id()
                ));
            }
            PeerMsg::Hello
        }
        Message::Bitfield(bf) => {
            if bf.len() != n {
                return Err(format!("bitfield of {} bits for {n} segments", bf.len()));
            }
            PeerMsg::Bitfield(bf)
        }
        Message::Have { seg: s } => PeerMsg::Have(seg("have", s)?),
        Message::Request { seg, piece: p } => {
            let (s, p) = piece("request", seg, p)?;
            PeerMsg::Request(s, p)
        }
        Message::Piece {
            seg,
            piece: p,
            data,
        } => {
            let (s, p) = piece("piece", seg, p)?;
            let want = m.piece_range(s, p).len();
            if data.len() != want {
                return Err(format!(
                    "piece {} of {s} has {} bytes, expected {want}",
                    p.get(),
                    data.len()
                ));
            }
            PeerMsg::Piece(s, p, data)
        }
        Message::Cancel { seg, piece: p } => {
            piece("cancel", seg, p)?;
            PeerMsg::Cancel
        }
        Message::Reject { seg, piece: p } => {
            let (s, p) = piece("reject", seg, p)?;
            PeerMsg::Reject(s, p)
        }
        Message::Bye => PeerMsg::Bye,
        Message::Fetching { seg: s } => PeerMsg::Fetching(seg("fetching", s)?),
        Message::LiveMeta(_) | Message::LivePush(_) | Message::LiveWant { .. } => {
            return Err("sent a live-channel message on a video-on-demand swarm".into())
        }
    })
}
