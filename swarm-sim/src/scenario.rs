//! Scenarios: what a run simulates, read from a TOML file
//! (`swarm-sim/scenarios/*.toml`). Every field but `name`, `kind` and
//! `viewers` has a default, so a scenario states only what it changes.

use anyhow::{bail, Context};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Live,
    Vod,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub kind: Kind,
    /// The RNG seed: the same seed gives byte-identical output.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Viewers online at once (after the join ramp).
    pub viewers: usize,
    /// Simulated time, seconds.
    #[serde(default = "d_duration")]
    pub duration_s: u64,
    /// Viewers join evenly spread over this many seconds.
    #[serde(default = "d_join_over")]
    pub join_over_s: u64,
    /// Figures are measured from this second on (default: the end of the
    /// join ramp).
    pub measure_from_s: Option<u64>,
    #[serde(default = "d_bitrate")]
    pub bitrate_kbps: u64,
    /// Live segment length (VOD segments use the same).
    #[serde(default = "d_segment_ms")]
    pub segment_ms: u32,
    /// Piece size on the wire (before `payload_scale`).
    #[serde(default = "d_piece")]
    pub piece_bytes: u32,
    /// Payload bytes are carried (and hashed) this many times smaller than
    /// they are: the links charge the full size, the engines see segments,
    /// pieces and byte bounds divided by it. 1 carries real sizes.
    #[serde(default = "d_one")]
    pub payload_scale: u32,
    /// Playback model step (the browser driver ticks every 100 ms).
    #[serde(default = "d_tick")]
    pub tick_ms: u64,
    #[serde(default)]
    pub network: Network,
    /// Viewer link capacities: classes drawn by share.
    #[serde(default = "d_classes")]
    pub viewer_classes: Vec<LinkClass>,
    #[serde(default)]
    pub seeds: Seeds,
    #[serde(default)]
    pub tracker: Tracker,
    #[serde(default)]
    pub churn: Churn,
    #[serde(default)]
    pub vod: Vod,
    /// Engine overrides.
    #[serde(default)]
    pub engine: EngineTweaks,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    pub groups: usize,
    /// One-way latency within a group, ms.
    pub same_group_ms: u64,
    /// One-way latency between groups, ms (plus `cross_spread_ms` times a
    /// per-pair-of-groups hash in 0..1).
    pub cross_group_ms: u64,
    pub cross_spread_ms: u64,
    /// Share of viewer pairs that cannot connect (NAT), decided by a hash
    /// of the pair and the seed.
    pub nat_fail: f64,
    /// Time to open a data channel (signaling, ICE, DTLS).
    pub connect_ms: u64,
    /// Origin (HTTP) latency, one way.
    pub http_ms: u64,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            groups: 1,
            same_group_ms: 5,
            cross_group_ms: 30,
            cross_spread_ms: 40,
            nat_fail: 0.0,
            connect_ms: 300,
            http_ms: 20,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkClass {
    pub share: f64,
    pub upload_kbps: u64,
    pub download_kbps: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Seeds {
    pub count: usize,
    /// Upload cap of each seed (WebRTC and HTTP together), Mbit/s.
    pub upload_mbps: u64,
    /// Viewers each seed serves over WebRTC at once (its engines'
    /// `max_peers`, as `shoal-seed --capacity`).
    pub capacity: usize,
    /// Live: viewers each new segment is pushed to.
    pub push_copies: usize,
    /// Admission control of the HTTP origin: a fetch arriving while the
    /// seed's uplink queue is longer than this is answered 503 (the viewer
    /// sees `HttpFailed` one round trip later and retries after
    /// `http_retry_ms`, asking peers meanwhile). None: every fetch queues.
    pub http_max_queue_ms: Option<u64>,
}

impl Default for Seeds {
    fn default() -> Self {
        Seeds {
            count: 1,
            upload_mbps: 100,
            capacity: 200,
            push_copies: 1,
            http_max_queue_ms: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tracker {
    /// `MatchRule::enough_same_group`.
    pub enough_same_group: usize,
    /// `MatchRule::max`.
    pub max: usize,
    /// A viewer with fewer open peers asks again (the browser driver's
    /// `WANT_PEERS`) ...
    pub want_peers: usize,
    /// ... at most this often.
    pub get_peers_every_ms: u64,
    /// Candidates passed to `select_peers` per call: all members of the
    /// swarm when 0, else a random sample of this many (the real rule is
    /// O(swarm) per call).
    pub sample: usize,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            enough_same_group: 40,
            max: 50,
            want_peers: 4,
            get_peers_every_ms: 5000,
            sample: 0,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Churn {
    /// Share of viewers that leave per minute, each replaced by a new one
    /// (session lengths are exponential).
    pub per_minute: f64,
    /// At this second, `mass_leave_share` of the viewers leave at once
    /// (not replaced).
    pub mass_leave_at_s: Option<u64>,
    pub mass_leave_share: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Vod {
    pub videos: usize,
    /// Popularity of video k (1-based) is proportional to 1 / k^zipf_s.
    pub zipf_s: f64,
    pub video_s: u64,
}

impl Default for Vod {
    fn default() -> Self {
        Vod {
            videos: 1,
            zipf_s: 1.0,
            video_s: 600,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineTweaks {
    pub max_peers: Option<usize>,
    pub target_latency_ms: Option<u64>,
    /// Live: media kept behind the playhead (`LiveConfig::behind_ms`).
    pub behind_ms: Option<u64>,
    /// Live: `LiveConfig::max_upload_backlog`, full-size bytes.
    pub max_upload_backlog: Option<u64>,
    /// `max_buffered_bytes` of both engines (bytes queued toward one peer
    /// above which its requests are refused), full-size bytes.
    pub max_buffered_bytes: Option<u64>,
    /// VOD: `Config::max_unserved_claims`.
    pub max_unserved_claims: Option<u32>,
    /// Live: `LiveConfig::want_timeout_ms`.
    pub want_timeout_ms: Option<u64>,
    /// Live: `LiveConfig::max_failed_wants`.
    pub max_failed_wants: Option<u32>,
    /// Live: `LiveConfig::max_upload_queue_ms` (upload queues bounded in
    /// time at the measured uplink rate).
    pub max_upload_queue_ms: Option<u64>,
    /// Live: `LiveConfig::urgent_ms` and `critical_ms` (when a missing
    /// segment goes to a seed peer, then to HTTP).
    pub urgent_ms: Option<u64>,
    pub critical_ms: Option<u64>,
}

fn d_seed() -> u64 {
    1
}
fn d_duration() -> u64 {
    120
}
fn d_join_over() -> u64 {
    10
}
fn d_bitrate() -> u64 {
    1000
}
fn d_segment_ms() -> u32 {
    1000
}
fn d_piece() -> u32 {
    16 * 1024
}
fn d_one() -> u32 {
    1
}
fn d_tick() -> u64 {
    100
}
fn d_classes() -> Vec<LinkClass> {
    vec![LinkClass {
        share: 1.0,
        upload_kbps: 10_000,
        download_kbps: 50_000,
    }]
}

impl Scenario {
    pub fn from_toml(text: &str) -> anyhow::Result<Scenario> {
        let s: Scenario = toml::from_str(text)?;
        s.check()?;
        Ok(s)
    }

    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Scenario::from_toml(&text).with_context(|| format!("scenario {}", path.display()))
    }

    pub fn check(&self) -> anyhow::Result<()> {
        if self.viewers == 0 {
            bail!("viewers must be at least 1");
        }
        if self.viewer_classes.is_empty() || self.viewer_classes.iter().any(|c| c.share < 0.0) {
            bail!("viewer_classes needs at least one class with a share >= 0");
        }
        if self.seeds.count == 0 {
            bail!("seeds.count must be at least 1");
        }
        if self.payload_scale == 0 || self.piece_bytes / self.payload_scale < 64 {
            bail!("payload_scale must be 1.. and leave pieces of at least 64 bytes");
        }
        if self.kind == Kind::Vod && self.piece_bytes / self.payload_scale < 1024 {
            bail!("VOD manifests need pieces of at least 1024 bytes after payload_scale");
        }
        if !(0.0..=1.0).contains(&self.network.nat_fail) {
            bail!("network.nat_fail must be within 0..=1");
        }
        if self.network.groups == 0 || self.tick_ms == 0 || self.segment_ms == 0 {
            bail!("groups, tick_ms and segment_ms must be at least 1");
        }
        Ok(())
    }

    /// Bytes of one segment at full size.
    pub fn segment_bytes(&self) -> u64 {
        (self.bitrate_kbps * 1000 / 8 * self.segment_ms as u64 / 1000).max(1)
    }

    pub fn measure_from_ms(&self) -> u64 {
        self.measure_from_s.unwrap_or(self.join_over_s) * 1000
    }
}

/// The shipped scenarios' folder.
pub fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// A scenario by name (a file in [`scenarios_dir`]) or by path.
pub fn find(name_or_path: &str) -> anyhow::Result<Scenario> {
    let p = Path::new(name_or_path);
    if p.extension().is_some_and(|e| e == "toml") || p.components().count() > 1 {
        return Scenario::load(p);
    }
    Scenario::load(&scenarios_dir().join(format!("{name_or_path}.toml")))
}
