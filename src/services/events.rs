//! The internal event bus. Services publish after commit; every node's subscribers (the
//! matchmaker, and the `RedisBridge` that routes to rooms and hubs) receive. An event is
//! dispatched to this node's subscribers at once and published on Redis (`<prefix>ch:events`)
//! for the other nodes, whose `RedisBridge` injects it locally with [`EventBus::inject`]; a node
//! ignores its own echoes. Without Redis, or while it is down, local delivery goes on and the
//! other nodes catch up from PostgreSQL (chat clients by `seq`, the matchmaker by rebuilding).
//!
//! User-facing events (match updates, suggestions) are appended to each recipient's
//! [`UserLog`] before they are published, so every copy carries the same id and an SSE client
//! can resume with `Last-Event-ID` on any node.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::matching::{ParcelFacts, TripFacts};
use crate::redis::Redis;
use crate::services::user_log::UserLog;

/// Events a slow local subscriber may fall behind by before it starts losing the oldest.
const LOCAL_CAPACITY: usize = 4096;

/// One suggested pair in a `suggestion` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggested {
    pub trip_id: Uuid,
    pub parcel_id: Uuid,
    pub score: f64,
}

/// A position the parcel's tracker accepted and the trail stored, with the ETA computed then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedPosition {
    pub match_id: Uuid,
    pub lat: f64,
    pub lng: f64,
    pub accuracy_m: f32,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub eta: chrono::DateTime<chrono::Utc>,
    /// The smoothed ground speed then (m/s), for trackers on other nodes.
    pub speed_mps: Option<f64>,
}

impl TrackedPosition {
    /// The `position` frame watchers get (WebSocket and the recipient's stream alike).
    pub fn frame(&self) -> String {
        let frame = PositionFrame {
            kind: "position",
            match_id: self.match_id,
            lat: self.lat,
            lng: self.lng,
            accuracy_m: self.accuracy_m,
            recorded_at: self.recorded_at,
            eta: self.eta,
        };
        // Plain numbers, a uuid and times: serialising cannot fail.
        serde_json::to_string(&frame).unwrap_or_default()
    }
}

/// The fields of a `position` frame, serialised straight to text (one per stored position on
/// every node: no intermediate JSON value).
#[derive(Serialize)]
struct PositionFrame {
    #[serde(rename = "type")]
    kind: &'static str,
    match_id: Uuid,
    lat: f64,
    lng: f64,
    accuracy_m: f32,
    recorded_at: chrono::DateTime<chrono::Utc>,
    eta: chrono::DateTime<chrono::Utc>,
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
    /// A member read a room up to `seq`: for the other member's subscribed sockets.
    ChatRead {
        room_id: Uuid,
        user_id: Uuid,
        seq: i64,
    },
    /// An in-app notification was stored for a user (a `notification` frame).
    Notification {
        user_id: Uuid,
        notification: serde_json::Value,
    },
    /// Positions stored in one batch of the trail writer: for the matches' trackers.
    Positions {
        items: Vec<TrackedPosition>,
    },
    /// Positions of these matches could not be stored: their trackers forget what they
    /// accepted beyond the stored trail.
    PositionsLost {
        match_ids: Vec<Uuid>,
    },
    /// A parcel entered its destination's geofence (once per match).
    Arriving {
        match_id: Uuid,
    },
    /// A user came online (first socket on any node) or went offline (last one closed): for
    /// the people they chat with.
    Presence {
        user_id: Uuid,
        online: bool,
        watchers: Vec<Uuid>,
    },
}

impl Event {
    /// The frames a user-facing event becomes, per recipient. These are logged (with ids) and
    /// fanned out to every socket and event stream of the recipient.
    pub fn user_frames(&self) -> Vec<(Uuid, serde_json::Value)> {
        match self {
            Event::MatchUpdated {
                match_id,
                status,
                sender_id,
                traveler_id,
            } => {
                let frame =
                    json!({"type": "match_updated", "match_id": match_id, "status": status});
                vec![(*sender_id, frame.clone()), (*traveler_id, frame)]
            }
            Event::Suggestion { user_id, items } => vec![(
                *user_id,
                json!({"type": "suggestion", "reason": "posted", "items": items}),
            )],
            Event::ParcelOnRoute {
                user_id,
                trip_id,
                parcel_id,
                score,
            } => vec![(
                *user_id,
                json!({"type": "suggestion", "reason": "parcel_on_route", "items": [
                    {"trip_id": trip_id, "parcel_id": parcel_id, "score": score}
                ]}),
            )],
            Event::Notification {
                user_id,
                notification,
            } => {
                let mut frame = json!({"type": "notification"});
                if let (Some(out), Some(fields)) = (frame.as_object_mut(), notification.as_object())
                {
                    out.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                vec![(*user_id, frame)]
            }
            _ => Vec::new(),
        }
    }
}

/// An event as subscribers receive it: when it was published (Unix microseconds, for the
/// publish → write latency histogram) and the log id each recipient's copy has.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Published {
    pub event: Event,
    pub at_us: i64,
    #[serde(default)]
    pub ids: Vec<(Uuid, String)>,
}

impl Published {
    /// The log id of `user`'s copy of this event, if it was logged.
    pub fn id_for(&self, user: Uuid) -> Option<&str> {
        self.ids
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, id)| id.as_str())
    }
}

/// Microseconds since the Unix epoch (wall clock: comparable across nodes on one host).
pub fn now_us() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}

#[derive(Debug, Deserialize)]
struct Envelope {
    node: Uuid,
    #[serde(flatten)]
    published: Published,
}

/// An `Envelope` as sent (borrowing what is also dispatched locally).
#[derive(Serialize)]
struct Outgoing<'a> {
    node: Uuid,
    #[serde(flatten)]
    published: &'a Published,
}

pub struct EventBus {
    redis: Redis,
    channel: String,
    node: Uuid,
    node_text: String,
    local: broadcast::Sender<Arc<Published>>,
    log: UserLog,
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
        let node = Uuid::now_v7();
        Self {
            log: UserLog::new(redis.clone()),
            redis,
            channel,
            node,
            node_text: node.to_string(),
            local,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.local.subscribe()
    }

    /// This node's id (its events' origin, its presence claims).
    pub fn node(&self) -> Uuid {
        self.node
    }

    /// The per-user event log (SSE resume).
    pub fn log(&self) -> &UserLog {
        &self.log
    }

    /// The pub/sub channel every node listens on.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Delivers to this node's subscribers and, through Redis, to the other nodes'.
    pub async fn publish(&self, event: Event) {
        self.publish_with(event, deadpool_redis::redis::pipe())
            .await;
    }

    /// `publish`, with `before` (commands whose results are not needed, such as the latest
    /// positions' `SET`s) sent ahead of the `PUBLISH` in the same round trip: a node that gets
    /// the event finds what they wrote.
    pub async fn publish_with(&self, event: Event, mut before: deadpool_redis::redis::Pipeline) {
        let mut ids = Vec::new();
        for (user, frame) in event.user_frames() {
            ids.push((user, self.log.append(user, &frame).await));
        }
        let published = Published {
            event,
            at_us: now_us(),
            ids,
        };
        let Some(pool) = self.redis.pool() else {
            let _ = self.local.send(Arc::new(published));
            return;
        };
        let payload = serde_json::to_string(&Outgoing {
            node: self.node,
            published: &published,
        });
        let _ = self.local.send(Arc::new(published));
        let sent: Result<(), String> = async {
            let payload = payload.map_err(|e| e.to_string())?;
            before
                .cmd("PUBLISH")
                .arg(&self.channel)
                .arg(payload)
                .ignore();
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            before
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "event not published to other nodes");
        }
    }

    /// Dispatches a payload received from Redis to this node's subscribers, unless this node
    /// published it. `false` when it could not be decoded.
    pub fn inject(&self, payload: &str) -> bool {
        // This node's own echo, recognised without decoding (`node` is serialised first).
        if payload
            .strip_prefix(r#"{"node":""#)
            .and_then(|rest| rest.get(..36))
            .is_some_and(|node| node == self.node_text)
        {
            return true;
        }
        match serde_json::from_str::<Envelope>(payload) {
            Ok(env) if env.node != self.node => {
                let _ = self.local.send(Arc::new(env.published));
                true
            }
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable event on the bus");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RedisSettings, Secret};

    #[test]
    fn a_node_skips_its_own_echo_and_takes_the_others_events() {
        let settings = RedisSettings {
            url: Secret::new(String::new()),
            key_prefix: "t:".into(),
            pool_max_size: 1,
            timeout_ms: 100,
        };
        let bus = EventBus::new(Redis::new(&settings).unwrap());
        let mut rx = bus.subscribe();
        let event = Event::TripRemoved {
            trip_id: Uuid::now_v7(),
        };
        let published = Published {
            event: event.clone(),
            at_us: 1,
            ids: Vec::new(),
        };
        let envelope = |node| {
            serde_json::to_string(&Outgoing {
                node,
                published: &published,
            })
            .unwrap()
        };
        assert!(bus.inject(&envelope(bus.node())));
        assert!(rx.try_recv().is_err(), "own echo ignored");
        assert!(bus.inject(&envelope(Uuid::now_v7())));
        assert_eq!(rx.try_recv().unwrap().event, event);
        assert!(!bus.inject("{not json"));
    }
}
