//! The custody log: every custody event of a match (paid, code issued, pickup verified,
//! positions summary, delivered, released, disputed, cancelled after payment) is appended inside
//! the transaction that makes it happen, hash-chained (`domain::custody`). `GET
//! /api/matches/{id}/custody` returns the chain with its verification, and whether the trail
//! still matches the positions summary taken at delivery.

use chrono::{DateTime, SubsecRound, Utc};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::domain::custody::{self, Link, Verification, GENESIS};
use crate::domain::ids::MatchId;
use crate::domain::matching::MatchStatus;
use crate::error::AppError;
use crate::models::custody::{self as rows, NewLink};
use crate::models::matches::{self as match_rows, MatchRow};
use crate::services::auth::AuthUser;
use crate::state::AppState;

pub const POSITIONS_SUMMARY: &str = "positions_summary";

/// Appends one event to the match's chain. The caller holds the match's lock (every custody
/// event comes with a locked match), so the head cannot move underneath; if it did, the append
/// fails rather than fork the chain.
pub async fn append(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
    kind: &str,
    data: serde_json::Value,
    at: DateTime<Utc>,
) -> Result<(), AppError> {
    let at = at.trunc_subsecs(6);
    let (seq, head) = rows::head(conn, match_id).await?;
    let prev = head.unwrap_or_else(|| GENESIS.to_vec());
    let seq = seq + 1;
    let hash = custody::link_hash(&prev, &custody::canonical(match_id, seq, kind, at, &data));
    let link = NewLink {
        match_id,
        seq,
        kind,
        data: &data,
        at,
        prev_hash: &prev,
        hash: &hash,
    };
    if !rows::append(conn, &link).await? {
        return Err(AppError::internal("the custody chain moved under a lock"));
    }
    Ok(())
}

/// The custody event a status change is, if it is one.
pub async fn on_transition(
    conn: &mut AsyncPgConnection,
    m: &MatchRow,
    from: MatchStatus,
    to: MatchStatus,
    actor: Option<Uuid>,
    reason: Option<&str>,
) -> Result<(), AppError> {
    let (kind, data) = match to {
        MatchStatus::Paid => ("paid", json!({"price": m.price, "currency": m.currency})),
        MatchStatus::InTransit => ("pickup_verified", json!({"by": actor})),
        MatchStatus::Delivered => ("delivered", json!({"by": actor})),
        MatchStatus::Completed => (
            "released",
            json!({"to_traveler": m.price - m.fee, "fee": m.fee, "currency": m.currency}),
        ),
        MatchStatus::Disputed => ("disputed", json!({"by": actor, "reason": reason})),
        MatchStatus::Cancelled if matches!(from, MatchStatus::Paid | MatchStatus::Disputed) => {
            ("cancelled", json!({"by": actor, "reason": reason}))
        }
        _ => return Ok(()),
    };
    append(conn, m.id, kind, data, Utc::now()).await
}

/// Appends the summary of the trail as it stands (called in the delivery's transaction, once
/// no more positions can be stored).
pub async fn summarise_trail(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
    now: DateTime<Utc>,
) -> Result<(), AppError> {
    let d = rows::trail_digest(conn, match_id).await?;
    let data = json!({
        "points": d.points,
        "first_at": d.first_at.map(micros),
        "last_at": d.last_at.map(micros),
        "trail_sha256": d.sha256,
    });
    append(conn, match_id, POSITIONS_SUMMARY, data, now).await
}

fn micros(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustodyEventView {
    pub seq: i32,
    pub kind: String,
    pub data: serde_json::Value,
    pub at: DateTime<Utc>,
    /// Hex SHA-256 of the previous event (64 zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256(prev_hash ‖ canonical event).
    pub hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrailCheck {
    /// Points stored now.
    pub points: i64,
    /// The stored trail still hashes to the delivery's positions summary.
    pub intact: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustodyView {
    pub match_id: Uuid,
    pub events: Vec<CustodyEventView>,
    pub verification: Verification,
    /// Present once the trail was summarised (at delivery).
    pub trail: Option<TrailCheck>,
}

/// `GET /api/matches/{id}/custody` (the sender or the traveler).
pub async fn view(state: &AppState, auth: AuthUser, id: MatchId) -> Result<CustodyView, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let m = match_rows::find(&mut conn, id.0)
        .await?
        .filter(|m| m.sender_id == auth.user_id.0 || m.traveler_id == auth.user_id.0)
        .ok_or_else(AppError::not_found)?;
    let (seq, head) = rows::head(&mut conn, m.id).await?;
    let links: Vec<Link> = rows::chain(&mut conn, m.id)
        .await?
        .into_iter()
        .map(Link::from)
        .collect();
    let verification = custody::verify(m.id, &links, head.as_deref().map(|h| (seq, h)));
    let summary = links.iter().rev().find(|l| l.kind == POSITIONS_SUMMARY);
    let trail = match summary {
        Some(s) => {
            let now = rows::trail_digest(&mut conn, m.id).await?;
            Some(TrailCheck {
                points: now.points,
                intact: s.data["trail_sha256"].as_str() == Some(now.sha256.as_str())
                    && s.data["points"].as_i64() == Some(now.points),
            })
        }
        None => None,
    };
    Ok(CustodyView {
        match_id: m.id,
        events: links
            .into_iter()
            .map(|l| CustodyEventView {
                seq: l.seq,
                kind: l.kind,
                data: l.data,
                at: l.at,
                prev_hash: hex(&l.prev_hash),
                hash: hex(&l.hash),
            })
            .collect(),
        verification,
        trail,
    })
}
