//! Abuse against a running server (loopback only, bounded loops): each case
//! asserts that the abuser is limited and that an honest viewer connected
//! from another address still gets its `welcome` and `joined` within
//! 500 ms and keeps its heartbeats. (Every server message an honest client
//! reads is decoded with the viewer's frame limit: a larger one fails the
//! test.) The largest case (20 maximal seeds, 1,000 viewers that never read)
//! also bounds the memory added: under 256 MiB for server and clients
//! together (measured: about 60 MiB).
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use shoal_signal::Config;
use swarm_proto::signal::{ClientMsg, RtcSignal, ServerMsg};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Connects from the loopback address `local` (the server sees it as the
/// client's address).
async fn connect_from(server: SocketAddr, local: &str) -> Result<Client, String> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let tcp = sock.connect(server).await.map_err(|e| e.to_string())?;
    let req = format!("ws://{server}/ws").into_client_request().unwrap();
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(tcp)),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| e.to_string())?;
    Ok(Client {
        ws,
        peer_id: String::new(),
    })
}

/// The honest viewer: hello -> welcome and join -> joined each within
/// 500 ms, then a heartbeat round trip. Returns the client.
async fn honest(server: SocketAddr, swarm: &str) -> Client {
    let mut c = connect_from(server, "127.0.0.77")
        .await
        .expect("honest connect");
    let t = Instant::now();
    c.send(&ClientMsg::Hello {
        role: swarm_proto::signal::Role::Viewer,
        token: None,
        seed: None,
    })
    .await;
    match c.recv().await {
        ServerMsg::Welcome { peer_id, .. } => c.peer_id = peer_id,
        other => panic!("honest viewer: expected welcome, got {other:?}"),
    }
    let welcome_ms = t.elapsed().as_millis();
    let t = Instant::now();
    c.join(swarm).await;
    let joined_ms = t.elapsed().as_millis();
    assert!(
        welcome_ms <= 500 && joined_ms <= 500,
        "honest viewer: welcome {welcome_ms} ms, joined {joined_ms} ms"
    );
    c.ping().await;
    c
}

/// Sends `frames` on `ws` for at most `secs`, without reading; returns how
/// many were written.
fn flood(
    mut c: Client,
    frames: impl Iterator<Item = Message> + Send + 'static,
    secs: u64,
) -> tokio::task::JoinHandle<(usize, Client)> {
    tokio::spawn(async move {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut n = 0;
        for f in frames {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, c.ws.send(f)).await {
                Ok(Ok(())) => n += 1,
                _ => break,
            }
        }
        (n, c)
    })
}

#[tokio::test]
async fn two_thousand_connections_from_one_address_are_capped() {
    let addr = start(test_config()).await;
    let max = Config::default().limits.max_conns_per_addr;
    let mut open = Vec::new();
    let mut refused = 0;
    let t = Instant::now();
    for _ in 0..2000 {
        match connect_from(addr, "127.0.0.1").await {
            Ok(c) => open.push(c),
            Err(e) => {
                assert!(e.contains("429"), "{e}");
                refused += 1;
            }
        }
    }
    eprintln!(
        "2000 connections in {} ms: {} open, {refused} refused",
        t.elapsed().as_millis(),
        open.len()
    );
    assert_eq!(open.len(), max);
    assert_eq!(refused, 2000 - max);
    let mut h = honest(addr, "s").await;
    // Closing some frees their places.
    open.truncate(max - 5);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        connect_from(addr, "127.0.0.1")
            .await
            .expect("a freed place");
    }
    h.ping().await;
}

#[tokio::test]
async fn a_viewer_joining_five_thousand_swarms_is_capped() {
    let addr = start(test_config()).await;
    let mut abuser = Client::viewer(addr).await;
    abuser.ping().await;
    let frames = (0..5000).map(|i| {
        Message::text(
            ClientMsg::Join {
                swarm: format!("s{i}"),
            }
            .encode(),
        )
    });
    let task = flood(abuser, frames, 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut h = honest(addr, "s0").await;
    let (sent, _abuser) = task.await.unwrap();
    let (_, _, body) = http_get(addr, "/api/swarms").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let swarms = v["swarms"].as_array().unwrap().len();
    eprintln!("abuser wrote {sent} joins in 3 s; {swarms} swarms exist");
    assert!(swarms <= shoal_signal::state::MAX_SWARMS_PER_VIEWER);
    h.ping().await;
}

#[tokio::test]
async fn five_thousand_relays_of_60_kb_to_one_victim_slow_the_sender_not_the_victim() {
    let addr = start(test_config()).await;
    let mut victim = Client::viewer(addr).await;
    victim.join("s").await;
    let mut attacker = connect_from(addr, "127.0.0.66").await.unwrap();
    attacker
        .send(&ClientMsg::Hello {
            role: swarm_proto::signal::Role::Viewer,
            token: None,
            seed: None,
        })
        .await;
    attacker.recv().await;
    attacker.join("s").await;
    let to = victim.peer_id.clone();
    let sdp = "x".repeat(60_000);
    let frames = (0..5000).map(move |_| {
        Message::text(
            ClientMsg::Relay {
                swarm: "s".into(),
                to: to.clone(),
                signal: RtcSignal::Offer { sdp: sdp.clone() },
            }
            .encode(),
        )
    });
    let task = flood(attacker, frames, 4);
    // The victim reads as a browser would and keeps its heartbeats.
    let t = Instant::now();
    let mut relays = 0;
    while t.elapsed() < Duration::from_secs(4) {
        victim.send(&ClientMsg::Heartbeat).await;
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, victim.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => match ServerMsg::decode(t.as_str()).unwrap() {
                    ServerMsg::Relay { .. } => relays += 1,
                    ServerMsg::HeartbeatAck => break,
                    other => panic!("victim got {other:?}"),
                },
                Ok(Some(Ok(_))) => {}
                other => panic!("victim: heartbeat not answered within 500 ms: {other:?}"),
            }
        }
    }
    let (sent, _attacker) = task.await.unwrap();
    eprintln!("attacker wrote {sent} relays of 60 KB in 4 s; the victim got {relays}");
    let l = Config::default().limits;
    // Burst plus four seconds at the sustained rate, and a little slack.
    let budget = (l.relay_burst_bytes as usize + 4 * l.relay_bytes_per_s as usize) / 60_000 + 5;
    assert!(
        relays <= budget,
        "{relays} relays got through (budget {budget})"
    );
    assert!(relays > 0, "relays are slowed, not stopped");
    // Still connected and answered (relays the server had already read may
    // still arrive first).
    victim.send(&ClientMsg::Heartbeat).await;
    loop {
        match victim.recv().await {
            ServerMsg::HeartbeatAck => break,
            ServerMsg::Relay { .. } => continue,
            other => panic!("victim got {other:?}"),
        }
    }
    honest(addr, "s").await;
}

#[tokio::test]
async fn two_thousand_malformed_frames_close_the_sender_only() {
    let addr = start(test_config()).await;
    let mut bystander = Client::viewer(addr).await;
    bystander.join("s").await;
    let abuser = connect_from(addr, "127.0.0.66").await.unwrap();
    let frames = (0..2000).map(|i| match i % 4 {
        0 => Message::text("{not json"),
        1 => Message::binary(vec![0u8; 100]),
        2 => Message::text(format!(
            r#"{{"type":"join","swarm":"{}"}}"#,
            "a".repeat(200)
        )),
        _ => Message::text("x".repeat(70_000)),
    });
    let task = flood(abuser, frames, 5);
    let mut h = honest(addr, "s").await;
    let (sent, mut abuser) = task.await.unwrap();
    eprintln!("abuser wrote {sent} malformed frames before the server closed it");
    assert!(sent < 2000, "the abuser was disconnected");
    abuser.expect_closed().await;
    bystander.ping().await;
    h.ping().await;
}

/// This process's resident memory in MiB (server and test clients
/// together: an upper bound on what the server holds).
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_maximal_seeds_then_a_thousand_joins_that_never_read() {
    use swarm_proto::signal::{Role, SeedInfo, MAX_HTTP_BASE_LEN, MAX_NAME_LEN};
    // Memory the server may add for this case (stated bound).
    const BOUND_MB: f64 = 256.0;
    let addr = start(Config {
        heartbeat_ms: 1000,
        heartbeat_timeout_ms: 4000,
        ..test_config()
    })
    .await;
    let before = rss_mb();
    let mut seeds = Vec::new();
    for i in 0..20 {
        let mut contents = vec!["live".to_owned()];
        contents
            .extend((0..400).map(|j| format!("{i:02}-{j:04}-{}", "c".repeat(MAX_NAME_LEN - 8))));
        let info = SeedInfo {
            seed_id: format!("{i:02}{}", "s".repeat(MAX_NAME_LEN - 2)),
            http_base: format!("http://{}", "h".repeat(MAX_HTTP_BASE_LEN - 7)),
            contents,
            capacity: u32::MAX,
            live: Vec::new(),
        };
        seeds.push(Client::seed(addr, info).await);
    }
    // 1,000 viewers from 16 addresses (each under the per-address limit)
    // say hello and join, then never read: their joined frames pile up.
    let hello = ClientMsg::Hello {
        role: Role::Viewer,
        token: None,
        seed: None,
    }
    .encode();
    let join = ClientMsg::Join {
        swarm: "live".into(),
    }
    .encode();
    let mut mute = Vec::new();
    let t = Instant::now();
    for i in 0..1000 {
        let local = format!("127.0.1.{}", 1 + i % 16);
        let mut c = connect_from(addr, &local)
            .await
            .expect("under the per-address limit");
        c.ws.send(Message::text(hello.clone())).await.unwrap();
        c.ws.send(Message::text(join.clone())).await.unwrap();
        mute.push(c);
    }
    eprintln!(
        "1000 never-reading viewers joined in {} ms",
        t.elapsed().as_millis()
    );
    let mut h = honest(addr, "live").await;
    // Every message the honest viewer gets fits the viewer's frame limit
    // (recv decodes with it); the joined it got was trimmed to it.
    h.send(&ClientMsg::GetPeers {
        swarm: "live".into(),
    })
    .await;
    match h.recv().await {
        ServerMsg::Peers { peers, .. } => assert!(!peers.is_empty()),
        other => panic!("{other:?}"),
    }
    let grown = rss_mb() - before;
    eprintln!("memory grew by {grown:.1} MiB (bound {BOUND_MB} MiB)");
    assert!(grown < BOUND_MB, "memory grew by {grown:.1} MiB");
    // The honest viewer keeps its heartbeats (answered within 500 ms) while
    // the mute ones time out and leave.
    let mut left = 0;
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        left += heartbeat_within(&mut h, 500).await;
    }
    // In a swarm this large a leave is told only to the leaver's signaling
    // contacts: the honest viewer, which never signaled with the mute ones,
    // hears only of the last ones, once the swarm is small again, and no
    // leave costs work for the whole swarm.
    eprintln!("the honest viewer heard of {left} leaves");
    assert!(
        left <= shoal_signal::state::BROADCAST_LEFT_MAX,
        "{left} peer_left from strangers"
    );
    let (_, _, body) = http_get(addr, "/api/swarms").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let members = v["swarms"][0]["peers"].as_array().map_or(0, |p| p.len());
    eprintln!("{members} members left in the swarm after the mute viewers timed out");
    assert!(
        members < 500,
        "the mute viewers were removed ({members} members)"
    );
    drop(seeds);
}

/// Sends a heartbeat and reads until its ack, which must come within `ms`
/// (a `peer_left` may come first); returns how many `peer_left` it read.
async fn heartbeat_within(c: &mut Client, ms: u64) -> usize {
    c.send(&ClientMsg::Heartbeat).await;
    let t = Instant::now();
    let mut left = 0;
    loop {
        match c.recv().await {
            ServerMsg::HeartbeatAck => break,
            ServerMsg::PeerLeft { .. } => left += 1,
            other => panic!("expected heartbeat_ack, got {other:?}"),
        }
    }
    let took = t.elapsed().as_millis();
    assert!(took <= u128::from(ms), "heartbeat answered after {took} ms");
    left
}
