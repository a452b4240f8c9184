//! Test helpers: a server on 127.0.0.1:0 and a WebSocket client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shoal_signal::auth::mint_seed_token;
use shoal_signal::{AuthConfig, Config, Key};
use swarm_proto::signal::{ClientMsg, ErrorCode, Role, SeedInfo, ServerMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// The seed key of [`test_config`].
pub const SEED_KEY: &[u8] = b"test-seed-key-test-seed-key-0123";
/// A viewer key for admission tests.
pub const VIEWER_KEY: &[u8] = b"test-viewer-key-test-viewer-key-";

/// Seeds register with [`SEED_KEY`]; viewers may create swarms (most tests
/// join swarms no seed offers); no viewer tokens.
pub fn test_config() -> Config {
    Config {
        rng_seed: Some(7),
        auth: AuthConfig {
            seed_key: Some(Key::new(SEED_KEY)),
            ..AuthConfig::default()
        },
        allow_unknown_channels: true,
        ..Config::default()
    }
}

/// A seed token for `seed_id` under [`SEED_KEY`].
pub fn seed_token(seed_id: &str) -> String {
    mint_seed_token(&Key::new(SEED_KEY), seed_id, None)
}

/// Starts a server with `config` on 127.0.0.1:0 and returns its address.
pub async fn start(config: Config) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        shoal_signal::serve(listener, config).await.unwrap();
    });
    addr
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub peer_id: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let url = format!("ws://{addr}/ws");
        let (ws, _) = timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .unwrap();
        Client {
            ws,
            peer_id: String::new(),
        }
    }

    /// Connects and says hello as a viewer; keeps the peer id.
    pub async fn viewer(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr).await;
        c.send(&ClientMsg::Hello {
            role: Role::Viewer,
            token: None,
            seed: None,
        })
        .await;
        c.welcome().await;
        c
    }

    /// Connects and says hello as a viewer presenting `token`; returns the
    /// client and the first message (welcome or refused).
    pub async fn viewer_with_token(addr: SocketAddr, token: Option<String>) -> (Client, ServerMsg) {
        let mut c = Client::connect(addr).await;
        c.send(&ClientMsg::Hello {
            role: Role::Viewer,
            token,
            seed: None,
        })
        .await;
        let first = c.recv().await;
        if let ServerMsg::Welcome { peer_id, .. } = &first {
            c.peer_id = peer_id.clone();
        }
        (c, first)
    }

    /// Connects and says hello as a seed, with a valid seed token.
    pub async fn seed(addr: SocketAddr, info: SeedInfo) -> Client {
        let mut c = Client::connect(addr).await;
        c.send(&ClientMsg::Hello {
            role: Role::Seed,
            token: Some(seed_token(&info.seed_id)),
            seed: Some(info),
        })
        .await;
        c.welcome().await;
        c
    }

    async fn welcome(&mut self) {
        match self.recv().await {
            ServerMsg::Welcome { peer_id, .. } => self.peer_id = peer_id,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, msg: &ClientMsg) {
        self.send_raw(Message::text(msg.encode())).await;
    }

    pub async fn send_raw(&mut self, msg: Message) {
        timeout(WAIT, self.ws.send(msg))
            .await
            .expect("send timed out")
            .unwrap();
    }

    /// Next server message (skipping pings); panics on close or timeout.
    pub async fn recv(&mut self) -> ServerMsg {
        loop {
            let frame = timeout(WAIT, self.ws.next())
                .await
                .expect("no message within 5 s");
            match frame {
                Some(Ok(Message::Text(t))) => {
                    return ServerMsg::decode(t.as_str()).expect("server sent a valid message")
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// Next message, which must be an error with `code`.
    pub async fn expect_error(&mut self, code: ErrorCode) -> String {
        match self.recv().await {
            ServerMsg::Error { code: c, message } if c == code => message,
            other => panic!("expected error {code:?}, got {other:?}"),
        }
    }

    /// Asserts nothing arrives within `ms`.
    pub async fn expect_silence(&mut self, ms: u64) {
        if let Ok(frame) = timeout(Duration::from_millis(ms), self.ws.next()).await {
            panic!("expected silence, got {frame:?}");
        }
    }

    /// Heartbeat round trip: proves the connection still works and that
    /// nothing else was queued before the ack.
    pub async fn ping(&mut self) {
        self.send(&ClientMsg::Heartbeat).await;
        assert_eq!(self.recv().await, ServerMsg::HeartbeatAck);
    }

    /// Waits for the server to close the socket; returns the close code.
    pub async fn expect_closed(&mut self) -> Option<u16> {
        loop {
            let frame = timeout(WAIT, self.ws.next())
                .await
                .expect("socket not closed within 5 s");
            match frame {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(Message::Text(t))) => {
                    // Errors queued before the close are fine.
                    assert!(
                        matches!(ServerMsg::decode(t.as_str()), Ok(ServerMsg::Error { .. })),
                        "unexpected {t}"
                    );
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    pub async fn join(&mut self, swarm: &str) -> ServerMsg {
        self.send(&ClientMsg::Join {
            swarm: swarm.into(),
        })
        .await;
        let m = self.recv().await;
        assert!(
            matches!(&m, ServerMsg::Joined { swarm: s, .. } if s == swarm),
            "expected joined, got {m:?}"
        );
        m
    }
}

/// Minimal HTTP/1.1 GET: returns (status, headers lowercased, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http(addr, "GET", path, None, None).await
}

/// Minimal HTTP/1.1 request with an optional bearer credential and JSON
/// body: returns (status, headers lowercased, body). Waits up to 30 s (a
/// kick may wait for the heartbeat timeout).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    json: Option<&str>,
) -> (u16, String, String) {
    timeout(Duration::from_secs(30), async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://example.test\r\nConnection: close\r\n");
        if let Some(b) = bearer {
            req.push_str(&format!("Authorization: Bearer {b}\r\n"));
        }
        match json {
            Some(j) => req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{j}", j.len())),
            None => req.push_str("Content-Length: 0\r\n\r\n"),
        }
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("http response has a head");
        let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_owned() };
        (status, head.to_ascii_lowercase(), body)
    })
    .await
    .expect("http request timed out")
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn seed_info(id: &str, contents: &[&str]) -> SeedInfo {
    SeedInfo {
        seed_id: id.into(),
        http_base: "http://127.0.0.1:9".into(),
        contents: contents.iter().map(|c| c.to_string()).collect(),
        capacity: 8,
        live: Vec::new(),
    }
}
