//! Trips: create, read, update (while open), cancel, search. Owners see and change their
//! trips; other users see open trips only; everything else is a 404.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::domain::catalog::{Category, Weight};
use crate::domain::gazetteer::{Location, LocationView};
use crate::domain::ids::TripId;
use crate::domain::listing;
use crate::domain::money::{Money, MoneyDto};
use crate::domain::FieldError;
use crate::error::AppError;
use crate::models::geo_filter::{Area, Order};
use crate::models::matches;
use crate::models::trips::{self, TripFilter, TripRow, TripValues};
use crate::services::auth::AuthUser;
use crate::services::events::Event;
use crate::services::matching::facts::{publish_changes, traveler_stats, trip_facts};
use crate::services::matching::lifecycle::{self, Touched};
use crate::services::matching::suggest;
use crate::services::pagination::{clamp_limit, split_page, Position};
use crate::services::{activities, users};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct TripView {
    pub id: Uuid,
    pub traveler_id: Uuid,
    pub origin: LocationView,
    pub destination: LocationView,
    pub departure_at: DateTime<Utc>,
    pub arrival_at: DateTime<Utc>,
    pub capacity_grams: i32,
    /// Capacity not yet reserved by accepted matches; never below 0.
    pub available_grams: i32,
    pub reserved_grams: i32,
    pub price_per_kg: MoneyDto,
    pub accepted_categories: Vec<String>,
    pub flight_number: Option<String>,
    pub notes: Option<String>,
    /// `open`, `in_progress`, `completed` or `cancelled`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TripPage {
    pub items: Vec<TripView>,
    pub next_cursor: Option<String>,
}

/// A validated new trip.
#[derive(Debug, Clone)]
pub struct TripInput {
    pub origin: Location,
    pub destination: Location,
    pub departure_at: DateTime<Utc>,
    pub arrival_at: DateTime<Utc>,
    pub capacity: Weight,
    pub price_per_kg: Money,
    pub categories: Vec<Category>,
    pub flight_number: Option<String>,
    pub notes: Option<String>,
}

/// A validated change; `None` keeps the current value (`Some(None)` clears an optional one).
#[derive(Debug, Clone, Default)]
pub struct TripPatch {
    pub origin: Option<Location>,
    pub destination: Option<Location>,
    pub departure_at: Option<DateTime<Utc>>,
    pub arrival_at: Option<DateTime<Utc>>,
    pub capacity: Option<Weight>,
    pub price_per_kg: Option<Money>,
    pub categories: Option<Vec<Category>>,
    pub flight_number: Option<Option<String>>,
    pub notes: Option<Option<String>>,
}

/// A validated search.
#[derive(Debug, Clone, Default)]
pub struct TripQuery {
    pub origin: Option<Area>,
    pub destination: Option<Area>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub min_available_grams: Option<i32>,
    pub currency: Option<String>,
    pub mine: bool,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// The view of a trip row (trips are the same for everyone who may see them).
pub fn view_row(state: &AppState, row: TripRow) -> TripView {
    view(state, row)
}

fn view(state: &AppState, row: TripRow) -> TripView {
    let g = &state.gazetteer;
    TripView {
        id: row.id,
        traveler_id: row.traveler_id,
        origin: g
            .restore(
                row.origin_code.as_deref(),
                &row.origin_label,
                &row.origin_country,
                row.origin_lat,
                row.origin_lng,
            )
            .view(),
        destination: g
            .restore(
                row.destination_code.as_deref(),
                &row.destination_label,
                &row.destination_country,
                row.destination_lat,
                row.destination_lng,
            )
            .view(),
        departure_at: row.departure_at,
        arrival_at: row.arrival_at,
        capacity_grams: row.capacity_grams,
        available_grams: row
            .available_grams
            .unwrap_or(row.capacity_grams - row.reserved_grams)
            .max(0),
        reserved_grams: row.reserved_grams,
        price_per_kg: MoneyDto {
            amount: row.price_per_kg,
            currency: row.currency,
        },
        accepted_categories: row.accepted_categories.into_iter().flatten().collect(),
        flight_number: row.flight_number,
        notes: row.notes,
        status: row.status,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn values<'a>(input: &'a TripInput, categories: &'a [&'static str]) -> TripValues<'a> {
    TripValues {
        origin_code: input.origin.code.as_deref(),
        origin_label: &input.origin.label,
        origin_country: &input.origin.country,
        origin_lat: input.origin.point.lat(),
        origin_lng: input.origin.point.lng(),
        destination_code: input.destination.code.as_deref(),
        destination_label: &input.destination.label,
        destination_country: &input.destination.country,
        destination_lat: input.destination.point.lat(),
        destination_lng: input.destination.point.lng(),
        departure_at: input.departure_at,
        arrival_at: input.arrival_at,
        capacity_grams: input.capacity.grams(),
        price_per_kg: input.price_per_kg.amount(),
        currency: input.price_per_kg.currency().code(),
        accepted_categories: categories.to_vec(),
        flight_number: input.flight_number.as_deref(),
        notes: input.notes.as_deref(),
    }
}

fn category_names(categories: &[Category]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = categories.iter().map(Category::as_str).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Cross-field rules of a complete trip.
pub fn check(input: &TripInput, now: DateTime<Utc>) -> Vec<FieldError> {
    let mut errors = listing::check_trip_schedule(input.departure_at, input.arrival_at, now);
    errors.extend(listing::check_distinct_ends(
        &input.origin,
        &input.destination,
    ));
    errors
}

fn activity_data(row: &TripRow) -> serde_json::Value {
    serde_json::json!({
        "origin": row.origin_code.as_deref().unwrap_or(&row.origin_label),
        "destination": row.destination_code.as_deref().unwrap_or(&row.destination_label),
        "departure_at": row.departure_at,
    })
}

pub async fn create(
    state: &AppState,
    auth: AuthUser,
    input: TripInput,
) -> Result<TripView, AppError> {
    let errors = check(&input, Utc::now());
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    let categories = category_names(&input.categories);
    let mut conn = db::conn(&state.db).await?;
    let (row, traveler) = conn
        .transaction(async |conn| {
            let traveler = users::ensure_may_publish(conn, auth.user_id).await?;
            let row = trips::insert(
                conn,
                TripId::new().0,
                auth.user_id.0,
                &values(&input, &categories),
            )
            .await?;
            activities::record(
                conn,
                auth.user_id.0,
                "trip_created",
                "trip",
                row.id,
                activity_data(&row),
            )
            .await?;
            Ok::<_, AppError>((row, traveler))
        })
        .await?;
    drop(conn);
    let facts = trip_facts(&row, traveler_stats(Some(&traveler)));
    state
        .events
        .publish(Event::TripUpserted {
            trip: facts.clone(),
        })
        .await;
    suggest::trip_posted(state, facts).await;
    Ok(view(state, row))
}

/// A trip the caller may see: their own, or another's open one.
fn visible(row: &TripRow, auth: AuthUser) -> bool {
    row.traveler_id == auth.user_id.0 || row.status == "open"
}

pub async fn get(state: &AppState, auth: AuthUser, id: TripId) -> Result<TripView, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let row = trips::find(&mut conn, id.0)
        .await?
        .filter(|r| visible(r, auth))
        .ok_or_else(AppError::not_found)?;
    Ok(view(state, row))
}

/// The caller's trip, locked; 403 for another's visible trip, 404 for one they cannot see.
async fn own_for_update(
    conn: &mut diesel_async::AsyncPgConnection,
    auth: AuthUser,
    id: TripId,
) -> Result<TripRow, AppError> {
    let row = trips::find_for_update(conn, id.0)
        .await?
        .filter(|r| visible(r, auth))
        .ok_or_else(AppError::not_found)?;
    if row.traveler_id != auth.user_id.0 {
        return Err(AppError::forbidden(
            "not_owner",
            "Only the traveler who posted this trip can change it.",
        ));
    }
    Ok(row)
}

pub async fn update(
    state: &AppState,
    auth: AuthUser,
    id: TripId,
    patch: TripPatch,
) -> Result<TripView, AppError> {
    let now = Utc::now();
    let mut conn = db::conn(&state.db).await?;
    let row = conn
        .transaction(async |conn| {
            let row = own_for_update(conn, auth, id).await?;
            if row.status != "open" {
                return Err(AppError::conflict(
                    "not_editable",
                    "Only an open trip can be changed.",
                ));
            }
            if matches::has_live(conn, matches::Of::Trip(row.id)).await? {
                return Err(AppError::conflict(
                    "not_editable",
                    "This trip already has requests; decline or cancel them first.",
                ));
            }
            let current = view(state, row.clone());
            let g = &state.gazetteer;
            let merged = TripInput {
                origin: patch.origin.clone().unwrap_or_else(|| {
                    g.restore(
                        row.origin_code.as_deref(),
                        &row.origin_label,
                        &row.origin_country,
                        row.origin_lat,
                        row.origin_lng,
                    )
                }),
                destination: patch.destination.clone().unwrap_or_else(|| {
                    g.restore(
                        row.destination_code.as_deref(),
                        &row.destination_label,
                        &row.destination_country,
                        row.destination_lat,
                        row.destination_lng,
                    )
                }),
                departure_at: patch.departure_at.unwrap_or(row.departure_at),
                arrival_at: patch.arrival_at.unwrap_or(row.arrival_at),
                capacity: match patch.capacity {
                    Some(c) => c,
                    None => {
                        Weight::parse(i64::from(row.capacity_grams), i32::MAX, "capacity_grams")?
                    }
                },
                price_per_kg: match &patch.price_per_kg {
                    Some(p) => *p,
                    None => Money::parse(&current.price_per_kg, "price_per_kg")?,
                },
                categories: match &patch.categories {
                    Some(c) => c.clone(),
                    None => current
                        .accepted_categories
                        .iter()
                        .filter_map(|c| Category::parse(c, "accepted_categories").ok())
                        .collect(),
                },
                flight_number: patch
                    .flight_number
                    .clone()
                    .unwrap_or(row.flight_number.clone()),
                notes: patch.notes.clone().unwrap_or(row.notes.clone()),
            };
            let mut errors = check(&merged, now);
            if merged.capacity.grams() < row.reserved_grams {
                errors.push(FieldError::new(
                    "capacity_grams",
                    format!(
                        "must not be below the {} grams already reserved",
                        row.reserved_grams
                    ),
                ));
            }
            if !errors.is_empty() {
                return Err(AppError::validation(errors));
            }
            let categories = category_names(&merged.categories);
            let row = trips::update(conn, row.id, &values(&merged, &categories)).await?;
            activities::record(
                conn,
                auth.user_id.0,
                "trip_updated",
                "trip",
                row.id,
                activity_data(&row),
            )
            .await?;
            Ok(row)
        })
        .await?;
    drop(conn);
    publish_changes(state, &[row.id], &[]).await;
    Ok(view(state, row))
}

pub async fn cancel(state: &AppState, auth: AuthUser, id: TripId) -> Result<TripView, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let (row, touched) = conn
        .transaction(async |conn| {
            let row = own_for_update(conn, auth, id).await?;
            if row.status != "open" {
                return Err(AppError::conflict(
                    "invalid_transition",
                    format!("A trip that is {} cannot be cancelled.", row.status),
                ));
            }
            let live = matches::open_requests(conn, matches::Of::Trip(row.id)).await?;
            if matches::has_bookings(conn, matches::Of::Trip(row.id)).await? {
                return Err(AppError::conflict(
                    "has_bookings",
                    "This trip has a paid booking; it can no longer be cancelled.",
                ));
            }
            let mut touched = Touched::default();
            lifecycle::close_requests(
                conn,
                state,
                live,
                auth.user_id.0,
                "trip_cancelled",
                &mut touched,
            )
            .await?;
            let row = trips::set_status(conn, row.id, "cancelled").await?;
            activities::record(
                conn,
                auth.user_id.0,
                "trip_cancelled",
                "trip",
                row.id,
                activity_data(&row),
            )
            .await?;
            Ok::<_, AppError>((row, touched))
        })
        .await?;
    drop(conn);
    touched.publish(state).await;
    publish_changes(state, &[row.id], &[]).await;
    Ok(view(state, row))
}

pub async fn search(
    state: &AppState,
    auth: AuthUser,
    query: TripQuery,
) -> Result<TripPage, AppError> {
    let limit = clamp_limit(query.limit);
    let scope = if query.mine { "trips:mine" } else { "trips" };
    let position = query
        .cursor
        .as_deref()
        .map(|c| state.cursors.decode(scope, c))
        .transpose()?;
    let order = if query.mine {
        Order::Newest {
            before: position.map(|p| p.id),
        }
    } else {
        Order::Time {
            after: position.and_then(|p| p.time().map(|t| (t, p.id))),
        }
    };
    let filter = TripFilter {
        origin: query.origin,
        destination: query.destination,
        departs_from: query.from,
        departs_to: query.to,
        min_available_grams: query.min_available_grams,
        currency: query.currency,
        traveler: query.mine.then_some(auth.user_id.0),
        now: Utc::now(),
    };
    let mut conn = db::conn(&state.db).await?;
    let rows = trips::search(&mut conn, &filter, &order, limit).await?;
    let (rows, next) = split_page(rows, limit, |r| Position {
        time_us: (!query.mine).then(|| r.departure_at.timestamp_micros()),
        id: r.id,
    });
    Ok(TripPage {
        items: rows.into_iter().map(|r| view(state, r)).collect(),
        next_cursor: next.map(|p| state.cursors.encode(scope, &p)),
    })
}
