//! Live ingest against the real ffmpeg: a test source cut into numbered, playable segments;
//! a source that ends restarts with continuous numbering and media time; an RTMP push as OBS
//! would send it; sources that cannot work are reported as interruptions with ffmpeg's
//! reason. Every wait is bounded; network only on 127.0.0.1.

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use shoal_seed::live::ingest::{
    spawn_channel, Channel, ChannelConfig, ChannelStatus, IngestEvent, LiveSegment, SourceSpec,
};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::process::Command;
use tokio::time::{timeout_at, Instant};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
}

/// A small, cheap channel (360p) from `source`.
fn config(source: SourceSpec) -> ChannelConfig {
    let mut c = ChannelConfig::new(source.to_string(), source);
    c.max_height = 360;
    c.video_kbps = 400;
    c
}

/// The next event before `deadline`.
async fn next(ch: &mut Channel, deadline: Instant) -> Result<IngestEvent> {
    match timeout_at(deadline, ch.recv()).await {
        Ok(Some(ev)) => Ok(ev),
        Ok(None) => bail!("channel ended"),
        Err(_) => bail!("timed out waiting for an event"),
    }
}

/// A segment's first top-level box after an optional styp.
fn first_media_box(data: &[u8]) -> &[u8] {
    let kind = &data[4..8];
    if kind == b"styp" {
        let size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        &data[size + 4..size + 8]
    } else {
        kind
    }
}

/// A free TCP/UDP port number on 127.0.0.1 (bound then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// ffprobe's `key=value` answer for a file.
async fn ffprobe(path: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(path)
        .kill_on_drop(true)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn test_source_delivers_numbered_playable_segments_with_capture_times() -> Result<()> {
    logs();
    let began = Instant::now();
    let mut ch = spawn_channel(config(SourceSpec::TestSource { clock: true }))?;
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut init: Option<(Bytes, String)> = None;
    let mut segs: Vec<(LiveSegment, u64)> = Vec::new();
    while segs.len() < 5 {
        match next(&mut ch, deadline).await? {
            IngestEvent::Init { data, mime } => {
                ensure!(init.is_none(), "a second init without a restart");
                init = Some((data, mime));
            }
            IngestEvent::Segment(s) => {
                ensure!(init.is_some(), "segment before init");
                segs.push((s, unix_ms()));
            }
            IngestEvent::Status(ChannelStatus::Interrupted { reason, .. }) => {
                bail!("interrupted: {reason}")
            }
            IngestEvent::Status(_) => {}
        }
    }
    assert_eq!(*ch.status().borrow(), ChannelStatus::Running);
    ch.stop().await;
    let (init, mime) = init.unwrap();
    assert!(
        mime.starts_with("video/mp4; codecs=\"avc1.") && mime.contains(",mp4a.40.2\""),
        "{mime}"
    );
    for (i, (s, arrival)) in segs.iter().enumerate() {
        println!(
            "seq {} start {} ms dur {} ms capture→arrival {} ms, {} bytes",
            s.seq,
            s.start_ms,
            s.duration_ms,
            *arrival as i64 - s.capture_ms as i64,
            s.data.len()
        );
        assert_eq!(s.seq, i as u32);
        assert_eq!(s.discontinuity, i == 0);
        assert_eq!(first_media_box(&s.data), b"moof");
        assert!(s.duration_ms.abs_diff(1000) <= 50, "{s:?}");
        assert!(s.capture_ms <= *arrival, "captured after arrival");
        assert!(*arrival - s.capture_ms < 3000, "capture too old");
        if i > 0 {
            let p = &segs[i - 1].0;
            assert!(
                (s.start_ms - p.start_ms).abs_diff(1000) <= 50,
                "{p:?} {s:?}"
            );
            assert_eq!(s.start_ms, p.start_ms + u64::from(p.duration_ms));
            assert!((s.capture_ms - p.capture_ms).abs_diff(1000) <= 50);
        }
    }
    // init + segments is a playable file.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("live.mp4");
    let mut all = init.to_vec();
    for (s, _) in &segs {
        all.extend_from_slice(&s.data);
    }
    std::fs::write(&file, &all)?;
    let dur: f64 = ffprobe(
        &file,
        &["-show_entries", "format=duration", "-of", "csv=p=0"],
    )
    .await?
    .parse()?;
    assert!(dur >= 3.5, "ffprobe reads {dur} s");
    let frames: u32 = ffprobe(
        &file,
        &[
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ],
    )
    .await?
    .parse()?;
    assert!(frames >= 5 * 25 - 2, "{frames} frames decoded");
    println!(
        "5 segments, {dur} s, {frames} frames, in {:?}",
        began.elapsed()
    );
    Ok(())
}

/// Writes a `secs`-long 320x180 H.264/AAC file.
async fn short_file(path: &Path, secs: u32) -> Result<()> {
    let st = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg(format!("testsrc2=size=320x180:rate=25:duration={secs}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!("sine=duration={secs}"))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .arg(path)
        .kill_on_drop(true)
        .status()
        .await?;
    ensure!(st.success(), "could not make the test file");
    Ok(())
}

#[tokio::test]
async fn a_source_that_ends_restarts_with_continuous_seq_and_media_time() -> Result<()> {
    logs();
    let began = Instant::now();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("short.mp4");
    short_file(&file, 2).await?;
    let mut ch = spawn_channel(config(SourceSpec::File(file)))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut segs: Vec<LiveSegment> = Vec::new();
    let mut inits = 0;
    let mut interruption: Option<(String, u64, usize)> = None;
    // Until two segments after the restart.
    loop {
        match next(&mut ch, deadline).await? {
            IngestEvent::Init { .. } => inits += 1,
            IngestEvent::Segment(s) => segs.push(s),
            IngestEvent::Status(ChannelStatus::Interrupted {
                reason,
                retry_in_ms,
            }) => {
                if interruption.is_none() {
                    interruption = Some((reason, retry_in_ms, segs.len()));
                }
            }
            IngestEvent::Status(_) => {}
        }
        if let Some((_, _, at)) = &interruption {
            if segs.len() >= at + 2 {
                break;
            }
        }
    }
    ch.stop().await;
    let (reason, retry_in_ms, at) = interruption.unwrap();
    println!("interrupted after {at} segments: {reason} (retry in {retry_in_ms} ms)");
    for s in &segs {
        println!(
            "seq {} start {} dur {} disc {}",
            s.seq, s.start_ms, s.duration_ms, s.discontinuity
        );
    }
    assert!(reason.contains("source ended"), "{reason}");
    assert_eq!(retry_in_ms, 1000);
    assert!(at >= 1, "no segment before the source ended");
    assert_eq!(inits, 1, "the restarted ffmpeg wrote the same init");
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(s.seq, i as u32, "seq continues over the restart");
        assert_eq!(s.discontinuity, i == 0 || i == at, "seq {i}");
        assert_eq!(first_media_box(&s.data), b"moof");
        if i > 0 {
            let p = &segs[i - 1];
            let end = p.start_ms + u64::from(p.duration_ms);
            assert!(s.start_ms >= end, "media time goes back: {p:?} {s:?}");
            assert!(s.start_ms <= end + 100, "gap in media time: {p:?} {s:?}");
            assert!(s.capture_ms > p.capture_ms);
        }
    }
    println!("restart test took {:?}", began.elapsed());
    Ok(())
}

/// Publishes a test pattern to `url` (`format`: flv or mpegts) for at most 8 s, retried
/// until the listening channel takes it, and checks that 3 segments come out.
async fn push_becomes_segments(source: SourceSpec, format: &str, url: &str) -> Result<()> {
    logs();
    let began = Instant::now();
    let mut ch = spawn_channel(config(source))?;
    let deadline = Instant::now() + Duration::from_secs(40);
    // Let the listener come up; the publisher is retried below if it was too early.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut publisher = None;
    let mut published_at = 0;
    let mut segs: Vec<(LiveSegment, u64)> = Vec::new();
    let mut attempts = 0;
    while segs.len() < 3 {
        if publisher.is_none() {
            attempts += 1;
            ensure!(attempts <= 10, "the publisher never got through");
            published_at = unix_ms();
            publisher = Some(
                Command::new("ffmpeg")
                    .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
                    .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
                    .args(["-f", "lavfi", "-i", "sine", "-t", "8"])
                    .args(["-c:v", "libx264", "-preset", "veryfast", "-tune"])
                    .args(["zerolatency", "-g", "50", "-c:a", "aac", "-f", format])
                    .arg(url)
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()?,
            );
        }
        let p = publisher.as_mut().unwrap();
        tokio::select! {
            ev = next(&mut ch, deadline) => match ev? {
                IngestEvent::Segment(s) => segs.push((s, unix_ms())),
                IngestEvent::Status(ChannelStatus::Interrupted { reason, .. }) => {
                    println!("listener interrupted: {reason}");
                }
                _ => {}
            },
            st = p.wait() => {
                let st = st?;
                ensure!(segs.len() < 3 && Instant::now() < deadline, "publisher ended");
                println!("publisher exited ({st}) before the listener took it, retrying");
                publisher = None;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    ch.stop().await;
    drop(publisher);
    for (i, (s, arrival)) in segs.iter().enumerate() {
        println!(
            "{format}: seq {} start {} dur {} capture-publish {} ms capture→arrival {} ms \
             publish+media→arrival {} ms",
            s.seq,
            s.start_ms,
            s.duration_ms,
            s.capture_ms as i64 - published_at as i64,
            *arrival as i64 - s.capture_ms as i64,
            *arrival as i64 - (published_at + s.start_ms) as i64,
        );
        assert_eq!(s.seq, i as u32);
        assert_eq!(s.discontinuity, i == 0);
        assert_eq!(first_media_box(&s.data), b"moof");
        assert!(s.duration_ms.abs_diff(1000) <= 50, "{s:?}");
        assert!(s.capture_ms >= published_at, "captured before publishing");
        assert!(s.capture_ms + u64::from(s.duration_ms) <= *arrival);
    }
    println!("{format} push test took {:?}", began.elapsed());
    Ok(())
}

#[tokio::test]
async fn an_rtmp_push_as_obs_sends_it_becomes_segments() -> Result<()> {
    let url = format!("rtmp://127.0.0.1:{}/live/test", free_port());
    push_becomes_segments(SourceSpec::RtmpListen(url.clone()), "flv", &url).await
}

#[tokio::test]
async fn an_srt_push_becomes_segments() -> Result<()> {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let source = SourceSpec::parse(&format!("srt://127.0.0.1:{port}"))?;
    let caller = format!("srt://127.0.0.1:{port}?mode=caller");
    push_becomes_segments(source, "mpegts", &caller).await
}

#[tokio::test]
async fn an_hls_playlist_is_pulled_into_segments() -> Result<()> {
    logs();
    let began = Instant::now();
    let dir = tempfile::tempdir()?;
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .args([
            "testsrc2=size=320x180:rate=25:duration=6",
            "-f",
            "lavfi",
            "-i",
        ])
        .args(["sine=duration=6", "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-g", "25", "-c:a", "aac", "-f", "hls", "-hls_time", "1"])
        .args(["-hls_playlist_type", "vod"])
        .arg(dir.path().join("index.m3u8"))
        .kill_on_drop(true)
        .status()
        .await?;
    ensure!(st.success(), "could not make the HLS test stream");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/index.m3u8", listener.local_addr()?);
    let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir.path()));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut ch = spawn_channel(config(SourceSpec::HlsPull(url)))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut segs = Vec::new();
    while segs.len() < 3 {
        match next(&mut ch, deadline).await? {
            IngestEvent::Segment(s) => segs.push((s, unix_ms())),
            IngestEvent::Status(ChannelStatus::Interrupted { reason, .. }) => {
                bail!("interrupted: {reason}")
            }
            _ => {}
        }
    }
    ch.stop().await;
    server.abort();
    for (i, (s, arrival)) in segs.iter().enumerate() {
        println!(
            "hls: seq {} start {} dur {} capture→arrival {} ms",
            s.seq,
            s.start_ms,
            s.duration_ms,
            *arrival as i64 - s.capture_ms as i64
        );
        assert_eq!(s.seq, i as u32);
        assert!(s.duration_ms.abs_diff(1000) <= 50, "{s:?}");
    }
    println!("hls pull test took {:?}", began.elapsed());
    Ok(())
}

/// The first interruption's reason, within `secs`.
async fn first_interruption(ch: &mut Channel, secs: u64) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match next(ch, deadline).await? {
            IngestEvent::Status(ChannelStatus::Interrupted { reason, .. }) => return Ok(reason),
            IngestEvent::Segment(s) => bail!("unexpected segment {}", s.seq),
            _ => {}
        }
    }
}

#[tokio::test]
async fn an_hls_url_that_does_not_answer_is_an_interruption_with_the_reason() -> Result<()> {
    logs();
    let began = Instant::now();
    let url = format!("http://127.0.0.1:{}/x.m3u8", free_port());
    let mut ch = spawn_channel(config(SourceSpec::HlsPull(url)))?;
    let reason = first_interruption(&mut ch, 10).await?;
    println!("{reason} (after {:?})", began.elapsed());
    assert!(reason.to_lowercase().contains("connection"), "{reason}");
    assert!(began.elapsed() < Duration::from_secs(5));
    // It keeps retrying, with a longer wait each time.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let IngestEvent::Status(ChannelStatus::Interrupted { retry_in_ms, .. }) =
            next(&mut ch, deadline).await?
        {
            assert_eq!(retry_in_ms, 2000);
            break;
        }
    }
    let status = ch.status();
    ch.stop().await;
    assert_eq!(*status.borrow(), ChannelStatus::Stopped);
    Ok(())
}

#[tokio::test]
async fn a_garbage_file_is_an_interruption_with_ffmpegs_reason() -> Result<()> {
    logs();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("garbage.mp4");
    // Deterministic noise (xorshift).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(&file, noise)?;
    for source in [SourceSpec::File(file.clone()), SourceSpec::LoopFile(file)] {
        let mut ch = spawn_channel(config(source))?;
        let reason = first_interruption(&mut ch, 10)
            .await
            .context("no interruption")?;
        println!("{reason}");
        assert!(reason.contains("ffmpeg failed"), "{reason}");
        assert!(reason.contains("Invalid data"), "{reason}");
        ch.stop().await;
    }
    Ok(())
}
