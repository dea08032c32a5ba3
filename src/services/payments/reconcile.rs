//! `airbar reconcile`: the ledger's invariants, the payment tables against the ledger, and —
//! with Stripe configured — the ledger against the provider's own objects for a date range
//! (charges by PaymentIntent, refunds, transfers). Any mismatch is listed; the command exits
//! non-zero when there is one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::provider::{PaymentProvider, Provider};
use crate::error::AppError;
use crate::services::ledger;

#[derive(Debug, Default)]
pub struct Report {
    pub transfers: i64,
    pub mismatches: Vec<String>,
    /// Whether the provider's objects were compared (Stripe configured).
    pub provider_checked: bool,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

#[derive(Debug, diesel::QueryableByName)]
struct Pair {
    #[diesel(sql_type = Text)]
    what: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    recorded: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    ledger: Option<i64>,
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

pub async fn run(
    conn: &mut AsyncPgConnection,
    provider: &Provider,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Report, AppError> {
    let mut report = Report::default();
    let inv = ledger::check(conn).await?;
    report.transfers = inv.transfers;
    if inv.unbalanced_currencies > 0 {
        report.mismatches.push(format!(
            "{} currencies whose balances do not sum to zero",
            inv.unbalanced_currencies
        ));
    }
    if inv.drifted_accounts > 0 {
        report.mismatches.push(format!(
            "{} accounts whose balance differs from their transfers",
            inv.drifted_accounts
        ));
    }
    if inv.mixed_currency_transfers > 0 {
        report.mismatches.push(format!(
            "{} transfers between accounts of another currency",
            inv.mixed_currency_transfers
        ));
    }
    let pairs: Vec<Pair> = diesel::sql_query(INTERNAL).load(conn).await?;
    for p in pairs {
        if p.recorded.unwrap_or(0) != p.ledger.unwrap_or(0) {
            report.mismatches.push(format!(
                "{}: payment records {} vs ledger {}",
                p.what,
                p.recorded.unwrap_or(0),
                p.ledger.unwrap_or(0)
            ));
        }
    }
    let failed: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM payment_ops WHERE status = 'failed' AND kind = 'refund'",
    )
    .get_result(conn)
    .await?;
    if failed.n > 0 {
        report.mismatches.push(format!(
            "{} refunds refused or in doubt at the provider (owed to senders; see payment_ops.last_error)",
            failed.n
        ));
    }
    let in_doubt: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM payment_ops o JOIN withdrawals w ON w.id = o.withdrawal_id
          WHERE o.kind = 'transfer' AND o.status = 'failed' AND w.status = 'pending'",
    )
    .get_result(conn)
    .await?;
    if in_doubt.n > 0 {
        report.mismatches.push(format!(
            "{} payouts in doubt (the provider never answered clearly; check its transfers)",
            in_doubt.n
        ));
    }
    if provider.is_test() {
        return Ok(report);
    }
    report.provider_checked = true;
    let activity = provider
        .activity(from, to)
        .await
        .map_err(|e| AppError::unavailable("The payment provider", e))?;
    let ours = ours(conn, from, to).await?;
    compare(&mut report, "charges", &activity.charges, &ours.charges);
    compare(&mut report, "refunds", &activity.refunds, &ours.refunds);
    compare(
        &mut report,
        "transfers",
        &activity.transfers,
        &ours.transfers,
    );
    Ok(report)
}

/// Amounts per provider object id (a PaymentIntent, the PaymentIntent a refund is for, a
/// transfer), in minor units with the currency.
pub type Amounts = BTreeMap<String, (i64, String)>;

#[derive(Debug, Default)]
pub struct Activity {
    pub charges: Amounts,
    pub refunds: Amounts,
    pub transfers: Amounts,
}

fn compare(report: &mut Report, what: &str, provider: &Amounts, ours: &Amounts) {
    for (id, (amount, currency)) in provider {
        match ours.get(id) {
            None => report.mismatches.push(format!(
                "{what}: {id} ({amount} {currency}) is not in the ledger"
            )),
            Some((mine, c)) if mine != amount || c != currency => report.mismatches.push(format!(
                "{what}: {id} is {amount} {currency} at the provider, {mine} {c} here"
            )),
            Some(_) => {}
        }
    }
    for (id, (amount, currency)) in ours {
        if !provider.contains_key(id) {
            report.mismatches.push(format!(
                "{what}: {id} ({amount} {currency}) is not at the provider"
            ));
        }
    }
}

#[derive(Debug, diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = BigInt)]
    amount: i64,
    #[diesel(sql_type = Text)]
    currency: String,
}

/// Our side for objects created in the range.
async fn ours(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Activity, AppError> {
    let rows: Vec<Row> = diesel::sql_query(
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
    .await?;
    let mut out = Activity::default();
    for r in rows {
        let into = match r.kind.as_str() {
            "charge" => &mut out.charges,
            "refund" => &mut out.refunds,
            _ => &mut out.transfers,
        };
        into.insert(r.id, (r.amount, r.currency));
    }
    Ok(out)
}
