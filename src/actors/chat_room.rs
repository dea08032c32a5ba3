//! One `ChatRoom` per match room with subscribers on this node: the sockets subscribed to
//! `chat:<room>`, to which it fans out the room's stored messages (in the order the
//! `RedisBridge` receives them; each socket re-orders by `seq` and drops duplicates), typing and
//! read receipts. Started on demand by the `Registry` when a socket subscribes, stopped after
//! `realtime.room_idle_secs` without subscribers; a room that stopped or failed is replaced by a
//! fresh one on the next subscribe, and holds nothing the database does not (messages are
//! persisted and numbered by `services::chat` before they are published).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message, Running};
use uuid::Uuid;

use super::outlet::{Outlet, Outlets, Push, RoomFrame};
use super::probe::ActorProbe;

pub const KIND: &str = "chat_room";
const MAILBOX: usize = 4096;

pub struct ChatRoom {
    room_id: Uuid,
    subscribers: Outlets,
    probe: ActorProbe,
    idle_after: Duration,
    empty_since: Option<Instant>,
}

impl ChatRoom {
    pub fn new(room_id: Uuid, probe: ActorProbe, idle_after: Duration) -> Self {
        Self {
            room_id,
            subscribers: Outlets::default(),
            probe,
            idle_after,
            empty_since: Some(Instant::now()),
        }
    }

    fn fan_out(&mut self, push: &Push, skip_user: Option<Uuid>) {
        self.subscribers.fan_out(push, &self.probe, skip_user);
        self.note_if_empty();
    }

    /// Starts the idle clock when the last subscriber has gone.
    fn note_if_empty(&mut self) {
        if self.subscribers.is_empty() && self.empty_since.is_none() {
            self.empty_since = Some(Instant::now());
        }
    }
}

impl Actor for ChatRoom {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.probe.started();
        let every = (self.idle_after / 2).max(Duration::from_millis(50));
        ctx.run_interval(every, |this, ctx| {
            this.subscribers.prune();
            this.note_if_empty();
            if this
                .empty_since
                .is_some_and(|since| since.elapsed() >= this.idle_after)
            {
                tracing::debug!(room_id = %this.room_id, "idle chat room stopped");
                ctx.stop();
            }
        });
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if self.subscribers.is_empty() {
            Running::Stop
        } else {
            Running::Continue
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.probe.stopped();
    }
}

/// A socket subscribed to the room (its membership is checked by the replay that follows).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join(pub Outlet);

impl Handler<Join> for ChatRoom {
    type Result = ();

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) {
        self.probe.handled();
        if self.subscribers.join(msg.0) {
            self.empty_since = None;
        }
    }
}

/// A socket unsubscribed or closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub socket_id: Uuid,
}

impl Handler<Leave> for ChatRoom {
    type Result = ();

    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        self.probe.handled();
        self.subscribers.leave(msg.socket_id);
        self.note_if_empty();
    }
}

/// A stored message, for every subscriber.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Post {
    pub text: Arc<str>,
    pub seq: i64,
    pub published_us: i64,
}

impl Handler<Post> for ChatRoom {
    type Result = ();

    fn handle(&mut self, msg: Post, _: &mut Context<Self>) {
        self.probe.handled();
        let frame = RoomFrame::Message {
            room: self.room_id,
            seq: msg.seq,
        };
        let push = Push::new(msg.text, Some(frame), None, msg.published_us);
        self.fan_out(&push, None);
    }
}

/// Typing or a read receipt from `from`: for the other member's subscribed sockets.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Signal {
    pub text: Arc<str>,
    pub from: Uuid,
    pub published_us: i64,
}

impl Handler<Signal> for ChatRoom {
    type Result = ();

    fn handle(&mut self, msg: Signal, _: &mut Context<Self>) {
        self.probe.handled();
        let push = Push::new(
            msg.text,
            Some(RoomFrame::Ephemeral { room: self.room_id }),
            None,
            msg.published_us,
        );
        self.fan_out(&push, Some(msg.from));
    }
}
