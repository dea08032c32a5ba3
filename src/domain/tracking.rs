//! Live-tracking rules, pure: the jitter filter a position must pass, the smoothed ground
//! speed, the ETA and the destination's geofence.
//!
//! **ETA.** Remaining distance = great circle from the latest accepted position to the parcel's
//! destination. Ground speed = an exponentially weighted average of the speeds between
//! consecutive accepted positions, each segment weighted `1 − e^(−Δt/τ)` with τ = 120 s (a long
//! gap — a flight with the phone off — counts almost alone; a burst of close fixes moves it
//! little). While the parcel moves (smoothed speed ≥ 0.5 m/s) the ETA is the latest position's
//! time + remaining / speed. Before it has moved (no two accepted positions yet) or while it is
//! stopped, the ETA is the trip's scheduled arrival, or, once that has passed, now + remaining
//! at 50 km/h.

use chrono::{DateTime, Duration, Utc};

use super::geo::{distance_m, LatLng};

/// Smoothing time constant of the ground speed, seconds.
const SPEED_TAU_SECS: f64 = 120.0;
/// Below this smoothed speed the parcel counts as stopped.
pub const MIN_MOVING_MPS: f64 = 0.5;
/// The speed assumed for a parcel past its scheduled arrival that is not moving (50 km/h).
pub const FALLBACK_MPS: f64 = 50.0 / 3.6;

/// One position report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub at: LatLng,
    pub accuracy_m: f32,
    pub recorded_at: DateTime<Utc>,
}

/// The jitter filter's thresholds (`[tracking]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct FilterRules {
    /// A fix less accurate than this (its accuracy radius is larger) is dropped.
    pub max_accuracy_m: f64,
    /// A fix closer than this to the latest accepted one …
    pub min_move_m: f64,
    /// … and taken less than this after it is dropped (a parked phone's wobble).
    pub min_interval_secs: i64,
    /// A fix from further in the future than this (clock skew allowance) is dropped.
    pub max_future_secs: i64,
    /// A fix implying a faster move than this from the latest accepted one is dropped.
    pub max_speed_mps: f64,
}

/// Why a fix was not taken; not an error of the client's (GPS jitter happens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    Inaccurate,
    TooClose,
    OutOfOrder,
    Future,
    TooFast,
    BeforePickup,
}

impl Dropped {
    pub fn code(self) -> &'static str {
        match self {
            Self::Inaccurate => "inaccurate",
            Self::TooClose => "too_close",
            Self::OutOfOrder => "out_of_order",
            Self::Future => "future",
            Self::TooFast => "too_fast",
            Self::BeforePickup => "before_pickup",
        }
    }
}

/// What the filter and the ETA remember of a parcel's movement.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Motion {
    pub latest: Option<Fix>,
    /// Smoothed ground speed, m/s (`None` until two fixes were accepted).
    pub speed_mps: Option<f64>,
}

impl Motion {
    /// Whether `fix` passes the filter at `now` (`since`: the pickup time, before which no
    /// position belongs to the trail).
    pub fn judge(
        &self,
        fix: &Fix,
        now: DateTime<Utc>,
        since: Option<DateTime<Utc>>,
        rules: &FilterRules,
    ) -> Result<(), Dropped> {
        if fix.recorded_at > now + Duration::seconds(rules.max_future_secs) {
            return Err(Dropped::Future);
        }
        // The same clock-skew allowance as for the future.
        let skew = Duration::seconds(rules.max_future_secs);
        if since.is_some_and(|since| fix.recorded_at < since - skew) {
            return Err(Dropped::BeforePickup);
        }
        if f64::from(fix.accuracy_m) > rules.max_accuracy_m {
            return Err(Dropped::Inaccurate);
        }
        let Some(latest) = self.latest else {
            return Ok(());
        };
        if fix.recorded_at <= latest.recorded_at {
            return Err(Dropped::OutOfOrder);
        }
        let moved = distance_m(latest.at, fix.at);
        let secs = seconds_between(latest.recorded_at, fix.recorded_at);
        if moved < rules.min_move_m && secs < rules.min_interval_secs as f64 {
            return Err(Dropped::TooClose);
        }
        if moved / secs > rules.max_speed_mps {
            return Err(Dropped::TooFast);
        }
        Ok(())
    }

    /// Takes an accepted fix: it becomes the latest and updates the smoothed speed.
    pub fn accept(&mut self, fix: Fix) {
        if let Some(latest) = self.latest {
            let secs = seconds_between(latest.recorded_at, fix.recorded_at);
            if secs > 0.0 {
                let v = distance_m(latest.at, fix.at) / secs;
                let weight = 1.0 - (-secs / SPEED_TAU_SECS).exp();
                self.speed_mps = Some(match self.speed_mps {
                    Some(s) => s + weight * (v - s),
                    None => v,
                });
            }
        }
        self.latest = Some(fix);
    }

    /// A fix accepted elsewhere (another node's tracker), with the speed it computed: taken if
    /// it is newer than ours.
    pub fn observe(&mut self, fix: Fix, speed_mps: Option<f64>) {
        if self
            .latest
            .is_none_or(|latest| fix.recorded_at > latest.recorded_at)
        {
            self.latest = Some(fix);
            self.speed_mps = speed_mps.or(self.speed_mps);
        }
    }

    /// The ETA (see the module's notes).
    pub fn eta(
        &self,
        destination: LatLng,
        scheduled: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> DateTime<Utc> {
        let Some(latest) = self.latest else {
            return scheduled;
        };
        let remaining = distance_m(latest.at, destination);
        match self.speed_mps.filter(|s| *s >= MIN_MOVING_MPS) {
            Some(speed) => latest.recorded_at + secs(remaining / speed),
            None if scheduled > now => scheduled,
            None => now + secs(remaining / FALLBACK_MPS),
        }
    }
}

/// Why a parcel's tracker refuses a position or a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a party of the match (or no such match): 404.
    NotFound,
    /// The sender: only the traveler reports positions.
    NotTraveler,
    NotInTransit(String),
    /// The trail writer's queue (or the tracker's watcher list) is full.
    Overloaded,
}

/// After these statuses the parcel moves no more: live views end.
pub fn moves_no_more(status: &str) -> bool {
    matches!(
        status,
        "delivered" | "completed" | "cancelled" | "expired" | "declined"
    )
}

/// Whether `fix` is within `radius_m` of the destination.
pub fn inside(fix: &Fix, destination: LatLng, radius_m: f64) -> bool {
    distance_m(fix.at, destination) <= radius_m
}

fn seconds_between(a: DateTime<Utc>, b: DateTime<Utc>) -> f64 {
    (b - a).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6
}

fn secs(s: f64) -> Duration {
    // Whole seconds: an ETA is no more precise than that; capped at ten years.
    Duration::seconds(s.clamp(0.0, 315_360_000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: FilterRules = FilterRules {
        max_accuracy_m: 100.0,
        min_move_m: 10.0,
        min_interval_secs: 30,
        max_future_secs: 30,
        max_speed_mps: 350.0,
    };

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn fix(lat: f64, lng: f64, after_secs: i64) -> Fix {
        Fix {
            at: LatLng::clamped(lat, lng),
            accuracy_m: 10.0,
            recorded_at: t0() + Duration::seconds(after_secs),
        }
    }

    /// About `m` metres north of (51.5, 0).
    fn north(m: f64, after_secs: i64) -> Fix {
        fix(51.5 + m / 111_195.0, 0.0, after_secs)
    }

    #[test]
    fn the_filter_drops_jitter_and_keeps_real_moves() {
        let now = t0() + Duration::seconds(600);
        let mut motion = Motion::default();
        assert_eq!(
            motion.judge(&north(0.0, 0), now, Some(t0()), &RULES),
            Ok(())
        );
        motion.accept(north(0.0, 0));

        let mut blurry = north(200.0, 60);
        blurry.accuracy_m = 150.0;
        let cases = [
            (blurry, Dropped::Inaccurate),
            (north(5.0, 10), Dropped::TooClose),
            (north(200.0, 0), Dropped::OutOfOrder),
            (north(200.0, -5), Dropped::OutOfOrder),
            (north(200.0, 700), Dropped::Future),
            (north(50_000.0, 60), Dropped::TooFast),
            (north(200.0, -120), Dropped::BeforePickup),
        ];
        for (f, why) in cases {
            let since = Some(
                t0() - Duration::seconds(if why == Dropped::BeforePickup {
                    60
                } else {
                    600
                }),
            );
            assert_eq!(motion.judge(&f, now, since, &RULES), Err(why), "{why:?}");
        }
        // A small move after long enough is a real (slow) move; a large one soon is too.
        assert_eq!(motion.judge(&north(5.0, 45), now, None, &RULES), Ok(()));
        assert_eq!(motion.judge(&north(50.0, 5), now, None, &RULES), Ok(()));
        // 30 s of allowed clock skew.
        assert_eq!(motion.judge(&north(500.0, 620), now, None, &RULES), Ok(()));
    }

    #[test]
    fn speed_is_smoothed_and_the_eta_follows_it() {
        let destination = LatLng::clamped(51.5 + 100_000.0 / 111_195.0, 0.0); // 100 km north
        let scheduled = t0() + Duration::hours(5);
        let mut motion = Motion::default();
        // Before movement: the scheduled arrival.
        assert_eq!(motion.eta(destination, scheduled, t0()), scheduled);
        motion.accept(north(0.0, 0));
        assert_eq!(motion.eta(destination, scheduled, t0()), scheduled);

        // 20 m/s for ten minutes.
        for i in 1..=60 {
            motion.accept(north(200.0 * i as f64, 10 * i));
        }
        let speed = motion.speed_mps.unwrap();
        assert!((speed - 20.0).abs() < 0.01, "{speed}");
        let now = t0() + Duration::seconds(600);
        let eta = motion.eta(destination, scheduled, now);
        // 88 km left at 20 m/s: 4 400 s after the latest fix.
        let left = (eta - now).num_seconds();
        assert!((4_390..=4_410).contains(&left), "{left}");

        // One fast segment moves the average only partly (10 s of 120 s).
        motion.accept(north(12_000.0 + 400.0, 610));
        let s = motion.speed_mps.unwrap();
        assert!(s > 20.0 && s < 22.0, "{s}");

        // Stopped (smoothed speed decays below 0.5 m/s): back to the schedule, or once the
        // schedule has passed, the fallback speed over what is left.
        let mut stopped = motion;
        for i in 1..=40 {
            stopped.accept(north(12_400.0 + i as f64, 610 + 60 * i));
        }
        assert!(stopped.speed_mps.unwrap() < MIN_MOVING_MPS);
        let later = t0() + Duration::seconds(3_000);
        assert_eq!(stopped.eta(destination, scheduled, later), scheduled);
        let late = scheduled + Duration::hours(1);
        let left = (stopped.eta(destination, scheduled, late) - late).num_seconds();
        let expected = ((100_000.0 - 12_440.0) / FALLBACK_MPS) as i64;
        assert!((left - expected).abs() <= 5, "{left} vs {expected}");
    }

    #[test]
    fn another_nodes_fix_is_taken_only_when_newer() {
        let mut motion = Motion::default();
        motion.accept(north(0.0, 10));
        motion.observe(north(100.0, 5), Some(3.0));
        assert_eq!(motion.latest, Some(north(0.0, 10)));
        motion.observe(north(100.0, 20), Some(3.0));
        assert_eq!(
            (motion.latest, motion.speed_mps),
            (Some(north(100.0, 20)), Some(3.0))
        );
    }

    #[test]
    fn the_geofence_is_a_radius_around_the_destination() {
        let destination = LatLng::clamped(51.5, 0.0);
        assert!(inside(&north(499.0, 0), destination, 500.0));
        assert!(!inside(&north(501.0, 0), destination, 500.0));
    }
}
