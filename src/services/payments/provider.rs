//! The payment provider behind one trait: Stripe (`stripe.secret_key` set) or the built-in test
//! provider, which follows the same flow and succeeds at once (with a few magic values to
//! exercise failures, see `TestProvider`). Every call carries an idempotency key derived from
//! the business action, so a retried call never charges, refunds or pays out twice.

use std::future::Future;

use chrono::{DateTime, Utc};

use super::reconcile::Activity;
use super::stripe_provider::StripeProvider;
use crate::domain::money::Money;

/// The one PaymentIntent of a match, created before any confirmation (so every charge the
/// provider makes for a match is on an intent the service already knows).
#[derive(Debug, Clone)]
pub struct IntentRequest {
    pub match_id: uuid::Uuid,
    pub amount: Money,
    pub idempotency_key: String,
}

#[derive(Debug, Clone)]
pub struct Intent {
    pub intent_id: String,
    /// For the client to confirm it (Stripe.js).
    pub client_secret: Option<String>,
    /// Already charged (confirmed elsewhere, or a confirmation whose recording failed).
    pub succeeded: bool,
    pub charge_id: Option<String>,
}

/// Where a charge stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStatus {
    Succeeded,
    /// Waiting for the client (3-D Secure, confirmation with the client secret).
    Pending,
    Failed,
}

/// The outcome of confirming an intent with a payment method.
#[derive(Debug, Clone)]
pub struct Charge {
    pub status: ChargeStatus,
    pub charge_id: Option<String>,
    pub failure: Option<String>,
}

/// A provider call that did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying (network, 5xx, rate limit).
    #[error("payment provider unavailable: {0}")]
    Transient(String),
    /// The provider said no; retrying the same call will not help.
    #[error("payment provider refused: {0}")]
    Rejected(String),
}

pub trait PaymentProvider {
    /// `test` or `stripe`.
    fn name(&self) -> &'static str;

    /// A PaymentIntent on the platform account, captured automatically, in the transfer group
    /// `match:<id>`.
    fn create_intent(
        &self,
        req: &IntentRequest,
    ) -> impl Future<Output = Result<Intent, ProviderError>> + Send;

    /// The intent as it stands (for its client secret).
    fn intent(&self, intent_id: &str)
        -> impl Future<Output = Result<Intent, ProviderError>> + Send;

    /// Confirms the intent with a payment method (a new method after a decline is a new
    /// attempt on the same intent).
    fn confirm_intent(
        &self,
        intent_id: &str,
        payment_method: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<Charge, ProviderError>> + Send;

    /// Refunds part or all of a charge; returns the refund's id.
    fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;

    /// Moves money to a connected account (funded by `source_transaction`, a charge, when
    /// given); returns the transfer's id.
    fn transfer(
        &self,
        destination: &str,
        amount: Money,
        transfer_group: &str,
        source_transaction: Option<&str>,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;

    /// Whether a connected account exists and can receive transfers.
    fn account_ok(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<bool, ProviderError>> + Send;

    /// The provider's own record of charges, refunds and transfers in a date range (for
    /// reconciliation).
    fn activity(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Future<Output = Result<Activity, ProviderError>> + Send;
}

/// The built-in provider: everything succeeds at once, except these test values —
/// payment method `pm_card_chargeDeclined` is declined; payout destination `acct_rejected` is
/// refused, `acct_unreachable` times out (a transient error, retried).
#[derive(Debug, Clone, Default)]
pub struct TestProvider;

pub const TEST_DECLINED_METHOD: &str = "pm_card_chargeDeclined";
pub const TEST_REJECTED_ACCOUNT: &str = "acct_rejected";
pub const TEST_UNREACHABLE_ACCOUNT: &str = "acct_unreachable";

/// A stable id for a test object from its idempotency key (a retried call gets the same id,
/// like the real provider's idempotency).
fn test_id(prefix: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_test_{hex}")
}

impl PaymentProvider for TestProvider {
    fn name(&self) -> &'static str {
        "test"
    }

    async fn create_intent(&self, req: &IntentRequest) -> Result<Intent, ProviderError> {
        self.intent(&test_id("pi", &req.idempotency_key)).await
    }

    async fn intent(&self, intent_id: &str) -> Result<Intent, ProviderError> {
        Ok(Intent {
            intent_id: intent_id.to_owned(),
            client_secret: Some(format!("{intent_id}_secret_test")),
            succeeded: false,
            charge_id: None,
        })
    }

    async fn confirm_intent(
        &self,
        _intent_id: &str,
        payment_method: &str,
        idempotency_key: &str,
    ) -> Result<Charge, ProviderError> {
        let declined = matches!(
            payment_method,
            TEST_DECLINED_METHOD | "pm_card_visa_chargeDeclined" | "pm_card_chargeCustomerFail"
        );
        Ok(Charge {
            charge_id: (!declined).then(|| test_id("ch", idempotency_key)),
            status: if declined {
                ChargeStatus::Failed
            } else {
                ChargeStatus::Succeeded
            },
            failure: declined.then(|| "card_declined".to_owned()),
        })
    }

    async fn refund(
        &self,
        _intent_id: &str,
        _amount: Money,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        Ok(test_id("re", idempotency_key))
    }

    async fn transfer(
        &self,
        destination: &str,
        _amount: Money,
        _transfer_group: &str,
        _source_transaction: Option<&str>,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        match destination {
            TEST_REJECTED_ACCOUNT => Err(ProviderError::Rejected(
                "the destination account cannot receive transfers".to_owned(),
            )),
            TEST_UNREACHABLE_ACCOUNT => Err(ProviderError::Transient("timed out".to_owned())),
            _ => Ok(test_id("tr", idempotency_key)),
        }
    }

    async fn account_ok(&self, _account_id: &str) -> Result<bool, ProviderError> {
        Ok(true)
    }

    /// Nothing outside this service records test payments.
    async fn activity(
        &self,
        _from: DateTime<Utc>,
        _to: DateTime<Utc>,
    ) -> Result<Activity, ProviderError> {
        Ok(Activity::default())
    }
}

/// The provider this node uses.
#[derive(Debug, Clone)]
pub enum Provider {
    Test(TestProvider),
    Stripe(Box<StripeProvider>),
}

impl Provider {
    /// Stripe when a secret key is configured, the test provider otherwise.
    pub fn from_settings(
        stripe: &crate::config::StripeSettings,
    ) -> Result<Self, crate::config::ConfigError> {
        if stripe.enabled() {
            Ok(Self::Stripe(Box::new(StripeProvider::new(stripe)?)))
        } else {
            Ok(Self::Test(TestProvider))
        }
    }

    pub fn is_test(&self) -> bool {
        matches!(self, Self::Test(_))
    }
}

impl PaymentProvider for Provider {
    fn name(&self) -> &'static str {
        match self {
            Self::Test(p) => p.name(),
            Self::Stripe(_) => "stripe",
        }
    }

    async fn create_intent(&self, req: &IntentRequest) -> Result<Intent, ProviderError> {
        match self {
            Self::Test(p) => p.create_intent(req).await,
            Self::Stripe(p) => p.create_intent(req).await,
        }
    }

    async fn intent(&self, intent_id: &str) -> Result<Intent, ProviderError> {
        match self {
            Self::Test(p) => p.intent(intent_id).await,
            Self::Stripe(p) => p.intent(intent_id).await,
        }
    }

    async fn confirm_intent(
        &self,
        intent_id: &str,
        payment_method: &str,
        key: &str,
    ) -> Result<Charge, ProviderError> {
        match self {
            Self::Test(p) => p.confirm_intent(intent_id, payment_method, key).await,
            Self::Stripe(p) => p.confirm_intent(intent_id, payment_method, key).await,
        }
    }

    async fn refund(
        &self,
        intent_id: &str,
        amount: Money,
        key: &str,
    ) -> Result<String, ProviderError> {
        match self {
            Self::Test(p) => p.refund(intent_id, amount, key).await,
            Self::Stripe(p) => p.refund(intent_id, amount, key).await,
        }
    }

    async fn transfer(
        &self,
        destination: &str,
        amount: Money,
        group: &str,
        source: Option<&str>,
        key: &str,
    ) -> Result<String, ProviderError> {
        match self {
            Self::Test(p) => p.transfer(destination, amount, group, source, key).await,
            Self::Stripe(p) => p.transfer(destination, amount, group, source, key).await,
        }
    }

    async fn account_ok(&self, account_id: &str) -> Result<bool, ProviderError> {
        match self {
            Self::Test(p) => p.account_ok(account_id).await,
            Self::Stripe(p) => p.account_ok(account_id).await,
        }
    }

    async fn activity(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Activity, ProviderError> {
        match self {
            Self::Test(p) => p.activity(from, to).await,
            Self::Stripe(p) => p.activity(from, to).await,
        }
    }
}
