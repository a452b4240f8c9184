//! The live engine in the simulator: signed segments pushed by the seed and
//! spread by the viewers, at the live edge.

use swarm_proto::live::sim::{run, LiveSimConfig};

fn summary(r: &swarm_proto::live::sim::LiveSimResult) -> String {
    let (med, max) = r.latency_ms();
    format!(
        "p2p {:.3} copies {:.3} latency median {med} max {max} stalls {} startup {:?}",
        r.p2p_share(),
        r.seed_egress_copies(),
        r.stalls(),
        r.viewers
            .iter()
            .map(|v| v.stats.startup_ms)
            .collect::<Vec<_>>()
    )
}

#[test]
fn six_viewers_share_the_live_edge() {
    let r = run(&LiveSimConfig::default());
    let s = summary(&r);
    println!("{s}");
    let (med, _) = r.latency_ms();
    for (i, v) in r.viewers.iter().enumerate() {
        assert!(v.stats.startup_ms.is_some(), "viewer {i} never played: {s}");
        assert!(
            v.dropped.is_empty(),
            "viewer {i} dropped honest peers {:?}: {s}",
            v.dropped
        );
        assert_eq!(v.stats.verify_failures, 0, "{s}");
    }
    assert_eq!(r.stalls(), 0, "{s}");
    assert!(r.p2p_share() > 0.7, "{s}");
    assert!(r.seed_egress_copies() < 1.5, "{s}");
    assert!(med <= 3000, "{s}");
}

#[test]
fn a_viewer_corrupting_segments_is_dropped_and_nobody_stalls() {
    let cfg = LiveSimConfig {
        corrupt_viewer: Some(0),
        ..LiveSimConfig::default()
    };
    let r = run(&cfg);
    let s = summary(&r);
    println!("{s}");
    for (i, v) in r.viewers.iter().enumerate().skip(1) {
        assert!(v.stats.startup_ms.is_some(), "viewer {i} never played: {s}");
        assert!(
            v.dropped.iter().all(|&d| d == 1),
            "viewer {i} dropped someone honest: {:?}",
            v.dropped
        );
    }
    let droppers = r.viewers.iter().filter(|v| v.dropped.contains(&1)).count();
    assert!(droppers >= 1, "nobody caught the corrupting viewer: {s}");
    let stalls: u32 = r.viewers.iter().skip(1).map(|v| v.stats.stalls).sum();
    assert_eq!(stalls, 0, "{s}");
}

mod strangers {
    use sha2::{Digest, Sha256};
    use std::sync::Arc;
    use swarm_proto::engine::{Input, Output};
    use swarm_proto::live::sign::{verify, LiveSigner};
    use swarm_proto::live::{
        LiveConfig, LiveEngine, LiveManifest, LiveMeta, LIVE_MANIFEST_VERSION, LIVE_SEGMENT_COUNT,
    };
    use swarm_proto::manifest::{sha256_hex, SegmentEntry};
    use swarm_proto::wire::{encode, Message};

    const CH: &str = "news";

    fn setup() -> (LiveSigner, LiveEngine, LiveMeta, Vec<u8>) {
        let signer = LiveSigner::from_secret([1; 32]);
        let init_sha = sha256_hex(&[0u8; 10]);
        let data: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let mut meta = LiveMeta {
            seq: 10,
            start_ms: 10_000,
            duration_ms: 1000,
            capture_ms: 1_800_000_010_000,
            size: data.len() as u32,
            sha256: Sha256::digest(&data).into(),
            sig: [0; 64],
        };
        signer.sign_meta(CH, &mut meta);
        let m = LiveManifest {
            version: LIVE_MANIFEST_VERSION,
            channel: CH.into(),
            title: CH.into(),
            mime: "video/mp4".into(),
            piece_size: 16 * 1024,
            segment_ms: 1000,
            playlist: "index.m3u8".into(),
            init: SegmentEntry {
                uri: "init.mp4".into(),
                size: 10,
                sha256: init_sha.clone(),
                duration_ms: 0,
            },
            init_sig: signer.sign_init(CH, &init_sha),
            public_key: signer.public_key(),
            recent: vec![],
            interrupted: None,
        };
        let e = LiveEngine::new(Arc::new(m), LiveConfig::default());
        (signer, e, meta, data)
    }

    /// Drains outputs, answering signature checks; returns the rest.
    fn drain(e: &mut LiveEngine, pk: &[u8; 32], now: u64) -> Vec<Output> {
        let mut rest = Vec::new();
        while let Some(o) = e.poll_output() {
            match o {
                Output::CheckSignature {
                    id,
                    message,
                    signature,
                } => {
                    let ok = verify(pk, &message, &signature);
                    e.handle_input(now, Input::SignatureChecked { id, ok });
                }
                o => rest.push(o),
            }
        }
        rest
    }

    fn connect(e: &mut LiveEngine, peer: u64, id: &str) {
        e.handle_input(
            0,
            Input::PeerConnected {
                peer,
                remote_id: id,
                is_seed: false,
            },
        );
        let hello = encode(&Message::Hello {
            content_id: CH,
            segments: LIVE_SEGMENT_COUNT,
        });
        e.handle_input(0, Input::PeerData { peer, data: &hello });
    }

    fn dropped(out: &[Output], peer: u64) -> bool {
        out.iter()
            .any(|o| matches!(o, Output::DropPeer { peer: p, .. } if *p == peer))
    }

    #[test]
    fn a_forged_description_bans_its_sender_and_the_signed_one_is_wanted() {
        let (signer, mut e, meta, _) = setup();
        let pk = signer.public_key();
        drain(&mut e, &pk, 0);
        connect(&mut e, 1, "evil");
        connect(&mut e, 2, "honest");
        drain(&mut e, &pk, 0);
        let forged = LiveMeta { size: 1, ..meta };
        e.handle_input(
            5,
            Input::PeerData {
                peer: 1,
                data: &encode(&Message::LiveMeta(forged)),
            },
        );
        let out = drain(&mut e, &pk, 5);
        assert!(dropped(&out, 1), "forged description not punished: {out:?}");
        assert!(e.is_banned("evil"));
        e.handle_input(
            6,
            Input::PeerData {
                peer: 2,
                data: &encode(&Message::LiveMeta(meta)),
            },
        );
        let out = drain(&mut e, &pk, 6);
        assert!(!dropped(&out, 2), "{out:?}");
        let want = encode(&Message::LiveWant { seq: meta.seq });
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Send { peer: 2, data } if *data == want)),
            "the honest holder is not asked: {out:?}"
        );
    }

    #[test]
    fn a_segment_that_does_not_match_its_signed_hash_bans_the_sender() {
        let (signer, mut e, meta, data) = setup();
        let pk = signer.public_key();
        drain(&mut e, &pk, 0);
        connect(&mut e, 2, "liar");
        e.handle_input(
            6,
            Input::PeerData {
                peer: 2,
                data: &encode(&Message::LiveMeta(meta)),
            },
        );
        drain(&mut e, &pk, 6);
        let mut bad = data.clone();
        bad[100] ^= 1;
        for (i, chunk) in bad.chunks(16 * 1024).enumerate() {
            let m = Message::Piece {
                seg: meta.seq,
                piece: i as u32,
                data: chunk,
            };
            e.handle_input(
                7,
                Input::PeerData {
                    peer: 2,
                    data: &encode(&m),
                },
            );
        }
        let out = drain(&mut e, &pk, 7);
        assert!(dropped(&out, 2), "{out:?}");
        assert!(e.is_banned("liar"));
        assert!(!e.has_segment(meta.seq));
    }

    #[test]
    fn pieces_nobody_asked_for_are_discarded_then_their_sender_dropped() {
        let (signer, mut e, meta, data) = setup();
        let pk = signer.public_key();
        drain(&mut e, &pk, 0);
        connect(&mut e, 3, "flooder");
        drain(&mut e, &pk, 0);
        let cap = LiveConfig::default().max_unsolicited as usize;
        let piece = Message::Piece {
            seg: meta.seq,
            piece: 0,
            data: &data[..16 * 1024],
        };
        let bytes = encode(&piece);
        let mut out = Vec::new();
        for _ in 0..=cap {
            e.handle_input(
                8,
                Input::PeerData {
                    peer: 3,
                    data: &bytes,
                },
            );
            out.extend(drain(&mut e, &pk, 8));
        }
        assert!(
            dropped(&out, 3),
            "a flood of unsolicited pieces was tolerated"
        );
        assert!(!e.has_segment(meta.seq));
    }

    #[test]
    fn a_viewer_that_claims_segments_it_never_sends_is_dropped() {
        let (signer, mut e, meta, _) = setup();
        let pk = signer.public_key();
        drain(&mut e, &pk, 0);
        connect(&mut e, 4, "claimer");
        drain(&mut e, &pk, 0);
        let allowance = LiveConfig::default().max_failed_wants as u64;
        let timeout = LiveConfig::default().want_timeout_ms;
        let mut now = 10;
        let mut out = Vec::new();
        // It announces one validly signed segment after another and never
        // answers the wants that follow.
        for i in 0..allowance + 3 {
            let mut m = LiveMeta {
                seq: meta.seq + i as u32,
                start_ms: meta.start_ms + 1000 * i,
                capture_ms: meta.capture_ms + 1000 * i,
                ..meta
            };
            signer.sign_meta(CH, &mut m);
            e.handle_input(
                now,
                Input::PeerData {
                    peer: 4,
                    data: &encode(&Message::LiveMeta(m)),
                },
            );
            out.extend(drain(&mut e, &pk, now));
            now += timeout + 1;
            e.handle_input(now, Input::Timeout);
            out.extend(drain(&mut e, &pk, now));
            if dropped(&out, 4) {
                break;
            }
        }
        assert!(dropped(&out, 4), "a peer that never delivers was kept");
        assert!(e.is_banned("claimer"));
    }

    #[test]
    fn only_seeds_may_push() {
        let (signer, mut e, meta, data) = setup();
        let pk = signer.public_key();
        drain(&mut e, &pk, 0);
        connect(&mut e, 5, "pusher");
        drain(&mut e, &pk, 0);
        e.handle_input(
            1,
            Input::PeerData {
                peer: 5,
                data: &encode(&Message::LivePush(meta)),
            },
        );
        let out = drain(&mut e, &pk, 1);
        // Taken as an announcement: we ask for it instead of taking a push.
        let want = encode(&Message::LiveWant { seq: meta.seq });
        assert!(out
            .iter()
            .any(|o| matches!(o, Output::Send { peer: 5, data } if *data == want)));
        // A seed's push is taken as it comes.
        let (signer, mut e, meta, data2) = setup();
        assert_eq!(data, data2);
        drain(&mut e, &pk, 0);
        e.handle_input(
            0,
            Input::PeerConnected {
                peer: 6,
                remote_id: "seed",
                is_seed: true,
            },
        );
        let hello = encode(&Message::Hello {
            content_id: CH,
            segments: LIVE_SEGMENT_COUNT,
        });
        e.handle_input(
            0,
            Input::PeerData {
                peer: 6,
                data: &hello,
            },
        );
        drain(&mut e, &pk, 0);
        e.handle_input(
            1,
            Input::PeerData {
                peer: 6,
                data: &encode(&Message::LivePush(meta)),
            },
        );
        for (i, chunk) in data2.chunks(16 * 1024).enumerate() {
            let m = Message::Piece {
                seg: meta.seq,
                piece: i as u32,
                data: chunk,
            };
            e.handle_input(
                2,
                Input::PeerData {
                    peer: 6,
                    data: &encode(&m),
                },
            );
        }
        let out = drain(&mut e, &signer.public_key(), 2);
        assert!(
            e.has_segment(meta.seq),
            "the seed's push was not taken: {out:?}"
        );
        assert!(!out.iter().any(|o| matches!(o, Output::Send { peer: 6, data } if *data == encode(&Message::LiveWant { seq: meta.seq }))));
    }
}
