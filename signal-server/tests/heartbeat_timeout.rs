//! A client silent for longer than the timeout is removed; any message
//! counts as liveness.
mod common;

use std::time::Duration;

use common::*;
use shoal_signal::Config;
use swarm_proto::signal::{ClientMsg, ServerMsg};

fn short() -> Config {
    Config {
        heartbeat_ms: 100,
        heartbeat_timeout_ms: 400,
        ..test_config()
    }
}

#[tokio::test]
async fn silent_peer_is_removed_and_its_socket_closed() {
    let addr = start(short()).await;
    let mut silent = Client::viewer(addr).await;
    let mut live = Client::viewer(addr).await;
    silent.join("s").await;
    live.join("s").await;
    let silent_id = silent.peer_id.clone();
    // `live` keeps heartbeating while `silent` says nothing.
    let started = tokio::time::Instant::now();
    let left = loop {
        assert!(started.elapsed() < WAIT, "silent peer was never removed");
        live.send(&ClientMsg::Heartbeat).await;
        match tokio::time::timeout(Duration::from_millis(100), live.recv()).await {
            Ok(ServerMsg::HeartbeatAck) => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok(other) => break other,
            Err(_) => {}
        }
    };
    assert_eq!(
        left,
        ServerMsg::PeerLeft {
            swarm: "s".into(),
            peer_id: silent_id
        }
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "removed too early: {:?}",
        started.elapsed()
    );
    silent.expect_closed().await;
    // The live peer is still there.
    let mut newcomer = Client::viewer(addr).await;
    match newcomer.join("s").await {
        ServerMsg::Joined { peers, .. } => {
            assert_eq!(
                peers.iter().map(|p| p.peer_id.clone()).collect::<Vec<_>>(),
                vec![live.peer_id.clone()]
            )
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn any_message_counts_as_liveness() {
    let addr = start(short()).await;
    let mut a = Client::viewer(addr).await;
    a.join("s").await;
    // get_peers instead of heartbeat, for well past the timeout.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.send(&ClientMsg::GetPeers { swarm: "s".into() }).await;
        assert!(matches!(a.recv().await, ServerMsg::Peers { .. }));
    }
    a.ping().await;
}

#[tokio::test]
async fn connection_that_never_says_hello_is_closed() {
    let addr = start(short()).await;
    let mut c = Client::connect(addr).await;
    c.expect_closed().await;
}
