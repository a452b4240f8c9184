//! The playback side: appends in order (init segment first), end of stream,
//! and the windows that bound memory.
//!
//! A viewer keeps verified segments from `store_behind_ms` behind the
//! playhead to `store_ahead_ms` ahead of it (and at most `store_max_bytes`);
//! what leaves the window is forgotten and peers get a fresh bitfield. The
//! media buffer keeps `media_behind_ms` behind the playhead; older media,
//! and media far ahead after a seek back, is removed.

use super::*;

impl Engine {
    pub(super) fn flush_appends(&mut self) {
        if !self.init_appended {
            let Some(init) = self.init.clone() else {
                return;
            };
            self.out.push_back(Output::AppendInit { data: init });
            self.init_appended = true;
        }
        let n = self.manifest.segment_count();
        while self.next_append < n {
            let seg = SegmentId(self.next_append);
            let Some(data) = self.store.get(seg) else {
                break;
            };
            self.out.push_back(Output::Append { seg, data });
            self.in_media.insert(seg);
            self.stats.segments_appended += 1;
            self.next_append += 1;
            if self.next_append == n {
                self.out.push_back(Output::EndOfStream);
            }
        }
    }

    fn segment_end_ms(&self, seg: SegmentId) -> u64 {
        self.timeline.start_ms(seg) + self.manifest.entry(seg).duration_ms as u64
    }

    /// Whether a segment lies inside [lo, hi) of media time.
    fn overlaps(&self, seg: SegmentId, lo: u64, hi: u64) -> bool {
        self.segment_end_ms(seg) > lo && self.timeline.start_ms(seg) < hi
    }

    pub(super) fn keep_windows(&mut self) {
        let pos = self.position_ms;
        let lo = pos.saturating_sub(self.cfg.store_behind_ms);
        let hi = pos + self.cfg.store_ahead_ms.max(self.cfg.lookahead_ms);
        let next = SegmentId(self.next_append);
        // Segments not yet appended are kept: playback needs them next.
        let mut gone: Vec<SegmentId> = {
            let timeline = &self.timeline;
            let manifest = &self.manifest;
            self.store.retain(|s| {
                let end = timeline.start_ms(s) + manifest.entry(s).duration_ms as u64;
                (end > lo && timeline.start_ms(s) < hi) || s == next
            })
        };
        gone.extend(self.store.shrink_to(self.cfg.store_max_bytes));
        for s in gone {
            self.have.clear(s.get());
            self.have_shrunk = true;
        }
        if self.have_shrunk {
            self.have_shrunk = false;
            let bf = self.have.clone();
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in keys {
                self.send(k, &Message::Bitfield(bf.clone()));
            }
        }
        self.trim_media();
    }

    fn trim_media(&mut self) {
        let pos = self.position_ms;
        let lo = pos.saturating_sub(self.cfg.media_behind_ms);
        let hi = pos + self.cfg.store_ahead_ms.max(self.cfg.lookahead_ms);
        let out: Vec<SegmentId> = self
            .in_media
            .iter()
            .copied()
            .filter(|&s| !self.overlaps(s, lo, hi))
            .collect();
        // One removal per run of consecutive segments.
        let mut run: Option<(SegmentId, SegmentId)> = None;
        for s in out {
            self.in_media.remove(&s);
            run = match run {
                Some((a, b)) if b.get() + 1 == s.get() => Some((a, s)),
                Some((a, b)) => {
                    self.push_remove(a, b);
                    Some((s, s))
                }
                None => Some((s, s)),
            };
        }
        if let Some((a, b)) = run {
            self.push_remove(a, b);
        }
    }

    fn push_remove(&mut self, first: SegmentId, last: SegmentId) {
        let (start_ms, end_ms) = (self.timeline.start_ms(first), self.segment_end_ms(last));
        self.out.push_back(Output::RemoveMedia { start_ms, end_ms });
    }
}
