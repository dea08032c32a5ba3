//! Register, login, lockout, refresh rotation and reuse detection.

use serde_json::{json, Value};

use crate::support::{spawn_app, spawn_app_with, PASSWORD};

#[tokio::test]
async fn registering_returns_the_user_and_a_token_pair() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "  Ada@Example.COM ", "password": PASSWORD, "display_name": " Ada ", "phone": "+44 7700 900123"}),
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["user"]["display_name"], "Ada");
    assert_eq!(body["user"]["phone"], "+447700900123");
    assert_eq!(body["user"]["role"], "user");
    assert_eq!(body["expires_in"], 900);
    assert!(body["refresh_token"].as_str().unwrap().len() >= 43);
    let token = body["access_token"].as_str().unwrap();
    let me: Value = app
        .get_authed("/api/users/me", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], body["user"]["id"]);
}

#[tokio::test]
async fn an_email_is_registered_once_whatever_its_case() {
    let app = spawn_app().await;
    let body = json!({"email": "bob@example.com", "password": PASSWORD, "display_name": "Bob"});
    assert_eq!(
        app.post_json("/api/auth/register", &body, None)
            .await
            .status(),
        201
    );
    let again = json!({"email": "BOB@example.com", "password": PASSWORD, "display_name": "Bob 2"});
    let res = app.post_json("/api/auth/register", &again, None).await;
    assert_eq!(res.status(), 409);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "email_taken");
}

#[tokio::test]
async fn invalid_registrations_name_every_bad_field_and_create_nothing() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "not-an-email", "password": "123456789", "display_name": "", "phone": "12"}),
            None,
        )
        .await;
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "validation_failed");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password", "display_name", "phone"]);
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "x@example.com", "password": "a".repeat(129), "display_name": "X"}),
            None,
        )
        .await;
    assert_eq!(res.status(), 422);
    let login = app
        .post_json(
            "/api/auth/login",
            &json!({"email": "x@example.com", "password": "a".repeat(129)}),
            None,
        )
        .await;
    assert_eq!(login.status(), 401, "nothing was created");
}

#[tokio::test]
async fn a_128_character_password_is_used_whole() {
    let app = spawn_app().await;
    let long = "p".repeat(127) + "q";
    let res = app
        .post_json(
            "/api/auth/register",
            &json!({"email": "long@example.com", "password": long, "display_name": "L"}),
            None,
        )
        .await;
    assert_eq!(res.status(), 201);
    let truncated = "p".repeat(127) + "x";
    let res = app
        .post_json(
            "/api/auth/login",
            &json!({"email": "long@example.com", "password": truncated}),
            None,
        )
        .await;
    assert_eq!(res.status(), 401, "the last character counts");
    let res = app
        .post_json(
            "/api/auth/login",
            &json!({"email": "LONG@example.com", "password": long}),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
}

fn comparable(mut problem: Value) -> Value {
    problem.as_object_mut().unwrap().remove("request_id");
    problem
}

#[tokio::test]
async fn five_failures_lock_the_account_and_every_refusal_looks_the_same() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let (k, v) = app.bypass();
    let attempt = |email: String, password: &'static str| {
        let req = app
            .client
            .post(app.url("/api/auth/login"))
            .header(k, v.clone());
        async move {
            let res = req
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let www = res.headers().get("www-authenticate").is_some();
            (status, www, comparable(res.json::<Value>().await.unwrap()))
        }
    };
    let wrong = attempt(user.email.clone(), "wrong password!").await;
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong.2["code"], "invalid_credentials");
    let unknown = attempt("nobody@example.com".into(), "wrong password!").await;
    assert_eq!(
        unknown, wrong,
        "unknown email answers like a wrong password"
    );
    for _ in 0..4 {
        assert_eq!(attempt(user.email.clone(), "wrong password!").await, wrong);
    }
    // Locked now: even the right password is refused, indistinguishably.
    let locked = attempt(user.email.clone(), PASSWORD).await;
    assert_eq!(locked, wrong);

    // Lifting the lock (as 15 minutes passing would) lets the right password in again.
    use diesel_async::RunQueryDsl;
    let mut db = app.db().await;
    diesel::sql_query("UPDATE users SET locked_until = now() - interval '1 second'")
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(attempt(user.email.clone(), PASSWORD).await.0, 200);
}

#[tokio::test]
async fn a_refresh_rotates_the_token_and_the_new_pair_works() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let res = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": user.refresh_token}),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let next = body["refresh_token"].as_str().unwrap();
    assert_ne!(next, user.refresh_token);
    assert_eq!(body["session_id"], user.session_id.as_str());
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(app.get_authed("/api/users/me", access).await.status(), 200);
    // The successor rotates in turn.
    let res = app
        .post_json("/api/auth/refresh", &json!({"refresh_token": next}), None)
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn reusing_a_rotated_token_revokes_the_whole_family() {
    let app = spawn_app_with(|s| s.auth.refresh_grace_secs = 0).await;
    let user = app.register_user().await;
    let first: Value = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": user.refresh_token}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let newest = first["refresh_token"].as_str().unwrap().to_owned();
    let newest_access = first["access_token"].as_str().unwrap().to_owned();

    // With a zero grace window any later use is a reuse.
    let reuse = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": user.refresh_token}),
            None,
        )
        .await;
    assert_eq!(reuse.status(), 401);
    assert_eq!(
        reuse.json::<Value>().await.unwrap()["code"],
        "refresh_token_reused"
    );

    let res = app
        .post_json("/api/auth/refresh", &json!({"refresh_token": newest}), None)
        .await;
    assert_eq!(
        res.status(),
        401,
        "the newest token of the family is refused too"
    );
    let res = app.get_authed("/api/users/me", &newest_access).await;
    assert_eq!(res.status(), 401, "and so are the family's access tokens");
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "session_revoked"
    );
}

#[tokio::test]
async fn a_retry_within_the_grace_window_gets_the_same_successor() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let a: Value = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": user.refresh_token}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let b: Value = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": user.refresh_token}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a["refresh_token"], b["refresh_token"]);
    assert_eq!(
        app.get_authed("/api/users/me", b["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn fifty_concurrent_refreshes_of_one_token_create_at_most_one_successor() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let (k, v) = app.bypass();
    let requests = (0..50).map(|_| {
        app.client
            .post(app.url("/api/auth/refresh"))
            .header(k, v.clone())
            .json(&json!({"refresh_token": user.refresh_token}))
            .send()
    });
    let responses = futures_util::future::join_all(requests).await;
    let mut successors = std::collections::BTreeSet::new();
    for res in responses {
        let res = res.unwrap();
        assert_eq!(res.status(), 200);
        successors.insert(
            res.json::<Value>().await.unwrap()["refresh_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(successors.len(), 1, "every retry got the same successor");

    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut db = app.db().await;
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM refresh_tokens")
        .get_result(&mut db)
        .await
        .unwrap();
    assert_eq!(count.n, 2, "the original token and exactly one successor");
}

#[tokio::test]
async fn an_unknown_refresh_token_is_refused() {
    let app = spawn_app().await;
    let res = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": "not-a-token"}),
            None,
        )
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "invalid_refresh_token"
    );
}

#[tokio::test]
async fn reusing_a_token_whose_successor_was_already_used_revokes_even_within_the_grace_window() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let b: Value = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": user.refresh_token}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let c = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": b["refresh_token"]}),
            None,
        )
        .await;
    assert_eq!(c.status(), 200);
    let c: Value = c.json().await.unwrap();
    let reuse = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": user.refresh_token}),
            None,
        )
        .await;
    assert_eq!(reuse.status(), 401);
    let res = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": c["refresh_token"]}),
            None,
        )
        .await;
    assert_eq!(res.status(), 401, "the family is gone");
}

async fn exec(app: &crate::support::app::TestApp, sql: &str) {
    use diesel_async::RunQueryDsl;
    diesel::sql_query(sql)
        .execute(&mut app.db().await)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    exec(
        &app,
        "UPDATE refresh_tokens SET expires_at = now() - interval '1 second'",
    )
    .await;
    let res = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": user.refresh_token}),
            None,
        )
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.json::<Value>().await.unwrap()["code"],
        "invalid_refresh_token"
    );
}

#[tokio::test]
async fn a_family_ends_at_its_maximum_age_whatever_the_rotations() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let next: Value = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": user.refresh_token}),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let session_end: Value = {
        let body: Value = app
            .get_authed("/api/auth/sessions", next["access_token"].as_str().unwrap())
            .await
            .json()
            .await
            .unwrap();
        body["items"][0]["expires_at"].clone()
    };
    let created = chrono::Utc::now();
    let end: chrono::DateTime<chrono::Utc> = session_end.as_str().unwrap().parse().unwrap();
    let days = (end - created).num_days();
    assert!(
        (29..=30).contains(&days),
        "a family lives 30 days, got {days}"
    );
    // Time passes beyond the family's end (the refresh token itself would still be valid).
    exec(
        &app,
        "UPDATE sessions SET expires_at = now() - interval '1 second'",
    )
    .await;
    let res = app
        .post_json(
            "/api/auth/refresh",
            &json!({"refresh_token": next["refresh_token"]}),
            None,
        )
        .await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn a_login_flood_beyond_the_hashing_slots_gets_503_not_unbounded_memory() {
    let app = spawn_app_with(|s| {
        s.auth.password_hash_concurrency = 1;
        s.auth.password_queue_timeout_ms = 0;
    })
    .await;
    let user = app.register_user().await;
    let (k, v) = app.bypass();
    let logins = (0..20).map(|_| {
        app.client
            .post(app.url("/api/auth/login"))
            .header(k, v.clone())
            .json(&json!({"email": user.email, "password": user.password}))
            .send()
    });
    let mut statuses = std::collections::BTreeMap::new();
    for res in futures_util::future::join_all(logins).await {
        let res = res.unwrap();
        let status = res.status().as_u16();
        if status == 503 {
            assert_eq!(res.json::<Value>().await.unwrap()["code"], "overloaded");
        }
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert!(statuses.get(&200).is_some_and(|n| *n >= 1), "{statuses:?}");
    assert!(statuses.get(&503).is_some_and(|n| *n >= 1), "{statuses:?}");
}
