//! JSON from the servers (signal messages, the manifest), parsed by the
//! browser's `JSON.parse` and read field by field into swarm-proto's types.
//!
//! Why: serde_json's deserializers for these types (internally tagged
//! enums above all) were about 45 KB of the 150 KB gzipped Wasm, for work
//! the browser does natively. What stays in swarm-proto: the types, their
//! serde definitions (the format's source of truth, used by the servers)
//! and validation ([`ManifestParts::validate`]). The browser tests
//! (`tests/browser.rs`) check that every message kind and a manifest read
//! here equal what serde reads from the same text.
//!
//! Rules, as serde's: a missing required field, a value of the wrong type,
//! a negative or fractional number where an integer is due, or an unknown
//! `type`/`kind` is an error naming the field; unknown fields are ignored;
//! `null` counts as missing for optional fields.

use js_sys::{Array, Reflect, JSON};
#[cfg(feature = "live")]
use swarm_proto::live::{LiveManifest, LiveMeta};
use swarm_proto::manifest::{ManifestError, ManifestParts, SegmentEntry};
use swarm_proto::signal::{
    ErrorCode, IceServer, LiveChannelInfo, PeerInfo, RefuseReason, RtcSignal, SeedInfo, ServerMsg,
    SignalError, MAX_SIGNAL_FRAME,
};
use swarm_proto::Manifest;
use wasm_bindgen::JsValue;

/// Integers above this lose precision as JS numbers.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// One parsed JSON object.
struct Obj(JsValue);

impl Obj {
    fn parse(text: &str) -> Result<Obj, String> {
        let v = JSON::parse(text).map_err(crate::err_str)?;
        Obj::from(v, "the message")
    }

    fn from(v: JsValue, what: &str) -> Result<Obj, String> {
        if v.is_object() && !Array::is_array(&v) {
            Ok(Obj(v))
        } else {
            Err(format!("{what} must be a JSON object"))
        }
    }

    /// The field, or None when missing or null.
    fn opt(&self, k: &str) -> Option<JsValue> {
        Reflect::get(&self.0, &JsValue::from_str(k))
            .ok()
            .filter(|v| !v.is_undefined() && !v.is_null())
    }

    fn req(&self, k: &str) -> Result<JsValue, String> {
        self.opt(k).ok_or_else(|| format!("missing field `{k}`"))
    }

    fn str(&self, k: &str) -> Result<String, String> {
        self.req(k)?
            .as_string()
            .ok_or_else(|| format!("field `{k}` must be a string"))
    }

    fn opt_str(&self, k: &str) -> Result<Option<String>, String> {
        self.opt(k)
            .map(|v| {
                v.as_string()
                    .ok_or_else(|| format!("field `{k}` must be a string"))
            })
            .transpose()
    }

    fn bool(&self, k: &str) -> Result<bool, String> {
        self.req(k)?
            .as_bool()
            .ok_or_else(|| format!("field `{k}` must be true or false"))
    }

    fn int(v: &JsValue, k: &str, max: f64) -> Result<f64, String> {
        match v.as_f64() {
            Some(n) if n >= 0.0 && n <= max && n.fract() == 0.0 => Ok(n),
            // (max as an integer: formatting an f64 would bring float
            // formatting, ~5 KB gzipped, into the Wasm)
            _ => Err(format!(
                "field `{k}` must be an integer from 0 to {}",
                max as u64
            )),
        }
    }

    fn u64(&self, k: &str) -> Result<u64, String> {
        Ok(Self::int(&self.req(k)?, k, MAX_SAFE_INTEGER)? as u64)
    }

    fn u32(&self, k: &str) -> Result<u32, String> {
        Ok(Self::int(&self.req(k)?, k, u32::MAX as f64)? as u32)
    }

    fn opt_u16(&self, k: &str) -> Result<Option<u16>, String> {
        self.opt(k)
            .map(|v| Ok(Self::int(&v, k, u16::MAX as f64)? as u16))
            .transpose()
    }

    /// A fixed number of bytes written as hex.
    #[cfg(feature = "live")]
    fn hex<const N: usize>(&self, k: &str) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        hex::decode_to_slice(self.str(k)?, &mut out)
            .map_err(|_| format!("field `{k}` must be {} hex digits", 2 * N))?;
        Ok(out)
    }

    fn obj(&self, k: &str) -> Result<Obj, String> {
        Obj::from(self.req(k)?, &format!("field `{k}`"))
    }

    fn arr(&self, k: &str) -> Result<Array, String> {
        let v = self.req(k)?;
        if Array::is_array(&v) {
            Ok(Array::from(&v))
        } else {
            Err(format!("field `{k}` must be an array"))
        }
    }

    fn objs<T>(&self, k: &str, read: impl Fn(&Obj) -> Result<T, String>) -> Result<Vec<T>, String> {
        let a = self.arr(k)?;
        let mut out = Vec::with_capacity(a.length() as usize);
        for (i, v) in a.iter().enumerate() {
            let o = Obj::from(v, &format!("`{k}[{i}]`"))?;
            out.push(read(&o).map_err(|e| format!("`{k}[{i}]`: {e}"))?);
        }
        Ok(out)
    }

    fn strs(&self, k: &str) -> Result<Vec<String>, String> {
        self.arr(k)?
            .iter()
            .map(|v| {
                v.as_string()
                    .ok_or_else(|| format!("field `{k}` must hold strings"))
            })
            .collect()
    }
}

/// Parses and checks one frame from the signal server, like
/// [`ServerMsg::decode`].
pub fn server_msg(text: &str) -> Result<ServerMsg, SignalError> {
    if text.len() > MAX_SIGNAL_FRAME {
        return Err(SignalError::TooLarge(text.len()));
    }
    read_server_msg(text).map_err(SignalError::Malformed)
}

fn read_server_msg(text: &str) -> Result<ServerMsg, String> {
    let o = Obj::parse(text)?;
    let kind = o.str("type")?;
    Ok(match kind.as_str() {
        "welcome" => ServerMsg::Welcome {
            peer_id: o.str("peer_id")?,
            heartbeat_ms: o.u64("heartbeat_ms")?,
            group: o.str("group")?,
            server_ms: match o.opt("server_ms") {
                Some(_) => Some(o.u64("server_ms")?),
                None => None,
            },
            ice_servers: match o.opt("ice_servers") {
                Some(_) => o.objs("ice_servers", |s| {
                    Ok(IceServer {
                        urls: s.strs("urls")?,
                        username: s.opt_str("username")?,
                        credential: s.opt_str("credential")?,
                    })
                })?,
                None => Vec::new(),
            },
        },
        "joined" => ServerMsg::Joined {
            swarm: o.str("swarm")?,
            peers: o.objs("peers", peer_info)?,
            seeds: o.objs("seeds", seed_info)?,
            manifest: o.opt_str("manifest")?,
        },
        "peers" => ServerMsg::Peers {
            swarm: o.str("swarm")?,
            peers: o.objs("peers", peer_info)?,
        },
        "relay" => ServerMsg::Relay {
            swarm: o.str("swarm")?,
            from: o.str("from")?,
            signal: rtc_signal(&o.obj("signal")?).map_err(|e| format!("`signal`: {e}"))?,
        },
        "peer_left" => ServerMsg::PeerLeft {
            swarm: o.str("swarm")?,
            peer_id: o.str("peer_id")?,
        },
        "heartbeat_ack" => ServerMsg::HeartbeatAck,
        "error" => ServerMsg::Error {
            code: error_code(&o.str("code")?)?,
            message: o.str("message")?,
        },
        "kick" => ServerMsg::Kick {
            kick: o.u64("kick")?,
            message: o.str("message")?,
            ban_s: match o.opt("ban_s") {
                Some(v) => Some(Obj::int(&v, "ban_s", MAX_SAFE_INTEGER)? as u64),
                None => None,
            },
        },
        "refused" => ServerMsg::Refused {
            swarm: o.opt_str("swarm")?,
            reason: refuse_reason(&o.str("reason")?)?,
            message: o.str("message")?,
        },
        other => return Err(format!("unknown message type {other:?}")),
    })
}

fn peer_info(o: &Obj) -> Result<PeerInfo, String> {
    Ok(PeerInfo {
        peer_id: o.str("peer_id")?,
        is_seed: o.bool("is_seed")?,
        group: o.str("group")?,
    })
}

fn seed_info(o: &Obj) -> Result<SeedInfo, String> {
    Ok(SeedInfo {
        seed_id: o.str("seed_id")?,
        http_base: o.str("http_base")?,
        contents: o.strs("contents")?,
        capacity: o.u32("capacity")?,
        live: match o.opt("live") {
            Some(_) => o.objs("live", |l| {
                Ok(LiveChannelInfo {
                    channel: l.str("channel")?,
                    public_key: l.str("public_key")?,
                })
            })?,
            None => Vec::new(),
        },
    })
}

fn rtc_signal(o: &Obj) -> Result<RtcSignal, String> {
    let kind = o.str("kind")?;
    Ok(match kind.as_str() {
        "offer" => RtcSignal::Offer { sdp: o.str("sdp")? },
        "answer" => RtcSignal::Answer { sdp: o.str("sdp")? },
        "candidate" => RtcSignal::Candidate {
            candidate: o.str("candidate")?,
            sdp_mid: o.opt_str("sdpMid")?,
            sdp_mline_index: o.opt_u16("sdpMLineIndex")?,
        },
        other => return Err(format!("unknown signal kind {other:?}")),
    })
}

fn error_code(s: &str) -> Result<ErrorCode, String> {
    Ok(match s {
        "bad_message" => ErrorCode::BadMessage,
        "too_large" => ErrorCode::TooLarge,
        "protocol" => ErrorCode::Protocol,
        "unknown_peer" => ErrorCode::UnknownPeer,
        "not_joined" => ErrorCode::NotJoined,
        "rate_limited" => ErrorCode::RateLimited,
        other => return Err(format!("unknown error code {other:?}")),
    })
}

fn refuse_reason(s: &str) -> Result<RefuseReason, String> {
    RefuseReason::ALL
        .into_iter()
        .find(|r| r.code() == s)
        .ok_or_else(|| format!("unknown refusal reason {s:?}"))
}

/// Parses and validates a manifest, like [`Manifest::from_json`].
pub fn manifest(text: &str) -> Result<Manifest, ManifestError> {
    read_manifest(text).map_err(ManifestError::Json)?.validate()
}

fn read_manifest(text: &str) -> Result<ManifestParts, String> {
    read_manifest_obj(&Obj::parse(text)?)
}

/// A manifest of either kind: a live channel's has a `channel` field.
pub enum AnyManifest {
    /// Read only by the builds with videos on demand (feature `vod`).
    #[cfg(feature = "vod")]
    Vod(Manifest),
    /// Read only by the build with live channels (feature `live`).
    #[cfg(feature = "live")]
    Live(LiveManifest),
}

pub fn any_manifest(text: &str) -> Result<AnyManifest, String> {
    let o = Obj::parse(text)?;
    #[cfg(feature = "vod")]
    if o.opt("channel").is_none() {
        let m = read_manifest_obj(&o)?
            .validate()
            .map_err(|e| e.to_string())?;
        return Ok(AnyManifest::Vod(m));
    }
    #[cfg(not(feature = "vod"))]
    if o.opt("channel").is_none() {
        return Err("a video on demand's manifest: this build of the player plays live channels only; shoal.js loads the on-demand build for a src that does not end in /live.json (or pass live: false)".into());
    }
    #[cfg(not(feature = "live"))]
    return Err("a live channel's manifest: this build of the player plays videos on demand only; shoal.js loads the live build for a src ending in /live.json (or pass live: true)".into());
    #[cfg(feature = "live")]
    {
        let m = read_live(&o)?;
        m.check().map_err(|e| e.to_string())?;
        Ok(AnyManifest::Live(m))
    }
}

#[cfg(feature = "live")]
fn read_live(o: &Obj) -> Result<LiveManifest, String> {
    Ok(LiveManifest {
        version: o.u32("version")?,
        channel: o.str("channel")?,
        title: o.str("title")?,
        mime: o.str("mime")?,
        piece_size: o.u32("piece_size")?,
        segment_ms: o.u32("segment_ms")?,
        playlist: o.str("playlist")?,
        init: segment_entry(&o.obj("init")?).map_err(|e| format!("`init`: {e}"))?,
        init_sig: o.hex("init_sig")?,
        public_key: o.hex("public_key")?,
        recent: o.objs("recent", live_meta)?,
        interrupted: o.opt_str("interrupted")?,
    })
}

#[cfg(feature = "live")]
fn live_meta(o: &Obj) -> Result<LiveMeta, String> {
    Ok(LiveMeta {
        seq: o.u32("seq")?,
        start_ms: o.u64("start_ms")?,
        duration_ms: o.u32("duration_ms")?,
        capture_ms: o.u64("capture_ms")?,
        size: o.u32("size")?,
        sha256: o.hex("sha256")?,
        sig: o.hex("sig")?,
    })
}

fn read_manifest_obj(o: &Obj) -> Result<ManifestParts, String> {
    Ok(ManifestParts {
        version: o.u32("version")?,
        content_id: o.str("content_id")?,
        title: o.str("title")?,
        playlist: o.str("playlist")?,
        mime: o.str("mime")?,
        piece_size: o.u32("piece_size")?,
        init: segment_entry(&o.obj("init")?).map_err(|e| format!("`init`: {e}"))?,
        segments: o.objs("segments", segment_entry)?,
    })
}

fn segment_entry(o: &Obj) -> Result<SegmentEntry, String> {
    Ok(SegmentEntry {
        uri: o.str("uri")?,
        size: o.u64("size")?,
        sha256: o.str("sha256")?,
        duration_ms: match o.opt("duration_ms") {
            Some(v) => Obj::int(&v, "duration_ms", u32::MAX as f64)? as u32,
            None => 0,
        },
    })
}
