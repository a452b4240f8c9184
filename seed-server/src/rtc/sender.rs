//! The sending half of a connection, handed to the application: sends with back-pressure,
//! trickled remote candidates, close.
//!
//! Invariant: an [`RtcSender`] holds only a weak reference to the peer connection and a view of
//! the channel's [`Slot`], so clones kept after the connection closed hold no connection state.

use super::conn::{Slot, CLOSE_TIMEOUT};
use super::{RtcError, MAX_MESSAGE_SIZE};
use bytes::{Bytes, BytesMut};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tracing::debug;
use webrtc::data_channel::DataChannel;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit};

/// Sending half of a connection. Clones share the connection; they keep no connection state
/// alive after it closed.
#[derive(Clone)]
pub struct RtcSender {
    id: u64,
    slot: watch::Receiver<Slot>,
    close: Arc<Notify>,
    pc: Weak<dyn PeerConnection>,
}

impl RtcSender {
    pub(super) fn new(
        id: u64,
        slot: watch::Receiver<Slot>,
        close: Arc<Notify>,
        pc: Weak<dyn PeerConnection>,
    ) -> RtcSender {
        RtcSender {
            id,
            slot,
            close,
            pc,
        }
    }

    /// Connection id (for logs).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends one binary message (at most [`MAX_MESSAGE_SIZE`] bytes). Waits for the channel to
    /// open, then for send-buffer capacity (back-pressure). Errors once the connection is closed.
    pub async fn send(&self, data: Vec<u8>) -> Result<(), RtcError> {
        if data.len() > MAX_MESSAGE_SIZE as usize {
            return Err(RtcError::MessageTooLarge(data.len()));
        }
        let dc = self.channel().await?;
        // Vec -> Bytes -> BytesMut is zero-copy (unique buffer).
        dc.send(BytesMut::from(Bytes::from(data)))
            .await
            .map_err(|e| RtcError::Send(e.to_string()))
    }

    /// Bytes handed to `send` and not yet acknowledged by the remote (0 before open/after close).
    pub async fn buffered(&self) -> usize {
        let dc = match &*self.slot.borrow() {
            Slot::Open(dc) => dc.clone(),
            _ => return 0,
        };
        dc.outstanding_bytes().await.unwrap_or(0)
    }

    /// Whether the connection is closed (sends fail).
    pub fn is_closed(&self) -> bool {
        matches!(&*self.slot.borrow(), Slot::Closed)
    }

    /// Closes the connection and waits (at most a few seconds) until it is torn down.
    /// Idempotent; the events stream then yields `Closed`.
    pub async fn close(&self) {
        self.close.notify_one();
        let mut slot = self.slot.clone();
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT + Duration::from_secs(1),
            slot.wait_for(|s| matches!(s, Slot::Closed)),
        )
        .await;
    }

    /// Adds a candidate trickled by the browser (`candidate` as in `RTCIceCandidate.candidate`,
    /// with or without the `candidate:` prefix; empty = end of candidates). mDNS (`.local`),
    /// IPv6 and TCP candidates are ignored (`Ok`): the seed resolves no mDNS and speaks UDP over
    /// IPv4 only. Errors on an unparseable candidate or a closed connection. Not needed for
    /// connectivity as such: a browser that sends us checks is learnt as peer-reflexive anyway.
    pub async fn add_remote_candidate(
        &self,
        candidate: &str,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    ) -> Result<(), RtcError> {
        let fields: Vec<&str> = candidate.split_whitespace().collect();
        if fields.len() > 4
            && (fields[4].ends_with(".local")
                || fields[4].contains(':')
                || !fields[2].eq_ignore_ascii_case("udp"))
        {
            debug!(conn = self.id, candidate, "ignoring remote candidate");
            return Ok(());
        }
        let pc = self.pc.upgrade().ok_or(RtcError::Closed)?;
        pc.add_ice_candidate(RTCIceCandidateInit {
            candidate: candidate.to_owned(),
            sdp_mid,
            sdp_mline_index,
            ..Default::default()
        })
        .await
        .map_err(|e| RtcError::Candidate(e.to_string()))
    }

    async fn channel(&self) -> Result<Arc<dyn DataChannel>, RtcError> {
        let mut slot = self.slot.clone();
        let s = slot
            .wait_for(|s| !matches!(s, Slot::Pending))
            .await
            .map_err(|_| RtcError::Closed)?;
        match &*s {
            Slot::Open(dc) => Ok(dc.clone()),
            _ => Err(RtcError::Closed),
        }
    }
}
