//! Feeds arbitrary bytes to the wire decoder and the signaling decoder:
//! neither may panic, and whatever decodes must re-encode to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use swarm_proto::wire::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode(data) {
        assert_eq!(encode(&m), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = swarm_proto::signal::ClientMsg::decode(text);
    }
});
