//! Each segment leaves the origin (seed peer or HTTP) about once: a newcomer
//! takes its first segment from a viewer, leaves the seed alone while its
//! viewers connect, and waits for a viewer that said it is fetching a
//! segment; every wait is bounded, so a liar cannot stall anyone. Runs
//! natively and in headless Chromium (wasm-bindgen-test).

use std::sync::Arc;
use swarm_proto::engine::{Config, Engine, Input, Output, PeerKey, Resource};
use swarm_proto::sim::{synthetic_content, SYNTHETIC_INIT};
use swarm_proto::wire::{self, Message};
use swarm_proto::{Bitfield, Manifest};
use wasm_bindgen_test::wasm_bindgen_test;

const SEED: PeerKey = 9;

fn drain(e: &mut Engine) -> Vec<Output> {
    std::iter::from_fn(|| e.poll_output()).collect()
}

fn sent(outs: &[Output], to: PeerKey) -> Vec<Message<'_>> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { peer, data } if *peer == to => Some(wire::decode(data).unwrap()),
            _ => None,
        })
        .collect()
}

/// Segments asked of `to`, in order, without repeats.
fn asked(outs: &[Output], to: PeerKey) -> Vec<u32> {
    let mut v: Vec<u32> = sent(outs, to)
        .into_iter()
        .filter_map(|m| match m {
            Message::Request { seg, .. } => Some(seg),
            _ => None,
        })
        .collect();
    v.dedup();
    v
}

fn http_segments(outs: &[Output]) -> Vec<u32> {
    outs.iter()
        .filter_map(|o| match o {
            Output::HttpFetch {
                res: Resource::Segment(s),
            } => Some(s.get()),
            _ => None,
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

/// Connects `peer` (a seed or a viewer holding `have`) and feeds its hello
/// and bitfield.
fn connect(e: &mut Engine, m: &Manifest, now: u64, peer: PeerKey, have: &[u32]) {
    let n = m.segment_count();
    e.handle_input(
        now,
        Input::PeerConnected {
            peer,
            remote_id: &format!("peer-{peer}"),
            is_seed: peer == SEED,
        },
    );
    feed(
        e,
        now,
        peer,
        &Message::Hello {
            content_id: "synthetic",
            segments: n,
        },
    );
    let bf = if peer == SEED {
        Bitfield::full(n)
    } else {
        let mut bf = Bitfield::new(n);
        for &s in have {
            bf.set(s);
        }
        bf
    };
    feed(e, now, peer, &Message::Bitfield(bf));
}

/// Ten 2-second segments of four 1 KiB pieces.
fn content() -> (Arc<Manifest>, Vec<Vec<u8>>) {
    synthetic_content(&[4096; 10], 1024)
}

/// A viewer playing at 0 whose init and segment 0 came over HTTP, with a
/// viewer (peer 1, holding `viewer_has`) and the seed connected.
fn playing(viewer_has: &[u32]) -> (Engine, Arc<Manifest>, Vec<Vec<u8>>) {
    let (m, d) = content();
    let mut e = Engine::new(m.clone(), Config::default());
    e.handle_input(0, Input::Joined { viewers: 1 });
    for (res, data) in [
        (Resource::Init, SYNTHETIC_INIT.to_vec()),
        (Resource::Segment(m.segment(0).unwrap()), d[0].clone()),
    ] {
        e.handle_input(0, Input::HttpDone { res, data });
    }
    connect(&mut e, &m, 0, 1, viewer_has);
    (e, m, d)
}

#[wasm_bindgen_test(unsupported = test)]
fn a_newcomer_takes_its_first_segment_from_a_listed_viewer() {
    let (m, d) = content();
    let mut e = Engine::new(m.clone(), Config::default());
    e.handle_input(0, Input::Playhead { position_ms: 0 });
    assert!(
        http_segments(&drain(&mut e)).is_empty(),
        "waits for the join"
    );
    e.handle_input(20, Input::Joined { viewers: 1 });
    // The seed's channel opens first: it is not asked while the viewer connects.
    connect(&mut e, &m, 100, SEED, &[]);
    let outs = drain(&mut e);
    assert!(http_segments(&outs).is_empty() && asked(&outs, SEED).is_empty());
    connect(&mut e, &m, 150, 1, &[0, 1, 2, 3, 4]);
    let outs = drain(&mut e);
    assert!(http_segments(&outs).is_empty(), "{outs:?}");
    assert!(asked(&outs, SEED).is_empty(), "{outs:?}");
    assert_eq!(asked(&outs, 1)[0], 0, "segment 0 from the viewer");
    // Still waiting for the viewer's pieces a little later.
    e.handle_input(600, Input::Timeout);
    assert!(http_segments(&drain(&mut e)).is_empty());
    for piece in 0..4u32 {
        let r = piece as usize * 1024..(piece as usize + 1) * 1024;
        feed(
            &mut e,
            620,
            1,
            &Message::Piece {
                seg: 0,
                piece,
                data: &d[0][r],
            },
        );
    }
    e.handle_input(
        630,
        Input::HttpDone {
            res: Resource::Init,
            data: SYNTHETIC_INIT.to_vec(),
        },
    );
    let outs = drain(&mut e);
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Append { seg, .. } if seg.get() == 0)));
    let st = e.stats();
    assert_eq!(
        (st.bytes_from_peers >= 4096, st.bytes_from_seed),
        (true, 0),
        "{st:?}"
    );
    assert_eq!(st.bytes_from_http, SYNTHETIC_INIT.len() as u64);
}

#[wasm_bindgen_test(unsupported = test)]
fn the_wait_for_viewers_is_bounded() {
    let (m, _) = content();
    let cfg = Config::default();
    let (wait, swarm_wait) = (cfg.viewer_wait_ms, cfg.swarm_wait_ms);
    // No answer from the signal server: HTTP after swarm_wait_ms.
    let mut e = Engine::new(m.clone(), cfg.clone());
    e.handle_input(0, Input::Playhead { position_ms: 0 });
    e.handle_input(swarm_wait - 1, Input::Timeout);
    assert!(http_segments(&drain(&mut e)).is_empty());
    e.handle_input(swarm_wait, Input::Timeout);
    assert_eq!(http_segments(&drain(&mut e)), vec![0]);

    // A listed viewer that claims everything and sends nothing: HTTP once
    // viewer_wait_ms passed, and the seed is asked again.
    let mut e = Engine::new(m.clone(), cfg);
    e.handle_input(0, Input::Playhead { position_ms: 0 });
    e.handle_input(10, Input::Joined { viewers: 2 });
    connect(&mut e, &m, 50, SEED, &[]);
    connect(&mut e, &m, 60, 1, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let outs = drain(&mut e);
    assert_eq!(asked(&outs, 1)[0], 0);
    assert!(http_segments(&outs).is_empty() && asked(&outs, SEED).is_empty());
    e.handle_input(10 + wait - 1, Input::Timeout);
    assert!(http_segments(&drain(&mut e)).is_empty());
    e.handle_input(10 + wait, Input::Timeout);
    let outs = drain(&mut e);
    assert_eq!(http_segments(&outs), vec![0], "{outs:?}");
    assert!(
        sent(&outs, 1)
            .iter()
            .any(|m| matches!(m, Message::Cancel { seg: 0, .. })),
        "the viewer's requests for segment 0 are cancelled"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn a_lone_viewer_goes_to_http_at_once() {
    let (m, _) = content();
    let mut e = Engine::new(m, Config::default());
    e.handle_input(0, Input::Playhead { position_ms: 0 });
    e.handle_input(5, Input::Joined { viewers: 0 });
    assert_eq!(http_segments(&drain(&mut e)), vec![0]);
}

#[wasm_bindgen_test(unsupported = test)]
fn a_viewer_fetching_a_segment_from_the_origin_is_waited_for() {
    let (mut e, m, _) = playing(&[0]);
    feed(&mut e, 0, 1, &Message::Fetching { seg: 1 });
    connect(&mut e, &m, 0, SEED, &[]);
    let outs = drain(&mut e);
    assert!(
        asked(&outs, SEED).is_empty(),
        "segment 1 is due in 2 s, and the viewer is fetching it: {outs:?}"
    );
    e.handle_input(1000, Input::Timeout);
    assert!(asked(&drain(&mut e), SEED).is_empty());
    feed(&mut e, 1100, 1, &Message::Have { seg: 1 });
    assert_eq!(asked(&drain(&mut e), 1), vec![1], "then from that viewer");
}

#[wasm_bindgen_test(unsupported = test)]
fn a_fetching_hint_expires_and_never_holds_a_critical_segment() {
    let (mut e, m, _) = playing(&[0]);
    let grace = Config::default().fetching_grace_ms;
    connect(&mut e, &m, 0, SEED, &[]);
    let outs = drain(&mut e);
    assert_eq!(asked(&outs, SEED), vec![1]);
    // Segment 2 enters the urgent window; the viewer says it fetches it.
    feed(&mut e, 100, 1, &Message::Fetching { seg: 2 });
    e.handle_input(100, Input::Playhead { position_ms: 500 });
    assert!(!asked(&drain(&mut e), SEED).contains(&2));
    // No `Have` in time: the seed is asked.
    e.handle_input(100 + grace, Input::Timeout);
    assert!(asked(&drain(&mut e), SEED).contains(&2));
    // A hint never holds a segment about to play: HTTP at once.
    feed(&mut e, 2200, 1, &Message::Fetching { seg: 3 });
    e.handle_input(2200, Input::Playhead { position_ms: 5000 });
    assert!(http_segments(&drain(&mut e)).contains(&3));
}

#[wasm_bindgen_test(unsupported = test)]
fn hints_of_a_peer_that_does_not_follow_them_up_are_ignored() {
    let (mut e, m, d) = playing(&[0]);
    let cfg = Config::default();
    let mut t = 0;
    // Broken hints, one after another, each for the next urgent segment.
    for seg in 1..=(cfg.max_broken_fetching + 1) {
        let pos = (seg as u64 - 1) * 2000;
        feed(&mut e, t, 1, &Message::Fetching { seg });
        e.handle_input(t, Input::Playhead { position_ms: pos });
        if seg == 1 {
            connect(&mut e, &m, t, SEED, &[]);
        }
        assert!(
            !asked(&drain(&mut e), SEED).contains(&seg),
            "hint {seg} is still believed"
        );
        t += cfg.fetching_grace_ms;
        e.handle_input(t, Input::Timeout);
        assert!(asked(&drain(&mut e), SEED).contains(&seg));
        // The segment arrives (from the seed, say); playback moves on.
        e.handle_input(
            t,
            Input::HttpDone {
                res: Resource::Segment(m.segment(seg).unwrap()),
                data: d[seg as usize].clone(),
            },
        );
        drain(&mut e);
    }
    // One more broken than allowed: the next hint goes unheeded.
    let seg = cfg.max_broken_fetching + 2;
    feed(&mut e, t, 1, &Message::Fetching { seg });
    e.handle_input(
        t,
        Input::Playhead {
            position_ms: (seg as u64 - 1) * 2000,
        },
    );
    assert!(asked(&drain(&mut e), SEED).contains(&seg));
}

#[wasm_bindgen_test(unsupported = test)]
fn origin_fetches_are_announced_to_viewers_that_lack_the_segment() {
    let (mut e, m, _) = playing(&[0]);
    connect(&mut e, &m, 0, 2, &[0, 1]);
    connect(&mut e, &m, 0, SEED, &[]);
    drain(&mut e);
    e.handle_input(0, Input::Playhead { position_ms: 10 });
    // Segment 2 (due in 3.99 s) goes to the seed: viewer 1 lacks it, 2 too.
    let outs = drain(&mut e);
    assert_eq!(asked(&outs, SEED), vec![2]);
    for v in [1, 2] {
        assert_eq!(
            sent(&outs, v)
                .iter()
                .filter(|m| **m == Message::Fetching { seg: 2 })
                .count(),
            1,
            "viewer {v}: {outs:?}"
        );
    }
    assert!(!sent(&outs, SEED)
        .iter()
        .any(|m| matches!(m, Message::Fetching { .. })));
}

#[wasm_bindgen_test(unsupported = test)]
fn http_fetches_are_announced_too() {
    let (mut e, _, _) = playing(&[0]);
    e.handle_input(10, Input::Playhead { position_ms: 600 });
    let outs = drain(&mut e);
    assert_eq!(http_segments(&outs), vec![1], "due in 1.4 s, nobody has it");
    assert!(sent(&outs, 1).contains(&Message::Fetching { seg: 1 }));
}

#[wasm_bindgen_test(unsupported = test)]
fn a_seed_sending_a_segment_to_one_viewer_refuses_it_once_to_another() {
    let (m, d) = content();
    let mut seed = Engine::new_seed(m.clone(), Config::default());
    let window = Config::default().reject_backoff_ms;
    for p in [1, 2, 3] {
        connect(&mut seed, &m, 0, p, &[]);
    }
    drain(&mut seed);
    let request = |seed: &mut Engine, t, p, piece| {
        feed(seed, t, p, &Message::Request { seg: 0, piece });
        drain(seed)
    };
    let outs = request(&mut seed, 10, 1, 0);
    assert_eq!(
        outs,
        vec![Output::Load {
            seg: m.segment(0).unwrap()
        }]
    );
    // Viewer 2 asks while the segment goes to viewer 1: refused (once).
    let outs = request(&mut seed, 11, 2, 0);
    assert_eq!(sent(&outs, 2), vec![Message::Reject { seg: 0, piece: 0 }]);
    seed.handle_input(
        12,
        Input::Loaded {
            seg: m.segment(0).unwrap(),
            data: d[0].clone(),
        },
    );
    assert!(matches!(
        sent(&drain(&mut seed), 1)[..],
        [Message::Piece {
            seg: 0,
            piece: 0,
            ..
        }]
    ));
    // Viewer 1 keeps being served; viewer 3 is refused too.
    assert!(matches!(
        sent(&request(&mut seed, 20, 1, 1), 1)[..],
        [Message::Piece {
            seg: 0,
            piece: 1,
            ..
        }]
    ));
    assert_eq!(
        sent(&request(&mut seed, 21, 3, 1), 3),
        vec![Message::Reject { seg: 0, piece: 1 }]
    );
    // Asked again after its back-off: served, whatever viewer 1 does.
    assert!(matches!(
        sent(&request(&mut seed, 11 + window, 2, 0), 2)[..],
        [Message::Piece {
            seg: 0,
            piece: 0,
            ..
        }]
    ));
    // Once a viewer holds it, one copy is not reason enough to refuse.
    let mut s = Engine::new_seed(m.clone(), Config::default());
    for p in [1, 4] {
        connect(&mut s, &m, 0, p, if p == 1 { &[0] } else { &[] });
    }
    s.handle_input(
        0,
        Input::Loaded {
            seg: m.segment(0).unwrap(),
            data: d[0].clone(),
        },
    );
    drain(&mut s);
    feed(&mut s, 1, 1, &Message::Request { seg: 0, piece: 0 });
    feed(&mut s, 2, 4, &Message::Request { seg: 0, piece: 0 });
    assert!(matches!(
        sent(&drain(&mut s), 4)[..],
        [Message::Piece {
            seg: 0,
            piece: 0,
            ..
        }]
    ));
}
