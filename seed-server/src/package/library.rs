//! The library: which files of the media folder are videos, their content ids, and what was
//! published or failed.
//!
//! Invariants: a content id is the first 16 hex characters of the SHA-256 of the source file,
//! so it names the bytes, not the file name; a [`Library`] holds each content id at most once.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use swarm_proto::manifest::Manifest;

/// Extensions treated as video files (lower case). Other files in the media
/// folder (posters, subtitles, notes) are ignored.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "ts", "mts", "m2ts", "mpg", "mpeg", "m2v", "flv",
    "f4v", "wmv", "asf", "ogv", "ogg", "3gp", "3g2", "mxf", "vob", "nut", "y4m", "divx", "dv",
    "qt", "rm", "rmvb",
];

/// The media folder itself is unusable: the seed cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("media folder {0} does not exist")]
    MediaMissing(PathBuf),
    #[error("media path {0} is not a folder")]
    MediaNotDir(PathBuf),
    #[error("cannot read media folder {path}: {source}")]
    MediaUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create cache folder {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One video ready to serve.
#[derive(Clone, Debug)]
pub struct Published {
    pub source: PathBuf,
    pub content_id: String,
    /// `<cache>/<content_id>`: manifest, playlist, init and segments.
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// True when an existing valid manifest was reused (no ffmpeg run).
    pub cache_hit: bool,
}

/// A video file that could not be packaged.
#[derive(Clone, Debug)]
pub struct Failed {
    pub source: PathBuf,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct Library {
    pub published: Vec<Published>,
    pub failed: Vec<Failed>,
}

impl Library {
    pub fn get(&self, content_id: &str) -> Option<&Published> {
        self.published.iter().find(|p| p.content_id == content_id)
    }
    pub fn content_ids(&self) -> Vec<String> {
        self.published
            .iter()
            .map(|p| p.content_id.clone())
            .collect()
    }
}

/// Lists the video files of `media` (not hidden, known video extension), sorted by name.
pub fn list_videos(media: &Path) -> Result<Vec<PathBuf>, LibraryError> {
    let meta = std::fs::metadata(media).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LibraryError::MediaMissing(media.to_path_buf())
        } else {
            LibraryError::MediaUnreadable {
                path: media.to_path_buf(),
                source: e,
            }
        }
    })?;
    if !meta.is_dir() {
        return Err(LibraryError::MediaNotDir(media.to_path_buf()));
    }
    let rd = std::fs::read_dir(media).map_err(|e| LibraryError::MediaUnreadable {
        path: media.to_path_buf(),
        source: e,
    })?;
    let mut out = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks: a linked video is still a video.
        if !std::fs::metadata(&path)
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            continue;
        }
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if VIDEO_EXTENSIONS.contains(&ext.as_str()) {
            out.push(path);
        } else {
            tracing::debug!(path = %path.display(), "not a video file extension, ignored");
        }
    }
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(out)
}

/// Content id: the first 16 hex characters of the SHA-256 of the file.
pub fn content_id_of(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize())[..16].to_string())
}
