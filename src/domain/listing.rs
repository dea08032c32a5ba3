//! Rules that span several fields of a trip or a parcel: schedules, windows, distinct ends.

use chrono::{DateTime, Duration, Utc};

use super::gazetteer::Location;
use super::geo::distance_m;
use super::FieldError;

/// How far ahead a trip or parcel may be posted.
pub const MAX_AHEAD_DAYS: i64 = 365;
/// Origin and destination closer than this are the same place.
const MIN_DISTANCE_M: f64 = 1_000.0;

/// A trip departs in the future (within a year) and arrives after it departs.
pub fn check_trip_schedule(
    departure: DateTime<Utc>,
    arrival: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if departure <= now {
        errors.push(FieldError::new("departure_at", "must be in the future"));
    } else if departure > now + Duration::days(MAX_AHEAD_DAYS) {
        errors.push(FieldError::new("departure_at", "must be within a year"));
    }
    if arrival <= departure {
        errors.push(FieldError::new("arrival_at", "must be after departure_at"));
    }
    errors
}

/// A parcel is ready before its deadline, and the deadline is in the future (within a year).
pub fn check_parcel_window(
    ready_from: DateTime<Utc>,
    deliver_by: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if deliver_by <= now {
        errors.push(FieldError::new("deliver_by", "must be in the future"));
    } else if deliver_by > now + Duration::days(MAX_AHEAD_DAYS) {
        errors.push(FieldError::new("deliver_by", "must be within a year"));
    }
    if ready_from >= deliver_by {
        errors.push(FieldError::new("ready_from", "must be before deliver_by"));
    }
    errors
}

pub fn check_distinct_ends(origin: &Location, destination: &Location) -> Option<FieldError> {
    (distance_m(origin.point, destination.point) < MIN_DISTANCE_M)
        .then(|| FieldError::new("destination", "must be a different place from origin"))
}

/// An optional free text of at most `max` characters, trimmed; empty means none.
pub fn optional_text(
    raw: Option<&str>,
    max: usize,
    field: &str,
) -> Result<Option<String>, FieldError> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) if t.chars().count() > max => Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        )),
        Some(t) => Ok(Some(t.to_owned())),
    }
}

/// A flight number such as `BA117` or `U21234A`.
pub fn flight_number(raw: &str) -> Result<String, FieldError> {
    let f: String = raw
        .trim()
        .to_ascii_uppercase()
        .chars()
        .filter(|c| *c != ' ')
        .collect();
    if !f.is_ascii() {
        return Err(FieldError::new("flight_number", "must look like BA117"));
    }
    let (airline, rest) = f.split_at(f.len().min(2));
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let suffix = &rest[digits.len()..];
    let ok = airline.len() == 2
        && airline.chars().all(|c| c.is_ascii_alphanumeric())
        && (1..=4).contains(&digits.len())
        && (suffix.is_empty()
            || (suffix.len() == 1 && suffix.chars().all(|c| c.is_ascii_uppercase())));
    if ok {
        Ok(f)
    } else {
        Err(FieldError::new("flight_number", "must look like BA117"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trip_schedules_are_checked() {
        let now = Utc::now();
        let h = Duration::hours(1);
        assert!(check_trip_schedule(now + h, now + h * 3, now).is_empty());
        assert_eq!(
            check_trip_schedule(now - h, now + h, now)[0].field,
            "departure_at"
        );
        assert_eq!(
            check_trip_schedule(now + h * 2, now + h, now)[0].field,
            "arrival_at"
        );
        assert_eq!(
            check_trip_schedule(now + Duration::days(400), now + Duration::days(401), now)[0].field,
            "departure_at"
        );
    }

    #[test]
    fn parcel_windows_are_checked() {
        let now = Utc::now();
        let h = Duration::hours(1);
        assert!(
            check_parcel_window(now - h, now + h, now).is_empty(),
            "ready already is fine"
        );
        assert_eq!(
            check_parcel_window(now + h * 2, now + h, now)[0].field,
            "ready_from"
        );
        assert_eq!(
            check_parcel_window(now - h * 2, now - h, now)[0].field,
            "deliver_by"
        );
    }

    #[test]
    fn flight_numbers_are_normalised() {
        assert_eq!(flight_number(" ba 117 ").unwrap(), "BA117");
        assert_eq!(flight_number("U21234A").unwrap(), "U21234A");
        assert!(flight_number("B-17").is_err());
        assert!(flight_number("BA12345").is_err());
        assert!(flight_number("BA").is_err());
        assert!(flight_number("aé1").is_err());
    }

    #[test]
    fn optional_texts_are_trimmed_and_bounded() {
        assert_eq!(
            optional_text(Some("  hi "), 5, "notes").unwrap().as_deref(),
            Some("hi")
        );
        assert_eq!(optional_text(Some("   "), 5, "notes").unwrap(), None);
        assert!(optional_text(Some("toolong"), 5, "notes").is_err());
    }
}
