//! The custody log (`custody_events`) and the chain head kept on the match.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{custody_events, matches};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = custody_events, check_for_backend(diesel::pg::Pg))]
pub struct CustodyRow {
    pub match_id: Uuid,
    pub seq: i32,
    pub kind: String,
    pub data: serde_json::Value,
    pub at: DateTime<Utc>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl From<CustodyRow> for crate::domain::custody::Link {
    fn from(r: CustodyRow) -> Self {
        Self {
            seq: r.seq,
            kind: r.kind,
            data: r.data,
            at: r.at,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = custody_events)]
pub struct NewLink<'a> {
    pub match_id: Uuid,
    pub seq: i32,
    pub kind: &'a str,
    pub data: &'a serde_json::Value,
    pub at: DateTime<Utc>,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
}

/// The match's chain head: (last seq, last hash); (0, None) before the first event.
pub async fn head(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
) -> QueryResult<(i32, Option<Vec<u8>>)> {
    matches::table
        .find(match_id)
        .select((matches::custody_seq, matches::custody_head))
        .first(conn)
        .await
}

/// Appends a link and moves the head, only if the head is still the one the link was built
/// on (`false` otherwise: someone appended meanwhile).
pub async fn append(conn: &mut AsyncPgConnection, link: &NewLink<'_>) -> QueryResult<bool> {
    let moved = diesel::update(
        matches::table
            .find(link.match_id)
            .filter(matches::custody_seq.eq(link.seq - 1)),
    )
    .set((
        matches::custody_seq.eq(link.seq),
        matches::custody_head.eq(link.hash),
    ))
    .execute(conn)
    .await?;
    if moved != 1 {
        return Ok(false);
    }
    diesel::insert_into(custody_events::table)
        .values(link)
        .execute(conn)
        .await?;
    Ok(true)
}

pub async fn chain(conn: &mut AsyncPgConnection, match_id: Uuid) -> QueryResult<Vec<CustodyRow>> {
    custody_events::table
        .filter(custody_events::match_id.eq(match_id))
        .order(custody_events::seq.asc())
        .select(CustodyRow::as_select())
        .load(conn)
        .await
}

/// A digest of a match's trail: how many points, the first and last times, and the SHA-256
/// (hex) of every point in order, each as its binary send form (`int8` microseconds since the
/// epoch, `float8` lat and lng, `float4` accuracy): independent of any text-format setting.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct TrailDigest {
    #[diesel(sql_type = BigInt)]
    pub points: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub first_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Text)]
    pub sha256: String,
}

pub async fn trail_digest(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
) -> QueryResult<TrailDigest> {
    diesel::sql_query(
        "SELECT count(*) AS points, min(recorded_at) AS first_at, max(recorded_at) AS last_at, \
         encode(sha256(coalesce(string_agg( \
           int8send((extract(epoch FROM recorded_at) * 1000000)::bigint) || float8send(lat) \
           || float8send(lng) || float4send(accuracy_m), ''::bytea ORDER BY recorded_at), \
           ''::bytea)), 'hex') AS sha256 \
         FROM positions WHERE match_id = $1",
    )
    .bind::<SqlUuid, _>(match_id)
    .get_result(conn)
    .await
}
