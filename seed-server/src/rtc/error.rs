//! What can go wrong answering an offer or using a connection. webrtc-rs's own errors are kept
//! as text, so that no `webrtc` type appears in the seed's public API.

use super::MAX_MESSAGE_SIZE;
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtcError {
    #[error("rtc bind_ip {0} is not a concrete IPv4 address")]
    BadBindIp(IpAddr),
    #[error("no free UDP port in {0}-{1}: every port of --udp-ports is in use; widen the range")]
    NoFreePort(u16, u16),
    #[error("invalid offer SDP: {0}")]
    InvalidOffer(String),
    #[error("offer has no data channel (m=application) section")]
    NoDataChannel,
    /// A negotiation step of webrtc-rs failed.
    #[error("{step}: {detail}")]
    Negotiation { step: &'static str, detail: String },
    #[error("ICE gathering did not complete within {0:?}")]
    GatherTimeout(Duration),
    #[error("answer has no ICE candidate (bind {0} failed?)")]
    NoCandidate(IpAddr),
    #[error("peer connection driver stopped")]
    DriverStopped,
    #[error("rtc connection closed")]
    Closed,
    #[error("message of {0} bytes exceeds {MAX_MESSAGE_SIZE}")]
    MessageTooLarge(usize),
    #[error("rtc send: {0}")]
    Send(String),
    #[error("add_ice_candidate: {0}")]
    Candidate(String),
}

impl RtcError {
    pub(super) fn negotiation(step: &'static str, e: impl std::fmt::Display) -> RtcError {
        RtcError::Negotiation {
            step,
            detail: e.to_string(),
        }
    }
}
