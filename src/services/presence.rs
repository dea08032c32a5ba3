//! Presence: a user is online while they have a socket or event stream on any node. Each node
//! holding one keeps its id in the user's Redis sorted set (`<prefix>presence:<user>`, scored by
//! an expiry that the node's `UserHub` refreshes), so a crashed node's claim lapses by itself.
//! The first claim publishes `online`, the last release `offline`, to the people the user has
//! matches with. In single-node mode (and while Redis is down) this node's own set decides.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use uuid::Uuid;

use crate::db;
use crate::models::chat;
use crate::redis::Redis;
use crate::services::events::Event;
use crate::state::AppState;

/// A node's claim lasts this long without a refresh.
pub const CLAIM_TTL: Duration = Duration::from_secs(90);
/// Hubs refresh their claim this often.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Most people told of one presence change.
const MAX_WATCHERS: i64 = 200;

/// Adds (or renews) this node's claim; returns how many live claims there were before (this
/// node's own included, so a renewal never reads as a newcomer).
const CLAIM: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return before
";

/// Removes this node's claim; returns how many live claims remain.
const RELEASE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
";

pub struct Presence {
    redis: Redis,
    node: String,
    local: Mutex<HashSet<Uuid>>,
    claim: deadpool_redis::redis::Script,
    release: deadpool_redis::redis::Script,
}

fn now_ms() -> i64 {
    crate::services::events::now_us() / 1000
}

impl Presence {
    pub fn new(redis: Redis, node: Uuid) -> Self {
        Self {
            redis,
            node: node.to_string(),
            local: Mutex::new(HashSet::new()),
            claim: deadpool_redis::redis::Script::new(CLAIM),
            release: deadpool_redis::redis::Script::new(RELEASE),
        }
    }

    fn key(&self, user: Uuid) -> String {
        self.redis.keys().key("presence", &[&user.to_string()])
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims (or refreshes) `user` on this node; `true` when they were offline everywhere.
    async fn claim(&self, user: Uuid) -> bool {
        let newly_local = self.local().insert(user);
        let Some(pool) = self.redis.pool() else {
            return newly_local;
        };
        let ttl = i64::try_from(CLAIM_TTL.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        let result: Result<i64, String> = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            self.claim
                .key(self.key(user))
                .arg(now)
                .arg(now + ttl)
                .arg(&self.node)
                .arg(ttl)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(before) => before == 0,
            Err(e) => {
                tracing::warn!(error = %e, "presence kept on this node only");
                newly_local
            }
        }
    }

    /// Releases `user` on this node; `true` when they are now offline everywhere.
    async fn release(&self, user: Uuid) -> bool {
        let was_local = self.local().remove(&user);
        let Some(pool) = self.redis.pool() else {
            return was_local;
        };
        let result: Result<i64, String> = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            self.release
                .key(self.key(user))
                .arg(now_ms())
                .arg(&self.node)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(remaining) => remaining == 0,
            Err(e) => {
                tracing::warn!(error = %e, "presence release kept on this node only");
                was_local
            }
        }
    }

    /// Whether `user` is online on any node.
    pub async fn is_online(&self, user: Uuid) -> bool {
        if self.local().contains(&user) {
            return true;
        }
        let Some(pool) = self.redis.pool() else {
            return false;
        };
        let result: Result<i64, String> = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            deadpool_redis::redis::cmd("ZCOUNT")
                .arg(self.key(user))
                .arg(format!("({}", now_ms()))
                .arg("+inf")
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        result.is_ok_and(|n| n > 0)
    }
}

async fn announce(state: &AppState, user: Uuid, online: bool) {
    state.metrics.realtime.presence_changes.inc();
    let watchers = match db::conn(&state.db).await {
        Ok(mut conn) => chat::counterparts(&mut conn, user, MAX_WATCHERS)
            .await
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    if watchers.is_empty() {
        return;
    }
    state
        .events
        .publish(Event::Presence {
            user_id: user,
            online,
            watchers,
        })
        .await;
}

/// `user`'s first socket or stream on this node opened (or its claim is due a refresh).
pub async fn arrive(state: &AppState, user: Uuid) {
    if state.presence.claim(user).await {
        announce(state, user, true).await;
    }
}

/// `user`'s last socket or stream on this node closed.
pub async fn depart(state: &AppState, user: Uuid) {
    if state.presence.release(user).await {
        announce(state, user, false).await;
    }
}
