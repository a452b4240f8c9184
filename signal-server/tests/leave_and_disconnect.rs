//! leave and disconnect produce peer_left for the swarm's other members
//! (in a large swarm, for the leaver's signaling contacts only).
mod common;

use common::*;
use swarm_proto::signal::{ClientMsg, ErrorCode, ServerMsg};

#[tokio::test]
async fn leave_sends_peer_left_to_the_others() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    let mut c = Client::viewer(addr).await;
    a.join("s").await;
    b.join("s").await;
    c.join("s").await;
    b.send(&ClientMsg::Leave { swarm: "s".into() }).await;
    let left = ServerMsg::PeerLeft {
        swarm: "s".into(),
        peer_id: b.peer_id.clone(),
    };
    assert_eq!(a.recv().await, left);
    assert_eq!(c.recv().await, left);
    // The leaver gets nothing, and a newcomer no longer sees it.
    b.expect_silence(100).await;
    let mut d = Client::viewer(addr).await;
    match d.join("s").await {
        ServerMsg::Joined { peers, .. } => {
            assert_eq!(peers.len(), 2);
            assert!(peers.iter().all(|p| p.peer_id != b.peer_id));
        }
        _ => unreachable!(),
    }
    // Leaving again is an error, not a crash.
    b.send(&ClientMsg::Leave { swarm: "s".into() }).await;
    b.expect_error(ErrorCode::NotJoined).await;
}

#[tokio::test]
async fn disconnect_sends_peer_left_in_every_swarm() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    let mut c = Client::viewer(addr).await;
    a.join("one").await;
    a.join("two").await;
    b.join("one").await;
    c.join("two").await;
    let a_id = a.peer_id.clone();
    a.ws.close(None).await.unwrap();
    drop(a);
    assert_eq!(
        b.recv().await,
        ServerMsg::PeerLeft {
            swarm: "one".into(),
            peer_id: a_id.clone()
        }
    );
    assert_eq!(
        c.recv().await,
        ServerMsg::PeerLeft {
            swarm: "two".into(),
            peer_id: a_id
        }
    );
}

#[tokio::test]
async fn dropped_tcp_connection_counts_as_disconnect() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    a.join("s").await;
    b.join("s").await;
    let a_id = a.peer_id.clone();
    drop(a); // no close frame
    assert_eq!(
        b.recv().await,
        ServerMsg::PeerLeft {
            swarm: "s".into(),
            peer_id: a_id
        }
    );
}

#[tokio::test]
async fn in_a_large_swarm_only_signaling_contacts_hear_of_a_leave() {
    let addr = start(shoal_signal::Config {
        limits: shoal_signal::Limits {
            max_conns_per_addr: 0,
            ..Default::default()
        },
        ..test_config()
    })
    .await;
    let n = shoal_signal::state::BROADCAST_LEFT_MAX + 6;
    let mut others = Vec::new();
    for _ in 0..n {
        let mut c = Client::viewer(addr).await;
        c.join("big").await;
        others.push(c);
    }
    let mut a = Client::viewer(addr).await;
    a.join("big").await;
    let (b, rest) = others.split_first_mut().unwrap();
    // a and b negotiate; nobody else hears from a.
    a.send(&ClientMsg::Relay {
        swarm: "big".into(),
        to: b.peer_id.clone(),
        signal: swarm_proto::signal::RtcSignal::Offer { sdp: "v=0".into() },
    })
    .await;
    assert!(matches!(b.recv().await, ServerMsg::Relay { .. }));
    let a_id = a.peer_id.clone();
    drop(a);
    assert_eq!(
        b.recv().await,
        ServerMsg::PeerLeft {
            swarm: "big".into(),
            peer_id: a_id
        }
    );
    for c in rest.iter_mut().take(5) {
        c.ping().await;
    }
}
