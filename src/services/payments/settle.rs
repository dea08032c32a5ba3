//! Where held money goes: released to the traveler after delivery (the sweeper), back to the
//! sender on cancellation (the product's rules), and the worker that makes the provider calls
//! (refunds, payouts) queued by committed transactions, with backoff and a limit.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use super::post;
use super::provider::{PaymentProvider, ProviderError};

use crate::db;
use crate::domain::matching::{MatchAction, MatchStatus};
use crate::error::AppError;
use crate::models::matches::MatchRow;
use crate::models::payments::{
    self as rows, NewOp, NewWithdrawal, OpRow, PaymentRow, WithdrawalRow,
};
use crate::models::{parcels, trips};
use crate::services::ledger::{Account, Reference};
use crate::services::matching::lifecycle::{self, Step, Touched};
use crate::services::notifications::{self, Note};
use crate::state::AppState;

/// Most matches (or provider calls) one sweep takes.
const SWEEP_BATCH: i64 = 100;
/// A claimed provider call is not retried by another worker for this long.
const OP_LEASE_SECS: i64 = 60;
/// A sender cancelling less than this before departure gets 80 % back.
const LATE_CANCEL_HOURS: i64 = 24;
/// The refunded share of a late sender cancellation, in basis points (the rest goes to the
/// traveler, no fee taken; rounded half up in the sender's favour).
const LATE_CANCEL_REFUND_BPS: i64 = 8_000;

/// Refunds `amount` of a match's payment: the ledger moves it from the held funds back to the
/// provider's clearing account now, and the provider call is queued (same transaction).
pub async fn refund(
    conn: &mut AsyncPgConnection,
    m: &MatchRow,
    p: &PaymentRow,
    amount: i64,
) -> Result<(), AppError> {
    if amount == 0 {
        return Ok(());
    }
    let key = format!("match:{}:refund", m.id);
    post(
        conn,
        key.clone(),
        Account::MatchHeld(m.id),
        Account::ProviderClearing,
        amount,
        &m.currency,
        Reference::Match(m.id),
    )
    .await?;
    rows::enqueue_op(
        conn,
        &NewOp {
            id: Uuid::now_v7(),
            kind: "refund",
            match_id: Some(m.id),
            withdrawal_id: None,
            amount,
            currency: &p.currency,
            idempotency_key: &key,
            status: "pending",
        },
    )
    .await?;
    Ok(())
}

/// How a cancellation of a paid match splits the price: (refund to the sender, share to the
/// traveler, strike for the traveler).
pub fn cancellation_split(
    price: i64,
    by_traveler: bool,
    departure_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> (i64, i64, bool) {
    if by_traveler {
        return (price, 0, true);
    }
    if departure_at - now > Duration::hours(LATE_CANCEL_HOURS) {
        return (price, 0, false);
    }
    let refund =
        i64::try_from((i128::from(price) * i128::from(LATE_CANCEL_REFUND_BPS) + 5_000) / 10_000)
            .unwrap_or(price)
            .min(price);
    (refund, price - refund, false)
}

/// The money of a paid match being cancelled by a party (inside the cancellation's
/// transaction, after the state change): refund, the traveler's share, the strike.
pub async fn on_cancel(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    m: &MatchRow,
    by: Uuid,
    departure_at: DateTime<Utc>,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<(), AppError> {
    let p = rows::payment_of_match(conn, m.id)
        .await?
        .filter(|p| p.status == "succeeded")
        .ok_or_else(|| AppError::internal("a paid match without a settled payment"))?;
    let (back, share, strike) = cancellation_split(m.price, by == m.traveler_id, departure_at, now);
    refund(conn, m, &p, back).await?;
    if back > 0 {
        let note = Note {
            user: m.sender_id,
            kind: "refund_issued",
            data: serde_json::json!({"match_id": m.id, "amount": {"amount": back, "currency": m.currency}}),
        };
        touched
            .notes
            .extend(notifications::write(conn, state, &[note]).await?);
    }
    post(
        conn,
        format!("match:{}:cancel_share", m.id),
        Account::MatchHeld(m.id),
        Account::UserAvailable(m.traveler_id),
        share,
        &m.currency,
        Reference::Match(m.id),
    )
    .await?;
    if strike {
        rows::add_strike(conn, m.traveler_id).await?;
    }
    Ok(())
}

/// Releases a delivered match's held funds (inside the caller's transaction): price − fee to
/// the traveler, the fee to the platform; the match is `completed`.
pub async fn release(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    m: &MatchRow,
    now: DateTime<Utc>,
    touched: &mut Touched,
) -> Result<MatchRow, AppError> {
    post(
        conn,
        format!("match:{}:release", m.id),
        Account::MatchHeld(m.id),
        Account::UserAvailable(m.traveler_id),
        m.price - m.fee,
        &m.currency,
        Reference::Match(m.id),
    )
    .await?;
    post(
        conn,
        format!("match:{}:fee", m.id),
        Account::MatchHeld(m.id),
        Account::PlatformRevenue,
        m.fee,
        &m.currency,
        Reference::Match(m.id),
    )
    .await?;
    // A traveler with a connected account is paid out at once, funded by this match's charge.
    let payout = m.price - m.fee;
    if let (Some(destination), true) =
        (rows::payout_account(conn, m.traveler_id).await?, payout > 0)
    {
        let charge = rows::payment_of_match(conn, m.id)
            .await?
            .and_then(|p| p.charge_id);
        start_withdrawal(
            state,
            conn,
            m.traveler_id,
            super::money(payout, &m.currency)?,
            &destination,
            Purpose::Release {
                match_id: m.id,
                charge: charge.as_deref(),
            },
        )
        .await?;
    }
    let step = Step {
        action: MatchAction::Complete,
        actor: None,
        reason: Some("funds_released"),
    };
    let done = lifecycle::transition(conn, state, m, step, now, touched).await?;
    rows::count_delivery(conn, m.traveler_id).await?;
    Ok(done)
}

/// Releases every delivered match whose release time has come, each in its own transaction
/// (the same lock order as every other change; `SKIP LOCKED` on the match, so several nodes
/// sweeping release each once).
pub async fn sweep_releases(state: &AppState) -> Result<usize, AppError> {
    let now = Utc::now();
    let mut conn = db::conn(&state.db).await?;
    let due = rows::due_releases(&mut conn, now, SWEEP_BATCH).await?;
    let mut touched = Touched::default();
    for (match_id, trip_id, parcel_id) in due {
        let one = conn
            .transaction(async |conn| {
                trips::find_for_update(conn, trip_id).await?;
                parcels::find_for_update(conn, parcel_id).await?;
                let Some(m) = crate::models::matches::claim(conn, match_id).await? else {
                    return Ok::<_, AppError>(None);
                };
                if m.status != MatchStatus::Delivered.as_str() {
                    return Ok(None); // disputed or released meanwhile
                }
                let mut one = Touched::default();
                release(conn, state, &m, now, &mut one).await?;
                Ok(Some(one))
            })
            .await;
        // One match that cannot be released must not hold up the others.
        match one {
            Ok(Some(one)) => touched.absorb(one),
            Ok(None) => {}
            Err(e) => tracing::error!(%match_id, error = %e, "release failed"),
        }
    }
    let n = touched.matches.len();
    drop(conn);
    touched.publish(state).await;
    Ok(n)
}

/// Makes the due provider calls. Each is claimed with a lease (an atomic update, so two
/// workers never call at once), called with its idempotency key, then finished: done, retried
/// later with exponential backoff and jitter, or failed after `payments.max_attempts` (a
/// failed payout goes back to the user's available balance).
pub async fn run_ops(state: &AppState) -> Result<usize, AppError> {
    let now = Utc::now();
    let mut conn = db::conn(&state.db).await?;
    let due = rows::due_ops(&mut conn, now, SWEEP_BATCH).await?;
    drop(conn);
    let mut handled = 0;
    for id in due {
        match run_op(state, id).await {
            Ok(true) => handled += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(op = %id, error = %e, "provider call worker"),
        }
    }
    Ok(handled)
}

/// Runs one provider call if it is due and unclaimed; `true` when this worker ran it.
///
/// Only the provider's explicit refusal fails a payout back to the user's balance: a call
/// that never got a clear answer (timeouts, 5xx) may have gone through, so after the last
/// attempt it is parked as `failed` with the money still in flight, for `airbar reconcile`
/// and an operator to settle against the provider's records.
pub async fn run_op(state: &AppState, id: Uuid) -> Result<bool, AppError> {
    let now = Utc::now();
    let mut conn = db::conn(&state.db).await?;
    // Longer than a provider call can take; stored to the microsecond so it compares equal.
    let lease_secs = OP_LEASE_SECS
        .max(i64::try_from(state.settings.stripe.timeout_ms / 1000 * 2).unwrap_or(OP_LEASE_SECS));
    let lease = (now + Duration::seconds(lease_secs)).trunc_subsecs(6);
    let Some(op) = rows::lease_op(&mut conn, id, now, lease).await? else {
        return Ok(false);
    };
    drop(conn);
    // A call that went through but whose recording failed is not made again.
    let result = match &op.provider_ref {
        Some(reference) => Ok(reference.clone()),
        None => call(state, &op).await,
    };
    let mut conn = db::conn(&state.db).await?;
    if let Ok(reference) = &result {
        rows::note_ref(&mut conn, op.id, lease, reference).await?;
    }
    let max = i32::try_from(state.settings.payments.max_attempts).unwrap_or(i32::MAX);
    let retry_at = Utc::now() + backoff(state.settings.payments.sweep_interval_ms, op.attempts);
    let finished = conn
        .transaction(async |conn| {
            match &result {
                Ok(reference) => {
                    if rows::finish_op(conn, op.id, lease, "done", Some(reference), None).await? == 1 {
                        after_done(conn, &op, reference).await?;
                        state.metrics.payments.op(&op.kind, "done");
                        return withdrawal_note(conn, state, &op, "withdrawal_paid").await;
                    }
                }
                Err(ProviderError::Transient(e)) if op.attempts + 1 < max => {
                    rows::retry_op(conn, op.id, lease, retry_at, e).await?;
                    state.metrics.payments.op(&op.kind, "retried");
                }
                Err(ProviderError::Rejected(e)) => {
                    if rows::finish_op(conn, op.id, lease, "failed", None, Some(e)).await? == 1 {
                        after_refused(conn, &op, e).await?;
                        let stored = withdrawal_note(conn, state, &op, "withdrawal_failed").await?;
                        state.metrics.payments.op(&op.kind, "failed");
                        tracing::error!(op = %op.id, kind = %op.kind, error = %e, "the provider refused a call");
                        return Ok(stored);
                    }
                }
                Err(ProviderError::Transient(e)) => {
                    let why = format!("no clear answer after {max} attempts: {e}");
                    if rows::finish_op(conn, op.id, lease, "failed", None, Some(&why)).await? == 1 {
                        state.metrics.payments.op(&op.kind, "in_doubt");
                        tracing::error!(op = %op.id, kind = %op.kind, error = %e, "provider call in doubt; reconcile it");
                    }
                }
            }
            Ok::<_, AppError>(Vec::new())
        })
        .await;
    if let Ok(stored) = &finished {
        notifications::publish(state, stored.clone()).await;
    }
    if let Err(e) = finished {
        // Count the attempt anyway, so a failing follow-up cannot retry forever unseen.
        tracing::warn!(op = %op.id, error = %e, "recording a provider call failed");
        let mut conn = db::conn(&state.db).await?;
        rows::retry_op(&mut conn, op.id, lease, retry_at, &e.to_string()).await?;
    }
    Ok(true)
}

/// The user's notification about their withdrawal's outcome (none for refunds: the sender
/// heard at cancellation).
async fn withdrawal_note(
    conn: &mut AsyncPgConnection,
    state: &AppState,
    op: &OpRow,
    kind: &'static str,
) -> Result<Vec<crate::models::deliveries::StoredNotification>, AppError> {
    let Some(id) = op.withdrawal_id else {
        return Ok(Vec::new());
    };
    let w = rows::withdrawal_for_update(conn, id).await?;
    let note = Note {
        user: w.user_id,
        kind,
        data: serde_json::json!({
            "withdrawal_id": w.id,
            "amount": {"amount": w.amount, "currency": w.currency},
        }),
    };
    notifications::write(conn, state, &[note]).await
}

/// The payout went through: the money leaves the in-flight account for the user's paid-out
/// balance and the withdrawal is `paid` with the provider's transfer.
async fn settle_withdrawal(
    conn: &mut AsyncPgConnection,
    w: &WithdrawalRow,
    transfer_id: &str,
) -> Result<WithdrawalRow, AppError> {
    post(
        conn,
        format!("withdrawal:{}:settle", w.id),
        Account::PayoutsInFlight,
        Account::UserPaidOut(w.user_id),
        w.amount,
        &w.currency,
        Reference::Withdrawal(w.id),
    )
    .await?;
    Ok(rows::set_withdrawal(conn, w.id, "paid", Some(transfer_id), None).await?)
}

/// Provider calls back off from the sweep interval up to an hour.
fn backoff(base_ms: u64, attempts: i32) -> Duration {
    crate::services::retry::backoff(base_ms, 3_600_000, attempts)
}

async fn call(state: &AppState, op: &OpRow) -> Result<String, ProviderError> {
    let provider = &state.payments.provider;
    let amount = super::money(op.amount, &op.currency)
        .map_err(|e| ProviderError::Rejected(e.to_string()))?;
    let mut conn = db::conn(&state.db)
        .await
        .map_err(|e| ProviderError::Transient(e.to_string()))?;
    match op.kind.as_str() {
        "refund" => {
            let match_id = op.match_id.unwrap_or_default();
            let intent = rows::payment_of_match(&mut conn, match_id)
                .await
                .map_err(|e| ProviderError::Transient(e.to_string()))?
                .and_then(|p| p.intent_id)
                .ok_or_else(|| ProviderError::Rejected("no charge to refund".to_owned()))?;
            drop(conn);
            provider.refund(&intent, amount, &op.idempotency_key).await
        }
        _ => {
            let w = rows::find_withdrawal(&mut conn, op.withdrawal_id.unwrap_or_default())
                .await
                .map_err(|e| ProviderError::Transient(e.to_string()))?
                .ok_or_else(|| ProviderError::Rejected("no such withdrawal".to_owned()))?;
            drop(conn);
            // A release payout joins its match's transfer group and is funded by its charge.
            let group = match w.match_id {
                Some(m) => format!("match:{m}"),
                None => format!("withdrawal:{}", w.id),
            };
            provider
                .transfer(
                    &w.destination,
                    amount,
                    &group,
                    w.source_charge.as_deref(),
                    &op.idempotency_key,
                )
                .await
        }
    }
}

async fn after_done(
    conn: &mut AsyncPgConnection,
    op: &OpRow,
    reference: &str,
) -> Result<(), AppError> {
    match (op.match_id, op.withdrawal_id) {
        (Some(match_id), _) => {
            if let Some(p) = rows::payment_of_match(conn, match_id).await? {
                rows::add_refunded(conn, p.id, op.amount).await?;
            }
        }
        (None, Some(w)) => {
            let w = rows::withdrawal_for_update(conn, w).await?;
            if w.status == "pending" {
                settle_withdrawal(conn, &w, reference).await?;
            }
        }
        (None, None) => {}
    }
    Ok(())
}

async fn after_refused(
    conn: &mut AsyncPgConnection,
    op: &OpRow,
    error: &str,
) -> Result<(), AppError> {
    if let Some(w) = op.withdrawal_id {
        reverse_withdrawal(conn, w, error).await?;
    }
    // A refund that cannot be made stays `failed` in payment_ops for an operator (reconcile
    // reports it): the ledger already owes it to the sender through the clearing account.
    Ok(())
}

/// Why money leaves a user's balance.
#[derive(Debug, Clone, Copy)]
pub enum Purpose<'a> {
    /// Asked for in the wallet (with the request's Idempotency-Key, if any).
    Withdrawal { request_key: Option<&'a str> },
    /// A match's release paid out at once, funded by its charge.
    Release {
        match_id: Uuid,
        charge: Option<&'a str>,
    },
}

/// Starts a payout of `amount` from the user's available balance to `destination` (inside the
/// caller's transaction): the ledger moves it to payouts in flight and the transfer is queued.
/// Returns the withdrawal and its queued call.
pub async fn start_withdrawal(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    user: Uuid,
    amount: crate::domain::money::Money,
    destination: &str,
    purpose: Purpose<'_>,
) -> Result<(WithdrawalRow, Uuid), AppError> {
    let id = Uuid::now_v7();
    let currency = amount.currency().code();
    let (match_id, source_charge, request_key) = match purpose {
        Purpose::Withdrawal { request_key } => (None, None, request_key),
        Purpose::Release { match_id, charge } => (Some(match_id), charge, None),
    };
    let w = rows::insert_withdrawal(
        conn,
        &NewWithdrawal {
            id,
            user_id: user,
            amount: amount.amount(),
            currency,
            destination,
            status: "pending",
            provider: state.payments.provider.name(),
            match_id,
            source_charge,
            request_key,
        },
    )
    .await?;
    post(
        conn,
        format!("withdrawal:{id}:start"),
        Account::UserAvailable(user),
        Account::PayoutsInFlight,
        amount.amount(),
        currency,
        Reference::Withdrawal(id),
    )
    .await?;
    let op = Uuid::now_v7();
    rows::enqueue_op(
        conn,
        &NewOp {
            id: op,
            kind: "transfer",
            match_id: None,
            withdrawal_id: Some(id),
            amount: amount.amount(),
            currency,
            idempotency_key: &format!("withdrawal:{id}"),
            status: "pending",
        },
    )
    .await?;
    Ok((w, op))
}

/// A transfer the provider reversed (in part or in full) after it settled: the reversed amount
/// goes back to the user's available balance, once per cumulative total (`total_reversed` is
/// the transfer's `amount_reversed`), so duplicate and out-of-order events add nothing twice.
/// `Err(not_ready)` while the transfer's own settlement is not recorded yet (retry later).
pub async fn reverse_transferred(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    transfer_id: &str,
    total_reversed: i64,
) -> Result<bool, AppError> {
    let mut w = rows::withdrawal_for_update(conn, id).await?;
    if w.transfer_id.as_deref().is_some_and(|t| t != transfer_id) {
        return Ok(false); // another transfer in the same group: not this withdrawal's
    }
    if w.status == "pending" {
        if !rows::payout_in_doubt(conn, w.id).await? {
            return Err(AppError::conflict(
                "not_ready",
                "The transfer's settlement is not recorded yet; retry.",
            ));
        }
        // The call was parked in doubt, yet the transfer exists: it went through. Settle it
        // first, then reverse.
        w = settle_withdrawal(conn, &w, transfer_id).await?;
    }
    if w.status != "paid" {
        return Ok(false);
    }
    let total = total_reversed.min(w.amount);
    let already = rows::reversed_so_far(conn, w.id).await?;
    let delta = total - already;
    if delta <= 0 {
        return Ok(false);
    }
    post(
        conn,
        format!("withdrawal:{}:reversed:{total}", w.id),
        Account::UserPaidOut(w.user_id),
        Account::UserAvailable(w.user_id),
        delta,
        &w.currency,
        Reference::Withdrawal(w.id),
    )
    .await?;
    if total >= w.amount {
        rows::set_withdrawal(
            conn,
            w.id,
            "failed",
            w.transfer_id.as_deref(),
            Some("reversed"),
        )
        .await?;
    }
    Ok(true)
}

/// A withdrawal the provider refused goes back to the user's available balance (once).
pub async fn reverse_withdrawal(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    reason: &str,
) -> Result<bool, AppError> {
    let w = rows::withdrawal_for_update(conn, id).await?;
    if w.status != "pending" {
        return Ok(false);
    }
    post(
        conn,
        format!("withdrawal:{}:reverse", w.id),
        Account::PayoutsInFlight,
        Account::UserAvailable(w.user_id),
        w.amount,
        &w.currency,
        Reference::Withdrawal(w.id),
    )
    .await?;
    rows::set_withdrawal(conn, w.id, "failed", w.transfer_id.as_deref(), Some(reason)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellation_splits_follow_the_rules_and_never_lose_a_cent() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let early = now + Duration::hours(25);
        let late = now + Duration::hours(23);
        assert_eq!(cancellation_split(4000, true, late, now), (4000, 0, true));
        assert_eq!(
            cancellation_split(4000, false, early, now),
            (4000, 0, false)
        );
        assert_eq!(
            cancellation_split(4000, false, late, now),
            (3200, 800, false)
        );
        // 80 % of 1001 = 800.8 → 801 to the sender, 200 to the traveler.
        assert_eq!(
            cancellation_split(1001, false, late, now),
            (801, 200, false)
        );
        for price in 0..2_000 {
            let (back, share, _) = cancellation_split(price, false, late, now);
            assert_eq!(back + share, price);
            assert!(back >= 0 && share >= 0);
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempts in 0..30 {
            let d = backoff(1000, attempts);
            assert!(d <= Duration::hours(1));
            assert!(d >= Duration::milliseconds(500));
        }
        assert!(backoff(1000, 5) >= Duration::seconds(16));
    }
}
