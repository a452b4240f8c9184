//! Reading the VOD playlist ffmpeg writes: the init segment and each media segment with its
//! duration.
//!
//! Invariant: a parsed [`VodPlaylist`] has an init segment and at least one media segment, and
//! every media segment had its own `#EXTINF`.

/// What a VOD playlist lists, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VodPlaylist {
    /// URI of the init segment (`#EXT-X-MAP`).
    pub init: String,
    /// (URI, duration in ms) of each media segment.
    pub segments: Vec<(String, u32)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlaylistError {
    #[error("playlist EXT-X-MAP has no URI")]
    MapWithoutUri,
    #[error("bad EXTINF line {0:?}")]
    BadExtinf(String),
    #[error("segment {0:?} has no EXTINF")]
    SegmentWithoutExtinf(String),
    #[error("playlist has no EXT-X-MAP init segment")]
    NoInit,
    #[error("playlist has no segments")]
    NoSegments,
}

/// Parses a VOD playlist.
pub fn parse_playlist(text: &str) -> Result<VodPlaylist, PlaylistError> {
    let mut init = None;
    let mut segments = Vec::new();
    let mut pending: Option<u32> = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:") {
            let uri = rest
                .split(',')
                .find_map(|kv| kv.trim().strip_prefix("URI="))
                .map(|u| u.trim_matches('"').to_string())
                .ok_or(PlaylistError::MapWithoutUri)?;
            init = Some(uri);
        } else if let Some(rest) = line.strip_prefix("#EXTINF:") {
            let secs: f64 = rest
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .parse()
                .map_err(|_| PlaylistError::BadExtinf(line.to_string()))?;
            pending = Some((secs * 1000.0).round().max(0.0) as u32);
        } else if line.starts_with('#') {
            continue;
        } else {
            let d = pending
                .take()
                .ok_or_else(|| PlaylistError::SegmentWithoutExtinf(line.to_string()))?;
            segments.push((line.to_string(), d));
        }
    }
    let init = init.ok_or(PlaylistError::NoInit)?;
    if segments.is_empty() {
        return Err(PlaylistError::NoSegments);
    }
    Ok(VodPlaylist { init, segments })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_parses_init_and_durations() {
        let text = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:2.000000,\nseg_00000.m4s\n#EXTINF:1.5,\nseg_00001.m4s\n#EXT-X-ENDLIST\n";
        let p = parse_playlist(text).unwrap();
        assert_eq!(p.init, "init.mp4");
        assert_eq!(
            p.segments,
            vec![
                ("seg_00000.m4s".into(), 2000),
                ("seg_00001.m4s".into(), 1500)
            ]
        );
        assert_eq!(parse_playlist("#EXTM3U\n"), Err(PlaylistError::NoInit));
        assert_eq!(
            parse_playlist("#EXT-X-MAP:URI=\"i.mp4\"\nseg.m4s\n"),
            Err(PlaylistError::SegmentWithoutExtinf("seg.m4s".into()))
        );
    }
}
