//! The `activities` table: the feed of recent events involving a user. Appended by services
//! inside the transaction of the event they record.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::activities;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = activities, check_for_backend(diesel::pg::Pg))]
pub struct ActivityRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
    pub subject_type: String,
    pub subject_id: Uuid,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = activities)]
pub struct NewActivity<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub kind: &'a str,
    pub subject_type: &'a str,
    pub subject_id: Uuid,
    pub data: serde_json::Value,
}

pub async fn append(conn: &mut AsyncPgConnection, new: &NewActivity<'_>) -> QueryResult<usize> {
    diesel::insert_into(activities::table)
        .values(new)
        .execute(conn)
        .await
}

/// A user's activities, newest first, before `before` (keyset on the time-ordered id).
pub async fn list(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<ActivityRow>> {
    let mut q = activities::table
        .filter(activities::user_id.eq(user_id))
        .select(ActivityRow::as_select())
        .into_boxed();
    if let Some(id) = before {
        q = q.filter(activities::id.lt(id));
    }
    q.order(activities::id.desc())
        .limit(limit + 1)
        .load(conn)
        .await
}

/// Deletes activities older than `before` (retention).
pub async fn purge_older_than(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::delete(activities::table.filter(activities::created_at.lt(before)))
        .execute(conn)
        .await
}
