//! Serving segments to viewers over WebRTC: one seed-mode
//! [`swarm_proto::Engine`] per content, loaded with every segment, driven by
//! the events of each viewer's data channel.
//!
//! Each viewer gets its own send queue and sending task, so one slow viewer
//! never blocks the others; a viewer whose queue grows past
//! [`MAX_QUEUED_BYTES`] is dropped. The engine is the only place that
//! decides what to send; this module only moves bytes and time.

use crate::package::Library;
use crate::rtc::{RtcConn, RtcEvent};
use crate::stats::SeedStats;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use swarm_proto::engine::{Config, Engine, Input, Output, PeerKey};
use swarm_proto::{Manifest, Millis};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, error, info, warn};

/// A viewer with more than this many bytes waiting to be sent is dropped.
pub const MAX_QUEUED_BYTES: usize = 16 << 20;
/// How often the engines' timers are checked.
pub const TICK: Duration = Duration::from_millis(100);

/// An ICE candidate trickled by a viewer, relayed by the signaling client.
#[derive(Clone, Debug)]
pub struct RemoteCandidate {
    pub candidate: String,
    pub sdp_mid: Option<String>,
    pub sdp_mline_index: Option<u16>,
}

struct PeerLink {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    drop: Arc<Notify>,
}

/// One content's engine and the viewers connected to it.
pub struct Swarm {
    pub content_id: String,
    engine: Mutex<Engine>,
    peers: Mutex<HashMap<PeerKey, PeerLink>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Swarm {
    /// Feeds one input to the engine and dispatches its outputs. Dispatch
    /// happens under the engine lock (it never blocks: queues are
    /// unbounded), so each viewer's messages keep the engine's order.
    fn drive(&self, now: Millis, input: Input<'_>) {
        let mut engine = lock(&self.engine);
        engine.handle_input(now, input);
        let peers = lock(&self.peers);
        while let Some(out) = engine.poll_output() {
            match out {
                Output::Send { peer, data } => {
                    let Some(link) = peers.get(&peer) else {
                        continue;
                    };
                    let len = data.len();
                    let queued = link.queued.fetch_add(len, Relaxed) + len;
                    if queued > MAX_QUEUED_BYTES {
                        warn!(content = %self.content_id, peer, queued, "viewer is not keeping up, dropping it");
                        link.drop.notify_one();
                    } else if link.tx.send(data).is_err() {
                        link.queued.fetch_sub(len, Relaxed);
                    }
                }
                Output::DropPeer { peer, reason } => {
                    info!(content = %self.content_id, peer, %reason, "engine dropped viewer");
                    if let Some(link) = peers.get(&peer) {
                        link.drop.notify_one();
                    }
                }
                other => debug!(content = %self.content_id, ?other, "seed engine output ignored"),
            }
        }
    }

    fn tick(&self, now: Millis) {
        let due = lock(&self.engine).poll_timeout().is_some_and(|t| t <= now);
        if due {
            self.drive(now, Input::Timeout);
        }
    }

    pub fn engine_stats(&self) -> swarm_proto::Stats {
        lock(&self.engine).stats()
    }

    pub fn viewer_count(&self) -> usize {
        lock(&self.peers).len()
    }
}

/// Holds a viewer's place under the seed's capacity; released on drop.
pub struct ViewerSlot {
    stats: Arc<SeedStats>,
}

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        self.stats.viewers.fetch_sub(1, Relaxed);
    }
}

/// All contents served over WebRTC.
pub struct SwarmHub {
    swarms: HashMap<String, Arc<Swarm>>,
    stats: Arc<SeedStats>,
    capacity: u32,
    start: Instant,
    next_key: AtomicU64,
}

/// Reads a packaged content's segments from disk and builds its seed engine.
pub fn load_engine(manifest: &Manifest, dir: &std::path::Path) -> Result<Engine, String> {
    let manifest = Arc::new(manifest.clone());
    let mut engine = Engine::new_seed(manifest.clone(), Config::default());
    for i in 0..manifest.segment_count() {
        let seg = manifest.segment(i).expect("index below segment count");
        let entry = manifest.entry(seg);
        let data = std::fs::read(dir.join(&entry.uri))
            .map_err(|e| format!("cannot read {}: {e}", entry.uri))?;
        engine
            .insert_verified(seg, data)
            .map_err(|e| format!("{}: {e}", entry.uri))?;
    }
    Ok(engine)
}

impl SwarmHub {
    /// Loads every published content (segments read from disk once). A
    /// content whose files do not match its manifest is logged and left
    /// out (it is still listed over HTTP only if the caller chooses so).
    pub fn load(library: &Library, stats: Arc<SeedStats>, capacity: u32) -> SwarmHub {
        let mut swarms = HashMap::new();
        for p in &library.published {
            match load_engine(&p.manifest, &p.dir) {
                Ok(engine) => {
                    info!(content = %p.content_id, segments = p.manifest.segments.len(), "serving over WebRTC");
                    swarms.insert(
                        p.content_id.clone(),
                        Arc::new(Swarm {
                            content_id: p.content_id.clone(),
                            engine: Mutex::new(engine),
                            peers: Mutex::new(HashMap::new()),
                        }),
                    );
                }
                Err(e) => error!(content = %p.content_id, dir = %p.dir.display(), error = %e,
                    "packaged files do not match the manifest; not served over WebRTC (delete the folder to repackage)"),
            }
        }
        SwarmHub {
            swarms,
            stats,
            capacity,
            start: Instant::now(),
            next_key: AtomicU64::new(1),
        }
    }

    /// Milliseconds since the hub started (the engines' clock).
    pub fn now_ms(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    pub fn has(&self, content_id: &str) -> bool {
        self.swarms.contains_key(content_id)
    }

    pub fn contents(&self) -> Vec<String> {
        let mut v: Vec<String> = self.swarms.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn swarm(&self, content_id: &str) -> Option<&Arc<Swarm>> {
        self.swarms.get(content_id)
    }

    pub fn stats(&self) -> &Arc<SeedStats> {
        &self.stats
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Takes a viewer place if the seed is under capacity.
    pub fn try_admit(&self) -> Option<ViewerSlot> {
        let cap = self.capacity as u64;
        self.stats
            .viewers
            .fetch_update(Relaxed, Relaxed, |v| (v < cap).then_some(v + 1))
            .ok()
            .map(|_| {
                self.stats.viewers_total.fetch_add(1, Relaxed);
                ViewerSlot {
                    stats: self.stats.clone(),
                }
            })
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
                let now = hub.now_ms();
                for s in hub.swarms.values() {
                    s.tick(now);
                }
            }
        })
    }

    /// Serves one accepted viewer connection until it closes. Candidates
    /// trickled by the viewer arrive on `candidates`.
    pub fn attach(
        self: &Arc<Self>,
        content_id: &str,
        conn: RtcConn,
        candidates: mpsc::UnboundedReceiver<RemoteCandidate>,
        slot: ViewerSlot,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let swarm = self.swarms.get(content_id)?.clone();
        let key = self.next_key.fetch_add(1, Relaxed);
        let hub = self.clone();
        Some(tokio::spawn(async move {
            hub.run_conn(swarm, key, conn, candidates, slot).await
        }))
    }

    async fn run_conn(
        self: Arc<Self>,
        swarm: Arc<Swarm>,
        key: PeerKey,
        mut conn: RtcConn,
        mut candidates: mpsc::UnboundedReceiver<RemoteCandidate>,
        slot: ViewerSlot,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let drop_now = Arc::new(Notify::new());
        lock(&swarm.peers).insert(
            key,
            PeerLink {
                tx,
                queued: queued.clone(),
                drop: drop_now.clone(),
            },
        );

        let sender = conn.sender.clone();
        let stats = self.stats.clone();
        let send_drop = drop_now.clone();
        let send_task = tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                let len = data.len();
                let res = sender.send(data).await;
                queued.fetch_sub(len, Relaxed);
                match res {
                    Ok(()) => {
                        stats.rtc_bytes.fetch_add(len as u64, Relaxed);
                    }
                    Err(e) => {
                        debug!(peer = key, error = %e, "send failed, closing viewer");
                        send_drop.notify_one();
                        break;
                    }
                }
            }
        });

        info!(content = %swarm.content_id, peer = key, conn = conn.id(), "viewer connecting");
        let mut opened = false;
        let mut candidates_open = true;
        loop {
            tokio::select! {
                ev = conn.events.recv() => match ev {
                    Some(RtcEvent::Open) if !opened => {
                        opened = true;
                        info!(content = %swarm.content_id, peer = key, "viewer data channel open");
                        swarm.drive(self.now_ms(), Input::PeerConnected { peer: key, is_seed: false });
                    }
                    Some(RtcEvent::Open) => {}
                    Some(RtcEvent::Message(data)) => {
                        if opened {
                            swarm.drive(self.now_ms(), Input::PeerData { peer: key, data: &data });
                        }
                    }
                    Some(RtcEvent::Closed) | None => break,
                },
                c = candidates.recv(), if candidates_open => match c {
                    Some(c) => {
                        if let Err(e) = conn.add_remote_candidate(&c.candidate, c.sdp_mid, c.sdp_mline_index).await {
                            debug!(peer = key, error = %e, "remote candidate refused");
                        }
                    }
                    None => candidates_open = false,
                },
                _ = drop_now.notified() => break,
            }
        }
        lock(&swarm.peers).remove(&key);
        if opened {
            swarm.drive(self.now_ms(), Input::PeerClosed { peer: key });
        }
        conn.sender.close().await;
        send_task.abort();
        info!(content = %swarm.content_id, peer = key, "viewer gone");
        drop(slot);
    }
}
