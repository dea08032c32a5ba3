//! One `UserHub` per online user (while they have at least one socket on this node): fans the
//! user's events out to every one of their sessions, and closes the sockets of a revoked
//! session. Started on demand through the `Registry`, stops with the last socket.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, ActorContext, Context, Handler, Message, Recipient};
use uuid::Uuid;

use super::probe::ActorProbe;

pub const KIND: &str = "user_hub";

/// Which room a frame belongs to, for sockets that forward only their subscribed rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomFrame {
    /// A stored message: forwarded once, in `seq` order.
    Message { room: Uuid, seq: i64 },
    /// Typing and the like: forwarded as they come, never replayed.
    Ephemeral { room: Uuid },
}

/// A frame for a socket (serialised once for all the user's sockets).
#[derive(Clone, Message)]
#[rtype(result = "()")]
pub struct Push {
    pub text: Arc<str>,
    pub room: Option<RoomFrame>,
}

/// Close a socket with this WebSocket close code and reason.
#[derive(Clone, Message)]
#[rtype(result = "()")]
pub struct Close {
    pub code: u16,
    pub reason: &'static str,
}

struct Socket {
    session_id: Uuid,
    push: Recipient<Push>,
    close: Recipient<Close>,
}

pub struct UserHub {
    user_id: Uuid,
    sockets: HashMap<Uuid, Socket>,
    probe: ActorProbe,
}

impl UserHub {
    pub fn new(user_id: Uuid, probe: ActorProbe) -> Self {
        Self {
            user_id,
            sockets: HashMap::new(),
            probe,
        }
    }
}

impl Actor for UserHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        self.probe.started();
        tracing::debug!(user_id = %self.user_id, "user hub started");
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.probe.stopped();
    }
}

/// A socket of this user connected.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub socket_id: Uuid,
    pub session_id: Uuid,
    pub push: Recipient<Push>,
    pub close: Recipient<Close>,
}

impl Handler<Join> for UserHub {
    type Result = ();

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) {
        self.probe.handled();
        self.sockets.insert(
            msg.socket_id,
            Socket {
                session_id: msg.session_id,
                push: msg.push,
                close: msg.close,
            },
        );
    }
}

/// A socket went away; the hub stops with the last one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub socket_id: Uuid,
}

impl Handler<Leave> for UserHub {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        self.probe.handled();
        self.sockets.remove(&msg.socket_id);
        if self.sockets.is_empty() {
            ctx.stop();
        }
    }
}

/// An event for every socket of the user. A socket whose mailbox is full is a slow consumer:
/// it is told to close (it resumes later from its last sequence).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub text: Arc<str>,
    pub room: Option<RoomFrame>,
}

impl Handler<Deliver> for UserHub {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        self.probe.handled();
        for socket in self.sockets.values() {
            if socket
                .push
                .try_send(Push {
                    text: msg.text.clone(),
                    room: msg.room,
                })
                .is_err()
            {
                self.probe.dropped();
                let _ = socket.close.try_send(Close {
                    code: 1008,
                    reason: "slow consumer",
                });
            }
        }
    }
}

/// A device session was revoked: its sockets close (policy violation, "session revoked").
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionRevoked {
    pub session_id: Uuid,
}

impl Handler<SessionRevoked> for UserHub {
    type Result = ();

    fn handle(&mut self, msg: SessionRevoked, _: &mut Context<Self>) {
        self.probe.handled();
        for socket in self
            .sockets
            .values()
            .filter(|s| s.session_id == msg.session_id)
        {
            let _ = socket.close.try_send(Close {
                code: 1008,
                reason: "session revoked",
            });
        }
    }
}
