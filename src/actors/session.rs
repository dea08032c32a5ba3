//! `WsSession`: one actor per WebSocket connection. Says `hello`, keeps the heartbeat (a ping
//! every 20 s, closed after 60 s without a pong), limits frame size (64 KiB, else close 1009)
//! and client message rate, joins the user's `UserHub` for their events, a `ChatRoom` per
//! subscribed chat channel and a `ParcelTracker` per `tracking:` channel, hands the traveler's
//! `position` frames to the parcel's tracker, and closes with 1001 when the node shuts down. Its outbound queue is its
//! bounded mailbox: a full one makes it a slow consumer (see `outlet`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::SendError;
use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Handler, Running, StreamHandler,
    WrapFuture,
};
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError};
use serde_json::json;
use uuid::Uuid;

use super::chat_room::{self, ChatRoom};
use super::outlet::{delivered, Close, Lag, Outlet, Push, RoomFrame, Slot, Wake, Watcher};
use super::probe::ActorProbe;
use super::registry::GetOrStart;
use super::tracker::{ParcelTracker, Report, Unwatch, Watch};
use super::tracking;
use super::user_hub::{self, UserHub};
use crate::domain::ids::{SessionId, UserId};
use crate::domain::tracking::Refusal;
use crate::services::auth::AuthUser;
use crate::services::chat;
use crate::services::tracking::PositionInput;
use crate::state::AppState;

pub const KIND: &str = "ws_session";
/// Frames queued for one socket before it counts as a slow consumer.
pub const MAILBOX: usize = 256;
/// `send` frames a socket may have waiting for their ack.
const MAX_PENDING_SENDS: usize = 64;
/// Attempts at joining a hub or room that is stopping at that very moment.
const JOIN_ATTEMPTS: usize = 3;

/// Joins the user's hub (started on demand); `None` when the registry is gone.
pub async fn join_hub(
    state: &actix_web::web::Data<AppState>,
    outlet: Outlet,
) -> Option<Addr<UserHub>> {
    let user = outlet.user_id;
    for _ in 0..JOIN_ATTEMPTS {
        let hub_state = state.clone();
        let get = GetOrStart::<UserHub> {
            kind: user_hub::KIND,
            id: user,
            start: Box::new(move || UserHub::new(user, hub_state).start()),
        };
        let hub = state.registry.send(get).await.ok()?;
        if hub.send(user_hub::Join(outlet.clone())).await.is_ok() {
            return Some(hub);
        }
    }
    None
}

/// Joins a room's actor (started on demand); `None` when the registry is gone.
async fn join_room(
    state: &actix_web::web::Data<AppState>,
    room_id: Uuid,
    outlet: Outlet,
) -> Option<Addr<ChatRoom>> {
    let idle = Duration::from_secs(state.settings.realtime.room_idle_secs);
    for _ in 0..JOIN_ATTEMPTS {
        let probe = ActorProbe::new(&state.metrics.actors, chat_room::KIND);
        let get = GetOrStart::<ChatRoom> {
            kind: chat_room::KIND,
            id: room_id,
            start: Box::new(move || ChatRoom::new(room_id, probe, idle).start()),
        };
        let room = state.registry.send(get).await.ok()?;
        if room.send(chat_room::Join(outlet.clone())).await.is_ok() {
            return Some(room);
        }
    }
    None
}

/// Live messages held back (during a subscription's replay, or waiting for an earlier `seq`
/// that is still on its way); more is a slow consumer.
const MAX_REPLAY_BUFFER: usize = 1000;

/// A chat room this socket follows: messages are forwarded once, in sequence order.
struct RoomSub {
    replaying: bool,
    last_seq: i64,
    /// seq → (frame, published µs), delivered once everything before it has been.
    held: BTreeMap<i64, (Arc<str>, i64)>,
    /// A gap check is scheduled.
    gap_check: bool,
    room: Option<Addr<ChatRoom>>,
}

/// A parcel this socket watches (`tracking:<match_id>`).
struct TrackSub {
    /// `None` while the subscription is being answered.
    tracker: Option<Addr<ParcelTracker>>,
    slot: Arc<Slot>,
}

/// Parcels one socket may watch at once, and trackers it keeps at hand for its positions.
const MAX_TRACKS: usize = 32;

/// How long a message waits for an earlier one still on its way (another node may publish
/// later than it committed) before the missing ones are read from the database.
const GAP_WAIT: Duration = Duration::from_millis(300);

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
    hub: Option<Addr<UserHub>>,
    lag: Lag,
    probe: ActorProbe,
    unlimited: bool,
    tokens: f64,
    refilled: Instant,
    strikes: u32,
    state: actix_web::web::Data<AppState>,
    rooms: HashMap<Uuid, RoomSub>,
    /// `send` frames awaiting their turn (posted one at a time, so a client's messages keep
    /// their order and one socket holds at most one database transaction).
    sends: VecDeque<(Uuid, String, String)>,
    sending: bool,
    tracks: HashMap<Uuid, TrackSub>,
    /// Trackers this socket reported positions to (the traveler's app), by match.
    reporting: HashMap<Uuid, Addr<ParcelTracker>>,
    /// Where trackers send the refusal of a position (made once).
    errors_to: Option<actix::Recipient<Push>>,
}

pub struct SessionDeps {
    pub state: actix_web::web::Data<AppState>,
    pub probe: ActorProbe,
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
            hub: None,
            lag: Lag::new(&deps.state.metrics, KIND),
            probe: deps.probe,
            unlimited: deps.unlimited,
            tokens: BURST,
            refilled: Instant::now(),
            strikes: 0,
            state: deps.state,
            rooms: HashMap::new(),
            sends: VecDeque::new(),
            sending: false,
            tracks: HashMap::new(),
            reporting: HashMap::new(),
            errors_to: None,
        }
    }

    fn outlet(&self, ctx: &mut ws::WebsocketContext<Self>) -> Outlet {
        let ids = (self.socket_id, self.user_id, self.session_id);
        Outlet::new(ids, &ctx.address(), &self.lag, &self.probe)
    }

    /// Writes one frame to the client.
    fn write(&self, ctx: &mut ws::WebsocketContext<Self>, text: &str, published_us: i64) {
        ctx.text(text);
        delivered(&self.state.metrics, &self.probe, published_us);
    }

    /// Delivers a room's held messages that are next in sequence; if some wait behind a gap,
    /// schedules a check that reads the missing ones from the database if they do not arrive.
    fn flush_room(&mut self, room: Uuid, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(sub) = self.rooms.get_mut(&room) else {
            return;
        };
        let mut ready = Vec::new();
        while let Some(entry) = sub.held.first_entry() {
            let seq = *entry.key();
            if seq > sub.last_seq + 1 {
                break;
            }
            let frame = entry.remove();
            if seq == sub.last_seq + 1 {
                sub.last_seq = seq;
                ready.push(frame);
            }
        }
        let schedule = !sub.held.is_empty() && !sub.gap_check;
        if schedule {
            sub.gap_check = true;
        }
        for (text, published_us) in ready {
            self.write(ctx, &text, published_us);
        }
        if schedule {
            ctx.run_later(GAP_WAIT, move |this, ctx| this.fill_gap(room, ctx));
        }
    }

    /// The gap before a room's held messages did not fill by itself: read it from PostgreSQL.
    fn fill_gap(&mut self, room: Uuid, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(sub) = self.rooms.get_mut(&room) else {
            return;
        };
        sub.gap_check = false;
        let Some(&first) = sub.held.keys().next() else {
            return;
        };
        if first == sub.last_seq + 1 {
            return self.flush_room(room, ctx);
        }
        let (after, missing) = (sub.last_seq, first - sub.last_seq - 1);
        let (state, auth) = (self.state.clone(), self.auth());
        let fetch = async move { chat::history(&state, auth, room, after, missing).await };
        ctx.spawn(fetch.into_actor(self).map(move |result, this, ctx| {
            if let (Ok(messages), Some(sub)) = (result, this.rooms.get_mut(&room)) {
                for m in messages.into_iter().filter(|m| m.seq > sub.last_seq) {
                    sub.held
                        .entry(m.seq)
                        .or_insert_with(|| (Arc::from(m.frame().to_string()), 0));
                }
            }
            this.flush_room(room, ctx);
        }));
    }

    /// A room actor that stopped or failed under this socket is replaced: the socket rejoins
    /// and replays from its last sequence, so nothing is lost.
    fn rejoin_stopped_rooms(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let stopped: Vec<(Uuid, i64)> = self
            .rooms
            .iter()
            .filter(|(_, sub)| sub.room.as_ref().is_some_and(|r| !r.connected()))
            .map(|(id, sub)| (*id, sub.last_seq))
            .collect();
        for (room_id, last_seq) in stopped {
            tracing::warn!(%room_id, "chat room actor gone under a subscriber; rejoining");
            self.join(room_id, format!("chat:{room_id}"), last_seq, false, ctx);
        }
    }

    fn leave_room(&mut self, room_id: Uuid) {
        if let Some(room) = self.rooms.remove(&room_id).and_then(|sub| sub.room) {
            room.do_send(chat_room::Leave {
                socket_id: self.socket_id,
            });
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
        if let Some(match_id) = channel
            .strip_prefix("tracking:")
            .and_then(|m| m.parse::<Uuid>().ok())
        {
            return self.watch(match_id, ctx);
        }
        let Some(room_id) = channel
            .strip_prefix("chat:")
            .and_then(|r| r.parse::<Uuid>().ok())
        else {
            return Self::error(ctx, "forbidden", "Unknown channel.");
        };
        let since = frame["since_seq"].as_i64().unwrap_or(0).max(0);
        self.join(room_id, channel, since, true, ctx);
    }

    /// Joins a room's actor and replays what came after `since` (then live messages).
    /// `announce`: a client's subscribe, answered with `subscribed` and the other member's
    /// presence; otherwise a silent rejoin after the room's actor went away.
    fn join(
        &mut self,
        room_id: Uuid,
        channel: String,
        since: i64,
        announce: bool,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        self.leave_room(room_id);
        self.rooms.insert(
            room_id,
            RoomSub {
                replaying: true,
                last_seq: since,
                held: BTreeMap::new(),
                gap_check: false,
                room: None,
            },
        );
        let (state, auth, outlet) = (self.state.clone(), self.auth(), self.outlet(ctx));
        let replay = async move {
            // Join first, so whatever is published during the replay is held, not missed.
            let room = join_room(&state, room_id, outlet).await;
            let replay = chat::replay(&state, auth, room_id, since).await;
            let online = match &replay {
                Ok(r) => Some((
                    r.other_member,
                    state.presence.is_online(r.other_member).await,
                )),
                Err(_) => None,
            };
            (room, replay, online)
        };
        ctx.spawn(replay.into_actor(self).map(move |(room, result, online), this, ctx| {
            let Some(sub) = this.rooms.get_mut(&room_id) else {
                // Unsubscribed meanwhile.
                if let Some(room) = room {
                    room.do_send(chat_room::Leave { socket_id: this.socket_id });
                }
                return;
            };
            sub.room = room;
            match result {
                Ok(replay) if sub.room.is_some() => {
                    if announce {
                        Self::send_json(ctx, &json!({"type": "subscribed", "channel": channel, "last_seq": replay.last_seq}));
                    }
                    let Some(sub) = this.rooms.get_mut(&room_id) else { return };
                    for m in replay.messages {
                        if m.seq > sub.last_seq {
                            sub.last_seq = m.seq;
                            ctx.text(m.frame().to_string());
                        }
                    }
                    sub.replaying = false;
                    this.flush_room(room_id, ctx);
                    if let Some((user_id, online)) = online.filter(|_| announce) {
                        Self::send_json(ctx, &json!({"type": "presence", "user_id": user_id, "online": online}));
                    }
                }
                Ok(_) => {
                    this.leave_room(room_id);
                    Self::error(ctx, "unavailable", "The room cannot be joined right now.");
                }
                Err(_) => {
                    this.leave_room(room_id);
                    Self::error(ctx, "forbidden", "This channel is not yours.");
                }
            }
        }));
    }

    /// Watches a parcel's tracker (started on demand): answered with `subscribed` (status and
    /// ETA) and the latest position at once, then each newer one.
    fn watch(&mut self, match_id: Uuid, ctx: &mut ws::WebsocketContext<Self>) {
        self.unwatch(match_id);
        if self.tracks.len() >= MAX_TRACKS {
            return Self::error(ctx, "rate_limited", "Too many tracking subscriptions.");
        }
        let slot = Arc::new(Slot::held());
        let addr = ctx.address();
        let watcher = Watcher {
            socket_id: self.socket_id,
            user: Some(self.user_id),
            slot: slot.clone(),
            wake: addr.clone().recipient(),
            push: addr.recipient(),
        };
        self.tracks.insert(
            match_id,
            TrackSub {
                tracker: None,
                slot: slot.clone(),
            },
        );
        let state = self.state.clone();
        let join = async move {
            let tracker = match tracking::tracker(&state, match_id).await {
                Ok(Some(tracker)) => tracker,
                Ok(None) => return Err(Refusal::NotFound),
                Err(_) => return Err(Refusal::Overloaded),
            };
            match tracker.send(Watch(watcher)).await {
                Ok(watching) => Ok((tracker, watching)),
                Err(_) => Err(Refusal::Overloaded),
            }
        };
        ctx.spawn(join.into_actor(self).map(move |joined, this, ctx| {
            let current = this
                .tracks
                .get(&match_id)
                .is_some_and(|sub| Arc::ptr_eq(&sub.slot, &slot));
            let channel = format!("tracking:{match_id}");
            match joined {
                Ok((tracker, Ok(watching))) if current => {
                    if let Some(sub) = this.tracks.get_mut(&match_id) {
                        sub.tracker = Some(tracker);
                    }
                    Self::send_json(ctx, &json!({"type": "subscribed", "channel": channel, "status": watching.status, "eta": watching.eta}));
                    // A position that came after the answer is newer than the one in it.
                    match slot.take() {
                        Some((text, published_us)) => this.write(ctx, &text, published_us),
                        None => {
                            if let Some(latest) = watching.latest {
                                ctx.text(&*latest);
                            }
                        }
                    }
                }
                Ok((tracker, Ok(_))) => tracker.do_send(Unwatch { socket_id: this.socket_id, slot }),
                Ok((_, Err(refusal))) | Err(refusal) => {
                    if current {
                        this.tracks.remove(&match_id);
                    }
                    match refusal {
                        Refusal::Overloaded => Self::error(ctx, "unavailable", "Tracking is unavailable right now; subscribe again shortly."),
                        _ => Self::error(ctx, "forbidden", "This channel is not yours."),
                    }
                }
            }
        }));
    }

    fn unwatch(&mut self, match_id: Uuid) {
        if let Some(TrackSub {
            tracker: Some(tracker),
            slot,
        }) = self.tracks.remove(&match_id)
        {
            tracker.do_send(Unwatch {
                socket_id: self.socket_id,
                slot,
            });
        }
    }

    /// A tracker that stopped or failed under this socket is replaced: the socket watches anew.
    fn rewatch_stopped_trackers(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let stopped: Vec<Uuid> = self
            .tracks
            .iter()
            .filter(|(_, sub)| sub.tracker.as_ref().is_some_and(|t| !t.connected()))
            .map(|(id, _)| *id)
            .collect();
        for match_id in stopped {
            self.watch(match_id, ctx);
        }
        self.reporting.retain(|_, t| t.connected());
    }

    /// A `position` frame from the traveler's app: to the parcel's tracker (found once per
    /// match, then kept); refusals come back as `error` frames, filtered positions silently.
    fn position(&mut self, frame: &serde_json::Value, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(match_id) = frame["match_id"]
            .as_str()
            .and_then(|m| m.parse::<Uuid>().ok())
        else {
            return Self::error(ctx, "bad_frame", "`position` needs a match_id.");
        };
        let fix = match PositionInput::from_frame(frame).parse() {
            Ok(fix) => fix,
            Err(errors) => {
                let detail = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Self::error(ctx, "bad_frame", &detail);
            }
        };
        if let Some(tracker) = self.reporting.get(&match_id).filter(|t| t.connected()) {
            return self.report(tracker.clone(), fix, ctx);
        }
        // Found before the socket reads on, so the positions keep their order.
        let state = self.state.clone();
        ctx.wait(
            async move { tracking::tracker(&state, match_id).await }
                .into_actor(self)
                .map(move |found, this, ctx| match found {
                    Ok(Some(tracker)) => {
                        if this.reporting.len() >= MAX_TRACKS {
                            this.reporting.clear();
                        }
                        this.reporting.insert(match_id, tracker.clone());
                        this.report(tracker, fix, ctx);
                    }
                    Ok(None) => Self::error(ctx, "forbidden", "This parcel is not yours."),
                    Err(e) => Self::error(ctx, e.code(), &e.problem().detail),
                }),
        );
    }

    /// Hands a position to its tracker without waiting; a refusal comes back as an `error`
    /// frame. A tracker whose mailbox is full refuses at once (`overloaded`).
    fn report(
        &mut self,
        tracker: Addr<ParcelTracker>,
        fix: crate::domain::tracking::Fix,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let errors = self
            .errors_to
            .get_or_insert_with(|| ctx.address().recipient())
            .clone();
        let report = Report {
            user: self.user_id,
            fix,
            errors,
        };
        match tracker.try_send(report) {
            Ok(()) => {}
            Err(SendError::Full(_)) => {
                Self::error(ctx, "overloaded", "Too many positions at once; slow down.")
            }
            Err(SendError::Closed(_)) => {
                self.reporting.retain(|_, t| t.connected());
                Self::error(
                    ctx,
                    "unavailable",
                    "The parcel tracker stopped; send again.",
                );
            }
        }
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
        if self.sends.len() >= MAX_PENDING_SENDS {
            return Self::error(
                ctx,
                "rate_limited",
                "Too many messages awaiting their ack; wait for acks before sending more.",
            );
        }
        self.sends.push_back((room_id, body, client_msg_id));
        self.next_send(ctx);
    }

    /// Posts the socket's queued messages one at a time, in the order they were sent.
    fn next_send(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.sending {
            return;
        }
        let Some((room_id, body, client_msg_id)) = self.sends.pop_front() else {
            return;
        };
        self.sending = true;
        let (state, auth) = (self.state.clone(), self.auth());
        let post = async move { chat::post(&state, auth, room_id, &body, &client_msg_id).await };
        ctx.spawn(post.into_actor(self).map(|result, this, ctx| {
            match result {
                Ok((m, _)) => Self::send_json(
                    ctx,
                    &json!({"type": "ack", "client_msg_id": m.client_msg_id, "id": m.id, "seq": m.seq, "room_id": m.room_id}),
                ),
                Err(e) => {
                    let code = if e.status().as_u16() == 404 { "forbidden" } else { e.code() };
                    Self::error(ctx, code, &e.problem().detail);
                }
            }
            this.sending = false;
            this.next_send(ctx);
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
                let channel = frame["channel"].as_str().unwrap_or_default();
                let id = |prefix: &str| {
                    channel
                        .strip_prefix(prefix)
                        .and_then(|r| r.parse::<Uuid>().ok())
                };
                if let Some(room) = id("chat:") {
                    self.leave_room(room);
                }
                if let Some(match_id) = id("tracking:") {
                    self.unwatch(match_id);
                }
            }
            Some("send") => self.send_message(&frame, ctx),
            Some("read") => self.mark_read(&frame, ctx),
            Some("typing") => self.typing(&frame, ctx),
            Some("position") => self.position(&frame, ctx),
            _ => Self::error(ctx, "bad_frame", "Unknown frame type."),
        }
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.probe.started();
        ctx.set_mailbox_capacity(MAILBOX);
        Self::send_json(
            ctx,
            &json!({"type": "hello", "user_id": self.user_id, "session_id": self.session_id}),
        );
        ctx.run_interval(HEARTBEAT_EVERY, |this, ctx| {
            if this.lag.is_set() {
                return Self::close(ctx, CloseCode::Policy, "slow consumer");
            }
            this.rejoin_stopped_rooms(ctx);
            this.rewatch_stopped_trackers(ctx);
            if this.last_pong.elapsed() > CLIENT_TIMEOUT {
                return Self::close(ctx, CloseCode::Policy, "heartbeat timeout");
            }
            ctx.ping(b"");
        });

        // Join the user's hub (started on demand) for their events.
        let (state, outlet) = (self.state.clone(), self.outlet(ctx));
        ctx.spawn(
            async move { join_hub(&state, outlet).await }
                .into_actor(self)
                .map(|hub, this, ctx| match hub {
                    Some(hub) => this.hub = Some(hub),
                    None => Self::close(ctx, CloseCode::Error, "server busy"),
                }),
        );

        // Going away when the node shuts down.
        ctx.spawn(
            self.state
                .shutting_down()
                .into_actor(self)
                .map(|(), _, ctx| Self::close(ctx, CloseCode::Away, "server shutting down")),
        );
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        user_hub::leave(&self.state, self.hub.as_ref(), self.user_id, self.socket_id);
        let rooms: Vec<Uuid> = self.rooms.keys().copied().collect();
        for room in rooms {
            self.leave_room(room);
        }
        let tracks: Vec<Uuid> = self.tracks.keys().copied().collect();
        for match_id in tracks {
            self.unwatch(match_id);
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
        self.probe.handled();
        if self.lag.is_set() {
            return Self::close(ctx, CloseCode::Policy, "slow consumer");
        }
        let (room, seq) = match msg.room {
            None => return self.write(ctx, &msg.text, msg.published_us),
            Some(RoomFrame::Ephemeral { room }) => {
                if self.rooms.get(&room).is_some_and(|sub| !sub.replaying) {
                    self.write(ctx, &msg.text, msg.published_us);
                }
                return;
            }
            Some(RoomFrame::Tracking { match_id }) => {
                if self
                    .tracks
                    .get(&match_id)
                    .is_some_and(|sub| sub.tracker.is_some())
                {
                    self.write(ctx, &msg.text, msg.published_us);
                }
                return;
            }
            Some(RoomFrame::Message { room, seq }) => (room, seq),
        };
        let Some(sub) = self.rooms.get_mut(&room) else {
            return;
        };
        if seq <= sub.last_seq {
            return; // already delivered
        }
        if !sub.held.contains_key(&seq) {
            if sub.held.len() >= MAX_REPLAY_BUFFER {
                self.lag.mark(self.user_id);
                return Self::close(ctx, CloseCode::Policy, "slow consumer");
            }
            sub.held.insert(seq, (msg.text, msg.published_us));
        }
        if !sub.replaying {
            self.flush_room(room, ctx);
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

impl Handler<Wake> for WsSession {
    type Result = ();

    /// A watched parcel's newest position is waiting in its slot.
    fn handle(&mut self, msg: Wake, ctx: &mut Self::Context) {
        self.probe.handled();
        let current = self
            .tracks
            .get(&msg.match_id)
            .is_some_and(|sub| sub.tracker.is_some() && Arc::ptr_eq(&sub.slot, &msg.slot));
        if !current {
            return;
        }
        if let Some((text, published_us)) = msg.slot.take() {
            self.write(ctx, &text, published_us);
        }
    }
}
