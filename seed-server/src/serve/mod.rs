//! Serving segments to viewers over WebRTC: one seed-mode
//! [`swarm_proto::Engine`] per content, driven by the events of each
//! viewer's data channel. The engine is the only place that decides what to
//! send and whom to close; this module moves bytes, time and file contents.
//!
//! Layout: [`SwarmHub`] (here) holds the contents and admits connections;
//! `slots` bounds them; `swarm` drives one content's engine and reads
//! its segment files; `viewer` runs one viewer connection.
//!
//! Invariants:
//! - Nothing is read from disk up front: the engine asks for a segment with
//!   `Output::Load`, the file is read then, and the engine verifies it and
//!   keeps at most `Config::store_max_bytes` of segments per content.
//! - Segments in memory are bounded over the whole library:
//!   [`HubConfig::cache_bytes`] shared equally by the contents.
//! - Every connection holds a slot from admission until its task ends: at
//!   most [`HubConfig::capacity`] in total and
//!   [`HubConfig::max_conns_per_peer`] per signaling peer id (a further
//!   offer from that id is refused, not swapped for an older connection). A
//!   slot is freed when the viewer leaves, its channel fails to open within
//!   [`HubConfig::handshake_timeout`], the engine closes it (bye, idle,
//!   misbehaviour), or, at capacity, a new viewer takes it after
//!   [`HubConfig::evict_idle_after`] with nothing sent on it.
//! - Each viewer has its own send queue and sending task, so one slow
//!   viewer never blocks the others. The queue's size is reported to the
//!   engine (`Input::PeerBuffered`) before each message of that viewer and
//!   on every tick; the engine rejects requests while it is long. A queue
//!   past [`MAX_QUEUED_BYTES`] ends the connection as a last resort.
//! - Every connection's end is logged once with the content, the viewer's
//!   signaling id and the reason.

mod slots;
mod swarm;
mod viewer;

pub use slots::{Refusal, ViewerSlot};
pub use swarm::Swarm;
pub use viewer::Ending;

use crate::package::Library;
use crate::rtc::RtcConn;
use crate::stats::SeedStats;
use slots::{Limits, SlotTable};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use swarm::Clock;
use swarm_proto::engine::{Config, Engine};
use swarm_proto::live::{LiveConfig, LiveEngine};
use swarm_proto::manifest::DEFAULT_PIECE_BYTES;
use swarm_proto::Millis;
use tokio::sync::{mpsc, Semaphore};
use tracing::info;
use viewer::ViewerTask;

/// A viewer with more than this many bytes waiting to be sent is dropped
/// (a safety net: the engine stops serving it well before).
pub const MAX_QUEUED_BYTES: usize = 16 << 20;
/// How often the engines' timers are checked and queue sizes reported.
pub const TICK: Duration = Duration::from_millis(100);
/// Segment files read from disk at once, over all contents.
pub const MAX_CONCURRENT_LOADS: usize = 8;
/// Default of [`HubConfig::max_conns_per_peer`]: a viewer replacing a
/// connection it believes dead may open a second while the seed still
/// holds the first.
pub const DEFAULT_MAX_CONNS_PER_PEER: usize = 2;
/// Default of [`HubConfig::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Default of [`HubConfig::evict_idle_after`].
pub const DEFAULT_EVICT_IDLE_AFTER: Duration = Duration::from_secs(5);
/// Default of [`HubConfig::cache_bytes`].
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;
/// The least segment cache one content gets, however many there are (two
/// viewers far apart in one video each need a few segments cached).
pub const MIN_CONTENT_CACHE_BYTES: usize = 8 << 20;

/// An ICE candidate trickled by a viewer, relayed by the signaling client.
#[derive(Clone, Debug)]
pub struct RemoteCandidate {
    pub candidate: String,
    pub sdp_mid: Option<String>,
    pub sdp_mline_index: Option<u16>,
}

/// Settings of a [`SwarmHub`].
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// Most viewer connections (slots) held at once, over all contents.
    pub capacity: u32,
    /// Most connections held at once for one signaling peer id.
    pub max_conns_per_peer: usize,
    /// A connection whose data channel has not opened this long after the
    /// answer is closed and its slot freed.
    pub handshake_timeout: Duration,
    /// At capacity, a new offer takes the slot of a connection that has
    /// had nothing sent to it for this long (the longest idle first).
    pub evict_idle_after: Duration,
    /// Verified segments kept in memory over all contents, shared equally
    /// (each content gets at least [`MIN_CONTENT_CACHE_BYTES`], or all of it
    /// when it is smaller).
    pub cache_bytes: usize,
    /// The engine of every content (its `max_peers` is raised to `capacity`,
    /// its `store_max_bytes` set from `cache_bytes`).
    pub engine: Config,
}

impl HubConfig {
    pub fn new(capacity: u32) -> HubConfig {
        HubConfig {
            capacity,
            max_conns_per_peer: DEFAULT_MAX_CONNS_PER_PEER,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            evict_idle_after: DEFAULT_EVICT_IDLE_AFTER,
            cache_bytes: DEFAULT_CACHE_BYTES,
            engine: Config::default(),
        }
    }
}

/// Each content's share of a `total` cache over `contents` contents: an
/// equal share, but at least [`MIN_CONTENT_CACHE_BYTES`] (or the whole
/// cache, when it is smaller than that).
fn content_cache_bytes(total: usize, contents: usize) -> usize {
    (total / contents.max(1)).max(MIN_CONTENT_CACHE_BYTES.min(total))
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// All contents served over WebRTC.
pub struct SwarmHub {
    /// Written only when a live channel starts or stops.
    swarms: RwLock<HashMap<String, Arc<Swarm>>>,
    stats: Arc<SeedStats>,
    cfg: HubConfig,
    slots: Arc<Mutex<SlotTable>>,
    clock: Clock,
    next_key: AtomicU64,
}

impl SwarmHub {
    /// One seed engine per published content. Reads nothing from disk:
    /// segments are read when first asked for.
    pub fn new(library: &Library, stats: Arc<SeedStats>, cfg: HubConfig) -> SwarmHub {
        let clock = Clock(Instant::now());
        let loads = Arc::new(Semaphore::new(MAX_CONCURRENT_LOADS));
        let mut engine_cfg = cfg.engine.clone();
        engine_cfg.max_peers = engine_cfg.max_peers.max(cfg.capacity as usize);
        engine_cfg.store_max_bytes = content_cache_bytes(cfg.cache_bytes, library.published.len());
        info!(
            contents = library.published.len(),
            per_content_mb = engine_cfg.store_max_bytes >> 20,
            "segment cache"
        );
        let mut swarms = HashMap::new();
        for p in &library.published {
            let manifest = Arc::new(p.manifest.clone());
            info!(content = %p.content_id, segments = manifest.segment_count(), "serving over WebRTC");
            let engine = Engine::new_seed(manifest.clone(), engine_cfg.clone());
            let swarm = Swarm::new(
                p.dir.clone(),
                manifest,
                engine,
                clock,
                stats.clone(),
                loads.clone(),
            );
            swarms.insert(p.content_id.clone(), Arc::new(swarm));
        }
        SwarmHub {
            swarms: RwLock::new(swarms),
            stats,
            cfg,
            slots: Arc::default(),
            clock,
            next_key: AtomicU64::new(1),
        }
    }

    fn swarms(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Swarm>>> {
        self.swarms.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves a VOD content packaged while the seed runs (its share of the
    /// segment cache as if it had been there from the start).
    pub fn add_vod(&self, p: &crate::package::Published) {
        let mut engine_cfg = self.cfg.engine.clone();
        engine_cfg.max_peers = engine_cfg.max_peers.max(self.cfg.capacity as usize);
        engine_cfg.store_max_bytes =
            content_cache_bytes(self.cfg.cache_bytes, self.swarms().len() + 1);
        let manifest = Arc::new(p.manifest.clone());
        let engine = Engine::new_seed(manifest.clone(), engine_cfg);
        let swarm = Swarm::new(
            p.dir.clone(),
            manifest,
            engine,
            self.clock,
            self.stats.clone(),
            Arc::new(Semaphore::new(MAX_CONCURRENT_LOADS)),
        );
        info!(content = %p.content_id, "serving over WebRTC");
        (self.swarms.write().unwrap_or_else(|e| e.into_inner()))
            .insert(p.content_id.clone(), Arc::new(swarm));
    }

    /// Adds a live channel's swarm (replacing one of that name); its
    /// segments come from [`Swarm::publish`].
    pub fn add_live(&self, channel: &str, mut cfg: LiveConfig) -> Arc<Swarm> {
        cfg.max_peers = cfg.max_peers.max(self.cfg.capacity as usize);
        let engine = LiveEngine::new_seed(channel, DEFAULT_PIECE_BYTES, cfg);
        let loads = Arc::new(Semaphore::new(1));
        let swarm = Arc::new(Swarm::new_live(
            engine,
            self.clock,
            self.stats.clone(),
            loads,
        ));
        info!(%channel, "serving live channel over WebRTC");
        (self.swarms.write().unwrap_or_else(|e| e.into_inner()))
            .insert(channel.to_owned(), swarm.clone());
        swarm
    }

    /// Stops serving `content_id` to new connections (a stopped live
    /// channel); connections already open end with their swarm.
    pub fn remove(&self, content_id: &str) -> Option<Arc<Swarm>> {
        let gone = (self.swarms.write().unwrap_or_else(|e| e.into_inner())).remove(content_id);
        if gone.is_some() {
            info!(content = %content_id, "no longer serving over WebRTC");
        }
        gone
    }

    /// Milliseconds since the hub started (the engines' clock).
    pub fn now_ms(&self) -> Millis {
        self.clock.now()
    }

    pub fn has(&self, content_id: &str) -> bool {
        self.swarms().contains_key(content_id)
    }

    pub fn contents(&self) -> Vec<String> {
        let mut v: Vec<String> = self.swarms().keys().cloned().collect();
        v.sort();
        v
    }

    pub fn swarm(&self, content_id: &str) -> Option<Arc<Swarm>> {
        self.swarms().get(content_id).cloned()
    }

    pub fn stats(&self) -> &Arc<SeedStats> {
        &self.stats
    }

    /// Bytes of verified segments the swarms' engines hold in memory now.
    pub fn cache_bytes(&self) -> u64 {
        let swarms: Vec<Arc<Swarm>> = self.swarms().values().cloned().collect();
        (swarms.iter())
            .map(|s| s.engine_tables().stored_bytes as u64)
            .fold(0u64, u64::saturating_add)
    }

    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    /// Takes a slot for a connection from `remote_id` to `content_id`:
    /// refused for an unknown content, a banned id, an id already holding
    /// `max_conns_per_peer` connections, or a seed at capacity. Each refusal
    /// is counted in the stats; the caller logs it.
    pub fn try_admit(&self, content_id: &str, remote_id: &str) -> Result<ViewerSlot, Refusal> {
        let swarm = self
            .swarm(content_id)
            .ok_or_else(|| Refusal::UnknownContent(content_id.to_owned()))?;
        if swarm.is_banned(remote_id) {
            self.stats.refused_banned.fetch_add(1, Relaxed);
            return Err(Refusal::Banned);
        }
        let limits = Limits {
            capacity: self.cfg.capacity,
            per_peer: self.cfg.max_conns_per_peer,
            evict_idle_after_ms: self.cfg.evict_idle_after.as_millis() as Millis,
        };
        slots::admit(&self.slots, limits, &self.stats, self.clock, remote_id)
    }

    /// Runs the engines' timers until the hub is dropped everywhere else.
    pub fn spawn_timers(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(TICK);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                iv.tick().await;
                let Some(hub) = weak.upgrade() else { break };
                let swarms: Vec<Arc<Swarm>> = hub.swarms().values().cloned().collect();
                for s in swarms {
                    s.tick();
                }
            }
        })
    }

    /// Serves one accepted viewer connection until it ends, holding `slot`
    /// (taken by [`SwarmHub::try_admit`] for the viewer's signaling peer id)
    /// until then. Candidates the viewer trickles arrive on `candidates`.
    /// `None` if this hub does not serve `content_id`.
    pub fn attach(
        &self,
        content_id: &str,
        conn: RtcConn,
        candidates: mpsc::UnboundedReceiver<RemoteCandidate>,
        slot: ViewerSlot,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let task = ViewerTask {
            swarm: self.swarm(content_id)?,
            key: self.next_key.fetch_add(1, Relaxed),
            stats: self.stats.clone(),
            handshake_timeout: self.cfg.handshake_timeout,
            conn,
            candidates,
            slot,
        };
        Some(tokio::spawn(task.run()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_shared_by_the_contents_with_a_floor() {
        assert_eq!(content_cache_bytes(256 << 20, 4), 64 << 20);
        // Many contents: each keeps the floor (the total grows, bounded per content).
        assert_eq!(
            content_cache_bytes(256 << 20, 1000),
            MIN_CONTENT_CACHE_BYTES
        );
        // A cache smaller than the floor is used as given.
        assert_eq!(content_cache_bytes(1 << 20, 1), 1 << 20);
        assert_eq!(content_cache_bytes(1 << 20, 0), 1 << 20);
    }
}
