//! Live channels: an encoder's stream (a test source, a looped file, an RTMP
//! or SRT push, an HLS pull) cut into CMAF segments, signed, served over
//! HTTP as a live HLS playlist and pushed into the swarm.
//!
//! Layout: [`ingest`] runs ffmpeg for one channel and turns its fragmented
//! MP4 into an init segment and numbered media segments, restarting a
//! failed source with back-off; [`mp4`] is the sans-IO reader of that
//! fragmented MP4 (box splitting, init and fragment timing).

pub mod channel;
pub mod ingest;
pub mod mp4;
