//! The seed reports itself to the signal server: uptime, bytes in and out
//! over WebRTC and HTTP, viewers, channels ok or interrupted, cache use,
//! right after its welcome and then periodically. Real live channels (an
//! ffmpeg `testsrc` one that runs, one pulling HLS from a closed port that
//! is interrupted) and the real HTTP origin behind the counters.
mod common;

use common::signal::{next_link, signal_server};
use common::{init_tracing, start_origin};
use shoal_seed::live::channel::{self, LiveChannels, LiveSettings};
use shoal_seed::live::ingest::{ChannelConfig, SourceSpec};
use shoal_seed::report::Reporter;
use shoal_seed::rtc::{RtcConfig, RtcHost};
use shoal_seed::serve::{HubConfig, SwarmHub};
use shoal_seed::signaling::{self, SignalingConfig};
use shoal_seed::stats::SeedStats;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_proto::signal::{ClientMsg, SeedInfo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_reports_bytes_viewers_uptime_and_health() {
    init_tracing();
    let keys = tempfile::tempdir().unwrap();
    let stats = Arc::new(SeedStats::default());
    let hub = Arc::new(SwarmHub::new(
        &Default::default(),
        stats.clone(),
        HubConfig {
            cache_bytes: 64 << 20,
            ..HubConfig::new(4)
        },
    ));
    let mut map = HashMap::new();
    for (name, source) in [
        ("good", "testsrc"),
        // Nothing listens on port 9 of loopback: the pull fails and is
        // retried, the channel reads interrupted.
        ("bad", "http://127.0.0.1:9/none/index.m3u8"),
    ] {
        let cfg = ChannelConfig::new(name, SourceSpec::parse(source).unwrap());
        let secret = channel::load_or_create_key(keys.path(), name).unwrap();
        let swarm = hub.add_live(name, Default::default());
        let (ch, _task) =
            channel::start(cfg, secret, LiveSettings::default(), Some(swarm)).unwrap();
        map.insert(name.to_owned(), ch);
    }
    let live = LiveChannels::new(map);
    let origin = start_origin(Arc::new(Default::default()), stats.clone(), 4).await;
    let (url, mut links) = signal_server().await;
    let reporter = Reporter::new(stats.clone())
        .with_hub(hub.clone())
        .with_live(live.clone());
    tokio::spawn(signaling::run_reporting(
        SignalingConfig {
            url,
            seed: SeedInfo {
                seed_id: "seed-rep".into(),
                http_base: origin.clone(),
                contents: hub.contents(),
                capacity: 4,
                live: Vec::new(),
            },
            token: None,
        },
        hub.clone(),
        RtcHost::new(RtcConfig::default()),
        None,
        reporter,
        Duration::from_millis(200),
    ));
    let mut link = next_link(&mut links).await;
    link.welcome(60_000).await;

    // The first report follows the welcome at once.
    let first = match link.recv_any().await {
        ClientMsg::SeedReport { report } => report,
        other => panic!("expected a report right after welcome, got {other:?}"),
    };
    assert_eq!(first.viewers, 0);
    assert_eq!(first.cache_max_bytes, 64 << 20);
    let caps = first.caps.expect("the seed reports its caps");
    assert_eq!(caps.capacity, 4, "{first:?}");
    assert_eq!(
        caps.max_conns_per_peer as usize,
        hub.config().max_conns_per_peer
    );
    assert_eq!(
        first.channels_ok + first.channels_interrupted,
        2,
        "{first:?}"
    );
    first
        .check()
        .expect("the seed's own report is within bounds");

    // HTTP traffic shows in the next reports, both ways.
    let body = reqwest::get(format!("{origin}/vod/index.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "[]");
    let r = link.next_report().await;
    assert!(r.http_bytes_out >= 2, "{r:?}");
    assert!(r.http_bytes_in > 20, "{r:?}");
    assert_eq!(r.rtc_bytes_out, 0);

    // The pull that cannot connect reads interrupted, by name; the test
    // source stays ok.
    let start = Instant::now();
    let r = loop {
        let r = link.next_report().await;
        if r.channels_interrupted == 1 {
            break r;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{r:?}");
    };
    assert_eq!(r.channels_ok, 1, "{r:?}");
    assert_eq!(r.interrupted, vec!["bad".to_string()]);
    r.check().unwrap();
    // Reports keep coming, about every 200 ms, and uptime grows.
    let t = Instant::now();
    let a = link.next_report().await;
    let b = link.next_report().await;
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(b.uptime_s >= a.uptime_s);
    let channels: Vec<_> = live.read().values().cloned().collect();
    for ch in channels {
        ch.stop().await;
    }
}
