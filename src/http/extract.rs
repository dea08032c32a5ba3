//! Extractor configuration: JSON, query and path failures become problem+json `AppError`s.

use actix_web::{error, web, HttpRequest};

use crate::error::AppError;

pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req: &HttpRequest| error::Error::from(AppError::from(err)))
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _req: &HttpRequest| error::Error::from(AppError::from(err)))
}

/// A path segment that does not parse (say, a malformed id) names nothing that exists: 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_err, _req: &HttpRequest| AppError::not_found().into())
}
