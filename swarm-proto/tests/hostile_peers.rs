//! What a hostile peer can and cannot do to a viewer or a seed engine: every
//! attack costs the attacker its connection and nothing more. Runs natively
//! and in headless Chromium (wasm-bindgen-test).

use std::sync::Arc;
use swarm_proto::engine::{Config, Engine, Input, MediaEvent, Output, PeerKey, Resource};
use swarm_proto::sim::{synthetic_content, SYNTHETIC_INIT};
use swarm_proto::wire::{self, Message};
use swarm_proto::{Bitfield, Manifest};
use wasm_bindgen_test::wasm_bindgen_test;

fn drain(e: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

fn requests(outs: &[Output], to: PeerKey) -> Vec<(u32, u32)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { peer, data } if *peer == to => match wire::decode(data).unwrap() {
                Message::Request { seg, piece } => Some((seg, piece)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn dropped(outs: &[Output]) -> Vec<PeerKey> {
    outs.iter()
        .filter_map(|o| {
            if let Output::DropPeer { peer, .. } = o {
                Some(*peer)
            } else {
                None
            }
        })
        .collect()
}

fn feed(e: &mut Engine, now: u64, peer: PeerKey, msg: &Message<'_>) {
    e.handle_input(
        now,
        Input::PeerData {
            peer,
            data: &wire::encode(msg),
        },
    );
}

/// A viewer engine whose init and segment 0 came over HTTP, with `peers`
/// connected, each claiming every segment.
fn viewer_with_peers(
    sizes: &[usize],
    peers: &[PeerKey],
    cfg: Config,
) -> (Engine, Arc<Manifest>, Vec<Vec<u8>>) {
    let (m, d) = synthetic_content(sizes, 1024);
    let mut e = Engine::new(m.clone(), cfg);
    e.handle_input(
        0,
        Input::HttpDone {
            res: Resource::Init,
            data: SYNTHETIC_INIT.to_vec(),
        },
    );
    e.handle_input(
        0,
        Input::HttpDone {
            res: Resource::Segment(m.segment(0).unwrap()),
            data: d[0].clone(),
        },
    );
    for &p in peers {
        e.handle_input(
            0,
            Input::PeerConnected {
                peer: p,
                remote_id: &format!("peer-{p}"),
                is_seed: false,
            },
        );
        feed(
            &mut e,
            0,
            p,
            &Message::Hello {
                content_id: "synthetic",
                segments: m.segment_count(),
            },
        );
        feed(
            &mut e,
            0,
            p,
            &Message::Bitfield(Bitfield::full(m.segment_count())),
        );
    }
    (e, m, d)
}

fn piece_of(d: &[Vec<u8>], seg: u32, piece: u32) -> &[u8] {
    let s = &d[seg as usize];
    &s[piece as usize * 1024..((piece as usize + 1) * 1024).min(s.len())]
}

#[wasm_bindgen_test(unsupported = test)]
fn a_liar_among_honest_contributors_is_found_and_only_it_is_dropped() {
    // Three pieces in flight per peer: segment 1's eight pieces spread over all three.
    let (mut e, m, d) = viewer_with_peers(
        &[4096, 8192, 8192],
        &[1, 2, 3],
        Config {
            max_inflight_per_peer: 3,
            ..Config::default()
        },
    );
    let outs = drain(&mut e);
    // Everyone answers what it was asked for segment 1; peer 3 flips a byte.
    let mut answered = 0;
    for p in [1, 2, 3] {
        for (seg, piece) in requests(&outs, p).into_iter().filter(|r| r.0 == 1) {
            let mut data = piece_of(&d, seg, piece).to_vec();
            if p == 3 {
                data[7] ^= 0x40;
            }
            feed(
                &mut e,
                10,
                p,
                &Message::Piece {
                    seg,
                    piece,
                    data: &data,
                },
            );
            answered += 1;
        }
    }
    assert_eq!(answered, 8, "segment 1 was spread over the three peers");
    let outs = drain(&mut e);
    assert!(
        dropped(&outs).is_empty(),
        "nobody is blamed before the culprit is known: {outs:?}"
    );
    let seg1 = m.segment(1).unwrap();
    assert!(
        outs.contains(&Output::HttpFetch {
            res: Resource::Segment(seg1)
        }),
        "the origin settles it at once"
    );
    assert_eq!(e.tables().suspects, 1);
    e.handle_input(
        20,
        Input::HttpDone {
            res: Resource::Segment(seg1),
            data: d[1].clone(),
        },
    );
    let outs = drain(&mut e);
    assert_eq!(dropped(&outs), vec![3], "only the peer whose bytes differ");
    assert!(e.is_banned("peer-3") && !e.is_banned("peer-1") && !e.is_banned("peer-2"));
    assert_eq!(e.stats().peers, 2);
    assert_eq!(e.tables().suspects, 0);
}

#[wasm_bindgen_test(unsupported = test)]
fn unsolicited_pieces_and_rejects_are_never_accepted_and_cost_the_sender() {
    let (mut e, m, d) = viewer_with_peers(
        &[4096, 4096, 4096, 4096],
        &[1, 2],
        Config {
            max_inflight_per_peer: 1,
            ..Config::default()
        },
    );
    drain(&mut e);
    // Peer 2 pushes a piece of segment 3 that nobody asked it for.
    for piece in 0..4 {
        feed(
            &mut e,
            5,
            2,
            &Message::Piece {
                seg: 3,
                piece,
                data: piece_of(&d, 3, piece),
            },
        );
    }
    let outs = drain(&mut e);
    assert_eq!(dropped(&outs), vec![2], "{outs:?}");
    assert!(
        !e.has_segment(m.segment(3).unwrap()),
        "nothing unsolicited is accepted"
    );
    // Peer 1 floods rejects of requests it never got.
    for i in 0..10_000u32 {
        feed(
            &mut e,
            6,
            1,
            &Message::Reject {
                seg: i % 4,
                piece: 0,
            },
        );
    }
    assert_eq!(dropped(&drain(&mut e)), vec![1]);
    assert!(e.tables().rejects <= 64, "{:?}", e.tables());
}

#[wasm_bindgen_test(unsupported = test)]
fn a_peer_that_claims_everything_and_serves_nothing_is_dropped_and_playback_goes_on() {
    let cfg = Config {
        max_unserved_claims: 8,
        ..Config::default()
    };
    let (mut e, _, d) = viewer_with_peers(&vec![4096; 30], &[1], cfg);
    let mut dropped_at = None;
    let mut fetched = Vec::new();
    for step in 0..200u64 {
        let now = step * 250;
        e.handle_input(now, Input::Playhead { position_ms: now });
        for o in drain(&mut e) {
            match o {
                Output::DropPeer { peer: 1, reason } => {
                    assert!(reason.contains("does not deliver"), "{reason}");
                    dropped_at.get_or_insert(now);
                }
                Output::HttpFetch {
                    res: Resource::Segment(s),
                } => fetched.push(s),
                _ => {}
            }
        }
        for s in std::mem::take(&mut fetched) {
            e.handle_input(
                now,
                Input::HttpDone {
                    res: Resource::Segment(s),
                    data: d[s.index()].clone(),
                },
            );
        }
    }
    assert!(
        dropped_at.is_some_and(|t| t <= 20_000),
        "dropped at {dropped_at:?}"
    );
    assert!(
        e.stats().segments_appended >= 20,
        "playback went on over HTTP: {:?}",
        e.stats()
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn text_frames_and_malformed_bytes_drop_the_sender_only() {
    let (mut e, _, _) = viewer_with_peers(&[2048], &[1, 2, 3], Config::default());
    drain(&mut e);
    e.handle_input(
        1,
        Input::PeerBadFrame {
            peer: 1,
            what: "text message on the data channel",
        },
    );
    e.handle_input(
        1,
        Input::PeerData {
            peer: 2,
            data: &vec![1u8; 1 << 20],
        },
    );
    let outs = drain(&mut e);
    assert_eq!(dropped(&outs), vec![1, 2]);
    assert_eq!(e.stats().peers, 1);
    // A banned id that comes back is refused at once.
    e.handle_input(
        2,
        Input::PeerConnected {
            peer: 9,
            remote_id: "peer-1",
            is_seed: false,
        },
    );
    assert!(matches!(
        &drain(&mut e)[..],
        [Output::ClosePeer { peer: 9, .. }]
    ));
}

#[wasm_bindgen_test(unsupported = test)]
fn peers_are_capped_bye_and_silence_close_without_blame() {
    let (mut e, _, _) = viewer_with_peers(
        &[2048],
        &[],
        Config {
            max_peers: 3,
            idle_timeout_ms: 10_000,
            ..Config::default()
        },
    );
    for p in 1..=5 {
        e.handle_input(
            0,
            Input::PeerConnected {
                peer: p,
                remote_id: &format!("peer-{p}"),
                is_seed: false,
            },
        );
    }
    let closed: Vec<PeerKey> = drain(&mut e)
        .iter()
        .filter_map(|o| {
            if let Output::ClosePeer { peer, .. } = o {
                Some(*peer)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(closed, vec![4, 5]);
    feed(&mut e, 1, 1, &Message::Bye);
    assert!(matches!(
        &drain(&mut e)[..],
        [Output::ClosePeer { peer: 1, .. }]
    ));
    feed(&mut e, 5000, 2, &Message::Have { seg: 0 });
    e.handle_input(12_000, Input::Timeout);
    let outs = drain(&mut e);
    assert!(
        outs.iter().any(
            |o| matches!(o, Output::ClosePeer { peer: 3, reason } if reason.contains("silent"))
        ),
        "{outs:?}"
    );
    assert!(
        !outs
            .iter()
            .any(|o| matches!(o, Output::ClosePeer { peer: 2, .. })),
        "peer 2 spoke recently"
    );
    assert!(!e.is_banned("peer-3") && e.stats().peers_dropped == 0);
}

#[wasm_bindgen_test(unsupported = test)]
fn back_pressure_rejects_requests_until_the_queue_drains() {
    let (mut e, _, _) = viewer_with_peers(
        &[2048, 2048],
        &[1],
        Config {
            max_buffered_bytes: 4096,
            ..Config::default()
        },
    );
    drain(&mut e);
    e.handle_input(
        1,
        Input::PeerBuffered {
            peer: 1,
            bytes: 4000,
        },
    );
    feed(&mut e, 1, 1, &Message::Request { seg: 0, piece: 0 });
    let outs = drain(&mut e);
    assert!(outs.iter().any(|o| matches!(o, Output::Send { data, .. } if wire::decode(data) == Ok(Message::Reject { seg: 0, piece: 0 }))));
    e.handle_input(2, Input::PeerBuffered { peer: 1, bytes: 0 });
    feed(&mut e, 2, 1, &Message::Request { seg: 0, piece: 0 });
    let outs = drain(&mut e);
    assert!(outs.iter().any(|o| matches!(o, Output::Send { data, .. } if matches!(wire::decode(data), Ok(Message::Piece { .. })))));
}

#[wasm_bindgen_test(unsupported = test)]
fn a_long_play_keeps_store_and_media_inside_their_windows() {
    let cfg = Config {
        store_behind_ms: 10_000,
        store_ahead_ms: 20_000,
        lookahead_ms: 20_000,
        media_behind_ms: 10_000,
        ..Config::default()
    };
    let (m, d) = synthetic_content(&vec![3000; 300], 1024); // 10 minutes of 2 s segments
    let mut e = Engine::new(m.clone(), cfg);
    let (mut removed_to, mut max_stored, mut eos) = (0u64, 0usize, false);
    let mut fetch = Vec::new();
    for step in 0..2500u64 {
        let now = step * 250;
        let pos = match step {
            s if s < 1000 => now,
            1000 => {
                e.handle_input(
                    now,
                    Input::Seek {
                        position_ms: 100_000,
                    },
                );
                100_000
            }
            s => 100_000 + (s - 1000) * 400,
        }
        .min(599_000);
        e.handle_input(now, Input::Playhead { position_ms: pos });
        e.handle_input(now, Input::Media(MediaEvent::Playing));
        for o in drain(&mut e) {
            match o {
                Output::HttpFetch { res } => fetch.push(res),
                Output::RemoveMedia { start_ms, end_ms } => {
                    assert!(
                        end_ms <= pos.saturating_sub(10_000) || start_ms >= pos,
                        "removed [{start_ms}, {end_ms}) at {pos}"
                    );
                    removed_to = removed_to.max(end_ms);
                }
                Output::EndOfStream => eos = true,
                _ => {}
            }
        }
        for res in std::mem::take(&mut fetch) {
            let data = match res {
                Resource::Init => SYNTHETIC_INIT.to_vec(),
                Resource::Segment(s) => d[s.index()].clone(),
            };
            e.handle_input(now, Input::HttpDone { res, data });
        }
        max_stored = max_stored.max(e.tables().stored_segments);
    }
    // 10 s behind + 20 s ahead of 2 s segments, plus the ones straddling the edges.
    assert!(max_stored <= 17, "stored {max_stored} segments");
    assert!(
        removed_to >= 500_000,
        "old media was removed up to {removed_to} ms"
    );
    assert!(
        eos,
        "the last segment was appended and end of stream signalled"
    );
    assert_eq!(e.stats().stalls, 0);
}

#[wasm_bindgen_test(unsupported = test)]
fn bytes_through_a_turn_relay_are_counted_apart_from_p2p() {
    // Three requests in flight per peer: segment 1's eight pieces go to both.
    let (mut e, _m, d) = viewer_with_peers(
        &[4096, 8192, 8192],
        &[1, 2],
        Config {
            max_inflight_per_peer: 3,
            ..Config::default()
        },
    );
    e.handle_input(
        0,
        Input::PeerRoute {
            peer: 2,
            relayed: true,
        },
    );
    let outs = drain(&mut e);
    let mut sent = [0u64; 3];
    for p in [1u64, 2] {
        for (seg, piece) in requests(&outs, p) {
            let data = piece_of(&d, seg, piece);
            sent[p as usize] += data.len() as u64;
            feed(&mut e, 10, p, &Message::Piece { seg, piece, data });
        }
    }
    assert!(sent[1] > 0 && sent[2] > 0, "both peers served: {sent:?}");
    let s = e.stats();
    assert_eq!(s.bytes_from_peers, sent[1], "direct peer bytes only");
    assert_eq!(s.bytes_from_relay, sent[2], "relayed bytes apart");
    assert_eq!(s.report().bytes_from_relay, sent[2]);
    // ICE moved peer 2 to a direct pair: from now on its bytes are P2P.
    e.handle_input(
        20,
        Input::PeerRoute {
            peer: 2,
            relayed: false,
        },
    );
    let outs = drain(&mut e);
    let mut later = 0;
    for (seg, piece) in requests(&outs, 2) {
        let data = piece_of(&d, seg, piece);
        later += data.len() as u64;
        feed(&mut e, 30, 2, &Message::Piece { seg, piece, data });
    }
    assert!(later > 0, "peer 2 was asked for segment 2");
    let s = e.stats();
    assert_eq!(
        s.bytes_from_relay, sent[2],
        "relayed bytes stay as they were"
    );
    assert_eq!(s.bytes_from_peers, sent[1] + later);
}
