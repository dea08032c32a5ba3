//! The WebSocket with a real client: authentication at the upgrade, hello, ping, frame and
//! origin limits, user events, and revocation closing the socket.

use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::support::market::{lhr_jfk_trip, parcel_body};
use crate::support::spawn_app;
use crate::support::ws::{close_code, connect, next_json, ws_url};

#[tokio::test]
async fn a_socket_says_hello_answers_ping_and_needs_a_token() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let mut socket = connect(&app, &user).await;
    let hello = next_json(&mut socket).await;
    assert_eq!(
        hello,
        json!({"type": "hello", "user_id": user.id, "session_id": user.session_id})
    );
    socket
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await, json!({"type": "pong"}));
    socket.send(Message::Text("not json".into())).await.unwrap();
    assert_eq!(next_json(&mut socket).await["code"], "bad_frame");

    // Browsers pass the token in the query string.
    let url = format!("{}?access_token={}", ws_url(&app), user.access_token);
    let (mut browser, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next_json(&mut browser).await["type"], "hello");

    let url = ws_url(&app);
    let err = tokio_tungstenite::connect_async(url).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 401),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn an_unlisted_origin_cannot_open_a_socket() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let url = ws_url(&app);
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", user.access_token).parse().unwrap(),
    );
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await.unwrap_err() {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 403),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_frame_over_64_kib_closes_the_socket_with_1009() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let mut socket = connect(&app, &user).await;
    next_json(&mut socket).await;
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    socket.send(Message::Text(big.into())).await.unwrap();
    assert_eq!(close_code(&mut socket).await, Some(CloseCode::Size));
}

#[tokio::test]
async fn both_parties_get_match_updated_on_every_socket() {
    let app = spawn_app().await;
    let sender = app.register_user().await;
    let traveler = app.register_user().await;
    let mut trip_body = lhr_jfk_trip();
    trip_body["accepted_categories"] = json!(["books"]);
    let trip = app.create_trip(&traveler, &trip_body).await;
    let mut p = parcel_body();
    p["origin"] = json!({"code": "LHR"});
    let parcel = app.create_parcel(&sender, &p).await;

    let mut sender_a = connect(&app, &sender).await;
    let mut sender_b = connect(&app, &sender).await;
    let mut traveler_socket = connect(&app, &traveler).await;
    for s in [&mut sender_a, &mut sender_b, &mut traveler_socket] {
        assert_eq!(next_json(s).await["type"], "hello");
    }
    // Give the sockets a moment to join their hubs: wait until a ping round-trips on each.
    for s in [&mut sender_a, &mut sender_b, &mut traveler_socket] {
        s.send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .unwrap();
        assert_eq!(next_json(s).await["type"], "pong");
    }

    let res = app
        .post_as(
            &sender,
            "/api/matches",
            &json!({"parcel_id": parcel["id"], "trip_id": trip["id"]}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let m: Value = res.json().await.unwrap();
    for s in [&mut sender_a, &mut sender_b, &mut traveler_socket] {
        let frame = loop {
            let f = next_json(s).await;
            if f["type"] == "match_updated" {
                break f;
            }
        };
        assert_eq!(frame["match_id"], m["id"]);
        assert_eq!(frame["status"], "requested");
        assert!(
            frame["id"].is_string(),
            "a logged event carries its id: {frame}"
        );
    }
}

#[tokio::test]
async fn revoking_a_session_closes_its_sockets_but_not_the_others() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let laptop = app.login(&user, "laptop").await;
    let mut laptop_socket = connect(&app, &laptop).await;
    let mut phone_socket = connect(&app, &user).await;
    next_json(&mut laptop_socket).await;
    next_json(&mut phone_socket).await;
    for s in [&mut laptop_socket, &mut phone_socket] {
        s.send(Message::Text(r#"{"type":"ping"}"#.into()))
            .await
            .unwrap();
        assert_eq!(next_json(s).await["type"], "pong");
    }
    let res = app
        .delete_as(&user, &format!("/api/auth/sessions/{}", laptop.session_id))
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(
        close_code(&mut laptop_socket).await,
        Some(CloseCode::Policy)
    );
    phone_socket
        .send(Message::Text(r#"{"type":"ping"}"#.into()))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut phone_socket).await["type"],
        "pong",
        "the other session's socket stays"
    );
}
