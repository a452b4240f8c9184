//! Feeds arbitrary text to both signaling decoders (client -> server and
//! server -> client frames). Neither may panic; whatever decodes must
//! encode, decode again and come back equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use swarm_proto::signal::{ClientMsg, ServerMsg};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = ClientMsg::decode(text) {
        let json = m.encode();
        match ClientMsg::decode(&json) {
            Ok(again) => assert_eq!(again, m, "client message changed through {json}"),
            Err(e) => panic!("re-encoded client message {json} does not decode: {e}"),
        }
    }
    if let Ok(m) = ServerMsg::decode(text) {
        let json = m.encode();
        match ServerMsg::decode(&json) {
            Ok(again) => assert_eq!(again, m, "server message changed through {json}"),
            Err(e) => panic!("re-encoded server message {json} does not decode: {e}"),
        }
    }
});
