//! A seed's hello registers it and joins it to its contents' swarms.
mod common;

use common::*;
use swarm_proto::signal::{ClientMsg, RtcSignal, ServerMsg};

#[tokio::test]
async fn seed_hello_registers_and_viewers_see_it_in_seeds_and_peers() {
    let addr = start(test_config()).await;
    let info = seed_info("seed-1", &["movie", "live"]);
    let mut seed = Client::seed(addr, info.clone()).await;
    let mut v = Client::viewer(addr).await;
    match v.join("movie").await {
        ServerMsg::Joined { peers, seeds, .. } => {
            // Listed with the joined content only.
            let listed = swarm_proto::signal::SeedInfo {
                contents: vec!["movie".into()],
                ..info.clone()
            };
            assert_eq!(seeds, vec![listed]);
            assert_eq!(peers.len(), 1, "{peers:?}");
            assert_eq!(peers[0].peer_id, seed.peer_id);
            assert!(peers[0].is_seed);
        }
        _ => unreachable!(),
    }
    // A swarm the seed does not hold lists no seed.
    match v.join("other").await {
        ServerMsg::Joined { peers, seeds, .. } => {
            assert!(peers.is_empty());
            assert!(seeds.is_empty());
        }
        _ => unreachable!(),
    }
    // The viewer can signal the seed, and the seed can answer.
    let offer = RtcSignal::Offer { sdp: "v=0".into() };
    v.send(&ClientMsg::Relay {
        swarm: "movie".into(),
        to: seed.peer_id.clone(),
        signal: offer.clone(),
    })
    .await;
    assert_eq!(
        seed.recv().await,
        ServerMsg::Relay {
            swarm: "movie".into(),
            from: v.peer_id.clone(),
            signal: offer
        }
    );
    let answer = RtcSignal::Answer {
        sdp: "v=0 answer".into(),
    };
    seed.send(&ClientMsg::Relay {
        swarm: "movie".into(),
        to: v.peer_id.clone(),
        signal: answer.clone(),
    })
    .await;
    assert_eq!(
        v.recv().await,
        ServerMsg::Relay {
            swarm: "movie".into(),
            from: seed.peer_id.clone(),
            signal: answer
        }
    );

    let (status, _, body) = http_get(addr, "/api/seeds").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let seeds = json["seeds"].as_array().unwrap();
    assert_eq!(seeds.len(), 1, "{body}");
    assert_eq!(seeds[0]["seed_id"], "seed-1");
    assert_eq!(seeds[0]["peer_id"], seed.peer_id.as_str());
    assert_eq!(seeds[0]["http_base"], "http://127.0.0.1:9");
    assert_eq!(seeds[0]["contents"], serde_json::json!(["movie", "live"]));
    assert_eq!(seeds[0]["group"], "loopback");
}

#[tokio::test]
async fn seed_disconnect_unregisters_it_and_tells_viewers() {
    let addr = start(test_config()).await;
    let seed = Client::seed(addr, seed_info("seed-1", &["movie"])).await;
    let mut v = Client::viewer(addr).await;
    v.join("movie").await;
    let seed_id = seed.peer_id.clone();
    drop(seed);
    assert_eq!(
        v.recv().await,
        ServerMsg::PeerLeft {
            swarm: "movie".into(),
            peer_id: seed_id
        }
    );
    let (_, _, body) = http_get(addr, "/api/seeds").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["seeds"],
        serde_json::json!([])
    );
    let mut w = Client::viewer(addr).await;
    match w.join("movie").await {
        ServerMsg::Joined { peers, seeds, .. } => {
            assert_eq!(peers.len(), 1); // only v
            assert!(seeds.is_empty());
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn seed_registering_again_replaces_its_old_connection() {
    let addr = start(test_config()).await;
    let mut old = Client::seed(addr, seed_info("seed-1", &["movie"])).await;
    let mut v = Client::viewer(addr).await;
    v.join("movie").await;
    let new = Client::seed(addr, seed_info("seed-1", &["movie"])).await;
    assert_eq!(
        v.recv().await,
        ServerMsg::PeerLeft {
            swarm: "movie".into(),
            peer_id: old.peer_id.clone()
        }
    );
    old.expect_closed().await;
    let mut w = Client::viewer(addr).await;
    match w.join("movie").await {
        ServerMsg::Joined { peers, seeds, .. } => {
            assert_eq!(seeds.len(), 1);
            assert!(peers.iter().any(|p| p.peer_id == new.peer_id && p.is_seed));
            assert!(peers.iter().all(|p| p.peer_id != old.peer_id));
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn two_seeds_of_one_content_are_both_listed() {
    let addr = start(test_config()).await;
    let _a = Client::seed(addr, seed_info("seed-a", &["movie"])).await;
    let _b = Client::seed(addr, seed_info("seed-b", &["movie", "other"])).await;
    let mut v = Client::viewer(addr).await;
    match v.join("movie").await {
        ServerMsg::Joined { peers, seeds, .. } => {
            assert_eq!(
                seeds.iter().map(|s| s.seed_id.as_str()).collect::<Vec<_>>(),
                vec!["seed-a", "seed-b"]
            );
            assert_eq!(peers.iter().filter(|p| p.is_seed).count(), 2);
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn the_seed_is_listed_however_large_the_swarm() {
    let addr = start(shoal_signal::Config {
        match_rule: swarm_proto::matching::MatchRule {
            enough_same_group: 3,
            max: 3,
        },
        ..test_config()
    })
    .await;
    let seed = Client::seed(addr, seed_info("seed-1", &["movie"])).await;
    let mut viewers = Vec::new();
    for _ in 0..10 {
        let mut v = Client::viewer(addr).await;
        v.join("movie").await;
        viewers.push(v);
    }
    for _ in 0..5 {
        let mut v = Client::viewer(addr).await;
        match v.join("movie").await {
            ServerMsg::Joined { peers, .. } => {
                assert_eq!(peers.len(), 4, "the seed and 3 viewers: {peers:?}");
                assert_eq!(peers[0].peer_id, seed.peer_id);
                assert!(peers[0].is_seed);
                assert!(peers[1..].iter().all(|p| !p.is_seed));
            }
            _ => unreachable!(),
        }
    }
}
