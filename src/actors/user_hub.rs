//! One `UserHub` per online user (while they have at least one socket or event stream on this
//! node): fans the user's events out to every one of their clients, claims their presence
//! (announced by `services::presence` on the first claim across nodes and the last release),
//! and closes the clients of a revoked session. Started on demand through the `Registry`; it
//! lingers `realtime.presence_grace_ms` after the last client leaves, so a reconnect does not
//! flap the user offline and online.

use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, Running,
    WrapFuture,
};
use uuid::Uuid;

use super::outlet::{Close, Outlet, Outlets, Push};
use super::probe::ActorProbe;
use super::registry::Forward;
use crate::services::presence;
use crate::state::AppState;

pub const KIND: &str = "user_hub";
const MAILBOX: usize = 1024;

pub struct UserHub {
    user_id: Uuid,
    outlets: Outlets,
    probe: ActorProbe,
    state: actix_web::web::Data<AppState>,
    /// This node's presence claim is held (or being taken).
    claimed: bool,
    grace: Duration,
}

impl UserHub {
    pub fn new(user_id: Uuid, state: actix_web::web::Data<AppState>) -> Self {
        Self {
            user_id,
            outlets: Outlets::default(),
            probe: ActorProbe::new(&state.metrics.actors, KIND),
            grace: Duration::from_millis(state.settings.realtime.presence_grace_ms),
            state,
            claimed: false,
        }
    }

    fn claim(&mut self, ctx: &mut Context<Self>) {
        if self.claimed {
            return;
        }
        self.claimed = true;
        let (state, user) = (self.state.clone(), self.user_id);
        ctx.wait(async move { presence::arrive(&state, user).await }.into_actor(self));
    }

    /// After the grace period with no client: release the presence claim, then stop (unless a
    /// client joined meanwhile).
    fn linger(&mut self, ctx: &mut Context<Self>) {
        if tokio::runtime::Handle::try_current().is_err() {
            // The runtime is shutting down (no timers any more): nothing to linger for.
            return ctx.stop();
        }
        ctx.run_later(self.grace, |this, ctx| {
            if !this.outlets.is_empty() || !this.claimed {
                return;
            }
            this.claimed = false;
            let (state, user) = (this.state.clone(), this.user_id);
            ctx.wait(
                async move { presence::depart(&state, user).await }
                    .into_actor(this)
                    .map(|(), this, ctx| {
                        if this.outlets.is_empty() {
                            ctx.stop();
                        }
                    }),
            );
        });
    }
}

impl Actor for UserHub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.probe.started();
        ctx.run_interval(presence::REFRESH_EVERY, |this, ctx| {
            this.outlets.prune();
            if this.outlets.is_empty() {
                this.linger(ctx);
            }
            if this.claimed {
                let (state, user) = (this.state.clone(), this.user_id);
                ctx.spawn(async move { presence::arrive(&state, user).await }.into_actor(this));
            }
        });
    }

    fn stopping(&mut self, ctx: &mut Self::Context) -> Running {
        if self.outlets.is_empty() {
            Running::Stop
        } else {
            self.claim(ctx);
            Running::Continue
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.probe.stopped();
    }
}

/// A client of this user connected.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Join(pub Outlet);

impl Handler<Join> for UserHub {
    type Result = ();

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) {
        self.probe.handled();
        if self.outlets.join(msg.0) {
            self.claim(ctx);
        } else if self.outlets.is_empty() {
            // The client closed while joining.
            self.linger(ctx);
        }
    }
}

/// Tells the user's hub that client `socket_id` went away: directly, or through the registry
/// while the client was still joining (the registry knows the hub the join went to).
pub fn leave(state: &AppState, hub: Option<&Addr<UserHub>>, user_id: Uuid, socket_id: Uuid) {
    let leave = Leave { socket_id };
    match hub {
        Some(hub) => hub.do_send(leave),
        None => state
            .registry
            .do_send(Forward::<UserHub, _>::new(KIND, user_id, leave)),
    }
}

/// A client went away; the hub lingers, then stops, once the last one has.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub socket_id: Uuid,
}

impl Handler<Leave> for UserHub {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        self.probe.handled();
        self.outlets.leave(msg.socket_id);
        if self.outlets.is_empty() {
            self.linger(ctx);
        }
    }
}

/// A frame for every client of the user.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub text: Arc<str>,
    pub id: Option<Arc<str>>,
    pub published_us: i64,
}

impl Handler<Deliver> for UserHub {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        self.probe.handled();
        if self.outlets.is_empty() {
            return;
        }
        let push = Push::new(msg.text, None, msg.id, msg.published_us);
        self.outlets.fan_out(&push, &self.probe, None);
        if self.outlets.is_empty() {
            self.linger(ctx);
        }
    }
}

/// A device session was revoked: its clients close (policy violation, "session revoked").
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionRevoked {
    pub session_id: Uuid,
}

impl Handler<SessionRevoked> for UserHub {
    type Result = ();

    fn handle(&mut self, msg: SessionRevoked, _: &mut Context<Self>) {
        self.probe.handled();
        for outlet in self
            .outlets
            .iter()
            .filter(|o| o.session_id == msg.session_id)
        {
            let _ = outlet.close.try_send(Close {
                code: 1008,
                reason: "session revoked",
            });
        }
    }
}
