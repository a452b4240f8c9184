//! WebRTC slots: who may open a connection to the seed, and how many at once.
//!
//! Invariants: `total` never exceeds the hub's capacity; no signaling peer
//! id holds more than `max_conns_per_peer` slots; the per-id table has an
//! entry only for ids holding at least one slot (so it is bounded by the
//! capacity); a slot is released exactly once, when its [`ViewerSlot`] is
//! dropped (the connection's task ended, whatever the reason).

use super::lock;
use crate::stats::SeedStats;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

/// Why an offer was refused before any connection was made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this seed does not serve content {0:?}")]
    UnknownContent(String),
    #[error("the seed is at its capacity of {0} connections")]
    OverCapacity(u32),
    #[error("peer already holds {0} connections, the most allowed per peer (a third offer is refused, not swapped for an older connection)")]
    TooManyFromPeer(usize),
    #[error("peer is banned from this content for misbehaving")]
    Banned,
}

/// Slots held, in total and per signaling peer id.
#[derive(Default)]
pub(super) struct SlotTable {
    total: u32,
    per_peer: HashMap<String, usize>,
}

/// The limits a [`SlotTable`] enforces.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub capacity: u32,
    pub per_peer: usize,
}

/// Takes a slot for `remote_id`, or says why not (and counts the refusal).
pub(super) fn admit(
    table: &Arc<Mutex<SlotTable>>,
    limits: Limits,
    stats: &Arc<SeedStats>,
    remote_id: &str,
) -> Result<ViewerSlot, Refusal> {
    let mut t = lock(table);
    let held = t.per_peer.get(remote_id).copied().unwrap_or(0);
    if held >= limits.per_peer {
        stats.refused_per_peer.fetch_add(1, Relaxed);
        return Err(Refusal::TooManyFromPeer(held));
    }
    if t.total >= limits.capacity {
        stats.refused_over_capacity.fetch_add(1, Relaxed);
        return Err(Refusal::OverCapacity(limits.capacity));
    }
    t.total += 1;
    *t.per_peer.entry(remote_id.to_owned()).or_default() += 1;
    stats.slots.store(t.total as u64, Relaxed);
    stats.slots_max.fetch_max(t.total as u64, Relaxed);
    stats.viewers_total.fetch_add(1, Relaxed);
    Ok(ViewerSlot {
        table: table.clone(),
        stats: stats.clone(),
        remote_id: remote_id.to_owned(),
    })
}

/// One WebRTC slot: a viewer connection's place under the seed's capacity
/// and under its peer id's limit, from admission until the connection's
/// task ends. Released on drop.
pub struct ViewerSlot {
    table: Arc<Mutex<SlotTable>>,
    stats: Arc<SeedStats>,
    remote_id: String,
}

impl ViewerSlot {
    /// The signaling peer id holding this slot.
    pub fn remote_id(&self) -> &str {
        &self.remote_id
    }
}

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        t.total -= 1;
        if let Some(n) = t.per_peer.get_mut(&self.remote_id) {
            *n -= 1;
            if *n == 0 {
                t.per_peer.remove(&self.remote_id);
            }
        }
        self.stats.slots.store(t.total as u64, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_at_most_its_share_and_the_total_is_capped() {
        let table = Arc::default();
        let stats = Arc::new(SeedStats::default());
        let limits = Limits {
            capacity: 3,
            per_peer: 2,
        };
        let a1 = admit(&table, limits, &stats, "a").unwrap();
        let a2 = admit(&table, limits, &stats, "a").unwrap();
        assert_eq!(
            admit(&table, limits, &stats, "a").err(),
            Some(Refusal::TooManyFromPeer(2))
        );
        let b1 = admit(&table, limits, &stats, "b").unwrap();
        assert_eq!(
            admit(&table, limits, &stats, "c").err(),
            Some(Refusal::OverCapacity(3))
        );
        assert_eq!(stats.slots.load(Relaxed), 3);
        drop(a1);
        let a3 = admit(&table, limits, &stats, "a").unwrap();
        drop((a2, a3, b1));
        assert_eq!(stats.slots.load(Relaxed), 0);
        assert_eq!(stats.slots_max.load(Relaxed), 3);
        assert_eq!(stats.refused_per_peer.load(Relaxed), 1);
        assert_eq!(stats.refused_over_capacity.load(Relaxed), 1);
        assert!(lock(&table).per_peer.is_empty());
    }
}
