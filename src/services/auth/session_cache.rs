//! Whether a device session is still active, asked on every authenticated request. PostgreSQL
//! is the truth; Redis caches the answer (`session:<id>` → `1` active / `0` revoked) so that
//! most requests cost one GET, and a revocation writes `0` at once so it takes effect on the
//! very next request. Without Redis (single-node mode, or Redis failing) PostgreSQL answers.

use chrono::Utc;
use deadpool_redis::redis::AsyncCommands;

use crate::redis::Redis;
use uuid::Uuid;

use crate::db;
use crate::domain::ids::SessionId;
use crate::error::AppError;
use crate::models::sessions;
use crate::state::AppState;

fn key(redis: &Redis, id: Uuid) -> String {
    redis.keys().key("session", &[&id.to_string()])
}

async fn from_database(state: &AppState, id: SessionId) -> Result<bool, AppError> {
    let mut conn = db::conn(&state.db).await?;
    Ok(sessions::find(&mut conn, id.0)
        .await?
        .is_some_and(|s| s.is_active(Utc::now())))
}

pub async fn is_active(state: &AppState, id: SessionId) -> Result<bool, AppError> {
    let Some(pool) = state.redis.pool() else {
        return from_database(state, id).await;
    };
    let key = key(&state.redis, id.0);
    let cached: Result<Option<String>, String> = async {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        conn.get(&key).await.map_err(|e| e.to_string())
    }
    .await;
    match cached {
        Ok(Some(v)) => Ok(v == "1"),
        Ok(None) => {
            let active = from_database(state, id).await?;
            let ttl = state.settings.auth.session_cache_secs.max(1);
            if let Ok(mut conn) = pool.get().await {
                let value = if active { "1" } else { "0" };
                // NX: a revocation written meanwhile ("0") must not be overwritten by this
                // fill, which read PostgreSQL before the revocation committed.
                let fill = deadpool_redis::redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl)
                    .query_async::<()>(&mut conn)
                    .await;
                if let Err(e) = fill {
                    tracing::warn!(error = %e, "could not cache session state");
                }
            }
            Ok(active)
        }
        Err(e) => {
            tracing::warn!(error = %e, "session cache unavailable; asking PostgreSQL");
            from_database(state, id).await
        }
    }
}

/// How often a failed revocation write is retried, and the first pause (doubling).
const REVOKE_ATTEMPTS: u32 = 4;
const REVOKE_FIRST_PAUSE_MS: u64 = 100;

/// Records revocations (after they are committed): the cache, and an event that closes the
/// sessions' sockets on every node.
///
/// In the cache, for as long as an access token
/// of those sessions could still be presented. If Redis refuses, the write is retried in the
/// background a few times; should every attempt fail, a cached "active" expires within
/// `auth.session_cache_secs`, which bounds how long a revoked session can still be used.
pub async fn mark_revoked(state: &AppState, user_id: Uuid, ids: &[Uuid]) {
    if ids.is_empty() {
        return;
    }
    // Every node closes the sockets of these sessions.
    for session_id in ids {
        state
            .events
            .publish(crate::services::events::Event::SessionRevoked {
                user_id,
                session_id: *session_id,
            })
            .await;
    }
    if state.redis.pool().is_none() {
        return;
    }
    let ttl = state.settings.auth.access_ttl_secs + state.settings.auth.leeway_secs + 60;
    if let Err(e) = write_revoked(&state.redis, ttl, ids).await {
        tracing::warn!(error = %e, sessions = ids.len(), "revocation not cached yet; retrying");
        let redis = state.redis.clone();
        let ids = ids.to_vec();
        actix_web::rt::spawn(async move {
            let mut pause = REVOKE_FIRST_PAUSE_MS;
            for attempt in 2..=REVOKE_ATTEMPTS {
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                pause *= 2;
                match write_revoked(&redis, ttl, &ids).await {
                    Ok(()) => return,
                    Err(e) if attempt == REVOKE_ATTEMPTS => tracing::error!(
                        error = %e,
                        sessions = ids.len(),
                        "could not record session revocation in Redis"
                    ),
                    Err(_) => {}
                }
            }
        });
    }
}

async fn write_revoked(redis: &Redis, ttl: u64, ids: &[Uuid]) -> Result<(), String> {
    let pool = redis.pool().ok_or("redis disabled")?;
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let mut pipe = deadpool_redis::redis::pipe();
    for id in ids {
        pipe.set_ex(key(redis, *id), "0", ttl).ignore();
    }
    pipe.query_async::<()>(&mut conn)
        .await
        .map_err(|e| e.to_string())
}
