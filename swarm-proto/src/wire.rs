//! The peer wire protocol, spoken on WebRTC data channels (binary messages).
//!
//! Every message is `[version: u8][kind: u8][body]`, integers big-endian.
//! [`decode`] never panics: a short, long, unknown or inconsistent message
//! is a [`WireError`] naming what was expected and what came. A message is
//! at most [`MAX_MESSAGE_BYTES`] long.
//!
//! | kind | message  | body |
//! |------|----------|------|
//! | 1    | Hello    | content id length u8, content id, segment count u32 |
//! | 2    | Bitfield | bit count u32, packed bits |
//! | 3    | Have     | segment u32 |
//! | 4    | Request  | segment u32, piece u32 |
//! | 5    | Piece    | segment u32, piece u32, data (rest of the message) |
//! | 6    | Cancel   | segment u32, piece u32 |
//! | 7    | Reject   | segment u32, piece u32 |
//! | 8    | Bye      | (empty) |
//! | 9    | Fetching | segment u32 |
//! | 10   | LiveMeta | a [`LiveMeta`] (124 bytes) |
//! | 11   | LivePush | a [`LiveMeta`] (124 bytes) |
//! | 12   | LiveWant | sequence u32 |
//!
//! `Fetching` tells a peer that the sender has started fetching a segment
//! from the origin (the seed over WebRTC or HTTP), so that the receiver can
//! wait for the sender's `Have` instead of fetching the same segment from
//! the origin too. It is a hint: the receiver waits a bounded time, and
//! stops listening to a peer whose hints are not followed by a `Have`.
//!
//! Live channels ([`crate::live`]) number segments by sequence and use the
//! segment field of `Piece` and `Reject` for it. `LiveMeta` says "I hold
//! this segment; here is its signed description"; `LivePush` says the same
//! and that every piece of it follows unasked; `LiveWant` asks for every
//! piece of one segment (answered by the pieces in order, or one `Reject`
//! with piece 0).

use crate::bitfield::Bitfield;
use crate::live::{LiveMeta, META_WIRE_LEN};
use crate::manifest::{MAX_PIECE_BYTES, MAX_SEGMENTS};

pub const WIRE_VERSION: u8 = 1;
/// Largest message: a full piece plus its 10-byte header.
pub const MAX_MESSAGE_BYTES: usize = MAX_PIECE_BYTES as usize + 10;
const MAX_CONTENT_ID: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Hello {
        content_id: &'a str,
        segments: u32,
    },
    Bitfield(Bitfield),
    Have {
        seg: u32,
    },
    Request {
        seg: u32,
        piece: u32,
    },
    Piece {
        seg: u32,
        piece: u32,
        data: &'a [u8],
    },
    Cancel {
        seg: u32,
        piece: u32,
    },
    Reject {
        seg: u32,
        piece: u32,
    },
    Bye,
    Fetching {
        seg: u32,
    },
    LiveMeta(LiveMeta),
    LivePush(LiveMeta),
    LiveWant {
        seq: u32,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("empty message")]
    Empty,
    #[error("wire version {got}, expected {WIRE_VERSION}")]
    Version { got: u8 },
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    #[error("message of {got} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge { got: usize },
    #[error("{what}: expected {expected} bytes, got {got}")]
    Length {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{what} is invalid")]
    Invalid { what: &'static str },
}

struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Length {
                what: self.what,
                expected: n,
                got: self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn end(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Length {
                what: self.what,
                expected: 0,
                got: self.buf.len(),
            })
        }
    }
}

/// Whether `buf` is an encoded [`Message::Piece`] (by its header only): how
/// a sender tells media from control traffic without decoding.
pub fn is_piece(buf: &[u8]) -> bool {
    buf.len() > 10 && buf[0] == WIRE_VERSION && buf[1] == 5
}

/// Decodes one whole data-channel message.
pub fn decode(buf: &[u8]) -> Result<Message<'_>, WireError> {
    if buf.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge { got: buf.len() });
    }
    let (&version, rest) = buf.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::Version { got: version });
    }
    let (&kind, body) = rest.split_first().ok_or(WireError::Length {
        what: "kind",
        expected: 1,
        got: 0,
    })?;
    let seg_piece = |what| -> Result<(u32, u32), WireError> {
        let mut r = Reader { buf: body, what };
        let v = (r.u32()?, r.u32()?);
        r.end()?;
        Ok(v)
    };
    Ok(match kind {
        1 => {
            let mut r = Reader {
                buf: body,
                what: "hello",
            };
            let n = r.u8()? as usize;
            if n > MAX_CONTENT_ID {
                return Err(WireError::Invalid {
                    what: "hello content id length",
                });
            }
            let id = std::str::from_utf8(r.take(n)?).map_err(|_| WireError::Invalid {
                what: "hello content id",
            })?;
            let segments = r.u32()?;
            r.end()?;
            Message::Hello {
                content_id: id,
                segments,
            }
        }
        2 => {
            let mut r = Reader {
                buf: body,
                what: "bitfield",
            };
            let len = r.u32()?;
            if len as usize > MAX_SEGMENTS {
                return Err(WireError::Invalid {
                    what: "bitfield length",
                });
            }
            let bytes = r.take((len as usize).div_ceil(8))?;
            r.end()?;
            Message::Bitfield(Bitfield::from_bytes(len, bytes).ok_or(WireError::Invalid {
                what: "bitfield spare bits",
            })?)
        }
        3 => {
            let mut r = Reader {
                buf: body,
                what: "have",
            };
            let seg = r.u32()?;
            r.end()?;
            Message::Have { seg }
        }
        4 => {
            let (seg, piece) = seg_piece("request")?;
            Message::Request { seg, piece }
        }
        5 => {
            let mut r = Reader {
                buf: body,
                what: "piece",
            };
            let seg = r.u32()?;
            let piece = r.u32()?;
            if r.buf.is_empty() {
                return Err(WireError::Invalid {
                    what: "empty piece",
                });
            }
            Message::Piece {
                seg,
                piece,
                data: r.buf,
            }
        }
        6 => {
            let (seg, piece) = seg_piece("cancel")?;
            Message::Cancel { seg, piece }
        }
        7 => {
            let (seg, piece) = seg_piece("reject")?;
            Message::Reject { seg, piece }
        }
        8 => {
            Reader {
                buf: body,
                what: "bye",
            }
            .end()?;
            Message::Bye
        }
        9 => {
            let mut r = Reader {
                buf: body,
                what: "fetching",
            };
            let seg = r.u32()?;
            r.end()?;
            Message::Fetching { seg }
        }
        10 | 11 => {
            let meta = LiveMeta::decode(body).ok_or(WireError::Length {
                what: "live segment description",
                expected: META_WIRE_LEN,
                got: body.len(),
            })?;
            if kind == 10 {
                Message::LiveMeta(meta)
            } else {
                Message::LivePush(meta)
            }
        }
        12 => {
            let mut r = Reader {
                buf: body,
                what: "live want",
            };
            let seq = r.u32()?;
            r.end()?;
            Message::LiveWant { seq }
        }
        k => return Err(WireError::UnknownKind(k)),
    })
}

/// Encodes a message. Panics only on a caller bug (a piece or content id
/// over the limits), never on data from the network.
pub fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.push(WIRE_VERSION);
    let sp = |out: &mut Vec<u8>, kind: u8, seg: u32, piece: u32| {
        out.push(kind);
        out.extend_from_slice(&seg.to_be_bytes());
        out.extend_from_slice(&piece.to_be_bytes());
    };
    match msg {
        Message::Hello {
            content_id,
            segments,
        } => {
            assert!(
                content_id.len() <= MAX_CONTENT_ID,
                "content id over {MAX_CONTENT_ID} bytes"
            );
            out.push(1);
            out.push(content_id.len() as u8);
            out.extend_from_slice(content_id.as_bytes());
            out.extend_from_slice(&segments.to_be_bytes());
        }
        Message::Bitfield(b) => {
            out.push(2);
            out.extend_from_slice(&b.len().to_be_bytes());
            out.extend_from_slice(b.as_bytes());
        }
        Message::Have { seg } => {
            out.push(3);
            out.extend_from_slice(&seg.to_be_bytes());
        }
        Message::Request { seg, piece } => sp(&mut out, 4, *seg, *piece),
        Message::Piece { seg, piece, data } => {
            assert!(
                data.len() <= MAX_PIECE_BYTES as usize,
                "piece over {MAX_PIECE_BYTES} bytes"
            );
            out.reserve(data.len());
            sp(&mut out, 5, *seg, *piece);
            out.extend_from_slice(data);
        }
        Message::Cancel { seg, piece } => sp(&mut out, 6, *seg, *piece),
        Message::Reject { seg, piece } => sp(&mut out, 7, *seg, *piece),
        Message::Bye => out.push(8),
        Message::Fetching { seg } => {
            out.push(9);
            out.extend_from_slice(&seg.to_be_bytes());
        }
        Message::LiveMeta(m) | Message::LivePush(m) => {
            out.push(if matches!(msg, Message::LiveMeta(_)) {
                10
            } else {
                11
            });
            m.encode_into(&mut out);
        }
        Message::LiveWant { seq } => {
            out.push(12);
            out.extend_from_slice(&seq.to_be_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_piece_tells_pieces_from_control_messages() {
        assert!(is_piece(&encode(&Message::Piece {
            seg: 1,
            piece: 2,
            data: b"x"
        })));
        for m in [
            Message::Request { seg: 1, piece: 2 },
            Message::Reject { seg: 1, piece: 2 },
            Message::Have { seg: 3 },
            Message::Fetching { seg: 3 },
            Message::Bye,
        ] {
            assert!(!is_piece(&encode(&m)), "{m:?}");
        }
        assert!(!is_piece(&[]));
    }

    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test(unsupported = test)]
    fn every_kind_round_trips() {
        let mut bf = Bitfield::new(13);
        bf.set(3);
        bf.set(12);
        let data = vec![7u8; 1000];
        let meta = LiveMeta {
            seq: 7,
            start_ms: 7000,
            duration_ms: 1000,
            capture_ms: 1_800_000_000_000,
            size: 50_000,
            sha256: [3; 32],
            sig: [4; 64],
        };
        let msgs = [
            Message::Hello {
                content_id: "abc-1",
                segments: 60,
            },
            Message::Bitfield(bf),
            Message::Have { seg: 9 },
            Message::Request { seg: 1, piece: 2 },
            Message::Piece {
                seg: 1,
                piece: 2,
                data: &data,
            },
            Message::Cancel { seg: 3, piece: 4 },
            Message::Reject { seg: 5, piece: 6 },
            Message::Bye,
            Message::Fetching { seg: 11 },
            Message::LiveMeta(meta),
            Message::LivePush(LiveMeta { seq: 8, ..meta }),
            Message::LiveWant { seq: 99 },
        ];
        for m in &msgs {
            assert_eq!(&decode(&encode(m)).unwrap(), m);
        }
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn malformed_messages_are_named_errors() {
        assert_eq!(decode(&[]), Err(WireError::Empty));
        assert_eq!(decode(&[2, 3]), Err(WireError::Version { got: 2 }));
        assert_eq!(decode(&[1, 99]), Err(WireError::UnknownKind(99)));
        assert_eq!(
            decode(&[1, 3, 0, 0]),
            Err(WireError::Length {
                what: "have",
                expected: 4,
                got: 2
            })
        );
        assert_eq!(
            decode(&[1, 3, 0, 0, 0, 1, 9]),
            Err(WireError::Length {
                what: "have",
                expected: 0,
                got: 1
            })
        );
        assert_eq!(
            decode(&[1, 5, 0, 0, 0, 1, 0, 0, 0, 1]),
            Err(WireError::Invalid {
                what: "empty piece"
            })
        );
        assert_eq!(
            decode(&vec![1; MAX_MESSAGE_BYTES + 1]),
            Err(WireError::TooLarge {
                got: MAX_MESSAGE_BYTES + 1
            })
        );
        assert_eq!(
            decode(&[1, 2, 255, 255, 255, 255]),
            Err(WireError::Invalid {
                what: "bitfield length"
            })
        );
        assert_eq!(
            decode(&[1, 9, 0, 0, 0]),
            Err(WireError::Length {
                what: "fetching",
                expected: 4,
                got: 3
            })
        );
        assert_eq!(
            decode(&[1, 9, 0, 0, 0, 1, 0]),
            Err(WireError::Length {
                what: "fetching",
                expected: 0,
                got: 1
            })
        );
        assert_eq!(decode(&[1, 13]), Err(WireError::UnknownKind(13)));
        assert_eq!(
            decode(&[1, 10, 0, 0]),
            Err(WireError::Length {
                what: "live segment description",
                expected: META_WIRE_LEN,
                got: 2
            })
        );
        assert_eq!(
            decode(&[1, 12, 0, 0, 0, 1, 0]),
            Err(WireError::Length {
                what: "live want",
                expected: 0,
                got: 1
            })
        );
        assert_eq!(
            decode(&[1, 1, 200]),
            Err(WireError::Invalid {
                what: "hello content id length"
            })
        );
    }
}
