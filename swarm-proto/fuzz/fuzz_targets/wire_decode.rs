//! Feeds arbitrary bytes to the wire decoder: it may not panic, and whatever
//! decodes must re-encode to exactly the same bytes (and decode again to the
//! same message).
#![no_main]
use libfuzzer_sys::fuzz_target;
use swarm_proto::wire::{decode, encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode(data) {
        let bytes = encode(&m);
        assert_eq!(bytes, data, "re-encoding {m:?} changed the bytes");
        assert_eq!(decode(&bytes).as_ref(), Ok(&m), "re-decoding changed the message");
    }
});
