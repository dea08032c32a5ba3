//! The internal event bus. Services publish after commit; every node's subscribers (the
//! matchmaker now, WebSocket hubs later) receive. An event is dispatched to this node's
//! subscribers at once and published on Redis (`<prefix>ch:events`) for the other nodes, whose
//! listener dispatches it locally; a node ignores its own echoes. Without Redis, or while it is
//! down, local delivery goes on and the other nodes catch up from PostgreSQL (the matchmaker
//! rebuilds its index periodically).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::matching::{ParcelFacts, TripFacts};
use crate::redis::Redis;

/// Events a slow local subscriber may fall behind by before it starts losing the oldest.
const LOCAL_CAPACITY: usize = 4096;
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);

/// One suggested pair in a `suggestion` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggested {
    pub trip_id: Uuid,
    pub parcel_id: Uuid,
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    TripUpserted {
        trip: TripFacts,
    },
    TripRemoved {
        trip_id: Uuid,
    },
    ParcelUpserted {
        parcel: ParcelFacts,
    },
    ParcelRemoved {
        parcel_id: Uuid,
    },
    /// A match changed state; for both parties (`match_updated` on their sockets).
    MatchUpdated {
        match_id: Uuid,
        status: String,
        sender_id: Uuid,
        traveler_id: Uuid,
    },
    /// Best candidates for something the user just posted.
    Suggestion {
        user_id: Uuid,
        items: Vec<Suggested>,
    },
    /// A chat message was stored: for both members' subscribed sockets.
    ChatMessage {
        members: Vec<Uuid>,
        message: serde_json::Value,
    },
    /// A member is typing in a room: for the other member's subscribed sockets.
    ChatTyping {
        room_id: Uuid,
        user_id: Uuid,
        recipient: Uuid,
    },
    /// A device session ended: its sockets close.
    SessionRevoked {
        user_id: Uuid,
        session_id: Uuid,
    },
    /// A new parcel fits a traveler's trip.
    ParcelOnRoute {
        user_id: Uuid,
        trip_id: Uuid,
        parcel_id: Uuid,
        score: f64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    node: Uuid,
    event: Event,
}

pub struct EventBus {
    redis: Redis,
    channel: String,
    node: Uuid,
    local: broadcast::Sender<Arc<Event>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl EventBus {
    pub fn new(redis: Redis) -> Self {
        let channel = redis.keys().channel("events");
        let (local, _) = broadcast::channel(LOCAL_CAPACITY);
        Self {
            redis,
            channel,
            node: Uuid::now_v7(),
            local,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.local.subscribe()
    }

    /// Delivers to this node's subscribers and, through Redis, to the other nodes'.
    pub async fn publish(&self, event: Event) {
        let Some(pool) = self.redis.pool() else {
            let _ = self.local.send(Arc::new(event));
            return;
        };
        let payload = serde_json::to_string(&Envelope {
            node: self.node,
            event: event.clone(),
        });
        let _ = self.local.send(Arc::new(event));
        let sent: Result<(), String> = async {
            let payload = payload.map_err(|e| e.to_string())?;
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            deadpool_redis::redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "event not published to other nodes");
        }
    }

    /// Listens on Redis for the other nodes' events until the process ends, reconnecting with
    /// a bounded backoff. Nothing to do without Redis.
    pub fn spawn_listener(self: &Arc<Self>) {
        let Some(client) = self.redis.client() else {
            return;
        };
        let bus = self.clone();
        actix_web::rt::spawn(async move {
            let client = match client {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "event listener: bad Redis URL");
                    return;
                }
            };
            let mut pause = Duration::from_millis(100);
            loop {
                match bus.listen(&client).await {
                    Ok(()) => pause = Duration::from_millis(100),
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener disconnected; reconnecting")
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
            }
        });
    }

    async fn listen(&self, client: &redis::Client) -> Result<(), String> {
        let mut pubsub = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
        pubsub
            .subscribe(&self.channel)
            .await
            .map_err(|e| e.to_string())?;
        tracing::debug!(channel = %self.channel, "event listener subscribed");
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            match serde_json::from_str::<Envelope>(&payload) {
                Ok(env) if env.node != self.node => {
                    let _ = self.local.send(Arc::new(env.event));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "undecodable event on the bus"),
            }
        }
        Err("subscription ended".to_owned())
    }
}
