//! The `notification_deliveries` outbox: messages to send by email, SMS or push. Rows are
//! queued in the event's transaction (with the in-app notification in one statement, see
//! `insert_with_deliveries`), claimed by workers under a lease, and finished as `sent`,
//! `failed`, `suppressed` (rate limit) or `obsolete` (nothing left to say).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Jsonb, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::notification_deliveries as d;

/// A notification as stored, with the channels its deliveries were queued on.
#[derive(Debug, Clone)]
pub struct StoredNotification {
    pub row: super::notifications::NotificationRow,
    pub channels: Vec<String>,
}

#[derive(QueryableByName)]
struct StoredRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    user_id: Uuid,
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    title: String,
    #[diesel(sql_type = Text)]
    body: String,
    #[diesel(sql_type = Jsonb)]
    data: serde_json::Value,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    read_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Array<Text>)]
    channels: Vec<String>,
}

/// One statement (`airbar_write_notifications`, see its migration): insert the in-app
/// notifications and, for each, a delivery on every channel in `channels` that the user wants
/// (their preference, else the kind's default; `mandatory` pairs always) and has an address
/// for. Pairs are `kind:channel`.
const INSERT_WITH_DELIVERIES: &str =
    "SELECT * FROM airbar_write_notifications($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// The in-app rows to insert and the delivery rules.
pub struct NewNotifications<'a> {
    pub ids: Vec<Uuid>,
    pub users: Vec<Uuid>,
    pub kinds: Vec<&'a str>,
    pub titles: Vec<String>,
    pub bodies: Vec<String>,
    pub data: Vec<serde_json::Value>,
    /// Channels this deployment sends on (`email`, `sms`, `push`).
    pub channels: &'a [&'a str],
    pub mandatory: &'a [String],
    pub defaults: &'a [String],
    pub locale: &'a str,
}

pub async fn insert_with_deliveries(
    conn: &mut AsyncPgConnection,
    new: &NewNotifications<'_>,
) -> QueryResult<Vec<StoredNotification>> {
    diesel::sql_query(INSERT_WITH_DELIVERIES)
        .bind::<Array<SqlUuid>, _>(&new.ids)
        .bind::<Array<SqlUuid>, _>(&new.users)
        .bind::<Array<Text>, _>(&new.kinds)
        .bind::<Array<Text>, _>(&new.titles)
        .bind::<Array<Text>, _>(&new.bodies)
        .bind::<Array<Jsonb>, _>(&new.data)
        .bind::<Array<Text>, _>(new.channels)
        .bind::<Array<Text>, _>(new.mandatory)
        .bind::<Array<Text>, _>(new.defaults)
        .bind::<Text, _>(new.locale)
        .load::<StoredRow>(conn)
        .await
        .map(|rows| {
            rows.into_iter()
                .map(|r| StoredNotification {
                    row: super::notifications::NotificationRow {
                        id: r.id,
                        user_id: r.user_id,
                        kind: r.kind,
                        title: r.title,
                        body: r.body,
                        data: r.data,
                        read_at: r.read_at,
                        created_at: r.created_at,
                    },
                    channels: r.channels,
                })
                .collect()
        })
}

/// A message to someone without an account (a parcel's recipient).
#[derive(Debug, Insertable)]
#[diesel(table_name = d)]
pub struct NewDelivery<'a> {
    pub kind: &'a str,
    pub channel: &'a str,
    pub address: &'a str,
    pub locale: &'a str,
    pub data: serde_json::Value,
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &[NewDelivery<'_>]) -> QueryResult<usize> {
    diesel::insert_into(d::table)
        .values(new)
        .execute(conn)
        .await
}

#[derive(Debug, Clone, Queryable, Selectable, QueryableByName)]
#[diesel(table_name = d, check_for_backend(diesel::pg::Pg))]
pub struct DeliveryRow {
    pub id: i64,
    pub notification_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub kind: String,
    pub channel: String,
    pub address: String,
    pub locale: String,
    pub data: serde_json::Value,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub lease: Option<Uuid>,
    pub provider_id: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Claims up to `limit` due messages of `channel` for `lease_secs` under a new lease (rows
/// another worker holds are skipped, not waited for) and counts the attempt.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    channel: &str,
    limit: i64,
    lease: Uuid,
    lease_secs: i64,
) -> QueryResult<Vec<DeliveryRow>> {
    diesel::sql_query(
        "UPDATE notification_deliveries SET lease = $1, attempts = attempts + 1,
                next_attempt_at = now() + make_interval(secs => $2)
          WHERE id IN (SELECT id FROM notification_deliveries
                        WHERE channel = $3 AND status = 'pending' AND next_attempt_at <= now()
                        ORDER BY next_attempt_at, id
                        LIMIT $4
                        FOR UPDATE SKIP LOCKED)
          RETURNING *",
    )
    .bind::<SqlUuid, _>(lease)
    .bind::<BigInt, _>(lease_secs)
    .bind::<Text, _>(channel)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// Ends a claimed message (`sent`, `failed`, `suppressed`, `obsolete`); 0 when the lease was
/// lost (another worker has it now).
pub async fn finish(
    conn: &mut AsyncPgConnection,
    id: i64,
    lease: Uuid,
    status: &str,
    provider_id: Option<&str>,
    error: Option<&str>,
) -> QueryResult<usize> {
    diesel::update(d::table.find(id))
        .filter(d::lease.eq(lease))
        .filter(d::status.eq("pending"))
        .set((
            d::status.eq(status),
            d::lease.eq(None::<Uuid>),
            d::provider_id.eq(provider_id),
            d::last_error.eq(error.map(|e| truncate(e, 500))),
            d::finished_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
}

#[derive(QueryableByName)]
struct Recent {
    #[diesel(sql_type = BigInt)]
    recent: i64,
}

/// Extends the lease of a claimed message to `lease_secs` from now and, in the same round trip,
/// counts the messages sent to its address on its channel in the last hour — of the
/// `mandatory` kinds when it is one of them, else of the others (each has its own budget).
/// `None` when the lease was lost.
pub async fn renew_and_count_recent(
    conn: &mut AsyncPgConnection,
    row: &DeliveryRow,
    lease: Uuid,
    lease_secs: u64,
    mandatory_kinds: &[String],
    mandatory: bool,
) -> QueryResult<Option<i64>> {
    diesel::sql_query(
        "UPDATE notification_deliveries SET next_attempt_at = now() + make_interval(secs => $1)
          WHERE id = $2 AND lease = $3 AND status = 'pending'
         RETURNING (SELECT count(*) FROM notification_deliveries s
                     WHERE s.channel = $4 AND s.address = $5 AND s.status = 'sent'
                       AND s.finished_at > now() - interval '1 hour'
                       AND (s.kind = ANY($6)) = $7) AS recent",
    )
    .bind::<BigInt, _>(i64::try_from(lease_secs).unwrap_or(i64::MAX))
    .bind::<BigInt, _>(row.id)
    .bind::<SqlUuid, _>(lease)
    .bind::<Text, _>(&row.channel)
    .bind::<Text, _>(&row.address)
    .bind::<Array<Text>, _>(mandatory_kinds)
    .bind::<diesel::sql_types::Bool, _>(mandatory)
    .get_result::<Recent>(conn)
    .await
    .optional()
    .map(|r| r.map(|r| r.recent))
}

/// Marks the pending messages of `kind` about `match_id` obsolete (a newer one replaces them).
pub async fn supersede(
    conn: &mut AsyncPgConnection,
    kind: &str,
    match_id: Uuid,
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE notification_deliveries SET status = 'obsolete', lease = NULL, finished_at = now()
          WHERE kind = $1 AND status = 'pending' AND data->>'match_id' = $2",
    )
    .bind::<Text, _>(kind)
    .bind::<Text, _>(match_id.to_string())
    .execute(conn)
    .await
}

/// Puts a claimed message back to be tried at `at`.
pub async fn retry(
    conn: &mut AsyncPgConnection,
    id: i64,
    lease: Uuid,
    at: DateTime<Utc>,
    error: &str,
) -> QueryResult<usize> {
    diesel::update(d::table.find(id))
        .filter(d::lease.eq(lease))
        .filter(d::status.eq("pending"))
        .set((
            d::lease.eq(None::<Uuid>),
            d::next_attempt_at.eq(at),
            d::last_error.eq(truncate(error, 500)),
        ))
        .execute(conn)
        .await
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[derive(Debug, QueryableByName)]
pub struct Backlog {
    #[diesel(sql_type = Text)]
    pub channel: String,
    #[diesel(sql_type = BigInt)]
    pub pending: i64,
    /// Age of the oldest pending message, seconds.
    #[diesel(sql_type = BigInt)]
    pub oldest_secs: i64,
}

/// Pending messages per channel and the age of the oldest.
pub async fn backlog(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Backlog>> {
    diesel::sql_query(
        "SELECT channel, count(*) AS pending,
                coalesce(extract(epoch FROM now() - min(created_at)), 0)::bigint AS oldest_secs
           FROM notification_deliveries WHERE status = 'pending' GROUP BY channel",
    )
    .load(conn)
    .await
}

/// Deletes finished messages older than `days`.
pub async fn purge(conn: &mut AsyncPgConnection, days: i32) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM notification_deliveries
          WHERE status <> 'pending' AND finished_at < now() - make_interval(days => $1)",
    )
    .bind::<Integer, _>(days)
    .execute(conn)
    .await
}
