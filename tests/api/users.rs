//! Profiles: the owner's view, public profiles, changes, mass assignment, password change.

use serde_json::{json, Value};

use crate::support::{spawn_app, PASSWORD};

async fn patch_me(
    app: &crate::support::app::TestApp,
    token: &str,
    body: Value,
) -> reqwest::Response {
    app.client
        .patch(app.url("/api/users/me"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_user_changes_their_profile_and_clears_a_field_with_null() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let res = patch_me(
        &app,
        &user.access_token,
        json!({"display_name": "Grace", "phone": "+14155550123", "avatar_url": "https://cdn.example.com/g.png"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["display_name"], "Grace");
    assert_eq!(body["phone"], "+14155550123");
    let res = patch_me(&app, &user.access_token, json!({"phone": null})).await;
    let body: Value = res.json().await.unwrap();
    assert!(body["phone"].is_null());
    assert_eq!(
        body["avatar_url"], "https://cdn.example.com/g.png",
        "absent fields are left alone"
    );
}

#[tokio::test]
async fn server_owned_fields_cannot_be_set_and_nothing_changes() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    for field in [
        json!({"role": "admin"}),
        json!({"kyc_status": "verified"}),
        json!({"rating": 5}),
        json!({"email_verified": true}),
        json!({"display_name": "Sneaky", "role": "admin"}),
    ] {
        let res = patch_me(&app, &user.access_token, field.clone()).await;
        assert_eq!(res.status(), 400, "{field}");
        assert_eq!(res.json::<Value>().await.unwrap()["code"], "invalid_body");
    }
    let me: Value = app
        .get_authed("/api/users/me", &user.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "user");
    assert_eq!(me["kyc_status"], "none");
    assert_eq!(me["display_name"], "Test User");
}

#[tokio::test]
async fn invalid_profile_values_are_422_and_change_nothing() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let res = patch_me(
        &app,
        &user.access_token,
        json!({"display_name": "", "avatar_url": "javascript:alert(1)"}),
    )
    .await;
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
    let me: Value = app
        .get_authed("/api/users/me", &user.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["display_name"], "Test User");
}

#[tokio::test]
async fn a_password_change_signs_out_every_other_session() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other = app.login(&user, "second-device").await;

    let wrong = patch_me(
        &app,
        &user.access_token,
        json!({"current_password": "not my password", "new_password": "brand new password"}),
    )
    .await;
    assert_eq!(wrong.status(), 422);
    assert_eq!(
        app.get_authed("/api/users/me", &other.access_token)
            .await
            .status(),
        200
    );

    let res = patch_me(
        &app,
        &user.access_token,
        json!({"current_password": PASSWORD, "new_password": "brand new password"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.get_authed("/api/users/me", &user.access_token)
            .await
            .status(),
        200,
        "this session stays"
    );
    assert_eq!(
        app.get_authed("/api/users/me", &other.access_token)
            .await
            .status(),
        401,
        "others end"
    );

    let old = app
        .post_json(
            "/api/auth/login",
            &json!({"email": user.email, "password": PASSWORD}),
            None,
        )
        .await;
    assert_eq!(old.status(), 401);
    let new = app
        .post_json(
            "/api/auth/login",
            &json!({"email": user.email, "password": "brand new password"}),
            None,
        )
        .await;
    assert_eq!(new.status(), 200);
}

#[tokio::test]
async fn a_public_profile_shows_no_contact_details() {
    let app = spawn_app().await;
    let alice = app.register_user().await;
    let bob = app.register_user().await;
    patch_me(&app, &bob.access_token, json!({"phone": "+14155550123"})).await;
    let res = app
        .get_authed(&format!("/api/users/{}", bob.id), &alice.access_token)
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["display_name"], "Test User");
    assert_eq!(body["kyc_verified"], false);
    let text = body.to_string();
    assert!(
        !text.contains(&bob.email) && !text.contains("4155550123"),
        "{text}"
    );
    for id in ["0190a1b2-0000-7000-8000-000000000000", "nope"] {
        let res = app
            .get_authed(&format!("/api/users/{id}"), &alice.access_token)
            .await;
        assert_eq!(res.status(), 404, "{id}");
    }
}

#[tokio::test]
async fn profiles_need_a_token() {
    let app = spawn_app().await;
    let res = app.get("/api/users/me").await;
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "unauthorized");
}
