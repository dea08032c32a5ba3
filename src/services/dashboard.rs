//! The dashboard: my trips, parcels and matches by status, money (from the ledger), rating.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::db;
use crate::error::AppError;
use crate::models::{matches, parcels, trips, users};
use crate::services::auth::AuthUser;
use crate::state::AppState;

const TRIP_STATUSES: [&str; 4] = ["open", "in_progress", "completed", "cancelled"];
const PARCEL_STATUSES: [&str; 5] = ["open", "matched", "in_transit", "delivered", "cancelled"];

#[derive(Debug, Serialize, ToSchema)]
pub struct AmountByCurrency {
    pub currency: String,
    pub amount: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardStats {
    /// Count per status (every status present, zero included).
    pub trips: BTreeMap<String, i64>,
    pub parcels: BTreeMap<String, i64>,
    pub matches: BTreeMap<String, i64>,
    /// Released to me as a traveler, per currency.
    pub earnings: Vec<AmountByCurrency>,
    /// Held for matches I am part of (as traveler or sender), per currency.
    pub held: Vec<AmountByCurrency>,
    pub rating: Option<f64>,
    pub rating_count: i32,
    pub completed_deliveries: i32,
}

fn by_status(statuses: &[&str], counted: Vec<(String, i64)>) -> BTreeMap<String, i64> {
    let mut out: BTreeMap<String, i64> = statuses.iter().map(|s| ((*s).to_owned(), 0)).collect();
    for (status, n) in counted {
        out.insert(status, n);
    }
    out
}

pub async fn stats(state: &AppState, auth: AuthUser) -> Result<DashboardStats, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let user = users::find(&mut conn, auth.user_id.0)
        .await?
        .ok_or_else(AppError::not_found)?;
    let trips = trips::count_by_status(&mut conn, auth.user_id.0).await?;
    let parcels = parcels::count_by_status(&mut conn, auth.user_id.0).await?;
    let matches = matches::count_by_status(&mut conn, auth.user_id.0).await?;
    let profile = crate::services::users::UserView::from(&user);
    let earnings = crate::models::wallet::earnings(&mut conn, auth.user_id.0)
        .await?
        .into_iter()
        .map(|e| AmountByCurrency {
            currency: e.currency,
            amount: e.amount,
        })
        .collect();
    let held = crate::models::wallet::balances(&mut conn, auth.user_id.0)
        .await?
        .into_iter()
        .filter(|b| b.held + b.held_from_me > 0)
        .map(|b| AmountByCurrency {
            amount: b.held + b.held_from_me,
            currency: b.currency,
        })
        .collect();
    Ok(DashboardStats {
        trips: by_status(&TRIP_STATUSES, trips),
        parcels: by_status(&PARCEL_STATUSES, parcels),
        matches: by_status(
            &crate::domain::matching::ALL_STATUSES.map(|s| s.as_str()),
            matches,
        ),
        earnings,
        held,
        rating: profile.rating,
        rating_count: profile.rating_count,
        completed_deliveries: profile.completed_deliveries,
    })
}
