//! A deterministic live-swarm simulator: a seed producing one signed
//! segment every `segment_ms`, viewers joining `join_gap_ms` apart, real
//! [`LiveEngine`]s exchanging real wire messages over links with latency and
//! a per-sender upload rate, on a virtual clock. Each viewer plays in real
//! time (at the rate its engine sets) once its first segment is appended,
//! and stalls when its buffer runs dry. Signatures are real Ed25519.
//!
//! It reports the figures `npm run bench:live` reports: P2P share, seed
//! egress in stream copies, live latency (wall clock minus capture time of
//! the frame at the playhead, sampled every step), startup and stalls.

use super::sign::{verify, LiveSigner};
use super::{LiveConfig, LiveEngine, LiveManifest, LiveMeta, LIVE_MANIFEST_VERSION};
use crate::engine::{Input, MediaEvent, Output, PeerKey, Resource};
use crate::manifest::{sha256_hex, SegmentEntry};
use crate::Millis;
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct LiveSimConfig {
    pub viewers: usize,
    pub join_gap_ms: u64,
    /// How long each viewer watches after joining.
    pub watch_ms: u64,
    pub segment_ms: u32,
    /// Stream bit rate, bits per second.
    pub bitrate_bps: u64,
    /// Capture to segment available at the seed, beyond the segment itself.
    pub encoder_delay_ms: u64,
    pub link_latency_ms: u64,
    /// Upload rate of every node (the seed included), bytes per second.
    pub upload_bps: u64,
    pub connect_ms: u64,
    pub http_latency_ms: u64,
    pub engine: LiveConfig,
    pub step_ms: u64,
    /// This viewer (index) flips a bit in every segment it uploads.
    pub corrupt_viewer: Option<usize>,
}

impl Default for LiveSimConfig {
    fn default() -> Self {
        LiveSimConfig {
            viewers: 6,
            join_gap_ms: 2000,
            watch_ms: 45_000,
            segment_ms: 1000,
            bitrate_bps: 1_000_000,
            encoder_delay_ms: 100,
            link_latency_ms: 5,
            upload_bps: 10_000_000,
            connect_ms: 200,
            http_latency_ms: 10,
            engine: LiveConfig::default(),
            step_ms: 100,
            corrupt_viewer: None,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct LiveViewerResult {
    pub stats: crate::engine::Stats,
    pub latencies: Vec<u64>,
    pub dropped: Vec<usize>,
}

#[derive(Clone, Debug, Default)]
pub struct LiveSimResult {
    pub viewers: Vec<LiveViewerResult>,
    /// Media bytes the seed sent, over WebRTC and HTTP.
    pub seed_bytes: u64,
    /// Bytes of one copy of the stream over the run.
    pub copy_bytes: u64,
}

impl LiveSimResult {
    pub fn p2p_share(&self) -> f64 {
        let (mut p2p, mut all) = (0u64, 0u64);
        for v in &self.viewers {
            p2p += v.stats.bytes_from_peers;
            all += v.stats.bytes_from_peers + v.stats.bytes_from_seed + v.stats.bytes_from_http;
        }
        p2p as f64 / all.max(1) as f64
    }
    pub fn seed_egress_copies(&self) -> f64 {
        self.seed_bytes as f64 / self.copy_bytes.max(1) as f64
    }
    /// Median and maximum of every latency sample of every viewer.
    pub fn latency_ms(&self) -> (u64, u64) {
        let mut all: Vec<u64> = self
            .viewers
            .iter()
            .flat_map(|v| v.latencies.clone())
            .collect();
        all.sort_unstable();
        (
            all.get(all.len() / 2).copied().unwrap_or(0),
            all.last().copied().unwrap_or(0),
        )
    }
    pub fn stalls(&self) -> u32 {
        self.viewers.iter().map(|v| v.stats.stalls).sum()
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Produce(u32),
    Join(usize),
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
    /// `live.json` as it was when `produced` segments existed.
    Recent {
        to: usize,
        produced: usize,
    },
    Checked {
        to: usize,
        id: u64,
        ok: bool,
    },
    Tick(usize),
}

struct Node {
    engine: LiveEngine,
    joined: bool,
    left: bool,
    position_ms: u64,
    rate: u32,
    /// Appended media ranges (start, end), in append order.
    buffered: Vec<(u64, u64)>,
    seeked: bool,
    playing: bool,
    uplink_free_at: Millis,
    result: LiveViewerResult,
}

/// Wall clock at simulated time 0.
const T0: u64 = 1_800_000_000_000;

pub fn run(cfg: &LiveSimConfig) -> LiveSimResult {
    let signer = LiveSigner::from_secret([42; 32]);
    let pk = signer.public_key();
    let channel = "sim-live";
    let init = vec![1u8; 800];
    let init_sha = sha256_hex(&init);
    let seg_bytes = (cfg.bitrate_bps / 8 * cfg.segment_ms as u64 / 1000).max(1) as usize;
    let base = LiveManifest {
        version: LIVE_MANIFEST_VERSION,
        channel: channel.into(),
        title: "sim".into(),
        mime: "video/mp4".into(),
        piece_size: 16 * 1024,
        segment_ms: cfg.segment_ms,
        playlist: "index.m3u8".into(),
        init: SegmentEntry {
            uri: "init.mp4".into(),
            size: init.len() as u64,
            sha256: init_sha.clone(),
            duration_ms: 0,
        },
        init_sig: signer.sign_init(channel, &init_sha),
        public_key: pk,
        recent: vec![],
        interrupted: None,
    };
    let mut seg_data: Vec<Arc<[u8]>> = Vec::new();
    let mut metas: Vec<LiveMeta> = Vec::new();
    let mk = |engine| Node {
        engine,
        joined: false,
        left: false,
        position_ms: 0,
        rate: 1000,
        buffered: Vec::new(),
        seeked: false,
        playing: false,
        uplink_free_at: 0,
        result: LiveViewerResult::default(),
    };
    let mut nodes = vec![mk(LiveEngine::new_seed(
        channel,
        base.piece_size,
        cfg.engine.clone(),
    ))];
    let mut q: BinaryHeap<Reverse<(Millis, u64, Ev)>> = BinaryHeap::new();
    let mut n_ev = 0u64;
    let mut push = |q: &mut BinaryHeap<_>, t: Millis, ev: Ev| {
        n_ev += 1;
        q.push(Reverse((t, n_ev, ev)));
    };
    // Viewers join once a few segments exist.
    let first_join = 3 * cfg.segment_ms as u64 + cfg.encoder_delay_ms + 50;
    for v in 1..=cfg.viewers {
        nodes.push(mk(LiveEngine::new(
            Arc::new(base.clone()),
            cfg.engine.clone(),
        )));
        push(
            &mut q,
            first_join + (v as u64 - 1) * cfg.join_gap_ms,
            Ev::Join(v),
        );
    }
    let end = first_join + (cfg.viewers as u64 - 1) * cfg.join_gap_ms + cfg.watch_ms;
    push(
        &mut q,
        cfg.segment_ms as u64 + cfg.encoder_delay_ms,
        Ev::Produce(0),
    );
    let mut seed_bytes = 0u64;
    let mut events = 0u64;
    // Bytes sent on a link (from, to) and not yet delivered.
    let mut queued: std::collections::BTreeMap<(usize, usize), u64> = Default::default();
    while let Some(Reverse((now, _, ev))) = q.pop() {
        events += 1;
        assert!(events < 20_000_000, "simulation did not converge");
        if now > end {
            break;
        }
        let wall = T0 + now;
        let mut touched = Vec::new();
        match ev {
            Ev::Produce(seq) => {
                let mut data = vec![0u8; seg_bytes];
                for (i, b) in data.iter_mut().enumerate() {
                    *b = (i as u32 ^ seq.wrapping_mul(2_654_435_761)) as u8;
                }
                let start_ms = seq as u64 * cfg.segment_ms as u64;
                let mut meta = LiveMeta {
                    seq,
                    start_ms,
                    duration_ms: cfg.segment_ms,
                    capture_ms: T0 + start_ms,
                    size: data.len() as u32,
                    sha256: Sha256::digest(&data).into(),
                    sig: [0; 64],
                };
                signer.sign_meta(channel, &mut meta);
                let data: Arc<[u8]> = data.into();
                metas.push(meta);
                seg_data.push(data.clone());
                nodes[0].engine.publish(now, meta, data);
                touched.push(0);
                let next = (seq as u64 + 2) * cfg.segment_ms as u64 + cfg.encoder_delay_ms;
                push(&mut q, next, Ev::Produce(seq + 1));
            }
            Ev::Join(v) => {
                // The viewer fetched live.json: the newest descriptions.
                let recent = metas[metas.len().saturating_sub(4)..].to_vec();
                let m = LiveManifest {
                    recent,
                    ..base.clone()
                };
                nodes[v].engine = LiveEngine::new(Arc::new(m), cfg.engine.clone());
                nodes[v].joined = true;
                nodes[v]
                    .engine
                    .handle_input(now, Input::Clock { unix_ms: wall });
                touched.push(v);
                for o in 0..v {
                    push(&mut q, now + cfg.connect_ms, Ev::Connect(v, o));
                }
                push(&mut q, now + cfg.step_ms, Ev::Tick(v));
            }
            Ev::Connect(a, b) => {
                for (x, y) in [(a, b), (b, a)] {
                    let id = format!("node-{y}");
                    nodes[x].engine.handle_input(
                        now,
                        Input::PeerConnected {
                            peer: y as PeerKey,
                            remote_id: &id,
                            is_seed: y == 0,
                        },
                    );
                    touched.push(x);
                }
            }
            Ev::Deliver { from, to, data } => {
                if let Some(q) = queued.get_mut(&(from, to)) {
                    *q = q.saturating_sub(data.len() as u64);
                }
                touched.push(from);
                if nodes[to].left {
                    continue;
                }
                let input = Input::PeerData {
                    peer: from as PeerKey,
                    data: &data,
                };
                nodes[to].engine.handle_input(now, input);
                touched.push(to);
            }
            Ev::Http { to, res } => {
                let data = match res {
                    Resource::Init => init.clone(),
                    Resource::Segment(s) => seg_data[s.get() as usize].to_vec(),
                };
                seed_bytes += data.len() as u64;
                nodes[to]
                    .engine
                    .handle_input(now, Input::HttpDone { res, data });
                touched.push(to);
            }
            Ev::Checked { to, id, ok } => {
                nodes[to]
                    .engine
                    .handle_input(now, Input::SignatureChecked { id, ok });
                touched.push(to);
            }
            Ev::Recent { to, produced } => {
                let recent = &metas[produced.saturating_sub(4)..produced];
                nodes[to]
                    .engine
                    .handle_input(now, Input::LiveRecent { metas: recent });
                touched.push(to);
            }
            Ev::Tick(v) => {
                let n = &mut nodes[v];
                let dt = cfg.step_ms;
                if n.seeked {
                    let pos = n.position_ms;
                    let ahead = n
                        .buffered
                        .iter()
                        .find(|&&(s, e)| s <= pos && pos < e)
                        .map(|&(_, e)| e - pos);
                    match ahead {
                        Some(_) => {
                            if !n.playing {
                                n.playing = true;
                                n.engine
                                    .handle_input(now, Input::Media(MediaEvent::Playing));
                            }
                            let step = dt * n.rate as u64 / 1000;
                            // Contiguous ranges: play on into the next one.
                            n.position_ms = pos + step;
                        }
                        None if n.playing => {
                            n.playing = false;
                            n.engine
                                .handle_input(now, Input::Media(MediaEvent::Waiting));
                        }
                        None => {}
                    }
                }
                let pos = n.position_ms;
                n.engine.handle_input(now, Input::Clock { unix_ms: wall });
                n.engine
                    .handle_input(now, Input::Playhead { position_ms: pos });
                if n.playing {
                    if let Some(l) = n.engine.stats().latency_ms {
                        n.result.latencies.push(l);
                    }
                }
                touched.push(v);
                push(&mut q, now + dt, Ev::Tick(v));
            }
        }
        for i in touched {
            // Bytes still queued on each of its links (the driver reports a
            // data channel's `bufferedAmount` the same way).
            let links: Vec<(usize, u64)> = (queued.iter())
                .filter(|(&(from, _), _)| from == i)
                .map(|(&(_, to), &b)| (to, b))
                .collect();
            for (to, bytes) in links {
                let input = Input::PeerBuffered {
                    peer: to as PeerKey,
                    bytes,
                };
                nodes[i].engine.handle_input(now, input);
            }
            while let Some(out) = nodes[i].engine.poll_output() {
                match out {
                    Output::Send { peer, mut data } => {
                        let to = peer as usize;
                        let is_piece = crate::wire::is_piece(&data);
                        if i == 0 && is_piece {
                            seed_bytes += data.len().saturating_sub(10) as u64;
                        }
                        if Some(i) == cfg.corrupt_viewer.map(|c| c + 1) && is_piece {
                            let last = data.len() - 1;
                            data[last] ^= 1;
                        }
                        *queued.entry((i, to)).or_default() += data.len() as u64;
                        let n = &mut nodes[i];
                        let t0 = n.uplink_free_at.max(now);
                        let t1 = t0 + data.len() as u64 * 1000 / cfg.upload_bps;
                        n.uplink_free_at = t1;
                        push(
                            &mut q,
                            t1 + cfg.link_latency_ms,
                            Ev::Deliver { from: i, to, data },
                        );
                    }
                    Output::HttpFetch { res } => {
                        push(&mut q, now + cfg.http_latency_ms, Ev::Http { to: i, res });
                    }
                    Output::CheckSignature {
                        id,
                        message,
                        signature,
                    } => {
                        let ok = verify(&pk, &message, &signature);
                        push(&mut q, now + 1, Ev::Checked { to: i, id, ok });
                    }
                    Output::Append { seg, .. } => {
                        let m = metas[seg.get() as usize];
                        let n = &mut nodes[i];
                        // Merge with a range it continues.
                        match n.buffered.iter_mut().find(|r| r.1 == m.start_ms) {
                            Some(r) => r.1 = m.end_ms(),
                            None => n.buffered.push((m.start_ms, m.end_ms())),
                        }
                    }
                    Output::SeekTo { position_ms } => {
                        nodes[i].position_ms = position_ms;
                        nodes[i].seeked = true;
                    }
                    Output::PlaybackRate { permille } => nodes[i].rate = permille,
                    Output::DropPeer { peer, .. } => nodes[i].result.dropped.push(peer as usize),
                    Output::RefreshLiveManifest => {
                        let produced = metas.len();
                        push(
                            &mut q,
                            now + cfg.http_latency_ms,
                            Ev::Recent { to: i, produced },
                        );
                    }
                    Output::ClosePeer { .. }
                    | Output::AppendInit { .. }
                    | Output::RemoveMedia { .. }
                    | Output::EndOfStream
                    | Output::Load { .. } => {}
                }
            }
        }
    }
    let copy_bytes = seg_bytes as u64 * ((end - first_join) / cfg.segment_ms as u64);
    LiveSimResult {
        viewers: nodes[1..]
            .iter()
            .map(|n| LiveViewerResult {
                stats: n.engine.stats(),
                ..n.result.clone()
            })
            .collect(),
        seed_bytes,
        copy_bytes,
    }
}
