//! /healthz, /api/swarms, static files and CORS.
mod common;

use std::path::PathBuf;

use common::*;
use shoal_signal::Config;
use swarm_proto::signal::{ClientMsg, PeerReport, ServerMsg};

#[tokio::test]
async fn healthz_answers_ok() {
    let addr = start(test_config()).await;
    let (status, _, body) = http_get(addr, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body, "ok");
}

#[tokio::test]
async fn api_swarms_lists_peers_roles_groups_reports_and_totals() {
    let addr = start(test_config()).await;
    let (status, head, body) = http_get(addr, "/api/swarms").await;
    assert_eq!(status, 200);
    assert!(head.contains("application/json"), "{head}");
    let empty: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(empty["swarms"], serde_json::json!([]));

    let _seed = Client::seed(addr, seed_info("seed-1", &["movie"])).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    a.join("movie").await;
    b.join("movie").await;
    let report = PeerReport {
        bytes_from_peers: 300,
        bytes_from_http: 100,
        bytes_uploaded: 50,
        bytes_from_relay: 40,
        peers: 2,
        startup_ms: Some(800),
        stalls: 1,
        stalled_ms: 250,
        latency_ms: None,
    };
    a.send(&ClientMsg::Report {
        swarm: "movie".into(),
        report: report.clone(),
    })
    .await;
    a.ping().await; // the report has been handled
    let (status, _, body) = http_get(addr, "/api/swarms").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let swarms = v["swarms"].as_array().unwrap();
    assert_eq!(swarms.len(), 1, "{body}");
    let s = &swarms[0];
    assert_eq!(s["swarm"], "movie");
    let peers = s["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 3);
    let pa = peers
        .iter()
        .find(|p| p["peer_id"] == a.peer_id.as_str())
        .unwrap();
    assert_eq!(pa["role"], "viewer");
    assert_eq!(pa["group"], "loopback");
    assert_eq!(
        serde_json::from_value::<PeerReport>(pa["report"].clone()).unwrap(),
        report
    );
    let pb = peers
        .iter()
        .find(|p| p["peer_id"] == b.peer_id.as_str())
        .unwrap();
    assert!(pb["report"].is_null());
    assert_eq!(peers.iter().filter(|p| p["role"] == "seed").count(), 1);
    assert_eq!(s["totals"]["peers"], 3);
    assert_eq!(s["totals"]["viewers"], 2);
    assert_eq!(s["totals"]["seeds"], 1);
    assert_eq!(s["totals"]["bytes_from_peers"], 300);
    assert_eq!(s["totals"]["bytes_from_relay"], 40);
    // Relayed bytes are paid for: in the total, not in the P2P share.
    assert_eq!(s["totals"]["p2p_share"], 300.0 / 440.0);
    assert_eq!(v["totals"]["peers"], 3);
    assert_eq!(v["connected"]["viewers"], 2);

    // A newer report replaces the older one.
    let newer = PeerReport {
        bytes_from_peers: 900,
        ..report
    };
    a.send(&ClientMsg::Report {
        swarm: "movie".into(),
        report: newer,
    })
    .await;
    a.ping().await;
    let (_, _, body) = http_get(addr, "/api/swarms").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["swarms"][0]["totals"]["bytes_from_peers"], 900);
}

#[tokio::test]
async fn reports_with_huge_counters_saturate_the_totals_instead_of_overflowing() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    let huge = PeerReport {
        bytes_from_peers: u64::MAX,
        bytes_from_http: u64::MAX,
        bytes_uploaded: u64::MAX,
        bytes_from_relay: u64::MAX,
        peers: u32::MAX,
        startup_ms: Some(u64::MAX),
        stalls: u32::MAX,
        stalled_ms: u64::MAX,
        latency_ms: None,
    };
    for c in [&mut a, &mut b] {
        c.join("movie").await;
        c.send(&ClientMsg::Report {
            swarm: "movie".into(),
            report: huge.clone(),
        })
        .await;
        c.ping().await;
    }
    let (status, _, body) = http_get(addr, "/api/swarms").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let t = &v["swarms"][0]["totals"];
    assert_eq!(t["bytes_from_peers"], u64::MAX, "{body}");
    assert_eq!(t["stalled_ms"], u64::MAX);
    assert_eq!(v["totals"]["bytes_uploaded"], u64::MAX);
    // The server still answers both viewers.
    a.ping().await;
    b.ping().await;
}

#[tokio::test]
async fn empty_swarms_disappear() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    a.join("s").await;
    a.send(&ClientMsg::Leave { swarm: "s".into() }).await;
    a.ping().await;
    let (_, _, body) = http_get(addr, "/api/swarms").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["swarms"], serde_json::json!([]));
    assert_eq!(v["connected"]["peers"], 1);
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shoal-signal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn web_and_pkg_dirs_are_served_with_wasm_mime_and_cors() {
    let web = temp_dir("web");
    let pkg = temp_dir("pkg");
    std::fs::write(web.join("index.html"), "<h1>shoal</h1>").unwrap();
    std::fs::write(pkg.join("shoal_peer_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(pkg.join("shoal_peer.js"), "export default 1;").unwrap();
    let addr = start(Config {
        web_dir: Some(web.clone()),
        pkg_dir: Some(pkg.clone()),
        ..test_config()
    })
    .await;

    let (status, head, body) = http_get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(head.contains("text/html"), "{head}");
    assert_eq!(body, "<h1>shoal</h1>");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");

    let (status, head, _) = http_get(addr, "/pkg/shoal_peer_bg.wasm").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/wasm"), "{head}");
    let (status, head, _) = http_get(addr, "/pkg/shoal_peer.js").await;
    assert_eq!(status, 200);
    assert!(head.contains("javascript"), "{head}");
    let (status, _, _) = http_get(addr, "/pkg/missing.wasm").await;
    assert_eq!(status, 404);
    // API routes still win over the static fallback.
    let (status, _, body) = http_get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    // The WebSocket still works with static files on.
    let mut c = Client::viewer(addr).await;
    assert!(matches!(c.join("s").await, ServerMsg::Joined { .. }));
    let _ = std::fs::remove_dir_all(web);
    let _ = std::fs::remove_dir_all(pkg);
}

#[tokio::test]
async fn without_web_dir_unknown_paths_are_404() {
    let addr = start(test_config()).await;
    let (status, _, _) = http_get(addr, "/index.html").await;
    assert_eq!(status, 404);
}
