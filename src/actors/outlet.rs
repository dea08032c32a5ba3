//! What chat rooms and user hubs hold of a connected client (a WebSocket session or an event
//! stream): where to push frames, how to ask it to close, and the flag that marks it a slow
//! consumer.
//!
//! Fan-out never waits: frames go with `try_send` into the client actor's bounded mailbox. A
//! full mailbox means the client is not reading; it is marked lagged (counted once), loses the
//! frames it cannot take, and is closed with 1008 "slow consumer" as soon as its actor runs
//! again (chat clients then resume by `seq`, event streams by `Last-Event-ID`). A client that
//! never reads again is cut by the kernel once its receive window has stayed shut for
//! `server.stalled_write_timeout_ms` (TCP_USER_TIMEOUT, set on every accepted connection).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::SendError;
use actix::{Message, Recipient};
use prometheus_client::metrics::counter::Counter;
use uuid::Uuid;

use super::probe::{ActorProbe, InFlight};

/// Which room a frame belongs to, for sockets that forward only their subscribed rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomFrame {
    /// A stored message: forwarded once, in `seq` order.
    Message { room: Uuid, seq: i64 },
    /// Typing and the like: forwarded as they come, never replayed.
    Ephemeral { room: Uuid },
}

/// A frame for a client (serialised once for all its recipients).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Push {
    pub text: Arc<str>,
    pub room: Option<RoomFrame>,
    /// The user-log id of a logged user event (the SSE `id:`).
    pub id: Option<Arc<str>>,
    /// When the event was published (Unix µs; 0 = not measured).
    pub published_us: i64,
    /// Counts the frame in the client's mailbox backlog until it is handled (set by `offer`).
    pub queued: Option<InFlight>,
}

impl Push {
    pub fn new(
        text: Arc<str>,
        room: Option<RoomFrame>,
        id: Option<Arc<str>>,
        published_us: i64,
    ) -> Self {
        Self {
            text,
            room,
            id,
            published_us,
            queued: None,
        }
    }
}

impl Clone for Push {
    /// A copy for another client: not yet queued anywhere.
    fn clone(&self) -> Self {
        Self::new(
            self.text.clone(),
            self.room,
            self.id.clone(),
            self.published_us,
        )
    }
}

/// Close a client with this WebSocket close code and reason.
#[derive(Clone, Message)]
#[rtype(result = "()")]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
}

/// What happened to one offered frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Sent,
    /// The client's queue is full: the frame is dropped and the client is (now) lagged.
    Slow,
    /// The client has gone.
    Gone,
}

#[derive(Clone)]
pub struct Outlet {
    pub socket_id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub push: Recipient<Push>,
    pub close: Recipient<Close>,
    pub lagged: Arc<AtomicBool>,
    /// Slow consumers of this client's kind (`airbar_slow_consumers_total{kind=…}`).
    pub slow: Counter,
    /// The client actor's own probe (its mailbox backlog).
    pub client: ActorProbe,
}

impl Outlet {
    /// Offers a frame without waiting (`probe` is the offering actor's). The first time the
    /// client's queue is found full it is counted as a slow consumer and logged.
    pub fn offer(&self, mut push: Push, probe: &ActorProbe) -> Offer {
        push.queued = Some(self.client.track());
        match self.push.try_send(push) {
            Ok(()) => {
                probe.sent();
                Offer::Sent
            }
            Err(SendError::Full(_)) => {
                probe.dropped();
                if !self.lagged.swap(true, Ordering::Relaxed) {
                    self.slow.inc();
                    tracing::warn!(user_id = %self.user_id, socket_id = %self.socket_id,
                        "slow consumer: outbound queue full, disconnecting");
                    // Usually refused too (same mailbox); the lagged flag closes it regardless.
                    let _ = self.close.try_send(Close {
                        code: 1008,
                        reason: "slow consumer",
                    });
                }
                Offer::Slow
            }
            Err(SendError::Closed(_)) => {
                probe.dropped();
                Offer::Gone
            }
        }
    }

    pub fn is_lagged(&self) -> bool {
        self.lagged.load(Ordering::Relaxed)
    }
}
