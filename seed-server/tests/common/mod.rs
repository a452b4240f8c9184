//! Helpers shared by the seed's integration tests (real ffmpeg).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Makes a test video with ffmpeg's synthetic sources: 320x180 at 25 fps,
/// with a 440 Hz tone unless `audio` is false.
pub fn make_video(dir: &Path, name: &str, secs: u32, audio: bool) -> PathBuf {
    let out = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x180:rate=25",
    ]);
    if audio {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440"]);
    }
    cmd.args([
        "-t",
        &secs.to_string(),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ]);
    if audio {
        cmd.args(["-c:a", "aac"]);
    }
    cmd.arg(&out);
    let status = cmd.status().expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make the test input");
    out
}

/// Temp dirs for one test: (root guard, media dir, cache dir).
pub fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let root = tempfile::tempdir().expect("temp dir");
    let media = root.path().join("media");
    let cache = root.path().join("cache");
    std::fs::create_dir_all(&media).unwrap();
    (root, media, cache)
}
