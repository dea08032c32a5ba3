//! Matching rules, pure: the facts about a parcel and a trip, the hard constraints (every
//! failure as a stable code), the explainable score, the price and fee arithmetic, and the
//! match state machine.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::geo::{distance_m, LatLng};

/// What matching needs to know about a parcel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParcelFacts {
    pub id: Uuid,
    pub sender_id: Uuid,
    pub origin: (f64, f64),
    pub destination: (f64, f64),
    pub ready_from: DateTime<Utc>,
    pub deliver_by: DateTime<Utc>,
    pub weight_grams: i32,
    pub category: String,
    pub currency: String,
    /// Minor units, same currency.
    pub declared_value: i64,
    pub max_reward: Option<i64>,
    pub open: bool,
}

/// What matching needs to know about a traveler.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct TravelerStats {
    pub rating_sum: i32,
    pub rating_count: i32,
    pub completed_deliveries: i32,
    /// Matches the traveler cancelled after payment (reliability strikes).
    pub strikes: i32,
    pub kyc_verified: bool,
    pub suspended: bool,
}

/// What matching needs to know about a trip (with its traveler's stats).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripFacts {
    pub id: Uuid,
    pub traveler_id: Uuid,
    pub origin: (f64, f64),
    pub destination: (f64, f64),
    pub departure_at: DateTime<Utc>,
    pub arrival_at: DateTime<Utc>,
    pub available_grams: i32,
    pub accepted_categories: Vec<String>,
    pub currency: String,
    /// Minor units per kilogram.
    pub price_per_kg: i64,
    pub open: bool,
    pub traveler: TravelerStats,
}

/// The configured rules: distances, weights of the factors, the KYC threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub max_origin_m: f64,
    pub max_destination_m: f64,
    pub weights: Weights,
    /// Declared values above this many major units need a KYC-verified traveler.
    pub kyc_above_major: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Weights {
    pub route: f64,
    pub trust: f64,
    pub price: f64,
    pub timeline: f64,
    pub history: f64,
}

impl Weights {
    pub const PRODUCT: Self = Self {
        route: 0.40,
        trust: 0.25,
        price: 0.20,
        timeline: 0.10,
        history: 0.05,
    };

    /// Non-negative and summing to 1 (within rounding), so a score stays in [0, 1].
    pub fn is_valid(&self) -> bool {
        let all = [
            self.route,
            self.trust,
            self.price,
            self.timeline,
            self.history,
        ];
        all.iter().all(|w| w.is_finite() && *w >= 0.0)
            && (all.iter().sum::<f64>() - 1.0).abs() < 1e-9
    }
}

/// Why a trip cannot carry a parcel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    OriginTooFar,
    DestinationTooFar,
    DepartsTooEarly,
    ArrivesTooLate,
    AlreadyDeparted,
    InsufficientCapacity,
    CategoryNotAccepted,
    CurrencyMismatch,
    TripNotOpen,
    ParcelNotOpen,
    OwnTrip,
    TravelerSuspended,
    KycRequired,
}

impl Failure {
    pub fn code(&self) -> &'static str {
        match self {
            Self::OriginTooFar => "origin_too_far",
            Self::DestinationTooFar => "destination_too_far",
            Self::DepartsTooEarly => "departs_too_early",
            Self::ArrivesTooLate => "arrives_too_late",
            Self::AlreadyDeparted => "already_departed",
            Self::InsufficientCapacity => "insufficient_capacity",
            Self::CategoryNotAccepted => "category_not_accepted",
            Self::CurrencyMismatch => "currency_mismatch",
            Self::TripNotOpen => "trip_not_open",
            Self::ParcelNotOpen => "parcel_not_open",
            Self::OwnTrip => "own_trip",
            Self::TravelerSuspended => "traveler_suspended",
            Self::KycRequired => "kyc_required",
        }
    }
}

fn point((lat, lng): (f64, f64)) -> LatLng {
    LatLng::clamped(lat, lng)
}

/// Every hard constraint the pair fails (empty: the trip is a candidate for the parcel).
pub fn check(
    parcel: &ParcelFacts,
    trip: &TripFacts,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Vec<Failure> {
    let mut failed = Vec::new();
    let mut fail = |cond: bool, f: Failure| {
        if cond {
            failed.push(f);
        }
    };
    fail(
        distance_m(point(parcel.origin), point(trip.origin)) > rules.max_origin_m,
        Failure::OriginTooFar,
    );
    fail(
        distance_m(point(parcel.destination), point(trip.destination)) > rules.max_destination_m,
        Failure::DestinationTooFar,
    );
    fail(
        trip.departure_at < parcel.ready_from,
        Failure::DepartsTooEarly,
    );
    fail(trip.arrival_at > parcel.deliver_by, Failure::ArrivesTooLate);
    fail(trip.departure_at <= now, Failure::AlreadyDeparted);
    fail(
        trip.available_grams < parcel.weight_grams,
        Failure::InsufficientCapacity,
    );
    fail(
        !trip.accepted_categories.contains(&parcel.category),
        Failure::CategoryNotAccepted,
    );
    fail(trip.currency != parcel.currency, Failure::CurrencyMismatch);
    fail(!trip.open, Failure::TripNotOpen);
    fail(!parcel.open, Failure::ParcelNotOpen);
    fail(trip.traveler_id == parcel.sender_id, Failure::OwnTrip);
    fail(trip.traveler.suspended, Failure::TravelerSuspended);
    let kyc_threshold = rules
        .kyc_above_major
        .saturating_mul(minor_per_major(&parcel.currency));
    fail(
        parcel.declared_value > kyc_threshold && !trip.traveler.kyc_verified,
        Failure::KycRequired,
    );
    failed
}

fn minor_per_major(currency: &str) -> i64 {
    if currency == "JPY" {
        1
    } else {
        100
    }
}

/// Each factor in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Factors {
    pub route: f64,
    pub trust: f64,
    pub price: f64,
    pub timeline: f64,
    pub history: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Score {
    pub score: f64,
    pub factors: Factors,
}

/// The price of carrying `weight_grams` at `price_per_kg` (minor units), rounded half up; `None`
/// on overflow.
pub fn price_for(price_per_kg: i64, weight_grams: i32) -> Option<i64> {
    let product = i128::from(price_per_kg).checked_mul(i128::from(weight_grams))?;
    i64::try_from((product + 500) / 1000).ok()
}

/// The platform fee on `price`: `price × bps / 10 000`, rounded half up.
pub fn fee_for(price: i64, fee_bps: u32) -> Option<i64> {
    let product = i128::from(price).checked_mul(i128::from(fee_bps))?;
    i64::try_from((product + 5_000) / 10_000).ok()
}

const SLACK_FOR_FULL_TIMELINE_HOURS: f64 = 72.0;
const DELIVERIES_FOR_FULL_TRUST: f64 = 20.0;
/// Prior for the rating (in [0, 1]) and its weight in virtual ratings.
const RATING_PRIOR: f64 = 0.6;
const RATING_PRIOR_WEIGHT: f64 = 5.0;

fn unit(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// The explainable score of a candidate pair (call after `check` passes).
pub fn score(parcel: &ParcelFacts, trip: &TripFacts, rules: &Rules) -> Score {
    let d_origin = distance_m(point(parcel.origin), point(trip.origin));
    let d_destination = distance_m(point(parcel.destination), point(trip.destination));
    let route = unit(
        1.0 - 0.5 * (d_origin / rules.max_origin_m.max(1.0))
            - 0.5 * (d_destination / rules.max_destination_m.max(1.0)),
    );

    let t = &trip.traveler;
    let n = f64::from(t.rating_count.max(0));
    let mean = if t.rating_count > 0 {
        f64::from(t.rating_sum) / n / 5.0
    } else {
        RATING_PRIOR
    };
    let rating = (mean * n + RATING_PRIOR * RATING_PRIOR_WEIGHT) / (n + RATING_PRIOR_WEIGHT);
    let deliveries =
        (f64::from(t.completed_deliveries.max(0)) / DELIVERIES_FOR_FULL_TRUST).min(1.0);
    let trust =
        unit(0.5 * rating + 0.3 * deliveries + 0.2 * if t.kyc_verified { 1.0 } else { 0.0 });

    let price = match (
        parcel.max_reward,
        price_for(trip.price_per_kg, parcel.weight_grams),
    ) {
        (Some(max), Some(p)) if max > 0 => {
            let ratio = p as f64 / max as f64;
            unit(if ratio <= 1.0 {
                1.0 - 0.5 * ratio
            } else {
                0.5 - 0.5 * (ratio - 1.0)
            })
        }
        (Some(_), Some(0)) => 1.0,
        (Some(_), _) => 0.0,
        (None, _) => 0.5,
    };

    let slack_hours = (parcel.deliver_by - trip.arrival_at).num_minutes() as f64 / 60.0;
    let timeline = unit(slack_hours / SLACK_FOR_FULL_TIMELINE_HOURS);

    let finished = f64::from(t.completed_deliveries.max(0));
    let history = if finished + f64::from(t.strikes.max(0)) > 0.0 {
        unit(finished / (finished + f64::from(t.strikes.max(0))))
    } else {
        0.5
    };

    let w = rules.weights;
    let total = w.route * route
        + w.trust * trust
        + w.price * price
        + w.timeline * timeline
        + w.history * history;
    Score {
        score: unit(total),
        factors: Factors {
            route,
            trust,
            price,
            timeline,
            history,
        },
    }
}

/// Best first; equal scores by id, so the order is total and deterministic.
pub fn rank<T>(mut scored: Vec<(Uuid, Score, T)>) -> Vec<(Uuid, Score, T)> {
    scored.sort_by(|a, b| b.1.score.total_cmp(&a.1.score).then(a.0.cmp(&b.0)));
    scored
}

/// A match's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchStatus {
    Requested,
    Accepted,
    Declined,
    Cancelled,
    Expired,
    Paid,
    InTransit,
    Delivered,
    Completed,
    Disputed,
}

/// What happens to a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchAction {
    Accept,
    Decline,
    Cancel,
    Expire,
    Pay,
    Pickup,
    Deliver,
    Complete,
    Dispute,
    ResolveRelease,
    ResolveRefund,
}

pub const ALL_STATUSES: [MatchStatus; 10] = [
    MatchStatus::Requested,
    MatchStatus::Accepted,
    MatchStatus::Declined,
    MatchStatus::Cancelled,
    MatchStatus::Expired,
    MatchStatus::Paid,
    MatchStatus::InTransit,
    MatchStatus::Delivered,
    MatchStatus::Completed,
    MatchStatus::Disputed,
];

impl MatchStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Accepted => "accepted",
            Self::Declined => "declined",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Paid => "paid",
            Self::InTransit => "in_transit",
            Self::Delivered => "delivered",
            Self::Completed => "completed",
            Self::Disputed => "disputed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        ALL_STATUSES.iter().copied().find(|m| m.as_str() == s)
    }

    /// No further transition is possible.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Declined | Self::Cancelled | Self::Expired | Self::Completed
        )
    }

    /// Capacity on the trip is reserved in these states.
    pub fn holds_capacity(&self) -> bool {
        matches!(
            self,
            Self::Accepted | Self::Paid | Self::InTransit | Self::Delivered | Self::Disputed
        )
    }

    /// The one place a match changes state.
    pub fn transition(self, action: MatchAction) -> Result<MatchStatus, InvalidTransition> {
        use MatchAction as A;
        use MatchStatus as S;
        let next = match (self, action) {
            (S::Requested, A::Accept) => S::Accepted,
            (S::Requested, A::Decline) => S::Declined,
            (S::Requested | S::Accepted, A::Cancel) => S::Cancelled,
            (S::Requested | S::Accepted, A::Expire) => S::Expired,
            (S::Accepted, A::Pay) => S::Paid,
            (S::Paid, A::Cancel) => S::Cancelled,
            (S::Paid, A::Pickup) => S::InTransit,
            (S::InTransit, A::Deliver) => S::Delivered,
            (S::Delivered, A::Complete) => S::Completed,
            (S::Paid | S::InTransit | S::Delivered, A::Dispute) => S::Disputed,
            (S::Disputed, A::ResolveRelease) => S::Completed,
            (S::Disputed, A::ResolveRefund) => S::Cancelled,
            (from, action) => return Err(InvalidTransition { from, action }),
        };
        Ok(next)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTransition {
    pub from: MatchStatus,
    pub action: MatchAction,
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn rules() -> Rules {
        Rules {
            max_origin_m: 50_000.0,
            max_destination_m: 50_000.0,
            weights: Weights::PRODUCT,
            kyc_above_major: 500,
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn parcel() -> ParcelFacts {
        ParcelFacts {
            id: Uuid::from_u128(1),
            sender_id: Uuid::from_u128(10),
            origin: (51.47, -0.46),
            destination: (40.64, -73.78),
            ready_from: now(),
            deliver_by: now() + Duration::days(5),
            weight_grams: 1000,
            category: "books".into(),
            currency: "EUR".into(),
            declared_value: 5_000,
            max_reward: Some(3_000),
            open: true,
        }
    }

    fn trip() -> TripFacts {
        TripFacts {
            id: Uuid::from_u128(2),
            traveler_id: Uuid::from_u128(20),
            origin: (51.5, -0.3),
            destination: (40.7, -73.9),
            departure_at: now() + Duration::days(1),
            arrival_at: now() + Duration::days(1) + Duration::hours(8),
            available_grams: 5000,
            accepted_categories: vec!["books".into(), "documents".into()],
            currency: "EUR".into(),
            price_per_kg: 1500,
            open: true,
            traveler: TravelerStats {
                rating_sum: 18,
                rating_count: 4,
                completed_deliveries: 4,
                strikes: 0,
                kyc_verified: true,
                suspended: false,
            },
        }
    }

    #[test]
    fn a_good_pair_passes_and_every_failure_has_its_code() {
        assert!(check(&parcel(), &trip(), &rules(), now()).is_empty());
        let mut t = trip();
        t.origin = (52.5, 13.4);
        t.destination = (35.0, 139.0);
        t.departure_at = now() - Duration::hours(1);
        t.arrival_at = now() + Duration::days(9);
        t.available_grams = 10;
        t.accepted_categories = vec!["clothing".into()];
        t.currency = "USD".into();
        t.open = false;
        t.traveler_id = parcel().sender_id;
        t.traveler.suspended = true;
        t.traveler.kyc_verified = false;
        let mut p = parcel();
        p.open = false;
        p.declared_value = 60_000;
        let codes: Vec<&str> = check(&p, &t, &rules(), now())
            .iter()
            .map(Failure::code)
            .collect();
        assert_eq!(
            codes,
            [
                "origin_too_far",
                "destination_too_far",
                "departs_too_early",
                "arrives_too_late",
                "already_departed",
                "insufficient_capacity",
                "category_not_accepted",
                "currency_mismatch",
                "trip_not_open",
                "parcel_not_open",
                "own_trip",
                "traveler_suspended",
                "kyc_required",
            ]
        );
    }

    fn random_pair(r: &mut Rng) -> (ParcelFacts, TripFacts) {
        let mut p = parcel();
        let mut t = trip();
        p.origin = (51.0 + r.f(), -1.0 + r.f());
        t.origin = (51.0 + r.f(), -1.0 + r.f());
        t.destination = (40.5 + r.f() * 0.4, -74.0 + r.f() * 0.4);
        p.weight_grams = 1 + (r.f() * 5000.0) as i32;
        p.max_reward = if r.f() < 0.2 {
            None
        } else {
            Some((r.f() * 20_000.0) as i64)
        };
        t.price_per_kg = (r.f() * 5000.0) as i64;
        t.arrival_at = now() + Duration::hours((r.f() * 200.0) as i64);
        t.traveler = TravelerStats {
            rating_sum: (r.f() * 50.0) as i32,
            rating_count: (r.f() * 10.0) as i32,
            completed_deliveries: (r.f() * 40.0) as i32,
            strikes: (r.f() * 3.0) as i32,
            kyc_verified: r.f() < 0.5,
            suspended: false,
        };
        (p, t)
    }

    #[test]
    fn scores_and_factors_stay_in_unit_range_and_are_deterministic() {
        let mut r = Rng(9);
        for _ in 0..20_000 {
            let (p, t) = random_pair(&mut r);
            let s = score(&p, &t, &rules());
            let f = s.factors;
            for v in [s.score, f.route, f.trust, f.price, f.timeline, f.history] {
                assert!((0.0..=1.0).contains(&v), "{s:?}");
            }
            assert_eq!(s, score(&p, &t, &rules()));
        }
    }

    #[test]
    fn moving_the_trip_origin_closer_never_lowers_the_route_factor() {
        let mut r = Rng(11);
        for _ in 0..20_000 {
            let (p, mut t) = random_pair(&mut r);
            let before = score(&p, &t, &rules()).factors.route;
            let k = r.f();
            t.origin = (
                t.origin.0 + (p.origin.0 - t.origin.0) * k,
                t.origin.1 + (p.origin.1 - t.origin.1) * k,
            );
            let after = score(&p, &t, &rules()).factors.route;
            assert!(after >= before - 1e-12, "{before} -> {after}");
        }
    }

    #[test]
    fn ranking_is_by_score_then_id() {
        let s = |v| Score {
            score: v,
            factors: Factors {
                route: v,
                trust: v,
                price: v,
                timeline: v,
                history: v,
            },
        };
        let ranked = rank(vec![
            (Uuid::from_u128(3), s(0.5), ()),
            (Uuid::from_u128(1), s(0.5), ()),
            (Uuid::from_u128(2), s(0.9), ()),
        ]);
        let ids: Vec<u128> = ranked.iter().map(|(id, _, _)| id.as_u128()).collect();
        assert_eq!(ids, [2, 1, 3]);
    }

    #[test]
    fn price_and_fee_round_half_up_in_integers() {
        assert_eq!(price_for(1500, 1000), Some(1500));
        assert_eq!(price_for(1500, 1250), Some(1875));
        assert_eq!(price_for(1, 500), Some(1), "0.5 minor units round up");
        assert_eq!(price_for(1, 499), Some(0));
        assert_eq!(fee_for(1875, 1500), Some(281), "281.25 → 281");
        assert_eq!(fee_for(1870, 1500), Some(281), "280.5 → 281");
        assert_eq!(price_for(i64::MAX, i32::MAX), None);
    }

    #[test]
    fn the_product_weights_are_valid() {
        assert!(Weights::PRODUCT.is_valid());
        assert!(!Weights {
            route: 0.5,
            ..Weights::PRODUCT
        }
        .is_valid());
    }

    #[test]
    fn every_legal_transition_and_no_other() {
        use MatchAction as A;
        use MatchStatus as S;
        let actions = [
            A::Accept,
            A::Decline,
            A::Cancel,
            A::Expire,
            A::Pay,
            A::Pickup,
            A::Deliver,
            A::Complete,
            A::Dispute,
            A::ResolveRelease,
            A::ResolveRefund,
        ];
        let legal = [
            (S::Requested, A::Accept, S::Accepted),
            (S::Requested, A::Decline, S::Declined),
            (S::Requested, A::Cancel, S::Cancelled),
            (S::Requested, A::Expire, S::Expired),
            (S::Accepted, A::Cancel, S::Cancelled),
            (S::Accepted, A::Expire, S::Expired),
            (S::Accepted, A::Pay, S::Paid),
            (S::Paid, A::Cancel, S::Cancelled),
            (S::Paid, A::Pickup, S::InTransit),
            (S::Paid, A::Dispute, S::Disputed),
            (S::InTransit, A::Deliver, S::Delivered),
            (S::InTransit, A::Dispute, S::Disputed),
            (S::Delivered, A::Complete, S::Completed),
            (S::Delivered, A::Dispute, S::Disputed),
            (S::Disputed, A::ResolveRelease, S::Completed),
            (S::Disputed, A::ResolveRefund, S::Cancelled),
        ];
        for from in ALL_STATUSES {
            for action in actions {
                let expected = legal
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|(_, _, to)| *to);
                match expected {
                    Some(to) => assert_eq!(from.transition(action), Ok(to)),
                    None => assert_eq!(
                        from.transition(action),
                        Err(InvalidTransition { from, action })
                    ),
                }
            }
            if from.is_terminal() {
                assert!(
                    actions.iter().all(|a| from.transition(*a).is_err()),
                    "{from:?} is terminal"
                );
            }
        }
    }
}
