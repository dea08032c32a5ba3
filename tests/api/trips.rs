//! Trips: creation, the validation matrix, updates, cancellation.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::support::market::{lhr_jfk_trip, trip_body, with};
use crate::support::spawn_app;

#[tokio::test]
async fn a_trip_is_posted_with_resolved_places_and_its_available_capacity() {
    let app = spawn_app().await;
    let traveler = app.register_user().await;
    let trip = app.create_trip(&traveler, &lhr_jfk_trip()).await;
    assert_eq!(trip["status"], "open");
    assert_eq!(trip["traveler_id"], traveler.id.as_str());
    assert_eq!(trip["available_grams"], 5000);
    assert_eq!(trip["capacity_grams"], 5000);
    assert_eq!(trip["origin"]["code"], "LHR");
    assert_eq!(trip["origin"]["city"], "London");
    assert_eq!(trip["destination"]["country"], "US");
    assert_eq!(
        trip["price_per_kg"],
        json!({"amount": 1500, "currency": "EUR"})
    );
    assert_eq!(
        trip["accepted_categories"],
        json!(["clothing", "documents", "electronics"])
    );

    let custom = trip_body(
        json!({"label": "Dock 4", "lat": 48.85, "lng": 2.35, "country": "fr"}),
        json!({"code": "london-gb"}),
        24,
    );
    let trip = app.create_trip(&traveler, &custom).await;
    assert_eq!(trip["origin"]["kind"], "custom");
    assert_eq!(trip["origin"]["country"], "FR");
    assert_eq!(trip["destination"]["kind"], "city");
}

#[tokio::test]
async fn every_trip_rule_is_enforced_with_its_code_and_field_and_nothing_is_created() {
    let app = spawn_app().await;
    let traveler = app.register_user().await;
    let past = Utc::now() - Duration::hours(1);
    let base = lhr_jfk_trip();
    let departure = base["departure_at"].clone();
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(base.clone(), "departure_at", json!(past)),
            "validation_failed",
            "departure_at",
        ),
        (
            with(base.clone(), "arrival_at", departure.clone()),
            "validation_failed",
            "arrival_at",
        ),
        (
            with(base.clone(), "capacity_grams", json!(0)),
            "validation_failed",
            "capacity_grams",
        ),
        (
            with(base.clone(), "capacity_grams", json!(50_001)),
            "validation_failed",
            "capacity_grams",
        ),
        (
            with(base.clone(), "price_per_kg.amount", json!(-1)),
            "validation_failed",
            "price_per_kg.amount",
        ),
        (
            with(base.clone(), "price_per_kg.currency", json!("XXX")),
            "validation_failed",
            "price_per_kg.currency",
        ),
        (
            with(base.clone(), "accepted_categories", json!([])),
            "validation_failed",
            "accepted_categories",
        ),
        (
            with(base.clone(), "accepted_categories", json!(["toys"])),
            "validation_failed",
            "accepted_categories[0]",
        ),
        (
            with(
                base.clone(),
                "accepted_categories",
                json!(["books", "weapons"]),
            ),
            "prohibited_item",
            "accepted_categories[1]",
        ),
        (
            with(base.clone(), "notes", json!("n".repeat(501))),
            "validation_failed",
            "notes",
        ),
        (
            with(base.clone(), "flight_number", json!("X")),
            "validation_failed",
            "flight_number",
        ),
        (
            with(base.clone(), "origin", json!({"code": "QQQ"})),
            "validation_failed",
            "origin.code",
        ),
        (
            with(
                base.clone(),
                "origin",
                json!({"label": "x", "lat": 95.0, "lng": 0.0, "country": "GB"}),
            ),
            "validation_failed",
            "origin.lat",
        ),
        (
            with(base.clone(), "origin", json!({"code": "LHR", "lat": 1.0})),
            "validation_failed",
            "origin",
        ),
        (
            with(base.clone(), "destination", json!({"code": "LHR"})),
            "validation_failed",
            "destination",
        ),
    ];
    for (body, code, field) in cases {
        let res = app.post_as(&traveler, "/api/trips", &body).await;
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
    let res = app
        .post_as(
            &traveler,
            "/api/trips",
            &with(base.clone(), "status", json!("completed")),
        )
        .await;
    assert_eq!(res.status(), 400, "server-owned fields cannot be sent");
    let mine: Value = app
        .get_as(&traveler, "/api/trips?mine=true")
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
async fn an_open_trip_is_changed_by_its_owner_and_a_cancelled_one_is_not() {
    let app = spawn_app().await;
    let traveler = app.register_user().await;
    let trip = app.create_trip(&traveler, &lhr_jfk_trip()).await;
    let path = format!("/api/trips/{}", trip["id"].as_str().unwrap());

    let res = app.patch_as(&traveler, &path, &json!({"capacity_grams": 8000, "notes": null, "price_per_kg": {"amount": 900, "currency": "GBP"}})).await;
    assert_eq!(res.status(), 200);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["available_grams"], 8000);
    assert!(updated["notes"].is_null());
    assert_eq!(updated["flight_number"], "BA117", "untouched fields stay");
    assert_eq!(updated["price_per_kg"]["currency"], "GBP");

    let res = app
        .patch_as(
            &traveler,
            &path,
            &json!({"arrival_at": trip["departure_at"]}),
        )
        .await;
    assert_eq!(res.status(), 422, "the merged trip is validated");
    let res = app
        .patch_as(&traveler, &path, &json!({"traveler_id": traveler.id}))
        .await;
    assert_eq!(res.status(), 400);

    let res = app.delete_as(&traveler, &path).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "cancelled");
    let res = app
        .patch_as(&traveler, &path, &json!({"capacity_grams": 100}))
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "not_editable");
    let res = app.delete_as(&traveler, &path).await;
    assert_eq!(res.status(), 409);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "invalid_transition"
    );
}

#[tokio::test]
async fn a_suspended_user_cannot_post() {
    let app = spawn_app().await;
    let traveler = app.register_user().await;
    use diesel_async::RunQueryDsl;
    diesel::sql_query("UPDATE users SET suspended_at = now()")
        .execute(&mut app.db().await)
        .await
        .unwrap();
    let res = app.post_as(&traveler, "/api/trips", &lhr_jfk_trip()).await;
    assert_eq!(res.status(), 403);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "account_suspended"
    );
    let res = app
        .post_as(
            &traveler,
            "/api/parcels",
            &crate::support::market::parcel_body(),
        )
        .await;
    assert_eq!(res.status(), 403);
}
