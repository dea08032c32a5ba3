//! Every error leaves as RFC 9457 problem+json with a stable code and the request id.

use crate::support::spawn_app;

const PROBLEM: &str = "application/problem+json";

async fn problem(res: reqwest::Response) -> (u16, serde_json::Value, String) {
    let status = res.status().as_u16();
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(ct, PROBLEM, "status {status}");
    let header_id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = res.json().await.unwrap();
    for key in ["type", "title", "status", "detail", "code", "request_id"] {
        assert!(body.get(key).is_some(), "problem lacks `{key}`: {body}");
    }
    assert_eq!(body["status"], status);
    assert_eq!(body["request_id"], header_id.as_str());
    (status, body, header_id)
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = spawn_app().await;
    let (status, body, _) = problem(app.get("/api/no-such-thing").await).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "route_not_found");
    assert_eq!(body["type"], "urn:airbar:problem:route_not_found");
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_with_allow() {
    let app = spawn_app().await;
    let res = app
        .client
        .delete(app.url("/api/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET");
    let (status, body, _) = problem(res).await;
    assert_eq!(status, 405);
    assert_eq!(body["code"], "method_not_allowed");
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/_test/echo"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    let (status, body, _) = problem(res).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "malformed_json");
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_400_problem() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/_test/echo"))
        .json(&serde_json::json!({"name": "x", "count": "many"}))
        .send()
        .await
        .unwrap();
    let (status, body, _) = problem(res).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_body");
}

#[tokio::test]
async fn a_wrong_content_type_is_a_415_problem() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/_test/echo"))
        .header("content-type", "text/plain")
        .body("{\"name\":\"x\",\"count\":1}")
        .send()
        .await
        .unwrap();
    let (status, body, _) = problem(res).await;
    assert_eq!(status, 415);
    assert_eq!(body["code"], "unsupported_media_type");
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = spawn_app().await;
    let big = "x".repeat(app.settings.server.json_limit_bytes + 1);
    let res = app
        .client
        .post(app.url("/api/_test/echo"))
        .json(&serde_json::json!({"name": big, "count": 1}))
        .send()
        .await
        .unwrap();
    let (status, body, _) = problem(res).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "payload_too_large");
}

#[tokio::test]
async fn a_valid_body_passes_through() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/api/_test/echo"))
        .json(&serde_json::json!({"name": "x", "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["count"], 1);
}

#[tokio::test]
async fn a_5xx_body_carries_no_internal_detail() {
    let app = spawn_app().await;
    let res = app.get("/api/_test/boom").await;
    let (status, body, _) = problem(res).await;
    assert_eq!(status, 500);
    assert_eq!(body["code"], "internal_error");
    let text = body.to_string();
    assert!(
        !text.contains("secret-detail") && !text.contains("10.1.2.3"),
        "{text}"
    );
}

#[tokio::test]
async fn a_client_request_id_is_echoed_in_header_and_problem() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api/nope"))
        .header("x-request-id", "req-42.abc")
        .send()
        .await
        .unwrap();
    let (_, body, header_id) = problem(res).await;
    assert_eq!(header_id, "req-42.abc");
    assert_eq!(body["request_id"], "req-42.abc");
}

#[tokio::test]
async fn a_request_id_is_generated_when_none_or_an_unusable_one_is_sent() {
    let app = spawn_app().await;
    let res = app.get("/api/live").await;
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");

    let too_long = "a".repeat(500);
    let res = app
        .client
        .get(app.url("/api/live"))
        .header("x-request-id", &too_long)
        .send()
        .await
        .unwrap();
    let replaced = res.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(replaced, too_long);
    assert!(uuid::Uuid::parse_str(replaced).is_ok());
}
