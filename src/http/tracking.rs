//! Live tracking and custody: the traveler's positions (`POST /api/matches/{id}/positions`),
//! the parties' tracking view and custody log, and the recipient's link (`/api/track/{token}`
//! and its event stream; no account).

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::actors::tracking as trackers;
use crate::domain::ids::MatchId;
use crate::error::{AppError, Problem};
use crate::services::auth::AuthUser;
use crate::services::custody_log::{self, CustodyView};
use crate::services::tracking::{self, PositionInput, PositionReceipt, TrackingView};
use crate::state::AppState;

/// The traveler reports the parcel's position (the REST alternative to the WebSocket
/// `position` frame). Answered once the position is stored and sent to the watchers; a
/// position the jitter filter drops is answered `accepted: false` with the reason.
#[utoipa::path(post, path = "/api/matches/{id}/positions", tag = "tracking", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Match id")),
    request_body = PositionInput,
    responses(
        (status = 200, description = "Taken or dropped by the filter", body = PositionReceipt),
        (status = 403, description = "`not_traveler`", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "`not_in_transit`", body = Problem),
        (status = 422, description = "Invalid position", body = Problem),
        (status = 503, description = "`overloaded`", body = Problem),
    ))]
pub async fn report_position(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MatchId>,
    body: web::Json<PositionInput>,
) -> Result<web::Json<PositionReceipt>, AppError> {
    Ok(web::Json(
        trackers::report(&state, user, id.into_inner(), &body).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TrailParams {
    /// Most trail points returned (evenly thinned; default `tracking.trail_points`, at most 1000).
    pub points: Option<i64>,
}

/// The parcel's latest position, ETA, trail and tracking events (the sender or the traveler).
#[utoipa::path(get, path = "/api/matches/{id}/tracking", tag = "tracking", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Match id"), TrailParams),
    responses(
        (status = 200, description = "The tracking view", body = TrackingView),
        (status = 404, description = "Not found", body = Problem),
    ))]
pub async fn get_tracking(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MatchId>,
    params: web::Query<TrailParams>,
) -> Result<web::Json<TrackingView>, AppError> {
    Ok(web::Json(
        tracking::for_party(&state, user, id.into_inner(), params.points).await?,
    ))
}

/// The match's custody log (hash-chained) and its verification (the sender or the traveler).
#[utoipa::path(get, path = "/api/matches/{id}/custody", tag = "tracking", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Match id")),
    responses(
        (status = 200, description = "The chain and whether it verifies", body = CustodyView),
        (status = 404, description = "Not found", body = Problem),
    ))]
pub async fn get_custody(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MatchId>,
) -> Result<web::Json<CustodyView>, AppError> {
    Ok(web::Json(
        custody_log::view(&state, user, id.into_inner()).await?,
    ))
}

/// The parcel's status, latest position and ETA for the recipient's link; nothing personal.
#[utoipa::path(get, path = "/api/track/{token}", tag = "tracking",
    params(("token" = String, Path, description = "The tracking token of the link")),
    responses(
        (status = 200, description = "The parcel's status", body = TrackingView),
        (status = 404, description = "No such link", body = Problem),
    ))]
pub async fn track(
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<web::Json<TrackingView>, AppError> {
    Ok(web::Json(tracking::by_token(&state, &token).await?))
}

/// The recipient's live view as Server-Sent Events: a `status` record (with the ETA), the
/// latest `position`, then each newer one (a reader that falls behind gets the newest),
/// `arriving`, and status changes; it ends after delivery.
#[utoipa::path(get, path = "/api/track/{token}/stream", tag = "tracking",
    params(("token" = String, Path, description = "The tracking token of the link")),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream"),
        (status = 204, description = "The parcel is delivered (or the match ended): nothing more will come"),
        (status = 404, description = "No such link", body = Problem),
        (status = 503, description = "`overloaded`: the parcel has as many live followers as a node takes", body = Problem),
    ))]
pub async fn track_stream(
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    Ok(
        match trackers::open_recipient_stream(&state, &token).await? {
            Some(records) => super::sse::response(records),
            None => HttpResponse::NoContent().finish(),
        },
    )
}
