//! Engine tunables. Every bound on what a stranger can make the engine hold
//! is here, with its default.

/// Scheduler timing, upload policy and table bounds of one [`super::Engine`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Segments due within this go to a seed peer when no viewer has them.
    pub urgent_ms: u64,
    /// Segments due within this come over HTTP if still incomplete.
    pub critical_ms: u64,
    /// How far ahead of the playhead to fetch from viewers.
    pub lookahead_ms: u64,
    /// Outstanding piece requests per remote peer.
    pub max_inflight_per_peer: usize,
    /// A request unanswered this long is given up and re-assigned.
    pub piece_timeout_ms: u64,
    /// In the endgame, a piece outstanding this long may be asked of a
    /// second peer.
    pub endgame_after_ms: u64,
    /// After a reject, do not ask that peer for that segment for this long.
    pub reject_backoff_ms: u64,
    /// Wait before retrying a failed HTTP fetch.
    pub http_retry_ms: u64,
    /// Seed mode: refuse a segment when this many connected viewers hold it.
    pub seed_enough_copies: usize,
    /// For this long after start, segments that are not yet critical are not
    /// fetched over HTTP, so that peers can connect first.
    pub peer_wait_ms: u64,
    /// At startup, how long to wait for the swarm's peer list
    /// ([`super::Input::Joined`]) before fetching the first segment from
    /// the origin: a viewer that has peers takes it from them.
    pub swarm_wait_ms: u64,
    /// After [`super::Input::Joined`] listed viewers, how long the origin
    /// (HTTP and seed peers) is left alone while they connect: for anything
    /// while fewer of them have sent their bitfield than were listed, and at
    /// startup for the first segment while a viewer is sending it. Once
    /// playing, a segment due within `critical_ms` never waits.
    pub viewer_wait_ms: u64,
    /// How long a viewer's [`crate::wire::Message::Fetching`] (it is
    /// fetching that segment from the origin) keeps us from fetching the
    /// same segment from the origin, unless it becomes critical.
    pub fetching_grace_ms: u64,
    /// `Fetching` hints a peer may leave unfulfilled (no `Have` within
    /// `fetching_grace_ms`) beyond those it fulfilled before its hints are
    /// ignored.
    pub max_broken_fetching: u32,

    /// Most peers connected at once; a connection beyond it is closed.
    pub max_peers: usize,
    /// Segments kept (for playback and for sharing) behind the playhead.
    pub store_behind_ms: u64,
    /// Segments kept ahead of the playhead (at least `lookahead_ms`).
    pub store_ahead_ms: u64,
    /// Upper bound on the bytes the segment store holds, whatever the window.
    /// A seed's disk cache uses the same bound.
    pub store_max_bytes: usize,
    /// Media kept in the browser's buffer behind the playhead; older media is
    /// removed (`Output::RemoveMedia`).
    pub media_behind_ms: u64,
    /// Bytes queued toward one peer above which its requests are rejected
    /// (back-pressure, from `Input::PeerBuffered`).
    pub max_buffered_bytes: u64,
    /// Seed mode: requests waiting for a disk read, per peer.
    pub max_pending_loads_per_peer: usize,
    /// Peer ids remembered as banned (oldest forgotten first).
    pub max_banned: usize,
    /// A peer silent this long is closed (not banned).
    pub idle_timeout_ms: u64,
    /// Requests a peer may leave unanswered (timeouts and rejects of
    /// segments it claimed) beyond the pieces it delivered before it is
    /// dropped as a peer that claims what it does not serve.
    pub max_unserved_claims: u32,
    /// Failed segments remembered to find the culprit once a good copy
    /// arrives (smart ban).
    pub max_suspects: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            urgent_ms: 4000,
            critical_ms: 1500,
            lookahead_ms: 20_000,
            max_inflight_per_peer: 16,
            piece_timeout_ms: 2000,
            endgame_after_ms: 400,
            reject_backoff_ms: 1000,
            http_retry_ms: 500,
            seed_enough_copies: 2,
            peer_wait_ms: 1000,
            swarm_wait_ms: 500,
            viewer_wait_ms: 1500,
            fetching_grace_ms: 2000,
            max_broken_fetching: 4,
            max_peers: 20,
            store_behind_ms: 30_000,
            store_ahead_ms: 40_000,
            store_max_bytes: 96 << 20,
            media_behind_ms: 30_000,
            max_buffered_bytes: 2 << 20,
            max_pending_loads_per_peer: 64,
            max_banned: 1024,
            idle_timeout_ms: 60_000,
            max_unserved_claims: 48,
            max_suspects: 8,
        }
    }
}
