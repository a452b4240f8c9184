//! The seed's `GET /metrics`: off without `--metrics-key` (403), refused
//! without or with a wrong credential (401), and with it the OpenMetrics
//! text of the seed's real counters, which follow its HTTP traffic.
mod common;

use common::start_origin;
use shoal_seed::report::Reporter;
use shoal_seed::stats::SeedStats;
use std::sync::Arc;

async fn serve(key: Option<&str>, stats: Arc<SeedStats>) -> String {
    let reporter = Reporter::new(stats).with_http_contents(|| 2);
    let app = shoal_seed::metrics::router(reporter, key.map(str::to_owned));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/metrics")
}

async fn get(url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn metrics_are_off_without_a_key() {
    let url = serve(None, Arc::default()).await;
    let (status, body) = get(&url, Some("anything")).await;
    assert_eq!(status, 403);
    assert!(body.contains("--metrics-key"), "{body}");
}

#[tokio::test]
async fn metrics_need_the_key_and_follow_the_counters() {
    let stats = Arc::new(SeedStats::default());
    let url = serve(Some("scrape-key"), stats.clone()).await;
    for bearer in [None, Some("wrong"), Some("scrape-ke"), Some("")] {
        let (status, body) = get(&url, bearer).await;
        assert_eq!(status, 401, "{bearer:?}: {body}");
        assert!(!body.contains("shoal_seed"), "{body}");
    }
    let (status, body) = get(&url, Some("scrape-key")).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"shoal_seed_bytes_total{transport="http",direction="out"} 0"#),
        "{body}"
    );
    assert!(
        body.contains(r#"shoal_seed_channels{state="ok"} 2"#),
        "{body}"
    );
    assert!(body.contains("shoal_seed_uptime_seconds "), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");

    // Traffic through the real origin (same counters) shows at the next
    // scrape, as a counter that only grows.
    let origin = start_origin(Arc::new(Default::default()), stats.clone(), 4).await;
    for _ in 0..3 {
        let r = reqwest::get(format!("{origin}/vod/index.json"))
            .await
            .unwrap();
        assert_eq!(r.text().await.unwrap(), "[]");
    }
    let (_, body) = get(&url, Some("scrape-key")).await;
    let value = |name: &str| -> u64 {
        let line = body
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in {body}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("shoal_seed_http_requests_total"), 3);
    assert_eq!(
        value(r#"shoal_seed_bytes_total{transport="http",direction="out"}"#),
        6
    );
    assert!(value(r#"shoal_seed_bytes_total{transport="http",direction="in"}"#) > 60);
    assert_eq!(value("shoal_seed_viewers "), 0);
}
