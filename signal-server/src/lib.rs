//! Shoal's signal server: the tracker and control plane.
//!
//! Viewers and seeds connect to `GET /ws` and speak the JSON protocol of
//! [`swarm_proto::signal`]; the server keeps swarms, matches peers by network
//! group with [`swarm_proto::matching::select_peers`], relays WebRTC
//! signaling, keeps the seed registry and the latest viewer reports. All
//! state is in memory, in one [`state::State`] behind one mutex that is never
//! held across an `.await`.
//!
//! HTTP: `GET /healthz`, `GET /api/swarms`, `GET /api/seeds`,
//! `POST /api/login` (built-in users, [`users`]), and optionally static
//! files (`web_dir` at `/`, `pkg_dir` at `/pkg/`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State as AxState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use ipnet::IpNet;
use swarm_proto::matching::MatchRule;
use tower_http::cors::CorsLayer;
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

mod admin;
pub mod auth;
pub mod conns;
pub mod groups;
pub mod ice;
pub mod metrics;
pub mod state;
pub mod users;
mod ws;

pub use auth::{AuthConfig, Key, OpenChannels};
pub use groups::{GroupTable, GroupsError};
pub use state::{Admission, State};

/// Everything the server needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address `main` binds; [`serve`] uses the listener it is given.
    pub listen: SocketAddr,
    /// Served at `/` (with `index.html` for directories) when set.
    pub web_dir: Option<PathBuf>,
    /// Served at `/pkg/` (the wasm player bundle) when set.
    pub pkg_dir: Option<PathBuf>,
    /// Interval clients are told to heartbeat at (`welcome.heartbeat_ms`).
    pub heartbeat_ms: u64,
    /// A client silent for longer than this is removed and its socket closed.
    pub heartbeat_timeout_ms: u64,
    pub match_rule: MatchRule,
    pub groups: GroupTable,
    /// Proxies whose `X-Forwarded-For` header is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Consecutive bad frames after which a connection is closed.
    pub max_bad_frames: u32,
    /// Seed for peer ids and match tie-breaks; `None` draws one from the OS.
    pub rng_seed: Option<u64>,
    /// Viewer tokens, seed credentials, open channels.
    pub auth: AuthConfig,
    /// Let viewers join swarms no seed announces (off: `unknown_channel`).
    pub allow_unknown_channels: bool,
    /// The admin API's credential (`Authorization: Bearer <key>`); `None`
    /// turns the admin API off.
    pub admin_key: Option<Key>,
    pub limits: Limits,
    /// Web origins whose pages may open the WebSocket (`*`: any). Empty:
    /// only pages served by this server (same host). Clients that send no
    /// `Origin` (seeds, native tools) are not browsers and pass.
    pub allowed_origins: Vec<String>,
    /// STUN/TURN servers handed to every admitted peer.
    pub ice: ice::IceConfig,
    /// The built-in user store and its login (off without `users.db`).
    pub users: users::UsersConfig,
    /// A seed whose last report is older than this is shown stale.
    pub seed_stale_ms: u64,
}

/// Limits that keep one client from hurting the others. Each is logged
/// when it bites.
#[derive(Clone, Debug)]
pub struct Limits {
    /// WebSocket connections open at once from one client address (0: no
    /// limit). Over it the upgrade is answered 429.
    pub max_conns_per_addr: usize,
    /// Sustained frames per second one connection may send; past the burst
    /// the server reads its frames no faster (the sender is slowed, no one
    /// else).
    pub msgs_per_s: u32,
    pub msg_burst: u32,
    /// Sustained relayed signaling bytes per second per connection, and the
    /// burst (an SDP is a few KiB; a browser sends a few per peer).
    pub relay_bytes_per_s: u32,
    pub relay_burst_bytes: u32,
    /// Swarms in all (only viewers create swarms, and only with
    /// `allow_unknown_channels`).
    pub max_swarms: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns_per_addr: 64,
            msgs_per_s: 100,
            msg_burst: 200,
            relay_bytes_per_s: 256 << 10,
            relay_burst_bytes: 1 << 20,
            max_swarms: 10_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            web_dir: None,
            pkg_dir: None,
            heartbeat_ms: 5000,
            heartbeat_timeout_ms: 15000,
            match_rule: MatchRule::default(),
            groups: GroupTable::default(),
            trusted_proxies: Vec::new(),
            max_bad_frames: 20,
            rng_seed: None,
            auth: AuthConfig::default(),
            allow_unknown_channels: false,
            admin_key: None,
            limits: Limits::default(),
            allowed_origins: Vec::new(),
            ice: ice::IceConfig::default(),
            users: users::UsersConfig::default(),
            seed_stale_ms: swarm_proto::signal::SEED_REPORT_STALE_MS,
        }
    }
}

/// Shared handle to the configuration and the state.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    state: Mutex<State>,
    metrics: Arc<metrics::Metrics>,
    /// Open WebSocket connections per client address.
    conns: Mutex<HashMap<IpAddr, usize>>,
    /// The built-in user store, the failed-login limiter, hashing slots.
    users: users::Users,
}

/// One open connection of an address, counted until dropped.
pub(crate) struct ConnSlot {
    app: AppState,
    addr: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut conns = self
            .app
            .inner
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = conns.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                conns.remove(&self.addr);
            }
        }
    }
}

impl AppState {
    /// The state for `config`, without a user store: [`AppState::open`]
    /// opens the one `config.users.db` names.
    pub fn new(config: Config) -> Self {
        Self::with_user_store(config, None)
    }

    /// The state for `config`, with its user store opened (off the async
    /// runtime) when `config.users.db` is set.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        let store = users::open_store(&config.users).await?;
        if let Some(s) = &store {
            tracing::info!(path = %s.path().display(), "built-in users: POST /api/login");
        }
        Ok(Self::with_user_store(config, store))
    }

    /// The state for `config` with `store` as its built-in users.
    pub fn with_user_store(config: Config, store: Option<users::UserStore>) -> Self {
        let admission = Admission {
            auth: config.auth.clone(),
            allow_unknown_channels: config.allow_unknown_channels,
            max_swarms: config.limits.max_swarms,
        };
        let metrics = Arc::new(metrics::Metrics::default());
        let mut state = State::new(
            config.match_rule,
            config.heartbeat_ms,
            config.rng_seed,
            admission,
            metrics.clone(),
        );
        state.set_ice(config.ice.clone());
        state.set_seed_stale_ms(config.seed_stale_ms);
        let users = users::Users::new(&config.users, store);
        AppState {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(state),
                metrics,
                conns: Mutex::new(HashMap::new()),
                users,
            }),
        }
    }

    pub(crate) fn users(&self) -> &users::Users {
        &self.inner.users
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// Locks the state. A panic while locked cannot leave it half-updated in
    /// a way later calls depend on, so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a new connection from `addr`; `None` when the address is at
    /// [`Limits::max_conns_per_addr`].
    pub(crate) fn take_conn_slot(&self, addr: IpAddr) -> Option<ConnSlot> {
        let max = self.config().limits.max_conns_per_addr;
        let mut conns = self.inner.conns.lock().unwrap_or_else(|e| e.into_inner());
        let n = conns.entry(addr).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnSlot {
            app: self.clone(),
            addr,
        })
    }

    /// The client address for a connection from `peer`: the socket address,
    /// or, when `peer` is a trusted proxy, the nearest untrusted address in
    /// `X-Forwarded-For`.
    pub fn client_addr(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let trusted = |ip: &IpAddr| {
            self.config()
                .trusted_proxies
                .iter()
                .any(|n| n.contains(&ip.to_canonical()))
        };
        if !trusted(&peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in header.split(',').rev() {
            let Some(ip) = parse_forwarded_hop(hop.trim()) else {
                break;
            };
            client = ip;
            if !trusted(&ip) {
                break;
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:567`, `::1` or `[::1]:567`.
fn parse_forwarded_hop(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// The router: WebSocket, API, health, static files, CORS, request tracing.
pub fn app(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/ws", get(ws::ws_handler))
        .route("/healthz", get(healthz))
        .route("/api/swarms", get(api_swarms))
        .route("/api/seeds", get(api_seeds))
        .route("/api/viewers/{id}/kick", post(admin::kick))
        .route("/api/admin/viewers", get(admin::viewers))
        .route("/api/admin/seeds", get(admin::seeds))
        .route(
            "/api/admin/channels",
            get(admin::channels).post(admin::create_channel),
        )
        .route("/api/admin/channels/{name}", delete(admin::delete_channel))
        .route("/api/admin/events", get(admin::events))
        .route("/api/admin/connections", get(admin::connections))
        .route(
            "/api/admin/settings",
            get(admin::settings).put(admin::put_settings),
        )
        .route("/metrics", get(admin::metrics))
        .route(
            "/api/login",
            post(users::login).layer(DefaultBodyLimit::max(users::MAX_BODY)),
        )
        .route(
            "/api/admin/users",
            get(users::list)
                .post(users::create)
                .layer(DefaultBodyLimit::max(users::MAX_BODY)),
        )
        .route(
            "/api/admin/users/{name}",
            put(users::update)
                .delete(users::delete)
                .layer(DefaultBodyLimit::max(users::MAX_BODY)),
        );
    if let Some(pkg) = &state.config().pkg_dir {
        router = router.nest_service("/pkg", ServeDir::new(pkg));
    }
    if let Some(web) = &state.config().web_dir {
        router = router.fallback_service(ServeDir::new(web));
    }
    router
        .layer(CorsLayer::permissive())
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `config` on an already bound listener until the process ends
/// (opening its user store first, when it names one).
pub async fn serve(listener: tokio::net::TcpListener, config: Config) -> anyhow::Result<()> {
    serve_state(listener, AppState::open(config).await?).await
}

/// Serves `state` on an already bound listener until the process ends.
pub async fn serve_state(listener: tokio::net::TcpListener, state: AppState) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let router = app(state);
    // Without TCP_NODELAY a second message in a row (an answer, then its
    // trickled candidates) waits for the client's delayed ACK: ~40 ms added
    // to every negotiation.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY on a client connection");
        }
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn api_swarms(AxState(app): AxState<AppState>) -> Response {
    let view = app.lock().swarms_view();
    let view = view.sorted();
    no_store(Json(view))
}

async fn api_seeds(AxState(app): AxState<AppState>) -> Response {
    let view = app.lock().seeds_view();
    no_store(Json(view))
}

fn no_store(body: impl IntoResponse) -> Response {
    (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}

/// How long a send to a client may block before the client is dropped.
pub(crate) fn send_timeout(config: &Config) -> Duration {
    Duration::from_millis(config.heartbeat_timeout_ms.max(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_with_proxies(nets: &[&str]) -> AppState {
        let trusted_proxies = nets.iter().map(|n| n.parse().unwrap()).collect();
        AppState::new(Config {
            trusted_proxies,
            ..Config::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_walks_back_through_trusted_proxies_only() {
        let app = app_with_proxies(&["10.0.0.0/8", "127.0.0.1/32"]);
        // Socket peer not trusted: header ignored.
        assert_eq!(
            app.client_addr(ip("192.0.2.1"), Some("203.0.113.9")),
            ip("192.0.2.1")
        );
        // One trusted hop.
        assert_eq!(
            app.client_addr(ip("127.0.0.1"), Some("203.0.113.9")),
            ip("203.0.113.9")
        );
        // A chain: the nearest untrusted address wins, spoofed left entries do not.
        assert_eq!(
            app.client_addr(ip("127.0.0.1"), Some("6.6.6.6, 203.0.113.9, 10.1.1.1")),
            ip("203.0.113.9")
        );
        // Ports and bracketed IPv6 are accepted.
        assert_eq!(
            app.client_addr(ip("127.0.0.1"), Some("203.0.113.9:4444")),
            ip("203.0.113.9")
        );
        assert_eq!(
            app.client_addr(ip("127.0.0.1"), Some("[2001:db8::1]:4444")),
            ip("2001:db8::1")
        );
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            app.client_addr(ip("127.0.0.1"), Some("junk")),
            ip("127.0.0.1")
        );
        assert_eq!(
            app.client_addr(ip("127.0.0.1"), Some("junk, 10.2.2.2")),
            ip("10.2.2.2")
        );
        // IPv4-mapped socket address of a trusted proxy.
        assert_eq!(
            app.client_addr(ip("::ffff:127.0.0.1"), Some("203.0.113.9")),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn no_trusted_proxies_means_the_socket_address() {
        let app = app_with_proxies(&[]);
        assert_eq!(
            app.client_addr(ip("127.0.0.1"), Some("203.0.113.9")),
            ip("127.0.0.1")
        );
    }
}
