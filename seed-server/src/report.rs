//! What the seed reports about itself: to the signal server every
//! [`swarm_proto::signal::SEED_REPORT_EVERY_MS`] ([`ClientMsg::SeedReport`],
//! sent by [`crate::signaling`]) and at `GET /metrics`.
//!
//! [`ClientMsg::SeedReport`]: swarm_proto::signal::ClientMsg::SeedReport

use crate::live::channel::LiveChannels;
use crate::live::ingest::ChannelStatus;
use crate::serve::SwarmHub;
use crate::stats::SeedStats;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;
use swarm_proto::signal::{
    SeedCaps, SeedReport, MAX_REPORT_BYTES, MAX_REPORT_CACHE_BYTES, MAX_REPORT_INTERRUPTED,
    MAX_REPORT_VIEWERS, MAX_SEED_CONTENTS,
};

/// Builds [`SeedReport`]s from the seed's counters, its swarms and its live
/// channels.
#[derive(Clone)]
pub struct Reporter {
    started: Instant,
    stats: Arc<SeedStats>,
    hub: Option<Arc<SwarmHub>>,
    live: Option<LiveChannels>,
    /// Contents served over HTTP only (a seed without a signal server).
    http_contents: Arc<dyn Fn() -> usize + Send + Sync>,
}

impl Reporter {
    /// Counts from now.
    pub fn new(stats: Arc<SeedStats>) -> Reporter {
        Reporter {
            started: Instant::now(),
            stats,
            hub: None,
            live: None,
            http_contents: Arc::new(|| 0),
        }
    }

    /// Viewers, contents and cache from the WebRTC swarms.
    pub fn with_hub(mut self, hub: Arc<SwarmHub>) -> Reporter {
        self.hub = Some(hub);
        self
    }

    /// Channel health from the live channels.
    pub fn with_live(mut self, live: LiveChannels) -> Reporter {
        self.live = Some(live);
        self
    }

    /// Without a hub: how many VOD contents the HTTP origin serves.
    pub fn with_http_contents(mut self, f: impl Fn() -> usize + Send + Sync + 'static) -> Reporter {
        self.http_contents = Arc::new(f);
        self
    }

    pub fn stats(&self) -> &Arc<SeedStats> {
        &self.stats
    }

    /// The report now. Every value is clamped to the bounds a signal server
    /// accepts, so a report is never refused for a counter that ran long.
    pub fn report(&self) -> SeedReport {
        let s = &self.stats;
        let bytes = |a: &std::sync::atomic::AtomicU64| a.load(Relaxed).min(MAX_REPORT_BYTES);
        let mut live_ok = 0u32;
        let mut interrupted = Vec::new();
        let mut live_names = Vec::new();
        if let Some(live) = &self.live {
            let channels: Vec<_> = live.read().values().cloned().collect();
            for c in channels {
                match c.status() {
                    ChannelStatus::Starting | ChannelStatus::Running => live_ok += 1,
                    ChannelStatus::Interrupted { .. } => interrupted.push(c.name.clone()),
                    ChannelStatus::Stopped => {}
                }
                live_names.push(c.name.clone());
            }
        }
        let vod = match &self.hub {
            Some(hub) => (hub.contents().iter())
                .filter(|c| !live_names.contains(c))
                .count(),
            None => (self.http_contents)(),
        };
        let n_interrupted = interrupted.len();
        interrupted.sort();
        interrupted.truncate(MAX_REPORT_INTERRUPTED);
        let max_channels = MAX_SEED_CONTENTS as u32;
        let channels_interrupted = (n_interrupted as u32).min(max_channels);
        let channels_ok = (vod as u32)
            .saturating_add(live_ok)
            .min(max_channels - channels_interrupted);
        let (cache_bytes, cache_max_bytes) = match &self.hub {
            Some(hub) => (hub.cache_bytes(), hub.config().cache_bytes as u64),
            None => (0, 0),
        };
        SeedReport {
            uptime_s: self.started.elapsed().as_secs(),
            rtc_bytes_out: bytes(&s.rtc_bytes),
            rtc_bytes_in: bytes(&s.rtc_bytes_in),
            http_bytes_out: bytes(&s.http_bytes),
            http_bytes_in: bytes(&s.http_bytes_in),
            viewers: u32::try_from(s.slots.load(Relaxed))
                .unwrap_or(u32::MAX)
                .min(MAX_REPORT_VIEWERS),
            channels_ok,
            channels_interrupted,
            interrupted,
            cache_bytes: cache_bytes.min(MAX_REPORT_CACHE_BYTES),
            cache_max_bytes: cache_max_bytes.min(MAX_REPORT_CACHE_BYTES),
            caps: self.hub.as_ref().map(|hub| {
                let c = hub.config();
                let cap = |v: u64| u32::try_from(v).unwrap_or(u32::MAX).min(MAX_REPORT_VIEWERS);
                SeedCaps {
                    capacity: cap(u64::from(c.capacity)),
                    max_conns_per_peer: cap(c.max_conns_per_peer as u64),
                }
            }),
        }
    }
}
