//! The Stripe provider (async-stripe 1.0): PaymentIntents on the platform account (automatic
//! capture, transfer group `match:<id>`, the match id in metadata), refunds, transfers to
//! connected accounts, account checks, and the listings `airbar reconcile` compares with. Every
//! call is made once with the caller's idempotency key; retries are the caller's (the
//! worker's backoff), so a retried call is the same call to Stripe.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_connect::account::RetrieveAccount;
use stripe_connect::transfer::{CreateTransfer, ListTransfer};
use stripe_core::payment_intent::{
    ConfirmPaymentIntent, CreatePaymentIntent, CreatePaymentIntentAutomaticPaymentMethods,
    CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects, ListPaymentIntent,
    RetrievePaymentIntent,
};
use stripe_core::refund::{CreateRefund, ListRefund};
use stripe_core::{PaymentIntentCaptureMethod, PaymentIntentStatus};
use stripe_types::{Currency, RangeBoundsTs, RangeQueryTs};

use super::provider::{Charge, ChargeStatus, Intent, IntentRequest, ProviderError};
use super::reconcile::Activity;
use crate::config::{ConfigError, StripeSettings};
use crate::domain::money::Money;

#[derive(Clone)]
pub struct StripeProvider {
    client: Client,
}

impl std::fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeProvider")
    }
}

fn currency(m: Money) -> Currency {
    // Stripe's codes are lowercase; FromStr is infallible.
    Currency::from_str(&m.currency().code().to_ascii_lowercase())
        .unwrap_or_else(|never| match never {})
}

fn intent_of(pi: stripe_core::PaymentIntent) -> Intent {
    Intent {
        intent_id: pi.id.as_str().to_owned(),
        succeeded: pi.status == PaymentIntentStatus::Succeeded,
        charge_id: pi
            .latest_charge
            .as_ref()
            .map(|c| c.id().as_str().to_owned()),
        client_secret: pi.client_secret,
    }
}

fn key(k: &str) -> Result<RequestStrategy, ProviderError> {
    IdempotencyKey::new(k)
        .map(RequestStrategy::Idempotent)
        .map_err(|e| ProviderError::Rejected(format!("idempotency key: {e}")))
}

/// Network trouble, timeouts, 409 (a concurrent request with the same key), 429 and 5xx are
/// worth retrying; any other answer from Stripe is final.
fn classify(e: StripeError) -> ProviderError {
    match e {
        StripeError::Stripe(api, status) => {
            let detail = api
                .message
                .clone()
                .or_else(|| api.code.as_ref().map(|c| c.as_str().to_owned()))
                .unwrap_or_else(|| format!("HTTP {status}"));
            if status == 409 || status == 429 || status >= 500 {
                ProviderError::Transient(detail)
            } else {
                ProviderError::Rejected(detail)
            }
        }
        StripeError::ClientError(e) => ProviderError::Transient(e),
        StripeError::Timeout => ProviderError::Transient("timed out".to_owned()),
        // An unreadable answer (a proxy's error page, …): retry rather than guess.
        StripeError::JSONDeserialize(e) => ProviderError::Transient(e),
        StripeError::ConfigError(e) => ProviderError::Rejected(e),
    }
}

impl StripeProvider {
    pub fn new(settings: &StripeSettings) -> Result<Self, ConfigError> {
        let mut builder = ClientBuilder::new(settings.secret_key.expose())
            .timeout(Duration::from_millis(settings.timeout_ms))
            .request_strategy(RequestStrategy::Once);
        if !settings.api_base.is_empty() {
            // async-stripe appends `v1/…` to the base: it must end with a slash.
            let base = if settings.api_base.ends_with('/') {
                settings.api_base.clone()
            } else {
                format!("{}/", settings.api_base)
            };
            builder = builder.url(base);
        }
        let client = builder
            .build()
            .map_err(|e| ConfigError(format!("stripe: {e}")))?;
        Ok(Self { client })
    }

    pub async fn create_intent(&self, req: &IntentRequest) -> Result<Intent, ProviderError> {
        let metadata = HashMap::from([("match_id".to_owned(), req.match_id.to_string())]);
        let pi = CreatePaymentIntent::new(req.amount.amount(), currency(req.amount))
            .capture_method(PaymentIntentCaptureMethod::Automatic)
            .transfer_group(format!("match:{}", req.match_id))
            .metadata(metadata)
            // Server-side confirmation with cards only: no redirect-based methods (which
            // would need a return URL).
            .automatic_payment_methods(CreatePaymentIntentAutomaticPaymentMethods {
                enabled: true,
                allow_redirects: Some(
                    CreatePaymentIntentAutomaticPaymentMethodsAllowRedirects::Never,
                ),
            })
            .customize()
            .request_strategy(key(&req.idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(intent_of(pi))
    }

    pub async fn intent(&self, intent_id: &str) -> Result<Intent, ProviderError> {
        let pi = RetrievePaymentIntent::new(intent_id)
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(intent_of(pi))
    }

    pub async fn confirm_intent(
        &self,
        intent_id: &str,
        payment_method: &str,
        idempotency_key: &str,
    ) -> Result<Charge, ProviderError> {
        let pi = ConfirmPaymentIntent::new(intent_id)
            .payment_method(payment_method)
            .customize()
            .request_strategy(key(idempotency_key)?)
            .send(&self.client)
            .await;
        let pi = match pi {
            Ok(pi) => pi,
            // A declined card: Stripe answers 402 with the failure.
            Err(StripeError::Stripe(api, 402)) => {
                return Ok(Charge {
                    status: ChargeStatus::Failed,
                    charge_id: api.charge.clone(),
                    failure: Some(
                        api.decline_code
                            .clone()
                            .or_else(|| api.code.as_ref().map(|c| c.as_str().to_owned()))
                            .unwrap_or_else(|| "card_declined".to_owned()),
                    ),
                })
            }
            Err(e) => return Err(classify(e)),
        };
        let status = match pi.status {
            PaymentIntentStatus::Succeeded => ChargeStatus::Succeeded,
            PaymentIntentStatus::Canceled | PaymentIntentStatus::RequiresPaymentMethod => {
                ChargeStatus::Failed
            }
            _ => ChargeStatus::Pending,
        };
        Ok(Charge {
            status,
            charge_id: pi
                .latest_charge
                .as_ref()
                .map(|c| c.id().as_str().to_owned()),
            failure: pi
                .last_payment_error
                .as_ref()
                .and_then(|e| e.message.clone()),
        })
    }

    pub async fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        CreateRefund::new()
            .payment_intent(intent_id)
            .amount(amount.amount())
            .customize()
            .request_strategy(key(idempotency_key)?)
            .send(&self.client)
            .await
            .map(|r| r.id.as_str().to_owned())
            .map_err(classify)
    }

    pub async fn transfer(
        &self,
        destination: &str,
        amount: Money,
        transfer_group: &str,
        source_transaction: Option<&str>,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        let mut create = CreateTransfer::new(currency(amount), destination)
            .amount(amount.amount())
            .transfer_group(transfer_group);
        if let Some(charge) = source_transaction {
            create = create.source_transaction(charge);
        }
        create
            .customize()
            .request_strategy(key(idempotency_key)?)
            .send(&self.client)
            .await
            .map(|t| t.id.as_str().to_owned())
            .map_err(classify)
    }

    pub async fn account_ok(&self, account_id: &str) -> Result<bool, ProviderError> {
        match RetrieveAccount::new(account_id).send(&self.client).await {
            Ok(account) => Ok(account.payouts_enabled.unwrap_or(true)),
            Err(StripeError::Stripe(_, 404)) => Ok(false),
            Err(e) => Err(classify(e)),
        }
    }

    /// Succeeded PaymentIntents and transfers created in `[from, to)`, and the refunds (made
    /// since `from`) of those PaymentIntents, summed per PaymentIntent.
    pub async fn activity(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Activity, ProviderError> {
        let range = || {
            RangeQueryTs::Bounds(RangeBoundsTs {
                gte: Some(from.timestamp()),
                lt: Some(to.timestamp()),
                ..RangeBoundsTs::default()
            })
        };
        let mut out = Activity::default();
        let intents: Vec<stripe_core::PaymentIntent> = ListPaymentIntent::new()
            .created(range())
            .limit(100)
            .paginate()
            .stream(&self.client)
            .try_collect()
            .await
            .map_err(classify)?;
        for pi in intents {
            if pi.status == PaymentIntentStatus::Succeeded {
                out.charges.insert(
                    pi.id.as_str().to_owned(),
                    (pi.amount, pi.currency.to_string().to_ascii_uppercase()),
                );
            }
        }
        let refunds: Vec<stripe_core::Refund> = ListRefund::new()
            .created(RangeQueryTs::gte(from.timestamp()))
            .limit(100)
            .paginate()
            .stream(&self.client)
            .try_collect()
            .await
            .map_err(classify)?;
        for r in refunds {
            let Some(pi) = r
                .payment_intent
                .as_ref()
                .map(|p| p.id().as_str().to_owned())
            else {
                continue;
            };
            if !out.charges.contains_key(&pi) || r.status.as_deref() == Some("failed") {
                continue;
            }
            let entry = out
                .refunds
                .entry(pi)
                .or_insert((0, r.currency.to_string().to_ascii_uppercase()));
            entry.0 += r.amount;
        }
        let transfers: Vec<stripe_connect::Transfer> = ListTransfer::new()
            .created(range())
            .limit(100)
            .paginate()
            .stream(&self.client)
            .try_collect()
            .await
            .map_err(classify)?;
        // What each transfer still pays (a reversal takes part or all of it back).
        for t in transfers {
            out.transfers.insert(
                t.id.as_str().to_owned(),
                (
                    t.amount - t.amount_reversed,
                    t.currency.to_string().to_ascii_uppercase(),
                ),
            );
        }
        Ok(out)
    }
}
