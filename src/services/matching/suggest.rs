//! Suggestions (asked of this node's matchmaker), explanations (the pure rules on two rows),
//! and the real-time nudges when something is posted.

use std::collections::BTreeSet;

use chrono::Utc;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::facts::{self, parcel_facts};
use crate::actors::matchmaker::{SuggestParcels, SuggestTrips};
use crate::db;
use crate::domain::ids::{ParcelId, TripId};
use crate::domain::matching::{self, Factors, Failure};
use crate::domain::money::MoneyDto;
use crate::error::AppError;
use crate::models::{parcels, trips};
use crate::services::auth::AuthUser;
use crate::services::events::{Event, Suggested};
use crate::services::parcels::ParcelView;
use crate::services::trips::TripView;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct SuggestionView {
    /// For `?parcel_id=`: the suggested trip.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trip: Option<TripView>,
    /// For `?trip_id=`: the suggested parcel (public view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parcel: Option<ParcelView>,
    pub score: f64,
    pub factors: Factors,
    /// What the sender would pay.
    pub price: MoneyDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SuggestionList {
    pub items: Vec<SuggestionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Explanation {
    pub eligible: bool,
    /// Every hard constraint the pair fails, as stable codes.
    pub failed: Vec<Failure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factors: Option<Factors>,
}

fn mailbox(e: actix::MailboxError) -> AppError {
    AppError::unavailable("the matchmaker", e.to_string())
}

fn price(price_per_kg: i64, grams: i32, currency: &str) -> MoneyDto {
    MoneyDto {
        amount: matching::price_for(price_per_kg, grams).unwrap_or(i64::MAX),
        currency: currency.to_owned(),
    }
}

/// The best trips for my open parcel.
pub async fn for_parcel(
    state: &AppState,
    auth: AuthUser,
    id: ParcelId,
) -> Result<SuggestionList, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let parcel = parcels::find(&mut conn, id.0)
        .await?
        .filter(|p| p.sender_id == auth.user_id.0)
        .ok_or_else(AppError::not_found)?;
    let facts = parcel_facts(&parcel);
    let limit = state.settings.matching.suggestions_limit;
    let ranked = state
        .matchmaker
        .send(SuggestTrips {
            parcel: facts.clone(),
            limit,
        })
        .await
        .map_err(mailbox)?;
    let ids: Vec<Uuid> = ranked.iter().map(|(id, _, _)| *id).collect();
    let mut rows = trips::find_many(&mut conn, &ids).await?;
    let mut items = Vec::with_capacity(ranked.len());
    for (trip_id, score, trip) in ranked {
        if let Some(pos) = rows.iter().position(|r| r.id == trip_id) {
            let row = rows.swap_remove(pos);
            items.push(SuggestionView {
                trip: Some(crate::services::trips::view_row(state, row)),
                parcel: None,
                score: score.score,
                factors: score.factors,
                price: price(trip.price_per_kg, facts.weight_grams, &trip.currency),
            });
        }
    }
    Ok(SuggestionList { items })
}

/// The best open parcels for my trip.
pub async fn for_trip(
    state: &AppState,
    auth: AuthUser,
    id: TripId,
) -> Result<SuggestionList, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let (row, facts) = facts::load_trip(&mut conn, id.0)
        .await?
        .filter(|(t, _)| t.traveler_id == auth.user_id.0)
        .ok_or_else(AppError::not_found)?;
    let limit = state.settings.matching.suggestions_limit;
    let ranked = state
        .matchmaker
        .send(SuggestParcels { trip: facts, limit })
        .await
        .map_err(mailbox)?;
    let ids: Vec<Uuid> = ranked.iter().map(|(id, _, _)| *id).collect();
    let mut rows = parcels::find_many(&mut conn, &ids).await?;
    let mut items = Vec::with_capacity(ranked.len());
    for (parcel_id, score, parcel) in ranked {
        if let Some(pos) = rows.iter().position(|r| r.id == parcel_id) {
            let p = rows.swap_remove(pos);
            items.push(SuggestionView {
                trip: None,
                parcel: Some(crate::services::parcels::view_row(state, p, auth)),
                score: score.score,
                factors: score.factors,
                price: price(row.price_per_kg, parcel.weight_grams, &row.currency),
            });
        }
    }
    Ok(SuggestionList { items })
}

/// Why a pair does or does not match; for the owner of either side (anyone else: 404).
pub async fn explain(
    state: &AppState,
    auth: AuthUser,
    parcel_id: ParcelId,
    trip_id: TripId,
) -> Result<Explanation, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let parcel = parcels::find(&mut conn, parcel_id.0).await?;
    let trip = facts::load_trip(&mut conn, trip_id.0).await?;
    let me = auth.user_id.0;
    // One side must be mine; the other must be visible to me (mine too, or open).
    let (parcel, (_, trip)) = match (parcel, trip) {
        (Some(p), Some(t))
            if p.sender_id == me && (t.0.traveler_id == me || t.0.status == "open") =>
        {
            (p, t)
        }
        (Some(p), Some(t)) if t.0.traveler_id == me && p.status == "open" => (p, t),
        _ => return Err(AppError::not_found()),
    };
    let parcel = parcel_facts(&parcel);
    let rules = state.settings.matching.rules();
    let failed = matching::check(&parcel, &trip, &rules, Utc::now());
    if failed.is_empty() {
        let s = matching::score(&parcel, &trip, &rules);
        Ok(Explanation {
            eligible: true,
            failed,
            score: Some(s.score),
            factors: Some(s.factors),
        })
    } else {
        Ok(Explanation {
            eligible: false,
            failed,
            score: None,
            factors: None,
        })
    }
}

/// After a parcel is posted (on this node only, so nudges are sent once): the sender gets the
/// best trips, the best-ranked travelers hear of a parcel on their route.
pub async fn parcel_posted(state: &AppState, parcel: matching::ParcelFacts) {
    let cfg = &state.settings.matching;
    let ranked = match state
        .matchmaker
        .send(SuggestTrips {
            parcel: parcel.clone(),
            limit: cfg.suggestions_limit,
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return tracing::warn!(error = %e, "no suggestions for a new parcel"),
    };
    let items: Vec<Suggested> = ranked
        .iter()
        .map(|(id, s, _)| Suggested {
            trip_id: *id,
            parcel_id: parcel.id,
            score: s.score,
        })
        .collect();
    state
        .events
        .publish(Event::Suggestion {
            user_id: parcel.sender_id,
            items,
        })
        .await;
    let mut told = BTreeSet::new();
    for (trip_id, score, trip) in ranked {
        if told.len() >= cfg.notify_travelers {
            break;
        }
        if told.insert(trip.traveler_id) {
            state
                .events
                .publish(Event::ParcelOnRoute {
                    user_id: trip.traveler_id,
                    trip_id,
                    parcel_id: parcel.id,
                    score: score.score,
                })
                .await;
        }
    }
}

/// After a trip is posted: its traveler gets the best open parcels for it.
pub async fn trip_posted(state: &AppState, trip: matching::TripFacts) {
    let limit = state.settings.matching.suggestions_limit;
    match state
        .matchmaker
        .send(SuggestParcels {
            trip: trip.clone(),
            limit,
        })
        .await
    {
        Ok(ranked) => {
            let items = ranked
                .iter()
                .map(|(id, s, _)| Suggested {
                    trip_id: trip.id,
                    parcel_id: *id,
                    score: s.score,
                })
                .collect();
            state
                .events
                .publish(Event::Suggestion {
                    user_id: trip.traveler_id,
                    items,
                })
                .await;
        }
        Err(e) => tracing::warn!(error = %e, "no suggestions for a new trip"),
    }
}
