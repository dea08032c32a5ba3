//! The `sessions` (device sessions, each a refresh-token family) and `refresh_tokens` tables.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{refresh_tokens, sessions};

/// Most sessions one listing returns.
pub const LIST_LIMIT: i64 = 100;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub user_agent: String,
    pub ip: String,
    pub device_fingerprint: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

impl SessionRow {
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSession<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub user_agent: &'a str,
    pub ip: &'a str,
    pub device_fingerprint: &'a str,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens, check_for_backend(diesel::pg::Pg))]
pub struct RefreshTokenRow {
    pub id: Uuid,
    pub session_id: Uuid,
    pub token_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub successor_id: Option<Uuid>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct NewRefreshToken<'a> {
    pub id: Uuid,
    pub session_id: Uuid,
    pub token_hash: &'a [u8],
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewSession<'_>) -> QueryResult<SessionRow> {
    diesel::insert_into(sessions::table)
        .values(new)
        .returning(SessionRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<SessionRow>> {
    sessions::table
        .find(id)
        .select(SessionRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The session row, locked until the end of the transaction.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<SessionRow>> {
    sessions::table
        .find(id)
        .select(SessionRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// A user's active sessions, most recently seen first.
pub async fn list_active(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<Vec<SessionRow>> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .order((sessions::last_seen_at.desc(), sessions::id.desc()))
        .limit(LIST_LIMIT)
        .select(SessionRow::as_select())
        .load(conn)
        .await
}

/// Revokes the given sessions that are still active; returns the ids actually revoked.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
    reason: &str,
) -> QueryResult<Vec<Uuid>> {
    diesel::update(sessions::table.filter(sessions::id.eq_any(ids)))
        .filter(sessions::revoked_at.is_null())
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoked_reason.eq(reason),
        ))
        .returning(sessions::id)
        .get_results(conn)
        .await
}

/// Revokes every active session of a user except `keep`; returns the ids revoked.
pub async fn revoke_all_but(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
) -> QueryResult<Vec<Uuid>> {
    diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::revoked_at.is_null())
            .filter(sessions::id.ne(keep.unwrap_or(Uuid::nil()))),
    )
    .set((
        sessions::revoked_at.eq(diesel::dsl::now),
        sessions::revoked_reason.eq(reason),
    ))
    .returning(sessions::id)
    .get_results(conn)
    .await
}

/// Active sessions of a user on one device (same fingerprint).
pub async fn active_on_device(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    fingerprint: &str,
) -> QueryResult<Vec<Uuid>> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::device_fingerprint.eq(fingerprint))
        .filter(sessions::revoked_at.is_null())
        .select(sessions::id)
        .load(conn)
        .await
}

/// Active sessions of a user beyond the newest `keep`, oldest first.
pub async fn active_beyond(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    keep: i64,
) -> QueryResult<Vec<Uuid>> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .order((sessions::created_at.desc(), sessions::id.desc()))
        .offset(keep)
        .select(sessions::id)
        .load(conn)
        .await
}

/// Records activity at most once a minute per session.
pub async fn touch_last_seen(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(sessions::table.find(id))
        .filter(sessions::last_seen_at.lt(now - chrono::Duration::minutes(1)))
        .set(sessions::last_seen_at.eq(now))
        .execute(conn)
        .await
}

pub async fn touch(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    ip: &str,
    user_agent: &str,
) -> QueryResult<usize> {
    diesel::update(sessions::table.find(id))
        .set((
            sessions::last_seen_at.eq(diesel::dsl::now),
            sessions::ip.eq(ip),
            sessions::user_agent.eq(user_agent),
        ))
        .execute(conn)
        .await
}

/// Deletes sessions (and, by cascade, their tokens) that ended before `before`.
pub async fn purge_ended(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::delete(
        sessions::table.filter(
            sessions::expires_at
                .lt(before)
                .or(sessions::revoked_at.lt(before)),
        ),
    )
    .execute(conn)
    .await
}

pub async fn insert_token(
    conn: &mut AsyncPgConnection,
    new: &NewRefreshToken<'_>,
) -> QueryResult<RefreshTokenRow> {
    diesel::insert_into(refresh_tokens::table)
        .values(new)
        .returning(RefreshTokenRow::as_returning())
        .get_result(conn)
        .await
}

/// The token with this hash, locked: concurrent refreshes of one token queue here.
pub async fn find_token_for_update(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> QueryResult<Option<RefreshTokenRow>> {
    refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash))
        .select(RefreshTokenRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn find_token(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<RefreshTokenRow>> {
    refresh_tokens::table
        .find(id)
        .select(RefreshTokenRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Marks a token rotated at `at` (the service's clock, the same one the grace window is
/// measured with).
pub async fn mark_rotated(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    successor: Uuid,
    at: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(refresh_tokens::table.find(id))
        .set((
            refresh_tokens::rotated_at.eq(at),
            refresh_tokens::successor_id.eq(successor),
        ))
        .execute(conn)
        .await
}

/// How many refresh tokens a session has had (tests and diagnostics).
pub async fn count_tokens(conn: &mut AsyncPgConnection, session_id: Uuid) -> QueryResult<i64> {
    refresh_tokens::table
        .filter(refresh_tokens::session_id.eq(session_id))
        .count()
        .get_result(conn)
        .await
}

/// Whether the user has signed in from this device before (any session still on record).
pub async fn device_known(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    fingerprint: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::device_fingerprint.eq(fingerprint)),
    ))
    .get_result(conn)
    .await
}
