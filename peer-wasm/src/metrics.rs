//! The `stats()` object (its keys are documented in `js/shoal.d.ts`).
//!
//! Transfer, startup and stall figures are the engine's ([`Stats`]); this
//! module adds what only the browser knows (connections, media buffer,
//! Wasm memory) and turns it into a plain JS object. Every key is present
//! in every state, so a page can read stats() before start and after
//! destroy.

use js_sys::{Array, Object, Reflect};
use swarm_proto::engine::{Stats, Tables};
use wasm_bindgen::{JsCast, JsValue};

/// Everything stats() reports, taken at one moment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub stats: Stats,
    pub tables: Tables,
    /// RTCPeerConnections alive, pending ones included.
    pub peer_connections: usize,
    pub segments: u32,
    pub current_time: f64,
    pub buffered_seconds: f64,
    pub peer_id: Option<String>,
    pub signal_connected: bool,
    pub http_origins: usize,
    pub error: Option<String>,
    /// Ids of the most recent peers dropped for misbehaving.
    pub dropped_peers: Vec<String>,
    pub conns: ConnLog,
}

/// Connection attempts seen by this viewer: outcomes, routes of the
/// selected candidate pairs, connect times, ICE server errors.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnLog {
    pub connected: u32,
    pub failed: u32,
    /// Open connections by the route of their selected pair now: host,
    /// srflx, prflx, relay.
    pub routes: [u32; 4],
    /// Creation to open data channel, ms (the most recent ones).
    pub connect_ms: Vec<u32>,
    /// The most recent `icecandidateerror`s ("url: code text").
    pub ice_errors: Vec<String>,
}

const CONN_LOG_KEPT: usize = 32;
const ICE_ERRORS_KEPT: usize = 8;

impl ConnLog {
    pub fn connected(&mut self, ms: u32) {
        self.connected += 1;
        if self.connect_ms.len() >= CONN_LOG_KEPT {
            self.connect_ms.remove(0);
        }
        self.connect_ms.push(ms);
    }

    pub fn ice_error(&mut self, e: String) {
        if self.ice_errors.len() >= ICE_ERRORS_KEPT {
            self.ice_errors.remove(0);
        }
        self.ice_errors.push(e);
    }

    fn to_js(&self) -> JsValue {
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &k.into(), &v);
        };
        set("attempted", (self.connected + self.failed).into());
        set("connected", self.connected.into());
        set("failed", self.failed.into());
        for (i, k) in ["host", "srflx", "prflx", "relay"].iter().enumerate() {
            set(k, self.routes[i].into());
        }
        let ms: Array = self.connect_ms.iter().map(|&m| JsValue::from(m)).collect();
        set("connectMs", ms.into());
        o.into()
    }
}

impl Snapshot {
    /// The figures of a player whose start failed.
    pub fn failed(error: String) -> Snapshot {
        Snapshot {
            error: Some(error),
            ..Snapshot::default()
        }
    }

    pub fn to_js(&self, state: &str) -> JsValue {
        let o = Object::new();
        let set = |o: &Object, k: &str, v: JsValue| {
            let _ = Reflect::set(o, &k.into(), &v);
        };
        let num = |v: u64| JsValue::from(v as f64);
        let s = &self.stats;
        set(&o, "state", state.into());
        set(&o, "bytesFromPeers", num(s.bytes_from_peers));
        set(&o, "bytesFromSeed", num(s.bytes_from_seed));
        set(&o, "bytesFromHttp", num(s.bytes_from_http));
        set(&o, "bytesFromRelay", num(s.bytes_from_relay));
        set(&o, "connections", self.conns.to_js());
        let errs: Array = self
            .conns
            .ice_errors
            .iter()
            .map(|e| JsValue::from_str(e))
            .collect();
        set(&o, "iceErrors", errs.into());
        set(&o, "bytesUploaded", num(s.bytes_uploaded));
        set(&o, "peers", s.peers.into());
        set(&o, "peerConnections", (self.peer_connections as u32).into());
        set(&o, "startupMs", s.startup_ms.map_or(JsValue::NULL, num));
        set(&o, "stalls", s.stalls.into());
        set(&o, "stalledMs", num(s.stalled_ms));
        set(&o, "segmentsVerified", num(s.segments_verified));
        set(&o, "segmentsAppended", num(s.segments_appended));
        set(&o, "verifyFailures", num(s.verify_failures));
        set(&o, "latencyMs", s.latency_ms.map_or(JsValue::NULL, num));
        set(&o, "signaturesVerified", num(s.signatures_verified));
        set(&o, "peersDropped", num(s.peers_dropped));
        let dropped: js_sys::Array = self
            .dropped_peers
            .iter()
            .map(|id| JsValue::from_str(id))
            .collect();
        set(&o, "droppedPeers", dropped.into());
        set(&o, "requestsRejected", num(s.requests_rejected));
        set(&o, "unsolicitedPieces", num(s.unsolicited_pieces));
        set(
            &o,
            "storedSegments",
            (self.tables.stored_segments as u32).into(),
        );
        set(&o, "storedBytes", num(self.tables.stored_bytes as u64));
        set(&o, "segments", self.segments.into());
        set(&o, "currentTime", self.current_time.into());
        set(&o, "bufferedSeconds", self.buffered_seconds.into());
        set(
            &o,
            "peerId",
            self.peer_id.clone().map_or(JsValue::NULL, JsValue::from),
        );
        set(&o, "signalConnected", self.signal_connected.into());
        set(&o, "httpOrigins", (self.http_origins as u32).into());
        set(&o, "wasmMemoryBytes", wasm_memory_bytes().into());
        set(
            &o,
            "error",
            self.error.clone().map_or(JsValue::NULL, JsValue::from),
        );
        let t = Object::new();
        let n = |v: usize| JsValue::from(v as f64);
        set(&t, "peers", n(self.tables.peers));
        set(&t, "partialSegments", n(self.tables.partial_segments));
        set(&t, "storedSegments", n(self.tables.stored_segments));
        set(&t, "storedBytes", n(self.tables.stored_bytes));
        set(&t, "rejects", n(self.tables.rejects));
        set(&t, "banned", n(self.tables.banned));
        set(&t, "pendingLoads", n(self.tables.pending_loads));
        set(&t, "suspects", n(self.tables.suspects));
        set(&o, "tables", t.into());
        o.into()
    }
}

/// Size of this module's Wasm memory (it only grows).
fn wasm_memory_bytes() -> f64 {
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .ok()
        .and_then(|m| m.buffer().dyn_into::<js_sys::ArrayBuffer>().ok())
        .map_or(0.0, |b| b.byte_length() as f64)
}
