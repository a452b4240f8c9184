//! Loopback test of the seed's WebRTC data-channel host (`shoal_seed::rtc`).
//!
//! A webrtc-rs *client* peer (standing in for the browser) bound to 127.0.0.1 opens the
//! "shoal" data channel and offers; the `RtcHost` answers. Checks: every ICE candidate in both
//! SDPs is 127.0.0.1, the channel opens in bounded time, echo through `RtcConn`, one-way
//! throughput seed -> client (printed, not asserted), clean teardown from both sides, and a
//! garbage offer is an error. Every wait is bounded by `tokio::time::timeout`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::ice::network_type::NetworkType;
use rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use shoal_seed::rtc::{RtcConfig, RtcConn, RtcEvent, RtcHost, DATA_CHANNEL_LABEL};
use tokio::sync::mpsc;
use tokio::time::timeout;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCSessionDescription, SettingEngineBuilder,
};
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, Runtime,
    TokioRuntime,
};

const STEP: Duration = Duration::from_secs(10);

/// The client's runtime: tokio with 4 MiB UDP socket buffers, like the seed's (and like a
/// browser's), so that the measured throughput is not that of kernel drops at the test client.
#[derive(Debug)]
struct ClientRuntime(TokioRuntime);

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Runtime for ClientRuntime {
    fn spawn(&self, f: BoxFut<'static, ()>) -> Box<dyn JoinHandle> {
        self.0.spawn(f)
    }
    fn wrap_udp_socket(&self, s: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let r = socket2::SockRef::from(&s);
        let _ = r.set_recv_buffer_size(4 << 20);
        let _ = r.set_send_buffer_size(4 << 20);
        self.0.wrap_udp_socket(s)
    }
    fn wrap_tcp_listener(&self, l: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.0.wrap_tcp_listener(l)
    }
    fn connect_tcp<'a>(&'a self, a: SocketAddr) -> BoxFut<'a, io::Result<Arc<dyn AsyncTcpStream>>> {
        self.0.connect_tcp(a)
    }
    fn resolve_host<'a>(&'a self, h: &'a str) -> BoxFut<'a, io::Result<Vec<SocketAddr>>> {
        self.0.resolve_host(h)
    }
    fn sleep(&self, d: Duration) -> BoxFut<'static, ()> {
        self.0.sleep(d)
    }
    fn interval(&self, p: Duration) -> Box<dyn AsyncInterval> {
        self.0.interval(p)
    }
    fn block_on(&self, f: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.0.block_on(f)
    }
    fn yield_now(&self) -> BoxFut<'static, ()> {
        self.0.yield_now()
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "shoal_seed=debug,webrtc=warn,rtc=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Every `a=candidate` line must name a loopback address, 127.0.0.1 but for
/// the public-address test (and there must be at least one).
fn assert_loopback_candidates(who: &str, sdp: &str) {
    let mut n = 0;
    for line in sdp.lines().filter(|l| l.starts_with("a=candidate:")) {
        let addr = line.split_whitespace().nth(4).unwrap_or("");
        assert!(
            addr == "127.0.0.1" || addr == "127.0.0.9",
            "{who} SDP has a non-loopback ICE candidate (traffic would leave loopback): {line}\nfull SDP:\n{sdp}"
        );
        n += 1;
    }
    assert!(n > 0, "{who} SDP has no ICE candidate:\n{sdp}");
}

struct ClientHandler {
    gathered: mpsc::UnboundedSender<()>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for ClientHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }
}

struct Client {
    pc: Arc<dyn PeerConnection>,
    dc: Arc<dyn DataChannel>,
}

/// Builds the client peer, offers, lets `host` answer, completes the exchange.
async fn connect(host: &RtcHost) -> (Client, RtcConn) {
    connect_with(host, false, false).await
}

/// As `connect`; with `trickle`, the offer goes without its candidates, which are then
/// trickled through `RtcConn::add_remote_candidate` (as a browser's signaling would).
/// With `reactor`, the client's driver runs on webrtc-rs's dedicated reactor pool, where
/// dropping the connection stops the driver without any goodbye on the wire (a vanished peer).
async fn connect_with(host: &RtcHost, trickle: bool, reactor: bool) -> (Client, RtcConn) {
    let (client, conn, _answer) = connect_answer(host, trickle, reactor).await;
    (client, conn)
}

/// As `connect_with`, also returning the host's answer SDP.
async fn connect_answer(host: &RtcHost, trickle: bool, reactor: bool) -> (Client, RtcConn, String) {
    let (gathered_tx, mut gathered_rx) = mpsc::unbounded_channel();
    let se = SettingEngineBuilder::new()
        .with_network_types(vec![NetworkType::Udp4])
        .with_multicast_dns_mode(MulticastDnsMode::Disabled)
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(262_144))
        .with_sctp_mtu(1200)
        .with_ice_connection_attempts(Some(Duration::from_millis(20)), Some(100))
        .build();
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(se)
        .with_handler(Arc::new(ClientHandler {
            gathered: gathered_tx,
        }))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
        .with_runtime(Arc::new(ClientRuntime(TokioRuntime)))
        .with_dedicated_reactor_pool_size(usize::from(reactor))
        .build()
        .await
        .expect("client peer connection");
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let dc = pc
        .create_data_channel(DATA_CHANNEL_LABEL, None)
        .await
        .expect("client data channel");
    let offer = pc.create_offer(None).await.expect("offer");
    pc.set_local_description(offer).await.expect("set offer");
    timeout(STEP, gathered_rx.recv())
        .await
        .expect("client gathering timed out");
    let offer_sdp = pc.local_description().await.expect("client local desc").sdp;
    assert_loopback_candidates("offer", &offer_sdp);

    let (offer_sdp, trickled): (String, Vec<String>) = if trickle {
        let keep =
            |l: &&str| !l.starts_with("a=candidate:") && !l.starts_with("a=end-of-candidates");
        let sdp: Vec<&str> = offer_sdp.split("\r\n").filter(keep).collect();
        let cands = offer_sdp
            .lines()
            .filter_map(|l| l.strip_prefix("a="))
            .filter(|l| l.starts_with("candidate:"))
            .map(str::to_owned)
            .collect();
        (sdp.join("\r\n"), cands)
    } else {
        (offer_sdp, Vec::new())
    };

    let t = Instant::now();
    let (answer_sdp, conn) = timeout(STEP, host.accept_offer(&offer_sdp))
        .await
        .expect("accept_offer timed out")
        .expect("accept_offer");
    println!("rtc answer ready in {:?}", t.elapsed());
    for c in &trickled {
        conn.add_remote_candidate(c, Some("0".into()), Some(0))
            .await
            .unwrap_or_else(|e| panic!("trickled candidate {c:?} refused: {e:#}"));
    }
    if trickle {
        assert!(!trickled.is_empty());
        conn.add_remote_candidate("", Some("0".into()), Some(0))
            .await
            .expect("end-of-candidates");
    }
    assert_loopback_candidates("answer", &answer_sdp);
    assert!(
        answer_sdp.contains("a=max-message-size:262144"),
        "answer must advertise 262144:\n{answer_sdp}"
    );
    pc.set_remote_description(
        RTCSessionDescription::answer(answer_sdp.clone()).expect("answer parses"),
    )
    .await
    .expect("client set answer");
    (Client { pc, dc }, conn, answer_sdp)
}

/// Waits for the client channel to open.
async fn client_open(dc: &Arc<dyn DataChannel>) {
    timeout(STEP, async {
        loop {
            match dc.poll().await {
                Some(DataChannelEvent::OnOpen) => return,
                Some(_) => {}
                None => panic!("client channel ended before open"),
            }
        }
    })
    .await
    .expect("client channel did not open in time");
}

/// Next binary message on the client channel.
async fn client_recv(dc: &Arc<dyn DataChannel>) -> Vec<u8> {
    timeout(STEP, async {
        loop {
            match dc.poll().await {
                Some(DataChannelEvent::OnMessage(m)) => return m.data.to_vec(),
                Some(_) => {}
                None => panic!("client channel ended"),
            }
        }
    })
    .await
    .expect("client receive timed out")
}

fn host() -> RtcHost {
    RtcHost::new(RtcConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        send_buffer_limit: 1 << 20,
        ..RtcConfig::default()
    })
}

async fn wait_no_live(host: &RtcHost) {
    timeout(STEP, async {
        while host.live_connections() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("connection not torn down (live_connections != 0)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_echo_throughput_and_close() {
    init_tracing();
    let host = host();
    let t0 = Instant::now();
    let (client, mut conn) = connect(&host).await;
    let t_answer = t0.elapsed();
    assert_eq!(host.live_connections(), 1);

    // Seed side: first event is Open.
    let ev = timeout(STEP, conn.events.recv())
        .await
        .expect("seed channel did not open in time");
    assert_eq!(ev, Some(RtcEvent::Open));
    client_open(&client.dc).await;
    println!(
        "rtc channel open {:?} after offer ({:?} after answer)",
        t0.elapsed(),
        t0.elapsed() - t_answer
    );

    // The test drives an echo on the seed side through the RtcConn.
    let sender = conn.sender.clone();
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel();
    let mut events = conn.events;
    let echo = tokio::spawn(async move {
        let mut echoed = 0usize;
        while let Some(ev) = events.recv().await {
            match ev {
                RtcEvent::Message(m) => {
                    sender.send(m).await.expect("echo send");
                    echoed += 1;
                }
                RtcEvent::Closed => {
                    let _ = closed_tx.send(echoed);
                    break;
                }
                RtcEvent::BadFrame(what) => {
                    sender
                        .send(format!("bad: {what}").into_bytes())
                        .await
                        .expect("echo send");
                }
                RtcEvent::Open => panic!("second Open"),
            }
        }
        // The stream ends after Closed.
        assert!(events.recv().await.is_none());
    });

    let sizes = [1usize, 10, 100, 1200, 16_394, 65_536, 200_000, 262_144, 3];
    for (i, &n) in sizes.iter().enumerate() {
        let msg: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
        client
            .dc
            .send(BytesMut::from(&msg[..]))
            .await
            .expect("client send");
        let back = client_recv(&client.dc).await;
        assert_eq!(back.len(), n, "echo length for message {i}");
        assert!(back == msg, "echo content differs for message {i}");
    }
    // Pipelined echo.
    for i in 0..50u8 {
        client.dc.send(BytesMut::from(&[i; 500][..])).await.unwrap();
    }
    for i in 0..50u8 {
        assert_eq!(client_recv(&client.dc).await, vec![i; 500]);
    }
    // A text message is not delivered as data: the seed sees a bad frame.
    client
        .dc
        .send_text("hello")
        .await
        .expect("client send_text");
    assert_eq!(
        client_recv(&client.dc).await,
        b"bad: text message of 5 bytes"
    );
    // Too-large message is refused locally, not sent.
    assert!(conn.sender.send(vec![0; 262_145]).await.is_err());

    // One-way throughput seed -> client: 32 MiB in 16 KiB + 10-byte messages.
    const MSG: usize = 16 * 1024 + 10;
    const TOTAL: usize = 32 << 20;
    let count = TOTAL.div_ceil(MSG);
    let sender = conn.sender.clone();
    let start = Instant::now();
    let (mut stalls, mut stalled) = (0u32, Duration::ZERO);
    let producer = tokio::spawn(async move {
        for i in 0..count {
            let mut m = vec![0u8; MSG];
            m[..8].copy_from_slice(&(i as u64).to_be_bytes());
            sender.send(m).await.expect("seed send");
        }
    });
    let received = timeout(Duration::from_secs(120), async {
        let mut bytes = 0usize;
        let mut next = 0u64;
        let mut last = Instant::now();
        while (next as usize) < count {
            match client.dc.poll().await {
                Some(DataChannelEvent::OnMessage(m)) => {
                    let gap = last.elapsed();
                    last = Instant::now();
                    if gap > Duration::from_millis(50) {
                        stalls += 1;
                        stalled += gap;
                    }
                    assert_eq!(m.data.len(), MSG);
                    let seq = u64::from_be_bytes(m.data[..8].try_into().unwrap());
                    assert_eq!(seq, next, "messages out of order");
                    next += 1;
                    bytes += m.data.len();
                }
                Some(_) => {}
                None => panic!("client channel ended during throughput test"),
            }
        }
        bytes
    })
    .await
    .expect("throughput transfer did not finish within 120 s");
    let secs = start.elapsed().as_secs_f64();
    timeout(STEP, producer).await.unwrap().unwrap();
    println!(
        "rtc throughput: {:.1} MB/s ({} messages of {} bytes, {:.1} MB in {:.2} s)",
        received as f64 / secs / 1e6,
        count,
        MSG,
        received as f64 / 1e6,
        secs
    );
    println!("rtc throughput stalls: {stalls} gaps > 50 ms between messages, {stalled:?} in total");
    // The last SACK may still be on its way (delayed ack).
    timeout(STEP, async {
        while conn.sender.buffered().await != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("sent data never fully acknowledged");

    // Client goes away (like a closed tab): the seed must see Closed and free everything.
    let t = Instant::now();
    client.pc.close().await.expect("client close");
    let echoed = timeout(Duration::from_secs(30), closed_rx.recv())
        .await
        .expect("seed did not see Closed after the client closed")
        .expect("echo task ended without Closed");
    println!("rtc seed saw remote close after {:?}", t.elapsed());
    assert_eq!(echoed, sizes.len() + 50, "binary messages echoed");
    timeout(STEP, echo).await.unwrap().unwrap();
    wait_no_live(&host).await;
    assert!(conn.sender.is_closed());
    assert!(
        conn.sender.send(vec![1]).await.is_err(),
        "send after close must fail"
    );
    assert!(conn
        .sender
        .add_remote_candidate(
            "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
            Some("0".into()),
            Some(0)
        )
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_side_close_tears_down() {
    init_tracing();
    let host = host();
    let (client, mut conn) = connect_with(&host, true, false).await;
    assert_eq!(
        timeout(STEP, conn.events.recv()).await.expect("open"),
        Some(RtcEvent::Open)
    );
    client_open(&client.dc).await;
    conn.sender.send(b"hello".to_vec()).await.unwrap();
    assert_eq!(client_recv(&client.dc).await, b"hello");

    // Candidates the seed cannot use are ignored, not errors.
    conn.add_remote_candidate(
        "candidate:2 1 udp 2130706431 ::1 5000 typ host",
        Some("0".into()),
        Some(0),
    )
    .await
    .expect("IPv6 candidate is ignored");
    conn.add_remote_candidate(
        "candidate:1 1 udp 2130706431 abcd.local 5000 typ host",
        Some("0".into()),
        Some(0),
    )
    .await
    .expect("mDNS candidate is ignored");

    timeout(STEP, conn.sender.close()).await.expect("close");
    assert!(conn.sender.is_closed());
    let mut saw_closed = false;
    timeout(STEP, async {
        while let Some(ev) = conn.events.recv().await {
            if ev == RtcEvent::Closed {
                saw_closed = true;
            }
        }
    })
    .await
    .expect("events stream did not end");
    assert!(saw_closed);
    wait_no_live(&host).await;
    // The client notices the channel is gone (channel close or connection teardown).
    let gone = timeout(Duration::from_secs(30), async {
        loop {
            match client.dc.poll().await {
                Some(DataChannelEvent::OnClose) | None => return,
                Some(_) => {}
            }
        }
    })
    .await;
    println!("rtc client saw seed close: {}", gone.is_ok());
    client.pc.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_peer_is_detected_and_freed() {
    init_tracing();
    let host = host();
    let (client, mut conn) = connect_with(&host, false, true).await;
    assert_eq!(
        timeout(STEP, conn.events.recv()).await.expect("open"),
        Some(RtcEvent::Open)
    );
    client_open(&client.dc).await;
    // The client disappears without a word (like a crashed browser or a lost network).
    let t = Instant::now();
    drop(client);
    let ev = timeout(Duration::from_secs(40), async {
        loop {
            match conn.events.recv().await {
                Some(RtcEvent::Closed) | None => return,
                Some(_) => {}
            }
        }
    })
    .await;
    assert!(ev.is_ok(), "vanished peer not detected within 40 s");
    println!("rtc vanished peer detected after {:?}", t.elapsed());
    wait_no_live(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_conn_before_open_tears_down() {
    init_tracing();
    let host = host();
    let (client, conn) = connect(&host).await;
    drop(conn);
    wait_no_live(&host).await;
    client.pc.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_offer_is_an_error() {
    init_tracing();
    let host = host();
    for bad in [
        "",
        "garbage",
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n",
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n",
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n",
    ] {
        let r = timeout(STEP, host.accept_offer(bad))
            .await
            .expect("accept_offer timed out on garbage");
        assert!(r.is_err(), "garbage offer accepted: {bad:?}");
        println!("garbage offer refused: {:#}", r.err().unwrap());
    }
    assert_eq!(host.live_connections(), 0);

    let wildcard = RtcHost::new(RtcConfig {
        bind_ip: "0.0.0.0".parse().unwrap(),
        send_buffer_limit: 1 << 20,
        ..RtcConfig::default()
    });
    assert!(wildcard.accept_offer("v=0").await.is_err());
}

/// (address, port) of every candidate in an SDP.
fn candidate_addrs(sdp: &str) -> Vec<(String, u16)> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[4].to_owned(), f[5].parse().expect("candidate port"))
        })
        .collect()
}

#[tokio::test]
async fn udp_port_range_is_kept_and_exhaustion_is_an_error() {
    init_tracing();
    // A range of two ports that are free now (inside the test's network namespace).
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let lo = probe.local_addr().unwrap().port().clamp(1024, 65000);
    drop(probe);
    let host = RtcHost::new(RtcConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        udp_ports: Some((lo, lo + 1)),
        ..RtcConfig::default()
    });
    let (c1, conn1, a1) = connect_answer(&host, false, false).await;
    let (c2, conn2, a2) = connect_answer(&host, false, false).await;
    let mut ports: Vec<u16> = [&a1, &a2]
        .iter()
        .flat_map(|a| candidate_addrs(a))
        .map(|(_, p)| p)
        .collect();
    ports.sort();
    ports.dedup();
    assert_eq!(
        ports,
        vec![lo, lo + 1],
        "one port of the range per connection"
    );
    client_open(&c1.dc).await;
    client_open(&c2.dc).await;
    // Both ports are held: the next offer is refused, naming the range.
    // (Any offer will do: the port is picked before anything else is built.)
    let offer = c1.pc.local_description().await.expect("c1 offer").sdp;
    let err = host
        .accept_offer(&offer)
        .await
        .err()
        .expect("no port is free");
    assert!(
        err.to_string().contains(&format!("{lo}-{}", lo + 1)),
        "{err}"
    );
    drop((conn1, conn2));
    let _ = (c1.pc.close().await, c2.pc.close().await);
}

#[tokio::test]
async fn a_public_ip_replaces_the_bound_address_in_candidates() {
    init_tracing();
    let host = RtcHost::new(RtcConfig {
        bind_ip: "127.0.0.1".parse().unwrap(),
        public_ip: Some("127.0.0.9".parse().unwrap()),
        ..RtcConfig::default()
    });
    let (c, _conn, answer) = connect_answer(&host, false, false).await;
    let addrs = candidate_addrs(&answer);
    assert!(!addrs.is_empty(), "{answer}");
    assert!(
        addrs.iter().all(|(a, _)| a == "127.0.0.9"),
        "every candidate names the public address: {addrs:?}"
    );
    let _ = c.pc.close().await;
}
