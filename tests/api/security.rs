//! Rate limits, CORS and security headers.

use serde_json::{json, Value};

use crate::support::{spawn_app, spawn_app_with};

#[tokio::test]
async fn auth_routes_answer_429_after_the_limit_unless_the_bypass_token_is_sent() {
    let app = spawn_app_with(|s| s.rate_limit.auth_per_minute = 3).await;
    let login = json!({"email": "nobody@example.com", "password": "whatever-it-is"});
    for i in 0..3 {
        let res = app.post_json("/api/auth/login", &login, None).await;
        assert_eq!(res.status(), 401, "attempt {i}");
        assert_eq!(res.headers()["ratelimit-policy"], "\"auth\";q=3;w=60");
        let remaining = format!("\"auth\";r={};", 2 - i);
        assert!(res.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with(&remaining));
    }
    let res = app.post_json("/api/auth/login", &login, None).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "rate_limited");

    let (k, v) = app.bypass();
    let res = app
        .client
        .post(app.url("/api/auth/login"))
        .header(k, v)
        .json(&login)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "the bypass token skips the limit");
    let res = app
        .client
        .post(app.url("/api/auth/login"))
        .header(k, "wrong")
        .json(&login)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429, "a wrong bypass token does not");
}

#[tokio::test]
async fn each_user_has_a_limit_of_their_own() {
    let app = spawn_app_with(|s| {
        s.rate_limit.user_per_minute = 2;
        s.rate_limit.ip_per_minute = 1000;
    })
    .await;
    let alice = app.register_user().await;
    let bob = app.register_user().await;
    for _ in 0..2 {
        assert_eq!(
            app.get_authed("/api/users/me", &alice.access_token)
                .await
                .status(),
            200
        );
    }
    let res = app.get_authed("/api/users/me", &alice.access_token).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["ratelimit-policy"], "\"user\";q=2;w=60");
    assert_eq!(
        app.get_authed("/api/users/me", &bob.access_token)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn every_route_counts_per_ip_but_probes_do_not() {
    let app = spawn_app_with(|s| s.rate_limit.ip_per_minute = 2).await;
    for _ in 0..2 {
        assert_eq!(app.get("/api/no-such-route").await.status(), 404);
    }
    assert_eq!(app.get("/api/no-such-route").await.status(), 429);
    for _ in 0..5 {
        assert_eq!(app.get("/api/live").await.status(), 200);
    }
}

#[tokio::test]
async fn with_redis_down_auth_limits_hold_in_process_and_general_limits_fail_open() {
    let app = spawn_app_with(|s| {
        s.redis.url = airbar::config::Secret::new("redis://127.0.0.1:1");
        s.rate_limit.auth_per_minute = 2;
        s.rate_limit.ip_per_minute = 1;
    })
    .await;
    let login = json!({"email": "nobody@example.com", "password": "whatever-it-is"});
    assert_eq!(
        app.post_json("/api/auth/login", &login, None)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.post_json("/api/auth/login", &login, None)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.post_json("/api/auth/login", &login, None)
            .await
            .status(),
        429
    );
    for _ in 0..3 {
        assert_eq!(
            app.get("/api/no-such-route").await.status(),
            404,
            "fails open"
        );
    }
}

#[tokio::test]
async fn cors_allows_configured_origins_only() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/api/live"))
        .header("origin", "https://app.airbar.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.airbar.test"
    );
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");

    let res = app
        .client
        .get(app.url("/api/live"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("access-control-allow-origin").is_none());

    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/users/me"))
        .header("origin", "https://app.airbar.test")
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.airbar.test"
    );
    let evil = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/users/me"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "PATCH")
        .send()
        .await
        .unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn responses_carry_security_headers_and_the_docs_page_its_own_csp() {
    let app = spawn_app().await;
    let res = app.get("/api/live").await;
    let h = res.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .starts_with("default-src 'none'"));
    assert!(
        h.get("strict-transport-security").is_none(),
        "no HSTS without TLS"
    );
    let docs = app.get("/api/docs/").await;
    let csp = docs.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );

    let app = spawn_app_with(|s| s.server.hsts = true).await;
    let res = app.get("/api/live").await;
    assert!(res.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .contains("max-age="));
}
