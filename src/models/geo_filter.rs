//! Shared pieces of the search queries: an area (centre, radius, bounding box) and the keyset
//! order a page continues from.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::geo::{bounding_box, BoundingBox, LatLng};

#[derive(Debug, Clone, Copy)]
pub struct Area {
    pub lat: f64,
    pub lng: f64,
    pub radius_m: f64,
    pub bbox: BoundingBox,
}

impl Area {
    pub fn around(centre: LatLng, radius_m: f64) -> Self {
        Self {
            lat: centre.lat(),
            lng: centre.lng(),
            radius_m,
            bbox: bounding_box(centre, radius_m),
        }
    }
}

/// Search results in time order (departure / deadline, then id), or newest first (`mine`).
#[derive(Debug, Clone)]
pub enum Order {
    Time {
        after: Option<(DateTime<Utc>, Uuid)>,
    },
    Newest {
        before: Option<Uuid>,
    },
}
