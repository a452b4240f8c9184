//! Whole swarms of real engines in the deterministic simulator.

use swarm_proto::sim::{run, synthetic_content, SimConfig};
use wasm_bindgen_test::wasm_bindgen_test;

fn content() -> (std::sync::Arc<swarm_proto::Manifest>, Vec<Vec<u8>>) {
    // 70 segments of 2 s at ~800 kbit/s.
    synthetic_content(&vec![200_000; 70], 16 * 1024)
}

#[wasm_bindgen_test(unsupported = test)]
fn four_viewers_play_smoothly_mostly_from_each_other() {
    let (m, d) = content();
    let r = run(m, &d, &SimConfig::default());
    for (i, v) in r.viewers.iter().enumerate() {
        assert!(
            v.played_ms >= 55_000,
            "viewer {i} played {} ms",
            v.played_ms
        );
        assert_eq!(v.stalls, 0, "viewer {i} stalled");
        assert_eq!(v.stats.verify_failures, 0);
    }
    println!(
        "sim 4 viewers: p2p_share={:.3} seed_egress_copies={:.3}",
        r.p2p_share(),
        r.seed_egress_copies()
    );
    assert!(r.p2p_share() > 0.65, "p2p share {:.3}", r.p2p_share());
    assert!(
        r.seed_egress_copies() < 1.25,
        "seed egress {:.3} copies",
        r.seed_egress_copies()
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn a_lone_viewer_gets_everything_from_the_seed() {
    let (m, d) = content();
    let r = run(
        m,
        &d,
        &SimConfig {
            viewers: 1,
            ..SimConfig::default()
        },
    );
    let v = &r.viewers[0];
    assert!(v.played_ms >= 55_000 && v.stalls == 0, "{v:?}");
    assert_eq!(v.stats.bytes_from_peers, 0);
    assert!(
        v.stats.bytes_from_seed > 0,
        "the seed serves over WebRTC too"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn a_corrupting_viewer_is_dropped_and_nobody_stalls() {
    let (m, d) = content();
    let r = run(
        m,
        &d,
        &SimConfig {
            corrupt_viewer: Some(0),
            ..SimConfig::default()
        },
    );
    for (i, v) in r.viewers.iter().enumerate().skip(1) {
        assert!(
            v.dropped.contains(&1),
            "viewer {i} dropped the corrupting viewer: {:?}",
            v.dropped
        );
        assert_eq!(v.stalls, 0, "viewer {i} stalled");
        assert!(v.played_ms >= 55_000);
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn runs_replay_exactly() {
    let (m, d) = content();
    let cfg = SimConfig {
        viewers: 3,
        watch_ms: 20_000,
        ..SimConfig::default()
    };
    let a = run(m.clone(), &d, &cfg);
    let b = run(m, &d, &cfg);
    assert_eq!(format!("{:?}", a.viewers), format!("{:?}", b.viewers));
}
