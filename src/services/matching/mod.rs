//! Matching and booking: suggestions and explanations (through the matchmaker actor and the
//! pure scoring), requests and their lifecycle, listing. Price = trip price per kg × parcel
//! weight / 1000, fee = price × `payments.fee_bps` / 10 000, both in minor units rounded half
//! up; the traveler's payout is price − fee.

pub mod facts;
pub mod lifecycle;
pub mod suggest;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::domain::ids::MatchId;
use crate::domain::money::MoneyDto;
use crate::error::AppError;
use crate::models::matches::{self as rows, MatchEventRow, MatchFilter, MatchRow};
use crate::services::auth::AuthUser;
use crate::services::pagination::{clamp_limit, split_page, Position};
use crate::state::AppState;

pub use lifecycle::{act, request, sweep_expired};

#[derive(Debug, Serialize, ToSchema)]
pub struct MatchEventView {
    /// `request`, `accept`, `decline`, `cancel`, `expire`, …
    pub action: String,
    pub from: Option<String>,
    pub to: String,
    /// The user who acted; absent when the system did (expiry, another request accepted).
    pub actor_id: Option<Uuid>,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MatchView {
    pub id: Uuid,
    /// `requested`, `accepted`, `declined`, `cancelled`, `expired`, `paid`, `in_transit`,
    /// `delivered`, `completed`, `disputed`.
    pub status: String,
    /// What the sender pays.
    pub price: MoneyDto,
    /// The platform's part, taken from the traveler's payout.
    pub fee: MoneyDto,
    pub payout: MoneyDto,
    pub parcel_id: Uuid,
    pub trip_id: Uuid,
    pub sender_id: Uuid,
    pub traveler_id: Uuid,
    pub requested_by: Uuid,
    pub weight_grams: i32,
    /// When the request (or the unpaid acceptance) lapses.
    pub expires_at: Option<DateTime<Utc>>,
    /// The match's chat room.
    pub room_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The state changes, oldest first (on `GET /api/matches/{id}` and after an action).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<MatchEventView>>,
    /// The sender's payment (on `GET /api/matches/{id}`, once there is one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment: Option<crate::services::payments::PaymentView>,
    /// For the sender only, while valid: the code to give the traveler at pickup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pickup_code: Option<String>,
    /// For the sender only, while valid: the recipient's code for delivery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_code: Option<String>,
    /// For the sender only, once paid: the recipient's tracking link (`/api/track/<token>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_url: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MatchPage {
    pub items: Vec<MatchView>,
    pub next_cursor: Option<String>,
}

pub(crate) fn view(m: MatchRow, events: Option<Vec<MatchEventRow>>) -> MatchView {
    let money = |amount| MoneyDto {
        amount,
        currency: m.currency.clone(),
    };
    MatchView {
        id: m.id,
        status: m.status.clone(),
        price: money(m.price),
        fee: money(m.fee),
        payout: money(m.price - m.fee),
        parcel_id: m.parcel_id,
        trip_id: m.trip_id,
        sender_id: m.sender_id,
        traveler_id: m.traveler_id,
        requested_by: m.requested_by,
        weight_grams: m.weight_grams,
        expires_at: m.expires_at,
        room_id: m.room_id,
        created_at: m.created_at,
        updated_at: m.updated_at,
        payment: None,
        pickup_code: None,
        delivery_code: None,
        tracking_url: None,
        events: events.map(|e| {
            e.into_iter()
                .map(|e| MatchEventView {
                    action: e.action,
                    from: e.from_status,
                    to: e.to_status,
                    actor_id: e.actor_id,
                    reason: e.reason,
                    at: e.created_at,
                })
                .collect()
        }),
    }
}

/// A match the caller takes part in (anyone else: 404), with its events.
pub async fn get(state: &AppState, auth: AuthUser, id: MatchId) -> Result<MatchView, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let m = rows::find(&mut conn, id.0)
        .await?
        .filter(|m| m.sender_id == auth.user_id.0 || m.traveler_id == auth.user_id.0)
        .ok_or_else(AppError::not_found)?;
    let events = rows::events(&mut conn, m.id).await?;
    let mut payment = crate::services::payments::payment_of(&mut conn, m.id).await?;
    if m.sender_id != auth.user_id.0 {
        // The sender's card troubles are the sender's.
        if let Some(p) = payment.as_mut() {
            p.failure = None;
        }
    }
    let (codes, tracking_url) = if m.sender_id == auth.user_id.0 {
        (
            crate::services::payments::custody::readable_codes(&mut conn, state, &m).await?,
            crate::services::tracking::url_for_sender(&mut conn, m.id).await?,
        )
    } else {
        ((None, None), None)
    };
    let mut out = view(m, Some(events));
    out.payment = payment;
    (out.pickup_code, out.delivery_code) = codes;
    out.tracking_url = tracking_url;
    Ok(out)
}

const SCOPE: &str = "matches";

pub async fn list(
    state: &AppState,
    auth: AuthUser,
    status: Option<String>,
    role: Option<&'static str>,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<MatchPage, AppError> {
    let limit = clamp_limit(limit);
    let before = state.cursors.before_id(SCOPE, cursor)?;
    let mut conn = db::conn(&state.db).await?;
    let filter = MatchFilter {
        user: auth.user_id.0,
        role,
        status,
        before,
    };
    let rows = rows::list(&mut conn, &filter, limit).await?;
    let (rows, next) = split_page(rows, limit, |m| Position {
        time_us: None,
        id: m.id,
    });
    Ok(MatchPage {
        items: rows.into_iter().map(|m| view(m, None)).collect(),
        next_cursor: next.map(|p| state.cursors.encode(SCOPE, &p)),
    })
}
