//! Matching and booking through the API: requests, the lifecycle, capacity under concurrency,
//! expiry with racing sweepers, suggestions and the bus.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::support::app::{TestApp, TestUser};
use crate::support::market::{lhr_jfk_trip, parcel_body};
use crate::support::{spawn_app, spawn_app_on, spawn_app_with};

/// A parcel LHR → JFK that fits `lhr_jfk_trip()` (books, EUR, 1 000 g).
fn fitting_parcel(weight: i64) -> Value {
    let mut p = parcel_body();
    p["origin"] = json!({"code": "LHR"});
    p["weight_grams"] = json!(weight);
    p
}

async fn request(app: &TestApp, who: &TestUser, parcel: &Value, trip: &Value) -> reqwest::Response {
    app.post_as(
        who,
        "/api/matches",
        &json!({"parcel_id": parcel["id"], "trip_id": trip["id"]}),
    )
    .await
}

async fn act(app: &TestApp, who: &TestUser, m: &Value, action: &str) -> reqwest::Response {
    app.post_as(
        who,
        &format!("/api/matches/{}/{action}", m["id"].as_str().unwrap()),
        &json!({}),
    )
    .await
}

fn books_trip() -> Value {
    let mut t = lhr_jfk_trip();
    t["accepted_categories"] = json!(["books", "documents"]);
    t
}

#[tokio::test]
async fn a_request_is_priced_accepted_by_the_counterpart_and_reserves_capacity() {
    let app = spawn_app().await;
    let sender = app.register_user().await;
    let traveler = app.register_user().await;
    let stranger = app.register_user().await;
    let trip = app.create_trip(&traveler, &books_trip()).await;
    let parcel = app.create_parcel(&sender, &fitting_parcel(1250)).await;
    let other_trip = app.create_trip(&traveler, &books_trip()).await;

    let res = request(&app, &sender, &parcel, &trip).await;
    assert_eq!(res.status(), 201);
    let m: Value = res.json().await.unwrap();
    assert_eq!(m["status"], "requested");
    // 15.00 EUR/kg × 1.250 kg = 18.75; fee 15 % = 2.8125 → 2.81; payout 15.94.
    assert_eq!(m["price"], json!({"amount": 1875, "currency": "EUR"}));
    assert_eq!(m["fee"]["amount"], 281);
    assert_eq!(m["payout"]["amount"], 1594);
    assert!(m["room_id"].is_string() && m["expires_at"].is_string());
    let second: Value = request(&app, &sender, &parcel, &other_trip)
        .await
        .json()
        .await
        .unwrap();

    let path = format!("/api/matches/{}", m["id"].as_str().unwrap());
    assert_eq!(
        app.get_as(&stranger, &path).await.status(),
        404,
        "strangers see nothing"
    );
    assert_eq!(act(&app, &stranger, &m, "accept").await.status(), 404);
    let res = act(&app, &sender, &m, "accept").await;
    assert_eq!(
        res.status(),
        403,
        "the requester cannot accept their own request"
    );
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "not_counterpart"
    );

    let res = act(&app, &traveler, &m, "accept").await;
    assert_eq!(res.status(), 200);
    let accepted: Value = res.json().await.unwrap();
    assert_eq!(accepted["status"], "accepted");
    let actions: Vec<&str> = accepted["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["request", "accept"]);
    let t: Value = app
        .get_as(
            &traveler,
            &format!("/api/trips/{}", trip["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["available_grams"], 5000 - 1250);
    let p: Value = app
        .get_as(
            &sender,
            &format!("/api/parcels/{}", parcel["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["status"], "matched");
    let other: Value = app
        .get_as(
            &sender,
            &format!("/api/matches/{}", second["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        other["status"], "declined",
        "the parcel's other requests are declined"
    );
    assert_eq!(other["events"][1]["reason"], "parcel_matched");
    assert!(other["events"][1]["actor_id"].is_null());

    // Illegal transitions are 409 invalid_transition.
    for (who, action) in [(&traveler, "accept"), (&traveler, "decline")] {
        let res = act(&app, who, &m, action).await;
        assert_eq!(res.status(), 409, "{action}");
        assert_eq!(
            res.json::<Value>().await.unwrap()["code"],
            "invalid_transition"
        );
    }
    assert_eq!(
        act(&app, &sender, &second, "cancel").await.status(),
        409,
        "a declined match stays declined"
    );

    // Cancelling the accepted match releases the capacity and reopens the parcel.
    let res = act(&app, &sender, &m, "cancel").await;
    assert_eq!(res.status(), 200);
    let t: Value = app
        .get_as(
            &traveler,
            &format!("/api/trips/{}", trip["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["available_grams"], 5000);
    let p: Value = app
        .get_as(
            &sender,
            &format!("/api/parcels/{}", parcel["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["status"], "open");

    let mine: Value = app
        .get_as(&traveler, "/api/matches?role=traveler")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 2);
    let none: Value = app
        .get_as(&traveler, "/api/matches?role=sender")
        .await
        .json()
        .await
        .unwrap();
    assert!(none["items"].as_array().unwrap().is_empty());
    let stats: Value = app
        .get_as(&sender, "/api/dashboard/stats")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats["matches"]["cancelled"], 1);
    assert_eq!(stats["matches"]["declined"], 1);
}

#[tokio::test]
async fn a_traveler_offers_a_trip_and_the_sender_declines() {
    let app = spawn_app().await;
    let sender = app.register_user().await;
    let traveler = app.register_user().await;
    let trip = app.create_trip(&traveler, &books_trip()).await;
    let parcel = app.create_parcel(&sender, &fitting_parcel(500)).await;
    let res = request(&app, &traveler, &parcel, &trip).await;
    assert_eq!(res.status(), 201);
    let m: Value = res.json().await.unwrap();
    assert_eq!(m["requested_by"], traveler.id.as_str());
    assert_eq!(act(&app, &traveler, &m, "decline").await.status(), 403);
    let res = act(&app, &sender, &m, "decline").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "declined");
}

#[tokio::test]
async fn ineligible_duplicate_and_excess_requests_are_refused() {
    let app = spawn_app_with(|s| s.matching.max_open_requests_per_parcel = 2).await;
    let sender = app.register_user().await;
    let traveler = app.register_user().await;
    let parcel = app.create_parcel(&sender, &fitting_parcel(1000)).await;
    let mut clothes_only = books_trip();
    clothes_only["accepted_categories"] = json!(["clothing"]);
    clothes_only["price_per_kg"]["currency"] = json!("USD");
    let wrong = app.create_trip(&traveler, &clothes_only).await;
    let res = request(&app, &sender, &parcel, &wrong).await;
    assert_eq!(res.status(), 422);
    assert_eq!(
        res.headers()["x-failed-constraints"],
        "category_not_accepted,currency_mismatch"
    );
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "not_eligible");

    let explain = app
        .get_as(
            &sender,
            &format!(
                "/api/matches/explain?parcel_id={}&trip_id={}",
                parcel["id"].as_str().unwrap(),
                wrong["id"].as_str().unwrap()
            ),
        )
        .await;
    let explain: Value = explain.json().await.unwrap();
    assert_eq!(
        explain,
        json!({"eligible": false, "failed": ["category_not_accepted", "currency_mismatch"]})
    );

    let a = app.create_trip(&traveler, &books_trip()).await;
    let b = app.create_trip(&traveler, &books_trip()).await;
    let c = app.create_trip(&traveler, &books_trip()).await;
    let explain: Value = app
        .get_as(
            &traveler,
            &format!(
                "/api/matches/explain?parcel_id={}&trip_id={}",
                parcel["id"].as_str().unwrap(),
                a["id"].as_str().unwrap()
            ),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(explain["eligible"], true);
    let score = explain["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score));
    for f in ["route", "trust", "price", "timeline", "history"] {
        assert!(explain["factors"][f].is_number(), "{f}");
    }
    assert_eq!(request(&app, &sender, &parcel, &a).await.status(), 201);
    let dup = request(&app, &sender, &parcel, &a).await;
    assert_eq!(dup.status(), 409);
    assert_eq!(
        dup.json::<Value>().await.unwrap()["code"],
        "already_requested"
    );
    assert_eq!(request(&app, &sender, &parcel, &b).await.status(), 201);
    let third = request(&app, &sender, &parcel, &c).await;
    assert_eq!(third.status(), 409);
    assert_eq!(
        third.json::<Value>().await.unwrap()["code"],
        "request_limit_reached"
    );

    let stranger = app.register_user().await;
    assert_eq!(
        request(&app, &stranger, &parcel, &a).await.status(),
        404,
        "neither side is theirs"
    );
    let res = app
        .get_as(
            &stranger,
            &format!(
                "/api/matches/explain?parcel_id={}&trip_id={}",
                parcel["id"].as_str().unwrap(),
                a["id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(res.status(), 404);
    let own_trip = app.create_trip(&sender, &books_trip()).await;
    let res = request(&app, &sender, &parcel, &own_trip).await;
    assert_eq!(res.headers()["x-failed-constraints"], "own_trip");
}

#[tokio::test]
async fn twelve_concurrent_accepts_on_a_5_kg_trip_accept_exactly_five() {
    let app = spawn_app().await;
    let sender = app.register_user().await;
    let traveler = app.register_user().await;
    let trip = app.create_trip(&traveler, &books_trip()).await;
    let mut requests = Vec::new();
    for _ in 0..12 {
        let parcel = app.create_parcel(&sender, &fitting_parcel(1000)).await;
        let res = request(&app, &sender, &parcel, &trip).await;
        assert_eq!(res.status(), 201);
        requests.push(res.json::<Value>().await.unwrap());
    }
    let accepts = requests.iter().map(|m| act(&app, &traveler, m, "accept"));
    let results = futures_util::future::join_all(accepts).await;
    let mut accepted = 0;
    for res in results {
        match res.status().as_u16() {
            200 => accepted += 1,
            409 => assert_eq!(
                res.json::<Value>().await.unwrap()["code"],
                "insufficient_capacity"
            ),
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted, 5);
    let t: Value = app
        .get_as(
            &traveler,
            &format!("/api/trips/{}", trip["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["available_grams"], 0);
    assert_eq!(t["reserved_grams"], 5000);
}

async fn match_status(app: &TestApp, who: &TestUser, id: &str) -> Value {
    app.get_as(who, &format!("/api/matches/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn two_nodes_sweeping_expire_each_lapsed_match_exactly_once_and_release_capacity() {
    let app = spawn_app_with(|s| s.matching.sweep_interval_ms = 50).await;
    let second_node =
        spawn_app_on(app.db_name.clone(), |s| s.matching.sweep_interval_ms = 50).await;
    let sender = app.register_user().await;
    let traveler = app.register_user().await;
    let trip = app.create_trip(&traveler, &books_trip()).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let parcel = app.create_parcel(&sender, &fitting_parcel(500)).await;
        let m: Value = request(&app, &sender, &parcel, &trip)
            .await
            .json()
            .await
            .unwrap();
        if i < 3 {
            assert_eq!(act(&app, &traveler, &m, "accept").await.status(), 200);
        }
        ids.push(m["id"].as_str().unwrap().to_owned());
    }
    let t: Value = app
        .get_as(
            &traveler,
            &format!("/api/trips/{}", trip["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["available_grams"], 3500);

    use diesel_async::RunQueryDsl;
    diesel::sql_query("UPDATE matches SET expires_at = now() - interval '1 second'")
        .execute(&mut app.db().await)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for id in &ids {
        loop {
            let m = match_status(&second_node, &sender, id).await;
            if m["status"] == "expired" {
                let expiries = m["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|e| e["action"] == "expire")
                    .count();
                assert_eq!(expiries, 1, "{id} expired once");
                assert!(m["events"].as_array().unwrap().last().unwrap()["actor_id"].is_null());
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{id} never expired");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let t: Value = app
        .get_as(
            &traveler,
            &format!("/api/trips/{}", trip["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        t["available_grams"], 5000,
        "the unpaid acceptance released its capacity"
    );
}

#[tokio::test]
async fn cancelling_a_trip_ends_its_requests_and_a_requested_trip_cannot_be_edited() {
    let app = spawn_app().await;
    let sender = app.register_user().await;
    let traveler = app.register_user().await;
    let trip = app.create_trip(&traveler, &books_trip()).await;
    let parcel = app.create_parcel(&sender, &fitting_parcel(1000)).await;
    let m: Value = request(&app, &sender, &parcel, &trip)
        .await
        .json()
        .await
        .unwrap();
    act(&app, &traveler, &m, "accept").await;
    let path = format!("/api/trips/{}", trip["id"].as_str().unwrap());
    let res = app
        .patch_as(&traveler, &path, &json!({"capacity_grams": 2000}))
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(app.delete_as(&traveler, &path).await.status(), 200);
    let m = match_status(&app, &sender, m["id"].as_str().unwrap()).await;
    assert_eq!(m["status"], "cancelled");
    assert_eq!(
        m["events"].as_array().unwrap().last().unwrap()["reason"],
        "trip_cancelled"
    );
    let p: Value = app
        .get_as(
            &sender,
            &format!("/api/parcels/{}", parcel["id"].as_str().unwrap()),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["status"], "open");
}

async fn wait_for_suggestions(
    app: &TestApp,
    who: &TestUser,
    query: &str,
    want: usize,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let res: Value = app
            .get_as(who, &format!("/api/matches/suggestions?{query}"))
            .await
            .json()
            .await
            .unwrap();
        let items = res["items"].as_array().unwrap().clone();
        if items.len() == want || tokio::time::Instant::now() >= deadline {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn suggestions_are_ranked_eligible_trips_and_follow_changes() {
    let app = spawn_app().await;
    let sender = app.register_user().await;
    let traveler = app.register_user().await;
    let near = app.create_trip(&traveler, &books_trip()).await;
    let mut farther = books_trip();
    farther["origin"] = json!({"label": "Reading", "lat": 51.45, "lng": -0.97, "country": "GB"});
    let farther = app.create_trip(&traveler, &farther).await;
    let mut wrong = books_trip();
    wrong["price_per_kg"]["currency"] = json!("USD");
    app.create_trip(&traveler, &wrong).await;
    let parcel = app.create_parcel(&sender, &fitting_parcel(1000)).await;
    let query = format!("parcel_id={}", parcel["id"].as_str().unwrap());

    let items = wait_for_suggestions(&app, &sender, &query, 2).await;
    let ids: Vec<&str> = items
        .iter()
        .map(|i| i["trip"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            near["id"].as_str().unwrap(),
            farther["id"].as_str().unwrap()
        ],
        "closer origin ranks first"
    );
    assert!(items[0]["score"].as_f64().unwrap() >= items[1]["score"].as_f64().unwrap());
    assert_eq!(
        items[0]["price"],
        json!({"amount": 1500, "currency": "EUR"})
    );
    assert!(
        items[0]["factors"]["route"].as_f64().unwrap()
            > items[1]["factors"]["route"].as_f64().unwrap()
    );

    // The traveler's side: the parcel is suggested for the trip, in its public view.
    let for_trip = wait_for_suggestions(
        &app,
        &traveler,
        &format!("trip_id={}", near["id"].as_str().unwrap()),
        1,
    )
    .await;
    assert_eq!(for_trip[0]["parcel"]["id"], parcel["id"]);
    assert!(for_trip[0]["parcel"].get("recipient").is_none());

    // A cancelled trip leaves the index.
    app.delete_as(
        &traveler,
        &format!("/api/trips/{}", near["id"].as_str().unwrap()),
    )
    .await;
    let items = wait_for_suggestions(&app, &sender, &query, 1).await;
    assert_eq!(items[0]["trip"]["id"], farther["id"]);
    // Only the parcel's sender may ask.
    let res = app
        .get_as(&traveler, &format!("/api/matches/suggestions?{query}"))
        .await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn posting_a_parcel_publishes_suggestion_events_on_the_bus() {
    let app = spawn_app().await;
    let sender = app.register_user().await;
    let traveler = app.register_user().await;
    let trip = app.create_trip(&traveler, &books_trip()).await;

    let client = redis::Client::open(app.settings.redis.url.expose()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("{}ch:events", app.settings.redis.key_prefix))
        .await
        .unwrap();
    let mut messages = pubsub.on_message();

    // The index learns of the trip through the bus; post the parcel once it is there.
    wait_for_suggestions(
        &app,
        &traveler,
        &format!("trip_id={}", trip["id"].as_str().unwrap()),
        0,
    )
    .await;
    let parcel = app.create_parcel(&sender, &fitting_parcel(1000)).await;
    let (mut suggestion, mut on_route) = (None, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while suggestion.is_none() || on_route.is_none() {
        let msg = tokio::time::timeout_at(deadline, messages.next())
            .await
            .expect("events arrive")
            .unwrap();
        let env: Value = serde_json::from_str(&msg.get_payload::<String>().unwrap()).unwrap();
        match env["event"]["type"].as_str().unwrap() {
            "suggestion" if env["event"]["user_id"] == sender.id.as_str() => {
                suggestion = Some(env["event"].clone())
            }
            "parcel_on_route" => on_route = Some(env["event"].clone()),
            _ => {}
        }
    }
    let suggestion = suggestion.unwrap();
    assert_eq!(suggestion["items"][0]["trip_id"], trip["id"]);
    assert_eq!(suggestion["items"][0]["parcel_id"], parcel["id"]);
    let on_route = on_route.unwrap();
    assert_eq!(on_route["user_id"], traveler.id.as_str());
    assert_eq!(on_route["trip_id"], trip["id"]);
}
