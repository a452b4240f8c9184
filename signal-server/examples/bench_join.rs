//! A join into a big swarm, measured on the signal server's state itself
//! (no sockets): `MEMBERS` viewers (default 100,000) in one swarm spread
//! over `GROUPS` network groups (default 10), then `JOINS` (default 2,000)
//! more viewers join it one at a time and each asks for peers once. Prints
//! one JSON line: the time under the state lock per join and per
//! `get_peers` (median, p99, max, in µs) and the peers listed.
//!
//! `cargo run --release -p shoal-signal --example bench_join`

use std::sync::Arc;
use std::time::Instant;

use shoal_signal::metrics::Metrics;
use shoal_signal::{Admission, State};
use swarm_proto::matching::MatchRule;
use swarm_proto::signal::{ClientMsg, Role};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [u128], p: f64) -> u128 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let members = env("MEMBERS", 100_000);
    let groups = env("GROUPS", 10).max(1);
    let joins = env("JOINS", 2_000).max(1);
    let admission = Admission {
        allow_unknown_channels: true,
        max_swarms: 10,
        ..Admission::default()
    };
    let mut st = State::new(
        MatchRule::default(),
        5000,
        Some(1),
        admission,
        Arc::new(Metrics::default()),
    );
    let mut keep = Vec::with_capacity(members + joins);
    let addr = "10.0.0.1".parse().unwrap();
    let now = Instant::now();
    let t0 = Instant::now();
    for i in 0..members {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        keep.push(rx);
        let id = st.register(
            Role::Viewer,
            None,
            None,
            addr,
            format!("g{}", i % groups),
            tx,
        );
        st.handle(
            &id,
            ClientMsg::Join {
                swarm: "big".into(),
            },
            now,
        );
        // Drain its welcome and joined, so its queue never fills.
        let rx = keep.last_mut().unwrap();
        while rx.try_recv().is_ok() {}
    }
    let fill_s = t0.elapsed().as_secs_f64();
    let mut join_us = Vec::with_capacity(joins);
    let mut peers_us = Vec::with_capacity(joins);
    let mut listed = 0usize;
    for i in 0..joins {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let id = st.register(
            Role::Viewer,
            None,
            None,
            addr,
            format!("g{}", i % groups),
            tx,
        );
        let t = Instant::now();
        st.handle(
            &id,
            ClientMsg::Join {
                swarm: "big".into(),
            },
            now,
        );
        join_us.push(t.elapsed().as_micros());
        let t = Instant::now();
        st.handle(
            &id,
            ClientMsg::GetPeers {
                swarm: "big".into(),
            },
            now,
        );
        peers_us.push(t.elapsed().as_micros());
        while let Ok(m) = rx.try_recv() {
            if m.contains("\"type\":\"joined\"") {
                listed += m.matches("\"peer_id\"").count();
            }
        }
        keep.push(rx);
    }
    println!(
        "{{\"members\":{members},\"groups\":{groups},\"joins\":{joins},\"fill_s\":{fill_s:.1},\"join_us_median\":{},\"join_us_p99\":{},\"join_us_max\":{},\"get_peers_us_median\":{},\"get_peers_us_p99\":{},\"peers_listed_mean\":{:.1}}}",
        pct(&mut join_us, 0.5),
        pct(&mut join_us, 0.99),
        pct(&mut join_us, 1.0),
        pct(&mut peers_us, 0.5),
        pct(&mut peers_us, 0.99),
        listed as f64 / joins as f64,
    );
}
