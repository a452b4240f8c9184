//! Seeds report their bytes, viewers, uptime and health; the server keeps
//! the latest per seed, shows it in the admin seeds view and /metrics, and
//! shows a seed that stopped reporting as stale.

mod common;

use common::*;
use shoal_signal::{Config, Key};
use swarm_proto::signal::{ClientMsg, ErrorCode, SeedCaps, SeedReport, MAX_REPORT_BYTES};

const ADMIN: &str = "admin-key-for-seed-reports";

fn config(stale_ms: u64) -> Config {
    Config {
        admin_key: Some(Key::new(ADMIN.as_bytes())),
        seed_stale_ms: stale_ms,
        ..test_config()
    }
}

fn report(out: u64) -> SeedReport {
    SeedReport {
        uptime_s: 42,
        rtc_bytes_out: out,
        rtc_bytes_in: 1234,
        http_bytes_out: 5_000_000,
        http_bytes_in: 777,
        viewers: 3,
        channels_ok: 1,
        channels_interrupted: 1,
        interrupted: vec!["news".into()],
        cache_bytes: 8 << 20,
        cache_max_bytes: 256 << 20,
        caps: Some(SeedCaps {
            capacity: 50,
            max_conns_per_peer: 4,
        }),
    }
}

async fn admin_seeds(addr: std::net::SocketAddr) -> serde_json::Value {
    let (status, _, body) = http(addr, "GET", "/api/admin/seeds", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn a_seeds_report_is_kept_and_shown_in_the_admin_view_and_metrics() {
    let addr = start(config(60_000)).await;
    let mut seed = Client::seed(addr, seed_info("s1", &["movie"])).await;
    let v = admin_seeds(addr).await;
    assert!(v["seeds"][0]["report"].is_null(), "{v}");
    assert_eq!(v["seeds"][0]["stale"], false);

    seed.send(&ClientMsg::SeedReport {
        report: report(9_000_000),
    })
    .await;
    seed.ping().await;
    let v = admin_seeds(addr).await;
    let s = &v["seeds"][0];
    assert_eq!(s["seed_id"], "s1");
    assert_eq!(s["report"]["rtc_bytes_out"], 9_000_000, "{v}");
    assert_eq!(s["report"]["http_bytes_in"], 777);
    assert_eq!(s["report"]["uptime_s"], 42);
    assert_eq!(s["report"]["viewers"], 3);
    assert_eq!(s["report"]["interrupted"][0], "news");
    assert_eq!(s["report"]["caps"]["capacity"], 50, "{v}");
    assert_eq!(s["report"]["caps"]["max_conns_per_peer"], 4);
    assert_eq!(s["stale"], false);
    assert!(s["report_age_ms"].as_u64().unwrap() < 5_000);

    // The latest report replaces the earlier one.
    seed.send(&ClientMsg::SeedReport {
        report: report(10_000_000),
    })
    .await;
    seed.ping().await;
    assert_eq!(
        admin_seeds(addr).await["seeds"][0]["report"]["rtc_bytes_out"],
        10_000_000
    );

    // An absurd report is refused with the field named; the last good one
    // stays.
    let bad = ClientMsg::SeedReport {
        report: SeedReport {
            rtc_bytes_out: MAX_REPORT_BYTES + 1,
            ..report(1)
        },
    };
    seed.send(&bad).await;
    let msg = seed.expect_error(ErrorCode::BadMessage).await;
    assert!(msg.contains("rtc_bytes_out"), "{msg}");
    assert_eq!(
        admin_seeds(addr).await["seeds"][0]["report"]["rtc_bytes_out"],
        10_000_000
    );

    // /metrics has it per seed.
    let (status, _, text) = http(addr, "GET", "/metrics", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    assert!(
        text.contains(
            r#"shoal_signal_seed_bytes{seed="s1",transport="rtc",direction="out"} 10000000"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"shoal_signal_seed_viewers{seed="s1"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"shoal_signal_seed_uptime_seconds{seed="s1"} 42"#));
    assert!(text.contains(r#"shoal_signal_seed_channels{seed="s1",state="interrupted"} 1"#));
    assert!(text.contains(r#"shoal_signal_seed_stale{seed="s1"} 0"#));

    // Neither view without the admin credential.
    for path in ["/api/admin/seeds", "/metrics"] {
        let (status, _, _) = http(addr, "GET", path, None, None).await;
        assert_eq!(status, 401, "{path}");
        let (status, _, _) = http(addr, "GET", path, Some("wrong"), None).await;
        assert_eq!(status, 401, "{path}");
    }

    // A seed gone is no longer in /metrics.
    drop(seed);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, _, text) = http(addr, "GET", "/metrics", Some(ADMIN), None).await;
    assert!(!text.contains(r#"seed="s1""#), "{text}");
}

#[tokio::test]
async fn only_a_registered_seed_may_report() {
    let addr = start(config(60_000)).await;
    let mut seed = Client::seed(addr, seed_info("s1", &["movie"])).await;
    let mut viewer = Client::viewer(addr).await;
    viewer
        .send(&ClientMsg::SeedReport { report: report(1) })
        .await;
    let msg = viewer.expect_error(ErrorCode::Protocol).await;
    assert!(msg.contains("only a registered seed"), "{msg}");
    // Nothing changed: the real seed has no report, no viewer is listed as
    // a seed.
    let v = admin_seeds(addr).await;
    assert_eq!(v["seeds"].as_array().unwrap().len(), 1, "{v}");
    assert!(v["seeds"][0]["report"].is_null(), "{v}");
    seed.ping().await;
}

#[tokio::test]
async fn a_seed_that_stops_reporting_is_shown_stale() {
    let addr = start(config(400)).await;
    let mut seed = Client::seed(addr, seed_info("s1", &["movie"])).await;
    seed.send(&ClientMsg::SeedReport { report: report(1) })
        .await;
    seed.ping().await;
    assert_eq!(admin_seeds(addr).await["seeds"][0]["stale"], false);
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    // Still connected (heartbeats are not reports), but stale.
    seed.ping().await;
    let v = admin_seeds(addr).await;
    assert_eq!(v["seeds"][0]["stale"], true, "{v}");
    assert!(v["seeds"][0]["report_age_ms"].as_u64().unwrap() >= 400);
    let (_, _, text) = http(addr, "GET", "/metrics", Some(ADMIN), None).await;
    assert!(
        text.contains(r#"shoal_signal_seed_stale{seed="s1"} 1"#),
        "{text}"
    );
    // A new report makes it fresh again.
    seed.send(&ClientMsg::SeedReport { report: report(2) })
        .await;
    seed.ping().await;
    assert_eq!(admin_seeds(addr).await["seeds"][0]["stale"], false);
}

async fn channel_status(addr: std::net::SocketAddr) -> std::collections::BTreeMap<String, String> {
    let (status, _, body) = http(addr, "GET", "/api/admin/channels", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    (v["swarms"].as_array().unwrap().iter())
        .map(|s| {
            let st = s["status"].as_str().unwrap_or_else(|| panic!("{s}"));
            (s["swarm"].as_str().unwrap().to_owned(), st.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn the_channels_view_shows_each_channels_status_from_its_seeds_reports() {
    let addr = start(config(60_000)).await;
    let mut info = seed_info("s1", &["movie", "news", "sport"]);
    for ch in ["news", "sport"] {
        info.live.push(swarm_proto::signal::LiveChannelInfo {
            channel: ch.into(),
            public_key: "ab".repeat(32),
        });
    }
    let mut seed = Client::seed(addr, info).await;
    let mut viewer = Client::viewer(addr).await;
    viewer.join("chat").await;
    let st = channel_status(addr).await;
    let want = |pairs: &[(&str, &str)]| {
        (pairs.iter())
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(
        st,
        want(&[
            ("chat", "no_seed"),
            ("movie", "vod"),
            ("news", "live"),
            ("sport", "live")
        ])
    );
    // The seed reports "news" interrupted: only that one changes.
    seed.send(&ClientMsg::SeedReport { report: report(1) })
        .await;
    seed.ping().await;
    let st = channel_status(addr).await;
    assert_eq!(st["news"], "interrupted");
    assert_eq!(
        (st["sport"].as_str(), st["movie"].as_str()),
        ("live", "vod")
    );
    // Back: its next report no longer names it.
    seed.send(&ClientMsg::SeedReport {
        report: SeedReport {
            channels_interrupted: 0,
            interrupted: Vec::new(),
            ..report(2)
        },
    })
    .await;
    seed.ping().await;
    assert_eq!(channel_status(addr).await["news"], "live");
}
