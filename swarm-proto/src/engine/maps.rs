//! The engine's ordered tables: sorted vectors ([`litemap`]) rather than
//! B-trees. Every table is bounded (see [`super::Config`]), so an insert
//! that shifts a vector is cheap; lookups are binary searches; iteration is
//! in key order, as before, so the engine stays deterministic. In the
//! browser bundle each table type costs one small sorted-vector
//! implementation instead of a B-tree's (B-trees were the largest part of
//! the Wasm).

use std::borrow::Borrow;

pub(crate) type Map<K, V> = litemap::LiteMap<K, V>;

/// Removes and returns the entry with the smallest key.
pub(crate) fn pop_first<K: Ord + Clone, V>(m: &mut Map<K, V>) -> Option<(K, V)> {
    let k = m.first()?.0.clone();
    m.remove(&k).map(|v| (k, v))
}

/// An ordered set on the same sorted vector.
#[derive(Clone, Debug)]
pub(crate) struct Set<K>(Map<K, ()>);

impl<K: Ord> Set<K> {
    pub fn new() -> Set<K> {
        Set(Map::new())
    }

    /// True if `k` was not there.
    pub fn insert(&mut self, k: K) -> bool {
        self.0.insert(k, ()).is_none()
    }

    /// True if `k` was there.
    pub fn remove<Q: Ord + ?Sized>(&mut self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.0.remove(k).is_some()
    }

    pub fn contains<Q: Ord + ?Sized>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.0.contains_key(k)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &K> {
        self.0.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_maps_keep_key_order() {
        let mut s = Set::new();
        assert!(s.insert(3));
        assert!(s.insert(1));
        assert!(!s.insert(3));
        assert!(s.contains(&1) && !s.contains(&2));
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert!(s.remove(&1) && !s.remove(&1));
        assert_eq!(s.len(), 1);
        let mut m = Map::new();
        m.insert(5, "e");
        m.insert(2, "b");
        m.insert(9, "i");
        assert_eq!(pop_first(&mut m), Some((2, "b")));
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), vec![5, 9]);
    }
}

/// Peer ids dropped for misbehaving, at most `max` (the oldest forgotten
/// first); shared by the on-demand and the live engine.
#[derive(Clone, Debug)]
pub(crate) struct BanList {
    set: Set<String>,
    order: std::collections::VecDeque<String>,
}

impl BanList {
    pub fn new() -> BanList {
        BanList {
            set: Set::new(),
            order: std::collections::VecDeque::new(),
        }
    }

    /// Bans `id`, forgetting the oldest bans beyond `max`.
    pub fn insert(&mut self, id: &str, max: usize) {
        if self.set.insert(id.to_owned()) {
            self.order.push_back(id.to_owned());
            while self.order.len() > max {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Most recent last.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &str> + '_ {
        self.order.iter().map(String::as_str)
    }
}
