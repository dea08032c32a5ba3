//! Wallet reads over the ledger: a user's balances per currency and the transfer lines
//! touching their accounts.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

#[derive(Debug, diesel::QueryableByName)]
pub struct BalanceRow {
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = BigInt)]
    pub available: i64,
    #[diesel(sql_type = BigInt)]
    pub held: i64,
    #[diesel(sql_type = BigInt)]
    pub held_from_me: i64,
    #[diesel(sql_type = BigInt)]
    pub paid_out: i64,
}

/// Per currency: the user's available and paid-out accounts, and the held funds of the
/// matches they carry (`held`) or paid for (`held_from_me`).
pub async fn balances(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> diesel::QueryResult<Vec<BalanceRow>> {
    diesel::sql_query(
        r"
        WITH mine AS (
            SELECT id, traveler_id = $1 AS carrying FROM matches
             WHERE sender_id = $1 OR traveler_id = $1
        )
        SELECT a.currency,
               coalesce(sum(a.balance) FILTER (WHERE a.kind = 'user_available'), 0)::bigint AS available,
               coalesce(sum(a.balance) FILTER (WHERE a.kind = 'match_held' AND m.carrying), 0)::bigint AS held,
               coalesce(sum(a.balance) FILTER (WHERE a.kind = 'match_held' AND NOT m.carrying), 0)::bigint AS held_from_me,
               coalesce(sum(a.balance) FILTER (WHERE a.kind = 'user_paid_out'), 0)::bigint AS paid_out
          FROM ledger_accounts a
          LEFT JOIN mine m ON a.kind = 'match_held' AND m.id = a.owner_id
         WHERE (a.kind IN ('user_available', 'user_paid_out') AND a.owner_id = $1)
            OR (a.kind = 'match_held' AND m.id IS NOT NULL)
         GROUP BY a.currency
        ",
    )
    .bind::<SqlUuid, _>(user)
    .load(conn)
    .await
}

#[derive(Debug, diesel::QueryableByName)]
pub struct LineRow {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    /// Signed from the user's side.
    #[diesel(sql_type = BigInt)]
    pub delta: i64,
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// The user's account it touched (`user_available`, `user_paid_out`).
    #[diesel(sql_type = Text)]
    pub account: String,
    #[diesel(sql_type = Text)]
    pub idempotency_key: String,
    #[diesel(sql_type = Text)]
    pub reference_kind: String,
    #[diesel(sql_type = SqlUuid)]
    pub reference_id: Uuid,
}

/// Transfers into or out of the user's own accounts, newest first, `limit + 1` of them.
pub async fn lines(
    conn: &mut AsyncPgConnection,
    user: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> diesel::QueryResult<Vec<LineRow>> {
    diesel::sql_query(
        r"
        WITH mine AS (
            SELECT id, kind FROM ledger_accounts
             WHERE owner_id = $1 AND kind IN ('user_available', 'user_paid_out')
        )
        SELECT t.id, t.created_at,
               CASE WHEN c.id IS NOT NULL THEN t.amount ELSE -t.amount END AS delta,
               t.currency, coalesce(c.kind, d.kind) AS account, t.idempotency_key,
               t.reference_kind, t.reference_id
          FROM ledger_transfers t
          LEFT JOIN mine c ON c.id = t.credit_account
          LEFT JOIN mine d ON d.id = t.debit_account
         WHERE (t.credit_account IN (SELECT id FROM mine) OR t.debit_account IN (SELECT id FROM mine))
           AND ($2::uuid IS NULL OR t.id < $2)
         ORDER BY t.id DESC
         LIMIT $3
        ",
    )
    .bind::<SqlUuid, _>(user)
    .bind::<Nullable<SqlUuid>, _>(before)
    .bind::<BigInt, _>(limit + 1)
    .load(conn)
    .await
}

#[derive(Debug, diesel::QueryableByName)]
pub struct EarningRow {
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = BigInt)]
    pub amount: i64,
}

/// What matches paid into the user's available balance (releases and cancellation shares),
/// per currency.
pub async fn earnings(
    conn: &mut AsyncPgConnection,
    user: Uuid,
) -> diesel::QueryResult<Vec<EarningRow>> {
    diesel::sql_query(
        r"
        SELECT t.currency, sum(t.amount)::bigint AS amount
          FROM ledger_transfers t
          JOIN ledger_accounts a ON a.id = t.credit_account
         WHERE a.kind = 'user_available' AND a.owner_id = $1 AND t.reference_kind = 'match'
         GROUP BY t.currency ORDER BY t.currency
        ",
    )
    .bind::<SqlUuid, _>(user)
    .load(conn)
    .await
}
