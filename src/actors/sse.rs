//! `SseSession`: one actor per `GET /api/notifications/stream` (Server-Sent Events). It joins
//! the user's `UserHub` like a socket does and writes the same user events as SSE records (`id:`
//! the user-log id, `data:` the JSON frame). With `Last-Event-ID` it first replays the user's
//! logged events after that id, holding live ones meanwhile and de-duplicating by id. A comment
//! line every `realtime.sse_keepalive_secs` keeps proxies from closing an idle stream. Its outbound queue is a
//! bounded channel to the response body: a full one (or a full mailbox) is a slow consumer and
//! ends the stream; the client reconnects with `Last-Event-ID`.

use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Running, WrapFuture,
};
use actix_web::web::Bytes;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::outlet::{delivered, Close, Lag, Outlet, Push};
use super::probe::ActorProbe;
use super::session::join_hub;
use super::user_hub::{self, UserHub};
use crate::services::user_log::{EventId, KEEP};
use crate::state::AppState;

pub const KIND: &str = "sse_stream";
/// Records buffered towards the response body before the stream counts as a slow consumer.
pub const QUEUE: usize = 64;
const MAILBOX: usize = 256;
/// The reconnection delay suggested to clients (`retry:`).
const RETRY_MS: u32 = 2000;

pub struct SseSession {
    socket_id: Uuid,
    user_id: Uuid,
    session_id: Uuid,
    tx: mpsc::Sender<Bytes>,
    hub: Option<Addr<UserHub>>,
    state: actix_web::web::Data<AppState>,
    probe: ActorProbe,
    lag: Lag,
    /// Resuming: the last id the client has; live events wait in `held` until the replay ends.
    resume_after: Option<EventId>,
    replaying: bool,
    held: Vec<Push>,
    last_id: Option<EventId>,
}

impl SseSession {
    /// A session writing into `tx` (the response body reads the other end).
    pub fn new(
        user_id: Uuid,
        session_id: Uuid,
        resume_after: Option<EventId>,
        tx: mpsc::Sender<Bytes>,
        state: actix_web::web::Data<AppState>,
    ) -> Self {
        Self {
            socket_id: Uuid::now_v7(),
            user_id,
            session_id,
            tx,
            hub: None,
            probe: ActorProbe::new(&state.metrics.actors, KIND),
            lag: Lag::new(&state.metrics, KIND),
            replaying: resume_after.is_some(),
            resume_after,
            held: Vec::new(),
            last_id: resume_after,
            state,
        }
    }

    fn slow(&self, ctx: &mut Context<Self>) {
        self.lag.mark(self.user_id);
        ctx.stop();
    }

    /// Queues raw SSE text; a full queue ends the stream (slow consumer), a closed one (client
    /// gone) stops the actor.
    fn send_raw(&self, ctx: &mut Context<Self>, text: String) -> bool {
        match self.tx.try_send(Bytes::from(text)) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow(ctx);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                ctx.stop();
                false
            }
        }
    }

    fn record(id: Option<&str>, data: &str) -> String {
        let mut out = String::with_capacity(data.len() + 48);
        if let Some(id) = id {
            out.push_str("id: ");
            out.push_str(id);
            out.push('\n');
        }
        out.push_str("data: ");
        out.push_str(data);
        out.push_str("\n\n");
        out
    }

    fn write(&mut self, ctx: &mut Context<Self>, push: &Push) {
        let id = push.id.as_deref().and_then(EventId::parse);
        if let (Some(id), Some(last)) = (id, self.last_id) {
            if id <= last {
                return;
            }
        }
        if self.send_raw(ctx, Self::record(push.id.as_deref(), &push.text)) {
            if id.is_some() {
                self.last_id = id;
            }
            delivered(&self.state.metrics, &self.probe, push.published_us);
        }
    }

    fn outlet(&self, ctx: &mut Context<Self>) -> Outlet {
        let ids = (self.socket_id, self.user_id, self.session_id);
        Outlet::new(ids, &ctx.address(), &self.lag, &self.probe)
    }
}

impl Actor for SseSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.probe.started();
        self.send_raw(ctx, format!("retry: {RETRY_MS}\n\n"));
        let keep_alive = Duration::from_secs(self.state.settings.realtime.sse_keepalive_secs);
        ctx.run_interval(keep_alive, |this, ctx| {
            if this.lag.is_set() {
                return ctx.stop();
            }
            this.send_raw(ctx, ": keep-alive\n\n".to_owned());
        });

        let (state, outlet, user) = (self.state.clone(), self.outlet(ctx), self.user_id);
        let resume_after = self.resume_after;
        ctx.spawn(
            async move {
                let hub = join_hub(&state, outlet).await;
                let replay = match (hub.is_some(), resume_after) {
                    (true, Some(after)) => state.events.log().since(user, after).await,
                    _ => Vec::new(),
                };
                (hub, replay)
            }
            .into_actor(self)
            .map(|(hub, replay), this, ctx| {
                let Some(hub) = hub else {
                    return ctx.stop();
                };
                this.hub = Some(hub);
                for (id, frame) in replay {
                    let push =
                        Push::new(Arc::from(frame.to_string()), None, Some(Arc::from(id)), 0);
                    this.write(ctx, &push);
                }
                this.replaying = false;
                for push in std::mem::take(&mut this.held) {
                    this.write(ctx, &push);
                }
            }),
        );

        ctx.spawn(
            self.state
                .shutting_down()
                .into_actor(self)
                .map(|(), _, ctx| ctx.stop()),
        );
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        user_hub::leave(&self.state, self.hub.as_ref(), self.user_id, self.socket_id);
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.probe.stopped();
    }
}

impl Handler<Push> for SseSession {
    type Result = ();

    fn handle(&mut self, msg: Push, ctx: &mut Self::Context) {
        self.probe.handled();
        if self.lag.is_set() {
            return ctx.stop();
        }
        if self.replaying {
            if self.held.len() >= KEEP {
                return self.slow(ctx);
            }
            self.held.push(msg);
        } else {
            self.write(ctx, &msg);
        }
    }
}

impl Handler<Close> for SseSession {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
