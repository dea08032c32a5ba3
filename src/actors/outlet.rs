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
    /// `arriving` or a status change of a watched parcel: for a socket whose `tracking:`
    /// subscription has been answered.
    Tracking { match_id: Uuid },
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

/// The one position frame waiting for a watcher of one tracked parcel: a newer frame replaces
/// an older one not yet taken (a slow watcher gets the latest position, never a queue), and
/// the watcher is woken once per frame it has not yet taken.
#[derive(Debug, Default)]
pub struct Slot {
    frame: std::sync::Mutex<Option<(Arc<str>, i64)>>,
    /// A `Wake` is on its way (or the watcher is not taking frames yet).
    armed: AtomicBool,
}

impl Slot {
    /// A slot that stays quiet until the watcher first `take`s (its subscription is answered
    /// first).
    pub fn held() -> Self {
        Self {
            frame: std::sync::Mutex::new(None),
            armed: AtomicBool::new(true),
        }
    }

    /// Puts a frame; `(replaced an untaken one, a wake-up is due)`.
    fn put(&self, text: Arc<str>, published_us: i64) -> (bool, bool) {
        let replaced = self
            .frame
            .lock()
            .map(|mut f| f.replace((text, published_us)).is_some())
            .unwrap_or(false);
        (replaced, !self.armed.swap(true, Ordering::AcqRel))
    }

    /// Takes the waiting frame (and asks to be woken for the next one).
    pub fn take(&self) -> Option<(Arc<str>, i64)> {
        self.armed.store(false, Ordering::Release);
        self.frame.lock().ok().and_then(|mut f| f.take())
    }

    fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
    }

    /// A frame waits and no wake-up is on its way (the last one found the mailbox full).
    fn stranded(&self) -> bool {
        !self.armed.load(Ordering::Acquire)
            && self.frame.lock().map(|f| f.is_some()).unwrap_or(false)
    }
}

/// Tells a watcher that its slot for `match_id` holds a frame.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake {
    pub match_id: Uuid,
    pub slot: Arc<Slot>,
}

/// A client watching one parcel's tracker: a socket of the sender or the traveler, or the
/// recipient's event stream (`user` `None`).
#[derive(Clone)]
pub struct Watcher {
    pub socket_id: Uuid,
    pub user: Option<Uuid>,
    pub slot: Arc<Slot>,
    pub wake: Recipient<Wake>,
    /// For the frames that must not be coalesced (`arriving`, status changes).
    pub push: Recipient<Push>,
}

impl Watcher {
    /// Offers the latest position frame (see `Slot`): `Slow` when the watcher's mailbox was full
    /// for the wake-up (the frame waits in the slot for `wake` to be tried again), `Gone` when
    /// the watcher has gone.
    pub fn offer_latest(
        &self,
        match_id: Uuid,
        text: Arc<str>,
        published_us: i64,
        probe: &ActorProbe,
        coalesced: &Counter,
    ) -> Offer {
        let (replaced, wake) = self.slot.put(text, published_us);
        if replaced {
            coalesced.inc();
        }
        if wake {
            return self.wake(match_id, probe);
        }
        if self.wake.connected() {
            Offer::Sent
        } else {
            Offer::Gone
        }
    }

    /// Wakes the watcher for its slot; a full mailbox leaves the frame for a later try (`Slow`).
    pub fn wake(&self, match_id: Uuid, probe: &ActorProbe) -> Offer {
        let wake = Wake {
            match_id,
            slot: self.slot.clone(),
        };
        match self.wake.try_send(wake) {
            Ok(()) => {
                probe.sent();
                Offer::Sent
            }
            Err(SendError::Full(_)) => {
                probe.dropped();
                self.slot.disarm();
                Offer::Slow
            }
            Err(SendError::Closed(_)) => Offer::Gone,
        }
    }

    /// A frame is waiting that no wake-up covers.
    pub fn stranded(&self) -> bool {
        self.slot.stranded()
    }

    /// Offers a frame that is not coalesced; `false` when the watcher has gone. A full queue
    /// drops it (an `arriving` or a status change is also in the REST view).
    pub fn offer(&self, push: Push, probe: &ActorProbe) -> bool {
        match self.push.try_send(push) {
            Ok(()) => {
                probe.sent();
                true
            }
            Err(SendError::Full(_)) => {
                probe.dropped();
                true
            }
            Err(SendError::Closed(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::Metrics;
    use actix::{Actor, Context};

    /// A watcher that counts its wake-ups and the frames it takes.
    #[derive(Default)]
    struct Reader {
        wakes: usize,
        taken: Vec<Arc<str>>,
    }
    impl Actor for Reader {
        type Context = Context<Self>;
    }
    impl Handler<Wake> for Reader {
        type Result = ();
        fn handle(&mut self, msg: Wake, _: &mut Context<Self>) {
            self.wakes += 1;
            if let Some((text, _)) = msg.slot.take() {
                self.taken.push(text);
            }
        }
    }
    impl Handler<Push> for Reader {
        type Result = ();
        fn handle(&mut self, _: Push, _: &mut Context<Self>) {}
    }
    struct Report;
    impl Message for Report {
        type Result = (usize, Vec<Arc<str>>);
    }
    impl Handler<Report> for Reader {
        type Result = actix::MessageResult<Report>;
        fn handle(&mut self, _: Report, _: &mut Context<Self>) -> Self::Result {
            actix::MessageResult((self.wakes, self.taken.clone()))
        }
    }

    fn watcher_of(reader: &actix::Addr<Reader>) -> Watcher {
        Watcher {
            socket_id: Uuid::now_v7(),
            user: None,
            slot: Arc::new(Slot::default()),
            wake: reader.clone().recipient(),
            push: reader.clone().recipient(),
        }
    }

    #[actix::test]
    async fn a_watcher_that_does_not_keep_up_gets_the_newest_frame_and_one_wake_up() {
        let metrics = Metrics::new();
        let probe = ActorProbe::new(&metrics.actors, "parcel_tracker");
        let reader = Reader::default().start();
        let watcher = watcher_of(&reader);
        let match_id = Uuid::now_v7();
        // 1 000 positions while the reader does not run: one frame held, one wake-up queued.
        for i in 0..1000 {
            let text: Arc<str> = Arc::from(format!("p{i}"));
            let offer =
                watcher.offer_latest(match_id, text, 0, &probe, &metrics.realtime.coalesced);
            assert_eq!(offer, Offer::Sent);
        }
        let (wakes, taken) = reader.send(Report).await.unwrap();
        assert_eq!((wakes, taken), (1, vec![Arc::<str>::from("p999")]));
        assert_eq!(metrics.realtime.coalesced.get(), 999);

        // Keeping up again: each frame gets its own wake-up.
        for i in 0..3 {
            watcher.offer_latest(
                match_id,
                Arc::from(format!("q{i}")),
                0,
                &probe,
                &metrics.realtime.coalesced,
            );
            let (_, taken) = reader.send(Report).await.unwrap();
            assert_eq!(taken.last().map(|t| t.to_string()), Some(format!("q{i}")));
        }
        assert_eq!(reader.send(Report).await.unwrap().0, 4);

        // A held slot (a subscription not yet answered) wakes no one until its first take.
        let held = Watcher {
            slot: Arc::new(Slot::held()),
            ..watcher.clone()
        };
        held.offer_latest(
            match_id,
            Arc::from("r"),
            0,
            &probe,
            &metrics.realtime.coalesced,
        );
        assert_eq!(reader.send(Report).await.unwrap().0, 4);
        assert_eq!(
            held.slot.take().as_ref().map(|(t, _)| t.to_string()),
            Some("r".to_owned())
        );
    }

    #[actix::test]
    async fn a_watcher_whose_wake_up_found_a_full_mailbox_keeps_its_frame_until_woken_again() {
        let metrics = Metrics::new();
        let probe = ActorProbe::new(&metrics.actors, "parcel_tracker");
        let coalesced = &metrics.realtime.coalesced;
        // A mailbox of one, not read until this test awaits.
        let reader = Reader::create(|ctx| {
            ctx.set_mailbox_capacity(1);
            Reader::default()
        });
        let watcher = watcher_of(&reader);
        let match_id = Uuid::now_v7();
        let offer =
            |text: &str| watcher.offer_latest(match_id, Arc::from(text), 0, &probe, coalesced);
        assert_eq!(offer("p1"), Offer::Sent);
        // The socket takes the frame another way (its subscription's answer does) while the
        // wake-up still waits in the full mailbox: the next wake-up is refused.
        assert!(watcher.slot.take().is_some());
        assert_eq!(offer("p2"), Offer::Slow);
        assert!(watcher.stranded());
        // A newer frame replaces the waiting one (and tries a wake-up again, refused again).
        assert_eq!(offer("p3"), Offer::Slow);
        assert!(watcher.stranded());
        assert_eq!(coalesced.get(), 1);

        // Once the reader has caught up, the retry wakes it and it takes the newest frame.
        reader.send(Report).await.unwrap();
        assert_eq!(watcher.wake(match_id, &probe), Offer::Sent);
        let (_, taken) = reader.send(Report).await.unwrap();
        assert_eq!(taken.last().map(|t| t.to_string()), Some("p3".to_owned()));
        assert!(!watcher.stranded());
    }
}
