//! Either engine behind one face, for drivers that run both a video on
//! demand and a live channel (the browser peer, the seed): the same
//! [`Input`]s and [`Output`]s, and the few questions a driver asks.

#[cfg(feature = "vod-engine")]
use crate::engine::Engine;
use crate::engine::{Input, Output, Resource, Stats, Tables};
#[cfg(feature = "live-engine")]
use crate::live::{LiveEngine, MAX_LIVE_SEGMENT_BYTES};
use crate::Millis;

pub enum AnyEngine {
    /// Only with the `vod-engine` feature.
    #[cfg(feature = "vod-engine")]
    Vod(Engine),
    /// Only with the `live-engine` feature.
    #[cfg(feature = "live-engine")]
    Live(LiveEngine),
}

impl AnyEngine {
    pub fn handle_input(&mut self, now: Millis, input: Input<'_>) {
        match self {
            #[cfg(feature = "vod-engine")]
            AnyEngine::Vod(e) => e.handle_input(now, input),
            #[cfg(feature = "live-engine")]
            AnyEngine::Live(e) => e.handle_input(now, input),
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        match self {
            #[cfg(feature = "vod-engine")]
            AnyEngine::Vod(e) => e.poll_output(),
            #[cfg(feature = "live-engine")]
            AnyEngine::Live(e) => e.poll_output(),
        }
    }

    pub fn poll_timeout(&self) -> Option<Millis> {
        match self {
            #[cfg(feature = "vod-engine")]
            AnyEngine::Vod(e) => e.poll_timeout(),
            #[cfg(feature = "live-engine")]
            AnyEngine::Live(e) => e.poll_timeout(),
        }
    }

    pub fn stats(&self) -> Stats {
        match self {
            #[cfg(feature = "vod-engine")]
            AnyEngine::Vod(e) => e.stats(),
            #[cfg(feature = "live-engine")]
            AnyEngine::Live(e) => e.stats(),
        }
    }

    pub fn tables(&self) -> Tables {
        match self {
            #[cfg(feature = "vod-engine")]
            AnyEngine::Vod(e) => e.tables(),
            #[cfg(feature = "live-engine")]
            AnyEngine::Live(e) => e.tables(),
        }
    }

    pub fn is_banned(&self, remote_id: &str) -> bool {
        match self {
            #[cfg(feature = "vod-engine")]
            AnyEngine::Vod(e) => e.is_banned(remote_id),
            #[cfg(feature = "live-engine")]
            AnyEngine::Live(e) => e.is_banned(remote_id),
        }
    }

    pub fn max_peers(&self) -> usize {
        match self {
            #[cfg(feature = "vod-engine")]
            AnyEngine::Vod(e) => e.config().max_peers,
            #[cfg(feature = "live-engine")]
            AnyEngine::Live(e) => e.config().max_peers,
        }
    }

    pub fn count_startup_from(&mut self, at: Millis) {
        match self {
            #[cfg(feature = "vod-engine")]
            AnyEngine::Vod(e) => e.count_startup_from(at),
            #[cfg(feature = "live-engine")]
            AnyEngine::Live(e) => e.count_startup_from(at),
        }
    }

    /// The swarm's name on the signal server: the content id, or the
    /// channel.
    pub fn swarm(&self) -> &str {
        match self {
            #[cfg(feature = "vod-engine")]
            AnyEngine::Vod(e) => e.manifest().content_id(),
            #[cfg(feature = "live-engine")]
            AnyEngine::Live(e) => &e.manifest().channel,
        }
    }

    /// Where to fetch a resource (relative to the manifest) and the most
    /// bytes it may have.
    pub fn fetch_target(&self, res: Resource) -> (String, u64) {
        match self {
            #[cfg(feature = "vod-engine")]
            AnyEngine::Vod(e) => {
                let m = e.manifest();
                let entry = match res {
                    Resource::Init => m.init(),
                    Resource::Segment(seg) => m.entry(seg),
                };
                (entry.uri.clone(), entry.size)
            }
            #[cfg(feature = "live-engine")]
            AnyEngine::Live(e) => (e.uri(res), MAX_LIVE_SEGMENT_BYTES as u64),
        }
    }

    /// Segments of a video on demand (`None` for a live channel).
    pub fn segment_count(&self) -> Option<u32> {
        match self {
            #[cfg(feature = "vod-engine")]
            AnyEngine::Vod(e) => Some(e.manifest().segment_count()),
            #[cfg(feature = "live-engine")]
            AnyEngine::Live(_) => None,
        }
    }
}
