//! Handover: the traveler enters the sender's pickup code (`paid` → `in_transit`, which issues
//! the delivery code) and the recipient's delivery code (`in_transit` → `delivered`, which
//! schedules the release of the held funds, at once when `payments.release_delay_secs` is 0).
//! Wrong codes are counted; the fifth locks the code (423).

use actix_web::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};

use super::codes::{CodeKind, MAX_ATTEMPTS};
use super::settle;
use crate::db;
use crate::domain::ids::MatchId;
use crate::domain::matching::{MatchAction, MatchStatus};
use crate::domain::FieldError;
use crate::error::AppError;
use crate::models::matches::{self as match_rows, MatchRow};
use crate::models::payments::{self as rows, Stamp};
use crate::models::trips;
use crate::services::auth::AuthUser;
use crate::services::custody_log;
use crate::services::matching::lifecycle::{self, Party, Step, Touched};
use crate::services::matching::{view, MatchView};
use crate::state::AppState;

/// The pickup code is valid until 24 h after departure; the delivery code 72 h after arrival.
const PICKUP_VALID_AFTER_DEPARTURE_H: i64 = 24;
const DELIVERY_VALID_AFTER_ARRIVAL_H: i64 = 72;

/// Issues (or reissues) a code for the match, inside the caller's transaction. Returns the
/// channels on which the recipient's message was queued (a delivery code), for the metrics
/// after commit.
pub async fn issue(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    m: &MatchRow,
    kind: CodeKind,
    now: DateTime<Utc>,
) -> Result<Vec<&'static str>, AppError> {
    let trip = trips::find(conn, m.trip_id)
        .await?
        .ok_or_else(|| AppError::internal("a match without its trip"))?;
    let expires_at = match kind {
        CodeKind::Pickup => trip.departure_at + Duration::hours(PICKUP_VALID_AFTER_DEPARTURE_H),
        CodeKind::Delivery => trip.arrival_at + Duration::hours(DELIVERY_VALID_AFTER_ARRIVAL_H),
    }
    .max(now + Duration::hours(1));
    let key = &state.payments.codes;
    let salt = super::codes::CodeKey::new_salt();
    let code = key.code(m.id, kind, &salt);
    let hash = key.hash(m.id, kind, &salt, &code);
    let reissued = rows::codes_of(conn, m.id)
        .await?
        .iter()
        .any(|c| c.kind == kind.as_str());
    rows::put_code(conn, m.id, kind.as_str(), &salt, &hash, expires_at).await?;
    let data = serde_json::json!({
        "code": kind.as_str(),
        "reissued": reissued,
        "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    custody_log::append(conn, m.id, "code_issued", data, now).await?;
    match kind {
        // Paid: the recipient's tracking link exists from now on.
        CodeKind::Pickup => {
            match_rows::ensure_tracking_token(conn, m.id, &new_tracking_token()).await?;
            Ok(Vec::new())
        }
        // The recipient hears of the delivery code (again, when it is reissued).
        CodeKind::Delivery => tell_recipient(conn, state, m, reissued).await,
    }
}

/// 32 random bytes, URL-safe: the recipient's tracking link cannot be guessed.
fn new_tracking_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Queues the delivery code and tracking link to the parcel's recipient, by email and/or SMS
/// as the parcel names them and the deployment sends them. The code itself is derived when the
/// message is sent, never stored with it.
async fn tell_recipient(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    m: &MatchRow,
    reissued: bool,
) -> Result<Vec<&'static str>, AppError> {
    let parcel = crate::models::parcels::find(conn, m.parcel_id)
        .await?
        .ok_or_else(|| AppError::internal("a match without its parcel"))?;
    let data = serde_json::json!({"match_id": m.id, "reissued": reissued});
    if reissued {
        // A message with the old code still waiting would now carry the new one: one is enough.
        crate::models::deliveries::supersede(
            conn,
            crate::services::delivery::templates::RECIPIENT_CODE,
            m.id,
        )
        .await?;
    }
    let channels = &state.delivery.channels;
    let locale = state.settings.notifications.locale.as_str();
    let (mut new, mut on) = (Vec::new(), Vec::new());
    for (channel, address) in [
        ("email", parcel.recipient_email.as_deref()),
        ("sms", parcel.recipient_phone.as_deref()),
    ] {
        if let Some(address) = address.filter(|_| channels.contains(&channel)) {
            new.push(crate::models::deliveries::NewDelivery {
                kind: crate::services::delivery::templates::RECIPIENT_CODE,
                channel,
                address,
                locale,
                data: data.clone(),
            });
            on.push(channel);
        }
    }
    if !new.is_empty() {
        crate::models::deliveries::insert(conn, &new).await?;
    }
    Ok(on)
}

/// For the recipient's message: the live delivery code and the tracking token of a match in
/// transit; `None` when there is nothing to tell (delivered, code used or locked).
pub async fn recipient_view(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    match_id: uuid::Uuid,
) -> Result<Option<(String, String)>, AppError> {
    let Some(m) = match_rows::find(conn, match_id).await? else {
        return Ok(None);
    };
    let (_, code) = readable_codes(conn, state, &m).await?;
    let token = match_rows::tracking_token(conn, m.id).await?;
    Ok(code.zip(token))
}

/// The codes the sender may read now (valid, unused, not locked): (pickup, delivery).
pub async fn readable_codes(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    m: &MatchRow,
) -> Result<(Option<String>, Option<String>), AppError> {
    let now = Utc::now();
    let mut out = (None, None);
    for row in rows::codes_of(conn, m.id).await? {
        let live = row.used_at.is_none() && row.expires_at > now && row.attempts < MAX_ATTEMPTS;
        let kind = match row.kind.as_str() {
            "pickup" if live && m.status == MatchStatus::Paid.as_str() => CodeKind::Pickup,
            "delivery" if live && m.status == MatchStatus::InTransit.as_str() => CodeKind::Delivery,
            _ => continue,
        };
        let code = state.payments.codes.code(m.id, kind, &row.salt);
        match kind {
            CodeKind::Pickup => out.0 = Some(code),
            CodeKind::Delivery => out.1 = Some(code),
        }
    }
    Ok(out)
}

/// `POST /api/matches/{id}/pickup` (`kind` pickup) or `/deliver` (`kind` delivery).
pub async fn hand_over(
    state: &AppState,
    auth: AuthUser,
    id: MatchId,
    kind: CodeKind,
    code: &str,
) -> Result<MatchView, AppError> {
    let now = Utc::now();
    let (action, from) = match kind {
        CodeKind::Pickup => (MatchAction::Pickup, MatchStatus::Paid),
        CodeKind::Delivery => (MatchAction::Deliver, MatchStatus::InTransit),
    };
    let mut conn = db::conn(&state.db).await?;
    // The outer result commits (a wrong attempt is counted even though the call fails); the
    // inner one is the answer.
    let outcome = conn
        .transaction(async |conn| {
            let me = auth.user_id.0;
            let why = "Only the traveler enters a handover code.";
            let m = lifecycle::lock_as(conn, id.0, me, Party::Traveler, why).await?;
            if m.status != from.as_str() {
                return Ok(Err(AppError::conflict(
                    "invalid_transition",
                    format!(
                        "A {} match cannot be {}.",
                        m.status,
                        match kind {
                            CodeKind::Pickup => "picked up",
                            CodeKind::Delivery => "delivered",
                        }
                    ),
                )));
            }
            let Some(row) = rows::code_for_update(conn, m.id, kind.as_str()).await? else {
                return Ok(Err(AppError::conflict(
                    "no_code",
                    "No code has been issued.",
                )));
            };
            if row.attempts >= MAX_ATTEMPTS {
                return Ok(Err(locked(kind)));
            }
            if row.expires_at <= now {
                return Ok(Err(AppError::conflict(
                    "code_expired",
                    "This code has expired; the sender can reissue it.",
                )));
            }
            let key = &state.payments.codes;
            if !key.verify(m.id, kind, &row.salt, &row.code_hash, code) {
                let attempts = rows::count_wrong_attempt(conn, m.id, kind.as_str()).await?;
                let left = MAX_ATTEMPTS - attempts;
                if left <= 0 {
                    return Ok(Err(locked(kind)));
                }
                return Ok(Err(AppError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "wrong_code",
                    format!("The code is wrong; {left} attempts left."),
                )
                .with_errors(vec![FieldError::new(
                    "code",
                    format!("wrong code, {left} attempts left"),
                )])
                .with_header("X-Attempts-Left", left.to_string())));
            }
            rows::use_code(conn, m.id, kind.as_str(), now).await?;
            let mut touched = Touched::default();
            let step = Step {
                action,
                actor: Some(me),
                reason: None,
            };
            if kind == CodeKind::Delivery {
                // No position is stored after this (the trail's insert waits on this lock and
                // then finds the match delivered): the summary is the whole trail.
                custody_log::summarise_trail(conn, m.id, now).await?;
            }
            let mut updated =
                lifecycle::transition(conn, state, &m, step, now, &mut touched).await?;
            let mut recipient = Vec::new();
            match kind {
                CodeKind::Pickup => {
                    match_rows::set_parcel_status(conn, m.parcel_id, "in_transit").await?;
                    rows::stamp(conn, m.id, Stamp::PickedUp, now, None).await?;
                    recipient = issue(conn, state, &updated, CodeKind::Delivery, now).await?;
                }
                CodeKind::Delivery => {
                    match_rows::set_parcel_status(conn, m.parcel_id, "delivered").await?;
                    let delay = state.settings.payments.release_delay_secs;
                    let release_at =
                        now + Duration::seconds(i64::try_from(delay).unwrap_or(i64::MAX / 1000));
                    rows::stamp(conn, m.id, Stamp::Delivered, now, Some(release_at)).await?;
                    if delay == 0 {
                        updated = settle::release(conn, state, &updated, now, &mut touched).await?;
                    }
                }
            }
            touched.parcels.push(m.parcel_id);
            Ok::<_, AppError>(Ok((updated, touched, recipient)))
        })
        .await?;
    let (row, touched, recipient) = outcome?;
    let events = match_rows::events(&mut conn, row.id).await?;
    drop(conn);
    // A release may have queued a payout; a pickup, the recipient's messages.
    state.payments.kick.notify_one();
    state
        .delivery
        .queued(&state.metrics.notifications, recipient);
    touched.publish(state).await;
    Ok(view(row, Some(events)))
}

fn locked(kind: CodeKind) -> AppError {
    AppError::new(
        StatusCode::LOCKED,
        "code_locked",
        match kind {
            CodeKind::Pickup => "Too many wrong attempts; the sender must reissue the pickup code.",
            CodeKind::Delivery => "Too many wrong attempts; the delivery code is locked.",
        },
    )
}

/// `POST /api/matches/{id}/codes/pickup|delivery`: the sender replaces a code (a new code,
/// attempts reset, a new validity window), e.g. after it was locked or expired — the pickup
/// code before pickup, the delivery code while in transit.
pub async fn reissue(
    state: &AppState,
    auth: AuthUser,
    id: MatchId,
    kind: CodeKind,
) -> Result<MatchView, AppError> {
    let during = match kind {
        CodeKind::Pickup => MatchStatus::Paid,
        CodeKind::Delivery => MatchStatus::InTransit,
    };
    let now = Utc::now();
    let mut conn = db::conn(&state.db).await?;
    let row = conn
        .transaction(async |conn| {
            let why = "Only the sender can reissue a code.";
            let m = lifecycle::lock_as(conn, id.0, auth.user_id.0, Party::Sender, why).await?;
            if m.status != during.as_str() {
                return Err(AppError::conflict(
                    "invalid_transition",
                    format!(
                        "The {} code can be reissued only while the match is {}.",
                        kind.as_str(),
                        during.as_str()
                    ),
                ));
            }
            let recipient = issue(conn, state, &m, kind, now).await?;
            Ok::<_, AppError>((m, recipient))
        })
        .await?;
    let (row, recipient) = row;
    // A reissued delivery code is on its way to the recipient.
    state
        .delivery
        .queued(&state.metrics.notifications, recipient);
    let events = match_rows::events(&mut conn, row.id).await?;
    Ok(view(row, Some(events)))
}
