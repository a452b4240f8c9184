//! A live channel at the seed, end to end on 127.0.0.1 with real ffmpeg:
//! the ingest's segments are signed and served over HTTP (`live.json`, the
//! live HLS playlist, init and media segments) and pushed over WebRTC. Two
//! real live viewer engines play it: one from HTTP alone, one connected to
//! the seed over a webrtc-rs data channel, which must get the new segments
//! pushed. Every description's signature and every segment's hash is
//! checked with the key the seed publishes.
mod common;

use common::viewer::{connect_to_hub, Viewer};
use common::{init_tracing, wait_until};
use shoal_seed::live::channel::{self, LiveChannels, LiveSettings};
use shoal_seed::live::ingest::{ChannelConfig, SourceSpec};
use shoal_seed::rtc::{RtcConfig, RtcHost};
use shoal_seed::serve::{HubConfig, SwarmHub};
use shoal_seed::stats::SeedStats;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use swarm_proto::engine::{Input, MediaEvent, Output, Resource};
use swarm_proto::live::sign::verify;
use swarm_proto::live::{LiveConfig, LiveEngine, LiveManifest};
use tokio::time::timeout;
use webrtc::data_channel::DataChannelEvent;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[derive(Debug, Default)]
struct Played {
    appended: Vec<u32>,
    init_first: bool,
    seeked_to: Option<u64>,
    checks_ok: usize,
    checks_failed: usize,
    http_segments: usize,
    refreshes: usize,
    latency_ms: Option<u64>,
    stats: swarm_proto::Stats,
}

/// Runs a live viewer engine until `want` segments are appended (at most
/// `limit`): HTTP from `origin` (the channel's folder on the seed's
/// origin), signatures checked with `key`, the seed
/// over `peer` when given, and a playhead that advances in real time once
/// the engine seeked.
async fn play_live(
    manifest: LiveManifest,
    key: [u8; 32],
    origin: &str,
    peer: Option<&Viewer>,
    want: usize,
    limit: Duration,
) -> Played {
    let cfg = LiveConfig::default();
    let mut engine = LiveEngine::new(Arc::new(manifest), cfg);
    let start = Instant::now();
    let now = || start.elapsed().as_millis() as u64;
    let http = reqwest::Client::new();
    let mut played = Played::default();
    let mut position: Option<(u64, Instant)> = None;
    engine.handle_input(now(), Input::Clock { unix_ms: unix_ms() });
    if let Some(v) = peer {
        v.wait_open().await;
        engine.handle_input(
            now(),
            Input::PeerConnected {
                peer: 1,
                remote_id: "seed",
                is_seed: true,
            },
        );
    }
    loop {
        while let Some(out) = engine.poll_output() {
            match out {
                Output::Send { data, .. } => {
                    if let Some(v) = peer {
                        v.send(&data).await;
                    }
                }
                Output::HttpFetch { res } => {
                    if matches!(res, Resource::Segment(_)) {
                        played.http_segments += 1;
                    }
                    let url = format!("{origin}/{}", engine.uri(res));
                    let resp = http.get(url).send().await.unwrap();
                    let input = if resp.status().is_success() {
                        Input::HttpDone {
                            res,
                            data: resp.bytes().await.unwrap().to_vec(),
                        }
                    } else {
                        Input::HttpFailed { res }
                    };
                    engine.handle_input(now(), input);
                }
                Output::CheckSignature {
                    id,
                    message,
                    signature,
                } => {
                    let ok = verify(&key, &message, &signature);
                    if ok {
                        played.checks_ok += 1;
                    } else {
                        played.checks_failed += 1;
                    }
                    engine.handle_input(now(), Input::SignatureChecked { id, ok });
                }
                Output::AppendInit { .. } => played.init_first = played.appended.is_empty(),
                Output::Append { seg, .. } => played.appended.push(seg.get()),
                Output::SeekTo { position_ms } => {
                    played.seeked_to.get_or_insert(position_ms);
                    position = Some((position_ms, Instant::now()));
                    engine.handle_input(now(), Input::Media(MediaEvent::Playing));
                }
                Output::RefreshLiveManifest => {
                    let url = format!("{origin}/live.json");
                    let text = get_text(&http, url).await;
                    let m = LiveManifest::from_json(&text).unwrap();
                    played.refreshes += 1;
                    engine.handle_input(now(), Input::LiveRecent { metas: &m.recent });
                }
                Output::DropPeer { reason, .. } | Output::ClosePeer { reason, .. } => {
                    panic!("the viewer engine closed the seed: {reason}")
                }
                _ => {}
            }
        }
        if played.appended.len() >= want {
            break;
        }
        assert!(
            start.elapsed() < limit,
            "only {:?} appended after {limit:?}",
            played.appended
        );
        let msg = match peer {
            Some(v) => match timeout(Duration::from_millis(50), v.dc.poll()).await {
                Ok(Some(DataChannelEvent::OnMessage(m))) => Some(m.data.to_vec()),
                Ok(Some(_)) | Err(_) => None,
                Ok(None) => panic!("viewer channel closed"),
            },
            None => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                None
            }
        };
        if let Some(data) = msg {
            engine.handle_input(
                now(),
                Input::PeerData {
                    peer: 1,
                    data: &data,
                },
            );
        }
        engine.handle_input(now(), Input::Clock { unix_ms: unix_ms() });
        if let Some((p, at)) = position {
            let position_ms = p + at.elapsed().as_millis() as u64;
            engine.handle_input(now(), Input::Playhead { position_ms });
        }
        engine.handle_input(now(), Input::Timeout);
    }
    played.latency_ms = engine.stats().latency_ms;
    played.stats = engine.stats();
    played
}

/// The body of a GET that must succeed.
async fn get_text(http: &reqwest::Client, url: String) -> String {
    let resp = http.get(&url).send().await.unwrap();
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.text().await.unwrap()
}

fn assert_consecutive(what: &str, seqs: &[u32]) {
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{what}: appends out of order: {seqs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_channel_is_signed_served_over_http_and_pushed_over_webrtc() {
    init_tracing();
    let stats = Arc::new(SeedStats::default());
    let hub = SwarmHub::new(&Default::default(), stats.clone(), HubConfig::new(4));
    let swarm = hub.add_live("demo", LiveConfig::default());
    let hub = Arc::new(hub);
    hub.spawn_timers();
    let cfg = ChannelConfig::new("demo", SourceSpec::TestSource { clock: false });
    let (ch, _task) = channel::start(cfg, [5; 32], LiveSettings::default(), Some(swarm)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let mut map = std::collections::HashMap::new();
    map.insert("demo".to_string(), ch.clone());
    let app = channel::router(LiveChannels::new(map), stats);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    wait_until("two live segments", Duration::from_secs(20), || {
        ch.newest().is_some_and(|m| m.seq >= 1)
    })
    .await;
    let http = reqwest::Client::new();
    let text = get_text(&http, format!("{origin}/live/demo/live.json")).await;
    let manifest = LiveManifest::from_json(&text).unwrap();
    assert_eq!(manifest.public_key, ch.public_key());
    assert!(manifest.mime.contains("avc1."), "{}", manifest.mime);
    assert!(!manifest.recent.is_empty());
    let playlist = get_text(&http, format!("{origin}/live/demo/index.m3u8")).await;
    assert!(playlist.contains("#EXT-X-PROGRAM-DATE-TIME:"), "{playlist}");
    assert!(
        playlist.contains("#EXT-X-MAP:URI=\"init.mp4\""),
        "{playlist}"
    );
    let unknown = http
        .get(format!("{origin}/live/demo/seg-999999.m4s"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // A viewer from HTTP alone.
    let key = ch.public_key();
    let channel_url = format!("{origin}/live/demo");
    let p = play_live(
        manifest.clone(),
        key,
        &channel_url,
        None,
        4,
        Duration::from_secs(30),
    )
    .await;
    assert!(p.init_first, "{p:?}");
    assert_consecutive("HTTP viewer", &p.appended);
    assert!(p.seeked_to.is_some(), "{p:?}");
    assert_eq!(p.checks_failed, 0, "{p:?}");
    assert!(
        p.checks_ok >= 5,
        "init and segment signatures checked: {p:?}"
    );
    let lat = p.latency_ms.expect("latency measured");
    assert!(lat < 6000, "latency {lat} ms: {p:?}");
    assert_eq!(p.stats.verify_failures, 0);

    // A viewer connected to the seed: new segments are pushed to it.
    let host = RtcHost::new(RtcConfig::default());
    let viewer = connect_to_hub(&hub, &host, "demo", "viewer-1").await;
    let fresh =
        LiveManifest::from_json(&get_text(&http, format!("{origin}/live/demo/live.json")).await)
            .unwrap();
    let p = play_live(
        fresh,
        key,
        &channel_url,
        Some(&viewer),
        6,
        Duration::from_secs(30),
    )
    .await;
    println!(
        "WebRTC viewer: appended {:?}, from seed {} B, from HTTP {} B, http segments {}, latency {:?} ms",
        p.appended, p.stats.bytes_from_seed, p.stats.bytes_from_http, p.http_segments, p.latency_ms
    );
    assert_consecutive("WebRTC viewer", &p.appended);
    assert_eq!(p.checks_failed, 0, "{p:?}");
    assert_eq!(p.stats.verify_failures, 0, "{p:?}");
    assert!(
        p.stats.bytes_from_seed > 3 * p.stats.bytes_from_http.max(1),
        "segments should come pushed over WebRTC, not HTTP: {p:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_source_is_said_in_live_json() {
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let clip = common::make_video(root.path(), "clip.mp4", 2, true);
    let cfg = ChannelConfig::new("once", SourceSpec::File(clip));
    let (ch, _task) = channel::start(cfg, [6; 32], LiveSettings::default(), None).unwrap();
    wait_until("a segment", Duration::from_secs(20), || {
        ch.newest().is_some()
    })
    .await;
    // The file ends after 2 s; the ingest reports it and retries.
    wait_until("the interruption", Duration::from_secs(20), || {
        ch.manifest().is_some_and(|m| m.interrupted.is_some())
    })
    .await;
    let m = ch.manifest().unwrap();
    let text = m.to_json();
    let back = LiveManifest::from_json(&text).unwrap();
    assert!(back.interrupted.unwrap().contains("ended"), "{text}");
}

/// As OBS would: ffmpeg publishes over RTMP to the seed's listener, and a
/// live viewer engine plays the channel from the seed's HTTP origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtmp_push_is_played_by_a_viewer() {
    init_tracing();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("rtmp://127.0.0.1:{port}/live/key");
    let cfg = ChannelConfig::new("obs", SourceSpec::RtmpListen(url.clone()));
    let (ch, _task) = channel::start(cfg, [7; 32], LiveSettings::default(), None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}/live/obs", listener.local_addr().unwrap());
    let mut map = std::collections::HashMap::new();
    map.insert("obs".to_string(), ch.clone());
    let app = channel::router(LiveChannels::new(map), Arc::new(SeedStats::default()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The publisher, retried (at most 10 times) until the listener takes it.
    let publish = || {
        tokio::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
            .args(["-f", "lavfi", "-i", "sine", "-t", "20"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-tune",
                "zerolatency",
            ])
            .args(["-g", "25", "-c:a", "aac", "-f", "flv", &url])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("ffmpeg runs")
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut publisher = publish();
    let start = Instant::now();
    let mut attempts = 1;
    while ch.newest().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no segment from the push"
        );
        if let Ok(Some(_)) = publisher.try_wait() {
            attempts += 1;
            assert!(attempts <= 10, "the publisher never got through");
            tokio::time::sleep(Duration::from_millis(300)).await;
            publisher = publish();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until("a second segment", Duration::from_secs(20), || {
        ch.manifest().is_some_and(|m| m.recent.len() >= 2)
    })
    .await;
    let manifest = ch.manifest().unwrap();
    let p = play_live(
        manifest,
        ch.public_key(),
        &origin,
        None,
        4,
        Duration::from_secs(30),
    )
    .await;
    assert_consecutive("RTMP viewer", &p.appended);
    assert_eq!(p.checks_failed, 0, "{p:?}");
    assert_eq!(p.stats.verify_failures, 0, "{p:?}");
    println!(
        "RTMP viewer: appended {:?}, latency {:?} ms",
        p.appended, p.latency_ms
    );
}
