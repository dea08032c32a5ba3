//! localstripe for the Stripe path: one emulator per test process (the shim in
//! `tests/stripe/localstripe_shim.py` adds what async-stripe needs and fakes Connect), installed
//! from PyPI on first use if missing; apps configured against it with a webhook registered.

use std::process::Command;

use serde_json::Value;

use super::app::{spawn_app_with, TestApp};
use super::python;

pub const SECRET_KEY: &str = "sk_test_airbar_localstripe";
pub const WEBHOOK_SECRET: &str = "whsec_airbar_test_secret";
const LOCALSTRIPE: &str = "localstripe==1.15.10";

/// A fresh emulator (its own state, so reconciliation sees only this test's objects); it
/// stops when the test process ends. Returns its base URL.
pub fn localstripe() -> String {
    python::ensure_installed("localstripe", LOCALSTRIPE);
    let port = python::free_port();
    let shim = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/stripe/localstripe_shim.py"
    );
    python::start(
        Command::new("python3").args([shim, "--port", &port.to_string(), "--exit-with-parent"]),
        "localstripe",
        &[port],
    );
    format!("http://127.0.0.1:{port}")
}

/// An app using Stripe through its own localstripe, its webhook registered there.
pub struct StripeApp {
    pub app: TestApp,
    pub base: String,
}

impl std::ops::Deref for StripeApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

pub async fn spawn_stripe_app() -> StripeApp {
    let base = localstripe();
    let api_base = base.clone();
    let app = spawn_app_with(move |s| {
        s.stripe.secret_key = airbar::config::Secret::new(SECRET_KEY);
        s.stripe.webhook_secret = airbar::config::Secret::new(WEBHOOK_SECRET);
        s.stripe.api_base = api_base;
    })
    .await;
    let res = app
        .client
        .post(format!("{base}/_config/webhooks/{}", app.db_name))
        .basic_auth(SECRET_KEY, Some(""))
        .form(&[
            ("url", app.url("/api/payments/stripe/webhook")),
            ("secret", WEBHOOK_SECRET.to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "register the webhook");
    StripeApp { app, base }
}

impl StripeApp {
    /// A call to the emulator's API (form-encoded, like Stripe).
    pub async fn stripe(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
    ) -> Value {
        stripe_call(&self.app, &self.base, method, path, form).await
    }
}

pub async fn stripe_call(
    app: &TestApp,
    base: &str,
    method: reqwest::Method,
    path: &str,
    form: &[(&str, &str)],
) -> Value {
    let req = app
        .client
        .request(method.clone(), format!("{base}{path}"))
        .basic_auth(SECRET_KEY, Some(""));
    let req = if method == reqwest::Method::GET {
        req.query(form)
    } else {
        req.form(form)
    };
    let res = req.send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}
