//! Prometheus metrics (`GET /metrics`, behind the admin credential), in the
//! OpenMetrics text format through the `prometheus-client` crate.
//!
//! Counters are bumped where things happen (some outside the state lock);
//! gauges of the current state are read from it at scrape time.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    /// Admitted clients, by role.
    pub hellos: Family<Labels, Counter>,
    /// Refusals, by reason.
    pub refusals: Family<Labels, Counter>,
    /// Kicked connections, by outcome (acked, removed).
    pub kicks: Family<Labels, Counter>,
    /// Limits that bit, by limit.
    pub limits: Family<Labels, Counter>,
    /// Frames received from registered clients.
    pub frames: Counter,
    /// Viewer-to-peer connection attempts reported, by outcome (a route, or
    /// failed).
    pub conn_results: Family<Labels, Counter>,
    peers: Family<Labels, Gauge>,
    swarms: Gauge,
    reported_bytes: Family<Labels, Gauge>,
    reported_stalls: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("shoal_signal");
        let m = Metrics {
            hellos: Family::default(),
            refusals: Family::default(),
            kicks: Family::default(),
            limits: Family::default(),
            frames: Counter::default(),
            conn_results: Family::default(),
            peers: Family::default(),
            swarms: Gauge::default(),
            reported_bytes: Family::default(),
            reported_stalls: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("hellos", "Clients admitted, by role", m.hellos.clone());
        registry.register(
            "refusals",
            "Admissions and joins refused, by reason",
            m.refusals.clone(),
        );
        registry.register(
            "kicks",
            "Viewer connections kicked, by outcome",
            m.kicks.clone(),
        );
        registry.register(
            "limit_hits",
            "Times a limit bit, by limit",
            m.limits.clone(),
        );
        registry.register(
            "frames",
            "Frames received from registered clients",
            m.frames.clone(),
        );
        registry.register(
            "conn_results",
            "Peer connection attempts viewers reported, by outcome (host, srflx, prflx, relay, failed)",
            m.conn_results.clone(),
        );
        registry.register("peers", "Connected clients, by role", m.peers.clone());
        registry.register("swarms", "Swarms (channels with members)", m.swarms.clone());
        registry.register(
            "reported_bytes",
            "Bytes the connected viewers reported, by source (peers, http) and uploaded",
            m.reported_bytes.clone(),
        );
        registry.register(
            "reported_stalls",
            "Stalls the connected viewers reported",
            m.reported_stalls.clone(),
        );
        Metrics { registry, ..m }
    }
}

fn label(k: &'static str, v: impl Into<String>) -> Labels {
    vec![(k, v.into())]
}

impl Metrics {
    pub fn hello(&self, role: &str) {
        self.hellos.get_or_create(&label("role", role)).inc();
    }

    pub fn refused(&self, reason: swarm_proto::signal::RefuseReason) {
        self.refusals
            .get_or_create(&label("reason", reason.code()))
            .inc();
    }

    pub fn kick(&self, acked: bool) {
        let outcome = if acked { "acked" } else { "removed" };
        self.kicks.get_or_create(&label("outcome", outcome)).inc();
    }

    pub fn conn_result(&self, ok: bool, route: Option<swarm_proto::signal::Route>) {
        let outcome = match (ok, route) {
            (false, _) => "failed",
            (true, Some(r)) => r.as_str(),
            (true, None) => "unknown",
        };
        self.conn_results
            .get_or_create(&label("outcome", outcome))
            .inc();
    }

    pub fn limit(&self, which: &'static str) {
        self.limits.get_or_create(&label("limit", which)).inc();
    }

    /// The text exposition, with the gauges set from `view`.
    pub fn render(&self, view: &crate::state::SwarmsView) -> String {
        self.peers
            .get_or_create(&label("role", "viewer"))
            .set(view.connected.viewers as i64);
        self.peers
            .get_or_create(&label("role", "seed"))
            .set(view.connected.seeds as i64);
        self.swarms.set(view.swarms.len() as i64);
        let t = &view.totals;
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (src, v) in [
            ("peers", t.bytes_from_peers),
            ("http", t.bytes_from_http),
            ("uploaded", t.bytes_uploaded),
        ] {
            self.reported_bytes
                .get_or_create(&label("source", src))
                .set(clamp(v));
        }
        self.reported_stalls.set(clamp(t.stalls));
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}
