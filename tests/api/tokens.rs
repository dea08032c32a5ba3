//! The JWT attack set: every forged, misdirected or stale token is a 401 problem.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::support::spawn_app;

const SIGNING_KID: &str = "test-1";
const SIGNING_SECRET: &str = "airbar-test-signing-key-number-one-0123456789";
const OTHER_LISTED_KID: &str = "test-2";
const OTHER_LISTED_SECRET: &str = "airbar-test-signing-key-number-two-0123456789";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(sub: &str, sid: &str) -> Value {
    json!({
        "iss": "airbar", "aud": "airbar-api", "sub": sub, "sid": sid,
        "iat": now(), "nbf": now(), "exp": now() + 600, "jti": uuid::Uuid::new_v4(),
    })
}

fn sign(claims: &Value, kid: &str, secret: &str, typ: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    header.typ = Some(typ.to_owned());
    encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn assert_refused(app: &crate::support::app::TestApp, token: &str, case: &str) {
    let res = app.get_authed("/api/users/me", token).await;
    assert_eq!(res.status(), 401, "{case}");
    assert_eq!(
        res.headers()["content-type"],
        "application/problem+json",
        "{case}"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "invalid_token", "{case}");
}

#[tokio::test]
async fn a_well_formed_token_works_and_forged_or_misdirected_ones_do_not() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let good = claims(&user.id, &user.session_id);

    // Control: the harness signs tokens exactly like the service does.
    let control = sign(&good, SIGNING_KID, SIGNING_SECRET, "at+jwt");
    assert_eq!(
        app.get_authed("/api/users/me", &control).await.status(),
        200
    );
    // A listed, non-signing key (key rotation) still verifies.
    let rotated = sign(&good, OTHER_LISTED_KID, OTHER_LISTED_SECRET, "at+jwt");
    assert_eq!(
        app.get_authed("/api/users/me", &rotated).await.status(),
        200
    );

    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"at+jwt","kid":"test-1"}"#);
    let body = URL_SAFE_NO_PAD.encode(good.to_string());
    assert_refused(&app, &format!("{none_header}.{body}."), "alg none").await;

    assert_refused(
        &app,
        &sign(
            &good,
            SIGNING_KID,
            "an-attackers-own-secret-0123456789abcdef",
            "at+jwt",
        ),
        "other key",
    )
    .await;
    assert_refused(
        &app,
        &sign(&good, "unknown-kid", SIGNING_SECRET, "at+jwt"),
        "unknown kid",
    )
    .await;
    assert_refused(
        &app,
        &sign(&good, SIGNING_KID, SIGNING_SECRET, "JWT"),
        "wrong typ",
    )
    .await;

    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("another-api");
    assert_refused(
        &app,
        &sign(&wrong_aud, SIGNING_KID, SIGNING_SECRET, "at+jwt"),
        "wrong audience",
    )
    .await;
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("someone-else");
    assert_refused(
        &app,
        &sign(&wrong_iss, SIGNING_KID, SIGNING_SECRET, "at+jwt"),
        "wrong issuer",
    )
    .await;
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 31);
    assert_refused(
        &app,
        &sign(&expired, SIGNING_KID, SIGNING_SECRET, "at+jwt"),
        "expired",
    )
    .await;
    let mut early = good.clone();
    early["nbf"] = json!(now() + 120);
    assert_refused(
        &app,
        &sign(&early, SIGNING_KID, SIGNING_SECRET, "at+jwt"),
        "not yet valid",
    )
    .await;
    let mut no_exp = good.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_refused(
        &app,
        &sign(&no_exp, SIGNING_KID, SIGNING_SECRET, "at+jwt"),
        "no exp",
    )
    .await;

    let mut header = Header::new(Algorithm::HS512);
    header.kid = Some(SIGNING_KID.to_owned());
    header.typ = Some("at+jwt".to_owned());
    let hs512 = encode(
        &header,
        &good,
        &EncodingKey::from_secret(SIGNING_SECRET.as_bytes()),
    )
    .unwrap();
    assert_refused(&app, &hs512, "another algorithm").await;
    assert_refused(&app, "garbage", "not a JWT").await;
}
