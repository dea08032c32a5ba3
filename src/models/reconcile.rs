//! The queries `airbar reconcile` runs: payment records against ledger postings, provider
//! calls that failed, and this service's side of the provider's objects in a date range.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

#[derive(Debug, diesel::QueryableByName)]
pub struct Pair {
    #[diesel(sql_type = Text)]
    pub what: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub recorded: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub ledger: Option<i64>,
}

/// The payment tables against the ledger postings, per figure.
const INTERNAL: &str = r"
    SELECT 'charges ' || p.currency AS what, sum(p.amount)::bigint AS recorded,
           (SELECT sum(amount)::bigint FROM ledger_transfers t
             WHERE t.idempotency_key LIKE 'match:%:pay' AND t.currency = p.currency) AS ledger
      FROM payments p WHERE p.status = 'succeeded' GROUP BY p.currency
    UNION ALL
    SELECT 'refunds made ' || o.currency, sum(o.amount)::bigint,
           (SELECT sum(amount)::bigint FROM ledger_transfers t
             WHERE t.idempotency_key LIKE 'match:%:refund' AND t.currency = o.currency)
      FROM payment_ops o WHERE o.kind = 'refund' GROUP BY o.currency
    UNION ALL
    SELECT 'payouts settled ' || w.currency, sum(w.amount)::bigint,
           (SELECT sum(amount)::bigint FROM ledger_transfers t
             WHERE t.idempotency_key LIKE 'withdrawal:%:settle' AND t.currency = w.currency)
      FROM withdrawals w WHERE w.status IN ('paid', 'failed') AND w.transfer_id IS NOT NULL
       AND EXISTS (SELECT 1 FROM ledger_transfers t WHERE t.idempotency_key = 'withdrawal:' || w.id || ':settle')
     GROUP BY w.currency
";

#[derive(Debug, diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Each payment figure (charges, refunds made, payouts settled, per currency) as recorded and
/// as posted.
pub async fn records_vs_ledger(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<Pair>> {
    diesel::sql_query(INTERNAL).load(conn).await
}

/// Refunds the provider refused or never answered clearly.
pub async fn failed_refunds(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    let c: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM payment_ops WHERE status = 'failed' AND kind = 'refund'",
    )
    .get_result(conn)
    .await?;
    Ok(c.n)
}

/// Payouts whose transfer call got no clear answer (the money is still in flight).
pub async fn payouts_in_doubt(conn: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
    let c: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM payment_ops o JOIN withdrawals w ON w.id = o.withdrawal_id
          WHERE o.kind = 'transfer' AND o.status = 'failed' AND w.status = 'pending'",
    )
    .get_result(conn)
    .await?;
    Ok(c.n)
}

#[derive(Debug, diesel::QueryableByName)]
pub struct Row {
    /// `charge`, `refund` or `transfer`.
    #[diesel(sql_type = Text)]
    pub kind: String,
    /// The provider's id (a PaymentIntent for charges and refunds, a transfer).
    #[diesel(sql_type = Text)]
    pub id: String,
    #[diesel(sql_type = BigInt)]
    pub amount: i64,
    #[diesel(sql_type = Text)]
    pub currency: String,
}

/// This service's Stripe objects created in `[from, to)`: succeeded charges, refunded amounts
/// per charge, transfers net of reversals.
pub async fn ours(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> diesel::QueryResult<Vec<Row>> {
    diesel::sql_query(
        r"
        SELECT 'charge' AS kind, intent_id AS id, amount, currency FROM payments
         WHERE provider = 'stripe' AND status = 'succeeded' AND intent_id IS NOT NULL
           AND created_at >= $1 AND created_at < $2
        UNION ALL
        SELECT 'refund', p.intent_id, p.refunded, p.currency FROM payments p
         WHERE p.provider = 'stripe' AND p.refunded > 0 AND p.intent_id IS NOT NULL
           AND p.created_at >= $1 AND p.created_at < $2
        UNION ALL
        SELECT 'transfer', w.transfer_id,
               w.amount - coalesce((SELECT sum(t.amount) FROM ledger_transfers t
                                     WHERE t.idempotency_key LIKE 'withdrawal:' || w.id || ':reversed:%'), 0)::bigint,
               w.currency
          FROM withdrawals w
         WHERE w.provider = 'stripe' AND w.transfer_id IS NOT NULL
           AND w.created_at >= $1 AND w.created_at < $2
        ",
    )
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(conn)
    .await
}
