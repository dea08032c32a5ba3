//! Money through the API with the built-in test provider: pay (with Idempotency-Key replays),
//! custody codes, release, the cancellation rules, wallet and withdrawals, a race between a
//! cancellation and a pickup, and a seeded random run of 2 000 operations after which the
//! ledger's invariants hold and every match's money is where its status says.

use std::time::Duration;

use airbar::services::ledger::{self, Account};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::app::{TestApp, TestUser};
use crate::support::market::{parcel_body, trip_body};
use crate::support::{spawn_app, spawn_app_with};

/// Trip 15.00 EUR/kg, parcel 1.2 kg: price 1800, fee 15 % = 270, payout 1530.
const PRICE: i64 = 1800;
const FEE: i64 = 270;

pub struct Booking {
    pub sender: TestUser,
    pub traveler: TestUser,
    pub id: String,
}

/// An accepted match on a trip departing in `departs_in_hours`.
pub async fn accepted(app: &TestApp, departs_in_hours: i64) -> Booking {
    let sender = app.register_user().await;
    let traveler = app.register_user().await;
    let mut t = trip_body(
        json!({"code": "LHR"}),
        json!({"code": "JFK"}),
        departs_in_hours,
    );
    t["accepted_categories"] = json!(["books"]);
    let trip = app.create_trip(&traveler, &t).await;
    let mut p = parcel_body();
    p["origin"] = json!({"code": "LHR"});
    let parcel = app.create_parcel(&sender, &p).await;
    let res = app
        .post_as(
            &sender,
            "/api/matches",
            &json!({"parcel_id": parcel["id"], "trip_id": trip["id"]}),
        )
        .await;
    let m: Value = res.json().await.unwrap();
    let id = m["id"].as_str().unwrap().to_owned();
    let res = app
        .post_as(&traveler, &format!("/api/matches/{id}/accept"), &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    Booking {
        sender,
        traveler,
        id,
    }
}

impl TestApp {
    pub async fn post_with_key(
        &self,
        user: &TestUser,
        path: &str,
        key: &str,
        body: &Value,
    ) -> reqwest::Response {
        let (k, v) = self.bypass();
        self.client
            .post(self.url(path))
            .header(k, v)
            .header("Idempotency-Key", key)
            .bearer_auth(&user.access_token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn json_of(&self, user: &TestUser, path: &str) -> Value {
        let res = self.get_as(user, path).await;
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    pub async fn pay(&self, b: &Booking) -> Value {
        let res = self
            .post_as(&b.sender, &format!("/api/matches/{}/pay", b.id), &json!({}))
            .await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The code the sender reads on the match.
    pub async fn code(&self, b: &Booking, which: &str) -> String {
        let m = self
            .json_of(&b.sender, &format!("/api/matches/{}", b.id))
            .await;
        m[which]
            .as_str()
            .unwrap_or_else(|| panic!("no {which} in {m}"))
            .to_owned()
    }

    pub async fn hand_over(&self, b: &Booking, step: &str, code: &str) -> reqwest::Response {
        self.post_as(
            &b.traveler,
            &format!("/api/matches/{}/{step}", b.id),
            &json!({"code": code}),
        )
        .await
    }

    /// Pays, picks up and delivers.
    pub async fn deliver(&self, b: &Booking) -> Value {
        self.pay(b).await;
        self.pick_up_and_deliver(b).await
    }

    /// A paid booking through both handovers with the codes the sender reads.
    pub async fn pick_up_and_deliver(&self, b: &Booking) -> Value {
        let code = self.code(b, "pickup_code").await;
        assert_eq!(self.hand_over(b, "pickup", &code).await.status(), 200);
        let code = self.code(b, "delivery_code").await;
        let res = self.hand_over(b, "deliver", &code).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    /// `PUT /api/wallet/payout-account`; the status.
    pub async fn set_payout_account(&self, user: &TestUser, account: &str) -> u16 {
        self.client
            .put(self.url("/api/wallet/payout-account"))
            .bearer_auth(&user.access_token)
            .json(&json!({"account_id": account}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

async fn balance(app: &TestApp, account: Account) -> i64 {
    let mut conn = app.db().await;
    ledger::balance(&mut conn, account, "EUR").await.unwrap()
}

async fn invariants_hold(app: &TestApp) -> ledger::Invariants {
    let mut conn = app.db().await;
    let inv = ledger::check(&mut conn).await.unwrap();
    assert!(inv.hold(), "{inv:?}");
    inv
}

fn uuid(s: &str) -> Uuid {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_booking_is_paid_handed_over_delivered_and_released_to_the_traveler() {
    let app = spawn_app().await;
    let (_, health) = app.get_json("/api/health").await;
    assert_eq!(
        health["payments"],
        json!({"provider": "test", "test_mode": true})
    );
    let b = accepted(&app, 48).await;

    let paid = app.pay(&b).await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["payment"]["provider"], "test");
    assert_eq!(paid["payment"]["test_mode"], true);
    assert_eq!(
        paid["payment"]["amount"],
        json!({"amount": PRICE, "currency": "EUR"})
    );
    let m = uuid(&b.id);
    assert_eq!(balance(&app, Account::MatchHeld(m)).await, PRICE);
    assert_eq!(balance(&app, Account::ProviderClearing).await, -PRICE);

    // Only the sender reads the pickup code; only the traveler enters it.
    let code = app.code(&b, "pickup_code").await;
    assert_eq!(code.len(), 6);
    let seen = app
        .json_of(&b.traveler, &format!("/api/matches/{}", b.id))
        .await;
    assert!(seen.get("pickup_code").is_none(), "{seen}");
    let by_sender = app
        .post_as(
            &b.sender,
            &format!("/api/matches/{}/pickup", b.id),
            &json!({"code": code}),
        )
        .await;
    assert_eq!(by_sender.status(), 403);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let res = app.hand_over(&b, "pickup", wrong).await;
    assert_eq!(res.status(), 422);
    assert_eq!(res.headers()["x-attempts-left"], "4");
    let res = app.hand_over(&b, "pickup", &code).await;
    assert_eq!(res.status(), 200);
    let m_json: Value = res.json().await.unwrap();
    assert_eq!(m_json["status"], "in_transit");

    let delivery = app.code(&b, "delivery_code").await;
    let res = app.hand_over(&b, "deliver", &delivery).await;
    assert_eq!(res.status(), 200);
    let done: Value = res.json().await.unwrap();
    assert_eq!(
        done["status"], "completed",
        "released at once with a zero delay"
    );

    assert_eq!(balance(&app, Account::MatchHeld(m)).await, 0);
    assert_eq!(
        balance(&app, Account::UserAvailable(uuid(&b.traveler.id))).await,
        PRICE - FEE
    );
    assert_eq!(balance(&app, Account::PlatformRevenue).await, FEE);
    let wallet = app.json_of(&b.traveler, "/api/wallet").await;
    assert_eq!(wallet["balances"][0]["available"], PRICE - FEE);
    assert_eq!(wallet["balances"][0]["held"], 0);
    let lines = app.json_of(&b.traveler, "/api/wallet/transactions").await;
    assert_eq!(lines["items"][0]["kind"], "release");
    assert_eq!(
        lines["items"][0]["amount"],
        json!({"amount": PRICE - FEE, "currency": "EUR"})
    );
    let events = app
        .json_of(&b.sender, &format!("/api/matches/{}", b.id))
        .await["events"]
        .clone();
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["request", "accept", "pay", "pickup", "deliver", "complete"]
    );
    invariants_hold(&app).await;
}

#[tokio::test]
async fn held_funds_wait_for_the_release_delay_then_the_sweeper_releases_them() {
    let app = spawn_app_with(|s| s.payments.release_delay_secs = 1).await;
    let b = accepted(&app, 48).await;
    let delivered = app.deliver(&b).await;
    assert_eq!(delivered["status"], "delivered");
    let wallet = app.json_of(&b.traveler, "/api/wallet").await;
    assert_eq!(
        wallet["balances"][0]["held"], PRICE,
        "held for the traveler until release"
    );
    let sender_wallet = app.json_of(&b.sender, "/api/wallet").await;
    assert_eq!(sender_wallet["balances"][0]["held_from_me"], PRICE);
    let dashboard = app.json_of(&b.traveler, "/api/dashboard/stats").await;
    assert_eq!(
        dashboard["held"],
        json!([{"currency": "EUR", "amount": PRICE}])
    );
    let mut status = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = app
            .json_of(&b.sender, &format!("/api/matches/{}", b.id))
            .await["status"]
            .as_str()
            .unwrap()
            .to_owned();
        if status == "completed" {
            break;
        }
    }
    assert_eq!(status, "completed");
    assert_eq!(
        balance(&app, Account::UserAvailable(uuid(&b.traveler.id))).await,
        PRICE - FEE
    );
    invariants_hold(&app).await;
}

#[tokio::test]
async fn a_pay_replayed_under_its_key_returns_the_first_response_and_another_body_is_422() {
    let app = spawn_app().await;
    let b = accepted(&app, 48).await;
    let path = format!("/api/matches/{}/pay", b.id);
    let first = app
        .post_with_key(&b.sender, &path, "pay-1", &json!({}))
        .await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let again = app
        .post_with_key(&b.sender, &path, "pay-1", &json!({}))
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again, "the same response");
    let other = app
        .post_with_key(
            &b.sender,
            &path,
            "pay-1",
            &json!({"payment_method": "pm_card_visa"}),
        )
        .await;
    assert_eq!(other.status(), 422);
    let problem: Value = other.json().await.unwrap();
    assert_eq!(problem["code"], "idempotency_key_reused");
    // Without the key, a second payment is a conflict; the money moved once.
    let twice = app.post_as(&b.sender, &path, &json!({})).await;
    assert_eq!(twice.status(), 409);
    assert_eq!(balance(&app, Account::MatchHeld(uuid(&b.id))).await, PRICE);
    assert_eq!(invariants_hold(&app).await.transfers, 1);
}

#[tokio::test]
async fn a_declined_card_leaves_the_match_accepted_and_another_card_pays() {
    let app = spawn_app().await;
    let b = accepted(&app, 48).await;
    let path = format!("/api/matches/{}/pay", b.id);
    let res = app
        .post_as(
            &b.sender,
            &path,
            &json!({"payment_method": "pm_card_chargeDeclined"}),
        )
        .await;
    assert_eq!(res.status(), 402);
    let m = app
        .json_of(&b.sender, &format!("/api/matches/{}", b.id))
        .await;
    assert_eq!(m["status"], "accepted");
    assert_eq!(m["payment"]["status"], "failed");
    assert_eq!(invariants_hold(&app).await.transfers, 0);
    let res = app
        .post_as(&b.sender, &path, &json!({"payment_method": "pm_card_visa"}))
        .await;
    assert_eq!(res.status(), 200);
    let m = app
        .json_of(&b.sender, &format!("/api/matches/{}", b.id))
        .await;
    assert_eq!(
        (m["status"].as_str(), m["payment"]["status"].as_str()),
        (Some("paid"), Some("succeeded"))
    );
    // The traveler cannot pay, strangers see nothing.
    let stranger = app.register_user().await;
    assert_eq!(
        app.post_as(&stranger, &path, &json!({})).await.status(),
        404
    );
    assert_eq!(
        app.post_as(&b.traveler, &path, &json!({})).await.status(),
        403
    );
}

async fn wait_refunded(app: &TestApp, b: &Booking, amount: i64) -> Value {
    let mut m = Value::Null;
    for _ in 0..50 {
        m = app
            .json_of(&b.sender, &format!("/api/matches/{}", b.id))
            .await;
        if m["payment"]["refunded"]["amount"] == amount {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("refund of {amount} not recorded: {m}");
}

#[tokio::test]
async fn cancelling_a_paid_booking_refunds_by_the_rules() {
    let app = spawn_app().await;

    // The traveler cancels: full refund and a strike.
    let b = accepted(&app, 48).await;
    app.pay(&b).await;
    let res = app
        .post_as(
            &b.traveler,
            &format!("/api/matches/{}/cancel", b.id),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let m = wait_refunded(&app, &b, PRICE).await;
    assert_eq!(m["status"], "cancelled");
    assert_eq!(balance(&app, Account::MatchHeld(uuid(&b.id))).await, 0);
    let mut conn = app.db().await;
    let strikes: Vec<i32> = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        airbar::schema::users::table
            .find(uuid(&b.traveler.id))
            .select(airbar::schema::users::strikes)
            .load(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(strikes, [1]);

    // The sender cancels more than 24 h before departure: full refund.
    let b = accepted(&app, 48).await;
    app.pay(&b).await;
    let res = app
        .post_as(
            &b.sender,
            &format!("/api/matches/{}/cancel", b.id),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    wait_refunded(&app, &b, PRICE).await;
    assert_eq!(
        balance(&app, Account::UserAvailable(uuid(&b.traveler.id))).await,
        0
    );

    // The sender cancels within 24 h of departure: 80 % back, 20 % to the traveler (no fee).
    let b = accepted(&app, 12).await;
    app.pay(&b).await;
    let res = app
        .post_as(
            &b.sender,
            &format!("/api/matches/{}/cancel", b.id),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    wait_refunded(&app, &b, PRICE * 8 / 10).await;
    assert_eq!(
        balance(&app, Account::UserAvailable(uuid(&b.traveler.id))).await,
        PRICE * 2 / 10
    );
    assert_eq!(balance(&app, Account::MatchHeld(uuid(&b.id))).await, 0);

    // After pickup there is no cancellation.
    let b = accepted(&app, 48).await;
    app.pay(&b).await;
    let code = app.code(&b, "pickup_code").await;
    assert_eq!(app.hand_over(&b, "pickup", &code).await.status(), 200);
    let res = app
        .post_as(
            &b.sender,
            &format!("/api/matches/{}/cancel", b.id),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 409);
    invariants_hold(&app).await;
}

#[tokio::test]
async fn five_wrong_codes_lock_it_and_the_sender_reissues_a_new_one() {
    let app = spawn_app().await;
    let b = accepted(&app, 48).await;
    app.pay(&b).await;
    let code = app.code(&b, "pickup_code").await;
    let wrong = if code == "123456" { "654321" } else { "123456" };
    for left in (1..=4).rev() {
        let res = app.hand_over(&b, "pickup", wrong).await;
        assert_eq!(res.status(), 422);
        assert_eq!(res.headers()["x-attempts-left"], left.to_string().as_str());
    }
    assert_eq!(app.hand_over(&b, "pickup", wrong).await.status(), 423);
    assert_eq!(
        app.hand_over(&b, "pickup", &code).await.status(),
        423,
        "locked even for the right code"
    );
    let m = app
        .json_of(&b.sender, &format!("/api/matches/{}", b.id))
        .await;
    assert!(m.get("pickup_code").is_none(), "a locked code is not shown");
    let res = app
        .post_as(
            &b.traveler,
            &format!("/api/matches/{}/codes/pickup", b.id),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 403);
    let res = app
        .post_as(
            &b.sender,
            &format!("/api/matches/{}/codes/pickup", b.id),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let fresh = app.code(&b, "pickup_code").await;
    assert_eq!(app.hand_over(&b, "pickup", &fresh).await.status(), 200);

    // The delivery code too: locked after five, reissued by the sender, then accepted.
    let code = app.code(&b, "delivery_code").await;
    let wrong = if code == "123456" { "654321" } else { "123456" };
    for _ in 0..5 {
        app.hand_over(&b, "deliver", wrong).await;
    }
    assert_eq!(app.hand_over(&b, "deliver", &code).await.status(), 423);
    let path = format!("/api/matches/{}/codes/delivery", b.id);
    assert_eq!(
        app.post_as(&b.traveler, &path, &json!({})).await.status(),
        403
    );
    assert_eq!(
        app.post_as(&b.sender, &path, &json!({})).await.status(),
        200
    );
    let fresh = app.code(&b, "delivery_code").await;
    assert_eq!(app.hand_over(&b, "deliver", &fresh).await.status(), 200);
}

#[tokio::test]
async fn withdrawals_need_a_payout_account_and_funds_and_settle_or_come_back() {
    let app = spawn_app().await;
    let b = accepted(&app, 48).await;
    app.deliver(&b).await;
    let t = &b.traveler;
    let available = PRICE - FEE;
    let res = app
        .post_as(
            t,
            "/api/wallet/withdrawals",
            &json!({"amount": 100, "currency": "EUR"}),
        )
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "payout_account_required"
    );
    assert_eq!(app.set_payout_account(t, "not-an-account").await, 422);
    assert_eq!(app.set_payout_account(t, "acct_1Traveler").await, 200);

    let res = app
        .post_as(
            t,
            "/api/wallet/withdrawals",
            &json!({"amount": available + 1, "currency": "EUR"}),
        )
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "insufficient_funds"
    );
    let res = app
        .post_with_key(
            t,
            "/api/wallet/withdrawals",
            "w-1",
            &json!({"amount": 1000, "currency": "EUR"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let w: Value = res.json().await.unwrap();
    assert_eq!(w["status"], "paid");
    let replay = app
        .post_with_key(
            t,
            "/api/wallet/withdrawals",
            "w-1",
            &json!({"amount": 1000, "currency": "EUR"}),
        )
        .await;
    assert_eq!(replay.status(), 201);
    assert_eq!(
        replay.json::<Value>().await.unwrap()["id"],
        w["id"],
        "one withdrawal"
    );
    // A first request that died after moving the money (its answer never stored): the retry
    // that takes the key over finds the same withdrawal instead of making a second one.
    {
        use diesel_async::RunQueryDsl;
        let mut conn = app.db().await;
        diesel::sql_query(
            "UPDATE idempotency_keys SET status_code = NULL, response = NULL, \
             created_at = now() - interval '2 minutes' WHERE key = 'w-1'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let retried = app
        .post_with_key(
            t,
            "/api/wallet/withdrawals",
            "w-1",
            &json!({"amount": 1000, "currency": "EUR"}),
        )
        .await;
    assert_eq!(retried.status(), 201);
    assert_eq!(
        retried.json::<Value>().await.unwrap()["id"],
        w["id"],
        "still one withdrawal"
    );

    // A refused transfer comes back to available.
    assert_eq!(app.set_payout_account(t, "acct_rejected").await, 200);
    let res = app
        .post_as(
            t,
            "/api/wallet/withdrawals",
            &json!({"amount": 200, "currency": "EUR"}),
        )
        .await;
    let w: Value = res.json().await.unwrap();
    assert_eq!(w["status"], "failed", "{w}");

    // An unreachable provider is retried, then parked: the transfer may have gone through, so
    // the money stays in flight and reconciliation reports it (it is not handed back twice).
    assert_eq!(app.set_payout_account(t, "acct_unreachable").await, 200);
    let res = app
        .post_as(
            t,
            "/api/wallet/withdrawals",
            &json!({"amount": 300, "currency": "EUR"}),
        )
        .await;
    let w: Value = res.json().await.unwrap();
    assert_eq!(w["status"], "pending");
    let mut conn = app.db().await;
    let mut parked = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let n: N = diesel::sql_query(
            "SELECT count(*) AS n FROM payment_ops WHERE status = 'failed' AND attempts = 3",
        )
        .get_result(&mut conn)
        .await
        .unwrap();
        if n.n == 1 {
            parked = true;
            break;
        }
    }
    assert!(parked, "three attempts, then parked");
    let wallet = app.json_of(t, "/api/wallet").await;
    let row = &wallet["balances"][0];
    assert_eq!(
        (
            row["available"].as_i64(),
            row["paid_out"].as_i64(),
            row["withdrawing"].as_i64()
        ),
        (Some(available - 1000 - 300), Some(1000), Some(300)),
        "{wallet}"
    );
    let kinds: Vec<String> = app.json_of(t, "/api/wallet/transactions").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["start", "reverse", "start", "settle", "start", "release"]
    );
    invariants_hold(&app).await;
    let report = airbar::startup::reconcile(
        &app.settings,
        chrono::Utc::now() - chrono::Duration::hours(1),
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(report.mismatches.len(), 1, "{:?}", report.mismatches);
    assert!(report.mismatches[0].contains("1 payouts in doubt"));
}

#[tokio::test]
async fn a_cancellation_racing_a_pickup_or_delivery_lets_exactly_one_win_and_money_ends_whole() {
    let app = spawn_app().await;
    for _ in 0..6 {
        let b = accepted(&app, 48).await;
        app.pay(&b).await;
        let code = app.code(&b, "pickup_code").await;
        let (cancel_path, empty) = (format!("/api/matches/{}/cancel", b.id), json!({}));
        let cancel = app.post_as(&b.sender, &cancel_path, &empty);
        let pickup = app.hand_over(&b, "pickup", &code);
        let (c, p) = tokio::join!(cancel, pickup);
        let (c, p) = (c.status().as_u16(), p.status().as_u16());
        assert!(
            (c, p) == (200, 409) || (c, p) == (409, 200),
            "cancel {c}, pickup {p}"
        );
        let m = uuid(&b.id);
        let traveler = uuid(&b.traveler.id);
        if c == 200 {
            wait_refunded(&app, &b, PRICE).await;
            assert_eq!(balance(&app, Account::UserAvailable(traveler)).await, 0);
        } else {
            // In transit: a cancellation racing the delivery loses (after pickup only a
            // dispute remains), and the money is released whole.
            let code = app.code(&b, "delivery_code").await;
            let cancel = app.post_as(&b.sender, &cancel_path, &empty);
            let deliver = app.hand_over(&b, "deliver", &code);
            let (c, d) = tokio::join!(cancel, deliver);
            assert_eq!((c.status().as_u16(), d.status().as_u16()), (409, 200));
            assert_eq!(
                balance(&app, Account::UserAvailable(traveler)).await,
                PRICE - FEE
            );
        }
        assert_eq!(balance(&app, Account::MatchHeld(m)).await, 0);
    }
    invariants_hold(&app).await;
}

/// A small deterministic generator (the run is reproducible from its seed).
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn after_2000_seeded_random_operations_the_ledger_balances_and_every_match_is_settled_by_its_status(
) {
    let app = spawn_app().await;
    let mut rng = Lcg(0x00A1_7BA2);
    let mut bookings: Vec<Booking> = Vec::new();
    let mut ops = 0;
    while ops < 2000 {
        // Keep a pool of bookings to act on.
        if bookings.len() < 12 || rng.below(10) == 0 {
            bookings.push(accepted(&app, if rng.below(2) == 0 { 12 } else { 48 }).await);
            ops += 1;
            continue;
        }
        let i = usize::try_from(rng.below(bookings.len() as u64)).unwrap();
        let b = &bookings[i];
        let path = |step: &str| format!("/api/matches/{}/{step}", b.id);
        let key = format!("k-{}", rng.below(4));
        match rng.below(9) {
            0 | 1 => {
                let _ = app
                    .post_with_key(
                        &b.sender,
                        &path("pay"),
                        &format!("{}-{key}", b.id),
                        &json!({}),
                    )
                    .await;
            }
            2 => {
                let who = if rng.below(2) == 0 {
                    &b.sender
                } else {
                    &b.traveler
                };
                let _ = app
                    .post_with_key(
                        who,
                        &path("cancel"),
                        &format!("{}-c-{key}", b.id),
                        &json!({}),
                    )
                    .await;
            }
            3 | 4 => {
                let m = app
                    .json_of(&b.sender, &format!("/api/matches/{}", b.id))
                    .await;
                if let Some(code) = m["pickup_code"].as_str() {
                    let _ = app.hand_over(b, "pickup", code).await;
                } else if let Some(code) = m["delivery_code"].as_str() {
                    let _ = app.hand_over(b, "deliver", code).await;
                }
            }
            5 => {
                let _ = app
                    .hand_over(
                        b,
                        if rng.below(2) == 0 {
                            "pickup"
                        } else {
                            "deliver"
                        },
                        "999999",
                    )
                    .await;
            }
            6 => {
                let t = &b.traveler;
                let account = if rng.below(4) == 0 {
                    "acct_rejected"
                } else {
                    "acct_ok"
                };
                app.set_payout_account(t, account).await;
                let amount = 1 + rng.below(2000);
                let _ = app
                    .post_with_key(
                        t,
                        "/api/wallet/withdrawals",
                        &format!("{}-w-{key}", b.id),
                        &json!({"amount": amount, "currency": "EUR"}),
                    )
                    .await;
            }
            _ => {
                // A replay of a pay under a used key, or a stray pay.
                let _ = app
                    .post_with_key(
                        &b.sender,
                        &path("pay"),
                        &format!("{}-k-0", b.id),
                        &json!({}),
                    )
                    .await;
            }
        }
        ops += 1;
        if bookings.len() > 40 {
            bookings.remove(0);
        }
    }
    // Let queued refunds and payouts finish.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let inv = invariants_hold(&app).await;
    assert!(inv.transfers > 100, "the run moved money: {inv:?}");
    // Every match's held funds agree with its status.
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName, Debug)]
    struct Wrong {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = app.db().await;
    let wrong: Wrong = diesel::sql_query(
        "SELECT count(*) AS n FROM matches m
           LEFT JOIN ledger_accounts a ON a.kind = 'match_held' AND a.owner_id = m.id
          WHERE coalesce(a.balance, 0) <> CASE WHEN m.status IN ('paid', 'in_transit', 'delivered') THEN m.price ELSE 0 END",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        wrong.n, 0,
        "matches whose held funds disagree with their status"
    );
    let pending: Wrong =
        diesel::sql_query("SELECT count(*) AS n FROM payment_ops WHERE status = 'pending'")
            .get_result(&mut conn)
            .await
            .unwrap();
    assert_eq!(pending.n, 0, "every refund and payout reached the provider");
}

#[tokio::test]
async fn a_traveler_with_a_connected_account_is_paid_out_at_release() {
    let app = spawn_app().await;
    let b = accepted(&app, 48).await;
    assert_eq!(
        app.set_payout_account(&b.traveler, "acct_1Connected").await,
        200
    );
    assert_eq!(app.deliver(&b).await["status"], "completed");
    let mut wallet = Value::Null;
    for _ in 0..50 {
        wallet = app.json_of(&b.traveler, "/api/wallet").await;
        if wallet["balances"][0]["paid_out"] == PRICE - FEE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = &wallet["balances"][0];
    assert_eq!(
        (
            row["available"].as_i64(),
            row["paid_out"].as_i64(),
            row["withdrawing"].as_i64()
        ),
        (Some(0), Some(PRICE - FEE), Some(0)),
        "{wallet}"
    );
    let kinds: Vec<String> = app.json_of(&b.traveler, "/api/wallet/transactions").await["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["settle", "start", "release"]);
    invariants_hold(&app).await;
}

#[tokio::test]
async fn a_key_whose_first_request_never_answered_is_busy_then_taken_over() {
    use diesel_async::RunQueryDsl;
    use sha2::{Digest, Sha256};
    let app = spawn_app().await;
    let b = accepted(&app, 48).await;
    let path = format!("/api/matches/{}/pay", b.id);
    // What a request that died after claiming the key leaves behind.
    let fingerprint = format!("POST {path}\n{{\"payment_method\":null}}");
    let mut conn = app.db().await;
    diesel::sql_query(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, claim) VALUES ($1, 'k-dead', $2, gen_random_uuid())",
    )
    .bind::<diesel::sql_types::Uuid, _>(uuid(&b.sender.id))
    .bind::<diesel::sql_types::Bytea, _>(Sha256::digest(fingerprint.as_bytes()).to_vec())
    .execute(&mut conn)
    .await
    .unwrap();
    let res = app
        .post_with_key(&b.sender, &path, "k-dead", &json!({}))
        .await;
    assert_eq!(res.status(), 409, "still running, as far as anyone knows");
    assert_eq!(res.headers()["retry-after"], "1");
    diesel::sql_query("UPDATE idempotency_keys SET created_at = now() - interval '2 minutes'")
        .execute(&mut conn)
        .await
        .unwrap();
    let res = app
        .post_with_key(&b.sender, &path, "k-dead", &json!({}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "paid");
    let replay = app
        .post_with_key(&b.sender, &path, "k-dead", &json!({}))
        .await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
}
