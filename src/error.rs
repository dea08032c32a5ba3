//! The one API error type, rendered as RFC 9457 `application/problem+json` with a stable code.
//!
//! Services return `AppError`; the HTTP edge renders it. The request id is filled in by the
//! request-context middleware, which also turns every other error response (unknown route,
//! wrong method, extractor failures) into the same shape. 5xx bodies never carry internal detail:
//! the cause is logged once, at the boundary, and replaced by a generic sentence.

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

pub use crate::domain::FieldError;

/// Collects field errors while parsing a request, so one response names every bad field.
/// A prohibited item anywhere makes the whole answer `prohibited_item` (still 422).
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>, bool);

impl FieldErrors {
    /// Like `check`, telling a prohibited item apart.
    pub fn check_category(
        &mut self,
        parsed: Result<crate::domain::catalog::Category, crate::domain::catalog::CategoryError>,
    ) -> Option<crate::domain::catalog::Category> {
        use crate::domain::catalog::CategoryError;
        match parsed {
            Ok(c) => Some(c),
            Err(CategoryError::Prohibited(e)) => {
                self.1 = true;
                self.0.push(e);
                None
            }
            Err(CategoryError::Unknown(e)) => {
                self.0.push(e);
                None
            }
        }
    }

    pub fn extend(&mut self, errors: impl IntoIterator<Item = FieldError>) {
        self.0.extend(errors);
    }

    /// The value, or `None` with the error recorded.
    pub fn check<T>(&mut self, parsed: Result<T, FieldError>) -> Option<T> {
        parsed.map_err(|e| self.0.push(e)).ok()
    }

    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The 422 for what was collected.
    pub fn into_error(self) -> AppError {
        let prohibited = self.1;
        let mut e = AppError::validation(self.0);
        if prohibited {
            e.code = "prohibited_item";
            e.detail = "Prohibited items cannot be sent or carried.".to_owned();
        }
        e
    }
}

/// The problem+json body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:airbar:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable snake_case identifier clients switch on.
    pub code: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            type_: format!("urn:airbar:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            request_id: String::new(),
            errors: Vec::new(),
        }
    }

    /// The generic problem for an error response that carries none of its own.
    pub fn for_status(status: StatusCode) -> Self {
        let (code, detail) = match status.as_u16() {
            400 => ("bad_request", "The request could not be understood."),
            401 => ("unauthorized", "Authentication is required."),
            403 => ("forbidden", "This action is not allowed."),
            404 => ("not_found", "No resource at this address."),
            405 => (
                "method_not_allowed",
                "This method is not allowed on this resource.",
            ),
            408 => ("request_timeout", "The request took too long to arrive."),
            413 => ("payload_too_large", "The request body is too large."),
            414 => ("uri_too_long", "The request URI is too long."),
            415 => ("unsupported_media_type", "Unsupported content type."),
            431 => ("headers_too_large", "The request headers are too large."),
            429 => ("rate_limited", "Too many requests."),
            503 => (
                "service_unavailable",
                "A dependency is unavailable; try again shortly.",
            ),
            s if s >= 500 => ("internal_error", "An internal error occurred."),
            _ => ("client_error", "The request was not accepted."),
        };
        Self::new(status, code, detail)
    }
}

/// An error a service or extractor returns; becomes one problem+json response.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    headers: Vec<(&'static str, String)>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl AppError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
            source: None,
        }
    }

    /// Adds a response header (`Retry-After`, `WWW-Authenticate`, …).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Adds per-field details to any error.
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }

    /// 401: no usable credentials.
    pub fn unauthorized(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
            .with_header("WWW-Authenticate", "Bearer realm=\"airbar\"")
    }

    /// 403: a known caller may not do this.
    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    /// 429 with `Retry-After` in whole seconds (rounded up).
    pub fn rate_limited(retry_after_ms: u64) -> Self {
        let secs = retry_after_ms.div_ceil(1000).max(1);
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("Too many requests; retry in {secs} s."),
        )
        .with_header("Retry-After", secs.to_string())
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 422 with one entry per failed field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "One or more fields are invalid.",
        );
        e.errors = errors;
        e
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "No resource at this address.",
        )
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    /// 503 naming the dependency that is down; the cause goes to the log only.
    pub fn unavailable(
        dependency: &str,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency_unavailable",
            format!("{dependency} is unavailable; try again shortly."),
        );
        e.source = Some(cause.into());
        e
    }

    /// 500 for a bug; the cause goes to the log only.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let mut e = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "An internal error occurred.",
        );
        e.source = Some(cause.into());
        e
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn field_errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// The body clients see (request id not yet set).
    pub fn problem(&self) -> Problem {
        let mut p = Problem::new(self.status, self.code, self.detail.clone());
        p.errors = self.errors.clone();
        p
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)?;
        if let Some(source) = &self.source {
            write!(f, " (cause: {source})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AppError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        let mut builder = HttpResponse::build(self.status);
        builder.content_type(PROBLEM_CONTENT_TYPE);
        for (name, value) in &self.headers {
            builder.insert_header((*name, value.as_str()));
        }
        let mut res = builder.json(&problem);
        res.extensions_mut().insert(problem);
        res
    }
}

impl From<actix_web::error::JsonPayloadError> for AppError {
    fn from(err: actix_web::error::JsonPayloadError) -> Self {
        use actix_web::error::JsonPayloadError as E;
        match err {
            E::OverflowKnownLength { limit, .. } | E::Overflow { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("The request body is larger than {limit} bytes."),
            ),
            E::ContentType => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Expected a body of content type application/json.",
            ),
            E::Deserialize(e) if e.is_data() => Self::bad_request(
                "invalid_body",
                format!("The JSON body does not have the expected shape: {e}"),
            ),
            E::Deserialize(e) => {
                Self::bad_request("malformed_json", format!("The body is not valid JSON: {e}"))
            }
            E::Payload(_) => {
                Self::bad_request("unreadable_body", "The request body could not be read.")
            }
            _ => Self::bad_request("bad_request", "The request body was not accepted."),
        }
    }
}

impl From<FieldError> for AppError {
    fn from(err: FieldError) -> Self {
        Self::validation(vec![err])
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind as K, Error as E};
        match err {
            E::NotFound => Self::not_found(),
            E::DatabaseError(K::ClosedConnection | K::UnableToSendCommand, info) => {
                Self::unavailable("PostgreSQL", info.message().to_owned())
            }
            E::DatabaseError(K::SerializationFailure, _) => Self::conflict(
                "concurrent_update",
                "A concurrent change got there first; retry the request.",
            ),
            // PostgreSQL broke a lock cycle by aborting this transaction: a retry succeeds.
            E::DatabaseError(_, info) if info.message().contains("deadlock detected") => {
                Self::conflict(
                    "concurrent_update",
                    "A concurrent change got there first; retry the request.",
                )
            }
            other => Self::internal(other),
        }
    }
}

impl From<crate::db::PoolError> for AppError {
    fn from(err: crate::db::PoolError) -> Self {
        Self::unavailable("PostgreSQL", err.to_string())
    }
}

impl From<actix_web::error::QueryPayloadError> for AppError {
    fn from(err: actix_web::error::QueryPayloadError) -> Self {
        Self::bad_request("invalid_query", format!("Invalid query string: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_error_hides_its_cause_from_the_body() {
        let e = AppError::internal("connection to 10.0.0.5 refused");
        let body = serde_json::to_string(&e.problem()).unwrap();
        assert!(!body.contains("10.0.0.5"));
        assert!(
            e.to_string().contains("10.0.0.5"),
            "the log line keeps the cause"
        );
    }

    #[test]
    fn a_validation_error_lists_its_fields() {
        let e = AppError::validation(vec![FieldError::new("email", "is not an email")]);
        let v = serde_json::to_value(e.problem()).unwrap();
        assert_eq!(v["status"], 422);
        assert_eq!(v["code"], "validation_failed");
        assert_eq!(v["type"], "urn:airbar:problem:validation_failed");
        assert_eq!(v["errors"][0]["field"], "email");
    }

    #[test]
    fn every_status_has_a_stable_generic_code() {
        assert_eq!(Problem::for_status(StatusCode::NOT_FOUND).code, "not_found");
        assert_eq!(
            Problem::for_status(StatusCode::METHOD_NOT_ALLOWED).code,
            "method_not_allowed"
        );
        assert_eq!(
            Problem::for_status(StatusCode::BAD_GATEWAY).code,
            "internal_error"
        );
    }
}
