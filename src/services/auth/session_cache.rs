//! Whether a device session is still active, asked on every authenticated request. PostgreSQL
//! is the truth; Redis caches the answer (`session:<id>` → `1` active / `0` revoked) so that
//! most requests cost one GET, and a revocation writes `0` at once so it takes effect on the
//! very next request. Without Redis (single-node mode, or Redis failing) PostgreSQL answers.

use chrono::Utc;
use deadpool_redis::redis::AsyncCommands;
use uuid::Uuid;

use crate::db;
use crate::domain::ids::SessionId;
use crate::error::AppError;
use crate::models::sessions;
use crate::state::AppState;

fn key(state: &AppState, id: Uuid) -> String {
    state.redis.keys().key("session", &[&id.to_string()])
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
    let key = key(state, id.0);
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
                if let Err(e) = conn.set_ex::<_, _, ()>(&key, value, ttl).await {
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

/// Records revocations in the cache (after they are committed), for as long as an access token
/// of those sessions could still be presented.
pub async fn mark_revoked(state: &AppState, ids: &[Uuid]) {
    let Some(pool) = state.redis.pool() else {
        return;
    };
    if ids.is_empty() {
        return;
    }
    let ttl = state.settings.auth.access_ttl_secs + state.settings.auth.leeway_secs + 60;
    let result: Result<(), String> = async {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        let mut pipe = deadpool_redis::redis::pipe();
        for id in ids {
            pipe.set_ex(key(state, *id), "0", ttl).ignore();
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    if let Err(e) = result {
        // The cached "1" expires within session_cache_secs; until then PostgreSQL is not asked.
        tracing::error!(error = %e, sessions = ids.len(), "could not record session revocation in Redis");
    }
}
