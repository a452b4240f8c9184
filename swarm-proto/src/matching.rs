//! The peer-matching rule, shared by the signal server and the simulator.
//!
//! Peers of the asker's own network group come first. If the swarm holds
//! at least `enough_same_group` of them, only those are returned (up to
//! `max`); otherwise the list is filled with peers of other groups, best
//! first (upload rate, then measured quality), ties broken at random by
//! the caller's seed. The result never includes the asker.

use rand::{rngs::SmallRng, seq::SliceRandom, SeedableRng};

#[derive(Clone, Debug, PartialEq)]
pub struct Candidate<'a> {
    pub peer_id: &'a str,
    pub group: &'a str,
    /// Bytes per second the peer has uploaded lately (0 when unknown).
    pub upload_rate: u64,
    /// 0.0..=1.0, higher is better (1.0 when unknown).
    pub quality: f32,
}

#[derive(Clone, Copy, Debug)]
pub struct MatchRule {
    /// With at least this many same-group peers, other groups are skipped.
    pub enough_same_group: usize,
    /// Most peers returned.
    pub max: usize,
}

impl Default for MatchRule {
    fn default() -> Self {
        MatchRule {
            enough_same_group: 40,
            max: 50,
        }
    }
}

/// Picks peers for `me` (in `my_group`) out of `candidates`.
pub fn select_peers<'a>(
    me: &str,
    my_group: &str,
    candidates: &[Candidate<'a>],
    rule: MatchRule,
    rng_seed: u64,
) -> Vec<&'a str> {
    let mut rng = SmallRng::seed_from_u64(rng_seed);
    let mut same: Vec<&Candidate<'a>> = candidates
        .iter()
        .filter(|c| c.peer_id != me && c.group == my_group)
        .collect();
    let mut other: Vec<&Candidate<'a>> = candidates
        .iter()
        .filter(|c| c.peer_id != me && c.group != my_group)
        .collect();
    same.shuffle(&mut rng);
    other.shuffle(&mut rng);
    let best_first = |a: &&Candidate, b: &&Candidate| {
        b.upload_rate.cmp(&a.upload_rate).then(
            b.quality
                .partial_cmp(&a.quality)
                .unwrap_or(std::cmp::Ordering::Equal),
        )
    };
    // Stable sorts keep the random order among equals.
    same.sort_by(best_first);
    other.sort_by(best_first);
    let mut out: Vec<&'a str> = same.iter().take(rule.max).map(|c| c.peer_id).collect();
    if out.len() < rule.enough_same_group {
        out.extend(
            other
                .iter()
                .take(rule.max.saturating_sub(out.len()))
                .map(|c| c.peer_id),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    fn c<'a>(id: &'a str, group: &'a str, rate: u64) -> Candidate<'a> {
        Candidate {
            peer_id: id,
            group,
            upload_rate: rate,
            quality: 1.0,
        }
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn same_group_only_when_enough() {
        let cands = [
            c("a", "g1", 0),
            c("b", "g1", 0),
            c("x", "g2", 100),
            c("me", "g1", 0),
        ];
        let rule = MatchRule {
            enough_same_group: 2,
            max: 10,
        };
        let mut got = select_peers("me", "g1", &cands, rule, 1);
        got.sort();
        assert_eq!(got, vec!["a", "b"]);
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn fills_with_other_groups_best_first() {
        let cands = [
            c("a", "g1", 0),
            c("x", "g2", 10),
            c("y", "g3", 500),
            c("z", "g2", 50),
        ];
        let rule = MatchRule {
            enough_same_group: 3,
            max: 3,
        };
        assert_eq!(
            select_peers("me", "g1", &cands, rule, 7),
            vec!["a", "y", "z"]
        );
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn same_seed_same_answer() {
        let cands: Vec<Candidate> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|id| c(id, "g", 0))
            .collect();
        let rule = MatchRule {
            enough_same_group: 1,
            max: 3,
        };
        assert_eq!(
            select_peers("me", "g", &cands, rule, 42),
            select_peers("me", "g", &cands, rule, 42)
        );
    }
}
