//! The running player: browser events in as engine inputs, engine outputs
//! out as browser calls.
//!
//! Every peer leaves through [`Driver::disconnect`], which closes its
//! connection and always tells the engine `PeerClosed`: a failed
//! connection, an offer that replaces it, a closed channel, a failed send,
//! a handshake timeout, the engine's own `DropPeer`/`ClosePeer`.
//!
//! Bounds: at most `Config::max_peers` RTCPeerConnections (pending and
//! open); at the cap, offers are ignored and no connection is made. A
//! connection that has not opened its channel within 10 s is closed.

use crate::fetch::{HttpEv, Origins};
use crate::lifecycle::{Cb, Ev, Shared, Timer};
use crate::media::{Media, MediaEv};
use crate::metrics::{ConnLog, Snapshot};
use crate::player::Options;
use crate::rtc::{ice_servers_js, Peers, RtcEv};
use crate::signaling::Signaling;
use crate::{log, now_ms};
use std::collections::VecDeque;
use std::rc::Weak;
use swarm_proto::engine::{Input, MediaEvent, Output, PeerKey};
use swarm_proto::signal::{ClientMsg, PeerInfo, Route, RtcSignal, ServerMsg};
use swarm_proto::AnyEngine;
use web_sys::AbortSignal;

const TICK_MS: i32 = 100;
const REPORT_EVERY_MS: f64 = 5000.0;
/// With fewer open peers than this, ask the signal server for more...
const WANT_PEERS: usize = 4;
/// ...at most this often.
const GET_PEERS_EVERY_MS: f64 = 5000.0;
/// Ids of dropped (misbehaving) peers kept for stats().
const DROPPED_KEPT: usize = 64;

pub(crate) struct Driver {
    opts: Options,
    engine: AnyEngine,
    /// Live: the channel's public key (from its manifest; checked against
    /// the one the signal server gives when we join).
    live_key: Option<[u8; 32]>,
    /// `performance.now()` when playback was asked for (`options.startedAt`,
    /// else the call to start()): the engine's time 0.
    t0: f64,
    media: Media,
    signal: Signaling,
    /// Joined the swarm on the current signal connection.
    joined: bool,
    /// Joined on an earlier signal connection (so this join is a rejoin).
    joined_before: bool,
    /// When to ask again after a join refused for a passing reason.
    rejoin_at: Option<f64>,
    peers: Peers,
    origins: Origins,
    fetch_signal: AbortSignal,
    graveyard: Vec<Cb>,
    timer: Option<Timer>,
    fatal: Option<String>,
    /// The most recent peers dropped for misbehaving (newest last).
    dropped: VecDeque<String>,
    conns: ConnLog,
    last_route_poll: f64,
    last_report: f64,
    last_get_peers: f64,
    /// Live: the channel was reported interrupted when this many segments
    /// had been appended; the notice goes once one more is.
    interrupted_at: Option<u64>,
}

/// Messages kept from a peer while its route is asked (a getStats away).
const MAX_PENDING_BEFORE_ROUTE: usize = 64;
/// How often open connections' candidate pairs are looked at again.
const ROUTE_POLL_MS: f64 = 2000.0;
/// A connection's route is reported this long after it opened.
const ROUTE_SETTLE_MS: f64 = 2000.0;

/// Delay before joining again after a refusal that may pass.
const REJOIN_AFTER_MS: f64 = 3000.0;

impl Driver {
    pub fn new(
        opts: Options,
        mut engine: AnyEngine,
        live_key: Option<[u8; 32]>,
        media: Media,
        origins: Origins,
        fetch_signal: AbortSignal,
        t0: f64,
    ) -> Driver {
        let signal = Signaling::new(opts.signal.clone(), opts.token.clone());
        let mut peers = Peers::default();
        peers.set_ice(opts.ice_servers.clone(), opts.ice_policy.clone());
        // t0 is when playback was asked for: startup counts from there.
        engine.count_startup_from(0);
        Driver {
            opts,
            engine,
            live_key,
            t0,
            media,
            signal,
            joined: false,
            joined_before: false,
            rejoin_at: None,
            peers,
            origins,
            fetch_signal,
            graveyard: Vec::new(),
            timer: None,
            fatal: None,
            dropped: VecDeque::new(),
            conns: ConnLog::default(),
            last_route_poll: 0.0,
            last_report: now_ms(),
            last_get_peers: f64::NEG_INFINITY,
            interrupted_at: None,
        }
    }

    pub fn fatal(&self) -> Option<&str> {
        self.fatal.as_deref()
    }

    fn now(&self) -> u64 {
        (now_ms() - self.t0).max(0.0) as u64
    }

    fn input(&mut self, input: Input<'_>) {
        let now = self.now();
        self.engine.handle_input(now, input);
    }

    fn content_id(&self) -> String {
        self.engine.swarm().to_owned()
    }

    fn debug(&self, msg: impl FnOnce() -> String) {
        if self.opts.debug {
            log(&msg());
        }
    }

    pub fn on_event(&mut self, ev: Ev, weak: &Weak<Shared>) {
        match ev {
            Ev::Start => self.begin(weak),
            Ev::Tick => self.tick(weak),
            Ev::Ws(ev) => {
                if let Some(msg) = self.signal.on_event(ev, now_ms(), &mut self.graveyard) {
                    self.on_server(msg, weak);
                }
                if !self.signal.is_ready() {
                    self.joined = false;
                }
            }
            Ev::Rtc(ev) => self.on_rtc(ev, weak),
            Ev::Http(ev) => self.on_http(ev),
            Ev::Media(ev) => self.on_media(ev),
            #[cfg(feature = "live")]
            Ev::Signature { id, result } => match result {
                Ok(ok) => self.input(Input::SignatureChecked { id, ok }),
                Err(e) => self.fail(format!("Shoal: {e}")),
            },
            #[cfg(feature = "live")]
            Ev::LiveRecent(metas, interrupted) => {
                self.input(Input::LiveRecent { metas: &metas });
                if let Some(reason) = interrupted {
                    self.interrupted_at = Some(self.engine.stats().segments_appended);
                    let text = format!("Shoal: the live channel is interrupted ({reason}); playback resumes when it comes back");
                    crate::media::show_status(self.media.video(), &text);
                }
            }
        }
        self.drain(weak);
        if let Err(e) = self.media.pump() {
            log(&e);
            self.fatal.get_or_insert(e);
        }
    }

    /// The first event: the tick timer, the signal connection, and the
    /// engine's first input (startup still counts from t0, see
    /// [`Driver::new`]).
    fn begin(&mut self, weak: &Weak<Shared>) {
        match Timer::every(TICK_MS, weak) {
            Ok(t) => self.timer = Some(t),
            Err(e) => {
                self.fatal = Some(format!(
                    "cannot start the player's timer: {}",
                    crate::err_str(e)
                ));
                return;
            }
        }
        self.signal.connect(now_ms(), weak, &mut self.graveyard);
        // At the real time (loading the player took a while since t0): the
        // engine's waits for the swarm count from here.
        self.input(Input::Timeout);
    }

    fn tick(&mut self, weak: &Weak<Shared>) {
        // No callback of ours is running here, so detached ones can go.
        self.graveyard.clear();
        let t = now_ms();
        self.signal.tick(t, weak, &mut self.graveyard);
        if !self.signal.is_ready() {
            self.joined = false;
        }
        for key in self.peers.handshake_expired(t) {
            self.disconnect(key, "its data channel did not open within 10 s");
        }
        for (peer, bytes) in self.peers.buffered() {
            self.input(Input::PeerBuffered { peer, bytes });
        }
        if t - self.last_route_poll >= ROUTE_POLL_MS {
            // The selected pair can change while connected (relay -> direct).
            self.last_route_poll = t;
            for key in self.peers.keys() {
                if self.peers.get(key).is_some_and(|c| c.open) {
                    self.peers.query_route(key, weak);
                }
            }
        }
        if let Some(n) = self.interrupted_at {
            if self.engine.stats().segments_appended > n {
                self.interrupted_at = None;
                crate::media::clear_status(self.media.video());
            }
        }
        let position_ms = self.media.position_ms();
        // The server's clock, the one the ingest stamps capture times with
        // (on one machine, or NTP-synced hosts, the offset is ~0).
        let unix_ms = (js_sys::Date::now() + self.signal.clock_offset_ms).max(0.0) as u64;
        self.input(Input::Clock { unix_ms });
        self.input(Input::Playhead { position_ms });
        if self
            .engine
            .poll_timeout()
            .is_some_and(|at| at <= self.now())
        {
            self.input(Input::Timeout);
        }
        if !self.joined && self.signal.is_ready() && self.rejoin_at.is_some_and(|at| t >= at) {
            self.rejoin_at = None;
            let swarm = self.content_id();
            self.signal.send(&ClientMsg::Join { swarm });
        }
        if self.joined
            && self.peers.open_count() < WANT_PEERS
            && t - self.last_get_peers >= GET_PEERS_EVERY_MS
        {
            self.last_get_peers = t;
            let swarm = self.content_id();
            self.signal.send(&ClientMsg::GetPeers { swarm });
        }
        if t - self.last_report >= REPORT_EVERY_MS {
            self.last_report = t;
            let (swarm, report) = (self.content_id(), self.engine.stats().report());
            self.signal.send(&ClientMsg::Report { swarm, report });
        }
    }

    fn on_server(&mut self, msg: ServerMsg, weak: &Weak<Shared>) {
        let cid = self.content_id();
        let t = now_ms();
        match msg {
            ServerMsg::Welcome { ice_servers, .. } => {
                // The page's own iceServers win over the server's.
                if self.opts.ice_servers.is_none() && !ice_servers.is_empty() {
                    self.peers.set_ice(Some(ice_servers_js(&ice_servers)), None);
                }
                self.rejoin_at = None;
                self.signal.send(&ClientMsg::Join { swarm: cid });
            }
            ServerMsg::Joined {
                swarm,
                peers,
                seeds,
                manifest,
            } if swarm == cid => {
                if let Some(key) = self.live_key {
                    let theirs = seeds
                        .iter()
                        .flat_map(|s| &s.live)
                        .find(|l| l.channel == cid);
                    if theirs.is_some_and(|l| !l.public_key.eq_ignore_ascii_case(&hex::encode(key)))
                    {
                        return self.fail(format!(
                            "Shoal: the live channel {cid}'s key in its manifest differs from the one its seed registered with the signal server: refusing to play what cannot be trusted"
                        ));
                    }
                }
                let rejoin = std::mem::replace(&mut self.joined_before, true);
                self.joined = true;
                self.last_get_peers = t;
                self.origins.set_seeds(&seeds);
                // The engine waits (bounded) for these before the origin.
                let me = self.signal.my_id.as_deref();
                let viewers = peers
                    .iter()
                    .filter(|p| {
                        !p.is_seed
                            && me != Some(p.peer_id.as_str())
                            && !self.engine.is_banned(&p.peer_id)
                    })
                    .count()
                    .min(self.engine.max_peers());
                self.input(Input::Joined { viewers });
                // The page's `src` stays the manifest played; the tracker's
                // address is only logged (it names the same channel at a seed).
                self.debug(|| {
                    format!(
                        "joined with {} peers and {} HTTP origins (manifest at {})",
                        peers.len(),
                        self.origins.len(),
                        manifest.as_deref().unwrap_or("no seed")
                    )
                });
                // Peers keep their channels across a signal reconnect but come
                // back under new ids: with enough of them open, connecting to
                // the list again would mostly duplicate them.
                if rejoin && self.peers.open_count() >= WANT_PEERS {
                    let open = self.peers.open_count();
                    return self.debug(|| {
                        format!("rejoined with {open} peers open: not connecting to more")
                    });
                }
                self.connect_to(peers, weak);
            }
            ServerMsg::Peers { swarm, peers } if swarm == cid => self.connect_to(peers, weak),
            ServerMsg::Relay {
                swarm,
                from,
                signal,
            } if swarm == cid => self.on_relay(from, signal, weak),
            ServerMsg::PeerLeft { swarm, peer_id } if swarm == cid => {
                // An open channel outlives its peer's signal connection (it
                // may be reconnecting); a pending one cannot finish without it.
                if let Some(key) = self
                    .peers
                    .key_of(&peer_id)
                    .filter(|&k| self.peers.get(k).is_some_and(|c| !c.open))
                {
                    self.disconnect(key, "it left the swarm before its channel opened");
                }
            }
            ServerMsg::Error { code, message } => {
                log(&format!("signal server error {code:?}: {message}"));
            }
            ServerMsg::Kick {
                kick,
                message,
                ban_s,
            } => {
                // Acknowledge first; the fatal error then stops the player
                // (every peer gets a `Bye`, the signal socket closes).
                self.signal.send(&ClientMsg::Stopped { kick });
                let ban = ban_s.map_or(String::new(), |s| format!(" (for {s} s)"));
                let text = format!("Shoal: removed by the operator{ban}: {message}");
                crate::media::show_notice(self.media.video(), &text);
                self.fatal.get_or_insert(text);
            }
            ServerMsg::Refused {
                swarm,
                reason,
                message,
            } if swarm.as_ref().is_none_or(|s| *s == cid) => {
                if reason.is_final() {
                    // The same token would be refused again: stop, and say
                    // why to the person watching.
                    self.signal.refused(&mut self.graveyard);
                    let text = format!("Shoal: access refused ({}): {message}", reason.code());
                    crate::media::show_notice(self.media.video(), &text);
                    self.fatal.get_or_insert(text);
                } else if swarm.is_some() {
                    // The channel may come back (its seed restarting) or the
                    // server be less busy: play on, ask again later.
                    log(&format!(
                        "join refused ({message}); asking again in {} ms",
                        REJOIN_AFTER_MS as u32
                    ));
                    self.rejoin_at = Some(t + REJOIN_AFTER_MS);
                } else {
                    log(&format!(
                        "signal server busy ({message}); reconnecting later"
                    ));
                }
            }
            _ => {}
        }
    }

    /// Offers to listed peers we are not connected to, up to the cap.
    fn connect_to(&mut self, list: Vec<PeerInfo>, weak: &Weak<Shared>) {
        let cap = self.engine.max_peers();
        for p in list {
            let me = self.signal.my_id.as_deref() == Some(p.peer_id.as_str());
            if me || self.peers.key_of(&p.peer_id).is_some() || self.engine.is_banned(&p.peer_id) {
                continue;
            }
            if self.peers.count() >= cap {
                self.debug(|| format!("{cap} peer connections already: not connecting to more"));
                break;
            }
            match self
                .peers
                .create(p.peer_id, p.is_seed, true, now_ms(), weak)
            {
                Ok(key) => self.peers.offer(key, weak),
                Err(e) => log(&format!(
                    "cannot create a peer connection: {}",
                    crate::err_str(e)
                )),
            }
        }
    }

    fn on_relay(&mut self, from: String, signal: RtcSignal, weak: &Weak<Shared>) {
        if self.engine.is_banned(&from) {
            return self.debug(|| format!("ignoring signaling from banned peer {from}"));
        }
        match signal {
            RtcSignal::Offer { sdp } => {
                if let Some(old) = self.peers.key_of(&from) {
                    let c = self.peers.get(old).expect("indexed");
                    // Offers crossed: the smaller peer id's offer wins.
                    let ours_pending = c.outgoing && !c.answered && !c.open;
                    if ours_pending
                        && self
                            .signal
                            .my_id
                            .as_deref()
                            .is_some_and(|me| me < from.as_str())
                    {
                        return self
                            .debug(|| format!("offer from {from} crossed ours; ours stands"));
                    }
                    self.disconnect(old, "replaced by a new offer from the same peer");
                } else if self.peers.count() >= self.engine.max_peers() {
                    let cap = self.engine.max_peers();
                    return self.debug(|| {
                        format!("ignoring an offer from {from}: {cap} peer connections already")
                    });
                }
                match self.peers.create(from, false, false, now_ms(), weak) {
                    Ok(key) => self.peers.answer(key, sdp, weak),
                    Err(e) => log(&format!(
                        "cannot create a peer connection: {}",
                        crate::err_str(e)
                    )),
                }
            }
            RtcSignal::Answer { sdp } => {
                if let Some(key) = self.peers.key_of(&from) {
                    self.peers.on_answer(key, sdp, weak);
                }
            }
            RtcSignal::Candidate {
                candidate,
                sdp_mid,
                sdp_mline_index,
            } => {
                if let Some(key) = self.peers.key_of(&from) {
                    self.peers
                        .add_candidate(key, (candidate, sdp_mid, sdp_mline_index));
                }
            }
        }
    }

    /// Relays our SDP or candidate to the peer of `key`.
    fn relay(&mut self, key: PeerKey, signal: RtcSignal) {
        let Some(to) = self.peers.get(key).map(|c| c.remote_id.clone()) else {
            return;
        };
        let swarm = self.content_id();
        if !self.signal.send(&ClientMsg::Relay { swarm, to, signal }) {
            self.debug(|| {
                format!("signal connection down: signaling for peer connection {key} not sent")
            });
        }
    }

    fn on_rtc(&mut self, ev: RtcEv, weak: &Weak<Shared>) {
        match ev {
            RtcEv::LocalCandidate {
                key,
                cand: (candidate, sdp_mid, sdp_mline_index),
            } => self.relay(
                key,
                RtcSignal::Candidate {
                    candidate,
                    sdp_mid,
                    sdp_mline_index,
                },
            ),
            RtcEv::LocalSdp { key, offer, sdp } => self.relay(
                key,
                if offer {
                    RtcSignal::Offer { sdp }
                } else {
                    RtcSignal::Answer { sdp }
                },
            ),
            RtcEv::Failed { key, why } => {
                if self.peers.get(key).is_some() {
                    self.disconnect(key, &why);
                }
            }
            RtcEv::Channel { key, dc } => {
                if !self.peers.on_channel(key, dc, weak) {
                    self.debug(|| format!("peer connection {key}: extra data channel closed"));
                }
            }
            RtcEv::Open(key) => {
                let t = now_ms();
                if let Some((remote_id, is_seed, created_at)) = self.peers.on_open(key, t) {
                    let ms = (t - created_at).max(0.0) as u32;
                    self.conns.connected(ms);
                    // The engine hears of the peer with its route (a getStats
                    // away), so that every byte is counted as direct or relayed.
                    self.peers.query_route(key, weak);
                    self.debug(|| {
                        format!(
                            "peer {remote_id} connected{}",
                            if is_seed { " (seed)" } else { "" }
                        )
                    });
                }
            }
            RtcEv::Route(key, route) => {
                let Some(c) = self.peers.get_mut(key).filter(|c| c.open) else {
                    return;
                };
                let first = !c.routed;
                let changed = first || (route.is_some() && route != c.route);
                if changed {
                    c.route = route;
                }
                c.routed = true;
                let pending = std::mem::take(&mut c.pending);
                let (remote_id, is_seed) = (c.remote_id.clone(), c.is_seed);
                // The route is reported once it had time to settle: ICE
                // often starts on a relayed pair and moves to a direct one.
                let settled = now_ms() - c.opened_at >= ROUTE_SETTLE_MS;
                if first {
                    self.input(Input::PeerConnected {
                        peer: key,
                        remote_id: &remote_id,
                        is_seed,
                    });
                }
                if changed {
                    let relayed = route == Some(Route::Relay);
                    self.input(Input::PeerRoute { peer: key, relayed });
                }
                for data in pending {
                    self.input(Input::PeerData {
                        peer: key,
                        data: &data,
                    });
                }
                if settled {
                    self.report_conn(key);
                }
            }
            RtcEv::IceError(e) => {
                log(&format!("Shoal: ICE server error: {e}"));
                self.conns.ice_error(e);
            }
            RtcEv::Data(peer, data) => {
                let Some(c) = self.peers.get_mut(peer).filter(|c| c.open) else {
                    return;
                };
                if !c.routed {
                    if c.pending.len() >= MAX_PENDING_BEFORE_ROUTE {
                        self.disconnect(peer, "sent too much before its route was known");
                    } else {
                        c.pending.push(data);
                    }
                    return;
                }
                let bytes = c.buffered();
                self.input(Input::PeerBuffered { peer, bytes });
                self.input(Input::PeerData { peer, data: &data });
            }
            RtcEv::BadFrame(peer, what) => {
                if self.peers.get(peer).is_some() {
                    self.input(Input::PeerBadFrame { peer, what: &what });
                }
            }
            RtcEv::Closed(key) => {
                if self.peers.get(key).is_some() {
                    self.disconnect(key, "its data channel closed");
                }
            }
        }
    }

    fn on_http(&mut self, ev: HttpEv) {
        let HttpEv {
            res,
            origin,
            url,
            result,
        } = ev;
        match result {
            Ok(data) => {
                let failures = self.engine.stats().verify_failures;
                self.input(Input::HttpDone { res, data });
                if self.engine.stats().verify_failures > failures {
                    log(&format!("{url} failed verification"));
                    self.next_origin(origin);
                }
            }
            Err(e) => {
                log(&format!("HTTP fetch of {url} failed: {e}"));
                self.next_origin(origin);
                self.input(Input::HttpFailed { res });
            }
        }
    }

    fn next_origin(&mut self, failed: usize) {
        if let Some(base) = self.origins.failed(failed) {
            log(&format!("fetching from the next HTTP origin: {base}"));
        }
    }

    fn on_media(&mut self, ev: MediaEv) {
        match ev {
            MediaEv::UpdateEnd => self.media.play_when_buffered(),
            MediaEv::BufferError => log("the media buffer reported an error"),
            MediaEv::Playing => {
                self.media.on_playing();
                self.input(Input::Media(MediaEvent::Playing));
            }
            MediaEv::Waiting => self.input(Input::Media(MediaEvent::Waiting)),
            MediaEv::Ended => {
                self.media.on_ended();
                self.input(Input::Media(MediaEvent::Ended));
            }
            MediaEv::Seeking => {
                // A seek the engine asked for (live) is not the viewer's.
                if !self.media.take_own_seek() {
                    let position_ms = self.media.position_ms();
                    self.input(Input::Seek { position_ms });
                }
                self.media.on_seeking();
            }
        }
    }

    /// Carries out every pending engine output.
    fn drain(&mut self, weak: &Weak<Shared>) {
        while let Some(out) = self.engine.poll_output() {
            match out {
                Output::Send { peer, data } => match self.peers.get(peer).map(|c| c.send(&data)) {
                    Some(Ok(())) => {}
                    Some(Err(e)) => self.disconnect(peer, &format!("send failed: {e}")),
                    None => log(&format!(
                        "{} bytes for peer connection {peer}, which is gone, not sent",
                        data.len()
                    )),
                },
                Output::HttpFetch { res } => {
                    let (uri, size) = self.engine.fetch_target(res);
                    self.origins
                        .fetch(res, &uri, size, &self.fetch_signal, weak);
                }
                Output::AppendInit { data } => self.media.push_init(data),
                Output::Append { data, .. } => self.media.push_append(data),
                Output::RemoveMedia { start_ms, end_ms } => {
                    self.media.push_remove(start_ms, end_ms)
                }
                Output::EndOfStream => self.media.push_end_of_stream(),
                Output::DropPeer { peer, reason } => {
                    let id = self
                        .peers
                        .get(peer)
                        .map_or_else(|| format!("connection {peer}"), |c| c.remote_id.clone());
                    log(&format!("dropping peer {id}: {reason}"));
                    if self.dropped.len() == DROPPED_KEPT {
                        self.dropped.pop_front();
                    }
                    self.dropped.push_back(id);
                    self.disconnect(peer, &reason);
                }
                Output::ClosePeer { peer, reason } => self.disconnect(peer, &reason),
                Output::Load { seg } => {
                    log(&format!("ignoring a seed's disk read of {seg} in a viewer"))
                }
                Output::CheckSignature {
                    id,
                    message,
                    signature,
                } => match self.live_key {
                    #[cfg(feature = "live")]
                    Some(key) => crate::crypto::check(weak, id, key, message, signature),
                    _ => {
                        let _ = (message, signature);
                        self.input(Input::SignatureChecked { id, ok: false })
                    }
                },
                #[cfg(feature = "live")]
                Output::SeekTo { position_ms } => self.media.push_seek(position_ms),
                #[cfg(feature = "live")]
                Output::PlaybackRate { permille } => self.media.set_rate(permille),
                #[cfg(feature = "live")]
                Output::RefreshLiveManifest => self.refresh_live_manifest(weak),
                // Live-channel outputs: an on-demand engine has none.
                #[cfg(not(feature = "live"))]
                Output::SeekTo { .. }
                | Output::PlaybackRate { .. }
                | Output::RefreshLiveManifest => {}
            }
        }
    }

    #[cfg(feature = "live")]
    /// Live: fetches `live.json` again; its descriptions come back as
    /// [`Ev::LiveRecent`] (none if the fetch or the parse failed).
    fn refresh_live_manifest(&self, weak: &Weak<Shared>) {
        let (url, signal, weak) = (
            self.opts.src.clone(),
            self.fetch_signal.clone(),
            weak.clone(),
        );
        wasm_bindgen_futures::spawn_local(async move {
            let text =
                crate::fetch::fetch_text(&url, &signal, crate::fetch::MAX_MANIFEST_BYTES).await;
            let (recent, interrupted) = match text.map(|t| crate::json::any_manifest(&t)) {
                Ok(Ok(crate::json::AnyManifest::Live(m))) => (m.recent, m.interrupted),
                #[cfg(feature = "vod")]
                Ok(Ok(_)) => {
                    log(&format!("{url} is no longer a live manifest"));
                    (Vec::new(), None)
                }
                Ok(Err(e)) | Err(e) => {
                    log(&format!("cannot refresh {url}: {e}"));
                    (Vec::new(), None)
                }
            };
            crate::lifecycle::post(&weak, Ev::LiveRecent(recent, interrupted));
        });
    }

    /// Stops playback for good, saying why on the video.
    fn fail(&mut self, text: String) {
        log(&text);
        crate::media::show_notice(self.media.video(), &text);
        self.fatal.get_or_insert(text);
    }

    /// The one way a peer leaves: its connection is closed and the engine
    /// is told (a peer it no longer knows is a no-op there).
    fn disconnect(&mut self, key: PeerKey, why: &str) {
        self.report_conn(key);
        if let Some(c) = self.peers.remove(key) {
            self.debug(|| format!("peer {} closed: {why}", c.remote_id));
            if !c.open {
                // It never connected: tell the server, which keeps the
                // pair apart for a while.
                self.conns.failed += 1;
                let ms = (now_ms() - c.created_at).max(0.0) as u64;
                self.send_conn_result(c.remote_id.clone(), false, ms, None);
            }
            c.close(false, &mut self.graveyard);
        }
        self.input(Input::PeerClosed { peer: key });
    }

    /// Tells the signal server, once, how the open connection `key` went:
    /// the time to an open data channel and the route of its pair.
    fn report_conn(&mut self, key: PeerKey) {
        let Some(c) = self.peers.get_mut(key).filter(|c| c.open && !c.reported) else {
            return;
        };
        c.reported = true;
        let (peer, route) = (c.remote_id.clone(), c.route);
        let ms = (c.opened_at - c.created_at).max(0.0) as u64;
        self.debug(|| format!("peer {peer}: connected in {ms} ms over {route:?}"));
        self.send_conn_result(peer, true, ms, route);
    }

    fn send_conn_result(&mut self, peer: String, ok: bool, ms: u64, route: Option<Route>) {
        let swarm = self.content_id();
        self.signal.send(&ClientMsg::ConnResult {
            swarm,
            peer,
            ok,
            ms,
            route,
        });
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            stats: self.engine.stats(),
            tables: self.engine.tables(),
            peer_connections: self.peers.count(),
            segments: self.engine.segment_count().unwrap_or(0),
            current_time: self.media.current_time(),
            buffered_seconds: self.media.buffered_seconds(),
            peer_id: self.signal.my_id.clone(),
            signal_connected: self.signal.is_open(),
            http_origins: self.origins.len(),
            error: self.fatal.clone(),
            dropped_peers: self.dropped.iter().cloned().collect(),
            conns: ConnLog {
                routes: self.peers.routes(),
                ..self.conns.clone()
            },
        }
    }

    /// Stops everything: the timer, every peer (after a `Bye`), the signal
    /// connection (after `leave`), the media element; frees every callback
    /// once no callback can be running. Returns the last figures. (The
    /// engine goes with the driver, so it is not told about the peers.)
    pub fn shutdown(mut self) -> Snapshot {
        if let Some(t) = self.timer.take() {
            t.stop(&mut self.graveyard);
        }
        for key in self.peers.keys() {
            if let Some(c) = self.peers.remove(key) {
                c.close(true, &mut self.graveyard);
            }
        }
        let swarm = self.content_id();
        self.signal.send(&ClientMsg::Report {
            swarm: swarm.clone(),
            report: self.engine.stats().report(),
        });
        self.signal.send(&ClientMsg::Leave { swarm });
        self.signal.close(&mut self.graveyard);
        let snapshot = self.snapshot();
        self.media.detach(&mut self.graveyard);
        crate::lifecycle::free_later(std::mem::take(&mut self.graveyard));
        snapshot
    }
}
