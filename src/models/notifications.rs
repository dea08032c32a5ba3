//! The `notifications` table: in-app notifications per user.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::notifications;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = notifications, check_for_backend(diesel::pg::Pg))]
pub struct NotificationRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: serde_json::Value,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Newest first, `limit + 1` rows.
pub async fn list(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    unread_only: bool,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<NotificationRow>> {
    let mut q = notifications::table
        .filter(notifications::user_id.eq(user))
        .select(NotificationRow::as_select())
        .into_boxed();
    if unread_only {
        q = q.filter(notifications::read_at.is_null());
    }
    if let Some(b) = before {
        q = q.filter(notifications::id.lt(b));
    }
    q.order(notifications::id.desc())
        .limit(limit + 1)
        .load(conn)
        .await
}

pub async fn unread_count(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<i64> {
    notifications::table
        .filter(notifications::user_id.eq(user))
        .filter(notifications::read_at.is_null())
        .count()
        .get_result(conn)
        .await
}

/// Marks one of the user's notifications read (kept as first read); `None` when it is not
/// theirs.
pub async fn mark_read(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    id: Uuid,
) -> QueryResult<Option<NotificationRow>> {
    diesel::update(notifications::table.find(id))
        .filter(notifications::user_id.eq(user))
        .set(notifications::read_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("coalesce(read_at, now())")))
        .returning(NotificationRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

pub async fn mark_all_read(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<usize> {
    diesel::update(notifications::table)
        .filter(notifications::user_id.eq(user))
        .filter(notifications::read_at.is_null())
        .set(notifications::read_at.eq(Some(Utc::now())))
        .execute(conn)
        .await
}

/// The user's stored choices: (kind, channel, enabled).
pub async fn preferences(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Vec<(String, String, bool)>> {
    use crate::schema::notification_preferences as p;
    p::table
        .filter(p::user_id.eq(user))
        .select((p::kind, p::channel, p::enabled))
        .load(conn)
        .await
}

/// Stores choices (insert or replace), all at once.
pub async fn set_preferences(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    choices: &[(&str, &str, bool)],
) -> QueryResult<usize> {
    use crate::schema::notification_preferences as p;
    let rows: Vec<_> = choices
        .iter()
        .map(|(kind, channel, enabled)| {
            (
                p::user_id.eq(user),
                p::kind.eq(*kind),
                p::channel.eq(*channel),
                p::enabled.eq(*enabled),
            )
        })
        .collect();
    diesel::insert_into(p::table)
        .values(rows)
        .on_conflict((p::user_id, p::kind, p::channel))
        .do_update()
        .set((
            p::enabled.eq(diesel::upsert::excluded(p::enabled)),
            p::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
}

/// Whether the user has an unread notification of `kind` about `room_id`.
pub async fn unread_about_room(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    kind: &str,
    room_id: Uuid,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        notifications::table
            .filter(notifications::user_id.eq(user))
            .filter(notifications::read_at.is_null())
            .filter(notifications::kind.eq(kind))
            .filter(
                diesel::dsl::sql::<diesel::sql_types::Text>("data->>'room_id'")
                    .eq(room_id.to_string()),
            ),
    ))
    .get_result(conn)
    .await
}
