//! The request-context middleware, outermost on every request: assigns the request id (echoing
//! a sane client-sent `X-Request-Id`), runs the request inside a tracing span, renders every
//! error response as problem+json carrying that id, writes one access-log line, and records the
//! HTTP metrics by route template.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use tracing::Instrument;

use crate::error::{AppError, Problem, PROBLEM_CONTENT_TYPE};
use crate::state::AppState;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the current request, in request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A client's id is echoed only if it is short printable ASCII without spaces (it goes into
/// logs and headers); anything else is replaced.
fn request_id_from(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID_LEN
                && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let start = Instant::now();
    let request_id = request_id_from(&req);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().to_string();
    let span = tracing::info_span!("request", request_id = %request_id, %method);

    // Holding a clone of the request across `next.call` would break routing (it needs the
    // request uniquely), so an `Err` from inside (no inner middleware produces one today) is
    // left to actix's own rendering.
    let res = next
        .call(req)
        .instrument(span.clone())
        .await?
        .map_into_boxed_body();
    let mut res = render_problem(res, &request_id);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID_HEADER, value);
    }

    let status = res.status();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let elapsed = start.elapsed();
    if let Some(state) = state {
        state
            .metrics
            .observe_http(&method, &route, status.as_u16(), elapsed.as_secs_f64());
    }
    let _entered = span.enter();
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        let cause = res
            .response()
            .error()
            .map(ToString::to_string)
            .unwrap_or_default();
        tracing::error!(%route, status = status.as_u16(), latency_ms, %cause, "request failed");
    } else {
        tracing::info!(%route, status = status.as_u16(), latency_ms, "request");
    }
    Ok(res)
}

/// Every 4xx/5xx leaves as problem+json with the request id: an `AppError` keeps its problem;
/// any other error response (routing, extractors, actix internals) gets the generic one for its
/// status. A handler's deliberate JSON body with an error status (the readiness report) is
/// kept. Other headers (`Allow`, `Retry-After`, …) are kept.
fn render_problem(res: ServiceResponse<BoxBody>, request_id: &str) -> ServiceResponse<BoxBody> {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let own = res.response().extensions().get::<Problem>().cloned();
    let deliberate_json = res.response().error().is_none()
        && res
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if own.is_none() && deliberate_json {
        return res;
    }
    // An `AppError`'s 5xx body is already generic (`internal` keeps its cause for the log only);
    // any other 5xx body, whatever produced it, is replaced by the generic one.
    let mut problem = own.unwrap_or_else(|| Problem::for_status(status));
    problem.request_id = request_id.to_owned();
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    res.map_body(|head, _old| {
        head.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        BoxBody::new(body)
    })
}

/// The default service: no route matched.
pub async fn route_not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "No route matches this path.",
    ))
}
