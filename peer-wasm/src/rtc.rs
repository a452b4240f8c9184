//! RTCPeerConnections and their data channels, one [`Conn`] per remote peer.
//!
//! Invariants:
//! - At most one connection per remote id (`by_id` mirrors `conns`).
//! - A connection's JS callbacks live in its `closures` and leave only
//!   through [`Conn::close`], detached first, into the graveyard.
//! - Only the first data channel of a connection is used; more are closed.
//! - A message that is not binary, or is over
//!   [`wire::MAX_MESSAGE_BYTES`], becomes [`RtcEv::BadFrame`] without being
//!   copied into Wasm memory.
//!
//! Closing is the driver's (its one disconnect path also tells the engine).

use crate::err_str;
use crate::lifecycle::{cb, post, Cb, Ev, Shared};
use js_sys::{Array, ArrayBuffer, Object, Reflect, Uint8Array};
use std::collections::HashMap;
use std::rc::Weak;
use swarm_proto::signal::{IceServer, Route};
use swarm_proto::wire::{self, Message};
use swarm_proto::PeerKey;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    MessageEvent, RtcDataChannel, RtcDataChannelEvent, RtcDataChannelState, RtcDataChannelType,
    RtcIceCandidateInit, RtcPeerConnection, RtcPeerConnectionIceEvent, RtcPeerConnectionState,
    RtcSdpType, RtcSessionDescriptionInit,
};

/// A connection whose data channel has not opened by then is closed.
pub(crate) const HANDSHAKE_TIMEOUT_MS: f64 = 10_000.0;

pub(crate) type Candidate = (String, Option<String>, Option<u16>);

pub(crate) enum RtcEv {
    LocalCandidate {
        key: PeerKey,
        cand: Candidate,
    },
    LocalSdp {
        key: PeerKey,
        offer: bool,
        sdp: String,
    },
    Failed {
        key: PeerKey,
        why: String,
    },
    Channel {
        key: PeerKey,
        dc: RtcDataChannel,
    },
    Open(PeerKey),
    /// The selected candidate pair of an open connection (None: unknown).
    Route(PeerKey, Option<Route>),
    /// An ICE server could not be used (`icecandidateerror`): a wrong TURN
    /// credential, an unreachable STUN server.
    IceError(String),
    Data(PeerKey, Vec<u8>),
    BadFrame(PeerKey, String),
    Closed(PeerKey),
}

pub(crate) struct Conn {
    pub remote_id: String,
    pub is_seed: bool,
    /// We made the offer.
    pub outgoing: bool,
    /// Our offer was answered.
    pub answered: bool,
    pub open: bool,
    pub created_at: f64,
    /// When its data channel opened.
    pub opened_at: f64,
    /// Route of its selected candidate pair, as last asked.
    pub route: Option<Route>,
    /// Its outcome went to the signal server.
    pub reported: bool,
    /// Its first route answer came: the engine knows the peer. Until then
    /// its messages wait in `pending` (bytes are counted by route).
    pub routed: bool,
    pub pending: Vec<Vec<u8>>,
    pc: RtcPeerConnection,
    dc: Option<RtcDataChannel>,
    closures: Vec<Cb>,
}

impl Conn {
    /// Bytes queued on the data channel and not yet sent.
    pub fn buffered(&self) -> u64 {
        self.dc.as_ref().map_or(0, |dc| dc.buffered_amount() as u64)
    }

    pub fn send(&self, data: &[u8]) -> Result<(), String> {
        match &self.dc {
            Some(dc) if self.open => dc.send_with_u8_array(data).map_err(err_str),
            _ => Err("the data channel is not open".into()),
        }
    }

    /// Detaches every handler, optionally says `Bye`, and closes. The
    /// callbacks go to `graveyard` (freed where none can be running).
    pub fn close(mut self, bye: bool, graveyard: &mut Vec<Cb>) {
        if let Some(dc) = &self.dc {
            if bye && self.open {
                let _ = dc.send_with_u8_array(&wire::encode(&Message::Bye));
            }
            dc.set_onopen(None);
            dc.set_onmessage(None);
            dc.set_onclose(None);
            dc.close();
        }
        self.pc.set_onicecandidate(None);
        self.pc.set_ondatachannel(None);
        self.pc.set_onconnectionstatechange(None);
        self.pc.close();
        graveyard.append(&mut self.closures);
    }
}

#[derive(Default)]
pub(crate) struct Peers {
    conns: HashMap<PeerKey, Conn>,
    by_id: HashMap<String, PeerKey>,
    next_key: PeerKey,
    /// `iceServers` for new connections (options.iceServers, else the
    /// signal server's); None: host candidates only.
    ice_servers: Option<JsValue>,
    /// options.iceTransportPolicy ("all" or "relay").
    ice_policy: Option<String>,
}

/// `RTCIceServer` dictionaries for the signal server's list.
pub(crate) fn ice_servers_js(list: &[IceServer]) -> JsValue {
    let out = Array::new();
    for s in list {
        let o = Object::new();
        let urls: Array = s.urls.iter().map(|u| JsValue::from_str(u)).collect();
        let _ = Reflect::set(&o, &"urls".into(), &urls);
        for (k, v) in [("username", &s.username), ("credential", &s.credential)] {
            if let Some(v) = v {
                let _ = Reflect::set(&o, &k.into(), &v.into());
            }
        }
        out.push(&o);
    }
    out.into()
}

impl Peers {
    /// RTCPeerConnections alive, pending ones included.
    pub fn count(&self) -> usize {
        self.conns.len()
    }

    pub fn open_count(&self) -> usize {
        self.conns.values().filter(|c| c.open).count()
    }

    pub fn get(&self, key: PeerKey) -> Option<&Conn> {
        self.conns.get(&key)
    }

    /// Open connections by the route of their selected pair (host, srflx,
    /// prflx, relay), as last asked.
    pub fn routes(&self) -> [u32; 4] {
        let mut n = [0; 4];
        for r in self
            .conns
            .values()
            .filter(|c| c.open)
            .filter_map(|c| c.route)
        {
            n[r as usize] += 1;
        }
        n
    }

    pub fn get_mut(&mut self, key: PeerKey) -> Option<&mut Conn> {
        self.conns.get_mut(&key)
    }

    pub fn key_of(&self, remote_id: &str) -> Option<PeerKey> {
        self.by_id.get(remote_id).copied()
    }

    pub fn keys(&self) -> Vec<PeerKey> {
        self.conns.keys().copied().collect()
    }

    /// Bytes queued toward each open peer.
    pub fn buffered(&self) -> Vec<(PeerKey, u64)> {
        self.conns
            .iter()
            .filter(|(_, c)| c.open)
            .map(|(&k, c)| (k, c.buffered()))
            .collect()
    }

    /// Connections whose channel did not open within the handshake timeout.
    pub fn handshake_expired(&self, now: f64) -> Vec<PeerKey> {
        self.conns
            .iter()
            .filter(|(_, c)| !c.open && now - c.created_at > HANDSHAKE_TIMEOUT_MS)
            .map(|(&k, _)| k)
            .collect()
    }

    pub fn remove(&mut self, key: PeerKey) -> Option<Conn> {
        let c = self.conns.remove(&key)?;
        self.by_id.remove(&c.remote_id);
        Some(c)
    }

    /// ICE configuration of the connections made from now on.
    pub fn set_ice(&mut self, servers: Option<JsValue>, policy: Option<String>) {
        if servers.is_some() {
            self.ice_servers = servers;
        }
        if policy.is_some() {
            self.ice_policy = policy;
        }
    }

    /// Asks the browser which candidate pair an open connection uses
    /// (posted as `Route`).
    pub fn query_route(&self, key: PeerKey, weak: &Weak<Shared>) {
        let Some(c) = self.conns.get(&key) else {
            return;
        };
        let pc = c.pc.clone();
        let weak = weak.clone();
        spawn_local(async move {
            let route = match JsFuture::from(pc.get_stats()).await {
                Ok(report) => selected_route(&report.unchecked_into()),
                Err(_) => None,
            };
            post(&weak, Ev::Rtc(RtcEv::Route(key, route)));
        });
    }

    /// A new RTCPeerConnection with the ICE servers set so far (none: host
    /// candidates only).
    pub fn create(
        &mut self,
        remote_id: String,
        is_seed: bool,
        outgoing: bool,
        now: f64,
        weak: &Weak<Shared>,
    ) -> Result<PeerKey, JsValue> {
        debug_assert!(
            !self.by_id.contains_key(&remote_id),
            "one connection per remote id"
        );
        let cfg = Object::new();
        let servers = self
            .ice_servers
            .clone()
            .unwrap_or_else(|| Array::new().into());
        Reflect::set(&cfg, &"iceServers".into(), &servers)?;
        if let Some(p) = &self.ice_policy {
            Reflect::set(&cfg, &"iceTransportPolicy".into(), &p.into())?;
        }
        let pc = RtcPeerConnection::new_with_configuration(cfg.unchecked_ref())?;
        self.next_key += 1;
        let key = self.next_key;
        let on_ice = cb(weak, move |v| {
            let c = v
                .dyn_into::<RtcPeerConnectionIceEvent>()
                .ok()?
                .candidate()?;
            let cand = (c.candidate(), c.sdp_mid(), c.sdp_m_line_index());
            (!cand.0.is_empty()).then_some(Ev::Rtc(RtcEv::LocalCandidate { key, cand }))
        });
        let pc2 = pc.clone();
        let on_state = cb(weak, move |_| {
            let st = pc2.connection_state();
            matches!(
                st,
                RtcPeerConnectionState::Failed | RtcPeerConnectionState::Closed
            )
            .then(|| {
                Ev::Rtc(RtcEv::Failed {
                    key,
                    why: format!("connection state {st:?}"),
                })
            })
        });
        let on_dc = cb(weak, move |v| {
            Some(Ev::Rtc(RtcEv::Channel {
                key,
                dc: v.dyn_into::<RtcDataChannelEvent>().ok()?.channel(),
            }))
        });
        pc.set_onicecandidate(Some(on_ice.as_ref().unchecked_ref()));
        pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        pc.set_ondatachannel(Some(on_dc.as_ref().unchecked_ref()));
        let on_ice_error = cb(weak, |e| {
            let f = |k: &str| Reflect::get(&e, &k.into()).unwrap_or(JsValue::UNDEFINED);
            Some(Ev::Rtc(RtcEv::IceError(format!(
                "{}: {} {}",
                f("url").as_string().unwrap_or_default(),
                // (as an integer: float formatting would add KBs to the Wasm)
                f("errorCode").as_f64().unwrap_or(0.0) as u32,
                f("errorText").as_string().unwrap_or_default()
            ))))
        });
        Reflect::set(&pc, &"onicecandidateerror".into(), on_ice_error.as_ref())?;
        let conn = Conn {
            remote_id: remote_id.clone(),
            is_seed,
            outgoing,
            answered: false,
            open: false,
            created_at: now,
            opened_at: now,
            route: None,
            reported: false,
            routed: false,
            pending: Vec::new(),
            pc,
            dc: None,
            closures: vec![on_ice, on_state, on_dc, on_ice_error],
        };
        self.conns.insert(key, conn);
        self.by_id.insert(remote_id, key);
        Ok(key)
    }

    /// Opens our data channel and makes the offer (posted as `LocalSdp`).
    pub fn offer(&mut self, key: PeerKey, weak: &Weak<Shared>) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        let dc = c.pc.create_data_channel("shoal");
        attach_channel(c, key, dc, weak);
        let pc = c.pc.clone();
        let weak = weak.clone();
        spawn_local(async move {
            let r: Result<String, JsValue> = async {
                let offer = JsFuture::from(pc.create_offer()).await?;
                let sdp = Reflect::get(&offer, &"sdp".into())?
                    .as_string()
                    .unwrap_or_default();
                let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
                desc.set_sdp(&sdp);
                JsFuture::from(pc.set_local_description(&desc)).await?;
                Ok(sdp)
            }
            .await;
            post(
                &weak,
                Ev::Rtc(match r {
                    Ok(sdp) => RtcEv::LocalSdp {
                        key,
                        offer: true,
                        sdp,
                    },
                    Err(e) => RtcEv::Failed {
                        key,
                        why: format!("cannot make an offer: {}", err_str(e)),
                    },
                }),
            );
        });
    }

    /// Takes the remote's offer and makes the answer (posted as `LocalSdp`).
    pub fn answer(&self, key: PeerKey, sdp: String, weak: &Weak<Shared>) {
        let Some(c) = self.conns.get(&key) else {
            return;
        };
        let pc = c.pc.clone();
        let weak = weak.clone();
        spawn_local(async move {
            let r: Result<String, JsValue> = async {
                let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
                desc.set_sdp(&sdp);
                JsFuture::from(pc.set_remote_description(&desc)).await?;
                let answer = JsFuture::from(pc.create_answer()).await?;
                let sdp = Reflect::get(&answer, &"sdp".into())?
                    .as_string()
                    .unwrap_or_default();
                let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
                desc.set_sdp(&sdp);
                JsFuture::from(pc.set_local_description(&desc)).await?;
                Ok(sdp)
            }
            .await;
            post(
                &weak,
                Ev::Rtc(match r {
                    Ok(sdp) => RtcEv::LocalSdp {
                        key,
                        offer: false,
                        sdp,
                    },
                    Err(e) => RtcEv::Failed {
                        key,
                        why: format!("cannot answer the offer: {}", err_str(e)),
                    },
                }),
            );
        });
    }

    /// The remote answered our offer (a second answer, or one to an offer
    /// we did not make, is ignored).
    pub fn on_answer(&mut self, key: PeerKey, sdp: String, weak: &Weak<Shared>) {
        let Some(c) = self
            .conns
            .get_mut(&key)
            .filter(|c| c.outgoing && !c.answered)
        else {
            return;
        };
        c.answered = true;
        let pc = c.pc.clone();
        let weak = weak.clone();
        spawn_local(async move {
            let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
            desc.set_sdp(&sdp);
            if let Err(e) = JsFuture::from(pc.set_remote_description(&desc)).await {
                post(
                    &weak,
                    Ev::Rtc(RtcEv::Failed {
                        key,
                        why: format!("bad answer: {}", err_str(e)),
                    }),
                );
            }
        });
    }

    pub fn add_candidate(&self, key: PeerKey, (candidate, sdp_mid, sdp_mline_index): Candidate) {
        let Some(c) = self.conns.get(&key) else {
            return;
        };
        let init = RtcIceCandidateInit::new(&candidate);
        init.set_sdp_mid(sdp_mid.as_deref());
        init.set_sdp_m_line_index(sdp_mline_index);
        let pc = c.pc.clone();
        spawn_local(async move {
            // A candidate that does not apply (late, malformed) is harmless.
            let _ =
                JsFuture::from(pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init)))
                    .await;
        });
    }

    /// The remote opened a data channel on an answered connection. Returns
    /// false (and closes it) when the connection already has one.
    pub fn on_channel(&mut self, key: PeerKey, dc: RtcDataChannel, weak: &Weak<Shared>) -> bool {
        match self.conns.get_mut(&key) {
            Some(c) if c.dc.is_none() => {
                attach_channel(c, key, dc, weak);
                true
            }
            _ => {
                dc.close();
                false
            }
        }
    }

    /// The channel opened; returns (remote id, is seed) the first time.
    /// Marks the connection open; its id, whether a seed, and the time it
    /// was created.
    pub fn on_open(&mut self, key: PeerKey, now: f64) -> Option<(String, bool, f64)> {
        let c = self.conns.get_mut(&key).filter(|c| !c.open)?;
        c.open = true;
        c.opened_at = now;
        Some((c.remote_id.clone(), c.is_seed, c.created_at))
    }
}

/// The route of the selected candidate pair in a `getStats()` report: the
/// transport's `selectedCandidatePairId`, then the candidates' types.
fn selected_route(report: &js_sys::Map) -> Option<Route> {
    let field = |o: &JsValue, k: &str| Reflect::get(o, &k.into()).ok().and_then(|v| v.as_string());
    let mut pair_id = None;
    report.for_each(&mut |v, _| {
        if pair_id.is_none() && field(&v, "type").as_deref() == Some("transport") {
            pair_id = field(&v, "selectedCandidatePairId");
        }
    });
    let pair = report.get(&pair_id?.into());
    let kind = |side: &str| {
        let cand = report.get(&field(&pair, side)?.into());
        Route::from_candidate_type(&field(&cand, "candidateType")?)
    };
    Some(Route::of_pair(
        kind("localCandidateId")?,
        kind("remoteCandidateId")?,
    ))
}

/// Attaches our handlers to a data channel (ours or the remote's).
fn attach_channel(c: &mut Conn, key: PeerKey, dc: RtcDataChannel, weak: &Weak<Shared>) {
    dc.set_binary_type(RtcDataChannelType::Arraybuffer);
    let on_open = cb(weak, move |_| Some(Ev::Rtc(RtcEv::Open(key))));
    let on_msg = cb(weak, move |v| {
        let data = v.dyn_into::<MessageEvent>().ok()?.data();
        Some(Ev::Rtc(match data.dyn_into::<ArrayBuffer>() {
            Ok(buf) if buf.byte_length() as usize > wire::MAX_MESSAGE_BYTES => RtcEv::BadFrame(
                key,
                format!(
                    "a message of {} bytes, over the {}-byte limit",
                    buf.byte_length(),
                    wire::MAX_MESSAGE_BYTES
                ),
            ),
            Ok(buf) => RtcEv::Data(key, Uint8Array::new(&buf).to_vec()),
            Err(other) if other.is_string() => {
                RtcEv::BadFrame(key, "a text message on the binary channel".into())
            }
            Err(_) => RtcEv::BadFrame(key, "a message that is not an ArrayBuffer".into()),
        }))
    });
    let on_close = cb(weak, move |_| Some(Ev::Rtc(RtcEv::Closed(key))));
    dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    dc.set_onmessage(Some(on_msg.as_ref().unchecked_ref()));
    dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    c.closures.extend([on_open, on_msg, on_close]);
    let already_open = dc.ready_state() == RtcDataChannelState::Open;
    c.dc = Some(dc);
    if already_open {
        post(weak, Ev::Rtc(RtcEv::Open(key)));
    }
}
