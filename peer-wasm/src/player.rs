//! The JS face: `new Player(video, options)`, `start()`, `stats()`,
//! `destroy()`.
//!
//! A player is a state machine, idle → starting → running → destroyed
//! (a failed start also ends in destroyed, with its error in stats()):
//! - `start()` is accepted once, from idle; a second call rejects with
//!   "start() was already called", a call after destroy with "destroyed".
//! - `destroy()` in any state stops everything at once; during `start()` it
//!   frees what start made so far (fetch aborted, MediaSource released) and
//!   `start()` rejects with "player destroyed during start()".
//! - After destroy nothing runs: the timer is cleared, every callback is
//!   detached, the WebSocket is closed, every peer got a `Bye`.

use crate::driver::Driver;
use crate::fetch::{fetch_text, Origins, MAX_MANIFEST_BYTES};
use crate::json::AnyManifest;
use crate::lifecycle::{self, post, Ev, Shared, Starting, State};
use crate::media::{Attached, Media};
use crate::metrics::Snapshot;
use crate::{err_str, now_ms};
use js_sys::{Array, Promise, Reflect};
use std::rc::Rc;
use std::sync::Arc;
#[cfg(feature = "vod")]
use swarm_proto::engine::{Config, Engine};
#[cfg(feature = "live")]
use swarm_proto::live::{LiveConfig, LiveEngine};
use swarm_proto::AnyEngine;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use web_sys::{HtmlVideoElement, MediaSource};

const ERR_STARTED: &str = "Shoal: start() was already called on this player";
const ERR_DESTROYED: &str = "Shoal: this player was destroyed";
const ERR_DESTROYED_DURING_START: &str = "Shoal: player destroyed during start()";

#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub src: String,
    pub signal: String,
    pub token: Option<String>,
    pub debug: bool,
    /// `performance.now()` when the page asked for playback (set by
    /// `Shoal.attach` and `<shoal-player>`): startup counts from there.
    pub started_at: Option<f64>,
    /// Live: the latency to hold, in ms (`options.liveLatencyMs`; checked
    /// in every build, used by the live one).
    #[cfg_attr(not(feature = "live"), allow(dead_code))]
    pub live_latency_ms: Option<u64>,
    /// `options.iceServers` (an RTCIceServer array, used as given instead
    /// of the signal server's).
    pub ice_servers: Option<JsValue>,
    /// `options.iceTransportPolicy`: "all" or "relay".
    pub ice_policy: Option<String>,
    /// `options.manifestPrefetch`: a Promise of the manifest's text (or
    /// null), which `shoal.js` starts fetching while the Wasm compiles.
    pub prefetch: Option<Promise>,
}

/// Bounds of `options.liveLatencyMs` (the engine holds at least a segment
/// plus 800 ms whatever is asked).
const LIVE_LATENCY_MIN_MS: f64 = 500.0;
const LIVE_LATENCY_MAX_MS: f64 = 120_000.0;

/// How far back `options.startedAt` may lie.
const STARTED_AT_MAX_AGE_MS: f64 = 600_000.0;

impl Options {
    fn from_js(o: &JsValue) -> Result<Options, JsValue> {
        let get = |k: &str| {
            Reflect::get(o, &JsValue::from_str(k))
                .ok()
                .filter(|v| !v.is_undefined() && !v.is_null())
        };
        let loc = web_sys::window().ok_or("no window")?.location();
        let src = get("src")
            .and_then(|v| v.as_string())
            .ok_or("Shoal: options.src (the manifest URL) is required")?;
        // Relative to the page, so that segment URIs resolve against it.
        let src = web_sys::Url::new_with_base(&src, &loc.href()?)
            .map_err(|_| format!("Shoal: options.src {src:?} is not a URL"))?
            .href();
        let signal = match get("signal").and_then(|v| v.as_string()) {
            Some(s) => s,
            None => {
                let proto = if loc.protocol()? == "https:" {
                    "wss"
                } else {
                    "ws"
                };
                format!("{proto}://{}/ws", loc.host()?)
            }
        };
        match web_sys::Url::new(&signal) {
            Ok(u) if matches!(u.protocol().as_str(), "ws:" | "wss:") => {}
            _ => {
                return Err(format!(
                    "Shoal: options.signal {signal:?} is not a ws:// or wss:// URL"
                )
                .into())
            }
        }
        let started_at = match get("startedAt") {
            None => None,
            Some(v) => {
                let now = now_ms();
                match v.as_f64() {
                    Some(t) if t <= now && t >= now - STARTED_AT_MAX_AGE_MS => Some(t),
                    _ => {
                        return Err(format!(
                            "Shoal: options.startedAt must be a performance.now() time of the last {} s, not {v:?}",
                            (STARTED_AT_MAX_AGE_MS / 1000.0) as u32
                        )
                        .into())
                    }
                }
            }
        };
        let live_latency_ms = match get("liveLatencyMs") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(ms) if (LIVE_LATENCY_MIN_MS..=LIVE_LATENCY_MAX_MS).contains(&ms) => {
                    Some(ms as u64)
                }
                _ => {
                    return Err(format!(
                    "Shoal: options.liveLatencyMs must be a number of ms from {} to {}, not {v:?}",
                    LIVE_LATENCY_MIN_MS as u32, LIVE_LATENCY_MAX_MS as u32
                )
                    .into())
                }
            },
        };
        let ice_servers = match get("iceServers") {
            Some(v) if js_sys::Array::is_array(&v) => Some(v),
            Some(_) => return Err("Shoal: options.iceServers must be an array of RTCIceServer ({ urls, username, credential })".into()),
            None => None,
        };
        let ice_policy = match get("iceTransportPolicy").map(|v| v.as_string()) {
            None => None,
            Some(Some(p)) if p == "all" || p == "relay" => Some(p),
            Some(_) => {
                return Err("Shoal: options.iceTransportPolicy must be \"all\" or \"relay\"".into())
            }
        };
        Ok(Options {
            prefetch: get("manifestPrefetch").and_then(|v| v.dyn_into::<Promise>().ok()),
            ice_servers,
            ice_policy,
            src,
            signal,
            token: get("token").and_then(|v| v.as_string()),
            debug: get("debug").and_then(|v| v.as_bool()).unwrap_or(false),
            started_at,
            live_latency_ms,
        })
    }
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
    /// `options`: `{ src: manifest URL, signal?: "ws://host/ws", token?: string, debug?: boolean,
    /// startedAt?: performance.now() when playback was asked for (default: the call to start()) }`.
    #[wasm_bindgen(constructor)]
    pub fn new(video: HtmlVideoElement, options: JsValue) -> Result<Player, JsValue> {
        let opts = Options::from_js(&options)?;
        Ok(Player {
            shared: Shared::new()?,
            video,
            opts,
        })
    }

    /// Fetches the manifest, opens MediaSource on the video and joins the
    /// swarm. Resolves once the player runs (media then fills from peers
    /// and HTTP). Accepted once; see the module docs for the other cases.
    pub fn start(&self) -> Promise {
        // The engine's time 0, where startup is counted from.
        let t0 = self.opts.started_at.unwrap_or_else(now_ms);
        let cancelled = {
            let Ok(mut state) = self.shared.state.try_borrow_mut() else {
                return Promise::reject(&ERR_STARTED.into());
            };
            match &*state {
                State::Idle => {}
                State::Destroyed(_) => return Promise::reject(&ERR_DESTROYED.into()),
                State::Starting(_) | State::Running(_) => {
                    return Promise::reject(&ERR_STARTED.into())
                }
            }
            // Every wait of start() races with this promise, which destroy()
            // resolves. (Resolves, not rejects: a rejection nobody awaits
            // would surface as an unhandled rejection.)
            let mut cancel = None;
            let cancelled = Promise::new(&mut |resolve, _| cancel = Some(resolve));
            let cancel = cancel.expect("the Promise executor runs at once");
            *state = State::Starting(Starting {
                cancel,
                media: None,
            });
            cancelled
        };
        let (shared, video, opts) = (self.shared.clone(), self.video.clone(), self.opts.clone());
        future_to_promise(async move {
            match run_start(&shared, video, opts, t0, cancelled).await {
                Ok(()) => Ok(JsValue::UNDEFINED),
                Err(e) => {
                    fail_start(&shared, &e);
                    Err(e)
                }
            }
        })
    }

    /// Playback and transfer statistics (see `shoal.d.ts`); every key is
    /// present in every state.
    pub fn stats(&self) -> JsValue {
        let Ok(state) = self.shared.state.try_borrow() else {
            return Snapshot::default().to_js("running");
        };
        match &*state {
            State::Running(d) => d.snapshot().to_js(state.name()),
            State::Destroyed(Some(last)) => last.to_js(state.name()),
            other => Snapshot::default().to_js(other.name()),
        }
    }

    /// Leaves the swarm, closes every connection and frees every callback.
    /// Safe in any state and more than once.
    pub fn destroy(&self) {
        lifecycle::destroy(&self.shared);
    }
}

impl Drop for Player {
    fn drop(&mut self) {
        lifecycle::destroy(&self.shared);
    }
}

/// Err unless the player is still starting (destroy() came meanwhile).
fn still_starting(shared: &Shared) -> Result<(), JsValue> {
    match &*shared.state.borrow() {
        State::Starting(_) => Ok(()),
        _ => Err(ERR_DESTROYED_DURING_START.into()),
    }
}

async fn run_start(
    shared: &Rc<Shared>,
    video: HtmlVideoElement,
    opts: Options,
    t0: f64,
    cancelled: Promise,
) -> Result<(), JsValue> {
    still_starting(shared)?;
    // The loader's prefetch (made while the Wasm compiled), else a fetch of
    // our own, which destroy() aborts.
    let prefetched = match opts.prefetch.clone() {
        Some(p) => JsFuture::from(p).await.ok().and_then(|v| v.as_string()),
        None => None,
    };
    let text = match prefetched {
        Some(t) if t.len() as u64 <= MAX_MANIFEST_BYTES => Ok(t),
        _ => fetch_text(&opts.src, &shared.abort.signal(), MAX_MANIFEST_BYTES).await,
    };
    still_starting(shared)?;
    let text = text.map_err(|e| format!("Shoal: cannot load manifest {}: {e}", opts.src))?;
    let manifest = crate::json::any_manifest(&text)
        .map_err(|e| format!("Shoal: bad manifest {}: {e}", opts.src))?;
    let (mime, swarm, dir, duration_ms) = match &manifest {
        #[cfg(feature = "vod")]
        AnyManifest::Vod(m) => (m.mime(), m.content_id(), "vod", Some(m.duration_ms())),
        #[cfg(feature = "live")]
        AnyManifest::Live(m) => (m.mime.as_str(), m.channel.as_str(), "live", None::<u64>),
    };
    if !MediaSource::is_type_supported(mime) {
        return Err(format!("Shoal: this browser cannot play {mime}").into());
    }
    let origins = Origins::new(&opts.src, swarm, dir);
    let mime = mime.to_owned();

    let at = Attached::new(&video)?;
    let opened = Promise::new(&mut |resolve, _| at.source.set_onsourceopen(Some(&resolve)));
    if let State::Starting(s) = &mut *shared.state.borrow_mut() {
        s.media = Some(at.clone());
    }
    let opened = JsFuture::from(Promise::race(&Array::of2(&opened, &cancelled))).await;
    at.source.set_onsourceopen(None);
    // If destroyed meanwhile, destroy() released the MediaSource.
    still_starting(shared)?;
    opened?;
    // A live stream's duration grows with what is appended.
    if let Some(ms) = duration_ms {
        at.source.set_duration(ms as f64 / 1000.0);
    }
    let sb = at.source.add_source_buffer(&mime)?;

    let weak = Rc::downgrade(shared);
    let media = Media::new(at, sb, &weak)?;
    let (engine, live_key) = match manifest {
        #[cfg(feature = "vod")]
        AnyManifest::Vod(m) => (
            AnyEngine::Vod(Engine::new(Arc::new(m), Config::default())),
            None,
        ),
        #[cfg(feature = "live")]
        AnyManifest::Live(m) => {
            let key = m.public_key;
            let d = LiveConfig::default();
            let cfg = LiveConfig {
                target_latency_ms: opts.live_latency_ms.unwrap_or(d.target_latency_ms),
                ..d
            };
            let e = LiveEngine::new(Arc::new(m), cfg);
            (AnyEngine::Live(e), Some(key))
        }
    };
    let driver = Driver::new(
        opts,
        engine,
        live_key,
        media,
        origins,
        shared.abort.signal(),
        t0,
    );
    // No await since the last check: still starting.
    *shared.state.borrow_mut() = State::Running(Box::new(driver));
    post(&weak, Ev::Start);
    Ok(())
}

/// A start that failed (not by destroy) releases what it made and ends in
/// destroyed, keeping the error for stats().
fn fail_start(shared: &Shared, e: &JsValue) {
    let mut state = shared.state.borrow_mut();
    if let State::Starting(s) = &*state {
        if let Some(m) = &s.media {
            m.release();
        }
        *state = State::Destroyed(Some(Box::new(Snapshot::failed(err_str(e.clone())))));
    }
}
