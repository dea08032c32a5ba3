//! Chat use cases, one entry point each for REST and WebSocket: post (authorize, dedupe by
//! `client_msg_id`, mask contacts before payment, number gap-free, commit, then publish),
//! history after a sequence, the room list with unread counts, read markers, and the replay a
//! resuming subscriber gets.

use std::sync::LazyLock;

use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::domain::chat::{mask_contacts, parse_body, parse_client_msg_id};
use crate::domain::matching::{MatchStatus, ALL_STATUSES};
use crate::error::AppError;
use crate::models::chat::{self, Draft, MessageRow, RoomMatch, RoomRules};
use crate::services::auth::AuthUser;
use crate::services::events::Event;
use crate::state::AppState;

/// Most messages one history page or one replay returns.
pub const MAX_PAGE: i64 = 200;
pub const MAX_REPLAY: i64 = 1000;
/// A room turns read-only this long after its match ended.
const READ_ONLY_AFTER_HOURS: i32 = 24;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageView {
    pub id: Uuid,
    pub room_id: Uuid,
    pub seq: i64,
    pub sender_id: Uuid,
    pub body: String,
    pub client_msg_id: String,
    pub sent_at: chrono::DateTime<Utc>,
}

impl From<MessageRow> for MessageView {
    fn from(m: MessageRow) -> Self {
        Self {
            id: m.id,
            room_id: m.room_id,
            seq: m.seq,
            sender_id: m.sender_id,
            body: m.body,
            client_msg_id: m.client_msg_id,
            sent_at: m.sent_at,
        }
    }
}

impl MessageView {
    /// The WebSocket `message` frame.
    pub fn frame(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "message", "room_id": self.room_id, "seq": self.seq, "id": self.id,
            "sender_id": self.sender_id, "body": self.body, "client_msg_id": self.client_msg_id,
            "sent_at": self.sent_at,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomView {
    pub room_id: Uuid,
    pub match_id: Uuid,
    pub match_status: String,
    pub last_seq: i64,
    pub unread: i64,
}

/// The room's match, if `user` is one of its two members (anyone else: 404).
async fn membership(
    conn: &mut diesel_async::AsyncPgConnection,
    room_id: Uuid,
    user: Uuid,
) -> Result<RoomMatch, AppError> {
    chat::room_match(conn, room_id)
        .await?
        .filter(|(_, sender, traveler, _, _)| *sender == user || *traveler == user)
        .ok_or_else(AppError::not_found)
}

static PAID: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    ALL_STATUSES
        .iter()
        .map(MatchStatus::as_str)
        .filter(|s| paid_or_later(s))
        .collect()
});
static ENDED: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    ALL_STATUSES
        .iter()
        .filter(|s| s.is_terminal())
        .map(MatchStatus::as_str)
        .collect()
});

/// The rules the database applies when storing a message.
pub fn room_rules() -> RoomRules<'static> {
    RoomRules {
        paid_statuses: &PAID,
        ended_statuses: &ENDED,
        read_only_after_hours: READ_ONLY_AFTER_HOURS,
    }
}

fn paid_or_later(status: &str) -> bool {
    matches!(
        status,
        "paid" | "in_transit" | "delivered" | "completed" | "disputed"
    )
}

/// Posts a message; a repeated `client_msg_id` returns the stored message (`false`: not new).
/// One statement does the membership check, the dedupe, the read-only check, the sequence and
/// the insert (see `models::chat::post_message`), batched with other posts by the node's
/// `ChatWriter` (group commit): this is the chat hot path.
pub async fn post(
    state: &AppState,
    auth: AuthUser,
    room_id: Uuid,
    body: &str,
    client_msg_id: &str,
) -> Result<(MessageView, bool), AppError> {
    let body = parse_body(body)?;
    let client_msg_id = parse_client_msg_id(client_msg_id)?;
    let me = auth.user_id.0;
    let draft = Draft {
        id: Uuid::now_v7(),
        room_id,
        sender: me,
        masked_body: mask_contacts(&body),
        body,
        client_msg_id,
    };
    let posted = state.chat_writer.post(draft).await?;
    let Some(posted) = posted else {
        // Not a member (404), or a member of a room that has turned read-only.
        let mut conn = db::conn(&state.db).await?;
        membership(&mut conn, room_id, me).await?;
        return Err(AppError::conflict(
            "room_read_only",
            "This conversation has ended.",
        ));
    };
    let created = posted.created;
    let members = vec![posted.member_sender, posted.member_traveler];
    let message = MessageView::from(posted.row());
    if created {
        let other = members.iter().copied().find(|m| *m != me);
        state
            .events
            .publish(Event::ChatMessage {
                members,
                message: message.frame(),
            })
            .await;
        if let Some(other) = other {
            if !state.presence.is_online(other).await {
                crate::services::notifications::nudge_offline(state, other, room_id).await;
            }
        }
    }
    Ok((message, created))
}

pub async fn history(
    state: &AppState,
    auth: AuthUser,
    room_id: Uuid,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<MessageView>, AppError> {
    let mut conn = db::conn(&state.db).await?;
    membership(&mut conn, room_id, auth.user_id.0).await?;
    let rows = chat::after(
        &mut conn,
        room_id,
        after_seq.max(0),
        limit.clamp(1, MAX_PAGE),
    )
    .await?;
    Ok(rows.into_iter().map(MessageView::from).collect())
}

/// What a subscriber resuming after `since_seq` must be sent.
#[derive(Debug)]
pub struct Replay {
    /// The room's current last sequence.
    pub last_seq: i64,
    /// The messages after `since_seq` (at most `MAX_REPLAY`; beyond, the client pages with REST).
    pub messages: Vec<MessageView>,
    /// The room's other member (whose presence the subscriber is told).
    pub other_member: Uuid,
}

pub async fn replay(
    state: &AppState,
    auth: AuthUser,
    room_id: Uuid,
    since_seq: i64,
) -> Result<Replay, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let me = auth.user_id.0;
    let (_, sender, traveler, ..) = membership(&mut conn, room_id, me).await?;
    let rows = chat::after(&mut conn, room_id, since_seq.max(0), MAX_REPLAY).await?;
    let last_seq = chat::last_seq(&mut conn, room_id).await?;
    Ok(Replay {
        last_seq,
        messages: rows.into_iter().map(MessageView::from).collect(),
        other_member: if me == sender { traveler } else { sender },
    })
}

pub async fn rooms(state: &AppState, auth: AuthUser) -> Result<Vec<RoomView>, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let rows = chat::rooms_of(&mut conn, auth.user_id.0, 100).await?;
    Ok(rows
        .into_iter()
        .map(|(room_id, match_id, status, last, read)| {
            let last_seq = last.unwrap_or(0);
            RoomView {
                room_id,
                match_id,
                match_status: status,
                last_seq,
                unread: (last_seq - read.unwrap_or(0)).max(0),
            }
        })
        .collect())
}

/// Tells the other member that this one is typing (not stored).
pub async fn typing(state: &AppState, auth: AuthUser, room_id: Uuid) -> Result<(), AppError> {
    let (_, sender, traveler, ..) = {
        let mut conn = db::conn(&state.db).await?;
        membership(&mut conn, room_id, auth.user_id.0).await?
    };
    let me = auth.user_id.0;
    let recipient = if me == sender { traveler } else { sender };
    state
        .events
        .publish(Event::ChatTyping {
            room_id,
            user_id: me,
            recipient,
        })
        .await;
    Ok(())
}

/// Marks the room read up to `seq` (never backwards).
pub async fn read(
    state: &AppState,
    auth: AuthUser,
    room_id: Uuid,
    seq: i64,
) -> Result<(), AppError> {
    let mut conn = db::conn(&state.db).await?;
    let (match_id, ..) = membership(&mut conn, room_id, auth.user_id.0).await?;
    chat::ensure_room(&mut conn, room_id, match_id).await?;
    let last = chat::last_seq(&mut conn, room_id).await?;
    let seq = seq.clamp(0, last);
    chat::mark_read(&mut conn, room_id, auth.user_id.0, seq).await?;
    drop(conn);
    state
        .events
        .publish(Event::ChatRead {
            room_id,
            user_id: auth.user_id.0,
            seq,
        })
        .await;
    Ok(())
}
