//! Live ingest: one ffmpeg child per channel turns an encoder's stream into an init segment
//! and numbered CMAF media segments ([`IngestEvent`]), and restarts a failed source with
//! back-off.
//!
//! ffmpeg encodes H.264 (libx264, `veryfast`, `zerolatency`, yuv420p, constant frame rate,
//! a keyframe every `segment_ms` and nowhere else) and AAC, and writes fragmented MP4 to its
//! stdout (`-movflags +frag_keyframe+default_base_moof+delay_moov+frag_discont`), one
//! fragment per keyframe. [`super::mp4::Mp4Stream`] cuts that stream into boxes.
//!
//! Invariants of what a [`Channel`] delivers:
//! - An [`IngestEvent::Init`] comes before the first segment, and again before the first
//!   segment of a restart whenever the restarted ffmpeg wrote a different init (a publisher
//!   with another resolution, say). A segment belongs to the last init delivered before it.
//! - [`LiveSegment::seq`] is 0, 1, 2, ... over the whole life of the channel, one more per
//!   segment delivered, never reused across restarts (u32: 136 years of 1 s segments).
//! - [`LiveSegment::data`] is exactly one `moof` + `mdat` (with any `styp`/`prft` before
//!   it) whose video starts with a keyframe; a fragment that does not is dropped, as is one
//!   whose start is not after the previous segment's (both logged, neither happens with the
//!   command line used here).
//! - [`LiveSegment::start_ms`] is the video track's `tfdt` in milliseconds and strictly
//!   increases over the life of the channel: a restart passes `-output_ts_offset` so that
//!   the new ffmpeg's media time (and the `tfdt` in the bytes) continues from the end of
//!   the last segment. `duration_ms` is the sum of the fragment's video sample durations
//!   (from `trun`, or the `tfhd`/`trex` defaults), so a segment is delivered as soon as its
//!   `mdat` is read, and `start_ms + duration_ms` is the next segment's `start_ms` within
//!   one run.
//! - [`LiveSegment::capture_ms`]: see [`CaptureClock`].
//! - Memory is bounded. Events go through a bounded channel of
//!   [`ChannelConfig::event_capacity`] events; when it is full the ingest waits (it does not
//!   drop segments, so `seq` never has a gap), ffmpeg's stdout pipe fills and ffmpeg blocks:
//!   a consumer slower than real time makes the channel fall behind live, never grow
//!   memory. At most `event_capacity` segments plus one box being read (at most
//!   [`super::mp4::DEFAULT_MAX_BOX`]) are held, and 16 lines of ffmpeg's stderr.
//!   Time spent waiting for the consumer does not count towards the stall timeout.
//!
//! Failure: ffmpeg cannot start, exits, closes its stdout, writes something unreadable, or
//! no segment arrives for max(5 s, 5 × `segment_ms`) (for a listening source, the wait for
//! a publisher's first segment is not a stall). The channel reports
//! [`ChannelStatus::Interrupted`] with ffmpeg's reason (exit status and last stderr lines),
//! waits `retry_in_ms` (1 s, doubling up to 30 s, back to 1 s after a run that delivered
//! segments for a minute) and starts ffmpeg again. Nothing in a source can make it panic.
//!
//! Stopping: [`Channel::stop`] ends the task and kills ffmpeg; dropping the [`Channel`]
//! aborts the task, which kills ffmpeg too (`kill_on_drop`).

use super::mp4::{self, Mp4Item, Mp4Stream};
use crate::package::ffmpeg::ToolError;
use crate::package::manifest::avc_codec_from_init;
use bytes::Bytes;
use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// The font burnt into the test source's clock.
pub const CLOCK_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// First wait before restarting a failed source.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait before restarting a failed source.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run that delivered segments this long resets the back-off.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// A push or pull segment arriving this much later than its anchor predicts re-anchors
/// [`CaptureClock`].
pub const REANCHOR_LATE_MS: u64 = 2000;
/// Lines of ffmpeg's stderr kept, and the longest line kept (bytes).
const STDERR_LINES: usize = 16;
const STDERR_LINE_MAX: usize = 512;
/// Lines of stderr quoted in an interruption's reason.
const REASON_LINES: usize = 3;

const ACCEPTED_FORMS: &str = "testsrc, testsrc:clock, file:PATH (looped), file-once:PATH, \
rtmp://HOST:PORT/APP/KEY (listen for a push), srt://HOST:PORT[?mode=listener] (listen for a push), \
http(s)://HOST/PATH.m3u8 (pull HLS)";

/// Where a channel's pictures come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// ffmpeg's lavfi test source (testsrc2 video + sine audio), paced in real time with
    /// `-re`; `clock: true` burns the wall clock into the picture (skipped with a warning if
    /// [`CLOCK_FONT`] is missing).
    TestSource { clock: bool },
    /// Loop a media file forever in real time (`-stream_loop -1 -re`).
    LoopFile(PathBuf),
    /// Play a media file once in real time; when it ends the channel restarts it (an
    /// interruption), as it would any source that ends.
    File(PathBuf),
    /// ffmpeg listens for an RTMP push (as OBS publishes), e.g.
    /// `rtmp://127.0.0.1:1935/live/key`.
    RtmpListen(String),
    /// ffmpeg listens for an SRT push, e.g. `srt://127.0.0.1:9000?mode=listener`.
    SrtListen(String),
    /// Pull an HLS playlist (http/https), paced in real time.
    HlsPull(String),
}

/// A source string that is none of the accepted forms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceParseError {
    #[error("unknown live source {given:?}; accepted: {ACCEPTED_FORMS}")]
    Unknown { given: String },
    #[error("live source {given:?} has no {what}; accepted: {ACCEPTED_FORMS}")]
    Incomplete { given: String, what: &'static str },
    #[error("live source {given:?}: SRT ingest only listens (mode=listener); accepted: {ACCEPTED_FORMS}")]
    SrtNotListener { given: String },
}

impl SourceSpec {
    /// Parses `testsrc`, `testsrc:clock`, `file:PATH`, `file-once:PATH`, `rtmp://...`,
    /// `srt://...` (`mode=listener` is added when no mode is given) and `http(s)://...`.
    pub fn parse(s: &str) -> Result<SourceSpec, SourceParseError> {
        let given = || s.to_string();
        let incomplete = |what| SourceParseError::Incomplete {
            given: given(),
            what,
        };
        let after_host = |rest: &str| {
            let host = rest.split(['/', '?']).next().unwrap_or("");
            !host.is_empty()
        };
        if s == "testsrc" {
            return Ok(SourceSpec::TestSource { clock: false });
        }
        if s == "testsrc:clock" {
            return Ok(SourceSpec::TestSource { clock: true });
        }
        if let Some(p) = s.strip_prefix("file-once:") {
            return if p.is_empty() {
                Err(incomplete("path"))
            } else {
                Ok(SourceSpec::File(PathBuf::from(p)))
            };
        }
        if let Some(p) = s.strip_prefix("file:") {
            return if p.is_empty() {
                Err(incomplete("path"))
            } else {
                Ok(SourceSpec::LoopFile(PathBuf::from(p)))
            };
        }
        if let Some(rest) = s.strip_prefix("rtmp://") {
            let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
            if !after_host(rest) {
                return Err(incomplete("host"));
            }
            if path.is_empty() {
                return Err(incomplete("application path (rtmp://HOST:PORT/APP/KEY)"));
            }
            return Ok(SourceSpec::RtmpListen(s.to_string()));
        }
        if let Some(rest) = s.strip_prefix("srt://") {
            if !after_host(rest) {
                return Err(incomplete("host"));
            }
            let query = rest.split_once('?').map(|(_, q)| q).unwrap_or("");
            let mode = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("mode="))
                .map(str::to_string);
            return match mode.as_deref() {
                Some("listener") => Ok(SourceSpec::SrtListen(s.to_string())),
                Some(_) => Err(SourceParseError::SrtNotListener { given: given() }),
                None if query.is_empty() => Ok(SourceSpec::SrtListen(format!("{s}?mode=listener"))),
                None => Ok(SourceSpec::SrtListen(format!("{s}&mode=listener"))),
            };
        }
        for scheme in ["http://", "https://"] {
            if let Some(rest) = s.strip_prefix(scheme) {
                if !after_host(rest) {
                    return Err(incomplete("host"));
                }
                return Ok(SourceSpec::HlsPull(s.to_string()));
            }
        }
        Err(SourceParseError::Unknown { given: given() })
    }

    /// ffmpeg paces the source itself (`-re`) from its start: capture times follow from the
    /// spawn time. Otherwise they follow from arrivals (see [`CaptureClock`]).
    fn paced_from_spawn(&self) -> bool {
        matches!(
            self,
            SourceSpec::TestSource { .. } | SourceSpec::LoopFile(_) | SourceSpec::File(_)
        )
    }

    /// ffmpeg waits for a publisher: no first-segment timeout.
    fn listens(&self) -> bool {
        matches!(self, SourceSpec::RtmpListen(_) | SourceSpec::SrtListen(_))
    }
}

impl fmt::Display for SourceSpec {
    /// The parseable form, with an RTMP stream key hidden (it is a publishing secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::TestSource { clock: false } => f.write_str("testsrc"),
            SourceSpec::TestSource { clock: true } => f.write_str("testsrc:clock"),
            SourceSpec::LoopFile(p) => write!(f, "file:{}", p.display()),
            SourceSpec::File(p) => write!(f, "file-once:{}", p.display()),
            SourceSpec::RtmpListen(u) => match u.rsplit_once('/') {
                Some((app, _key)) => write!(f, "{app}/***"),
                None => f.write_str(u),
            },
            SourceSpec::SrtListen(u) | SourceSpec::HlsPull(u) => f.write_str(u),
        }
    }
}

/// One live channel's settings. [`ChannelConfig::new`] fills the defaults.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// Used in logs.
    pub name: String,
    pub source: SourceSpec,
    /// Segment (and GOP) length; 200..=10000, default 1000. Segments last a whole number of
    /// frames: exactly `segment_ms` when `fps × segment_ms` is a multiple of 1000.
    pub segment_ms: u32,
    /// H.264 bitrate (also its maxrate and VBV buffer); 100..=20000, default 800.
    pub video_kbps: u32,
    /// AAC bitrate; 32..=320, default 96.
    pub audio_kbps: u32,
    /// Output frame rate (constant); 1..=60, default 25.
    pub fps: u32,
    /// Largest output height (sources are scaled down, never up; the test source is made
    /// this tall at 16:9); 144..=2160, default 720.
    pub max_height: u32,
    /// The ffmpeg binary; default `ffmpeg` (found on PATH).
    pub ffmpeg: PathBuf,
    /// Events held for a slow consumer before the ingest waits; 1..=1024, default 32.
    pub event_capacity: usize,
}

impl ChannelConfig {
    pub fn new(name: impl Into<String>, source: SourceSpec) -> ChannelConfig {
        ChannelConfig {
            name: name.into(),
            source,
            segment_ms: 1000,
            video_kbps: 800,
            audio_kbps: 96,
            fps: 25,
            max_height: 720,
            ffmpeg: PathBuf::from("ffmpeg"),
            event_capacity: 32,
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let check = |field: &'static str, v: u64, lo: u64, hi: u64| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(ConfigError {
                    field,
                    value: v,
                    min: lo,
                    max: hi,
                })
            }
        };
        check("segment_ms", self.segment_ms.into(), 200, 10_000)?;
        check("video_kbps", self.video_kbps.into(), 100, 20_000)?;
        check("audio_kbps", self.audio_kbps.into(), 32, 320)?;
        check("fps", self.fps.into(), 1, 60)?;
        check("max_height", self.max_height.into(), 144, 2160)?;
        check("event_capacity", self.event_capacity as u64, 1, 1024)
    }

    /// How long without a segment counts as a stall: max(5 s, 5 × segment).
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.segment_ms) * 5).max(Duration::from_secs(5))
    }

    /// Frames per GOP (rounded up; the forced keyframes decide where segments are cut).
    fn gop_frames(&self) -> u32 {
        (self.fps * self.segment_ms).div_ceil(1000).max(1)
    }

    /// The ffmpeg command line (without the program) for a run whose media time starts at
    /// `offset_ms`.
    pub fn ffmpeg_args(&self, offset_ms: u64) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        fn add(a: &mut Vec<String>, items: &[&str]) {
            a.extend(items.iter().map(|s| s.to_string()));
        }
        add(
            &mut a,
            &["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"],
        );
        let h = self.max_height & !1;
        let w = (h * 16 / 9) & !1;
        let mut vf = vec![format!("fps={}", self.fps)];
        let maps: [&str; 2];
        match &self.source {
            SourceSpec::TestSource { clock } => {
                let size = format!("testsrc2=size={w}x{h}:rate={}", self.fps);
                add(&mut a, &["-re", "-f", "lavfi", "-i", &size]);
                add(&mut a, &["-re", "-f", "lavfi", "-i"]);
                add(&mut a, &["sine=frequency=440:sample_rate=48000"]);
                maps = ["0:v:0", "1:a:0"];
                if *clock {
                    if Path::new(CLOCK_FONT).exists() {
                        vf.push(format!(
                            "drawtext=fontfile={CLOCK_FONT}:text='%{{localtime\\:%T}}':\
                             x=h/20:y=h/20:fontsize=h/10:fontcolor=white:box=1:boxcolor=black@0.6"
                        ));
                    } else {
                        warn!(channel = %self.name, font = CLOCK_FONT, "font missing, test source without clock");
                    }
                }
            }
            SourceSpec::LoopFile(p) => {
                add(&mut a, &["-stream_loop", "-1", "-re", "-i"]);
                a.push(p.to_string_lossy().into_owned());
                maps = ["0:v:0", "0:a:0?"];
            }
            SourceSpec::File(p) => {
                add(&mut a, &["-re", "-i"]);
                a.push(p.to_string_lossy().into_owned());
                maps = ["0:v:0", "0:a:0?"];
            }
            SourceSpec::RtmpListen(u) => {
                add(
                    &mut a,
                    &["-listen", "1", "-analyzeduration", "1000000", "-i", u],
                );
                maps = ["0:v:0", "0:a:0?"];
            }
            SourceSpec::SrtListen(u) => {
                // MPEG-TS declares no streams up front: ffmpeg would probe 5 s of the push
                // before writing anything, then burst; 1 s finds H.264 and AAC (the same
                // for RTMP, where it saves ~0.6 s on the first segment).
                add(&mut a, &["-analyzeduration", "1000000", "-i", u]);
                maps = ["0:v:0", "0:a:0?"];
            }
            SourceSpec::HlsPull(u) => {
                add(&mut a, &["-re", "-i", u]);
                maps = ["0:v:0", "0:a:0?"];
            }
        }
        if !matches!(self.source, SourceSpec::TestSource { .. }) {
            vf.push(format!("scale=w=-2:h='trunc(min(ih,{h})/2)*2'"));
        }
        let gop = self.gop_frames().to_string();
        let kbps = format!("{}k", self.video_kbps);
        let seg_s = format!("{}.{:03}", self.segment_ms / 1000, self.segment_ms % 1000);
        add(
            &mut a,
            &["-map", maps[0], "-map", maps[1], "-vf", &vf.join(",")],
        );
        add(
            &mut a,
            &[
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-tune",
                "zerolatency",
            ],
        );
        add(&mut a, &["-profile:v", "high", "-pix_fmt", "yuv420p"]);
        add(
            &mut a,
            &["-b:v", &kbps, "-maxrate", &kbps, "-bufsize", &kbps],
        );
        add(
            &mut a,
            &["-g", &gop, "-keyint_min", &gop, "-sc_threshold", "0"],
        );
        add(
            &mut a,
            &[
                "-force_key_frames",
                &format!("expr:gte(t,n_forced*{seg_s})"),
            ],
        );
        add(
            &mut a,
            &["-c:a", "aac", "-b:a", &format!("{}k", self.audio_kbps)],
        );
        add(&mut a, &["-ac", "2", "-ar", "48000"]);
        if offset_ms > 0 {
            let off = format!("{}.{:03}", offset_ms / 1000, offset_ms % 1000);
            add(&mut a, &["-output_ts_offset", &off]);
        }
        // frag_discont + delay_moov: the first tfdt is the (offset) media time, not 0;
        // make_non_negative: AAC priming would otherwise give audio a negative first tfdt.
        add(
            &mut a,
            &["-avoid_negative_ts", "make_non_negative", "-f", "mp4"],
        );
        add(
            &mut a,
            &[
                "-movflags",
                "+frag_keyframe+default_base_moof+delay_moov+frag_discont",
            ],
        );
        add(&mut a, &["-flush_packets", "1", "pipe:1"]);
        a
    }
}

/// A configuration value out of its range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("live channel setting {field} = {value} is outside {min}..={max}")]
pub struct ConfigError {
    pub field: &'static str,
    pub value: u64,
    pub min: u64,
    pub max: u64,
}

/// One media segment. See the module docs for the invariants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSegment {
    pub seq: u32,
    /// `[styp/prft] moof mdat`, starting with a keyframe.
    pub data: Bytes,
    /// Media time of the first video sample (ms), continuous across restarts.
    pub start_ms: u64,
    pub duration_ms: u32,
    /// Unix ms: estimated wall-clock capture time of its first frame.
    pub capture_ms: u64,
    /// First segment of an ffmpeg run (seq 0 included): the source (re)started before it.
    pub discontinuity: bool,
}

/// What a channel reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IngestEvent {
    /// `ftyp` + `moov`; `mime` is `video/mp4; codecs="avc1.PPCCLL[,mp4a.40.2]"`.
    Init {
        data: Bytes,
        mime: String,
    },
    Segment(LiveSegment),
    Status(ChannelStatus),
}

/// A channel's state, also sent as [`IngestEvent::Status`] when it changes (the final
/// `Stopped` only if the event channel has room; [`Channel::status`] always has it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelStatus {
    /// ffmpeg is starting (or, for a listening source, waiting for a publisher).
    Starting,
    /// Segments are coming.
    Running,
    /// The source failed; `reason` is ffmpeg's, a restart follows in `retry_in_ms`.
    Interrupted { reason: String, retry_in_ms: u64 },
    /// Stopped for good (stop(), or the consumer went away).
    Stopped,
}

/// A running channel. Dropping it stops the channel and kills ffmpeg.
pub struct Channel {
    events: mpsc::Receiver<IngestEvent>,
    status: watch::Receiver<ChannelStatus>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Channel {
    /// The next event; `None` once the channel has stopped and every event was read.
    pub async fn recv(&mut self) -> Option<IngestEvent> {
        self.events.recv().await
    }

    /// The event receiver itself (for `select!` loops).
    pub fn events_mut(&mut self) -> &mut mpsc::Receiver<IngestEvent> {
        &mut self.events
    }

    /// The latest status, updated even when nobody reads the events.
    pub fn status(&self) -> watch::Receiver<ChannelStatus> {
        self.status.clone()
    }

    /// Stops the channel: kills ffmpeg and waits for the task to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a channel's ingest task (on the current tokio runtime).
pub fn spawn_channel(cfg: ChannelConfig) -> Result<Channel, ConfigError> {
    cfg.validate()?;
    let (tx, events) = mpsc::channel(cfg.event_capacity);
    let (status_tx, status) = watch::channel(ChannelStatus::Starting);
    let (stop, stop_rx) = oneshot::channel();
    let task = tokio::spawn(channel_task(
        cfg,
        Outputs {
            events: tx,
            status: status_tx,
        },
        stop_rx,
    ));
    Ok(Channel {
        events,
        status,
        stop: Some(stop),
        task,
    })
}

/// Wall-clock capture times from media times.
///
/// - Sources paced by ffmpeg from its start (test source, files, with `-re`): the anchor is
///   the wall clock when ffmpeg was spawned, at the run's starting media time (the restart
///   offset); capture = anchor + (start_ms − offset). It counts ffmpeg's start-up as
///   latency, so it errs early (conservative).
/// - Pushes and pulls: the first segment of a run is taken to have been captured
///   `duration_ms` before it arrived (a fragment is written when the next keyframe comes);
///   later ones at anchor + media-time difference. A segment cannot be captured later
///   than `arrival − duration`, so one arriving earlier than predicted moves the anchor
///   there; one arriving more than [`REANCHOR_LATE_MS`] later than predicted (the
///   publisher stalled, the network queued) re-anchors on it too.
#[derive(Clone, Debug)]
pub struct CaptureClock {
    follow_arrivals: bool,
    /// (wall ms, media ms)
    anchor: Option<(u64, u64)>,
}

impl CaptureClock {
    /// A clock for sources paced from `spawn_wall_ms`, at media time `offset_ms`.
    pub fn paced(spawn_wall_ms: u64, offset_ms: u64) -> Self {
        CaptureClock {
            follow_arrivals: false,
            anchor: Some((spawn_wall_ms, offset_ms)),
        }
    }

    /// A clock anchored on arrivals (pushes and pulls).
    pub fn from_arrivals() -> Self {
        CaptureClock {
            follow_arrivals: true,
            anchor: None,
        }
    }

    /// The capture time of a segment that arrived at `arrival_ms` (unix ms).
    pub fn capture_ms(&mut self, start_ms: u64, duration_ms: u32, arrival_ms: u64) -> u64 {
        let latest = arrival_ms.saturating_sub(u64::from(duration_ms));
        let predicted = self.anchor.map(|(wall, media)| {
            let p = i128::from(wall) + i128::from(start_ms) - i128::from(media);
            u64::try_from(p.max(0)).unwrap_or(u64::MAX)
        });
        match predicted {
            Some(p) if !self.follow_arrivals => p,
            Some(p) if p <= latest && latest - p <= REANCHOR_LATE_MS => p,
            _ => {
                self.anchor = Some((latest, start_ms));
                latest
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The `codecs` MIME parameter of an init segment.
fn mime_of(init: &[u8], has_audio: bool) -> Option<String> {
    let avc = avc_codec_from_init(init)?;
    Some(if has_audio {
        format!("video/mp4; codecs=\"{avc},mp4a.40.2\"")
    } else {
        format!("video/mp4; codecs=\"{avc}\"")
    })
}

/// The last lines of a child's stderr, bounded in count and length.
#[derive(Debug, Default)]
struct StderrTail {
    lines: VecDeque<String>,
}

impl StderrTail {
    fn push(&mut self, line: &[u8]) {
        let line = &line[..line.len().min(STDERR_LINE_MAX)];
        let text = String::from_utf8_lossy(line).trim().to_string();
        if text.is_empty() {
            return;
        }
        debug!(target: "shoal_seed::live::ffmpeg", "{text}");
        if self.lines.len() == STDERR_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(text);
    }

    /// The last `n` lines joined by " | ", without ffmpeg's `[demuxer @ 0x55..]` noise.
    fn summary(&self, n: usize) -> String {
        crate::package::ffmpeg::join_last(self.lines.iter().map(String::as_str), n)
    }
}

/// Reads a child's stderr into a shared tail until it closes.
async fn read_stderr(mut r: impl AsyncRead + Unpin, tail: Arc<Mutex<StderrTail>>) {
    let mut buf = [0u8; 4096];
    let mut line: Vec<u8> = Vec::new();
    let push = |l: &[u8]| {
        if let Ok(mut t) = tail.lock() {
            t.push(l);
        }
    };
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' || b == b'\r' {
                push(&line);
                line.clear();
            } else if line.len() < STDERR_LINE_MAX {
                line.push(b);
            }
        }
    }
    push(&line);
}

struct Outputs {
    events: mpsc::Sender<IngestEvent>,
    status: watch::Sender<ChannelStatus>,
}

/// The consumer dropped the events receiver.
struct Gone;

impl Outputs {
    async fn emit(&self, ev: IngestEvent) -> Result<(), Gone> {
        self.events.send(ev).await.map_err(|_| Gone)
    }

    async fn set_status(&self, s: ChannelStatus) -> Result<(), Gone> {
        self.status.send_replace(s.clone());
        self.emit(IngestEvent::Status(s)).await
    }
}

/// What survives from one ffmpeg run to the next.
#[derive(Debug, Default)]
struct ChannelState {
    next_seq: u32,
    /// start_ms and end of the last segment delivered.
    last: Option<(u64, u64)>,
    last_init: Option<Bytes>,
}

enum RunEnd {
    Failed { reason: String, healthy: bool },
    Gone,
}

async fn channel_task(cfg: ChannelConfig, out: Outputs, mut stop: oneshot::Receiver<()>) {
    let mut st = ChannelState::default();
    let mut backoff = BACKOFF_MIN;
    info!(channel = %cfg.name, source = %cfg.source, segment_ms = cfg.segment_ms, "live channel starting");
    loop {
        let end = tokio::select! {
            end = run_once(&cfg, &mut st, &out) => end,
            _ = &mut stop => break,
        };
        let (reason, healthy) = match end {
            RunEnd::Gone => break,
            RunEnd::Failed { reason, healthy } => (reason, healthy),
        };
        if healthy {
            backoff = BACKOFF_MIN;
        }
        warn!(channel = %cfg.name, source = %cfg.source, retry_in_ms = backoff.as_millis() as u64, %reason, "live source interrupted");
        let status = ChannelStatus::Interrupted {
            reason,
            retry_in_ms: backoff.as_millis() as u64,
        };
        let wait = async {
            if out.set_status(status).await.is_err() {
                return Err(Gone);
            }
            tokio::time::sleep(backoff).await;
            Ok(())
        };
        tokio::select! {
            r = wait => if r.is_err() { break },
            _ = &mut stop => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    info!(channel = %cfg.name, "live channel stopped");
    out.status.send_replace(ChannelStatus::Stopped);
    let _ = out
        .events
        .try_send(IngestEvent::Status(ChannelStatus::Stopped));
}

/// Why reading ffmpeg's output stopped.
enum ReadEnd {
    Eof,
    Stalled,
    Bad(String),
    Gone,
}

/// Runs ffmpeg once, delivering what it writes, until it fails.
async fn run_once(cfg: &ChannelConfig, st: &mut ChannelState, out: &Outputs) -> RunEnd {
    let offset_ms = st.last.map_or(0, |(_, end)| end);
    let args = cfg.ffmpeg_args(offset_ms);
    if out.set_status(ChannelStatus::Starting).await.is_err() {
        return RunEnd::Gone;
    }
    info!(channel = %cfg.name, source = %cfg.source, offset_ms, "starting ffmpeg");
    debug!(channel = %cfg.name, ?args, "ffmpeg command line");
    let spawn_wall = unix_ms();
    let spawned = Command::new(&cfg.ffmpeg)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(source) => {
            let reason = ToolError::Spawn {
                tool: "ffmpeg",
                source,
            }
            .to_string();
            return RunEnd::Failed {
                reason,
                healthy: false,
            };
        }
    };
    let tail = Arc::new(Mutex::new(StderrTail::default()));
    let stderr_task = child
        .stderr
        .take()
        .map(|e| tokio::spawn(read_stderr(e, tail.clone())));
    let Some(mut stdout) = child.stdout.take() else {
        return RunEnd::Failed {
            reason: "ffmpeg has no stdout".into(),
            healthy: false,
        };
    };

    let mut clock = if cfg.source.paced_from_spawn() {
        CaptureClock::paced(spawn_wall, offset_ms)
    } else {
        CaptureClock::from_arrivals()
    };
    let stall = cfg.stall_timeout();
    let mut deadline = (!cfg.source.listens()).then(|| Instant::now() + stall);
    let mut stream = Mp4Stream::default();
    let mut video_timescale = 0u32;
    let mut first_segment_at: Option<Instant> = None;

    let read_end = 'read: loop {
        loop {
            let item = match stream.next_item() {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(e) => break 'read ReadEnd::Bad(format!("unreadable output from ffmpeg: {e}")),
            };
            match item {
                Mp4Item::Init { data, info } => {
                    let Some(video) = info.video() else {
                        break 'read ReadEnd::Bad("ffmpeg's output has no video track".into());
                    };
                    video_timescale = video.timescale;
                    let Some(mime) = mime_of(&data, info.has_audio()) else {
                        break 'read ReadEnd::Bad("ffmpeg's output has no H.264 (avcC)".into());
                    };
                    if st.last_init.as_ref() != Some(&data) {
                        info!(channel = %cfg.name, %mime, bytes = data.len(), "new init segment");
                        st.last_init = Some(data.clone());
                        if out.emit(IngestEvent::Init { data, mime }).await.is_err() {
                            break 'read ReadEnd::Gone;
                        }
                    }
                }
                Mp4Item::Fragment { data, video } => {
                    let arrival = unix_ms();
                    let Some(v) = video else {
                        warn!(channel = %cfg.name, "fragment without video, dropped");
                        continue;
                    };
                    if !v.starts_with_sync {
                        warn!(channel = %cfg.name, "fragment not starting with a keyframe, dropped");
                        continue;
                    }
                    let start_ms = mp4::ticks_to_ms(v.base_decode_time, video_timescale);
                    let end_ms = mp4::ticks_to_ms(
                        v.base_decode_time.saturating_add(v.duration),
                        video_timescale,
                    );
                    if let Some((last_start, _)) = st.last {
                        if start_ms <= last_start {
                            warn!(channel = %cfg.name, start_ms, last_start, "fragment does not advance media time, dropped");
                            continue;
                        }
                    }
                    let duration_ms = u32::try_from(end_ms - start_ms).unwrap_or(u32::MAX);
                    let discontinuity = first_segment_at.is_none();
                    let seg = LiveSegment {
                        seq: st.next_seq,
                        data,
                        start_ms,
                        duration_ms,
                        capture_ms: clock.capture_ms(start_ms, duration_ms, arrival),
                        discontinuity,
                    };
                    st.next_seq = st.next_seq.saturating_add(1);
                    st.last = Some((start_ms, end_ms));
                    if discontinuity {
                        first_segment_at = Some(Instant::now());
                        info!(channel = %cfg.name, seq = seg.seq, start_ms, "live source running");
                        if out.set_status(ChannelStatus::Running).await.is_err() {
                            break 'read ReadEnd::Gone;
                        }
                    }
                    if out.emit(IngestEvent::Segment(seg)).await.is_err() {
                        break 'read ReadEnd::Gone;
                    }
                    deadline = Some(Instant::now() + stall);
                }
            }
        }
        let buf = stream.buffer_mut();
        buf.reserve(64 * 1024);
        let read = stdout.read_buf(buf);
        let read = match deadline {
            Some(d) => match tokio::time::timeout_at(d, read).await {
                Ok(r) => r,
                Err(_) => break ReadEnd::Stalled,
            },
            None => read.await,
        };
        match read {
            Ok(0) => break ReadEnd::Eof,
            Ok(_) => {}
            Err(e) => break ReadEnd::Bad(format!("reading ffmpeg's output: {e}")),
        }
    };
    if matches!(read_end, ReadEnd::Gone) {
        return RunEnd::Gone;
    }

    // ffmpeg closed its stdout: let it exit by itself, briefly; otherwise kill it.
    if !matches!(read_end, ReadEnd::Eof) {
        let _ = child.start_kill();
    }
    let status = match tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
        Ok(r) => r.ok(),
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await.ok()
        }
    };
    if let Some(t) = stderr_task {
        let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
    }
    let said = tail
        .lock()
        .map(|t| t.summary(REASON_LINES))
        .unwrap_or_default();
    let with_said = |what: String| {
        if said.is_empty() {
            what
        } else {
            format!("{what}: {said}")
        }
    };
    let reason = match read_end {
        ReadEnd::Stalled => with_said(format!("no segment from ffmpeg for {} s", stall.as_secs())),
        ReadEnd::Bad(what) => with_said(what),
        ReadEnd::Eof | ReadEnd::Gone => match status {
            Some(s) if s.success() => with_said("source ended".into()),
            Some(s) => ToolError::Failed {
                tool: "ffmpeg",
                status: s,
                reason: if said.is_empty() {
                    "no output".into()
                } else {
                    said.clone()
                },
            }
            .to_string(),
            None => with_said("ffmpeg closed its output".into()),
        },
    };
    RunEnd::Failed {
        reason,
        healthy: first_segment_at.is_some_and(|t| t.elapsed() >= HEALTHY_RUN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_accepted_form() {
        let p = |s| SourceSpec::parse(s).unwrap();
        assert_eq!(p("testsrc"), SourceSpec::TestSource { clock: false });
        assert_eq!(p("testsrc:clock"), SourceSpec::TestSource { clock: true });
        assert_eq!(p("file:/a b.mp4"), SourceSpec::LoopFile("/a b.mp4".into()));
        assert_eq!(p("file-once:x.mp4"), SourceSpec::File("x.mp4".into()));
        assert_eq!(
            p("rtmp://127.0.0.1:1935/live/key"),
            SourceSpec::RtmpListen("rtmp://127.0.0.1:1935/live/key".into())
        );
        assert_eq!(
            p("srt://127.0.0.1:9000"),
            SourceSpec::SrtListen("srt://127.0.0.1:9000?mode=listener".into())
        );
        assert_eq!(
            p("srt://127.0.0.1:9000?latency=200"),
            SourceSpec::SrtListen("srt://127.0.0.1:9000?latency=200&mode=listener".into())
        );
        assert_eq!(
            p("https://cdn.example/live/index.m3u8"),
            SourceSpec::HlsPull("https://cdn.example/live/index.m3u8".into())
        );
        for s in [
            "testsrc",
            "testsrc:clock",
            "file:/x.mp4",
            "file-once:/y.mp4",
        ] {
            assert_eq!(p(s).to_string(), s);
        }
        assert_eq!(
            p("rtmp://h:1/live/secret").to_string(),
            "rtmp://h:1/live/***"
        );
    }

    #[test]
    fn rejects_other_forms_naming_the_accepted_ones() {
        for bad in [
            "",
            "webcam",
            "file:",
            "rtmp://",
            "rtmp://host",
            "srt://h:1?mode=caller",
            "http://",
            "ftp://x",
        ] {
            let e = SourceSpec::parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("testsrc:clock") && e.contains("rtmp://"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn config_is_validated() {
        let mut c = ChannelConfig::new("c", SourceSpec::TestSource { clock: false });
        assert!(c.validate().is_ok());
        c.segment_ms = 50;
        assert_eq!(c.validate().unwrap_err().field, "segment_ms");
        c.segment_ms = 1000;
        c.event_capacity = 0;
        assert_eq!(c.validate().unwrap_err().field, "event_capacity");
    }

    #[test]
    fn command_line_forces_keyframes_and_continues_media_time() {
        let mut c = ChannelConfig::new("c", SourceSpec::TestSource { clock: false });
        c.segment_ms = 2000;
        c.fps = 30;
        let a = c.ffmpeg_args(0).join(" ");
        assert!(a.contains("-g 60 -keyint_min 60 -sc_threshold 0"), "{a}");
        assert!(a.contains("expr:gte(t,n_forced*2.000)"), "{a}");
        assert!(!a.contains("-output_ts_offset"), "{a}");
        assert!(a.ends_with("pipe:1"), "{a}");
        let a = c.ffmpeg_args(61_021).join(" ");
        assert!(a.contains("-output_ts_offset 61.021"), "{a}");
        let c = ChannelConfig::new("c", SourceSpec::RtmpListen("rtmp://h:1/a/b".into()));
        assert!(c
            .ffmpeg_args(0)
            .join(" ")
            .contains("-listen 1 -analyzeduration 1000000 -i rtmp://h:1/a/b"));
        assert_eq!(c.stall_timeout(), Duration::from_secs(5));
    }

    #[test]
    fn paced_capture_follows_the_spawn_anchor() {
        let mut c = CaptureClock::paced(1_000_000, 5_000);
        assert_eq!(c.capture_ms(5_021, 1000, 1_002_500), 1_000_021);
        assert_eq!(c.capture_ms(6_021, 1000, 1_009_000), 1_001_021);
    }

    #[test]
    fn arrival_capture_anchors_then_reanchors_when_late_or_early() {
        let mut c = CaptureClock::from_arrivals();
        // First: arrival minus duration.
        assert_eq!(c.capture_ms(0, 1000, 10_000), 9_000);
        // On time (with jitter): anchor + media difference.
        assert_eq!(c.capture_ms(1000, 1000, 11_300), 10_000);
        // 1.9 s late: still the anchor's prediction.
        assert_eq!(c.capture_ms(2000, 1000, 13_900), 11_000);
        // More than 2 s late: re-anchored on the arrival.
        assert_eq!(c.capture_ms(3000, 1000, 16_000), 15_000);
        assert_eq!(c.capture_ms(4000, 1000, 17_100), 16_000);
        // Earlier than the prediction allows: moved back to arrival minus duration.
        assert_eq!(c.capture_ms(5000, 1000, 17_500), 16_500);
    }

    #[test]
    fn stderr_tail_is_bounded_and_drops_pointer_noise() {
        let mut t = StderrTail::default();
        for i in 0..100 {
            t.push(format!("line {i}").as_bytes());
        }
        t.push(b"[hls @ 0x55d0c0ffee00] Connection refused");
        t.push(&[b'x'; 10_000]);
        assert_eq!(t.lines.len(), STDERR_LINES);
        assert!(t.lines.iter().all(|l| l.len() <= STDERR_LINE_MAX));
        let s = t.summary(3);
        assert!(s.starts_with("line 99 | Connection refused | xxx"), "{s}");
    }
}
