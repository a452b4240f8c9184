//! One viewer connection, from the answer to its end: its send queue and
//! sending task, its events fed to the swarm's engine, its handshake
//! timeout, and the one log line that says why it ended.
//!
//! Invariants: the first reason to end ([`Ending`]) wins and later ones are
//! ignored; the engine is told `PeerClosed` once if it was told
//! `PeerConnected`; the connection is closed and its [`ViewerSlot`] freed
//! when the task ends, whatever the reason.

use super::slots::ViewerSlot;
use super::swarm::Swarm;
use super::{lock, RemoteCandidate, MAX_QUEUED_BYTES};
use crate::rtc::{RtcConn, RtcEvent};
use crate::stats::SeedStats;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_proto::engine::{Input, PeerKey};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, warn};

/// Why a viewer connection ended.
#[derive(Clone, Debug)]
pub enum Ending {
    /// The engine dropped it for misbehaving; its id is banned.
    Dropped(String),
    /// The engine closed it without blame (bye, idle, peer limit, banned id).
    Closed(String),
    /// Its send queue passed [`MAX_QUEUED_BYTES`].
    Overloaded(usize),
    /// Sending to it failed.
    SendFailed(String),
    /// Its data channel did not open in time.
    HandshakeTimeout(Duration),
    /// The seed was full and its slot, idle, went to another viewer.
    Evicted,
    /// The connection closed on the remote side or failed.
    Gone,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::Dropped(r) => write!(f, "dropped for misbehaving: {r}"),
            Ending::Closed(r) => write!(f, "closed: {r}"),
            Ending::Overloaded(q) => write!(
                f,
                "{q} bytes queued, over the {MAX_QUEUED_BYTES}-byte limit"
            ),
            Ending::SendFailed(e) => write!(f, "send failed: {e}"),
            Ending::HandshakeTimeout(d) => {
                write!(f, "data channel did not open within {} ms", d.as_millis())
            }
            Ending::Evicted => write!(
                f,
                "idle while the seed was full: its slot went to a new viewer"
            ),
            Ending::Gone => write!(f, "connection closed by the viewer or failed"),
        }
    }
}

/// The first reason to end a connection, and a wake-up for its task.
#[derive(Default)]
struct EndSignal {
    why: Mutex<Option<Ending>>,
    notify: Notify,
}

impl EndSignal {
    /// Records `why` unless a reason is already set.
    fn end(&self, why: Ending) {
        let mut g = lock(&self.why);
        if g.is_none() {
            *g = Some(why);
            self.notify.notify_one();
        }
    }

    async fn wait(&self) -> Ending {
        loop {
            if let Some(w) = lock(&self.why).clone() {
                return w;
            }
            self.notify.notified().await;
        }
    }
}

/// What the swarm's driver holds of a viewer: its send queue and how to end it.
pub(super) struct PeerLink {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    end: Arc<EndSignal>,
}

impl PeerLink {
    /// Bytes queued toward the viewer and not yet handed to its data channel.
    pub fn queued(&self) -> u64 {
        self.queued.load(Relaxed) as u64
    }

    /// Queues one message; ends the connection instead if the queue would
    /// pass [`MAX_QUEUED_BYTES`].
    pub fn push(&self, data: Vec<u8>) {
        let len = data.len();
        let queued = self.queued.fetch_add(len, Relaxed) + len;
        if queued > MAX_QUEUED_BYTES {
            self.queued.fetch_sub(len, Relaxed);
            self.end(Ending::Overloaded(queued));
        } else if self.tx.send(data).is_err() {
            self.queued.fetch_sub(len, Relaxed);
        }
    }

    pub fn end(&self, why: Ending) {
        self.end.end(why);
    }
}

/// Everything one viewer connection's task needs.
pub(super) struct ViewerTask {
    pub swarm: Arc<Swarm>,
    pub key: PeerKey,
    pub stats: Arc<SeedStats>,
    pub handshake_timeout: Duration,
    pub conn: RtcConn,
    pub candidates: mpsc::UnboundedReceiver<RemoteCandidate>,
    pub slot: ViewerSlot,
}

impl ViewerTask {
    pub async fn run(self) {
        let ViewerTask {
            swarm,
            key,
            stats,
            handshake_timeout,
            mut conn,
            mut candidates,
            slot,
        } = self;
        let remote_id = slot.remote_id().to_owned();
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let end = Arc::new(EndSignal::default());
        swarm.add_link(
            key,
            PeerLink {
                tx,
                queued: queued.clone(),
                end: end.clone(),
            },
        );

        let sender = conn.sender.clone();
        let send_end = end.clone();
        let activity = slot.activity();
        let stats_in = stats.clone();
        let send_task = tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                let len = data.len();
                // Only media counts as activity: a connection that asks for
                // nothing is idle, whatever else it exchanges.
                let media = swarm_proto::wire::is_piece(&data);
                let res = sender.send(data).await;
                queued.fetch_sub(len, Relaxed);
                match res {
                    Ok(()) => {
                        stats.rtc_bytes.fetch_add(len as u64, Relaxed);
                        if media {
                            activity.touch();
                        }
                    }
                    Err(e) => {
                        send_end.end(Ending::SendFailed(e.to_string()));
                        break;
                    }
                }
            }
        });

        let content = swarm.content_id.clone();
        info!(%content, peer = %remote_id, key, conn = conn.id(), "viewer connecting");
        let mut opened = false;
        let mut candidates_open = true;
        let handshake = tokio::time::sleep(handshake_timeout);
        tokio::pin!(handshake);
        let ending = loop {
            tokio::select! {
                _ = &mut handshake, if !opened => {
                    swarm.note_handshake_timeout();
                    break Ending::HandshakeTimeout(handshake_timeout);
                }
                ev = conn.events.recv() => match ev {
                    Some(RtcEvent::Open) if !opened => {
                        opened = true;
                        info!(%content, peer = %remote_id, key, "viewer data channel open");
                        swarm.drive(Input::PeerConnected { peer: key, remote_id: &remote_id, is_seed: false });
                    }
                    Some(RtcEvent::Open) => {}
                    Some(RtcEvent::Message(data)) => {
                        stats_in.rtc_bytes_in.fetch_add(data.len() as u64, Relaxed);
                        if opened {
                            swarm.on_data(key, &data);
                        }
                    }
                    Some(RtcEvent::BadFrame(what)) => {
                        if opened {
                            swarm.drive(Input::PeerBadFrame { peer: key, what: &what });
                        }
                    }
                    Some(RtcEvent::Closed) | None => break Ending::Gone,
                },
                c = candidates.recv(), if candidates_open => match c {
                    Some(c) => {
                        if let Err(e) = conn.add_remote_candidate(&c.candidate, c.sdp_mid, c.sdp_mline_index).await {
                            debug!(%content, peer = %remote_id, error = %e, "remote candidate refused");
                        }
                    }
                    None => candidates_open = false,
                },
                why = end.wait() => break why,
                _ = slot.evicted() => break Ending::Evicted,
            }
        };
        swarm.remove_link(key);
        if opened {
            swarm.drive(Input::PeerClosed { peer: key });
        }
        match &ending {
            Ending::Dropped(_) | Ending::Overloaded(_) => {
                warn!(%content, peer = %remote_id, key, reason = %ending, "viewer dropped")
            }
            _ => info!(%content, peer = %remote_id, key, reason = %ending, "viewer closed"),
        }
        conn.sender.close().await;
        send_task.abort();
        drop(slot);
    }
}
