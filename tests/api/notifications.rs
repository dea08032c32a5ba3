//! In-app notifications: every match event notifies the right party (written with the event),
//! listed newest first with an unread filter and count, read one or all, pushed live to the
//! user's sockets as `notification` frames; nobody reads another user's.

use serde_json::{json, Value};

use crate::payments::accepted;
use crate::support::spawn_app;
use crate::support::ws::{connect, next_of};

fn kinds(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn match_events_notify_the_right_party_and_can_be_read() {
    let app = spawn_app().await;
    let b = accepted(&app, 48).await;
    // The sender asked, the traveler accepted.
    let traveler = app.json_of(&b.traveler, "/api/notifications").await;
    assert_eq!(kinds(&traveler), ["match_requested"]);
    assert_eq!(traveler["unread_count"], 1);
    let sender = app.json_of(&b.sender, "/api/notifications").await;
    assert_eq!(kinds(&sender), ["match_accepted"]);
    let n = &sender["items"][0];
    assert_eq!(n["data"]["match_id"], b.id.as_str());
    assert!(n["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(n["read_at"].is_null());

    // Live: the sender's socket gets the payment's notification.
    let mut socket = connect(&app, &b.sender).await;
    app.deliver(&b).await;
    let frame = next_of(&mut socket, "notification").await;
    assert_eq!(frame["kind"], "match_paid");
    assert_eq!(frame["data"]["match_id"], b.id.as_str());

    let sender = app.json_of(&b.sender, "/api/notifications").await;
    assert_eq!(
        kinds(&sender),
        [
            "parcel_delivered",
            "parcel_picked_up",
            "match_paid",
            "match_accepted"
        ]
    );
    let traveler = app.json_of(&b.traveler, "/api/notifications").await;
    assert_eq!(
        kinds(&traveler),
        ["funds_released", "match_paid", "match_requested"]
    );

    // Read one, then all; the unread filter and count follow.
    let first = sender["items"][3]["id"].as_str().unwrap().to_owned();
    let res = app
        .post_as(
            &b.sender,
            &format!("/api/notifications/{first}/read"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.json::<Value>().await.unwrap()["read_at"].is_string());
    let unread = app
        .json_of(&b.sender, "/api/notifications?unread=true")
        .await;
    assert_eq!(unread["unread_count"], 3);
    assert_eq!(kinds(&unread).len(), 3);
    // Nobody reads another user's.
    let res = app
        .post_as(
            &b.traveler,
            &format!("/api/notifications/{first}/read"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 404);
    let res = app
        .post_as(&b.sender, "/api/notifications/read-all", &json!({}))
        .await;
    assert_eq!(res.json::<Value>().await.unwrap()["updated"], 3);
    let unread = app
        .json_of(&b.sender, "/api/notifications?unread=true")
        .await;
    assert_eq!(
        (unread["unread_count"].as_i64(), kinds(&unread).len()),
        (Some(0), 0)
    );
}

#[tokio::test]
async fn a_cancelled_paid_booking_tells_the_other_party_and_the_refund_to_the_sender() {
    let app = spawn_app().await;
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
    let sender = app.json_of(&b.sender, "/api/notifications").await;
    assert_eq!(
        kinds(&sender)[..2],
        ["refund_issued".to_owned(), "match_cancelled".to_owned()]
    );
    let traveler = app.json_of(&b.traveler, "/api/notifications").await;
    assert_eq!(
        kinds(&traveler)[0],
        "match_paid",
        "the one who cancelled is not told"
    );
}

fn channel(prefs: &Value, kind: &str, channel: &str) -> bool {
    prefs["preferences"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))["channels"][channel]
        .as_bool()
        .unwrap()
}

#[tokio::test]
async fn preferences_have_defaults_change_all_or_nothing_and_keep_security_messages_on() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let prefs = app.json_of(&user, "/api/notifications/preferences").await;
    assert!(channel(&prefs, "match_paid", "email"));
    assert!(!channel(&prefs, "match_paid", "sms"));
    assert!(channel(&prefs, "new_login", "email"));
    let put = |body: Value| {
        let user = &user;
        let app = &app;
        async move {
            app.put_as(user, "/api/notifications/preferences", &body)
                .await
        }
    };
    let res = put(json!({"preferences": [
        {"kind": "match_paid", "channels": {"email": false, "sms": true}}
    ]}))
    .await;
    assert_eq!(res.status(), 200);
    let prefs: Value = res.json().await.unwrap();
    assert!(!channel(&prefs, "match_paid", "email"));
    assert!(channel(&prefs, "match_paid", "sms"));

    // A security message cannot be switched off; nothing in that request changes.
    let res = put(json!({"preferences": [
        {"kind": "match_paid", "channels": {"email": true}},
        {"kind": "new_login", "channels": {"email": false}}
    ]}))
    .await;
    assert_eq!(res.status(), 422);
    let problem: Value = res.json().await.unwrap();
    assert_eq!(
        problem["errors"][0]["field"],
        "preferences[1].channels.email"
    );
    for bad in [
        json!({"preferences": [{"kind": "lottery_won", "channels": {"email": true}}]}),
        json!({"preferences": [{"kind": "match_paid", "channels": {"pigeon": true}}]}),
    ] {
        assert_eq!(put(bad).await.status(), 422);
    }
    let prefs = app.json_of(&user, "/api/notifications/preferences").await;
    assert!(
        !channel(&prefs, "match_paid", "email"),
        "unchanged by the refused requests"
    );
    assert!(channel(&prefs, "new_login", "email"));
}
