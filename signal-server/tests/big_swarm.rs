//! Work under the state lock does not grow with the swarm: a join draws a
//! bounded sample (same network group first), totals come from running
//! sums kept as reports and members change, and admin listings are bounded.
//! Driven on the state itself (no sockets) so that large swarms are cheap.
//! The work is counted (members a join looks at, from the server's own
//! metrics), not timed: the time per join is `examples/bench_join.rs`.

use std::sync::Arc;
use std::time::Instant;

use shoal_signal::metrics::Metrics;
use shoal_signal::state::{MATCH_SAMPLE_MIN, MAX_LISTED_PEERS, MAX_LISTED_VIEWERS};
use shoal_signal::{Admission, State};
use swarm_proto::matching::MatchRule;
use swarm_proto::signal::{ClientMsg, PeerReport, Role, ServerMsg};
use tokio::sync::mpsc;

struct Swarm {
    st: State,
    metrics: Arc<Metrics>,
    rxs: Vec<mpsc::Receiver<String>>,
    ids: Vec<String>,
}

fn swarm() -> Swarm {
    let metrics = Arc::new(Metrics::default());
    Swarm {
        st: state(metrics.clone()),
        metrics,
        rxs: Vec::new(),
        ids: Vec::new(),
    }
}

fn state(metrics: Arc<Metrics>) -> State {
    State::new(
        MatchRule::default(),
        5000,
        Some(11),
        Admission {
            allow_unknown_channels: true,
            max_swarms: 10,
            ..Admission::default()
        },
        metrics,
    )
}

impl Swarm {
    /// Registers a viewer in `group` and joins it to "big"; returns the
    /// swarm members the join looked at and its `joined`.
    fn join(&mut self, group: &str) -> (u64, ServerMsg) {
        let (tx, mut rx) = mpsc::channel(8);
        let addr = "10.1.2.3".parse().unwrap();
        let id = self
            .st
            .register(Role::Viewer, None, None, addr, group.into(), tx);
        let _welcome = rx.try_recv().unwrap();
        let picks = self.metrics.peer_picks.get();
        let examined = self.metrics.peer_pick_examined.get();
        self.st.handle(
            &id,
            ClientMsg::Join {
                swarm: "big".into(),
            },
            Instant::now(),
        );
        assert_eq!(self.metrics.peer_picks.get(), picks + 1, "one pick a join");
        let examined = self.metrics.peer_pick_examined.get() - examined;
        let joined = ServerMsg::decode(&rx.try_recv().unwrap()).unwrap();
        self.rxs.push(rx);
        self.ids.push(id);
        (examined, joined)
    }
}

#[test]
fn a_join_looks_at_no_more_members_in_a_swarm_of_12000_than_of_1000() {
    let mut s = swarm();
    let rule = MatchRule::default();
    // The sample drawn (k) and, while the asker's group is short of
    // `enough_same_group`, a second draw of k plus that group.
    let k = MATCH_SAMPLE_MIN.max(rule.max * 4) as u64;
    let bound = 2 * k + 1 + rule.enough_same_group as u64;
    let mut at_1k = Vec::new();
    let mut at_12k = Vec::new();
    for i in 0..12_000 {
        // 10 groups; every 97th viewer in a small group of its own kind.
        let group = if i % 97 == 0 {
            "rare".to_owned()
        } else {
            format!("g{}", i % 10)
        };
        let (examined, joined) = s.join(&group);
        assert!(
            examined <= bound,
            "join {i} looked at {examined} members (bound {bound})"
        );
        if (1_000..1_200).contains(&i) {
            at_1k.push(examined);
        }
        if i >= 11_800 {
            at_12k.push(examined);
        }
        if i == 11_999 || i == 1_000 {
            let ServerMsg::Joined { peers, .. } = joined else {
                panic!("{joined:?}")
            };
            assert_eq!(peers.len(), 50, "a full list");
            // Enough viewers of its own group: only those.
            let me = &s.ids[i];
            let group = format!("g{}", i % 10);
            assert!(
                peers.iter().all(|p| p.group == group && &p.peer_id != me),
                "{peers:?}"
            );
        }
    }
    // A viewer of a group with 3 members gets them all, then others.
    for _ in 0..3 {
        s.join("tiny");
    }
    let (examined, joined) = s.join("tiny");
    let ServerMsg::Joined { peers, .. } = joined else {
        panic!()
    };
    assert_eq!(peers.iter().filter(|p| p.group == "tiny").count(), 3);
    assert_eq!(peers.len(), 50, "filled from other groups");
    // Its own group (3) plus a second draw from the whole swarm, bounded.
    assert!(examined > k && examined <= bound, "{examined}");
    // No more work at 12,000 members than at 1,000: by then every group
    // has enough members, so a join draws k + 1 of its own and no more
    // (walking the swarm looked at every member).
    let (a, b) = (at_1k.iter().max().unwrap(), at_12k.iter().max().unwrap());
    eprintln!("members looked at per join: at most {a} at 1,000 members, {b} at 12,000");
    assert!(*a <= bound, "{a}");
    assert_eq!(*b, k + 1, "a join looked at more members in a bigger swarm");
}

#[test]
fn totals_follow_reports_and_leaves_and_listings_are_bounded() {
    let mut s = swarm();
    let n = MAX_LISTED_VIEWERS + 20;
    for i in 0..n {
        s.join(&format!("g{}", i % 4));
    }
    let report = |k: u64| PeerReport {
        bytes_from_peers: 3 * k,
        bytes_from_http: k,
        bytes_uploaded: u64::MAX, // saturates in the totals, no overflow
        stalls: 1,
        ..PeerReport::default()
    };
    let now = Instant::now();
    for (i, id) in s.ids.clone().iter().enumerate().take(100) {
        s.st.handle(
            id,
            ClientMsg::Report {
                swarm: "big".into(),
                report: report(i as u64),
            },
            now,
        );
        // A later report replaces the earlier one in the sums.
        s.st.handle(
            id,
            ClientMsg::Report {
                swarm: "big".into(),
                report: report(i as u64 + 1),
            },
            now,
        );
    }
    // Half of the reporters leave.
    for id in s.ids.clone().iter().take(50) {
        s.st.handle(
            id,
            ClientMsg::Leave {
                swarm: "big".into(),
            },
            now,
        );
    }
    let v = s.st.swarms_view().sorted();
    assert_eq!(v.swarm_count, 1);
    let big = &v.swarms[0];
    assert_eq!(big.members, n - 50);
    assert_eq!(
        big.peers.len(),
        n - 50,
        "under {MAX_LISTED_PEERS}: all listed"
    );
    let few = s.st.swarms_view_listing(100);
    assert_eq!(few.swarms[0].peers.len(), 100);
    assert_eq!(few.swarms[0].members, n - 50);
    let t = &big.totals;
    let left: u64 = (51..=100).sum();
    assert_eq!(t.viewers, n - 50);
    assert_eq!(t.bytes_from_http, left);
    assert_eq!(t.bytes_from_peers, 3 * left);
    assert_eq!(t.stalls, 50);
    assert_eq!(t.bytes_uploaded, u64::MAX);
    assert!((t.p2p_share - 0.75).abs() < 1e-9);
    assert_eq!(v.totals.bytes_from_http, left);
    assert_eq!(v.connected.viewers, n);
    // Sorted outside the lock.
    assert!(big.peers.windows(2).all(|w| w[0].peer_id < w[1].peer_id));
    let (listed, total) = s.st.viewers_view();
    assert_eq!(total, n);
    assert_eq!(listed.len(), MAX_LISTED_VIEWERS);
    // Everyone leaves: the swarm and its sums go.
    for id in s.ids.clone() {
        s.st.remove(&id, shoal_signal::state::LeaveReason::Disconnected);
    }
    let v = s.st.swarms_view();
    assert_eq!((v.swarm_count, v.connected.viewers), (0, 0));
    assert_eq!(v.totals.bytes_from_http, 0);
}
