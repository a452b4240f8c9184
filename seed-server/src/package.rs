//! VOD packaging: every video file of a media folder becomes CMAF/HLS
//! (H.264 + AAC in fragmented MP4, ~2 s segments) plus a swarm manifest, in
//! `<cache>/<content_id>/`. The content id is derived from the source bytes,
//! so an unchanged file is a cache hit and is not re-encoded.
//!
//! ffmpeg and ffprobe run as child processes. A file they cannot read is
//! reported (path and ffmpeg's own reason) and skipped; the others publish.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;
use swarm_proto::manifest::{
    sha256_hex, Manifest, SegmentEntry, DEFAULT_PIECE_BYTES, MANIFEST_VERSION,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tracing::{error, info, warn};

/// Segment target duration in seconds (GOP length and `-hls_time`).
pub const SEGMENT_SECONDS: u32 = 2;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const PLAYLIST_FILE: &str = "index.m3u8";
pub const INIT_FILE: &str = "init.mp4";

/// Extensions treated as video files (lower case). Other files in the media
/// folder (posters, subtitles, notes) are ignored.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "ts", "mts", "m2ts", "mpg", "mpeg", "m2v", "flv",
    "f4v", "wmv", "asf", "ogv", "ogg", "3gp", "3g2", "mxf", "vob", "nut", "y4m", "divx", "dv",
    "qt", "rm", "rmvb",
];

/// The media folder itself is unusable: the seed cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("media folder {0} does not exist")]
    MediaMissing(PathBuf),
    #[error("media path {0} is not a folder")]
    MediaNotDir(PathBuf),
    #[error("cannot read media folder {path}: {source}")]
    MediaUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create cache folder {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One video ready to serve.
#[derive(Clone, Debug)]
pub struct Published {
    pub source: PathBuf,
    pub content_id: String,
    /// `<cache>/<content_id>`: manifest, playlist, init and segments.
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// True when an existing valid manifest was reused (no ffmpeg run).
    pub cache_hit: bool,
}

/// A video file that could not be packaged.
#[derive(Clone, Debug)]
pub struct Failed {
    pub source: PathBuf,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct Library {
    pub published: Vec<Published>,
    pub failed: Vec<Failed>,
}

impl Library {
    pub fn get(&self, content_id: &str) -> Option<&Published> {
        self.published.iter().find(|p| p.content_id == content_id)
    }
    pub fn content_ids(&self) -> Vec<String> {
        self.published
            .iter()
            .map(|p| p.content_id.clone())
            .collect()
    }
}

/// Lists the video files of `media` (not hidden, known video extension), sorted by name.
pub fn list_videos(media: &Path) -> Result<Vec<PathBuf>, LibraryError> {
    let meta = std::fs::metadata(media).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LibraryError::MediaMissing(media.to_path_buf())
        } else {
            LibraryError::MediaUnreadable {
                path: media.to_path_buf(),
                source: e,
            }
        }
    })?;
    if !meta.is_dir() {
        return Err(LibraryError::MediaNotDir(media.to_path_buf()));
    }
    let rd = std::fs::read_dir(media).map_err(|e| LibraryError::MediaUnreadable {
        path: media.to_path_buf(),
        source: e,
    })?;
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks: a linked video is still a video.
        if !std::fs::metadata(&path)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            continue;
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if VIDEO_EXTENSIONS.contains(&ext.as_str()) {
            out.push(path);
        } else {
            tracing::debug!(path = %path.display(), "not a video file extension, ignored");
        }
    }
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(out)
}

/// Content id: the first 16 hex characters of the SHA-256 of the file.
pub fn content_id_of(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize())[..16].to_string())
}

/// Packages every video of `media` into `cache`, one at a time.
pub async fn package_all(media: &Path, cache: &Path) -> Result<Library, LibraryError> {
    let videos = list_videos(media)?;
    std::fs::create_dir_all(cache).map_err(|e| LibraryError::Cache {
        path: cache.to_path_buf(),
        source: e,
    })?;
    if videos.is_empty() {
        warn!(media = %media.display(), "media folder holds no video files");
    }
    let mut lib = Library::default();
    for path in videos {
        match package_file(&path, cache).await {
            Ok(p) => {
                if let Some(prev) = lib.get(&p.content_id) {
                    warn!(path = %path.display(), same_as = %prev.source.display(), content_id = %p.content_id,
                        "identical content already published, skipped");
                    continue;
                }
                lib.published.push(p);
            }
            Err(reason) => {
                error!(path = %path.display(), %reason, "cannot package video, skipped");
                lib.failed.push(Failed {
                    source: path,
                    reason,
                });
            }
        }
    }
    info!(
        published = lib.published.len(),
        failed = lib.failed.len(),
        "packaging done"
    );
    Ok(lib)
}

/// Packages one file (or reuses its cached output). The error is a
/// human-readable reason (ffmpeg's own words where it has some).
pub async fn package_file(path: &Path, cache: &Path) -> Result<Published, String> {
    let src = path.to_path_buf();
    let content_id = tokio::task::spawn_blocking(move || content_id_of(&src))
        .await
        .map_err(|e| format!("hashing task failed: {e}"))?
        .map_err(|e| format!("cannot read file: {e}"))?;
    let out_dir = cache.join(&content_id);
    let title = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| content_id.clone());

    if let Some(manifest) = read_cached_manifest(&out_dir, &content_id) {
        info!(path = %path.display(), %content_id, segments = manifest.segments.len(), "cache hit, reusing packaged output");
        return Ok(Published {
            source: path.to_path_buf(),
            content_id,
            dir: out_dir,
            manifest,
            cache_hit: true,
        });
    }

    let started = Instant::now();
    info!(path = %path.display(), %content_id, "packaging");
    let tmp = cache.join(format!(".tmp-{content_id}"));
    let result = package_into(path, &tmp, &content_id, &title).await;
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // Publish atomically: a stale or broken output dir is replaced whole.
    if out_dir.exists() {
        let _ = std::fs::remove_dir_all(&out_dir);
    }
    if let Err(e) = std::fs::rename(&tmp, &out_dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(format!(
            "cannot move packaged output to {}: {e}",
            out_dir.display()
        ));
    }
    info!(path = %path.display(), %content_id, segments = manifest.segments.len(),
        duration_ms = manifest.duration_ms(), secs = format!("{:.1}", started.elapsed().as_secs_f64()), "packaged");
    Ok(Published {
        source: path.to_path_buf(),
        content_id,
        dir: out_dir,
        manifest,
        cache_hit: false,
    })
}

fn read_cached_manifest(dir: &Path, content_id: &str) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?;
    match Manifest::from_json(&text) {
        Ok(m) if m.content_id == content_id => {
            // Cheap integrity check (sizes only; hashes are checked when segments are loaded).
            let bad = std::iter::once(&m.init).chain(&m.segments).find(|e| {
                std::fs::metadata(dir.join(&e.uri))
                    .map(|md| md.len() != e.size)
                    .unwrap_or(true)
            });
            if let Some(e) = bad {
                warn!(dir = %dir.display(), file = %e.uri, "cached output is incomplete, repackaging");
                return None;
            }
            Some(m)
        }
        Ok(_) => {
            warn!(dir = %dir.display(), "cached manifest names another content id, repackaging");
            None
        }
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cached manifest is invalid, repackaging");
            None
        }
    }
}

/// What ffprobe says about an input.
#[derive(Clone, Debug, Default)]
pub struct ProbeInfo {
    pub duration_secs: Option<f64>,
    pub has_video: bool,
    pub has_audio: bool,
    pub fps: Option<f64>,
    pub video_profile: Option<String>,
    pub video_level: Option<i64>,
}

/// Keeps the last lines of a tool's stderr as an error reason.
fn last_lines(stderr: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(stderr);
    // ffmpeg prefixes lines with "[demuxer @ 0x55...] "; the address is noise.
    let lines: Vec<&str> = text
        .lines()
        .map(|l| {
            let l = l.trim();
            match (l.starts_with('['), l.find(" @ 0x"), l.find("] ")) {
                (true, Some(at), Some(end)) if at < end => l[end + 2..].trim(),
                _ => l,
            }
        })
        .filter(|l| !l.is_empty())
        .collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join(" | ")
}

fn parse_rate(s: &str) -> Option<f64> {
    let (n, d) = s.split_once('/').unwrap_or((s, "1"));
    let n: f64 = n.trim().parse().ok()?;
    let d: f64 = d.trim().parse().ok()?;
    (d > 0.0 && n > 0.0).then_some(n / d)
}

/// Runs ffprobe (`-print_format json -show_streams -show_format`) on a file.
pub async fn probe(path: &Path) -> Result<ProbeInfo, String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run ffprobe: {e}"))?;
    if !out.status.success() {
        let reason = last_lines(&out.stderr, 3);
        return Err(format!(
            "ffprobe failed ({}): {}",
            out.status,
            if reason.is_empty() {
                "no output".into()
            } else {
                reason
            }
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("ffprobe printed unreadable JSON: {e}"))?;
    let mut info = ProbeInfo {
        duration_secs: v["format"]["duration"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .filter(|d: &f64| *d > 0.0),
        ..Default::default()
    };
    for s in v["streams"].as_array().into_iter().flatten() {
        match s["codec_type"].as_str() {
            Some("video") => {
                // Cover art is a "video" stream too; skip attached pictures.
                if s["disposition"]["attached_pic"].as_i64() == Some(1) || info.has_video {
                    continue;
                }
                info.has_video = true;
                info.fps = s["avg_frame_rate"]
                    .as_str()
                    .and_then(parse_rate)
                    .or_else(|| s["r_frame_rate"].as_str().and_then(parse_rate));
                info.video_profile = s["profile"].as_str().map(str::to_string);
                info.video_level = s["level"].as_i64();
                if info.duration_secs.is_none() {
                    info.duration_secs = s["duration"].as_str().and_then(|d| d.parse().ok());
                }
            }
            Some("audio") => info.has_audio = true,
            _ => {}
        }
    }
    Ok(info)
}

/// GOP length in frames for [`SEGMENT_SECONDS`] at a frame rate.
pub fn gop_frames(fps: Option<f64>) -> u32 {
    let fps = fps
        .filter(|f| f.is_finite() && *f >= 1.0 && *f <= 240.0)
        .unwrap_or(25.0);
    ((fps * SEGMENT_SECONDS as f64).round() as u32).max(1)
}

/// ffmpeg arguments that package `input` into `dir` (absolute paths).
pub fn ffmpeg_args(input: &Path, dir: &Path, info: &ProbeInfo) -> Vec<String> {
    let gop = gop_frames(info.fps).to_string();
    let mut a: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-progress",
        "pipe:1",
        "-nostats",
        "-i",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(input.to_string_lossy().into_owned());
    let more: &[&str] = &[
        "-map",
        "0:V:0",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-vf",
        "scale=trunc(iw/2)*2:trunc(ih/2)*2",
        "-g",
        &gop,
        "-keyint_min",
        &gop,
        "-sc_threshold",
        "0",
        "-force_key_frames",
        "expr:gte(t,n_forced*2)",
    ];
    a.extend(more.iter().map(|s| s.to_string()));
    if info.has_audio {
        a.extend(
            ["-map", "0:a:0", "-c:a", "aac", "-b:a", "96k", "-ac", "2"]
                .iter()
                .map(|s| s.to_string()),
        );
    } else {
        a.push("-an".into());
    }
    let tail: &[&str] = &[
        "-sn",
        "-dn",
        "-map_metadata",
        "-1",
        "-max_muxing_queue_size",
        "1024",
        "-f",
        "hls",
        "-hls_time",
        "2",
        "-hls_playlist_type",
        "vod",
        "-hls_segment_type",
        "fmp4",
        "-hls_fmp4_init_filename",
        INIT_FILE,
        "-hls_segment_filename",
    ];
    a.extend(tail.iter().map(|s| s.to_string()));
    a.push(dir.join("seg_%05d.m4s").to_string_lossy().into_owned());
    a.push(dir.join(PLAYLIST_FILE).to_string_lossy().into_owned());
    a
}

async fn package_into(
    input: &Path,
    tmp: &Path,
    content_id: &str,
    title: &str,
) -> Result<Manifest, String> {
    let input = std::fs::canonicalize(input).map_err(|e| format!("cannot resolve path: {e}"))?;
    let info = probe(&input).await?;
    if !info.has_video {
        return Err("no video stream in file".into());
    }
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(|e| format!("cannot clear {}: {e}", tmp.display()))?;
    }
    std::fs::create_dir_all(tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    let tmp =
        std::fs::canonicalize(tmp).map_err(|e| format!("cannot resolve {}: {e}", tmp.display()))?;
    run_ffmpeg(&input, &tmp, &info).await?;
    let manifest = build_manifest(&tmp, content_id, title, info.has_audio)?;
    let json = manifest.to_json();
    std::fs::write(tmp.join(MANIFEST_FILE), json)
        .map_err(|e| format!("cannot write manifest: {e}"))?;
    Ok(manifest)
}

async fn run_ffmpeg(input: &Path, dir: &Path, info: &ProbeInfo) -> Result<(), String> {
    let mut child = Command::new("ffmpeg")
        .args(ffmpeg_args(input, dir, info))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let err_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let duration_us = info
        .duration_secs
        .map(|d| (d * 1e6) as u64)
        .filter(|d| *d > 0);
    let mut next_pct = 10u64;
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Some(v) = line.strip_prefix("out_time_us=") else {
            continue;
        };
        let (Ok(t), Some(total)) = (v.trim().parse::<u64>(), duration_us) else {
            continue;
        };
        let pct = (t.saturating_mul(100) / total).min(100);
        if pct >= next_pct && pct < 100 {
            info!(file = %name, "packaging {pct}%");
            next_pct = (pct / 10 + 1) * 10;
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("ffmpeg did not finish: {e}"))?;
    let stderr = err_task.await.unwrap_or_default();
    if !status.success() {
        let reason = last_lines(&stderr, 3);
        return Err(format!(
            "ffmpeg failed ({status}): {}",
            if reason.is_empty() {
                "no output".into()
            } else {
                reason
            }
        ));
    }
    info!(file = %name, "packaging 100%");
    Ok(())
}

/// Parses a VOD playlist: (init uri, [(segment uri, duration ms)]).
pub fn parse_playlist(text: &str) -> Result<(String, Vec<(String, u32)>), String> {
    let mut init = None;
    let mut segs = Vec::new();
    let mut pending: Option<u32> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:") {
            let uri = rest
                .split(',')
                .find_map(|kv| kv.trim().strip_prefix("URI="))
                .map(|u| u.trim_matches('"').to_string())
                .ok_or("playlist EXT-X-MAP has no URI")?;
            init = Some(uri);
        } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
            let secs: f64 = rest
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .parse()
                .map_err(|_| format!("bad EXTINF line {line:?}"))?;
            pending = Some((secs * 1000.0).round().max(0.0) as u32);
        } else if line.starts_with('#') {
            continue;
        } else {
            let d = pending
                .take()
                .ok_or_else(|| format!("segment {line:?} has no EXTINF"))?;
            segs.push((line.to_string(), d));
        }
    }
    let init = init.ok_or("playlist has no EXT-X-MAP init segment")?;
    if segs.is_empty() {
        return Err("playlist has no segments".into());
    }
    Ok((init, segs))
}

/// `avc1.PPCCLL` from the `avcC` box of an init segment.
pub fn avc_codec_from_init(init: &[u8]) -> Option<String> {
    let pos = init.windows(4).position(|w| w == b"avcC")?;
    let b = init.get(pos + 4..pos + 8)?;
    // configurationVersion, AVCProfileIndication, profile_compatibility, AVCLevelIndication
    (b[0] == 1).then(|| format!("avc1.{:02x}{:02x}{:02x}", b[1], b[2], b[3]))
}

fn entry(dir: &Path, uri: &str, duration_ms: u32) -> Result<SegmentEntry, String> {
    let data =
        std::fs::read(dir.join(uri)).map_err(|e| format!("ffmpeg output {uri} unreadable: {e}"))?;
    Ok(SegmentEntry {
        uri: uri.to_string(),
        size: data.len() as u64,
        sha256: sha256_hex(&data),
        duration_ms,
    })
}

/// Builds and validates the manifest of a packaged folder.
pub fn build_manifest(
    dir: &Path,
    content_id: &str,
    title: &str,
    has_audio: bool,
) -> Result<Manifest, String> {
    let playlist = std::fs::read_to_string(dir.join(PLAYLIST_FILE))
        .map_err(|e| format!("ffmpeg wrote no playlist: {e}"))?;
    let (init_uri, segs) = parse_playlist(&playlist)?;
    let init_bytes = std::fs::read(dir.join(&init_uri))
        .map_err(|e| format!("ffmpeg output {init_uri} unreadable: {e}"))?;
    let avc =
        avc_codec_from_init(&init_bytes).ok_or("init segment has no H.264 configuration (avcC)")?;
    let audio = has_audio && init_bytes.windows(4).any(|w| w == b"mp4a");
    let codecs = if audio {
        format!("{avc},mp4a.40.2")
    } else {
        avc
    };
    let init = entry(dir, &init_uri, 0)?;
    let segments = segs
        .iter()
        .map(|(uri, d)| entry(dir, uri, *d))
        .collect::<Result<Vec<_>, _>>()?;
    let m = Manifest {
        version: MANIFEST_VERSION,
        content_id: content_id.to_string(),
        title: title.to_string(),
        playlist: PLAYLIST_FILE.to_string(),
        mime: format!("video/mp4; codecs=\"{codecs}\""),
        piece_size: DEFAULT_PIECE_BYTES,
        init,
        segments,
    };
    m.validate()
        .map_err(|e| format!("packaged output does not make a valid manifest: {e}"))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_parses_init_and_durations() {
        let text = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.000000,\nseg_00000.m4s\n#EXTINF:1.5,\nseg_00001.m4s\n#EXT-X-ENDLIST\n";
        let (init, segs) = parse_playlist(text).unwrap();
        assert_eq!(init, "init.mp4");
        assert_eq!(
            segs,
            vec![
                ("seg_00000.m4s".into(), 2000),
                ("seg_00001.m4s".into(), 1500)
            ]
        );
        assert!(parse_playlist("#EXTM3U\n").is_err());
    }

    #[test]
    fn avc_codec_string_comes_from_avcc() {
        let mut b = b"....avcC".to_vec();
        b.extend([1, 0x64, 0x00, 0x0c, 0xff]);
        assert_eq!(avc_codec_from_init(&b).as_deref(), Some("avc1.64000c"));
        assert_eq!(avc_codec_from_init(b"nothing"), None);
    }

    #[test]
    fn gop_follows_frame_rate() {
        assert_eq!(gop_frames(Some(25.0)), 50);
        assert_eq!(gop_frames(Some(30000.0 / 1001.0)), 60);
        assert_eq!(gop_frames(None), 50);
        assert_eq!(parse_rate("0/0"), None);
    }

    #[test]
    fn tool_errors_keep_the_words_not_the_addresses() {
        let err = b"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55c49fe97180] moov atom not found\nx.mp4: Invalid data found when processing input\n";
        assert_eq!(
            last_lines(err, 3),
            "moov atom not found | x.mp4: Invalid data found when processing input"
        );
    }
}
