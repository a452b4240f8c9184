//! The live engine in the simulator: signed segments pushed by the seed and
//! spread by the viewers, at the live edge.

use swarm_proto::live::sim::{run, LiveSimConfig};

fn summary(r: &swarm_proto::live::sim::LiveSimResult) -> String {
    let (med, max) = r.latency_ms();
    format!(
        "p2p {:.3} copies {:.3} latency median {med} max {max} stalls {} startup {:?}",
        r.p2p_share(),
        r.seed_egress_copies(),
        r.stalls(),
        r.viewers
            .iter()
            .map(|v| v.stats.startup_ms)
            .collect::<Vec<_>>()
    )
}

#[test]
fn six_viewers_share_the_live_edge() {
    let r = run(&LiveSimConfig::default());
    let s = summary(&r);
    println!("{s}");
    let (med, _) = r.latency_ms();
    for (i, v) in r.viewers.iter().enumerate() {
        assert!(v.stats.startup_ms.is_some(), "viewer {i} never played: {s}");
        assert!(
            v.dropped.is_empty(),
            "viewer {i} dropped honest peers {:?}: {s}",
            v.dropped
        );
        assert_eq!(v.stats.verify_failures, 0, "{s}");
    }
    assert_eq!(r.stalls(), 0, "{s}");
    assert!(r.p2p_share() > 0.7, "{s}");
    assert!(r.seed_egress_copies() < 1.5, "{s}");
    assert!(med <= 3000, "{s}");
}

#[test]
fn a_viewer_corrupting_segments_is_dropped_and_nobody_stalls() {
    let cfg = LiveSimConfig {
        corrupt_viewer: Some(0),
        ..LiveSimConfig::default()
    };
    let r = run(&cfg);
    let s = summary(&r);
    println!("{s}");
    for (i, v) in r.viewers.iter().enumerate().skip(1) {
        assert!(v.stats.startup_ms.is_some(), "viewer {i} never played: {s}");
        assert!(
            v.dropped.iter().all(|&d| d == 1),
            "viewer {i} dropped someone honest: {:?}",
            v.dropped
        );
    }
    let droppers = r.viewers.iter().filter(|v| v.dropped.contains(&1)).count();
    assert!(droppers >= 1, "nobody caught the corrupting viewer: {s}");
    let stalls: u32 = r.viewers.iter().skip(1).map(|v| v.stats.stalls).sum();
    assert_eq!(stalls, 0, "{s}");
}
