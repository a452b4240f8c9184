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
    /// Peer lists drawn for joins and `get_peers`.
    pub peer_picks: Counter,
    /// Swarm members looked at to draw those lists (bounded per pick,
    /// whatever the swarm's size).
    pub peer_pick_examined: Counter,
    peers: Family<Labels, Gauge>,
    swarms: Gauge,
    reported_bytes: Family<Labels, Gauge>,
    reported_stalls: Gauge,
    seed_bytes: Family<Labels, Gauge>,
    seed_viewers: Family<Labels, Gauge>,
    seed_uptime: Family<Labels, Gauge>,
    seed_channels: Family<Labels, Gauge>,
    seed_cache_bytes: Family<Labels, Gauge>,
    seed_stale: Family<Labels, Gauge>,
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
            peer_picks: Counter::default(),
            peer_pick_examined: Counter::default(),
            peers: Family::default(),
            swarms: Gauge::default(),
            reported_bytes: Family::default(),
            reported_stalls: Gauge::default(),
            seed_bytes: Family::default(),
            seed_viewers: Family::default(),
            seed_uptime: Family::default(),
            seed_channels: Family::default(),
            seed_cache_bytes: Family::default(),
            seed_stale: Family::default(),
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
        registry.register(
            "peer_picks",
            "Peer lists drawn for joins and get_peers",
            m.peer_picks.clone(),
        );
        registry.register(
            "peer_pick_examined",
            "Swarm members looked at to draw peer lists (bounded per pick whatever the swarm's size)",
            m.peer_pick_examined.clone(),
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
        registry.register(
            "seed_bytes",
            "Bytes each registered seed reported since it started, by transport (rtc, http) and direction (in, out)",
            m.seed_bytes.clone(),
        );
        registry.register(
            "seed_viewers",
            "Viewer connections each seed holds over WebRTC (its last report)",
            m.seed_viewers.clone(),
        );
        registry.register(
            "seed_uptime_seconds",
            "Seconds each seed has been running (its last report)",
            m.seed_uptime.clone(),
        );
        registry.register(
            "seed_channels",
            "Channels of each seed by state (ok, interrupted)",
            m.seed_channels.clone(),
        );
        registry.register(
            "seed_cache_bytes",
            "Segment cache each seed holds, and its bound (kind used, max)",
            m.seed_cache_bytes.clone(),
        );
        registry.register(
            "seed_stale",
            "1 when a seed has sent no report for 15 s",
            m.seed_stale.clone(),
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

    /// The text exposition, with the gauges set from `view` and the seeds'
    /// last reports (seeds gone since the last scrape are dropped).
    pub fn render(
        &self,
        view: &crate::state::SwarmsView,
        seeds: &[crate::state::AdminSeed],
    ) -> String {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for f in [
            &self.seed_bytes,
            &self.seed_viewers,
            &self.seed_uptime,
            &self.seed_channels,
            &self.seed_cache_bytes,
            &self.seed_stale,
        ] {
            f.clear();
        }
        for s in seeds {
            let seed = || ("seed", s.seed_id.clone());
            self.seed_stale
                .get_or_create(&vec![seed()])
                .set(i64::from(s.stale));
            let Some(r) = &s.report else { continue };
            for (transport, direction, v) in [
                ("rtc", "out", r.rtc_bytes_out),
                ("rtc", "in", r.rtc_bytes_in),
                ("http", "out", r.http_bytes_out),
                ("http", "in", r.http_bytes_in),
            ] {
                self.seed_bytes
                    .get_or_create(&vec![
                        seed(),
                        ("transport", transport.into()),
                        ("direction", direction.into()),
                    ])
                    .set(clamp(v));
            }
            self.seed_viewers
                .get_or_create(&vec![seed()])
                .set(i64::from(r.viewers));
            self.seed_uptime
                .get_or_create(&vec![seed()])
                .set(clamp(r.uptime_s));
            for (state, n) in [
                ("ok", r.channels_ok),
                ("interrupted", r.channels_interrupted),
            ] {
                self.seed_channels
                    .get_or_create(&vec![seed(), ("state", state.into())])
                    .set(i64::from(n));
            }
            for (kind, v) in [("used", r.cache_bytes), ("max", r.cache_max_bytes)] {
                self.seed_cache_bytes
                    .get_or_create(&vec![seed(), ("kind", kind.into())])
                    .set(clamp(v));
            }
        }
        self.peers
            .get_or_create(&label("role", "viewer"))
            .set(view.connected.viewers as i64);
        self.peers
            .get_or_create(&label("role", "seed"))
            .set(view.connected.seeds as i64);
        self.swarms.set(view.swarm_count as i64);
        let t = &view.totals;
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
