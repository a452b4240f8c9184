//! The HTTP origin on 127.0.0.1, over a video packaged by the real ffmpeg.
mod common;

use common::{dirs, make_video};
use shoal_seed::http::{router, HttpState, IndexEntry};
use shoal_seed::package::package_all;
use shoal_seed::stats::SeedStats;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use swarm_proto::manifest::Manifest;

async fn start(state: HttpState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn origin_serves_manifest_segments_with_ranges_cors_and_an_index() {
    let (_root, media, cache) = dirs();
    make_video(&media, "movie.mp4", 5, true);
    let lib = Arc::new(package_all(&media, &cache).await.unwrap());
    let p = lib.published[0].clone();
    let stats = Arc::new(SeedStats::default());
    let base = start(HttpState {
        added: Default::default(),
        library: lib.clone(),
        stats: stats.clone(),
        capacity: 7,
    })
    .await;
    let http = reqwest::Client::new();

    // Manifest.
    let resp = http
        .get(format!("{base}/vod/{}/manifest.json", p.content_id))
        .header("Origin", "http://example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let m = Manifest::from_json(&resp.text().await.unwrap()).unwrap();
    assert_eq!(m, p.manifest);

    // Range request on a segment: 206 and exactly those bytes.
    let seg = &m.segments()[1];
    let file = std::fs::read(p.dir.join(&seg.uri)).unwrap();
    let resp = http
        .get(format!("{base}/vod/{}/{}", p.content_id, seg.uri))
        .header("Range", "bytes=100-1099")
        .header("Origin", "http://example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 100-1099/{}", file.len()).as_str()
    );
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &file[100..1100]);

    // Whole init segment and playlist.
    let init = http
        .get(format!("{base}/vod/{}/init.mp4", p.content_id))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    assert_eq!(init.headers()["content-type"], "video/mp4");
    assert_eq!(init.bytes().await.unwrap().len() as u64, m.init().size);
    let pl = http
        .get(format!("{base}/vod/{}/index.m3u8", p.content_id))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(pl.contains("#EXT-X-MAP:URI=\"init.mp4\""));

    // CORS preflight.
    let pre = http
        .request(
            reqwest::Method::OPTIONS,
            format!("{base}/vod/{}/{}", p.content_id, seg.uri),
        )
        .header("Origin", "http://example.test")
        .header("Access-Control-Request-Method", "GET")
        .header("Access-Control-Request-Headers", "range")
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success());
    assert!(pre.headers().contains_key("access-control-allow-headers"));

    // Index.
    let index: Vec<IndexEntry> = http
        .get(format!("{base}/vod/index.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(index[0].content_id, p.content_id);
    assert_eq!(index[0].title, "movie");
    assert_eq!(index[0].duration_ms, m.duration_ms());
    assert_eq!(
        index[0].manifest,
        format!("/vod/{}/manifest.json", p.content_id)
    );

    // Things that must not be served.
    for path in [
        format!("/vod/{}/..%2F..%2Fetc%2Fpasswd", p.content_id),
        format!("/vod/{}/missing.m4s", p.content_id),
        "/vod/0000000000000000/manifest.json".to_string(),
        format!("/vod/.tmp-{}/manifest.json", p.content_id),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }

    // Health and stats: the bytes sent above are counted.
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let s: serde_json::Value = http
        .get(format!("{base}/api/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let served = s["http_bytes_served"].as_u64().unwrap();
    assert!(
        served >= 1000 + m.init().size,
        "http_bytes_served = {served}"
    );
    assert_eq!(s["rtc_bytes_served"], 0);
    assert_eq!(s["viewers_connected"], 0);
    assert_eq!(s["capacity"], 7);
}

/// Kills the child on drop so a failed assertion leaves no process behind.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn seed_binary_prints_its_address_and_serves_the_library() {
    let (_root, media, cache) = dirs();
    make_video(&media, "film.mp4", 3, true);
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_shoal-seed"))
            .arg("--media")
            .arg(&media)
            .arg("--cache")
            .arg(&cache)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("SHOAL_SEED_LISTENING ")
        .unwrap_or_else(|| panic!("unexpected stdout line {line:?}"))
        .to_string();
    assert!(
        base.starts_with("http://127.0.0.1:") && !base.ends_with(":0"),
        "{base}"
    );
    let index: Vec<IndexEntry> = reqwest::get(format!("{base}/vod/index.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(index[0].title, "film");
    let m = reqwest::get(format!("{base}{}", index[0].manifest))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    Manifest::from_json(&m).unwrap();
}
