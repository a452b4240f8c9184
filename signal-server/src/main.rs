//! `shoal-signal`: runs the signal server.
//!
//! Prints exactly one line to stdout once listening:
//! `SHOAL_SIGNAL_LISTENING http://ADDR:PORT` (the real bound address, so
//! `--listen 127.0.0.1:0` works). Logs go to stderr (`RUST_LOG`, default
//! `info`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use ipnet::IpNet;
use shoal_signal::{serve, Config, GroupTable};
use swarm_proto::matching::MatchRule;

#[derive(Debug, Parser)]
#[command(
    name = "shoal-signal",
    version,
    about = "Shoal signal server: swarms, peer matching, WebRTC signaling relay"
)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "SHOAL_SIGNAL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Directory served at `/` (the demo site).
    #[arg(long, env = "SHOAL_SIGNAL_WEB_DIR")]
    web_dir: Option<PathBuf>,
    /// Directory served at `/pkg/` (the wasm player bundle).
    #[arg(long, env = "SHOAL_SIGNAL_PKG_DIR")]
    pkg_dir: Option<PathBuf>,
    /// Network groups file: lines `CIDR GROUP`, `#` comments; added to the
    /// embedded table (loopback, private, else public).
    #[arg(long, env = "SHOAL_SIGNAL_GROUPS")]
    groups: Option<PathBuf>,
    /// Heartbeat interval announced to clients, in milliseconds.
    #[arg(long, env = "SHOAL_SIGNAL_HEARTBEAT_MS", default_value_t = 5000)]
    heartbeat_ms: u64,
    /// A client silent for this long is removed, in milliseconds.
    #[arg(
        long,
        env = "SHOAL_SIGNAL_HEARTBEAT_TIMEOUT_MS",
        default_value_t = 15000
    )]
    heartbeat_timeout_ms: u64,
    /// Reverse proxy (CIDR or address) whose X-Forwarded-For is trusted;
    /// repeat the flag or separate with commas.
    #[arg(long = "trusted-proxy", env = "SHOAL_SIGNAL_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    trusted_proxy: Vec<IpNet>,
    /// With at least this many same-group peers, other groups are skipped.
    #[arg(long, env = "SHOAL_SIGNAL_MATCH_ENOUGH", default_value_t = MatchRule::default().enough_same_group)]
    match_enough: usize,
    /// Most peers returned by join / get_peers.
    #[arg(long, env = "SHOAL_SIGNAL_MATCH_MAX", default_value_t = MatchRule::default().max)]
    match_max: usize,
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    shoal_signal::groups::parse_net(s)
        .ok_or_else(|| format!("`{s}` is not an address or CIDR range"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    anyhow::ensure!(cli.heartbeat_ms > 0, "--heartbeat-ms must be above 0");
    anyhow::ensure!(
        cli.heartbeat_timeout_ms > cli.heartbeat_ms,
        "--heartbeat-timeout-ms ({}) must be above --heartbeat-ms ({})",
        cli.heartbeat_timeout_ms,
        cli.heartbeat_ms
    );
    let groups = match &cli.groups {
        Some(path) => GroupTable::with_file(path)?,
        None => GroupTable::default(),
    };
    tracing::info!(ranges = groups.len(), "network groups loaded");
    let config = Config {
        listen: cli.listen,
        web_dir: cli.web_dir,
        pkg_dir: cli.pkg_dir,
        heartbeat_ms: cli.heartbeat_ms,
        heartbeat_timeout_ms: cli.heartbeat_timeout_ms,
        match_rule: MatchRule {
            enough_same_group: cli.match_enough,
            max: cli.match_max,
        },
        groups,
        trusted_proxies: cli.trusted_proxy,
        ..Config::default()
    };
    for (flag, dir) in [
        ("--web-dir", &config.web_dir),
        ("--pkg-dir", &config.pkg_dir),
    ] {
        if let Some(d) = dir {
            anyhow::ensure!(d.is_dir(), "{flag} {} is not a directory", d.display());
        }
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "SHOAL_SIGNAL_LISTENING http://{addr}")?;
        out.flush()?;
    }
    tokio::select! {
        r = serve(listener, config) => r,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; shutting down");
            Ok(())
        }
    }
}
