//! Notifications (issue 8). A business event writes its notifications in its own transaction
//! (`write`: the in-app rows and their email/SMS/push deliveries in one statement), so a
//! committed event always has them and a rolled-back one never does; after the commit they are
//! pushed live (`Event::Notification` → the user's sockets as a `notification` frame and their
//! event stream) and the delivery workers (`services::delivery`) are woken. Texts come from
//! the templates and carry no personal data: the ids in `data` let the client open the subject.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::domain::matching::MatchStatus;
use crate::error::AppError;
use crate::models::deliveries::{self, NewNotifications, StoredNotification};
use crate::models::matches::MatchRow;
use crate::models::notifications::{self as rows, NotificationRow};
use crate::services::auth::AuthUser;
use crate::services::delivery::templates::Context;
use crate::services::pagination::{clamp_limit, split_page, Position};
use crate::state::AppState;

/// One notification to write.
#[derive(Debug, Clone)]
pub struct Note {
    pub user: Uuid,
    pub kind: &'static str,
    pub data: serde_json::Value,
}

/// Who hears about a match moving to `to` (`actor` acted; `None`: the system).
pub fn for_match(m: &MatchRow, to: MatchStatus, actor: Option<Uuid>) -> Vec<Note> {
    let data = serde_json::json!({"match_id": m.id, "status": to.as_str()});
    let requester = m.requested_by;
    let counterpart = if requester == m.sender_id {
        m.traveler_id
    } else {
        m.sender_id
    };
    let others = |of: Option<Uuid>| -> Vec<Uuid> {
        [m.sender_id, m.traveler_id]
            .into_iter()
            .filter(|u| Some(*u) != of)
            .collect()
    };
    let (kind, users): (&'static str, Vec<Uuid>) = match to {
        MatchStatus::Requested => ("match_requested", vec![counterpart]),
        MatchStatus::Accepted => ("match_accepted", vec![requester]),
        MatchStatus::Declined => ("match_declined", vec![requester]),
        MatchStatus::Cancelled => ("match_cancelled", others(actor)),
        MatchStatus::Expired => ("match_expired", others(None)),
        MatchStatus::Paid => ("match_paid", others(None)),
        MatchStatus::InTransit => ("parcel_picked_up", vec![m.sender_id]),
        MatchStatus::Delivered => ("parcel_delivered", others(actor)),
        MatchStatus::Completed => ("funds_released", vec![m.traveler_id]),
        MatchStatus::Disputed => ("match_disputed", others(actor)),
    };
    users
        .into_iter()
        .map(|user| Note {
            user,
            kind,
            data: data.clone(),
        })
        .collect()
}

/// Writes notifications inside the caller's transaction, with their email/SMS/push deliveries
/// (per the users' preferences, on the channels this deployment sends on) — one statement.
/// Publish the result after commit.
pub async fn write(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    notes: &[Note],
) -> Result<Vec<StoredNotification>, AppError> {
    if notes.is_empty() {
        return Ok(Vec::new());
    }
    let delivery = &state.delivery;
    let mut new = NewNotifications {
        ids: Vec::with_capacity(notes.len()),
        users: Vec::with_capacity(notes.len()),
        kinds: Vec::with_capacity(notes.len()),
        titles: Vec::with_capacity(notes.len()),
        bodies: Vec::with_capacity(notes.len()),
        data: Vec::with_capacity(notes.len()),
        channels: &delivery.channels,
        mandatory: &delivery.mandatory,
        defaults: &delivery.defaults,
        locale: &state.settings.notifications.locale,
    };
    for n in notes {
        let ctx = Context {
            data: Some(&n.data),
            payment_window_minutes: state.settings.matching.payment_window_secs / 60,
            ..Context::default()
        };
        let (title, body) = delivery
            .templates
            .in_app(n.kind, &ctx)
            .map_err(|e| AppError::internal(e.to_string()))?;
        new.ids.push(Uuid::now_v7());
        new.users.push(n.user);
        new.kinds.push(n.kind);
        new.titles.push(title);
        new.bodies.push(body);
        new.data.push(n.data.clone());
    }
    Ok(deliveries::insert_with_deliveries(conn, &new).await?)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NotificationView {
    pub id: Uuid,
    /// `match_requested`, `match_accepted`, `match_paid`, `parcel_picked_up`,
    /// `funds_released`, `refund_issued`, `withdrawal_paid`, …
    pub kind: String,
    pub title: String,
    pub body: String,
    /// Ids of the subject (`match_id`, `withdrawal_id`, …).
    pub data: serde_json::Value,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<NotificationRow> for NotificationView {
    fn from(r: NotificationRow) -> Self {
        Self {
            id: r.id,
            kind: r.kind,
            title: r.title,
            body: r.body,
            data: r.data,
            read_at: r.read_at,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPage {
    pub items: Vec<NotificationView>,
    pub next_cursor: Option<String>,
    /// All my unread notifications (not only this page's).
    pub unread_count: i64,
}

const SCOPE: &str = "notifications";

pub async fn list(
    state: &AppState,
    auth: AuthUser,
    unread_only: bool,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<NotificationPage, AppError> {
    let limit = clamp_limit(limit);
    let before = state.cursors.before_id(SCOPE, cursor)?;
    let mut conn = db::conn(&state.db).await?;
    let found = rows::list(&mut conn, auth.user_id.0, unread_only, before, limit).await?;
    let unread_count = rows::unread_count(&mut conn, auth.user_id.0).await?;
    let (found, next) = split_page(found, limit, |n| Position {
        time_us: None,
        id: n.id,
    });
    Ok(NotificationPage {
        items: found.into_iter().map(NotificationView::from).collect(),
        next_cursor: next.map(|p| state.cursors.encode(SCOPE, &p)),
        unread_count,
    })
}

pub async fn mark_read(
    state: &AppState,
    auth: AuthUser,
    id: Uuid,
) -> Result<NotificationView, AppError> {
    let mut conn = db::conn(&state.db).await?;
    rows::mark_read(&mut conn, auth.user_id.0, id)
        .await?
        .map(NotificationView::from)
        .ok_or_else(AppError::not_found)
}

pub async fn mark_all_read(state: &AppState, auth: AuthUser) -> Result<usize, AppError> {
    let mut conn = db::conn(&state.db).await?;
    Ok(rows::mark_all_read(&mut conn, auth.user_id.0).await?)
}

/// A chat message reached a member with no live socket: one `chat_message` notification per
/// room until they read it (so a conversation does not become a flood). Written right after the
/// message's own commit, since presence lives in Redis, not in the message's transaction: a
/// crash in between loses this nudge, never the message.
pub async fn nudge_offline(state: &AppState, user: Uuid, room_id: Uuid) {
    let result = async {
        let mut conn = db::conn(&state.db).await?;
        let stored = conn
            .transaction(async |conn| {
                if rows::unread_about_room(conn, user, "chat_message", room_id).await? {
                    return Ok::<_, AppError>(Vec::new());
                }
                let note = Note {
                    user,
                    kind: "chat_message",
                    data: serde_json::json!({"room_id": room_id}),
                };
                write(conn, state, &[note]).await
            })
            .await?;
        drop(conn);
        publish(state, stored).await;
        Ok::<_, AppError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(user_id = %user, room_id = %room_id, error = %e, "chat notification not written");
    }
}

/// After the notifications' transaction committed: wakes the delivery workers and pushes the
/// notifications live.
pub async fn publish(state: &AppState, stored: Vec<StoredNotification>) {
    state.delivery.queued(
        &state.metrics.notifications,
        stored
            .iter()
            .flat_map(|n| n.channels.iter().map(String::as_str)),
    );
    for StoredNotification { row, .. } in stored {
        let user_id = row.user_id;
        let notification = serde_json::to_value(NotificationView::from(row)).unwrap_or_default();
        state
            .events
            .publish(crate::services::events::Event::Notification {
                user_id,
                notification,
            })
            .await;
    }
}

/// Channels a notification can go out on.
pub const CHANNELS: [&str; 4] = ["in_app", "email", "sms", "push"];

/// Every kind a user can be notified of, with its default channels. Security messages are
/// mandatory on in-app and email (they cannot be switched off there).
pub const KINDS: [(&str, &[&str]); 16] = [
    ("match_requested", &["in_app", "email"]),
    ("match_accepted", &["in_app", "email"]),
    ("match_declined", &["in_app"]),
    ("match_cancelled", &["in_app", "email"]),
    ("match_expired", &["in_app"]),
    ("match_paid", &["in_app", "email"]),
    ("parcel_picked_up", &["in_app", "email", "sms"]),
    ("parcel_delivered", &["in_app", "email", "sms"]),
    ("funds_released", &["in_app", "email"]),
    ("match_disputed", &["in_app", "email"]),
    ("refund_issued", &["in_app", "email"]),
    ("withdrawal_paid", &["in_app", "email"]),
    ("withdrawal_failed", &["in_app", "email"]),
    ("new_login", &["in_app", "email"]),
    ("password_changed", &["in_app", "email"]),
    ("chat_message", &["in_app", "email"]),
];

/// `kind:channel` pairs on by default, for the outbox statement.
pub fn default_pairs() -> Vec<String> {
    KINDS
        .iter()
        .flat_map(|(kind, channels)| channels.iter().map(move |c| format!("{kind}:{c}")))
        .collect()
}

/// `kind:channel` pairs that cannot be switched off.
pub fn mandatory_pairs() -> Vec<String> {
    KINDS
        .iter()
        .flat_map(|(kind, _)| CHANNELS.iter().map(move |c| (kind, c)))
        .filter(|(kind, c)| mandatory(kind, c))
        .map(|(kind, c)| format!("{kind}:{c}"))
        .collect()
}

const SECURITY: [&str; 2] = ["new_login", "password_changed"];

fn mandatory(kind: &str, channel: &str) -> bool {
    SECURITY.contains(&kind) && matches!(channel, "in_app" | "email")
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreferenceView {
    pub kind: String,
    /// Channel → on/off (`in_app`, `email`, `sms`, `push`).
    pub channels: std::collections::BTreeMap<String, bool>,
    /// Security messages: in-app and email cannot be switched off.
    pub mandatory: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Preferences {
    pub preferences: Vec<PreferenceView>,
}

pub async fn preferences(state: &AppState, auth: AuthUser) -> Result<Preferences, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let stored = rows::preferences(&mut conn, auth.user_id.0).await?;
    Ok(Preferences {
        preferences: KINDS
            .iter()
            .map(|(kind, defaults)| PreferenceView {
                kind: (*kind).to_owned(),
                channels: CHANNELS
                    .iter()
                    .map(|channel| {
                        let chosen = stored
                            .iter()
                            .find(|(k, c, _)| k == kind && c == channel)
                            .map(|(_, _, on)| *on);
                        let on = mandatory(kind, channel)
                            || chosen.unwrap_or_else(|| defaults.contains(channel));
                        ((*channel).to_owned(), on)
                    })
                    .collect(),
                mandatory: SECURITY.contains(kind),
            })
            .collect(),
    })
}

/// One change: a kind and the channels to set.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreferenceChange {
    pub kind: String,
    pub channels: std::collections::BTreeMap<String, bool>,
}

/// Applies the changes (all or none): unknown kinds or channels, and switching a security
/// message off in-app or by email, are 422.
pub async fn set_preferences(
    state: &AppState,
    auth: AuthUser,
    changes: &[PreferenceChange],
) -> Result<Preferences, AppError> {
    let mut errors = Vec::new();
    let mut choices: Vec<(&str, &str, bool)> = Vec::new();
    if changes.len() > KINDS.len() {
        errors.push(crate::domain::FieldError::new(
            "preferences",
            "too many entries",
        ));
    }
    for (i, change) in changes.iter().take(KINDS.len()).enumerate() {
        let Some((kind, _)) = KINDS.iter().find(|(k, _)| *k == change.kind) else {
            errors.push(crate::domain::FieldError::new(
                format!("preferences[{i}].kind"),
                "is not a notification kind",
            ));
            continue;
        };
        for (channel, on) in &change.channels {
            let Some(channel) = CHANNELS.iter().find(|c| *c == channel) else {
                errors.push(crate::domain::FieldError::new(
                    format!("preferences[{i}].channels.{channel}"),
                    "is not a channel (in_app, email, sms, push)",
                ));
                continue;
            };
            if !on && mandatory(kind, channel) {
                errors.push(crate::domain::FieldError::new(
                    format!("preferences[{i}].channels.{channel}"),
                    "security messages cannot be switched off here",
                ));
                continue;
            }
            choices.push((kind, channel, *on));
        }
    }
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    if !choices.is_empty() {
        let mut conn = db::conn(&state.db).await?;
        rows::set_preferences(&mut conn, auth.user_id.0, &choices).await?;
    }
    preferences(state, auth).await
}
