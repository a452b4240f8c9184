//! leave and disconnect produce peer_left for the swarm's other members.
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
