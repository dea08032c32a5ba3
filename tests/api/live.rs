//! The live gateway's harder guarantees with real clients: a client that stops reading is
//! disconnected and counted (and the server drops, not queues, what it cannot take), presence
//! online/offline, chat room actors started on subscribe and stopped when idle, and the SSE
//! stream delivering and resuming with `Last-Event-ID` — also on another node.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::chat::{room, subscribe};
use crate::support::app::{TestApp, TestUser};
use crate::support::spawn_app;
use crate::support::sse::EventStream;
use crate::support::ws::{self, next_json, next_of, send, ws_url};

/// The value of one metrics series (0 when absent).
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.get("/api/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls a metrics series until `pred` holds; fails after `within`.
async fn wait_metric(app: &TestApp, series: &str, within: Duration, pred: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let v = metric(app, series).await;
        if pred(v) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn connected(app: &TestApp, user: &TestUser) -> ws::Socket {
    let mut socket = ws::connect(app, user).await;
    next_of(&mut socket, "hello").await;
    socket
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_counted() {
    let app = spawn_app().await;
    let (sender, traveler, room_id) = room(&app).await;

    // The slow client: a small receive buffer, subscribes, then never reads again.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let stream = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
    let mut req = ws_url(&app).into_client_request().unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", traveler.access_token).parse().unwrap(),
    );
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut slow, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    next_of(&mut slow, "hello").await;
    subscribe(&mut slow, &room_id, 0).await;

    // The sender floods the room with large messages.
    let mut fast = connected(&app, &sender).await;
    let body = "x".repeat(2000);
    let total = 900;
    for batch in 0..total / 50 {
        for i in 0..50 {
            let id = format!("m{}", batch * 50 + i);
            let frame =
                json!({"type": "send", "room_id": room_id, "client_msg_id": id, "body": body});
            fast.feed(Message::Text(frame.to_string().into()))
                .await
                .unwrap();
        }
        fast.flush().await.unwrap();
        let mut acks = 0;
        while acks < 50 {
            let frame = next_json(&mut fast).await;
            assert_ne!(frame["type"], "error", "{frame}");
            if frame["type"] == "ack" {
                acks += 1;
            }
        }
    }

    // Counted once, frames dropped instead of queued without bound, and the connection is cut
    // (the kernel gives up on the shut receive window after `stalled_write_timeout_ms`).
    wait_metric(
        &app,
        r#"airbar_slow_consumers_total{kind="ws_session"}"#,
        Duration::from_secs(10),
        |v| v == 1.0,
    )
    .await;
    assert!(
        metric(
            &app,
            r#"airbar_actor_messages_dropped_total{kind="chat_room"}"#
        )
        .await
            > 0.0
    );
    let backlog = r#"airbar_actor_mailbox_backlog{kind="ws_session"}"#;
    assert!(
        metric(&app, backlog).await <= 256.0,
        "the socket's queue is bounded"
    );
    wait_metric(
        &app,
        r#"airbar_actors_live{kind="ws_session"}"#,
        Duration::from_secs(15),
        |v| v == 1.0,
    )
    .await;
    wait_metric(&app, backlog, Duration::from_secs(5), |v| v == 0.0).await;
    // The reader, woken up, finds the connection ended well short of all the messages.
    let mut received = 0;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(msg)) = slow.next().await {
            if msg.is_text() {
                received += 1;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the slow client's connection ended");
    assert!(received < total, "received {received} of {total}");
    // The fast client is unaffected.
    send(&mut fast, json!({"type": "ping"})).await;
    next_of(&mut fast, "pong").await;
}

#[tokio::test]
async fn the_other_member_sees_presence_come_and_go() {
    let app = spawn_app().await;
    let (sender, traveler, room_id) = room(&app).await;
    let mut a = connected(&app, &sender).await;
    subscribe(&mut a, &room_id, 0).await;
    assert_eq!(
        next_of(&mut a, "presence").await,
        json!({"type": "presence", "user_id": traveler.id, "online": false})
    );

    let mut b = connected(&app, &traveler).await;
    assert_eq!(
        next_of(&mut a, "presence").await,
        json!({"type": "presence", "user_id": traveler.id, "online": true})
    );
    // A second socket of the same user changes nothing; closing both, after the grace, does.
    let mut b2 = connected(&app, &traveler).await;
    b.close(None).await.unwrap();
    b2.close(None).await.unwrap();
    assert_eq!(
        next_of(&mut a, "presence").await,
        json!({"type": "presence", "user_id": traveler.id, "online": false})
    );
    assert_eq!(metric(&app, "airbar_presence_changes_total").await, 3.0);
}

#[tokio::test]
async fn a_room_actor_lives_while_subscribed_and_stops_when_idle() {
    let app = spawn_app().await;
    let (sender, _, room_id) = room(&app).await;
    let live = r#"airbar_actors_live{kind="chat_room"}"#;
    assert_eq!(metric(&app, live).await, 0.0);
    let mut a = connected(&app, &sender).await;
    let mut a2 = connected(&app, &sender).await;
    subscribe(&mut a, &room_id, 0).await;
    subscribe(&mut a2, &room_id, 0).await;
    assert_eq!(metric(&app, live).await, 1.0, "one actor per room");
    send(
        &mut a,
        json!({"type": "unsubscribe", "channel": format!("chat:{room_id}")}),
    )
    .await;
    a2.close(None).await.unwrap();
    // room_idle_secs is 2 in tests.
    wait_metric(&app, live, Duration::from_secs(10), |v| v == 0.0).await;
    // A new subscriber gets a fresh room, and messages flow again.
    subscribe(&mut a, &room_id, 0).await;
    send(&mut a, json!({"type": "send", "room_id": room_id, "client_msg_id": "after-idle", "body": "still here"})).await;
    assert_eq!(next_of(&mut a, "message").await["body"], "still here");
    assert!(metric(&app, "airbar_fanout_latency_seconds_count").await >= 1.0);
    assert!(
        metric(
            &app,
            r#"airbar_actor_messages_sent_total{kind="chat_room"}"#
        )
        .await
            >= 1.0
    );
}

/// Opens the user's notification stream (resuming after `last_event_id`).
async fn open_stream(app: &TestApp, user: &TestUser, last_event_id: Option<&str>) -> EventStream {
    let mut req = reqwest::Client::new()
        .get(app.url("/api/notifications/stream"))
        .bearer_auth(&user.access_token);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    EventStream::new(req.send().await.unwrap())
}

async fn act(app: &TestApp, who: &TestUser, match_id: &str, action: &str) {
    let res = app
        .post_as(
            who,
            &format!("/api/matches/{match_id}/{action}"),
            &json!({}),
        )
        .await;
    assert_eq!(res.status(), 200, "{action}");
}

#[tokio::test]
async fn the_event_stream_delivers_and_resumes_with_last_event_id_on_any_node() {
    let app = spawn_app().await;
    let prefix = app.settings.redis.key_prefix.clone();
    let other_node =
        crate::support::spawn_app_on(app.db_name.clone(), |s| s.redis.key_prefix = prefix).await;
    let (sender, traveler, room_id) = room(&app).await;
    let rooms: Value = app
        .get_as(&traveler, "/api/chat/rooms")
        .await
        .json()
        .await
        .unwrap();
    let match_id = rooms["items"][0]["match_id"].as_str().unwrap().to_owned();
    assert_eq!(rooms["items"][0]["room_id"], room_id.as_str());

    let mut stream = open_stream(&app, &sender, None).await;
    act(&app, &traveler, &match_id, "accept").await;
    let (first_id, first) = stream.next().await;
    assert_eq!(first["type"], "match_updated");
    assert_eq!(first["status"], "accepted");
    assert_eq!(first["id"].as_str(), first_id.as_deref());
    drop(stream);

    // Missed while disconnected: delivered on reconnecting, to the other node, after the id.
    act(&app, &sender, &match_id, "cancel").await;
    let mut resumed = open_stream(&other_node, &sender, first_id.as_deref()).await;
    // The acceptance's notification came after its match_updated; then the cancellation.
    let (_, note) = resumed.next().await;
    assert_eq!(
        (note["type"].as_str(), note["kind"].as_str()),
        (Some("notification"), Some("match_accepted"))
    );
    let (second_id, second) = resumed.next().await;
    assert_eq!(second["status"], "cancelled");
    assert!(second_id.is_some() && second_id != first_id);

    // A malformed id is refused with a problem.
    let res = reqwest::Client::new()
        .get(app.url("/api/notifications/stream"))
        .bearer_auth(&sender.access_token)
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = app.get("/api/notifications/stream").await;
    assert_eq!(res.status(), 401);
}

async fn post_message(node: &TestApp, sender: &TestUser, room_id: &str, id: &str) {
    let body = json!({"body": format!("message {id}"), "client_msg_id": id});
    let path = format!("/api/chat/rooms/{room_id}/messages");
    assert_eq!(node.post_as(sender, &path, &body).await.status(), 201);
}

#[tokio::test]
async fn with_redis_down_local_delivery_goes_on_and_the_gap_is_filled_when_it_returns() {
    let proxy = crate::support::proxy::Proxy::start("127.0.0.1:6379").await;
    let port = proxy.port;
    let app = crate::support::spawn_app_with(|s| {
        s.redis.url = airbar::config::Secret::new(format!("redis://127.0.0.1:{port}"));
    })
    .await;
    let prefix = app.settings.redis.key_prefix.clone();
    let other_node =
        crate::support::spawn_app_on(app.db_name.clone(), |s| s.redis.key_prefix = prefix).await;
    let (sender, traveler, room_id) = room(&app).await;
    let mut b = connected(&app, &traveler).await;
    subscribe(&mut b, &room_id, 0).await;

    proxy.cut();
    // This node's own messages still reach its sockets.
    post_message(&app, &sender, &room_id, "local-1").await;
    let m = next_of(&mut b, "message").await;
    assert_eq!(
        (m["seq"].as_i64(), m["body"].as_str()),
        (Some(1), Some("message local-1"))
    );
    // The other node's cannot, while this node's bridge is cut off.
    post_message(&other_node, &sender, &room_id, "remote-2").await;

    proxy.restore();
    // Live cross-node delivery resumes by itself (the bridge reconnects within seconds); the
    // first message to arrive exposes the gap, which the server reads back from PostgreSQL:
    // the client gets every message, in order, once.
    let mut last_posted = 2;
    let mut first = None;
    for i in 0..30 {
        post_message(&other_node, &sender, &room_id, &format!("probe-{i}")).await;
        last_posted += 1;
        if let Ok(frame) =
            tokio::time::timeout(Duration::from_millis(500), next_of(&mut b, "message")).await
        {
            first = Some(frame);
            break;
        }
    }
    let first = first.expect("cross-node delivery resumed");
    assert_eq!(
        first["body"], "message remote-2",
        "the missed message comes first"
    );
    let mut seqs = vec![first["seq"].as_i64().unwrap()];
    while seqs.last() != Some(&last_posted) {
        seqs.push(next_of(&mut b, "message").await["seq"].as_i64().unwrap());
    }
    assert_eq!(seqs, (2..=last_posted).collect::<Vec<_>>());
    // A client may also fill gaps itself: a resubscribe replays from its last seq.
    subscribe(&mut b, &room_id, 1).await;
    let mut replayed = Vec::new();
    while replayed.last() != Some(&last_posted) {
        replayed.push(next_of(&mut b, "message").await["seq"].as_i64().unwrap());
    }
    assert_eq!(replayed, (2..=last_posted).collect::<Vec<_>>());
}

#[tokio::test]
async fn presence_crosses_nodes_and_counts_sockets_on_every_node() {
    let app = spawn_app().await;
    let prefix = app.settings.redis.key_prefix.clone();
    let other_node =
        crate::support::spawn_app_on(app.db_name.clone(), |s| s.redis.key_prefix = prefix).await;
    let (sender, traveler, room_id) = room(&app).await;
    let mut a = connected(&app, &sender).await;
    subscribe(&mut a, &room_id, 0).await;
    assert_eq!(next_of(&mut a, "presence").await["online"], false);

    // Online through a socket on the other node...
    let mut there = connected(&other_node, &traveler).await;
    assert_eq!(
        next_of(&mut a, "presence").await,
        json!({"type": "presence", "user_id": traveler.id, "online": true})
    );
    // ...still online while a socket on this node remains after the other closes...
    let mut here = connected(&app, &traveler).await;
    there.close(None).await.unwrap();
    // (the other node's hub has released its claim and stopped)
    wait_metric(
        &other_node,
        r#"airbar_actors_live{kind="user_hub"}"#,
        Duration::from_secs(10),
        |v| v == 0.0,
    )
    .await;
    send(&mut a, json!({"type": "ping"})).await;
    loop {
        let frame = next_json(&mut a).await;
        assert_ne!(
            frame["type"], "presence",
            "no offline while a socket remains: {frame}"
        );
        if frame["type"] == "pong" {
            break;
        }
    }
    // ...and offline once the last one anywhere has closed.
    here.close(None).await.unwrap();
    assert_eq!(
        next_of(&mut a, "presence").await,
        json!({"type": "presence", "user_id": traveler.id, "online": false})
    );
}

#[tokio::test]
async fn a_message_arriving_ahead_of_an_earlier_one_waits_and_the_gap_is_read_back() {
    let app = spawn_app().await;
    // A node on the same database but another bus: what it stores is never published here.
    let elsewhere = crate::support::spawn_app_on(app.db_name.clone(), |s| {
        s.redis.key_prefix = format!("{}elsewhere:", s.redis.key_prefix);
    })
    .await;
    let (sender, traveler, room_id) = room(&app).await;
    let mut b = connected(&app, &traveler).await;
    subscribe(&mut b, &room_id, 0).await;
    post_message(&app, &sender, &room_id, "one").await;
    assert_eq!(next_of(&mut b, "message").await["seq"], 1);

    // Seq 2 and 3 are stored; only 3's event reaches this node's bus (crafted here, as another
    // node would publish it), ahead of 2's, which never comes.
    post_message(&elsewhere, &sender, &room_id, "two").await;
    let path = format!("/api/chat/rooms/{room_id}/messages");
    let three: Value = elsewhere
        .post_as(
            &sender,
            &path,
            &json!({"body": "three", "client_msg_id": "three"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let mut frame = three.clone();
    frame["type"] = json!("message");
    let envelope = json!({
        "node": uuid::Uuid::now_v7(),
        "event": {"type": "chat_message", "members": [sender.id, traveler.id], "message": frame},
        "at_us": 0,
    });
    let client = redis::Client::open(app.settings.redis.url.expose()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let channel = format!("{}ch:events", app.settings.redis.key_prefix);
    let _: i64 = redis::cmd("PUBLISH")
        .arg(&channel)
        .arg(envelope.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();

    // The socket delivers 2 (read back from PostgreSQL) before 3, each once.
    let m = next_of(&mut b, "message").await;
    assert_eq!(
        (m["seq"].as_i64(), m["body"].as_str()),
        (Some(2), Some("message two"))
    );
    let m = next_of(&mut b, "message").await;
    assert_eq!(
        (m["seq"].as_i64(), m["body"].as_str()),
        (Some(3), Some("three"))
    );
    send(&mut b, json!({"type": "ping"})).await;
    loop {
        let frame = next_json(&mut b).await;
        assert_ne!(frame["type"], "message", "no duplicate: {frame}");
        if frame["type"] == "pong" {
            break;
        }
    }
}

#[tokio::test]
async fn an_idle_event_stream_gets_keep_alive_comments() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let mut stream = open_stream(&app, &user, None).await;
    // realtime.sse_keepalive_secs is 1 in tests.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !stream.buf.contains(": keep-alive\n\n") {
        assert!(
            Instant::now() < deadline,
            "no keep-alive in {:?}",
            stream.buf
        );
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.res.chunk())
            .await
            .expect("a chunk in time")
            .unwrap()
            .expect("the stream stays open");
        stream.buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(stream.buf.starts_with("retry: "), "{:?}", stream.buf);
}

#[tokio::test]
async fn a_read_marker_reaches_the_other_member_as_a_receipt() {
    let app = spawn_app().await;
    let (sender, traveler, room_id) = room(&app).await;
    let mut a = connected(&app, &sender).await;
    let mut b = connected(&app, &traveler).await;
    subscribe(&mut a, &room_id, 0).await;
    subscribe(&mut b, &room_id, 0).await;
    post_message(&app, &sender, &room_id, "hello").await;
    assert_eq!(next_of(&mut b, "message").await["seq"], 1);
    send(
        &mut b,
        json!({"type": "read", "room_id": room_id, "seq": 1}),
    )
    .await;
    assert_eq!(
        next_of(&mut a, "read").await,
        json!({"type": "read", "room_id": room_id, "user_id": traveler.id, "seq": 1})
    );
    let rooms: Value = app
        .get_as(&traveler, "/api/chat/rooms")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rooms["items"][0]["unread"], 0);
}
