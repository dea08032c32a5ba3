//! Payment tables: the sender's charge per match, withdrawals, the provider calls still to make
//! (`payment_ops`), webhook events seen, idempotency keys, and custody codes.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{
    idempotency_keys, match_codes, matches, payment_ops, payments, users, webhook_events,
    withdrawals,
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg))]
pub struct PaymentRow {
    pub id: Uuid,
    pub match_id: Uuid,
    pub provider: String,
    pub intent_id: Option<String>,
    pub charge_id: Option<String>,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub refunded: i64,
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub async fn payment_of_match(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(payments::match_id.eq(match_id))
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn payment_by_intent(
    conn: &mut AsyncPgConnection,
    intent_id: &str,
) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(payments::intent_id.eq(intent_id))
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The match's payment, created `pending` on first use.
pub async fn open_payment(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
    provider: &str,
    amount: i64,
    currency: &str,
) -> QueryResult<PaymentRow> {
    diesel::insert_into(payments::table)
        .values((
            payments::id.eq(Uuid::now_v7()),
            payments::match_id.eq(match_id),
            payments::provider.eq(provider),
            payments::status.eq("pending"),
            payments::amount.eq(amount),
            payments::currency.eq(currency),
        ))
        .on_conflict(payments::match_id)
        .do_nothing()
        .execute(conn)
        .await?;
    payments::table
        .filter(payments::match_id.eq(match_id))
        .select(PaymentRow::as_select())
        .for_update()
        .first(conn)
        .await
}

/// Marks the payment succeeded (under the match lock, by `confirm_charge` only).
pub async fn succeed_payment(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    intent_id: &str,
    charge_id: Option<&str>,
) -> QueryResult<PaymentRow> {
    diesel::update(payments::table.find(id))
        .set((
            payments::status.eq("succeeded"),
            payments::intent_id.eq(intent_id),
            payments::charge_id.eq(charge_id),
            payments::failure.eq(None::<String>),
        ))
        .returning(PaymentRow::as_returning())
        .get_result(conn)
        .await
}

/// Marks a payment that has not succeeded as failed; a succeeded one is never changed (0).
pub async fn fail_payment(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    reason: &str,
) -> QueryResult<usize> {
    diesel::update(payments::table.find(id))
        .filter(payments::status.ne("succeeded"))
        .set((payments::status.eq("failed"), payments::failure.eq(reason)))
        .execute(conn)
        .await
}

pub async fn add_refunded(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    amount: i64,
) -> QueryResult<usize> {
    diesel::update(payments::table.find(id))
        .set(payments::refunded.eq(payments::refunded + amount))
        .execute(conn)
        .await
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = withdrawals, check_for_backend(diesel::pg::Pg))]
pub struct WithdrawalRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub amount: i64,
    pub currency: String,
    pub destination: String,
    pub status: String,
    pub provider: String,
    pub transfer_id: Option<String>,
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub match_id: Option<Uuid>,
    pub source_charge: Option<String>,
    pub request_key: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = withdrawals)]
pub struct NewWithdrawal<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub amount: i64,
    pub currency: &'a str,
    pub destination: &'a str,
    pub status: &'a str,
    pub provider: &'a str,
    pub match_id: Option<Uuid>,
    pub source_charge: Option<&'a str>,
    pub request_key: Option<&'a str>,
}

/// The withdrawal a request with this Idempotency-Key made, if any.
pub async fn withdrawal_by_request(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    key: &str,
) -> QueryResult<Option<WithdrawalRow>> {
    withdrawals::table
        .filter(withdrawals::user_id.eq(user))
        .filter(withdrawals::request_key.eq(key))
        .select(WithdrawalRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn insert_withdrawal(
    conn: &mut AsyncPgConnection,
    new: &NewWithdrawal<'_>,
) -> QueryResult<WithdrawalRow> {
    diesel::insert_into(withdrawals::table)
        .values(new)
        .returning(WithdrawalRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn withdrawal_for_update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<WithdrawalRow> {
    withdrawals::table
        .find(id)
        .select(WithdrawalRow::as_select())
        .for_update()
        .first(conn)
        .await
}

pub async fn find_withdrawal(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> QueryResult<Option<WithdrawalRow>> {
    withdrawals::table
        .find(id)
        .select(WithdrawalRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn withdrawal_by_transfer(
    conn: &mut AsyncPgConnection,
    transfer_id: &str,
) -> QueryResult<Option<WithdrawalRow>> {
    withdrawals::table
        .filter(withdrawals::transfer_id.eq(transfer_id))
        .select(WithdrawalRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn set_withdrawal(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    status: &str,
    transfer_id: Option<&str>,
    failure: Option<&str>,
) -> QueryResult<WithdrawalRow> {
    diesel::update(withdrawals::table.find(id))
        .set((
            withdrawals::status.eq(status),
            withdrawals::transfer_id.eq(transfer_id),
            withdrawals::failure.eq(failure),
        ))
        .returning(WithdrawalRow::as_returning())
        .get_result(conn)
        .await
}

/// A user's pending withdrawals total per currency.
pub async fn pending_withdrawals(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Vec<(String, i64)>> {
    let rows: Vec<(String, Option<i64>)> = withdrawals::table
        .filter(withdrawals::user_id.eq(user))
        .filter(withdrawals::status.eq("pending"))
        .group_by(withdrawals::currency)
        .select((
            withdrawals::currency,
            diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::BigInt>>(
                "sum(amount)::bigint",
            ),
        ))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(c, s)| (c, s.unwrap_or(0))).collect())
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = payment_ops, check_for_backend(diesel::pg::Pg))]
pub struct OpRow {
    pub id: Uuid,
    pub kind: String,
    pub match_id: Option<Uuid>,
    pub withdrawal_id: Option<Uuid>,
    pub amount: i64,
    pub currency: String,
    pub idempotency_key: String,
    pub status: String,
    pub provider_ref: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = payment_ops)]
pub struct NewOp<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    pub match_id: Option<Uuid>,
    pub withdrawal_id: Option<Uuid>,
    pub amount: i64,
    pub currency: &'a str,
    pub idempotency_key: &'a str,
    pub status: &'a str,
}

/// Queues a provider call; the same key again is a no-op.
pub async fn enqueue_op(conn: &mut AsyncPgConnection, new: &NewOp<'_>) -> QueryResult<usize> {
    diesel::insert_into(payment_ops::table)
        .values(new)
        .on_conflict(payment_ops::idempotency_key)
        .do_nothing()
        .execute(conn)
        .await
}

/// Due provider calls, oldest first (not locked: `claim_op` locks one).
pub async fn due_ops(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<Uuid>> {
    payment_ops::table
        .filter(payment_ops::status.eq("pending"))
        .filter(payment_ops::next_attempt_at.le(now))
        .order(payment_ops::next_attempt_at.asc())
        .limit(limit)
        .select(payment_ops::id)
        .load(conn)
        .await
}

/// Claims a due op for `until` (an atomic update: of several workers one gets it), or `None`
/// when it is no longer due (done, or leased by another worker).
pub async fn lease_op(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> QueryResult<Option<OpRow>> {
    diesel::update(payment_ops::table.find(id))
        .filter(payment_ops::status.eq("pending"))
        .filter(payment_ops::next_attempt_at.le(now))
        .set(payment_ops::next_attempt_at.eq(until))
        .returning(OpRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Ends an op this worker leased (`lease`); 0 when the lease was lost (another worker took the
/// op after it lapsed), and then nothing may follow.
pub async fn finish_op(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    lease: DateTime<Utc>,
    status: &str,
    provider_ref: Option<&str>,
    error: Option<&str>,
) -> QueryResult<usize> {
    diesel::update(payment_ops::table.find(id))
        .filter(payment_ops::status.eq("pending"))
        .filter(payment_ops::next_attempt_at.eq(lease))
        .set((
            payment_ops::status.eq(status),
            payment_ops::provider_ref.eq(provider_ref),
            payment_ops::last_error.eq(error),
            payment_ops::attempts.eq(payment_ops::attempts + 1),
        ))
        .execute(conn)
        .await
}

/// Counts a failed attempt of a leased op and schedules the next at `at`.
pub async fn retry_op(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    lease: DateTime<Utc>,
    at: DateTime<Utc>,
    error: &str,
) -> QueryResult<usize> {
    diesel::update(payment_ops::table.find(id))
        .filter(payment_ops::status.eq("pending"))
        .filter(payment_ops::next_attempt_at.eq(lease))
        .set((
            payment_ops::attempts.eq(payment_ops::attempts + 1),
            payment_ops::next_attempt_at.eq(at),
            payment_ops::last_error.eq(error),
        ))
        .execute(conn)
        .await
}

/// Records a webhook event; `false` when it was seen before.
pub async fn record_webhook(
    conn: &mut AsyncPgConnection,
    id: &str,
    ref_id: Uuid,
    provider: &str,
    kind: &str,
    outcome: &str,
) -> QueryResult<bool> {
    let n = diesel::insert_into(webhook_events::table)
        .values((
            webhook_events::id.eq(id),
            webhook_events::ref_id.eq(ref_id),
            webhook_events::provider.eq(provider),
            webhook_events::kind.eq(kind),
            webhook_events::outcome.eq(outcome),
        ))
        .on_conflict(webhook_events::id)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = idempotency_keys, check_for_backend(diesel::pg::Pg))]
pub struct IdempotencyRow {
    pub user_id: Uuid,
    pub key: String,
    pub request_hash: Vec<u8>,
    pub claim: Uuid,
    pub status_code: Option<i16>,
    pub response: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

/// Claims `key` for this request; `None` when it was already claimed (then `find_key`).
pub async fn claim_key(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    key: &str,
    request_hash: &[u8],
    claim: Uuid,
) -> QueryResult<bool> {
    let n = diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::user_id.eq(user),
            idempotency_keys::key.eq(key),
            idempotency_keys::request_hash.eq(request_hash),
            idempotency_keys::claim.eq(claim),
        ))
        .on_conflict((idempotency_keys::user_id, idempotency_keys::key))
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

pub async fn find_key(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    key: &str,
) -> QueryResult<Option<IdempotencyRow>> {
    idempotency_keys::table
        .find((user, key))
        .select(IdempotencyRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Takes over a claim whose request never finished (its process died or its client went
/// away): only one taker wins.
pub async fn take_over_key(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    key: &str,
    stale: Uuid,
    claim: Uuid,
) -> QueryResult<bool> {
    let n = diesel::update(idempotency_keys::table.find((user, key)))
        .filter(idempotency_keys::status_code.is_null())
        .filter(idempotency_keys::claim.eq(stale))
        .set((
            idempotency_keys::created_at.eq(diesel::dsl::now),
            idempotency_keys::claim.eq(claim),
        ))
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Stores the response of the claim's request (nothing when the claim was taken over).
pub async fn store_response(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    key: &str,
    claim: Uuid,
    status: i16,
    response: &serde_json::Value,
) -> QueryResult<usize> {
    diesel::update(idempotency_keys::table.find((user, key)))
        .filter(idempotency_keys::claim.eq(claim))
        .filter(idempotency_keys::status_code.is_null())
        .set((
            idempotency_keys::status_code.eq(status),
            idempotency_keys::response.eq(response),
        ))
        .execute(conn)
        .await
}

/// Frees the key for a retry (a server error), unless the claim was taken over.
pub async fn release_key(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    key: &str,
    claim: Uuid,
) -> QueryResult<usize> {
    diesel::delete(idempotency_keys::table.find((user, key)))
        .filter(idempotency_keys::claim.eq(claim))
        .filter(idempotency_keys::status_code.is_null())
        .execute(conn)
        .await
}

pub async fn purge_keys(conn: &mut AsyncPgConnection, before: DateTime<Utc>) -> QueryResult<usize> {
    diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(before)))
        .execute(conn)
        .await
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = match_codes, check_for_backend(diesel::pg::Pg))]
pub struct CodeRow {
    pub match_id: Uuid,
    pub kind: String,
    pub salt: Vec<u8>,
    pub code_hash: Vec<u8>,
    pub attempts: i32,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Issues (or reissues: new salt, attempts reset) a code.
pub async fn put_code(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
    kind: &str,
    salt: &[u8],
    code_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::insert_into(match_codes::table)
        .values((
            match_codes::match_id.eq(match_id),
            match_codes::kind.eq(kind),
            match_codes::salt.eq(salt),
            match_codes::code_hash.eq(code_hash),
            match_codes::expires_at.eq(expires_at),
        ))
        .on_conflict((match_codes::match_id, match_codes::kind))
        .do_update()
        .set((
            match_codes::salt.eq(salt),
            match_codes::code_hash.eq(code_hash),
            match_codes::expires_at.eq(expires_at),
            match_codes::attempts.eq(0),
            match_codes::used_at.eq(None::<DateTime<Utc>>),
        ))
        .execute(conn)
        .await
}

pub async fn codes_of(conn: &mut AsyncPgConnection, match_id: Uuid) -> QueryResult<Vec<CodeRow>> {
    match_codes::table
        .filter(match_codes::match_id.eq(match_id))
        .select(CodeRow::as_select())
        .load(conn)
        .await
}

pub async fn code_for_update(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
    kind: &str,
) -> QueryResult<Option<CodeRow>> {
    match_codes::table
        .find((match_id, kind))
        .select(CodeRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn count_wrong_attempt(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
    kind: &str,
) -> QueryResult<i32> {
    diesel::update(match_codes::table.find((match_id, kind)))
        .set(match_codes::attempts.eq(match_codes::attempts + 1))
        .returning(match_codes::attempts)
        .get_result(conn)
        .await
}

pub async fn use_code(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
    kind: &str,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(match_codes::table.find((match_id, kind)))
        .set(match_codes::used_at.eq(now))
        .execute(conn)
        .await
}

/// Stamps a money moment on the match (`paid_at`, …) and the release time.
pub async fn stamp(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
    column: Stamp,
    at: DateTime<Utc>,
    release_at: Option<DateTime<Utc>>,
) -> QueryResult<usize> {
    let target = matches::table.find(match_id);
    match column {
        Stamp::Paid => {
            diesel::update(target)
                .set(matches::paid_at.eq(at))
                .execute(conn)
                .await
        }
        Stamp::PickedUp => {
            diesel::update(target)
                .set(matches::picked_up_at.eq(at))
                .execute(conn)
                .await
        }
        Stamp::Delivered => {
            diesel::update(target)
                .set((
                    matches::delivered_at.eq(at),
                    matches::release_at.eq(release_at),
                ))
                .execute(conn)
                .await
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Stamp {
    Paid,
    PickedUp,
    Delivered,
}

/// Delivered matches whose release time has come (ids with trip and parcel), oldest first.
pub async fn due_releases(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> QueryResult<Vec<(Uuid, Uuid, Uuid)>> {
    matches::table
        .filter(matches::status.eq("delivered"))
        .filter(matches::release_at.le(now))
        .order(matches::release_at.asc())
        .limit(limit)
        .select((matches::id, matches::trip_id, matches::parcel_id))
        .load(conn)
        .await
}

pub async fn payout_account(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> QueryResult<Option<String>> {
    users::table
        .find(user)
        .select(users::payout_account_id)
        .first(conn)
        .await
}

pub async fn set_payout_account(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    account: &str,
) -> QueryResult<usize> {
    diesel::update(users::table.find(user))
        .set(users::payout_account_id.eq(account))
        .execute(conn)
        .await
}

pub async fn add_strike(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<usize> {
    diesel::update(users::table.find(user))
        .set(users::strikes.eq(users::strikes + 1))
        .execute(conn)
        .await
}

pub async fn count_delivery(conn: &mut AsyncPgConnection, user: Uuid) -> QueryResult<usize> {
    diesel::update(users::table.find(user))
        .set(users::completed_deliveries.eq(users::completed_deliveries + 1))
        .execute(conn)
        .await
}

pub async fn webhook_seen(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        webhook_events::table.filter(webhook_events::id.eq(id)),
    ))
    .get_result(conn)
    .await
}

/// Records the intent's id on the match's payment if it has none yet.
pub async fn adopt_intent(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
    intent_id: &str,
) -> QueryResult<usize> {
    diesel::update(payments::table)
        .filter(payments::match_id.eq(match_id))
        .filter(payments::intent_id.is_null())
        .set(payments::intent_id.eq(intent_id))
        .execute(conn)
        .await
}

/// What reversals of a settled withdrawal have already put back.
pub async fn reversed_so_far(conn: &mut AsyncPgConnection, withdrawal: Uuid) -> QueryResult<i64> {
    use crate::schema::ledger_transfers;
    let sum: Option<i64> = ledger_transfers::table
        .filter(ledger_transfers::reference_kind.eq("withdrawal"))
        .filter(ledger_transfers::reference_id.eq(withdrawal))
        .filter(
            ledger_transfers::idempotency_key.like(format!("withdrawal:{withdrawal}:reversed:%")),
        )
        .select(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::BigInt>,
        >("sum(amount)::bigint"))
        .first(conn)
        .await?;
    Ok(sum.unwrap_or(0))
}

/// The withdrawal a transfer group names (`withdrawal:<id>`, or `match:<id>` for a release
/// payout).
pub async fn withdrawal_by_group(
    conn: &mut AsyncPgConnection,
    group: &str,
) -> QueryResult<Option<WithdrawalRow>> {
    let (kind, id) = match group.split_once(':') {
        Some((kind, id)) => (kind, id.parse::<Uuid>().ok()),
        None => return Ok(None),
    };
    let Some(id) = id else { return Ok(None) };
    let query = withdrawals::table
        .select(WithdrawalRow::as_select())
        .into_boxed();
    let query = match kind {
        "withdrawal" => query.filter(withdrawals::id.eq(id)),
        "match" => query.filter(withdrawals::match_id.eq(id)),
        _ => return Ok(None),
    };
    query.first(conn).await.optional()
}

/// Forgets webhook event ids older than `before` (Stripe retries an event for 3 days).
pub async fn purge_webhooks(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::delete(webhook_events::table.filter(webhook_events::received_at.lt(before)))
        .execute(conn)
        .await
}

/// Whether the withdrawal's transfer call was parked in doubt (no clear answer).
pub async fn payout_in_doubt(conn: &mut AsyncPgConnection, withdrawal: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        payment_ops::table
            .filter(payment_ops::withdrawal_id.eq(withdrawal))
            .filter(payment_ops::status.eq("failed")),
    ))
    .get_result(conn)
    .await
}

/// Keeps the provider's id of a call that went through, before anything else is recorded.
pub async fn note_ref(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    lease: DateTime<Utc>,
    reference: &str,
) -> QueryResult<usize> {
    diesel::update(payment_ops::table.find(id))
        .filter(payment_ops::status.eq("pending"))
        .filter(payment_ops::next_attempt_at.eq(lease))
        .set(payment_ops::provider_ref.eq(reference))
        .execute(conn)
        .await
}
