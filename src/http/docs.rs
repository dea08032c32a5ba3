//! The OpenAPI document (generated from the handlers' annotations) and its Swagger UI, whose
//! assets are vendored in the binary (nothing is downloaded at build or run time).

use actix_web::HttpResponse;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::{FieldError, Problem};
use crate::services::health::{Check, Checks, HealthReport, Liveness, Readiness};

pub const OPENAPI_PATH: &str = "/api/docs/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(title = "Airbar API", description = "Peer-to-peer crowdshipping: trips, parcels, matching, held payments, chat and live tracking."),
    paths(super::health::live, super::health::ready, super::health::health, super::health::metrics, docs_redirect),
    components(schemas(Problem, FieldError, Liveness, Readiness, Checks, Check, HealthReport)),
    tags((name = "operations", description = "Health, readiness, metrics and documentation")),
)]
pub struct ApiDoc;

/// The Swagger UI at `/api/docs/` and the document at `/api/docs/openapi.json`.
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new("/api/docs/{_:.*}").url(OPENAPI_PATH, ApiDoc::openapi())
}

/// Redirects to the Swagger UI.
#[utoipa::path(get, path = "/api/docs", tag = "operations",
    responses((status = 308, description = "Redirect to the Swagger UI at /api/docs/")))]
pub async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header(("Location", "/api/docs/"))
        .finish()
}
