//! The Stripe path against localstripe (with the shim of `tests/stripe`): a PaymentIntent per
//! payment (transfer group, match id in metadata), its webhook applied once, refunds and
//! payouts at the emulator, `airbar reconcile` agreeing and then catching a stray charge; and
//! webhooks the emulator does not send as signed fixtures: bad and stale signatures change
//! nothing, duplicates are acknowledged, events apply once in any order.

use std::time::Duration;

use airbar::services::ledger::{self, Account};
use chrono::Utc;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::payments::{accepted, Booking};
use crate::support::app::TestApp;
use crate::support::stripe::{spawn_stripe_app, StripeApp, WEBHOOK_SECRET};

const PRICE: i64 = 1800;
const FEE: i64 = 270;

#[derive(diesel::QueryableByName)]
struct One {
    #[diesel(sql_type = Text)]
    v: String,
}

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn text(app: &TestApp, sql: &str) -> Option<String> {
    let mut conn = app.db().await;
    diesel::sql_query(sql)
        .get_result::<One>(&mut conn)
        .await
        .ok()
        .map(|r| r.v)
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut conn = app.db().await;
    diesel::sql_query(sql)
        .get_result::<N>(&mut conn)
        .await
        .unwrap()
        .n
}

async fn intent_of(app: &TestApp, b: &Booking) -> String {
    text(
        app,
        &format!(
            "SELECT intent_id AS v FROM payments WHERE match_id = '{}'",
            b.id
        ),
    )
    .await
    .expect("an intent")
}

async fn pay_with(app: &TestApp, b: &Booking, method: Option<&str>) -> reqwest::Response {
    let body = match method {
        Some(m) => json!({"payment_method": m}),
        None => json!({}),
    };
    app.post_as(&b.sender, &format!("/api/matches/{}/pay", b.id), &body)
        .await
}

async fn status_of(app: &TestApp, b: &Booking) -> String {
    app.json_of(&b.sender, &format!("/api/matches/{}", b.id))
        .await["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn ledger_transfers(app: &TestApp) -> i64 {
    let mut conn = app.db().await;
    let inv = ledger::check(&mut conn).await.unwrap();
    assert!(inv.hold(), "{inv:?}");
    inv.transfers
}

#[tokio::test]
async fn a_stripe_payment_refund_and_payout_go_through_the_emulator_and_reconcile() {
    let app = spawn_stripe_app().await;
    let (_, health) = app.get_json("/api/health").await;
    assert_eq!(
        health["payments"],
        json!({"provider": "stripe", "test_mode": false})
    );

    let b = accepted(&app, 48).await;
    let res = pay_with(&app, &b, Some("pm_card_visa")).await;
    assert_eq!(res.status(), 200);
    let paid: Value = res.json().await.unwrap();
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["payment"]["provider"], "stripe");
    assert_eq!(paid["payment"]["test_mode"], false);
    let intent = intent_of(&app, &b).await;
    let pi = app
        .stripe(Method::GET, &format!("/v1/payment_intents/{intent}"), &[])
        .await;
    assert_eq!(pi["status"], "succeeded");
    assert_eq!(pi["amount"], PRICE);
    assert_eq!(pi["currency"], "eur");
    assert_eq!(pi["transfer_group"], format!("match:{}", b.id));
    assert_eq!(pi["metadata"]["match_id"], b.id.as_str());
    // The emulator's webhook arrives after the app's own confirmation and changes nothing.
    eventually("the payment_intent.succeeded webhook", async || {
        count(
            &app,
            "SELECT count(*) AS n FROM webhook_events WHERE kind = 'payment_intent.succeeded'",
        )
        .await
            == 1
    })
    .await;
    assert_eq!(ledger_transfers(&app).await, 1);

    // Delivered and released, then paid out to a connected account at the emulator.
    app.pick_up_and_deliver(&b).await;
    let acct = app
        .stripe(Method::POST, "/v1/accounts", &[("type", "express")])
        .await;
    let acct = acct["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.set_payout_account(&b.traveler, "acct_unknown1").await,
        422
    );
    assert_eq!(app.set_payout_account(&b.traveler, &acct).await, 200);
    let res = app
        .post_as(
            &b.traveler,
            "/api/wallet/withdrawals",
            &json!({"amount": 1000, "currency": "EUR"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let w: Value = res.json().await.unwrap();
    assert_eq!(w["status"], "paid", "{w}");
    let tr = text(
        &app,
        &format!(
            "SELECT transfer_id AS v FROM withdrawals WHERE id = '{}'",
            w["id"].as_str().unwrap()
        ),
    )
    .await
    .unwrap();
    let transfer = app
        .stripe(Method::GET, &format!("/v1/transfers/{tr}"), &[])
        .await;
    assert_eq!(
        (
            transfer["amount"].as_i64(),
            transfer["destination"].as_str()
        ),
        (Some(1000), Some(acct.as_str()))
    );

    // A cancelled booking is refunded at the emulator.
    let c = accepted(&app, 48).await;
    assert_eq!(pay_with(&app, &c, Some("pm_card_visa")).await.status(), 200);
    let c_intent = intent_of(&app, &c).await;
    let res = app
        .post_as(
            &c.sender,
            &format!("/api/matches/{}/cancel", c.id),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    eventually("the refund", async || {
        let refunds = app
            .stripe(
                Method::GET,
                "/v1/refunds",
                &[("payment_intent", c_intent.as_str())],
            )
            .await;
        refunds["data"]
            .as_array()
            .is_some_and(|d| d.len() == 1 && d[0]["amount"] == PRICE)
    })
    .await;

    let mut conn = app.db().await;
    let available = ledger::balance(
        &mut conn,
        Account::UserAvailable(b.traveler.id.parse().unwrap()),
        "EUR",
    )
    .await
    .unwrap();
    assert_eq!(available, PRICE - FEE - 1000);
    drop(conn);

    // Reconciliation agrees with the emulator, then catches a charge the ledger does not have.
    let (from, to) = (
        Utc::now() - chrono::Duration::hours(1),
        Utc::now() + chrono::Duration::hours(1),
    );
    eventually("refunded recorded", async || {
        count(
            &app,
            "SELECT count(*) AS n FROM payments WHERE refunded > 0",
        )
        .await
            == 1
    })
    .await;
    let report = airbar::startup::reconcile(&app.settings, from, to)
        .await
        .unwrap();
    assert!(report.provider_checked);
    assert!(report.ok(), "{:?}", report.mismatches);
    let stray = app
        .stripe(
            Method::POST,
            "/v1/payment_intents",
            &[
                ("amount", "999"),
                ("currency", "eur"),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
            ],
        )
        .await;
    let report = airbar::startup::reconcile(&app.settings, from, to)
        .await
        .unwrap();
    assert!(!report.ok());
    let stray_id = stray["id"].as_str().unwrap();
    assert!(
        report.mismatches.iter().any(|m| m.contains(stray_id)),
        "{:?}",
        report.mismatches
    );
}

#[tokio::test]
async fn a_client_confirmed_payment_completes_by_webhook_and_a_declined_card_can_be_replaced() {
    let app = spawn_stripe_app().await;
    let b = accepted(&app, 48).await;
    let res = pay_with(&app, &b, None).await;
    assert_eq!(res.status(), 200);
    let pending: Value = res.json().await.unwrap();
    assert_eq!(pending["status"], "accepted");
    assert!(pending["payment"]["client_secret"]
        .as_str()
        .is_some_and(|s| s.contains("_secret_")));
    // The client confirms at Stripe; the webhook makes the match paid.
    let intent = intent_of(&app, &b).await;
    app.stripe(
        Method::POST,
        &format!("/v1/payment_intents/{intent}"),
        &[("payment_method", "pm_card_visa")],
    )
    .await;
    app.stripe(
        Method::POST,
        &format!("/v1/payment_intents/{intent}/confirm"),
        &[],
    )
    .await;
    eventually("paid by webhook", async || {
        status_of(&app, &b).await == "paid"
    })
    .await;
    assert_eq!(ledger_transfers(&app).await, 1);

    let d = accepted(&app, 48).await;
    let res = pay_with(&app, &d, Some("pm_card_chargeCustomerFail")).await;
    assert_eq!(res.status(), 402);
    assert_eq!(status_of(&app, &d).await, "accepted");
    assert_eq!(pay_with(&app, &d, Some("pm_card_visa")).await.status(), 200);
    assert_eq!(status_of(&app, &d).await, "paid");
    assert_eq!(ledger_transfers(&app).await, 2);

    // A traveler with a connected account is paid out at release by a transfer funded by the
    // match's charge, in the match's transfer group.
    let acct = app
        .stripe(Method::POST, "/v1/accounts", &[("type", "express")])
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.set_payout_account(&d.traveler, &acct).await, 200);
    app.pick_up_and_deliver(&d).await;
    let sql = format!(
        "SELECT transfer_id AS v FROM withdrawals WHERE match_id = '{}' AND status = 'paid'",
        d.id
    );
    eventually("the release payout", async || {
        text(&app, &sql).await.is_some()
    })
    .await;
    let tr = text(&app, &sql).await.unwrap();
    let transfer = app
        .stripe(Method::GET, &format!("/v1/transfers/{tr}"), &[])
        .await;
    let charge = text(
        &app,
        &format!(
            "SELECT charge_id AS v FROM payments WHERE match_id = '{}'",
            d.id
        ),
    )
    .await
    .unwrap();
    assert_eq!(transfer["amount"], PRICE - FEE);
    assert_eq!(transfer["source_transaction"], charge.as_str());
    assert_eq!(transfer["transfer_group"], format!("match:{}", d.id));
}

fn payment_intent(id: &str, status: &str, match_id: &str) -> Value {
    json!({
        "id": id, "object": "payment_intent", "amount": PRICE, "amount_capturable": 0,
        "amount_received": if status == "succeeded" { PRICE } else { 0 },
        "capture_method": "automatic", "confirmation_method": "automatic",
        "created": Utc::now().timestamp(), "currency": "eur", "livemode": false,
        "metadata": {"match_id": match_id}, "payment_method_types": ["card"], "status": status,
        "latest_charge": "ch_fixture", "transfer_group": format!("match:{match_id}"),
        "last_payment_error": if status == "succeeded" { Value::Null } else {
            json!({"type": "card_error", "code": "card_declined", "message": "Your card was declined."})
        },
    })
}

fn event(id: &str, kind: &str, object: Value) -> String {
    json!({
        "id": id, "object": "event", "api_version": "2026-09-30.endive",
        "created": Utc::now().timestamp(), "livemode": false, "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null}, "type": kind, "data": {"object": object},
    })
    .to_string()
}

async fn deliver_webhook(app: &TestApp, payload: &str, signature: Option<String>) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url("/api/payments/stripe/webhook"))
        .header("Content-Type", "application/json")
        .body(payload.to_owned());
    if let Some(sig) = signature {
        req = req.header("Stripe-Signature", sig);
    }
    let res = req.send().await.unwrap();
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

fn sign(payload: &str, at: i64) -> String {
    stripe_webhook::Webhook::generate_test_header(payload, WEBHOOK_SECRET, Some(at))
}

#[tokio::test]
async fn signed_webhook_fixtures_apply_once_in_any_order_and_bad_signatures_change_nothing() {
    let app: StripeApp = spawn_stripe_app().await;
    // A declined card first, then the sender confirms the same intent with another card on the
    // client: only the webhook tells the service.
    let b = accepted(&app, 48).await;
    assert_eq!(
        pay_with(&app, &b, Some("pm_card_chargeCustomerFail"))
            .await
            .status(),
        402
    );
    let intent = intent_of(&app, &b).await;
    let succeeded = event(
        "evt_fixture_1",
        "payment_intent.succeeded",
        payment_intent(&intent, "succeeded", &b.id),
    );
    let now = Utc::now().timestamp();

    let before = count(&app, "SELECT count(*) AS n FROM webhook_events").await;
    assert_eq!(deliver_webhook(&app, &succeeded, None).await.0, 400);
    let forged = sign(&succeeded, now).replace("v1=", "v1=00");
    assert_eq!(deliver_webhook(&app, &succeeded, Some(forged)).await.0, 400);
    let tampered = succeeded.replace(&format!("\"amount\":{PRICE}"), "\"amount\":1");
    assert_eq!(
        deliver_webhook(&app, &tampered, Some(sign(&succeeded, now)))
            .await
            .0,
        400
    );
    let (status, problem) =
        deliver_webhook(&app, &succeeded, Some(sign(&succeeded, now - 301))).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("invalid_signature"))
    );
    assert_eq!(
        count(&app, "SELECT count(*) AS n FROM webhook_events").await,
        before,
        "nothing recorded"
    );
    assert_eq!(status_of(&app, &b).await, "accepted", "nothing applied");

    let (status, receipt) = deliver_webhook(&app, &succeeded, Some(sign(&succeeded, now))).await;
    assert_eq!(
        (status, receipt["outcome"].as_str()),
        (200, Some("applied"))
    );
    assert_eq!(status_of(&app, &b).await, "paid");
    let (_, again) = deliver_webhook(&app, &succeeded, Some(sign(&succeeded, now))).await;
    assert_eq!(again["outcome"], "duplicate");
    // The same success under another event id, and a late failure: no further effect.
    let twice = event(
        "evt_fixture_2",
        "payment_intent.succeeded",
        payment_intent(&intent, "succeeded", &b.id),
    );
    assert_eq!(
        deliver_webhook(&app, &twice, Some(sign(&twice, now)))
            .await
            .0,
        200
    );
    let late = event(
        "evt_fixture_3",
        "payment_intent.payment_failed",
        payment_intent(&intent, "requires_payment_method", &b.id),
    );
    assert_eq!(
        deliver_webhook(&app, &late, Some(sign(&late, now))).await.0,
        200
    );
    let m = app
        .json_of(&b.sender, &format!("/api/matches/{}", b.id))
        .await;
    assert_eq!(
        (m["status"].as_str(), m["payment"]["status"].as_str()),
        (Some("paid"), Some("succeeded"))
    );
    assert_eq!(ledger_transfers(&app).await, 1, "the money moved once");

    // A success for an intent that is not ours, or for another amount than ours, is not applied.
    let stranger = event(
        "evt_fixture_7",
        "payment_intent.succeeded",
        payment_intent("pi_not_ours", "succeeded", &Uuid::now_v7().to_string()),
    );
    let (_, receipt) = deliver_webhook(&app, &stranger, Some(sign(&stranger, now))).await;
    assert_eq!(receipt["outcome"], "ignored");
    let c = accepted(&app, 48).await;
    assert_eq!(pay_with(&app, &c, None).await.status(), 200);
    let mut cheap = payment_intent(&intent_of(&app, &c).await, "succeeded", &c.id);
    cheap["amount"] = json!(1);
    let cheap = event("evt_fixture_8", "payment_intent.succeeded", cheap);
    let (_, receipt) = deliver_webhook(&app, &cheap, Some(sign(&cheap, now))).await;
    assert_eq!(receipt["outcome"], "ignored");
    assert_eq!(status_of(&app, &c).await, "accepted");

    // An event type the service does not handle is acknowledged.
    let other = event(
        "evt_fixture_4",
        "customer.created",
        json!({"id": "cus_x", "object": "customer"}),
    );
    assert_eq!(
        deliver_webhook(&app, &other, Some(sign(&other, now)))
            .await
            .0,
        200
    );

    // A transfer reversed after it settled puts the payout back, once.
    app.pick_up_and_deliver(&b).await;
    let acct = app
        .stripe(Method::POST, "/v1/accounts", &[("type", "express")])
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.set_payout_account(&b.traveler, &acct).await, 200);
    let w: Value = app
        .post_as(
            &b.traveler,
            "/api/wallet/withdrawals",
            &json!({"amount": PRICE - FEE, "currency": "EUR"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(w["status"], "paid");
    let tr = text(
        &app,
        &format!(
            "SELECT transfer_id AS v FROM withdrawals WHERE id = '{}'",
            w["id"].as_str().unwrap()
        ),
    )
    .await
    .unwrap();
    // A partial reversal, then the rest (each event twice): the user gets back exactly what
    // was reversed, once.
    let wallet_after = async |app: &StripeApp| {
        let w = app.json_of(&b.traveler, "/api/wallet").await;
        (
            w["balances"][0]["available"].as_i64().unwrap(),
            w["balances"][0]["paid_out"].as_i64().unwrap(),
        )
    };
    let mut n = 10;
    for part in [Some("500"), None] {
        let form: Vec<(&str, &str)> = part.map(|a| vec![("amount", a)]).unwrap_or_default();
        app.stripe(
            Method::POST,
            &format!("/v1/transfers/{tr}/reversals"),
            &form,
        )
        .await;
        let transfer = app
            .stripe(Method::GET, &format!("/v1/transfers/{tr}"), &[])
            .await;
        for _ in 0..2 {
            n += 1;
            let reversed = event(
                &format!("evt_fixture_{n}"),
                "transfer.reversed",
                transfer.clone(),
            );
            let (status, receipt) =
                deliver_webhook(&app, &reversed, Some(sign(&reversed, now))).await;
            assert_eq!(status, 200, "{receipt}");
        }
        let expected = match part {
            Some(_) => (500, PRICE - FEE - 500),
            None => (PRICE - FEE, 0),
        };
        assert_eq!(wallet_after(&app).await, expected);
    }
    ledger_transfers(&app).await;
}
