//! The event queue: events ordered by (time, insertion number), as a
//! `BinaryHeap` of all of them would order them, but cheaper at scale.
//!
//! Events within `RING` ms of the head go into a ring of one small heap per
//! millisecond; later ones wait in one heap (`far`) and move into the ring
//! as the head reaches them. A pop touches only the current millisecond's
//! heap (a few hundred events at 10,000 viewers) instead of a heap of every
//! pending event, and the order is exactly (time, insertion number).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Microseconds per bucket.
const SLOT_US: u64 = 1000;
/// Buckets in the ring (a power of two): 16.4 s ahead.
const RING: u64 = 1 << 14;

struct Entry<E> {
    t: u64,
    n: u64,
    ev: E,
}
impl<E> PartialEq for Entry<E> {
    fn eq(&self, o: &Self) -> bool {
        (self.t, self.n) == (o.t, o.n)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<E> Ord for Entry<E> {
    /// Reversed: `BinaryHeap` pops the greatest, we want the earliest.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.t, o.n).cmp(&(self.t, self.n))
    }
}

pub struct EventQueue<E> {
    ring: Vec<BinaryHeap<Entry<E>>>,
    /// The bucket at the head: the ring holds buckets `cur..cur + RING`.
    cur: u64,
    in_ring: usize,
    far: BinaryHeap<Entry<E>>,
    next_n: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            ring: (0..RING).map(|_| BinaryHeap::new()).collect(),
            cur: 0,
            in_ring: 0,
            far: BinaryHeap::new(),
            next_n: 0,
        }
    }
}

impl<E> EventQueue<E> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.in_ring + self.far.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `ev` at `t` (µs); events at the same `t` come out in the order
    /// they were pushed.
    pub fn push(&mut self, t: u64, ev: E) {
        self.next_n += 1;
        let e = Entry {
            t,
            n: self.next_n,
            ev,
        };
        // An event before the head (never, in the simulator) goes into the
        // head's bucket, whose heap still puts it first.
        let b = (t / SLOT_US).max(self.cur);
        if b < self.cur + RING {
            self.ring[(b % RING) as usize].push(e);
            self.in_ring += 1;
        } else {
            self.far.push(e);
        }
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        loop {
            if self.in_ring == 0 {
                let first = self.far.peek()?.t / SLOT_US;
                self.cur = self.cur.max(first);
                self.refill();
            }
            if let Some(e) = self.ring[(self.cur % RING) as usize].pop() {
                self.in_ring -= 1;
                return Some((e.t, e.ev));
            }
            self.cur += 1;
            self.refill();
        }
    }

    /// Moves the far events now within the ring into it.
    fn refill(&mut self) {
        while let Some(e) = self.far.peek() {
            let b = e.t / SLOT_US;
            if b >= self.cur + RING {
                break;
            }
            let e = self.far.pop().expect("peeked");
            self.ring[(b.max(self.cur) % RING) as usize].push(e);
            self.in_ring += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// The same order as one `BinaryHeap` of (time, insertion number), with
    /// pushes interleaved with pops, near and far (beyond the ring) events.
    #[test]
    fn pops_in_the_order_of_one_heap() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut q = EventQueue::new();
        let mut reference = BinaryHeap::new();
        let mut n = 0u64;
        let mut now = 0u64;
        let mut popped = 0;
        for _ in 0..200_000 {
            if rng.gen_bool(0.55) {
                let ahead = match rng.gen_range(0..10) {
                    0 => rng.gen_range(0..60_000_000),
                    1 => 0,
                    _ => rng.gen_range(0..50_000),
                };
                let t = now + ahead;
                n += 1;
                q.push(t, n);
                reference.push(Entry { t, n, ev: n });
            } else {
                let want = reference.pop().map(|e| (e.t, e.ev));
                let got = q.pop();
                assert_eq!(got, want);
                if let Some((t, _)) = got {
                    assert!(t >= now, "time went back");
                    now = t;
                    popped += 1;
                }
            }
            assert_eq!(q.len(), reference.len());
        }
        while let Some(e) = reference.pop() {
            assert_eq!(q.pop(), Some((e.t, e.ev)));
        }
        assert_eq!(q.pop(), None);
        assert!(popped > 50_000);
    }
}
