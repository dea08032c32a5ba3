//! Notification delivery through the outbox against real local providers: an SMTP server
//! (aiosmtpd) and a Twilio-shaped SMS API (`scripts/notify_sinks.py`), one pair per test.

use std::collections::HashSet;
use std::time::Duration;

use diesel::sql_types::{Integer, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};

use crate::payments::{accepted, Booking};
use crate::support::app::TestApp;
use crate::support::sinks::{sinks, Sinks};
use crate::support::{spawn_app_on, spawn_app_with};

const RECIPIENT_EMAIL: &str = "ann@example.com";
const RECIPIENT_PHONE: &str = "+12125550123";

#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Text)]
    address: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    provider_id: Option<String>,
}

async fn outbox(app: &TestApp) -> Vec<Row> {
    diesel::sql_query(
        "SELECT kind, channel, address, status, attempts, provider_id
           FROM notification_deliveries ORDER BY id",
    )
    .load(&mut app.db().await)
    .await
    .unwrap()
}

/// Waits until no message is pending.
async fn drained(app: &TestApp) -> Vec<Row> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = outbox(app).await;
        if rows.iter().all(|r| r.status != "pending") {
            return rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still pending: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn app_with(sinks: &Sinks) -> TestApp {
    spawn_app_with(|s| sinks.configure(s)).await
}

fn code_in(text: &str) -> String {
    let at = text.find("Your delivery code: ").expect("a code line") + 20;
    text[at..at + 6].to_owned()
}

fn link_in(text: &str) -> String {
    let at = text.find("http").expect("a link");
    text[at..].split_whitespace().next().unwrap().to_owned()
}

/// Paid and picked up: the recipient has been told.
async fn in_transit(app: &TestApp) -> Booking {
    let b = accepted(app, 48).await;
    app.pay(&b).await;
    let code = app.code(&b, "pickup_code").await;
    assert_eq!(app.hand_over(&b, "pickup", &code).await.status(), 200);
    b
}

#[tokio::test]
async fn the_recipient_gets_a_working_code_and_tracking_link_by_email_and_sms() {
    let sinks = sinks();
    let app = app_with(&sinks).await;
    let b = in_transit(&app).await;

    let mail = sinks.mails_to(RECIPIENT_EMAIL, 1).await.remove(0);
    assert_eq!(mail["subject"], "A parcel is on its way to you");
    let text = mail["text"].as_str().unwrap();
    let html = mail["html"].as_str().unwrap();
    let code = code_in(text);
    assert_eq!(
        code,
        app.code(&b, "delivery_code").await,
        "the sender sees the same code"
    );
    assert!(html.contains(&code));
    assert!(mail["from"]
        .as_str()
        .unwrap()
        .contains("no-reply@airbar.local"));
    // The link works without an account and shows nothing personal.
    let link = link_in(text);
    assert!(link.starts_with(&app.address), "{link}");
    let res = app.client.get(&link).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let view: Value = res.json().await.unwrap();
    assert_eq!(view["status"], "in_transit");
    assert!(view["picked_up_at"].is_string());
    let raw = view.to_string();
    for personal in [
        "Ann",
        "example.com",
        "+1212",
        "Secret Street",
        &b.sender.email,
    ] {
        assert!(!raw.contains(personal), "{personal} in {raw}");
    }
    // The sender reads the same link; a made-up token finds nothing.
    let m = app
        .json_of(&b.sender, &format!("/api/matches/{}", b.id))
        .await;
    assert!(link.ends_with(m["tracking_url"].as_str().unwrap()));
    let m = app
        .json_of(&b.traveler, &format!("/api/matches/{}", b.id))
        .await;
    assert!(m.get("tracking_url").is_none(), "only the sender reads it");
    assert_eq!(
        app.get(&format!("/api/track/{}", "x".repeat(43)))
            .await
            .status(),
        404
    );
    assert_eq!(app.get("/api/track/short").await.status(), 404);

    // By SMS too, with the same code.
    let sms = sinks
        .wait_for(Duration::from_secs(15), |s| {
            s.texts().into_iter().find(|t| t["to"] == RECIPIENT_PHONE)
        })
        .await;
    assert!(sms["body"].as_str().unwrap().contains(&code), "{sms}");

    // The sender reissues the delivery code: the recipient hears again, the old code is dead.
    let res = app
        .post_as(
            &b.sender,
            &format!("/api/matches/{}/codes/delivery", b.id),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let mails = sinks.mails_to(RECIPIENT_EMAIL, 2).await;
    assert_eq!(mails[1]["subject"], "A new delivery code for your parcel");
    let new_code = code_in(mails[1]["text"].as_str().unwrap());
    let texts = sinks
        .wait_for(Duration::from_secs(15), |s| {
            let found: Vec<_> = s
                .texts()
                .into_iter()
                .filter(|t| t["to"] == RECIPIENT_PHONE)
                .collect();
            (found.len() >= 2).then_some(found)
        })
        .await;
    assert!(texts[1]["body"].as_str().unwrap().contains(&new_code));
    if new_code != code {
        assert_eq!(app.hand_over(&b, "deliver", &code).await.status(), 422);
    }
    // The code from the email is the one the deliver endpoint accepts.
    let res = app.hand_over(&b, "deliver", &new_code).await;
    assert_eq!(res.status(), 200);
    let res = app.client.get(&link).send().await.unwrap();
    let view: Value = res.json().await.unwrap();
    assert!(["delivered", "completed"].contains(&view["status"].as_str().unwrap()));

    // Every message is recorded as sent with the provider's id.
    let rows = drained(&app).await;
    for r in rows
        .iter()
        .filter(|r| r.address == RECIPIENT_EMAIL || r.address == RECIPIENT_PHONE)
    {
        assert_eq!(r.status, "sent", "{r:?}");
        assert_eq!(r.attempts, 1);
        assert!(r.provider_id.as_deref().is_some_and(|p| !p.is_empty()));
    }
    let sms_ids: HashSet<_> = sinks
        .texts()
        .iter()
        .map(|t| t["sid"].as_str().unwrap().to_owned())
        .collect();
    assert!(rows
        .iter()
        .filter(|r| r.channel == "sms")
        .all(|r| sms_ids.contains(r.provider_id.as_deref().unwrap())));
}

#[tokio::test]
async fn users_get_emails_and_texts_as_their_preferences_say() {
    let sinks = sinks();
    let app = app_with(&sinks).await;
    let b = accepted(&app, 48).await;
    // The sender wants no email about payments; the traveler wants texts about earnings.
    let res = app
        .put_as(
            &b.sender,
            "/api/notifications/preferences",
            &json!({"preferences": [{"kind": "match_paid", "channels": {"email": false}}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .put_as(
            &b.traveler,
            "/api/notifications/preferences",
            &json!({"preferences": [{"kind": "funds_released", "channels": {"sms": true}}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .patch_as(
            &b.traveler,
            "/api/users/me",
            &json!({"phone": "+447700900123"}),
        )
        .await;
    assert_eq!(res.status(), 200);

    app.deliver(&b).await;
    let rows = drained(&app).await;
    let to = |address: &str, kind: &str, channel: &str| {
        rows.iter()
            .any(|r| r.address == address && r.kind == kind && r.channel == channel)
    };
    assert!(
        to(&b.traveler.email, "match_paid", "email"),
        "default on: {rows:?}"
    );
    assert!(!to(&b.sender.email, "match_paid", "email"), "switched off");
    assert!(to(&b.sender.email, "parcel_delivered", "email"));
    assert!(to("+447700900123", "funds_released", "sms"), "switched on");
    assert!(
        !rows
            .iter()
            .any(|r| r.kind == "match_paid" && r.channel == "sms"),
        "default off"
    );
    // The recipient's code mail may find the parcel delivered already: nothing left to say.
    assert!(
        rows.iter().all(|r| r.status == "sent"
            || (r.kind == "recipient_delivery_code" && r.status == "obsolete")),
        "{rows:?}"
    );

    let mails = sinks.mails_to(&b.traveler.email, 1).await;
    let paid = mails
        .iter()
        .find(|m| m["subject"] == "Booking paid")
        .expect("the traveler's mail");
    assert!(paid["text"].as_str().unwrap().contains("held by Airbar"));
    assert!(paid["html"].as_str().unwrap().contains("<p>"));
    assert!(paid["message_id"]
        .as_str()
        .unwrap()
        .ends_with("@airbar.local>"));
    let text = sinks
        .wait_for(Duration::from_secs(10), |s| {
            s.texts().into_iter().find(|t| t["to"] == "+447700900123")
        })
        .await;
    assert!(text["body"].as_str().unwrap().contains("earnings"));

    // Metrics: queued and sent per channel, and the backlog gauges.
    let metrics = app.get("/api/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"airbar_notification_messages_total{channel="email",outcome="sent"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"airbar_notification_messages_total{channel="sms",outcome="queued"}"#)
    );
    assert!(
        metrics.contains(r#"airbar_notification_outbox_oldest_pending_seconds{channel="email"} 0"#)
    );
}

#[tokio::test]
async fn a_failing_sms_provider_is_retried_then_marked_failed_while_email_flows() {
    let sinks = sinks();
    sinks.sms_outage(Some(503));
    let app = app_with(&sinks).await;
    in_transit(&app).await;

    // Email is not held up by the SMS outage.
    sinks.mails_to(RECIPIENT_EMAIL, 1).await;
    let rows = drained(&app).await;
    let sms = rows
        .iter()
        .find(|r| r.channel == "sms")
        .expect("an SMS was queued");
    assert_eq!(sms.status, "failed");
    assert_eq!(sms.attempts, app.settings.notifications.max_attempts as i32);
    assert!(sinks.texts().is_empty());
    let metrics = app.get("/api/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"airbar_notification_messages_total{channel="sms",outcome="failed"} 1"#),
        "{metrics}"
    );
    assert!(metrics
        .contains(r#"airbar_notification_messages_total{channel="sms",outcome="retried"} 2"#));
    assert!(
        metrics.contains(r#"airbar_notification_messages_total{channel="sms",outcome="queued"} 1"#)
    );

    // The provider is back: the next messages go out.
    sinks.sms_outage(None);
    in_transit(&app).await;
    sinks
        .wait_for(Duration::from_secs(15), |s| {
            (!s.texts().is_empty()).then_some(())
        })
        .await;
}

#[tokio::test]
async fn the_outbox_survives_a_restart_and_sends_after_it() {
    let sinks = sinks();
    // First node: SMTP unreachable, so the mail stays queued.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let first = spawn_app_with(|s| {
        sinks.configure(s);
        s.email.smtp_port = dead_port;
        s.notifications.max_attempts = 1000;
    })
    .await;
    let b = in_transit(&first).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = outbox(&first).await;
    let mail = rows.iter().find(|r| r.address == RECIPIENT_EMAIL).unwrap();
    assert_eq!(mail.status, "pending");
    assert!(mail.attempts >= 1, "it was tried: {mail:?}");
    let db_name = first.db_name.clone();
    drop(first);

    // A new process on the same database, with SMTP up: the queued mail goes out once.
    // Same configuration as the first node (the attempts made there count).
    let second = spawn_app_on(db_name, |s| {
        sinks.configure(s);
        s.notifications.max_attempts = 1000;
    })
    .await;
    let mails = sinks.mails_to(RECIPIENT_EMAIL, 1).await;
    let code = code_in(mails[0]["text"].as_str().unwrap());
    assert_eq!(second.hand_over(&b, "deliver", &code).await.status(), 200);
    let rows = drained(&second).await;
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sinks
            .mails()
            .iter()
            .filter(|m| m["to"] == RECIPIENT_EMAIL)
            .count(),
        1
    );
}

/// Queues `n` emails straight into the outbox.
async fn queue_mails(app: &TestApp, addresses: impl Iterator<Item = String>) {
    let addresses: Vec<String> = addresses.collect();
    diesel::sql_query(
        "INSERT INTO notification_deliveries (kind, channel, address, data)
         SELECT 'match_paid', 'email', a, '{}' FROM unnest($1::text[]) AS a",
    )
    .bind::<diesel::sql_types::Array<Text>, _>(&addresses)
    .execute(&mut app.db().await)
    .await
    .unwrap();
}

#[tokio::test]
async fn two_workers_racing_send_each_message_once() {
    let sinks = sinks();
    let one = app_with(&sinks).await;
    let two = spawn_app_on(one.db_name.clone(), |s| sinks.configure(s)).await;
    queue_mails(&one, (0..300).map(|i| format!("user{i}@race.test"))).await;
    let rows = drained(&two).await;
    assert_eq!(rows.len(), 300);
    assert!(
        rows.iter().all(|r| r.status == "sent" && r.attempts == 1),
        "{rows:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mails = sinks.mails();
    assert_eq!(mails.len(), 300, "each message exactly once");
    let ids: HashSet<_> = mails
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 300);
}

#[tokio::test]
async fn a_flood_to_one_address_is_cut_at_the_hourly_limit() {
    let sinks = sinks();
    let app = spawn_app_with(|s| {
        sinks.configure(s);
        s.notifications.max_per_recipient_per_hour = 5;
    })
    .await;
    queue_mails(&app, (0..12).map(|_| "victim@flood.test".to_owned())).await;
    queue_mails(&app, std::iter::once("other@flood.test".to_owned())).await;
    // A security alert has its own budget: the flood cannot suppress it.
    diesel::sql_query(
        "INSERT INTO notification_deliveries (kind, channel, address, data, next_attempt_at)
         VALUES ('new_login', 'email', 'victim@flood.test', '{}', now() + interval '1 second')",
    )
    .execute(&mut app.db().await)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let rows = drained(&app).await;
    assert!(
        rows.iter()
            .any(|r| r.kind == "new_login" && r.status == "sent"),
        "{rows:?}"
    );
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.kind == "match_paid")
        .collect();
    let status = |s: &str| {
        rows.iter()
            .filter(|r| r.address == "victim@flood.test" && r.status == s)
            .count()
    };
    assert_eq!((status("sent"), status("suppressed")), (5, 7), "{rows:?}");
    assert!(rows
        .iter()
        .any(|r| r.address == "other@flood.test" && r.status == "sent"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sinks
            .mails()
            .iter()
            .filter(|m| m["to"] == "victim@flood.test")
            .count(),
        5 + 1,
        "the five within the limit and the alert"
    );
}

#[tokio::test]
async fn security_messages_and_offline_chat_are_delivered() {
    let sinks = sinks();
    let app = app_with(&sinks).await;
    let b = accepted(&app, 48).await;
    // A sign-in from a new device is reported (in-app and by email); the same device is not.
    app.login(&b.sender, "laptop-1").await;
    app.login(&b.sender, "laptop-1").await;
    let sender = b.sender.email.clone();
    sinks
        .wait_for(Duration::from_secs(10), |s| {
            s.mails().into_iter().find(|m| {
                m["to"] == sender.as_str() && m["subject"] == "New sign-in to your Airbar account"
            })
        })
        .await;
    let page = app.json_of(&b.sender, "/api/notifications").await;
    let count = |page: &Value, kind: &str| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == kind)
            .count()
    };
    assert_eq!(count(&page, "new_login"), 1);

    // A password change is reported too.
    let res = app
        .patch_as(
            &b.sender,
            "/api/users/me",
            &json!({"current_password": b.sender.password, "new_password": "another good passphrase"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    sinks
        .wait_for(Duration::from_secs(10), |s| {
            s.mails()
                .into_iter()
                .find(|m| m["subject"] == "Your Airbar password was changed")
        })
        .await;

    // The traveler has no socket: a chat message becomes one notification per room until read.
    let m = app
        .json_of(&b.sender, &format!("/api/matches/{}", b.id))
        .await;
    let room = m["room_id"].as_str().unwrap().to_owned();
    for n in 0..3 {
        let res = app
            .post_as(
                &b.sender,
                &format!("/api/chat/rooms/{room}/messages"),
                &json!({"body": format!("hello {n}"), "client_msg_id": format!("m{n}")}),
            )
            .await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }
    let page = app.json_of(&b.traveler, "/api/notifications").await;
    assert_eq!(count(&page, "chat_message"), 1, "{page}");
    let mail = sinks
        .wait_for(Duration::from_secs(10), |s| {
            s.mails().into_iter().find(|m| {
                m["to"] == b.traveler.email.as_str() && m["subject"] == "You have a new message"
            })
        })
        .await;
    assert!(
        !mail["text"].as_str().unwrap().contains("hello"),
        "no message text in the mail"
    );
}

#[tokio::test]
async fn an_smtp_server_refusing_our_credentials_is_retried_as_the_channels_problem() {
    let sinks = sinks();
    let app = spawn_app_with(|s| {
        sinks.configure(s);
        s.email.smtp_password = airbar::config::Secret::new("wrong");
    })
    .await;
    queue_mails(&app, std::iter::once("someone@auth.test".to_owned())).await;
    let rows = drained(&app).await;
    // 535 is not the message's fault: retried like an outage, failed only at the limit.
    let max = app.settings.notifications.max_attempts as i32;
    assert_eq!(
        (rows[0].status.as_str(), rows[0].attempts),
        ("failed", max),
        "{rows:?}"
    );
    assert!(sinks.mails().is_empty());
}

#[tokio::test]
async fn push_goes_through_the_same_outbox_when_a_gateway_is_configured() {
    let sinks = sinks();
    let app = spawn_app_with(|s| {
        sinks.configure(s);
        sinks.configure_push(s);
    })
    .await;
    let b = accepted(&app, 48).await;
    // Push is off by default; the sender switches it on for payments.
    let res = app
        .put_as(
            &b.sender,
            "/api/notifications/preferences",
            &json!({"preferences": [{"kind": "match_paid", "channels": {"push": true}}]}),
        )
        .await;
    assert_eq!(res.status(), 200);
    app.pay(&b).await;
    let push = sinks
        .wait_for(Duration::from_secs(10), |s| s.pushes().into_iter().next())
        .await;
    assert_eq!(push["user"], b.sender.id.as_str());
    assert_eq!(push["title"], "Booking paid");
    let rows = drained(&app).await;
    let pushed: Vec<_> = rows.iter().filter(|r| r.channel == "push").collect();
    assert_eq!(pushed.len(), 1, "only the sender asked for push: {rows:?}");
    assert_eq!(pushed[0].provider_id.as_deref(), push["id"].as_str());
}
