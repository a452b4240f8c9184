//! The discrete-event simulation: real engines ([`LiveEngine`] for live
//! channels, [`Engine`] for videos on demand, behind [`AnyEngine`]) and the
//! real peer-matching rule ([`select_peers`]) over the links of [`crate::net`].
//!
//! One event queue ordered by (time, insertion number), one ChaCha RNG
//! seeded by the scenario: a run is a pure function of its scenario.
//!
//! What is real: every wire message the engines send is encoded, carried and
//! decoded; every segment is reassembled and its SHA-256 checked by each
//! viewer; the tracker calls `select_peers` on join and when a viewer has
//! fewer than `want_peers` peers. What is not: Ed25519 (the driver answers
//! `CheckSignature` with "ok": every description comes from the seed), and,
//! with `payload_scale` > 1, payload bytes are carried (and hashed)
//! `payload_scale` times smaller than they are while links charge the full
//! size.

use crate::net::{self, Micros, Paths, Pipe};
use crate::queue::EventQueue;
use crate::scenario::{Kind, Scenario};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use swarm_proto::engine::{Config, Engine, Input, MediaEvent, Output, PeerKey, Resource};
use swarm_proto::live::{LiveConfig, LiveEngine, LiveManifest, LiveMeta, LIVE_MANIFEST_VERSION};
use swarm_proto::manifest::{sha256_hex, Manifest, ManifestParts, SegmentEntry, Timeline};
use swarm_proto::matching::{select_peers, Candidate, MatchRule};
use swarm_proto::{wire, AnyEngine};

const MS: Micros = 1000;
/// Wall clock (Unix ms) at simulated time 0.
const T0: u64 = 1_800_000_000_000;
/// Bytes of a piece message's header (version, type, segment, piece).
const PIECE_HEADER: usize = 10;
/// A connection attempt NAT blocks is given up after this.
const NAT_GIVE_UP: Micros = 5000 * MS;
/// Viewer reports (its upload rate, used by the matching rule) every 5 s.
const REPORT_EVERY: Micros = 5000 * MS;
const INIT_BYTES: usize = 800;
/// Time-series sample period.
const SAMPLE_EVERY: Micros = 10_000 * MS;
/// Progress lines on stderr, every this much simulated time.
const PROGRESS_EVERY: Micros = 60_000 * MS;
/// Latency histogram: 10 ms buckets up to 120 s.
const LAT_BUCKET_MS: u64 = 10;
const LAT_BUCKETS: usize = 12_000;

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Keep a CSV time series (every 10 s of simulated time).
    pub csv: bool,
    /// Keep every pair that ever connected (tests).
    pub record_pairs: bool,
}

/// The figures of one run (all of simulated time from `measure_from_s` on).
#[derive(Clone, Debug, Default)]
pub struct Figures {
    pub viewers: usize,
    pub bitrate_kbps: u64,
    pub seed_egress_mbps: f64,
    pub seed_egress_copies: f64,
    pub p2p_share: f64,
    /// Media time played / (played + stalled + skipped over).
    pub continuity: f64,
    pub cross_group_share: f64,
    pub latency_ms_median: Option<u64>,
    pub latency_ms_p95: Option<u64>,
    pub startup_ms_median: Option<u64>,
    pub startup_ms_p95: Option<u64>,
    pub stalls: u64,
    pub stalls_per_viewer_hour: f64,
    pub joins: u64,
    pub leaves: u64,
    pub nat_blocked: u64,
    pub connections: u64,
    pub peers_dropped: u64,
    /// HTTP fetches the origin refused (503, admission control).
    pub http_refused: u64,
    pub http_share: f64,
    pub events: u64,
    /// Stored segment bytes of every engine at the end, over viewers online.
    pub stored_bytes_per_viewer: u64,
}

pub struct Outcome {
    pub figures: Figures,
    pub csv: Option<String>,
    pub pairs: Vec<(u32, u32)>,
}

enum Ev {
    Produce(u32),
    Join,
    Leave(u32),
    MassLeave,
    Connect(u32, u32),
    NatGiveUp(u32),
    Deliver {
        from: u32,
        to: u32,
        data: Vec<u8>,
    },
    Closed {
        to: u32,
        from: u32,
    },
    Http {
        to: u32,
        res: Resource,
        seed: u32,
    },
    /// The origin answered 503 (admission control).
    HttpRefused {
        to: u32,
        res: Resource,
    },
    Loaded {
        seed: u32,
        content: u32,
        seg: swarm_proto::SegmentId,
    },
    Checked {
        to: u32,
        id: u64,
    },
    Recent {
        to: u32,
        produced: usize,
    },
    Tick(u32),
    Sample,
}

#[derive(Default)]
struct Play {
    started: bool,
    seeked: bool,
    playing: bool,
    position_ms: u64,
    rate: u32,
    /// Live: appended media ranges, merged when contiguous.
    ranges: Vec<(u64, u64)>,
    /// VOD: appended media ends here.
    buffered_to_ms: u64,
}

struct Node {
    seed: bool,
    /// Seeds: one engine per content (lazily made); viewers: one.
    engines: Vec<Option<AnyEngine>>,
    content: u32,
    group: u16,
    up: Pipe,
    down: Option<Pipe>,
    online: bool,
    joined_at: Micros,
    /// Open connections.
    conns: Vec<u32>,
    /// Offers out, not yet answered.
    pending: u32,
    /// Bytes handed to each peer's channel and not yet delivered.
    queued: HashMap<u32, u64>,
    last_get_peers: Micros,
    uploaded_v: u64,
    reported_v: u64,
    upload_rate: u64,
    play: Play,
}

impl Node {
    fn engine(&mut self, content: u32) -> Option<&mut AnyEngine> {
        let i = if self.seed { content as usize } else { 0 };
        self.engines.get_mut(i).and_then(Option::as_mut)
    }
}

#[derive(Clone, Copy, Default)]
struct Series {
    seed_rtc_in: u64,
    http_in: u64,
    p2p: u64,
}

#[derive(Default)]
struct Acc {
    /// Seed egress, by the time it left the seed.
    seed_rtc: u64,
    seed_http: u64,
    /// Bytes received from seeds over WebRTC, by arrival (for the shares).
    seed_rtc_in: u64,
    /// HTTP bytes received, by arrival.
    http_in: u64,
    p2p: u64,
    p2p_cross: u64,
    played_ms: u64,
    stalled_ms: u64,
    skipped_ms: u64,
    stalls: u64,
    viewer_ms: u64,
    startups: Vec<u64>,
    latency: Vec<u32>,
    joins: u64,
    leaves: u64,
    nat_blocked: u64,
    connections: u64,
    dropped: u64,
    http_refused: u64,
}

struct Content {
    /// VOD: manifest, timeline, and segment bytes by pattern.
    vod: Option<(Arc<Manifest>, Timeline)>,
}

pub struct Sim<'a> {
    sc: &'a Scenario,
    opt: Options,
    rng: ChaCha8Rng,
    q: EventQueue<Ev>,
    now: Micros,
    nodes: Vec<Node>,
    /// Viewers online, by content.
    members: Vec<Vec<u32>>,
    /// Where each online viewer is in `members[content]`.
    member_at: HashMap<u32, usize>,
    paths: Paths,
    scale: u64,
    seeds: usize,
    contents: Vec<Content>,
    zipf_cdf: Vec<f64>,
    class_cdf: Vec<f64>,
    // Live state.
    live_base: Option<LiveManifest>,
    metas: Vec<LiveMeta>,
    seg_data: Vec<Arc<[u8]>>,
    // VOD segment bytes (a few patterns, shared by every video).
    vod_patterns: Vec<Arc<[u8]>>,
    live_cfg: LiveConfig,
    vod_cfg: Config,
    acc: Acc,
    /// Bytes received from seeds (WebRTC and HTTP) and from viewers since
    /// the start, for the time series.
    series: Series,
    pairs: Vec<(u32, u32)>,
    csv: String,
    last_sample: (u64, u64, u64),
    events: u64,
    /// `SWARM_SIM_DEBUG` set: count close and drop reasons, print sums.
    debug: bool,
    started: std::time::Instant,
    /// Every node's signaling id, and every group's name.
    names: Vec<Box<str>>,
    group_names: Vec<String>,
    reasons: std::collections::BTreeMap<String, u64>,
}

impl<'a> Sim<'a> {
    pub fn new(sc: &'a Scenario, opt: Options) -> Sim<'a> {
        let scale = sc.payload_scale as u64;
        let net = &sc.network;
        let paths = Paths {
            seed: sc.seed,
            same_group_us: net.same_group_ms * MS,
            cross_group_us: net.cross_group_ms * MS,
            cross_spread_us: net.cross_spread_ms * MS,
            nat_fail: net.nat_fail,
        };
        let mut live_cfg = LiveConfig::default();
        live_cfg.max_buffered_bytes /= scale;
        live_cfg.max_upload_backlog /= scale;
        let mut vod_cfg = Config::default();
        vod_cfg.max_buffered_bytes /= scale;
        vod_cfg.store_max_bytes /= scale as usize;
        let t = &sc.engine;
        if let Some(m) = t.max_peers {
            live_cfg.max_peers = m;
            vod_cfg.max_peers = m;
        }
        if let Some(x) = t.target_latency_ms {
            live_cfg.target_latency_ms = x;
        }
        if let Some(x) = t.max_upload_backlog {
            live_cfg.max_upload_backlog = x / scale;
        }
        if let Some(x) = t.max_buffered_bytes {
            live_cfg.max_buffered_bytes = x / scale;
            vod_cfg.max_buffered_bytes = x / scale;
        }
        if let Some(x) = t.max_unserved_claims {
            vod_cfg.max_unserved_claims = x;
        }
        if let Some(x) = t.want_timeout_ms {
            live_cfg.want_timeout_ms = x;
        }
        if let Some(x) = t.max_failed_wants {
            live_cfg.max_failed_wants = x;
        }
        if let Some(x) = t.max_upload_queue_ms {
            live_cfg.max_upload_queue_ms = x;
        }
        if let Some(x) = t.urgent_ms {
            live_cfg.urgent_ms = x;
        }
        if let Some(x) = t.critical_ms {
            live_cfg.critical_ms = x;
        }
        if let Some(x) = t.behind_ms {
            live_cfg.behind_ms = x;
            live_cfg.media_behind_ms = x;
        }
        let cdf = |w: Vec<f64>| {
            let total: f64 = w.iter().sum();
            let mut acc = 0.0;
            w.iter()
                .map(|x| {
                    acc += x / total;
                    acc
                })
                .collect::<Vec<f64>>()
        };
        let n_content = if sc.kind == Kind::Vod {
            sc.vod.videos.max(1)
        } else {
            1
        };
        let zipf_cdf = cdf((1..=n_content)
            .map(|k| 1.0 / (k as f64).powf(sc.vod.zipf_s))
            .collect());
        let class_cdf = cdf(sc.viewer_classes.iter().map(|c| c.share).collect());
        let mut sim = Sim {
            sc,
            opt,
            rng: ChaCha8Rng::seed_from_u64(sc.seed),
            q: EventQueue::new(),
            now: 0,
            nodes: Vec::new(),
            members: vec![Vec::new(); n_content],
            member_at: HashMap::new(),
            paths,
            scale,
            seeds: sc.seeds.count,
            contents: Vec::new(),
            zipf_cdf,
            class_cdf,
            live_base: None,
            metas: Vec::new(),
            seg_data: Vec::new(),
            vod_patterns: Vec::new(),
            live_cfg,
            vod_cfg,
            acc: Acc {
                latency: vec![0; LAT_BUCKETS],
                ..Acc::default()
            },
            series: Series::default(),
            pairs: Vec::new(),
            csv: String::new(),
            last_sample: (0, 0, 0),
            events: 0,
            debug: std::env::var_os("SWARM_SIM_DEBUG").is_some(),
            names: Vec::new(),
            started: std::time::Instant::now(),
            group_names: (0..sc.network.groups).map(|g| format!("g{g}")).collect(),
            reasons: Default::default(),
        };
        sim.setup();
        sim
    }

    fn piece_size(&self) -> u32 {
        self.sc.piece_bytes / self.sc.payload_scale
    }

    fn scaled_segment(&self) -> usize {
        (self.sc.segment_bytes() / self.scale).max(1) as usize
    }

    fn setup(&mut self) {
        let sc = self.sc;
        let seed_rate = sc.seeds.upload_mbps * 1_000_000 / 8;
        for s in 0..self.seeds {
            let mut engines = Vec::new();
            match sc.kind {
                Kind::Live => {
                    let cfg = LiveConfig {
                        max_peers: sc.seeds.capacity,
                        push_copies: sc.seeds.push_copies,
                        ..self.live_cfg.clone()
                    };
                    let e = LiveEngine::new_seed("sim-live", self.piece_size(), cfg);
                    engines.push(Some(AnyEngine::Live(e)));
                }
                Kind::Vod => engines.resize_with(self.members.len(), || None),
            }
            self.names.push(self.nodes.len().to_string().into());
            self.nodes.push(Node {
                seed: true,
                engines,
                content: 0,
                group: (s % sc.network.groups) as u16,
                up: Pipe::new(seed_rate),
                down: None,
                online: true,
                joined_at: 0,
                conns: Vec::new(),
                pending: 0,
                queued: HashMap::new(),
                last_get_peers: 0,
                uploaded_v: 0,
                reported_v: 0,
                upload_rate: 0,
                play: Play::default(),
            });
        }
        let seg = self.scaled_segment();
        match sc.kind {
            Kind::Live => {
                let init = vec![1u8; INIT_BYTES];
                self.live_base = Some(LiveManifest {
                    version: LIVE_MANIFEST_VERSION,
                    channel: "sim-live".into(),
                    title: "sim".into(),
                    mime: "video/mp4".into(),
                    piece_size: self.piece_size(),
                    segment_ms: sc.segment_ms,
                    playlist: "index.m3u8".into(),
                    init: SegmentEntry {
                        uri: "init.mp4".into(),
                        size: init.len() as u64,
                        sha256: sha256_hex(&init),
                        duration_ms: 0,
                    },
                    init_sig: [0; 64],
                    public_key: [0; 32],
                    recent: vec![],
                    interrupted: None,
                });
                self.contents.push(Content { vod: None });
                self.push(sc.segment_ms as u64 * MS + 100 * MS, Ev::Produce(0));
            }
            Kind::Vod => {
                self.vod_patterns = (0..8u32)
                    .map(|p| {
                        (0..seg)
                            .map(|j| (j as u32 ^ p.wrapping_mul(2_654_435_761)) as u8)
                            .collect::<Vec<u8>>()
                            .into()
                    })
                    .collect();
                let hashes: Vec<String> = self.vod_patterns.iter().map(|d| sha256_hex(d)).collect();
                let count = (sc.vod.video_s * 1000 / sc.segment_ms as u64).max(1) as usize;
                for v in 0..self.members.len() {
                    let parts = ManifestParts {
                        version: swarm_proto::manifest::MANIFEST_VERSION,
                        content_id: format!("video-{v}"),
                        title: format!("video {v}"),
                        playlist: "index.m3u8".into(),
                        mime: "video/mp4; codecs=\"avc1.42c01e\"".into(),
                        piece_size: self.piece_size(),
                        init: SegmentEntry {
                            uri: "init.mp4".into(),
                            size: INIT_BYTES as u64,
                            sha256: sha256_hex(&[1u8; INIT_BYTES]),
                            duration_ms: 0,
                        },
                        segments: (0..count)
                            .map(|i| SegmentEntry {
                                uri: format!("seg_{i:05}.m4s"),
                                size: seg as u64,
                                sha256: hashes[(i + v) % hashes.len()].clone(),
                                duration_ms: sc.segment_ms,
                            })
                            .collect(),
                    };
                    let m = Arc::new(parts.validate().expect("simulated manifest is valid"));
                    let t = Timeline::new(&m);
                    self.contents.push(Content { vod: Some((m, t)) });
                }
            }
        }
        // The join ramp.
        let ramp = sc.join_over_s * 1000 * MS;
        let first = if sc.kind == Kind::Live {
            (3 * sc.segment_ms as u64 + 200) * MS
        } else {
            0
        };
        for i in 0..sc.viewers as u64 {
            self.push(first + ramp * i / sc.viewers as u64, Ev::Join);
        }
        if let Some(at) = sc.churn.mass_leave_at_s {
            self.push(at * 1000 * MS, Ev::MassLeave);
        }
        if self.opt.csv {
            self.csv
                .push_str("t_s,viewers,seed_to_viewers_mbps,p2p_share,stalled_viewers\n");
            self.push(SAMPLE_EVERY, Ev::Sample);
        }
    }

    fn push(&mut self, t: Micros, ev: Ev) {
        self.q.push(t, ev);
    }

    /// Seed egress is counted when it leaves the seed's uplink (`sent`),
    /// within the measured window.
    fn count_seed(&mut self, sent: Micros, bytes: u64, http: bool) {
        let from = self.sc.measure_from_ms() * MS;
        let end = self.sc.duration_s * 1000 * MS;
        if (from..=end).contains(&sent) {
            if http {
                self.acc.seed_http += bytes;
            } else {
                self.acc.seed_rtc += bytes;
            }
        }
    }

    fn measuring(&self) -> bool {
        self.now >= self.sc.measure_from_ms() * MS
    }

    fn ms(&self) -> u64 {
        self.now / MS
    }

    pub fn run(mut self) -> Outcome {
        let end = self.sc.duration_s * 1000 * MS;
        while let Some((t, ev)) = self.q.pop() {
            if t > end {
                break;
            }
            if t / PROGRESS_EVERY != self.now / PROGRESS_EVERY {
                self.progress();
            }
            self.now = t;
            self.events += 1;
            self.handle(ev);
        }
        self.now = end;
        self.finish()
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Produce(seq) => self.produce(seq),
            Ev::Join => self.join(),
            Ev::Leave(v) => {
                if self.nodes[v as usize].online {
                    self.leave(v);
                    // A new viewer takes its place.
                    let t = self.now + 1000 * MS;
                    self.push(t, Ev::Join);
                }
            }
            Ev::MassLeave => {
                let share = self.sc.churn.mass_leave_share;
                let online: Vec<u32> = (self.seeds as u32..self.nodes.len() as u32)
                    .filter(|&v| self.nodes[v as usize].online)
                    .collect();
                for v in online {
                    if self.rng.gen_bool(share.clamp(0.0, 1.0)) {
                        self.leave(v);
                    }
                }
            }
            Ev::Connect(a, b) => self.connect(a, b),
            Ev::NatGiveUp(a) => {
                let n = &mut self.nodes[a as usize];
                n.pending = n.pending.saturating_sub(1);
            }
            Ev::Deliver { from, to, data } => self.deliver(from, to, data),
            Ev::Closed { to, from } => {
                if self.nodes[to as usize].online {
                    self.unlink(to, from);
                    let content = self.content_of(to, from);
                    self.input(to, content, Input::PeerClosed { peer: from as u64 });
                }
            }
            Ev::Http { to, res, seed } => {
                let size = self.resource_len(to, res);
                let v = self.vsize_payload(size);
                self.nodes[seed as usize].uploaded_v += v;
                self.series.http_in += v;
                if self.measuring() {
                    self.acc.http_in += v;
                }
                if !self.nodes[to as usize].online {
                    return;
                }
                let data = self.resource_bytes(to, res);
                let c = self.nodes[to as usize].content;
                self.input(to, c, Input::HttpDone { res, data });
            }
            Ev::HttpRefused { to, res } => {
                if self.nodes[to as usize].online {
                    let c = self.nodes[to as usize].content;
                    self.input(to, c, Input::HttpFailed { res });
                }
            }
            Ev::Loaded { seed, content, seg } => {
                let p = self.vod_pattern(content, seg.index());
                let data = self.vod_patterns[p].to_vec();
                self.input(seed, content, Input::Loaded { seg, data });
            }
            Ev::Checked { to, id } => {
                if self.nodes[to as usize].online {
                    self.input(to, 0, Input::SignatureChecked { id, ok: true });
                }
            }
            Ev::Recent { to, produced } => {
                if self.nodes[to as usize].online {
                    let metas = self.metas[produced.saturating_sub(4)..produced].to_vec();
                    self.input(to, 0, Input::LiveRecent { metas: &metas });
                }
            }
            Ev::Tick(v) => self.tick(v),
            Ev::Sample => self.sample(),
        }
    }

    fn vod_pattern(&self, content: u32, seg: usize) -> usize {
        (seg + content as usize) % self.vod_patterns.len()
    }

    fn resource_len(&self, to: u32, res: Resource) -> usize {
        match res {
            Resource::Init => INIT_BYTES,
            Resource::Segment(s) => match self.sc.kind {
                Kind::Live => self.seg_data[s.index()].len(),
                Kind::Vod => {
                    let c = self.nodes[to as usize].content;
                    self.vod_patterns[self.vod_pattern(c, s.index())].len()
                }
            },
        }
    }

    fn resource_bytes(&self, to: u32, res: Resource) -> Vec<u8> {
        match res {
            Resource::Init => vec![1u8; INIT_BYTES],
            Resource::Segment(s) => match self.sc.kind {
                Kind::Live => self.seg_data[s.index()].to_vec(),
                Kind::Vod => {
                    let c = self.nodes[to as usize].content;
                    self.vod_patterns[self.vod_pattern(c, s.index())].to_vec()
                }
            },
        }
    }

    /// Full-size bytes of `len` carried payload bytes.
    fn vsize_payload(&self, len: usize) -> u64 {
        if len == INIT_BYTES {
            len as u64
        } else {
            len as u64 * self.scale
        }
    }

    /// Full-size bytes of a wire message.
    fn vsize_msg(&self, data: &[u8]) -> u64 {
        if wire::is_piece(data) {
            (PIECE_HEADER + (data.len() - PIECE_HEADER) * self.scale as usize) as u64
        } else {
            data.len() as u64
        }
    }

    /// Which engine of `node` talks to `other`.
    fn content_of(&self, node: u32, other: u32) -> u32 {
        if self.nodes[node as usize].seed {
            self.nodes[other as usize].content
        } else {
            self.nodes[node as usize].content
        }
    }

    fn produce(&mut self, seq: u32) {
        let sc = self.sc;
        let n = self.scaled_segment();
        let data: Vec<u8> = (0..n)
            .map(|i| (i as u32 ^ seq.wrapping_mul(2_654_435_761)) as u8)
            .collect();
        let start_ms = seq as u64 * sc.segment_ms as u64;
        let meta = LiveMeta {
            seq,
            start_ms,
            duration_ms: sc.segment_ms,
            capture_ms: T0 + start_ms,
            size: n as u32,
            sha256: Sha256::digest(&data).into(),
            sig: [0; 64],
        };
        let data: Arc<[u8]> = data.into();
        self.metas.push(meta);
        self.seg_data.push(data.clone());
        let now = self.ms();
        for s in 0..self.seeds as u32 {
            if let Some(AnyEngine::Live(e)) = self.nodes[s as usize].engine(0) {
                e.publish(now, meta, data.clone());
            }
            self.drain(s, 0);
        }
        let next = ((seq as u64 + 2) * sc.segment_ms as u64 + 100) * MS;
        self.push(next, Ev::Produce(seq + 1));
    }

    fn pick<T: Copy>(&mut self, cdf: &[f64], of: impl Fn(usize) -> T) -> T {
        let x: f64 = self.rng.gen();
        let i = cdf.partition_point(|&c| c < x).min(cdf.len() - 1);
        of(i)
    }

    fn join(&mut self) {
        let sc = self.sc;
        let id = self.nodes.len() as u32;
        let group = self.rng.gen_range(0..sc.network.groups) as u16;
        let class = self.pick(&self.class_cdf.clone(), |i| i);
        let c = &sc.viewer_classes[class];
        let content = self.pick(&self.zipf_cdf.clone(), |i| i as u32);
        let session: Option<f64> = (sc.churn.per_minute > 0.0).then(|| {
            let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
            -u.ln() / sc.churn.per_minute * 60_000.0
        });
        let now = self.ms();
        let engine = match sc.kind {
            Kind::Live => {
                let recent = self.metas[self.metas.len().saturating_sub(4)..].to_vec();
                let m = LiveManifest {
                    recent,
                    ..self.live_base.clone().expect("live")
                };
                AnyEngine::Live(LiveEngine::new(Arc::new(m), self.live_cfg.clone()))
            }
            Kind::Vod => {
                let m = self.contents[content as usize].vod.as_ref().expect("vod");
                AnyEngine::Vod(Engine::new(m.0.clone(), self.vod_cfg.clone()))
            }
        };
        self.names.push(self.nodes.len().to_string().into());
        self.nodes.push(Node {
            seed: false,
            engines: vec![Some(engine)],
            content,
            group,
            up: Pipe::new(c.upload_kbps * 1000 / 8),
            down: Some(Pipe::new(c.download_kbps * 1000 / 8)),
            online: true,
            joined_at: self.now,
            conns: Vec::new(),
            pending: 0,
            queued: HashMap::new(),
            last_get_peers: self.now,
            uploaded_v: 0,
            reported_v: 0,
            upload_rate: 0,
            play: Play {
                rate: 1000,
                ..Play::default()
            },
        });
        if self.measuring() {
            self.acc.joins += 1;
        }
        let list = self.tracker(id);
        let cap = self.max_peers(id);
        let viewers = list
            .iter()
            .filter(|&&p| !self.nodes[p as usize].seed)
            .count()
            .min(cap);
        self.input(id, content, Input::Clock { unix_ms: T0 + now });
        self.input(id, content, Input::Playhead { position_ms: 0 });
        self.input(id, content, Input::Joined { viewers });
        self.offer(id, list);
        let m = self.members[content as usize].len();
        self.members[content as usize].push(id);
        self.member_at.insert(id, m);
        let t = self.now + sc.tick_ms * MS;
        self.push(t, Ev::Tick(id));
        if let Some(ms) = session {
            let t = self.now + (ms as u64).max(1000) * MS;
            self.push(t, Ev::Leave(id));
        }
    }

    fn max_peers(&self, v: u32) -> usize {
        match self.nodes[v as usize].engines[0].as_ref() {
            Some(e) => e.max_peers(),
            None => 0,
        }
    }

    /// The signal server's answer: the swarm's seeds, then viewers chosen
    /// by [`select_peers`].
    fn tracker(&mut self, me: u32) -> Vec<u32> {
        let sc = self.sc;
        let content = self.nodes[me as usize].content as usize;
        let mut out: Vec<u32> = (0..self.seeds as u32).collect();
        let members = &self.members[content];
        let idx: Vec<u32> = if sc.tracker.sample > 0 && members.len() > sc.tracker.sample {
            (0..sc.tracker.sample)
                .map(|_| members[self.rng.gen_range(0..members.len())])
                .collect()
        } else {
            members.clone()
        };
        if self.debug {
            *self.reasons.entry("tracker calls".into()).or_default() += 1;
            *self.reasons.entry("tracker candidates".into()).or_default() += idx.len() as u64;
        }
        let cands: Vec<Candidate> = idx
            .iter()
            .map(|&v| Candidate {
                peer_id: &self.names[v as usize],
                group: &self.group_names[self.nodes[v as usize].group as usize],
                upload_rate: self.nodes[v as usize].upload_rate,
                quality: 1.0,
            })
            .collect();
        let rule = MatchRule {
            enough_same_group: sc.tracker.enough_same_group,
            max: sc.tracker.max,
        };
        let my_group = &self.group_names[self.nodes[me as usize].group as usize];
        let chosen = select_peers(
            &self.names[me as usize],
            my_group,
            &cands,
            rule,
            self.rng.gen(),
        );
        let mut seen = std::collections::HashSet::new();
        for id in chosen {
            let v: u32 = id.parse().expect("ids are numbers");
            if seen.insert(v) {
                out.push(v);
            }
        }
        out
    }

    /// The driver's `connect_to`: offers to listed peers not connected yet,
    /// up to the engine's peer cap.
    fn offer(&mut self, me: u32, list: Vec<u32>) {
        let cap = self.max_peers(me);
        for p in list {
            let n = &self.nodes[me as usize];
            if p == me || n.conns.contains(&p) {
                continue;
            }
            if n.conns.len() + n.pending as usize >= cap {
                break;
            }
            self.nodes[me as usize].pending += 1;
            let other_seed = self.nodes[p as usize].seed;
            if !other_seed && !self.paths.can_connect(me as u64, p as u64) {
                if self.measuring() {
                    self.acc.nat_blocked += 1;
                }
                let t = self.now + NAT_GIVE_UP;
                self.push(t, Ev::NatGiveUp(me));
                continue;
            }
            let lat = self.latency(me, p);
            let t = self.now + self.sc.network.connect_ms * MS + 2 * lat;
            self.push(t, Ev::Connect(me, p));
        }
    }

    fn latency(&self, a: u32, b: u32) -> Micros {
        let (ga, gb) = (self.nodes[a as usize].group, self.nodes[b as usize].group);
        self.paths.latency(ga, gb)
    }

    fn connect(&mut self, a: u32, b: u32) {
        {
            let n = &mut self.nodes[a as usize];
            n.pending = n.pending.saturating_sub(1);
        }
        let (na, nb) = (&self.nodes[a as usize], &self.nodes[b as usize]);
        if !na.online || !nb.online || na.conns.contains(&b) {
            return;
        }
        // The answerer ignores offers beyond its cap (seeds: their engine
        // closes the connection itself).
        if !nb.seed && nb.conns.len() + nb.pending as usize >= self.max_peers(b) {
            return;
        }
        if nb.seed {
            let c = na.content as usize;
            if self.nodes[b as usize].engines[c].is_none() {
                let m = self.contents[c].vod.as_ref().expect("vod").0.clone();
                let cfg = Config {
                    max_peers: self.sc.seeds.capacity,
                    ..self.vod_cfg.clone()
                };
                self.nodes[b as usize].engines[c] = Some(AnyEngine::Vod(Engine::new_seed(m, cfg)));
            }
        }
        self.nodes[a as usize].conns.push(b);
        self.nodes[b as usize].conns.push(a);
        if self.measuring() {
            self.acc.connections += 1;
        }
        if self.opt.record_pairs {
            self.pairs.push((a.min(b), a.max(b)));
        }
        let content = self.nodes[a as usize].content;
        for (x, y) in [(a, b), (b, a)] {
            let id = y.to_string();
            let is_seed = self.nodes[y as usize].seed;
            let input = Input::PeerConnected {
                peer: y as PeerKey,
                remote_id: &id,
                is_seed,
            };
            self.input(x, content, input);
        }
    }

    fn unlink(&mut self, a: u32, b: u32) {
        let n = &mut self.nodes[a as usize];
        n.conns.retain(|&x| x != b);
        n.queued.remove(&b);
    }

    fn leave(&mut self, v: u32) {
        let now = self.now;
        let content = self.nodes[v as usize].content;
        if self.measuring() {
            self.acc.leaves += 1;
        }
        let conns = std::mem::take(&mut self.nodes[v as usize].conns);
        for p in conns {
            let t = now + self.latency(v, p);
            self.push(t, Ev::Closed { to: p, from: v });
        }
        let n = &mut self.nodes[v as usize];
        n.online = false;
        n.engines = vec![None];
        n.queued = HashMap::new();
        n.play.ranges = Vec::new();
        if let Some(i) = self.member_at.remove(&v) {
            let list = &mut self.members[content as usize];
            list.swap_remove(i);
            if let Some(&moved) = list.get(i) {
                self.member_at.insert(moved, i);
            }
        }
    }

    fn deliver(&mut self, from: u32, to: u32, data: Vec<u8>) {
        let len = data.len() as u64;
        let piece = wire::is_piece(&data);
        let mut report = None;
        if let Some(q) = self.nodes[from as usize].queued.get_mut(&to) {
            *q = q.saturating_sub(len);
            if piece || *q == 0 {
                report = Some(*q);
            }
        }
        if let Some(bytes) = report {
            if self.nodes[from as usize].online {
                let c = self.content_of(from, to);
                let input = Input::PeerBuffered {
                    peer: to as PeerKey,
                    bytes,
                };
                self.input(from, c, input);
            }
        }
        let (nf, nt) = (&self.nodes[from as usize], &self.nodes[to as usize]);
        if !nt.online || !nt.conns.contains(&from) {
            return;
        }
        if piece {
            let v = ((data.len() - PIECE_HEADER) as u64) * self.scale;
            if nf.seed {
                self.series.seed_rtc_in += v;
            } else {
                self.series.p2p += v;
            }
        }
        if piece && self.measuring() {
            let v = ((data.len() - PIECE_HEADER) as u64) * self.scale;
            if nf.seed {
                self.acc.seed_rtc_in += v;
            } else {
                self.acc.p2p += v;
                if nf.group != nt.group {
                    self.acc.p2p_cross += v;
                }
            }
        }
        let c = self.content_of(to, from);
        let input = Input::PeerData {
            peer: from as PeerKey,
            data: &data,
        };
        self.input(to, c, input);
    }

    fn input(&mut self, node: u32, content: u32, input: Input<'_>) {
        let now = self.ms();
        if self.debug {
            let name = match &input {
                Input::PeerData { data, .. } => match wire::decode(data) {
                    Ok(m) => format!("{:?}", m)
                        .chars()
                        .take_while(|c| c.is_alphanumeric())
                        .collect::<String>(),
                    Err(_) => "undecodable".into(),
                },
                Input::PeerBuffered { .. } => "PeerBuffered".into(),
                Input::SignatureChecked { .. } => "SignatureChecked".into(),
                Input::Playhead { .. } => "Playhead".into(),
                Input::PeerConnected { .. } => "PeerConnected".into(),
                Input::PeerClosed { .. } => "PeerClosed".into(),
                Input::HttpDone { .. } => "HttpDone".into(),
                Input::Media(_) => "Media".into(),
                _ => "other".into(),
            };
            *self.reasons.entry(format!("input {name}")).or_default() += 1;
        }
        match self.nodes[node as usize].engine(content) {
            Some(e) => e.handle_input(now, input),
            None => return,
        }
        self.drain(node, content);
    }

    /// Carries out everything the engine asked for.
    fn drain(&mut self, i: u32, content: u32) {
        while let Some(out) = self.nodes[i as usize]
            .engine(content)
            .and_then(|e| e.poll_output())
        {
            self.output(i, content, out);
        }
    }

    fn output(&mut self, i: u32, content: u32, out: Output) {
        let now = self.now;
        match out {
            Output::Send { peer, data } => {
                let to = peer as u32;
                if !self.nodes[i as usize].conns.contains(&to) {
                    return;
                }
                let v = self.vsize_msg(&data);
                let lat = self.latency(i, to);
                *self.nodes[i as usize].queued.entry(to).or_default() += data.len() as u64;
                self.nodes[i as usize].uploaded_v += v;
                let (a, b) = pair_mut(&mut self.nodes, i as usize, to as usize);
                let piece = wire::is_piece(&data);
                let t = if piece {
                    net::transfer(&mut a.up, b.down.as_mut(), now, lat, v)
                } else {
                    net::transfer_control(&mut a.up, b.down.as_mut(), now, lat, v)
                };
                let (sent, seed) = (a.up.free_at, a.seed);
                if seed && piece {
                    self.count_seed(sent, v - PIECE_HEADER as u64, false);
                }
                self.push(t, Ev::Deliver { from: i, to, data });
            }
            Output::HttpFetch { res } => {
                // The origin of the least-loaded seed.
                let seed = (0..self.seeds)
                    .min_by_key(|&s| self.nodes[s].up.free_at)
                    .expect("a seed") as u32;
                let size = self.resource_len(i, res);
                let v = self.vsize_payload(size);
                let lat = self.sc.network.http_ms * MS;
                let queue = self.nodes[seed as usize]
                    .up
                    .free_at
                    .saturating_sub(now + lat);
                if (self.sc.seeds.http_max_queue_ms).is_some_and(|max| queue > max * MS) {
                    if self.measuring() {
                        self.acc.http_refused += 1;
                    }
                    self.push(now + 2 * lat, Ev::HttpRefused { to: i, res });
                    return;
                }
                let (s, n) = pair_mut(&mut self.nodes, seed as usize, i as usize);
                let t = net::transfer(&mut s.up, n.down.as_mut(), now + lat, lat, v);
                let sent = s.up.free_at;
                self.count_seed(sent, v, true);
                self.push(t, Ev::Http { to: i, res, seed });
            }
            Output::Load { seg } => {
                self.push(
                    now + MS,
                    Ev::Loaded {
                        seed: i,
                        content,
                        seg,
                    },
                );
            }
            Output::CheckSignature { id, .. } => {
                self.push(now + MS, Ev::Checked { to: i, id });
            }
            Output::RefreshLiveManifest => {
                let produced = self.metas.len();
                let t = now + 2 * self.sc.network.http_ms * MS;
                self.push(t, Ev::Recent { to: i, produced });
            }
            Output::Append { seg, .. } => self.on_append(i, seg),
            Output::SeekTo { position_ms } => {
                let measuring = self.measuring();
                let p = &mut self.nodes[i as usize].play;
                if p.seeked && p.started && position_ms > p.position_ms && measuring {
                    self.acc.skipped_ms += position_ms - p.position_ms;
                }
                p.position_ms = position_ms;
                p.seeked = true;
            }
            Output::PlaybackRate { permille } => self.nodes[i as usize].play.rate = permille,
            Output::DropPeer { ref reason, .. } | Output::ClosePeer { ref reason, .. }
                if self.debug =>
            {
                let key: String = reason.chars().filter(|c| !c.is_ascii_digit()).collect();
                *self.reasons.entry(key).or_default() += 1;
                self.debug = false;
                self.output(i, content, out);
                self.debug = true;
            }
            Output::DropPeer { peer, .. } | Output::ClosePeer { peer, .. } => {
                if matches!(out, Output::DropPeer { .. }) && self.measuring() {
                    self.acc.dropped += 1;
                }
                let to = peer as u32;
                if self.nodes[i as usize].conns.contains(&to) {
                    self.unlink(i, to);
                    let t = now + self.latency(i, to);
                    self.push(t, Ev::Closed { to, from: i });
                }
            }
            Output::RemoveMedia { end_ms, .. } => {
                self.nodes[i as usize].play.ranges.retain(|r| r.1 > end_ms);
            }
            Output::AppendInit { .. } | Output::EndOfStream => {}
        }
    }

    fn on_append(&mut self, i: u32, seg: swarm_proto::SegmentId) {
        match self.sc.kind {
            Kind::Live => {
                let m = self.metas[seg.index()];
                let p = &mut self.nodes[i as usize].play;
                match p.ranges.iter_mut().find(|r| r.1 == m.start_ms) {
                    Some(r) => r.1 = m.end_ms(),
                    None => p.ranges.push((m.start_ms, m.end_ms())),
                }
            }
            Kind::Vod => {
                let c = self.nodes[i as usize].content as usize;
                let (m, t) = self.contents[c].vod.as_ref().expect("vod");
                let end = t.start_ms(seg) + m.entry(seg).duration_ms as u64;
                let p = &mut self.nodes[i as usize].play;
                p.buffered_to_ms = p.buffered_to_ms.max(end);
                if !p.seeked {
                    p.seeked = true;
                }
            }
        }
    }

    /// The player and the driver's timer: playback, the engine's clock and
    /// playhead, peer refills and reports.
    fn tick(&mut self, v: u32) {
        if !self.nodes[v as usize].online {
            return;
        }
        let sc = self.sc;
        let dt = sc.tick_ms;
        let measuring = self.measuring();
        let content = self.nodes[v as usize].content;
        let vod_end = (self.contents[content as usize].vod.as_ref()).map(|(m, _)| m.duration_ms());
        let mut media: Option<MediaEvent> = None;
        {
            let n = &mut self.nodes[v as usize];
            let p = &mut n.play;
            if p.seeked {
                let pos = p.position_ms;
                let end = match vod_end {
                    None => p
                        .ranges
                        .iter()
                        .find(|&&(s, e)| s <= pos && pos < e)
                        .map(|&(_, e)| e),
                    Some(_) => (pos < p.buffered_to_ms).then_some(p.buffered_to_ms),
                };
                match end {
                    Some(end) => {
                        if !p.playing {
                            p.playing = true;
                            media = Some(MediaEvent::Playing);
                            if !p.started {
                                p.started = true;
                                // Every viewer's startup, whenever it joined
                                // (within the window only, the slow ones of
                                // the ramp would be over-counted).
                                self.acc.startups.push((self.now - n.joined_at) / MS);
                            }
                        }
                        let step = dt * p.rate as u64 / 1000;
                        let adv = step.min(end - pos);
                        p.position_ms = pos + adv;
                        if measuring {
                            self.acc.played_ms += adv;
                        }
                    }
                    None if p.playing => {
                        p.playing = false;
                        let ended = vod_end.is_some_and(|e| pos >= e);
                        if !ended {
                            media = Some(MediaEvent::Waiting);
                            if measuring {
                                self.acc.stalls += 1;
                                self.acc.stalled_ms += dt;
                            }
                        } else {
                            media = Some(MediaEvent::Ended);
                        }
                    }
                    None if p.started && measuring => {
                        let ended = vod_end.is_some_and(|e| pos >= e);
                        if !ended {
                            self.acc.stalled_ms += dt;
                        }
                    }
                    None => {}
                }
            }
            if measuring {
                self.acc.viewer_ms += dt;
            }
        }
        let now_ms = self.ms();
        if let Some(ev) = media {
            self.input(v, content, Input::Media(ev));
        }
        let pos = self.nodes[v as usize].play.position_ms;
        // The wall clock was given at join: a virtual clock never drifts,
        // so the engine's own extrapolation is exact (the browser driver
        // passes it every tick to follow corrections).
        let _ = now_ms;
        self.input(v, content, Input::Playhead { position_ms: pos });
        if !self.nodes[v as usize].online {
            return;
        }
        if vod_end.is_none() && measuring && self.nodes[v as usize].play.playing {
            let lat = self.nodes[v as usize].engines[0]
                .as_ref()
                .and_then(|e| e.stats().latency_ms);
            if let Some(l) = lat {
                let b = ((l / LAT_BUCKET_MS) as usize).min(LAT_BUCKETS - 1);
                self.acc.latency[b] += 1;
            }
        }
        // Reports (the upload rate the matching rule ranks by).
        let n = &mut self.nodes[v as usize];
        if self.now >= n.joined_at + REPORT_EVERY
            && (self.now - n.joined_at) % REPORT_EVERY < dt * MS
        {
            n.upload_rate = (n.uploaded_v - n.reported_v) * 1_000_000 / REPORT_EVERY;
            n.reported_v = n.uploaded_v;
        }
        // Too few peers: ask the tracker again.
        if n.conns.len() < sc.tracker.want_peers
            && self.now >= n.last_get_peers + sc.tracker.get_peers_every_ms * MS
        {
            n.last_get_peers = self.now;
            let list = self.tracker(v);
            self.offer(v, list);
        }
        // A video on demand watched to its end: the viewer leaves, another
        // comes.
        if let Some(e) = vod_end {
            if self.nodes[v as usize].play.position_ms >= e {
                self.leave(v);
                let t = self.now + 1000 * MS;
                self.push(t, Ev::Join);
                return;
            }
        }
        let t = self.now + dt * MS;
        self.push(t, Ev::Tick(v));
    }

    /// A progress line on stderr (wall time is not part of the output).
    fn progress(&self) {
        let online = self.member_at.len();
        eprintln!(
            "  [{}] t={} s, {online} viewers online, {} events, wall {:.1} s",
            self.sc.name,
            self.now / 1_000_000,
            self.events,
            self.started.elapsed().as_secs_f64()
        );
    }

    fn sample(&mut self) {
        let online = (self.seeds..self.nodes.len())
            .filter(|&v| self.nodes[v].online)
            .count();
        let stalled = (self.seeds..self.nodes.len())
            .filter(|&v| {
                let n = &self.nodes[v];
                n.online && n.play.started && !n.play.playing
            })
            .count();
        let c = self.series;
        let seed = c.seed_rtc_in + c.http_in;
        let (s0, p0, a0) = self.last_sample;
        let all = c.seed_rtc_in + c.http_in + c.p2p;
        let d_seed = seed - s0;
        let d_p2p = c.p2p - p0;
        let d_all = all - a0;
        let mbps = d_seed as f64 * 8.0 / (SAMPLE_EVERY as f64 / 1e6) / 1e6;
        let share = d_p2p as f64 / d_all.max(1) as f64;
        self.csv.push_str(&format!(
            "{},{online},{mbps:.3},{share:.4},{stalled}\n",
            self.now / 1_000_000
        ));
        self.last_sample = (seed, c.p2p, all);
        let t = self.now + SAMPLE_EVERY;
        self.push(t, Ev::Sample);
    }

    fn finish(self) -> Outcome {
        let sc = self.sc;
        let a = &self.acc;
        if self.debug {
            eprintln!(
                "debug: played {} ms, stalled {} ms, skipped {} ms, viewer {} ms; seed rtc in {} http in {} p2p {}",
                a.played_ms, a.stalled_ms, a.skipped_ms, a.viewer_ms, a.seed_rtc_in, a.http_in, a.p2p
            );
            for (r, n) in &self.reasons {
                eprintln!("debug: {n:>8} {r}");
            }
            for (i, n) in self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.online)
                .step_by(97)
                .take(8)
            {
                if let Some(e) = n.engines[0].as_ref() {
                    eprintln!(
                        "debug: node {i} seed {} conns {} pending {} pos {} playing {} {:?}",
                        n.seed,
                        n.conns.len(),
                        n.pending,
                        n.play.position_ms,
                        n.play.playing,
                        e.stats()
                    );
                }
            }
        }
        let window_s = (sc.duration_s * 1000).saturating_sub(sc.measure_from_ms()) as f64 / 1000.0;
        let seed = (a.seed_rtc + a.seed_http) as f64;
        let all = (a.seed_rtc_in + a.http_in + a.p2p) as f64;
        let mbps = seed * 8.0 / window_s.max(1e-9) / 1e6;
        let median = |v: &mut Vec<u64>, q: f64| -> Option<u64> {
            v.sort_unstable();
            (!v.is_empty()).then(|| v[((v.len() - 1) as f64 * q).round() as usize])
        };
        let mut startups = a.startups.clone();
        let lat_q = |q: f64| -> Option<u64> {
            let total: u64 = a.latency.iter().map(|&x| x as u64).sum();
            if total == 0 {
                return None;
            }
            let want = (total as f64 * q).ceil().max(1.0) as u64;
            let mut acc = 0u64;
            for (i, &c) in a.latency.iter().enumerate() {
                acc += c as u64;
                if acc >= want {
                    return Some(i as u64 * LAT_BUCKET_MS + LAT_BUCKET_MS / 2);
                }
            }
            None
        };
        let online: Vec<&Node> = self.nodes[self.seeds..]
            .iter()
            .filter(|n| n.online)
            .collect();
        let stored: u64 = online
            .iter()
            .filter_map(|n| n.engines[0].as_ref())
            .map(|e| e.tables().stored_bytes as u64)
            .sum();
        let figures = Figures {
            viewers: sc.viewers,
            bitrate_kbps: sc.bitrate_kbps,
            seed_egress_mbps: mbps,
            seed_egress_copies: mbps * 1000.0 / sc.bitrate_kbps as f64,
            p2p_share: a.p2p as f64 / all.max(1.0),
            continuity: a.played_ms as f64
                / (a.played_ms + a.stalled_ms + a.skipped_ms).max(1) as f64,
            cross_group_share: a.p2p_cross as f64 / a.p2p.max(1) as f64,
            latency_ms_median: lat_q(0.5),
            latency_ms_p95: lat_q(0.95),
            startup_ms_median: median(&mut startups, 0.5),
            startup_ms_p95: median(&mut startups, 0.95),
            stalls: a.stalls,
            stalls_per_viewer_hour: a.stalls as f64 / (a.viewer_ms as f64 / 3.6e6).max(1e-9),
            joins: a.joins,
            leaves: a.leaves,
            nat_blocked: a.nat_blocked,
            connections: a.connections,
            peers_dropped: a.dropped,
            http_refused: a.http_refused,
            http_share: a.http_in as f64 / all.max(1.0),
            events: self.events,
            stored_bytes_per_viewer: stored / online.len().max(1) as u64,
        };
        Outcome {
            figures,
            csv: self.opt.csv.then_some(self.csv),
            pairs: self.pairs,
        }
    }
}

/// Two distinct elements of a slice, mutably.
fn pair_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (l, r) = v.split_at_mut(b);
        (&mut l[a], &mut r[0])
    } else {
        let (l, r) = v.split_at_mut(a);
        (&mut r[0], &mut l[b])
    }
}

pub fn run(sc: &Scenario, opt: Options) -> Outcome {
    Sim::new(sc, opt).run()
}
