//! `GET /api/track/{token}`: the recipient's link (no account).

use actix_web::web;

use crate::error::{AppError, Problem};
use crate::services::tracking::{self, TrackingView};
use crate::state::AppState;

/// The parcel's status for the recipient's link; nothing personal.
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
