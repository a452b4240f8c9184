//! `LiveConfig::max_upload_queue_ms`: a viewer measures its uplink from the
//! driver's `PeerBuffered` reports and refuses a want it would serve late
//! (its queues would take longer than the bound to drain), while the byte
//! bounds alone would have accepted it.

use sha2::{Digest, Sha256};
use std::sync::Arc;
use swarm_proto::engine::{Input, Output, Resource};
use swarm_proto::live::{LiveConfig, LiveEngine, LiveManifest, LiveMeta, LIVE_MANIFEST_VERSION};
use swarm_proto::manifest::SegmentEntry;
use swarm_proto::wire::{self, Message};

const SIZE: usize = 4000;

fn data(seq: u32) -> Vec<u8> {
    (0..SIZE).map(|i| (i as u32 ^ seq) as u8).collect()
}

fn meta(seq: u32) -> LiveMeta {
    LiveMeta {
        seq,
        start_ms: 1000 * seq as u64,
        duration_ms: 1000,
        capture_ms: 1_800_000_000_000 + 1000 * seq as u64,
        size: SIZE as u32,
        sha256: Sha256::digest(data(seq)).into(),
        sig: [0; 64],
    }
}

/// Answers every signature check with "ok"; returns the other outputs.
fn settle(e: &mut LiveEngine, now: u64) -> Vec<Output> {
    let mut seen = Vec::new();
    while let Some(o) = e.poll_output() {
        if let Output::CheckSignature { id, .. } = o {
            e.handle_input(now, Input::SignatureChecked { id, ok: true });
        } else {
            seen.push(o);
        }
    }
    seen
}

fn viewer(max_upload_queue_ms: u64) -> (LiveEngine, u32) {
    let m = LiveManifest {
        version: LIVE_MANIFEST_VERSION,
        channel: "ch".into(),
        title: String::new(),
        mime: "video/mp4".into(),
        piece_size: 1024,
        segment_ms: 1000,
        playlist: "index.m3u8".into(),
        init: SegmentEntry {
            uri: "init.mp4".into(),
            size: 10,
            sha256: "0".repeat(64),
            duration_ms: 0,
        },
        init_sig: [0; 64],
        public_key: [0; 32],
        recent: vec![meta(1), meta(2)],
        interrupted: None,
    };
    let cfg = LiveConfig {
        max_upload_queue_ms,
        max_upload_backlog: 1 << 30,
        ..LiveConfig::default()
    };
    let mut e = LiveEngine::new(Arc::new(m), cfg);
    e.handle_input(
        0,
        Input::Clock {
            unix_ms: 1_800_000_000_000 + 5000,
        },
    );
    // The lone viewer (no others listed) takes its first segment from the
    // origin: it then holds it.
    e.handle_input(0, Input::Joined { viewers: 0 });
    let mut held = None;
    for o in settle(&mut e, 0) {
        if let Output::HttpFetch {
            res: res @ Resource::Segment(s),
        } = o
        {
            e.handle_input(
                0,
                Input::HttpDone {
                    res,
                    data: data(s.get()),
                },
            );
            held = Some(s.get());
        }
    }
    settle(&mut e, 0);
    let held = held.expect("a segment fetched over HTTP");
    assert!(e.has_segment(held));
    for (peer, id) in [(2u64, "a"), (3, "b")] {
        e.handle_input(
            0,
            Input::PeerConnected {
                peer,
                remote_id: id,
                is_seed: false,
            },
        );
        let hello = wire::encode(&Message::Hello {
            content_id: "ch",
            segments: u32::MAX,
        });
        e.handle_input(0, Input::PeerData { peer, data: &hello });
        settle(&mut e, 0);
    }
    (e, held)
}

/// Peer 2 wants the held segment (served: the queues are empty); a second later
/// the driver reports 1,000 bytes of it sent (a 1,000 B/s uplink); then
/// peer 3 wants it too. Returns whether peer 3 was refused.
fn second_want_refused(max_upload_queue_ms: u64) -> (bool, u64) {
    let (mut e, held) = viewer(max_upload_queue_ms);
    let want = wire::encode(&Message::LiveWant { seq: held });
    e.handle_input(
        0,
        Input::PeerData {
            peer: 2,
            data: &want,
        },
    );
    let out = settle(&mut e, 0);
    let queued: u64 = (out.iter())
        .filter_map(|o| match o {
            Output::Send { peer: 2, data } => Some(data.len() as u64),
            _ => None,
        })
        .sum();
    assert!(queued > SIZE as u64, "peer 2 was served: {queued} bytes");
    e.handle_input(
        1000,
        Input::PeerBuffered {
            peer: 2,
            bytes: queued - 1000,
        },
    );
    let rate = e.uplink_rate();
    e.handle_input(
        1000,
        Input::PeerData {
            peer: 3,
            data: &want,
        },
    );
    let out = settle(&mut e, 1000);
    let refused = out.iter().any(|o| match o {
        Output::Send { peer: 3, data } => {
            matches!(wire::decode(data), Ok(Message::Reject { seg, .. }) if seg == held)
        }
        _ => false,
    });
    (refused, rate)
}

#[test]
fn a_want_served_late_at_the_measured_uplink_rate_is_refused() {
    let (refused, rate) = second_want_refused(2000);
    // 1,000 bytes of the segment plus the hello and announcements queued
    // before it, over one second.
    assert!((1000..1500).contains(&rate), "uplink rate {rate} B/s");
    // About 3,000 + 4,000 bytes at about 1,100 B/s: over 6 s > 2 s.
    assert!(refused, "the want would wait 7 s in the queue");
}

#[test]
fn without_the_time_bound_the_byte_bounds_accept_it() {
    let (refused, _) = second_want_refused(0);
    assert!(!refused);
    // A bound the queue meets accepts it too.
    let (refused, _) = second_want_refused(10_000);
    assert!(!refused);
}
