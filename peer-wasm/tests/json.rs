//! The browser-side JSON readers (`shoal_peer::json`) against serde, the
//! format's source of truth: every server message kind and a manifest,
//! written by serde, read back equal; bad input refused by both.
#![cfg(target_arch = "wasm32")]

use swarm_proto::manifest::{sha256_hex, SegmentEntry, MANIFEST_VERSION};
use swarm_proto::signal::{
    ErrorCode, IceServer, PeerInfo, RefuseReason, RtcSignal, SeedInfo, ServerMsg, SignalError,
};
use swarm_proto::{Manifest, ManifestParts};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn every_server_msg() -> Vec<ServerMsg> {
    let peer = |id: &str, is_seed| PeerInfo {
        peer_id: id.into(),
        is_seed,
        group: "10.0.0.0/24".into(),
    };
    let seed = SeedInfo {
        seed_id: "seed-1".into(),
        http_base: "http://127.0.0.1:8081".into(),
        contents: vec!["a".into(), "b".into()],
        capacity: 50,
        live: Vec::new(),
    };
    let relay = |signal| ServerMsg::Relay {
        swarm: "s".into(),
        from: "p1".into(),
        signal,
    };
    let mut msgs = vec![
        ServerMsg::Welcome {
            peer_id: "p0".into(),
            heartbeat_ms: 15_000,
            group: "g \"quoted\" é".into(),
            server_ms: Some(1_800_000_000_123),
            ice_servers: Vec::new(),
        },
        ServerMsg::Welcome {
            peer_id: "p0".into(),
            heartbeat_ms: 15_000,
            group: "g".into(),
            server_ms: None,
            ice_servers: vec![
                IceServer {
                    urls: vec!["stun:198.51.100.1:3478".into(), "stun:[::1]:3478".into()],
                    username: None,
                    credential: None,
                },
                IceServer {
                    urls: vec!["turn:198.51.100.1:3478?transport=udp".into()],
                    username: Some("1800000000:p0".into()),
                    credential: Some("TtElzSjT0GdnTQ9xdcRNxx96yQs=".into()),
                },
            ],
        },
        ServerMsg::Joined {
            swarm: "s".into(),
            peers: vec![peer("p1", false), peer("seed", true)],
            seeds: vec![seed],
            manifest: Some("http://127.0.0.1:8081/vod/s/manifest.json".into()),
        },
        ServerMsg::Joined {
            swarm: "s".into(),
            peers: vec![],
            seeds: vec![],
            manifest: None,
        },
        ServerMsg::Peers {
            swarm: "s".into(),
            peers: vec![peer("p2", false)],
        },
        relay(RtcSignal::Offer {
            sdp: "v=0\r\n".into(),
        }),
        relay(RtcSignal::Answer {
            sdp: "v=0\r\n".into(),
        }),
        relay(RtcSignal::Candidate {
            candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
        }),
        relay(RtcSignal::Candidate {
            candidate: "".into(),
            sdp_mid: None,
            sdp_mline_index: None,
        }),
        ServerMsg::PeerLeft {
            swarm: "s".into(),
            peer_id: "p1".into(),
        },
        ServerMsg::HeartbeatAck,
        ServerMsg::Kick {
            kick: 3,
            message: "bye".into(),
            ban_s: Some(60),
        },
        ServerMsg::Kick {
            kick: u64::from(u32::MAX) + 1,
            message: String::new(),
            ban_s: None,
        },
    ];
    for code in [
        ErrorCode::BadMessage,
        ErrorCode::TooLarge,
        ErrorCode::Protocol,
        ErrorCode::UnknownPeer,
        ErrorCode::NotJoined,
        ErrorCode::RateLimited,
    ] {
        msgs.push(ServerMsg::error(code, "why"));
    }
    for (i, reason) in RefuseReason::ALL.into_iter().enumerate() {
        let swarm = (i % 2 == 0).then_some("s");
        msgs.push(ServerMsg::refused(swarm, reason, "why"));
    }
    msgs
}

#[wasm_bindgen_test]
fn every_server_message_reads_as_serde_wrote_it() {
    for m in every_server_msg() {
        let text = m.encode();
        assert_eq!(shoal_peer::json::server_msg(&text), Ok(m.clone()), "{text}");
        assert_eq!(ServerMsg::decode(&text), Ok(m));
    }
}

#[wasm_bindgen_test]
fn unknown_fields_are_ignored_and_null_optionals_are_missing() {
    let text = r#"{"type":"relay","swarm":"s","from":"p","extra":[1,2],
        "signal":{"kind":"candidate","candidate":"c","sdpMid":null}}"#;
    let want = ServerMsg::Relay {
        swarm: "s".into(),
        from: "p".into(),
        signal: RtcSignal::Candidate {
            candidate: "c".into(),
            sdp_mid: None,
            sdp_mline_index: None,
        },
    };
    assert_eq!(shoal_peer::json::server_msg(text), Ok(want.clone()));
    assert_eq!(ServerMsg::decode(text), Ok(want));
}

#[wasm_bindgen_test]
fn bad_server_frames_are_refused_by_both_readers() {
    let bad = [
        "",
        "{",
        "[]",
        "null",
        "42",
        r#"{"type":"nope"}"#,
        r#"{"peer_id":"p"}"#,
        r#"{"type":"welcome","peer_id":"p","group":"g"}"#,
        r#"{"type":"welcome","peer_id":"p","heartbeat_ms":-1,"group":"g"}"#,
        r#"{"type":"welcome","peer_id":"p","heartbeat_ms":1.5,"group":"g"}"#,
        r#"{"type":"welcome","peer_id":7,"heartbeat_ms":1,"group":"g"}"#,
        r#"{"type":"joined","swarm":"s","peers":{},"seeds":[]}"#,
        r#"{"type":"joined","swarm":"s","peers":[{"peer_id":"p","group":"g"}],"seeds":[]}"#,
        r#"{"type":"peers","swarm":"s","peers":[7]}"#,
        r#"{"type":"relay","swarm":"s","from":"p","signal":{"kind":"bye"}}"#,
        r#"{"type":"relay","swarm":"s","from":"p","signal":{"kind":"candidate","candidate":"c","sdpMLineIndex":70000}}"#,
        r#"{"type":"error","code":"teapot","message":"m"}"#,
    ];
    for text in bad {
        let ours = shoal_peer::json::server_msg(text);
        assert!(
            matches!(ours, Err(SignalError::Malformed(_))),
            "{text}: {ours:?}"
        );
        assert!(ServerMsg::decode(text).is_err(), "serde accepts {text}");
    }
    let huge = format!(
        r#"{{"type":"error","code":"refused","message":"{}"}}"#,
        "x".repeat(70_000)
    );
    assert!(matches!(
        shoal_peer::json::server_msg(&huge),
        Err(SignalError::TooLarge(_))
    ));
}

fn manifest() -> Manifest {
    let entry = |uri: &str, n: u8, duration_ms| {
        let data = vec![n; 1000 + n as usize];
        SegmentEntry {
            uri: uri.into(),
            size: data.len() as u64,
            sha256: sha256_hex(&data),
            duration_ms,
        }
    };
    ManifestParts {
        version: MANIFEST_VERSION,
        content_id: "c1".into(),
        title: "A \"title\" ✓".into(),
        playlist: "index.m3u8".into(),
        mime: "video/mp4; codecs=\"avc1.64001e, mp4a.40.2\"".into(),
        piece_size: 16 * 1024,
        init: entry("init.mp4", 0, 0),
        segments: (1..=5)
            .map(|i| entry(&format!("seg_{i:05}.m4s"), i, 2000 + i as u32))
            .collect(),
    }
    .validate()
    .unwrap()
}

#[wasm_bindgen_test]
fn a_manifest_reads_as_serde_wrote_it_and_is_validated() {
    let m = manifest();
    let text = m.to_json();
    assert_eq!(shoal_peer::json::manifest(&text), Ok(m.clone()));
    assert_eq!(Manifest::from_json(&text), Ok(m.clone()));

    // Invalid parts are refused by the same validation.
    let mut parts = m.into_parts();
    parts.piece_size = 0;
    let text = serde_json::to_string(&parts).unwrap();
    let ours = shoal_peer::json::manifest(&text).unwrap_err();
    assert_eq!(Some(ours), Manifest::from_json(&text).err());
}

#[wasm_bindgen_test]
fn bad_manifests_are_refused_by_both_readers() {
    let good = manifest().to_json();
    let bad = [
        "{".to_string(),
        "[]".to_string(),
        good.replacen("\"piece_size\"", "\"piece_sighs\"", 1),
        good.replacen("\"segments\": [", "\"segments\": 7, \"x\": [", 1),
        good.replacen("\"size\": 1000", "\"size\": -1000", 1),
        good.replacen("\"uri\": \"init.mp4\"", "\"uri\": 5", 1),
    ];
    for text in bad {
        assert_ne!(text, good);
        let ours = shoal_peer::json::manifest(&text);
        assert!(ours.is_err(), "{text}");
        assert!(Manifest::from_json(&text).is_err(), "serde accepts {text}");
    }
}

fn live_manifest() -> swarm_proto::live::LiveManifest {
    use swarm_proto::live::{LiveManifest, LiveMeta, LIVE_MANIFEST_VERSION};
    let meta = |seq: u32| LiveMeta {
        seq,
        start_ms: 1000 * seq as u64 + 21,
        duration_ms: 1000,
        capture_ms: 1_796_588_053_814 + 1000 * seq as u64,
        size: 120_000 + seq % 1000,
        sha256: [seq as u8; 32],
        sig: [0xab; 64],
    };
    LiveManifest {
        version: LIVE_MANIFEST_VERSION,
        channel: "news-1".into(),
        title: "News \"live\" é".into(),
        mime: "video/mp4; codecs=\"avc1.64001f,mp4a.40.2\"".into(),
        piece_size: 16384,
        segment_ms: 1000,
        playlist: "index.m3u8".into(),
        init: SegmentEntry {
            uri: "init.mp4".into(),
            size: 1347,
            sha256: sha256_hex(b"init"),
            duration_ms: 0,
        },
        init_sig: [0x5a; 64],
        public_key: [0x11; 32],
        recent: vec![meta(482_946_777), meta(482_946_778)],
        interrupted: Some("source ended".into()),
    }
}

#[cfg(feature = "live")]
#[wasm_bindgen_test]
fn a_live_manifest_reads_as_serde_wrote_it_and_bad_ones_are_refused() {
    use shoal_peer::json::{any_manifest, AnyManifest};
    use swarm_proto::live::LiveManifest;
    let m = live_manifest();
    let text = m.to_json();
    match any_manifest(&text) {
        Ok(AnyManifest::Live(ours)) => assert_eq!(ours, m),
        #[cfg(feature = "vod")]
        Ok(AnyManifest::Vod(_)) => panic!("a live manifest read as on demand"),
        Err(e) => panic!("{e}: {text}"),
    }
    assert_eq!(LiveManifest::from_json(&text), Ok(m.clone()));
    let no_reason = swarm_proto::live::LiveManifest {
        interrupted: None,
        ..m.clone()
    };
    assert!(
        matches!(any_manifest(&no_reason.to_json()), Ok(AnyManifest::Live(x)) if x == no_reason)
    );
    let bad = [
        text.replacen("\"public_key\":\"1111", "\"public_key\":\"11", 1),
        text.replacen("\"sig\":\"abab", "\"sig\":\"zzab", 1),
        text.replacen("\"piece_size\":16384", "\"piece_size\":0", 1),
        text.replacen("\"seq\":482946777", "\"seq\":-1", 1),
        text.replacen("\"version\":1", "\"version\":2", 1),
    ];
    for t in bad {
        assert_ne!(t, text);
        assert!(any_manifest(&t).is_err(), "ours accepts {t}");
        assert!(LiveManifest::from_json(&t).is_err(), "serde accepts {t}");
    }
    // An on-demand manifest is still one (in the build that plays them).
    #[cfg(feature = "vod")]
    assert!(matches!(
        any_manifest(&manifest().to_json()),
        Ok(AnyManifest::Vod(_))
    ));
}

/// The live-only build (the shipped live bundle) says which build plays a
/// video on demand.
#[cfg(all(feature = "live", not(feature = "vod")))]
#[wasm_bindgen_test]
fn the_live_build_refuses_an_on_demand_manifest_and_names_the_on_demand_build() {
    let e = match shoal_peer::json::any_manifest(&manifest().to_json()) {
        Err(e) => e,
        Ok(_) => panic!("the live-only build read an on-demand manifest"),
    };
    assert!(e.contains("on-demand build"), "{e}");
}

/// The on-demand build says which build plays a live channel.
#[cfg(not(feature = "live"))]
#[wasm_bindgen_test]
fn the_on_demand_build_refuses_a_live_manifest_and_names_the_live_build() {
    let e = match shoal_peer::json::any_manifest(&live_manifest().to_json()) {
        Err(e) => e,
        Ok(_) => panic!("the on-demand build read a live manifest"),
    };
    assert!(e.contains("live build"), "{e}");
    assert!(matches!(
        shoal_peer::json::any_manifest(&manifest().to_json()),
        Ok(shoal_peer::json::AnyManifest::Vod(_))
    ));
}
