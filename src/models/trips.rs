//! The `trips` table: rows, inserts, updates and the search query (bounding box through the
//! partial index on open trips' origins, exact great-circle filter, keyset pagination).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Double;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::geo_filter::{Area, Order};
use crate::schema::trips;

diesel::define_sql_function! {
    /// Great-circle distance in metres (migration `marketplace`).
    fn airbar_distance_m(lat1: Double, lng1: Double, lat2: Double, lng2: Double) -> Double;
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = trips, check_for_backend(diesel::pg::Pg))]
pub struct TripRow {
    pub id: Uuid,
    pub traveler_id: Uuid,
    pub origin_code: Option<String>,
    pub origin_label: String,
    pub origin_country: String,
    pub origin_lat: f64,
    pub origin_lng: f64,
    pub destination_code: Option<String>,
    pub destination_label: String,
    pub destination_country: String,
    pub destination_lat: f64,
    pub destination_lng: f64,
    pub departure_at: DateTime<Utc>,
    pub arrival_at: DateTime<Utc>,
    pub capacity_grams: i32,
    pub reserved_grams: i32,
    pub available_grams: Option<i32>,
    pub price_per_kg: i64,
    pub currency: String,
    pub accepted_categories: Vec<Option<String>>,
    pub flight_number: Option<String>,
    pub notes: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = trips)]
pub struct TripValues<'a> {
    pub origin_code: Option<&'a str>,
    pub origin_label: &'a str,
    pub origin_country: &'a str,
    pub origin_lat: f64,
    pub origin_lng: f64,
    pub destination_code: Option<&'a str>,
    pub destination_label: &'a str,
    pub destination_country: &'a str,
    pub destination_lat: f64,
    pub destination_lng: f64,
    pub departure_at: DateTime<Utc>,
    pub arrival_at: DateTime<Utc>,
    pub capacity_grams: i32,
    pub price_per_kg: i64,
    pub currency: &'a str,
    pub accepted_categories: Vec<&'a str>,
    /// `None` stores NULL (AsChangeset writes every field: services pass the full new state).
    #[diesel(treat_none_as_null = true)]
    pub flight_number: Option<&'a str>,
    #[diesel(treat_none_as_null = true)]
    pub notes: Option<&'a str>,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    traveler_id: Uuid,
    values: &TripValues<'_>,
) -> QueryResult<TripRow> {
    diesel::insert_into(trips::table)
        .values((trips::id.eq(id), trips::traveler_id.eq(traveler_id), values))
        .returning(TripRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<TripRow>> {
    trips::table
        .find(id)
        .select(TripRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<TripRow>> {
    trips::table
        .find(id)
        .select(TripRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    values: &TripValues<'_>,
) -> QueryResult<TripRow> {
    diesel::update(trips::table.find(id))
        .set(values)
        .returning(TripRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: &str,
) -> QueryResult<TripRow> {
    diesel::update(trips::table.find(id))
        .set(trips::status.eq(status))
        .returning(TripRow::as_returning())
        .get_result(conn)
        .await
}

/// What a trip search asks for; every present field narrows it.
#[derive(Debug, Clone, Default)]
pub struct TripFilter {
    pub origin: Option<Area>,
    pub destination: Option<Area>,
    pub departs_from: Option<DateTime<Utc>>,
    pub departs_to: Option<DateTime<Utc>>,
    pub min_available_grams: Option<i32>,
    pub currency: Option<String>,
    /// `mine=true`: this traveler's trips in any status; otherwise open trips not yet departed.
    pub traveler: Option<Uuid>,
    pub now: DateTime<Utc>,
}

/// One page (`limit + 1` rows are read to know whether there is another).
pub async fn search(
    conn: &mut AsyncPgConnection,
    filter: &TripFilter,
    order: &Order,
    limit: i64,
) -> QueryResult<Vec<TripRow>> {
    let mut q = trips::table.select(TripRow::as_select()).into_boxed();
    match filter.traveler {
        Some(traveler) => q = q.filter(trips::traveler_id.eq(traveler)),
        None => {
            q = q
                .filter(trips::status.eq("open"))
                .filter(trips::departure_at.gt(filter.now))
        }
    }
    if let Some(area) = &filter.origin {
        q = q
            .filter(trips::origin_lat.between(area.bbox.lat.0, area.bbox.lat.1))
            .filter(
                airbar_distance_m(trips::origin_lat, trips::origin_lng, area.lat, area.lng)
                    .le(area.radius_m),
            );
        if let Some((lo, hi)) = area.bbox.lng {
            q = q.filter(trips::origin_lng.between(lo, hi));
        }
    }
    if let Some(area) = &filter.destination {
        q = q
            .filter(trips::destination_lat.between(area.bbox.lat.0, area.bbox.lat.1))
            .filter(
                airbar_distance_m(
                    trips::destination_lat,
                    trips::destination_lng,
                    area.lat,
                    area.lng,
                )
                .le(area.radius_m),
            );
        if let Some((lo, hi)) = area.bbox.lng {
            q = q.filter(trips::destination_lng.between(lo, hi));
        }
    }
    if let Some(from) = filter.departs_from {
        q = q.filter(trips::departure_at.ge(from));
    }
    if let Some(to) = filter.departs_to {
        q = q.filter(trips::departure_at.le(to));
    }
    if let Some(min) = filter.min_available_grams {
        q = q.filter(trips::available_grams.ge(min));
    }
    if let Some(currency) = &filter.currency {
        q = q.filter(trips::currency.eq(currency.clone()));
    }
    q = match order {
        Order::Time { after } => {
            if let Some((t, id)) = after {
                q = q.filter(
                    trips::departure_at
                        .gt(*t)
                        .or(trips::departure_at.eq(*t).and(trips::id.gt(*id))),
                );
            }
            q.order((trips::departure_at.asc(), trips::id.asc()))
        }
        Order::Newest { before } => {
            if let Some(id) = before {
                q = q.filter(trips::id.lt(*id));
            }
            q.order(trips::id.desc())
        }
    };
    q.limit(limit + 1).load(conn).await
}

/// Trips of a traveler by status (dashboard).
pub async fn count_by_status(
    conn: &mut AsyncPgConnection,
    traveler: Uuid,
) -> QueryResult<Vec<(String, i64)>> {
    trips::table
        .filter(trips::traveler_id.eq(traveler))
        .group_by(trips::status)
        .select((trips::status, diesel::dsl::count_star()))
        .load(conn)
        .await
}

/// Every open trip not yet departed (the matchmaker's index at start-up).
pub async fn open_all(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> QueryResult<Vec<TripRow>> {
    trips::table
        .filter(trips::status.eq("open"))
        .filter(trips::departure_at.gt(now))
        .select(TripRow::as_select())
        .load(conn)
        .await
}

pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<TripRow>> {
    trips::table
        .filter(trips::id.eq_any(ids))
        .select(TripRow::as_select())
        .load(conn)
        .await
}
