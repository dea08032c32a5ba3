//! `/api/matches`: suggestions, explanations, requests and their lifecycle.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::parse_optional_body;
use super::idempotent;
use crate::domain::ids::{MatchId, ParcelId, TripId};
use crate::domain::matching::MatchAction;
use crate::domain::FieldError;
use crate::error::{AppError, Problem};
use crate::services::auth::AuthUser;
use crate::services::matching::suggest::{self, Explanation, SuggestionList};
use crate::services::matching::{self, MatchPage, MatchView};
use crate::services::payments::codes::CodeKind;
use crate::services::payments::{self, custody, PayOutcome};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SuggestionParams {
    /// Best trips for my parcel.
    #[param(value_type = Option<uuid::Uuid>)]
    pub parcel_id: Option<ParcelId>,
    /// Best parcels for my trip.
    #[param(value_type = Option<uuid::Uuid>)]
    pub trip_id: Option<TripId>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PairParams {
    #[param(value_type = uuid::Uuid)]
    pub parcel_id: ParcelId,
    #[param(value_type = uuid::Uuid)]
    pub trip_id: TripId,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMatchRequest {
    #[schema(value_type = uuid::Uuid)]
    pub parcel_id: ParcelId,
    #[schema(value_type = uuid::Uuid)]
    pub trip_id: TripId,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MatchListParams {
    pub status: Option<String>,
    /// `sender` or `traveler`; both when absent.
    pub role: Option<String>,
    pub cursor: Option<String>,
    /// Default 20, at most 100.
    pub limit: Option<i64>,
}

/// Best trips for my parcel (`parcel_id`) or best parcels for my trip (`trip_id`).
#[utoipa::path(get, path = "/api/matches/suggestions", tag = "matching", security(("bearer" = [])), params(SuggestionParams),
    responses(
        (status = 200, description = "Ranked, best first, with factor breakdowns", body = SuggestionList),
        (status = 404, description = "Not my parcel or trip", body = Problem),
        (status = 422, description = "Exactly one of parcel_id and trip_id", body = Problem),
    ))]
pub async fn get_suggestions(
    state: web::Data<AppState>,
    user: AuthUser,
    params: web::Query<SuggestionParams>,
) -> Result<web::Json<SuggestionList>, AppError> {
    match (params.parcel_id, params.trip_id) {
        (Some(p), None) => Ok(web::Json(suggest::for_parcel(&state, user, p).await?)),
        (None, Some(t)) => Ok(web::Json(suggest::for_trip(&state, user, t).await?)),
        _ => Err(FieldError::new("parcel_id", "give exactly one of parcel_id and trip_id").into()),
    }
}

/// Why a parcel and a trip match (score and factors) or not (every failed constraint).
#[utoipa::path(get, path = "/api/matches/explain", tag = "matching", security(("bearer" = [])), params(PairParams),
    responses((status = 200, description = "The verdict", body = Explanation), (status = 404, description = "Neither side is mine", body = Problem)))]
pub async fn explain_match(
    state: web::Data<AppState>,
    user: AuthUser,
    params: web::Query<PairParams>,
) -> Result<web::Json<Explanation>, AppError> {
    Ok(web::Json(
        suggest::explain(&state, user, params.parcel_id, params.trip_id).await?,
    ))
}

/// Requests a match: the sender for their parcel, or the traveler for their trip.
#[utoipa::path(post, path = "/api/matches", tag = "matching", security(("bearer" = [])), request_body = CreateMatchRequest,
    responses(
        (status = 201, description = "Requested", body = MatchView),
        (status = 404, description = "Not my parcel or trip, or the other side is not visible", body = Problem),
        (status = 409, description = "`already_requested` or `request_limit_reached`", body = Problem),
        (status = 422, description = "`not_eligible`: the failed constraints are named", body = Problem),
    ))]
pub async fn create_match(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<CreateMatchRequest>,
) -> Result<HttpResponse, AppError> {
    let m = matching::request(&state, user, body.parcel_id, body.trip_id).await?;
    Ok(HttpResponse::Created().json(m))
}

/// My matches, newest first.
#[utoipa::path(get, path = "/api/matches", tag = "matching", security(("bearer" = [])), params(MatchListParams),
    responses((status = 200, description = "One page", body = MatchPage), (status = 422, description = "Bad role or status", body = Problem)))]
pub async fn list_matches(
    state: web::Data<AppState>,
    user: AuthUser,
    params: web::Query<MatchListParams>,
) -> Result<web::Json<MatchPage>, AppError> {
    let p = params.into_inner();
    let role = match p.role.as_deref() {
        None => None,
        Some("sender") => Some("sender"),
        Some("traveler") => Some("traveler"),
        Some(_) => return Err(FieldError::new("role", "must be sender or traveler").into()),
    };
    if let Some(s) = p.status.as_deref() {
        if crate::domain::matching::MatchStatus::parse(s).is_none() {
            return Err(FieldError::new("status", "is not a match status").into());
        }
    }
    Ok(web::Json(
        matching::list(&state, user, p.status, role, p.cursor.as_deref(), p.limit).await?,
    ))
}

/// One of my matches, with its event log.
#[utoipa::path(get, path = "/api/matches/{id}", tag = "matching", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Match id")),
    responses((status = 200, description = "The match", body = MatchView), (status = 404, description = "Not found", body = Problem)))]
pub async fn get_match(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MatchId>,
) -> Result<web::Json<MatchView>, AppError> {
    Ok(web::Json(
        matching::get(&state, user, id.into_inner()).await?,
    ))
}

async fn act(
    state: web::Data<AppState>,
    user: AuthUser,
    id: MatchId,
    action: MatchAction,
) -> Result<web::Json<MatchView>, AppError> {
    Ok(web::Json(matching::act(&state, user, id, action).await?))
}

/// Accepts a request (the other party only): reserves the capacity, the parcel becomes matched.
#[utoipa::path(post, path = "/api/matches/{id}/accept", tag = "matching", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Match id")),
    responses(
        (status = 200, description = "Accepted", body = MatchView),
        (status = 403, description = "Not the other party", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "`invalid_transition` or `insufficient_capacity`", body = Problem),
    ))]
pub async fn accept_match(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MatchId>,
) -> Result<web::Json<MatchView>, AppError> {
    act(state, user, id.into_inner(), MatchAction::Accept).await
}

/// Declines a request (the other party only).
#[utoipa::path(post, path = "/api/matches/{id}/decline", tag = "matching", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Match id")),
    responses(
        (status = 200, description = "Declined", body = MatchView),
        (status = 403, description = "Not the other party", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "`invalid_transition`", body = Problem),
    ))]
pub async fn decline_match(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MatchId>,
) -> Result<web::Json<MatchView>, AppError> {
    act(state, user, id.into_inner(), MatchAction::Decline).await
}

/// Cancels a match (either party) before pickup. Before payment no money moves; a paid one is
/// refunded: in full when the traveler cancels (who gets a reliability strike) or the sender
/// cancels more than 24 h before departure, else 80 % to the sender and 20 % to the traveler.
/// Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/api/matches/{id}/cancel", tag = "matching", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Match id"),
           ("Idempotency-Key" = Option<String>, Header, description = "A replay returns the first response")),
    responses(
        (status = 200, description = "Cancelled", body = MatchView),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "`invalid_transition` (e.g. after pickup: open a dispute)", body = Problem),
    ))]
pub async fn cancel_match(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    id: web::Path<MatchId>,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    idempotent::respond(&state, user, &req, &(), StatusCode::OK, async |_| {
        let m = matching::act(&state, user, id, MatchAction::Cancel).await?;
        state.payments.kick.notify_one();
        Ok(m)
    })
    .await
}

#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    /// Confirm at once with this payment method (`pm_…`); without one, confirm on the client
    /// with the returned `client_secret`.
    pub payment_method: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The 6-digit code.
    pub code: String,
}

/// Pays an accepted match (the sender): a charge at the provider, then the money is held and
/// the match is `paid` (with the test provider at once). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/api/matches/{id}/pay", tag = "matching", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Match id"),
           ("Idempotency-Key" = Option<String>, Header, description = "A replay returns the first response; another body under the same key is 422")),
    request_body = PayRequest,
    responses(
        (status = 200, description = "`paid`, or `accepted` with a client secret while the charge is pending", body = PayOutcome),
        (status = 402, description = "`payment_declined`", body = Problem),
        (status = 403, description = "Not the sender", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "`invalid_transition`, `expired`, `idempotency_in_progress`", body = Problem),
        (status = 422, description = "`idempotency_key_reused`", body = Problem),
        (status = 503, description = "The payment provider is not answering", body = Problem),
    ))]
pub async fn pay_match(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    id: web::Path<MatchId>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let body: PayRequest = parse_optional_body(&body)?;
    let id = id.into_inner();
    idempotent::respond(&state, user, &req, &body, StatusCode::OK, async |_| {
        payments::pay(&state, user, id, body.payment_method.clone()).await
    })
    .await
}

/// The traveler enters the sender's pickup code at handover: `paid` → `in_transit`. Honours
/// `Idempotency-Key`.
#[utoipa::path(post, path = "/api/matches/{id}/pickup", tag = "matching", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Match id"),
           ("Idempotency-Key" = Option<String>, Header, description = "A replay returns the first response")),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "In transit; the delivery code is issued", body = MatchView),
        (status = 403, description = "Not the traveler", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "`invalid_transition`, `code_expired`", body = Problem),
        (status = 422, description = "`wrong_code`, with the attempts left", body = Problem),
        (status = 423, description = "`code_locked` after 5 wrong attempts", body = Problem),
    ))]
pub async fn pickup_match(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    id: web::Path<MatchId>,
    body: web::Json<CodeRequest>,
) -> Result<HttpResponse, AppError> {
    hand_over(
        &state,
        user,
        &req,
        id.into_inner(),
        body.into_inner(),
        CodeKind::Pickup,
    )
    .await
}

/// The traveler enters the recipient's delivery code: `in_transit` → `delivered`; the held
/// funds are released after `payments.release_delay_secs` (then the match is `completed`).
/// Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/api/matches/{id}/deliver", tag = "matching", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Match id"),
           ("Idempotency-Key" = Option<String>, Header, description = "A replay returns the first response")),
    request_body = CodeRequest,
    responses(
        (status = 200, description = "Delivered (or completed when released at once)", body = MatchView),
        (status = 403, description = "Not the traveler", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "`invalid_transition`, `code_expired`", body = Problem),
        (status = 422, description = "`wrong_code`, with the attempts left", body = Problem),
        (status = 423, description = "`code_locked` after 5 wrong attempts", body = Problem),
    ))]
pub async fn deliver_match(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    id: web::Path<MatchId>,
    body: web::Json<CodeRequest>,
) -> Result<HttpResponse, AppError> {
    hand_over(
        &state,
        user,
        &req,
        id.into_inner(),
        body.into_inner(),
        CodeKind::Delivery,
    )
    .await
}

/// A code at handover, once per `Idempotency-Key`.
async fn hand_over(
    state: &AppState,
    user: AuthUser,
    req: &HttpRequest,
    id: MatchId,
    body: CodeRequest,
    kind: CodeKind,
) -> Result<HttpResponse, AppError> {
    idempotent::respond(state, user, req, &body, StatusCode::OK, async |_| {
        custody::hand_over(state, user, id, kind, &body.code).await
    })
    .await
}

/// The sender replaces the pickup code (new code, attempts reset), before pickup.
#[utoipa::path(post, path = "/api/matches/{id}/codes/pickup", tag = "matching", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Match id")),
    responses(
        (status = 200, description = "Reissued; read it on GET /api/matches/{id}", body = MatchView),
        (status = 403, description = "Not the sender", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "Not before pickup", body = Problem),
    ))]
pub async fn reissue_pickup_code(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MatchId>,
) -> Result<web::Json<MatchView>, AppError> {
    Ok(web::Json(
        custody::reissue(&state, user, id.into_inner(), CodeKind::Pickup).await?,
    ))
}

/// The sender replaces the recipient's delivery code (new code, attempts reset, a fresh
/// validity window), while in transit.
#[utoipa::path(post, path = "/api/matches/{id}/codes/delivery", tag = "matching", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Match id")),
    responses(
        (status = 200, description = "Reissued; read it on GET /api/matches/{id}", body = MatchView),
        (status = 403, description = "Not the sender", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "Not in transit", body = Problem),
    ))]
pub async fn reissue_delivery_code(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<MatchId>,
) -> Result<web::Json<MatchView>, AppError> {
    Ok(web::Json(
        custody::reissue(&state, user, id.into_inner(), CodeKind::Delivery).await?,
    ))
}
