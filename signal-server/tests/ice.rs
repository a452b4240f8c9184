//! STUN/TURN servers reach peers in `welcome` (TURN with credentials that
//! expire, derived from the shared secret), viewers' connection outcomes are
//! kept per network group, and a pair that failed is not matched again.
mod common;

use common::*;
use shoal_signal::ice::{turn_credential, IceConfig};
use shoal_signal::Key;
use swarm_proto::signal::{ClientMsg, Route, RtcSignal, ServerMsg};

const ADMIN: &str = "admin-key-admin-key-admin-key-01";

fn config() -> shoal_signal::Config {
    shoal_signal::Config {
        ice: IceConfig {
            stun: vec!["stun:198.51.100.1:3478".into()],
            turn: vec!["turn:198.51.100.1:3478?transport=udp".into()],
            turn_secret: Some("s3cret".into()),
            turn_ttl_s: 600,
        },
        admin_key: Some(Key::new(ADMIN.as_bytes())),
        ..test_config()
    }
}

#[tokio::test]
async fn welcome_carries_stun_and_expiring_turn_credentials() {
    let addr = start(config()).await;
    let (_c, first) = Client::viewer_with_token(addr, None).await;
    let ServerMsg::Welcome {
        peer_id,
        ice_servers,
        ..
    } = first
    else {
        panic!("expected welcome, got {first:?}");
    };
    assert_eq!(ice_servers.len(), 2, "{ice_servers:?}");
    assert_eq!(ice_servers[0].urls, vec!["stun:198.51.100.1:3478"]);
    assert!(ice_servers[0].username.is_none());
    let turn = &ice_servers[1];
    let user = turn.username.as_deref().unwrap();
    let (expiry, id) = user.split_once(':').unwrap();
    assert_eq!(id, peer_id, "the username names the peer");
    let now = shoal_signal::auth::unix_now();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "expires after the TTL: {expiry} vs now {now}"
    );
    assert_eq!(
        turn.credential.as_deref(),
        Some(turn_credential("s3cret", user).as_str())
    );
    assert!(
        !format!("{ice_servers:?}").contains("s3cret"),
        "the secret itself never reaches a peer"
    );
}

#[tokio::test]
async fn without_ice_configuration_welcome_lists_none() {
    let addr = start(test_config()).await;
    let (_c, m) = Client::viewer_with_token(addr, None).await;
    assert!(
        matches!(&m, ServerMsg::Welcome { ice_servers, .. } if ice_servers.is_empty()),
        "{m:?}"
    );
}

/// `a` sends `b` an offer through the server (so they are contacts).
async fn signal_pair(a: &mut Client, b: &mut Client, swarm: &str) {
    a.send(&ClientMsg::Relay {
        swarm: swarm.into(),
        to: b.peer_id.clone(),
        signal: RtcSignal::Offer { sdp: "v=0".into() },
    })
    .await;
    assert!(matches!(b.recv().await, ServerMsg::Relay { .. }));
}

fn listed(m: &ServerMsg) -> Vec<String> {
    match m {
        ServerMsg::Joined { peers, .. } | ServerMsg::Peers { peers, .. } => {
            peers.iter().map(|p| p.peer_id.clone()).collect()
        }
        other => panic!("expected a peer list, got {other:?}"),
    }
}

#[tokio::test]
async fn outcomes_are_kept_per_group_and_a_failed_pair_is_not_matched_again() {
    let addr = start(config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    let mut c = Client::viewer(addr).await;
    for v in [&mut a, &mut b, &mut c] {
        v.join("ch").await;
    }
    // Drain the peer lists b and c may have been sent while others joined.
    for v in [&mut a, &mut b] {
        v.expect_silence(100).await;
    }
    signal_pair(&mut a, &mut b, "ch").await;
    signal_pair(&mut a, &mut c, "ch").await;
    // An outcome about a peer a never signaled with is not recorded.
    a.send(&ClientMsg::ConnResult {
        swarm: "ch".into(),
        peer: "0000000000000000".into(),
        ok: false,
        ms: 1,
        route: None,
    })
    .await;
    a.send(&ClientMsg::ConnResult {
        swarm: "ch".into(),
        peer: c.peer_id.clone(),
        ok: true,
        ms: 120,
        route: Some(Route::Srflx),
    })
    .await;
    a.send(&ClientMsg::ConnResult {
        swarm: "ch".into(),
        peer: b.peer_id.clone(),
        ok: false,
        ms: 10_000,
        route: None,
    })
    .await;
    a.send(&ClientMsg::GetPeers { swarm: "ch".into() }).await;
    let list = listed(&a.recv().await);
    assert!(list.contains(&c.peer_id), "{list:?}");
    assert!(
        !list.contains(&b.peer_id),
        "the failed pair is kept apart: {list:?}"
    );
    b.send(&ClientMsg::GetPeers { swarm: "ch".into() }).await;
    let list = listed(&b.recv().await);
    assert!(!list.contains(&a.peer_id), "both ways: {list:?}");

    let (status, _, body) = http(addr, "GET", "/api/admin/connections", Some(ADMIN), None).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let g = &v["groups"][0];
    assert_eq!(g["conns"]["attempts"], 2, "{body}");
    assert_eq!(g["conns"]["connected"], 1, "{body}");
    assert_eq!(g["conns"]["failed"], 1, "{body}");
    assert_eq!(g["conns"]["srflx"], 1, "{body}");
    assert_eq!(g["success_rate"], 0.5, "{body}");
    assert_eq!(v["failed_pairs"], 1, "{body}");
    let (status, _, _) = http(addr, "GET", "/api/admin/connections", None, None).await;
    assert_eq!(status, 401, "behind the admin credential");
    let (_, _, metrics) = http(addr, "GET", "/metrics", Some(ADMIN), None).await;
    assert!(
        metrics.contains("shoal_signal_conn_results_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
}
