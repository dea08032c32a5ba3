//! The match lifecycle: requests, and the one transition function every state change goes
//! through (it applies the domain state machine, moves capacity, appends to `match_events`),
//! plus the expiry sweeper.

use chrono::{DateTime, Duration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::facts::{self, publish_changes};
use super::{view, MatchView};
use crate::db;
use crate::domain::ids::{MatchId, ParcelId, TripId};
use crate::domain::matching::{self, MatchAction, MatchStatus};
use crate::error::AppError;
use crate::models::matches::{self as rows, MatchRow, NewMatch, NewMatchEvent};
use crate::models::{parcels, trips};
use crate::services::activities;
use crate::services::auth::AuthUser;
use crate::services::events::Event;
use crate::services::notifications;
use crate::services::payments;
use crate::services::users;
use crate::state::AppState;

/// Most lapsed matches one sweep claims.
const SWEEP_BATCH: i64 = 100;

/// What a committed change touched, to publish afterwards.
#[derive(Debug, Default)]
pub struct Touched {
    pub matches: Vec<MatchRow>,
    pub trips: Vec<Uuid>,
    pub parcels: Vec<Uuid>,
    /// Notifications stored in the transaction, pushed live after it.
    pub notes: Vec<crate::models::deliveries::StoredNotification>,
}

impl Touched {
    pub fn absorb(&mut self, other: Touched) {
        self.matches.extend(other.matches);
        self.trips.extend(other.trips);
        self.parcels.extend(other.parcels);
        self.notes.extend(other.notes);
    }

    pub async fn publish(self, state: &AppState) {
        for m in &self.matches {
            state
                .events
                .publish(Event::MatchUpdated {
                    match_id: m.id,
                    status: m.status.clone(),
                    sender_id: m.sender_id,
                    traveler_id: m.traveler_id,
                })
                .await;
        }
        publish_changes(state, &self.trips, &self.parcels).await;
        notifications::publish(state, self.notes).await;
    }
}

/// Locks a match the way every change does (its trip, then its parcel, then the match), so
/// changes from any path serialise without deadlocks.
pub async fn lock_match(conn: &mut AsyncPgConnection, id: Uuid) -> Result<MatchRow, AppError> {
    let seen = rows::find(conn, id)
        .await?
        .ok_or_else(AppError::not_found)?;
    trips::find_for_update(conn, seen.trip_id).await?;
    parcels::find_for_update(conn, seen.parcel_id).await?;
    rows::find_for_update(conn, id)
        .await?
        .ok_or_else(AppError::not_found)
}

/// The party a money or custody action belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Sender,
    Traveler,
}

/// Locks a match (as `lock_match`) for an action only `party` may take: 404 for anyone outside
/// the match, 403 (`not_sender` / `not_traveler`, with `why`) for the other party.
pub async fn lock_as(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    user: Uuid,
    party: Party,
    why: &'static str,
) -> Result<MatchRow, AppError> {
    let m = lock_match(conn, id).await?;
    if user != m.sender_id && user != m.traveler_id {
        return Err(AppError::not_found());
    }
    match party {
        Party::Sender if user != m.sender_id => Err(AppError::forbidden("not_sender", why)),
        Party::Traveler if user != m.traveler_id => Err(AppError::forbidden("not_traveler", why)),
        _ => Ok(m),
    }
}

fn invalid_transition(from: &str, action: MatchAction) -> AppError {
    AppError::conflict(
        "invalid_transition",
        format!(
            "A {from} match cannot be {}.",
            serde_json::to_string(&action)
                .unwrap_or_default()
                .trim_matches('"')
        ),
    )
}

/// One change: what, by whom (`None`: the system), and why.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub action: MatchAction,
    pub actor: Option<Uuid>,
    pub reason: Option<&'a str>,
}

/// The single place a match changes state. `actor` is `None` when the system acts.
pub async fn transition(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    m: &MatchRow,
    step: Step<'_>,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<MatchRow, AppError> {
    let Step {
        action,
        actor,
        reason,
    } = step;
    let from =
        MatchStatus::parse(&m.status).ok_or_else(|| AppError::internal("unknown match status"))?;
    let to = from
        .transition(action)
        .map_err(|_| invalid_transition(&m.status, action))?;

    let mut expires_at = None;
    if to == MatchStatus::Accepted {
        if !rows::reserve(conn, m.trip_id, m.weight_grams).await? {
            return Err(AppError::conflict(
                "insufficient_capacity",
                "The trip has no room left for this parcel.",
            ));
        }
        rows::set_parcel_status(conn, m.parcel_id, "matched").await?;
        expires_at = Some(now + secs(state.settings.matching.payment_window_secs));
        for other in rows::other_requests_of_parcel(conn, m.parcel_id, m.id).await? {
            record(
                conn,
                state,
                &other,
                MatchStatus::Requested,
                MatchStatus::Declined,
                MatchAction::Decline,
                None,
                Some("parcel_matched"),
                None,
                touched,
            )
            .await?;
        }
        touched.trips.push(m.trip_id);
        touched.parcels.push(m.parcel_id);
    }
    if from.holds_capacity() && matches!(to, MatchStatus::Cancelled | MatchStatus::Expired) {
        rows::release(conn, m.trip_id, m.weight_grams).await?;
        rows::set_parcel_status(conn, m.parcel_id, "open").await?;
        touched.trips.push(m.trip_id);
        touched.parcels.push(m.parcel_id);
    }
    let updated = record(
        conn, state, m, from, to, action, actor, reason, expires_at, touched,
    )
    .await?;
    let kind = format!("match_{}", to.as_str());
    for user in [m.sender_id, m.traveler_id] {
        activities::record(
            conn,
            user,
            &kind,
            "match",
            m.id,
            serde_json::json!({"from": from.as_str(), "to": to.as_str()}),
        )
        .await?;
    }
    Ok(updated)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one row of the event log, field by field"
)]
async fn record(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    m: &MatchRow,
    from: MatchStatus,
    to: MatchStatus,
    action: MatchAction,
    actor: Option<Uuid>,
    reason: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
    touched: &mut Touched,
) -> Result<MatchRow, AppError> {
    let updated = rows::set_status(conn, m.id, to.as_str(), expires_at).await?;
    crate::services::custody_log::on_transition(conn, m, from, to, actor, reason).await?;
    let notes = notifications::for_match(m, to, actor);
    touched
        .notes
        .extend(notifications::write(conn, state, &notes).await?);
    let action = serde_json::to_string(&action).unwrap_or_default();
    rows::append_event(
        conn,
        &NewMatchEvent {
            id: Uuid::now_v7(),
            match_id: m.id,
            actor_id: actor,
            action: action.trim_matches('"'),
            from_status: Some(from.as_str()),
            to_status: to.as_str(),
            reason,
        },
    )
    .await?;
    touched.matches.push(updated.clone());
    Ok(updated)
}

fn secs(n: u64) -> Duration {
    Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1_000))
}

/// `POST /api/matches`: the sender asks a trip to carry their parcel, or the traveler offers
/// their trip to a parcel. The pair must pass every hard constraint.
pub async fn request(
    state: &AppState,
    auth: AuthUser,
    parcel_id: ParcelId,
    trip_id: TripId,
) -> Result<MatchView, AppError> {
    let now = Utc::now();
    let cfg = &state.settings.matching;
    let mut conn = db::conn(&state.db).await?;
    let (row, touched) = conn
        .transaction(async |conn| {
            // Locked (trip, then parcel) so a concurrent accept or cancellation is serialised
            // with this request.
            let trip = facts::load_trip_for_update(conn, trip_id.0).await?;
            let parcel = parcels::find_for_update(conn, parcel_id.0).await?;
            // Which side is asking decides what they must own; the other side must be visible.
            let me = auth.user_id.0;
            let (parcel, (trip, trip_facts)) = match (parcel, trip) {
                (Some(p), Some(t)) if p.sender_id == me && (t.0.status == "open" || t.0.traveler_id == me) => (p, t),
                (Some(p), Some(t)) if t.0.traveler_id == me && p.status == "open" => (p, t),
                _ => return Err(AppError::not_found()),
            };
            let by_sender = parcel.sender_id == me;
            users::ensure_may_publish(conn, auth.user_id).await?;
            let parcel_facts = facts::parcel_facts(&parcel);
            let failed = matching::check(&parcel_facts, &trip_facts, &cfg.rules(), now);
            if !failed.is_empty() {
                let codes: Vec<&str> = failed.iter().map(|f| f.code()).collect();
                return Err(AppError::new(
                    actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "not_eligible",
                    format!("This trip cannot carry this parcel: {}.", codes.join(", ")),
                )
                .with_header("X-Failed-Constraints", codes.join(",")));
            }
            if rows::live_for_pair(conn, parcel.id, trip.id).await?.is_some() {
                return Err(AppError::conflict("already_requested", "This parcel and trip already have a live request."));
            }
            let (limit, open) = if by_sender {
                (cfg.max_open_requests_per_parcel, rows::count_open_requests(conn, me, Some(parcel.id), None).await?)
            } else {
                (cfg.max_open_requests_per_trip, rows::count_open_requests(conn, me, None, Some(trip.id)).await?)
            };
            // A sender's requests on one trip are bounded too, whatever parcels they are for.
            let on_trip = if by_sender {
                rows::count_open_requests(conn, me, None, Some(trip.id)).await?
            } else {
                0
            };
            if open >= i64::from(limit) || on_trip >= i64::from(cfg.max_open_requests_per_trip) {
                return Err(AppError::conflict(
                    "request_limit_reached",
                    format!("At most {limit} open requests are allowed here; wait for answers or cancel one."),
                ));
            }
            let price = matching::price_for(trip.price_per_kg, parcel.weight_grams)
                .ok_or_else(|| AppError::internal("price overflow"))?;
            let fee = matching::fee_for(price, state.settings.payments.fee_bps)
                .ok_or_else(|| AppError::internal("fee overflow"))?;
            let expires_at = (now + secs(cfg.request_ttl_secs)).min(trip.departure_at);
            let row = rows::insert(
                conn,
                &NewMatch {
                    id: MatchId::new().0,
                    parcel_id: parcel.id,
                    trip_id: trip.id,
                    sender_id: parcel.sender_id,
                    traveler_id: trip.traveler_id,
                    requested_by: me,
                    status: MatchStatus::Requested.as_str(),
                    weight_grams: parcel.weight_grams,
                    price,
                    fee,
                    currency: &trip.currency,
                    room_id: Uuid::now_v7(),
                    expires_at: Some(expires_at),
                },
            )
            .await
            .map_err(|e| match e {
                diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => {
                    AppError::conflict("already_requested", "This parcel and trip already have a live request.")
                }
                other => AppError::from(other),
            })?;
            rows::append_event(
                conn,
                &NewMatchEvent {
                    id: Uuid::now_v7(),
                    match_id: row.id,
                    actor_id: Some(me),
                    action: "request",
                    from_status: None,
                    to_status: MatchStatus::Requested.as_str(),
                    reason: None,
                },
            )
            .await?;
            for user in [row.sender_id, row.traveler_id] {
                activities::record(conn, user, "match_requested", "match", row.id, serde_json::json!({"requested_by": me})).await?;
            }
            let notes = notifications::for_match(&row, MatchStatus::Requested, Some(me));
            let notes = notifications::write(conn, state, &notes).await?;
            let touched = Touched { matches: vec![row.clone()], notes, ..Touched::default() };
            Ok::<_, AppError>((row, touched))
        })
        .await?;
    drop(conn);
    touched.publish(state).await;
    Ok(view(row, None))
}

/// Who may take `action` on a match: 404 for strangers, 403 for the wrong party.
fn authorize(m: &MatchRow, auth: AuthUser, action: MatchAction) -> Result<(), AppError> {
    let me = auth.user_id.0;
    if me != m.sender_id && me != m.traveler_id {
        return Err(AppError::not_found());
    }
    let counterpart = if m.requested_by == m.sender_id {
        m.traveler_id
    } else {
        m.sender_id
    };
    match action {
        MatchAction::Accept | MatchAction::Decline if me != counterpart => {
            Err(AppError::forbidden(
                "not_counterpart",
                "Only the other party of the request can accept or decline it.",
            ))
        }
        _ => Ok(()),
    }
}

/// Accept, decline or cancel by a party.
pub async fn act(
    state: &AppState,
    auth: AuthUser,
    id: MatchId,
    action: MatchAction,
) -> Result<MatchView, AppError> {
    let now = Utc::now();
    let mut conn = db::conn(&state.db).await?;
    let (row, touched) = conn
        .transaction(async |conn| {
            let seen = rows::find(conn, id.0)
                .await?
                .ok_or_else(AppError::not_found)?;
            authorize(&seen, auth, action)?;
            // One lock order everywhere: trip, then parcel, then matches.
            let trip = trips::find_for_update(conn, seen.trip_id)
                .await?
                .ok_or_else(AppError::not_found)?;
            let parcel = parcels::find_for_update(conn, seen.parcel_id)
                .await?
                .ok_or_else(AppError::not_found)?;
            let m = rows::find_for_update(conn, id.0)
                .await?
                .ok_or_else(AppError::not_found)?;
            let lapsed = matches!(m.status.as_str(), "requested" | "accepted")
                && m.expires_at.is_some_and(|t| t <= now);
            if lapsed {
                return Err(AppError::conflict("expired", "This request has lapsed."));
            }
            // (An accept of anything but a request is an invalid transition, reported below.)
            if action == MatchAction::Accept && m.status == "requested" {
                users::ensure_may_publish(conn, auth.user_id).await?;
                if trip.status != "open" || trip.departure_at <= now {
                    return Err(AppError::conflict(
                        "trip_not_open",
                        "The trip is no longer open.",
                    ));
                }
                if parcel.status != "open" {
                    return Err(AppError::conflict(
                        "parcel_not_open",
                        "The parcel is no longer open.",
                    ));
                }
            }
            let mut touched = Touched::default();
            let row = transition(
                conn,
                state,
                &m,
                Step {
                    action,
                    actor: Some(auth.user_id.0),
                    reason: None,
                },
                now,
                &mut touched,
            )
            .await?;
            if action == MatchAction::Cancel && m.status == MatchStatus::Paid.as_str() {
                payments::settle::on_cancel(
                    conn,
                    state,
                    &m,
                    auth.user_id.0,
                    trip.departure_at,
                    now,
                    &mut touched,
                )
                .await?;
            }
            Ok::<_, AppError>((row, touched))
        })
        .await?;
    let events = rows::events(&mut conn, row.id).await?;
    // Publishing reads facts through the pool: give this connection back first.
    drop(conn);
    touched.publish(state).await;
    Ok(view(row, Some(events)))
}

/// Expires lapsed requests and unpaid acceptances, each in its own short transaction that
/// locks in the same order as every other change (trip, parcel, then the match with `FOR UPDATE
/// SKIP LOCKED`) and re-checks the match is still due, so several nodes sweeping at once expire
/// each match exactly once and never deadlock with an accept.
pub async fn sweep_expired(state: &AppState) -> Result<usize, AppError> {
    let now = Utc::now();
    let mut conn = db::conn(&state.db).await?;
    let due = rows::due(&mut conn, now, SWEEP_BATCH).await?;
    let mut touched = Touched::default();
    for (match_id, trip_id, parcel_id) in due {
        let expired = conn
            .transaction(async |conn| {
                trips::find_for_update(conn, trip_id).await?;
                parcels::find_for_update(conn, parcel_id).await?;
                let Some(m) = rows::claim(conn, match_id).await? else {
                    return Ok::<_, AppError>(None); // another sweeper has it
                };
                let still_due = matches!(m.status.as_str(), "requested" | "accepted")
                    && m.expires_at.is_some_and(|t| t <= now);
                if !still_due {
                    return Ok(None);
                }
                let mut one = Touched::default();
                let step = Step {
                    action: MatchAction::Expire,
                    actor: None,
                    reason: Some("timed_out"),
                };
                transition(conn, state, &m, step, now, &mut one).await?;
                Ok(Some(one))
            })
            .await;
        // One match that cannot be expired must not hold up the others.
        match expired {
            Ok(Some(one)) => touched.absorb(one),
            Ok(None) => {}
            Err(e) => tracing::error!(%match_id, error = %e, "expiry failed"),
        }
    }
    let n = touched.matches.len();
    drop(conn);
    touched.publish(state).await;
    Ok(n)
}

/// Ends the live requests of a trip or parcel that is being cancelled (inside its
/// transaction); a paid booking blocks the cancellation.
pub async fn close_requests(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    live: Vec<MatchRow>,
    actor: Uuid,
    reason: &str,
    touched: &mut Touched,
) -> Result<(), AppError> {
    let now = Utc::now();
    for m in live {
        transition(
            conn,
            state,
            &m,
            Step {
                action: MatchAction::Cancel,
                actor: Some(actor),
                reason: Some(reason),
            },
            now,
            touched,
        )
        .await?;
    }
    Ok(())
}
