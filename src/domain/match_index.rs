//! The matchmaker's in-memory spatial index: open trips (or parcels) bucketed by the 0.5° grid
//! cell of their origin, so the candidates for a place are the entries of the few cells its
//! search box covers. Pure data structure; the actor owns one.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::geo::{bounding_box, LatLng};
use super::matching::{self, ParcelFacts, Rules, Score, TripFacts};

const CELL_DEGREES: f64 = 0.5;
const LNG_CELLS: i32 = (360.0 / CELL_DEGREES) as i32;

type Cell = (i32, i32);

fn cell((lat, lng): (f64, f64)) -> Cell {
    (
        (lat / CELL_DEGREES).floor() as i32,
        (lng / CELL_DEGREES).floor() as i32,
    )
}

/// Something indexed by its origin.
pub trait Located {
    fn id(&self) -> Uuid;
    fn origin(&self) -> (f64, f64);
}

impl Located for TripFacts {
    fn id(&self) -> Uuid {
        self.id
    }
    fn origin(&self) -> (f64, f64) {
        self.origin
    }
}

impl Located for ParcelFacts {
    fn id(&self) -> Uuid {
        self.id
    }
    fn origin(&self) -> (f64, f64) {
        self.origin
    }
}

#[derive(Debug, Default)]
pub struct GridIndex<T> {
    entries: HashMap<Uuid, T>,
    cells: HashMap<Cell, HashSet<Uuid>>,
}

impl<T: Located> GridIndex<T> {
    pub fn new() -> Self {
        Self {
            entries: HashMap::new(),
            cells: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, id: &Uuid) -> Option<&T> {
        self.entries.get(id)
    }

    /// Adds or replaces an entry.
    pub fn upsert(&mut self, item: T) {
        let id = item.id();
        self.remove(&id);
        self.cells
            .entry(cell(item.origin()))
            .or_default()
            .insert(id);
        self.entries.insert(id, item);
    }

    pub fn remove(&mut self, id: &Uuid) -> Option<T> {
        let old = self.entries.remove(id)?;
        let c = cell(old.origin());
        if let Some(set) = self.cells.get_mut(&c) {
            set.remove(id);
            if set.is_empty() {
                self.cells.remove(&c);
            }
        }
        Some(old)
    }

    /// Entries whose origin lies in the cells covering `radius_m` around `centre`.
    pub fn near(&self, centre: (f64, f64), radius_m: f64) -> impl Iterator<Item = &T> {
        let bbox = bounding_box(LatLng::clamped(centre.0, centre.1), radius_m);
        let lat_lo = (bbox.lat.0 / CELL_DEGREES).floor() as i32;
        let lat_hi = (bbox.lat.1 / CELL_DEGREES).floor() as i32;
        let lng_range = match bbox.lng {
            Some((lo, hi)) => (
                (lo / CELL_DEGREES).floor() as i32,
                (hi / CELL_DEGREES).floor() as i32,
            ),
            None => (-LNG_CELLS / 2, LNG_CELLS / 2),
        };
        (lat_lo..=lat_hi)
            .flat_map(move |la| (lng_range.0..=lng_range.1).map(move |lo| (la, lo)))
            .filter_map(|c| self.cells.get(&c))
            .flatten()
            .filter_map(|id| self.entries.get(id))
    }
}

/// One suggestion: the other side's id, its score, and the facts it was scored on.
pub type Ranked<T> = Vec<(Uuid, Score, T)>;

/// The best trips for a parcel: candidates near its origin that pass every hard constraint,
/// ranked by score then id.
pub fn best_trips(
    index: &GridIndex<TripFacts>,
    parcel: &ParcelFacts,
    rules: &Rules,
    now: DateTime<Utc>,
    limit: usize,
) -> Ranked<TripFacts> {
    let scored = index
        .near(parcel.origin, rules.max_origin_m)
        .filter(|t| matching::check(parcel, t, rules, now).is_empty())
        .map(|t| (t.id, matching::score(parcel, t, rules), t.clone()))
        .collect();
    let mut ranked = matching::rank(scored);
    ranked.truncate(limit);
    ranked
}

/// The best parcels for a trip, likewise.
pub fn best_parcels(
    index: &GridIndex<ParcelFacts>,
    trip: &TripFacts,
    rules: &Rules,
    now: DateTime<Utc>,
    limit: usize,
) -> Ranked<ParcelFacts> {
    let scored = index
        .near(trip.origin, rules.max_origin_m)
        .filter(|p| matching::check(p, trip, rules, now).is_empty())
        .map(|p| (p.id, matching::score(p, trip, rules), p.clone()))
        .collect();
    let mut ranked = matching::rank(scored);
    ranked.truncate(limit);
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::matching::{TravelerStats, Weights};
    use chrono::Duration;

    struct Rng(u64);
    impl Rng {
        fn f(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn rules() -> Rules {
        Rules {
            max_origin_m: 50_000.0,
            max_destination_m: 50_000.0,
            weights: Weights::PRODUCT,
            kyc_above_major: 500,
        }
    }

    fn random_trip(r: &mut Rng, i: u128) -> TripFacts {
        TripFacts {
            id: Uuid::from_u128(i),
            traveler_id: Uuid::from_u128(1_000_000 + i % 50),
            origin: (51.0 + r.f() * 1.5, -1.5 + r.f() * 2.0),
            destination: (40.3 + r.f(), -74.5 + r.f()),
            departure_at: now() + Duration::hours(1 + (r.f() * 100.0) as i64),
            arrival_at: now() + Duration::hours(110 + (r.f() * 100.0) as i64),
            available_grams: (r.f() * 5000.0) as i32,
            accepted_categories: vec![if r.f() < 0.8 { "books" } else { "clothing" }.into()],
            currency: if r.f() < 0.9 { "EUR" } else { "USD" }.into(),
            price_per_kg: (r.f() * 3000.0) as i64,
            open: r.f() < 0.95,
            traveler: TravelerStats {
                rating_sum: (r.f() * 40.0) as i32,
                rating_count: (r.f() * 8.0) as i32,
                completed_deliveries: (r.f() * 30.0) as i32,
                strikes: 0,
                kyc_verified: r.f() < 0.5,
                suspended: r.f() < 0.02,
            },
        }
    }

    #[test]
    fn suggestions_equal_a_brute_force_ranking_and_never_include_a_failing_pair() {
        let mut r = Rng(5);
        let mut index = GridIndex::new();
        let mut all = Vec::new();
        for i in 0..3000 {
            let t = random_trip(&mut r, i);
            all.push(t.clone());
            index.upsert(t);
        }
        for k in 0..50 {
            let parcel = ParcelFacts {
                id: Uuid::from_u128(9_000_000 + k),
                sender_id: Uuid::from_u128(1_000_000 + k % 60),
                origin: (51.2 + r.f(), -1.0 + r.f()),
                destination: (40.6 + r.f() * 0.3, -74.0 + r.f() * 0.3),
                ready_from: now(),
                deliver_by: now() + Duration::hours(150 + (r.f() * 100.0) as i64),
                weight_grams: 1 + (r.f() * 3000.0) as i32,
                category: "books".into(),
                currency: "EUR".into(),
                declared_value: (r.f() * 80_000.0) as i64,
                max_reward: Some((r.f() * 10_000.0) as i64),
                open: true,
            };
            let got = best_trips(&index, &parcel, &rules(), now(), 20);
            let brute = matching::rank(
                all.iter()
                    .filter(|t| matching::check(&parcel, t, &rules(), now()).is_empty())
                    .map(|t| (t.id, matching::score(&parcel, t, &rules()), ()))
                    .collect(),
            );
            let want: Vec<Uuid> = brute.iter().take(20).map(|(id, _, _)| *id).collect();
            let ids: Vec<Uuid> = got.iter().map(|(id, _, _)| *id).collect();
            assert_eq!(ids, want, "parcel {k}");
            for (_, _, t) in &got {
                assert!(matching::check(&parcel, t, &rules(), now()).is_empty());
            }
        }
    }

    #[test]
    fn entries_move_between_cells_and_disappear_when_removed() {
        let mut r = Rng(1);
        let mut index = GridIndex::new();
        let mut t = random_trip(&mut r, 1);
        t.origin = (51.47, -0.46);
        index.upsert(t.clone());
        assert_eq!(index.near((51.47, -0.46), 10_000.0).count(), 1);
        t.origin = (48.85, 2.35);
        index.upsert(t.clone());
        assert_eq!(index.len(), 1);
        assert_eq!(index.near((51.47, -0.46), 10_000.0).count(), 0);
        assert_eq!(index.near((48.85, 2.35), 10_000.0).count(), 1);
        index.remove(&t.id);
        assert!(index.is_empty());
        assert!(index.cells.is_empty());
    }
}
