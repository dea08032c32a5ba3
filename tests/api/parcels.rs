//! Parcels: the validation matrix and what other users may see.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::support::market::{parcel_body, with};
use crate::support::spawn_app;

#[tokio::test]
async fn every_parcel_rule_is_enforced_with_its_code_and_field_and_nothing_is_created() {
    let app = spawn_app().await;
    let sender = app.register_user().await;
    let base = parcel_body();
    let now = Utc::now();
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(base.clone(), "weight_grams", json!(0)),
            "validation_failed",
            "weight_grams",
        ),
        (
            with(base.clone(), "weight_grams", json!(30_001)),
            "validation_failed",
            "weight_grams",
        ),
        (
            with(base.clone(), "category", json!("weapons")),
            "prohibited_item",
            "category",
        ),
        (
            with(base.clone(), "category", json!("live_animals")),
            "prohibited_item",
            "category",
        ),
        (
            with(base.clone(), "category", json!("furniture")),
            "validation_failed",
            "category",
        ),
        (
            with(base.clone(), "description", json!("too short")),
            "validation_failed",
            "description",
        ),
        (
            with(base.clone(), "description", json!("d".repeat(501))),
            "validation_failed",
            "description",
        ),
        (
            with(base.clone(), "declared_value.amount", json!(1_000_001)),
            "validation_failed",
            "declared_value.amount",
        ),
        (
            with(base.clone(), "declared_value.currency", json!("ABC")),
            "validation_failed",
            "declared_value.currency",
        ),
        (
            with(
                base.clone(),
                "max_reward",
                json!({"amount": 10, "currency": "USD"}),
            ),
            "validation_failed",
            "max_reward.currency",
        ),
        (
            with(base.clone(), "ready_from", json!(now + Duration::days(11))),
            "validation_failed",
            "ready_from",
        ),
        (
            with(
                with(base.clone(), "ready_from", json!(now - Duration::days(3))),
                "deliver_by",
                json!(now - Duration::days(1)),
            ),
            "validation_failed",
            "deliver_by",
        ),
        (
            with(base.clone(), "dimensions_cm", json!([10, 10])),
            "validation_failed",
            "dimensions_cm",
        ),
        (
            with(base.clone(), "dimensions_cm", json!([10, 10, 301])),
            "validation_failed",
            "dimensions_cm",
        ),
        (
            with(base.clone(), "recipient", json!({"name": "Ann"})),
            "validation_failed",
            "recipient",
        ),
        (
            with(base.clone(), "recipient.email", json!("not-an-email")),
            "validation_failed",
            "recipient.email",
        ),
        (
            with(base.clone(), "recipient.phone", json!("12")),
            "validation_failed",
            "recipient.phone",
        ),
        (
            with(base.clone(), "recipient.name", json!("")),
            "validation_failed",
            "recipient.name",
        ),
        (
            with(base.clone(), "pickup_address", json!("a".repeat(301))),
            "validation_failed",
            "pickup_address",
        ),
        (
            with(base.clone(), "destination", json!({"code": "NOPE"})),
            "validation_failed",
            "destination.code",
        ),
    ];
    for (body, code, field) in cases {
        let res = app.post_as(&sender, "/api/parcels", &body).await;
        assert_eq!(res.status(), 422, "{field}");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], code, "{field}: {problem}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{field} not in {fields:?}");
    }
    let mine: Value = app
        .get_as(&sender, "/api/parcels?mine=true")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        mine["items"].as_array().unwrap().is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn the_sender_sees_everything_and_others_a_public_view() {
    let app = spawn_app().await;
    let sender = app.register_user().await;
    let traveler = app.register_user().await;
    let parcel = app.create_parcel(&sender, &parcel_body()).await;
    assert_eq!(parcel["recipient"]["email"], "ann@example.com");
    assert_eq!(parcel["pickup_address"], "1 Private Road, London");
    assert_eq!(parcel["origin"]["lat"], 51.501234);
    let path = format!("/api/parcels/{}", parcel["id"].as_str().unwrap());

    let public: Value = app.get_as(&traveler, &path).await.json().await.unwrap();
    let listed: Value = app
        .get_as(&traveler, "/api/parcels?destination=JFK")
        .await
        .json()
        .await
        .unwrap();
    for view in [&public, &listed["items"][0]] {
        assert_eq!(view["id"], parcel["id"]);
        let text = view.to_string();
        for secret in [
            "ann@example.com",
            "Ann Recipient",
            "2125550123",
            "Private Road",
            "Secret Street",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(
            view["origin"]["lat"], 51.5,
            "a custom origin is coarse for others"
        );
        assert_eq!(view["destination"]["code"], "JFK");
    }
}

#[tokio::test]
async fn an_open_parcel_is_changed_and_cancelled_by_its_sender() {
    let app = spawn_app().await;
    let sender = app.register_user().await;
    let parcel = app.create_parcel(&sender, &parcel_body()).await;
    let path = format!("/api/parcels/{}", parcel["id"].as_str().unwrap());
    let res = app
        .patch_as(
            &sender,
            &path,
            &json!({"weight_grams": 2500, "max_reward": null, "pickup_address": null}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["weight_grams"], 2500);
    assert!(body["max_reward"].is_null());
    assert!(body.get("pickup_address").is_none_or(Value::is_null));
    let res = app
        .patch_as(&sender, &path, &json!({"category": "drugs"}))
        .await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "prohibited_item"
    );
    assert_eq!(app.delete_as(&sender, &path).await.status(), 200);
    assert_eq!(
        app.patch_as(&sender, &path, &json!({"weight_grams": 1}))
            .await
            .status(),
        409
    );
}
