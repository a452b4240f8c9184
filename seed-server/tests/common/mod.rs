//! Helpers shared by the seed's integration tests (real ffmpeg).
#![allow(dead_code)]

pub mod signal;
pub mod viewer;

use shoal_seed::http::{router, HttpState};
use shoal_seed::package::Library;
use shoal_seed::stats::SeedStats;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Serves the real HTTP origin on 127.0.0.1 (port 0); returns its base URL.
pub async fn start_origin(library: Arc<Library>, stats: Arc<SeedStats>, capacity: u32) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(HttpState {
        added: Default::default(),
        library,
        stats,
        capacity,
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
/// Returns how long it took.
pub async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Logs of the seed to the test output (`--nocapture` shows them);
/// `RUST_LOG` overrides the default filter.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "shoal_seed=info,webrtc=error,rtc=error".into()),
        )
        .with_test_writer()
        .try_init();
}
