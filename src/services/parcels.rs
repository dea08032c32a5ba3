//! Parcels: create, read, update (while open), cancel, search. The sender sees everything;
//! other users see open parcels in a public view without the recipient, the hand-over
//! addresses or exact custom coordinates (the matched traveler will see them once paid).

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::domain::catalog::{Category, Weight};
use crate::domain::gazetteer::{Location, LocationView};
use crate::domain::ids::ParcelId;
use crate::domain::listing;
use crate::domain::money::{Money, MoneyDto};
use crate::domain::FieldError;
use crate::error::AppError;
use crate::models::geo_filter::{Area, Order};
use crate::models::matches;
use crate::models::parcels::{self, ParcelFilter, ParcelRow, ParcelValues};
use crate::services::auth::AuthUser;
use crate::services::events::Event;
use crate::services::matching::facts::{parcel_facts, publish_changes};
use crate::services::matching::lifecycle::{self, Touched};
use crate::services::matching::suggest;
use crate::services::pagination::{clamp_limit, split_page, Position};
use crate::services::{activities, users};
use crate::state::AppState;

/// Declared values are capped at 10 000.00 in the parcel's currency.
pub const MAX_DECLARED_MAJOR_UNITS: i64 = 10_000;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Recipient {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParcelView {
    pub id: Uuid,
    pub sender_id: Uuid,
    pub origin: LocationView,
    pub destination: LocationView,
    pub ready_from: DateTime<Utc>,
    pub deliver_by: DateTime<Utc>,
    pub weight_grams: i32,
    /// `[length, width, height]` in centimetres.
    pub dimensions_cm: Option<Vec<i32>>,
    pub category: String,
    pub description: String,
    pub declared_value: MoneyDto,
    pub max_reward: Option<MoneyDto>,
    /// `open`, `matched`, `in_transit`, `delivered` or `cancelled`.
    pub status: String,
    /// Sender only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
    /// Sender only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pickup_address: Option<String>,
    /// Sender only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropoff_address: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParcelPage {
    pub items: Vec<ParcelView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RecipientInput {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// A validated new parcel.
#[derive(Debug, Clone)]
pub struct ParcelInput {
    pub origin: Location,
    pub destination: Location,
    pub pickup_address: Option<String>,
    pub dropoff_address: Option<String>,
    pub ready_from: DateTime<Utc>,
    pub deliver_by: DateTime<Utc>,
    pub weight: Weight,
    pub dimensions_cm: Option<[i32; 3]>,
    pub category: Category,
    pub description: String,
    pub declared_value: Money,
    pub max_reward: Option<Money>,
    pub recipient: RecipientInput,
}

/// A validated change; `None` keeps the current value (`Some(None)` clears an optional one).
#[derive(Debug, Clone, Default)]
pub struct ParcelPatch {
    pub origin: Option<Location>,
    pub destination: Option<Location>,
    pub pickup_address: Option<Option<String>>,
    pub dropoff_address: Option<Option<String>>,
    pub ready_from: Option<DateTime<Utc>>,
    pub deliver_by: Option<DateTime<Utc>>,
    pub weight: Option<Weight>,
    pub dimensions_cm: Option<Option<[i32; 3]>>,
    pub category: Option<Category>,
    pub description: Option<String>,
    pub declared_value: Option<Money>,
    pub max_reward: Option<Option<Money>>,
    pub recipient: Option<RecipientInput>,
}

#[derive(Debug, Clone, Default)]
pub struct ParcelQuery {
    pub origin: Option<Area>,
    pub destination: Option<Area>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub max_weight_grams: Option<i32>,
    pub category: Option<Category>,
    pub currency: Option<String>,
    pub mine: bool,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

fn origin_of(state: &AppState, r: &ParcelRow) -> Location {
    state.gazetteer.restore(
        r.origin_code.as_deref(),
        &r.origin_label,
        &r.origin_country,
        r.origin_lat,
        r.origin_lng,
    )
}

fn destination_of(state: &AppState, r: &ParcelRow) -> Location {
    state.gazetteer.restore(
        r.destination_code.as_deref(),
        &r.destination_label,
        &r.destination_country,
        r.destination_lat,
        r.destination_lng,
    )
}

/// The sender's view of a row, or the public one for anybody else.
pub fn view_row(state: &AppState, row: ParcelRow, viewer: AuthUser) -> ParcelView {
    view(state, row, viewer)
}

/// The sender's view, or the public one for anybody else.
fn view(state: &AppState, row: ParcelRow, viewer: AuthUser) -> ParcelView {
    let private = row.sender_id == viewer.user_id.0;
    let (origin, destination) = (origin_of(state, &row), destination_of(state, &row));
    let money = |amount| MoneyDto {
        amount,
        currency: row.currency.clone(),
    };
    ParcelView {
        id: row.id,
        sender_id: row.sender_id,
        origin: if private {
            origin.view()
        } else {
            origin.public_view()
        },
        destination: if private {
            destination.view()
        } else {
            destination.public_view()
        },
        ready_from: row.ready_from,
        deliver_by: row.deliver_by,
        weight_grams: row.weight_grams,
        dimensions_cm: row.dimensions_cm.map(|d| d.into_iter().flatten().collect()),
        category: row.category.clone(),
        description: row.description.clone(),
        declared_value: money(row.declared_value),
        max_reward: row.max_reward.map(money),
        status: row.status.clone(),
        recipient: private.then(|| Recipient {
            name: row.recipient_name.clone(),
            email: row.recipient_email.clone(),
            phone: row.recipient_phone.clone(),
        }),
        pickup_address: if private {
            row.pickup_address.clone()
        } else {
            None
        },
        dropoff_address: if private {
            row.dropoff_address.clone()
        } else {
            None
        },
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

fn values(input: &ParcelInput) -> ParcelValues<'_> {
    ParcelValues {
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
        pickup_address: input.pickup_address.as_deref(),
        dropoff_address: input.dropoff_address.as_deref(),
        ready_from: input.ready_from,
        deliver_by: input.deliver_by,
        weight_grams: input.weight.grams(),
        dimensions_cm: input.dimensions_cm.map(|d| d.to_vec()),
        category: input.category.as_str(),
        description: &input.description,
        declared_value: input.declared_value.amount(),
        currency: input.declared_value.currency().code(),
        max_reward: input.max_reward.map(|m| m.amount()),
        recipient_name: &input.recipient.name,
        recipient_email: input.recipient.email.as_deref(),
        recipient_phone: input.recipient.phone.as_deref(),
    }
}

/// Cross-field rules of a complete parcel.
pub fn check(input: &ParcelInput, now: DateTime<Utc>) -> Vec<FieldError> {
    let mut errors = listing::check_parcel_window(input.ready_from, input.deliver_by, now);
    errors.extend(listing::check_distinct_ends(
        &input.origin,
        &input.destination,
    ));
    let cap = input.declared_value.currency().minor_per_major() * MAX_DECLARED_MAJOR_UNITS;
    if input.declared_value.amount() > cap {
        errors.push(FieldError::new(
            "declared_value.amount",
            format!("must be at most {cap} (10 000.00)"),
        ));
    }
    if let Some(reward) = input.max_reward {
        if reward.currency() != input.declared_value.currency() {
            errors.push(FieldError::new(
                "max_reward.currency",
                "must be the currency of declared_value",
            ));
        }
    }
    if input.recipient.email.is_none() && input.recipient.phone.is_none() {
        errors.push(FieldError::new(
            "recipient",
            "needs an email or a phone number",
        ));
    }
    errors
}

fn activity_data(row: &ParcelRow) -> serde_json::Value {
    serde_json::json!({
        "origin": row.origin_code.as_deref().unwrap_or(&row.origin_label),
        "destination": row.destination_code.as_deref().unwrap_or(&row.destination_label),
        "deliver_by": row.deliver_by,
    })
}

pub async fn create(
    state: &AppState,
    auth: AuthUser,
    input: ParcelInput,
) -> Result<ParcelView, AppError> {
    let errors = check(&input, Utc::now());
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    let mut conn = db::conn(&state.db).await?;
    let row = conn
        .transaction(async |conn| {
            users::ensure_may_publish(conn, auth.user_id).await?;
            let row =
                parcels::insert(conn, ParcelId::new().0, auth.user_id.0, &values(&input)).await?;
            activities::record(
                conn,
                auth.user_id.0,
                "parcel_created",
                "parcel",
                row.id,
                activity_data(&row),
            )
            .await?;
            Ok::<_, AppError>(row)
        })
        .await?;
    drop(conn);
    let facts = parcel_facts(&row);
    state
        .events
        .publish(Event::ParcelUpserted {
            parcel: facts.clone(),
        })
        .await;
    suggest::parcel_posted(state, facts).await;
    Ok(view(state, row, auth))
}

fn visible(row: &ParcelRow, auth: AuthUser) -> bool {
    row.sender_id == auth.user_id.0 || row.status == "open"
}

pub async fn get(state: &AppState, auth: AuthUser, id: ParcelId) -> Result<ParcelView, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let row = parcels::find(&mut conn, id.0)
        .await?
        .ok_or_else(AppError::not_found)?;
    // The traveler of a live match keeps seeing the parcel (public view) once it is matched.
    let party = !visible(&row, auth)
        && matches::is_party_of_parcel(&mut conn, row.id, auth.user_id.0).await?;
    if !visible(&row, auth) && !party {
        return Err(AppError::not_found());
    }
    Ok(view(state, row, auth))
}

async fn own_for_update(
    conn: &mut diesel_async::AsyncPgConnection,
    auth: AuthUser,
    id: ParcelId,
) -> Result<ParcelRow, AppError> {
    let row = parcels::find_for_update(conn, id.0)
        .await?
        .filter(|r| visible(r, auth))
        .ok_or_else(AppError::not_found)?;
    if row.sender_id != auth.user_id.0 {
        return Err(AppError::forbidden(
            "not_owner",
            "Only the sender of this parcel can change it.",
        ));
    }
    Ok(row)
}

fn current_input(state: &AppState, row: &ParcelRow) -> Result<ParcelInput, AppError> {
    let money = |amount| {
        Money::parse(
            &MoneyDto {
                amount,
                currency: row.currency.clone(),
            },
            "declared_value",
        )
    };
    Ok(ParcelInput {
        origin: origin_of(state, row),
        destination: destination_of(state, row),
        pickup_address: row.pickup_address.clone(),
        dropoff_address: row.dropoff_address.clone(),
        ready_from: row.ready_from,
        deliver_by: row.deliver_by,
        weight: Weight::parse(i64::from(row.weight_grams), i32::MAX, "weight_grams")?,
        dimensions_cm: row.dimensions_cm.as_ref().and_then(|d| match d.as_slice() {
            [Some(l), Some(w), Some(h)] => Some([*l, *w, *h]),
            _ => None,
        }),
        category: Category::parse(&row.category, "category")
            .map_err(|e| AppError::validation(vec![e.field_error().clone()]))?,
        description: row.description.clone(),
        declared_value: money(row.declared_value)?,
        max_reward: row.max_reward.map(money).transpose()?,
        recipient: RecipientInput {
            name: row.recipient_name.clone(),
            email: row.recipient_email.clone(),
            phone: row.recipient_phone.clone(),
        },
    })
}

pub async fn update(
    state: &AppState,
    auth: AuthUser,
    id: ParcelId,
    patch: ParcelPatch,
) -> Result<ParcelView, AppError> {
    let now = Utc::now();
    let mut conn = db::conn(&state.db).await?;
    let row = conn
        .transaction(async |conn| {
            let row = own_for_update(conn, auth, id).await?;
            if row.status != "open" {
                return Err(AppError::conflict(
                    "not_editable",
                    "Only an open parcel can be changed.",
                ));
            }
            if matches::has_live(conn, matches::Of::Parcel(row.id)).await? {
                return Err(AppError::conflict(
                    "not_editable",
                    "This parcel already has requests; decline or cancel them first.",
                ));
            }
            let c = current_input(state, &row).map_err(AppError::internal)?;
            let merged = ParcelInput {
                origin: patch.origin.clone().unwrap_or(c.origin),
                destination: patch.destination.clone().unwrap_or(c.destination),
                pickup_address: patch.pickup_address.clone().unwrap_or(c.pickup_address),
                dropoff_address: patch.dropoff_address.clone().unwrap_or(c.dropoff_address),
                ready_from: patch.ready_from.unwrap_or(c.ready_from),
                deliver_by: patch.deliver_by.unwrap_or(c.deliver_by),
                weight: patch.weight.unwrap_or(c.weight),
                dimensions_cm: patch.dimensions_cm.unwrap_or(c.dimensions_cm),
                category: patch.category.unwrap_or(c.category),
                description: patch.description.clone().unwrap_or(c.description),
                declared_value: patch.declared_value.unwrap_or(c.declared_value),
                max_reward: patch.max_reward.unwrap_or(c.max_reward),
                recipient: patch.recipient.clone().unwrap_or(c.recipient),
            };
            let errors = check(&merged, now);
            if !errors.is_empty() {
                return Err(AppError::validation(errors));
            }
            let row = parcels::update(conn, row.id, &values(&merged)).await?;
            activities::record(
                conn,
                auth.user_id.0,
                "parcel_updated",
                "parcel",
                row.id,
                activity_data(&row),
            )
            .await?;
            Ok(row)
        })
        .await?;
    drop(conn);
    publish_changes(state, &[], &[row.id]).await;
    Ok(view(state, row, auth))
}

pub async fn cancel(
    state: &AppState,
    auth: AuthUser,
    id: ParcelId,
) -> Result<ParcelView, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let (row, touched) = conn
        .transaction(async |conn| {
            let row = own_for_update(conn, auth, id).await?;
            if row.status != "open" {
                return Err(AppError::conflict(
                    "invalid_transition",
                    format!("A parcel that is {} cannot be cancelled.", row.status),
                ));
            }
            let live = matches::open_requests(conn, matches::Of::Parcel(row.id)).await?;
            if matches::has_bookings(conn, matches::Of::Parcel(row.id)).await? {
                return Err(AppError::conflict(
                    "has_bookings",
                    "This parcel has a paid booking; it can no longer be cancelled.",
                ));
            }
            let mut touched = Touched::default();
            lifecycle::close_requests(
                conn,
                state,
                live,
                auth.user_id.0,
                "parcel_cancelled",
                &mut touched,
            )
            .await?;
            let row = parcels::set_status(conn, row.id, "cancelled").await?;
            activities::record(
                conn,
                auth.user_id.0,
                "parcel_cancelled",
                "parcel",
                row.id,
                activity_data(&row),
            )
            .await?;
            Ok::<_, AppError>((row, touched))
        })
        .await?;
    drop(conn);
    touched.publish(state).await;
    publish_changes(state, &[], &[row.id]).await;
    Ok(view(state, row, auth))
}

pub async fn search(
    state: &AppState,
    auth: AuthUser,
    query: ParcelQuery,
) -> Result<ParcelPage, AppError> {
    let limit = clamp_limit(query.limit);
    let scope = if query.mine {
        "parcels:mine"
    } else {
        "parcels"
    };
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
    let filter = ParcelFilter {
        origin: query.origin,
        destination: query.destination,
        window_from: query.from,
        window_to: query.to,
        max_weight_grams: query.max_weight_grams,
        category: query.category.map(|c| c.as_str().to_owned()),
        currency: query.currency,
        sender: query.mine.then_some(auth.user_id.0),
        now: Utc::now(),
    };
    let mut conn = db::conn(&state.db).await?;
    let rows = parcels::search(&mut conn, &filter, &order, limit).await?;
    let (rows, next) = split_page(rows, limit, |r| Position {
        time_us: (!query.mine).then(|| r.deliver_by.timestamp_micros()),
        id: r.id,
    });
    Ok(ParcelPage {
        items: rows.into_iter().map(|r| view(state, r, auth)).collect(),
        next_cursor: next.map(|p| state.cursors.encode(scope, &p)),
    })
}
