//! What goes into and comes out of the engine.

use super::PeerKey;
use crate::ids::SegmentId;
use crate::signal::PeerReport;
use std::sync::Arc;

/// Something the engine fetches over HTTP from the seed's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// The init segment (codec setup), needed before any media segment.
    Init,
    Segment(SegmentId),
}

/// What the `<video>` element (or a simulated player) reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    /// Playback is progressing (the first one ends startup).
    Playing,
    /// Playback stopped for want of data (a stall once started).
    Waiting,
    /// Playback reached the end.
    Ended,
}

pub enum Input<'a> {
    /// A data channel to a peer opened. `remote_id` is its signaling id
    /// (what the ban list holds).
    PeerConnected {
        peer: PeerKey,
        remote_id: &'a str,
        is_seed: bool,
    },
    /// One binary message from a peer.
    PeerData {
        peer: PeerKey,
        data: &'a [u8],
    },
    /// A frame the driver could not even hand over as bytes (a text message,
    /// a message over the size limit): a protocol error of that peer.
    PeerBadFrame {
        peer: PeerKey,
        what: &'a str,
    },
    /// Bytes queued toward this peer and not yet sent (the data channel's
    /// `bufferedAmount`, the seed's send queue). Drives back-pressure.
    PeerBuffered {
        peer: PeerKey,
        bytes: u64,
    },
    /// The connection's selected candidate pair goes through a TURN relay
    /// (`relayed`) or not; it may change while connected (ICE moves to a
    /// better pair). While relayed, what this peer sends is counted in
    /// `Stats::bytes_from_relay`, not as P2P (the operator pays for it).
    PeerRoute {
        peer: PeerKey,
        relayed: bool,
    },
    /// The connection closed (or the driver dropped it).
    PeerClosed {
        peer: PeerKey,
    },
    /// An HTTP fetch asked by [`Output::HttpFetch`] completed.
    HttpDone {
        res: Resource,
        data: Vec<u8>,
    },
    HttpFailed {
        res: Resource,
    },
    /// Seed mode: a segment read from disk, asked by [`Output::Load`].
    Loaded {
        seg: SegmentId,
        data: Vec<u8>,
    },
    LoadFailed {
        seg: SegmentId,
    },
    /// Where playback is (sent a few times a second, and after a seek).
    Playhead {
        position_ms: u64,
    },
    /// Playback jumped: media before `position_ms` need not be re-fetched,
    /// and appends restart from the segment at `position_ms`.
    Seek {
        position_ms: u64,
    },
    Media(MediaEvent),
    /// The signal server answered a join: its peer list holds `viewers`
    /// viewers (seeds not counted) that the driver is connecting to. Until
    /// they connected (or `Config::viewer_wait_ms` passed) the engine leaves
    /// the origin alone for what they may hold, and at startup it takes the
    /// first segment from them.
    Joined {
        viewers: usize,
    },
    /// Live: the answer to [`Output::CheckSignature`] `id`.
    SignatureChecked {
        id: u64,
        ok: bool,
    },
    /// Live: the `recent` descriptions of a fresh `live.json`, the answer to
    /// [`Output::RefreshLiveManifest`] (nothing, or an empty list, when the
    /// fetch failed).
    LiveRecent {
        metas: &'a [crate::live::LiveMeta],
    },
    /// Live: the wall clock (Unix ms), corrected by the offset learned from
    /// the signal server; sent with every playhead report. Live latency is
    /// measured against it.
    Clock {
        unix_ms: u64,
    },
    Timeout,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send {
        peer: PeerKey,
        data: Vec<u8>,
    },
    /// Fetch this resource (its `uri` in the manifest) over HTTP.
    HttpFetch {
        res: Resource,
    },
    /// Seed mode: read this segment from disk and answer with
    /// [`Input::Loaded`] or [`Input::LoadFailed`].
    Load {
        seg: SegmentId,
    },
    /// The verified init segment: append it to the media buffer first.
    AppendInit {
        data: Arc<[u8]>,
    },
    /// A verified segment, in playback order, for the media buffer.
    Append {
        seg: SegmentId,
        data: Arc<[u8]>,
    },
    /// Remove this time range from the media buffer (it is outside the
    /// window the player keeps).
    RemoveMedia {
        start_ms: u64,
        end_ms: u64,
    },
    /// The last segment is in the media buffer: signal end of stream.
    EndOfStream,
    /// Close this peer and do not match with it again: it misbehaved.
    DropPeer {
        peer: PeerKey,
        reason: String,
    },
    /// Close this peer without blame (it said bye, went idle, or is over the
    /// peer limit).
    ClosePeer {
        peer: PeerKey,
        reason: String,
    },
    /// Live: check that `signature` is the channel key's Ed25519 signature
    /// of `message`; answer with [`Input::SignatureChecked`].
    CheckSignature {
        id: u64,
        message: Vec<u8>,
        signature: [u8; 64],
    },
    /// Live: no peer announced a new segment for longer than a segment
    /// lasts; fetch `live.json` again and pass its descriptions with
    /// [`Input::LiveRecent`].
    RefreshLiveManifest,
    /// Live: move the playhead to this media time (joining near the live
    /// edge, or jumping over a gap).
    SeekTo {
        position_ms: u64,
    },
    /// Live: set the playback rate, in thousandths (1000 is normal speed;
    /// above it to catch up with the live edge).
    PlaybackRate {
        permille: u32,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes received from other viewers (the P2P part).
    pub bytes_from_peers: u64,
    /// Bytes received from seed peers over WebRTC.
    pub bytes_from_seed: u64,
    /// Bytes received over HTTP, the init segment included.
    pub bytes_from_http: u64,
    /// Bytes received from other viewers through a TURN relay (not in
    /// `bytes_from_peers`).
    pub bytes_from_relay: u64,
    pub bytes_uploaded: u64,
    pub segments_verified: u64,
    pub segments_appended: u64,
    pub verify_failures: u64,
    pub peers_dropped: u64,
    pub requests_rejected: u64,
    /// Pieces that arrived without a request of ours and were discarded.
    pub unsolicited_pieces: u64,
    pub peers: u32,
    /// From the engine's first input to the first `Playing`.
    pub startup_ms: Option<u64>,
    pub stalls: u32,
    /// Time spent stalled, including a stall still going on.
    pub stalled_ms: u64,
    /// Live: wall clock minus the capture time of the frame at the
    /// playhead, when known.
    pub latency_ms: Option<u64>,
    /// Live: signatures (segment descriptions and the init segment) that
    /// checked out.
    pub signatures_verified: u64,
}

impl Stats {
    /// The figures a viewer reports to the signal server.
    pub fn report(&self) -> PeerReport {
        PeerReport {
            bytes_from_peers: self.bytes_from_peers,
            bytes_from_http: self.bytes_from_http + self.bytes_from_seed,
            bytes_uploaded: self.bytes_uploaded,
            bytes_from_relay: self.bytes_from_relay,
            peers: self.peers,
            startup_ms: self.startup_ms,
            stalls: self.stalls,
            stalled_ms: self.stalled_ms,
            latency_ms: self.latency_ms,
        }
    }
}

/// Sizes of the engine's tables, each bounded by [`super::Config`]; for
/// tests, benchmarks and the stats overlay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tables {
    pub peers: usize,
    pub partial_segments: usize,
    pub stored_segments: usize,
    pub stored_bytes: usize,
    /// Reject back-off entries, summed over peers.
    pub rejects: usize,
    pub banned: usize,
    pub pending_loads: usize,
    pub suspects: usize,
}
