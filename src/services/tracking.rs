//! The recipient's view of a parcel (`GET /api/track/{token}`): no account, an unguessable
//! token from the match, and nothing personal — the status and its times. Live positions and
//! the ETA come with the parcel tracker (issue 9).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::db;
use crate::error::AppError;
use crate::models::matches as rows;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct TrackingView {
    /// `paid` (waiting for pickup), `in_transit`, `delivered`, `completed`, `cancelled`, …
    pub status: String,
    pub picked_up_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The latest position (with the parcel tracker; `null` until then).
    pub latest: Option<serde_json::Value>,
    /// Estimated arrival (with the parcel tracker; `null` until then).
    pub eta: Option<DateTime<Utc>>,
}

/// A token is 43 URL-safe characters; anything else is not one (404 without a query).
fn plausible(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub async fn by_token(state: &AppState, token: &str) -> Result<TrackingView, AppError> {
    if !plausible(token) {
        return Err(AppError::not_found());
    }
    let mut conn = db::conn(&state.db).await?;
    let (status, picked_up_at, delivered_at) = rows::tracking_by_token(&mut conn, token)
        .await?
        .ok_or_else(AppError::not_found)?;
    Ok(TrackingView {
        status,
        picked_up_at,
        delivered_at,
        latest: None,
        eta: None,
    })
}

/// The sender's copy of the recipient's link (`/api/track/<token>`), once the match is paid.
pub async fn url_for_sender(
    conn: &mut diesel_async::AsyncPgConnection,
    match_id: uuid::Uuid,
) -> Result<Option<String>, AppError> {
    Ok(rows::tracking_token(conn, match_id)
        .await?
        .map(|t| format!("/api/track/{t}")))
}
