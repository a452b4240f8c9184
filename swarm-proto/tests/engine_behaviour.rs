//! Engine behaviour, one peer at a time: what it sends and what it drops.
//! Runs natively and in headless Chromium (wasm-bindgen-test).

use std::sync::Arc;
use swarm_proto::engine::{Config, Engine, Input, Output, Resource};
use swarm_proto::sim::synthetic_content;
use swarm_proto::sim::SYNTHETIC_INIT;
use swarm_proto::wire::{self, Message};
use wasm_bindgen_test::wasm_bindgen_test;

fn drain(e: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

fn sent(outs: &[Output]) -> Vec<(u64, Message<'_>)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { peer, data } => Some((
                *peer,
                wire::decode(data).expect("engine sends valid messages"),
            )),
            _ => None,
        })
        .collect()
}

fn viewer(sizes: &[usize]) -> (Engine, Arc<swarm_proto::Manifest>, Vec<Vec<u8>>) {
    let (m, d) = synthetic_content(sizes, 1024);
    (Engine::new(m.clone(), Config::default()), m, d)
}

#[wasm_bindgen_test(unsupported = test)]
fn connecting_sends_hello_and_bitfield() {
    let (mut e, m, _) = viewer(&[3000, 3000]);
    e.handle_input(
        0,
        Input::PeerConnected {
            peer: 7,
            remote_id: &format!("p{}", 7),
            is_seed: false,
        },
    );
    let outs = drain(&mut e);
    let msgs = sent(&outs);
    assert_eq!(
        msgs[0],
        (
            7,
            Message::Hello {
                content_id: "synthetic",
                segments: m.segment_count()
            }
        )
    );
    assert!(matches!(&msgs[1], (7, Message::Bitfield(b)) if b.count_ones() == 0));
}

#[wasm_bindgen_test(unsupported = test)]
fn startup_fetches_init_and_first_segment_over_http_and_appends_after_verifying() {
    let (mut e, m, d) = viewer(&[3000, 3000, 3000]);
    e.handle_input(0, Input::Playhead { position_ms: 0 });
    assert_eq!(
        drain(&mut e),
        vec![Output::HttpFetch {
            res: Resource::Init
        }],
        "the first segment waits for the swarm's peer list"
    );
    // A lone viewer: the signal server listed nobody.
    e.handle_input(0, Input::Joined { viewers: 0 });
    let outs = drain(&mut e);
    let seg0 = m.segment(0).unwrap();
    assert_eq!(
        outs,
        vec![Output::HttpFetch {
            res: Resource::Segment(seg0)
        }],
        "only the init and the critical segment go to HTTP when nobody else watches"
    );
    // A corrupt body is rejected and retried, never appended.
    let mut bad = d[0].clone();
    bad[5] ^= 1;
    e.handle_input(
        10,
        Input::HttpDone {
            res: Resource::Segment(seg0),
            data: bad,
        },
    );
    assert!(drain(&mut e)
        .iter()
        .all(|o| !matches!(o, Output::Append { .. })));
    assert_eq!(e.stats().verify_failures, 1);
    e.handle_input(600, Input::Timeout);
    assert!(
        drain(&mut e).contains(&Output::HttpFetch {
            res: Resource::Segment(seg0)
        }),
        "retried after the backoff"
    );
    e.handle_input(
        620,
        Input::HttpDone {
            res: Resource::Segment(seg0),
            data: d[0].clone(),
        },
    );
    assert!(
        drain(&mut e)
            .iter()
            .all(|o| !matches!(o, Output::Append { .. })),
        "media waits for the init segment"
    );
    e.handle_input(
        630,
        Input::HttpDone {
            res: Resource::Init,
            data: SYNTHETIC_INIT.to_vec(),
        },
    );
    let outs = drain(&mut e);
    let appends: Vec<&Output> = outs
        .iter()
        .filter(|o| matches!(o, Output::Append { .. } | Output::AppendInit { .. }))
        .collect();
    assert!(
        matches!(appends[0], Output::AppendInit { data } if data[..] == SYNTHETIC_INIT[..]),
        "{appends:?}"
    );
    assert!(
        matches!(appends[1], Output::Append { seg, data } if *seg == seg0 && data[..] == d[0][..])
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn segment_comes_piece_by_piece_from_several_peers() {
    let (m, d) = synthetic_content(&[8 * 1024, 8 * 1024], 1024);
    let mut e = Engine::new(
        m.clone(),
        Config {
            max_inflight_per_peer: 4,
            // Not waiting for the swarm's peer list: the first segment,
            // critical, goes to HTTP at once.
            swarm_wait_ms: 0,
            ..Config::default()
        },
    );
    for p in [1, 2] {
        e.handle_input(
            0,
            Input::PeerConnected {
                peer: p,
                remote_id: &format!("p{}", p),
                is_seed: false,
            },
        );
        let full = swarm_proto::Bitfield::full(m.segment_count());
        e.handle_input(
            0,
            Input::PeerData {
                peer: p,
                data: &wire::encode(&Message::Hello {
                    content_id: "synthetic",
                    segments: 2,
                }),
            },
        );
        e.handle_input(
            0,
            Input::PeerData {
                peer: p,
                data: &wire::encode(&Message::Bitfield(full)),
            },
        );
    }
    let outs = drain(&mut e);
    let reqs: Vec<(u64, u32, u32)> = sent(&outs)
        .into_iter()
        .filter_map(|(p, msg)| match msg {
            Message::Request { seg, piece } => Some((p, seg, piece)),
            _ => None,
        })
        .collect();
    // Segment 0 plays now: critical, so HTTP. Segment 1 has time: peers.
    assert!(outs.contains(&Output::HttpFetch {
        res: Resource::Segment(m.segment(0).unwrap())
    }));
    assert!(
        !outs.contains(&Output::HttpFetch {
            res: Resource::Segment(m.segment(1).unwrap())
        }),
        "peers hold segment 1, no HTTP"
    );
    let seg1: Vec<_> = reqs.iter().filter(|r| r.1 == 1).collect();
    assert_eq!(
        seg1.len(),
        8,
        "each piece of segment 1 requested once: {reqs:?}"
    );
    assert!(
        seg1.iter().any(|r| r.0 == 1) && seg1.iter().any(|r| r.0 == 2),
        "spread over both peers: {reqs:?}"
    );
    for &&(p, seg, piece) in &seg1 {
        let chunk = &d[seg as usize][piece as usize * 1024..(piece as usize + 1) * 1024];
        e.handle_input(
            5,
            Input::PeerData {
                peer: p,
                data: &wire::encode(&Message::Piece {
                    seg,
                    piece,
                    data: chunk,
                }),
            },
        );
    }
    let outs = drain(&mut e);
    assert!(
        outs.iter().all(|o| !matches!(o, Output::Append { .. })),
        "segment 1 waits for segment 0: appends are in order"
    );
    assert_eq!(e.stats().bytes_from_peers, 8 * 1024);
    assert!(
        sent(&outs)
            .iter()
            .any(|(_, msg)| *msg == Message::Have { seg: 1 }),
        "announces what it verified"
    );
    e.handle_input(
        20,
        Input::HttpDone {
            res: Resource::Segment(m.segment(0).unwrap()),
            data: d[0].clone(),
        },
    );
    e.handle_input(
        21,
        Input::HttpDone {
            res: Resource::Init,
            data: SYNTHETIC_INIT.to_vec(),
        },
    );
    let appended: Vec<u32> = drain(&mut e)
        .into_iter()
        .filter_map(|o| match o {
            Output::Append { seg, .. } => Some(seg.get()),
            _ => None,
        })
        .collect();
    assert_eq!(appended, vec![0, 1]);
}

#[wasm_bindgen_test(unsupported = test)]
fn a_peer_sending_a_corrupt_segment_is_dropped() {
    let (mut e, m, d) = viewer(&[2048, 2048]);
    e.handle_input(
        0,
        Input::PeerConnected {
            peer: 9,
            remote_id: &format!("p{}", 9),
            is_seed: false,
        },
    );
    e.handle_input(
        0,
        Input::PeerData {
            peer: 9,
            data: &wire::encode(&Message::Hello {
                content_id: "synthetic",
                segments: 2,
            }),
        },
    );
    e.handle_input(
        0,
        Input::PeerData {
            peer: 9,
            data: &wire::encode(&Message::Bitfield(swarm_proto::Bitfield::full(
                m.segment_count(),
            ))),
        },
    );
    drain(&mut e);
    for piece in 0..2u32 {
        let mut chunk = d[1][piece as usize * 1024..(piece as usize + 1) * 1024].to_vec();
        chunk[0] ^= 0xff;
        e.handle_input(
            5,
            Input::PeerData {
                peer: 9,
                data: &wire::encode(&Message::Piece {
                    seg: 1,
                    piece,
                    data: &chunk,
                }),
            },
        );
    }
    let outs = drain(&mut e);
    assert!(
        outs.iter().any(
            |o| matches!(o, Output::DropPeer { peer: 9, reason } if reason.contains("verification"))
        ),
        "{outs:?}"
    );
    assert!(outs.iter().all(|o| !matches!(o, Output::Append { .. })));
    assert_eq!(e.stats().verify_failures, 1);
    assert_eq!(e.stats().peers, 0);
}

#[wasm_bindgen_test(unsupported = test)]
fn malformed_or_out_of_range_messages_drop_only_that_peer() {
    let (mut e, _, _) = viewer(&[2048]);
    for p in [1, 2, 3, 4] {
        e.handle_input(
            0,
            Input::PeerConnected {
                peer: p,
                remote_id: &format!("p{}", p),
                is_seed: false,
            },
        );
    }
    drain(&mut e);
    e.handle_input(
        1,
        Input::PeerData {
            peer: 1,
            data: &[1, 99],
        },
    );
    e.handle_input(
        1,
        Input::PeerData {
            peer: 2,
            data: &wire::encode(&Message::Request { seg: 5, piece: 0 }),
        },
    );
    e.handle_input(
        1,
        Input::PeerData {
            peer: 3,
            data: &wire::encode(&Message::Hello {
                content_id: "other",
                segments: 1,
            }),
        },
    );
    let drops: Vec<u64> = drain(&mut e)
        .into_iter()
        .filter_map(|o| match o {
            Output::DropPeer { peer, .. } => Some(peer),
            _ => None,
        })
        .collect();
    assert_eq!(drops, vec![1, 2, 3]);
    assert_eq!(e.stats().peers, 1, "peer 4 is untouched");
}

#[wasm_bindgen_test(unsupported = test)]
fn requests_are_served_or_rejected() {
    let (mut e, m, d) = viewer(&[2048, 2048]);
    e.handle_input(
        0,
        Input::HttpDone {
            res: Resource::Segment(m.segment(0).unwrap()),
            data: d[0].clone(),
        },
    );
    e.handle_input(
        0,
        Input::PeerConnected {
            peer: 1,
            remote_id: &format!("p{}", 1),
            is_seed: false,
        },
    );
    drain(&mut e);
    e.handle_input(
        1,
        Input::PeerData {
            peer: 1,
            data: &wire::encode(&Message::Request { seg: 0, piece: 1 }),
        },
    );
    e.handle_input(
        1,
        Input::PeerData {
            peer: 1,
            data: &wire::encode(&Message::Request { seg: 1, piece: 0 }),
        },
    );
    let outs = drain(&mut e);
    let msgs = sent(&outs);
    assert!(msgs.contains(&(
        1,
        Message::Piece {
            seg: 0,
            piece: 1,
            data: &d[0][1024..2048]
        }
    )));
    assert!(msgs.contains(&(1, Message::Reject { seg: 1, piece: 0 })));
    assert_eq!(e.stats().bytes_uploaded, 1024);
}

#[wasm_bindgen_test(unsupported = test)]
fn seed_refuses_once_when_the_swarm_holds_copies_then_serves() {
    let (m, d) = synthetic_content(&[2048, 2048], 1024);
    let mut seed = Engine::new_seed(
        m.clone(),
        Config {
            seed_enough_copies: 2,
            ..Config::default()
        },
    );
    for p in [1, 2, 3] {
        seed.handle_input(
            0,
            Input::PeerConnected {
                peer: p,
                remote_id: &format!("p{p}"),
                is_seed: false,
            },
        );
        seed.handle_input(
            0,
            Input::PeerData {
                peer: p,
                data: &wire::encode(&Message::Hello {
                    content_id: "synthetic",
                    segments: 2,
                }),
            },
        );
    }
    // Two viewers claim every segment (they may be lying).
    for p in [1, 2] {
        seed.handle_input(
            0,
            Input::PeerData {
                peer: p,
                data: &wire::encode(&Message::Bitfield(swarm_proto::Bitfield::full(2))),
            },
        );
    }
    drain(&mut seed);
    seed.handle_input(
        1,
        Input::PeerData {
            peer: 3,
            data: &wire::encode(&Message::Request { seg: 0, piece: 0 }),
        },
    );
    let outs = drain(&mut seed);
    assert_eq!(
        sent(&outs),
        vec![(3, Message::Reject { seg: 0, piece: 0 })],
        "two viewers claim segment 0"
    );
    // Asked again (the claimers did not deliver): the seed reads its disk and serves.
    seed.handle_input(
        1200,
        Input::PeerData {
            peer: 3,
            data: &wire::encode(&Message::Request { seg: 0, piece: 0 }),
        },
    );
    let outs = drain(&mut seed);
    assert_eq!(
        outs,
        vec![Output::Load {
            seg: m.segment(0).unwrap()
        }]
    );
    seed.handle_input(
        1210,
        Input::Loaded {
            seg: m.segment(0).unwrap(),
            data: d[0].clone(),
        },
    );
    let outs = drain(&mut seed);
    assert_eq!(
        sent(&outs),
        vec![(
            3,
            Message::Piece {
                seg: 0,
                piece: 0,
                data: &d[0][..1024]
            }
        )]
    );
    assert!(outs
        .iter()
        .all(|o| !matches!(o, Output::HttpFetch { .. } | Output::Append { .. })));
}

#[wasm_bindgen_test(unsupported = test)]
fn seed_reads_each_segment_once_through_a_bounded_cache_and_verifies_it() {
    let (m, d) = synthetic_content(&[2048, 2048, 2048], 1024);
    let mut seed = Engine::new_seed(
        m.clone(),
        Config {
            store_max_bytes: 4096,
            ..Config::default()
        },
    );
    seed.handle_input(
        0,
        Input::PeerConnected {
            peer: 1,
            remote_id: "p1",
            is_seed: false,
        },
    );
    drain(&mut seed);
    for raw in 0..3u32 {
        for piece in 0..2 {
            seed.handle_input(
                1,
                Input::PeerData {
                    peer: 1,
                    data: &wire::encode(&Message::Request { seg: raw, piece }),
                },
            );
        }
        let outs = drain(&mut seed);
        assert_eq!(
            outs,
            vec![Output::Load {
                seg: m.segment(raw).unwrap()
            }],
            "one disk read for both pieces"
        );
        seed.handle_input(
            2,
            Input::Loaded {
                seg: m.segment(raw).unwrap(),
                data: d[raw as usize].clone(),
            },
        );
        assert_eq!(sent(&drain(&mut seed)).len(), 2);
        assert!(
            seed.tables().stored_bytes <= 4096,
            "cache over its bound: {:?}",
            seed.tables()
        );
    }
    // Bytes on disk that do not match the manifest are never served.
    seed.handle_input(
        3,
        Input::PeerData {
            peer: 1,
            data: &wire::encode(&Message::Request { seg: 0, piece: 0 }),
        },
    );
    assert_eq!(
        drain(&mut seed),
        vec![Output::Load {
            seg: m.segment(0).unwrap()
        }],
        "segment 0 left the cache"
    );
    let mut bad = d[0].clone();
    bad[3] ^= 1;
    seed.handle_input(
        4,
        Input::Loaded {
            seg: m.segment(0).unwrap(),
            data: bad,
        },
    );
    assert_eq!(
        sent(&drain(&mut seed)),
        vec![(1, Message::Reject { seg: 0, piece: 0 })]
    );
}

#[test]
#[wasm_bindgen_test]
fn startup_counts_from_the_origin_the_driver_sets() {
    use swarm_proto::engine::MediaEvent;
    // Without an origin: from the first input (at 400) to Playing (at 900).
    let (mut e, _, _) = viewer(&[3000, 3000]);
    e.handle_input(400, Input::Playhead { position_ms: 0 });
    e.handle_input(900, Input::Media(MediaEvent::Playing));
    assert_eq!(e.stats().startup_ms, Some(500));
    // With the origin at 0 (the page called attach, then loaded the player
    // for 400 ms): loading counts.
    let (mut e, _, _) = viewer(&[3000, 3000]);
    e.count_startup_from(0);
    e.handle_input(400, Input::Playhead { position_ms: 0 });
    e.handle_input(900, Input::Media(MediaEvent::Playing));
    assert_eq!(e.stats().startup_ms, Some(900));
}
