//! The simulator's own guarantees: links carry at most their capacity,
//! pairs NAT keeps apart never connect, and a seed replays byte for byte.

use swarm_sim::net::Paths;
use swarm_sim::report;
use swarm_sim::scenario::Scenario;
use swarm_sim::sim::{run, Options};

fn small(extra: &str) -> Scenario {
    let text = format!(
        r#"
name = "test"
kind = "live"
seed = 7
viewers = 6
duration_s = 40
join_over_s = 6
bitrate_kbps = 1000
{extra}
"#
    );
    Scenario::from_toml(&text).expect("valid scenario")
}

#[test]
fn a_seed_capped_at_c_sends_at_most_c() {
    // No viewer can reach another: everything comes from one seed of
    // 2 Mbit/s, far less than 6 viewers of a 1 Mbit/s stream need.
    let mut sc = small("");
    sc.network.nat_fail = 1.0;
    sc.seeds.upload_mbps = 2;
    let f = run(&sc, Options::default()).figures;
    assert!(f.seed_egress_mbps <= 2.0 + 1e-9, "{f:?}");
    assert!(
        f.seed_egress_mbps > 1.5,
        "the seed was not even busy: {f:?}"
    );
    assert_eq!(f.p2p_share, 0.0);
    assert!(f.continuity < 0.9, "6 Mbit/s of demand through 2: {f:?}");
}

#[test]
fn a_viewer_downlink_at_c_receives_at_most_c() {
    // Viewers that can download 500 kbit/s of a 1 Mbit/s stream: at most
    // half plays.
    let mut sc = small("");
    sc.viewer_classes[0].download_kbps = 500;
    let f = run(&sc, Options::default()).figures;
    assert!(f.continuity <= 0.55, "{f:?}");
}

#[test]
fn pairs_blocked_by_nat_never_connect() {
    let mut sc = small("");
    sc.viewers = 30;
    sc.network.nat_fail = 0.5;
    let o = run(
        &sc,
        Options {
            record_pairs: true,
            ..Options::default()
        },
    );
    let paths = Paths {
        seed: sc.seed,
        same_group_us: 0,
        cross_group_us: 0,
        cross_spread_us: 0,
        nat_fail: sc.network.nat_fail,
    };
    let seeds = sc.seeds.count as u32;
    let viewer_pairs: Vec<_> = o
        .pairs
        .iter()
        .filter(|&&(a, b)| a >= seeds && b >= seeds)
        .collect();
    assert!(!viewer_pairs.is_empty());
    for &&(a, b) in &viewer_pairs {
        assert!(paths.can_connect(a as u64, b as u64), "{a}-{b} connected");
    }
    assert!(o.figures.nat_blocked > 0);
    // And with every pair open, some pair NAT blocks above does connect.
    sc.network.nat_fail = 0.0;
    let open = run(
        &sc,
        Options {
            record_pairs: true,
            ..Options::default()
        },
    );
    assert!(open
        .pairs
        .iter()
        .any(|&(a, b)| a >= seeds && !paths.can_connect(a as u64, b as u64)));
}

fn replay(sc: &Scenario) -> String {
    let o = run(
        sc,
        Options {
            csv: true,
            ..Options::default()
        },
    );
    format!(
        "{}\n{}{}",
        report::header(sc),
        report::details(&o.figures),
        o.csv.unwrap()
    )
}

#[test]
fn the_same_seed_gives_byte_identical_output() {
    let mut sc = small("");
    sc.viewers = 20;
    sc.network.groups = 3;
    sc.network.nat_fail = 0.2;
    sc.churn.per_minute = 0.3;
    let a = replay(&sc);
    assert_eq!(a, replay(&sc));
    sc.seed += 1;
    assert_ne!(a, replay(&sc), "another seed, another run");
}

#[test]
fn shipped_scenarios_parse() {
    for name in report::SHIPPED {
        let sc = swarm_sim::scenario::find(name).expect(name);
        assert_eq!(sc.name, name);
    }
}

#[test]
fn a_small_vod_swarm_plays() {
    let text = r#"
name = "vod-test"
kind = "vod"
viewers = 12
duration_s = 60
join_over_s = 10
bitrate_kbps = 800
segment_ms = 2000
payload_scale = 4
[vod]
videos = 3
video_s = 120
"#;
    let sc = Scenario::from_toml(text).unwrap();
    let f = run(&sc, Options::default()).figures;
    assert!(f.continuity > 0.95, "{f:?}");
    assert!(f.p2p_share > 0.2, "{f:?}");
}
