//! One content's seed engine and its driver: inputs in, outputs dispatched
//! to the viewers' queues, and disk reads for `Output::Load`.
//!
//! Invariants: every input is fed with the engine and the viewer links both
//! locked (`engine` before `peers`, the only order ever taken), and all its
//! outputs are dispatched before the next input, so each viewer's messages
//! keep the engine's order; dispatch never blocks (queues are unbounded and
//! bounded by [`MAX_QUEUED_BYTES`](super::MAX_QUEUED_BYTES) per viewer). A
//! segment file is read with the lock released, at most
//! [`MAX_CONCURRENT_LOADS`](super::MAX_CONCURRENT_LOADS) at a time, and never
//! beyond its manifest size; the engine verifies what was read.

use super::lock;
use super::viewer::{Ending, PeerLink};
use crate::stats::SeedStats;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;
use swarm_proto::engine::{Engine, Input, Output, PeerKey, Tables};
use swarm_proto::live::{LiveEngine, LiveMeta};
use swarm_proto::{AnyEngine, Manifest, Millis, SegmentId};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use tracing::{debug, error};

/// Milliseconds since the hub started: the engines' clock.
#[derive(Clone, Copy, Debug)]
pub(super) struct Clock(pub Instant);

impl Clock {
    pub fn now(&self) -> Millis {
        self.0.elapsed().as_millis() as Millis
    }
}

/// Where a video-on-demand swarm reads its segments.
struct Files {
    /// Folder of the packaged files.
    dir: PathBuf,
    manifest: Arc<Manifest>,
}

/// One content's engine and the viewers connected to it.
pub struct Swarm {
    pub content_id: String,
    /// `None` for a live channel.
    files: Option<Files>,
    clock: Clock,
    stats: Arc<SeedStats>,
    loads: Arc<Semaphore>,
    engine: Mutex<AnyEngine>,
    peers: Mutex<HashMap<PeerKey, PeerLink>>,
}

/// The engine and the viewer links of one swarm, both locked: feeds inputs
/// and dispatches every output before the next input.
struct Driver<'a> {
    swarm: &'a Arc<Swarm>,
    now: Millis,
    engine: MutexGuard<'a, AnyEngine>,
    peers: MutexGuard<'a, HashMap<PeerKey, PeerLink>>,
}

impl Driver<'_> {
    fn feed(&mut self, input: Input<'_>) {
        self.engine.handle_input(self.now, input);
        self.dispatch_all();
    }

    fn dispatch_all(&mut self) {
        while let Some(out) = self.engine.poll_output() {
            self.dispatch(out);
        }
    }

    fn dispatch(&mut self, out: Output) {
        match out {
            Output::Send { peer, data } => {
                if let Some(link) = self.peers.get(&peer) {
                    link.push(data);
                }
            }
            Output::Load { seg } => self.swarm.spawn_load(seg),
            Output::DropPeer { peer, reason } => {
                if let Some(link) = self.peers.get(&peer) {
                    link.end(Ending::Dropped(reason));
                }
            }
            Output::ClosePeer { peer, reason } => {
                if let Some(link) = self.peers.get(&peer) {
                    link.end(Ending::Closed(reason));
                }
            }
            other => {
                debug!(content = %self.swarm.content_id, ?other, "seed engine output ignored")
            }
        }
    }
}

impl Swarm {
    pub(super) fn new(
        dir: PathBuf,
        manifest: Arc<Manifest>,
        engine: Engine,
        clock: Clock,
        stats: Arc<SeedStats>,
        loads: Arc<Semaphore>,
    ) -> Swarm {
        Swarm {
            content_id: manifest.content_id().to_owned(),
            files: Some(Files { dir, manifest }),
            clock,
            stats,
            loads,
            engine: Mutex::new(AnyEngine::Vod(engine)),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// A live channel's swarm: segments come from [`Swarm::publish`].
    pub(super) fn new_live(
        engine: LiveEngine,
        clock: Clock,
        stats: Arc<SeedStats>,
        loads: Arc<Semaphore>,
    ) -> Swarm {
        Swarm {
            content_id: engine.manifest().channel.clone(),
            files: None,
            clock,
            stats,
            loads,
            engine: Mutex::new(AnyEngine::Live(engine)),
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Live: a new signed segment, pushed and announced to the viewers.
    pub fn publish(self: &Arc<Self>, meta: LiveMeta, data: Arc<[u8]>) {
        let mut d = self.driver();
        let now = d.now;
        if let AnyEngine::Live(e) = &mut *d.engine {
            e.publish(now, meta, data);
        }
        d.dispatch_all();
    }

    fn driver(self: &Arc<Self>) -> Driver<'_> {
        let engine = lock(&self.engine);
        let peers = lock(&self.peers);
        Driver {
            swarm: self,
            now: self.clock.now(),
            engine,
            peers,
        }
    }

    pub(super) fn drive(self: &Arc<Self>, input: Input<'_>) {
        self.driver().feed(input);
    }

    pub(super) fn add_link(&self, peer: PeerKey, link: PeerLink) {
        lock(&self.peers).insert(peer, link);
    }

    pub(super) fn remove_link(&self, peer: PeerKey) {
        lock(&self.peers).remove(&peer);
    }

    pub(super) fn note_handshake_timeout(&self) {
        self.stats.handshake_timeouts.fetch_add(1, Relaxed);
    }

    /// A binary message from a viewer, after the size of its queue.
    pub(super) fn on_data(self: &Arc<Self>, peer: PeerKey, data: &[u8]) {
        let mut d = self.driver();
        let bytes = d.peers.get(&peer).map_or(0, PeerLink::queued);
        d.feed(Input::PeerBuffered { peer, bytes });
        d.feed(Input::PeerData { peer, data });
    }

    /// Reports every viewer's queue and runs the engine's timer when due.
    pub(super) fn tick(self: &Arc<Self>) {
        let mut d = self.driver();
        let queues: Vec<(PeerKey, u64)> = d.peers.iter().map(|(&k, l)| (k, l.queued())).collect();
        for (peer, bytes) in queues {
            d.feed(Input::PeerBuffered { peer, bytes });
        }
        let now = d.now;
        if d.engine.poll_timeout().is_some_and(|t| t <= now) {
            d.feed(Input::Timeout);
        }
    }

    /// Reads one segment file and feeds the result back to the engine,
    /// which verifies it.
    fn spawn_load(self: &Arc<Self>, seg: SegmentId) {
        let swarm = self.clone();
        let Some(files) = &self.files else {
            return error!(content = %self.content_id, %seg, "a live swarm asked for a disk read");
        };
        let entry = files.manifest.entry(seg).clone();
        let path = files.dir.join(&entry.uri);
        tokio::spawn(async move {
            let read = {
                let _permit = swarm.loads.acquire().await;
                read_exactly(&path, entry.size).await
            };
            match read {
                Ok(data) => {
                    swarm.stats.segment_loads.fetch_add(1, Relaxed);
                    let mut d = swarm.driver();
                    let failures = d.engine.stats().verify_failures;
                    d.feed(Input::Loaded { seg, data });
                    if d.engine.stats().verify_failures > failures {
                        swarm.stats.segment_load_failures.fetch_add(1, Relaxed);
                        error!(content = %swarm.content_id, %seg, file = %path.display(),
                            "segment file does not match its manifest hash; requests for it are rejected (delete the content's folder to repackage)");
                    }
                }
                Err(e) => {
                    swarm.stats.segment_load_failures.fetch_add(1, Relaxed);
                    error!(content = %swarm.content_id, %seg, file = %path.display(), error = %e,
                        "cannot read segment file; requests for it are rejected");
                    swarm.drive(Input::LoadFailed { seg });
                }
            }
        });
    }

    pub fn engine_stats(&self) -> swarm_proto::Stats {
        lock(&self.engine).stats()
    }

    /// Sizes of the engine's tables (its disk cache among them).
    pub fn engine_tables(&self) -> Tables {
        lock(&self.engine).tables()
    }

    /// Whether the engine banned this signaling peer id.
    pub fn is_banned(&self, remote_id: &str) -> bool {
        lock(&self.engine).is_banned(remote_id)
    }

    /// Viewer connections attached (connecting or open).
    pub fn viewer_count(&self) -> usize {
        lock(&self.peers).len()
    }
}

/// Reads a file that must hold exactly `size` bytes, never reading more
/// than `size + 1`.
async fn read_exactly(path: &Path, size: u64) -> std::io::Result<Vec<u8>> {
    let f = tokio::fs::File::open(path).await?;
    let mut data = Vec::with_capacity(size as usize);
    f.take(size + 1).read_to_end(&mut data).await?;
    match (data.len() as u64).cmp(&size) {
        std::cmp::Ordering::Equal => Ok(data),
        std::cmp::Ordering::Greater => Err(std::io::Error::other(format!(
            "file is larger than the {size} bytes its manifest says"
        ))),
        std::cmp::Ordering::Less => Err(std::io::Error::other(format!(
            "file has {} bytes, its manifest says {size}",
            data.len()
        ))),
    }
}
