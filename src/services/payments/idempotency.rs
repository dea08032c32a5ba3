//! `Idempotency-Key` on endpoints that move money: the first request under a key runs and its
//! response (success or a client error) is stored; a replay with the same request gets that
//! response again; the same key with another request is refused (422); a replay while the
//! first still runs gets 409. Server errors are not stored (the key is freed for a retry); a
//! first request that never answered (its process died) is taken over by a retry after a
//! minute. Keys are per user and kept 24 hours.

use std::future::Future;

use actix_web::http::StatusCode;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db;
use crate::error::AppError;
use crate::models::payments as rows;
use crate::state::AppState;

/// A claim whose request has not answered in this long is taken over by a retry.
const STALE_CLAIM_SECS: i64 = 60;

/// A response to send (or replay).
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: StatusCode,
    pub body: serde_json::Value,
    /// True when this is the first request's stored answer.
    pub replayed: bool,
}

fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// Runs `f` at most once per (user, key); `fingerprint` identifies the request (method, path,
/// body). Without a key, `f` simply runs.
pub async fn once<F, Fut>(
    state: &AppState,
    user: Uuid,
    key: Option<&str>,
    fingerprint: &[u8],
    f: F,
) -> Result<Stored, AppError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(StatusCode, serde_json::Value), AppError>>,
{
    let Some(key) = key else {
        let (status, body) = f().await?;
        return Ok(Stored {
            status,
            body,
            replayed: false,
        });
    };
    if !valid_key(key) {
        return Err(AppError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters.",
        ));
    }
    let hash = Sha256::digest(fingerprint).to_vec();
    let claim = Uuid::now_v7();
    let mut conn = db::conn(&state.db).await?;
    if !rows::claim_key(&mut conn, user, key, &hash, claim).await? {
        let row = rows::find_key(&mut conn, user, key)
            .await?
            .ok_or_else(|| AppError::conflict("idempotency_in_progress", "Retry shortly."))?;
        if row.request_hash != hash {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "This Idempotency-Key was used for a different request.",
            ));
        }
        match (row.status_code, row.response) {
            (Some(code), Some(body)) => {
                return Ok(Stored {
                    status: u16::try_from(code)
                        .ok()
                        .and_then(|c| StatusCode::from_u16(c).ok())
                        .unwrap_or(StatusCode::OK),
                    body,
                    replayed: true,
                })
            }
            // A first request that never answered: taken over after a while. The actions
            // below are idempotent on their own (a withdrawal is found by its request key, a
            // pay by its match's intent, a cancellation or handover by the match's state), so
            // a second run does not act twice; only the current claim may store the answer.
            _ if row.created_at
                < chrono::Utc::now() - chrono::Duration::seconds(STALE_CLAIM_SECS)
                && rows::take_over_key(&mut conn, user, key, row.claim, claim).await? => {}
            _ => {
                return Err(AppError::conflict(
                    "idempotency_in_progress",
                    "The first request with this Idempotency-Key is still running; retry shortly.",
                )
                .with_header("Retry-After", "1"))
            }
        }
    }
    drop(conn);
    let outcome = f().await;
    let mut conn = db::conn(&state.db).await?;
    match &outcome {
        Ok((status, body)) => {
            rows::store_response(&mut conn, user, key, claim, status_code(*status), body).await?;
        }
        Err(e) if keep_error(e.status()) => {
            let body = serde_json::to_value(e.problem()).unwrap_or_default();
            rows::store_response(&mut conn, user, key, claim, status_code(e.status()), &body)
                .await?;
        }
        Err(_) => {
            rows::release_key(&mut conn, user, key, claim).await?;
        }
    }
    outcome.map(|(status, body)| Stored {
        status,
        body,
        replayed: false,
    })
}

/// A client error is the answer to this request; a server error, rate limit or outage is not
/// (the retry should run again).
fn keep_error(status: StatusCode) -> bool {
    status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS
}

fn status_code(status: StatusCode) -> i16 {
    i16::try_from(status.as_u16()).unwrap_or(500)
}

/// Forgets idempotency keys older than a day and webhook event ids older than 30 days (Stripe
/// stops retrying an event after 3).
pub async fn purge(state: &AppState) -> Result<usize, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let now = chrono::Utc::now();
    let keys = rows::purge_keys(&mut conn, now - chrono::Duration::hours(24)).await?;
    let events = rows::purge_webhooks(&mut conn, now - chrono::Duration::days(30)).await?;
    Ok(keys + events)
}
