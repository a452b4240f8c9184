//! The live swarm in the simulator (real engines, real signatures, virtual
//! network): prints one JSON line with the keys `npm run bench:live` is to
//! print, marked `"simulated": true`. Settable: VIEWERS, WATCH_S, SEGMENT
//! (seconds), UPLOAD_MBPS (each node's upload), LATENCY_MS (one-way link).
//!
//! `cargo run --release -p swarm-proto --features ed25519 --example live_sim`

use swarm_proto::live::sim::{run, LiveSimConfig};

fn env(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let d = LiveSimConfig::default();
    let cfg = LiveSimConfig {
        viewers: env("VIEWERS", d.viewers as f64) as usize,
        watch_ms: (env("WATCH_S", d.watch_ms as f64 / 1000.0) * 1000.0) as u64,
        segment_ms: (env("SEGMENT", d.segment_ms as f64 / 1000.0) * 1000.0) as u32,
        upload_bps: (env("UPLOAD_MBPS", d.upload_bps as f64 * 8.0 / 1e6) * 1e6 / 8.0) as u64,
        link_latency_ms: env("LATENCY_MS", d.link_latency_ms as f64) as u64,
        ..d
    };
    let r = run(&cfg);
    let (lat_med, lat_max) = r.latency_ms();
    let mut startups: Vec<u64> = r
        .viewers
        .iter()
        .filter_map(|v| v.stats.startup_ms)
        .collect();
    startups.sort_unstable();
    let stalled: u64 = r.viewers.iter().map(|v| v.stats.stalled_ms).sum();
    println!(
        "{{\"simulated\":true,\"viewers\":{},\"segment_s\":{},\"p2p_share\":{:.4},\"seed_egress_copies\":{:.3},\"latency_ms_median\":{lat_med},\"latency_ms_max\":{lat_max},\"startup_ms_median\":{},\"stalls\":{},\"stalled_ms\":{stalled}}}",
        cfg.viewers,
        cfg.segment_ms as f64 / 1000.0,
        r.p2p_share(),
        r.seed_egress_copies(),
        startups.get(startups.len() / 2).copied().unwrap_or(0),
        r.stalls(),
    );
}
