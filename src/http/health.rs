//! Operational endpoints: liveness, readiness, the health summary and Prometheus metrics.

use actix_web::{web, HttpResponse};

use crate::services::health::{self, HealthReport, Liveness, Readiness};
use crate::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/api/live", tag = "operations",
    responses((status = 200, description = "The process is up", body = Liveness)))]
pub async fn live() -> web::Json<Liveness> {
    web::Json(health::liveness())
}

/// PostgreSQL and Redis both answer within the configured timeout.
#[utoipa::path(get, path = "/api/ready", tag = "operations", responses(
    (status = 200, description = "Every dependency answered", body = Readiness),
    (status = 503, description = "A dependency did not answer; `checks` names it", body = Readiness),
))]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let report = health::readiness(&state).await;
    let mut res = if report.is_ok() {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    res.insert_header(("Cache-Control", "no-store"))
        .json(report)
}

/// Version, uptime, mode and dependency status (always 200; `status` says `degraded`).
#[utoipa::path(get, path = "/api/health", tag = "operations",
    responses((status = 200, description = "Summary", body = HealthReport)))]
pub async fn health(state: web::Data<AppState>) -> web::Json<HealthReport> {
    web::Json(health::report(&state).await)
}

/// Prometheus (OpenMetrics) text: HTTP, pool and actor series.
#[utoipa::path(get, path = "/api/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text exposition", body = String,
        content_type = "application/openmetrics-text")))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let text = health::metrics_text(&state).await;
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text)
}
