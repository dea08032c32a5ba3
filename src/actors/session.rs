//! `WsSession`: one actor per WebSocket connection. Says `hello`, keeps the heartbeat (a ping
//! every 20 s, closed after 60 s without a pong), limits frame size (64 KiB, else close 1009)
//! and client message rate, joins the user's `UserHub` for fan-out, and closes with 1001 when
//! the node shuts down.

use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Handler, Running, StreamHandler,
    WrapFuture,
};
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError};
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use super::probe::ActorProbe;
use super::registry::{GetOrStart, Registry};
use super::user_hub::{self, Close, Join, Leave, Push, UserHub};

pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(20);
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Client messages per second (sustained) and burst; beyond, an `error` frame; far beyond, close.
const RATE_PER_SEC: f64 = 20.0;
const BURST: f64 = 40.0;
const STRIKES_BEFORE_CLOSE: u32 = 50;

pub struct WsSession {
    socket_id: Uuid,
    user_id: Uuid,
    session_id: Uuid,
    last_pong: Instant,
    registry: Addr<Registry>,
    hub: Option<Addr<UserHub>>,
    hub_probe: ActorProbe,
    probe: ActorProbe,
    shutdown: watch::Receiver<bool>,
    unlimited: bool,
    tokens: f64,
    refilled: Instant,
    strikes: u32,
}

pub struct SessionDeps {
    pub registry: Addr<Registry>,
    pub probe: ActorProbe,
    pub hub_probe: ActorProbe,
    pub shutdown: watch::Receiver<bool>,
    /// The rate-limit bypass token was presented at the upgrade (load tests).
    pub unlimited: bool,
}

impl WsSession {
    pub fn new(user_id: Uuid, session_id: Uuid, deps: SessionDeps) -> Self {
        Self {
            socket_id: Uuid::now_v7(),
            user_id,
            session_id,
            last_pong: Instant::now(),
            registry: deps.registry,
            hub: None,
            hub_probe: deps.hub_probe,
            probe: deps.probe,
            shutdown: deps.shutdown,
            unlimited: deps.unlimited,
            tokens: BURST,
            refilled: Instant::now(),
            strikes: 0,
        }
    }

    fn send_json(ctx: &mut ws::WebsocketContext<Self>, value: &serde_json::Value) {
        ctx.text(value.to_string());
    }

    fn error(ctx: &mut ws::WebsocketContext<Self>, code: &str, message: &str) {
        Self::send_json(
            ctx,
            &json!({"type": "error", "code": code, "message": message}),
        );
    }

    fn close(ctx: &mut ws::WebsocketContext<Self>, code: CloseCode, reason: &str) {
        ctx.close(Some(CloseReason {
            code,
            description: Some(reason.to_owned()),
        }));
        ctx.stop();
    }

    /// Token bucket per connection; `false` when this message is over the limit.
    fn admit(&mut self) -> bool {
        if self.unlimited {
            return true;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * RATE_PER_SEC).min(BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.admit() {
            self.strikes += 1;
            if self.strikes >= STRIKES_BEFORE_CLOSE {
                return Self::close(ctx, CloseCode::Policy, "message rate limit");
            }
            return Self::error(ctx, "rate_limited", "Too many messages; slow down.");
        }
        let frame: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => {
                return Self::error(ctx, "bad_frame", "Frames are JSON objects with a `type`.")
            }
        };
        match frame.get("type").and_then(|t| t.as_str()) {
            Some("ping") => Self::send_json(ctx, &json!({"type": "pong"})),
            Some("subscribe" | "unsubscribe" | "send" | "typing" | "read" | "position") => {
                Self::error(
                    ctx,
                    "not_available",
                    "Chat and tracking channels are not available on this server yet.",
                )
            }
            _ => Self::error(ctx, "bad_frame", "Unknown frame type."),
        }
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.probe.started();
        ctx.set_mailbox_capacity(256);
        Self::send_json(
            ctx,
            &json!({"type": "hello", "user_id": self.user_id, "session_id": self.session_id}),
        );
        ctx.run_interval(HEARTBEAT_EVERY, |this, ctx| {
            if this.last_pong.elapsed() > CLIENT_TIMEOUT {
                return Self::close(ctx, CloseCode::Policy, "heartbeat timeout");
            }
            ctx.ping(b"");
        });

        // Join the user's hub (started on demand) for their events.
        let user_id = self.user_id;
        let hub_probe = self.hub_probe.clone();
        let get = GetOrStart::<UserHub> {
            kind: user_hub::KIND,
            id: user_id.to_string(),
            start: Box::new(move || UserHub::new(user_id, hub_probe).start()),
        };
        let join = Join {
            socket_id: self.socket_id,
            session_id: self.session_id,
            push: ctx.address().recipient(),
            close: ctx.address().recipient(),
        };
        ctx.spawn(
            self.registry
                .send(get)
                .into_actor(self)
                .map(move |hub, this, ctx| match hub {
                    Ok(hub) => {
                        hub.do_send(join);
                        this.hub = Some(hub);
                    }
                    Err(_) => Self::close(ctx, CloseCode::Error, "server busy"),
                }),
        );

        // Going away when the node shuts down.
        let mut shutdown = self.shutdown.clone();
        ctx.spawn(
            async move {
                while !*shutdown.borrow_and_update() {
                    if shutdown.changed().await.is_err() {
                        return;
                    }
                }
            }
            .into_actor(self)
            .map(|(), _, ctx| Self::close(ctx, CloseCode::Away, "server shutting down")),
        );
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        if let Some(hub) = &self.hub {
            hub.do_send(Leave {
                socket_id: self.socket_id,
            });
        }
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.probe.stopped();
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        self.probe.handled();
        match msg {
            Ok(ws::Message::Ping(p)) => {
                self.last_pong = Instant::now();
                ctx.pong(&p);
            }
            Ok(ws::Message::Pong(_)) => self.last_pong = Instant::now(),
            Ok(ws::Message::Text(text)) => {
                self.last_pong = Instant::now();
                self.on_text(&text, ctx);
            }
            Ok(ws::Message::Binary(_)) => {
                Self::error(ctx, "bad_frame", "Binary frames are not accepted.")
            }
            Ok(ws::Message::Close(_)) => ctx.stop(),
            Ok(ws::Message::Continuation(_) | ws::Message::Nop) => {}
            Err(ProtocolError::Overflow) => Self::close(ctx, CloseCode::Size, "frame too large"),
            Err(_) => Self::close(ctx, CloseCode::Protocol, "protocol error"),
        }
    }
}

impl Handler<Push> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Push, ctx: &mut Self::Context) {
        ctx.text(msg.0.as_ref());
    }
}

impl Handler<Close> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Self::Context) {
        let code = match msg.code {
            1001 => CloseCode::Away,
            1009 => CloseCode::Size,
            _ => CloseCode::Policy,
        };
        Self::close(ctx, code, msg.reason);
    }
}
