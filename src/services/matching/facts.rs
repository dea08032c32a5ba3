//! Turning rows into the facts matching works on, publishing index changes after commit, and
//! (re)building the matchmaker's index from PostgreSQL.

use std::collections::HashMap;

use chrono::Utc;
use uuid::Uuid;

use crate::actors::matchmaker::ReplaceAll;
use crate::db;
use crate::domain::match_index::GridIndex;
use crate::domain::matching::{ParcelFacts, TravelerStats, TripFacts};
use crate::error::AppError;
use crate::models::parcels::ParcelRow;
use crate::models::trips::TripRow;
use crate::models::users::UserRow;
use crate::models::{parcels, trips, users};
use crate::services::events::Event;
use crate::state::AppState;

pub fn traveler_stats(user: Option<&UserRow>) -> TravelerStats {
    user.map_or(
        TravelerStats {
            suspended: true,
            ..TravelerStats::default()
        },
        |u| TravelerStats {
            rating_sum: u.rating_sum,
            rating_count: u.rating_count,
            completed_deliveries: u.completed_deliveries,
            strikes: 0,
            kyc_verified: u.kyc_status == "verified",
            suspended: u.suspended_at.is_some(),
        },
    )
}

pub fn trip_facts(row: &TripRow, traveler: TravelerStats) -> TripFacts {
    TripFacts {
        id: row.id,
        traveler_id: row.traveler_id,
        origin: (row.origin_lat, row.origin_lng),
        destination: (row.destination_lat, row.destination_lng),
        departure_at: row.departure_at,
        arrival_at: row.arrival_at,
        available_grams: row
            .available_grams
            .unwrap_or(row.capacity_grams - row.reserved_grams),
        accepted_categories: row.accepted_categories.iter().flatten().cloned().collect(),
        currency: row.currency.clone(),
        price_per_kg: row.price_per_kg,
        open: row.status == "open",
        traveler,
    }
}

pub fn parcel_facts(row: &ParcelRow) -> ParcelFacts {
    ParcelFacts {
        id: row.id,
        sender_id: row.sender_id,
        origin: (row.origin_lat, row.origin_lng),
        destination: (row.destination_lat, row.destination_lng),
        ready_from: row.ready_from,
        deliver_by: row.deliver_by,
        weight_grams: row.weight_grams,
        category: row.category.clone(),
        currency: row.currency.clone(),
        declared_value: row.declared_value,
        max_reward: row.max_reward,
        open: row.status == "open",
    }
}

pub async fn load_trip(
    conn: &mut diesel_async::AsyncPgConnection,
    id: Uuid,
) -> Result<Option<(TripRow, TripFacts)>, AppError> {
    let Some(row) = trips::find(conn, id).await? else {
        return Ok(None);
    };
    let user = users::find(conn, row.traveler_id).await?;
    let facts = trip_facts(&row, traveler_stats(user.as_ref()));
    Ok(Some((row, facts)))
}

/// Like `load_trip`, with the trip row locked for the rest of the transaction.
pub async fn load_trip_for_update(
    conn: &mut diesel_async::AsyncPgConnection,
    id: Uuid,
) -> Result<Option<(TripRow, TripFacts)>, AppError> {
    let Some(row) = trips::find_for_update(conn, id).await? else {
        return Ok(None);
    };
    let user = users::find(conn, row.traveler_id).await?;
    let facts = trip_facts(&row, traveler_stats(user.as_ref()));
    Ok(Some((row, facts)))
}

/// After a commit that changed these trips and parcels: tell every node's matchmaker.
pub async fn publish_changes(state: &AppState, trip_ids: &[Uuid], parcel_ids: &[Uuid]) {
    let loaded: Result<(Vec<TripFacts>, Vec<ParcelFacts>), AppError> = async {
        let mut conn = db::conn(&state.db).await?;
        let mut out_trips = Vec::new();
        for id in trip_ids {
            if let Some((_, facts)) = load_trip(&mut conn, *id).await? {
                out_trips.push(facts);
            }
        }
        let out_parcels = parcels::find_many(&mut conn, parcel_ids)
            .await?
            .iter()
            .map(parcel_facts)
            .collect();
        Ok((out_trips, out_parcels))
    }
    .await;
    match loaded {
        Ok((trips, parcels)) => {
            for trip in trips {
                state.events.publish(Event::TripUpserted { trip }).await;
            }
            for parcel in parcels {
                state.events.publish(Event::ParcelUpserted { parcel }).await;
            }
        }
        // The periodic rebuild repairs the index if this fails.
        Err(e) => tracing::warn!(error = %e, "could not publish index changes"),
    }
}

/// Loads every open trip and parcel and replaces the matchmaker's index.
pub async fn rebuild_index(state: &AppState) -> Result<(usize, usize), AppError> {
    let now = Utc::now();
    let mut conn = db::conn(&state.db).await?;
    let trip_rows = trips::open_all(&mut conn, now).await?;
    let mut traveler_ids: Vec<Uuid> = trip_rows.iter().map(|t| t.traveler_id).collect();
    traveler_ids.sort_unstable();
    traveler_ids.dedup();
    let mut travelers: HashMap<Uuid, UserRow> = HashMap::new();
    for chunk in traveler_ids.chunks(5_000) {
        for u in users::find_many(&mut conn, chunk).await? {
            travelers.insert(u.id, u);
        }
    }
    let trip_facts: Vec<TripFacts> = trip_rows
        .iter()
        .map(|t| trip_facts(t, traveler_stats(travelers.get(&t.traveler_id))))
        .collect();
    let parcel_facts: Vec<ParcelFacts> = parcels::open_all(&mut conn, now)
        .await?
        .iter()
        .map(parcel_facts)
        .collect();
    drop(conn);
    let sizes = (trip_facts.len(), parcel_facts.len());
    let (trips, parcels) = tokio::task::spawn_blocking(move || {
        let mut trips = GridIndex::new();
        for t in trip_facts.into_iter().filter(|t| t.open) {
            trips.upsert(t);
        }
        let mut parcels = GridIndex::new();
        for p in parcel_facts.into_iter().filter(|p| p.open) {
            parcels.upsert(p);
        }
        (trips, parcels)
    })
    .await
    .map_err(AppError::internal)?;
    state
        .matchmaker
        .send(ReplaceAll { trips, parcels })
        .await
        .map_err(|e| AppError::internal(e.to_string()))?;
    Ok(sizes)
}
