//! Search correctness against a brute-force filter, and keyset pagination under inserts.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::support::market::trip_body;
use crate::support::spawn_app;

/// A small deterministic generator (no extra dependency, same data every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let dlat = (b.0 - a.0).to_radians();
    let dlng = (b.1 - a.1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * h.sqrt().min(1.0).asin()
}

/// A seeded trip: id, origin, destination, departure, capacity, currency.
type Seeded = (
    String,
    (f64, f64),
    (f64, f64),
    DateTime<Utc>,
    i64,
    &'static str,
);
type Predicate = Box<dyn Fn(&Seeded) -> bool>;

const LHR: (f64, f64) = (51.4706, -0.46194);
const JFK: (f64, f64) = (40.63983, -73.77874);
const CDG: (f64, f64) = (49.01278, 2.55);

#[tokio::test]
async fn search_results_equal_a_brute_force_filter_over_random_trips() {
    let app = spawn_app().await;
    let traveler = app.register_user().await;
    let searcher = app.register_user().await;
    let mut rng = Lcg(42);
    let hubs = [LHR, JFK, CDG];
    let mut trips: Vec<Seeded> = Vec::new();
    for _ in 0..240 {
        let o = hubs[(rng.next() * 3.0) as usize % 3];
        let d = hubs[(rng.next() * 3.0) as usize % 3];
        // Up to ~1.2° away: some inside 50 km, many outside.
        let origin = (
            o.0 + (rng.next() - 0.5) * 1.6,
            o.1 + (rng.next() - 0.5) * 2.4,
        );
        let dest = (
            d.0 + (rng.next() - 0.5) * 1.6,
            d.1 + (rng.next() - 0.5) * 2.4,
        );
        if distance_m(origin, dest) < 2_000.0 {
            continue;
        }
        let hours = 2 + (rng.next() * 24.0 * 20.0) as i64;
        let capacity = 1 + (rng.next() * 20_000.0) as i64;
        let currency = if rng.next() < 0.7 { "EUR" } else { "USD" };
        let mut body = trip_body(
            json!({"label": "o", "lat": origin.0, "lng": origin.1, "country": "GB"}),
            json!({"label": "d", "lat": dest.0, "lng": dest.1, "country": "US"}),
            hours,
        );
        body["capacity_grams"] = json!(capacity);
        body["price_per_kg"]["currency"] = json!(currency);
        let trip = app.create_trip(&traveler, &body).await;
        let departure: DateTime<Utc> = trip["departure_at"].as_str().unwrap().parse().unwrap();
        trips.push((
            trip["id"].as_str().unwrap().to_owned(),
            origin,
            dest,
            departure,
            capacity,
            currency,
        ));
    }
    assert!(trips.len() > 200);

    let now = Utc::now();
    let from = now + Duration::days(3);
    let to = now + Duration::days(12);
    let searches: Vec<(String, Predicate)> = vec![
        (
            "origin=LHR&destination=JFK".into(),
            Box::new(|t| distance_m(t.1, LHR) <= 50_000.0 && distance_m(t.2, JFK) <= 50_000.0),
        ),
        (
            "origin=LHR&radius_km=80".into(),
            Box::new(|t| distance_m(t.1, LHR) <= 80_000.0),
        ),
        (
            format!("destination={},{}&radius_km=30", CDG.0, CDG.1),
            Box::new(|t| distance_m(t.2, CDG) <= 30_000.0),
        ),
        (
            format!(
                "origin=CDG&from={}&to={}",
                from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            Box::new(move |t| {
                distance_m(t.1, CDG) <= 50_000.0
                    && t.3 >= from.trunc_subsecs_secs()
                    && t.3 <= to.trunc_subsecs_secs()
            }),
        ),
        (
            "origin=JFK&min_available_grams=10000&currency=USD".into(),
            Box::new(|t| distance_m(t.1, JFK) <= 50_000.0 && t.4 >= 10_000 && t.5 == "USD"),
        ),
    ];
    for (query, keep) in searches {
        let found = app
            .collect_pages(&searcher, &format!("/api/trips?{query}"), 7)
            .await;
        let found_ids: Vec<String> = found
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        let unique: BTreeSet<&String> = found_ids.iter().collect();
        assert_eq!(
            unique.len(),
            found_ids.len(),
            "{query}: duplicates across pages"
        );
        let expected: BTreeSet<&String> = trips.iter().filter(|t| keep(t)).map(|t| &t.0).collect();
        assert_eq!(unique, expected, "{query}");
        assert!(
            !expected.is_empty() || query.contains("min_available"),
            "{query} should match something"
        );
        let departures: Vec<&str> = found
            .iter()
            .map(|t| t["departure_at"].as_str().unwrap())
            .collect();
        let mut sorted = departures.clone();
        sorted.sort();
        assert_eq!(departures.len(), sorted.len());
    }
}

trait TruncSecs {
    fn trunc_subsecs_secs(&self) -> DateTime<Utc>;
}

impl TruncSecs for DateTime<Utc> {
    fn trunc_subsecs_secs(&self) -> DateTime<Utc> {
        chrono::DurationRound::duration_trunc(*self, Duration::seconds(1)).unwrap()
    }
}

#[tokio::test]
async fn paging_yields_every_row_once_while_rows_are_inserted_between_pages() {
    let app = spawn_app().await;
    let traveler = app.register_user().await;
    let reader = app.register_user().await;
    let mut original = BTreeSet::new();
    for i in 0..30 {
        let trip = app
            .create_trip(
                &traveler,
                &trip_body(json!({"code": "LHR"}), json!({"code": "JFK"}), 10 + i * 3),
            )
            .await;
        original.insert(trip["id"].as_str().unwrap().to_owned());
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut url = "/api/trips?origin=LHR&limit=7".to_owned();
    let mut pages = 0;
    loop {
        let page: Value = app.get_as(&reader, &url).await.json().await.unwrap();
        for t in page["items"].as_array().unwrap() {
            *seen
                .entry(t["id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        pages += 1;
        // Inserts between pages: one departing before everything, one in the middle, one last.
        for hours in [5, 40, 200] {
            app.create_trip(
                &traveler,
                &trip_body(json!({"code": "LHR"}), json!({"code": "JFK"}), hours),
            )
            .await;
        }
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/api/trips?origin=LHR&limit=7&cursor={c}"),
            None => break,
        }
        assert!(pages < 50);
    }
    for id in &original {
        assert_eq!(seen.get(id), Some(&1), "{id} seen {:?} times", seen.get(id));
    }
    assert!(seen.values().all(|n| *n == 1), "no row twice");
}

#[tokio::test]
async fn cursors_are_tamper_checked_and_limits_clamped() {
    let app = spawn_app().await;
    let traveler = app.register_user().await;
    for i in 0..3 {
        app.create_trip(
            &traveler,
            &trip_body(json!({"code": "LHR"}), json!({"code": "JFK"}), 10 + i),
        )
        .await;
    }
    let page: Value = app
        .get_as(&traveler, "/api/trips?limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cursor = page["next_cursor"].as_str().unwrap();
    let mut tampered = cursor.to_owned();
    tampered.replace_range(2..3, if &cursor[2..3] == "A" { "B" } else { "A" });
    for (path, what) in [
        (format!("/api/trips?cursor={tampered}"), "tampered"),
        (format!("/api/parcels?cursor={cursor}"), "another listing's"),
        (
            format!("/api/trips?mine=true&cursor={cursor}"),
            "another order's",
        ),
        ("/api/trips?cursor=garbage".to_owned(), "garbage"),
    ] {
        let res = app.get_as(&traveler, &path).await;
        assert_eq!(res.status(), 400, "{what}");
        assert_eq!(
            res.json::<Value>().await.unwrap()["code"],
            "invalid_cursor",
            "{what}"
        );
    }
    let page: Value = app
        .get_as(&traveler, "/api/trips?limit=100000")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let page: Value = app
        .get_as(&traveler, "/api/trips?limit=0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "clamped up to 1"
    );
    let res = app
        .get_as(&traveler, "/api/trips?radius_km=9999&origin=LHR")
        .await;
    assert_eq!(res.status(), 422);
    let res = app.get_as(&traveler, "/api/trips?orgin=LHR").await;
    assert_eq!(res.status(), 400, "unknown query parameters are refused");
}
