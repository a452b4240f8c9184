//! `GET /metrics`: the seed's counters in the Prometheus/OpenMetrics text
//! format (`prometheus-client`, as the signal server's), behind a bearer
//! credential as the signal server's `/metrics` is behind its admin key:
//! `--metrics-key`; without it the endpoint answers 403.
//!
//! Values come from the same [`Reporter`] that builds the seed's reports
//! to the tracker, read at scrape time.

use crate::report::Reporter;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

type Labels = Vec<(&'static str, &'static str)>;

struct Metrics {
    registry: Registry,
    bytes: Family<Labels, Counter>,
    http_requests: Counter,
    viewers_total: Counter,
    refusals: Family<Labels, Counter>,
    handshake_timeouts: Counter,
    evicted_idle: Counter,
    segment_loads: Family<Labels, Counter>,
    viewers: Gauge,
    slots_max: Gauge,
    uptime: Gauge,
    channels: Family<Labels, Gauge>,
    cache_bytes: Family<Labels, Gauge>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("shoal_seed");
        let m = Metrics {
            registry: Registry::default(),
            bytes: Family::default(),
            http_requests: Counter::default(),
            viewers_total: Counter::default(),
            refusals: Family::default(),
            handshake_timeouts: Counter::default(),
            evicted_idle: Counter::default(),
            segment_loads: Family::default(),
            viewers: Gauge::default(),
            slots_max: Gauge::default(),
            uptime: Gauge::default(),
            channels: Family::default(),
            cache_bytes: Family::default(),
        };
        registry.register(
            "bytes",
            "Bytes since start, by transport (rtc, http) and direction (out, in)",
            m.bytes.clone(),
        );
        registry.register(
            "http_requests",
            "Requests the HTTP origin answered",
            m.http_requests.clone(),
        );
        registry.register(
            "viewers_admitted",
            "WebRTC viewer connections admitted since start",
            m.viewers_total.clone(),
        );
        registry.register(
            "refusals",
            "WebRTC offers refused, by reason (capacity, per_peer, banned)",
            m.refusals.clone(),
        );
        registry.register(
            "handshake_timeouts",
            "Connections closed because their data channel did not open in time",
            m.handshake_timeouts.clone(),
        );
        registry.register(
            "evicted_idle",
            "Idle connections closed to make room for a new viewer at capacity",
            m.evicted_idle.clone(),
        );
        registry.register(
            "segment_loads",
            "Segment reads from disk for WebRTC viewers, by outcome (ok, failed)",
            m.segment_loads.clone(),
        );
        registry.register(
            "viewers",
            "WebRTC viewer connections held now",
            m.viewers.clone(),
        );
        registry.register(
            "viewers_max",
            "Most WebRTC viewer connections held at once",
            m.slots_max.clone(),
        );
        registry.register(
            "uptime_seconds",
            "Seconds since the seed started",
            m.uptime.clone(),
        );
        registry.register(
            "channels",
            "Contents by state (ok, interrupted)",
            m.channels.clone(),
        );
        registry.register(
            "cache_bytes",
            "Verified segments held in memory (used) and the bound (max)",
            m.cache_bytes.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Brings a counter up to `total` (the seed's own atomic counters only
    /// grow; a counter never goes down).
    fn catch_up(c: &Counter, total: u64) {
        let now = c.get();
        if total > now {
            c.inc_by(total - now);
        }
    }

    fn render(&self, reporter: &Reporter) -> String {
        let r = reporter.report();
        let s = reporter.stats();
        for (labels, v) in [
            (
                vec![("transport", "rtc"), ("direction", "out")],
                r.rtc_bytes_out,
            ),
            (
                vec![("transport", "rtc"), ("direction", "in")],
                r.rtc_bytes_in,
            ),
            (
                vec![("transport", "http"), ("direction", "out")],
                r.http_bytes_out,
            ),
            (
                vec![("transport", "http"), ("direction", "in")],
                r.http_bytes_in,
            ),
        ] {
            Self::catch_up(&self.bytes.get_or_create(&labels), v);
        }
        Self::catch_up(&self.http_requests, s.http_requests.load(Relaxed));
        Self::catch_up(&self.viewers_total, s.viewers_total.load(Relaxed));
        for (reason, v) in [
            ("capacity", s.refused_over_capacity.load(Relaxed)),
            ("per_peer", s.refused_per_peer.load(Relaxed)),
            ("banned", s.refused_banned.load(Relaxed)),
        ] {
            Self::catch_up(&self.refusals.get_or_create(&vec![("reason", reason)]), v);
        }
        Self::catch_up(&self.handshake_timeouts, s.handshake_timeouts.load(Relaxed));
        Self::catch_up(&self.evicted_idle, s.evicted_idle.load(Relaxed));
        let loads = s.segment_loads.load(Relaxed);
        let failed = s.segment_load_failures.load(Relaxed);
        Self::catch_up(
            &self
                .segment_loads
                .get_or_create(&vec![("outcome", "failed")]),
            failed,
        );
        Self::catch_up(
            &self.segment_loads.get_or_create(&vec![("outcome", "ok")]),
            loads.saturating_sub(failed),
        );
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.viewers.set(i64::from(r.viewers));
        self.slots_max.set(clamp(s.slots_max.load(Relaxed)));
        self.uptime.set(clamp(r.uptime_s));
        self.channels
            .get_or_create(&vec![("state", "ok")])
            .set(i64::from(r.channels_ok));
        self.channels
            .get_or_create(&vec![("state", "interrupted")])
            .set(i64::from(r.channels_interrupted));
        self.cache_bytes
            .get_or_create(&vec![("kind", "used")])
            .set(clamp(r.cache_bytes));
        self.cache_bytes
            .get_or_create(&vec![("kind", "max")])
            .set(clamp(r.cache_max_bytes));
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[derive(Clone)]
struct MetricsState {
    reporter: Reporter,
    key: Option<Arc<[u8]>>,
    /// One scrape at a time (counters catch up with the atomics).
    metrics: Arc<Mutex<Metrics>>,
}

/// `GET /metrics` for the seed's HTTP server. `key`: the bearer credential
/// a scraper must present (`None`: the endpoint is off, 403).
pub fn router(reporter: Reporter, key: Option<String>) -> Router {
    let key = key
        .filter(|k| !k.is_empty())
        .map(|k| Arc::from(k.into_bytes()));
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(MetricsState {
            reporter,
            key,
            metrics: Arc::new(Mutex::new(Metrics::new())),
        })
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        format!("{message}\n"),
    )
        .into_response()
}

async fn metrics(State(st): State<MetricsState>, headers: HeaderMap) -> Response {
    let Some(key) = &st.key else {
        return refuse(
            StatusCode::FORBIDDEN,
            "metrics are off: start shoal-seed with --metrics-key",
        );
    };
    let presented = (headers.get(header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if bool::from(p.trim().as_bytes().ct_eq(key)) => {}
        Some(_) => return refuse(StatusCode::UNAUTHORIZED, "wrong metrics credential"),
        None => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "/metrics needs `Authorization: Bearer <metrics key>`",
            )
        }
    }
    let text = {
        let m = st.metrics.lock().unwrap_or_else(|e| e.into_inner());
        m.render(&st.reporter)
    };
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}
