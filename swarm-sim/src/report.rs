//! How a run is printed: a deterministic report (a pure function of the
//! scenario and its seed), one table row, and one JSON line.

use crate::scenario::{Kind, Scenario};
use crate::sim::Figures;
use std::fmt::Write;

/// The shipped scenarios, in the order `bench:sim` runs them.
pub const SHIPPED: [&str; 5] = ["small", "live-10k", "vod-10k", "churn", "live-150k-300kbps"];

fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |x| x.to_string())
}

/// The first line of a run: what it simulates and its seed.
pub fn header(sc: &Scenario) -> String {
    format!(
        "swarm-sim: scenario {} ({}), seed {}, {} viewers, {} kbit/s, {} s simulated, {} groups, {:.0}% pairs blocked by NAT, churn {:.0}%/min, {} seed(s) of {} Mbit/s, payload scale {}",
        sc.name,
        match sc.kind {
            Kind::Live => "live",
            Kind::Vod => "vod",
        },
        sc.seed,
        sc.viewers,
        sc.bitrate_kbps,
        sc.duration_s,
        sc.network.groups,
        sc.network.nat_fail * 100.0,
        sc.churn.per_minute * 100.0,
        sc.seeds.count,
        sc.seeds.upload_mbps,
        sc.payload_scale,
    )
}

/// Every figure of a run, one per line; byte-identical for the same
/// scenario and seed.
pub fn details(f: &Figures) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "  seed egress      {:.3} Mbit/s = {:.2} stream copies (HTTP share of all bytes {:.4})",
        f.seed_egress_mbps, f.seed_egress_copies, f.http_share
    );
    let _ = writeln!(s, "  p2p share        {:.4}", f.p2p_share);
    let _ = writeln!(s, "  continuity       {:.4}", f.continuity);
    let _ = writeln!(s, "  cross-group      {:.4}", f.cross_group_share);
    let _ = writeln!(
        s,
        "  live latency     median {} ms, p95 {} ms",
        opt(f.latency_ms_median),
        opt(f.latency_ms_p95)
    );
    let _ = writeln!(
        s,
        "  startup          median {} ms, p95 {} ms",
        opt(f.startup_ms_median),
        opt(f.startup_ms_p95)
    );
    let _ = writeln!(
        s,
        "  stalls           {} ({:.2} per viewer-hour)",
        f.stalls, f.stalls_per_viewer_hour
    );
    let _ = writeln!(
        s,
        "  churn            {} joins, {} leaves; {} connections, {} offers blocked by NAT, {} peers dropped, {} HTTP fetches refused (503)",
        f.joins, f.leaves, f.connections, f.nat_blocked, f.peers_dropped, f.http_refused
    );
    let _ = writeln!(
        s,
        "  engines          {} events; {} segment bytes stored per online viewer (carried size)",
        f.events, f.stored_bytes_per_viewer
    );
    s
}

pub const TABLE_HEAD: &str = "| scenario | viewers | kbit/s | seed Mbit/s | copies | P2P | continuity | cross-group | latency ms | startup ms | stalls/viewer-h | wall s | peak RSS MB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|";

pub fn table_row(name: &str, f: &Figures, wall_s: f64, rss_mb: f64) -> String {
    format!(
        "| {name} | {} | {} | {:.2} | {:.2} | {:.3} | {:.4} | {:.3} | {} | {} | {:.2} | {:.1} | {:.0} |",
        f.viewers,
        f.bitrate_kbps,
        f.seed_egress_mbps,
        f.seed_egress_copies,
        f.p2p_share,
        f.continuity,
        f.cross_group_share,
        opt(f.latency_ms_median),
        opt(f.startup_ms_median),
        f.stalls_per_viewer_hour,
        wall_s,
        rss_mb
    )
}

fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

/// The one JSON line of a scenario, with exactly the keys `bench:sim`
/// promises, in this order.
pub fn json_line(name: &str, f: &Figures, wall_s: f64, rss_mb: f64) -> String {
    use serde_json::{to_string as j, Value};
    let fields: [(&str, Value); 11] = [
        ("scenario", name.into()),
        ("viewers", f.viewers.into()),
        ("bitrate_kbps", f.bitrate_kbps.into()),
        ("seed_egress_mbps", round(f.seed_egress_mbps, 3).into()),
        ("seed_egress_copies", round(f.seed_egress_copies, 3).into()),
        ("p2p_share", round(f.p2p_share, 4).into()),
        ("continuity", round(f.continuity, 4).into()),
        ("cross_group_share", round(f.cross_group_share, 4).into()),
        ("latency_ms_median", f.latency_ms_median.into()),
        ("wall_s", round(wall_s, 1).into()),
        ("peak_rss_mb", round(rss_mb, 0).into()),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{}", j(k).expect("a string"), j(v).expect("a value")))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// Peak resident memory of this process (VmHWM), MB.
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
