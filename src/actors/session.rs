//! `WsSession`: one actor per WebSocket connection. Says `hello`, keeps the heartbeat (a ping
//! every 20 s, closed after 60 s without a pong), limits frame size (64 KiB, else close 1009)
//! and client message rate, joins the user's `UserHub` for fan-out, and closes with 1001 when
//! the node shuts down.

use std::collections::HashMap;
use std::sync::Arc;
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
use super::user_hub::{self, Close, Join, Leave, Push, RoomFrame, UserHub};
use crate::domain::ids::{SessionId, UserId};
use crate::services::auth::AuthUser;
use crate::services::chat;
use crate::state::AppState;

/// Live messages held back while a subscription's replay is in flight; more is a slow room.
const MAX_REPLAY_BUFFER: usize = 1000;

/// A chat room this socket follows: messages are forwarded once, in sequence order.
struct RoomSub {
    replaying: bool,
    last_seq: i64,
    held: Vec<(i64, Arc<str>)>,
}

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
    state: actix_web::web::Data<AppState>,
    rooms: HashMap<Uuid, RoomSub>,
}

pub struct SessionDeps {
    pub state: actix_web::web::Data<AppState>,
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
            state: deps.state,
            rooms: HashMap::new(),
        }
    }

    fn auth(&self) -> AuthUser {
        AuthUser {
            user_id: UserId(self.user_id),
            session_id: SessionId(self.session_id),
        }
    }

    fn subscribe(&mut self, frame: &serde_json::Value, ctx: &mut ws::WebsocketContext<Self>) {
        let channel = frame["channel"].as_str().unwrap_or_default().to_owned();
        let Some(room_id) = channel
            .strip_prefix("chat:")
            .and_then(|r| r.parse::<Uuid>().ok())
        else {
            return Self::error(ctx, "forbidden", "Unknown channel.");
        };
        let since = frame["since_seq"].as_i64().unwrap_or(0).max(0);
        self.rooms.insert(
            room_id,
            RoomSub {
                replaying: true,
                last_seq: since,
                held: Vec::new(),
            },
        );
        let (state, auth) = (self.state.clone(), self.auth());
        let replay = async move { chat::replay(&state, auth, room_id, since).await };
        ctx.spawn(replay.into_actor(self).map(move |result, this, ctx| match result {
            Ok((last_seq, messages)) => {
                Self::send_json(ctx, &json!({"type": "subscribed", "channel": channel, "last_seq": last_seq}));
                let Some(sub) = this.rooms.get_mut(&room_id) else { return };
                for m in messages {
                    if m.seq > sub.last_seq {
                        sub.last_seq = m.seq;
                        ctx.text(m.frame().to_string());
                    }
                }
                let mut held = std::mem::take(&mut sub.held);
                held.sort_by_key(|(seq, _)| *seq);
                for (seq, text) in held {
                    if seq > sub.last_seq {
                        sub.last_seq = seq;
                        ctx.text(text.as_ref());
                    }
                }
                sub.replaying = false;
            }
            Err(_) => {
                this.rooms.remove(&room_id);
                Self::error(ctx, "forbidden", "This channel is not yours.");
            }
        }));
    }

    fn send_message(&mut self, frame: &serde_json::Value, ctx: &mut ws::WebsocketContext<Self>) {
        let room = frame["room_id"]
            .as_str()
            .and_then(|r| r.parse::<Uuid>().ok());
        let body = frame["body"].as_str().unwrap_or_default().to_owned();
        let client_msg_id = frame["client_msg_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let Some(room_id) = room else {
            return Self::error(ctx, "bad_frame", "`send` needs a room_id.");
        };
        let (state, auth) = (self.state.clone(), self.auth());
        let post = async move { chat::post(&state, auth, room_id, &body, &client_msg_id).await };
        ctx.spawn(post.into_actor(self).map(|result, _, ctx| match result {
            Ok((m, _)) => Self::send_json(
                ctx,
                &json!({"type": "ack", "client_msg_id": m.client_msg_id, "id": m.id, "seq": m.seq, "room_id": m.room_id}),
            ),
            Err(e) => {
                let code = if e.status().as_u16() == 404 { "forbidden" } else { e.code() };
                Self::error(ctx, code, &e.problem().detail);
            }
        }));
    }

    fn typing(&mut self, frame: &serde_json::Value, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(room_id) = frame["room_id"]
            .as_str()
            .and_then(|r| r.parse::<Uuid>().ok())
        else {
            return Self::error(ctx, "bad_frame", "`typing` needs a room_id.");
        };
        let (state, auth) = (self.state.clone(), self.auth());
        ctx.spawn(
            async move { chat::typing(&state, auth, room_id).await }
                .into_actor(self)
                .map(|r, _, ctx| {
                    if r.is_err() {
                        Self::error(ctx, "forbidden", "This room is not yours.");
                    }
                }),
        );
    }

    fn mark_read(&mut self, frame: &serde_json::Value, ctx: &mut ws::WebsocketContext<Self>) {
        let room = frame["room_id"]
            .as_str()
            .and_then(|r| r.parse::<Uuid>().ok());
        let (Some(room_id), Some(seq)) = (room, frame["seq"].as_i64()) else {
            return Self::error(ctx, "bad_frame", "`read` needs a room_id and a seq.");
        };
        let (state, auth) = (self.state.clone(), self.auth());
        ctx.spawn(
            async move { chat::read(&state, auth, room_id, seq).await }
                .into_actor(self)
                .map(|r, _, ctx| {
                    if r.is_err() {
                        Self::error(ctx, "forbidden", "This room is not yours.");
                    }
                }),
        );
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
            Some("subscribe") => self.subscribe(&frame, ctx),
            Some("unsubscribe") => {
                let room = frame["channel"]
                    .as_str()
                    .and_then(|c| c.strip_prefix("chat:"))
                    .and_then(|r| r.parse::<Uuid>().ok());
                if let Some(room) = room {
                    self.rooms.remove(&room);
                }
            }
            Some("send") => self.send_message(&frame, ctx),
            Some("read") => self.mark_read(&frame, ctx),
            Some("typing") => self.typing(&frame, ctx),
            Some("position") => Self::error(
                ctx,
                "not_available",
                "Tracking frames are not available on this server yet.",
            ),
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
        let (room, seq) = match msg.room {
            None => return ctx.text(msg.text.as_ref()),
            Some(RoomFrame::Ephemeral { room }) => {
                if self.rooms.get(&room).is_some_and(|sub| !sub.replaying) {
                    ctx.text(msg.text.as_ref());
                }
                return;
            }
            Some(RoomFrame::Message { room, seq }) => (room, seq),
        };
        let Some(sub) = self.rooms.get_mut(&room) else {
            return;
        };
        if sub.replaying {
            if sub.held.len() >= MAX_REPLAY_BUFFER {
                return Self::close(ctx, CloseCode::Policy, "slow consumer");
            }
            sub.held.push((seq, msg.text));
        } else if seq > sub.last_seq {
            sub.last_seq = seq;
            ctx.text(msg.text.as_ref());
        }
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
