//! The WebSocket to the signal server.
//!
//! It heals itself: a socket that closes, errors, or goes silent for three
//! heartbeat periods is dropped and reopened after a back-off (0.5 s
//! doubling to 8 s, with jitter); every new socket says `hello` again, and
//! the driver joins again on `welcome`. Playback goes on from peers and
//! HTTP meanwhile. An admission refusal stops the retries (the same token
//! would be refused again).
//!
//! Events carry the socket's generation, so a late event of a socket that
//! was already replaced is ignored.

use crate::lifecycle::{cb, Cb, Ev, Shared};
use crate::{err_str, log};
use std::rc::Weak;
use swarm_proto::signal::{ClientMsg, Role, ServerMsg};
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, WebSocket};

const BACKOFF_FIRST_MS: f64 = 500.0;
const BACKOFF_MAX_MS: f64 = 8000.0;
/// Heartbeat period until the server says otherwise in `welcome`.
const DEFAULT_HEARTBEAT_MS: f64 = 5000.0;

pub(crate) enum WsEv {
    Open(u32),
    Text(u32, String),
    Closed(u32),
}

pub(crate) struct Signaling {
    url: String,
    token: Option<String>,
    ws: Option<WebSocket>,
    closures: Vec<Cb>,
    generation: u32,
    /// Failed connection attempts in a row (0 once welcomed).
    attempts: u32,
    retry_at: Option<f64>,
    refused: bool,
    heartbeat_ms: f64,
    last_heard: f64,
    last_heartbeat: f64,
    /// Our peer id on the current socket, once welcomed.
    pub my_id: Option<String>,
    /// When our hello went out (`now` of the socket's open).
    hello_at: f64,
    /// The server's wall clock minus ours (ms), learned from its welcome
    /// (half the hello-welcome round trip allowed for); 0 until then.
    pub clock_offset_ms: f64,
}

impl Signaling {
    pub fn new(url: String, token: Option<String>) -> Signaling {
        Signaling {
            url,
            token,
            ws: None,
            closures: Vec::new(),
            generation: 0,
            attempts: 0,
            retry_at: None,
            refused: false,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            last_heard: 0.0,
            last_heartbeat: 0.0,
            my_id: None,
            hello_at: 0.0,
            clock_offset_ms: 0.0,
        }
    }

    /// Opens a new socket (the old one, if any, is dropped first).
    pub fn connect(&mut self, now: f64, weak: &Weak<Shared>, graveyard: &mut Vec<Cb>) {
        self.drop_socket(graveyard);
        self.retry_at = None;
        self.generation += 1;
        let g = self.generation;
        let ws = match WebSocket::new(&self.url) {
            Ok(ws) => ws,
            Err(e) => {
                log(&format!(
                    "cannot open the signal connection to {}: {}",
                    self.url,
                    err_str(e)
                ));
                return self.schedule_retry(now);
            }
        };
        let on_open = cb(weak, move |_| Some(Ev::Ws(WsEv::Open(g))));
        let on_msg = cb(weak, move |v| {
            Some(Ev::Ws(WsEv::Text(
                g,
                v.dyn_into::<MessageEvent>().ok()?.data().as_string()?,
            )))
        });
        let on_close = cb(weak, move |_| Some(Ev::Ws(WsEv::Closed(g))));
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_msg.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.set_onerror(Some(on_close.as_ref().unchecked_ref()));
        self.closures = vec![on_open, on_msg, on_close];
        self.ws = Some(ws);
        self.last_heard = now;
    }

    /// Handles a socket event; returns a server message for the driver.
    pub fn on_event(&mut self, ev: WsEv, now: f64, graveyard: &mut Vec<Cb>) -> Option<ServerMsg> {
        match ev {
            WsEv::Open(g) if g == self.generation => {
                self.last_heard = now;
                self.hello_at = now;
                self.send(&ClientMsg::Hello {
                    role: Role::Viewer,
                    token: self.token.clone(),
                    seed: None,
                });
                None
            }
            WsEv::Text(g, text) if g == self.generation => {
                self.last_heard = now;
                match crate::json::server_msg(&text) {
                    Ok(m) => {
                        if let ServerMsg::Welcome {
                            peer_id,
                            heartbeat_ms,
                            server_ms,
                            ..
                        } = &m
                        {
                            if let Some(server) = server_ms {
                                let half_rtt = (now - self.hello_at).max(0.0) / 2.0;
                                self.clock_offset_ms =
                                    *server as f64 + half_rtt - js_sys::Date::now();
                            }
                            self.attempts = 0;
                            self.heartbeat_ms = (*heartbeat_ms as f64).clamp(1000.0, 60_000.0);
                            self.my_id = Some(peer_id.clone());
                        }
                        Some(m)
                    }
                    Err(e) => {
                        log(&format!(
                            "ignoring a bad message from the signal server: {e}"
                        ));
                        None
                    }
                }
            }
            WsEv::Closed(g) if g == self.generation && self.ws.is_some() => {
                self.lost("the signal connection closed", now, graveyard);
                None
            }
            _ => None,
        }
    }

    /// Admission was refused: stop reconnecting.
    pub fn refused(&mut self, graveyard: &mut Vec<Cb>) {
        self.refused = true;
        self.drop_socket(graveyard);
        self.retry_at = None;
    }

    /// Heartbeats, silence detection and due reconnects.
    pub fn tick(&mut self, now: f64, weak: &Weak<Shared>, graveyard: &mut Vec<Cb>) {
        if self.retry_at.is_some_and(|t| now >= t) {
            log("reconnecting to the signal server");
            return self.connect(now, weak, graveyard);
        }
        if self.ws.is_none() {
            return;
        }
        if now - self.last_heard > 3.0 * self.heartbeat_ms {
            return self.lost("the signal server went silent", now, graveyard);
        }
        // Heartbeats are answered, so they also prove the server alive.
        if self.my_id.is_some() && now - self.last_heartbeat >= self.heartbeat_ms {
            self.last_heartbeat = now;
            self.send(&ClientMsg::Heartbeat);
        }
    }

    fn lost(&mut self, why: &str, now: f64, graveyard: &mut Vec<Cb>) {
        self.drop_socket(graveyard);
        self.schedule_retry(now);
        let delay = self.retry_at.map_or(0.0, |t| t - now);
        log(&format!(
            "{why}; playing on with peers and HTTP, reconnecting in {} ms",
            delay.max(0.0) as u64
        ));
    }

    fn schedule_retry(&mut self, now: f64) {
        if self.refused {
            return;
        }
        let base = (BACKOFF_FIRST_MS * 2f64.powi(self.attempts.min(5) as i32)).min(BACKOFF_MAX_MS);
        // ±25 % jitter, so viewers cut off together do not return together.
        let delay = base * (0.75 + 0.5 * js_sys::Math::random());
        self.attempts += 1;
        self.retry_at = Some(now + delay);
    }

    pub fn is_open(&self) -> bool {
        self.ws
            .as_ref()
            .is_some_and(|ws| ws.ready_state() == WebSocket::OPEN)
    }

    /// Whether we are welcomed on an open socket (so joins and relays work).
    pub fn is_ready(&self) -> bool {
        self.is_open() && self.my_id.is_some()
    }

    /// Sends if the socket is open; returns whether it was sent.
    pub fn send(&self, msg: &ClientMsg) -> bool {
        let Some(ws) = self
            .ws
            .as_ref()
            .filter(|ws| ws.ready_state() == WebSocket::OPEN)
        else {
            return false;
        };
        match ws.send_with_str(&msg.encode()) {
            Ok(()) => true,
            Err(e) => {
                log(&format!("cannot send to the signal server: {}", err_str(e)));
                false
            }
        }
    }

    fn drop_socket(&mut self, graveyard: &mut Vec<Cb>) {
        self.my_id = None;
        if let Some(ws) = self.ws.take() {
            ws.set_onopen(None);
            ws.set_onmessage(None);
            ws.set_onclose(None);
            ws.set_onerror(None);
            let _ = ws.close();
        }
        graveyard.append(&mut self.closures);
    }

    /// Closes for good (destroy).
    pub fn close(&mut self, graveyard: &mut Vec<Cb>) {
        self.refused = true;
        self.retry_at = None;
        self.drop_socket(graveyard);
    }
}
