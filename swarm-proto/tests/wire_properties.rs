//! Property tests of the wire codec (native only: proptest).
#![cfg(not(target_arch = "wasm32"))]

use proptest::prelude::*;
use swarm_proto::wire::{decode, encode, Message, MAX_MESSAGE_BYTES};
use swarm_proto::Bitfield;

fn message() -> impl Strategy<Value = (u8, u32, u32, Vec<u8>, String)> {
    (
        1u8..=9,
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 1..2048),
        "[a-z0-9-]{0,64}",
    )
}

fn build<'a>(kind: u8, a: u32, b: u32, data: &'a [u8], id: &'a str) -> Message<'a> {
    match kind {
        1 => Message::Hello {
            content_id: id,
            segments: a,
        },
        2 => {
            let mut bf = Bitfield::new(b % 5000);
            for (i, x) in data.iter().enumerate() {
                if x % 2 == 0 {
                    bf.set(i as u32);
                }
            }
            Message::Bitfield(bf)
        }
        3 => Message::Have { seg: a },
        4 => Message::Request { seg: a, piece: b },
        5 => Message::Piece {
            seg: a,
            piece: b,
            data,
        },
        6 => Message::Cancel { seg: a, piece: b },
        7 => Message::Reject { seg: a, piece: b },
        8 => Message::Bye,
        _ => Message::Fetching { seg: a },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_message_round_trips((kind, a, b, data, id) in message()) {
        let m = build(kind, a, b, &data, &id);
        let bytes = encode(&m);
        prop_assert!(bytes.len() <= MAX_MESSAGE_BYTES);
        prop_assert_eq!(decode(&bytes).unwrap(), m);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn valid_header_with_arbitrary_body_never_panics(kind in 0u8..=11, body in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = vec![1, kind];
        bytes.extend(body);
        if let Ok(m) = decode(&bytes) {
            // Whatever decodes re-encodes to the same bytes.
            prop_assert_eq!(encode(&m), bytes);
        }
    }

    #[test]
    fn truncated_messages_are_errors((kind, a, b, data, id) in message(), cut in 1usize..16) {
        let bytes = encode(&build(kind, a, b, &data, &id));
        let short = &bytes[..bytes.len().saturating_sub(cut)];
        if kind != 5 || short.len() < 11 {
            // A shorter piece is a valid shorter piece; everything else must fail.
            prop_assert!(decode(short).is_err() || short.len() == bytes.len());
        }
    }
}
