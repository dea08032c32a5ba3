//! Extractors: configuration that turns JSON, query and path failures into problem+json
//! `AppError`s, the authenticated caller (`AuthUser`) and the request's `Device`.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{error, web, FromRequest, HttpMessage, HttpRequest};

use crate::config::IpNet;
use crate::error::AppError;
use crate::services::auth::{self, tokens::AccessClaims, AuthUser, Device};
use crate::state::AppState;

pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _req: &HttpRequest| error::Error::from(AppError::from(err)))
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default()
        .error_handler(|err, _req: &HttpRequest| error::Error::from(AppError::from(err)))
}

/// A JSON body that may be empty (then the type's default).
pub fn parse_optional_body<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, AppError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            AppError::bad_request(
                "invalid_body",
                format!("The JSON body does not have the expected shape: {e}"),
            )
        } else {
            AppError::bad_request("malformed_json", format!("The body is not valid JSON: {e}"))
        }
    })
}

/// A path segment that does not parse (say, a malformed id) names nothing that exists: 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|_err, _req: &HttpRequest| AppError::not_found().into())
}

/// The bearer token of the `Authorization` header, if any.
pub fn bearer_token(headers: &actix_web::http::header::HeaderMap) -> Option<&str> {
    headers
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The client's IP. Normally the TCP peer; when the peer is one of the configured trusted
/// proxies, the last `X-Forwarded-For` hop (across every such header line), which is the
/// address that proxy saw.
pub fn client_ip(req: &HttpRequest, trusted_proxies: &[IpNet]) -> String {
    let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
        return String::new();
    };
    if trusted_proxies.iter().any(|net| net.contains(peer)) {
        let last_hop = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
            .last()
            .and_then(|hop| hop.parse::<std::net::IpAddr>().ok());
        if let Some(ip) = last_hop {
            return ip.to_string();
        }
    }
    peer.to_string()
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| AppError::internal("application state missing"))
}

/// The authenticated caller: a valid access token (`Authorization: Bearer …`) whose session is
/// still active. Claims already verified by the rate limiter are reused.
impl FromRequest for AuthUser {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = state_of(req);
        let verified = req.extensions().get::<AccessClaims>().cloned();
        let token = bearer_token(req.headers()).map(str::to_owned);
        Box::pin(async move {
            let state = state?;
            let claims =
                match (verified, token) {
                    (Some(claims), _) => claims,
                    (None, Some(token)) => state.tokens.verify_access(&token)?,
                    (None, None) => return Err(AppError::unauthorized(
                        "unauthorized",
                        "Authentication is required: send Authorization: Bearer <access token>.",
                    )
                    .into()),
                };
            Ok(auth::authenticate(&state, &claims).await?)
        })
    }
}

const MAX_USER_AGENT: usize = 512;
const MAX_DEVICE_ID: usize = 128;

fn truncated(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// Where the request comes from: IP, user agent and the optional `X-Device-Id`.
impl FromRequest for Device {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let ip = req
            .app_data::<web::Data<AppState>>()
            .map(|s| client_ip(req, &s.trusted_proxies))
            .unwrap_or_default();
        std::future::ready(Ok(Device {
            ip,
            user_agent: truncated(header("user-agent").unwrap_or(""), MAX_USER_AGENT),
            device_id: header("x-device-id")
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| truncated(d, MAX_DEVICE_ID)),
        }))
    }
}
