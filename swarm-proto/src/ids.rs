//! Validated identifiers. A [`SegmentId`] or [`PieceIndex`] received from
//! the network is a raw `u32` until it has been checked against the
//! manifest; after that the type carries the proof.

use serde::{Deserialize, Serialize};

/// Index of a media segment in a manifest (0-based, init segment excluded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SegmentId(pub(crate) u32);

impl SegmentId {
    /// The raw index. Only [`crate::manifest::Manifest::segment`] makes one.
    pub fn get(self) -> u32 {
        self.0
    }
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl std::fmt::Display for SegmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "seg#{}", self.0)
    }
}

/// Index of a piece inside a segment, checked against that segment's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PieceIndex(pub(crate) u32);

impl PieceIndex {
    pub fn get(self) -> u32 {
        self.0
    }
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
