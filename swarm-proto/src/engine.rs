//! The peer engine (API surface; implementation follows in this file).
use crate::ids::SegmentId;
use crate::manifest::Manifest;
use crate::Millis;
use std::sync::Arc;

/// Driver-assigned handle of one remote peer connection (data channel).
pub type PeerKey = u64;

#[derive(Clone, Debug)]
pub struct Config {
    pub urgent_ms: u64,
    pub lookahead_ms: u64,
    pub max_inflight_per_peer: usize,
    pub piece_timeout_ms: u64,
    pub seed_enough_copies: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { urgent_ms: 4000, lookahead_ms: 20_000, max_inflight_per_peer: 16, piece_timeout_ms: 2000, seed_enough_copies: 2 }
    }
}

pub enum Input<'a> {
    PeerConnected { peer: PeerKey, is_seed: bool },
    PeerData { peer: PeerKey, data: &'a [u8] },
    PeerClosed { peer: PeerKey },
    HttpSegment { seg: SegmentId, data: Vec<u8> },
    HttpFailed { seg: SegmentId },
    Playhead { position_ms: u64 },
    Timeout,
}

#[derive(Debug)]
pub enum Output {
    Send { peer: PeerKey, data: Vec<u8> },
    HttpFetch { seg: SegmentId },
    Append { seg: SegmentId, data: Arc<[u8]> },
    DropPeer { peer: PeerKey, reason: String },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub bytes_from_peers: u64,
    pub bytes_from_http: u64,
    pub bytes_uploaded: u64,
    pub segments_verified: u64,
    pub segments_appended: u64,
    pub verify_failures: u64,
    pub peers: u32,
}

pub struct Engine {
    _m: Arc<Manifest>,
}

impl Engine {
    pub fn new(_manifest: Arc<Manifest>, _config: Config) -> Engine {
        todo!()
    }
    pub fn new_seed(_manifest: Arc<Manifest>, _config: Config) -> Engine {
        todo!()
    }
    pub fn insert_verified(&mut self, _seg: SegmentId, _data: Vec<u8>) -> Result<(), crate::manifest::VerifyError> {
        todo!()
    }
    pub fn handle_input(&mut self, _now: Millis, _input: Input<'_>) {}
    pub fn poll_output(&mut self) -> Option<Output> {
        None
    }
    pub fn poll_timeout(&self) -> Option<Millis> {
        None
    }
    pub fn stats(&self) -> Stats {
        Stats::default()
    }
}
