//! The swarm manifest: what a viewer needs to fetch, verify and play one
//! video. The seed writes it next to the HLS playlist as `manifest.json`;
//! viewers fetch it over HTTP before they join the swarm.
//!
//! Invariants, checked by [`ManifestParts::validate`] (and so by
//! [`Manifest::from_json`]): at least one segment, every hash is 32 bytes of
//! hex, every size is at most [`MAX_SEGMENT_BYTES`], the piece size is within
//! [`MIN_PIECE_BYTES`]..=[`MAX_PIECE_BYTES`], and URIs are relative paths.

use crate::ids::{PieceIndex, SegmentId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MANIFEST_VERSION: u32 = 1;
/// A segment larger than this is refused (64 MiB: 1-2 s of even 4K video is far below).
pub const MAX_SEGMENT_BYTES: u64 = 64 << 20;
/// Default piece size: 16 KiB travels on every data-channel implementation.
pub const DEFAULT_PIECE_BYTES: u32 = 16 * 1024;
pub const MIN_PIECE_BYTES: u32 = 1024;
pub const MAX_PIECE_BYTES: u32 = 64 * 1024;
/// Upper bound on segments per manifest (about 55 hours of 2 s segments).
pub const MAX_SEGMENTS: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Path relative to the manifest's own URL.
    pub uri: String,
    pub size: u64,
    /// Lower-case hex SHA-256 of the segment's bytes.
    pub sha256: String,
    /// Duration in milliseconds (0 for the init segment).
    #[serde(default)]
    pub duration_ms: u32,
}

/// A manifest as written on disk or the wire, not yet checked. The only way
/// to a [`Manifest`] is [`ManifestParts::validate`] (or
/// [`Manifest::from_json`], which calls it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestParts {
    pub version: u32,
    /// Stable id of the content (derived from the source file's hash); the
    /// swarm name on the signal server.
    pub content_id: String,
    pub title: String,
    /// The HLS playlist, relative to the manifest (for any HLS player).
    pub playlist: String,
    /// MIME type with codecs, as given to `MediaSource.addSourceBuffer`.
    pub mime: String,
    pub piece_size: u32,
    pub init: SegmentEntry,
    pub segments: Vec<SegmentEntry>,
}

/// A validated manifest: every invariant in the module docs holds, so the
/// engine can index segments and pieces without re-checking. Fields are
/// private; it is built only by [`ManifestParts::validate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Manifest {
    parts: ManifestParts,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for version {MANIFEST_VERSION}: {0}")]
    Json(String),
    #[error("manifest version {0} is not supported (this build reads version {MANIFEST_VERSION}); upgrade the player")]
    Version(u32),
    #[error("manifest has no media segments")]
    Empty,
    #[error("manifest has {0} segments, more than the limit of {MAX_SEGMENTS}")]
    TooManySegments(usize),
    #[error("segment {uri:?}: sha256 must be 64 lower-case hex characters")]
    BadHash { uri: String },
    #[error("segment {uri:?}: size {size} is 0 or above the {MAX_SEGMENT_BYTES}-byte limit")]
    BadSize { uri: String, size: u64 },
    #[error("piece size {0} is outside {MIN_PIECE_BYTES}..={MAX_PIECE_BYTES}")]
    BadPieceSize(u32),
    #[error("uri {0:?} must be a relative path without '..'")]
    BadUri(String),
    #[error("content id {0:?} must be 1-64 characters of [A-Za-z0-9_-]")]
    BadContentId(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("segment has {got} bytes, manifest says {expected}")]
    Size { expected: u64, got: u64 },
    #[error("segment SHA-256 {got} does not match manifest {expected}")]
    Hash { expected: String, got: String },
}

/// Checks that a content id is safe to use as a swarm name and a path part.
pub fn valid_content_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn valid_uri(uri: &str) -> bool {
    !uri.is_empty()
        && uri.len() <= 512
        && !uri.starts_with('/')
        && !uri.contains("://")
        && !uri.split('/').any(|p| p == "..")
        && !uri.contains('\\')
}

pub(crate) fn valid_hash(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Checks `data` against a manifest entry (size first, then SHA-256).
pub fn verify_segment(entry: &SegmentEntry, data: &[u8]) -> Result<(), VerifyError> {
    if data.len() as u64 != entry.size {
        return Err(VerifyError::Size {
            expected: entry.size,
            got: data.len() as u64,
        });
    }
    let got = sha256_hex(data);
    if got != entry.sha256 {
        return Err(VerifyError::Hash {
            expected: entry.sha256.clone(),
            got,
        });
    }
    Ok(())
}

impl ManifestParts {
    /// Checks every invariant and returns the validated [`Manifest`].
    pub fn validate(self) -> Result<Manifest, ManifestError> {
        self.check()?;
        Ok(Manifest { parts: self })
    }

    fn check(&self) -> Result<(), ManifestError> {
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::Version(self.version));
        }
        if !valid_content_id(&self.content_id) {
            return Err(ManifestError::BadContentId(self.content_id.clone()));
        }
        if self.segments.is_empty() {
            return Err(ManifestError::Empty);
        }
        if self.segments.len() > MAX_SEGMENTS {
            return Err(ManifestError::TooManySegments(self.segments.len()));
        }
        if !(MIN_PIECE_BYTES..=MAX_PIECE_BYTES).contains(&self.piece_size) {
            return Err(ManifestError::BadPieceSize(self.piece_size));
        }
        if !valid_uri(&self.playlist) {
            return Err(ManifestError::BadUri(self.playlist.clone()));
        }
        for e in std::iter::once(&self.init).chain(&self.segments) {
            if !valid_uri(&e.uri) {
                return Err(ManifestError::BadUri(e.uri.clone()));
            }
            if !valid_hash(&e.sha256) {
                return Err(ManifestError::BadHash { uri: e.uri.clone() });
            }
            if e.size == 0 || e.size > MAX_SEGMENT_BYTES {
                return Err(ManifestError::BadSize {
                    uri: e.uri.clone(),
                    size: e.size,
                });
            }
        }
        Ok(())
    }
}

impl Manifest {
    pub fn from_json(text: &str) -> Result<Manifest, ManifestError> {
        let m: ManifestParts =
            serde_json::from_str(text).map_err(|e| ManifestError::Json(e.to_string()))?;
        m.validate()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.parts).expect("manifest serializes")
    }

    /// The checked parts, read-only.
    pub fn parts(&self) -> &ManifestParts {
        &self.parts
    }

    /// Gives the parts back (to change and validate again).
    pub fn into_parts(self) -> ManifestParts {
        self.parts
    }

    pub fn content_id(&self) -> &str {
        &self.parts.content_id
    }
    pub fn title(&self) -> &str {
        &self.parts.title
    }
    pub fn playlist(&self) -> &str {
        &self.parts.playlist
    }
    pub fn mime(&self) -> &str {
        &self.parts.mime
    }
    /// Bytes per piece; never 0 (validated within [`MIN_PIECE_BYTES`]..=[`MAX_PIECE_BYTES`]).
    pub fn piece_size(&self) -> u32 {
        self.parts.piece_size
    }
    pub fn init(&self) -> &SegmentEntry {
        &self.parts.init
    }
    pub fn segments(&self) -> &[SegmentEntry] {
        &self.parts.segments
    }
    /// Every segment id, in order.
    pub fn segment_ids(&self) -> impl Iterator<Item = SegmentId> + '_ {
        (0..self.segment_count()).map(SegmentId)
    }

    pub fn segment_count(&self) -> u32 {
        self.parts.segments.len() as u32
    }

    /// Validates a raw index from the network.
    pub fn segment(&self, raw: u32) -> Option<SegmentId> {
        ((raw as usize) < self.parts.segments.len()).then_some(SegmentId(raw))
    }

    pub fn entry(&self, seg: SegmentId) -> &SegmentEntry {
        &self.parts.segments[seg.index()]
    }

    pub fn piece_count(&self, seg: SegmentId) -> u32 {
        let size = self.entry(seg).size;
        size.div_ceil(self.parts.piece_size as u64) as u32
    }

    /// Validates a raw piece index for a segment.
    pub fn piece(&self, seg: SegmentId, raw: u32) -> Option<PieceIndex> {
        (raw < self.piece_count(seg)).then_some(PieceIndex(raw))
    }

    /// Byte range of a piece inside its segment.
    pub fn piece_range(&self, seg: SegmentId, piece: PieceIndex) -> std::ops::Range<usize> {
        let start = piece.index() * self.parts.piece_size as usize;
        let end = (start + self.parts.piece_size as usize).min(self.entry(seg).size as usize);
        start..end
    }

    /// Start time of a segment in ms. O(segments): hot paths keep a [`Timeline`].
    pub fn start_ms(&self, seg: SegmentId) -> u64 {
        Timeline::new(self).start_ms(seg)
    }

    pub fn duration_ms(&self) -> u64 {
        self.parts
            .segments
            .iter()
            .map(|s| s.duration_ms as u64)
            .sum()
    }

    /// The segment that plays at `position_ms` (the last one past the end).
    /// O(segments): hot paths keep a [`Timeline`].
    pub fn segment_at(&self, position_ms: u64) -> SegmentId {
        Timeline::new(self).segment_at(position_ms)
    }
}

/// Segment start times of one manifest, computed once, for O(log n) lookups
/// between media time and segments.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// `starts[i]` is the start of segment `i`; one more entry holds the end.
    starts: Vec<u64>,
}

impl Timeline {
    pub fn new(m: &Manifest) -> Timeline {
        let mut t = 0u64;
        let mut starts = Vec::with_capacity(m.segments().len() + 1);
        starts.push(0);
        for s in m.segments() {
            t += s.duration_ms as u64;
            starts.push(t);
        }
        Timeline { starts }
    }

    pub fn start_ms(&self, seg: SegmentId) -> u64 {
        self.starts[seg.index()]
    }

    /// The segment that plays at `position_ms`: the first whose end is past
    /// it (the last segment for positions past the end).
    pub fn segment_at(&self, position_ms: u64) -> SegmentId {
        let n = self.starts.len() - 1;
        let ended = self.starts[1..].partition_point(|&end| end <= position_ms);
        SegmentId(ended.min(n - 1) as u32)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    /// A manifest over synthetic segments, for tests across the crate.
    pub fn sample(segment_sizes: &[usize], piece_size: u32) -> (Manifest, Vec<Vec<u8>>) {
        let (parts, data) = sample_parts(segment_sizes, piece_size);
        (parts.validate().unwrap(), data)
    }

    pub fn sample_parts(segment_sizes: &[usize], piece_size: u32) -> (ManifestParts, Vec<Vec<u8>>) {
        let data: Vec<Vec<u8>> = segment_sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j * 7) as u8).collect())
            .collect();
        let segments = data
            .iter()
            .enumerate()
            .map(|(i, d)| SegmentEntry {
                uri: format!("seg_{i:05}.m4s"),
                size: d.len() as u64,
                sha256: sha256_hex(d),
                duration_ms: 2000,
            })
            .collect();
        let m = ManifestParts {
            version: MANIFEST_VERSION,
            content_id: "test-content".into(),
            title: "test".into(),
            playlist: "index.m3u8".into(),
            mime: "video/mp4; codecs=\"avc1.42c01e\"".into(),
            piece_size,
            init: SegmentEntry {
                uri: "init.mp4".into(),
                size: 10,
                sha256: sha256_hex(&[0; 10]),
                duration_ms: 0,
            },
            segments,
        };
        (m, data)
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn manifest_round_trips_through_json() {
        let (m, _) = sample(&[100, 200], 1024);
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn manifest_rejects_path_traversal_and_bad_hashes() {
        let (mut m, _) = sample_parts(&[100], 1024);
        m.segments[0].uri = "../etc/passwd".into();
        assert_eq!(
            m.validate(),
            Err(ManifestError::BadUri("../etc/passwd".into()))
        );
        let (mut m, _) = sample_parts(&[100], 1024);
        m.segments[0].sha256 = "XYZ".into();
        assert!(matches!(m.validate(), Err(ManifestError::BadHash { .. })));
        let (mut m, _) = sample_parts(&[100], 1024);
        m.piece_size = 0;
        assert_eq!(m.validate(), Err(ManifestError::BadPieceSize(0)));
        let (mut m, _) = sample_parts(&[100], 1024);
        m.content_id = "a/b".into();
        assert!(matches!(m.validate(), Err(ManifestError::BadContentId(_))));
        assert!(matches!(
            Manifest::from_json("{"),
            Err(ManifestError::Json(_))
        ));
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn verify_segment_checks_size_and_hash() {
        let (m, data) = sample(&[5000], 1024);
        let e = &m.segments()[0];
        assert_eq!(verify_segment(e, &data[0]), Ok(()));
        let mut bad = data[0].clone();
        bad[17] ^= 1;
        assert!(matches!(
            verify_segment(e, &bad),
            Err(VerifyError::Hash { .. })
        ));
        assert!(matches!(
            verify_segment(e, &bad[..10]),
            Err(VerifyError::Size { .. })
        ));
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn pieces_cover_a_segment_exactly() {
        let (m, _) = sample(&[5000], 1024);
        let s = m.segment(0).unwrap();
        assert_eq!(m.piece_count(s), 5);
        assert_eq!(m.piece_range(s, m.piece(s, 4).unwrap()), 4096..5000);
        assert!(m.piece(s, 5).is_none());
        assert!(m.segment(1).is_none());
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn segment_at_maps_time_to_segment() {
        let (m, _) = sample(&[10, 10, 10], 1024);
        assert_eq!(m.segment_at(0).get(), 0);
        assert_eq!(m.segment_at(1999).get(), 0);
        assert_eq!(m.segment_at(2000).get(), 1);
        assert_eq!(m.segment_at(999_999).get(), 2);
        assert_eq!(m.start_ms(m.segment(2).unwrap()), 4000);
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn timeline_agrees_with_a_linear_scan() {
        let (mut m, _) = sample_parts(&[10, 10, 10, 10, 10], 1024);
        for (i, d) in [1000, 0, 2500, 1, 3000].into_iter().enumerate() {
            m.segments[i].duration_ms = d;
        }
        let m = m.validate().unwrap();
        let t = Timeline::new(&m);
        for pos in 0..7000 {
            let mut end = 0u64;
            let linear = m.segments().iter().position(|s| {
                end += s.duration_ms as u64;
                pos < end
            });
            assert_eq!(
                t.segment_at(pos).get(),
                linear.unwrap_or(4) as u32,
                "at {pos} ms"
            );
        }
        assert_eq!(t.start_ms(m.segment(3).unwrap()), 3500);
    }
}
