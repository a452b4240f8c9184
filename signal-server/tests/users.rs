//! Built-in users against a running server: the admin API creates, changes
//! and deletes users; `POST /api/login` issues viewer tokens that the
//! WebSocket admits (and refuses on channels the user may not watch);
//! wrong and unknown users look the same; disabled users are refused;
//! failed logins are limited per address; the file survives a restart; the
//! `add-user` subcommand writes the same file. No response carries a
//! password hash or a password.
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use shoal_signal::auth::unix_now;
use shoal_signal::users::{HashCost, UsersConfig, WRONG_LOGIN};
use shoal_signal::{AuthConfig, Config, Key};
use swarm_proto::signal::{ClientMsg, RefuseReason, ServerMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: &str = "test-admin-key-test-admin-key-01";
/// Argon2 made cheap for tests (production uses the crate's default).
const CHEAP: HashCost = HashCost {
    m_kib: 64,
    t: 1,
    p: 1,
};
const PASSWORD: &str = "correct horse battery";

/// A database file in the temp dir, removed (with its WAL files) on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(tag: &str) -> TempDb {
        let n: u64 = rand::random();
        TempDb(
            std::env::temp_dir().join(format!("shoal-users-{tag}-{}-{n:x}.db", std::process::id())),
        )
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

fn config(db: &Path) -> Config {
    Config {
        auth: AuthConfig {
            viewer_key: Some(Key::new(VIEWER_KEY)),
            seed_key: Some(Key::new(SEED_KEY)),
            ..AuthConfig::default()
        },
        admin_key: Some(Key::new(ADMIN)),
        users: UsersConfig {
            db: Some(db.to_owned()),
            hash_cost: CHEAP,
            failures_per_min: 3,
            ..UsersConfig::default()
        },
        ..test_config()
    }
}

/// Checks that a body shows no hash and no password, then parses it.
fn parsed(body: &str) -> serde_json::Value {
    for secret in ["$argon2", "password_hash", PASSWORD, "new password 42"] {
        assert!(
            !body.contains(secret),
            "a response shows {secret:?}: {body}"
        );
    }
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A request with an optional `X-Forwarded-For`; (status, head, JSON body).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    forwarded_for: Option<&str>,
    body: Option<&str>,
) -> (u16, String, serde_json::Value) {
    let (status, head, body) = match forwarded_for {
        None => http(addr, method, path, bearer, body).await,
        Some(xff) => raw(addr, method, path, xff, body.unwrap_or("")).await,
    };
    (status, head, parsed(&body))
}

async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    xff: &str,
    body: &str,
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nX-Forwarded-For: {xff}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "unexpected chunked body"
    );
    (status, head.to_ascii_lowercase(), body.to_owned())
}

async fn create_user(addr: SocketAddr, name: &str, channels: &[&str], group: Option<&str>) {
    let body = serde_json::json!({
        "name": name, "password": PASSWORD, "channels": channels, "group": group,
    });
    let (status, _, v) = call(
        addr,
        "POST",
        "/api/admin/users",
        Some(ADMIN),
        None,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["name"], name);
}

async fn login(addr: SocketAddr, user: &str, password: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "user": user, "password": password }).to_string();
    let (status, head, v) = call(addr, "POST", "/api/login", None, None, Some(&body)).await;
    assert!(head.contains("cache-control: no-store"), "{head}");
    (status, v)
}

fn refusal(m: &ServerMsg) -> (Option<String>, RefuseReason) {
    match m {
        ServerMsg::Refused { swarm, reason, .. } => (swarm.clone(), *reason),
        other => panic!("expected refused, got {other:?}"),
    }
}

#[tokio::test]
async fn a_user_logs_in_and_its_token_joins_only_its_channels() {
    let db = TempDb::new("join");
    let addr = start(config(&db.0)).await;
    create_user(addr, "alice", &["news"], Some("gold")).await;

    let before = unix_now();
    let (status, v) = login(addr, "alice", PASSWORD).await;
    assert_eq!(status, 200, "{v}");
    let exp = v["expires_at"].as_u64().unwrap();
    assert!(exp >= before + 3600 && exp <= unix_now() + 3600, "{v}");
    assert_eq!(v["user"], "alice");
    assert_eq!(v["channels"], serde_json::json!(["news"]));
    assert_eq!(v["group"], "gold");
    let token = v["token"].as_str().unwrap().to_owned();

    let (mut c, first) = Client::viewer_with_token(addr, Some(token)).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    c.join("news").await;
    c.send(&ClientMsg::Join {
        swarm: "sport".into(),
    })
    .await;
    assert_eq!(
        refusal(&c.recv().await),
        (Some("sport".into()), RefuseReason::NotEntitled)
    );
    c.ping().await;

    // The admin view of the viewer shows the user and its group.
    let (status, _, v) = call(addr, "GET", "/api/admin/viewers", Some(ADMIN), None, None).await;
    assert_eq!(status, 200);
    let text = v.to_string();
    assert!(text.contains("alice") && text.contains("gold"), "{text}");

    // A user allowed everything joins anything.
    create_user(addr, "bob", &["*"], None).await;
    let (_, v) = login(addr, "BOB", PASSWORD).await;
    assert_eq!(v["user"], "bob", "names match regardless of case: {v}");
    assert!(v.get("group").is_none(), "{v}");
    let (mut b, _) =
        Client::viewer_with_token(addr, Some(v["token"].as_str().unwrap().into())).await;
    b.join("sport").await;
}

#[tokio::test]
async fn wrong_and_unknown_users_get_the_same_401_and_disabled_users_403() {
    let db = TempDb::new("wrong");
    let mut cfg = config(&db.0);
    cfg.users.failures_per_min = 0;
    let addr = start(cfg).await;
    create_user(addr, "alice", &["news"], None).await;

    let (s1, wrong) = login(addr, "alice", "not the password").await;
    let (s2, unknown) = login(addr, "mallory", PASSWORD).await;
    let (s3, invalid) = login(addr, "not a valid name/", PASSWORD).await;
    let (s4, too_long) = login(addr, "alice", &"x".repeat(300)).await;
    assert_eq!((s1, s2, s3, s4), (401, 401, 401, 401));
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, invalid);
    assert_eq!(wrong, too_long);
    assert_eq!(wrong["error"], WRONG_LOGIN);

    // Disabled: 403 with the right password only (a wrong one learns nothing).
    let (status, _, v) = call(
        addr,
        "PUT",
        "/api/admin/users/alice",
        Some(ADMIN),
        None,
        Some(r#"{"disabled": true}"#),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["disabled"], true);
    let (status, v) = login(addr, "alice", PASSWORD).await;
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("disabled"), "{v}");
    let (status, v) = login(addr, "alice", "not the password").await;
    assert_eq!((status, v), (401, wrong.clone()));

    // Enabled again with a new password and channel.
    let (status, _, v) = call(
        addr,
        "PUT",
        "/api/admin/users/alice",
        Some(ADMIN),
        None,
        Some(r#"{"disabled": false, "password": "new password 42", "channels": ["sport"]}"#),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(login(addr, "alice", PASSWORD).await.0, 401);
    let (status, v) = login(addr, "alice", "new password 42").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["channels"], serde_json::json!(["sport"]));

    // Deleted: like an unknown user.
    let (status, _, _) = call(
        addr,
        "DELETE",
        "/api/admin/users/alice",
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(login(addr, "alice", "new password 42").await, (401, wrong));
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_refused() {
    let db = TempDb::new("bodies");
    let addr = start(config(&db.0)).await;
    for body in [
        "",
        "not json",
        r#"{"user": "alice"}"#,
        r#"{"user": "alice", "password": "x", "extra": 1}"#,
        r#"{"user": 5, "password": "x"}"#,
    ] {
        let (status, _, v) = call(addr, "POST", "/api/login", None, None, Some(body)).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v["error"].is_string());
    }
    let big = format!(r#"{{"user": "alice", "password": "{}"}}"#, "x".repeat(5000));
    let (status, _, v) = call(addr, "POST", "/api/login", None, None, Some(&big)).await;
    assert_eq!(status, 413, "{v}");
    // Malformed bodies are not failed logins: the address is not limited.
    create_user(addr, "alice", &["news"], None).await;
    assert_eq!(login(addr, "alice", PASSWORD).await.0, 200);

    // The admin API checks what it stores.
    for (body, want) in [
        (
            r#"{"name": "a b", "password": "long enough", "channels": ["x"]}"#,
            400,
        ),
        (
            r#"{"name": "carol", "password": "short", "channels": ["x"]}"#,
            400,
        ),
        (
            r#"{"name": "carol", "password": "long enough", "channels": []}"#,
            400,
        ),
        (
            r#"{"name": "carol", "password": "long enough", "channels": ["x"], "group": ""}"#,
            400,
        ),
        (r#"{"name": "carol", "password": "long enough"}"#, 400),
        (
            r#"{"name": "ALICE", "password": "long enough", "channels": ["x"]}"#,
            409,
        ),
    ] {
        let (status, _, v) = call(
            addr,
            "POST",
            "/api/admin/users",
            Some(ADMIN),
            None,
            Some(body),
        )
        .await;
        assert_eq!(status, want, "{body}: {v}");
    }
    let (status, _, _) = call(
        addr,
        "PUT",
        "/api/admin/users/nobody",
        Some(ADMIN),
        None,
        Some("{}"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = call(
        addr,
        "DELETE",
        "/api/admin/users/nobody",
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(status, 404);
    let big = format!(r#"{{"channels": ["{}"]}}"#, "c".repeat(5000));
    let (status, _, _) = call(
        addr,
        "PUT",
        "/api/admin/users/alice",
        Some(ADMIN),
        None,
        Some(&big),
    )
    .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn failed_logins_are_limited_per_address() {
    let db = TempDb::new("limit");
    let mut cfg = config(&db.0);
    // Behind a trusted proxy, X-Forwarded-For tells clients apart.
    cfg.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let addr = start(cfg).await;
    create_user(addr, "alice", &["news"], None).await;
    let good = serde_json::json!({ "user": "alice", "password": PASSWORD }).to_string();
    let bad = serde_json::json!({ "user": "alice", "password": "guess guess" }).to_string();
    let (a, b) = (Some("203.0.113.7"), Some("198.51.100.9"));

    for _ in 0..3 {
        let (status, _, _) = call(addr, "POST", "/api/login", None, a, Some(&bad)).await;
        assert_eq!(status, 401);
    }
    // Over the limit even the right password is refused, without a look.
    let (status, head, v) = call(addr, "POST", "/api/login", None, a, Some(&good)).await;
    assert_eq!(status, 429, "{v}");
    let retry: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .expect("a retry-after header")
        .trim()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another address is not affected, and a success does not reset A.
    let (status, _, v) = call(addr, "POST", "/api/login", None, b, Some(&good)).await;
    assert_eq!(status, 200, "{v}");
    let (status, _, _) = call(addr, "POST", "/api/login", None, a, Some(&good)).await;
    assert_eq!(status, 429);

    let (status, _, text) = http(addr, "GET", "/metrics", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    let hits = text
        .lines()
        .find(|l| l.contains("limit_hits") && l.contains("login_failures"))
        .unwrap_or_else(|| panic!("no login_failures limit hits in\n{text}"));
    let n: f64 = hits.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 3.0, "{hits}");
    let (_, _, v) = call(addr, "GET", "/api/admin/events", Some(ADMIN), None, None).await;
    assert!(v.to_string().contains("login_limited"), "{v}");
}

#[tokio::test]
async fn admin_user_endpoints_need_the_admin_key() {
    let db = TempDb::new("admin");
    let addr = start(config(&db.0)).await;
    let create = r#"{"name": "eve", "password": "long enough", "channels": ["*"]}"#;
    let calls: [(&str, &str, Option<&str>); 4] = [
        ("GET", "/api/admin/users", None),
        ("POST", "/api/admin/users", Some(create)),
        ("PUT", "/api/admin/users/eve", Some(r#"{"disabled": true}"#)),
        ("DELETE", "/api/admin/users/eve", None),
    ];
    for (method, path, body) in calls {
        for bearer in [None, Some("wrong-key")] {
            let (status, _, v) = call(addr, method, path, bearer, None, body).await;
            assert_eq!(status, 401, "{method} {path} {bearer:?}: {v}");
        }
    }
    let (_, _, v) = call(addr, "GET", "/api/admin/users", Some(ADMIN), None, None).await;
    assert_eq!(v["users"], serde_json::json!([]), "nothing was created");

    // The listing shows users without any hash.
    create_user(addr, "alice", &["news", "sport"], Some("gold")).await;
    let (status, _, v) = call(addr, "GET", "/api/admin/users", Some(ADMIN), None, None).await;
    assert_eq!(status, 200);
    let u = &v["users"][0];
    assert_eq!(u["name"], "alice");
    assert_eq!(u["channels"], serde_json::json!(["news", "sport"]));
    assert_eq!(u["group"], "gold");
    assert_eq!(u["disabled"], false);
    assert!(u["created"].as_u64().unwrap() > 0);
    let keys: Vec<&String> = u.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["channels", "created", "disabled", "group", "name", "updated"]
    );

    // Without --admin-key the user API is off.
    let db2 = TempDb::new("admin-off");
    let mut cfg = config(&db2.0);
    cfg.admin_key = None;
    let off = start(cfg).await;
    let (status, _, _) = call(off, "GET", "/api/admin/users", Some(ADMIN), None, None).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn login_needs_a_users_db_and_a_viewer_key() {
    let body = r#"{"user": "alice", "password": "whatever it is"}"#;
    let mut no_db = config(Path::new("unused"));
    no_db.users.db = None;
    let addr = start(no_db).await;
    let (status, _, v) = call(addr, "POST", "/api/login", None, None, Some(body)).await;
    assert_eq!(status, 503);
    assert!(v["error"].as_str().unwrap().contains("--users-db"), "{v}");
    let (status, _, _) = call(addr, "GET", "/api/admin/users", Some(ADMIN), None, None).await;
    assert_eq!(status, 503);

    let db = TempDb::new("nokey");
    let mut no_key = config(&db.0);
    no_key.auth.viewer_key = None;
    let addr = start(no_key).await;
    let (status, _, v) = call(addr, "POST", "/api/login", None, None, Some(body)).await;
    assert_eq!(status, 503);
    assert!(v["error"].as_str().unwrap().contains("--viewer-key"), "{v}");
}

#[tokio::test]
async fn users_persist_across_a_restart() {
    let db = TempDb::new("restart");
    let path = db.0.clone();
    // The first server runs on a runtime of its own, dropped (the server
    // with it, closing the database) before the second starts.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let addr = start(config(&path)).await;
            create_user(addr, "alice", &["news"], Some("gold")).await;
            let (status, _, _) = call(
                addr,
                "PUT",
                "/api/admin/users/alice",
                Some(ADMIN),
                None,
                Some(r#"{"channels": ["news", "sport"]}"#),
            )
            .await;
            assert_eq!(status, 200);
        });
    })
    .join()
    .unwrap();

    let addr = start(config(&db.0)).await;
    let (status, v) = login(addr, "alice", PASSWORD).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["channels"], serde_json::json!(["news", "sport"]));
    assert_eq!(v["group"], "gold");
}

const BIN: &str = env!("CARGO_BIN_EXE_shoal-signal");

fn add_user_cli(db: &Path, args: &[&str], password: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(BIN)
        .arg("add-user")
        .arg("--users-db")
        .arg(db)
        .args(args)
        .env_remove("SHOAL_USERS_DB")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn add_user_subcommand_reads_the_password_from_stdin() {
    let db = TempDb::new("cli");
    let out = add_user_cli(
        &db.0,
        &[
            "--user",
            "dave",
            "--channels",
            "news,sport",
            "--group",
            "silver",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("dave"), "{stdout}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));

    // Again: refused, unless --update.
    let again = add_user_cli(
        &db.0,
        &["--user", "dave", "--channels", "*"],
        "another password\n",
    );
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("exists"),
        "{again:?}"
    );
    let short = add_user_cli(&db.0, &["--user", "erin", "--channels", "*"], "short\n");
    assert!(!short.status.success());

    // The server logs dave in: the hash has the production cost.
    let addr = start(config(&db.0)).await;
    let t = Instant::now();
    let (status, v) = login(addr, "dave", PASSWORD).await;
    let ms = t.elapsed().as_millis();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["channels"], serde_json::json!(["news", "sport"]));
    assert_eq!(v["group"], "silver");
    eprintln!("login with the production Argon2 cost: {ms} ms");
    assert!(t.elapsed() < Duration::from_secs(5));

    let upd = add_user_cli(
        &db.0,
        &["--user", "dave", "--channels", "*", "--update"],
        "new password 42\r\n",
    );
    assert!(upd.status.success(), "{upd:?}");
    assert_eq!(login(addr, "dave", PASSWORD).await.0, 401);
    let (status, v) = login(addr, "dave", "new password 42").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["channels"], serde_json::json!(["*"]));
    assert!(
        v.get("group").is_none(),
        "--update without --group clears it: {v}"
    );
}
