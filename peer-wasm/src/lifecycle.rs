//! The event loop and the player's states.
//!
//! Every browser callback only *posts* an [`Ev`] to one queue and pumps it;
//! the queue is drained by whichever call holds the state, so the state is
//! never borrowed twice (a callback that fires while the state is borrowed
//! leaves its event for the running pump).
//!
//! Invariants:
//! - A JS callback ([`Cb`]) is owned beside the object it is attached to.
//!   When that object goes, the callback is detached first and moved to a
//!   graveyard, freed later from a place where it cannot be running (the
//!   next tick, or a microtask after destroy).
//! - Events are handled only in [`State::Running`]; in any other state the
//!   queue is dropped, so nothing runs after destroy.
//! - A fatal playback error stops the player as `destroy()` would; stats()
//!   keeps the error.

use crate::driver::Driver;
use crate::fetch::HttpEv;
use crate::media::{Attached, MediaEv};
use crate::metrics::Snapshot;
use crate::rtc::RtcEv;
use crate::signaling::WsEv;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{AbortController, EventTarget};

pub(crate) type Cb = Closure<dyn FnMut(JsValue)>;

/// One browser event, as posted by a callback.
pub(crate) enum Ev {
    /// The player is running: start the timer and the signal connection.
    Start,
    Tick,
    Ws(WsEv),
    Rtc(RtcEv),
    Http(HttpEv),
    Media(MediaEv),
    /// Live: a signature check asked by the engine (`Err`: the browser
    /// cannot check signatures at all).
    #[cfg(feature = "live")]
    Signature {
        id: u64,
        result: Result<bool, String>,
    },
    /// Live: the descriptions of a fresh `live.json` (empty if it failed),
    /// and why the channel is interrupted, if it is.
    #[cfg(feature = "live")]
    LiveRecent(Vec<swarm_proto::live::LiveMeta>, Option<String>),
}

/// What `start()` has made so far, so that `destroy()` can free it at once.
pub(crate) struct Starting {
    /// Resolves the promise that every wait of `start()` races with.
    pub cancel: js_sys::Function,
    /// The MediaSource attached to the video, once it is.
    pub media: Option<Attached>,
}

pub(crate) enum State {
    Idle,
    Starting(Starting),
    Running(Box<Driver>),
    /// Destroyed (or failed to start); the last figures are kept for
    /// `stats()`.
    Destroyed(Option<Box<Snapshot>>),
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Starting(_) => "starting",
            State::Running(_) => "running",
            State::Destroyed(_) => "destroyed",
        }
    }
}

pub(crate) struct Shared {
    pub events: RefCell<VecDeque<Ev>>,
    pub state: RefCell<State>,
    /// `destroy()` was called while the state was borrowed (from inside a
    /// pump); the pump finishes it.
    pub destroy_requested: Cell<bool>,
    /// Aborts every fetch of this player (manifest, init, segments).
    pub abort: AbortController,
}

impl Shared {
    pub fn new() -> Result<Rc<Shared>, JsValue> {
        Ok(Rc::new(Shared {
            events: Default::default(),
            state: RefCell::new(State::Idle),
            destroy_requested: Cell::new(false),
            abort: AbortController::new()?,
        }))
    }
}

/// Queues an event and drains the queue if nobody else is draining it.
pub(crate) fn post(weak: &Weak<Shared>, ev: Ev) {
    if let Some(rc) = weak.upgrade() {
        rc.events.borrow_mut().push_back(ev);
        pump(&rc);
    }
}

pub(crate) fn pump(rc: &Rc<Shared>) {
    let Ok(mut state) = rc.state.try_borrow_mut() else {
        return;
    };
    let weak = Rc::downgrade(rc);
    loop {
        if rc.destroy_requested.get() {
            rc.events.borrow_mut().clear();
            finish_destroy(rc, &mut state);
            return;
        }
        let State::Running(driver) = &mut *state else {
            rc.events.borrow_mut().clear();
            return;
        };
        let Some(ev) = rc.events.borrow_mut().pop_front() else {
            return;
        };
        driver.on_event(ev, &weak);
        // A fatal error (e.g. the media buffer refused an append) stops
        // the player as destroy() would; stats() keeps the error.
        if driver.fatal().is_some() {
            rc.destroy_requested.set(true);
        }
    }
}

/// Stops everything: cancels a start in progress, shuts a running driver
/// down, aborts fetches. Safe to call in any state, any number of times.
pub(crate) fn destroy(rc: &Rc<Shared>) {
    rc.abort.abort();
    match rc.state.try_borrow_mut() {
        Ok(mut state) => finish_destroy(rc, &mut state),
        // Called from inside a pump: the pump finishes it.
        Err(_) => rc.destroy_requested.set(true),
    }
}

fn finish_destroy(rc: &Rc<Shared>, state: &mut State) {
    rc.destroy_requested.set(false);
    rc.abort.abort();
    let last = match std::mem::replace(state, State::Destroyed(None)) {
        State::Idle => None,
        State::Starting(s) => {
            if let Some(m) = s.media {
                m.release();
            }
            let _ = s.cancel.call1(
                &JsValue::NULL,
                &JsValue::from_str("Shoal: player destroyed during start()"),
            );
            None
        }
        State::Running(driver) => Some(Box::new(driver.shutdown())),
        State::Destroyed(last) => last,
    };
    *state = State::Destroyed(last);
}

/// A callback that turns its argument into an event (or nothing) and posts it.
pub(crate) fn cb(weak: &Weak<Shared>, f: impl Fn(JsValue) -> Option<Ev> + 'static) -> Cb {
    let weak = weak.clone();
    Closure::wrap(Box::new(move |v: JsValue| {
        if let Some(ev) = f(v) {
            post(&weak, ev);
        }
    }) as Box<dyn FnMut(JsValue)>)
}

/// Frees callbacks once the current JS call stack has unwound (in a
/// microtask), where none of them can be running.
pub(crate) fn free_later(graveyard: Vec<Cb>) {
    if !graveyard.is_empty() {
        wasm_bindgen_futures::spawn_local(async move { drop(graveyard) });
    }
}

/// A callback added with `addEventListener` (so a page's own handlers on
/// the same element are left alone), removed by [`Listener::detach`].
pub(crate) struct Listener {
    target: EventTarget,
    kind: &'static str,
    cb: Cb,
}

impl Listener {
    pub fn new(target: &EventTarget, kind: &'static str, cb: Cb) -> Result<Listener, JsValue> {
        target.add_event_listener_with_callback(kind, cb.as_ref().unchecked_ref())?;
        Ok(Listener {
            target: target.clone(),
            kind,
            cb,
        })
    }

    pub fn detach(self, graveyard: &mut Vec<Cb>) {
        let _ = self
            .target
            .remove_event_listener_with_callback(self.kind, self.cb.as_ref().unchecked_ref());
        graveyard.push(self.cb);
    }
}

/// The driver's periodic tick (`setInterval`).
pub(crate) struct Timer {
    id: i32,
    cb: Cb,
}

impl Timer {
    pub fn every(ms: i32, weak: &Weak<Shared>) -> Result<Timer, JsValue> {
        let cb = cb(weak, |_| Some(Ev::Tick));
        let id = web_sys::window()
            .ok_or("no window")?
            .set_interval_with_callback_and_timeout_and_arguments_0(
                cb.as_ref().unchecked_ref(),
                ms,
            )?;
        Ok(Timer { id, cb })
    }

    pub fn stop(self, graveyard: &mut Vec<Cb>) {
        if let Some(w) = web_sys::window() {
            w.clear_interval_with_handle(self.id);
        }
        graveyard.push(self.cb);
    }
}
