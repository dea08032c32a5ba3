//! `/api/dashboard/*`: my figures and my recent activity.

use actix_web::web;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{AppError, Problem};
use crate::services::activities::{self, ActivityPage};
use crate::services::auth::AuthUser;
use crate::services::dashboard::{self, DashboardStats};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    pub cursor: Option<String>,
    /// Default 20, at most 100.
    pub limit: Option<i64>,
}

/// Counts by status, money and rating for the caller.
#[utoipa::path(get, path = "/api/dashboard/stats", tag = "dashboard", security(("bearer" = [])),
    responses((status = 200, description = "My figures", body = DashboardStats), (status = 401, description = "Not signed in", body = Problem)))]
pub async fn get_stats(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<web::Json<DashboardStats>, AppError> {
    Ok(web::Json(dashboard::stats(&state, user).await?))
}

/// Recent events involving the caller, newest first.
#[utoipa::path(get, path = "/api/dashboard/activities", tag = "dashboard", security(("bearer" = [])), params(PageParams),
    responses((status = 200, description = "One page", body = ActivityPage), (status = 400, description = "Bad cursor", body = Problem)))]
pub async fn list_activities(
    state: web::Data<AppState>,
    user: AuthUser,
    params: web::Query<PageParams>,
) -> Result<web::Json<ActivityPage>, AppError> {
    let params = params.into_inner();
    Ok(web::Json(
        activities::list(&state, user, params.cursor.as_deref(), params.limit).await?,
    ))
}
