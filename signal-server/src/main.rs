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
use clap::{Parser, Subcommand};
use ipnet::IpNet;
use shoal_signal::auth::{mint_seed_token, mint_viewer_token, unix_now, MIN_KEY_LEN};
use shoal_signal::ice::IceConfig;
use shoal_signal::users::{
    HashCost, NewUser, UserError, UserStore, UserUpdate, UsersConfig, DEFAULT_FAILURES_PER_MIN,
    DEFAULT_LOGIN_TTL_S,
};
use shoal_signal::AppState;
use shoal_signal::{serve_state, AuthConfig, Config, GroupTable, Key, Limits, OpenChannels};
use swarm_proto::auth::ViewerClaims;
use swarm_proto::matching::MatchRule;

#[derive(Debug, Parser)]
#[command(
    name = "shoal-signal",
    version,
    about = "Shoal signal server: swarms, peer matching, WebRTC signaling relay"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
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
    /// Key (at least 32 bytes) that verifies viewer tokens (JWT, HS256) issued
    /// by the website's backend. Without it every channel is open.
    #[arg(long, env = "SHOAL_VIEWER_KEY", hide_env_values = true)]
    viewer_key: Option<String>,
    /// Key (at least 32 bytes) that verifies seed tokens. Without it no seed
    /// can register. `shoal-signal issue-seed-token` makes a token.
    #[arg(long, env = "SHOAL_SEED_KEY", hide_env_values = true)]
    seed_key: Option<String>,
    /// Channel viewers may join without a token when --viewer-key is set;
    /// repeat or separate with commas; `*` opens every channel.
    #[arg(
        long = "open-channel",
        env = "SHOAL_OPEN_CHANNELS",
        value_delimiter = ','
    )]
    open_channel: Vec<String>,
    /// Let viewers join channels that no seed offers (they create them).
    #[arg(long, env = "SHOAL_ALLOW_UNKNOWN_CHANNELS")]
    allow_unknown_channels: bool,
    /// Credential of the admin API (`Authorization: Bearer KEY`); without
    /// it the admin API is off.
    #[arg(long, env = "SHOAL_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Origin of web pages that may use this server (e.g.
    /// https://www.example.com); repeat or comma-separate; `*` for any.
    /// Default: only pages this server serves.
    #[arg(
        long = "allowed-origin",
        env = "SHOAL_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    allowed_origin: Vec<String>,
    /// WebSocket connections at once from one address (0: no limit).
    #[arg(long, env = "SHOAL_MAX_CONNS_PER_ADDR", default_value_t = Limits::default().max_conns_per_addr)]
    max_conns_per_addr: usize,
    /// Frames per second one connection may send (sustained; bursts of twice that).
    #[arg(long, env = "SHOAL_MSGS_PER_S", default_value_t = Limits::default().msgs_per_s)]
    msgs_per_s: u32,
    /// Relayed signaling bytes per second one connection may send (bursts of 4x).
    #[arg(long, env = "SHOAL_RELAY_BYTES_PER_S", default_value_t = Limits::default().relay_bytes_per_s)]
    relay_bytes_per_s: u32,
    /// Most swarms at once.
    #[arg(long, env = "SHOAL_MAX_SWARMS", default_value_t = Limits::default().max_swarms)]
    max_swarms: usize,
    /// STUN server handed to peers (e.g. stun:stun.example.com:3478);
    /// repeat or comma-separate. None: host candidates only (one LAN).
    #[arg(long = "stun", env = "SHOAL_STUN", value_delimiter = ',')]
    stun: Vec<String>,
    /// TURN server handed to peers with short-lived credentials (e.g.
    /// turn:turn.example.com:3478?transport=udp); repeat or comma-separate.
    /// Needs --turn-secret.
    #[arg(long = "turn", env = "SHOAL_TURN", value_delimiter = ',')]
    turn: Vec<String>,
    /// The TURN server's shared secret (coturn: use-auth-secret,
    /// static-auth-secret): credentials are HMACs of it, never the secret.
    #[arg(long, env = "SHOAL_TURN_SECRET", hide_env_values = true)]
    turn_secret: Option<String>,
    /// Lifetime of the TURN credentials handed out, seconds (60-86400).
    #[arg(long, env = "SHOAL_TURN_TTL_S", default_value_t = shoal_signal::ice::DEFAULT_TURN_TTL_S)]
    turn_ttl_s: u64,
    /// Built-in users: SQLite file (created when missing) behind
    /// `POST /api/login`, which issues viewer tokens under --viewer-key.
    /// Off without it. `shoal-signal add-user` adds users.
    #[arg(long, env = "SHOAL_USERS_DB")]
    users_db: Option<PathBuf>,
    /// Lifetime of the viewer tokens `POST /api/login` issues, seconds
    /// (60-2592000).
    #[arg(long, env = "SHOAL_LOGIN_TTL_S", default_value_t = DEFAULT_LOGIN_TTL_S)]
    login_ttl_s: u64,
    /// Failed logins one client address may make per minute (0: no limit).
    #[arg(long, env = "SHOAL_LOGIN_FAILURES_PER_MIN", default_value_t = DEFAULT_FAILURES_PER_MIN)]
    login_failures_per_min: u32,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints a seed token (the seed's `--signal-token`) for SEED_ID.
    IssueSeedToken {
        /// The seed's `--seed-id`.
        #[arg(long)]
        seed_id: String,
        /// Validity in seconds (0: no expiry).
        #[arg(long, default_value_t = 0)]
        ttl_s: u64,
        /// The signal server's --seed-key.
        #[arg(long, env = "SHOAL_SEED_KEY", hide_env_values = true)]
        key: String,
    },
    /// Prints a viewer token (what a website's backend issues).
    IssueViewerToken {
        /// Viewer id.
        #[arg(long)]
        sub: String,
        /// Channels allowed (repeat or comma-separated; `*` for all).
        #[arg(long = "channel", value_delimiter = ',', required = true)]
        channels: Vec<String>,
        /// Validity in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_s: u64,
        /// User group (plan, tier) recorded with the viewer.
        #[arg(long)]
        group: Option<String>,
        /// The signal server's --viewer-key.
        #[arg(long, env = "SHOAL_VIEWER_KEY", hide_env_values = true)]
        key: String,
    },
    /// Adds a built-in user (created with the file when missing); reads
    /// the password from the first line of stdin.
    AddUser {
        /// The signal server's --users-db.
        #[arg(long, env = "SHOAL_USERS_DB")]
        users_db: PathBuf,
        /// User name (1-64 of A-Z a-z 0-9 . _ @ -).
        #[arg(long)]
        user: String,
        /// Channels allowed (comma-separated or repeated; `*` for all).
        #[arg(
            long = "channels",
            alias = "channel",
            value_delimiter = ',',
            required = true
        )]
        channels: Vec<String>,
        /// User group (plan, tier) put in its tokens.
        #[arg(long)]
        group: Option<String>,
        /// Replace the password, channels and group of an existing user
        /// (and enable it) instead of failing.
        #[arg(long)]
        update: bool,
    },
}

/// `add-user`: the password is the first line of stdin (a pipe, or typed:
/// a terminal shows it).
fn add_user(
    users_db: PathBuf,
    user: String,
    channels: Vec<String>,
    group: Option<String>,
    update: bool,
) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        eprint!("password for {user} (shown as typed; pipe it to hide it): ");
    }
    let mut password = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut password)
        .context("cannot read the password from stdin")?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let store = UserStore::open(&users_db, HashCost::default())
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", users_db.display()))?;
    let new = NewUser {
        name: user.clone(),
        password: password.clone(),
        channels: channels.clone(),
        group: group.clone(),
        disabled: false,
    };
    let view = match store.create(new) {
        Err(UserError::Exists(_)) if update => store
            .update(
                &user,
                UserUpdate {
                    password: Some(password),
                    channels: Some(channels),
                    group: Some(group.unwrap_or_default()),
                    disabled: Some(false),
                },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        Err(UserError::Exists(_)) => {
            anyhow::bail!("user {user} exists already (--update replaces it)")
        }
        r => r.map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    println!(
        "user {} in {}: channels {}{}",
        view.name,
        users_db.display(),
        view.channels.join(","),
        view.group
            .map(|g| format!(", group {g}"))
            .unwrap_or_default()
    );
    Ok(())
}

fn key_arg(flag: &str, value: &Option<String>) -> anyhow::Result<Option<Key>> {
    let Some(v) = value else {
        return Ok(None);
    };
    anyhow::ensure!(
        !v.is_empty(),
        "{flag} is empty: give a key of at least {MIN_KEY_LEN} bytes or leave it out"
    );
    if v.len() < MIN_KEY_LEN {
        tracing::warn!("{flag} is {} bytes: use at least {MIN_KEY_LEN} random bytes (e.g. `openssl rand -hex 32`)", v.len());
    }
    Ok(Some(Key::new(v.as_bytes())))
}

/// Runs a token subcommand: prints the token on stdout.
fn issue(cmd: Command) -> anyhow::Result<()> {
    let token = match cmd {
        Command::AddUser {
            users_db,
            user,
            channels,
            group,
            update,
        } => return add_user(users_db, user, channels, group, update),
        Command::IssueSeedToken {
            seed_id,
            ttl_s,
            key,
        } => {
            anyhow::ensure!(!key.is_empty(), "--key (SHOAL_SEED_KEY) is empty");
            let exp = (ttl_s > 0).then(|| unix_now() + ttl_s);
            mint_seed_token(&Key::new(key.as_bytes()), &seed_id, exp)
        }
        Command::IssueViewerToken {
            sub,
            channels,
            ttl_s,
            group,
            key,
        } => {
            anyhow::ensure!(!key.is_empty(), "--key (SHOAL_VIEWER_KEY) is empty");
            anyhow::ensure!(
                ttl_s > 0,
                "--ttl-s must be above 0: viewer tokens always expire"
            );
            let claims = ViewerClaims {
                sub,
                exp: unix_now() + ttl_s,
                channels,
                group,
            };
            claims
                .check()
                .map_err(|e| anyhow::anyhow!("bad claims: {e}"))?;
            mint_viewer_token(&Key::new(key.as_bytes()), &claims)
        }
    };
    println!("{token}");
    Ok(())
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    shoal_signal::groups::parse_net(s)
        .ok_or_else(|| format!("`{s}` is not an address or CIDR range"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if let Some(cmd) = cli.command.take() {
        return issue(cmd);
    }
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
        auth: AuthConfig {
            viewer_key: key_arg("--viewer-key", &cli.viewer_key)?,
            seed_key: key_arg("--seed-key", &cli.seed_key)?,
            open_channels: OpenChannels::from_list(&cli.open_channel),
        },
        allow_unknown_channels: cli.allow_unknown_channels,
        admin_key: key_arg("--admin-key", &cli.admin_key)?,
        limits: Limits {
            max_conns_per_addr: cli.max_conns_per_addr,
            msgs_per_s: cli.msgs_per_s,
            msg_burst: cli.msgs_per_s.saturating_mul(2),
            relay_bytes_per_s: cli.relay_bytes_per_s,
            relay_burst_bytes: cli.relay_bytes_per_s.saturating_mul(4),
            max_swarms: cli.max_swarms,
        },
        allowed_origins: cli.allowed_origin,
        ice: IceConfig {
            stun: cli.stun,
            turn: cli.turn,
            turn_secret: cli.turn_secret,
            turn_ttl_s: cli.turn_ttl_s,
        },
        users: UsersConfig {
            db: cli.users_db,
            login_ttl_s: cli.login_ttl_s,
            failures_per_min: cli.login_failures_per_min,
            ..UsersConfig::default()
        },
        ..Config::default()
    };
    anyhow::ensure!(
        (60..=30 * 86400).contains(&config.users.login_ttl_s),
        "--login-ttl-s must be 60 to 2592000 (30 days)"
    );
    if config.users.db.is_some() && config.auth.viewer_key.is_none() {
        tracing::warn!("--users-db without --viewer-key: logins cannot issue tokens (503)");
    }
    config.ice.validate()?;
    if !config.ice.turn.is_empty() || !config.ice.stun.is_empty() {
        tracing::info!(stun = ?config.ice.stun, turn = ?config.ice.turn, ttl_s = config.ice.turn_ttl_s, "ICE servers handed to peers");
    }
    match &config.auth.viewer_key {
        None => {
            tracing::warn!("no --viewer-key: admission is off, every channel is open to anyone")
        }
        Some(_) => {
            tracing::info!(open = ?config.auth.open_channels, "viewer tokens required except on open channels")
        }
    }
    if config.auth.seed_key.is_none() {
        tracing::warn!("no --seed-key: no seed can register, viewers get no seeds");
    }
    for (flag, dir) in [
        ("--web-dir", &config.web_dir),
        ("--pkg-dir", &config.pkg_dir),
    ] {
        if let Some(d) = dir {
            anyhow::ensure!(d.is_dir(), "{flag} {} is not a directory", d.display());
        }
    }

    let listen = config.listen;
    let state = AppState::open(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "SHOAL_SIGNAL_LISTENING http://{addr}")?;
        out.flush()?;
    }
    tokio::select! {
        r = serve_state(listener, state) => r,
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted; shutting down");
            Ok(())
        }
    }
}
