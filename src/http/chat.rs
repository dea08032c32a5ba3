//! `/api/chat/rooms`: the REST side of chat (the WebSocket `send`/`subscribe` frames call the
//! same services).

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::{AppError, Problem};
use crate::services::auth::AuthUser;
use crate::services::chat::{self, MessageView, RoomView};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomList {
    pub items: Vec<RoomView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub items: Vec<MessageView>,
    /// Always null: page on with `after_seq` = the last `seq`.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Messages after this sequence number (exclusive); default 0.
    pub after_seq: Option<i64>,
    /// Default 50, at most 200.
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessageRequest {
    /// 1–2000 characters; e-mails and phone numbers are masked until the match is paid.
    pub body: String,
    /// The client's id for this message: a retry with the same id is stored once.
    pub client_msg_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    pub seq: i64,
}

/// My rooms (one per match) with unread counts.
#[utoipa::path(get, path = "/api/chat/rooms", tag = "chat", security(("bearer" = [])),
    responses((status = 200, description = "My rooms", body = RoomList)))]
pub async fn list_rooms(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<web::Json<RoomList>, AppError> {
    Ok(web::Json(RoomList {
        items: chat::rooms(&state, user).await?,
    }))
}

/// A room's messages after a sequence number, in order.
#[utoipa::path(get, path = "/api/chat/rooms/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Room id"), HistoryParams),
    responses((status = 200, description = "Messages", body = MessageList), (status = 404, description = "Not my room", body = Problem)))]
pub async fn list_messages(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    params: web::Query<HistoryParams>,
) -> Result<web::Json<MessageList>, AppError> {
    let p = params.into_inner();
    let items = chat::history(
        &state,
        user,
        id.into_inner(),
        p.after_seq.unwrap_or(0),
        p.limit.unwrap_or(50),
    )
    .await?;
    Ok(web::Json(MessageList {
        items,
        next_cursor: None,
    }))
}

/// Posts a message (201; a repeated `client_msg_id` answers 200 with the stored message).
#[utoipa::path(post, path = "/api/chat/rooms/{id}/messages", tag = "chat", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Room id")), request_body = PostMessageRequest,
    responses(
        (status = 201, description = "Stored and delivered", body = MessageView),
        (status = 200, description = "Already stored (retry)", body = MessageView),
        (status = 404, description = "Not my room", body = Problem),
        (status = 409, description = "`room_read_only`", body = Problem),
        (status = 422, description = "Invalid body or client_msg_id", body = Problem),
    ))]
pub async fn post_message(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: web::Json<PostMessageRequest>,
) -> Result<HttpResponse, AppError> {
    let (message, created) = chat::post(
        &state,
        user,
        id.into_inner(),
        &body.body,
        &body.client_msg_id,
    )
    .await?;
    Ok(if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    }
    .json(message))
}

/// Marks the room read up to `seq`.
#[utoipa::path(post, path = "/api/chat/rooms/{id}/read", tag = "chat", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Room id")), request_body = ReadRequest,
    responses((status = 204, description = "Marked"), (status = 404, description = "Not my room", body = Problem)))]
pub async fn mark_read(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<Uuid>,
    body: web::Json<ReadRequest>,
) -> Result<HttpResponse, AppError> {
    chat::read(&state, user, id.into_inner(), body.seq).await?;
    Ok(HttpResponse::NoContent().finish())
}
