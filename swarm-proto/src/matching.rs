//! The peer-matching rule, shared by the signal server and the simulator.
//!
//! Peers of the asker's own network group come first. If the swarm holds
//! at least `enough_same_group` of them, only those are returned (up to
//! `max`); otherwise the list is filled with peers of other groups, best
//! first (upload rate, then measured quality), ties broken at random by
//! the caller's seed. The result never includes the asker.

use std::collections::HashMap;

use rand::{rngs::SmallRng, seq::SliceRandom, Rng, SeedableRng};

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

/// A swarm's matchable members by network group, so that drawing
/// candidates for a join costs the same however large the swarm: every
/// member sits in two vectors (the swarm's and its group's) with its
/// positions kept, removed by swap-remove, and drawn by index.
#[derive(Clone, Debug, Default)]
pub struct MemberIndex {
    all: Vec<String>,
    groups: HashMap<String, Vec<String>>,
    /// id -> (group, index in `all`, index in its group's vector).
    pos: HashMap<String, (String, usize, usize)>,
}

impl MemberIndex {
    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.pos.contains_key(id)
    }

    /// Members of `group`.
    pub fn group_len(&self, group: &str) -> usize {
        self.groups.get(group).map_or(0, Vec::len)
    }

    /// Members in insertion order, disturbed by removals (for listings).
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.all.iter().map(String::as_str)
    }

    /// Adds `id` in `group`; false if it was there already.
    pub fn insert(&mut self, id: &str, group: &str) -> bool {
        if self.pos.contains_key(id) {
            return false;
        }
        let g = self.groups.entry(group.to_owned()).or_default();
        g.push(id.to_owned());
        self.all.push(id.to_owned());
        self.pos.insert(
            id.to_owned(),
            (group.to_owned(), self.all.len() - 1, g.len() - 1),
        );
        true
    }

    /// Removes `id`; false if it was not there.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some((group, i, j)) = self.pos.remove(id) else {
            return false;
        };
        self.all.swap_remove(i);
        if let Some(moved) = self.all.get(i) {
            if let Some(p) = self.pos.get_mut(moved) {
                p.1 = i;
            }
        }
        if let Some(g) = self.groups.get_mut(&group) {
            g.swap_remove(j);
            if let Some(moved) = g.get(j) {
                if let Some(p) = self.pos.get_mut(moved) {
                    p.2 = j;
                }
            }
            if g.is_empty() {
                self.groups.remove(&group);
            }
        }
        true
    }

    /// Up to `k` members of `group`, then (only while those are fewer than
    /// `enough_same_group`) up to `k` members of other groups, each drawn
    /// at random without repeats; never `me`. Costs O(k), whatever the
    /// swarm's size. Feed the result to [`select_peers`].
    pub fn sample<R: Rng>(
        &self,
        me: &str,
        group: &str,
        k: usize,
        enough_same_group: usize,
        rng: &mut R,
    ) -> Vec<&str> {
        self.sample_counted(me, group, k, enough_same_group, rng).0
    }

    /// [`MemberIndex::sample`], also returning how many members it looked
    /// at: at most `2k + 1 + enough_same_group`, whatever the swarm's size
    /// (the second draw only happens while the asker's group holds fewer
    /// than `enough_same_group` others).
    pub fn sample_counted<R: Rng>(
        &self,
        me: &str,
        group: &str,
        k: usize,
        enough_same_group: usize,
        rng: &mut R,
    ) -> (Vec<&str>, usize) {
        let mut out: Vec<&str> = Vec::new();
        let mut examined = 0;
        if let Some(g) = self.groups.get(group) {
            for i in distinct_indices(g.len(), k.saturating_add(1), rng) {
                examined += 1;
                if g[i] != me && out.len() < k {
                    out.push(&g[i]);
                }
            }
        }
        if out.len() < enough_same_group {
            // Draws from the whole swarm; same-group ones are already in.
            let want = k.saturating_add(self.group_len(group));
            let mut others = 0;
            for i in distinct_indices(self.all.len(), want, rng) {
                examined += 1;
                let id = self.all[i].as_str();
                if others < k && self.pos.get(id).is_some_and(|p| p.0 != group) {
                    out.push(id);
                    others += 1;
                }
            }
        }
        (out, examined)
    }
}

/// `k` distinct indices below `n` (all of them when `k >= n`), at random
/// (Floyd's algorithm: O(k) time and memory).
fn distinct_indices<R: Rng>(n: usize, k: usize, rng: &mut R) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    let mut chosen = std::collections::HashSet::with_capacity(k);
    let mut out = Vec::with_capacity(k);
    for j in n - k..n {
        let t = rng.gen_range(0..=j);
        let pick = if chosen.insert(t) { t } else { j };
        if pick == j {
            chosen.insert(j);
        }
        out.push(pick);
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
    fn member_index_keeps_positions_through_swap_removes() {
        let mut ix = MemberIndex::default();
        for i in 0..100 {
            assert!(ix.insert(&format!("p{i}"), &format!("g{}", i % 3)));
        }
        assert!(!ix.insert("p5", "g2"));
        for i in (0..100).step_by(7) {
            assert!(ix.remove(&format!("p{i}")));
        }
        assert!(!ix.remove("p0"));
        assert_eq!(ix.len(), 100 - 15);
        // Every position recorded is where the member is.
        for (id, (g, i, j)) in &ix.pos {
            assert_eq!(&ix.all[*i], id);
            assert_eq!(&ix.groups[g][*j], id);
        }
        let sizes: usize = ix.groups.values().map(Vec::len).sum();
        assert_eq!(sizes, ix.len());
        for i in 0..100 {
            assert_eq!(ix.contains(&format!("p{i}")), i % 7 != 0);
        }
        // Emptied groups go.
        let mut one = MemberIndex::default();
        one.insert("a", "g");
        one.remove("a");
        assert!(one.is_empty() && one.groups.is_empty());
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn samples_are_bounded_same_group_first_and_never_me() {
        let mut ix = MemberIndex::default();
        for i in 0..10_000 {
            ix.insert(&format!("p{i}"), if i % 100 == 0 { "small" } else { "big" });
        }
        let mut rng = SmallRng::seed_from_u64(3);
        // Enough in the asker's group: only that group, k at most.
        let s = ix.sample("p1", "big", 200, 40, &mut rng);
        assert_eq!(s.len(), 200);
        assert!(!s.contains(&"p1"));
        let distinct: std::collections::HashSet<_> = s.iter().collect();
        assert_eq!(distinct.len(), s.len());
        assert!(s.iter().all(|id| ix.pos[*id].0 == "big"));
        // A small group (100): all of it but me, then others up to k.
        let s = ix.sample("p0", "small", 200, 150, &mut rng);
        let same = s.iter().filter(|id| ix.pos[**id].0 == "small").count();
        assert_eq!(same, 99);
        assert_eq!(s.len(), 99 + 200);
        assert!(!s.contains(&"p0"));
        let distinct: std::collections::HashSet<_> = s.iter().collect();
        assert_eq!(distinct.len(), s.len());
        // An unknown group: others only; a tiny swarm: everyone but me.
        assert_eq!(ix.sample("x", "none", 50, 40, &mut rng).len(), 50);
        let mut tiny = MemberIndex::default();
        tiny.insert("a", "g");
        tiny.insert("b", "h");
        let mut s = tiny.sample("a", "g", 50, 40, &mut rng);
        s.sort();
        assert_eq!(s, vec!["b"]);
        // Different draws differ (the sample is random, not the first k).
        let a = ix.sample("p1", "big", 50, 40, &mut rng);
        let b = ix.sample("p1", "big", 50, 40, &mut rng);
        assert_ne!(a, b);
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn a_sample_looks_at_a_bounded_number_of_members_whatever_the_swarm() {
        let (k, enough) = (200, 40);
        let bound = 2 * k + 1 + enough;
        let mut rng = SmallRng::seed_from_u64(5);
        for n in [1_000usize, 50_000] {
            let mut ix = MemberIndex::default();
            for i in 0..n {
                // 10 big groups, a small one (every 997th), a tiny one.
                let g = match i {
                    _ if i % 997 == 0 => "small".to_owned(),
                    _ if i < 3 => "tiny".to_owned(),
                    _ => format!("g{}", i % 10),
                };
                ix.insert(&format!("p{i}"), &g);
            }
            for (me, g) in [("x", "g3"), ("x", "small"), ("x", "tiny"), ("x", "none")] {
                let (s, examined) = ix.sample_counted(me, g, k, enough, &mut rng);
                assert!(
                    examined <= bound,
                    "{examined} members examined for {g} among {n} (bound {bound})"
                );
                assert!(examined >= s.len(), "{examined} < {}", s.len());
            }
            // A group with enough: one draw of at most k + 1, nothing
            // from the rest of the swarm.
            let (_, examined) = ix.sample_counted("p13", "g3", k, enough, &mut rng);
            assert_eq!(examined, (k + 1).min(ix.group_len("g3")));
        }
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn distinct_indices_are_distinct_and_in_range() {
        let mut rng = SmallRng::seed_from_u64(9);
        for (n, k) in [(10, 3), (10, 10), (10, 20), (1000, 999), (5, 0)] {
            let v = distinct_indices(n, k, &mut rng);
            assert_eq!(v.len(), k.min(n));
            let set: std::collections::HashSet<_> = v.iter().collect();
            assert_eq!(set.len(), v.len());
            assert!(v.iter().all(|&i| i < n));
        }
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
