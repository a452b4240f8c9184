//! A viewer's report may carry its live latency: the admin viewers view
//! shows it (the worst of its channels); an unbelievable one is refused
//! with the field named and the last good report stays.

mod common;

use common::*;
use shoal_signal::{Config, Key};
use swarm_proto::signal::{ClientMsg, ErrorCode, PeerReport, MAX_REPORT_LATENCY_MS};

const ADMIN: &str = "admin-key-for-viewer-reports";

async fn viewers(addr: std::net::SocketAddr) -> serde_json::Value {
    let (status, _, body) = http(addr, "GET", "/api/admin/viewers", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["viewers"].clone()
}

fn latency(ms: Option<u64>) -> PeerReport {
    PeerReport {
        latency_ms: ms,
        ..PeerReport::default()
    }
}

#[tokio::test]
async fn the_viewers_view_shows_the_reported_live_latency() {
    let addr = start(Config {
        admin_key: Some(Key::new(ADMIN.as_bytes())),
        ..test_config()
    })
    .await;
    let mut a = Client::viewer(addr).await;
    a.join("news").await;
    a.join("sport").await;
    a.ping().await;
    // No report yet: no latency.
    assert!(viewers(addr).await[0]["report"].get("latency_ms").is_none());
    for (swarm, ms) in [("news", Some(2_500)), ("sport", Some(4_000))] {
        a.send(&ClientMsg::Report {
            swarm: swarm.into(),
            report: latency(ms),
        })
        .await;
    }
    a.ping().await;
    let v = viewers(addr).await;
    assert_eq!(
        v[0]["report"]["latency_ms"], 4_000,
        "the worst channel: {v}"
    );
    // A VOD-only report (none): the other channel's stays.
    a.send(&ClientMsg::Report {
        swarm: "sport".into(),
        report: latency(None),
    })
    .await;
    a.ping().await;
    assert_eq!(viewers(addr).await[0]["report"]["latency_ms"], 2_500);

    // Over an hour: refused, named; the last good report stays.
    a.send(&ClientMsg::Report {
        swarm: "news".into(),
        report: latency(Some(MAX_REPORT_LATENCY_MS + 1)),
    })
    .await;
    let msg = a.expect_error(ErrorCode::BadMessage).await;
    assert!(msg.contains("latency_ms"), "{msg}");
    assert_eq!(viewers(addr).await[0]["report"]["latency_ms"], 2_500);
}
