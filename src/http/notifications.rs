//! `GET /api/notifications/stream`: the user's events as Server-Sent Events (the same events
//! their sockets get), resumable with `Last-Event-ID`. Authenticated like the WebSocket: bearer
//! header, or `?access_token=` for `EventSource`, which cannot set headers.

use actix::Actor;
use actix_web::{web, HttpRequest, HttpResponse};
use tokio::sync::mpsc;

use super::ws::{authenticate_stream, WsParams};
use crate::actors::sse::{SseSession, QUEUE};
use crate::error::{AppError, Problem};
use crate::services::auth::AuthUser;
use crate::services::notifications::{self, NotificationPage, NotificationView};
use crate::services::user_log::EventId;
use crate::state::AppState;

/// Streams the user's events (`text/event-stream`; `id:` on each logged event, a comment line
/// every 15 s).
#[utoipa::path(get, path = "/api/notifications/stream", tag = "realtime", params(WsParams,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, description = "An endless event stream", content_type = "text/event-stream"),
        (status = 400, description = "Malformed Last-Event-ID", body = Problem),
        (status = 401, description = "No valid access token", body = Problem),
    ))]
pub async fn stream_events(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: web::Query<WsParams>,
) -> Result<HttpResponse, AppError> {
    let user = authenticate_stream(&state, &req, params.into_inner()).await?;
    let resume_after = match req.headers().get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(EventId::parse)
                .ok_or_else(|| {
                    AppError::bad_request(
                        "invalid_last_event_id",
                        "Last-Event-ID is not an id this server sent.",
                    )
                })?,
        ),
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    SseSession::new(
        user.user_id.0,
        user.session_id.0,
        resume_after,
        tx,
        state.clone(),
    )
    .start();
    Ok(super::sse::response(rx))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationListParams {
    /// Only unread ones.
    pub unread: Option<bool>,
    pub cursor: Option<String>,
    /// Default 20, at most 100.
    pub limit: Option<i64>,
}

/// My in-app notifications, newest first, with my unread count.
#[utoipa::path(get, path = "/api/notifications", tag = "notifications", security(("bearer" = [])),
    params(NotificationListParams),
    responses((status = 200, description = "One page", body = NotificationPage)))]
pub async fn list_notifications(
    state: web::Data<AppState>,
    user: AuthUser,
    params: web::Query<NotificationListParams>,
) -> Result<web::Json<NotificationPage>, AppError> {
    let p = params.into_inner();
    Ok(web::Json(
        notifications::list(
            &state,
            user,
            p.unread.unwrap_or(false),
            p.cursor.as_deref(),
            p.limit,
        )
        .await?,
    ))
}

/// Marks one of my notifications read.
#[utoipa::path(post, path = "/api/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Notification id")),
    responses((status = 200, description = "Read", body = NotificationView),
              (status = 404, description = "Not mine", body = Problem)))]
pub async fn read_notification(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<uuid::Uuid>,
) -> Result<web::Json<NotificationView>, AppError> {
    Ok(web::Json(
        notifications::mark_read(&state, user, id.into_inner()).await?,
    ))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReadAll {
    /// How many were unread.
    pub updated: usize,
}

/// Marks all my notifications read.
#[utoipa::path(post, path = "/api/notifications/read-all", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, description = "Done", body = ReadAll)))]
pub async fn read_all_notifications(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<web::Json<ReadAll>, AppError> {
    Ok(web::Json(ReadAll {
        updated: notifications::mark_all_read(&state, user).await?,
    }))
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferencesRequest {
    pub preferences: Vec<notifications::PreferenceChange>,
}

/// My notification preferences per kind and channel (defaults where I chose nothing).
#[utoipa::path(get, path = "/api/notifications/preferences", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, description = "Every kind with its channels", body = notifications::Preferences)))]
pub async fn get_preferences(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<web::Json<notifications::Preferences>, AppError> {
    Ok(web::Json(notifications::preferences(&state, user).await?))
}

/// Changes some of my preferences (all or none); security messages stay on in-app and email.
#[utoipa::path(put, path = "/api/notifications/preferences", tag = "notifications", security(("bearer" = [])),
    request_body = PreferencesRequest,
    responses((status = 200, description = "All preferences after the change", body = notifications::Preferences),
              (status = 422, description = "Unknown kind or channel, or a mandatory one switched off", body = Problem)))]
pub async fn put_preferences(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<PreferencesRequest>,
) -> Result<web::Json<notifications::Preferences>, AppError> {
    Ok(web::Json(
        notifications::set_preferences(&state, user, &body.preferences).await?,
    ))
}
