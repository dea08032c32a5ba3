//! Keyset pagination: opaque, tamper-checked cursors and the page shape.
//!
//! A cursor is `base64url(json position) . base64url(HMAC-SHA256(key, scope ‖ json)[..16])`; the
//! scope (which listing it belongs to) is signed with it, so a cursor can be neither forged,
//! altered nor replayed against another listing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::error::AppError;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

/// `?limit=`: default 20, clamped to 1..=100.
pub fn clamp_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// Where the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The time key of the last row (microseconds), when the listing is time-ordered.
    #[serde(rename = "t", skip_serializing_if = "Option::is_none", default)]
    pub time_us: Option<i64>,
    #[serde(rename = "i")]
    pub id: Uuid,
}

impl Position {
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.time_us.and_then(DateTime::from_timestamp_micros)
    }
}

pub struct Cursors {
    key: Vec<u8>,
}

impl std::fmt::Debug for Cursors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cursors")
    }
}

fn invalid_cursor() -> AppError {
    AppError::bad_request(
        "invalid_cursor",
        "The cursor is malformed or was not issued for this listing.",
    )
}

impl Cursors {
    /// `secret` is a server secret; a purpose label keeps this key apart from its other uses.
    pub fn new(secret: &[u8]) -> Self {
        let key = match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(b"airbar-cursor-key");
                mac.finalize().into_bytes().to_vec()
            }
            Err(_) => secret.to_vec(),
        };
        Self { key }
    }

    fn tag(&self, scope: &str, payload: &[u8]) -> Vec<u8> {
        match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) {
            Ok(mut mac) => {
                mac.update(scope.as_bytes());
                mac.update(b"\0");
                mac.update(payload);
                mac.finalize().into_bytes()[..16].to_vec()
            }
            Err(_) => Vec::new(),
        }
    }

    pub fn encode(&self, scope: &str, position: &Position) -> String {
        let payload = serde_json::to_vec(position).unwrap_or_default();
        let tag = self.tag(scope, &payload);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    pub fn decode(&self, scope: &str, cursor: &str) -> Result<Position, AppError> {
        if cursor.len() > 512 {
            return Err(invalid_cursor());
        }
        let (payload, tag) = cursor.split_once('.').ok_or_else(invalid_cursor)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| invalid_cursor())?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid_cursor())?;
        let expected = self.tag(scope, &payload);
        if expected.is_empty()
            || !bool::from(subtle::ConstantTimeEq::ct_eq(
                tag.as_slice(),
                expected.as_slice(),
            ))
        {
            return Err(invalid_cursor());
        }
        serde_json::from_slice(&payload).map_err(|_| invalid_cursor())
    }

    /// The id a page of an id-ordered list starts below (`None`: the first page).
    pub fn before_id(&self, scope: &str, cursor: Option<&str>) -> Result<Option<Uuid>, AppError> {
        Ok(cursor
            .map(|c| self.decode(scope, c))
            .transpose()?
            .map(|p| p.id))
    }
}

/// Splits a `limit + 1` read into the page and the position of its last row if more follow.
pub fn split_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    position: impl Fn(&T) -> Position,
) -> (Vec<T>, Option<Position>) {
    let limit = usize::try_from(limit).unwrap_or(0);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(position);
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_tampering_and_other_scopes() {
        let c = Cursors::new(b"0123456789abcdef0123456789abcdef");
        let pos = Position {
            time_us: Some(1_700_000_000_000_000),
            id: Uuid::now_v7(),
        };
        let token = c.encode("trips", &pos);
        assert_eq!(c.decode("trips", &token).unwrap(), pos);
        assert!(c.decode("parcels", &token).is_err(), "bound to its listing");
        let (payload, tag) = token.split_once('.').unwrap();
        let forged = Position {
            time_us: Some(0),
            id: pos.id,
        };
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert!(c
            .decode("trips", &format!("{forged_payload}.{tag}"))
            .is_err());
        assert!(c.decode("trips", &format!("{payload}.AAAA")).is_err());
        assert!(c.decode("trips", "garbage").is_err());
        assert!(Cursors::new(b"another-secret-another-secret-xx")
            .decode("trips", &token)
            .is_err());
    }

    #[test]
    fn limits_are_clamped() {
        assert_eq!(clamp_limit(None), 20);
        assert_eq!(clamp_limit(Some(1000)), 100);
        assert_eq!(clamp_limit(Some(0)), 1);
        assert_eq!(clamp_limit(Some(-5)), 1);
    }

    #[test]
    fn a_page_knows_whether_more_follow() {
        let pos = |n: &i64| Position {
            time_us: Some(*n),
            id: Uuid::nil(),
        };
        let (rows, next) = split_page(vec![1, 2, 3], 2, pos);
        assert_eq!((rows, next.and_then(|p| p.time_us)), (vec![1, 2], Some(2)));
        let (rows, next) = split_page(vec![1, 2], 2, pos);
        assert_eq!((rows, next), (vec![1, 2], None));
    }
}
