//! `/api/parcels`: post, read, change, cancel and search parcels.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::listing::{self, nullable};
use crate::domain::account::{Email, Phone};
use crate::domain::catalog::{Category, Weight, MAX_PARCEL_WEIGHT_GRAMS};
use crate::domain::gazetteer::LocationInput;
use crate::domain::ids::ParcelId;
use crate::domain::listing::optional_text;
use crate::domain::money::MoneyDto;
use crate::domain::FieldError;
use crate::error::{AppError, FieldErrors, Problem};
use crate::services::auth::AuthUser;
use crate::services::parcels::{
    self, ParcelInput, ParcelPage, ParcelPatch, ParcelQuery, ParcelView, RecipientInput,
};
use crate::state::AppState;

const MAX_ADDRESS: usize = 300;
const MAX_DIMENSION_CM: i64 = 300;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientRequest {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateParcelRequest {
    pub origin: LocationInput,
    pub destination: LocationInput,
    /// Exact hand-over address (private).
    pub pickup_address: Option<String>,
    /// Exact delivery address (private).
    pub dropoff_address: Option<String>,
    pub ready_from: DateTime<Utc>,
    pub deliver_by: DateTime<Utc>,
    /// 1–30 000.
    pub weight_grams: i64,
    /// `[length, width, height]`, 1–300 cm each.
    pub dimensions_cm: Option<Vec<i64>>,
    pub category: String,
    /// 10–500 characters.
    pub description: String,
    /// At most 10 000.00 in its currency.
    pub declared_value: MoneyDto,
    pub max_reward: Option<MoneyDto>,
    pub recipient: RecipientRequest,
}

fn recipient(e: &mut FieldErrors, r: &RecipientRequest) -> Option<RecipientInput> {
    let name = r.name.trim();
    let name_ok =
        !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control);
    if !name_ok {
        e.push(FieldError::new(
            "recipient.name",
            "must be 1 to 100 characters",
        ));
    }
    let renamed = |field: &'static str| move |err: FieldError| FieldError::new(field, err.message);
    let email = e.check(
        r.email
            .as_deref()
            .map(Email::parse)
            .transpose()
            .map_err(renamed("recipient.email")),
    );
    let phone = e.check(
        r.phone
            .as_deref()
            .map(Phone::parse)
            .transpose()
            .map_err(renamed("recipient.phone")),
    );
    match (name_ok, email, phone) {
        (true, Some(email), Some(phone)) => Some(RecipientInput {
            name: name.to_owned(),
            email: email.map(|m| m.as_str().to_owned()),
            phone: phone.map(|p| p.as_str().to_owned()),
        }),
        _ => None,
    }
}

fn dimensions(e: &mut FieldErrors, raw: Option<&[i64]>) -> Option<Option<[i32; 3]>> {
    match raw {
        None => Some(None),
        Some([l, w, h])
            if [l, w, h]
                .iter()
                .all(|d| (1..=MAX_DIMENSION_CM).contains(*d)) =>
        {
            let c = |v: &i64| i32::try_from(*v).unwrap_or(0);
            Some(Some([c(l), c(w), c(h)]))
        }
        Some(_) => {
            e.push(FieldError::new(
                "dimensions_cm",
                "must be [length, width, height], 1 to 300 cm each",
            ));
            None
        }
    }
}

fn description(e: &mut FieldErrors, raw: &str) -> Option<String> {
    let d = raw.trim();
    let n = d.chars().count();
    if (10..=500).contains(&n) {
        Some(d.to_owned())
    } else {
        e.push(FieldError::new(
            "description",
            "must be 10 to 500 characters",
        ));
        None
    }
}

impl CreateParcelRequest {
    fn parse(self, state: &AppState) -> Result<ParcelInput, AppError> {
        let g = &state.gazetteer;
        let mut e = FieldErrors::default();
        let origin = listing::location(&mut e, g, &self.origin, "origin");
        let destination = listing::location(&mut e, g, &self.destination, "destination");
        let pickup = e.check(optional_text(
            self.pickup_address.as_deref(),
            MAX_ADDRESS,
            "pickup_address",
        ));
        let dropoff = e.check(optional_text(
            self.dropoff_address.as_deref(),
            MAX_ADDRESS,
            "dropoff_address",
        ));
        let weight = e.check(Weight::parse(
            self.weight_grams,
            MAX_PARCEL_WEIGHT_GRAMS,
            "weight_grams",
        ));
        let dims = dimensions(&mut e, self.dimensions_cm.as_deref());
        let category = e.check_category(Category::parse(&self.category, "category"));
        let description = description(&mut e, &self.description);
        let declared = listing::money(&mut e, &self.declared_value, "declared_value");
        let reward = self
            .max_reward
            .as_ref()
            .map(|m| listing::money(&mut e, m, "max_reward"));
        let recipient = recipient(&mut e, &self.recipient);
        if !e.is_empty() {
            return Err(e.into_error());
        }
        match (
            origin,
            destination,
            pickup,
            dropoff,
            weight,
            dims,
            category,
            description,
            declared,
            recipient,
        ) {
            (
                Some(origin),
                Some(destination),
                Some(pickup_address),
                Some(dropoff_address),
                Some(weight),
                Some(dimensions_cm),
                Some(category),
                Some(description),
                Some(declared_value),
                Some(recipient),
            ) => Ok(ParcelInput {
                origin,
                destination,
                pickup_address,
                dropoff_address,
                ready_from: self.ready_from,
                deliver_by: self.deliver_by,
                weight,
                dimensions_cm,
                category,
                description,
                declared_value,
                max_reward: reward.flatten(),
                recipient,
            }),
            _ => Err(e.into_error()),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateParcelRequest {
    pub origin: Option<LocationInput>,
    pub destination: Option<LocationInput>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub pickup_address: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub dropoff_address: Option<Option<String>>,
    pub ready_from: Option<DateTime<Utc>>,
    pub deliver_by: Option<DateTime<Utc>>,
    pub weight_grams: Option<i64>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<i64>>)]
    pub dimensions_cm: Option<Option<Vec<i64>>>,
    pub category: Option<String>,
    pub description: Option<String>,
    pub declared_value: Option<MoneyDto>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<MoneyDto>)]
    pub max_reward: Option<Option<MoneyDto>>,
    pub recipient: Option<RecipientRequest>,
}

impl UpdateParcelRequest {
    fn parse(self, state: &AppState) -> Result<ParcelPatch, AppError> {
        let g = &state.gazetteer;
        let mut e = FieldErrors::default();
        let patch = ParcelPatch {
            origin: self
                .origin
                .as_ref()
                .and_then(|o| listing::location(&mut e, g, o, "origin")),
            destination: self
                .destination
                .as_ref()
                .and_then(|d| listing::location(&mut e, g, d, "destination")),
            pickup_address: self.pickup_address.map(|a| {
                e.check(optional_text(a.as_deref(), MAX_ADDRESS, "pickup_address"))
                    .flatten()
            }),
            dropoff_address: self.dropoff_address.map(|a| {
                e.check(optional_text(a.as_deref(), MAX_ADDRESS, "dropoff_address"))
                    .flatten()
            }),
            ready_from: self.ready_from,
            deliver_by: self.deliver_by,
            weight: self
                .weight_grams
                .and_then(|w| e.check(Weight::parse(w, MAX_PARCEL_WEIGHT_GRAMS, "weight_grams"))),
            dimensions_cm: self
                .dimensions_cm
                .map(|d| dimensions(&mut e, d.as_deref()).flatten()),
            category: self
                .category
                .as_deref()
                .and_then(|c| e.check_category(Category::parse(c, "category"))),
            description: self
                .description
                .as_deref()
                .and_then(|d| description(&mut e, d)),
            declared_value: self
                .declared_value
                .as_ref()
                .and_then(|m| listing::money(&mut e, m, "declared_value")),
            max_reward: self.max_reward.map(|m| {
                m.as_ref()
                    .and_then(|m| listing::money(&mut e, m, "max_reward"))
            }),
            recipient: self.recipient.as_ref().and_then(|r| recipient(&mut e, r)),
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
pub struct ParcelSearchParams {
    /// Airport or city code, or `lat,lng`.
    pub origin: Option<String>,
    pub destination: Option<String>,
    /// Around origin and destination; default 50, at most 500.
    pub radius_km: Option<f64>,
    /// Parcels whose window `[ready_from, deliver_by]` overlaps `[from, to]`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub max_weight_grams: Option<i32>,
    pub category: Option<String>,
    pub currency: Option<String>,
    /// Only my parcels, in any status, newest first.
    pub mine: Option<bool>,
    pub cursor: Option<String>,
    /// Default 20, at most 100.
    pub limit: Option<i64>,
}

impl ParcelSearchParams {
    fn parse(self, state: &AppState) -> Result<ParcelQuery, AppError> {
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
        let category = match self.category.as_deref() {
            None => Some(None),
            Some(c) => e.check_category(Category::parse(c, "category")).map(Some),
        };
        match (origin, destination, currency, category) {
            (Some(origin), Some(destination), Some(currency), Some(category)) if e.is_empty() => {
                Ok(ParcelQuery {
                    origin,
                    destination,
                    from: self.from,
                    to: self.to,
                    max_weight_grams: self.max_weight_grams,
                    category,
                    currency,
                    mine: self.mine.unwrap_or(false),
                    cursor: self.cursor,
                    limit: self.limit,
                })
            }
            _ => Err(e.into_error()),
        }
    }
}

/// Posts a parcel.
#[utoipa::path(post, path = "/api/parcels", tag = "parcels", security(("bearer" = [])), request_body = CreateParcelRequest,
    responses(
        (status = 201, description = "Posted", body = ParcelView),
        (status = 403, description = "Suspended account", body = Problem),
        (status = 422, description = "Invalid fields (`validation_failed`, `prohibited_item`)", body = Problem),
    ))]
pub async fn create_parcel(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<CreateParcelRequest>,
) -> Result<HttpResponse, AppError> {
    let input = body.into_inner().parse(&state)?;
    Ok(HttpResponse::Created().json(parcels::create(&state, user, input).await?))
}

/// Searches open parcels (public view), or mine (full view).
#[utoipa::path(get, path = "/api/parcels", tag = "parcels", security(("bearer" = [])), params(ParcelSearchParams),
    responses(
        (status = 200, description = "One page", body = ParcelPage),
        (status = 400, description = "Bad query or cursor", body = Problem),
        (status = 422, description = "Invalid search values", body = Problem),
    ))]
pub async fn search_parcels(
    state: web::Data<AppState>,
    user: AuthUser,
    params: web::Query<ParcelSearchParams>,
) -> Result<web::Json<ParcelPage>, AppError> {
    let query = params.into_inner().parse(&state)?;
    Ok(web::Json(parcels::search(&state, user, query).await?))
}

/// One parcel: mine in full, or another's open one in its public view.
#[utoipa::path(get, path = "/api/parcels/{id}", tag = "parcels", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Parcel id")),
    responses((status = 200, description = "The parcel", body = ParcelView), (status = 404, description = "Not found", body = Problem)))]
pub async fn get_parcel(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<ParcelId>,
) -> Result<web::Json<ParcelView>, AppError> {
    Ok(web::Json(
        parcels::get(&state, user, id.into_inner()).await?,
    ))
}

/// Changes my open parcel.
#[utoipa::path(patch, path = "/api/parcels/{id}", tag = "parcels", security(("bearer" = [])), request_body = UpdateParcelRequest,
    params(("id" = uuid::Uuid, Path, description = "Parcel id")),
    responses(
        (status = 200, description = "Changed", body = ParcelView),
        (status = 403, description = "Not my parcel", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "Not open any more", body = Problem),
        (status = 422, description = "Invalid fields", body = Problem),
    ))]
pub async fn update_parcel(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<ParcelId>,
    body: web::Json<UpdateParcelRequest>,
) -> Result<web::Json<ParcelView>, AppError> {
    let patch = body.into_inner().parse(&state)?;
    Ok(web::Json(
        parcels::update(&state, user, id.into_inner(), patch).await?,
    ))
}

/// Cancels my open parcel.
#[utoipa::path(delete, path = "/api/parcels/{id}", tag = "parcels", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path, description = "Parcel id")),
    responses(
        (status = 200, description = "Cancelled", body = ParcelView),
        (status = 403, description = "Not my parcel", body = Problem),
        (status = 404, description = "Not found", body = Problem),
        (status = 409, description = "Not open any more", body = Problem),
    ))]
pub async fn cancel_parcel(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<ParcelId>,
) -> Result<web::Json<ParcelView>, AppError> {
    Ok(web::Json(
        parcels::cancel(&state, user, id.into_inner()).await?,
    ))
}
