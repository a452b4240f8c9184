//! # shoal-peer: the browser viewer
//!
//! A thin driver around [`swarm_proto::Engine`]: it turns browser events
//! (WebSocket frames, data-channel messages, fetch completions, media
//! element events, a 100 ms timer) into engine inputs and carries the
//! engine's outputs out (data-channel sends, HTTP fetches, media buffer
//! operations, closed peers). No protocol decision is made here: what to
//! fetch from whom, what to append or remove, whom to ban, back-pressure
//! and playback metering are the engine's.
//!
//! Modules, one concern each:
//! - [`player`]: the JS face, [`Player`] (`new`, `start`, `stats`,
//!   `destroy`) and its state machine (idle → starting → running →
//!   destroyed).
//! - [`lifecycle`]: the event queue every browser callback posts to, the
//!   pump that drains it, and owned JS callbacks.
//! - [`driver`]: the running player: engine inputs from events, browser
//!   calls from engine outputs, the one disconnect path per peer.
//! - [`signaling`]: the WebSocket to the signal server, reconnected with
//!   back-off.
//! - [`rtc`]: RTCPeerConnections and their data channels.
//! - [`media`]: MediaSource / SourceBuffer, one queue of operations.
//! - [`fetch`]: HTTP fetches and the list of origins to fetch from.
//! - [`json`]: server messages and the manifest, parsed by the browser.
//! - [`metrics`]: the `stats()` object.
//!
//! `js/shoal.js` wraps [`Player`] as `Shoal.attach()` and the
//! `<shoal-player>` element.

#[cfg(feature = "live")]
mod crypto;
mod driver;
mod fetch;
pub mod json;
mod lifecycle;
mod media;
mod metrics;
mod player;
mod rtc;
mod signaling;

pub use player::Player;

use js_sys::Reflect;
use wasm_bindgen::JsValue;

/// Milliseconds on the page's monotonic clock.
pub(crate) fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

pub(crate) fn log(msg: &str) {
    web_sys::console::log_1(&JsValue::from_str(&format!("[shoal] {msg}")));
}

/// The message of a JS error value (an `Error`, a `DOMException`, a string).
pub(crate) fn err_str(e: JsValue) -> String {
    e.as_string()
        .or_else(|| {
            Reflect::get(&e, &"message".into())
                .ok()
                .and_then(|m| m.as_string())
        })
        .unwrap_or_else(|| format!("{e:?}"))
}

/// The `name` of a JS error value (`"QuotaExceededError"`, `"AbortError"`).
pub(crate) fn err_name(e: &JsValue) -> String {
    Reflect::get(e, &"name".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default()
}
