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
    // Ceiling 75 %: the first viewer gets everything from the seed.
    assert!(r.p2p_share() > 0.74, "p2p share {:.3}", r.p2p_share());
    // One copy, plus what the first viewer fetched ahead of its playhead
    // before leaving (two segments, 0.07 copies).
    assert!(
        r.seed_egress_copies() <= 1.1,
        "seed egress {:.3} copies",
        r.seed_egress_copies()
    );
    each_segment_left_the_seed_once(&r, 200_000);
    for v in &r.viewers[1..] {
        assert_eq!(
            v.stats.bytes_from_http,
            swarm_proto::sim::SYNTHETIC_INIT.len() as u64,
            "a viewer with peers gets its first segment from them: {v:?}"
        );
    }
}

/// No segment was sent by the seed (HTTP and WebRTC together) more than once.
fn each_segment_left_the_seed_once(r: &swarm_proto::sim::SimResult, seg_bytes: u64) {
    for (seg, &n) in r.seed_bytes_by_segment().iter().enumerate() {
        assert!(n <= seg_bytes, "segment {seg} left the seed {n} bytes");
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn six_viewers_two_seconds_apart_take_each_segment_from_the_seed_once() {
    let (m, d) = content();
    let r = run(
        m,
        &d,
        &SimConfig {
            viewers: 6,
            join_gap_ms: 2000,
            ..SimConfig::default()
        },
    );
    println!(
        "sim 6 viewers 2 s apart: p2p_share={:.3} seed_egress_copies={:.3}",
        r.p2p_share(),
        r.seed_egress_copies()
    );
    for (i, v) in r.viewers.iter().enumerate() {
        assert!(v.played_ms >= 55_000 && v.stalls == 0, "viewer {i}: {v:?}");
    }
    assert!(r.p2p_share() >= 0.8, "p2p share {:.3}", r.p2p_share());
    assert!(
        r.seed_egress_copies() <= 1.1,
        "{:.3}",
        r.seed_egress_copies()
    );
    each_segment_left_the_seed_once(&r, 200_000);
}

#[wasm_bindgen_test(unsupported = test)]
fn viewers_joining_at_once_take_each_segment_from_the_seed_once() {
    let (m, d) = content();
    for gap in [0, 50] {
        let r = run(
            m.clone(),
            &d,
            &SimConfig {
                viewers: 6,
                join_gap_ms: gap,
                watch_ms: 30_000,
                ..SimConfig::default()
            },
        );
        for (i, v) in r.viewers.iter().enumerate() {
            assert!(v.played_ms >= 27_000 && v.stalls == 0, "viewer {i}: {v:?}");
        }
        each_segment_left_the_seed_once(&r, 200_000);
    }
}

#[wasm_bindgen_test(unsupported = test)]
fn a_viewer_lying_about_what_it_fetches_stalls_nobody() {
    let (m, d) = content();
    // The liar joins first, so everyone lists it and hears its hints.
    let r = run(
        m,
        &d,
        &SimConfig {
            viewers: 5,
            lying_fetcher: Some(0),
            ..SimConfig::default()
        },
    );
    let wait = swarm_proto::engine::Config::default().viewer_wait_ms;
    for (i, v) in r.viewers.iter().enumerate().skip(1) {
        assert!(v.played_ms >= 55_000, "viewer {i} played {}", v.played_ms);
        assert_eq!(v.stalls, 0, "viewer {i} stalled");
        assert!(
            v.startup_ms.is_some_and(|s| s <= wait + 500),
            "viewer {i}: startup {:?}",
            v.startup_ms
        );
    }
    println!(
        "sim 4 viewers and a lying fetcher: p2p_share={:.3} seed_egress_copies={:.3}",
        r.p2p_share(),
        r.seed_egress_copies()
    );
    assert!(
        r.seed_egress_copies() <= 1.2,
        "{:.3}",
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
