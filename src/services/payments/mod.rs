//! Money around a match (issue 7): the sender pays (a charge at the provider, then the ledger
//! moves provider clearing → the match's held funds in the same transaction as `paid`), the
//! custody codes move the parcel, delivery releases the held funds to the traveler (minus the
//! fee) after the release delay, a cancellation refunds by the product's rules, and the wallet
//! shows and withdraws a user's balance. Webhooks and the API's own confirmation meet in one
//! idempotent `confirm_charge`, so either order reaches the same state once.
//!
//! Ledger idempotency keys name the business action: `match:<id>:pay`, `:refund`,
//! `:cancel_share`, `:release`, `:fee`; `withdrawal:<id>:start`, `:settle`, `:reverse` (refused),
//! `:reversed:<total>` (reversed at the provider after it settled).

pub mod codes;
pub mod custody;
pub mod idempotency;
pub mod provider;
pub mod reconcile;
pub mod settle;
pub mod stripe_provider;
pub mod wallet;
pub mod webhook;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db;
use crate::domain::ids::MatchId;
use crate::domain::matching::{MatchAction, MatchStatus};
use crate::domain::money::{Currency, Money, MoneyDto};
use crate::error::AppError;
use crate::models::matches::MatchRow;
use crate::models::payments::{self as rows, PaymentRow, Stamp};
use crate::services::auth::AuthUser;
use crate::services::ledger::{self, Account, Posting, Reference};
use crate::services::matching::lifecycle::{self, Party, Step, Touched};
use crate::services::matching::{view, MatchView};
use crate::state::AppState;
use codes::{CodeKey, CodeKind};
use provider::{ChargeStatus, IntentRequest, PaymentProvider, Provider, ProviderError};

/// The provider and the custody-code key of this node.
#[derive(Debug)]
pub struct Payments {
    pub provider: Provider,
    pub codes: CodeKey,
    /// Wakes the worker (a refund or payout was queued).
    pub kick: tokio::sync::Notify,
}

impl Payments {
    pub fn new(settings: &crate::config::Settings) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            provider: Provider::from_settings(&settings.stripe)?,
            codes: CodeKey::new(settings.auth.refresh_token_secret.expose().as_bytes()),
            kick: tokio::sync::Notify::new(),
        })
    }
}

/// A payment as clients see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    pub id: Uuid,
    /// `test` or `stripe`.
    pub provider: String,
    /// True when no real money moves (the built-in test provider).
    pub test_mode: bool,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub amount: MoneyDto,
    pub refunded: MoneyDto,
    /// For the client to confirm a pending Stripe PaymentIntent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// `POST /api/matches/{id}/pay`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayOutcome {
    /// The match's status after the call: `paid`, or `accepted` while the charge is pending.
    pub status: String,
    pub payment: PaymentView,
    #[serde(rename = "match")]
    pub match_view: MatchView,
}

pub fn payment_view(p: &PaymentRow, client_secret: Option<String>) -> PaymentView {
    PaymentView {
        id: p.id,
        provider: p.provider.clone(),
        test_mode: p.provider == "test",
        status: p.status.clone(),
        amount: MoneyDto {
            amount: p.amount,
            currency: p.currency.clone(),
        },
        refunded: MoneyDto {
            amount: p.refunded,
            currency: p.currency.clone(),
        },
        client_secret,
        failure: p.failure.clone(),
    }
}

pub(crate) fn money(amount: i64, currency: &str) -> Result<Money, AppError> {
    let currency =
        Currency::parse(currency, "currency").map_err(|e| AppError::internal(e.message))?;
    Ok(Money::new(amount, currency))
}

/// Posts `amount` (skipped when zero: the ledger holds only real moves).
pub(crate) async fn post(
    conn: &mut AsyncPgConnection,
    key: String,
    debit: Account,
    credit: Account,
    amount: i64,
    currency: &str,
    reference: Reference,
) -> Result<(), AppError> {
    if amount == 0 {
        return Ok(());
    }
    ledger::post(
        conn,
        &Posting {
            key,
            debit,
            credit,
            amount: money(amount, currency)?,
            reference,
        },
    )
    .await?;
    Ok(())
}

fn provider_error(e: ProviderError) -> AppError {
    match e {
        ProviderError::Transient(detail) => AppError::unavailable("The payment provider", detail),
        ProviderError::Rejected(detail) => AppError::new(
            actix_web::http::StatusCode::PAYMENT_REQUIRED,
            "payment_declined",
            format!("The payment provider refused: {detail}"),
        ),
    }
}

/// The sender pays an accepted match. The match has one PaymentIntent, created (and recorded)
/// before any confirmation, so every charge the provider makes for it is on an intent this
/// service knows. With a payment method the intent is confirmed here and the match is `paid`;
/// without one the answer carries the client secret and the webhook completes it. A declined
/// card leaves the match `accepted` (402); another card is another attempt on the same intent.
pub async fn pay(
    state: &AppState,
    auth: AuthUser,
    id: MatchId,
    payment_method: Option<String>,
) -> Result<PayOutcome, AppError> {
    let now = Utc::now();
    let provider = &state.payments.provider;
    let mut conn = db::conn(&state.db).await?;
    let (m, payment) = conn
        .transaction(async |conn| {
            let why = "Only the sender pays for a match.";
            let m = lifecycle::lock_as(conn, id.0, auth.user_id.0, Party::Sender, why).await?;
            if m.status != MatchStatus::Accepted.as_str() {
                return Err(AppError::conflict(
                    "invalid_transition",
                    format!("A {} match cannot be paid.", m.status),
                ));
            }
            if m.expires_at.is_some_and(|t| t <= now) {
                return Err(AppError::conflict(
                    "expired",
                    "The payment window has closed.",
                ));
            }
            let p = rows::open_payment(conn, m.id, provider.name(), m.price, &m.currency).await?;
            Ok::<_, AppError>((m, p))
        })
        .await?;

    // Provider calls happen outside any transaction, without holding a connection.
    drop(conn);
    let intent = match &payment.intent_id {
        Some(existing) => provider.intent(existing).await,
        None => {
            // The key makes concurrent first payments create one intent.
            let created = provider
                .create_intent(&IntentRequest {
                    match_id: m.id,
                    amount: money(m.price, &m.currency)?,
                    idempotency_key: format!("match:{}:pay", m.id),
                })
                .await;
            if let Ok(created) = &created {
                let mut conn = db::conn(&state.db).await?;
                rows::adopt_intent(&mut conn, m.id, &created.intent_id).await?;
            }
            created
        }
    }
    .map_err(provider_error)?;

    // Charged already (confirmed on the client, or our recording of it failed), or confirmed
    // now with a payment method (the test provider succeeds at once, with or without one).
    let charged = if intent.succeeded {
        Some(intent.charge_id.clone())
    } else {
        let method =
            payment_method.or_else(|| provider.is_test().then(|| "pm_card_visa".to_owned()));
        match method {
            None => None,
            Some(method) => {
                let key = format!("match:{}:confirm:{method}", m.id);
                let charge = provider
                    .confirm_intent(&intent.intent_id, &method, &key)
                    .await
                    .map_err(provider_error)?;
                match charge.status {
                    ChargeStatus::Succeeded => Some(charge.charge_id),
                    // 3-D Secure and the like: the client finishes with the client secret.
                    ChargeStatus::Pending => None,
                    ChargeStatus::Failed => {
                        let reason = charge.failure.unwrap_or_else(|| "declined".to_owned());
                        fail_charge(state, &intent.intent_id, &reason).await?;
                        return Err(provider_error(ProviderError::Rejected(reason)));
                    }
                }
            }
        }
    };
    match charged {
        Some(charge_id) => {
            let (m, p) = confirm_charge(state, &intent.intent_id, charge_id.as_deref(), None, now)
                .await?
                .ok_or_else(|| AppError::internal("the confirmed payment vanished"))?;
            Ok(outcome(m, &p, None))
        }
        None => {
            let p = current_payment(state, m.id).await?;
            Ok(outcome(m, &p, intent.client_secret))
        }
    }
}

fn outcome(m: MatchRow, p: &PaymentRow, client_secret: Option<String>) -> PayOutcome {
    let match_view = view(m, None);
    PayOutcome {
        status: match_view.status.clone(),
        payment: payment_view(p, client_secret),
        match_view,
    }
}

async fn current_payment(state: &AppState, match_id: Uuid) -> Result<PaymentRow, AppError> {
    let mut conn = db::conn(&state.db).await?;
    rows::payment_of_match(&mut conn, match_id)
        .await?
        .ok_or_else(|| AppError::internal("the payment vanished"))
}

/// Records that the provider charged `intent_id` — from the API's own confirmation or a
/// webhook, in either order, any number of times: the first one moves the money and the
/// match, the others find it done. Money that arrives for a match that is no longer waiting
/// for it (it expired or was cancelled meanwhile) is refunded in full. `None`: not our charge.
pub async fn confirm_charge(
    state: &AppState,
    intent_id: &str,
    charge_id: Option<&str>,
    charged: Option<(i64, &str)>,
    now: DateTime<Utc>,
) -> Result<Option<(MatchRow, PaymentRow)>, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let Some(found) = rows::payment_by_intent(&mut conn, intent_id).await? else {
        return Ok(None);
    };
    if let Some((amount, currency)) = charged {
        if amount != found.amount || !currency.eq_ignore_ascii_case(&found.currency) {
            tracing::error!(
                intent = intent_id,
                amount,
                currency,
                expected = found.amount,
                "a charge does not match its payment; not applied"
            );
            return Ok(None);
        }
    }
    let (done, touched) = conn
        .transaction(async |conn| {
            let m = lifecycle::lock_match(conn, found.match_id).await?;
            let p = rows::open_payment(conn, m.id, &found.provider, m.price, &m.currency).await?;
            let mut touched = Touched::default();
            if p.status == "succeeded" {
                return Ok::<_, AppError>(((m, p), touched));
            }
            let p = rows::succeed_payment(conn, p.id, intent_id, charge_id).await?;
            post(
                conn,
                format!("match:{}:pay", m.id),
                Account::ProviderClearing,
                Account::MatchHeld(m.id),
                p.amount,
                &p.currency,
                Reference::Match(m.id),
            )
            .await?;
            let m = if m.status == MatchStatus::Accepted.as_str() {
                let paid = lifecycle::transition(
                    conn,
                    state,
                    &m,
                    Step {
                        action: MatchAction::Pay,
                        actor: Some(m.sender_id),
                        reason: None,
                    },
                    now,
                    &mut touched,
                )
                .await?;
                rows::stamp(conn, m.id, Stamp::Paid, now, None).await?;
                custody::issue(conn, state, &paid, CodeKind::Pickup, now).await?;
                paid
            } else {
                // Too late: give it all back.
                settle::refund(conn, &m, &p, p.amount).await?;
                m
            };
            Ok(((m, p), touched))
        })
        .await?;
    drop(conn);
    touched.publish(state).await;
    Ok(Some(done))
}

/// Records that the provider declined `intent_id` (the API's confirmation or a webhook): the
/// payment becomes `failed` and the sender may pay again. A succeeded payment never goes back
/// (the update refuses it), whatever order the events come in.
pub async fn fail_charge(
    state: &AppState,
    intent_id: &str,
    reason: &str,
) -> Result<bool, AppError> {
    let mut conn = db::conn(&state.db).await?;
    let Some(p) = rows::payment_by_intent(&mut conn, intent_id).await? else {
        return Ok(false);
    };
    Ok(rows::fail_payment(&mut conn, p.id, reason).await? == 1)
}

/// The payment of a match, for its parties.
pub async fn payment_of(
    conn: &mut AsyncPgConnection,
    match_id: Uuid,
) -> Result<Option<PaymentView>, AppError> {
    Ok(rows::payment_of_match(conn, match_id)
        .await?
        .map(|p| payment_view(&p, None)))
}
