//! `/api/trips`: post, read, change, cancel and search trips.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::listing::{self, nullable};
use crate::domain::catalog::{Weight, MAX_TRIP_CAPACITY_GRAMS};
use crate::domain::gazetteer::LocationInput;
use crate::domain::ids::TripId;
use crate::domain::listing::{flight_number, optional_text};
use crate::domain::money::MoneyDto;
use crate::error::{AppError, FieldErrors, Problem};
use crate::services::auth::AuthUser;
use crate::services::trips::{self, TripInput, TripPage, TripPatch, TripQuery, TripView};
use crate::state::AppState;

const MAX_NOTES: usize = 500;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTripRequest {
    pub origin: LocationInput,
    pub destination: LocationInput,
    pub departure_at: DateTime<Utc>,
    pub arrival_at: DateTime<Utc>,
    /// 1–50 000.
    pub capacity_grams: i64,
    pub price_per_kg: MoneyDto,
    /// documents, clothing, electronics, books, medicine, gifts, food_nonperishable, other.
    pub accepted_categories: Vec<String>,
    pub flight_number: Option<String>,
    /// At most 500 characters.
    pub notes: Option<String>,
}

fn flight(errors: &mut FieldErrors, raw: Option<&str>) -> Option<Option<String>> {
    match raw.map(str::trim).filter(|f| !f.is_empty()) {
        None => Some(None),
        Some(f) => errors.check(flight_number(f)).map(Some),
    }
}

impl CreateTripRequest {
    fn parse(self, state: &AppState) -> Result<TripInput, AppError> {
        let g = &state.gazetteer;
        let mut e = FieldErrors::default();
        let origin = listing::location(&mut e, g, &self.origin, "origin");
        let destination = listing::location(&mut e, g, &self.destination, "destination");
        let capacity = e.check(Weight::parse(
            self.capacity_grams,
            MAX_TRIP_CAPACITY_GRAMS,
            "capacity_grams",
        ));
        let price = listing::money(&mut e, &self.price_per_kg, "price_per_kg");
        let categories =
            listing::categories(&mut e, &self.accepted_categories, "accepted_categories");
        let flight_number = flight(&mut e, self.flight_number.as_deref());
        let notes = e.check(optional_text(self.notes.as_deref(), MAX_NOTES, "notes"));
        match (
            origin,
            destination,
            capacity,
            price,
            categories,
            flight_number,
            notes,
        ) {
            (
                Some(origin),
                Some(destination),
                Some(capacity),
                Some(price_per_kg),
                Some(categories),
                Some(flight_number),
                Some(notes),
            ) if e.is_empty() => Ok(TripInput {
                origin,
                destination,
                departure_at: self.departure_at,
                arrival_at: self.arrival_at,
                capacity,
                price_per_kg,
                categories,
                flight_number,
                notes,
            }),
            _ => Err(e.into_error()),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTripRequest {
    pub origin: Option<LocationInput>,
    pub destination: Option<LocationInput>,
    pub departure_at: Option<DateTime<Utc>>,
    pub arrival_at: Option<DateTime<Utc>>,
    pub capacity_grams: Option<i64>,
    pub price_per_kg: Option<MoneyDto>,
    pub accepted_categories: Option<Vec<String>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub flight_number: Option<Option<String>>,
    /// `null` removes them.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
}

impl UpdateTripRequest {
    fn parse(self, state: &AppState) -> Result<TripPatch, AppError> {
        let g = &state.gazetteer;
        let mut e = FieldErrors::default();
        let patch = TripPatch {
            origin: self
                .origin
                .as_ref()
                .and_then(|o| listing::location(&mut e, g, o, "origin")),
            destination: self
                .destination
                .as_ref()
                .and_then(|d| listing::location(&mut e, g, d, "destination")),
            departure_at: self.departure_at,
            arrival_at: self.arrival_at,
            capacity: self
                .capacity_grams
                .and_then(|c| e.check(Weight::parse(c, MAX_TRIP_CAPACITY_GRAMS, "capacity_grams"))),
            price_per_kg: self
                .price_per_kg
                .as_ref()
                .and_then(|p| listing::money(&mut e, p, "price_per_kg")),
            categories: self
                .accepted_categories
                .as_deref()
                .and_then(|c| listing::categories(&mut e, c, "accepted_categories")),
            flight_number: self
                .flight_number
                .map(|f| flight(&mut e, f.as_deref()).flatten()),
            notes: self.notes.map(|n| {
                e.check(optional_text(n.as_deref(), MAX_NOTES, "notes"))
                    .flatten()
            }),
        };
        if e.is_empty() {
            Ok(patch)
        } else {
            Err(e.into_error())
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TripSearchParams {
    /// Airport or city code, or `lat,lng`.
    pub origin: Option<String>,
    pub destination: Option<String>,
    /// Around origin and destination; default 50, at most 500.
    pub radius_km: Option<f64>,
    /// Departing at or after.
    pub from: Option<DateTime<Utc>>,
    /// Departing at or before.
    pub to: Option<DateTime<Utc>>,
    pub min_available_grams: Option<i32>,
    pub currency: Option<String>,
    /// Only my trips, in any status, newest first.
    pub mine: Option<bool>,
    pub cursor: Option<String>,
    /// Default 20, at most 100.
    pub limit: Option<i64>,
}

impl TripSearchParams {
    fn parse(self, state: &AppState) -> Result<TripQuery, AppError> {
        let g = &state.gazetteer;
        let mut e = FieldErrors::default();
        let origin = listing::area(&mut e, g, self.origin.as_deref(), self.radius_km, "origin");
        let destination = listing::area(
            &mut e,
            g,
            self.destination.as_deref(),
            self.radius_km,
            "destination",
        );
        let currency = listing::currency(&mut e, self.currency.as_deref());
        match (origin, destination, currency) {
            (Some(origin), Some(destination), Some(currency)) if e.is_empty() => Ok(TripQuery {
                origin,
                destination,
                from: self.from,
                to: self.to,
                min_available_grams: self.min_available_grams,
                currency,
                mine: self.mine.unwrap_or(false),
                cursor: self.cursor,
                limit: self.limit,
            }),
            _ => Err(e.into_error()),
        }
    }
}

/// Posts a trip.
#[utoipa::path(post, path = "/api/trips", tag = "trips", security(("bearer" = [])), request_body = CreateTripRequest,
    responses(
        (status = 201, description = "Posted", body = TripView),
        (status = 403, description = "Suspended account", body = Problem),
        (status = 422, description = "Invalid fields (`validation_failed`, `prohibited_item`)", body = Problem),
    ))]
pub async fn create_trip(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<CreateTripRequest>,
) -> Result<HttpResponse, AppError> {
    let input = body.into_inner().parse(&state)?;
    Ok(HttpResponse::Created().json(trips::create(&state, user, input).await?))
}

/// Searches open trips (or mine).
#[utoipa::path(get, path = "/api/trips", tag = "trips", security(("bearer" = [])), params(TripSearchParams),
    responses(
        (status = 200, description = "One page", body = TripPage),
        (status = 400, description = "Bad query or cursor", body = Problem),
        (status = 422, description = "Invalid search values", body = Problem),
    ))]
pub async fn search_trips(
    state: web::Data<AppState>,
    user: AuthUser,
    params: web::Query<TripSearchParams>,
) -> Result<web::Json<TripPage>, AppError> {
    let query = params.into_inner().parse(&state)?;
    Ok(web::Json(trips::search(&state, user, query).await?))
}

/// One trip: mine, or another's open one.
#[utoipa::path(get, path = "/api/trips/{id}", tag = "trips", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Trip id")),
    responses((status = 200, description = "The trip", body = TripView), (status = 404, description = "Not found", body = Problem)))]
pub async fn get_trip(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<TripId>,
) -> Result<web::Json<TripView>, AppError> {
    Ok(web::Json(trips::get(&state, user, id.into_inner()).await?))
}

/// Changes my open trip.
#[utoipa::path(patch, path = "/api/trips/{id}", tag = "trips", security(("bearer" = [])), request_body = UpdateTripRequest,
    params(("id" = uuid::Uuid, Path, description = "Trip id")),
    responses(
        (status = 200, description = "Changed", body = TripView),
        (status = 403, description = "Not my trip", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "Not open any more", body = Problem),
        (status = 422, description = "Invalid fields", body = Problem),
    ))]
pub async fn update_trip(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<TripId>,
    body: web::Json<UpdateTripRequest>,
) -> Result<web::Json<TripView>, AppError> {
    let patch = body.into_inner().parse(&state)?;
    Ok(web::Json(
        trips::update(&state, user, id.into_inner(), patch).await?,
    ))
}

/// Cancels my open trip.
#[utoipa::path(delete, path = "/api/trips/{id}", tag = "trips", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Trip id")),
    responses(
        (status = 200, description = "Cancelled", body = TripView),
        (status = 403, description = "Not my trip", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "Not open any more", body = Problem),
    ))]
pub async fn cancel_trip(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<TripId>,
) -> Result<web::Json<TripView>, AppError> {
    Ok(web::Json(
        trips::cancel(&state, user, id.into_inner()).await?,
    ))
}
