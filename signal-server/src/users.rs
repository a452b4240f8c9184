//! Built-in users: for sites without a backend of their own.
//!
//! A SQLite file (`--users-db PATH`, off without it) holds users: a name,
//! an Argon2id password hash (PHC string, random salt per user), the
//! channels the user may watch (`["*"]`: all), an optional user group and a
//! disabled flag. `POST /api/login` with `{"user", "password"}` answers a
//! viewer token signed with `--viewer-key`, the same token a website's
//! backend would issue ([`crate::auth::mint_viewer_token`]): `sub` is the
//! user name, `exp` is now plus `--login-ttl-s`.
//!
//! - A wrong password and an unknown user get the same 401 and take about
//!   the same time (an unknown user is verified against a dummy hash).
//! - A disabled user gets 403, only once its password is right.
//! - Failed logins are limited per client address
//!   ([`UsersConfig::failures_per_min`]; IPv6 counted per /64); past the
//!   limit the address gets 429 without its password being looked at.
//! - Argon2 is slow and memory-hungry on purpose: hashing runs on the
//!   blocking pool, at most [`UsersConfig::max_hashing`] at once, never
//!   under the state lock; a request that waits longer than
//!   [`HASH_QUEUE_WAIT`] for its turn gets 503.
//! - The admin API (behind the admin credential) lists, creates, changes
//!   and deletes users; no response ever carries a password hash.
//!
//! Tokens are stateless: disabling or deleting a user stops its next
//! login; a token already issued lasts until it expires (at most
//! `--login-ttl-s`), unless the viewer is kicked and banned.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Argon2, Params};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path as AxPath, State as AxState};
use axum::http::{header, Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use swarm_proto::auth::{ViewerClaims, ALL_CHANNELS, MAX_TOKEN_CHANNELS};
use swarm_proto::signal::MAX_NAME_LEN;
use tokio::sync::Semaphore;

use crate::admin::{check_admin, error, json_ok};
use crate::auth::{mint_viewer_token, unix_now};
use crate::AppState;

/// Longest user name, in bytes (characters of [`valid_name`]).
pub const MAX_USER_NAME: usize = 64;
/// Shortest password, in bytes.
pub const MIN_PASSWORD: usize = 8;
/// Longest password, in bytes.
pub const MAX_PASSWORD: usize = 256;
/// Longest user group, in bytes.
pub const MAX_GROUP: usize = 64;
/// Longest JSON list of a user's channels (so its token stays well under
/// [`swarm_proto::signal::MAX_TOKEN_LEN`]).
pub const MAX_CHANNELS_JSON: usize = 2048;
/// Largest body of the login and user-management requests.
pub const MAX_BODY: usize = 4096;
/// Longest a login waits for its turn to hash before getting 503.
pub const HASH_QUEUE_WAIT: Duration = Duration::from_secs(5);
/// The window over which failed logins are counted.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// The answer to a wrong password and to an unknown user alike.
pub const WRONG_LOGIN: &str = "wrong user or password";
/// The schema version this build writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

/// Argon2id cost. The default is the `argon2` crate's recommended one
/// (19 MiB, 2 passes, 1 lane: OWASP's minimum); tests lower it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    /// Memory, KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost {
            m_kib: Params::DEFAULT_M_COST,
            t: Params::DEFAULT_T_COST,
            p: Params::DEFAULT_P_COST,
        }
    }
}

impl HashCost {
    fn hasher(&self) -> Result<Argon2<'static>, UserError> {
        let params = Params::new(self.m_kib, self.t, self.p, None)
            .map_err(|e| UserError::Hash(format!("bad Argon2 cost {self:?}: {e}")))?;
        Ok(Argon2::from(params))
    }
}

/// The built-in user store's settings.
#[derive(Clone, Debug)]
pub struct UsersConfig {
    /// The SQLite file; `None`: no built-in users (`/api/login` answers 503).
    pub db: Option<PathBuf>,
    /// Lifetime of the tokens `/api/login` issues, seconds.
    pub login_ttl_s: u64,
    /// Cost of new password hashes (and of the dummy one).
    pub hash_cost: HashCost,
    /// Failed logins one client address may make per minute (0: no limit).
    pub failures_per_min: u32,
    /// Client addresses whose failures are remembered at once.
    pub max_tracked_addrs: usize,
    /// Password hashes computed at once (each takes `hash_cost.m_kib`).
    pub max_hashing: usize,
}

/// Default lifetime of a login's token, seconds.
pub const DEFAULT_LOGIN_TTL_S: u64 = 3600;
/// Default failed logins per address per minute.
pub const DEFAULT_FAILURES_PER_MIN: u32 = 10;
/// Default number of addresses whose failures are counted.
pub const DEFAULT_MAX_TRACKED_ADDRS: usize = 10_000;

impl Default for UsersConfig {
    fn default() -> Self {
        UsersConfig {
            db: None,
            login_ttl_s: DEFAULT_LOGIN_TTL_S,
            hash_cost: HashCost::default(),
            failures_per_min: DEFAULT_FAILURES_PER_MIN,
            max_tracked_addrs: DEFAULT_MAX_TRACKED_ADDRS,
            max_hashing: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(1, 8),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user names are 1 to {MAX_USER_NAME} characters of A-Z a-z 0-9 . _ @ -")]
    BadName,
    #[error("passwords are {MIN_PASSWORD} to {MAX_PASSWORD} bytes")]
    BadPassword,
    #[error("{0}")]
    BadChannels(String),
    #[error("groups are 1 to {MAX_GROUP} bytes without control characters")]
    BadGroup,
    #[error("user {0} exists already")]
    Exists(String),
    #[error("no user {0}")]
    NotFound(String),
    #[error("users database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("password hashing: {0}")]
    Hash(String),
}

/// Whether `name` is a valid user name: 1 to [`MAX_USER_NAME`] characters
/// of `A-Z a-z 0-9 . _ @ -`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

fn check_password(password: &str) -> Result<(), UserError> {
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&password.len()) {
        Ok(())
    } else {
        Err(UserError::BadPassword)
    }
}

fn check_group(group: &str) -> Result<(), UserError> {
    if group.is_empty() || group.len() > MAX_GROUP || group.chars().any(char::is_control) {
        return Err(UserError::BadGroup);
    }
    Ok(())
}

/// Checks and normalises a channel list: non-empty names without control
/// characters, no duplicates, `*` alone when present.
pub fn normalize_channels(channels: &[String]) -> Result<Vec<String>, UserError> {
    if channels.is_empty() {
        return Err(UserError::BadChannels(
            "`channels` is empty: list channel ids, or [\"*\"] for all".into(),
        ));
    }
    if channels.iter().any(|c| c == ALL_CHANNELS) {
        return Ok(vec![ALL_CHANNELS.to_owned()]);
    }
    let mut out: Vec<String> = Vec::with_capacity(channels.len());
    for c in channels {
        if c.is_empty() || c.len() > MAX_NAME_LEN || c.chars().any(char::is_control) {
            return Err(UserError::BadChannels(format!(
                "channel ids are 1 to {MAX_NAME_LEN} bytes without control characters"
            )));
        }
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    if out.len() > MAX_TOKEN_CHANNELS {
        return Err(UserError::BadChannels(format!(
            "more than {MAX_TOKEN_CHANNELS} channels"
        )));
    }
    let json = serde_json::to_string(&out).expect("strings serialize");
    if json.len() > MAX_CHANNELS_JSON {
        return Err(UserError::BadChannels(format!(
            "the channel list is over {MAX_CHANNELS_JSON} bytes as JSON (a token must stay small); use [\"*\"] or fewer channels"
        )));
    }
    Ok(out)
}

/// A user as the admin API shows it (never its hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserView {
    pub name: String,
    pub channels: Vec<String>,
    pub group: Option<String>,
    pub disabled: bool,
    /// Unix seconds.
    pub created: u64,
    pub updated: u64,
}

/// A user to create.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    pub channels: Vec<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub disabled: bool,
}

/// Changes to a user; absent fields stay. `group: ""` removes the group.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub disabled: Option<bool>,
}

/// What a login attempt came to.
#[derive(Debug)]
pub enum LoginOutcome {
    Ok(UserView),
    /// The password is right but the user is disabled.
    Disabled(UserView),
    /// Unknown user or wrong password (told apart only in the log).
    Wrong {
        known_user: bool,
    },
}

/// The SQLite user store. Every method blocks (SQLite, Argon2): call them
/// from `spawn_blocking`. Hashing happens outside the connection's lock.
pub struct UserStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    cost: HashCost,
    /// A hash of a random password, verified against when the user does
    /// not exist, so that unknown users take as long as wrong passwords.
    dummy_hash: String,
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("path", &self.path)
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

const USER_COLUMNS: &str = "name, channels, user_group, disabled, created, updated";

fn row_to_view(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserView> {
    let channels: String = row.get(1)?;
    Ok(UserView {
        name: row.get(0)?,
        channels: serde_json::from_str(&channels).unwrap_or_default(),
        group: row.get(2)?,
        disabled: row.get::<_, i64>(3)? != 0,
        created: row.get::<_, i64>(4)?.max(0) as u64,
        updated: row.get::<_, i64>(5)?.max(0) as u64,
    })
}

impl UserStore {
    /// Opens (creating when missing, readable by its owner only) the user
    /// database at `path`, in WAL mode.
    pub fn open(path: &Path, cost: HashCost) -> Result<UserStore, UserError> {
        let hasher = cost.hasher()?;
        #[cfg(unix)]
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            // Created 0600 before SQLite sees it (its -wal and -shm files
            // take the same mode). Racing another creator is harmless.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), %mode, "users database: WAL mode refused; using {mode}");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(UserError::Db(rusqlite::Error::InvalidParameterName(
                format!(
                "{} has schema version {version}, newer than this shoal-signal's {SCHEMA_VERSION}",
                path.display()
            ),
            )));
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (
                name          TEXT NOT NULL PRIMARY KEY COLLATE NOCASE,
                password_hash TEXT NOT NULL,
                channels      TEXT NOT NULL,
                user_group    TEXT,
                disabled      INTEGER NOT NULL DEFAULT 0,
                created       INTEGER NOT NULL,
                updated       INTEGER NOT NULL
            );",
        )?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        let dummy: [u8; 16] = rand::random();
        let dummy_hash = hasher
            .hash_password(&dummy)
            .map_err(|e| UserError::Hash(e.to_string()))?
            .to_string();
        Ok(UserStore {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            cost,
            dummy_hash,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hash(&self, password: &str) -> Result<String, UserError> {
        check_password(password)?;
        Ok(self
            .cost
            .hasher()?
            .hash_password(password.as_bytes())
            .map_err(|e| UserError::Hash(e.to_string()))?
            .to_string())
    }

    /// Adds a user.
    pub fn create(&self, user: NewUser) -> Result<UserView, UserError> {
        if !valid_name(&user.name) {
            return Err(UserError::BadName);
        }
        let channels = normalize_channels(&user.channels)?;
        if let Some(g) = &user.group {
            check_group(g)?;
        }
        let hash = self.hash(&user.password)?;
        let now = unix_now() as i64;
        let channels_json = serde_json::to_string(&channels).expect("strings serialize");
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT INTO users (name, password_hash, channels, user_group, disabled, created, updated)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (name) DO NOTHING",
            params![user.name, hash, channels_json, user.group, user.disabled as i64, now],
        )?;
        if inserted == 0 {
            return Err(UserError::Exists(user.name));
        }
        Ok(UserView {
            name: user.name,
            channels,
            group: user.group,
            disabled: user.disabled,
            created: now as u64,
            updated: now as u64,
        })
    }

    /// One user (names match regardless of case).
    pub fn get(&self, name: &str) -> Result<Option<UserView>, UserError> {
        if !valid_name(name) {
            return Ok(None);
        }
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                params![name],
                row_to_view,
            )
            .optional()?)
    }

    /// Every user, by name.
    pub fn list(&self) -> Result<Vec<UserView>, UserError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))?;
        let users = stmt
            .query_map([], row_to_view)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(users)
    }

    /// Changes a user's password, channels, group or disabled flag.
    pub fn update(&self, name: &str, update: UserUpdate) -> Result<UserView, UserError> {
        if !valid_name(name) {
            return Err(UserError::BadName);
        }
        let channels = update
            .channels
            .as_deref()
            .map(normalize_channels)
            .transpose()?;
        // "" removes the group.
        let group = match update.group.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(g) => {
                check_group(g)?;
                Some(Some(g.to_owned()))
            }
        };
        let hash = update
            .password
            .as_deref()
            .map(|p| self.hash(p))
            .transpose()?;
        let now = unix_now() as i64;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM users WHERE name = ?1", params![name], |_| {
                Ok(())
            })
            .optional()?
            .is_some();
        if !exists {
            return Err(UserError::NotFound(name.to_owned()));
        }
        if let Some(h) = hash {
            tx.execute(
                "UPDATE users SET password_hash = ?2 WHERE name = ?1",
                params![name, h],
            )?;
        }
        if let Some(c) = channels {
            let json = serde_json::to_string(&c).expect("strings serialize");
            tx.execute(
                "UPDATE users SET channels = ?2 WHERE name = ?1",
                params![name, json],
            )?;
        }
        if let Some(g) = group {
            tx.execute(
                "UPDATE users SET user_group = ?2 WHERE name = ?1",
                params![name, g],
            )?;
        }
        if let Some(d) = update.disabled {
            tx.execute(
                "UPDATE users SET disabled = ?2 WHERE name = ?1",
                params![name, d as i64],
            )?;
        }
        tx.execute(
            "UPDATE users SET updated = ?2 WHERE name = ?1",
            params![name, now],
        )?;
        let view = tx.query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
            params![name],
            row_to_view,
        )?;
        tx.commit()?;
        Ok(view)
    }

    /// Removes a user.
    pub fn delete(&self, name: &str) -> Result<(), UserError> {
        if !valid_name(name) {
            return Err(UserError::BadName);
        }
        let n = self
            .conn()
            .execute("DELETE FROM users WHERE name = ?1", params![name])?;
        if n == 0 {
            return Err(UserError::NotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Checks a login. An unknown (or impossible) name is verified against
    /// the dummy hash, so it costs what a wrong password costs.
    pub fn check_login(&self, name: &str, password: &str) -> Result<LoginOutcome, UserError> {
        let row: Option<(UserView, String)> = if valid_name(name) {
            self.conn()
                .query_row(
                    &format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = ?1"),
                    params![name],
                    |r| Ok((row_to_view(r)?, r.get::<_, String>(6)?)),
                )
                .optional()?
        } else {
            None
        };
        // The password is bounded before hashing (the body is too).
        let pw = &password.as_bytes()[..password.len().min(MAX_PASSWORD + 1)];
        let (hash, user) = match &row {
            Some((u, h)) => (h.as_str(), Some(u)),
            None => (self.dummy_hash.as_str(), None),
        };
        let verified =
            Argon2::default().verify_password(pw, hash).is_ok() && password.len() <= MAX_PASSWORD;
        Ok(match (user, verified) {
            (Some(u), true) if u.disabled => LoginOutcome::Disabled(u.clone()),
            (Some(u), true) => LoginOutcome::Ok(u.clone()),
            (known, _) => LoginOutcome::Wrong {
                known_user: known.is_some(),
            },
        })
    }
}

/// Failed logins per client address over [`FAILURE_WINDOW`], in a table
/// of bounded size.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    max_addrs: usize,
    window: Duration,
    table: HashMap<IpAddr, Failures>,
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    since: Instant,
    count: u32,
}

/// What recording a failure did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureRecorded {
    /// This failure reached the limit: the address is refused until the
    /// window ends.
    pub now_limited: bool,
    /// The table was full: the address with the oldest window was dropped.
    pub evicted: bool,
}

/// The key an address is counted under: IPv4 as is, IPv6 by its /64 (one
/// home or host gets a whole /64).
pub fn limiter_key(addr: IpAddr) -> IpAddr {
    match addr.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl LoginLimiter {
    pub fn new(max_failures: u32, max_addrs: usize, window: Duration) -> LoginLimiter {
        LoginLimiter {
            max_failures,
            max_addrs: max_addrs.max(1),
            window,
            table: HashMap::new(),
        }
    }

    /// `Err(retry_after)` when `addr` has used its failures in this window.
    pub fn check(&mut self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let key = limiter_key(addr);
        match self.table.get(&key) {
            Some(f) if now.duration_since(f.since) >= self.window => {
                self.table.remove(&key);
                Ok(())
            }
            Some(f) if f.count >= self.max_failures => {
                Err(self.window.saturating_sub(now.duration_since(f.since)))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed login of `addr`.
    pub fn failed(&mut self, addr: IpAddr, now: Instant) -> FailureRecorded {
        let mut out = FailureRecorded::default();
        if self.max_failures == 0 {
            return out;
        }
        let key = limiter_key(addr);
        if !self.table.contains_key(&key) && self.table.len() >= self.max_addrs {
            let window = self.window;
            self.table
                .retain(|_, f| now.duration_since(f.since) < window);
            if self.table.len() >= self.max_addrs {
                if let Some(oldest) = self
                    .table
                    .iter()
                    .min_by_key(|(_, f)| f.since)
                    .map(|(k, _)| *k)
                {
                    self.table.remove(&oldest);
                    out.evicted = true;
                }
            }
        }
        let f = self.table.entry(key).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now.duration_since(f.since) >= self.window {
            *f = Failures {
                since: now,
                count: 0,
            };
        }
        f.count = f.count.saturating_add(1);
        out.now_limited = f.count == self.max_failures;
        out
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

/// What the server keeps for the built-in users.
pub(crate) struct Users {
    pub(crate) store: Option<Arc<UserStore>>,
    limiter: Mutex<LoginLimiter>,
    hashing: Semaphore,
}

impl Users {
    pub(crate) fn new(config: &UsersConfig, store: Option<UserStore>) -> Users {
        Users {
            store: store.map(Arc::new),
            limiter: Mutex::new(LoginLimiter::new(
                config.failures_per_min,
                config.max_tracked_addrs,
                FAILURE_WINDOW,
            )),
            hashing: Semaphore::new(config.max_hashing.max(1)),
        }
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, LoginLimiter> {
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Opens the user store `config` names, off the async runtime.
pub async fn open_store(config: &UsersConfig) -> anyhow::Result<Option<UserStore>> {
    let Some(path) = config.db.clone() else {
        return Ok(None);
    };
    let cost = config.hash_cost;
    let shown = path.display().to_string();
    let store = tokio::task::spawn_blocking(move || UserStore::open(&path, cost))
        .await?
        .map_err(|e| anyhow::anyhow!("cannot open the users database {shown}: {e}"))?;
    Ok(Some(store))
}

fn status_of(e: &UserError) -> StatusCode {
    match e {
        UserError::BadName
        | UserError::BadPassword
        | UserError::BadChannels(_)
        | UserError::BadGroup => StatusCode::BAD_REQUEST,
        UserError::Exists(_) => StatusCode::CONFLICT,
        UserError::NotFound(_) => StatusCode::NOT_FOUND,
        UserError::Db(_) | UserError::Hash(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn user_error(e: UserError) -> Response {
    let status = status_of(&e);
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "users database");
        return error(
            status,
            "internal error in the users database (see the server log)",
        );
    }
    error(status, e.to_string())
}

fn no_store_db() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "no built-in users: start shoal-signal with --users-db",
    )
}

#[allow(clippy::result_large_err)] // an axum Response, returned at once
fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Response> {
    let bytes = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            error(status, format!("the body is over {MAX_BODY} bytes"))
        } else {
            error(status, e.body_text())
        }
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

/// Runs blocking user-store work on the blocking pool; `hash`: it hashes a
/// password, so it waits for one of the hashing slots first.
async fn blocking<T: Send + 'static>(
    app: &AppState,
    hash: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    let _permit = if hash {
        match tokio::time::timeout(HASH_QUEUE_WAIT, app.users().hashing.acquire()).await {
            Ok(Ok(p)) => Some(p),
            _ => {
                tracing::warn!(
                    slots = app.config().users.max_hashing,
                    "limit: password hashing busy for {} s; request refused",
                    HASH_QUEUE_WAIT.as_secs()
                );
                app.metrics().limit("login_busy");
                return Err(error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many logins at once: try again shortly",
                ));
            }
        }
    } else {
        None
    };
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "users: blocking task failed");
        error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    user: String,
    password: String,
}

#[derive(Serialize)]
struct LoginResponse {
    token: String,
    /// Unix second the token expires.
    expires_at: u64,
    user: String,
    channels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
}

fn client_addr(app: &AppState, headers: &HeaderMap, extensions: &Extensions) -> IpAddr {
    let peer = extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map_or(
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            |ConnectInfo(a)| a.ip(),
        );
    let xff = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    app.client_addr(peer, xff)
}

/// `POST /api/login`: `{"user", "password"}` to a viewer token.
pub(crate) async fn login(
    AxState(app): AxState<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(store) = app.users().store.clone() else {
        return no_store_db();
    };
    let Some(key) = app.config().auth.viewer_key.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "logins cannot issue tokens: start shoal-signal with --viewer-key",
        );
    };
    let req: LoginRequest = match parse_body(body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let addr = client_addr(&app, &headers, &extensions);
    if let Err(retry) = app.users().limiter().check(addr, Instant::now()) {
        app.metrics().limit("login_failures");
        let secs = retry.as_secs().max(1);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                (header::RETRY_AFTER, secs.to_string()),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
            axum::Json(serde_json::json!({
                "error": format!("too many failed logins from your address: try again in {secs} s")
            })),
        )
            .into_response();
    }
    let LoginRequest { user, password } = req;
    let name = user.clone();
    let outcome = match blocking(&app, true, move || store.check_login(&name, &password)).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return user_error(e),
        Err(r) => return r,
    };
    // Only valid names reach the log and the event list.
    let shown = if valid_name(&user) {
        user.as_str()
    } else {
        "<not a valid name>"
    };
    match outcome {
        LoginOutcome::Ok(u) => {
            let exp = unix_now().saturating_add(app.config().users.login_ttl_s);
            let claims = ViewerClaims {
                sub: u.name.clone(),
                exp,
                channels: u.channels.clone(),
                group: u.group.clone(),
            };
            if let Err(e) = claims.check() {
                tracing::error!(user = %u.name, error = %e, "login: the stored user makes bad claims");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "this user's record is not usable",
                );
            }
            let token = mint_viewer_token(&key, &claims);
            tracing::info!(user = %u.name, %addr, exp, "login");
            app.lock()
                .event("login", None, format!("{} logged in from {addr}", u.name));
            json_ok(LoginResponse {
                token,
                expires_at: exp,
                user: u.name,
                channels: u.channels,
                group: u.group,
            })
        }
        LoginOutcome::Disabled(u) => {
            tracing::info!(user = %u.name, %addr, "login refused: the user is disabled");
            error(
                StatusCode::FORBIDDEN,
                format!("user {} is disabled", u.name),
            )
        }
        LoginOutcome::Wrong { known_user } => {
            let rec = app.users().limiter().failed(addr, Instant::now());
            tracing::info!(user = shown, known_user, %addr, "login failed");
            if rec.evicted {
                tracing::warn!(
                    max = app.config().users.max_tracked_addrs,
                    "limit: failed-login table full; forgot the address with the oldest window"
                );
                app.metrics().limit("login_addrs");
            }
            if rec.now_limited {
                let max = app.config().users.failures_per_min;
                tracing::warn!(
                    %addr,
                    max,
                    "limit: {max} failed logins in {} s; the address is refused logins until the window ends",
                    FAILURE_WINDOW.as_secs()
                );
                app.metrics().limit("login_failures");
                app.lock().event(
                    "login_limited",
                    None,
                    format!("{addr}: {max} failed logins in a minute"),
                );
            }
            error(StatusCode::UNAUTHORIZED, WRONG_LOGIN)
        }
    }
}

#[allow(clippy::result_large_err)] // an axum Response, returned at once
fn admin_store(app: &AppState, headers: &HeaderMap) -> Result<Arc<UserStore>, Response> {
    check_admin(app, headers)?;
    app.users().store.clone().ok_or_else(no_store_db)
}

/// `GET /api/admin/users`.
pub(crate) async fn list(AxState(app): AxState<AppState>, headers: HeaderMap) -> Response {
    let store = match admin_store(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    match blocking(&app, false, move || store.list()).await {
        Ok(Ok(users)) => json_ok(serde_json::json!({ "users": users })),
        Ok(Err(e)) => user_error(e),
        Err(r) => r,
    }
}

/// `POST /api/admin/users`: `{name, password, channels, group?, disabled?}`.
pub(crate) async fn create(
    AxState(app): AxState<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let store = match admin_store(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let new: NewUser = match parse_body(body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    match blocking(&app, true, move || store.create(new)).await {
        Ok(Ok(u)) => {
            tracing::info!(user = %u.name, channels = ?u.channels, "user created");
            app.lock()
                .event("user", None, format!("user {} created", u.name));
            let mut r = json_ok(u);
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        Ok(Err(e)) => user_error(e),
        Err(r) => r,
    }
}

/// `PUT /api/admin/users/{name}`: `{password?, channels?, group?, disabled?}`.
pub(crate) async fn update(
    AxState(app): AxState<AppState>,
    AxPath(name): AxPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let store = match admin_store(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let upd: UserUpdate = match parse_body(body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let what: Vec<&str> = [
        ("password", upd.password.is_some()),
        ("channels", upd.channels.is_some()),
        ("group", upd.group.is_some()),
        ("disabled", upd.disabled.is_some()),
    ]
    .into_iter()
    .filter_map(|(w, set)| set.then_some(w))
    .collect();
    let what = what.join(", ");
    let hash = upd.password.is_some();
    match blocking(&app, hash, move || store.update(&name, upd)).await {
        Ok(Ok(u)) => {
            tracing::info!(user = %u.name, changed = %what, disabled = u.disabled, "user changed");
            app.lock()
                .event("user", None, format!("user {} changed: {what}", u.name));
            json_ok(u)
        }
        Ok(Err(e)) => user_error(e),
        Err(r) => r,
    }
}

/// `DELETE /api/admin/users/{name}`.
pub(crate) async fn delete(
    AxState(app): AxState<AppState>,
    AxPath(name): AxPath<String>,
    headers: HeaderMap,
) -> Response {
    let store = match admin_store(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let n = name.clone();
    match blocking(&app, false, move || store.delete(&n)).await {
        Ok(Ok(())) => {
            tracing::info!(user = %name, "user deleted");
            app.lock()
                .event("user", None, format!("user {name} deleted"));
            json_ok(serde_json::json!({ "deleted": name }))
        }
        Ok(Err(e)) => user_error(e),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    fn temp_db(tag: &str) -> PathBuf {
        let n: u64 = rand::random();
        std::env::temp_dir().join(format!(
            "shoal-users-unit-{tag}-{}-{n:x}.db",
            std::process::id()
        ))
    }

    fn cleanup(p: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limiter_counts_per_address_and_forgets_after_the_window() {
        let mut l = LoginLimiter::new(3, 100, Duration::from_secs(60));
        let t0 = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for i in 0..3 {
            assert!(l.check(a, t0).is_ok());
            let r = l.failed(a, t0);
            assert_eq!(r.now_limited, i == 2);
        }
        let retry = l.check(a, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(retry, Duration::from_secs(50));
        // Another address is not touched.
        assert!(l.check(b, t0).is_ok());
        // The window ends.
        assert!(l.check(a, t0 + Duration::from_secs(60)).is_ok());
        assert!(!l.failed(a, t0 + Duration::from_secs(61)).now_limited);
    }

    #[test]
    fn limiter_groups_ipv6_by_64_and_maps_v4() {
        assert_eq!(
            limiter_key(ip("2001:db8:1:2:aaaa::1")),
            limiter_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            limiter_key(ip("2001:db8:1:2::1")),
            limiter_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limiter_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        let mut l = LoginLimiter::new(1, 100, Duration::from_secs(60));
        let t0 = Instant::now();
        l.failed(ip("2001:db8::1"), t0);
        assert!(l.check(ip("2001:db8::2"), t0).is_err());
    }

    #[test]
    fn limiter_table_is_bounded() {
        let mut l = LoginLimiter::new(5, 3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3u8 {
            let r = l.failed(
                IpAddr::from([10, 0, 0, i]),
                t0 + Duration::from_secs(i.into()),
            );
            assert!(!r.evicted);
        }
        let r = l.failed(ip("10.0.0.9"), t0 + Duration::from_secs(5));
        assert!(r.evicted);
        assert_eq!(l.len(), 3);
        // Expired windows go first, without evicting a live one.
        let r = l.failed(ip("10.0.0.10"), t0 + Duration::from_secs(61));
        assert!(!r.evicted);
        assert!(l.len() <= 3);
        // No limit: nothing is kept.
        let mut off = LoginLimiter::new(0, 3, Duration::from_secs(60));
        off.failed(ip("10.0.0.1"), t0);
        assert!(off.is_empty());
        assert!(off.check(ip("10.0.0.1"), t0).is_ok());
    }

    #[test]
    fn names_channels_and_groups_are_bounded() {
        assert!(valid_name("alice.b-c_d@example.com"));
        for bad in ["", "a b", "é", "a/b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(
            normalize_channels(&["a".into(), "*".into()]).unwrap(),
            vec!["*"]
        );
        assert_eq!(
            normalize_channels(&["a".into(), "b".into(), "a".into()]).unwrap(),
            vec!["a", "b"]
        );
        assert!(normalize_channels(&[]).is_err());
        assert!(normalize_channels(&["".into()]).is_err());
        assert!(normalize_channels(&["a\nb".into()]).is_err());
        let many: Vec<String> = (0..200).map(|i| format!("channel-{i:04}")).collect();
        assert!(normalize_channels(&many).is_err());
        assert!(check_group("gold").is_ok());
        assert!(check_group("").is_err());
        assert!(check_group(&"g".repeat(65)).is_err());
    }

    #[test]
    fn store_creates_verifies_updates_and_deletes() {
        let path = temp_db("store");
        let s = UserStore::open(&path, CHEAP).unwrap();
        let u = s
            .create(NewUser {
                name: "Alice".into(),
                password: "correct horse".into(),
                channels: vec!["news".into()],
                group: Some("gold".into()),
                disabled: false,
            })
            .unwrap();
        assert_eq!(u.channels, vec!["news"]);
        // Names are unique regardless of case.
        let dup = s.create(NewUser {
            name: "alice".into(),
            password: "another one".into(),
            channels: vec!["*".into()],
            group: None,
            disabled: false,
        });
        assert!(matches!(dup, Err(UserError::Exists(_))));
        assert!(matches!(
            s.check_login("alice", "correct horse").unwrap(),
            LoginOutcome::Ok(v) if v.name == "Alice"
        ));
        assert!(matches!(
            s.check_login("Alice", "wrong horse").unwrap(),
            LoginOutcome::Wrong { known_user: true }
        ));
        assert!(matches!(
            s.check_login("nobody", "correct horse").unwrap(),
            LoginOutcome::Wrong { known_user: false }
        ));
        assert!(matches!(
            s.check_login("not a name!", "correct horse").unwrap(),
            LoginOutcome::Wrong { known_user: false }
        ));
        // The stored hash is Argon2id with a salt, not the password.
        let stored: String = s
            .conn()
            .query_row("SELECT password_hash FROM users", [], |r| r.get(0))
            .unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));

        let v = s
            .update(
                "alice",
                UserUpdate {
                    password: Some("battery staple".into()),
                    channels: Some(vec!["sport".into(), "news".into()]),
                    group: Some(String::new()),
                    disabled: Some(true),
                },
            )
            .unwrap();
        assert_eq!(v.channels, vec!["sport", "news"]);
        assert_eq!(v.group, None);
        assert!(v.disabled);
        assert!(matches!(
            s.check_login("alice", "battery staple").unwrap(),
            LoginOutcome::Disabled(_)
        ));
        assert!(matches!(
            s.check_login("alice", "correct horse").unwrap(),
            LoginOutcome::Wrong { .. }
        ));
        assert!(matches!(
            s.update("bob", UserUpdate::default()),
            Err(UserError::NotFound(_))
        ));
        assert!(matches!(
            s.update(
                "alice",
                UserUpdate {
                    password: Some("short".into()),
                    ..UserUpdate::default()
                }
            ),
            Err(UserError::BadPassword)
        ));
        assert_eq!(s.list().unwrap().len(), 1);
        s.delete("ALICE").unwrap();
        assert!(matches!(s.delete("alice"), Err(UserError::NotFound(_))));
        assert!(s.list().unwrap().is_empty());
        let mode: String = s
            .conn()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(s);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(m & 0o077, 0, "mode {m:o}");
        }
        cleanup(&path);
    }

    #[test]
    fn production_cost_is_the_crates_default() {
        let c = HashCost::default();
        assert_eq!((c.m_kib, c.t, c.p), (19 * 1024, 2, 1));
        assert_eq!(
            Params::default().m_cost(),
            c.m_kib,
            "the argon2 crate's recommended memory cost"
        );
    }
}
