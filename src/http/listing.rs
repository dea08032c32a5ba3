//! Request pieces shared by trips and parcels: locations, search areas, money, categories,
//! nullable fields.

use serde::{Deserialize, Deserializer};

use crate::domain::catalog::Category;
use crate::domain::gazetteer::{Gazetteer, Location, LocationInput};
use crate::domain::geo::LatLng;
use crate::domain::money::{Currency, Money, MoneyDto};
use crate::domain::FieldError;
use crate::error::FieldErrors;
use crate::models::geo_filter::Area;

/// Default and largest search radius.
pub const DEFAULT_RADIUS_KM: f64 = 50.0;
pub const MAX_RADIUS_KM: f64 = 500.0;
/// Smallest radius: tiny-radius probing must not locate a custom place more finely than the
/// public views' 0.01° rounding.
pub const MIN_RADIUS_KM: f64 = 2.0;
/// Most categories a trip lists (there are 8).
const MAX_CATEGORIES: usize = 16;

/// Absent → `None` (leave alone); `null` → `Some(None)` (clear); a value → `Some(Some(v))`.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

pub fn location(
    errors: &mut FieldErrors,
    g: &Gazetteer,
    input: &LocationInput,
    field: &str,
) -> Option<Location> {
    errors.check(g.resolve(input, field))
}

pub fn money(errors: &mut FieldErrors, dto: &MoneyDto, field: &str) -> Option<Money> {
    errors.check(Money::parse(dto, field))
}

pub fn categories(errors: &mut FieldErrors, raw: &[String], field: &str) -> Option<Vec<Category>> {
    if raw.is_empty() || raw.len() > MAX_CATEGORIES {
        errors.push(FieldError::new(field, "must list 1 to 8 categories"));
        return None;
    }
    let parsed: Vec<Option<Category>> = raw
        .iter()
        .enumerate()
        .map(|(i, c)| errors.check_category(Category::parse(c, &format!("{field}[{i}]"))))
        .collect();
    parsed.into_iter().collect()
}

/// A search area from `?origin=` (`LHR`, `london-gb`, or `lat,lng`) and `?radius_km=`.
pub fn area(
    errors: &mut FieldErrors,
    g: &Gazetteer,
    raw: Option<&str>,
    radius_km: Option<f64>,
    field: &str,
) -> Option<Option<Area>> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Some(None);
    };
    let radius_km = radius_km.unwrap_or(DEFAULT_RADIUS_KM);
    if !(radius_km > 0.0 && radius_km <= MAX_RADIUS_KM) {
        errors.push(FieldError::new(
            "radius_km",
            "must be above 0 and at most 500",
        ));
        return None;
    }
    let centre = match raw.split_once(',') {
        Some((lat, lng)) => match (lat.trim().parse::<f64>(), lng.trim().parse::<f64>()) {
            (Ok(lat), Ok(lng)) => errors.check(LatLng::parse(lat, lng, field))?,
            _ => {
                errors.push(FieldError::new(
                    field,
                    "must be a location code or `lat,lng`",
                ));
                return None;
            }
        },
        None => match g.lookup(raw) {
            Some(place) => place.point,
            None => {
                errors.push(FieldError::new(
                    field,
                    "is not a known airport or city code",
                ));
                return None;
            }
        },
    };
    Some(Some(Area::around(centre, radius_km * 1000.0)))
}

pub fn currency(errors: &mut FieldErrors, raw: Option<&str>) -> Option<Option<String>> {
    match raw {
        None => Some(None),
        Some(c) => errors
            .check(Currency::parse(c, "currency"))
            .map(|c| Some(c.code().to_owned())),
    }
}
