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
/// Longest `http_base` a seed may announce.
pub const MAX_HTTP_BASE_LEN: usize = 512;
/// Most content ids one seed may announce.
pub const MAX_SEED_CONTENTS: usize = 1000;
/// Most seeds listed in one `joined` (each with only the joined content).
pub const MAX_SEEDS_PER_JOIN: usize = 8;
/// Where a seed serves a channel's manifest: `http_base` +
/// `/live/ID/live.json` for one of its live channels, else
/// `/vod/ID/manifest.json`.
pub fn manifest_url(seed: &SeedInfo, swarm: &str) -> String {
    let base = seed.http_base.trim_end_matches('/');
    if seed.live.iter().any(|l| l.channel == swarm) {
        format!("{base}/live/{swarm}/live.json")
    } else {
        format!("{base}/vod/{swarm}/manifest.json")
    }
}

/// Longest human-readable message in a server message.
pub const MAX_MESSAGE_LEN: usize = 1024;

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
    /// Live channels among `contents`, each with the hex Ed25519 public key
    /// its segments are signed with: viewers verify against this key,
    /// which reaches them through the server that admitted the seed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live: Vec<LiveChannelInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveChannelInfo {
    pub channel: String,
    pub public_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer_id: String,
    pub is_seed: bool,
    /// Network group (ISP, AS, subnet) the server placed the peer in.
    pub group: String,
}

/// One STUN or TURN server, as RTCPeerConnection's `iceServers` takes it.
/// TURN entries carry a short-lived username and credential that the
/// signal server derives from the TURN server's shared secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// How a peer connection's selected candidate pair reaches the other side:
/// the "highest" type of its two candidates (relay over srflx over prflx
/// over host). `Relay` means the bytes go through a TURN server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    Host,
    Srflx,
    Prflx,
    Relay,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Host => "host",
            Route::Srflx => "srflx",
            Route::Prflx => "prflx",
            Route::Relay => "relay",
        }
    }

    /// An ICE candidate type as WebRTC names it (`RTCIceCandidate.type`).
    pub fn from_candidate_type(t: &str) -> Option<Route> {
        Some(match t {
            "host" => Route::Host,
            "srflx" => Route::Srflx,
            "prflx" => Route::Prflx,
            "relay" => Route::Relay,
            _ => return None,
        })
    }

    /// The route of a pair of a local and a remote candidate type.
    pub fn of_pair(local: Route, remote: Route) -> Route {
        local.max(remote)
    }
}

impl PartialOrd for Route {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Route {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let rank = |r: &Route| match r {
            Route::Host => 0,
            Route::Prflx => 1,
            Route::Srflx => 2,
            Route::Relay => 3,
        };
        rank(self).cmp(&rank(other))
    }
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
    /// Bytes from viewers that went through a TURN relay (not in
    /// `bytes_from_peers`: relayed bytes cost the operator).
    #[serde(default)]
    pub bytes_from_relay: u64,
    pub peers: u32,
    pub startup_ms: Option<u64>,
    pub stalls: u32,
    pub stalled_ms: u64,
    /// Live: wall clock minus the capture time of the frame at the
    /// playhead (the player's `stats().latencyMs`), when known; at most
    /// [`MAX_REPORT_LATENCY_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

impl PeerReport {
    /// Refuses an unbelievable live latency (a bug or a lie), named.
    pub fn check(&self) -> Result<(), SignalError> {
        match self.latency_ms {
            Some(v) if v > MAX_REPORT_LATENCY_MS => Err(SignalError::Absurd {
                field: "report.latency_ms",
                value: v,
                max: MAX_REPORT_LATENCY_MS,
            }),
            _ => Ok(()),
        }
    }
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
    /// Acknowledges [`ServerMsg::Kick`]: the viewer said goodbye to its
    /// peers, stopped playing and will send nothing more.
    Stopped {
        kick: u64,
    },
    /// How a connection attempt to `peer` (a member of `swarm`) ended:
    /// `ok` with the selected pair's `route` once its data channel opened,
    /// or not, after `ms` milliseconds. The server keeps success rates per
    /// network group and does not match a failed pair again for a while.
    ConnResult {
        swarm: String,
        peer: String,
        ok: bool,
        ms: u64,
        #[serde(default)]
        route: Option<Route>,
    },
    /// A seed's answer to [`ServerMsg::SeedCommand`] `id`, with its new
    /// announcement when its contents changed.
    SeedCommandResult {
        id: u64,
        ok: bool,
        #[serde(default)]
        message: String,
        #[serde(default)]
        seed: Option<SeedInfo>,
    },
    /// A seed's contents changed on its own (a VOD file finished
    /// packaging): its whole new announcement.
    SeedUpdate {
        seed: SeedInfo,
    },
    /// A registered seed's periodic statistics and health (every
    /// [`SEED_REPORT_EVERY_MS`]); accepted only from the connection that
    /// registered as a seed with its credential.
    SeedReport {
        report: SeedReport,
    },
}

/// How often a seed sends [`ClientMsg::SeedReport`]; the signal server shows
/// a seed whose last report is older than [`SEED_REPORT_STALE_MS`] as stale.
pub const SEED_REPORT_EVERY_MS: u64 = 5_000;
pub const SEED_REPORT_STALE_MS: u64 = 3 * SEED_REPORT_EVERY_MS;
/// Most live latency a viewer may report (an hour: a live player that far
/// behind is broken).
pub const MAX_REPORT_LATENCY_MS: u64 = 3_600_000;
/// Bounds past which a [`SeedReport`] value is absurd and refused: a
/// century of uptime, an exbibyte, a million viewers on one seed, a pebibyte
/// of cache.
pub const MAX_REPORT_UPTIME_S: u64 = 100 * 365 * 24 * 3600;
pub const MAX_REPORT_BYTES: u64 = 1 << 60;
pub const MAX_REPORT_VIEWERS: u32 = 1_000_000;
pub const MAX_REPORT_CACHE_BYTES: u64 = 1 << 50;
/// Most interrupted live channels named in one report.
pub const MAX_REPORT_INTERRUPTED: usize = 16;

/// What a seed reports about itself. Byte counters count since the seed
/// started (they only grow; the seed's counters saturate).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedReport {
    /// Seconds since the seed process started.
    pub uptime_s: u64,
    /// Data-channel bytes sent to viewers / received from them.
    pub rtc_bytes_out: u64,
    pub rtc_bytes_in: u64,
    /// Response bytes sent by the HTTP origin / request bytes it received.
    pub http_bytes_out: u64,
    pub http_bytes_in: u64,
    /// Viewer connections held over WebRTC now.
    pub viewers: u32,
    /// Contents served normally (VOD, running or starting live channels).
    pub channels_ok: u32,
    /// Live channels whose source is interrupted (ingest restarting).
    pub channels_interrupted: u32,
    /// Names of (some of) the interrupted channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interrupted: Vec<String>,
    /// Verified segments held in memory, and the configured bound.
    pub cache_bytes: u64,
    pub cache_max_bytes: u64,
    /// The seed's configured caps on viewers (absent from older seeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<SeedCaps>,
}

/// A seed's configured caps, as its `--capacity` and
/// `--max-conns-per-peer` set them (read-only: change them on the seed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedCaps {
    /// Viewer connections held at once over WebRTC.
    pub capacity: u32,
    /// Connections held at once for one viewer.
    pub max_conns_per_peer: u32,
}

impl SeedReport {
    /// Refuses absurd values (a bug or a lie): each with what was wrong.
    pub fn check(&self) -> Result<(), SignalError> {
        let over = |field: &'static str, v: u64, max: u64| {
            if v > max {
                Err(SignalError::Absurd {
                    field,
                    value: v,
                    max,
                })
            } else {
                Ok(())
            }
        };
        over("report.uptime_s", self.uptime_s, MAX_REPORT_UPTIME_S)?;
        over("report.rtc_bytes_out", self.rtc_bytes_out, MAX_REPORT_BYTES)?;
        over("report.rtc_bytes_in", self.rtc_bytes_in, MAX_REPORT_BYTES)?;
        over(
            "report.http_bytes_out",
            self.http_bytes_out,
            MAX_REPORT_BYTES,
        )?;
        over("report.http_bytes_in", self.http_bytes_in, MAX_REPORT_BYTES)?;
        over(
            "report.viewers",
            u64::from(self.viewers),
            u64::from(MAX_REPORT_VIEWERS),
        )?;
        over(
            "report.channels_ok + channels_interrupted",
            u64::from(self.channels_ok) + u64::from(self.channels_interrupted),
            MAX_SEED_CONTENTS as u64,
        )?;
        over(
            "report.cache_bytes",
            self.cache_bytes,
            MAX_REPORT_CACHE_BYTES,
        )?;
        if let Some(c) = &self.caps {
            let max = u64::from(MAX_REPORT_VIEWERS);
            over("report.caps.capacity", u64::from(c.capacity), max)?;
            over(
                "report.caps.max_conns_per_peer",
                u64::from(c.max_conns_per_peer),
                max,
            )?;
        }
        over(
            "report.cache_max_bytes",
            self.cache_max_bytes,
            MAX_REPORT_CACHE_BYTES,
        )?;
        if self.interrupted.len() > MAX_REPORT_INTERRUPTED
            || self.interrupted.len() > self.channels_interrupted as usize
        {
            return Err(SignalError::BadField {
                field: "report.interrupted (count, at most channels_interrupted)",
                max: MAX_REPORT_INTERRUPTED,
            });
        }
        for c in &self.interrupted {
            check_name("report.interrupted", c)?;
        }
        Ok(())
    }
}

/// What the operator asks a seed to do ([`ServerMsg::SeedCommand`]). The
/// seed checks everything itself: names, sources, paths, its own bounds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SeedCommand {
    /// Start live channel `name` from `source` (the syntax of the seed's
    /// `--live NAME=SOURCE`).
    StartLive { name: String, source: String },
    /// Stop live channel `name`: its ingest ends, the seed stops announcing
    /// it, its `live.json` says it was stopped.
    StopLive { name: String },
    /// Package and publish `file`, a path relative to the seed's media
    /// folder; the seed answers at once and announces the content
    /// ([`ClientMsg::SeedUpdate`]) when it is packaged.
    AddVod { file: String },
    /// Unpublish VOD content `name` published on command: no longer served
    /// over HTTP or WebRTC, no longer announced.
    RemoveVod { name: String },
}

/// Longest `source` or `file` in a [`SeedCommand`].
pub const MAX_COMMAND_ARG_LEN: usize = 1024;

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
    /// Dropped by a server limit (a relay to a peer that is not keeping up).
    RateLimited,
}

/// Why the server refused a client ([`ServerMsg::Refused`]). The player shows
/// it to the person watching; the seed logs it and stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefuseReason {
    /// The channel needs a viewer token and none was presented.
    TokenRequired,
    /// The token is not a well-formed token of the expected kind.
    BadToken,
    /// The token's signature does not match the operator's key.
    BadSignature,
    /// The token's expiry has passed.
    Expired,
    /// The token does not allow this channel.
    NotEntitled,
    /// The viewer (or its token) is banned for now.
    Banned,
    /// No seed offers this channel (yet).
    UnknownChannel,
    /// A seed without a valid seed credential, or whose `seed_id` is not the
    /// one its credential names.
    SeedCredential,
    /// A server limit (connections per address, swarms, ...) was reached.
    Limit,
}

impl RefuseReason {
    /// Every reason, for decoders and tests.
    pub const ALL: [RefuseReason; 9] = [
        RefuseReason::TokenRequired,
        RefuseReason::BadToken,
        RefuseReason::BadSignature,
        RefuseReason::Expired,
        RefuseReason::NotEntitled,
        RefuseReason::Banned,
        RefuseReason::UnknownChannel,
        RefuseReason::SeedCredential,
        RefuseReason::Limit,
    ];

    /// The reason's name on the wire (`"not_entitled"`).
    pub fn code(self) -> &'static str {
        match self {
            RefuseReason::TokenRequired => "token_required",
            RefuseReason::BadToken => "bad_token",
            RefuseReason::BadSignature => "bad_signature",
            RefuseReason::Expired => "expired",
            RefuseReason::NotEntitled => "not_entitled",
            RefuseReason::Banned => "banned",
            RefuseReason::UnknownChannel => "unknown_channel",
            RefuseReason::SeedCredential => "seed_credential",
            RefuseReason::Limit => "limit",
        }
    }

    /// Whether the same credentials can never succeed (the player stops);
    /// `false` for reasons that may clear up (a channel whose seed is
    /// restarting, a limit).
    pub fn is_final(self) -> bool {
        !matches!(self, RefuseReason::UnknownChannel | RefuseReason::Limit)
    }

    /// A sentence for the person watching.
    pub fn describe(self) -> &'static str {
        match self {
            RefuseReason::TokenRequired => "this channel needs you to sign in",
            RefuseReason::BadToken => "your access token is not valid",
            RefuseReason::BadSignature => "your access token is not valid (bad signature)",
            RefuseReason::Expired => "your access has expired",
            RefuseReason::NotEntitled => "your access does not include this channel",
            RefuseReason::Banned => "you have been removed from this channel for now",
            RefuseReason::UnknownChannel => "this channel is not available",
            RefuseReason::SeedCredential => "seed credential refused",
            RefuseReason::Limit => "the server is busy",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Welcome {
        peer_id: String,
        heartbeat_ms: u64,
        group: String,
        /// The server's wall clock (Unix ms) when it sent this: viewers
        /// learn their clock's offset from it (live latency is measured
        /// against the capture clock of the ingest).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_ms: Option<u64>,
        /// STUN and TURN servers for this peer's connections (empty: host
        /// candidates only, as on one machine or one LAN).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ice_servers: Vec<IceServer>,
    },
    /// Admission to `swarm` with the channel's metadata: its seeds (with
    /// their HTTP origins and, for a live channel, its public key), the
    /// first peer list, and the manifest's address at the first seed.
    Joined {
        swarm: String,
        peers: Vec<PeerInfo>,
        seeds: Vec<SeedInfo>,
        /// URL of the channel's manifest (`/vod/ID/manifest.json` or
        /// `/live/ID/live.json` at a listed seed's `http_base`); absent when
        /// no seed offers the channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        manifest: Option<String>,
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
    /// `peer_id` left `swarm`. Sent to every member of a small swarm; in a
    /// large one only to the peers that recently signaled with it.
    PeerLeft {
        swarm: String,
        peer_id: String,
    },
    HeartbeatAck,
    Error {
        code: ErrorCode,
        message: String,
    },
    /// The operator removed this viewer: say goodbye to the peers, stop
    /// playing, answer [`ClientMsg::Stopped`] with `kick`. Sent again until
    /// acknowledged. `ban_s`: how long a rejoin will be refused.
    Kick {
        kick: u64,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ban_s: Option<u64>,
    },
    /// Admission (`swarm` absent: the connection is closed next) or a join
    /// (`swarm` present: the connection stays) was refused.
    Refused {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        swarm: Option<String>,
        reason: RefuseReason,
        message: String,
    },
    /// Sent only to registered seeds: the operator's command, to be
    /// answered with [`ClientMsg::SeedCommandResult`] `id`.
    SeedCommand {
        id: u64,
        command: SeedCommand,
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
    #[error("field {field} is {value}, over the most believable value {max}")]
    Absurd {
        field: &'static str,
        value: u64,
        max: u64,
    },
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

impl SeedInfo {
    /// Checks the bounds a server enforces on a seed's announcement.
    pub fn check(&self) -> Result<(), SignalError> {
        check_name("seed.seed_id", &self.seed_id)?;
        let base = &self.http_base;
        if base.is_empty()
            || base.len() > MAX_HTTP_BASE_LEN
            || !(base.starts_with("http://") || base.starts_with("https://"))
            || base.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(SignalError::BadField {
                field: "seed.http_base (an http:// or https:// URL)",
                max: MAX_HTTP_BASE_LEN,
            });
        }
        if self.contents.len() > MAX_SEED_CONTENTS {
            return Err(SignalError::BadField {
                field: "seed.contents (count)",
                max: MAX_SEED_CONTENTS,
            });
        }
        for c in &self.contents {
            check_name("seed.contents", c)?;
        }
        if self.live.len() > MAX_SEED_CONTENTS {
            return Err(SignalError::BadField {
                field: "seed.live (count)",
                max: MAX_SEED_CONTENTS,
            });
        }
        for l in &self.live {
            check_name("seed.live.channel", &l.channel)?;
            let k = &l.public_key;
            if k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(SignalError::BadField {
                    field: "seed.live.public_key (64 hex digits)",
                    max: 64,
                });
            }
        }
        Ok(())
    }
}

impl SeedCommand {
    /// Checks the lengths a server enforces before sending a command (the
    /// seed checks the meaning).
    pub fn check(&self) -> Result<(), SignalError> {
        match self {
            SeedCommand::StartLive { name, source } => {
                check_name("name", name)?;
                if source.is_empty() || source.len() > MAX_COMMAND_ARG_LEN {
                    return Err(SignalError::BadField {
                        field: "source",
                        max: MAX_COMMAND_ARG_LEN,
                    });
                }
            }
            SeedCommand::StopLive { name } | SeedCommand::RemoveVod { name } => {
                check_name("name", name)?
            }
            SeedCommand::AddVod { file } => {
                if file.is_empty() || file.len() > MAX_COMMAND_ARG_LEN {
                    return Err(SignalError::BadField {
                        field: "file",
                        max: MAX_COMMAND_ARG_LEN,
                    });
                }
            }
        }
        Ok(())
    }
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
                    s.check()?;
                }
            }
            ClientMsg::Join { swarm }
            | ClientMsg::Leave { swarm }
            | ClientMsg::GetPeers { swarm } => check_name("swarm", swarm)?,
            ClientMsg::Relay { swarm, to, .. } => {
                check_name("swarm", swarm)?;
                check_name("to", to)?;
            }
            ClientMsg::Report { swarm, report } => {
                check_name("swarm", swarm)?;
                report.check()?;
            }
            ClientMsg::ConnResult { swarm, peer, .. } => {
                check_name("swarm", swarm)?;
                check_name("peer", peer)?;
            }
            ClientMsg::SeedCommandResult { message, seed, .. } => {
                if message.len() > MAX_MESSAGE_LEN {
                    return Err(SignalError::BadField {
                        field: "message",
                        max: MAX_MESSAGE_LEN,
                    });
                }
                if let Some(s) = seed {
                    s.check()?;
                }
            }
            ClientMsg::SeedUpdate { seed } => seed.check()?,
            ClientMsg::SeedReport { report } => report.check()?,
            ClientMsg::Heartbeat | ClientMsg::Stopped { .. } => {}
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

    /// A refusal; `message` adds detail to [`RefuseReason::describe`].
    pub fn refused(swarm: Option<&str>, reason: RefuseReason, detail: &str) -> ServerMsg {
        let mut message = format!("{}: {detail}", reason.describe());
        if message.len() > MAX_MESSAGE_LEN {
            let mut cut = MAX_MESSAGE_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        ServerMsg::Refused {
            swarm: swarm.map(str::to_owned),
            reason,
            message,
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
            ClientMsg::Stopped { kick: 7 },
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
    fn seed_announcements_are_bounded() {
        let ok = SeedInfo {
            seed_id: "s1".into(),
            http_base: "http://127.0.0.1:8081".into(),
            contents: vec!["a".into()],
            capacity: 5,
            live: Vec::new(),
        };
        assert!(ok.check().is_ok());
        for bad in [
            SeedInfo {
                http_base: format!("http://{}", "a".repeat(MAX_HTTP_BASE_LEN)),
                ..ok.clone()
            },
            SeedInfo {
                http_base: "javascript:alert(1)".into(),
                ..ok.clone()
            },
            SeedInfo {
                http_base: "http://a b".into(),
                ..ok.clone()
            },
            SeedInfo {
                contents: vec!["c".into(); MAX_SEED_CONTENTS + 1],
                ..ok.clone()
            },
            SeedInfo {
                seed_id: String::new(),
                ..ok.clone()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
            let hello = ClientMsg::Hello {
                role: Role::Seed,
                token: None,
                seed: Some(bad),
            };
            assert!(ClientMsg::decode(&hello.encode()).is_err());
        }
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn refusals_round_trip_and_stay_short() {
        let m = ServerMsg::refused(Some("news"), RefuseReason::NotEntitled, "token for alice");
        let text = m.encode();
        assert!(text.contains(r#""reason":"not_entitled""#), "{text}");
        assert_eq!(ServerMsg::decode(&text).unwrap(), m);
        let m = ServerMsg::refused(None, RefuseReason::Expired, &"é".repeat(4000));
        match &m {
            ServerMsg::Refused { message, swarm, .. } => {
                assert!(message.len() <= MAX_MESSAGE_LEN);
                assert!(swarm.is_none());
            }
            other => panic!("{other:?}"),
        }
        assert!(!m.encode().contains("swarm"));
        assert!(RefuseReason::Expired.is_final());
        for r in RefuseReason::ALL {
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.code())
            );
        }
        assert!(!RefuseReason::UnknownChannel.is_final());
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn seed_commands_round_trip_and_are_bounded() {
        let cmd = ServerMsg::SeedCommand {
            id: 3,
            command: SeedCommand::StartLive {
                name: "news".into(),
                source: "testsrc".into(),
            },
        };
        let text = cmd.encode();
        assert_eq!(
            text,
            r#"{"type":"seed_command","id":3,"command":{"action":"start_live","name":"news","source":"testsrc"}}"#
        );
        assert_eq!(ServerMsg::decode(&text).unwrap(), cmd);
        let res = ClientMsg::SeedCommandResult {
            id: 3,
            ok: false,
            message: "x".repeat(MAX_MESSAGE_LEN + 1),
            seed: None,
        };
        assert!(ClientMsg::decode(&res.encode()).is_err());
        let ok = ClientMsg::decode(r#"{"type":"seed_command_result","id":3,"ok":true}"#).unwrap();
        assert!(matches!(ok, ClientMsg::SeedCommandResult { ok: true, .. }));
        assert!(SeedCommand::AddVod {
            file: String::new()
        }
        .check()
        .is_err());
        assert!(SeedCommand::StopLive {
            name: "a".repeat(MAX_NAME_LEN + 1)
        }
        .check()
        .is_err());
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn seed_reports_round_trip_and_absurd_values_are_refused() {
        let ok = SeedReport {
            uptime_s: 12,
            rtc_bytes_out: 1 << 30,
            rtc_bytes_in: 4096,
            http_bytes_out: 5 << 20,
            http_bytes_in: 900,
            viewers: 3,
            channels_ok: 2,
            channels_interrupted: 1,
            interrupted: vec!["news".into()],
            cache_bytes: 8 << 20,
            cache_max_bytes: 256 << 20,
            caps: Some(SeedCaps {
                capacity: 50,
                max_conns_per_peer: 4,
            }),
        };
        let m = ClientMsg::SeedReport { report: ok.clone() };
        assert_eq!(ClientMsg::decode(&m.encode()).unwrap(), m);
        let bad = [
            (
                SeedReport {
                    uptime_s: MAX_REPORT_UPTIME_S + 1,
                    ..ok.clone()
                },
                "uptime_s",
            ),
            (
                SeedReport {
                    rtc_bytes_out: u64::MAX,
                    ..ok.clone()
                },
                "rtc_bytes_out",
            ),
            (
                SeedReport {
                    http_bytes_in: MAX_REPORT_BYTES + 1,
                    ..ok.clone()
                },
                "http_bytes_in",
            ),
            (
                SeedReport {
                    viewers: u32::MAX,
                    ..ok.clone()
                },
                "viewers",
            ),
            (
                SeedReport {
                    channels_ok: u32::MAX,
                    channels_interrupted: u32::MAX,
                    ..ok.clone()
                },
                "channels_ok",
            ),
            (
                SeedReport {
                    cache_bytes: u64::MAX,
                    ..ok.clone()
                },
                "cache_bytes",
            ),
            (
                SeedReport {
                    interrupted: vec!["a".into(); 2],
                    ..ok.clone()
                },
                "interrupted",
            ),
            (
                SeedReport {
                    interrupted: vec![String::new()],
                    ..ok.clone()
                },
                "interrupted",
            ),
            (
                SeedReport {
                    caps: Some(SeedCaps {
                        capacity: MAX_REPORT_VIEWERS + 1,
                        max_conns_per_peer: 1,
                    }),
                    ..ok.clone()
                },
                "caps.capacity",
            ),
        ];
        for (r, field) in bad {
            let e = ClientMsg::decode(&ClientMsg::SeedReport { report: r }.encode()).unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
            assert_eq!(e.code(), ErrorCode::BadMessage);
        }
        // Negative or non-integer values do not parse at all.
        assert!(ClientMsg::decode(r#"{"type":"seed_report","report":{"uptime_s":-1}}"#).is_err());
    }

    #[wasm_bindgen_test(unsupported = test)]
    fn joined_carries_the_manifest_address_when_known() {
        let mut seed = SeedInfo {
            seed_id: "s1".into(),
            http_base: "https://cdn.example/".into(),
            contents: vec!["movie".into(), "news".into()],
            capacity: 5,
            live: vec![LiveChannelInfo {
                channel: "news".into(),
                public_key: "ab".repeat(32),
            }],
        };
        assert_eq!(
            manifest_url(&seed, "movie"),
            "https://cdn.example/vod/movie/manifest.json"
        );
        assert_eq!(
            manifest_url(&seed, "news"),
            "https://cdn.example/live/news/live.json"
        );
        seed.contents.truncate(1);
        let j = ServerMsg::Joined {
            swarm: "movie".into(),
            peers: Vec::new(),
            seeds: vec![seed.clone()],
            manifest: Some(manifest_url(&seed, "movie")),
        };
        assert_eq!(ServerMsg::decode(&j.encode()).unwrap(), j);
        // Absent, it is not written, and an older server's joined reads.
        let old = r#"{"type":"joined","swarm":"x","peers":[],"seeds":[]}"#;
        let j = ServerMsg::decode(old).unwrap();
        assert!(matches!(j, ServerMsg::Joined { manifest: None, .. }));
        assert_eq!(j.encode(), old);
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
