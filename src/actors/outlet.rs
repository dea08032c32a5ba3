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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::prelude::SendError;
use actix::{Actor, Addr, Handler, Message, Recipient};
use prometheus_client::metrics::counter::Counter;
use uuid::Uuid;

use super::probe::{ActorProbe, InFlight};
use crate::services::events::now_us;
use crate::telemetry::metrics::{KindLabels, Metrics};

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

/// A client's slow-consumer mark, shared by the client and every room and hub offering it
/// frames: set (and counted, once) when its queue is found full; the client closes when it sees
/// it.
#[derive(Clone)]
pub struct Lag {
    flag: Arc<AtomicBool>,
    /// Slow consumers of this client's kind (`airbar_slow_consumers_total{kind=…}`).
    slow: Counter,
}

impl Lag {
    pub fn new(metrics: &Metrics, kind: &'static str) -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
            slow: metrics
                .realtime
                .slow_consumers
                .get_or_create_owned(&KindLabels { kind }),
        }
    }

    /// Marks the client lagged; `true` (and counted, logged) the first time.
    pub fn mark(&self, user_id: Uuid) -> bool {
        let first = !self.flag.swap(true, Ordering::Relaxed);
        if first {
            self.slow.inc();
            tracing::warn!(%user_id, "slow consumer: outbound queue full, disconnecting");
        }
        first
    }

    pub fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

/// A frame was written to a client: counts it and times it from its publication.
pub fn delivered(metrics: &Metrics, probe: &ActorProbe, published_us: i64) {
    probe.sent();
    if published_us > 0 {
        let seconds = (now_us() - published_us).max(0) as f64 / 1e6;
        metrics.realtime.fanout_latency.observe(seconds);
    }
}

#[derive(Clone)]
pub struct Outlet {
    pub socket_id: Uuid,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub push: Recipient<Push>,
    pub close: Recipient<Close>,
    pub lag: Lag,
    /// The client actor's own probe (its mailbox backlog).
    pub client: ActorProbe,
}

impl Outlet {
    /// The outlet of client actor `addr`.
    pub fn new<A>(
        (socket_id, user_id, session_id): (Uuid, Uuid, Uuid),
        addr: &Addr<A>,
        lag: &Lag,
        client: &ActorProbe,
    ) -> Self
    where
        A: Actor + Handler<Push> + Handler<Close>,
        A::Context: ToEnvelope<A, Push> + ToEnvelope<A, Close>,
    {
        Self {
            socket_id,
            user_id,
            session_id,
            push: addr.clone().recipient(),
            close: addr.clone().recipient(),
            lag: lag.clone(),
            client: client.clone(),
        }
    }

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
                if self.lag.mark(self.user_id) {
                    // Usually refused too (same mailbox); the mark closes it regardless.
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
}

/// The clients a chat room or a user hub fans out to.
#[derive(Default)]
pub struct Outlets(HashMap<Uuid, Outlet>);

impl Outlets {
    /// Adds a client, unless it closed while joining; `false` then.
    pub fn join(&mut self, outlet: Outlet) -> bool {
        if !outlet.push.connected() {
            return false;
        }
        self.0.insert(outlet.socket_id, outlet);
        true
    }

    pub fn leave(&mut self, socket_id: Uuid) {
        self.0.remove(&socket_id);
    }

    /// Drops clients that went away without a `Leave` reaching here.
    pub fn prune(&mut self) {
        self.0.retain(|_, o| o.push.connected());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Outlet> {
        self.0.values()
    }

    /// Offers `push` to every client (but those of `skip_user`) and drops the ones gone.
    pub fn fan_out(&mut self, push: &Push, probe: &ActorProbe, skip_user: Option<Uuid>) {
        self.0.retain(|_, outlet| {
            Some(outlet.user_id) == skip_user || outlet.offer(push.clone(), probe) != Offer::Gone
        });
    }
}
