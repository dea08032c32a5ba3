//! `RedisBridge`, one per node: holds the node's one Redis pub/sub connection (reconnecting with
//! a bounded backoff) and injects the other nodes' events into the local bus, and routes every
//! bus event — this node's and the others' alike, so one node and a cluster take the same path —
//! to the local actors it concerns: chat messages, typing and read receipts to the `ChatRoom`,
//! user events and presence to the `UserHub`s, revocations to the session's hub, stored
//! positions, `arriving` and status changes to the match's `ParcelTracker`. Only actors
//! already running here are told (the `Registry` starts nothing for an event). Frames are
//! serialised once per event and recipient.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::{Actor, AsyncContext, Context, Handler, Message, StreamHandler, WrapFuture};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::chat_room::{self, ChatRoom, Post, Signal};
use super::probe::ActorProbe;
use super::registry::Forward;
use super::tracker::{self, Arrived, Lost, ParcelTracker, StatusChanged, Stored};
use super::user_hub::{self, Deliver, SessionRevoked, UserHub};
use crate::services::events::{Event, EventBus, Published, TrackedPosition};
use crate::state::AppState;

pub const KIND: &str = "redis_bridge";
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);

pub struct RedisBridge {
    state: actix_web::web::Data<AppState>,
    probe: ActorProbe,
}

impl RedisBridge {
    pub fn new(state: actix_web::web::Data<AppState>) -> Self {
        Self {
            probe: ActorProbe::new(&state.metrics.actors, KIND),
            state,
        }
    }

    /// Hands `msg` to the live actor `A` of `kind` for `id` on this node, if there is one.
    fn forward<A, M>(&self, kind: &'static str, id: Uuid, msg: M)
    where
        A: Actor + Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.forward_each::<A, M>(kind, vec![(id, msg)]);
    }

    /// `forward` for several actors of one kind, in one registry message.
    fn forward_each<A, M>(&self, kind: &'static str, items: Vec<(Uuid, M)>)
    where
        A: Actor + Handler<M>,
        A::Context: ToEnvelope<A, M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.probe.sent();
        self.state
            .registry
            .do_send(Forward::<A, M>::each(kind, items));
    }

    fn to_hub<M>(&self, user: Uuid, msg: M)
    where
        UserHub: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.forward::<UserHub, M>(user_hub::KIND, user, msg);
    }

    fn to_room<M>(&self, room: Uuid, msg: M)
    where
        ChatRoom: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.forward::<ChatRoom, M>(chat_room::KIND, room, msg);
    }

    fn to_tracker<M>(&self, match_id: Uuid, msg: M)
    where
        ParcelTracker: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        self.forward::<ParcelTracker, M>(tracker::KIND, match_id, msg);
    }

    fn route(&self, published: &Published) {
        let at = published.at_us;
        match &published.event {
            Event::Positions { items } => {
                let mut by_match: HashMap<Uuid, Vec<TrackedPosition>> = HashMap::new();
                for p in items {
                    by_match.entry(p.match_id).or_default().push(p.clone());
                }
                let stored = by_match
                    .into_iter()
                    .map(|(match_id, items)| {
                        (
                            match_id,
                            Stored {
                                items,
                                published_us: at,
                            },
                        )
                    })
                    .collect();
                self.forward_each::<ParcelTracker, _>(tracker::KIND, stored);
            }
            Event::Arriving { match_id } => self.to_tracker(*match_id, Arrived),
            Event::PositionsLost { match_ids } => {
                let lost = match_ids.iter().map(|m| (*m, Lost)).collect();
                self.forward_each::<ParcelTracker, _>(tracker::KIND, lost);
            }
            Event::MatchUpdated {
                match_id, status, ..
            } => {
                let status = status.clone();
                self.to_tracker(*match_id, StatusChanged { status });
                self.to_hubs(published);
            }
            Event::SessionRevoked {
                user_id,
                session_id,
            } => self.to_hub(
                *user_id,
                SessionRevoked {
                    session_id: *session_id,
                },
            ),
            Event::ChatMessage { message, .. } => {
                let room = message["room_id"].as_str().and_then(|r| r.parse().ok());
                if let (Some(room), Some(seq)) = (room, message["seq"].as_i64()) {
                    let post = Post {
                        text: Arc::from(message.to_string()),
                        seq,
                        published_us: at,
                    };
                    self.to_room(room, post);
                }
            }
            Event::ChatTyping {
                room_id, user_id, ..
            } => {
                let frame = json!({"type": "typing", "room_id": room_id, "user_id": user_id});
                let signal = Signal {
                    text: Arc::from(frame.to_string()),
                    from: *user_id,
                    published_us: at,
                };
                self.to_room(*room_id, signal);
            }
            Event::ChatRead {
                room_id,
                user_id,
                seq,
            } => {
                let frame =
                    json!({"type": "read", "room_id": room_id, "user_id": user_id, "seq": seq});
                let signal = Signal {
                    text: Arc::from(frame.to_string()),
                    from: *user_id,
                    published_us: at,
                };
                self.to_room(*room_id, signal);
            }
            Event::Presence {
                user_id,
                online,
                watchers,
            } => {
                let text: Arc<str> = Arc::from(
                    json!({"type": "presence", "user_id": user_id, "online": online}).to_string(),
                );
                for watcher in watchers {
                    let deliver = Deliver {
                        text: text.clone(),
                        id: None,
                        published_us: at,
                    };
                    self.to_hub(*watcher, deliver);
                }
            }
            _ => self.to_hubs(published),
        }
    }

    /// A user event, to each recipient's hub (with the id of their logged copy).
    fn to_hubs(&self, published: &Published) {
        let at = published.at_us;
        for (user, mut frame) in published.event.user_frames() {
            let id = published.id_for(user).map(Arc::<str>::from);
            if let Some(id) = &id {
                frame["id"] = json!(id.as_ref());
            }
            let deliver = Deliver {
                text: Arc::from(frame.to_string()),
                id,
                published_us: at,
            };
            self.to_hub(user, deliver);
        }
    }
}

impl Actor for RedisBridge {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.probe.started();
        let feed = futures_util::stream::unfold(self.state.events.subscribe(), |mut rx| async {
            loop {
                match rx.recv().await {
                    Ok(published) => return Some((published, rx)),
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "real-time routing fell behind the bus");
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        ctx.add_stream(Box::pin(feed));

        let Some(client) = self.state.redis.client() else {
            return;
        };
        let bus = self.state.events.clone();
        ctx.spawn(
            async move {
                let client = match client {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "redis bridge: bad Redis URL");
                        return;
                    }
                };
                let mut pause = Duration::from_millis(100);
                loop {
                    match listen(&client, &bus).await {
                        Ok(()) => pause = Duration::from_millis(100),
                        Err(e) => {
                            tracing::warn!(error = %e, "redis bridge disconnected; reconnecting")
                        }
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
                }
            }
            .into_actor(self),
        );
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.probe.stopped();
    }
}

impl StreamHandler<Arc<Published>> for RedisBridge {
    fn handle(&mut self, published: Arc<Published>, _: &mut Self::Context) {
        self.probe.handled();
        self.route(&published);
    }

    fn finished(&mut self, _: &mut Self::Context) {
        tracing::debug!("event bus closed; redis bridge routing ends");
    }
}

/// One subscription on the node's pub/sub connection until it drops (`Ok` never: a
/// subscription that ends is an error to reconnect from).
async fn listen(client: &redis::Client, bus: &EventBus) -> Result<(), String> {
    let mut pubsub = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
    pubsub
        .subscribe(bus.channel())
        .await
        .map_err(|e| e.to_string())?;
    tracing::debug!(channel = %bus.channel(), "redis bridge subscribed");
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        if let Ok(payload) = msg.get_payload::<String>() {
            bus.inject(&payload);
        }
    }
    Err("subscription ended".to_owned())
}
