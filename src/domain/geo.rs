//! Coordinates and great-circle distances (haversine on a sphere of the mean Earth radius), and
//! the bounding box that pre-filters a radius search through an index.

use super::FieldError;

/// Mean Earth radius (IUGG), metres. The SQL function `airbar_distance_m` uses the same.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;
/// Metres per degree of latitude on that sphere.
const METRES_PER_DEGREE: f64 = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLng {
    lat: f64,
    lng: f64,
}

impl LatLng {
    pub fn parse(lat: f64, lng: f64, field: &str) -> Result<Self, FieldError> {
        if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
            return Err(FieldError::new(
                format!("{field}.lat"),
                "must be between -90 and 90",
            ));
        }
        if !(lng.is_finite() && (-180.0..=180.0).contains(&lng)) {
            return Err(FieldError::new(
                format!("{field}.lng"),
                "must be between -180 and 180",
            ));
        }
        Ok(Self { lat, lng })
    }

    /// For coordinates already validated (stored rows, whose columns are range-checked):
    /// clamps instead of failing.
    pub fn clamped(lat: f64, lng: f64) -> Self {
        let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
        Self {
            lat: finite(lat).clamp(-90.0, 90.0),
            lng: finite(lng).clamp(-180.0, 180.0),
        }
    }

    pub fn lat(&self) -> f64 {
        self.lat
    }

    pub fn lng(&self) -> f64 {
        self.lng
    }

    /// Rounded to 0.01° (about 1 km), for views that must not reveal an exact spot.
    pub fn coarse(&self) -> Self {
        Self {
            lat: (self.lat * 100.0).round() / 100.0,
            lng: (self.lng * 100.0).round() / 100.0,
        }
    }
}

/// Great-circle distance in metres.
pub fn distance_m(a: LatLng, b: LatLng) -> f64 {
    let (lat1, lat2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = (b.lat - a.lat).to_radians();
    let dlng = (b.lng - a.lng).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// A lat/lng box containing every point within `radius_m` of a centre; `lng` is `None` when the
/// box would span the antimeridian or a pole (then only latitude narrows the search).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    pub lat: (f64, f64),
    pub lng: Option<(f64, f64)>,
}

pub fn bounding_box(centre: LatLng, radius_m: f64) -> BoundingBox {
    // A little slack so floating-point differences never drop a point the exact filter keeps.
    let dlat = radius_m / METRES_PER_DEGREE * 1.001 + 1e-6;
    let lat = (centre.lat - dlat, centre.lat + dlat);
    if lat.0 <= -90.0 || lat.1 >= 90.0 {
        return BoundingBox {
            lat: (lat.0.max(-90.0), lat.1.min(90.0)),
            lng: None,
        };
    }
    let widest = centre.lat.abs() + dlat;
    let dlng = dlat / widest.to_radians().cos();
    let lng = (centre.lng - dlng, centre.lng + dlng);
    if lng.0 < -180.0 || lng.1 > 180.0 || dlng >= 180.0 {
        return BoundingBox { lat, lng: None };
    }
    BoundingBox {
        lat,
        lng: Some(lng),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lng: f64) -> LatLng {
        LatLng::parse(lat, lng, "p").unwrap()
    }

    #[test]
    fn distances_match_known_values() {
        let lhr = p(51.4706, -0.46194);
        let london = p(51.50853, -0.12574);
        assert!((distance_m(lhr, london) - 23_656.27).abs() < 1.0);
        let jfk = p(40.6398, -73.7789);
        assert!((distance_m(lhr, jfk) / 1000.0 - 5_540.0).abs() < 10.0);
        assert_eq!(distance_m(lhr, lhr), 0.0);
    }

    #[test]
    fn out_of_range_coordinates_are_rejected() {
        assert!(LatLng::parse(90.5, 0.0, "origin").is_err());
        assert!(LatLng::parse(0.0, -181.0, "origin").is_err());
        assert!(LatLng::parse(f64::NAN, 0.0, "origin").is_err());
        assert_eq!(
            LatLng::parse(0.0, 200.0, "origin").unwrap_err().field,
            "origin.lng"
        );
    }

    #[test]
    fn every_point_within_the_radius_is_inside_the_box() {
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..20_000 {
            let centre = p(next() * 170.0 - 85.0, next() * 360.0 - 180.0);
            let point = p(
                (centre.lat() + (next() - 0.5) * 2.0).clamp(-90.0, 90.0),
                ((centre.lng() + (next() - 0.5) * 4.0 + 540.0) % 360.0) - 180.0,
            );
            let radius = 50_000.0 + next() * 100_000.0;
            if distance_m(centre, point) <= radius {
                let b = bounding_box(centre, radius);
                assert!(point.lat() >= b.lat.0 && point.lat() <= b.lat.1);
                if let Some((lo, hi)) = b.lng {
                    assert!(
                        point.lng() >= lo && point.lng() <= hi,
                        "{centre:?} {point:?} {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn boxes_near_the_antimeridian_or_a_pole_drop_the_longitude_bound() {
        assert!(bounding_box(p(0.0, 179.9), 50_000.0).lng.is_none());
        assert!(bounding_box(p(89.9, 0.0), 50_000.0).lng.is_none());
        assert!(bounding_box(p(51.5, 0.0), 50_000.0).lng.is_some());
    }
}
