//! Shoal's seed: packages a media folder into CMAF/HLS with swarm
//! manifests, serves it over HTTP (origin and fallback) and over WebRTC data
//! channels to viewers, and registers with the signal server.

pub mod control;
pub mod http;
pub mod live;
pub mod metrics;
pub mod package;
pub mod report;
pub mod rtc;
pub mod serve;
pub mod signaling;
pub mod stats;
