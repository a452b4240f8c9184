//! VOD packaging: every video file of a media folder becomes CMAF/HLS
//! (H.264 + AAC in fragmented MP4, ~2 s segments) plus a swarm manifest, in
//! `<cache>/<content_id>/`. The content id is derived from the source bytes,
//! so an unchanged file is a cache hit and is not re-encoded.
//!
//! Layout: [`library`] finds the videos and names their content; [`ffmpeg`]
//! runs ffprobe and ffmpeg; [`playlist`] reads the playlist ffmpeg wrote;
//! [`manifest`] builds or reuses the swarm manifest; this module packages
//! file after file and publishes each output folder.
//!
//! Invariants:
//! - A folder `<cache>/<content_id>` only ever appears whole: ffmpeg writes
//!   into `<cache>/.tmp-<content_id>`, which is renamed once its manifest is
//!   written, and removed on any failure.
//! - Each source file is read (and hashed) once for its content id, and each
//!   packaged file once for its manifest; a cache hit reads no segment.
//! - A file that cannot be packaged is reported (path and ffmpeg's own
//!   reason) and skipped; the others publish.

pub mod ffmpeg;
pub mod library;
pub mod manifest;
pub mod playlist;

pub use ffmpeg::{ffmpeg_args, gop_frames, probe, ProbeInfo, ToolError};
pub use library::{
    content_id_of, list_videos, Failed, Library, LibraryError, Published, VIDEO_EXTENSIONS,
};
pub use manifest::{avc_codec_from_init, build_manifest};
pub use playlist::{parse_playlist, PlaylistError, VodPlaylist};

use std::path::{Path, PathBuf};
use std::time::Instant;
use swarm_proto::manifest::{Manifest, ManifestError};
use tracing::{error, info, warn};

/// Segment target duration in seconds (GOP length and `-hls_time`).
pub const SEGMENT_SECONDS: u32 = 2;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const PLAYLIST_FILE: &str = "index.m3u8";
pub const INIT_FILE: &str = "init.mp4";

/// Why one video could not be packaged (the others still publish).
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot read file: {0}")]
    Source(std::io::Error),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("no video stream in file")]
    NoVideo,
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ffmpeg output {uri} unreadable: {source}")]
    Output { uri: String, source: std::io::Error },
    #[error("ffmpeg wrote an unusable playlist: {0}")]
    Playlist(#[from] PlaylistError),
    #[error("init segment has no H.264 configuration (avcC)")]
    NoAvc,
    #[error("packaged output does not make a valid manifest: {0}")]
    Manifest(#[from] ManifestError),
    #[error("{0} task failed: {1}")]
    Task(&'static str, String),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PackageError {
    let path = path.to_path_buf();
    move |source| PackageError::Io {
        action,
        path,
        source,
    }
}

/// Packages every video of `media` into `cache`, one at a time.
pub async fn package_all(media: &Path, cache: &Path) -> Result<Library, LibraryError> {
    let videos = list_videos(media)?;
    std::fs::create_dir_all(cache).map_err(|e| LibraryError::Cache {
        path: cache.to_path_buf(),
        source: e,
    })?;
    if videos.is_empty() {
        warn!(media = %media.display(), "media folder holds no video files");
    }
    let mut lib = Library::default();
    for path in videos {
        match package_file(&path, cache).await {
            Ok(p) => {
                if let Some(prev) = lib.get(&p.content_id) {
                    warn!(path = %path.display(), same_as = %prev.source.display(), content_id = %p.content_id,
                        "identical content already published, skipped");
                    continue;
                }
                lib.published.push(p);
            }
            Err(e) => {
                let reason = e.to_string();
                error!(path = %path.display(), %reason, "cannot package video, skipped");
                lib.failed.push(Failed {
                    source: path,
                    reason,
                });
            }
        }
    }
    info!(
        published = lib.published.len(),
        failed = lib.failed.len(),
        "packaging done"
    );
    Ok(lib)
}

/// Packages one file (or reuses its cached output).
pub async fn package_file(path: &Path, cache: &Path) -> Result<Published, PackageError> {
    let src = path.to_path_buf();
    let content_id = tokio::task::spawn_blocking(move || content_id_of(&src))
        .await
        .map_err(|e| PackageError::Task("hashing", e.to_string()))?
        .map_err(PackageError::Source)?;
    let out_dir = cache.join(&content_id);
    let title = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| content_id.clone());

    if let Some(manifest) = manifest::read_cached_manifest(&out_dir, &content_id) {
        info!(path = %path.display(), %content_id, segments = manifest.segments().len(), "cache hit, reusing packaged output");
        return Ok(Published {
            source: path.to_path_buf(),
            content_id,
            dir: out_dir,
            manifest,
            cache_hit: true,
        });
    }

    let started = Instant::now();
    info!(path = %path.display(), %content_id, "packaging");
    let tmp = cache.join(format!(".tmp-{content_id}"));
    let manifest = match package_into(path, &tmp, &content_id, &title).await {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // Publish atomically: a stale or broken output dir is replaced whole.
    if out_dir.exists() {
        let _ = std::fs::remove_dir_all(&out_dir);
    }
    if let Err(e) = std::fs::rename(&tmp, &out_dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(io_error("move packaged output to", &out_dir)(e));
    }
    info!(path = %path.display(), %content_id, segments = manifest.segments().len(),
        duration_ms = manifest.duration_ms(), secs = format!("{:.1}", started.elapsed().as_secs_f64()), "packaged");
    Ok(Published {
        source: path.to_path_buf(),
        content_id,
        dir: out_dir,
        manifest,
        cache_hit: false,
    })
}

/// Runs ffmpeg into `tmp` (emptied first) and writes the manifest there.
async fn package_into(
    input: &Path,
    tmp: &Path,
    content_id: &str,
    title: &str,
) -> Result<Manifest, PackageError> {
    let input = std::fs::canonicalize(input).map_err(io_error("resolve", input))?;
    let info = probe(&input).await?;
    if !info.has_video {
        return Err(PackageError::NoVideo);
    }
    if tmp.exists() {
        std::fs::remove_dir_all(tmp).map_err(io_error("clear", tmp))?;
    }
    std::fs::create_dir_all(tmp).map_err(io_error("create", tmp))?;
    let tmp = std::fs::canonicalize(tmp).map_err(io_error("resolve", tmp))?;
    ffmpeg::run_ffmpeg(&input, &tmp, &info).await?;
    let (dir, id, title, audio) = (
        tmp.clone(),
        content_id.to_owned(),
        title.to_owned(),
        info.has_audio,
    );
    let manifest = tokio::task::spawn_blocking(move || build_manifest(&dir, &id, &title, audio))
        .await
        .map_err(|e| PackageError::Task("manifest", e.to_string()))??;
    let manifest_path = tmp.join(MANIFEST_FILE);
    std::fs::write(&manifest_path, manifest.to_json())
        .map_err(io_error("write", &manifest_path))?;
    Ok(manifest)
}
