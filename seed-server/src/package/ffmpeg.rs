//! ffprobe and ffmpeg as child processes: what an input holds, and the one command line that
//! turns it into CMAF/HLS (H.264 + AAC in fragmented MP4, keyframes every
//! [`SEGMENT_SECONDS`], ~2 s segments).
//!
//! Invariants: a child is killed if its future is dropped (`kill_on_drop`); a tool's failure
//! carries its exit status and the last lines of its stderr, without ffmpeg's pointer noise.

use super::{INIT_FILE, PLAYLIST_FILE, SEGMENT_SECONDS};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tracing::info;

/// A tool that could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("cannot run {tool}: {source}")]
    Spawn {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("{tool} did not finish: {source}")]
    Wait {
        tool: &'static str,
        source: std::io::Error,
    },
    /// `reason` is the tool's own words (last lines of its stderr).
    #[error("{tool} failed ({status}): {reason}")]
    Failed {
        tool: &'static str,
        status: ExitStatus,
        reason: String,
    },
    #[error("ffprobe printed unreadable JSON: {0}")]
    Json(serde_json::Error),
}

impl ToolError {
    fn failed(tool: &'static str, status: ExitStatus, stderr: &[u8]) -> ToolError {
        let reason = last_lines(stderr, 3);
        ToolError::Failed {
            tool,
            status,
            reason: if reason.is_empty() {
                "no output".into()
            } else {
                reason
            },
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
    join_last(text.lines(), n)
}

/// The last `n` non-empty lines of ffmpeg's stderr joined by " | ", each
/// without the "[demuxer @ 0x55...] " prefix (the address is noise).
pub(crate) fn join_last<'a>(lines: impl Iterator<Item = &'a str>, n: usize) -> String {
    let lines: Vec<&str> = lines
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
pub async fn probe(path: &Path) -> Result<ProbeInfo, ToolError> {
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
        .map_err(|source| ToolError::Spawn {
            tool: "ffprobe",
            source,
        })?;
    if !out.status.success() {
        return Err(ToolError::failed("ffprobe", out.status, &out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(ToolError::Json)?;
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

/// Runs ffmpeg with [`ffmpeg_args`], logging its progress every 10 %.
pub async fn run_ffmpeg(input: &Path, dir: &Path, info: &ProbeInfo) -> Result<(), ToolError> {
    let mut child = Command::new("ffmpeg")
        .args(ffmpeg_args(input, dir, info))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ToolError::Spawn {
            tool: "ffmpeg",
            source,
        })?;
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
    let status = child.wait().await.map_err(|source| ToolError::Wait {
        tool: "ffmpeg",
        source,
    })?;
    let stderr = err_task.await.unwrap_or_default();
    if !status.success() {
        return Err(ToolError::failed("ffmpeg", status, &stderr));
    }
    info!(file = %name, "packaging 100%");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
