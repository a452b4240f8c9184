//! Kick with acknowledgement and bans, through the admin API of a running
//! server: the viewer gets `kick` (again until it answers `stopped`), is
//! removed, its swarm is told, and a ban refuses its next hello.
mod common;

use std::net::SocketAddr;
use std::time::Instant;

use common::*;
use shoal_signal::auth::{mint_viewer_token, unix_now};
use shoal_signal::{AuthConfig, Config, Key, OpenChannels};
use swarm_proto::auth::ViewerClaims;
use swarm_proto::signal::{ClientMsg, RefuseReason, ServerMsg};

const ADMIN: &str = "admin-key-admin-key-admin-key-00";

fn config() -> Config {
    Config {
        auth: AuthConfig {
            viewer_key: Some(Key::new(VIEWER_KEY)),
            seed_key: Some(Key::new(SEED_KEY)),
            open_channels: OpenChannels::All,
        },
        admin_key: Some(Key::new(ADMIN.as_bytes())),
        heartbeat_ms: 500,
        heartbeat_timeout_ms: 2500,
        ..test_config()
    }
}

fn token(sub: &str) -> String {
    mint_viewer_token(
        &Key::new(VIEWER_KEY),
        &ViewerClaims {
            sub: sub.into(),
            exp: unix_now() + 600,
            channels: vec!["*".into()],
            group: None,
        },
    )
}

async fn viewer(addr: SocketAddr, sub: Option<&str>) -> Client {
    let (c, first) = Client::viewer_with_token(addr, sub.map(token)).await;
    assert!(matches!(first, ServerMsg::Welcome { .. }), "{first:?}");
    c
}

async fn kick(addr: SocketAddr, id: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let path = format!("/api/viewers/{id}/kick");
    let (status, _, body) = http(addr, "POST", &path, Some(ADMIN), body).await;
    (status, serde_json::from_str(&body).unwrap_or_default())
}

#[tokio::test]
async fn kicked_viewer_acknowledges_is_removed_and_banned() {
    let addr = start(config()).await;
    let mut alice = viewer(addr, Some("alice")).await;
    let mut bob = viewer(addr, Some("bob")).await;
    alice.join("live").await;
    bob.join("live").await;

    let alice_id = alice.peer_id.clone();
    let api = tokio::spawn(async move {
        kick(addr, "alice", Some(r#"{"ban_s": 600, "message": "bye"}"#)).await
    });
    let kick_id = match alice.recv().await {
        ServerMsg::Kick {
            kick,
            message,
            ban_s,
        } => {
            assert_eq!(message, "bye");
            assert_eq!(ban_s, Some(600));
            kick
        }
        other => panic!("expected kick, got {other:?}"),
    };
    let t = Instant::now();
    alice.send(&ClientMsg::Stopped { kick: kick_id }).await;
    let (status, body) = api.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        t.elapsed().as_millis() < 1000,
        "the call returns on the ack"
    );
    assert_eq!(body["connections"][0]["peer_id"], alice_id.as_str());
    assert_eq!(body["connections"][0]["acked"], true);
    assert!(body["banned_until"].as_u64().unwrap() >= unix_now() + 590);
    // Its swarm is told, its socket closes.
    assert_eq!(
        bob.recv().await,
        ServerMsg::PeerLeft {
            swarm: "live".into(),
            peer_id: alice_id
        }
    );
    alice.expect_closed().await;
    // Banned: the same token is refused, with the reason; bob is not.
    let (_, first) = Client::viewer_with_token(addr, Some(token("alice"))).await;
    assert!(
        matches!(
            first,
            ServerMsg::Refused {
                reason: RefuseReason::Banned,
                swarm: None,
                ..
            }
        ),
        "{first:?}"
    );
    bob.ping().await;
    let mut bob2 = viewer(addr, Some("bob")).await;
    bob2.ping().await;
    // A wrong kick id is not an acknowledgement.
    bob.send(&ClientMsg::Stopped { kick: 999 }).await;
    bob.expect_error(swarm_proto::signal::ErrorCode::Protocol)
        .await;
    bob.ping().await;
}

#[tokio::test]
async fn silent_viewer_is_kicked_again_then_removed_at_the_heartbeat_timeout() {
    let addr = start(config()).await;
    let mut mute = viewer(addr, Some("mute")).await;
    let mut other = viewer(addr, None).await;
    mute.join("live").await;
    other.join("live").await;
    let id = mute.peer_id.clone();
    let path_id = id.clone();
    let t = Instant::now();
    let api = tokio::spawn(async move { kick(addr, &path_id, None).await });
    // The kick comes again (same id) while unanswered.
    let mut ids = Vec::new();
    while ids.len() < 2 {
        if let ServerMsg::Kick { kick, ban_s, .. } = mute.recv().await {
            assert_eq!(ban_s, None);
            ids.push(kick);
        }
    }
    assert_eq!(ids[0], ids[1]);
    // The other viewer keeps its heartbeats meanwhile.
    while !api.is_finished() {
        other.send(&ClientMsg::Heartbeat).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let (status, body) = api.await.unwrap();
    let ms = t.elapsed().as_millis();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["connections"][0]["acked"], false);
    assert!((2000..6000).contains(&ms), "returned after {ms} ms");
    let left = loop {
        match other.recv().await {
            ServerMsg::HeartbeatAck => continue,
            m => break m,
        }
    };
    assert_eq!(
        left,
        ServerMsg::PeerLeft {
            swarm: "live".into(),
            peer_id: id
        }
    );
    // No ban was asked for: it may come back.
    viewer(addr, Some("mute")).await.ping().await;
}

#[tokio::test]
async fn anonymous_viewers_are_banned_by_address() {
    let addr = start(config()).await;
    let mut anon = viewer(addr, None).await;
    let id = anon.peer_id.clone();
    let api = tokio::spawn(async move { kick(addr, &id, Some(r#"{"ban_s": 60}"#)).await });
    if let ServerMsg::Kick { kick, .. } = anon.recv().await {
        anon.send(&ClientMsg::Stopped { kick }).await;
    }
    assert_eq!(api.await.unwrap().0, 200);
    let (_, first) = Client::viewer_with_token(addr, None).await;
    assert!(matches!(
        first,
        ServerMsg::Refused {
            reason: RefuseReason::Banned,
            ..
        }
    ));
    // A viewer with a token is judged by its identity, not the address.
    viewer(addr, Some("carol")).await.ping().await;
}

#[tokio::test]
async fn the_admin_api_needs_the_admin_credential() {
    let addr = start(config()).await;
    let mut v = viewer(addr, Some("alice")).await;
    let path = "/api/viewers/alice/kick";
    for bearer in [None, Some("wrong"), Some("admin-key-admin-key-admin-key-0")] {
        let (status, _, body) = http(addr, "POST", path, bearer, None).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("error"), "{body}");
    }
    // Nothing happened to the viewer.
    v.ping().await;
    assert_eq!(kick(addr, "nobody", None).await.0, 404);
    let (status, _) = kick(addr, "alice", Some(r#"{"ban_s": 999999999999}"#)).await;
    assert_eq!(status, 400);
    let (status, _) = kick(addr, "alice", Some(r#"{"unknown": 1}"#)).await;
    assert!((400..500).contains(&status));
    v.ping().await;
    // Without --admin-key the API is off.
    let off = start(test_config()).await;
    let (status, _, body) = http(off, "POST", path, Some(ADMIN), None).await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn admin_api_lists_viewers_seeds_channels_events_settings_and_metrics() {
    let addr = start(config()).await;
    let info = swarm_proto::signal::SeedInfo {
        seed_id: "seed-a".into(),
        http_base: "http://127.0.0.1:9".into(),
        contents: vec!["live".into()],
        capacity: 4,
        live: Vec::new(),
    };
    let _seed = Client::seed(addr, info).await;
    let mut alice = viewer(addr, Some("alice")).await;
    alice.join("live").await;
    let mut anon = viewer(addr, None).await;
    anon.join("live").await;
    let expired = mint_viewer_token(
        &Key::new(VIEWER_KEY),
        &ViewerClaims {
            sub: "late".into(),
            exp: unix_now() - 1,
            channels: vec!["*".into()],
            group: None,
        },
    );
    let (_, refused) = Client::viewer_with_token(addr, Some(expired)).await;
    assert!(matches!(refused, ServerMsg::Refused { .. }));

    let get = |path: &'static str| async move {
        let (status, _, body) = http(addr, "GET", path, Some(ADMIN), None).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    for path in [
        "/api/admin/viewers",
        "/api/admin/seeds",
        "/api/admin/channels",
        "/api/admin/events",
        "/api/admin/settings",
        "/metrics",
    ] {
        let (status, _, _) = http(addr, "GET", path, None, None).await;
        assert_eq!(status, 401, "{path} without the credential");
        let (status, _, _) = http(addr, "GET", path, Some("wrong"), None).await;
        assert_eq!(status, 401, "{path} with a wrong credential");
    }

    let v: serde_json::Value = serde_json::from_str(&get("/api/admin/viewers").await).unwrap();
    let viewers = v["viewers"].as_array().unwrap();
    assert_eq!(viewers.len(), 2, "{v}");
    let a = viewers.iter().find(|x| x["viewer"] == "alice").unwrap();
    assert_eq!(a["addr"], "127.0.0.1");
    assert_eq!(a["swarms"], serde_json::json!(["live"]));
    assert!(viewers.iter().any(|x| x["viewer"].is_null()));

    let s: serde_json::Value = serde_json::from_str(&get("/api/admin/seeds").await).unwrap();
    assert_eq!(s["seeds"][0]["seed_id"], "seed-a");
    assert_eq!(s["seeds"][0]["addr"], "127.0.0.1");
    // The public list shows no client address.
    let (_, _, public) = http_get(addr, "/api/seeds").await;
    assert!(!public.contains("\"addr\""), "{public}");

    let c: serde_json::Value = serde_json::from_str(&get("/api/admin/channels").await).unwrap();
    let live = &c["swarms"][0];
    assert_eq!(live["swarm"], "live");
    assert_eq!(live["totals"]["viewers"], 2);
    assert_eq!(live["totals"]["seeds"], 1);

    let e: serde_json::Value = serde_json::from_str(&get("/api/admin/events").await).unwrap();
    let kinds: Vec<&str> = e["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "hello").count(),
        3,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"hello refused"), "{kinds:?}");

    // Settings: read, change, and the change applies to the next join.
    let st: serde_json::Value = serde_json::from_str(&get("/api/admin/settings").await).unwrap();
    assert_eq!(st["match_max"], Config::default().match_rule.max);
    let (status, _, body) = http(
        addr,
        "PUT",
        "/api/admin/settings",
        Some(ADMIN),
        Some(r#"{"match_enough": 1, "match_max": 1}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut late = viewer(addr, Some("bob")).await;
    match late.join("live").await {
        // The seed, and one viewer of the two.
        ServerMsg::Joined { peers, .. } => assert_eq!(peers.len(), 2, "{peers:?}"),
        _ => unreachable!(),
    }
    for bad in [
        r#"{"match_enough": 1, "match_max": 0}"#,
        r#"{"match_max": 5}"#,
        "nope",
    ] {
        let (status, _, body) =
            http(addr, "PUT", "/api/admin/settings", Some(ADMIN), Some(bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let st: serde_json::Value = serde_json::from_str(&get("/api/admin/settings").await).unwrap();
    assert_eq!(st["match_max"], 1, "a refused change changes nothing");

    let m = get("/metrics").await;
    for line in [
        "shoal_signal_hellos_total{role=\"viewer\"} 3",
        "shoal_signal_hellos_total{role=\"seed\"} 1",
        "shoal_signal_refusals_total{reason=\"expired\"} 1",
        "shoal_signal_peers{role=\"viewer\"} 3",
        "shoal_signal_swarms 1",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
}
