//! The wallet: a user's balances per currency (from the ledger), their ledger lines, the
//! payout account and withdrawals to it.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::provider::PaymentProvider;
use crate::db;
use crate::domain::money::{Money, MoneyDto};
use crate::domain::FieldError;
use crate::error::AppError;
use crate::models::payments::{self as rows, WithdrawalRow};
use crate::models::wallet::{self as lines, LineRow};
use crate::services::auth::AuthUser;
use crate::services::pagination::{clamp_limit, split_page, Position};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub currency: String,
    /// What I can withdraw (minor units).
    pub available: i64,
    /// Held in my bookings as a traveler, released to me after delivery.
    pub held: i64,
    /// Paid out to my connected account.
    pub paid_out: i64,
    /// Withdrawals on their way to my account.
    pub withdrawing: i64,
    /// What I paid as a sender that is still held.
    pub held_from_me: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WalletView {
    pub balances: Vec<BalanceView>,
    /// Where withdrawals go (`acct_…`), if connected.
    pub payout_account_id: Option<String>,
    /// True when the built-in test provider is in use (no real money).
    pub test_mode: bool,
}

pub async fn show(state: &AppState, auth: AuthUser) -> Result<WalletView, AppError> {
    let me = auth.user_id.0;
    let mut conn = db::conn(&state.db).await?;
    let balances = lines::balances(&mut conn, me).await?;
    let withdrawing = rows::pending_withdrawals(&mut conn, me).await?;
    let payout_account_id = rows::payout_account(&mut conn, me).await?;
    let mut out: Vec<BalanceView> = balances
        .into_iter()
        .map(|b| BalanceView {
            withdrawing: withdrawing
                .iter()
                .find(|(c, _)| *c == b.currency)
                .map_or(0, |(_, n)| *n),
            currency: b.currency,
            available: b.available,
            held: b.held,
            paid_out: b.paid_out,
            held_from_me: b.held_from_me,
        })
        .collect();
    out.sort_by(|a, b| a.currency.cmp(&b.currency));
    Ok(WalletView {
        balances: out,
        payout_account_id,
        test_mode: state.payments.provider.is_test(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LineView {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// Positive: into my account; negative: out of it.
    pub amount: MoneyDto,
    /// `available` or `paid_out`.
    pub account: String,
    /// What moved it: `release`, `cancel_share`, `start` (a withdrawal leaving), `settle`,
    /// `reverse`, …
    pub kind: String,
    /// `match` or `withdrawal`.
    pub reference_kind: String,
    pub reference_id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinePage {
    pub items: Vec<LineView>,
    pub next_cursor: Option<String>,
}

const SCOPE: &str = "wallet_lines";

pub async fn transactions(
    state: &AppState,
    auth: AuthUser,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<LinePage, AppError> {
    let limit = clamp_limit(limit);
    let before = state.cursors.before_id(SCOPE, cursor)?;
    let mut conn = db::conn(&state.db).await?;
    let found = lines::lines(&mut conn, auth.user_id.0, before, limit).await?;
    let (found, next) = split_page(found, limit, |l: &LineRow| Position {
        time_us: None,
        id: l.id,
    });
    Ok(LinePage {
        items: found
            .into_iter()
            .map(|l| LineView {
                id: l.id,
                at: l.created_at,
                amount: MoneyDto {
                    amount: l.delta,
                    currency: l.currency,
                },
                account: l.account.trim_start_matches("user_").to_owned(),
                // Keys are `<match|withdrawal>:<id>:<kind>[:<detail>]`.
                kind: l
                    .idempotency_key
                    .split(':')
                    .nth(2)
                    .unwrap_or_default()
                    .to_owned(),
                reference_kind: l.reference_kind,
                reference_id: l.reference_id,
            })
            .collect(),
        next_cursor: next.map(|p| state.cursors.encode(SCOPE, &p)),
    })
}

/// Sets where withdrawals go; the provider must know the account.
pub async fn set_payout_account(
    state: &AppState,
    auth: AuthUser,
    account_id: &str,
) -> Result<WalletView, AppError> {
    let valid = account_id.strip_prefix("acct_").is_some_and(|rest| {
        (1..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if !valid {
        return Err(FieldError::new(
            "account_id",
            "must look like acct_… (a connected account id)",
        )
        .into());
    }
    let known = state
        .payments
        .provider
        .account_ok(account_id)
        .await
        .map_err(super::provider_error)?;
    if !known {
        return Err(FieldError::new(
            "account_id",
            "the payment provider does not know this account",
        )
        .into());
    }
    let mut conn = db::conn(&state.db).await?;
    rows::set_payout_account(&mut conn, auth.user_id.0, account_id).await?;
    drop(conn);
    show(state, auth).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WithdrawalView {
    pub id: Uuid,
    /// `pending`, `paid` or `failed` (the money is back in `available`).
    pub status: String,
    pub amount: MoneyDto,
    pub destination: String,
    pub test_mode: bool,
    pub failure: Option<String>,
    pub created_at: DateTime<Utc>,
}

fn withdrawal_view(w: WithdrawalRow) -> WithdrawalView {
    WithdrawalView {
        id: w.id,
        test_mode: w.provider == "test",
        status: w.status,
        amount: MoneyDto {
            amount: w.amount,
            currency: w.currency,
        },
        destination: w.destination,
        failure: w.failure,
        created_at: w.created_at,
    }
}

/// `POST /api/wallet/withdrawals`: available → payouts in flight and a queued transfer to the
/// connected account (made at once, settled or reversed on the provider's answer).
/// `request_key` (the Idempotency-Key) makes a retried request find its first withdrawal.
pub async fn withdraw(
    state: &AppState,
    auth: AuthUser,
    amount: Money,
    request_key: Option<&str>,
) -> Result<WithdrawalView, AppError> {
    // Each withdrawal is a transfer at the provider: at least one major unit (1.00).
    if amount.amount() < amount.currency().minor_per_major() {
        return Err(FieldError::new("amount", "must be at least 1.00").into());
    }
    let me = auth.user_id.0;
    let mut conn = db::conn(&state.db).await?;
    let (w, op) = conn
        .transaction(async |conn| {
            if let Some(key) = request_key {
                if let Some(w) = rows::withdrawal_by_request(conn, me, key).await? {
                    return Ok((w, None));
                }
            }
            let Some(destination) = rows::payout_account(conn, me).await? else {
                return Err(AppError::conflict(
                    "payout_account_required",
                    "Connect a payout account first (PUT /api/wallet/payout-account).",
                ));
            };
            let (w, op) = super::settle::start_withdrawal(
                state,
                conn,
                me,
                amount,
                &destination,
                super::settle::Purpose::Withdrawal { request_key },
            )
            .await?;
            Ok((w, Some(op)))
        })
        .await?;
    drop(conn);
    // Try at once; the worker retries if the provider does not answer.
    if let Some(op) = op {
        if let Err(e) = super::settle::run_op(state, op).await {
            tracing::warn!(error = %e, withdrawal = %w.id, "payout attempt failed; the worker retries");
        }
    }
    let mut conn = db::conn(&state.db).await?;
    let w = rows::find_withdrawal(&mut conn, w.id).await?.unwrap_or(w);
    Ok(withdrawal_view(w))
}
