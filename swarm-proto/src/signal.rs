//! Messages between peers (viewers and seeds) and the signal server.
//!
//! JSON text frames over a WebSocket, one message per frame, tagged by
//! `"type"`. A frame above [`MAX_SIGNAL_FRAME`] bytes or one that does not
//! parse is answered with [`ServerMsg::Error`] and otherwise ignored.
//!
//! Flow: the client sends [`ClientMsg::Hello`] first and gets
//! [`ServerMsg::Welcome`] (its peer id); it then joins swarms
//! ([`ClientMsg::Join`] → [`ServerMsg::Joined`] with a peer list). The
//! joiner offers to the peers it was given; offers, answers and ICE
//! candidates travel as [`ClientMsg::Relay`] → [`ServerMsg::Relay`].

use serde::{Deserialize, Serialize};

/// Largest signaling frame accepted, in bytes (an SDP is a few KiB).
pub const MAX_SIGNAL_FRAME: usize = 64 * 1024;
/// Longest swarm name / peer id / token accepted.
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_TOKEN_LEN: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Seed,
}

/// What a seed announces about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedInfo {
    pub seed_id: String,
    /// Base URL of the seed's HTTP origin, e.g. `http://127.0.0.1:8081`.
    pub http_base: String,
    /// Content ids (swarm names) the seed holds.
    pub contents: Vec<String>,
    /// How many viewers it serves at once over WebRTC.
    pub capacity: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub is_seed: bool,
    /// Network group (ISP, AS, subnet) the server placed the peer in.
    pub group: String,
}

/// WebRTC session signaling, relayed verbatim between two peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RtcSignal {
    Offer {
        sdp: String,
    },
    Answer {
        sdp: String,
    },
    Candidate {
        candidate: String,
        #[serde(default, rename = "sdpMid")]
        sdp_mid: Option<String>,
        #[serde(default, rename = "sdpMLineIndex")]
        sdp_mline_index: Option<u16>,
    },
}

/// Playback and transfer statistics a viewer reports every few seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    pub bytes_from_peers: u64,
    pub bytes_from_http: u64,
    pub bytes_uploaded: u64,
    pub peers: u32,
    pub startup_ms: Option<u64>,
    pub stalls: u32,
    pub stalled_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Hello {
        role: Role,
        #[serde(default)]
        token: Option<String>,
        /// Present when `role` is `seed`.
        #[serde(default)]
        seed: Option<SeedInfo>,
    },
    Join {
        swarm: String,
    },
    Leave {
        swarm: String,
    },
    GetPeers {
        swarm: String,
    },
    Relay {
        swarm: String,
        to: String,
        signal: RtcSignal,
    },
    Heartbeat,
    Report {
        swarm: String,
        report: PeerReport,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame did not parse or broke a limit.
    BadMessage,
    /// The frame was larger than [`MAX_SIGNAL_FRAME`].
    TooLarge,
    /// A message that needs `hello` first, or a second `hello`.
    Protocol,
    /// Relay to a peer that is not in that swarm.
    UnknownPeer,
    /// Message about a swarm the client has not joined.
    NotJoined,
    /// Admission refused (bad or expired token).
    Refused,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Welcome {
        peer_id: String,
        heartbeat_ms: u64,
        group: String,
    },
    Joined {
        swarm: String,
        peers: Vec<PeerInfo>,
        seeds: Vec<SeedInfo>,
    },
    Peers {
        swarm: String,
        peers: Vec<PeerInfo>,
    },
    Relay {
        swarm: String,
        from: String,
        signal: RtcSignal,
    },
    PeerLeft {
        swarm: String,
        peer_id: String,
    },
    HeartbeatAck,
    Error {
        code: ErrorCode,
        message: String,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    #[error("signaling frame of {0} bytes is over the {MAX_SIGNAL_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("signaling frame is not a valid message: {0}")]
    Malformed(String),
    #[error("field {field} is empty or longer than {max} characters")]
    BadField { field: &'static str, max: usize },
}

impl SignalError {
    pub fn code(&self) -> ErrorCode {
        match self {
            SignalError::TooLarge(_) => ErrorCode::TooLarge,
            _ => ErrorCode::BadMessage,
        }
    }
}

fn check_name(field: &'static str, s: &str) -> Result<(), SignalError> {
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(SignalError::BadField {
            field,
            max: MAX_NAME_LEN,
        });
    }
    Ok(())
}

impl ClientMsg {
    /// Parses and bounds-checks one frame from a client.
    pub fn decode(text: &str) -> Result<ClientMsg, SignalError> {
        if text.len() > MAX_SIGNAL_FRAME {
            return Err(SignalError::TooLarge(text.len()));
        }
        let msg: ClientMsg =
            serde_json::from_str(text).map_err(|e| SignalError::Malformed(e.to_string()))?;
        match &msg {
            ClientMsg::Hello { token, seed, .. } => {
                if token.as_ref().is_some_and(|t| t.len() > MAX_TOKEN_LEN) {
                    return Err(SignalError::BadField {
                        field: "token",
                        max: MAX_TOKEN_LEN,
                    });
                }
                if let Some(s) = seed {
                    check_name("seed.seed_id", &s.seed_id)?;
                    for c in &s.contents {
                        check_name("seed.contents", c)?;
                    }
                }
            }
            ClientMsg::Join { swarm }
            | ClientMsg::Leave { swarm }
            | ClientMsg::GetPeers { swarm } => check_name("swarm", swarm)?,
            ClientMsg::Relay { swarm, to, .. } => {
                check_name("swarm", swarm)?;
                check_name("to", to)?;
            }
            ClientMsg::Report { swarm, .. } => check_name("swarm", swarm)?,
            ClientMsg::Heartbeat => {}
        }
        Ok(msg)
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("client message serializes")
    }
}

impl ServerMsg {
    pub fn decode(text: &str) -> Result<ServerMsg, SignalError> {
        if text.len() > MAX_SIGNAL_FRAME {
            return Err(SignalError::TooLarge(text.len()));
        }
        serde_json::from_str(text).map_err(|e| SignalError::Malformed(e.to_string()))
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("server message serializes")
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMsg {
        ServerMsg::Error {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test(unsupported = test)]
    fn client_messages_round_trip() {
        let msgs = vec![
            ClientMsg::Hello {
                role: Role::Viewer,
                token: Some("t".into()),
                seed: None,
            },
            ClientMsg::Join {
                swarm: "abc".into(),
            },
            ClientMsg::Relay {
                swarm: "abc".into(),
                to: "p1".into(),
                signal: RtcSignal::Candidate {
                    candidate: "candidate:1".into(),
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(0),
                },
            },
            ClientMsg::Heartbeat,
        ];
        for m in msgs {
            assert_eq!(ClientMsg::decode(&m.encode()).unwrap(), m);
        }
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn wire_format_is_stable_json() {
        let m = ClientMsg::Join {
            swarm: "abc".into(),
        };
        assert_eq!(m.encode(), r#"{"type":"join","swarm":"abc"}"#);
        let s = RtcSignal::Offer { sdp: "v=0".into() };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"kind":"offer","sdp":"v=0"}"#
        );
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn bad_frames_are_errors_not_panics() {
        assert!(matches!(
            ClientMsg::decode("{"),
            Err(SignalError::Malformed(_))
        ));
        assert!(matches!(
            ClientMsg::decode(r#"{"type":"nope"}"#),
            Err(SignalError::Malformed(_))
        ));
        assert!(matches!(
            ClientMsg::decode(r#"{"type":"join","swarm":""}"#),
            Err(SignalError::BadField { .. })
        ));
        let big = format!(
            r#"{{"type":"join","swarm":"{}"}}"#,
            "a".repeat(MAX_SIGNAL_FRAME)
        );
        assert!(matches!(
            ClientMsg::decode(&big),
            Err(SignalError::TooLarge(_))
        ));
        assert_eq!(SignalError::TooLarge(1).code(), ErrorCode::TooLarge);
    }
}
