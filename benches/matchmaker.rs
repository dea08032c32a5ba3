//! Matchmaker benchmarks: suggestions for one new parcel against 100 000 open trips, pairs
//! checked and scored per second, and building the index of 100 000 trips.
//!
//! `cargo bench --bench matchmaker` (criterion means), plus a latency distribution over 10 000
//! suggestion queries printed as p50/p99 (criterion reports means and intervals, not tails).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use airbar::domain::match_index::{best_trips, GridIndex};
use airbar::domain::matching::{self, ParcelFacts, Rules, TravelerStats, TripFacts, Weights};
use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use uuid::Uuid;

const HUBS: [(f64, f64); 12] = [
    (51.47, -0.46),
    (40.64, -73.78),
    (49.01, 2.55),
    (25.25, 55.36),
    (1.36, 103.99),
    (35.55, 139.78),
    (33.94, -118.41),
    (52.31, 4.76),
    (50.03, 8.57),
    (41.98, -87.90),
    (-33.94, 151.18),
    (19.09, 72.87),
];

struct Rng(u64);

impl Rng {
    fn f(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn hub(&mut self) -> (f64, f64) {
        let h = HUBS[(self.f() * 12.0) as usize % 12];
        (h.0 + (self.f() - 0.5) * 3.0, h.1 + (self.f() - 0.5) * 3.0)
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

fn trips(n: u128) -> Vec<TripFacts> {
    let mut r = Rng(1);
    (0..n)
        .map(|i| {
            let dep = now() + chrono::Duration::hours(1 + (r.f() * 24.0 * 60.0) as i64);
            TripFacts {
                id: Uuid::from_u128(i + 1),
                traveler_id: Uuid::from_u128(1_000_000 + i % 5_000),
                origin: r.hub(),
                destination: r.hub(),
                departure_at: dep,
                arrival_at: dep + chrono::Duration::hours(9),
                available_grams: (r.f() * 20_000.0) as i32,
                accepted_categories: vec!["documents".into(), "books".into(), "clothing".into()],
                currency: "EUR".into(),
                price_per_kg: (r.f() * 3_000.0) as i64,
                open: true,
                traveler: TravelerStats {
                    rating_sum: (r.f() * 50.0) as i32,
                    rating_count: (r.f() * 10.0) as i32,
                    completed_deliveries: (r.f() * 30.0) as i32,
                    strikes: 0,
                    kyc_verified: r.f() < 0.5,
                    suspended: false,
                },
            }
        })
        .collect()
}

fn parcels(n: u128) -> Vec<ParcelFacts> {
    let mut r = Rng(2);
    (0..n)
        .map(|i| ParcelFacts {
            id: Uuid::from_u128(10_000_000 + i),
            sender_id: Uuid::from_u128(20_000_000 + i),
            origin: r.hub(),
            destination: r.hub(),
            ready_from: now(),
            deliver_by: now() + chrono::Duration::days(40),
            weight_grams: 1 + (r.f() * 3_000.0) as i32,
            category: "books".into(),
            currency: "EUR".into(),
            declared_value: (r.f() * 40_000.0) as i64,
            max_reward: Some((r.f() * 8_000.0) as i64),
            open: true,
        })
        .collect()
}

fn index_of(trips: &[TripFacts]) -> GridIndex<TripFacts> {
    let mut index = GridIndex::new();
    for t in trips {
        index.upsert(t.clone());
    }
    index
}

fn bench(c: &mut Criterion) {
    let trips = trips(100_000);
    let index = index_of(&trips);
    let parcels = parcels(1_000);

    c.bench_function("suggest 20 trips for a new parcel (100k open trips)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % parcels.len();
            black_box(best_trips(&index, &parcels[i], &rules(), now(), 20))
        })
    });

    let mut group = c.benchmark_group("score");
    group.throughput(Throughput::Elements(1));
    group.bench_function("check + score one pair", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % parcels.len();
            let (p, t) = (&parcels[i], &trips[i * 97 % trips.len()]);
            black_box((
                matching::check(p, t, &rules(), now()),
                matching::score(p, t, &rules()),
            ))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("index");
    group.sample_size(10);
    group.bench_function("build the index of 100k trips", |b| {
        b.iter(|| black_box(index_of(&trips)))
    });
    group.finish();

    // Tail latency of suggestions, which criterion does not report.
    let mut samples: Vec<Duration> = Vec::with_capacity(10_000);
    for k in 0..10_000 {
        let p = &parcels[k % parcels.len()];
        let start = Instant::now();
        black_box(best_trips(&index, p, &rules(), now(), 20));
        samples.push(start.elapsed());
    }
    samples.sort();
    let pct = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    println!(
        "suggestions over 100k trips, 10 000 queries: p50 {:?}, p99 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        samples[samples.len() - 1]
    );
    let pairs = 200_000;
    let start = Instant::now();
    for k in 0..pairs {
        let (p, t) = (&parcels[k % parcels.len()], &trips[k * 97 % trips.len()]);
        black_box((
            matching::check(p, t, &rules(), now()),
            matching::score(p, t, &rules()),
        ));
    }
    println!(
        "pairs checked and scored: {:.0}/s",
        pairs as f64 / start.elapsed().as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
