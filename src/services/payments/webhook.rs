//! `POST /api/payments/stripe/webhook`: the signature (`Stripe-Signature`, HMAC-SHA256 over the
//! raw body, 300 s tolerance) is verified by async-stripe's webhook parser; a bad one is a 400
//! and changes nothing. Each event id is recorded once (a duplicate is acknowledged and
//! ignored) and every handler is idempotent on its own, so events apply in any order and
//! together with the API's own confirmation reach the same state once.

use chrono::Utc;
use stripe_webhook::{EventObject, Webhook, WebhookError};
use uuid::Uuid;

use crate::db;
use crate::error::AppError;
use crate::models::payments as rows;
use crate::state::AppState;

/// Event types this service acts on; any other is acknowledged and ignored.
const HANDLED: [&str; 3] = [
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "transfer.reversed",
];

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Duplicate,
    Ignored,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

fn invalid(detail: &str) -> AppError {
    AppError::bad_request("invalid_signature", detail.to_owned())
}

pub async fn receive(
    state: &AppState,
    payload: &[u8],
    signature: Option<&str>,
) -> Result<Outcome, AppError> {
    let secret = state.settings.stripe.webhook_secret.expose();
    if secret.is_empty() || !state.settings.stripe.enabled() {
        return Err(AppError::bad_request(
            "webhooks_not_configured",
            "Stripe is not configured on this service.",
        ));
    }
    let signature = signature.ok_or_else(|| invalid("Stripe-Signature is missing."))?;
    let payload = std::str::from_utf8(payload).map_err(|_| invalid("The body is not UTF-8."))?;
    let event = match Webhook::construct_event(payload, signature, secret) {
        Ok(event) => event,
        Err(WebhookError::BadParse(reason)) => {
            // The signature was good (it is checked first) but the event did not parse.
            let raw: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
            let kind = raw["type"].as_str().unwrap_or_default().to_owned();
            if HANDLED.contains(&kind.as_str()) {
                state.metrics.payments.webhook(&kind, "rejected");
                tracing::error!(%kind, %reason, "a signed webhook event we handle did not parse");
                return Err(AppError::bad_request(
                    "unparseable_event",
                    "The event could not be read; it will be retried.",
                ));
            }
            state.metrics.payments.webhook(&kind, "ignored");
            return Ok(Outcome::Ignored);
        }
        Err(WebhookError::BadTimestamp(_)) => {
            state.metrics.payments.webhook("", "rejected");
            return Err(invalid("The signature is too old (over 300 s)."));
        }
        Err(_) => {
            state.metrics.payments.webhook("", "rejected");
            return Err(invalid("The signature does not match."));
        }
    };
    let id = event.id.as_str().to_owned();
    let kind = event.type_.as_str().to_owned();
    let mut conn = db::conn(&state.db).await?;
    if rows::webhook_seen(&mut conn, &id).await? {
        state.metrics.payments.webhook(&kind, "duplicate");
        return Ok(Outcome::Duplicate);
    }
    drop(conn);
    let applied = apply(state, event.data.object).await?;
    let outcome = if applied {
        Outcome::Applied
    } else {
        Outcome::Ignored
    };
    let mut conn = db::conn(&state.db).await?;
    rows::record_webhook(
        &mut conn,
        &id,
        Uuid::now_v7(),
        "stripe",
        &kind,
        outcome.as_str(),
    )
    .await?;
    state.metrics.payments.webhook(&kind, outcome.as_str());
    Ok(outcome)
}

/// Applies one event; `false` when there was nothing of ours to do.
async fn apply(state: &AppState, object: EventObject) -> Result<bool, AppError> {
    match object {
        EventObject::PaymentIntentSucceeded(pi) => {
            let intent = pi.id.as_str().to_owned();
            let charge = pi
                .latest_charge
                .as_ref()
                .map(|c| c.id().as_str().to_owned());
            adopt_intent(state, &intent, pi.metadata.get("match_id")).await?;
            let currency = pi.currency.to_string();
            let charged = Some((pi.amount, currency.as_str()));
            Ok(
                super::confirm_charge(state, &intent, charge.as_deref(), charged, Utc::now())
                    .await?
                    .is_some(),
            )
        }
        EventObject::PaymentIntentPaymentFailed(pi) => {
            let intent = pi.id.as_str().to_owned();
            adopt_intent(state, &intent, pi.metadata.get("match_id")).await?;
            let reason = pi
                .last_payment_error
                .as_ref()
                .and_then(|e| e.message.clone())
                .unwrap_or_else(|| "payment_failed".to_owned());
            super::fail_charge(state, &intent, &reason).await
        }
        EventObject::TransferReversed(transfer) => {
            let mut conn = db::conn(&state.db).await?;
            let found = match rows::withdrawal_by_transfer(&mut conn, transfer.id.as_str()).await? {
                Some(w) => Some(w),
                // Settled at the provider but not recorded here yet: found by its group.
                None => match transfer.transfer_group.as_deref() {
                    Some(group) => rows::withdrawal_by_group(&mut conn, group).await?,
                    None => None,
                },
            };
            let Some(w) = found else {
                return Ok(false);
            };
            let total = transfer.amount_reversed;
            let transfer_id = transfer.id.as_str().to_owned();
            use diesel_async::AsyncConnection;
            conn.transaction(async |conn| {
                super::settle::reverse_transferred(conn, w.id, &transfer_id, total).await
            })
            .await
        }
        // Refunds are recorded when the provider answers the refund call.
        _ => Ok(false),
    }
}

/// A webhook can arrive before the service stored the PaymentIntent's id on the payment (it
/// was created and confirmed in one call): find the payment through the match id the intent
/// carries in its metadata and record the id.
async fn adopt_intent(
    state: &AppState,
    intent: &str,
    match_id: Option<&String>,
) -> Result<(), AppError> {
    let Some(match_id) = match_id.and_then(|m| m.parse::<Uuid>().ok()) else {
        return Ok(());
    };
    let mut conn = db::conn(&state.db).await?;
    rows::adopt_intent(&mut conn, match_id, intent).await?;
    Ok(())
}
