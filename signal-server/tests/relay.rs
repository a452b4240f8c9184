//! relay {swarm, to, signal} → relay {swarm, from, signal}.
mod common;

use common::*;
use swarm_proto::signal::{ClientMsg, ErrorCode, RtcSignal, ServerMsg};

async fn relay_and_expect(from: &mut Client, to: &mut Client, swarm: &str, signal: RtcSignal) {
    from.send(&ClientMsg::Relay {
        swarm: swarm.into(),
        to: to.peer_id.clone(),
        signal: signal.clone(),
    })
    .await;
    assert_eq!(
        to.recv().await,
        ServerMsg::Relay {
            swarm: swarm.into(),
            from: from.peer_id.clone(),
            signal
        }
    );
}

#[tokio::test]
async fn offer_answer_and_candidates_are_relayed_both_ways() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    a.join("s").await;
    b.join("s").await;
    let cand = |c: &str| RtcSignal::Candidate {
        candidate: format!("candidate:1 1 udp 2122260223 127.0.0.1 {c} typ host"),
        sdp_mid: Some("0".into()),
        sdp_mline_index: Some(0),
    };
    relay_and_expect(
        &mut b,
        &mut a,
        "s",
        RtcSignal::Offer {
            sdp: "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n".into(),
        },
    )
    .await;
    relay_and_expect(
        &mut a,
        &mut b,
        "s",
        RtcSignal::Answer {
            sdp: "v=0\r\n".into(),
        },
    )
    .await;
    relay_and_expect(&mut b, &mut a, "s", cand("5000")).await;
    relay_and_expect(&mut a, &mut b, "s", cand("5001")).await;
    relay_and_expect(
        &mut a,
        &mut b,
        "s",
        RtcSignal::Candidate {
            candidate: String::new(),
            sdp_mid: None,
            sdp_mline_index: None,
        },
    )
    .await;
    a.expect_silence(50).await;
    b.expect_silence(50).await;
}

#[tokio::test]
async fn relay_to_a_peer_not_in_the_swarm_is_unknown_peer() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    a.join("s").await;
    b.join("other").await;
    let offer = RtcSignal::Offer { sdp: "v=0".into() };
    a.send(&ClientMsg::Relay {
        swarm: "s".into(),
        to: b.peer_id.clone(),
        signal: offer.clone(),
    })
    .await;
    a.expect_error(ErrorCode::UnknownPeer).await;
    a.send(&ClientMsg::Relay {
        swarm: "s".into(),
        to: "0000000000000000".into(),
        signal: offer,
    })
    .await;
    a.expect_error(ErrorCode::UnknownPeer).await;
    b.expect_silence(100).await;
    a.ping().await;
}

#[tokio::test]
async fn relay_in_a_swarm_not_joined_is_not_joined() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    b.join("s").await;
    a.send(&ClientMsg::Relay {
        swarm: "s".into(),
        to: b.peer_id.clone(),
        signal: RtcSignal::Answer { sdp: "x".into() },
    })
    .await;
    a.expect_error(ErrorCode::NotJoined).await;
    b.expect_silence(100).await;
}

#[tokio::test]
async fn relay_after_the_target_left_is_unknown_peer() {
    let addr = start(test_config()).await;
    let mut a = Client::viewer(addr).await;
    let mut b = Client::viewer(addr).await;
    a.join("s").await;
    b.join("s").await;
    b.send(&ClientMsg::Leave { swarm: "s".into() }).await;
    assert_eq!(
        a.recv().await,
        ServerMsg::PeerLeft {
            swarm: "s".into(),
            peer_id: b.peer_id.clone()
        }
    );
    a.send(&ClientMsg::Relay {
        swarm: "s".into(),
        to: b.peer_id.clone(),
        signal: RtcSignal::Offer { sdp: "v=0".into() },
    })
    .await;
    a.expect_error(ErrorCode::UnknownPeer).await;
}
