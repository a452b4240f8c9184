//! How viewers' connection attempts end (`conn_result`): success rates and
//! routes per network group, and the pairs that failed, which the matcher
//! leaves out for a while (two viewers behind symmetric NATs without TURN
//! would otherwise be matched again and again).
//!
//! Only pairs that include the reporter are recorded, so a viewer can keep
//! itself away from others but cannot push two strangers apart. Both tables
//! are bounded.

use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};
use swarm_proto::signal::Route;

/// A pair that failed is not matched again for this long.
pub const FAILED_PAIR_TTL: Duration = Duration::from_secs(300);
/// Most failed pairs remembered (a full table forgets the oldest first).
pub const MAX_FAILED_PAIRS: usize = 100_000;
/// Most network groups with their own line; the rest are summed under
/// [`OTHER_GROUPS`].
pub const MAX_GROUPS: usize = 10_000;
pub const OTHER_GROUPS: &str = "(other groups)";
/// Longest connect time kept in the sums (a report beyond is clamped).
const MAX_CONNECT_MS: u64 = 120_000;

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct GroupConns {
    pub attempts: u64,
    pub connected: u64,
    pub failed: u64,
    pub host: u64,
    pub srflx: u64,
    pub prflx: u64,
    pub relay: u64,
    /// Mean time to an open data channel of the connected ones, ms.
    pub connect_ms_mean: u64,
    #[serde(skip)]
    connect_ms_sum: u64,
}

impl GroupConns {
    pub fn success_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.connected as f64 / self.attempts as f64
        }
    }
}

#[derive(Default)]
pub struct ConnTable {
    groups: HashMap<String, GroupConns>,
    /// Failed pairs by [`ConnTable::pair`]: a keyed hash, so that asking
    /// (once per candidate while matching) allocates nothing, and a stranger
    /// cannot craft ids whose pair collides with someone else's.
    failed: HashMap<u64, Instant>,
    /// Insertion order of `failed`, oldest first (entries whose time no
    /// longer matches the map are stale and skipped).
    order: VecDeque<(u64, Instant)>,
    /// Random key of the pair hash (SipHash), drawn per table.
    keys: RandomState,
}

impl ConnTable {
    /// The unordered pair {a, b} as a 64-bit keyed hash.
    fn pair(&self, a: &str, b: &str) -> u64 {
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        self.keys.hash_one((x, y))
    }

    /// Records one outcome reported by `me` (of `group`) about `other`.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        me: &str,
        group: &str,
        other: &str,
        ok: bool,
        ms: u64,
        route: Option<Route>,
        now: Instant,
    ) {
        let key = if self.groups.contains_key(group) || self.groups.len() < MAX_GROUPS {
            group
        } else {
            OTHER_GROUPS
        };
        let g = self.groups.entry(key.to_owned()).or_default();
        g.attempts = g.attempts.saturating_add(1);
        if ok {
            g.connected = g.connected.saturating_add(1);
            g.connect_ms_sum = g.connect_ms_sum.saturating_add(ms.min(MAX_CONNECT_MS));
            g.connect_ms_mean = g.connect_ms_sum / g.connected;
            match route {
                Some(Route::Host) => g.host += 1,
                Some(Route::Srflx) => g.srflx += 1,
                Some(Route::Prflx) => g.prflx += 1,
                Some(Route::Relay) => g.relay += 1,
                None => {}
            }
            let k = self.pair(me, other);
            self.failed.remove(&k);
        } else {
            g.failed = g.failed.saturating_add(1);
            while self.order.len() >= MAX_FAILED_PAIRS {
                let (k, at) = self.order.pop_front().expect("not empty");
                if self.failed.get(&k) == Some(&at) {
                    self.failed.remove(&k);
                }
            }
            let k = self.pair(me, other);
            self.failed.insert(k, now);
            self.order.push_back((k, now));
        }
    }

    /// Whether `a` and `b` failed to connect within [`FAILED_PAIR_TTL`].
    pub fn failed_recently(&self, a: &str, b: &str, now: Instant) -> bool {
        if self.failed.is_empty() {
            return false;
        }
        self.failed
            .get(&self.pair(a, b))
            .is_some_and(|at| now.duration_since(*at) < FAILED_PAIR_TTL)
    }

    pub fn failed_pairs(&self) -> usize {
        self.failed.len()
    }

    /// Per-group figures, sorted by group.
    pub fn groups(&self) -> Vec<(String, GroupConns)> {
        let mut v: Vec<_> = self
            .groups
            .iter()
            .map(|(k, g)| (k.clone(), g.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_summed_per_group_and_failed_pairs_expire() {
        let mut t = ConnTable::default();
        let t0 = Instant::now();
        t.record("a", "g1", "b", true, 100, Some(Route::Srflx), t0);
        t.record("a", "g1", "c", true, 300, Some(Route::Relay), t0);
        t.record("a", "g1", "d", false, 10_000, None, t0);
        let g = &t.groups()[0].1;
        assert_eq!((g.attempts, g.connected, g.failed), (3, 2, 1));
        assert_eq!((g.srflx, g.relay, g.connect_ms_mean), (1, 1, 200));
        assert!(t.failed_recently("d", "a", t0 + Duration::from_secs(1)));
        assert!(!t.failed_recently("a", "b", t0));
        assert!(!t.failed_recently("a", "d", t0 + FAILED_PAIR_TTL));
        // A later success clears the pair.
        t.record("d", "g2", "a", true, 50, Some(Route::Relay), t0);
        assert!(!t.failed_recently("a", "d", t0));
    }

    #[test]
    fn tables_are_bounded() {
        let mut t = ConnTable::default();
        let t0 = Instant::now();
        for i in 0..(MAX_FAILED_PAIRS + 10) {
            t.record("me", &format!("g{i}"), &format!("p{i}"), false, 1, None, t0);
        }
        assert_eq!(t.failed_pairs(), MAX_FAILED_PAIRS);
        let groups = t.groups();
        assert_eq!(groups.len(), MAX_GROUPS + 1);
        assert!(groups.iter().any(|(k, _)| k == OTHER_GROUPS));
    }
}
