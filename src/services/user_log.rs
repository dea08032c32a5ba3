//! Each user's recent events (match updates, suggestions), so an event stream can resume with
//! `Last-Event-ID` on any node: a capped Redis stream per user (`<prefix>uev:<user>`, the last
//! `KEEP` events, expiring a day after the last one), or, in single-node mode and while Redis is
//! down, an in-process log with the same shape and bounds.
//!
//! Ids look like Redis stream ids (`<ms>-<n>`) and grow per user, so copies of one event can be
//! ordered and de-duplicated by comparing ids.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use uuid::Uuid;

use crate::redis::Redis;

/// Events kept per user.
pub const KEEP: usize = 100;
/// A user's log expires this long after its last event.
const TTL_SECS: i64 = 86_400;
/// Users the in-process log keeps (a full log forgets an arbitrary user's events).
const LOCAL_USERS: usize = 10_000;

/// An event id, ordered like Redis stream ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventId(u64, u64);

impl EventId {
    pub fn parse(text: &str) -> Option<Self> {
        let (ms, n) = text.trim().split_once('-')?;
        Some(Self(ms.parse().ok()?, n.parse().ok()?))
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// One XRANGE entry: id and field/value pairs.
type StreamEntry = (String, Vec<(String, String)>);

#[derive(Default)]
struct Local {
    users: HashMap<Uuid, VecDeque<(EventId, String)>>,
}

pub struct UserLog {
    redis: Redis,
    local: Mutex<Local>,
}

impl UserLog {
    pub fn new(redis: Redis) -> Self {
        Self {
            redis,
            local: Mutex::new(Local::default()),
        }
    }

    fn key(&self, user: Uuid) -> String {
        self.redis.keys().key("uev", &[&user.to_string()])
    }

    /// Appends `frame` to `user`'s log and returns its id.
    pub async fn append(&self, user: Uuid, frame: &serde_json::Value) -> String {
        let text = frame.to_string();
        if let Some(pool) = self.redis.pool() {
            let key = self.key(user);
            let added: Result<String, String> = async {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                let (id,): (String,) = deadpool_redis::redis::pipe()
                    .cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(KEEP)
                    .arg("*")
                    .arg("f")
                    .arg(&text)
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(TTL_SECS)
                    .ignore()
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(id)
            }
            .await;
            match added {
                Ok(id) => return id,
                Err(e) => tracing::warn!(error = %e, "user event kept on this node only"),
            }
        }
        self.append_local(user, text).to_string()
    }

    fn append_local(&self, user: Uuid, text: String) -> EventId {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if local.users.len() >= LOCAL_USERS && !local.users.contains_key(&user) {
            if let Some(other) = local.users.keys().next().copied() {
                local.users.remove(&other);
            }
        }
        let log = local.users.entry(user).or_default();
        let ms = u64::try_from(crate::services::events::now_us() / 1000).unwrap_or(0);
        let id = match log.back() {
            Some((last, _)) if last.0 >= ms => EventId(last.0, last.1 + 1),
            _ => EventId(ms, 0),
        };
        log.push_back((id, text));
        while log.len() > KEEP {
            log.pop_front();
        }
        id
    }

    /// `user`'s events after `after` (exclusive), oldest first, at most `KEEP`.
    pub async fn since(&self, user: Uuid, after: EventId) -> Vec<(String, serde_json::Value)> {
        let decode = |id: String, text: &str| {
            serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .map(|v| (id, v))
        };
        if let Some(pool) = self.redis.pool() {
            let key = self.key(user);
            let read: Result<Vec<StreamEntry>, String> = async {
                let mut conn = pool.get().await.map_err(|e| e.to_string())?;
                deadpool_redis::redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(format!("({after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(KEEP)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            match read {
                Ok(entries) => {
                    return entries
                        .into_iter()
                        .filter_map(|(id, fields)| {
                            let text = fields.into_iter().find(|(k, _)| k == "f")?.1;
                            decode(id, &text)
                        })
                        .collect();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "user event log unavailable; using this node's")
                }
            }
        }
        let local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        local
            .users
            .get(&user)
            .map(|log| {
                log.iter()
                    .filter(|(id, _)| *id > after)
                    .filter_map(|(id, text)| decode(id.to_string(), text))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisSettings;

    fn single_node() -> UserLog {
        let settings = RedisSettings {
            url: crate::config::Secret::new(String::new()),
            key_prefix: "t:".into(),
            pool_max_size: 1,
            timeout_ms: 100,
        };
        UserLog::new(Redis::new(&settings).unwrap())
    }

    #[test]
    fn ids_order_like_redis_stream_ids() {
        let a = EventId::parse("1700000000000-2").unwrap();
        let b = EventId::parse("1700000000000-10").unwrap();
        let c = EventId::parse("1700000000001-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-10");
        assert!(EventId::parse("12").is_none());
        assert!(EventId::parse("x-1").is_none());
    }

    #[tokio::test]
    async fn the_local_log_replays_after_an_id_and_keeps_the_last_events() {
        let log = single_node();
        let user = Uuid::now_v7();
        let mut ids = Vec::new();
        for i in 0..(KEEP + 5) {
            ids.push(log.append(user, &serde_json::json!({"n": i})).await);
        }
        let after = EventId::parse(&ids[KEEP + 1]).unwrap();
        let rest = log.since(user, after).await;
        assert_eq!(rest.len(), 3);
        assert_eq!(rest[0].1["n"], KEEP + 2);
        let all = log.since(user, EventId(0, 0)).await;
        assert_eq!(all.len(), KEEP, "older events are dropped");
        assert_eq!(all[0].1["n"], 5);
        assert!(log.since(Uuid::now_v7(), EventId(0, 0)).await.is_empty());
    }
}
