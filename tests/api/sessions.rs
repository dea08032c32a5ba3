//! Device sessions: listing, revocation taking effect at once, logout, one session per device.

use serde_json::{json, Value};

use crate::support::spawn_app;

#[tokio::test]
async fn sessions_are_listed_per_device_with_the_current_one_marked() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let phone = app.login(&user, "phone-1").await;
    let res = app
        .get_authed("/api/auth/sessions", &phone.access_token)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let current: Vec<_> = items.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], phone.session_id.as_str());
    assert_eq!(current[0]["ip"], "127.0.0.1");
    assert!(current[0]["device_fingerprint"].as_str().unwrap().len() == 64);
    assert!(body["next_cursor"].is_null());
}

#[tokio::test]
async fn logging_in_again_on_the_same_device_replaces_its_session() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let first = app.login(&user, "tablet").await;
    // Used once, so its session's state is cached as active before it gets replaced.
    assert_eq!(
        app.get_authed("/api/users/me", &first.access_token)
            .await
            .status(),
        200
    );
    let second = app.login(&user, "tablet").await;
    assert_ne!(first.session_id, second.session_id);
    assert_eq!(
        app.get_authed("/api/users/me", &first.access_token)
            .await
            .status(),
        401
    );
    let body: Value = app
        .get_authed("/api/auth/sessions", &second.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["items"].as_array().unwrap().len(),
        2,
        "the registration session and the tablet"
    );
}

#[tokio::test]
async fn revoking_a_session_stops_its_still_valid_access_token_at_once() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let laptop = app.login(&user, "laptop").await;
    assert_eq!(
        app.get_authed("/api/users/me", &laptop.access_token)
            .await
            .status(),
        200
    );

    let res = app
        .client
        .delete(app.url(&format!("/api/auth/sessions/{}", laptop.session_id)))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = app.get_authed("/api/users/me", &laptop.access_token).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "session_revoked"
    );
    let res = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": laptop.refresh_token}),
            None,
        )
        .await;
    assert_eq!(res.status(), 401, "its refresh token is dead too");
    assert_eq!(
        app.get_authed("/api/users/me", &user.access_token)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn another_users_session_cannot_be_revoked_and_looks_absent() {
    let app = spawn_app().await;
    let alice = app.register_user().await;
    let bob = app.register_user().await;
    for id in [
        bob.session_id.as_str(),
        "0190a1b2-0000-7000-8000-000000000000",
        "not-a-uuid",
    ] {
        let res = app
            .client
            .delete(app.url(&format!("/api/auth/sessions/{id}")))
            .bearer_auth(&alice.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404, "{id}");
    }
    assert_eq!(
        app.get_authed("/api/users/me", &bob.access_token)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn logout_ends_the_current_session_only() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other = app.login(&user, "other-device").await;
    let res = app
        .post_json("/api/auth/logout", &json!({}), Some(&user.access_token))
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        app.get_authed("/api/users/me", &user.access_token)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.get_authed("/api/users/me", &other.access_token)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn session_revocation_is_seen_when_redis_is_not_configured() {
    let app =
        crate::support::spawn_app_with(|s| s.redis.url = airbar::config::Secret::new("")).await;
    let user = app.register_user().await;
    let laptop = app.login(&user, "laptop").await;
    let res = app
        .post_json("/api/auth/logout", &json!({}), Some(&laptop.access_token))
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        app.get_authed("/api/users/me", &laptop.access_token)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.get_authed("/api/users/me", &user.access_token)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn without_a_device_id_two_logins_are_two_devices() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let login = json!({"email": user.email, "password": user.password});
    let a: Value = app
        .post_json("/api/auth/login", &login, None)
        .await
        .json()
        .await
        .unwrap();
    let b: Value = app
        .post_json("/api/auth/login", &login, None)
        .await
        .json()
        .await
        .unwrap();
    for token in [&a["access_token"], &b["access_token"]] {
        assert_eq!(
            app.get_authed("/api/users/me", token.as_str().unwrap())
                .await
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn sessions_beyond_the_per_user_limit_are_revoked_oldest_first() {
    let app = crate::support::spawn_app_with(|s| s.auth.max_sessions_per_user = 2).await;
    let user = app.register_user().await;
    let second = app.login(&user, "device-2").await;
    let third = app.login(&user, "device-3").await;
    assert_eq!(
        app.get_authed("/api/users/me", &user.access_token)
            .await
            .status(),
        401,
        "the oldest went"
    );
    assert_eq!(
        app.get_authed("/api/users/me", &second.access_token)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.get_authed("/api/users/me", &third.access_token)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn the_client_ip_comes_from_x_forwarded_for_only_behind_a_trusted_proxy() {
    for (trusted, expected) in [("", "127.0.0.1"), ("127.0.0.0/8", "203.0.113.9")] {
        let app =
            crate::support::spawn_app_with(|s| s.server.trusted_proxies = trusted.to_owned()).await;
        let user = app.register_user().await;
        let (k, v) = app.bypass();
        let res = app
            .client
            .post(app.url("/api/auth/login"))
            .header(k, v)
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
            .json(&json!({"email": user.email, "password": user.password}))
            .send()
            .await
            .unwrap();
        let token = res.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let body: Value = app
            .get_authed("/api/auth/sessions", &token)
            .await
            .json()
            .await
            .unwrap();
        let current = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["current"] == true)
            .unwrap()
            .clone();
        assert_eq!(current["ip"], expected, "trusted proxies `{trusted}`");
    }
}

#[tokio::test]
async fn revocation_holds_and_requests_still_authenticate_while_redis_is_down() {
    let app = crate::support::spawn_app_with(|s| {
        s.redis.url = airbar::config::Secret::new("redis://127.0.0.1:1")
    })
    .await;
    let user = app.register_user().await;
    let other = app.login(&user, "other").await;
    assert_eq!(
        app.get_authed("/api/users/me", &other.access_token)
            .await
            .status(),
        200
    );
    let res = app
        .post_json("/api/auth/logout", &json!({}), Some(&other.access_token))
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        app.get_authed("/api/users/me", &other.access_token)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.get_authed("/api/users/me", &user.access_token)
            .await
            .status(),
        200
    );
}
