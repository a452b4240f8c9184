//! Verified segments held in memory: a viewer's window around the playhead,
//! or a seed's disk cache. Bounded in bytes; the least recently used
//! segment goes first when the bound bites.

use super::maps::Map;
use crate::ids::SegmentId;
use std::sync::Arc;

#[derive(Debug, Default)]
pub(super) struct Store {
    segs: Map<SegmentId, (Arc<[u8]>, u64)>,
    bytes: usize,
    clock: u64,
}

impl Store {
    pub fn len(&self) -> usize {
        self.segs.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The segment, marked as just used.
    pub fn get(&mut self, seg: SegmentId) -> Option<Arc<[u8]>> {
        self.clock += 1;
        let clock = self.clock;
        self.segs.get_mut(&seg).map(|(d, used)| {
            *used = clock;
            d.clone()
        })
    }

    pub fn insert(&mut self, seg: SegmentId, data: Arc<[u8]>) {
        self.clock += 1;
        self.bytes += data.len();
        if let Some((old, _)) = self.segs.insert(seg, (data, self.clock)) {
            self.bytes -= old.len();
        }
    }

    pub fn remove(&mut self, seg: SegmentId) -> bool {
        match self.segs.remove(&seg) {
            Some((d, _)) => {
                self.bytes -= d.len();
                true
            }
            None => false,
        }
    }

    /// Removes every segment `keep` refuses; returns them.
    pub fn retain(&mut self, mut keep: impl FnMut(SegmentId) -> bool) -> Vec<SegmentId> {
        let gone: Vec<SegmentId> = self.segs.keys().copied().filter(|&s| !keep(s)).collect();
        for &s in &gone {
            self.remove(s);
        }
        gone
    }

    /// Removes least recently used segments until at most `max_bytes` are
    /// held; returns them.
    pub fn shrink_to(&mut self, max_bytes: usize) -> Vec<SegmentId> {
        let mut gone = Vec::new();
        while self.bytes > max_bytes {
            let Some((&oldest, _)) = self.segs.iter().min_by_key(|(_, (_, used))| *used) else {
                break;
            };
            self.remove(oldest);
            gone.push(oldest);
        }
        gone
    }
}
