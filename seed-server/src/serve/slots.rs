//! WebRTC slots: who may open a connection to the seed, and how many at once.
//!
//! Invariants: `total` never exceeds the hub's capacity; no signaling peer
//! id holds more than `max_conns_per_peer` slots; the per-id table has an
//! entry only for ids holding at least one slot, and the held table one
//! entry per slot (so both are bounded by the capacity); a slot is released
//! exactly once, when it is evicted or when its [`ViewerSlot`] is dropped
//! (the connection's task ended, whatever the reason), whichever comes
//! first.
//!
//! At capacity, a new offer takes the slot of a connection that has been
//! idle (no media sent to it for `evict_idle_after`), if there is one:
//! those never sent any media first, then the longest idle. A crowd of connections that never ask for anything (an offer flood
//! from fresh ids, stuck handshakes, viewers fed by their peers) cannot
//! keep a viewer that needs the seed out.

use super::lock;
use super::swarm::Clock;
use crate::stats::SeedStats;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use swarm_proto::Millis;
use tokio::sync::Notify;

/// Why an offer was refused before any connection was made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this seed does not serve content {0:?}")]
    UnknownContent(String),
    #[error("the seed is at its capacity of {0} connections, none of them idle")]
    OverCapacity(u32),
    #[error("peer already holds {0} connections, the most allowed per peer (a third offer is refused, not swapped for an older connection)")]
    TooManyFromPeer(usize),
    #[error("peer is banned from this content for misbehaving")]
    Banned,
}

/// Slots held, in total, per signaling peer id, and one by one.
#[derive(Default)]
pub(super) struct SlotTable {
    total: u32,
    per_peer: HashMap<String, usize>,
    held: HashMap<u64, Arc<SlotState>>,
    next_id: u64,
}

impl SlotTable {
    /// Gives back slot `id`'s place; false if it was already given back.
    fn release(&mut self, id: u64) -> bool {
        let Some(state) = self.held.remove(&id) else {
            return false;
        };
        self.total -= 1;
        if let Some(n) = self.per_peer.get_mut(&state.remote_id) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&state.remote_id);
            }
        }
        true
    }
}

/// The limits a [`SlotTable`] enforces.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub capacity: u32,
    pub per_peer: usize,
    /// At capacity, a slot with nothing sent for this long may be taken.
    pub evict_idle_after_ms: Millis,
}

/// What the table and the connection share about one slot.
struct SlotState {
    remote_id: String,
    /// When media was last sent on it (admission counts).
    last_active: AtomicU64,
    /// Whether any media was ever sent on it.
    served: AtomicBool,
    evicted: AtomicBool,
    evict: Notify,
}

/// Takes a slot for `remote_id` at time `now`, or says why not (and counts
/// the refusal). At capacity, the longest-idle slot is evicted for it.
pub(super) fn admit(
    table: &Arc<Mutex<SlotTable>>,
    limits: Limits,
    stats: &Arc<SeedStats>,
    clock: Clock,
    remote_id: &str,
) -> Result<ViewerSlot, Refusal> {
    let now = clock.now();
    let mut t = lock(table);
    let held = t.per_peer.get(remote_id).copied().unwrap_or(0);
    if held >= limits.per_peer {
        stats.refused_per_peer.fetch_add(1, Relaxed);
        return Err(Refusal::TooManyFromPeer(held));
    }
    if t.total >= limits.capacity {
        let idlest = t
            .held
            .iter()
            .map(|(id, s)| (*id, s.served.load(Relaxed), s.last_active.load(Relaxed)))
            .filter(|(_, _, at)| now.saturating_sub(*at) >= limits.evict_idle_after_ms)
            .min_by_key(|(_, served, at)| (*served, *at));
        let Some((victim, _, _)) = idlest else {
            stats.refused_over_capacity.fetch_add(1, Relaxed);
            return Err(Refusal::OverCapacity(limits.capacity));
        };
        let state = t.held[&victim].clone();
        t.release(victim);
        state.evicted.store(true, Relaxed);
        state.evict.notify_one();
        stats.evicted_idle.fetch_add(1, Relaxed);
    }
    let id = t.next_id;
    t.next_id += 1;
    let state = Arc::new(SlotState {
        remote_id: remote_id.to_owned(),
        last_active: AtomicU64::new(now),
        served: AtomicBool::new(false),
        evicted: AtomicBool::new(false),
        evict: Notify::new(),
    });
    t.held.insert(id, state.clone());
    t.total += 1;
    *t.per_peer.entry(remote_id.to_owned()).or_default() += 1;
    stats.slots.store(t.total as u64, Relaxed);
    stats.slots_max.fetch_max(t.total as u64, Relaxed);
    stats.viewers_total.fetch_add(1, Relaxed);
    Ok(ViewerSlot {
        table: table.clone(),
        stats: stats.clone(),
        id,
        state,
        clock,
    })
}

/// One WebRTC slot: a viewer connection's place under the seed's capacity
/// and under its peer id's limit, from admission until the connection's
/// task ends or the slot is evicted. Released on drop.
pub struct ViewerSlot {
    table: Arc<Mutex<SlotTable>>,
    stats: Arc<SeedStats>,
    id: u64,
    state: Arc<SlotState>,
    clock: Clock,
}

impl ViewerSlot {
    /// The signaling peer id holding this slot.
    pub fn remote_id(&self) -> &str {
        &self.state.remote_id
    }

    /// A handle that marks the slot active; the sending task holds one.
    pub fn activity(&self) -> SlotActivity {
        SlotActivity {
            state: self.state.clone(),
            clock: self.clock,
        }
    }

    /// Resolves once the slot was given to another viewer.
    pub async fn evicted(&self) {
        loop {
            let notified = self.state.evict.notified();
            if self.state.evicted.load(Relaxed) {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        if t.release(self.id) {
            self.stats.slots.store(t.total as u64, Relaxed);
        }
    }
}

/// Marks a slot active (something was sent on its connection).
#[derive(Clone)]
pub struct SlotActivity {
    state: Arc<SlotState>,
    clock: Clock,
}

impl SlotActivity {
    pub fn touch(&self) {
        self.state.last_active.store(self.clock.now(), Relaxed);
        self.state.served.store(true, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn limits(capacity: u32) -> Limits {
        Limits {
            capacity,
            per_peer: 2,
            evict_idle_after_ms: 10_000,
        }
    }

    #[test]
    fn a_peer_gets_at_most_its_share_and_the_total_is_capped() {
        let table = Arc::default();
        let stats = Arc::new(SeedStats::default());
        let clock = Clock(Instant::now());
        let limits = limits(3);
        let a1 = admit(&table, limits, &stats, clock, "a").unwrap();
        let a2 = admit(&table, limits, &stats, clock, "a").unwrap();
        assert_eq!(
            admit(&table, limits, &stats, clock, "a").err(),
            Some(Refusal::TooManyFromPeer(2))
        );
        let b1 = admit(&table, limits, &stats, clock, "b").unwrap();
        assert_eq!(
            admit(&table, limits, &stats, clock, "c").err(),
            Some(Refusal::OverCapacity(3))
        );
        assert_eq!(stats.slots.load(Relaxed), 3);
        drop(a1);
        let a3 = admit(&table, limits, &stats, clock, "a").unwrap();
        drop((a2, a3, b1));
        assert_eq!(stats.slots.load(Relaxed), 0);
        assert_eq!(stats.slots_max.load(Relaxed), 3);
        assert_eq!(stats.refused_per_peer.load(Relaxed), 1);
        assert_eq!(stats.refused_over_capacity.load(Relaxed), 1);
        assert_eq!(stats.evicted_idle.load(Relaxed), 0);
        let t = lock(&table);
        assert!(t.per_peer.is_empty() && t.held.is_empty());
    }

    #[tokio::test]
    async fn at_capacity_the_longest_idle_slot_goes_to_the_newcomer() {
        let table = Arc::default();
        let stats = Arc::new(SeedStats::default());
        // A clock 20 s in the past: every slot admitted "now" at 20 000 ms.
        let clock = Clock(Instant::now() - Duration::from_secs(20));
        let limits = limits(2);
        let busy = admit(&table, limits, &stats, clock, "busy").unwrap();
        let idle = admit(&table, limits, &stats, clock, "idle").unwrap();
        // Both were active less than 10 s ago: the newcomer is refused.
        assert_eq!(
            admit(&table, limits, &stats, clock, "new").err(),
            Some(Refusal::OverCapacity(2))
        );
        // Both look 15 s idle, then "busy" is served again.
        for s in lock(&table).held.values() {
            s.last_active.store(5_000, Relaxed);
        }
        busy.activity().touch();
        let newcomer = admit(&table, limits, &stats, clock, "new").unwrap();
        tokio::time::timeout(Duration::from_secs(1), idle.evicted())
            .await
            .expect("the idle slot is told it was evicted");
        assert_eq!(stats.evicted_idle.load(Relaxed), 1);
        assert_eq!(stats.slots.load(Relaxed), 2);
        // The evicted slot's drop gives nothing back twice.
        drop(idle);
        assert_eq!(lock(&table).total, 2);
        assert_eq!(
            admit(&table, limits, &stats, clock, "late").err(),
            Some(Refusal::OverCapacity(2))
        );
        drop((busy, newcomer));

        // Among idle slots, one never served goes before one served long ago.
        let old = admit(&table, limits, &stats, clock, "old").unwrap();
        let fresh = admit(&table, limits, &stats, clock, "fresh").unwrap();
        old.activity().touch();
        for s in lock(&table).held.values() {
            s.last_active.store(1_000, Relaxed);
        }
        lock(&table).held[&fresh.id]
            .last_active
            .store(5_000, Relaxed);
        let again = admit(&table, limits, &stats, clock, "again").unwrap();
        tokio::time::timeout(Duration::from_secs(1), fresh.evicted())
            .await
            .expect("the never-served slot is evicted first");
        drop((old, fresh, again));
        let t = lock(&table);
        assert_eq!(t.total, 0);
        assert!(t.per_peer.is_empty() && t.held.is_empty());
    }
}
