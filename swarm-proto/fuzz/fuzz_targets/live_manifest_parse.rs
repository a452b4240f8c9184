//! Feeds arbitrary text to `LiveManifest::from_json` (what a viewer fetches
//! from a seed's origin before joining a live channel). It may not panic; a
//! manifest it accepts serializes back to itself, and every description it
//! carries answers its queries consistently: the pieces tile the segment
//! exactly, and the signed bytes are built without panicking.
#![no_main]
use libfuzzer_sys::fuzz_target;
use swarm_proto::live::{LiveManifest, MAX_LIVE_SEGMENT_BYTES};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(m) = LiveManifest::from_json(text) else { return };
    let json = m.to_json();
    match LiveManifest::from_json(&json) {
        Ok(again) => assert_eq!(again, m, "live manifest changed through to_json"),
        Err(e) => panic!("to_json output does not parse: {e}\n{json}"),
    }
    for meta in &m.recent {
        assert!(meta.size >= 1 && meta.size <= MAX_LIVE_SEGMENT_BYTES);
        let n = meta.piece_count(m.piece_size);
        let total: usize = (0..n).map(|i| meta.piece_len(m.piece_size, i)).sum();
        assert_eq!(total, meta.size as usize, "pieces do not tile {meta:?}");
        assert_eq!(meta.piece_len(m.piece_size, n), 0);
        assert!(meta.signed_bytes(&m.channel).len() > 64);
        assert!(meta.end_ms() >= meta.start_ms);
    }
});
