//! `Idempotency-Key` on the endpoints that move money (pay, cancel, pickup, deliver,
//! withdrawals): one wrapper turns a handler's action into a response that is stored under the
//! key and replayed (`Idempotent-Replayed: true`); the rules live in
//! `services::payments::idempotency`.

use std::future::Future;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use crate::error::AppError;
use crate::services::auth::AuthUser;
use crate::services::payments::idempotency::{self, Stored};
use crate::state::AppState;

/// The `Idempotency-Key` header, if sent.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, AppError> {
    match req.headers().get("Idempotency-Key") {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.to_owned())).map_err(|_| {
            AppError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be visible ASCII.",
            )
        }),
    }
}

/// What identifies a request under an idempotency key: method, path and the parsed body.
fn fingerprint(req: &HttpRequest, body: &impl Serialize) -> Vec<u8> {
    let mut out = format!("{} {}\n", req.method(), req.path()).into_bytes();
    out.extend(serde_json::to_vec(body).unwrap_or_default());
    out
}

/// The response for a first run or a replay.
fn replay(stored: Stored) -> HttpResponse {
    let mut res = HttpResponse::build(stored.status);
    if stored.replayed {
        res.insert_header(("Idempotent-Replayed", "true"));
    }
    if stored.status.is_client_error() || stored.status.is_server_error() {
        res.content_type("application/problem+json");
    }
    res.json(stored.body)
}

/// Runs `action` at most once per (user, `Idempotency-Key`) for this request (`body` is the
/// parsed body) and answers `status` with its result, or replays the first answer. The action
/// gets the key, for work that must also find its own earlier result by it.
pub async fn respond<T, F, Fut>(
    state: &AppState,
    user: AuthUser,
    req: &HttpRequest,
    body: &impl Serialize,
    status: StatusCode,
    action: F,
) -> Result<HttpResponse, AppError>
where
    T: Serialize,
    F: FnOnce(Option<String>) -> Fut,
    Fut: Future<Output = Result<T, AppError>>,
{
    let key = idempotency_key(req)?;
    let stored = idempotency::once(
        state,
        user.user_id.0,
        key.as_deref(),
        &fingerprint(req, body),
        async || {
            let out = action(key.clone()).await?;
            Ok((
                status,
                serde_json::to_value(out).map_err(AppError::internal)?,
            ))
        },
    )
    .await?;
    Ok(replay(stored))
}
