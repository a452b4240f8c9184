//! What to fetch, from whom.
//!
//! # Design note
//!
//! Each segment has a *deadline*: its start time minus the playhead. Three
//! sources, cheapest first:
//!
//! 1. **Viewers** (peers not marked as seeds) serve anything they hold, for
//!    every segment within `lookahead_ms` of the playhead. Missing pieces
//!    of the earliest-deadline segment go first, each to the least-loaded
//!    viewer that holds the segment, at most `max_inflight_per_peer`
//!    requests per viewer. A segment therefore comes from several viewers
//!    at once, piece by piece.
//! 2. **Seed peers** (the native seed over WebRTC) are asked only for
//!    segments due within `urgent_ms` that no viewer holds: the swarm's
//!    first copy. A seed may refuse (a `Reject`) when enough of its viewers
//!    already hold the segment.
//! 3. **HTTP** (the seed's origin) fetches the init segment first, then a
//!    whole segment when it is due within `critical_ms` and not yet
//!    complete, when nothing else can serve it, at startup, and at once for
//!    a segment whose peer copy failed verification (the origin's copy
//!    settles who lied). Pending peer requests for it are cancelled.
//!
//! **Each segment leaves the origin about once.** A viewer that starts
//! fetching a segment from the origin (a seed peer or HTTP) tells its
//! viewers (`Fetching`); they leave the origin alone for that segment for
//! `fetching_grace_ms` and take it from that viewer once its `Have` comes
//! (a viewer that connects is told what is being fetched at that moment).
//! Viewers that decide at the same moment are sorted out by the seed: it
//! refuses a segment once to a viewer while it is sending it to another.
//! On joining, the driver says how many viewers the signal server listed
//! (`Input::Joined`): until those sent their bitfields (at most
//! `viewer_wait_ms`) the origin waits for what they may hold, so a
//! newcomer does not race its first viewer connection to the seed. At
//! startup the first segment comes from a viewer that holds it, within the
//! same bound (before `Joined`, at most `swarm_wait_ms`); a lone viewer
//! goes to HTTP at once. Waits are bounded and never apply, once playing,
//! to a segment due within `critical_ms`: a peer lying about what it holds
//! or fetches costs at most a bounded wait at startup, and its hints are
//! ignored once `max_broken_fetching` of them went unfulfilled.
//!
//! Invariants: a piece has at most one outstanding request, except in the
//! *endgame* (every missing piece of an urgent segment requested, one of
//! them outstanding for `endgame_after_ms`, and another peer holding the
//! segment has room), where that piece may have two; a resource is fetched
//! over HTTP at most once at a time.

use super::*;

impl Engine {
    /// Milliseconds until `seg` plays (0 if it is playing or past).
    fn due_in(&self, seg: SegmentId) -> u64 {
        self.timeline.start_ms(seg).saturating_sub(self.position_ms)
    }

    fn http_fetch(&mut self, res: Resource) {
        if self.http_inflight.contains(&res)
            || self.http_retry_at.get(&res).is_some_and(|&t| t > self.now)
        {
            return;
        }
        if let Resource::Segment(seg) = res {
            self.cancel_segment_requests(seg);
        }
        self.http_inflight.insert(res);
        self.http_retry_at.remove(&res);
        self.out.push_back(Output::HttpFetch { res });
        if let Resource::Segment(seg) = res {
            self.announce_fetching(seg);
        }
    }

    /// Tells the viewers that lack `seg` that we fetch it from the origin.
    fn announce_fetching(&mut self, seg: SegmentId) {
        let to: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, r)| !r.is_seed && r.hello && !r.have.get(seg.get()))
            .map(|(&k, _)| k)
            .collect();
        for k in to {
            self.send(k, &Message::Fetching { seg: seg.get() });
        }
    }

    /// Forgets `Fetching` hints past their grace (counted against the peer).
    pub(super) fn expire_fetching(&mut self) {
        let (now, grace) = (self.now, self.cfg.fetching_grace_ms);
        for (_, r) in self.peers.iter_mut() {
            r.expire_fetching(now, grace);
        }
    }

    /// Whether a viewer said it is fetching `seg` from the origin.
    fn viewer_fetching(&self, seg: SegmentId) -> bool {
        let (now, grace, allowance) = (
            self.now,
            self.cfg.fetching_grace_ms,
            self.cfg.max_broken_fetching,
        );
        self.peers
            .values()
            .any(|r| !r.is_seed && r.is_fetching(seg, now, grace, allowance))
    }

    /// Until when waits for viewers may last: `viewer_wait_ms` after the
    /// join was answered, or `swarm_wait_ms` after start before it is.
    fn viewer_wait_until(&self) -> Millis {
        match self.joined {
            Some((at, _)) => at + self.cfg.viewer_wait_ms,
            None => self.started_at.unwrap_or(self.now) + self.cfg.swarm_wait_ms,
        }
    }

    /// Whether viewers we were told about (or may yet be told about) have
    /// not all told us what they hold, within the wait's bound.
    fn awaiting_viewers(&self) -> bool {
        if self.now >= self.viewer_wait_until() {
            return false;
        }
        match self.joined {
            None => true,
            Some((_, listed)) => {
                let informed = self
                    .peers
                    .values()
                    .filter(|r| !r.is_seed && r.informed)
                    .count();
                informed < listed
            }
        }
    }

    pub(super) fn schedule(&mut self) {
        if self.init.is_none() {
            self.http_fetch(Resource::Init);
        }
        let first = self.timeline.segment_at(self.position_ms).get();
        // Until peers had a chance to connect, only what is critical goes to HTTP.
        let warm = self.now >= self.started_at.unwrap_or(self.now) + self.cfg.peer_wait_ms;
        let last = self
            .timeline
            .segment_at(self.position_ms + self.cfg.lookahead_ms)
            .get();
        let (now, backoff) = (self.now, self.cfg.reject_backoff_ms);
        let awaiting = self.awaiting_viewers();
        // Startup: no segment appended yet (the first one may come from a
        // viewer rather than HTTP).
        let startup = self.stats.segments_appended == 0;
        for raw in first..=last {
            let seg = SegmentId(raw);
            if self.have.get(raw) || self.http_inflight.contains(&Resource::Segment(seg)) {
                continue;
            }
            if self.origin_only.contains(&seg) {
                self.http_fetch(Resource::Segment(seg));
                continue;
            }
            let due = self.due_in(seg);
            let viewer_has = self
                .peers
                .values()
                .any(|r| !r.is_seed && r.can_serve(seg, now, backoff));
            let seed_has = self
                .peers
                .values()
                .any(|r| r.is_seed && r.can_serve(seg, now, backoff));
            let critical = due < self.cfg.critical_ms;
            let nearly_done = self.partial.get(&seg).is_some_and(Partial::nearly_done);
            // Leave the origin alone while viewers may soon serve it (bounded
            // waits; once playing, never for a critical segment).
            let hold = if critical {
                startup
                    && self.now < self.viewer_wait_until()
                    && (awaiting || viewer_has || self.viewer_fetching(seg))
            } else {
                awaiting || self.viewer_fetching(seg)
            };
            let nobody_has = !viewer_has && !seed_has && due < self.cfg.urgent_ms && warm;
            if !hold && (critical && !nearly_done || nobody_has) {
                self.http_fetch(Resource::Segment(seg));
                continue;
            }
            if viewer_has {
                self.request_pieces(seg, false, due < self.cfg.urgent_ms);
            } else if seed_has && due < self.cfg.urgent_ms && !hold {
                self.request_pieces(seg, true, true);
            }
        }
    }

    /// Requests missing pieces of `seg` from viewers (or seeds) holding it.
    fn request_pieces(&mut self, seg: SegmentId, from_seeds: bool, urgent: bool) {
        let max = self.cfg.max_inflight_per_peer;
        let (now, backoff) = (self.now, self.cfg.reject_backoff_ms);
        let mut candidates: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, r)| {
                r.is_seed == from_seeds && r.can_serve(seg, now, backoff) && r.inflight < max
            })
            .map(|(&k, _)| k)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let manifest = self.manifest.clone();
        let p = self
            .partial
            .entry(seg)
            .or_insert_with(|| Partial::new(&manifest, seg));
        let mut sends = Vec::new();
        for pass in 0..2 {
            // Pass 0: unrequested pieces. Pass 1 (endgame, urgent only): a
            // second request for pieces with one outstanding for a while.
            if pass == 1 && !urgent {
                break;
            }
            for piece in 0..p.pieces.len() {
                let asked: &[(PeerKey, Millis)] = match &p.pieces[piece] {
                    pieces::PieceState::Missing => &[],
                    pieces::PieceState::Asked(v) => v,
                    pieces::PieceState::Got(_) => continue,
                };
                if asked.len() != pass || pass == 1 && asked[0].1 + self.cfg.endgame_after_ms > now
                {
                    continue;
                }
                candidates.retain(|k| self.peers[k].inflight < max);
                let Some(&k) = candidates
                    .iter()
                    .filter(|k| !asked.iter().any(|(a, _)| a == *k))
                    .min_by_key(|k| self.peers[k].inflight)
                else {
                    break;
                };
                p.ask(piece, k, now);
                let r = self.peers.get_mut(&k).expect("candidate");
                r.inflight += 1;
                r.asked_total += 1;
                sends.push((k, piece as u32));
            }
        }
        let announce =
            from_seeds && !sends.is_empty() && !std::mem::replace(&mut p.announced, true);
        if announce {
            self.announce_fetching(seg);
        }
        for (k, piece) in sends {
            self.send(
                k,
                &Message::Request {
                    seg: seg.get(),
                    piece,
                },
            );
        }
    }
}
