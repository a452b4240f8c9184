//! The life of one connection after the answer: its [`Supervisor`] task waits for the browser's
//! data channel, pumps its events to the application, and tears everything down.
//!
//! Invariants: the supervisor holds the only strong reference to the peer connection, so the
//! connection's resources go when the task ends; [`Slot`] moves `Pending -> Open -> Closed` (or
//! `Pending -> Closed`) and never back; `RtcEvent::Closed` is the last event sent.

use super::{RtcEvent, DATA_CHANNEL_LABEL, MAX_MESSAGE_SIZE, OPEN_TIMEOUT};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info, warn};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};

/// Bound on `PeerConnection::close` (it waits itself at most ~100 ms for the driver).
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The data channel as senders see it.
#[derive(Clone)]
pub(super) enum Slot {
    Pending,
    Open(Arc<dyn DataChannel>),
    Closed,
}

/// What the library's event handler (running on the connection's driver task) reports to the
/// supervisor. Unbounded, and bounded in practice (a few state changes; extra data channels are
/// closed as they come).
pub(super) enum Ctl {
    GatheringComplete,
    State(RTCPeerConnectionState),
    DataChannel(Arc<dyn DataChannel>),
}

pub(super) async fn close_pc(pc: &Arc<dyn PeerConnection>) {
    match tokio::time::timeout(CLOSE_TIMEOUT, pc.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!("peer connection close: {e}"),
        Err(_) => warn!("peer connection close timed out"),
    }
}

/// Owns the peer connection (the only strong reference) for its whole life.
pub(super) struct Supervisor {
    pub pc: Arc<dyn PeerConnection>,
    pub ctl_rx: mpsc::UnboundedReceiver<Ctl>,
    /// Control events that arrived while the answer was being made.
    pub early: Vec<Ctl>,
    pub events_tx: mpsc::Sender<RtcEvent>,
    pub slot_tx: watch::Sender<Slot>,
    pub close: Arc<Notify>,
}

/// Why a connection ended.
type Reason = &'static str;

impl Supervisor {
    pub async fn run(mut self) {
        let reason = self.drive().await;
        info!(reason, "rtc connection closed");
        // Drop the data channel handle held for senders, then stop the driver (closes the
        // socket, ends every stream); then tell the application.
        self.slot_tx.send_replace(Slot::Closed);
        close_pc(&self.pc).await;
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            self.events_tx.send(RtcEvent::Closed),
        )
        .await;
        // `self` (pc, channels, handler via pc) dropped here.
    }

    /// A control event; `Err` ends the connection.
    async fn on_ctl(
        &mut self,
        ctl: Option<Ctl>,
        open: bool,
    ) -> Result<Option<Arc<dyn DataChannel>>, Reason> {
        match ctl {
            None => Err("peer connection driver stopped"),
            Some(Ctl::GatheringComplete) => Ok(None),
            Some(Ctl::State(state)) => match state {
                RTCPeerConnectionState::Failed => Err("peer connection failed"),
                RTCPeerConnectionState::Closed => Err("peer connection closed"),
                RTCPeerConnectionState::Connected => {
                    debug!("peer connection connected");
                    Ok(None)
                }
                _ => Ok(None),
            },
            Some(Ctl::DataChannel(dc)) => {
                let label = dc.label().await.unwrap_or_default();
                if open || label != DATA_CHANNEL_LABEL {
                    warn!(label, "closing unexpected extra data channel");
                    let _ = dc.close().await;
                    Ok(None)
                } else {
                    Ok(Some(dc))
                }
            }
        }
    }

    async fn drive(&mut self) -> Reason {
        // Phase 1: wait for the browser's channel to open.
        let deadline = tokio::time::sleep(OPEN_TIMEOUT);
        tokio::pin!(deadline);
        let mut early = std::mem::take(&mut self.early).into_iter();
        let dc = loop {
            let ctl = if let Some(c) = early.next() {
                Some(c)
            } else {
                tokio::select! {
                    _ = &mut deadline => return "data channel did not open in time",
                    _ = self.close.notified() => return "closed locally",
                    _ = self.events_tx.closed() => return "events receiver dropped",
                    ctl = self.ctl_rx.recv() => ctl,
                }
            };
            match self.on_ctl(ctl, false).await {
                Err(reason) => return reason,
                Ok(Some(dc)) => break dc,
                Ok(None) => {}
            }
        };
        // Whatever else arrived before the answer was returned (state changes).
        for ctl in early {
            if let Err(reason) = self.on_ctl(Some(ctl), true).await {
                return reason;
            }
        }

        self.slot_tx.send_replace(Slot::Open(dc.clone()));
        info!("data channel open");
        if let Err(reason) = self.deliver(RtcEvent::Open).await {
            return reason;
        }

        // Phase 2: pump the channel's events to the application.
        loop {
            tokio::select! {
                ev = dc.poll() => match ev {
                    None | Some(DataChannelEvent::OnClose) => return "data channel closed",
                    Some(DataChannelEvent::OnMessage(msg)) => {
                        let ev = if msg.is_string {
                            RtcEvent::BadFrame(format!("text message of {} bytes", msg.data.len()))
                        } else if msg.data.len() > MAX_MESSAGE_SIZE as usize {
                            RtcEvent::BadFrame(format!("message of {} bytes, over the {MAX_MESSAGE_SIZE}-byte limit", msg.data.len()))
                        } else {
                            RtcEvent::Message(Vec::from(msg.data))
                        };
                        if let Err(reason) = self.deliver(ev).await {
                            return reason;
                        }
                    }
                    Some(DataChannelEvent::OnError) => debug!("data channel error event"),
                    Some(_) => {}
                },
                _ = self.close.notified() => return "closed locally",
                _ = self.events_tx.closed() => return "events receiver dropped",
                ctl = self.ctl_rx.recv() => {
                    if let Err(reason) = self.on_ctl(ctl, true).await {
                        return reason;
                    }
                }
            }
        }
    }

    /// Hands one event to the application, waiting for queue space (receive back-pressure)
    /// but still honouring close requests and connection failure meanwhile.
    async fn deliver(&mut self, ev: RtcEvent) -> Result<(), Reason> {
        let permit = loop {
            tokio::select! {
                permit = self.events_tx.reserve() => match permit {
                    Ok(p) => break p,
                    Err(_) => return Err("events receiver dropped"),
                },
                _ = self.close.notified() => return Err("closed locally"),
                ctl = self.ctl_rx.recv() => {
                    // `self.on_ctl` cannot be called while `reserve` borrows `events_tx`.
                    match ctl {
                        None => return Err("peer connection driver stopped"),
                        Some(Ctl::State(RTCPeerConnectionState::Failed)) => return Err("peer connection failed"),
                        Some(Ctl::State(RTCPeerConnectionState::Closed)) => return Err("peer connection closed"),
                        Some(Ctl::DataChannel(extra)) => {
                            warn!("closing unexpected extra data channel");
                            let _ = extra.close().await;
                        }
                        Some(_) => {}
                    }
                }
            }
        };
        permit.send(ev);
        Ok(())
    }
}
