//! `shoal-seed`: packages a media folder, serves it over HTTP and WebRTC,
//! and registers with a signal server.
//!
//! After packaging and binding it prints exactly one line on stdout:
//! `SHOAL_SEED_LISTENING http://IP:PORT`. Logs go to stderr.

use clap::Parser;
use shoal_seed::control::{ControlConfig, SeedControl};
use shoal_seed::http::{router, HttpState};
use shoal_seed::live::channel::{self as live_channel, LiveChannels, LiveSettings};
use shoal_seed::live::ingest::{ChannelConfig, SourceSpec};
use shoal_seed::package::{package_all, LibraryError};
use shoal_seed::report::Reporter;
use shoal_seed::rtc::{RtcConfig, RtcHost};
use shoal_seed::serve::{HubConfig, SwarmHub};
use shoal_seed::signaling::{self, SignalingConfig};
use shoal_seed::stats::SeedStats;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use swarm_proto::live::LiveConfig;
use swarm_proto::signal::{LiveChannelInfo, SeedInfo};
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "shoal-seed",
    version,
    about = "Shoal seed: VOD packaging, HTTP origin and WebRTC seeding"
)]
struct Args {
    /// Folder of video files to publish (every video file in it, not recursive).
    #[arg(long, value_name = "DIR")]
    media: PathBuf,
    /// Where packaged output (HLS/CMAF + manifests) is kept between runs.
    #[arg(long, value_name = "DIR", default_value = ".shoal/cache")]
    cache: PathBuf,
    /// HTTP listen address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Base URL announced to viewers for the HTTP origin (default: from the bound address).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Signal server WebSocket URL, e.g. ws://127.0.0.1:8080/ws. Without it the seed is HTTP only.
    #[arg(long, value_name = "URL")]
    signal: Option<String>,
    /// Seed token presented to the signal server (`shoal-signal
    /// issue-seed-token --seed-id ID` prints one; give the same --seed-id).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SHOAL_SEED_TOKEN",
        hide_env_values = true
    )]
    signal_token: Option<String>,
    /// The signal server's seed key: the seed signs its own seed token with
    /// it (for an operator running both; a seed on another host should get
    /// --signal-token instead). Ignored when --signal-token is given.
    #[arg(
        long,
        value_name = "KEY",
        env = "SHOAL_SEED_KEY",
        hide_env_values = true
    )]
    seed_key: Option<String>,
    /// Seed id announced to the signal server (default: random).
    #[arg(long, value_name = "ID")]
    seed_id: Option<String>,
    /// Most viewers served at once over WebRTC.
    #[arg(long, default_value_t = 50)]
    capacity: u32,
    /// Most WebRTC connections held at once for one viewer (signaling peer id).
    #[arg(long, default_value_t = shoal_seed::serve::DEFAULT_MAX_CONNS_PER_PEER)]
    max_conns_per_peer: usize,
    /// A WebRTC connection whose data channel has not opened within this time is closed.
    #[arg(long, value_name = "MS", default_value_t = shoal_seed::serve::DEFAULT_HANDSHAKE_TIMEOUT.as_millis() as u64)]
    handshake_timeout_ms: u64,
    /// At capacity, a new viewer takes the slot of a connection that has been
    /// sent no media for this long (the longest idle first).
    #[arg(long, value_name = "MS", default_value_t = shoal_seed::serve::DEFAULT_EVICT_IDLE_AFTER.as_millis() as u64)]
    evict_idle_ms: u64,
    /// Memory for verified segments over the whole library, in MiB (shared by
    /// the contents, at least 8 MiB each).
    #[arg(long, value_name = "MIB", default_value_t = (shoal_seed::serve::DEFAULT_CACHE_BYTES >> 20) as u64)]
    cache_mb: u64,
    /// A live channel, NAME=SOURCE (repeatable). SOURCE is `testsrc` (an
    /// ffmpeg test picture and tone), `testsrc:clock` (with the wall clock
    /// burned in), `file:PATH` (a file looped in real time), `rtmp://IP:PORT/APP/KEY`
    /// or `srt://IP:PORT` (listen for an encoder's push, as OBS does), or an
    /// `http(s)://...m3u8` HLS playlist to pull.
    #[arg(long, value_name = "NAME=SOURCE")]
    live: Vec<String>,
    /// Most live channels at once, those started by the operator's
    /// commands (admin API) included.
    #[arg(long, value_name = "N", default_value_t = shoal_seed::control::DEFAULT_MAX_LIVE)]
    max_live: usize,
    /// Live segment duration (also the keyframe interval).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    live_segment_ms: u32,
    /// Where each live channel's signing key is kept (`NAME.key`, made when
    /// missing), so that a restarted seed signs with the same key
    /// (default: `<cache>/live-keys`).
    #[arg(long, value_name = "DIR")]
    live_keys: Option<PathBuf>,
    /// Viewers each new live segment is pushed to; the swarm spreads it from them.
    #[arg(long, value_name = "N", default_value_t = 1)]
    live_push_copies: usize,
    /// Address the WebRTC UDP sockets bind (a concrete IPv4 address).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    rtc_ip: IpAddr,
    /// Behind a 1:1 NAT (a cloud instance): the public IPv4 address that
    /// --rtc-ip is reached at, announced in every candidate instead of it.
    #[arg(long, value_name = "IP")]
    public_ip: Option<IpAddr>,
    /// STUN server the seed learns its public address from (behind a NAT
    /// that keeps ports), e.g. stun:stun.example.com:3478; repeatable.
    #[arg(long = "stun", value_name = "URL", value_delimiter = ',')]
    stun: Vec<String>,
    /// UDP ports the WebRTC connections bind, MIN-MAX (one per viewer), so a
    /// firewall can be opened for exactly them (default: any port).
    #[arg(long, value_name = "MIN-MAX", value_parser = RtcConfig::parse_port_range)]
    udp_ports: Option<(u16, u16)>,
    /// Credential a Prometheus scraper presents to `GET /metrics`
    /// (`Authorization: Bearer <key>`); without it `/metrics` is off (403).
    #[arg(
        long,
        value_name = "KEY",
        env = "SHOAL_SEED_METRICS_KEY",
        hide_env_values = true
    )]
    metrics_key: Option<String>,
}

/// Splits `NAME=SOURCE`.
fn parse_live_arg(spec: &str) -> Result<(String, SourceSpec), String> {
    let (name, source) = spec
        .split_once('=')
        .ok_or("expected NAME=SOURCE, e.g. demo=testsrc")?;
    if !swarm_proto::manifest::valid_content_id(name) {
        return Err(format!(
            "channel name {name:?} must be 1-64 characters of [A-Za-z0-9_-]"
        ));
    }
    let source = SourceSpec::parse(source).map_err(|e| e.to_string())?;
    Ok((name.to_owned(), source))
}

fn random_seed_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("seed-{:016x}", h.finish())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    info!("shutting down");
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    if let Some(id) = &args.seed_id {
        if id.is_empty() || id.len() > swarm_proto::signal::MAX_NAME_LEN {
            eprintln!(
                "error: --seed-id must be 1-{} characters",
                swarm_proto::signal::MAX_NAME_LEN
            );
            return ExitCode::from(2);
        }
    }
    if args.capacity == 0 {
        warn!("--capacity 0: no viewer will be served over WebRTC");
    }

    let library = match package_all(&args.media, &args.cache).await {
        Ok(lib) => Arc::new(lib),
        Err(
            e @ (LibraryError::MediaMissing(_)
            | LibraryError::MediaNotDir(_)
            | LibraryError::MediaUnreadable { .. }),
        ) => {
            error!("{e}");
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            error!("{e}");
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };

    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            error!(listen = %args.listen, "cannot listen: {e}");
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::from(1);
        }
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let public_url = match &args.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None if local.ip().is_unspecified() => {
            let port = local.port();
            warn!("listening on a wildcard address; announcing http://127.0.0.1:{port} (set --public-url)");
            format!(
                "http://{}",
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
            )
        }
        None => format!("http://{local}"),
    };

    let stats = Arc::new(SeedStats::default());
    let hub = args.signal.as_ref().map(|_| {
        let hub_cfg = HubConfig {
            max_conns_per_peer: args.max_conns_per_peer.max(1),
            handshake_timeout: std::time::Duration::from_millis(args.handshake_timeout_ms.max(1)),
            evict_idle_after: std::time::Duration::from_millis(args.evict_idle_ms),
            cache_bytes: usize::try_from(args.cache_mb.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            ..HubConfig::new(args.capacity)
        };
        Arc::new(SwarmHub::new(&library, stats.clone(), hub_cfg))
    });

    let mut live = HashMap::new();
    let mut live_info = Vec::new();
    for spec in &args.live {
        let (name, source) = match parse_live_arg(spec) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("error: --live {spec:?}: {e}");
                return ExitCode::from(2);
            }
        };
        if live.contains_key(&name) || library.get(&name).is_some() {
            eprintln!("error: --live {spec:?}: the name {name:?} is already taken");
            return ExitCode::from(2);
        }
        let cfg = ChannelConfig {
            segment_ms: args.live_segment_ms,
            ..ChannelConfig::new(name.clone(), source)
        };
        let live_cfg = LiveConfig {
            push_copies: args.live_push_copies,
            ..LiveConfig::default()
        };
        let swarm = hub.as_ref().map(|h| h.add_live(&name, live_cfg));
        let key_dir = args
            .live_keys
            .clone()
            .unwrap_or_else(|| args.cache.join("live-keys"));
        let secret = match live_channel::load_or_create_key(&key_dir, &name) {
            Ok(k) => k,
            Err(e) => {
                eprintln!(
                    "error: live channel {name:?}: cannot read or make its key in {}: {e}",
                    key_dir.display()
                );
                return ExitCode::from(1);
            }
        };
        match live_channel::start(cfg, secret, LiveSettings::default(), swarm) {
            Ok((ch, _task)) => {
                info!(channel = %name, source = %spec, "live channel started");
                live_info.push(LiveChannelInfo {
                    channel: name.clone(),
                    public_key: hex::encode(ch.public_key()),
                });
                live.insert(name, ch);
            }
            Err(e) => {
                eprintln!("error: --live {spec:?}: {e}");
                return ExitCode::from(2);
            }
        }
    }

    let live = LiveChannels::new(live);
    let added_vods: shoal_seed::http::AddedVods = Default::default();
    let mut reporter = Reporter::new(stats.clone()).with_live(live.clone());
    reporter = match &hub {
        Some(h) => reporter.with_hub(h.clone()),
        None => {
            let (library, added) = (library.clone(), added_vods.clone());
            reporter.with_http_contents(move || {
                library.published.len() + added.read().map_or(0, |a| a.len())
            })
        }
    };
    if args.metrics_key.as_deref().is_some_and(str::is_empty) {
        eprintln!("error: --metrics-key is empty");
        return ExitCode::from(2);
    }
    let app = router(HttpState {
        added: added_vods.clone(),
        library: library.clone(),
        stats: stats.clone(),
        capacity: args.capacity,
    })
    .merge(live_channel::router(live.clone(), stats.clone()))
    .merge(shoal_seed::metrics::router(
        reporter.clone(),
        args.metrics_key.clone(),
    ));
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    });

    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "SHOAL_SEED_LISTENING http://{local}");
        let _ = out.flush();
    }
    info!(%local, %public_url, contents = library.published.len(), failed = library.failed.len(), live = live_info.len(), "HTTP origin listening");

    if let (Some(url), Some(hub)) = (args.signal.clone(), hub) {
        hub.spawn_timers();
        let seed_id = args.seed_id.clone().unwrap_or_else(random_seed_id);
        let token = match (&args.signal_token, &args.seed_key) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(key)) if !key.is_empty() => Some(signaling::mint_seed_token(key, &seed_id)),
            _ => {
                warn!("neither --signal-token nor --seed-key given: the signal server will refuse this seed unless it accepts seeds without credentials");
                None
            }
        };
        let seed = SeedInfo {
            seed_id,
            http_base: public_url.clone(),
            contents: hub.contents(),
            capacity: args.capacity,
            live: live_info,
        };
        if let Some(bad) = args.stun.iter().find(|u| !u.starts_with("stun:")) {
            eprintln!("error: --stun {bad:?}: a STUN URL starts with stun: (e.g. stun:stun.example.com:3478)");
            return ExitCode::from(2);
        }
        if args.public_ip.is_some_and(|ip| !ip.is_ipv4()) {
            eprintln!(
                "error: --public-ip must be an IPv4 address (the seed's WebRTC uses UDP over IPv4)"
            );
            return ExitCode::from(2);
        }
        let host = RtcHost::new(RtcConfig {
            bind_ip: args.rtc_ip,
            stun: args.stun.clone(),
            public_ip: args.public_ip,
            udp_ports: args.udp_ports,
            ..RtcConfig::default()
        });
        let control = SeedControl::new(
            ControlConfig {
                key_dir: args
                    .live_keys
                    .clone()
                    .unwrap_or_else(|| args.cache.join("live-keys")),
                segment_ms: args.live_segment_ms,
                push_copies: args.live_push_copies,
                max_live: args.max_live.max(args.live.len()),
                media_dir: Some(args.media.clone()),
            },
            hub.clone(),
            live,
            seed.clone(),
        )
        .with_vod(args.cache.clone(), added_vods);
        tokio::spawn(signaling::run_reporting(
            SignalingConfig { url, seed, token },
            hub,
            host,
            Some(Arc::new(control)),
            reporter,
            std::time::Duration::from_millis(swarm_proto::signal::SEED_REPORT_EVERY_MS),
        ));
    } else {
        info!("no --signal given: serving over HTTP only");
    }

    match server.await {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            error!("HTTP server failed: {e}");
            ExitCode::from(1)
        }
        Err(e) => {
            error!("HTTP server task failed: {e}");
            ExitCode::from(1)
        }
    }
}
