//! `GET /api/ws`: the WebSocket upgrade. Authenticated before upgrading (bearer header, or
//! `?access_token=` for browsers — the access log records route templates, never query
//! strings), origin checked against the CORS origins, then one `WsSession` actor per socket.

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::bearer_token;
use super::security::BYPASS_HEADER;
use crate::actors::session::{self, SessionDeps, WsSession, MAX_FRAME_BYTES};
use crate::actors::ActorProbe;
use crate::error::{AppError, Problem};
use crate::services::auth::{self, AuthUser};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsParams {
    /// For browsers, which cannot set headers on a WebSocket upgrade.
    pub access_token: Option<String>,
}

/// The user of a long-lived stream (socket or event stream): the bearer header, or for
/// browsers, which cannot set headers there, `?access_token=`.
pub(super) async fn authenticate_stream(
    state: &AppState,
    req: &HttpRequest,
    params: WsParams,
) -> Result<AuthUser, AppError> {
    let token = bearer_token(req.headers())
        .map(str::to_owned)
        .or(params.access_token)
        .ok_or_else(|| AppError::unauthorized("unauthorized", "Authentication is required."))?;
    let claims = state.tokens.verify_access(&token)?;
    auth::authenticate(state, &claims).await
}

/// Opens the real-time socket (frames are JSON objects with a `type`; see the README).
#[utoipa::path(get, path = "/api/ws", tag = "realtime", params(WsParams),
    responses(
        (status = 101, description = "Switching protocols; the server sends `hello` first"),
        (status = 401, description = "No valid access token", body = Problem),
        (status = 403, description = "Origin not allowed", body = Problem),
    ))]
pub async fn open_socket(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: web::Query<WsParams>,
    stream: web::Payload,
) -> Result<HttpResponse, AppError> {
    if let Some(origin) = req.headers().get("origin").and_then(|o| o.to_str().ok()) {
        if !state.cors_origins.iter().any(|o| o == origin) {
            return Err(AppError::forbidden(
                "origin_not_allowed",
                "This origin may not open sockets.",
            ));
        }
    }
    let user = authenticate_stream(&state, &req, params.into_inner()).await?;
    let bypass = req
        .headers()
        .get(BYPASS_HEADER)
        .and_then(|v| v.to_str().ok());
    let deps = SessionDeps {
        state: state.clone(),
        probe: ActorProbe::new(&state.metrics.actors, session::KIND),
        unlimited: state.limiter.bypassed_by(bypass),
    };
    ws::WsResponseBuilder::new(
        WsSession::new(user.user_id.0, user.session_id.0, deps),
        &req,
        stream,
    )
    .frame_size(MAX_FRAME_BYTES)
    .start()
    .map_err(|e| AppError::bad_request("not_a_websocket", e.to_string()))
}
