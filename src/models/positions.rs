//! The breadcrumb trail (`positions`), the geofence mark on the match, and what a parcel
//! tracker is rebuilt from.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Double, Float4, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::matches;

/// One point of a trail.
#[derive(Debug, Clone, Copy, PartialEq, QueryableByName)]
pub struct Point {
    #[diesel(sql_type = Timestamptz)]
    pub recorded_at: DateTime<Utc>,
    #[diesel(sql_type = Double)]
    pub lat: f64,
    #[diesel(sql_type = Double)]
    pub lng: f64,
    #[diesel(sql_type = Float4)]
    pub accuracy_m: f32,
}

/// Points to store (parallel columns).
#[derive(Debug, Default)]
pub struct Batch {
    pub match_ids: Vec<Uuid>,
    pub recorded_at: Vec<DateTime<Utc>>,
    pub lat: Vec<f64>,
    pub lng: Vec<f64>,
    pub accuracy_m: Vec<f32>,
}

#[derive(Debug, QueryableByName)]
pub struct Stored {
    #[diesel(sql_type = SqlUuid)]
    pub match_id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    pub recorded_at: DateTime<Utc>,
}

/// Stores a batch in one statement (`airbar_store_positions`, whose plan each connection keeps);
/// only points of matches still `in_transit` are taken (the match row is key-share locked, so a
/// point waits for a delivery committing at that moment and is then refused: the trail ends with
/// the delivery). A point already stored is skipped. Returns what was stored.
pub async fn insert_batch(conn: &mut AsyncPgConnection, batch: &Batch) -> QueryResult<Vec<Stored>> {
    diesel::sql_query(
        "SELECT match_id, recorded_at FROM airbar_store_positions($1, $2, $3, $4, $5)",
    )
    .bind::<Array<SqlUuid>, _>(&batch.match_ids)
    .bind::<Array<Timestamptz>, _>(&batch.recorded_at)
    .bind::<Array<Double>, _>(&batch.lat)
    .bind::<Array<Double>, _>(&batch.lng)
    .bind::<Array<Float4>, _>(&batch.accuracy_m)
    .load(conn)
    .await
}

/// Marks the parcel as having entered its destination's geofence; `true` only the first time.
pub async fn mark_arriving(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
    at: DateTime<Utc>,
) -> QueryResult<bool> {
    let n = diesel::update(
        matches::table
            .find(match_id)
            .filter(matches::arriving_at.is_null())
            .filter(matches::status.eq("in_transit")),
    )
    .set(matches::arriving_at.eq(at))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// What a tracker needs of its match, with the latest stored point.
#[derive(Debug, Clone, QueryableByName)]
pub struct Seed {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub sender_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    pub traveler_id: Uuid,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub picked_up_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub delivered_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub arriving_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Double)]
    pub destination_lat: f64,
    #[diesel(sql_type = Double)]
    pub destination_lng: f64,
    #[diesel(sql_type = Timestamptz)]
    pub scheduled_arrival: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub latest_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Double>)]
    pub latest_lat: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub latest_lng: Option<f64>,
    #[diesel(sql_type = Nullable<Float4>)]
    pub latest_accuracy_m: Option<f32>,
}

const SEED: &str = "SELECT m.id, m.sender_id, m.traveler_id, m.status, m.picked_up_at, \
     m.delivered_at, m.arriving_at, p.destination_lat, p.destination_lng, \
     t.arrival_at AS scheduled_arrival, l.recorded_at AS latest_at, l.lat AS latest_lat, \
     l.lng AS latest_lng, l.accuracy_m AS latest_accuracy_m \
     FROM matches m JOIN parcels p ON p.id = m.parcel_id JOIN trips t ON t.id = m.trip_id \
     LEFT JOIN LATERAL (SELECT recorded_at, lat, lng, accuracy_m FROM positions \
       WHERE match_id = m.id ORDER BY recorded_at DESC LIMIT 1) l ON true ";

pub async fn seed(conn: &mut AsyncPgConnection, match_id: Uuid) -> QueryResult<Option<Seed>> {
    diesel::sql_query(format!("{SEED} WHERE m.id = $1"))
        .bind::<SqlUuid, _>(match_id)
        .get_result(conn)
        .await
        .optional()
}

/// The seed of the match behind a recipient's tracking token.
pub async fn seed_by_token(conn: &mut AsyncPgConnection, token: &str) -> QueryResult<Option<Seed>> {
    diesel::sql_query(format!("{SEED} WHERE m.tracking_token = $1"))
        .bind::<Text, _>(token)
        .get_result(conn)
        .await
        .optional()
}

/// A match's trail thinned to at most `max_points` (every k-th point, always the first and
/// the last), oldest first, and the number of points stored; one statement, one snapshot.
pub async fn trail(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
    max_points: i64,
) -> QueryResult<(i64, Vec<Point>)> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(embed)]
        point: Point,
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    // Every step-th point from the first, plus the last: step = ceil((n - 1) / (max - 1)).
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT recorded_at, lat, lng, accuracy_m, n FROM ( \
           SELECT recorded_at, lat, lng, accuracy_m, \
                  row_number() OVER (ORDER BY recorded_at) AS rn, count(*) OVER () AS n \
           FROM positions WHERE match_id = $1) t \
         WHERE (rn - 1) % greatest(1, (n - 1 + $2 - 2) / ($2 - 1)) = 0 OR rn = n \
         ORDER BY recorded_at",
    )
    .bind::<SqlUuid, _>(match_id)
    .bind::<BigInt, _>(max_points.max(2))
    .load(conn)
    .await?;
    let n = rows.as_slice().first().map_or(0, |r| r.n);
    Ok((n, rows.into_iter().map(|r| r.point).collect()))
}
