//! Clients are placed in network groups by address, and matching prefers
//! the asker's own group.
mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::*;
use shoal_signal::{Config, GroupTable};
use swarm_proto::matching::MatchRule;
use swarm_proto::signal::{ClientMsg, Role, ServerMsg};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A viewer whose TCP connection comes from `local` (a 127.x address).
async fn viewer_from(server: SocketAddr, local: &str, xff: Option<&str>) -> (Client, String) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let tcp = sock.connect(server).await.unwrap();
    let mut req = format!("ws://{server}/ws").into_client_request().unwrap();
    if let Some(x) = xff {
        req.headers_mut()
            .insert("x-forwarded-for", x.parse().unwrap());
    }
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(tcp)),
    )
    .await
    .unwrap()
    .unwrap();
    let mut c = Client {
        ws,
        peer_id: String::new(),
    };
    c.send(&ClientMsg::Hello {
        role: Role::Viewer,
        token: None,
        seed: None,
    })
    .await;
    match c.recv().await {
        ServerMsg::Welcome { peer_id, group, .. } => {
            c.peer_id = peer_id;
            (c, group)
        }
        other => panic!("expected welcome, got {other:?}"),
    }
}

fn table(text: &str) -> GroupTable {
    let mut t = GroupTable::default();
    t.add_text(Path::new("test-groups"), text).unwrap();
    t
}

#[tokio::test]
async fn group_comes_from_the_table_and_matching_prefers_the_own_group() {
    let groups = table("127.0.0.2/32 isp-a\n127.0.0.3/32 isp-a\n127.0.0.4/32 isp-b\n");
    let rule = MatchRule {
        enough_same_group: 1,
        max: 10,
    };
    let addr = start(Config {
        groups,
        match_rule: rule,
        ..test_config()
    })
    .await;
    let (mut a1, g) = viewer_from(addr, "127.0.0.2", None).await;
    assert_eq!(g, "isp-a");
    let (mut b, g) = viewer_from(addr, "127.0.0.4", None).await;
    assert_eq!(g, "isp-b");
    a1.join("s").await;
    b.join("s").await;
    let (mut a2, _) = viewer_from(addr, "127.0.0.3", None).await;
    // One same-group peer is "enough": only a1 is returned.
    match a2.join("s").await {
        ServerMsg::Joined { peers, .. } => {
            assert_eq!(peers.len(), 1, "{peers:?}");
            assert_eq!(peers[0].peer_id, a1.peer_id);
            assert_eq!(peers[0].group, "isp-a");
        }
        _ => unreachable!(),
    }
    // b has no same-group peer: it gets the others.
    b.send(&ClientMsg::GetPeers { swarm: "s".into() }).await;
    match b.recv().await {
        ServerMsg::Peers { peers, .. } => assert_eq!(peers.len(), 2, "{peers:?}"),
        other => panic!("{other:?}"),
    }
    // Default loopback group for an address not in the file.
    let (_c, g) = viewer_from(addr, "127.0.0.9", None).await;
    assert_eq!(g, "loopback");
}

#[tokio::test]
async fn forwarded_for_is_used_only_from_trusted_proxies() {
    let groups = table("203.0.113.0/24 isp-doc\n");
    let config = Config {
        groups,
        trusted_proxies: vec!["127.0.0.5/32".parse().unwrap()],
        ..test_config()
    };
    let addr = start(config).await;
    let (_a, g) = viewer_from(addr, "127.0.0.5", Some("198.51.100.1, 203.0.113.7")).await;
    assert_eq!(g, "isp-doc");
    // Not a trusted proxy: the header is ignored.
    let (_b, g) = viewer_from(addr, "127.0.0.6", Some("203.0.113.7")).await;
    assert_eq!(g, "loopback");
    // Trusted proxy without the header: its own address.
    let (_c, g) = viewer_from(addr, "127.0.0.5", None).await;
    assert_eq!(g, "loopback");
    // Garbage header: falls back to the proxy's address.
    let (_d, g) = viewer_from(addr, "127.0.0.5", Some("not-an-ip")).await;
    assert_eq!(g, "loopback");
}
