//! Live channels: segments that appear as an encoder produces them.
//!
//! A live channel has no list of segments up front. Its seed cuts the
//! encoder's stream into numbered CMAF segments (`seq` 0, 1, 2, ...) and
//! signs each one's description, a [`LiveMeta`] (sequence, media start,
//! duration, capture wall-clock time, size and SHA-256), with the channel's
//! Ed25519 key. Viewers get the public key when they join, check the
//! signature of every description before they believe it, and check every
//! segment's bytes against a believed description before they play or share
//! it. The [`LiveManifest`] (`live.json` on the seed's origin) names the
//! channel, the codecs, the signed init segment and the newest descriptions,
//! so a viewer can start from HTTP alone.
//!
//! The exchange (see [`engine`]): the seed *pushes* each new segment to a
//! few viewers and announces it to the others; a viewer that verified a
//! segment announces it (`LiveMeta`) to its peers, which *want* it whole
//! from one holder. HTTP is the fallback for a segment about to be late.
//!
//! Signatures are checked by the driver (WebCrypto in the browser,
//! ed25519-dalek natively, see [`sign`] behind the `ed25519` feature): the
//! engine asks with [`crate::Output::CheckSignature`] and is answered with
//! [`crate::Input::SignatureChecked`].

#[cfg(feature = "live-engine")]
pub mod engine;
#[cfg(feature = "ed25519")]
pub mod sign;
#[cfg(feature = "ed25519")]
pub mod sim;

#[cfg(feature = "live-engine")]
pub use engine::{LiveConfig, LiveEngine};

use crate::manifest::{
    valid_content_id, valid_hash, valid_uri, SegmentEntry, MAX_PIECE_BYTES, MIN_PIECE_BYTES,
};
use serde::{Deserialize, Serialize};

pub const LIVE_MANIFEST_VERSION: u32 = 1;
/// A live segment larger than this is refused (8 MiB: 1 s of 64 Mbit/s).
pub const MAX_LIVE_SEGMENT_BYTES: u32 = 8 << 20;
/// A live segment longer than this is refused.
pub const MAX_LIVE_SEGMENT_MS: u32 = 30_000;
/// Descriptions a live manifest may carry.
pub const MAX_RECENT: usize = 16;
/// The segment count a live peer says in its `Hello` (live has no count).
pub const LIVE_SEGMENT_COUNT: u32 = u32::MAX;
/// Longest interruption reason a live manifest may carry.
pub const MAX_REASON_LEN: usize = 1000;
/// Encoded length of a [`LiveMeta`] on the wire.
pub const META_WIRE_LEN: usize = 4 + 8 + 4 + 8 + 4 + 32 + 64;

/// The signed description of one live segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveMeta {
    pub seq: u32,
    /// Media time of its first sample (the timeline the MSE buffer uses).
    pub start_ms: u64,
    pub duration_ms: u32,
    /// Wall-clock time (Unix ms) its first frame was captured: live latency
    /// is measured against it.
    pub capture_ms: u64,
    pub size: u32,
    #[serde(with = "hex_bytes")]
    pub sha256: [u8; 32],
    /// Ed25519 signature of [`LiveMeta::signed_bytes`].
    #[serde(with = "hex_bytes")]
    pub sig: [u8; 64],
}

impl LiveMeta {
    /// What the channel key signs: a domain tag, the channel name and every
    /// field but the signature, so a description is valid for one channel
    /// and one sequence number only.
    pub fn signed_bytes(&self, channel: &str) -> Vec<u8> {
        let mut b = Vec::with_capacity(32 + channel.len() + META_WIRE_LEN);
        b.extend_from_slice(b"shoal-live-segment-v1\0");
        b.push(channel.len() as u8);
        b.extend_from_slice(channel.as_bytes());
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.extend_from_slice(&self.start_ms.to_be_bytes());
        b.extend_from_slice(&self.duration_ms.to_be_bytes());
        b.extend_from_slice(&self.capture_ms.to_be_bytes());
        b.extend_from_slice(&self.size.to_be_bytes());
        b.extend_from_slice(&self.sha256);
        b
    }

    /// Bounds every description must be within (before its signature is
    /// even checked); the error names the broken bound.
    pub fn check_shape(&self) -> Result<(), String> {
        if self.size == 0 || self.size > MAX_LIVE_SEGMENT_BYTES {
            return Err(format!(
                "live segment {} of {} bytes (1..={MAX_LIVE_SEGMENT_BYTES} allowed)",
                self.seq, self.size
            ));
        }
        if self.duration_ms == 0 || self.duration_ms > MAX_LIVE_SEGMENT_MS {
            return Err(format!(
                "live segment {} of {} ms (1..={MAX_LIVE_SEGMENT_MS} allowed)",
                self.seq, self.duration_ms
            ));
        }
        Ok(())
    }

    pub fn end_ms(&self) -> u64 {
        self.start_ms + self.duration_ms as u64
    }

    pub fn piece_count(&self, piece_size: u32) -> u32 {
        self.size.div_ceil(piece_size)
    }

    /// Length of piece `i` (the last may be short).
    pub fn piece_len(&self, piece_size: u32, i: u32) -> usize {
        let start = i as u64 * piece_size as u64;
        (self.size as u64)
            .saturating_sub(start)
            .min(piece_size as u64) as usize
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.start_ms.to_be_bytes());
        out.extend_from_slice(&self.duration_ms.to_be_bytes());
        out.extend_from_slice(&self.capture_ms.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.sha256);
        out.extend_from_slice(&self.sig);
    }

    /// Decodes exactly [`META_WIRE_LEN`] bytes.
    pub fn decode(b: &[u8]) -> Option<LiveMeta> {
        if b.len() != META_WIRE_LEN {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(LiveMeta {
            seq: u32_at(0),
            start_ms: u64_at(4),
            duration_ms: u32_at(12),
            capture_ms: u64_at(16),
            size: u32_at(24),
            sha256: b[28..60].try_into().expect("32 bytes"),
            sig: b[60..124].try_into().expect("64 bytes"),
        })
    }
}

/// What the channel key signs for the init segment (its SHA-256).
pub fn init_signed_bytes(channel: &str, sha256_hex: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(32 + channel.len() + 64);
    b.extend_from_slice(b"shoal-live-init-v1\0");
    b.push(channel.len() as u8);
    b.extend_from_slice(channel.as_bytes());
    b.extend_from_slice(sha256_hex.as_bytes());
    b
}

/// The URI of segment `seq`, relative to the live manifest.
pub fn segment_uri(seq: u32) -> String {
    format!("seg-{seq}.m4s")
}

/// `live.json`: what a viewer fetches before joining a live channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveManifest {
    pub version: u32,
    /// The channel name: the swarm name on the signal server.
    pub channel: String,
    pub title: String,
    /// MIME type with codecs, for `MediaSource.addSourceBuffer`.
    pub mime: String,
    pub piece_size: u32,
    /// Target segment duration.
    pub segment_ms: u32,
    /// The live HLS playlist, relative to this manifest.
    pub playlist: String,
    pub init: SegmentEntry,
    /// Ed25519 signature (hex) of [`init_signed_bytes`].
    #[serde(with = "hex_bytes")]
    pub init_sig: [u8; 64],
    /// The channel's public key (hex), as the seed registered it.
    #[serde(with = "hex_bytes")]
    pub public_key: [u8; 32],
    /// The newest segment descriptions, oldest first.
    pub recent: Vec<LiveMeta>,
    /// Set while the channel's source is down: why (the encoder's or
    /// ffmpeg's words). Viewers show it instead of a silent stall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiveManifestError {
    #[error("live manifest is not valid JSON for version {LIVE_MANIFEST_VERSION}: {0}")]
    Json(String),
    #[error("live manifest version {0} is not supported (this build reads version {LIVE_MANIFEST_VERSION}); upgrade the player")]
    Version(u32),
    #[error("channel name {0:?} must be 1-64 characters of [A-Za-z0-9_-]")]
    BadChannel(String),
    #[error("piece size {0} is outside {MIN_PIECE_BYTES}..={MAX_PIECE_BYTES}")]
    BadPieceSize(u32),
    #[error("segment duration {0} ms is outside 1..={MAX_LIVE_SEGMENT_MS}")]
    BadSegmentMs(u32),
    #[error("init segment: {0}")]
    BadInit(String),
    #[error("{0} recent descriptions, more than {MAX_RECENT}")]
    TooManyRecent(usize),
    #[error("recent description: {0}")]
    BadRecent(String),
    #[error("interruption reason over {MAX_REASON_LEN} bytes")]
    BadInterrupted,
}

impl LiveManifest {
    pub fn from_json(text: &str) -> Result<LiveManifest, LiveManifestError> {
        let m: LiveManifest =
            serde_json::from_str(text).map_err(|e| LiveManifestError::Json(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("live manifest serializes")
    }

    /// Checks every bound; signatures are the engine's to check.
    pub fn check(&self) -> Result<(), LiveManifestError> {
        if self.version != LIVE_MANIFEST_VERSION {
            return Err(LiveManifestError::Version(self.version));
        }
        if !valid_content_id(&self.channel) {
            return Err(LiveManifestError::BadChannel(self.channel.clone()));
        }
        if !(MIN_PIECE_BYTES..=MAX_PIECE_BYTES).contains(&self.piece_size) {
            return Err(LiveManifestError::BadPieceSize(self.piece_size));
        }
        if self.segment_ms == 0 || self.segment_ms > MAX_LIVE_SEGMENT_MS {
            return Err(LiveManifestError::BadSegmentMs(self.segment_ms));
        }
        let i = &self.init;
        if i.size == 0 || i.size > MAX_LIVE_SEGMENT_BYTES as u64 {
            return Err(LiveManifestError::BadInit(format!("{} bytes", i.size)));
        }
        if !valid_hash(&i.sha256) {
            return Err(LiveManifestError::BadInit(
                "sha256 is not 64 lower-case hex digits".into(),
            ));
        }
        if !valid_uri(&i.uri) || !valid_uri(&self.playlist) {
            return Err(LiveManifestError::BadInit(
                "init and playlist must be relative paths without '..'".into(),
            ));
        }
        if self.recent.len() > MAX_RECENT {
            return Err(LiveManifestError::TooManyRecent(self.recent.len()));
        }
        for m in &self.recent {
            m.check_shape().map_err(LiveManifestError::BadRecent)?;
        }
        if self
            .interrupted
            .as_ref()
            .is_some_and(|r| r.len() > MAX_REASON_LEN)
        {
            return Err(LiveManifestError::BadInterrupted);
        }
        Ok(())
    }
}

/// Fixed-size byte arrays as lower-case hex in JSON.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(b: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(s.as_bytes(), &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn meta(seq: u32) -> LiveMeta {
        LiveMeta {
            seq,
            start_ms: 1000 * seq as u64,
            duration_ms: 1000,
            capture_ms: 1_700_000_000_000 + 1000 * seq as u64,
            size: 40_000,
            sha256: [seq as u8; 32],
            sig: [7; 64],
        }
    }

    #[test]
    fn meta_round_trips_on_the_wire_and_in_json() {
        let m = meta(5);
        let mut b = Vec::new();
        m.encode_into(&mut b);
        assert_eq!(b.len(), META_WIRE_LEN);
        assert_eq!(LiveMeta::decode(&b), Some(m));
        assert_eq!(LiveMeta::decode(&b[1..]), None);
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<LiveMeta>(&j).unwrap(), m);
    }

    #[test]
    fn signed_bytes_bind_channel_and_every_field() {
        let m = meta(5);
        let base = m.signed_bytes("a");
        assert_ne!(base, m.signed_bytes("b"));
        for f in [
            LiveMeta { seq: 6, ..m },
            LiveMeta { start_ms: 1, ..m },
            LiveMeta {
                duration_ms: 1,
                ..m
            },
            LiveMeta { capture_ms: 1, ..m },
            LiveMeta { size: 1, ..m },
            LiveMeta {
                sha256: [0; 32],
                ..m
            },
        ] {
            assert_ne!(f.signed_bytes("a"), base, "{f:?}");
        }
        assert_eq!(LiveMeta { sig: [0; 64], ..m }.signed_bytes("a"), base);
    }

    #[test]
    fn pieces_cover_a_live_segment() {
        let m = LiveMeta {
            size: 5000,
            ..meta(1)
        };
        assert_eq!(m.piece_count(1024), 5);
        assert_eq!(m.piece_len(1024, 4), 904);
        assert_eq!(m.piece_len(1024, 5), 0);
        assert!(LiveMeta { size: 0, ..m }.check_shape().is_err());
        assert!(LiveMeta {
            duration_ms: 0,
            ..m
        }
        .check_shape()
        .is_err());
    }
}
