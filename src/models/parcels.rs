//! The `parcels` table: rows, inserts, updates and the search query (same shape as trips').

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::geo_filter::{Area, Order};
use super::trips::airbar_distance_m;
use crate::schema::parcels;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = parcels, check_for_backend(diesel::pg::Pg))]
pub struct ParcelRow {
    pub id: Uuid,
    pub sender_id: Uuid,
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
    pub pickup_address: Option<String>,
    pub dropoff_address: Option<String>,
    pub ready_from: DateTime<Utc>,
    pub deliver_by: DateTime<Utc>,
    pub weight_grams: i32,
    pub dimensions_cm: Option<Vec<Option<i32>>>,
    pub category: String,
    pub description: String,
    pub declared_value: i64,
    pub currency: String,
    pub max_reward: Option<i64>,
    pub recipient_name: String,
    pub recipient_email: Option<String>,
    pub recipient_phone: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = parcels, treat_none_as_null = true)]
pub struct ParcelValues<'a> {
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
    pub pickup_address: Option<&'a str>,
    pub dropoff_address: Option<&'a str>,
    pub ready_from: DateTime<Utc>,
    pub deliver_by: DateTime<Utc>,
    pub weight_grams: i32,
    pub dimensions_cm: Option<Vec<i32>>,
    pub category: &'a str,
    pub description: &'a str,
    pub declared_value: i64,
    pub currency: &'a str,
    pub max_reward: Option<i64>,
    pub recipient_name: &'a str,
    pub recipient_email: Option<&'a str>,
    pub recipient_phone: Option<&'a str>,
}

pub async fn insert(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    sender_id: Uuid,
    values: &ParcelValues<'_>,
) -> QueryResult<ParcelRow> {
    diesel::insert_into(parcels::table)
        .values((parcels::id.eq(id), parcels::sender_id.eq(sender_id), values))
        .returning(ParcelRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ParcelRow>> {
    parcels::table
        .find(id)
        .select(ParcelRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<ParcelRow>> {
    parcels::table
        .find(id)
        .select(ParcelRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    values: &ParcelValues<'_>,
) -> QueryResult<ParcelRow> {
    diesel::update(parcels::table.find(id))
        .set(values)
        .returning(ParcelRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn set_status(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: &str,
) -> QueryResult<ParcelRow> {
    diesel::update(parcels::table.find(id))
        .set(parcels::status.eq(status))
        .returning(ParcelRow::as_returning())
        .get_result(conn)
        .await
}

#[derive(Debug, Clone, Default)]
pub struct ParcelFilter {
    pub origin: Option<Area>,
    pub destination: Option<Area>,
    /// Parcels whose window `[ready_from, deliver_by]` overlaps `[from, to]`.
    pub window_from: Option<DateTime<Utc>>,
    pub window_to: Option<DateTime<Utc>>,
    pub max_weight_grams: Option<i32>,
    pub category: Option<String>,
    pub currency: Option<String>,
    /// `mine=true`: this sender's parcels in any status; otherwise open ones still deliverable.
    pub sender: Option<Uuid>,
    pub now: DateTime<Utc>,
}

pub async fn search(
    conn: &mut AsyncPgConnection,
    filter: &ParcelFilter,
    order: &Order,
    limit: i64,
) -> QueryResult<Vec<ParcelRow>> {
    let mut q = parcels::table.select(ParcelRow::as_select()).into_boxed();
    match filter.sender {
        Some(sender) => q = q.filter(parcels::sender_id.eq(sender)),
        None => {
            q = q
                .filter(parcels::status.eq("open"))
                .filter(parcels::deliver_by.gt(filter.now))
        }
    }
    if let Some(area) = &filter.origin {
        q = q
            .filter(parcels::origin_lat.between(area.bbox.lat.0, area.bbox.lat.1))
            .filter(
                airbar_distance_m(parcels::origin_lat, parcels::origin_lng, area.lat, area.lng)
                    .le(area.radius_m),
            );
        if let Some((lo, hi)) = area.bbox.lng {
            q = q.filter(parcels::origin_lng.between(lo, hi));
        }
    }
    if let Some(area) = &filter.destination {
        q = q
            .filter(parcels::destination_lat.between(area.bbox.lat.0, area.bbox.lat.1))
            .filter(
                airbar_distance_m(
                    parcels::destination_lat,
                    parcels::destination_lng,
                    area.lat,
                    area.lng,
                )
                .le(area.radius_m),
            );
        if let Some((lo, hi)) = area.bbox.lng {
            q = q.filter(parcels::destination_lng.between(lo, hi));
        }
    }
    if let Some(from) = filter.window_from {
        q = q.filter(parcels::deliver_by.ge(from));
    }
    if let Some(to) = filter.window_to {
        q = q.filter(parcels::ready_from.le(to));
    }
    if let Some(max) = filter.max_weight_grams {
        q = q.filter(parcels::weight_grams.le(max));
    }
    if let Some(category) = &filter.category {
        q = q.filter(parcels::category.eq(category.clone()));
    }
    if let Some(currency) = &filter.currency {
        q = q.filter(parcels::currency.eq(currency.clone()));
    }
    q = match order {
        Order::Time { after } => {
            if let Some((t, id)) = after {
                q = q.filter(
                    parcels::deliver_by
                        .gt(*t)
                        .or(parcels::deliver_by.eq(*t).and(parcels::id.gt(*id))),
                );
            }
            q.order((parcels::deliver_by.asc(), parcels::id.asc()))
        }
        Order::Newest { before } => {
            if let Some(id) = before {
                q = q.filter(parcels::id.lt(*id));
            }
            q.order(parcels::id.desc())
        }
    };
    q.limit(limit + 1).load(conn).await
}

pub async fn count_by_status(
    conn: &mut AsyncPgConnection,
    sender: Uuid,
) -> QueryResult<Vec<(String, i64)>> {
    parcels::table
        .filter(parcels::sender_id.eq(sender))
        .group_by(parcels::status)
        .select((parcels::status, diesel::dsl::count_star()))
        .load(conn)
        .await
}

/// Every open parcel still deliverable (the matchmaker's index at start-up).
pub async fn open_all(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> QueryResult<Vec<ParcelRow>> {
    parcels::table
        .filter(parcels::status.eq("open"))
        .filter(parcels::deliver_by.gt(now))
        .select(ParcelRow::as_select())
        .load(conn)
        .await
}

pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<ParcelRow>> {
    parcels::table
        .filter(parcels::id.eq_any(ids))
        .select(ParcelRow::as_select())
        .load(conn)
        .await
}
