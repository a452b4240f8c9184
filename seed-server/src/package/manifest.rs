//! The swarm manifest of a packaged folder: built from ffmpeg's output, or reused from the cache.
//!
//! Invariants: building reads and hashes each packaged file exactly once (the init segment's
//! bytes also give the codec string); reusing a cached manifest reads no segment, it checks only
//! that every file exists with its manifest size (the seed engine verifies each segment's hash
//! when it first reads it, and viewers verify everything they receive).

use super::playlist::parse_playlist;
use super::MANIFEST_FILE;
use super::{PackageError, PLAYLIST_FILE};
use std::path::Path;
use swarm_proto::manifest::{
    sha256_hex, Manifest, ManifestParts, SegmentEntry, DEFAULT_PIECE_BYTES, MANIFEST_VERSION,
};
use tracing::warn;

/// `avc1.PPCCLL` from the `avcC` box of an init segment.
pub fn avc_codec_from_init(init: &[u8]) -> Option<String> {
    let pos = init.windows(4).position(|w| w == b"avcC")?;
    let b = init.get(pos + 4..pos + 8)?;
    // configurationVersion, AVCProfileIndication, profile_compatibility, AVCLevelIndication
    (b[0] == 1).then(|| format!("avc1.{:02x}{:02x}{:02x}", b[1], b[2], b[3]))
}

/// Reads one packaged file and describes it: the only read (and hash) of that file while
/// packaging.
fn read_entry(
    dir: &Path,
    uri: &str,
    duration_ms: u32,
) -> Result<(SegmentEntry, Vec<u8>), PackageError> {
    let data = std::fs::read(dir.join(uri)).map_err(|source| PackageError::Output {
        uri: uri.to_string(),
        source,
    })?;
    let entry = SegmentEntry {
        uri: uri.to_string(),
        size: data.len() as u64,
        sha256: sha256_hex(&data),
        duration_ms,
    };
    Ok((entry, data))
}

/// Builds and validates the manifest of a folder ffmpeg just packaged. Blocking (reads and
/// hashes every file): run it off the async runtime.
pub fn build_manifest(
    dir: &Path,
    content_id: &str,
    title: &str,
    has_audio: bool,
) -> Result<Manifest, PackageError> {
    let playlist = std::fs::read_to_string(dir.join(PLAYLIST_FILE)).map_err(|source| {
        PackageError::Output {
            uri: PLAYLIST_FILE.to_string(),
            source,
        }
    })?;
    let playlist = parse_playlist(&playlist)?;
    let (init, init_bytes) = read_entry(dir, &playlist.init, 0)?;
    let avc = avc_codec_from_init(&init_bytes).ok_or(PackageError::NoAvc)?;
    let audio = has_audio && init_bytes.windows(4).any(|w| w == b"mp4a");
    let codecs = if audio {
        format!("{avc},mp4a.40.2")
    } else {
        avc
    };
    let segments = playlist
        .segments
        .iter()
        .map(|(uri, d)| read_entry(dir, uri, *d).map(|(e, _)| e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ManifestParts {
        version: MANIFEST_VERSION,
        content_id: content_id.to_string(),
        title: title.to_string(),
        playlist: PLAYLIST_FILE.to_string(),
        mime: format!("video/mp4; codecs=\"{codecs}\""),
        piece_size: DEFAULT_PIECE_BYTES,
        init,
        segments,
    }
    .validate()?)
}

/// The manifest of a previously packaged folder, if it is valid, names `content_id`, and every
/// file it lists is there with its size. `None` (with a log line saying why) means repackage.
pub fn read_cached_manifest(dir: &Path, content_id: &str) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?;
    match Manifest::from_json(&text) {
        Ok(m) if m.content_id() == content_id => {
            let bad = std::iter::once(m.init()).chain(m.segments()).find(|e| {
                std::fs::metadata(dir.join(&e.uri))
                    .map(|md| md.len() != e.size)
                    .unwrap_or(true)
            });
            if let Some(e) = bad {
                warn!(dir = %dir.display(), file = %e.uri, "cached output is incomplete, repackaging");
                return None;
            }
            Some(m)
        }
        Ok(_) => {
            warn!(dir = %dir.display(), "cached manifest names another content id, repackaging");
            None
        }
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cached manifest is invalid, repackaging");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_codec_string_comes_from_avcc() {
        let mut b = b"....avcC".to_vec();
        b.extend([1, 0x64, 0x00, 0x0c, 0xff]);
        assert_eq!(avc_codec_from_init(&b).as_deref(), Some("avc1.64000c"));
        assert_eq!(avc_codec_from_init(b"nothing"), None);
    }
}
