//! A stand-in signal server on 127.0.0.1: a WebSocket endpoint speaking the
//! real `swarm_proto::signal` messages, whose test side reads what the seed
//! sends and writes what the server would relay.

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use swarm_proto::signal::{ClientMsg, Role, ServerMsg};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::viewer::STEP;

/// One WebSocket connection the seed made to the stand-in signal server.
/// Dropping it hangs up.
pub struct SeedLink {
    to_seed: mpsc::UnboundedSender<String>,
    pub from_seed: mpsc::UnboundedReceiver<String>,
}

impl SeedLink {
    pub fn send(&self, m: &ServerMsg) {
        self.to_seed.send(m.encode()).unwrap();
    }

    /// Next message from the seed that is not a heartbeat or a periodic
    /// report.
    pub async fn recv(&mut self) -> ClientMsg {
        loop {
            let m = self.recv_any().await;
            if m != ClientMsg::Heartbeat && !matches!(m, ClientMsg::SeedReport { .. }) {
                return m;
            }
        }
    }

    /// Next message from the seed, whatever it is.
    pub async fn recv_any(&mut self) -> ClientMsg {
        let text = timeout(STEP, self.from_seed.recv())
            .await
            .expect("seed said nothing")
            .expect("seed link closed");
        ClientMsg::decode(&text).expect("seed sends valid messages")
    }

    /// The seed's next periodic report (other messages skipped).
    pub async fn next_report(&mut self) -> swarm_proto::signal::SeedReport {
        loop {
            if let ClientMsg::SeedReport { report } = self.recv_any().await {
                return report;
            }
        }
    }

    /// Waits for the seed's `hello` and welcomes it.
    pub async fn welcome(&mut self, heartbeat_ms: u64) -> ClientMsg {
        let hello = self.recv().await;
        assert!(
            matches!(
                hello,
                ClientMsg::Hello {
                    role: Role::Seed,
                    ..
                }
            ),
            "{hello:?}"
        );
        self.send(&ServerMsg::Welcome {
            peer_id: "seedpeer".into(),
            heartbeat_ms,
            group: "lo".into(),
            server_ms: None,
            ice_servers: Vec::new(),
        });
        hello
    }
}

async fn ws_conn(mut ws: WebSocket, links: mpsc::UnboundedSender<SeedLink>) {
    let (to_seed, mut to_seed_rx) = mpsc::unbounded_channel::<String>();
    let (from_seed_tx, from_seed) = mpsc::unbounded_channel::<String>();
    links.send(SeedLink { to_seed, from_seed }).unwrap();
    loop {
        tokio::select! {
            out = to_seed_rx.recv() => match out {
                Some(t) => if ws.send(WsMessage::Text(t.into())).await.is_err() { break },
                None => break, // the test dropped the link: hang up
            },
            m = ws.recv() => match m {
                Some(Ok(WsMessage::Text(t))) => { let _ = from_seed_tx.send(t.to_string()); }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Starts the stand-in signal server; yields each seed connection.
pub async fn signal_server() -> (String, mpsc::UnboundedReceiver<SeedLink>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route(
        "/ws",
        get(move |up: WebSocketUpgrade| {
            let tx = tx.clone();
            async move { up.on_upgrade(move |ws| ws_conn(ws, tx)) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("ws://{addr}/ws"), rx)
}

/// Next seed connection.
pub async fn next_link(links: &mut mpsc::UnboundedReceiver<SeedLink>) -> SeedLink {
    timeout(STEP, links.recv())
        .await
        .expect("seed connects")
        .expect("signal server running")
}
