//! Packaging a media folder with the real ffmpeg.
mod common;

use common::{dirs, make_video};
use shoal_seed::package::{package_all, LibraryError, MANIFEST_FILE};
use std::time::{Duration, Instant};
use swarm_proto::manifest::{verify_segment, Manifest};

#[tokio::test]
async fn packaged_video_has_a_valid_manifest_whose_hashes_match_the_files() {
    let (_root, media, cache) = dirs();
    make_video(&media, "clip.mp4", 7, true);
    let lib = package_all(&media, &cache).await.expect("packaging runs");
    assert!(lib.failed.is_empty(), "{:?}", lib.failed);
    assert_eq!(lib.published.len(), 1);
    let p = &lib.published[0];
    assert!(!p.cache_hit);
    assert_eq!(p.content_id.len(), 16);
    assert_eq!(p.dir, cache.join(&p.content_id));
    let m = &p.manifest;
    // A `Manifest` is valid by construction; the one on disk re-validates below.
    assert_eq!(m.title(), "clip");
    assert_eq!(m.playlist(), "index.m3u8");
    assert!(
        m.mime().starts_with("video/mp4; codecs=\"avc1.64"),
        "{}",
        m.mime()
    );
    assert!(m.mime().ends_with(",mp4a.40.2\""), "{}", m.mime());
    // The manifest on disk is the one returned.
    let on_disk =
        Manifest::from_json(&std::fs::read_to_string(p.dir.join(MANIFEST_FILE)).unwrap()).unwrap();
    assert_eq!(&on_disk, m);
    // Every segment (and the init segment) verifies against its file.
    verify_segment(m.init(), &std::fs::read(p.dir.join(&m.init().uri)).unwrap()).unwrap();
    for s in m.segments() {
        verify_segment(s, &std::fs::read(p.dir.join(&s.uri)).unwrap()).unwrap();
        assert!(
            s.duration_ms <= 2100,
            "segment {} lasts {} ms",
            s.uri,
            s.duration_ms
        );
    }
    assert!(m.segments().len() >= 4, "{} segments", m.segments().len());
    let total = m.duration_ms();
    assert!(
        (6800..=7200).contains(&total),
        "durations sum to {total} ms"
    );
    // No temp folder is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());

    // A second run reuses the output without running ffmpeg.
    let seg0 = p.dir.join(&m.segments()[0].uri);
    let mtime = std::fs::metadata(&seg0).unwrap().modified().unwrap();
    let t = Instant::now();
    let again = package_all(&media, &cache).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "second run took {:?}",
        t.elapsed()
    );
    assert_eq!(again.published.len(), 1);
    assert!(again.published[0].cache_hit);
    assert_eq!(&again.published[0].manifest, m);
    assert_eq!(std::fs::metadata(&seg0).unwrap().modified().unwrap(), mtime);

    // A damaged cache (a segment went missing) is repackaged, not served broken.
    std::fs::remove_file(&seg0).unwrap();
    let repaired = package_all(&media, &cache).await.unwrap();
    assert!(!repaired.published[0].cache_hit);
    assert!(seg0.exists());
}

#[tokio::test]
async fn corrupt_file_is_reported_by_path_and_the_good_video_still_publishes() {
    let (_root, media, cache) = dirs();
    make_video(&media, "b_good.mp4", 3, true);
    let bad = media.join("a_broken.mp4");
    std::fs::write(
        &bad,
        b"this is not a video at all, just some bytes".repeat(50),
    )
    .unwrap();
    // Hidden files and non-video files are not packaged at all.
    std::fs::write(media.join(".hidden.mp4"), b"garbage").unwrap();
    std::fs::write(media.join("notes.txt"), b"hello").unwrap();
    let lib = package_all(&media, &cache).await.unwrap();
    assert_eq!(lib.published.len(), 1);
    assert_eq!(lib.published[0].manifest.title(), "b_good");
    assert_eq!(lib.failed.len(), 1, "{:?}", lib.failed);
    assert_eq!(lib.failed[0].source, bad);
    let reason = &lib.failed[0].reason;
    assert!(
        reason.contains("Invalid data") || reason.contains("moov"),
        "reason should carry ffmpeg's words: {reason}"
    );
    // Nothing was published for the broken file.
    let dirs: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dirs, vec![lib.published[0].content_id.clone()]);
}

#[tokio::test]
async fn video_without_audio_is_packaged_video_only() {
    let (_root, media, cache) = dirs();
    make_video(&media, "silent.mkv", 3, false);
    let lib = package_all(&media, &cache).await.unwrap();
    assert!(lib.failed.is_empty(), "{:?}", lib.failed);
    let m = &lib.published[0].manifest;
    assert!(!m.mime().contains("mp4a"), "{}", m.mime());
    assert!(m.mime().contains("avc1."), "{}", m.mime());
    let total = m.duration_ms();
    assert!((2800..=3200).contains(&total), "{total}");
}

#[tokio::test]
async fn missing_media_folder_is_an_error_naming_it() {
    let (root, _media, cache) = dirs();
    let missing = root.path().join("no-such-folder");
    let err = package_all(&missing, &cache).await.unwrap_err();
    assert!(matches!(err, LibraryError::MediaMissing(_)));
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

#[test]
fn seed_binary_exits_with_code_2_when_the_media_folder_is_missing() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("nothing-here");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal-seed"))
        .arg("--media")
        .arg(&missing)
        .arg("--cache")
        .arg(root.path().join("cache"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout when the seed cannot start"
    );
}
