//! Live tracking use cases: what a parcel's tracker is built from (`seed`, the latest position),
//! how its refusals read as API errors, positions as clients send them, and the views — the
//! parties' `GET /api/matches/{id}/tracking` with the trail, and the
//! recipient's `GET /api/track/{token}` (no account; status, latest position, ETA, the custody
//! times — nothing personal, no trail).

pub mod writer;

use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::domain::geo::LatLng;
use crate::domain::ids::MatchId;
use crate::domain::tracking::{Fix, Motion, Refusal};
use crate::domain::FieldError;
use crate::error::AppError;
use crate::models::positions::{self as rows, Point};
use crate::services::auth::AuthUser;
use crate::services::events::TrackedPosition;
use crate::state::AppState;

/// What a tracker knows of its match (rebuilt from the database when it starts).
#[derive(Debug, Clone)]
pub struct Seed {
    pub sender_id: Uuid,
    pub traveler_id: Uuid,
    pub status: String,
    pub picked_up_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub arriving_at: Option<DateTime<Utc>>,
    /// `arriving` was raised (stored, or sent to be stored by this node).
    pub arriving: bool,
    pub destination: LatLng,
    pub scheduled_arrival: DateTime<Utc>,
    pub latest_point: Option<Point>,
}

impl From<rows::Seed> for Seed {
    fn from(s: rows::Seed) -> Self {
        let latest_point = match (s.latest_at, s.latest_lat, s.latest_lng, s.latest_accuracy_m) {
            (Some(recorded_at), Some(lat), Some(lng), Some(accuracy_m)) => Some(Point {
                recorded_at,
                lat,
                lng,
                accuracy_m,
            }),
            _ => None,
        };
        Self {
            sender_id: s.sender_id,
            traveler_id: s.traveler_id,
            status: s.status,
            picked_up_at: s.picked_up_at,
            delivered_at: s.delivered_at,
            arriving: s.arriving_at.is_some(),
            arriving_at: s.arriving_at,
            destination: LatLng::clamped(s.destination_lat, s.destination_lng),
            scheduled_arrival: s.scheduled_arrival,
            latest_point,
        }
    }
}

pub async fn seed(state: &AppState, match_id: Uuid) -> Result<Option<Seed>, AppError> {
    let mut conn = db::conn(&state.db).await?;
    Ok(rows::seed(&mut conn, match_id).await?.map(Seed::from))
}

/// The latest stored position with its ETA: Redis has it with the speed and ETA computed when it
/// was accepted; if Redis lost it (or is down), the trail's last point with an ETA from it.
async fn latest_of(state: &AppState, match_id: Uuid, seed: &Seed) -> Option<TrackedPosition> {
    let point = seed.latest_point?;
    if let Some(kept) = writer::latest(&state.redis, match_id).await {
        if kept.recorded_at >= point.recorded_at {
            return Some(kept);
        }
    }
    Some(stored_position(match_id, seed, point))
}

/// What a tracker starts from: its match and the latest stored position; `None` when there is
/// no such match.
pub async fn tracker_start(
    state: &AppState,
    match_id: Uuid,
) -> Result<Option<(Seed, Option<TrackedPosition>)>, AppError> {
    let Some(seed) = seed(state, match_id).await? else {
        return Ok(None);
    };
    let latest = latest_of(state, match_id, &seed).await;
    Ok(Some((seed, latest)))
}

/// The match a recipient's live stream follows; `None` when the parcel moves no more
/// (delivered, or the match ended: the stream would have nothing to say).
pub async fn live_match_by_token(state: &AppState, token: &str) -> Result<Option<Uuid>, AppError> {
    let (id, seed) = by_token_seed(state, token).await?;
    Ok((!crate::domain::tracking::moves_no_more(&seed.status)).then_some(id))
}

/// A stored point as a position, its ETA computed from it alone (no speed known).
pub fn stored_position(match_id: Uuid, seed: &Seed, point: Point) -> TrackedPosition {
    let fix = Fix {
        at: LatLng::clamped(point.lat, point.lng),
        accuracy_m: point.accuracy_m,
        recorded_at: point.recorded_at,
    };
    let motion = Motion {
        latest: Some(fix),
        speed_mps: None,
    };
    TrackedPosition {
        match_id,
        lat: point.lat,
        lng: point.lng,
        accuracy_m: point.accuracy_m,
        recorded_at: point.recorded_at,
        eta: motion.eta(seed.destination, seed.scheduled_arrival, Utc::now()),
        speed_mps: None,
    }
}

/// A tracker's refusal as the API's error.
pub fn refusal(r: Refusal) -> AppError {
    match r {
        Refusal::NotFound => AppError::not_found(),
        Refusal::NotTraveler => AppError::forbidden(
            "not_traveler",
            "Only the traveler carrying the parcel reports its position.",
        ),
        Refusal::NotInTransit(status) => AppError::conflict(
            "not_in_transit",
            format!(
                "Positions are taken only while the parcel is in transit; this match is {status}."
            ),
        ),
        Refusal::Overloaded => AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Too many positions at once; try again shortly.",
        ),
    }
}

/// A position as clients send it (REST body and WebSocket frame alike).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PositionInput {
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    /// The accuracy radius the device reports, metres.
    pub accuracy_m: Option<f64>,
    /// When the device took the fix (RFC 3339).
    pub recorded_at: Option<String>,
}

impl PositionInput {
    pub fn from_frame(frame: &serde_json::Value) -> Self {
        Self {
            lat: frame["lat"].as_f64(),
            lng: frame["lng"].as_f64(),
            accuracy_m: frame["accuracy_m"].as_f64(),
            recorded_at: frame["recorded_at"].as_str().map(str::to_owned),
        }
    }

    pub fn parse(&self) -> Result<Fix, Vec<FieldError>> {
        let mut errors = Vec::new();
        let at = match (self.lat, self.lng) {
            (Some(lat), Some(lng)) => LatLng::parse(lat, lng, "position")
                .map_err(|e| FieldError::new(e.field.trim_start_matches("position."), e.message))
                .map_err(|e| errors.push(e))
                .ok(),
            (lat, lng) => {
                for (name, v) in [("lat", lat), ("lng", lng)] {
                    if v.is_none() {
                        errors.push(FieldError::new(name, "required, a number"));
                    }
                }
                None
            }
        };
        let accuracy = match self.accuracy_m {
            Some(a) if a.is_finite() && (0.0..=100_000.0).contains(&a) => Some(a as f32),
            Some(_) => {
                errors.push(FieldError::new(
                    "accuracy_m",
                    "must be between 0 and 100000",
                ));
                None
            }
            None => {
                errors.push(FieldError::new("accuracy_m", "required, metres"));
                None
            }
        };
        let recorded_at = match self
            .recorded_at
            .as_deref()
            .map(DateTime::parse_from_rfc3339)
        {
            Some(Ok(t)) => Some(t.with_timezone(&Utc)),
            Some(Err(_)) => {
                errors.push(FieldError::new("recorded_at", "must be an RFC 3339 time"));
                None
            }
            None => {
                errors.push(FieldError::new("recorded_at", "required, RFC 3339"));
                None
            }
        };
        match (at, accuracy, recorded_at) {
            (Some(at), Some(accuracy_m), Some(recorded_at)) if errors.is_empty() => Ok(Fix {
                at,
                accuracy_m,
                // PostgreSQL keeps microseconds: the trail's key must be what is compared.
                recorded_at: chrono::SubsecRound::trunc_subsecs(recorded_at, 6),
            }),
            _ => Err(errors),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PositionReceipt {
    /// The position passed the filter (a dropped one is not an error: GPS jitter happens).
    pub accepted: bool,
    /// Stored in the trail and sent to the watchers.
    pub stored: bool,
    /// Why the filter dropped it: `inaccurate`, `too_close`, `out_of_order`, `future`,
    /// `too_fast`, `before_pickup`.
    pub dropped: Option<String>,
    pub eta: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LatestPosition {
    pub lat: f64,
    pub lng: f64,
    pub accuracy_m: f32,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrackingEvent {
    /// `picked_up`, `arriving`, `delivered`.
    pub kind: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Trail {
    /// Points stored in all.
    pub total: i64,
    /// At most the asked number, evenly thinned, always the first and the last, oldest first.
    pub points: Vec<LatestPosition>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrackingView {
    pub match_id: Uuid,
    /// `paid` (waiting for pickup), `in_transit`, `delivered`, `completed`, `cancelled`, …
    pub status: String,
    pub picked_up_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub latest: Option<LatestPosition>,
    /// Estimated arrival while the parcel is on its way (the README states the method).
    pub eta: Option<DateTime<Utc>>,
    pub events: Vec<TrackingEvent>,
    /// The parties' view only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trail: Option<Trail>,
}

fn latest_view(p: &TrackedPosition) -> LatestPosition {
    LatestPosition {
        lat: p.lat,
        lng: p.lng,
        accuracy_m: p.accuracy_m,
        recorded_at: p.recorded_at,
    }
}

async fn view_of(state: &AppState, match_id: Uuid, seed: &Seed) -> TrackingView {
    let latest = latest_of(state, match_id, seed).await;
    let eta = match seed.status.as_str() {
        "in_transit" => Some(latest.as_ref().map_or(seed.scheduled_arrival, |p| p.eta)),
        "paid" => Some(seed.scheduled_arrival),
        _ => None,
    };
    let events = [
        ("picked_up", seed.picked_up_at),
        ("arriving", seed.arriving_at),
        ("delivered", seed.delivered_at),
    ]
    .into_iter()
    .filter_map(|(kind, at)| {
        at.map(|at| TrackingEvent {
            kind: kind.to_owned(),
            at,
        })
    })
    .collect();
    TrackingView {
        match_id,
        status: seed.status.clone(),
        picked_up_at: seed.picked_up_at,
        delivered_at: seed.delivered_at,
        latest: latest.as_ref().map(latest_view),
        eta,
        events,
        trail: None,
    }
}

/// `GET /api/matches/{id}/tracking` (the sender or the traveler).
pub async fn for_party(
    state: &AppState,
    auth: AuthUser,
    id: MatchId,
    points: Option<i64>,
) -> Result<TrackingView, AppError> {
    let seed = seed(state, id.0)
        .await?
        .filter(|s| s.sender_id == auth.user_id.0 || s.traveler_id == auth.user_id.0)
        .ok_or_else(AppError::not_found)?;
    let max = points
        .unwrap_or(state.settings.tracking.trail_points)
        .clamp(2, 1000);
    let mut view = view_of(state, id.0, &seed).await;
    let mut conn = db::conn(&state.db).await?;
    let (total, points) = rows::trail(&mut conn, id.0, max).await?;
    view.trail = Some(Trail {
        total,
        points: points
            .into_iter()
            .map(|p| LatestPosition {
                lat: p.lat,
                lng: p.lng,
                accuracy_m: p.accuracy_m,
                recorded_at: p.recorded_at,
            })
            .collect(),
    });
    Ok(view)
}

/// A token is 43 URL-safe characters; anything else is not one (404 without a query).
fn plausible(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The match behind a recipient's token.
async fn by_token_seed(state: &AppState, token: &str) -> Result<(Uuid, Seed), AppError> {
    if !plausible(token) {
        return Err(AppError::not_found());
    }
    let mut conn = db::conn(&state.db).await?;
    rows::seed_by_token(&mut conn, token)
        .await?
        .map(|seed| (seed.id, Seed::from(seed)))
        .ok_or_else(AppError::not_found)
}

/// `GET /api/track/{token}`: the recipient's view. The position only while the parcel is on
/// its way: the traveler's whereabouts are nobody's business before pickup or after delivery.
pub async fn by_token(state: &AppState, token: &str) -> Result<TrackingView, AppError> {
    let (id, seed) = by_token_seed(state, token).await?;
    let mut view = view_of(state, id, &seed).await;
    if seed.status != "in_transit" {
        view.latest = None;
    }
    Ok(view)
}

/// The sender's copy of the recipient's link (`/api/track/<token>`), once the match is paid.
pub async fn url_for_sender(
    conn: &mut diesel_async::AsyncPgConnection,
    match_id: uuid::Uuid,
) -> Result<Option<String>, AppError> {
    Ok(crate::models::matches::tracking_token(conn, match_id)
        .await?
        .map(|t| format!("/api/track/{t}")))
}
