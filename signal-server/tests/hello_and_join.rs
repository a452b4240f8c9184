//! hello → welcome; join → joined with the other members as peers.
mod common;

use common::*;
use shoal_signal::Config;
use swarm_proto::matching::MatchRule;
use swarm_proto::signal::{ClientMsg, ErrorCode, Role, ServerMsg};

#[tokio::test]
async fn hello_gets_welcome_with_peer_id_heartbeat_and_group() {
    let addr = start(Config {
        heartbeat_ms: 1234,
        ..test_config()
    })
    .await;
    let mut c = Client::connect(addr).await;
    c.send(&ClientMsg::Hello {
        role: Role::Viewer,
        token: Some("t".into()),
        seed: None,
    })
    .await;
    match c.recv().await {
        ServerMsg::Welcome {
            peer_id,
            heartbeat_ms,
            group,
            server_ms,
            ..
        } => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            let server = server_ms.expect("the welcome carries the server's clock");
            assert!(
                server.abs_diff(now) < 60_000,
                "server clock {server}, ours {now}"
            );
            assert_eq!(peer_id.len(), 16);
            assert!(
                peer_id.chars().all(|ch| ch.is_ascii_hexdigit()),
                "{peer_id}"
            );
            assert_eq!(heartbeat_ms, 1234);
            assert_eq!(group, "loopback");
        }
        other => panic!("expected welcome, got {other:?}"),
    }
}

#[tokio::test]
async fn peer_ids_are_unique() {
    let addr = start(test_config()).await;
    let mut ids = std::collections::HashSet::new();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let c = Client::viewer(addr).await;
        assert!(ids.insert(c.peer_id.clone()), "duplicate id {}", c.peer_id);
        clients.push(c);
    }
}

#[tokio::test]
async fn second_viewer_sees_first_in_joined_peers() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    match a.join("movie").await {
        ServerMsg::Joined { peers, seeds, .. } => {
            assert!(peers.is_empty(), "{peers:?}");
            assert!(seeds.is_empty());
        }
        _ => unreachable!(),
    }
    match b.join("movie").await {
        ServerMsg::Joined { peers, .. } => {
            assert_eq!(peers.len(), 1, "{peers:?}");
            assert_eq!(peers[0].peer_id, a.peer_id);
            assert!(!peers[0].is_seed);
            assert_eq!(peers[0].group, "loopback");
        }
        _ => unreachable!(),
    }
    // Joining is not announced to existing members; the joiner offers.
    a.expect_silence(100).await;
}

#[tokio::test]
async fn viewers_of_other_swarms_are_not_listed() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    a.join("one").await;
    match b.join("two").await {
        ServerMsg::Joined { peers, .. } => assert!(peers.is_empty(), "{peers:?}"),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn get_peers_lists_the_other_members_and_needs_a_join() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    a.send(&ClientMsg::GetPeers { swarm: "s".into() }).await;
    a.expect_error(ErrorCode::NotJoined).await;
    a.join("s").await;
    b.join("s").await;
    a.send(&ClientMsg::GetPeers { swarm: "s".into() }).await;
    match a.recv().await {
        ServerMsg::Peers { swarm, peers } => {
            assert_eq!(swarm, "s");
            assert_eq!(
                peers.iter().map(|p| p.peer_id.as_str()).collect::<Vec<_>>(),
                vec![b.peer_id.as_str()]
            );
        }
        other => panic!("expected peers, got {other:?}"),
    }
}

#[tokio::test]
async fn peer_list_is_capped_by_the_match_rule() {
    let addr = start(Config {
        match_rule: MatchRule {
            enough_same_group: 2,
            max: 3,
        },
        ..test_config()
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..6 {
        let mut c = Client::viewer(addr).await;
        c.join("big").await;
        clients.push(c);
    }
    let mut last = Client::viewer(addr).await;
    match last.join("big").await {
        ServerMsg::Joined { peers, .. } => {
            assert_eq!(peers.len(), 3, "{peers:?}");
            assert!(peers.iter().all(|p| p.peer_id != last.peer_id));
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn joining_twice_is_harmless() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    a.join("s").await;
    a.join("s").await;
    match b.join("s").await {
        ServerMsg::Joined { peers, .. } => assert_eq!(peers.len(), 1),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn heartbeat_gets_ack() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    a.ping().await;
    a.ping().await;
}
