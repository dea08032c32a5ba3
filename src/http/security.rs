//! Request guards around every route: rate limiting (per IP, per user, stricter on
//! `/api/auth/*`, with IETF `RateLimit`/`RateLimit-Policy` headers and 429 + `Retry-After`),
//! security response headers, and the CORS policy from configured origins.

use actix_cors::Cors;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};

use super::extract::{bearer_token, client_ip};
use crate::error::AppError;
use crate::services::rate_limit::{Scope, Verdict};
use crate::state::AppState;

pub const BYPASS_HEADER: &str = "x-ratelimit-bypass";
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Probes and scrapes are never limited.
const EXEMPT: &[&str] = &["/api/live", "/api/ready", "/api/health", "/api/metrics"];

fn set_rate_headers(headers: &mut header::HeaderMap, v: &Verdict) {
    let name = v.scope.name();
    let window_secs = v.quota.window_ms / 1000;
    let reset_secs = v.decision.reset_ms.div_ceil(1000);
    let policy = format!("\"{name}\";q={};w={window_secs}", v.quota.quota);
    let state = format!("\"{name}\";r={};t={reset_secs}", v.decision.remaining);
    for (key, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, state)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(key, value);
        }
    }
}

/// What an IP is limited as: the address for IPv4, its /64 network for IPv6 (one client
/// commonly holds a whole /64).
fn rate_subject(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or_else(|| ip.to_owned(), |v4| v4.to_string()),
        _ => ip.to_owned(),
    }
}

fn refuse(req: ServiceRequest, verdict: &Verdict) -> ServiceResponse<BoxBody> {
    let mut res = AppError::rate_limited(verdict.decision.retry_after_ms).error_response();
    set_rate_headers(res.headers_mut(), verdict);
    req.into_response(res)
}

pub async fn rate_limit(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let limiter = &state.limiter;
    let bypass = req
        .headers()
        .get(BYPASS_HEADER)
        .and_then(|v| v.to_str().ok());
    // The decoded path the router will match (so `/api/%61uth/login` counts as auth).
    let path = req.match_info().as_str().to_owned();
    if !limiter.enabled()
        || req.method() == Method::OPTIONS
        || EXEMPT.contains(&path.as_str())
        || limiter.bypassed_by(bypass)
    {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }

    let ip = rate_subject(&client_ip(req.request(), &state.trusted_proxies));
    let scope = if path.starts_with("/api/auth/") {
        Scope::Auth
    } else {
        Scope::Ip
    };
    // Per-user limit for a valid access token; the verified claims are kept for the AuthUser
    // extractor, so the token is checked once per request.
    let claims = bearer_token(req.headers()).and_then(|t| state.tokens.verify_access(t).ok());
    let user = claims.as_ref().map(|c| c.sub.to_string());
    let mut checks = vec![(scope, ip.as_str())];
    if let Some(user) = &user {
        checks.push((Scope::User, user.as_str()));
    }
    let verdicts = limiter.check(&checks).await;
    if let Some(claims) = claims {
        req.extensions_mut().insert(claims);
    }
    if let Some(refused) = verdicts.iter().find(|v| !v.decision.allowed) {
        return Ok(refuse(req, refused));
    }
    let tightest = verdicts.into_iter().min_by_key(|v| v.decision.remaining);
    let mut res = next.call(req).await?.map_into_boxed_body();
    if let Some(verdict) = tightest {
        set_rate_headers(res.headers_mut(), &verdict);
    }
    Ok(res)
}

/// The docs page loads its own scripts and styles; the API serves no active content at all.
const DOCS_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
     script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let docs = req.match_info().as_str().starts_with("/api/docs");
    let hsts = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.settings.server.hsts);
    let mut res = next.call(req).await?.map_into_boxed_body();
    let headers = res.headers_mut();
    let csp = if docs { DOCS_CSP } else { API_CSP };
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, csp),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    Ok(res)
}

/// CORS for the configured origins only, credentials allowed; a request from any other origin
/// is served without `Access-Control-Allow-Origin` (the browser then withholds the response).
pub fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .block_on_origin_mismatch(false)
        .allowed_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-device-id"),
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
            RATELIMIT,
            RATELIMIT_POLICY,
        ])
        .supports_credentials()
        .max_age(600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

#[cfg(test)]
mod tests {
    use super::rate_subject;

    #[test]
    fn ipv6_clients_are_limited_per_64_and_ipv4_per_address() {
        assert_eq!(rate_subject("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_eq!(rate_subject("2001:db8:1:2:ffff::1"), "2001:db8:1:2::/64");
        assert_eq!(rate_subject("192.0.2.7"), "192.0.2.7");
        assert_eq!(rate_subject("::ffff:192.0.2.7"), "192.0.2.7");
    }
}
