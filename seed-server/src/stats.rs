//! Counters the seed exposes at `GET /api/stats` (read by benchmarks).

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct SeedStats {
    /// Response body bytes sent by the HTTP origin under `/vod/`.
    pub http_bytes: AtomicU64,
    pub http_requests: AtomicU64,
    /// Data-channel bytes handed to WebRTC connections.
    pub rtc_bytes: AtomicU64,
    /// Data-channel bytes received from viewers.
    pub rtc_bytes_in: AtomicU64,
    /// Request bytes the HTTP origin received (request line, headers and
    /// declared body length).
    pub http_bytes_in: AtomicU64,
    /// WebRTC slots held now: viewer connections admitted (connecting or
    /// open) and not yet torn down.
    pub slots: AtomicU64,
    /// The most slots ever held at once.
    pub slots_max: AtomicU64,
    /// Viewer connections admitted since start.
    pub viewers_total: AtomicU64,
    /// Offers refused because the seed was at capacity.
    pub refused_over_capacity: AtomicU64,
    /// Offers refused because that peer id already held its most connections.
    pub refused_per_peer: AtomicU64,
    /// Offers refused because the engine banned that peer id.
    pub refused_banned: AtomicU64,
    /// Connections closed because their data channel did not open in time.
    pub handshake_timeouts: AtomicU64,
    /// Idle connections closed to make room for a new viewer at capacity.
    pub evicted_idle: AtomicU64,
    /// Segment files read from disk for WebRTC viewers.
    pub segment_loads: AtomicU64,
    /// Segment reads that failed or did not match the manifest.
    pub segment_load_failures: AtomicU64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub http_bytes_served: u64,
    pub http_requests: u64,
    pub rtc_bytes_served: u64,
    /// Same as `slots` (kept for older readers).
    pub viewers_connected: u64,
    pub viewers_total: u64,
    pub refused_over_capacity: u64,
    pub refused_per_peer: u64,
    pub refused_banned: u64,
    pub handshake_timeouts: u64,
    pub evicted_idle: u64,
    pub slots: u64,
    pub slots_max: u64,
    pub segment_loads: u64,
    pub segment_load_failures: u64,
}

impl SeedStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            http_bytes_served: self.http_bytes.load(Relaxed),
            http_requests: self.http_requests.load(Relaxed),
            rtc_bytes_served: self.rtc_bytes.load(Relaxed),
            viewers_connected: self.slots.load(Relaxed),
            viewers_total: self.viewers_total.load(Relaxed),
            refused_over_capacity: self.refused_over_capacity.load(Relaxed),
            refused_per_peer: self.refused_per_peer.load(Relaxed),
            refused_banned: self.refused_banned.load(Relaxed),
            handshake_timeouts: self.handshake_timeouts.load(Relaxed),
            evicted_idle: self.evicted_idle.load(Relaxed),
            slots: self.slots.load(Relaxed),
            slots_max: self.slots_max.load(Relaxed),
            segment_loads: self.segment_loads.load(Relaxed),
            segment_load_failures: self.segment_load_failures.load(Relaxed),
        }
    }
}
