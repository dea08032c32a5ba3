//! `/api/auth/*`: register, login, refresh, logout, device sessions.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::account::{DisplayName, Email, Password, Phone};
use crate::domain::ids::SessionId;
use crate::error::{AppError, FieldErrors, Problem};
use crate::services::auth::{self, AuthResult, AuthUser, Device, Registration, SessionView};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub email: String,
    /// 10–128 characters.
    pub password: String,
    pub display_name: String,
    /// E.164, e.g. `+447700900123`.
    pub phone: Option<String>,
}

impl RegisterRequest {
    fn parse(self) -> Result<Registration, AppError> {
        let mut errors = FieldErrors::default();
        let email = errors.check(Email::parse(&self.email));
        let password = errors.check(Password::parse(&self.password, "password"));
        let display_name = errors.check(DisplayName::parse(&self.display_name));
        let phone = errors.check(self.phone.as_deref().map(Phone::parse).transpose());
        match (email, password, display_name, phone) {
            (Some(email), Some(password), Some(display_name), Some(phone)) if errors.is_empty() => {
                Ok(Registration {
                    email,
                    password,
                    display_name,
                    phone,
                })
            }
            _ => Err(errors.into_error()),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub items: Vec<SessionView>,
    /// Always null: a user has at most `auth.max_sessions_per_user` sessions.
    pub next_cursor: Option<String>,
}

/// Creates an account and signs it in on this device.
#[utoipa::path(post, path = "/api/auth/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, description = "Registered and signed in", body = AuthResult),
    (status = 409, description = "Email already registered", body = Problem),
    (status = 422, description = "Invalid fields", body = Problem),
))]
pub async fn register(
    state: web::Data<AppState>,
    device: Device,
    body: web::Json<RegisterRequest>,
) -> Result<HttpResponse, AppError> {
    let registration = body.into_inner().parse()?;
    let result = auth::register(&state, registration, device).await?;
    Ok(HttpResponse::Created().json(result))
}

/// Signs in. Unknown email, wrong password and a locked account answer alike.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, description = "Signed in", body = AuthResult),
    (status = 401, description = "Bad credentials (or locked account)", body = Problem),
))]
pub async fn login(
    state: web::Data<AppState>,
    device: Device,
    body: web::Json<LoginRequest>,
) -> Result<web::Json<AuthResult>, AppError> {
    let body = body.into_inner();
    Ok(web::Json(
        auth::login(&state, &body.email, &body.password, device).await?,
    ))
}

/// Rotates a refresh token into a new token pair.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, description = "New token pair", body = AuthResult),
    (status = 401, description = "Unknown, expired, revoked or reused token", body = Problem),
))]
pub async fn refresh(
    state: web::Data<AppState>,
    device: Device,
    body: web::Json<RefreshRequest>,
) -> Result<web::Json<AuthResult>, AppError> {
    Ok(web::Json(
        auth::refresh(&state, &body.refresh_token, device).await?,
    ))
}

/// Ends this device session.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("bearer" = [])), responses(
    (status = 204, description = "Signed out"),
    (status = 401, description = "Not signed in", body = Problem),
))]
pub async fn logout(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, AppError> {
    auth::logout(&state, user).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's active device sessions.
#[utoipa::path(get, path = "/api/auth/sessions", tag = "auth", security(("bearer" = [])), responses(
    (status = 200, description = "Active sessions", body = SessionList),
    (status = 401, description = "Not signed in", body = Problem),
))]
pub async fn list_sessions(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<web::Json<SessionList>, AppError> {
    let items = auth::list_sessions(&state, user).await?;
    Ok(web::Json(SessionList {
        items,
        next_cursor: None,
    }))
}

/// Revokes one of the caller's sessions (its access tokens stop working at once).
#[utoipa::path(delete, path = "/api/auth/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Session id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such session of yours", body = Problem),
    ))]
pub async fn revoke_session(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<SessionId>,
) -> Result<HttpResponse, AppError> {
    auth::revoke_session(&state, user, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}
