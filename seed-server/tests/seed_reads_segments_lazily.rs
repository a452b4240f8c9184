//! The seed reads a segment file only when a viewer asks for it, verifies
//! it, and keeps at most `HubConfig::cache_bytes` of segments in memory: a video
//! larger than that cache is still served whole, to one viewer after
//! another. Real ffmpeg, real WebRTC on 127.0.0.1.
mod common;

use common::viewer::{connect_to_hub, play_all};
use common::{dirs, init_tracing, make_video, start_origin};
use shoal_seed::package::package_all;
use shoal_seed::rtc::{RtcConfig, RtcHost};
use shoal_seed::serve::{HubConfig, SwarmHub};
use shoal_seed::stats::SeedStats;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_segment_is_served_from_disk_through_a_cache_smaller_than_the_video() {
    init_tracing();
    let (_root, media, cache) = dirs();
    make_video(&media, "long.mp4", 10, true);
    let lib = Arc::new(package_all(&media, &cache).await.unwrap());
    let p = lib.published[0].clone();
    let manifest = Arc::new(p.manifest.clone());
    let count = manifest.segment_count();
    assert!(count >= 5, "{count} segments");
    let largest = manifest.segments().iter().map(|s| s.size).max().unwrap() as usize;
    let total: usize = manifest.segments().iter().map(|s| s.size as usize).sum();
    let store_max_bytes = largest * 2;
    assert!(
        store_max_bytes < total,
        "the cache must be smaller than the video"
    );

    let stats = Arc::new(SeedStats::default());
    let origin = start_origin(lib.clone(), stats.clone(), 4).await;
    let cfg = HubConfig {
        cache_bytes: store_max_bytes,
        ..HubConfig::new(4)
    };
    let hub = Arc::new(SwarmHub::new(&lib, stats.clone(), cfg));
    hub.spawn_timers();
    let swarm = hub.swarm(&p.content_id).unwrap().clone();

    // Nothing is read up front.
    assert_eq!(swarm.engine_tables().stored_segments, 0);
    assert_eq!(stats.segment_loads.load(Relaxed), 0);

    let host = RtcHost::new(RtcConfig::default());
    let (mut loads_before, mut held_before) = (0u64, 0u64);
    for viewer_id in ["v1", "v2"] {
        let viewer = connect_to_hub(&hub, &host, &p.content_id, viewer_id).await;
        let played = play_all(&viewer, manifest.clone(), &origin, Duration::from_secs(40)).await;
        assert_eq!(
            played.appended,
            (0..count).collect::<Vec<_>>(),
            "{viewer_id}"
        );
        assert_eq!(played.http_segments, 0, "{viewer_id}");

        let tables = swarm.engine_tables();
        let loads = stats.segment_loads.load(Relaxed);
        println!("after {viewer_id}: {tables:?}, {loads} segment loads");
        assert!(
            tables.stored_bytes <= store_max_bytes,
            "cache holds {} bytes, bound {store_max_bytes}",
            tables.stored_bytes
        );
        assert!(tables.stored_segments < count as usize);
        // Every segment not in the cache was read from disk for this viewer.
        assert!(
            loads - loads_before >= count as u64 - held_before,
            "{} loads for {viewer_id}, {count} segments, {held_before} cached",
            loads - loads_before
        );
        assert_eq!(stats.segment_load_failures.load(Relaxed), 0);
        (loads_before, held_before) = (loads, tables.stored_segments as u64);
        viewer.pc.close().await.unwrap();
    }
    assert_eq!(swarm.engine_stats().verify_failures, 0);
}
