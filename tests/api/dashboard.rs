//! The dashboard: counts by status and the activity feed.

use serde_json::Value;

use crate::support::market::{lhr_jfk_trip, parcel_body};
use crate::support::spawn_app;

#[tokio::test]
async fn stats_count_my_items_by_status_and_report_zero_for_what_does_not_exist_yet() {
    let app = spawn_app().await;
    let me = app.register_user().await;
    let other = app.register_user().await;
    app.create_trip(&me, &lhr_jfk_trip()).await;
    let cancelled = app.create_trip(&me, &lhr_jfk_trip()).await;
    app.delete_as(
        &me,
        &format!("/api/trips/{}", cancelled["id"].as_str().unwrap()),
    )
    .await;
    app.create_parcel(&me, &parcel_body()).await;
    app.create_trip(&other, &lhr_jfk_trip()).await;

    let res = app.get_as(&me, "/api/dashboard/stats").await;
    assert_eq!(res.status(), 200);
    let stats: Value = res.json().await.unwrap();
    assert_eq!(stats["trips"]["open"], 1);
    assert_eq!(stats["trips"]["cancelled"], 1);
    assert_eq!(stats["trips"]["completed"], 0);
    assert_eq!(stats["parcels"]["open"], 1);
    assert_eq!(stats["matches"]["requested"], 0);
    assert!(stats["earnings"].as_array().unwrap().is_empty());
    assert!(stats["held"].as_array().unwrap().is_empty());
    assert!(stats["rating"].is_null());
}

#[tokio::test]
async fn activities_list_my_events_newest_first_across_pages() {
    let app = spawn_app().await;
    let me = app.register_user().await;
    let other = app.register_user().await;
    let trip = app.create_trip(&me, &lhr_jfk_trip()).await;
    app.delete_as(&me, &format!("/api/trips/{}", trip["id"].as_str().unwrap()))
        .await;
    app.create_parcel(&me, &parcel_body()).await;
    app.create_trip(&other, &lhr_jfk_trip()).await;

    let items = app.collect_pages(&me, "/api/dashboard/activities", 2).await;
    let kinds: Vec<&str> = items.iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["parcel_created", "trip_cancelled", "trip_created"]);
    assert_eq!(items[2]["subject_id"], trip["id"]);
    assert_eq!(items[2]["data"]["origin"], "LHR");
}
