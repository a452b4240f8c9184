//! One live channel at the seed: the ingest's segments are described,
//! signed with the channel's Ed25519 key, kept in a sliding window for HTTP
//! (`live.json`, a live HLS playlist, the init and media segments) and
//! published into the channel's swarm, which pushes them to viewers.
//!
//! Invariants: a segment is in the window only with its signed description,
//! and is published to the swarm after it entered the window (so a viewer
//! that falls back to HTTP for a pushed segment finds it); the window holds
//! at most `window_segments` segments; the signing key never leaves this
//! module (the public key does, through `live.json` and the signal server).

use super::ingest::{
    spawn_channel, Channel, ChannelConfig, ChannelStatus, ConfigError, IngestEvent,
};
use crate::serve::Swarm;
use crate::stats::SeedStats;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use swarm_proto::live::sign::LiveSigner;
use swarm_proto::live::{
    segment_uri, LiveManifest, LiveMeta, LIVE_MANIFEST_VERSION, MAX_REASON_LEN, MAX_RECENT,
};
use swarm_proto::manifest::{sha256_hex, SegmentEntry, DEFAULT_PIECE_BYTES};
use tokio::task::JoinHandle;
use tower_http::cors::CorsLayer;
use tracing::{info, warn};

/// Sequence numbers start at (Unix ms - [`SEQ_EPOCH_MS`]) / this: no ingest
/// makes segments shorter (its minimum `segment_ms`), so numbers only grow
/// across restarts (for about 24 years from 2023).
pub const SEQ_UNIT_MS: u64 = 200;
/// 2023-11-14T22:13:20Z.
pub const SEQ_EPOCH_MS: u64 = 1_700_000_000_000;

/// The first sequence number of a channel started at `unix_ms`.
pub fn seq_base(unix_ms: u64) -> u32 {
    (unix_ms.saturating_sub(SEQ_EPOCH_MS) / SEQ_UNIT_MS).min(u32::MAX as u64 / 2) as u32
}

/// The channel's signing key, kept in `dir/NAME.key` (hex, created with
/// a fresh random key, owner-only, when missing): a restarted seed signs
/// with the same key, so viewers that joined before keep verifying.
pub fn load_or_create_key(dir: &std::path::Path, name: &str) -> std::io::Result<[u8; 32]> {
    let path = dir.join(format!("{name}.key"));
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut key = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut key).map_err(|e| {
                std::io::Error::other(format!(
                    "{} is not a 64-hex-digit key ({e}); delete it to make a new one",
                    path.display()
                ))
            })?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::getrandom(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
            std::fs::create_dir_all(dir)?;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            use std::io::Write as _;
            opts.open(&path)?.write_all(hex::encode(key).as_bytes())?;
            info!(channel = %name, file = %path.display(), "new live channel key");
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

/// Descriptions `live.json` carries (the newest).
pub const MANIFEST_RECENT: usize = 6;
/// Default of [`LiveSettings::window_segments`].
pub const DEFAULT_WINDOW_SEGMENTS: usize = 30;

/// How a channel is kept and served.
#[derive(Clone, Debug)]
pub struct LiveSettings {
    /// Segments kept for HTTP and for viewers behind the edge.
    pub window_segments: usize,
    /// Segments listed in the HLS playlist (the newest).
    pub playlist_segments: usize,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            window_segments: DEFAULT_WINDOW_SEGMENTS,
            playlist_segments: 6,
        }
    }
}

struct Init {
    data: Bytes,
    sha256: String,
    sig: [u8; 64],
    mime: String,
}

struct Entry {
    meta: LiveMeta,
    data: Bytes,
    discontinuity: bool,
}

#[derive(Default)]
struct Window {
    init: Option<Init>,
    segments: VecDeque<Entry>,
}

/// One channel's signed window and status.
pub struct LiveChannel {
    pub name: String,
    signer: LiveSigner,
    /// Added to the ingest's sequence numbers: derived from the wall clock
    /// at start, so a restarted seed (same key) never reuses a number it
    /// signed before (one per [`SEQ_UNIT_MS`], the shortest segment).
    seq_base: u32,
    segment_ms: u32,
    settings: LiveSettings,
    window: Mutex<Window>,
    status: tokio::sync::watch::Receiver<ChannelStatus>,
    /// Taken by [`LiveChannel::stop`].
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LiveChannel {
    pub fn public_key(&self) -> [u8; 32] {
        self.signer.public_key()
    }

    pub fn status(&self) -> ChannelStatus {
        self.status.borrow().clone()
    }

    /// Stops the channel for good: ffmpeg is killed, no segment follows,
    /// `live.json` says it was stopped (its window stays served until the
    /// channel is dropped). Returns once the status reads stopped (at most
    /// a few seconds).
    pub async fn stop(&self) {
        if let Some(tx) = lock(&self.stop).take() {
            let _ = tx.send(());
        }
        let mut status = self.status.clone();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            status.wait_for(|s| matches!(s, ChannelStatus::Stopped)),
        )
        .await;
    }

    /// `live.json`, once the encoder produced its init segment and one
    /// media segment.
    pub fn manifest(&self) -> Option<LiveManifest> {
        let w = lock(&self.window);
        let init = w.init.as_ref()?;
        if w.segments.is_empty() {
            return None;
        }
        let n = MANIFEST_RECENT.min(MAX_RECENT);
        let skip = w.segments.len().saturating_sub(n);
        Some(LiveManifest {
            version: LIVE_MANIFEST_VERSION,
            channel: self.name.clone(),
            title: self.name.clone(),
            mime: init.mime.clone(),
            piece_size: DEFAULT_PIECE_BYTES,
            segment_ms: self.segment_ms,
            playlist: "index.m3u8".into(),
            init: SegmentEntry {
                uri: "init.mp4".into(),
                size: init.data.len() as u64,
                sha256: init.sha256.clone(),
                duration_ms: 0,
            },
            init_sig: init.sig,
            public_key: self.public_key(),
            recent: w.segments.iter().skip(skip).map(|e| e.meta).collect(),
            interrupted: match self.status() {
                ChannelStatus::Interrupted { reason, .. } => {
                    Some(reason.chars().take(MAX_REASON_LEN / 4).collect())
                }
                ChannelStatus::Stopped => Some("the channel was stopped".into()),
                _ => None,
            },
        })
    }

    /// The live HLS playlist (version 7, fMP4, with the capture clock as
    /// `EXT-X-PROGRAM-DATE-TIME`), for the players' fallback and any HLS
    /// player.
    pub fn playlist(&self) -> Option<String> {
        let w = lock(&self.window);
        w.init.as_ref()?;
        let n = self.settings.playlist_segments;
        let skip = w.segments.len().saturating_sub(n);
        let listed: Vec<&Entry> = w.segments.iter().skip(skip).collect();
        let first = listed.first()?;
        let target = (listed.iter())
            .map(|e| e.meta.duration_ms.div_ceil(1000))
            .max()
            .unwrap_or(1);
        let mut p = String::new();
        let _ = write!(
            p,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-MAP:URI=\"init.mp4\"\n",
            first.meta.seq
        );
        for e in listed {
            if e.discontinuity {
                p.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = write!(
                p,
                "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},\n{}\n",
                iso8601(e.meta.capture_ms),
                e.meta.duration_ms as f64 / 1000.0,
                segment_uri(e.meta.seq)
            );
        }
        Some(p)
    }

    pub fn init(&self) -> Option<Bytes> {
        lock(&self.window).init.as_ref().map(|i| i.data.clone())
    }

    pub fn segment(&self, seq: u32) -> Option<Bytes> {
        let w = lock(&self.window);
        let first = w.segments.front()?.meta.seq;
        let e = w.segments.get(seq.checked_sub(first)? as usize)?;
        (e.meta.seq == seq).then(|| e.data.clone())
    }

    /// The newest segment's description.
    pub fn newest(&self) -> Option<LiveMeta> {
        lock(&self.window).segments.back().map(|e| e.meta)
    }

    fn on_init(&self, data: Bytes, mime: String) {
        let sha256 = sha256_hex(&data);
        let sig = self.signer.sign_init(&self.name, &sha256);
        let mut w = lock(&self.window);
        if w.init.as_ref().is_some_and(|i| i.sha256 != sha256) {
            warn!(channel = %self.name, "the encoder's init segment changed after a restart; viewers that joined before must rejoin");
        }
        w.init = Some(Init {
            data,
            sha256,
            sig,
            mime,
        });
    }

    /// Describes, signs and keeps one segment; returns its description.
    fn on_segment(&self, seg: super::ingest::LiveSegment) -> Option<LiveMeta> {
        let Ok(size) = u32::try_from(seg.data.len()) else {
            warn!(channel = %self.name, seq = seg.seq, "segment over 4 GiB dropped");
            return None;
        };
        let Some(seq) = self.seq_base.checked_add(seg.seq) else {
            warn!(channel = %self.name, "sequence numbers exhausted; restart the channel");
            return None;
        };
        let mut meta = LiveMeta {
            seq,
            start_ms: seg.start_ms,
            duration_ms: seg.duration_ms.max(1),
            capture_ms: seg.capture_ms,
            size,
            sha256: Sha256::digest(&seg.data).into(),
            sig: [0; 64],
        };
        if let Err(e) = meta.check_shape() {
            warn!(channel = %self.name, "segment dropped: {e}");
            return None;
        }
        self.signer.sign_meta(&self.name, &mut meta);
        let mut w = lock(&self.window);
        w.segments.push_back(Entry {
            meta,
            data: seg.data,
            discontinuity: seg.discontinuity,
        });
        while w.segments.len() > self.settings.window_segments.max(1) {
            w.segments.pop_front();
        }
        Some(meta)
    }
}

/// Formats Unix ms as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Starts a channel: its ingest, and the task that signs, keeps and
/// publishes each segment (into `swarm` when the seed serves WebRTC).
pub fn start(
    cfg: ChannelConfig,
    secret: [u8; 32],
    settings: LiveSettings,
    swarm: Option<Arc<Swarm>>,
) -> Result<(Arc<LiveChannel>, JoinHandle<()>), ConfigError> {
    let mut ingest: Channel = spawn_channel(cfg.clone())?;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let channel = Arc::new(LiveChannel {
        name: cfg.name.clone(),
        signer: LiveSigner::from_secret(secret),
        seq_base: seq_base(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        ),
        segment_ms: cfg.segment_ms,
        settings,
        window: Mutex::default(),
        status: ingest.status(),
        stop: Mutex::new(Some(stop_tx)),
    });
    let ch = channel.clone();
    let task = tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                ev = ingest.recv() => ev,
                _ = &mut stop_rx => None,
            };
            let Some(ev) = ev else { break };
            match ev {
                IngestEvent::Init { data, mime } => {
                    info!(channel = %ch.name, %mime, bytes = data.len(), "live init segment");
                    ch.on_init(data, mime);
                }
                IngestEvent::Segment(seg) => {
                    let data: Arc<[u8]> = Arc::from(&seg.data[..]);
                    if let (Some(meta), Some(swarm)) = (ch.on_segment(seg), &swarm) {
                        swarm.publish(meta, data);
                    }
                }
                IngestEvent::Status(s) => {
                    info!(channel = %ch.name, status = ?s, "live channel status")
                }
            }
        }
        ingest.stop().await;
        info!(channel = %ch.name, "live channel stopped");
    });
    Ok((channel, task))
}

/// The live channels a seed serves, by name (channels start and stop
/// while the seed runs).
#[derive(Default, Clone)]
pub struct LiveChannels(pub Arc<std::sync::RwLock<HashMap<String, Arc<LiveChannel>>>>);

impl LiveChannels {
    pub fn new(map: HashMap<String, Arc<LiveChannel>>) -> LiveChannels {
        LiveChannels(Arc::new(std::sync::RwLock::new(map)))
    }

    pub fn get(&self, name: &str) -> Option<Arc<LiveChannel>> {
        self.read().get(name).cloned()
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<LiveChannel>>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<LiveChannel>>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Serialize)]
struct ChannelView {
    channel: String,
    status: String,
    reason: Option<String>,
    newest_seq: Option<u32>,
    manifest: String,
}

/// `/live/index.json`, `/live/{channel}/live.json`, `index.m3u8`,
/// `init.mp4` and `seg-N.m4s`.
pub fn router(channels: LiveChannels, stats: Arc<SeedStats>) -> Router {
    Router::new()
        .route("/live/index.json", get(index))
        .route("/live/{channel}/{file}", get(file))
        .with_state(channels)
        .layer(middleware::from_fn_with_state(
            stats,
            crate::http::count_bytes,
        ))
        .layer(CorsLayer::permissive())
}

async fn index(State(ch): State<LiveChannels>) -> Response {
    let channels: Vec<Arc<LiveChannel>> = ch.read().values().cloned().collect();
    let mut v: Vec<ChannelView> = (channels.iter())
        .map(|c| {
            let (status, reason) = match c.status() {
                ChannelStatus::Starting => ("starting", None),
                ChannelStatus::Running => ("running", None),
                ChannelStatus::Interrupted { reason, .. } => ("interrupted", Some(reason)),
                ChannelStatus::Stopped => ("stopped", None),
            };
            ChannelView {
                channel: c.name.clone(),
                status: status.into(),
                reason,
                newest_seq: c.newest().map(|m| m.seq),
                manifest: format!("/live/{}/live.json", c.name),
            }
        })
        .collect();
    v.sort_by(|a, b| a.channel.cmp(&b.channel));
    no_store(Json(v).into_response())
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn typed(body: impl Into<axum::body::Body>, ct: &'static str, cache: &'static str) -> Response {
    let mut r = Response::new(body.into());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

async fn file(
    State(ch): State<LiveChannels>,
    Path((name, file)): Path<(String, String)>,
    _req: Request,
) -> Response {
    let Some(c) = ch.get(&name) else {
        return (StatusCode::NOT_FOUND, "unknown live channel\n").into_response();
    };
    let starting = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "live channel is starting: no segment yet\n",
        )
            .into_response()
    };
    match file.as_str() {
        "live.json" => match c.manifest() {
            Some(m) => typed(m.to_json(), "application/json", "no-store"),
            None => starting(),
        },
        "index.m3u8" => match c.playlist() {
            Some(p) => typed(p, "application/vnd.apple.mpegurl", "no-store"),
            None => starting(),
        },
        "init.mp4" => match c.init() {
            Some(d) => typed(d, "video/mp4", "public, max-age=60"),
            None => starting(),
        },
        f => {
            let seq = (f.strip_prefix("seg-"))
                .and_then(|r| r.strip_suffix(".m4s"))
                .and_then(|n| n.parse::<u32>().ok());
            match seq.and_then(|s| c.segment(s)) {
                Some(d) => typed(d, "video/iso.segment", "public, max-age=60"),
                None => (
                    StatusCode::NOT_FOUND,
                    "no such live segment (not yet, or gone from the window)\n",
                )
                    .into_response(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::iso8601;

    #[test]
    fn sequence_numbers_grow_across_restarts() {
        use super::{seq_base, SEQ_UNIT_MS};
        let t0 = 1_796_515_200_000;
        // A run of the shortest segments from t0 to t1 ends below the base
        // of a run started at t1.
        let t1 = t0 + 3_600_000;
        let made = ((t1 - t0) / SEQ_UNIT_MS) as u32;
        assert!(seq_base(t0) + made <= seq_base(t1));
        assert!(seq_base(t1) < u32::MAX / 2);
        assert_eq!(seq_base(0), 0);
    }

    #[test]
    fn a_kept_key_is_read_back_and_a_bad_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::load_or_create_key(dir.path(), "ch").unwrap();
        assert_eq!(super::load_or_create_key(dir.path(), "ch").unwrap(), a);
        assert_ne!(super::load_or_create_key(dir.path(), "other").unwrap(), a);
        std::fs::write(dir.path().join("bad.key"), "xyz").unwrap();
        let e = super::load_or_create_key(dir.path(), "bad").unwrap_err();
        assert!(e.to_string().contains("bad.key"), "{e}");
    }

    #[test]
    fn program_date_time_is_iso_8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso8601(1_796_515_200_000), "2026-12-06T00:00:00.000Z");
    }
}
