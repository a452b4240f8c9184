//! Bad input gets an error reply and changes nothing else: the connection
//! keeps working and other viewers are unaffected.
mod common;

use common::*;
use shoal_signal::Config;
use swarm_proto::signal::{
    ClientMsg, ErrorCode, RtcSignal, ServerMsg, MAX_NAME_LEN, MAX_SIGNAL_FRAME,
};
use tokio_tungstenite::tungstenite::Message;

/// Two viewers in swarm "s"; `bad` will misbehave, `good` must not notice.
async fn pair() -> (std::net::SocketAddr, Client, Client) {
    let addr = start(test_config()).await;
    let mut bad = Client::viewer(addr).await;
    let mut good = Client::viewer(addr).await;
    bad.join("s").await;
    good.join("s").await;
    (addr, bad, good)
}

/// `bad` still relays to `good`, and `good` saw nothing before that relay.
async fn both_still_work(bad: &mut Client, good: &mut Client) {
    bad.ping().await;
    let signal = RtcSignal::Offer { sdp: "v=0".into() };
    bad.send(&ClientMsg::Relay {
        swarm: "s".into(),
        to: good.peer_id.clone(),
        signal: signal.clone(),
    })
    .await;
    assert_eq!(
        good.recv().await,
        ServerMsg::Relay {
            swarm: "s".into(),
            from: bad.peer_id.clone(),
            signal
        }
    );
    good.ping().await;
}

#[tokio::test]
async fn malformed_json_gets_bad_message_and_the_connection_still_works() {
    let (_addr, mut bad, mut good) = pair().await;
    for text in [
        "{",
        "not json",
        "{\"type\":\"nope\"}",
        "{\"type\":\"join\"}",
        "[]",
        "",
        "{\"type\":\"relay\",\"swarm\":\"s\",\"to\":\"x\",\"signal\":{\"kind\":\"bogus\"}}",
    ] {
        bad.send_raw(Message::text(text)).await;
        let msg = bad.expect_error(ErrorCode::BadMessage).await;
        assert!(!msg.is_empty());
    }
    both_still_work(&mut bad, &mut good).await;
}

#[tokio::test]
async fn bad_field_gets_bad_message() {
    let (_addr, mut bad, mut good) = pair().await;
    bad.send_raw(Message::text(r#"{"type":"join","swarm":""}"#))
        .await;
    bad.expect_error(ErrorCode::BadMessage).await;
    let long = "x".repeat(MAX_NAME_LEN + 1);
    bad.send(&ClientMsg::Join { swarm: long }).await;
    bad.expect_error(ErrorCode::BadMessage).await;
    both_still_work(&mut bad, &mut good).await;
}

#[tokio::test]
async fn oversized_frame_gets_too_large_and_the_connection_still_works() {
    let (_addr, mut bad, mut good) = pair().await;
    let big = format!(
        r#"{{"type":"join","swarm":"{}"}}"#,
        "a".repeat(MAX_SIGNAL_FRAME)
    );
    bad.send_raw(Message::text(big)).await;
    let msg = bad.expect_error(ErrorCode::TooLarge).await;
    assert!(msg.contains("limit"), "{msg}");
    // An oversized relay is not forwarded either.
    let sdp = "v".repeat(MAX_SIGNAL_FRAME * 2);
    bad.send(&ClientMsg::Relay {
        swarm: "s".into(),
        to: good.peer_id.clone(),
        signal: RtcSignal::Offer { sdp },
    })
    .await;
    bad.expect_error(ErrorCode::TooLarge).await;
    both_still_work(&mut bad, &mut good).await;
}

/// Frames beyond the WebSocket layer's own limit (16 × MAX_SIGNAL_FRAME) are
/// not read at all: the server closes that connection. Others are unaffected.
#[tokio::test]
async fn huge_frame_beyond_the_websocket_limit_closes_only_that_connection() {
    let (addr, mut bad, mut good) = pair().await;
    let huge = "x".repeat(32 * MAX_SIGNAL_FRAME);
    // The send may fail if the server closes first; either way it must close.
    let _ = futures_util::SinkExt::send(&mut bad.ws, Message::text(huge)).await;
    bad.expect_closed().await;
    assert_eq!(
        good.recv().await,
        ServerMsg::PeerLeft {
            swarm: "s".into(),
            peer_id: bad.peer_id.clone()
        }
    );
    good.ping().await;
    let mut other = Client::viewer(addr).await;
    other.ping().await;
}

#[tokio::test]
async fn message_before_hello_gets_protocol_error_and_hello_still_works() {
    let addr = start(test_config()).await;
    let mut good = Client::viewer(addr).await;
    good.join("s").await;
    let mut c = Client::connect(addr).await;
    c.send(&ClientMsg::Join { swarm: "s".into() }).await;
    c.expect_error(ErrorCode::Protocol).await;
    c.send(&ClientMsg::Heartbeat).await;
    c.expect_error(ErrorCode::Protocol).await;
    // Nothing was joined: the member of "s" heard nothing, and after hello
    // the client is a normal viewer.
    good.expect_silence(100).await;
    c.send(&ClientMsg::Hello {
        role: swarm_proto::signal::Role::Viewer,
        token: None,
        seed: None,
    })
    .await;
    assert!(matches!(c.recv().await, ServerMsg::Welcome { .. }));
    match c.join("s").await {
        ServerMsg::Joined { peers, .. } => assert_eq!(peers[0].peer_id, good.peer_id),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn second_hello_is_a_protocol_error() {
    let (_addr, mut bad, mut good) = pair().await;
    bad.send(&ClientMsg::Hello {
        role: swarm_proto::signal::Role::Viewer,
        token: None,
        seed: None,
    })
    .await;
    bad.expect_error(ErrorCode::Protocol).await;
    both_still_work(&mut bad, &mut good).await;
}

#[tokio::test]
async fn binary_frame_gets_bad_message() {
    let (_addr, mut bad, mut good) = pair().await;
    bad.send_raw(Message::binary(vec![0u8, 1, 2, 3])).await;
    bad.expect_error(ErrorCode::BadMessage).await;
    both_still_work(&mut bad, &mut good).await;
}

#[tokio::test]
async fn seed_hello_without_seed_info_is_refused_as_bad_message() {
    let addr = start(test_config()).await;
    let mut c = Client::connect(addr).await;
    c.send(&ClientMsg::Hello {
        role: swarm_proto::signal::Role::Seed,
        token: None,
        seed: None,
    })
    .await;
    c.expect_error(ErrorCode::BadMessage).await;
    // Still before hello.
    c.send(&ClientMsg::Heartbeat).await;
    c.expect_error(ErrorCode::Protocol).await;
}

#[tokio::test]
async fn too_many_bad_frames_in_a_row_close_the_connection() {
    let addr = start(Config {
        max_bad_frames: 5,
        ..test_config()
    })
    .await;
    let mut good = Client::viewer(addr).await;
    good.join("s").await;
    let mut bad = Client::viewer(addr).await;
    bad.join("s").await;
    // Good frames in between reset the count.
    for _ in 0..3 {
        for _ in 0..4 {
            bad.send_raw(Message::text("{")).await;
            bad.expect_error(ErrorCode::BadMessage).await;
        }
        bad.ping().await;
    }
    for _ in 0..5 {
        bad.send_raw(Message::text("{")).await;
    }
    bad.expect_closed().await;
    assert_eq!(
        good.recv().await,
        ServerMsg::PeerLeft {
            swarm: "s".into(),
            peer_id: bad.peer_id.clone()
        }
    );
    good.ping().await;
}

#[tokio::test]
async fn default_limit_is_twenty_bad_frames() {
    let addr = start(test_config()).await;
    let mut c = Client::connect(addr).await;
    for _ in 0..19 {
        c.send_raw(Message::text("{")).await;
        c.expect_error(ErrorCode::BadMessage).await;
    }
    c.send_raw(Message::text("{")).await;
    c.expect_error(ErrorCode::BadMessage).await;
    c.expect_closed().await;
}

#[tokio::test]
async fn report_and_get_peers_on_unjoined_swarm_are_not_joined() {
    let (_addr, mut bad, mut good) = pair().await;
    bad.send(&ClientMsg::Report {
        swarm: "zzz".into(),
        report: Default::default(),
    })
    .await;
    bad.expect_error(ErrorCode::NotJoined).await;
    bad.send(&ClientMsg::Leave {
        swarm: "zzz".into(),
    })
    .await;
    bad.expect_error(ErrorCode::NotJoined).await;
    both_still_work(&mut bad, &mut good).await;
}
