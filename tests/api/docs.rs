//! The OpenAPI document is valid and lists exactly the routes the router serves.

use std::collections::BTreeSet;

use crate::support::spawn_app;

#[tokio::test]
async fn the_openapi_document_is_valid_and_lists_every_route_the_router_has() {
    let app = spawn_app().await;
    let (status, doc) = app.get_json("/api/docs/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let routed: BTreeSet<(String, String)> = airbar::http::ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        documented, routed,
        "OpenAPI paths and the router's route table differ"
    );

    // Every `$ref` resolves to a component.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let text = doc.to_string();
    for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(schemas.contains_key(name), "dangling $ref to {name}");
    }
}

#[tokio::test]
async fn every_route_in_the_table_is_served_by_the_router() {
    let app = spawn_app().await;
    for (method, path) in airbar::http::ROUTES {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let res = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        if status == 404 {
            let body: serde_json::Value = res.json().await.unwrap();
            assert_ne!(
                body["code"], "route_not_found",
                "{method} {path} is not routed"
            );
        }
        assert_ne!(status, 405, "{method} {path} is not routed for its method");
    }
}

#[tokio::test]
async fn the_docs_ui_is_served_from_vendored_assets() {
    let app = spawn_app().await;
    let res = app.get("/api/docs").await;
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/api/docs/");
    let res = app.get("/api/docs/").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("swagger"));
    let res = app.get("/api/docs/swagger-ui-bundle.js").await;
    assert_eq!(res.status(), 200);
}
