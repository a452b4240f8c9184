//! # swarm-proto: the Shoal protocol core
//!
//! Everything Shoal peers agree on, written once and free of I/O, so the
//! browser peer (`shoal-peer`), the native seed (`shoal-seed`), the signal
//! server and the simulator all run the same code:
//!
//! - [`wire`]: the versioned binary codec spoken on WebRTC data channels.
//!   Decoding never panics; every message is bounded in size.
//! - [`manifest`]: the swarm manifest (a video's "seed file") with the
//!   SHA-256 of every segment, and [`manifest::verify_segment`].
//! - [`bitfield`]: segment availability maps.
//! - [`engine`]: the peer engine, driven by `handle_input(now, input)`,
//!   `poll_output()` and `poll_timeout()`. Time and randomness are inputs.
//! - [`signal`]: the JSON messages exchanged with the signal server, and
//!   [`auth`]: the claims of viewer and seed tokens.
//! - [`matching`]: the network-group-aware peer selection rule.
//! - [`sim`]: a deterministic swarm simulator over real engines.
//!
//! No function here reads a clock, touches a socket or uses a global RNG.

/// Needs an engine feature (`vod-engine`, `live-engine`): the browser's
/// live-only bundle leaves the on-demand engine out.
#[cfg(any(feature = "vod-engine", feature = "live-engine"))]
pub mod any_engine;
pub mod auth;
pub mod bitfield;
pub mod engine;
pub mod ids;
pub mod live;
pub mod manifest;
pub mod matching;
pub mod signal;
pub mod sim;
pub mod wire;

#[cfg(any(feature = "vod-engine", feature = "live-engine"))]
pub use any_engine::AnyEngine;
pub use bitfield::Bitfield;
pub use engine::{Config, Engine, Input, MediaEvent, Output, PeerKey, Resource, Stats};
pub use ids::{PieceIndex, SegmentId};
pub use manifest::{Manifest, ManifestParts};

/// Milliseconds on the caller's monotonic clock. The engine never reads a
/// clock: every call carries `now`.
pub type Millis = u64;
