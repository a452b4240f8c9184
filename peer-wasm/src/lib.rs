//! # shoal-peer: the browser viewer
//!
//! A thin driver around [`swarm_proto::Engine`]: it turns browser events
//! (WebSocket frames, data-channel messages, fetch completions, media
//! element events, a 100 ms timer) into engine inputs and carries the
//! engine's outputs out (data-channel sends, HTTP fetches, MSE appends,
//! dropped peers). No protocol decision is made here.
//!
//! Every browser callback only *posts* an [`Ev`] to a queue and pumps it;
//! the queue is drained by whichever callback holds the state, so there is
//! no re-entrant borrow. JS closures are owned beside the object they are
//! attached to and are detached and freed when that peer leaves.
//!
//! The JS face is [`Player`] (`new Player(video, options)`, `start()`,
//! `stats()`, `destroy()`); `js/shoal.js` wraps it as `Shoal.attach()`
//! and the `<shoal-player>` element.

use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use swarm_proto::engine::{Config, Engine, Input, Output, PeerKey};
use swarm_proto::signal::{ClientMsg, PeerInfo, PeerReport, Role, RtcSignal, ServerMsg};
use swarm_proto::wire::{self, Message};
use swarm_proto::{Manifest, SegmentId};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{spawn_local, JsFuture};
use web_sys::{
    HtmlVideoElement, MediaSource, MediaSourceReadyState, MessageEvent, RtcDataChannel, RtcDataChannelEvent,
    RtcDataChannelType, RtcIceCandidateInit, RtcPeerConnection, RtcPeerConnectionIceEvent, RtcSdpType,
    RtcSessionDescriptionInit, SourceBuffer, WebSocket,
};

type Cb = Closure<dyn FnMut(JsValue)>;

/// Above this many bytes queued on a data channel, further sends are
/// dropped (the requester times out and asks elsewhere) rather than
/// letting the browser close the channel.
const MAX_BUFFERED: u32 = 4 << 20;
const TICK_MS: i32 = 100;
const REPORT_EVERY_MS: f64 = 5000.0;

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
}

fn log(msg: &str) {
    web_sys::console::log_1(&JsValue::from_str(&format!("[shoal] {msg}")));
}

fn err_str(e: JsValue) -> String {
    e.as_string()
        .or_else(|| Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string()))
        .unwrap_or_else(|| format!("{e:?}"))
}

/// Records an ICE candidate in `window.__shoalCandidates`, so tests can
/// check that every candidate is loopback.
fn record_candidate(c: &str) {
    let Some(w) = web_sys::window() else { return };
    let key = JsValue::from_str("__shoalCandidates");
    let arr = Reflect::get(&w, &key).ok().and_then(|v| v.dyn_into::<Array>().ok()).unwrap_or_else(|| {
        let a = Array::new();
        let _ = Reflect::set(&w, &key, &a);
        a
    });
    arr.push(&JsValue::from_str(c));
}

fn record_sdp_candidates(sdp: &str) {
    for line in sdp.lines().filter(|l| l.starts_with("a=candidate:")) {
        record_candidate(&line[2..]);
    }
}

#[derive(Clone, Debug)]
struct Options {
    src: String,
    signal: String,
    token: Option<String>,
    /// Test hook: flip a byte in every piece this viewer uploads.
    corrupt_uploads: bool,
    debug: bool,
}

impl Options {
    fn from_js(o: &JsValue) -> Result<Options, JsValue> {
        let get = |k: &str| Reflect::get(o, &JsValue::from_str(k)).ok().filter(|v| !v.is_undefined() && !v.is_null());
        let src = get("src").and_then(|v| v.as_string()).ok_or("Shoal: options.src (the manifest URL) is required")?;
        let signal = match get("signal").and_then(|v| v.as_string()) {
            Some(s) => s,
            None => {
                let loc = web_sys::window().ok_or("no window")?.location();
                let proto = if loc.protocol()? == "https:" { "wss" } else { "ws" };
                format!("{proto}://{}/ws", loc.host()?)
            }
        };
        Ok(Options {
            src,
            signal,
            token: get("token").and_then(|v| v.as_string()),
            corrupt_uploads: get("corruptUploads").and_then(|v| v.as_bool()).unwrap_or(false),
            debug: get("debug").and_then(|v| v.as_bool()).unwrap_or(false),
        })
    }
}

enum Ev {
    Tick,
    WsOpen,
    WsText(String),
    WsClosed,
    LocalIce { key: PeerKey, cand: Option<(String, Option<String>, Option<u16>)> },
    LocalSdp { key: PeerKey, offer: bool, sdp: String },
    RtcFailed { key: PeerKey, why: String },
    DataChannel { key: PeerKey, dc: RtcDataChannel },
    DcOpen(PeerKey),
    DcMsg(PeerKey, Vec<u8>),
    DcClosed(PeerKey),
    Http { seg: SegmentId, result: Result<Vec<u8>, String> },
    UpdateEnd,
    Playing,
    Waiting,
    Seeking,
}

struct Conn {
    remote_id: String,
    is_seed: bool,
    pc: RtcPeerConnection,
    dc: Option<RtcDataChannel>,
    open: bool,
    closures: Vec<Cb>,
}

impl Conn {
    /// Detaches every handler and closes; the closures go to `graveyard`
    /// (freed on the next tick, never while one of them may be running).
    fn close(mut self, graveyard: &mut Vec<Cb>) {
        if let Some(dc) = &self.dc {
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

struct Shared {
    events: RefCell<VecDeque<Ev>>,
    inner: RefCell<Option<Inner>>,
}

fn post(weak: &Weak<Shared>, ev: Ev) {
    if let Some(rc) = weak.upgrade() {
        rc.events.borrow_mut().push_back(ev);
        pump(&rc);
    }
}

fn pump(rc: &Rc<Shared>) {
    let Ok(mut guard) = rc.inner.try_borrow_mut() else { return };
    let Some(inner) = guard.as_mut() else {
        rc.events.borrow_mut().clear();
        return;
    };
    loop {
        let ev = rc.events.borrow_mut().pop_front();
        match ev {
            Some(ev) => inner.on_event(ev, &Rc::downgrade(rc)),
            None => break,
        }
    }
}

fn cb(weak: &Weak<Shared>, f: impl Fn(JsValue) -> Option<Ev> + 'static) -> Cb {
    let weak = weak.clone();
    Closure::wrap(Box::new(move |v: JsValue| {
        if let Some(ev) = f(v) {
            post(&weak, ev);
        }
    }) as Box<dyn FnMut(JsValue)>)
}

struct Inner {
    opts: Options,
    manifest: Arc<Manifest>,
    engine: Engine,
    t0: f64,
    video: HtmlVideoElement,
    media_source: MediaSource,
    sb: SourceBuffer,
    object_url: String,
    append_q: VecDeque<Arc<[u8]>>,
    ws: Option<WebSocket>,
    ws_closures: Vec<Cb>,
    my_id: Option<String>,
    peers: HashMap<PeerKey, Conn>,
    by_id: HashMap<String, PeerKey>,
    next_key: PeerKey,
    banned: HashSet<String>,
    graveyard: Vec<Cb>,
    media_closures: Vec<Cb>,
    timer: Option<(i32, Cb)>,
    startup_ms: Option<f64>,
    stalls: u32,
    stalled_ms: f64,
    stall_since: Option<f64>,
    init_bytes: u64,
    appended_last: bool,
    last_report: f64,
    fatal: Option<String>,
}

/// A Shoal viewer bound to one `<video>` element.
#[wasm_bindgen]
pub struct Player {
    shared: Rc<Shared>,
    video: HtmlVideoElement,
    opts: Options,
}

#[wasm_bindgen]
impl Player {
    /// `options`: `{ src: manifest URL, signal?: "ws://host/ws", token?: string }`.
    #[wasm_bindgen(constructor)]
    pub fn new(video: HtmlVideoElement, options: JsValue) -> Result<Player, JsValue> {
        let opts = Options::from_js(&options)?;
        Ok(Player { shared: Rc::new(Shared { events: Default::default(), inner: RefCell::new(None) }), video, opts })
    }

    /// Fetches the manifest and init segment, opens MediaSource and joins the
    /// swarm. Resolves once playback can begin to fill.
    pub async fn start(&self) -> Result<(), JsValue> {
        let t0 = now_ms();
        let opts = self.opts.clone();
        let text = fetch_text(&opts.src).await.map_err(|e| format!("Shoal: cannot load manifest {}: {e}", opts.src))?;
        let manifest = Arc::new(Manifest::from_json(&text).map_err(|e| format!("Shoal: bad manifest {}: {e}", opts.src))?);
        if !MediaSource::is_type_supported(&manifest.mime) {
            return Err(format!("Shoal: this browser cannot play {}", manifest.mime).into());
        }
        let media_source = MediaSource::new()?;
        let object_url = web_sys::Url::create_object_url_with_source(&media_source)?;
        let opened = Promise::new(&mut |resolve, _| {
            media_source.set_onsourceopen(Some(&resolve));
        });
        self.video.set_src(&object_url);
        JsFuture::from(opened).await?;
        media_source.set_onsourceopen(None);
        media_source.set_duration(manifest.duration_ms() as f64 / 1000.0);
        let sb = media_source.add_source_buffer(&manifest.mime)?;
        let init_url = resolve_url(&manifest.init.uri, &opts.src)?;
        let init = fetch_bytes(&init_url).await.map_err(|e| format!("Shoal: cannot load init segment {init_url}: {e}"))?;
        swarm_proto::manifest::verify_segment(&manifest.init, &init).map_err(|e| format!("Shoal: init segment {init_url}: {e}"))?;
        let init_bytes = init.len() as u64;
        let weak = Rc::downgrade(&self.shared);
        let mut append_q = VecDeque::new();
        append_q.push_back(Arc::from(init));
        let cfg = Config::default();
        let engine = Engine::new(manifest.clone(), cfg);
        let mut inner = Inner {
            opts: opts.clone(),
            manifest,
            engine,
            t0,
            video: self.video.clone(),
            media_source,
            sb,
            object_url,
            append_q,
            ws: None,
            ws_closures: Vec::new(),
            my_id: None,
            peers: HashMap::new(),
            by_id: HashMap::new(),
            next_key: 1,
            banned: HashSet::new(),
            graveyard: Vec::new(),
            media_closures: Vec::new(),
            timer: None,
            startup_ms: None,
            stalls: 0,
            stalled_ms: 0.0,
            stall_since: None,
            init_bytes,
            appended_last: false,
            last_report: now_ms(),
            fatal: None,
        };
        inner.attach_media(&weak);
        inner.open_ws(&weak)?;
        let tick = cb(&weak, |_| Some(Ev::Tick));
        let id = web_sys::window()
            .ok_or("no window")?
            .set_interval_with_callback_and_timeout_and_arguments_0(tick.as_ref().unchecked_ref(), TICK_MS)?;
        inner.timer = Some((id, tick));
        *self.shared.inner.borrow_mut() = Some(inner);
        post(&weak, Ev::Tick);
        Ok(())
    }

    /// Playback and transfer statistics (see `shoal.d.ts`).
    pub fn stats(&self) -> JsValue {
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &k.into(), &v);
        };
        let guard = self.shared.inner.borrow();
        let Some(i) = guard.as_ref() else { return o.into() };
        let s = i.engine.stats();
        set("bytesFromPeers", (s.bytes_from_peers as f64).into());
        set("bytesFromSeed", (s.bytes_from_seed as f64).into());
        set("bytesFromHttp", ((s.bytes_from_http + i.init_bytes) as f64).into());
        set("bytesUploaded", (s.bytes_uploaded as f64).into());
        set("peers", i.peers.values().filter(|c| c.open).count().into());
        set("startupMs", i.startup_ms.map(JsValue::from).unwrap_or(JsValue::NULL));
        let stalled = i.stalled_ms + i.stall_since.map(|t| now_ms() - t).unwrap_or(0.0);
        set("stalls", i.stalls.into());
        set("stalledMs", stalled.into());
        set("segmentsVerified", (s.segments_verified as f64).into());
        set("segmentsAppended", (s.segments_appended as f64).into());
        set("verifyFailures", (s.verify_failures as f64).into());
        set("peersDropped", (s.peers_dropped as f64).into());
        set("segments", i.manifest.segment_count().into());
        set("currentTime", i.video.current_time().into());
        set("peerId", i.my_id.clone().map(JsValue::from).unwrap_or(JsValue::NULL));
        set("error", i.fatal.clone().map(JsValue::from).unwrap_or(JsValue::NULL));
        o.into()
    }

    /// Leaves the swarm, closes every connection and frees every callback.
    pub fn destroy(&self) {
        if let Some(mut inner) = self.shared.inner.borrow_mut().take() {
            inner.shutdown();
        }
    }
}

impl Inner {
    fn attach_media(&mut self, weak: &Weak<Shared>) {
        let sb_end = cb(weak, |_| Some(Ev::UpdateEnd));
        self.sb.set_onupdateend(Some(sb_end.as_ref().unchecked_ref()));
        let playing = cb(weak, |_| Some(Ev::Playing));
        let waiting = cb(weak, |_| Some(Ev::Waiting));
        let seeking = cb(weak, |_| Some(Ev::Seeking));
        self.video.set_onplaying(Some(playing.as_ref().unchecked_ref()));
        self.video.set_onwaiting(Some(waiting.as_ref().unchecked_ref()));
        self.video.set_onseeking(Some(seeking.as_ref().unchecked_ref()));
        self.media_closures.extend([sb_end, playing, waiting, seeking]);
    }

    fn open_ws(&mut self, weak: &Weak<Shared>) -> Result<(), JsValue> {
        let ws = WebSocket::new(&self.opts.signal)?;
        let on_open = cb(weak, |_| Some(Ev::WsOpen));
        let on_msg = cb(weak, |v| v.dyn_into::<MessageEvent>().ok()?.data().as_string().map(Ev::WsText));
        let on_close = cb(weak, |_| Some(Ev::WsClosed));
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_msg.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.ws_closures = vec![on_open, on_msg, on_close];
        self.ws = Some(ws);
        Ok(())
    }

    fn signal(&self, msg: &ClientMsg) {
        if let Some(ws) = &self.ws {
            if ws.ready_state() == WebSocket::OPEN {
                let _ = ws.send_with_str(&msg.encode());
            }
        }
    }

    fn position_ms(&self) -> u64 {
        (self.video.current_time() * 1000.0).max(0.0) as u64
    }

    fn on_event(&mut self, ev: Ev, weak: &Weak<Shared>) {
        let now = (now_ms() - self.t0).max(0.0) as u64;
        match ev {
            Ev::Tick => {
                self.graveyard.clear();
                let pos = self.position_ms();
                self.engine.handle_input(now, Input::Playhead { position_ms: pos });
                if now_ms() - self.last_report > REPORT_EVERY_MS {
                    self.last_report = now_ms();
                    self.report();
                }
            }
            Ev::WsOpen => {
                self.signal(&ClientMsg::Hello { role: Role::Viewer, token: self.opts.token.clone(), seed: None });
            }
            Ev::WsText(text) => self.on_signal(&text, weak),
            Ev::WsClosed => {
                log("signal connection closed; playing on with the peers and HTTP we have");
                self.ws = None;
            }
            Ev::LocalIce { key, cand } => {
                let Some(c) = self.peers.get(&key) else { return };
                if let Some((candidate, sdp_mid, sdp_mline_index)) = cand {
                    record_candidate(&candidate);
                    let to = c.remote_id.clone();
                    let swarm = self.manifest.content_id.clone();
                    self.signal(&ClientMsg::Relay { swarm, to, signal: RtcSignal::Candidate { candidate, sdp_mid, sdp_mline_index } });
                }
            }
            Ev::LocalSdp { key, offer, sdp } => {
                let Some(c) = self.peers.get(&key) else { return };
                let to = c.remote_id.clone();
                let swarm = self.manifest.content_id.clone();
                let signal = if offer { RtcSignal::Offer { sdp } } else { RtcSignal::Answer { sdp } };
                self.signal(&ClientMsg::Relay { swarm, to, signal });
            }
            Ev::RtcFailed { key, why } => {
                if self.opts.debug {
                    log(&format!("peer connection {key} failed: {why}"));
                }
                self.close_peer(key);
            }
            Ev::DataChannel { key, dc } => {
                if let Some(c) = self.peers.get_mut(&key) {
                    wire_channel(c, key, dc, weak);
                }
            }
            Ev::DcOpen(key) => {
                let Some(c) = self.peers.get_mut(&key) else { return };
                c.open = true;
                let is_seed = c.is_seed;
                self.engine.handle_input(now, Input::PeerConnected { peer: key, is_seed });
            }
            Ev::DcMsg(key, data) => {
                if self.peers.contains_key(&key) {
                    self.engine.handle_input(now, Input::PeerData { peer: key, data: &data });
                }
            }
            Ev::DcClosed(key) => {
                self.engine.handle_input(now, Input::PeerClosed { peer: key });
                self.close_peer(key);
            }
            Ev::Http { seg, result } => match result {
                Ok(data) => self.engine.handle_input(now, Input::HttpSegment { seg, data }),
                Err(e) => {
                    log(&format!("HTTP fetch of {seg} failed: {e}; retrying"));
                    self.engine.handle_input(now, Input::HttpFailed { seg });
                }
            },
            Ev::UpdateEnd => {}
            Ev::Playing => {
                if self.startup_ms.is_none() {
                    self.startup_ms = Some(now_ms() - self.t0);
                }
                if let Some(t) = self.stall_since.take() {
                    self.stalled_ms += now_ms() - t;
                }
            }
            Ev::Waiting => {
                if self.startup_ms.is_some() && self.stall_since.is_none() && !self.video.ended() {
                    self.stalls += 1;
                    self.stall_since = Some(now_ms());
                }
            }
            Ev::Seeking => {
                let pos = self.position_ms();
                self.engine.handle_input(now, Input::Seek { position_ms: pos });
            }
        }
        self.drain_outputs(weak);
        self.pump_media();
    }

    fn on_signal(&mut self, text: &str, weak: &Weak<Shared>) {
        let msg = match ServerMsg::decode(text) {
            Ok(m) => m,
            Err(e) => return log(&format!("ignoring a bad message from the signal server: {e}")),
        };
        match msg {
            ServerMsg::Welcome { peer_id, .. } => {
                self.my_id = Some(peer_id);
                self.signal(&ClientMsg::Join { swarm: self.manifest.content_id.clone() });
            }
            ServerMsg::Joined { peers, .. } | ServerMsg::Peers { peers, .. } => {
                for p in peers {
                    self.connect_to(p, weak);
                }
            }
            ServerMsg::Relay { from, signal, .. } => self.on_relay(from, signal, weak),
            ServerMsg::PeerLeft { peer_id, .. } => {
                if let Some(&key) = self.by_id.get(&peer_id) {
                    let now = (now_ms() - self.t0) as u64;
                    self.engine.handle_input(now, Input::PeerClosed { peer: key });
                    self.close_peer(key);
                }
            }
            ServerMsg::HeartbeatAck => {}
            ServerMsg::Error { code, message } => log(&format!("signal server error {code:?}: {message}")),
        }
    }

    fn new_conn(&mut self, remote_id: String, is_seed: bool, weak: &Weak<Shared>) -> Result<PeerKey, JsValue> {
        let cfg = Object::new();
        Reflect::set(&cfg, &"iceServers".into(), &Array::new())?;
        let pc = RtcPeerConnection::new_with_configuration(cfg.unchecked_ref())?;
        let key = self.next_key;
        self.next_key += 1;
        let on_ice = cb(weak, move |v| {
            let ev: RtcPeerConnectionIceEvent = v.dyn_into().ok()?;
            let cand = ev.candidate().filter(|c| !c.candidate().is_empty()).map(|c| (c.candidate(), c.sdp_mid(), c.sdp_m_line_index()));
            Some(Ev::LocalIce { key, cand })
        });
        let pc2 = pc.clone();
        let on_state = cb(weak, move |_| {
            let st = pc2.connection_state();
            matches!(st, web_sys::RtcPeerConnectionState::Failed | web_sys::RtcPeerConnectionState::Closed)
                .then(|| Ev::RtcFailed { key, why: format!("connection state {st:?}") })
        });
        let on_dc = cb(weak, move |v| {
            let ev: RtcDataChannelEvent = v.dyn_into().ok()?;
            Some(Ev::DataChannel { key, dc: ev.channel() })
        });
        pc.set_onicecandidate(Some(on_ice.as_ref().unchecked_ref()));
        pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        pc.set_ondatachannel(Some(on_dc.as_ref().unchecked_ref()));
        self.peers.insert(key, Conn { remote_id: remote_id.clone(), is_seed, pc, dc: None, open: false, closures: vec![on_ice, on_state, on_dc] });
        self.by_id.insert(remote_id, key);
        Ok(key)
    }

    fn connect_to(&mut self, p: PeerInfo, weak: &Weak<Shared>) {
        if self.by_id.contains_key(&p.peer_id) || self.banned.contains(&p.peer_id) || Some(&p.peer_id) == self.my_id.as_ref() {
            return;
        }
        let key = match self.new_conn(p.peer_id, p.is_seed, weak) {
            Ok(k) => k,
            Err(e) => return log(&format!("cannot create a peer connection: {}", err_str(e))),
        };
        let c = self.peers.get_mut(&key).unwrap();
        let dc = c.pc.create_data_channel("shoal");
        wire_channel(c, key, dc, weak);
        let pc = c.pc.clone();
        let weak = weak.clone();
        spawn_local(async move {
            let r: Result<String, JsValue> = async {
                let offer = JsFuture::from(pc.create_offer()).await?;
                let sdp = Reflect::get(&offer, &"sdp".into())?.as_string().unwrap_or_default();
                let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
                desc.set_sdp(&sdp);
                JsFuture::from(pc.set_local_description(&desc)).await?;
                Ok(sdp)
            }
            .await;
            post(&weak, match r {
                Ok(sdp) => Ev::LocalSdp { key, offer: true, sdp },
                Err(e) => Ev::RtcFailed { key, why: err_str(e) },
            });
        });
    }

    fn on_relay(&mut self, from: String, signal: RtcSignal, weak: &Weak<Shared>) {
        if self.banned.contains(&from) {
            return;
        }
        match signal {
            RtcSignal::Offer { sdp } => {
                if let Some(&old) = self.by_id.get(&from) {
                    self.close_peer(old);
                }
                record_sdp_candidates(&sdp);
                let key = match self.new_conn(from, false, weak) {
                    Ok(k) => k,
                    Err(e) => return log(&format!("cannot create a peer connection: {}", err_str(e))),
                };
                let pc = self.peers[&key].pc.clone();
                let weak = weak.clone();
                spawn_local(async move {
                    let r: Result<String, JsValue> = async {
                        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Offer);
                        desc.set_sdp(&sdp);
                        JsFuture::from(pc.set_remote_description(&desc)).await?;
                        let answer = JsFuture::from(pc.create_answer()).await?;
                        let sdp = Reflect::get(&answer, &"sdp".into())?.as_string().unwrap_or_default();
                        let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
                        desc.set_sdp(&sdp);
                        JsFuture::from(pc.set_local_description(&desc)).await?;
                        Ok(sdp)
                    }
                    .await;
                    post(&weak, match r {
                        Ok(sdp) => Ev::LocalSdp { key, offer: false, sdp },
                        Err(e) => Ev::RtcFailed { key, why: err_str(e) },
                    });
                });
            }
            RtcSignal::Answer { sdp } => {
                let Some(&key) = self.by_id.get(&from) else { return };
                record_sdp_candidates(&sdp);
                let pc = self.peers[&key].pc.clone();
                let weak = weak.clone();
                spawn_local(async move {
                    let desc = RtcSessionDescriptionInit::new(RtcSdpType::Answer);
                    desc.set_sdp(&sdp);
                    if let Err(e) = JsFuture::from(pc.set_remote_description(&desc)).await {
                        post(&weak, Ev::RtcFailed { key, why: err_str(e) });
                    }
                });
            }
            RtcSignal::Candidate { candidate, sdp_mid, sdp_mline_index } => {
                let Some(&key) = self.by_id.get(&from) else { return };
                record_candidate(&candidate);
                let init = RtcIceCandidateInit::new(&candidate);
                init.set_sdp_mid(sdp_mid.as_deref());
                init.set_sdp_m_line_index(sdp_mline_index);
                let pc = self.peers[&key].pc.clone();
                spawn_local(async move {
                    let _ = JsFuture::from(pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init))).await;
                });
            }
        }
    }

    fn close_peer(&mut self, key: PeerKey) {
        if let Some(c) = self.peers.remove(&key) {
            self.by_id.remove(&c.remote_id);
            c.close(&mut self.graveyard);
        }
    }

    fn drain_outputs(&mut self, weak: &Weak<Shared>) {
        while let Some(out) = self.engine.poll_output() {
            match out {
                Output::Send { peer, mut data } => {
                    let Some(dc) = self.peers.get(&peer).filter(|c| c.open).and_then(|c| c.dc.as_ref()) else { continue };
                    if dc.buffered_amount() > MAX_BUFFERED {
                        continue;
                    }
                    if self.opts.corrupt_uploads {
                        if let Ok(Message::Piece { .. }) = wire::decode(&data) {
                            let last = data.len() - 1;
                            data[last] ^= 0x55;
                        }
                    }
                    if dc.send_with_array_buffer_view(&Uint8Array::from(&data[..])).is_err() {
                        let now = (now_ms() - self.t0) as u64;
                        self.engine.handle_input(now, Input::PeerClosed { peer });
                        self.close_peer(peer);
                    }
                }
                Output::HttpFetch { seg } => {
                    let url = resolve_url(&self.manifest.entry(seg).uri, &self.opts.src);
                    let weak = weak.clone();
                    spawn_local(async move {
                        let result = match url {
                            Ok(u) => fetch_bytes(&u).await,
                            Err(e) => Err(err_str(e)),
                        };
                        post(&weak, Ev::Http { seg, result });
                    });
                }
                Output::Append { seg, data } => {
                    if seg.get() + 1 == self.manifest.segment_count() {
                        self.appended_last = true;
                    }
                    self.append_q.push_back(data);
                }
                Output::DropPeer { peer, reason } => {
                    if let Some(c) = self.peers.get(&peer) {
                        log(&format!("dropping peer {}: {reason}", c.remote_id));
                        self.banned.insert(c.remote_id.clone());
                    }
                    self.close_peer(peer);
                }
            }
        }
    }

    fn pump_media(&mut self) {
        if self.sb.updating() {
            return;
        }
        if let Some(data) = self.append_q.pop_front() {
            if let Err(e) = self.sb.append_buffer_with_array_buffer_view(&Uint8Array::from(&data[..])) {
                let msg = format!("MSE append failed: {}", err_str(e));
                log(&msg);
                self.fatal = Some(msg);
            }
            return;
        }
        if self.video.paused() && self.startup_ms.is_none() && self.engine.stats().segments_appended > 0 {
            let _ = self.video.play();
        }
        if self.appended_last && self.media_source.ready_state() == MediaSourceReadyState::Open {
            let _ = self.media_source.end_of_stream();
        }
    }

    fn report(&self) {
        let s = self.engine.stats();
        let report = PeerReport {
            bytes_from_peers: s.bytes_from_peers,
            bytes_from_http: s.bytes_from_http + s.bytes_from_seed + self.init_bytes,
            bytes_uploaded: s.bytes_uploaded,
            peers: self.peers.values().filter(|c| c.open).count() as u32,
            startup_ms: self.startup_ms.map(|v| v as u64),
            stalls: self.stalls,
            stalled_ms: self.stalled_ms as u64,
        };
        self.signal(&ClientMsg::Report { swarm: self.manifest.content_id.clone(), report });
    }

    fn shutdown(&mut self) {
        if let Some((id, _)) = &self.timer {
            if let Some(w) = web_sys::window() {
                w.clear_interval_with_handle(*id);
            }
        }
        for (_, c) in std::mem::take(&mut self.peers) {
            if let (Some(dc), true) = (&c.dc, c.open) {
                let _ = dc.send_with_array_buffer_view(&Uint8Array::from(&wire::encode(&Message::Bye)[..]));
            }
            c.close(&mut self.graveyard);
        }
        self.signal(&ClientMsg::Leave { swarm: self.manifest.content_id.clone() });
        if let Some(ws) = self.ws.take() {
            ws.set_onopen(None);
            ws.set_onmessage(None);
            ws.set_onclose(None);
            let _ = ws.close();
        }
        self.sb.set_onupdateend(None);
        self.video.set_onplaying(None);
        self.video.set_onwaiting(None);
        self.video.set_onseeking(None);
        let _ = web_sys::Url::revoke_object_url(&self.object_url);
    }
}

/// Attaches handlers to a data channel (ours or the remote's).
fn wire_channel(c: &mut Conn, key: PeerKey, dc: RtcDataChannel, weak: &Weak<Shared>) {
    dc.set_binary_type(RtcDataChannelType::Arraybuffer);
    let on_open = cb(weak, move |_| Some(Ev::DcOpen(key)));
    let on_msg = cb(weak, move |v| {
        let ev: MessageEvent = v.dyn_into().ok()?;
        Some(Ev::DcMsg(key, Uint8Array::new(&ev.data()).to_vec()))
    });
    let on_close = cb(weak, move |_| Some(Ev::DcClosed(key)));
    dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    dc.set_onmessage(Some(on_msg.as_ref().unchecked_ref()));
    dc.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    c.closures.extend([on_open, on_msg, on_close]);
    let already_open = dc.ready_state() == web_sys::RtcDataChannelState::Open;
    c.dc = Some(dc);
    if already_open {
        post(weak, Ev::DcOpen(key));
    }
}

fn resolve_url(uri: &str, base: &str) -> Result<String, JsValue> {
    Ok(web_sys::Url::new_with_base(uri, base)?.href())
}

async fn fetch_response(url: &str) -> Result<web_sys::Response, String> {
    let w = web_sys::window().ok_or("no window")?;
    let resp: web_sys::Response = JsFuture::from(w.fetch_with_str(url)).await.map_err(err_str)?.unchecked_into();
    if !resp.ok() {
        return Err(format!("HTTP {} for {url}", resp.status()));
    }
    Ok(resp)
}

async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let resp = fetch_response(url).await?;
    let buf = JsFuture::from(resp.array_buffer().map_err(err_str)?).await.map_err(err_str)?;
    Ok(Uint8Array::new(&buf).to_vec())
}

async fn fetch_text(url: &str) -> Result<String, String> {
    let resp = fetch_response(url).await?;
    let t = JsFuture::from(resp.text().map_err(err_str)?).await.map_err(err_str)?;
    t.as_string().ok_or_else(|| "response is not text".into())
}

