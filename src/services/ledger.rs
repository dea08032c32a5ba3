//! The ledger, the source of truth for money (issue 7, first part): named accounts and
//! idempotent double-entry postings. A posting runs inside the caller's transaction (so a state
//! change and its money move commit together); PostgreSQL keeps the balances (trigger), refuses
//! overdrafts and mixed currencies (constraints) and never lets a transfer change (trigger).
//!
//! Sign: a transfer takes `amount` from the debit account and adds it to the credit account,
//! so every currency's balances sum to zero. Money coming in from the payment provider is
//! posted from `ProviderClearing`, which therefore runs negative; every other account holds
//! money and cannot.

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use crate::domain::money::Money;
use crate::error::AppError;
use crate::models::ledger::{self, InvariantRow, NewTransfer, TransferRow};

/// A ledger account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    /// What a user may withdraw.
    UserAvailable(Uuid),
    /// What has been paid out to a user.
    UserPaidOut(Uuid),
    /// A match's funds, held from payment until release or refund.
    MatchHeld(Uuid),
    PlatformRevenue,
    /// The provider's side of money in and out (negative: what the provider holds for us).
    ProviderClearing,
    /// Withdrawals sent to the provider and not yet settled.
    PayoutsInFlight,
}

impl Account {
    fn parts(self) -> (&'static str, Option<Uuid>) {
        match self {
            Self::UserAvailable(u) => ("user_available", Some(u)),
            Self::UserPaidOut(u) => ("user_paid_out", Some(u)),
            Self::MatchHeld(m) => ("match_held", Some(m)),
            Self::PlatformRevenue => ("platform_revenue", None),
            Self::ProviderClearing => ("provider_clearing", None),
            Self::PayoutsInFlight => ("payouts_in_flight", None),
        }
    }
}

/// What a transfer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    Match(Uuid),
    Webhook(Uuid),
    Withdrawal(Uuid),
}

impl Reference {
    fn parts(self) -> (&'static str, Uuid) {
        match self {
            Self::Match(id) => ("match", id),
            Self::Webhook(id) => ("webhook", id),
            Self::Withdrawal(id) => ("withdrawal", id),
        }
    }
}

/// One money move. The idempotency key names the business action (e.g. `match:<id>:pay`),
/// so a retried action finds its transfer instead of posting twice.
#[derive(Debug, Clone)]
pub struct Posting {
    pub key: String,
    pub debit: Account,
    pub credit: Account,
    pub amount: Money,
    pub reference: Reference,
}

/// Balance of an account (0 for one never used).
pub async fn balance(
    conn: &mut AsyncPgConnection,
    account: Account,
    currency: &str,
) -> Result<i64, AppError> {
    let (kind, owner) = account.parts();
    let id = ledger::account_id(conn, kind, owner, currency).await?;
    Ok(ledger::balance(conn, id).await?)
}

/// Posts `p` (inside the caller's transaction) and returns its transfer. The same key again
/// with the same accounts and amount returns the first transfer and moves nothing; with
/// anything else it is refused (409 `idempotency_conflict`). An overdraft is refused (409
/// `insufficient_funds`); either error leaves the caller's transaction to roll back.
pub async fn post(conn: &mut AsyncPgConnection, p: &Posting) -> Result<TransferRow, AppError> {
    if p.amount.amount() <= 0 {
        return Err(AppError::internal("a ledger amount must be positive"));
    }
    let currency = p.amount.currency().code();
    let (debit_kind, debit_owner) = p.debit.parts();
    let (credit_kind, credit_owner) = p.credit.parts();
    let debit = ledger::account_id(conn, debit_kind, debit_owner, currency).await?;
    let credit = ledger::account_id(conn, credit_kind, credit_owner, currency).await?;
    if let Some(existing) = ledger::find_transfer(conn, &p.key).await? {
        let same = existing.debit_account == debit
            && existing.credit_account == credit
            && existing.amount == p.amount.amount()
            && existing.currency == currency;
        return if same {
            Ok(existing)
        } else {
            Err(AppError::conflict(
                "idempotency_conflict",
                "This operation was already recorded with different details.",
            ))
        };
    }
    let (reference_kind, reference_id) = p.reference.parts();
    let row = NewTransfer {
        id: Uuid::now_v7(),
        idempotency_key: &p.key,
        debit_account: debit,
        credit_account: credit,
        amount: p.amount.amount(),
        currency,
        reference_kind,
        reference_id,
    };
    ledger::insert_transfer(conn, &row)
        .await
        .map_err(|e| match e {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::CheckViolation,
                _,
            ) => AppError::conflict("insufficient_funds", "Not enough funds for this operation."),
            other => AppError::from(other),
        })
}

/// The ledger's invariants, checked over everything: per-currency balances sum to zero, every
/// balance equals the sum of its transfers, no transfer mixes currencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invariants {
    pub unbalanced_currencies: i64,
    pub drifted_accounts: i64,
    pub mixed_currency_transfers: i64,
    pub transfers: i64,
}

impl Invariants {
    pub fn hold(&self) -> bool {
        self.unbalanced_currencies == 0
            && self.drifted_accounts == 0
            && self.mixed_currency_transfers == 0
    }
}

pub async fn check(conn: &mut AsyncPgConnection) -> Result<Invariants, AppError> {
    let InvariantRow {
        unbalanced_currencies,
        drifted_accounts,
        mixed_currency_transfers,
        transfers,
    } = ledger::check_invariants(conn).await?;
    Ok(Invariants {
        unbalanced_currencies,
        drifted_accounts,
        mixed_currency_transfers,
        transfers,
    })
}
