//! The activity feed: services append an entry in the transaction of the event; users list
//! theirs newest first. Entries older than the retention period are purged.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::error::AppError;
use crate::models::activities::{self, NewActivity};
use crate::services::auth::AuthUser;
use crate::services::pagination::{clamp_limit, split_page, Position};
use crate::state::AppState;

/// How long activities are kept.
const RETENTION_DAYS: i64 = 180;
const SCOPE: &str = "activities";

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityView {
    pub id: Uuid,
    /// `trip_created`, `parcel_cancelled`, … (snake_case event names).
    pub kind: String,
    /// `trip`, `parcel`, …
    pub subject_type: String,
    pub subject_id: Uuid,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivityPage {
    pub items: Vec<ActivityView>,
    pub next_cursor: Option<String>,
}

/// Appends one entry; call inside the transaction of the event.
pub async fn record(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    kind: &str,
    subject_type: &str,
    subject_id: Uuid,
    data: serde_json::Value,
) -> Result<(), AppError> {
    activities::append(
        conn,
        &NewActivity {
            id: Uuid::now_v7(),
            user_id,
            kind,
            subject_type,
            subject_id,
            data,
        },
    )
    .await?;
    Ok(())
}

pub async fn list(
    state: &AppState,
    auth: AuthUser,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<ActivityPage, AppError> {
    let limit = clamp_limit(limit);
    let before = state.cursors.before_id(SCOPE, cursor)?;
    let mut conn = db::conn(&state.db).await?;
    let rows = activities::list(&mut conn, auth.user_id.0, before, limit).await?;
    let (rows, next) = split_page(rows, limit, |r| Position {
        time_us: None,
        id: r.id,
    });
    Ok(ActivityPage {
        items: rows
            .into_iter()
            .map(|r| ActivityView {
                id: r.id,
                kind: r.kind,
                subject_type: r.subject_type,
                subject_id: r.subject_id,
                data: r.data,
                created_at: r.created_at,
            })
            .collect(),
        next_cursor: next.map(|p| state.cursors.encode(SCOPE, &p)),
    })
}

pub async fn purge_old(state: &AppState) -> Result<usize, AppError> {
    let mut conn = db::conn(&state.db).await?;
    Ok(activities::purge_older_than(
        &mut conn,
        Utc::now() - chrono::Duration::days(RETENTION_DAYS),
    )
    .await?)
}
