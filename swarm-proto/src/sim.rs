//! A deterministic swarm simulator: real [`Engine`]s (viewers and a seed)
//! exchanging real wire messages over simulated links, on a virtual clock.
//!
//! It always handles the earliest pending event (ties in insertion order),
//! so a run is a pure function of its [`SimConfig`]. Links have latency and
//! a per-sender upload rate; the HTTP origin has latency and a rate; each
//! viewer plays back in real time once its first segment is appended and
//! stalls when its buffer runs dry.

use crate::engine::{Config, Engine, Input, MediaEvent, Output, PeerKey, Resource};
use crate::ids::SegmentId;
use crate::manifest::{Manifest, Timeline};
use crate::wire::{self, Message};
use crate::Millis;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub viewers: usize,
    pub join_gap_ms: u64,
    pub watch_ms: u64,
    /// One-way latency between peers.
    pub link_latency_ms: u64,
    /// Upload rate of every viewer, bytes per second.
    pub viewer_upload_bps: u64,
    /// Time to open a data channel after a viewer joins.
    pub connect_ms: u64,
    pub http_latency_ms: u64,
    pub http_bps: u64,
    /// Whether a seed peer (WebRTC) is in the swarm besides HTTP.
    pub seed_peer: bool,
    /// This viewer (index) flips a bit in every piece it uploads.
    pub corrupt_viewer: Option<usize>,
    /// This viewer (index) fetches nothing and tells every node, every
    /// step, that it is fetching the ten segments from its playhead on.
    pub lying_fetcher: Option<usize>,
    pub engine: Config,
    pub step_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            viewers: 4,
            join_gap_ms: 3000,
            watch_ms: 60_000,
            link_latency_ms: 5,
            viewer_upload_bps: 10_000_000,
            connect_ms: 200,
            http_latency_ms: 10,
            http_bps: 50_000_000,
            seed_peer: true,
            corrupt_viewer: None,
            lying_fetcher: None,
            engine: Config::default(),
            step_ms: 100,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ViewerResult {
    pub startup_ms: Option<u64>,
    pub played_ms: u64,
    pub stalls: u32,
    pub stalled_ms: u64,
    pub stats: crate::engine::Stats,
    pub dropped: Vec<usize>,
}

#[derive(Clone, Debug, Default)]
pub struct SimResult {
    pub viewers: Vec<ViewerResult>,
    pub seed_http_bytes: u64,
    pub seed_rtc_bytes: u64,
    /// Bytes of one copy of what a viewer watched (`watch_ms` of media).
    pub copy_bytes: u64,
    /// Seed egress (HTTP and WebRTC) per segment: (segment, viewer index,
    /// bytes, over HTTP), in the order it left the seed.
    pub seed_log: Vec<(u32, usize, u64, bool)>,
}

impl SimResult {
    pub fn downloaded(&self) -> u64 {
        self.viewers
            .iter()
            .map(|v| v.stats.bytes_from_peers + v.stats.bytes_from_seed + v.stats.bytes_from_http)
            .sum()
    }
    pub fn p2p_share(&self) -> f64 {
        let p2p: u64 = self.viewers.iter().map(|v| v.stats.bytes_from_peers).sum();
        p2p as f64 / self.downloaded().max(1) as f64
    }
    pub fn seed_egress_copies(&self) -> f64 {
        (self.seed_http_bytes + self.seed_rtc_bytes) as f64 / self.copy_bytes.max(1) as f64
    }
    /// Media bytes the seed sent (HTTP and WebRTC) per segment.
    pub fn seed_bytes_by_segment(&self) -> Vec<u64> {
        let mut v = Vec::new();
        for &(seg, _, n, _) in &self.seed_log {
            let i = seg as usize;
            if v.len() <= i {
                v.resize(i + 1, 0);
            }
            v[i] += n;
        }
        v
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Join(usize),
    /// The signal server's answer to a join: how many viewers it listed.
    Joined(usize, usize),
    Connect(usize, usize),
    Deliver {
        from: usize,
        to: usize,
        data: Vec<u8>,
    },
    Http {
        to: usize,
        res: Resource,
    },
    Loaded {
        seg: u32,
    },
    Closed {
        to: usize,
        from: usize,
    },
    Tick(usize),
}

/// Node 0 is the seed, nodes 1..=viewers are viewers.
struct Node {
    engine: Engine,
    joined_at: Option<Millis>,
    started_at: Option<Millis>,
    position_ms: u64,
    buffered_to_ms: u64,
    stalled: bool,
    result: ViewerResult,
    uplink_free_at: Millis,
    left: bool,
}

pub fn run(manifest: Arc<Manifest>, data: &[Vec<u8>], cfg: &SimConfig) -> SimResult {
    let seed = Engine::new_seed(manifest.clone(), cfg.engine.clone());
    let mk = |engine| Node {
        engine,
        joined_at: None,
        started_at: None,
        position_ms: 0,
        buffered_to_ms: 0,
        stalled: false,
        result: ViewerResult::default(),
        uplink_free_at: 0,
        left: false,
    };
    let timeline = Timeline::new(&manifest);
    let mut nodes = vec![mk(seed)];
    for _ in 0..cfg.viewers {
        nodes.push(mk(Engine::new(manifest.clone(), cfg.engine.clone())));
    }
    let mut q: BinaryHeap<Reverse<(Millis, u64, Ev)>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |q: &mut BinaryHeap<_>, t: Millis, ev: Ev| {
        seq += 1;
        q.push(Reverse((t, seq, ev)));
    };
    for v in 1..=cfg.viewers {
        push(&mut q, (v as u64 - 1) * cfg.join_gap_ms, Ev::Join(v));
    }
    let end = (cfg.viewers as u64 - 1) * cfg.join_gap_ms + cfg.watch_ms + 1;
    let mut res = SimResult {
        copy_bytes: copy_bytes(&manifest, cfg.watch_ms),
        ..Default::default()
    };
    let liar = cfg.lying_fetcher.map(|l| l + 1);
    let mut events = 0u64;
    let mut res_acc = 0u64;
    let res_bytes = |acc: &mut u64, n: u64| *acc += n;
    while let Some(Reverse((now, _, ev))) = q.pop() {
        events += 1;
        assert!(events < 50_000_000, "simulation did not converge");
        if now > end {
            break;
        }
        let mut touched = Vec::new();
        match ev {
            Ev::Join(v) => {
                nodes[v].joined_at = Some(now);
                nodes[v]
                    .engine
                    .handle_input(now, Input::Playhead { position_ms: 0 });
                touched.push(v);
                let others: Vec<usize> = (0..v)
                    .filter(|&o| (o > 0 || cfg.seed_peer) && !nodes[o].left)
                    .collect();
                let listed = others.iter().filter(|&&o| o > 0).count();
                push(&mut q, now + 2 * cfg.link_latency_ms, Ev::Joined(v, listed));
                for o in others {
                    push(&mut q, now + cfg.connect_ms, Ev::Connect(v, o));
                }
                push(&mut q, now + cfg.step_ms, Ev::Tick(v));
            }
            Ev::Joined(v, viewers) => {
                if nodes[v].left {
                    continue;
                }
                nodes[v].engine.handle_input(now, Input::Joined { viewers });
                touched.push(v);
            }
            Ev::Connect(a, b) => {
                if nodes[a].left || nodes[b].left {
                    continue;
                }
                let (ida, idb) = (format!("node-{a}"), format!("node-{b}"));
                nodes[a].engine.handle_input(
                    now,
                    Input::PeerConnected {
                        peer: b as PeerKey,
                        remote_id: &idb,
                        is_seed: b == 0,
                    },
                );
                nodes[b].engine.handle_input(
                    now,
                    Input::PeerConnected {
                        peer: a as PeerKey,
                        remote_id: &ida,
                        is_seed: a == 0,
                    },
                );
                touched.extend([a, b]);
                for (l, o) in [(a, b), (b, a)] {
                    if Some(l) == liar {
                        for data in lies(&manifest, nodes[l].position_ms) {
                            push(
                                &mut q,
                                now + cfg.link_latency_ms,
                                Ev::Deliver {
                                    from: l,
                                    to: o,
                                    data,
                                },
                            );
                        }
                    }
                }
            }
            Ev::Deliver { from, to, data } => {
                if nodes[to].left || nodes[to].result.dropped.contains(&from) {
                    continue;
                }
                // What `to` still has queued on its uplink (shared by all its peers).
                let rate = if to == 0 {
                    cfg.http_bps
                } else {
                    cfg.viewer_upload_bps
                };
                let backlog = nodes[to].uplink_free_at.saturating_sub(now) * rate / 1000;
                nodes[to].engine.handle_input(
                    now,
                    Input::PeerBuffered {
                        peer: from as PeerKey,
                        bytes: backlog,
                    },
                );
                nodes[to].engine.handle_input(
                    now,
                    Input::PeerData {
                        peer: from as PeerKey,
                        data: &data,
                    },
                );
                touched.push(to);
            }
            Ev::Http { to, res } => {
                let body = match res {
                    Resource::Init => SYNTHETIC_INIT.to_vec(),
                    Resource::Segment(s) => data[s.index()].clone(),
                };
                nodes[to]
                    .engine
                    .handle_input(now, Input::HttpDone { res, data: body });
                touched.push(to);
            }
            Ev::Loaded { seg } => {
                let s = manifest.segment(seg).unwrap();
                nodes[0].engine.handle_input(
                    now,
                    Input::Loaded {
                        seg: s,
                        data: data[seg as usize].clone(),
                    },
                );
                touched.push(0);
            }
            Ev::Closed { to, from } => {
                if !nodes[to].left {
                    nodes[to].engine.handle_input(
                        now,
                        Input::PeerClosed {
                            peer: from as PeerKey,
                        },
                    );
                    touched.push(to);
                }
            }
            Ev::Tick(v) => {
                if nodes[v].left {
                    continue;
                }
                let n = &mut nodes[v];
                let watched = now - n.joined_at.unwrap();
                if watched >= cfg.watch_ms {
                    n.left = true;
                    n.result.stats = n.engine.stats();
                    for o in (0..nodes.len()).filter(|&o| o != v) {
                        nodes[o]
                            .engine
                            .handle_input(now, Input::PeerClosed { peer: v as PeerKey });
                        touched.push(o);
                    }
                } else {
                    if n.started_at.is_some() {
                        let want = n.position_ms + cfg.step_ms;
                        if want <= n.buffered_to_ms {
                            n.position_ms = want;
                            if n.stalled {
                                n.stalled = false;
                                n.engine
                                    .handle_input(now, Input::Media(MediaEvent::Playing));
                            }
                        } else {
                            n.position_ms = n.buffered_to_ms;
                            if !n.stalled && n.position_ms < manifest.duration_ms() {
                                n.stalled = true;
                                n.engine
                                    .handle_input(now, Input::Media(MediaEvent::Waiting));
                            }
                        }
                    }
                    let pos = n.position_ms;
                    n.engine
                        .handle_input(now, Input::Playhead { position_ms: pos });
                    touched.push(v);
                    if Some(v) == liar {
                        let joined = |o: usize| o == 0 || nodes[o].joined_at.is_some();
                        for o in (0..nodes.len()).filter(|&o| o != v && joined(o) && !nodes[o].left)
                        {
                            for data in lies(&manifest, pos) {
                                push(
                                    &mut q,
                                    now + cfg.link_latency_ms,
                                    Ev::Deliver {
                                        from: v,
                                        to: o,
                                        data,
                                    },
                                );
                            }
                        }
                    }
                    push(&mut q, now + cfg.step_ms, Ev::Tick(v));
                }
            }
        }
        for i in touched {
            while let Some(out) = nodes[i].engine.poll_output() {
                // The liar asks for nothing.
                if Some(i) == liar {
                    match &out {
                        Output::HttpFetch { .. } => continue,
                        Output::Send { data, .. }
                            if matches!(wire::decode(data), Ok(Message::Request { .. })) =>
                        {
                            continue
                        }
                        _ => {}
                    }
                }
                match out {
                    Output::Send { peer, mut data } => {
                        let to = peer as usize;
                        if i == 0 {
                            let (seg, n) = piece_len(&data);
                            res.seed_rtc_bytes += n;
                            if n > 0 {
                                res.seed_log.push((seg, to - 1, n, false));
                            }
                        }
                        if Some(i) == cfg.corrupt_viewer.map(|c| c + 1) {
                            if let Ok(Message::Piece { .. }) = wire::decode(&data) {
                                let last = data.len() - 1;
                                data[last] ^= 0x55;
                            }
                        }
                        let rate = if i == 0 {
                            cfg.http_bps
                        } else {
                            cfg.viewer_upload_bps
                        };
                        let start = nodes[i].uplink_free_at.max(now);
                        let done = start + data.len() as u64 * 1000 / rate.max(1);
                        nodes[i].uplink_free_at = done;
                        push(
                            &mut q,
                            done + cfg.link_latency_ms,
                            Ev::Deliver { from: i, to, data },
                        );
                    }
                    Output::HttpFetch { res: what } => {
                        let res_ = what;
                        let size = match res_ {
                            Resource::Init => SYNTHETIC_INIT.len() as u64,
                            Resource::Segment(s) => data[s.index()].len() as u64,
                        };
                        res_bytes(&mut res_acc, size);
                        if let Resource::Segment(s) = res_ {
                            res.seed_log.push((s.get(), i - 1, size, true));
                        }
                        push(
                            &mut q,
                            now + cfg.http_latency_ms + size * 1000 / cfg.http_bps,
                            Ev::Http { to: i, res: res_ },
                        );
                    }
                    Output::Load { seg } => push(&mut q, now + 1, Ev::Loaded { seg: seg.get() }),
                    Output::AppendInit { .. }
                    | Output::RemoveMedia { .. }
                    | Output::EndOfStream => {}
                    // Live-channel outputs: a video-on-demand engine has none.
                    Output::CheckSignature { .. }
                    | Output::SeekTo { .. }
                    | Output::RefreshLiveManifest
                    | Output::PlaybackRate { .. } => {}
                    Output::Append { seg, .. } => {
                        let n = &mut nodes[i];
                        n.buffered_to_ms =
                            timeline.start_ms(seg) + manifest.entry(seg).duration_ms as u64;
                        if n.started_at.is_none() {
                            n.started_at = Some(now);
                            n.engine
                                .handle_input(now, Input::Media(MediaEvent::Playing));
                        }
                    }
                    Output::DropPeer { peer, .. } => {
                        nodes[i].result.dropped.push(peer as usize);
                        push(
                            &mut q,
                            now + cfg.link_latency_ms,
                            Ev::Closed {
                                to: peer as usize,
                                from: i,
                            },
                        );
                    }
                    Output::ClosePeer { peer, .. } => {
                        push(
                            &mut q,
                            now + cfg.link_latency_ms,
                            Ev::Closed {
                                to: peer as usize,
                                from: i,
                            },
                        );
                    }
                }
            }
        }
    }
    res.seed_http_bytes = res_acc;
    for n in nodes.iter_mut().skip(1) {
        n.result.played_ms = n.position_ms;
        if !n.left {
            n.result.stats = n.engine.stats();
        }
        let st = &n.result.stats;
        (n.result.startup_ms, n.result.stalls, n.result.stalled_ms) =
            (st.startup_ms, st.stalls, st.stalled_ms);
        res.viewers.push(std::mem::take(&mut n.result));
    }
    res
}

/// What [`SimConfig::lying_fetcher`] says: that it fetches the ten
/// segments from `pos` on.
fn lies(m: &Manifest, pos: u64) -> Vec<Vec<u8>> {
    let first = m.segment_at(pos).get();
    let last = (first + 10).min(m.segment_count());
    (first..last)
        .map(|seg| wire::encode(&Message::Fetching { seg }))
        .collect()
}

fn piece_len(data: &[u8]) -> (u32, u64) {
    match wire::decode(data) {
        Ok(Message::Piece { seg, data, .. }) => (seg, data.len() as u64),
        _ => (0, 0),
    }
}

/// Bytes of the segments covering the first `watch_ms` of the content.
pub fn copy_bytes(m: &Manifest, watch_ms: u64) -> u64 {
    let last = m.segment_at(watch_ms.saturating_sub(1)).get();
    (0..=last).map(|i| m.entry(SegmentId(i)).size).sum()
}

/// The init segment of [`synthetic_content`].
pub const SYNTHETIC_INIT: [u8; 16] = [0; 16];

/// Synthetic content for tests and benchmarks: segments of the given sizes,
/// 2 s each, with deterministic bytes, and a manifest over them (its init
/// segment is [`SYNTHETIC_INIT`]).
pub fn synthetic_content(
    segment_sizes: &[usize],
    piece_size: u32,
) -> (Arc<Manifest>, Vec<Vec<u8>>) {
    use crate::manifest::{sha256_hex, ManifestParts, SegmentEntry, MANIFEST_VERSION};
    let data: Vec<Vec<u8>> = segment_sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| (0..n).map(|j| (i * 31 + j * 7 + j / 251) as u8).collect())
        .collect();
    let entry = |uri: String, d: &[u8], duration_ms| SegmentEntry {
        uri,
        size: d.len() as u64,
        sha256: sha256_hex(d),
        duration_ms,
    };
    let m = ManifestParts {
        version: MANIFEST_VERSION,
        content_id: "synthetic".into(),
        title: "synthetic".into(),
        playlist: "index.m3u8".into(),
        mime: "video/mp4; codecs=\"avc1.42c01e\"".into(),
        piece_size,
        init: entry("init.mp4".into(), &SYNTHETIC_INIT, 0),
        segments: data
            .iter()
            .enumerate()
            .map(|(i, d)| entry(format!("seg_{i:05}.m4s"), d, 2000))
            .collect(),
    };
    (
        Arc::new(m.validate().expect("synthetic manifest is valid")),
        data,
    )
}
