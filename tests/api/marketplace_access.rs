//! The authorization matrix: owner, another user and anonymous × every trip and parcel route.

use serde_json::{json, Value};

use crate::support::market::{lhr_jfk_trip, parcel_body};
use crate::support::spawn_app;

#[tokio::test]
async fn who_may_do_what_to_trips_and_parcels() {
    let app = spawn_app().await;
    let owner = app.register_user().await;
    let other = app.register_user().await;
    let trip = app.create_trip(&owner, &lhr_jfk_trip()).await;
    let parcel = app.create_parcel(&owner, &parcel_body()).await;

    for (kind, id, patch) in [
        (
            "trips",
            trip["id"].as_str().unwrap(),
            json!({"capacity_grams": 4000}),
        ),
        (
            "parcels",
            parcel["id"].as_str().unwrap(),
            json!({"weight_grams": 1000}),
        ),
    ] {
        let path = format!("/api/{kind}/{id}");
        // Anonymous: every route needs a token.
        assert_eq!(app.get(&path).await.status(), 401, "{kind} anonymous GET");
        let anon_patch = app
            .client
            .patch(app.url(&path))
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert_eq!(anon_patch.status(), 401, "{kind} anonymous PATCH");
        let anon_delete = app.client.delete(app.url(&path)).send().await.unwrap();
        assert_eq!(anon_delete.status(), 401, "{kind} anonymous DELETE");
        assert_eq!(
            app.get(&format!("/api/{kind}")).await.status(),
            401,
            "{kind} anonymous search"
        );

        // Another user: may read an open one, may not change it.
        assert_eq!(
            app.get_as(&other, &path).await.status(),
            200,
            "{kind} other GET"
        );
        let res = app.patch_as(&other, &path, &patch).await;
        assert_eq!(res.status(), 403, "{kind} other PATCH");
        assert_eq!(res.json::<Value>().await.unwrap()["code"], "not_owner");
        assert_eq!(
            app.delete_as(&other, &path).await.status(),
            403,
            "{kind} other DELETE"
        );

        // The owner may do everything.
        assert_eq!(
            app.get_as(&owner, &path).await.status(),
            200,
            "{kind} owner GET"
        );
        assert_eq!(
            app.patch_as(&owner, &path, &patch).await.status(),
            200,
            "{kind} owner PATCH"
        );
        assert_eq!(
            app.delete_as(&owner, &path).await.status(),
            200,
            "{kind} owner DELETE"
        );

        // Once it is no longer open, another user cannot even see it.
        assert_eq!(
            app.get_as(&other, &path).await.status(),
            404,
            "{kind} other GET after cancel"
        );
        assert_eq!(
            app.patch_as(&other, &path, &patch).await.status(),
            404,
            "{kind} other PATCH after cancel"
        );
        assert_eq!(
            app.delete_as(&other, &path).await.status(),
            404,
            "{kind} other DELETE after cancel"
        );
        assert_eq!(
            app.get_as(&owner, &path).await.status(),
            200,
            "{kind} owner still sees it"
        );

        // Unknown and malformed ids.
        for bad in ["0190a1b2-0000-7000-8000-000000000000", "nope"] {
            assert_eq!(
                app.get_as(&owner, &format!("/api/{kind}/{bad}"))
                    .await
                    .status(),
                404,
                "{kind} {bad}"
            );
        }
    }
}

#[tokio::test]
async fn mine_lists_my_items_in_every_status_and_only_mine() {
    let app = spawn_app().await;
    let me = app.register_user().await;
    let other = app.register_user().await;
    let kept = app.create_trip(&me, &lhr_jfk_trip()).await;
    let cancelled = app.create_trip(&me, &lhr_jfk_trip()).await;
    app.create_trip(&other, &lhr_jfk_trip()).await;
    app.delete_as(
        &me,
        &format!("/api/trips/{}", cancelled["id"].as_str().unwrap()),
    )
    .await;
    let mine = app.collect_pages(&me, "/api/trips?mine=true", 1).await;
    let ids: Vec<&str> = mine.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            cancelled["id"].as_str().unwrap(),
            kept["id"].as_str().unwrap()
        ],
        "newest first"
    );
    let public = app.collect_pages(&other, "/api/trips", 10).await;
    assert_eq!(
        public.len(),
        2,
        "open trips of everyone, not cancelled ones"
    );
}
