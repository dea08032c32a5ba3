//! `airbar reconcile`: the ledger's invariants, the payment tables against the ledger, and —
//! with Stripe configured — the ledger against the provider's own objects for a date range
//! (charges by PaymentIntent, refunds, transfers). Any mismatch is listed; the command exits
//! non-zero when there is one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;

use super::provider::{PaymentProvider, Provider};
use crate::error::AppError;
use crate::models::reconcile as rows;
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
    for p in rows::records_vs_ledger(conn).await? {
        if p.recorded.unwrap_or(0) != p.ledger.unwrap_or(0) {
            report.mismatches.push(format!(
                "{}: payment records {} vs ledger {}",
                p.what,
                p.recorded.unwrap_or(0),
                p.ledger.unwrap_or(0)
            ));
        }
    }
    let failed = rows::failed_refunds(conn).await?;
    if failed > 0 {
        report.mismatches.push(format!(
            "{} refunds refused or in doubt at the provider (owed to senders; see payment_ops.last_error)",
            failed
        ));
    }
    let in_doubt = rows::payouts_in_doubt(conn).await?;
    if in_doubt > 0 {
        report.mismatches.push(format!(
            "{} payouts in doubt (the provider never answered clearly; check its transfers)",
            in_doubt
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

/// Our side for objects created in the range.
async fn ours(
    conn: &mut AsyncPgConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Activity, AppError> {
    let rows = rows::ours(conn, from, to).await?;
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
