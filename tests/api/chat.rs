//! Chat over REST and a real WebSocket client: both ways, ack and dedupe, resume after a
//! disconnect, gap-free sequences under concurrent senders, forbidden rooms, masking.

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::support::app::{TestApp, TestUser};
use crate::support::market::{lhr_jfk_trip, parcel_body};
use crate::support::spawn_app;
use crate::support::ws::{self, next_of, send, Socket};

/// A socket as `user`, past its `hello`.
async fn connect(app: &TestApp, user: &TestUser) -> Socket {
    let mut socket = ws::connect(app, user).await;
    assert_eq!(next_of(&mut socket, "hello").await["type"], "hello");
    socket
}

/// The `ack` and the `message` that follow a `send`, whatever their order.
async fn ack_and_message(socket: &mut Socket) -> (Value, Value) {
    let (mut ack, mut message) = (None, None);
    while ack.is_none() || message.is_none() {
        let msg = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = msg {
            let v: Value = serde_json::from_str(&text).unwrap();
            match v["type"].as_str() {
                Some("ack") => ack = Some(v),
                Some("message") => message = Some(v),
                _ => {}
            }
        }
    }
    (ack.unwrap(), message.unwrap())
}

/// A sender, a traveler and the room of their requested match.
pub async fn room(app: &TestApp) -> (TestUser, TestUser, String) {
    let sender = app.register_user().await;
    let traveler = app.register_user().await;
    let mut t = lhr_jfk_trip();
    t["accepted_categories"] = json!(["books"]);
    let trip = app.create_trip(&traveler, &t).await;
    let mut p = parcel_body();
    p["origin"] = json!({"code": "LHR"});
    let parcel = app.create_parcel(&sender, &p).await;
    let m: Value = app
        .post_as(
            &sender,
            "/api/matches",
            &json!({"parcel_id": parcel["id"], "trip_id": trip["id"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    (sender, traveler, m["room_id"].as_str().unwrap().to_owned())
}

pub async fn subscribe(socket: &mut Socket, room: &str, since: i64) -> Value {
    send(
        socket,
        json!({"type": "subscribe", "channel": format!("chat:{room}"), "since_seq": since}),
    )
    .await;
    next_of(socket, "subscribed").await
}

#[tokio::test]
async fn two_users_chat_both_ways_with_acks() {
    let app = spawn_app().await;
    let (sender, traveler, room) = room(&app).await;
    let mut a = connect(&app, &sender).await;
    let mut b = connect(&app, &traveler).await;
    assert_eq!(subscribe(&mut a, &room, 0).await["last_seq"], 0);
    subscribe(&mut b, &room, 0).await;

    send(&mut a, json!({"type": "send", "room_id": room, "client_msg_id": "a-1", "body": "Hello from the sender"})).await;
    // The ack and the sender's own copy of the message may come in either order.
    let (ack, echo) = ack_and_message(&mut a).await;
    assert_eq!(
        (ack["client_msg_id"].as_str(), ack["seq"].as_i64()),
        (Some("a-1"), Some(1))
    );
    let got = next_of(&mut b, "message").await;
    assert_eq!(got["body"], "Hello from the sender");
    assert_eq!(got["seq"], 1);
    assert_eq!(got["sender_id"], sender.id.as_str());
    assert_eq!(
        echo["id"], ack["id"],
        "the sender's subscribed sockets get it too"
    );

    send(
        &mut b,
        json!({"type": "send", "room_id": room, "client_msg_id": "b-1", "body": "Hi back"}),
    )
    .await;
    assert_eq!(ack_and_message(&mut b).await.0["seq"], 2);
    assert_eq!(next_of(&mut a, "message").await["body"], "Hi back");

    let rooms: Value = app
        .get_as(&traveler, "/api/chat/rooms")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rooms["items"][0]["last_seq"], 2);
    assert_eq!(rooms["items"][0]["unread"], 2);
    let res = app
        .post_as(
            &traveler,
            &format!("/api/chat/rooms/{room}/read"),
            &json!({"seq": 2}),
        )
        .await;
    assert_eq!(res.status(), 204);
    let rooms: Value = app
        .get_as(&traveler, "/api/chat/rooms")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rooms["items"][0]["unread"], 0);
}

#[tokio::test]
async fn a_retried_client_msg_id_is_stored_once() {
    let app = spawn_app().await;
    let (sender, _, room) = room(&app).await;
    let path = format!("/api/chat/rooms/{room}/messages");
    let body = json!({"body": "Where do we meet?", "client_msg_id": "retry-1"});
    let first = app.post_as(&sender, &path, &body).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = app.post_as(&sender, &path, &body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    let history: Value = app.get_as(&sender, &path).await.json().await.unwrap();
    assert_eq!(history["items"].as_array().unwrap().len(), 1);

    // Concurrent retries of one new message: stored once, and the sequence keeps no gap.
    let body = json!({"body": "Arriving at 6", "client_msg_id": "retry-2"});
    let posts = (0..8).map(|_| app.post_as(&sender, &path, &body));
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for res in futures_util::future::join_all(posts).await {
        created += u32::from(res.status() == 201);
        assert!(
            res.status() == 201 || res.status() == 200,
            "{}",
            res.status()
        );
        ids.insert(res.json::<Value>().await.unwrap()["seq"].as_i64().unwrap());
    }
    assert_eq!((created, ids), (1, BTreeSet::from([2])));
    let next = app
        .post_as(
            &sender,
            &path,
            &json!({"body": "next", "client_msg_id": "after"}),
        )
        .await;
    assert_eq!(next.json::<Value>().await.unwrap()["seq"], 3);
}

#[tokio::test]
async fn a_room_turns_read_only_a_day_after_its_match_ended() {
    let app = spawn_app().await;
    let (sender, traveler, room) = room(&app).await;
    let path = format!("/api/chat/rooms/{room}/messages");
    let mut conn = app.db().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE matches SET status = 'cancelled', updated_at = now() - interval '23 hours' WHERE room_id = '{room}'"
        )),
        &mut conn,
    )
    .await
    .unwrap();
    let res = app
        .post_as(
            &traveler,
            &path,
            &json!({"body": "Sorry it did not work out", "client_msg_id": "t1"}),
        )
        .await;
    assert_eq!(res.status(), 201, "still open within the day");
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE matches SET updated_at = now() - interval '25 hours' WHERE room_id = '{room}'"
        )),
        &mut conn,
    )
    .await
    .unwrap();
    let res = app
        .post_as(
            &sender,
            &path,
            &json!({"body": "Hello?", "client_msg_id": "s1"}),
        )
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(res.json::<Value>().await.unwrap()["code"], "room_read_only");
    // History stays readable.
    let history: Value = app.get_as(&sender, &path).await.json().await.unwrap();
    assert_eq!(history["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_client_resuming_after_a_disconnect_gets_exactly_what_it_missed_in_order() {
    let app = spawn_app().await;
    let (sender, traveler, room) = room(&app).await;
    let path = format!("/api/chat/rooms/{room}/messages");
    let mut b = connect(&app, &traveler).await;
    subscribe(&mut b, &room, 0).await;
    app.post_as(
        &sender,
        &path,
        &json!({"body": "one", "client_msg_id": "m1"}),
    )
    .await;
    assert_eq!(next_of(&mut b, "message").await["seq"], 1);
    drop(b); // disconnected

    for (i, text) in ["two", "three", "four"].iter().enumerate() {
        app.post_as(
            &sender,
            &path,
            &json!({"body": text, "client_msg_id": format!("m{}", i + 2)}),
        )
        .await;
    }
    let mut b = connect(&app, &traveler).await;
    assert_eq!(subscribe(&mut b, &room, 1).await["last_seq"], 4);
    // A message arriving while the replay is in flight comes once, after the replay.
    app.post_as(
        &sender,
        &path,
        &json!({"body": "five", "client_msg_id": "m5"}),
    )
    .await;
    let mut bodies = Vec::new();
    for expected_seq in 2..=5 {
        let m = next_of(&mut b, "message").await;
        assert_eq!(m["seq"], expected_seq);
        bodies.push(m["body"].as_str().unwrap().to_owned());
    }
    assert_eq!(bodies, ["two", "three", "four", "five"]);
    send(&mut b, json!({"type": "ping"})).await;
    let next = next_of(&mut b, "pong").await;
    assert_eq!(next["type"], "pong", "nothing duplicated before the pong");
}

#[tokio::test]
async fn concurrent_senders_get_gap_free_sequences() {
    let app = spawn_app().await;
    let (sender, traveler, room) = room(&app).await;
    let path = format!("/api/chat/rooms/{room}/messages");
    let bodies: Vec<Value> = (0..20)
        .map(|i| json!({"body": format!("message {i}"), "client_msg_id": format!("c{i}")}))
        .collect();
    let posts = bodies.iter().enumerate().map(|(i, body)| {
        let who = if i % 2 == 0 { &sender } else { &traveler };
        app.post_as(who, &path, body)
    });
    let mut seqs = BTreeSet::new();
    for res in futures_util::future::join_all(posts).await {
        assert_eq!(res.status(), 201);
        seqs.insert(res.json::<Value>().await.unwrap()["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, (1..=20).collect::<BTreeSet<i64>>());
}

#[tokio::test]
async fn strangers_cannot_read_post_or_subscribe() {
    let app = spawn_app().await;
    let (_, _, room) = room(&app).await;
    let stranger = app.register_user().await;
    let path = format!("/api/chat/rooms/{room}/messages");
    assert_eq!(app.get_as(&stranger, &path).await.status(), 404);
    let res = app
        .post_as(
            &stranger,
            &path,
            &json!({"body": "hi there", "client_msg_id": "x"}),
        )
        .await;
    assert_eq!(res.status(), 404);
    let mut s = connect(&app, &stranger).await;
    send(
        &mut s,
        json!({"type": "subscribe", "channel": format!("chat:{room}"), "since_seq": 0}),
    )
    .await;
    assert_eq!(next_of(&mut s, "error").await["code"], "forbidden");
    send(
        &mut s,
        json!({"type": "send", "room_id": room, "client_msg_id": "x", "body": "hi"}),
    )
    .await;
    assert_eq!(next_of(&mut s, "error").await["code"], "forbidden");
}

#[tokio::test]
async fn contact_details_are_masked_before_payment() {
    let app = spawn_app().await;
    let (sender, _, room) = room(&app).await;
    let res = app
        .post_as(&sender, &format!("/api/chat/rooms/{room}/messages"), &json!({"body": "call me on +44 7700 900123 or ann@example.com", "client_msg_id": "p1"}))
        .await;
    let m: Value = res.json().await.unwrap();
    assert_eq!(m["body"], "call me on [hidden] or [hidden]");
}

#[tokio::test]
async fn a_message_posted_on_one_node_reaches_a_socket_on_another() {
    let app = spawn_app().await;
    let prefix = app.settings.redis.key_prefix.clone();
    let other_node =
        crate::support::spawn_app_on(app.db_name.clone(), |s| s.redis.key_prefix = prefix).await;
    let (sender, traveler, room) = room(&app).await;
    let mut b = connect(&app, &traveler).await;
    subscribe(&mut b, &room, 0).await;

    // The same user's token works on the other node (shared keys, PostgreSQL and Redis).
    let res = other_node
        .post_as(
            &sender,
            &format!("/api/chat/rooms/{room}/messages"),
            &json!({"body": "via node two", "client_msg_id": "n2"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let m = next_of(&mut b, "message").await;
    assert_eq!(
        (m["body"].as_str(), m["seq"].as_i64()),
        (Some("via node two"), Some(1))
    );
}

#[tokio::test]
async fn typing_reaches_the_other_member_only() {
    let app = spawn_app().await;
    let (sender, traveler, room) = room(&app).await;
    let mut a = connect(&app, &sender).await;
    let mut b = connect(&app, &traveler).await;
    subscribe(&mut a, &room, 0).await;
    subscribe(&mut b, &room, 0).await;
    send(&mut a, json!({"type": "typing", "room_id": room})).await;
    let typing = next_of(&mut b, "typing").await;
    assert_eq!(
        typing,
        json!({"type": "typing", "room_id": room, "user_id": sender.id})
    );
    // The typist gets nothing back: nothing but presence comes before the pong.
    send(&mut a, json!({"type": "ping"})).await;
    loop {
        let frame = ws::next_json(&mut a).await;
        match frame["type"].as_str() {
            Some("pong") => break,
            Some("presence") => continue,
            _ => panic!("unexpected frame for the typist: {frame}"),
        }
    }
}
