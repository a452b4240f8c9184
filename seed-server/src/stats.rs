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
    /// WebRTC viewers currently admitted (connecting or open).
    pub viewers: AtomicU64,
    /// Viewers admitted since start.
    pub viewers_total: AtomicU64,
    /// Offers refused because the seed was at capacity.
    pub refused_over_capacity: AtomicU64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub http_bytes_served: u64,
    pub http_requests: u64,
    pub rtc_bytes_served: u64,
    pub viewers_connected: u64,
    pub viewers_total: u64,
    pub refused_over_capacity: u64,
}

impl SeedStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            http_bytes_served: self.http_bytes.load(Relaxed),
            http_requests: self.http_requests.load(Relaxed),
            rtc_bytes_served: self.rtc_bytes.load(Relaxed),
            viewers_connected: self.viewers.load(Relaxed),
            viewers_total: self.viewers_total.load(Relaxed),
            refused_over_capacity: self.refused_over_capacity.load(Relaxed),
        }
    }
}
