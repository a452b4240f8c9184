//! A viewer that leaves several wants unanswered at once is dropped once,
//! and its other expiring wants are simply forgotten (the engine used to
//! panic looking them up after the drop).

use std::sync::Arc;
use swarm_proto::engine::{Input, Output};
use swarm_proto::live::{LiveConfig, LiveEngine, LiveManifest, LiveMeta, LIVE_MANIFEST_VERSION};
use swarm_proto::manifest::SegmentEntry;
use swarm_proto::wire::{self, Message};

fn meta(seq: u32) -> LiveMeta {
    LiveMeta {
        seq,
        start_ms: 1000 * seq as u64,
        duration_ms: 1000,
        capture_ms: 1_800_000_000_000 + 1000 * seq as u64,
        size: 4000,
        sha256: [seq as u8; 32],
        sig: [0; 64],
    }
}

/// Answers every signature check with "ok".
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

#[test]
fn a_peer_dropped_for_unanswered_wants_with_two_expiring_at_once() {
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
        recent: vec![],
        interrupted: None,
    };
    let cfg = LiveConfig {
        max_failed_wants: 0,
        ..LiveConfig::default()
    };
    let mut e = LiveEngine::new(Arc::new(m), cfg);
    e.handle_input(
        0,
        Input::Clock {
            unix_ms: 1_800_000_000_000 + 5000,
        },
    );
    settle(&mut e, 0);
    e.handle_input(
        0,
        Input::PeerConnected {
            peer: 1,
            remote_id: "liar",
            is_seed: false,
        },
    );
    let hello = wire::encode(&Message::Hello {
        content_id: "ch",
        segments: u32::MAX,
    });
    e.handle_input(
        0,
        Input::PeerData {
            peer: 1,
            data: &hello,
        },
    );
    for seq in 1..=3 {
        let m = wire::encode(&Message::LiveMeta(meta(seq)));
        e.handle_input(0, Input::PeerData { peer: 1, data: &m });
        settle(&mut e, 0);
    }
    // Two wants (max_wants_per_peer) go out to it; nothing comes back, and
    // both time out together.
    settle(&mut e, 0);
    e.handle_input(5000, Input::Timeout);
    let out = settle(&mut e, 5000);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::DropPeer { peer: 1, .. })),
        "{out:?}"
    );
    assert!(e.is_banned("liar"));
}
