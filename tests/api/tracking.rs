//! Live tracking and custody through the real server: positions from the traveler (WebSocket
//! frames and REST), the jitter filter, watchers on `tracking:<match>` (sender and traveler
//! only; a late one gets the latest position at once; across nodes), `arriving` once inside the
//! geofence, the tracker rebuilt after a restart, the recipient's link and event stream (no
//! account, nothing personal), and the hash-chained custody log with tamper detection.

use chrono::{DateTime, Utc};
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};

use crate::payments::{accepted, Booking};
use crate::support::app::TestApp;
use crate::support::sse::EventStream;
use crate::support::ws::{connect, next_json, next_of, send, Socket};
use crate::support::{spawn_app_on, spawn_app_with};

/// Metres per degree of latitude (near enough for placing test points).
const M_PER_DEG: f64 = 111_195.0;

/// Positions may be timestamped up to an hour ahead here, so a test can lay out a trip of
/// several minutes at once.
async fn app() -> TestApp {
    spawn_app_with(|s| s.tracking.max_future_secs = 3600).await
}

/// A paid, picked-up match and its parcel's destination (lat, lng).
async fn in_transit(app: &TestApp) -> (Booking, (f64, f64)) {
    let b = accepted(app, 48).await;
    app.pay(&b).await;
    let code = app.code(&b, "pickup_code").await;
    assert_eq!(app.hand_over(&b, "pickup", &code).await.status(), 200);
    let destination = destination(app, &b).await;
    (b, destination)
}

async fn destination(app: &TestApp, b: &Booking) -> (f64, f64) {
    #[derive(diesel::QueryableByName)]
    struct Dest {
        #[diesel(sql_type = diesel::sql_types::Double)]
        destination_lat: f64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        destination_lng: f64,
    }
    let mut conn = app.db().await;
    let d: Dest = diesel::sql_query(
        "SELECT p.destination_lat, p.destination_lng FROM parcels p \
         JOIN matches m ON m.parcel_id = p.id WHERE m.id = $1::uuid",
    )
    .bind::<diesel::sql_types::Text, _>(&b.id)
    .get_result(&mut conn)
    .await
    .unwrap();
    (d.destination_lat, d.destination_lng)
}

/// A point `km` south of `d`, timestamped `secs` after `t0`.
fn south(d: (f64, f64), km: f64, t0: DateTime<Utc>, secs: i64) -> Value {
    json!({
        "lat": d.0 - km * 1000.0 / M_PER_DEG,
        "lng": d.1,
        "accuracy_m": 8.0,
        "recorded_at": t0 + chrono::Duration::seconds(secs),
    })
}

async fn report(app: &TestApp, b: &Booking, position: &Value) -> (u16, Value) {
    let res = app
        .post_as(
            &b.traveler,
            &format!("/api/matches/{}/positions", b.id),
            position,
        )
        .await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

async fn watch(socket: &mut Socket, match_id: &str) -> Value {
    next_of(socket, "hello").await;
    send(
        socket,
        json!({"type": "subscribe", "channel": format!("tracking:{match_id}")}),
    )
    .await;
    next_tracking(socket).await
}

/// The next frame of the tracking channel (`subscribed`, `position`, `arriving`, `error`,
/// `pong`), skipping the user's other events.
async fn next_tracking(socket: &mut Socket) -> Value {
    loop {
        let frame = next_json(socket).await;
        if !matches!(
            frame["type"].as_str(),
            Some("notification" | "match_updated" | "presence" | "suggestion")
        ) {
            return frame;
        }
    }
}

fn position_frame(match_id: &str, p: &Value) -> Value {
    let mut frame = p.clone();
    frame["type"] = json!("position");
    frame["match_id"] = json!(match_id);
    frame
}

async fn custody(app: &TestApp, b: &Booking) -> Value {
    app.json_of(&b.sender, &format!("/api/matches/{}/custody", b.id))
        .await
}

#[tokio::test]
async fn the_whole_trip_request_to_release_with_live_positions_arriving_once_and_a_sound_custody_log(
) {
    let app = app().await;
    let (b, dest) = in_transit(&app).await;
    let mut sender = connect(&app, &b.sender).await;
    let subscribed = watch(&mut sender, &b.id).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    assert_eq!(subscribed["status"], "in_transit");
    assert!(
        subscribed["eta"].is_string(),
        "the schedule before movement"
    );

    // The traveler's app reports over its socket, approaching the destination at ~83 m/s.
    let mut traveler = connect(&app, &b.traveler).await;
    next_of(&mut traveler, "hello").await;
    let t0 = now();
    let path = [20.0, 15.0, 10.0, 5.0, 1.0, 0.3, 0.1];
    for (i, km) in path.iter().enumerate() {
        let p = south(dest, *km, t0, 60 * i as i64);
        send(&mut traveler, position_frame(&b.id, &p)).await;
        let frame = next_of(&mut sender, "position").await;
        assert_eq!(frame["match_id"], b.id.as_str());
        assert_eq!(
            frame["recorded_at"].as_str().map(parse),
            Some(parse_v(&p["recorded_at"]))
        );
        assert!((frame["lat"].as_f64().unwrap() - p["lat"].as_f64().unwrap()).abs() < 1e-9);
        let eta = parse_v(&frame["eta"]);
        if i == 1 || i == 2 {
            // Moving at 5 km a minute: the rest of the way at that speed.
            let left_secs = (eta - parse_v(&p["recorded_at"])).num_seconds() as f64;
            let expected = km * 1000.0 / (5000.0 / 60.0);
            assert!(
                (left_secs - expected).abs() <= expected * 0.1 + 2.0,
                "eta {left_secs} s for {km} km, expected ~{expected}"
            );
        }
        if *km == 0.3 {
            let arriving = next_of(&mut sender, "arriving").await;
            assert_eq!(arriving["match_id"], b.id.as_str());
        }
    }
    // One more inside the fence by REST: stored, no second `arriving`.
    let (status, receipt) = report(&app, &b, &south(dest, 0.05, t0, 60 * 8)).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(
        (receipt["accepted"].as_bool(), receipt["stored"].as_bool()),
        (Some(true), Some(true))
    );
    let last = next_tracking(&mut sender).await;
    assert_eq!(last["type"], "position", "no second arriving: {last}");

    let view = app
        .json_of(&b.sender, &format!("/api/matches/{}/tracking", b.id))
        .await;
    assert_eq!(view["status"], "in_transit");
    assert_eq!(view["trail"]["total"], 8);
    assert_eq!(view["trail"]["points"].as_array().unwrap().len(), 8);
    let kinds: Vec<&str> = view["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["picked_up", "arriving"]);
    let thin = app
        .json_of(
            &b.sender,
            &format!("/api/matches/{}/tracking?points=3", b.id),
        )
        .await;
    let points = thin["trail"]["points"].as_array().unwrap();
    assert_eq!(points.len(), 3, "{thin}");
    assert_eq!(
        points[2]["recorded_at"],
        view["trail"]["points"][7]["recorded_at"]
    );

    // Delivery releases the money (release delay 0 in tests) and ends the trail.
    let code = app.code(&b, "delivery_code").await;
    assert_eq!(app.hand_over(&b, "deliver", &code).await.status(), 200);
    let wallet = app.json_of(&b.traveler, "/api/wallet").await;
    assert_eq!(wallet["balances"][0]["available"], 1530);
    let (status, body) = report(&app, &b, &south(dest, 0.02, t0, 60 * 9)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_in_transit"))
    );

    let log = custody(&app, &b).await;
    let kinds: Vec<&str> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "paid",
            "code_issued",
            "pickup_verified",
            "code_issued",
            "positions_summary",
            "delivered",
            "released"
        ]
    );
    assert_eq!(log["verification"]["valid"], true, "{log}");
    assert_eq!(log["verification"]["length"], 7);
    assert_eq!(log["events"][0]["prev_hash"], "0".repeat(64));
    assert_eq!(log["events"][4]["data"]["points"], 8);
    assert_eq!(log["trail"], json!({"points": 8, "intact": true}));
    assert_eq!(log["events"][1]["data"]["code"], "pickup");
    assert!(
        !log.to_string().contains(&code),
        "the custody log never holds a code"
    );
}

/// Now, to the microsecond (what the server keeps of a fix's time).
fn now() -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(Utc::now(), 6)
}

fn parse(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn parse_v(v: &Value) -> DateTime<Utc> {
    match v {
        Value::String(s) => parse(s),
        other => serde_json::from_value(other.clone()).unwrap(),
    }
}

#[tokio::test]
async fn a_tampered_custody_row_or_trail_point_breaks_the_verification() {
    let app = app().await;
    let (b, dest) = in_transit(&app).await;
    let t0 = now();
    for i in 0..3 {
        let (status, _) = report(&app, &b, &south(dest, 10.0 - i as f64, t0, 60 * i)).await;
        assert_eq!(status, 200);
    }
    let code = app.code(&b, "delivery_code").await;
    assert_eq!(app.hand_over(&b, "deliver", &code).await.status(), 200);
    let log = custody(&app, &b).await;
    assert_eq!(log["verification"]["valid"], true);
    assert_eq!(log["trail"]["intact"], true);

    let mut conn = app.db().await;
    let exec =
        |sql: &'static str| diesel::sql_query(sql).bind::<diesel::sql_types::Text, _>(b.id.clone());
    // Someone lowers the price recorded at payment.
    exec("UPDATE custody_events SET data = jsonb_set(data, '{price}', '1') WHERE match_id = $1::uuid AND seq = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    let log = custody(&app, &b).await;
    assert_eq!(log["verification"]["valid"], false);
    assert_eq!(log["verification"]["broken_at"], 1);
    assert_eq!(log["verification"]["problem"], "hash_mismatch");
    exec("UPDATE custody_events SET data = jsonb_set(data, '{price}', '1800') WHERE match_id = $1::uuid AND seq = 1")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(custody(&app, &b).await["verification"]["valid"], true);

    // Dropping the last event is seen against the head kept on the match.
    exec("DELETE FROM custody_events WHERE match_id = $1::uuid AND seq = (SELECT max(seq) FROM custody_events WHERE match_id = $1::uuid)")
        .execute(&mut conn)
        .await
        .unwrap();
    let log = custody(&app, &b).await;
    assert_eq!(
        (
            log["verification"]["valid"].as_bool(),
            log["verification"]["problem"].as_str()
        ),
        (Some(false), Some("head_mismatch"))
    );

    // Moving a trail point after delivery no longer matches the delivery's summary.
    exec("UPDATE positions SET lat = lat + 0.001 WHERE match_id = $1::uuid AND recorded_at = (SELECT min(recorded_at) FROM positions WHERE match_id = $1::uuid)")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(custody(&app, &b).await["trail"]["intact"], false);

    // A stranger cannot read the log.
    let stranger = app.register_user().await;
    let res = app
        .get_as(&stranger, &format!("/api/matches/{}/custody", b.id))
        .await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn positions_come_only_from_the_traveler_while_in_transit_and_must_be_well_formed() {
    let app = app().await;
    let b = accepted(&app, 48).await;
    app.pay(&b).await;
    let dest = destination(&app, &b).await;
    let t0 = now() + chrono::Duration::seconds(5);
    let p = south(dest, 5.0, t0, 0);
    let path = format!("/api/matches/{}/positions", b.id);

    // Paid, not picked up yet.
    let (status, body) = report(&app, &b, &p).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("not_in_transit"))
    );
    let code = app.code(&b, "pickup_code").await;
    assert_eq!(app.hand_over(&b, "pickup", &code).await.status(), 200);

    let res = app.post_as(&b.sender, &path, &p).await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_traveler");
    let stranger = app.register_user().await;
    assert_eq!(app.post_as(&stranger, &path, &p).await.status(), 404);

    // The sender's socket is refused the same way.
    let mut socket = connect(&app, &b.sender).await;
    next_of(&mut socket, "hello").await;
    send(&mut socket, position_frame(&b.id, &p)).await;
    let err = next_of(&mut socket, "error").await;
    assert_eq!(err["code"], "not_traveler", "{err}");
    send(
        &mut socket,
        json!({"type": "position", "match_id": b.id, "lat": 95.0}),
    )
    .await;
    let err = next_of(&mut socket, "error").await;
    assert_eq!(err["code"], "bad_frame", "{err}");

    for bad in [
        json!({"lat": 91.0, "lng": 0.0, "accuracy_m": 5.0, "recorded_at": t0}),
        json!({"lat": 10.0, "lng": 0.0, "accuracy_m": -1.0, "recorded_at": t0}),
        json!({"lat": 10.0, "lng": 0.0, "accuracy_m": 5.0, "recorded_at": "yesterday"}),
        json!({"lng": 0.0, "accuracy_m": 5.0, "recorded_at": t0}),
    ] {
        let (status, body) = report(&app, &b, &bad).await;
        assert_eq!(status, 422, "{bad} → {body}");
        assert!(!body["errors"].as_array().unwrap().is_empty());
    }
    let view = app
        .json_of(&b.traveler, &format!("/api/matches/{}/tracking", b.id))
        .await;
    assert_eq!(view["trail"]["total"], 0, "nothing bad was stored");
    let (status, body) = report(&app, &b, &p).await;
    assert_eq!((status, body["stored"].as_bool()), (200, Some(true)));
}

#[tokio::test]
async fn the_jitter_filter_drops_blurry_tiny_stale_future_and_impossible_positions() {
    // Default filter: accuracy ≤ 100 m, 10 m within 30 s, 30 s of clock skew, ≤ 350 m/s.
    let app = spawn_app_with(|_| {}).await;
    let (b, dest) = in_transit(&app).await;
    let t0 = now();
    let at = |km: f64, secs: i64| south(dest, km, t0, secs);
    let (_, r) = report(&app, &b, &at(50.0, 10)).await;
    assert_eq!(r["accepted"], true, "{r}");

    let mut blurry = at(49.0, 15);
    blurry["accuracy_m"] = json!(250.0);
    let cases = [
        (blurry, "inaccurate"),
        (at(49.997, 20), "too_close"),
        (at(49.0, 5), "out_of_order"),
        (at(49.0, 10), "out_of_order"),
        (at(49.0, 300), "future"),
        (at(10.0, 30), "too_fast"),
        (at(49.0, -3600), "before_pickup"),
    ];
    for (p, why) in cases {
        let (status, r) = report(&app, &b, &p).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(
            (
                r["accepted"].as_bool(),
                r["stored"].as_bool(),
                r["dropped"].as_str()
            ),
            (Some(false), Some(false), Some(why)),
            "{p}"
        );
    }
    // A real move (1 km in 20 s: 50 m/s) is taken.
    let (_, r) = report(&app, &b, &at(49.0, 30)).await;
    assert_eq!(
        (r["accepted"].as_bool(), r["stored"].as_bool()),
        (Some(true), Some(true))
    );
    let view = app
        .json_of(&b.sender, &format!("/api/matches/{}/tracking", b.id))
        .await;
    assert_eq!(view["trail"]["total"], 2);
    let metrics = app.get("/api/metrics").await.text().await.unwrap();
    for outcome in [
        "accepted",
        "inaccurate",
        "too_close",
        "out_of_order",
        "future",
        "too_fast",
    ] {
        assert!(
            metrics.contains(&format!(
                "airbar_tracking_positions_total{{outcome=\"{outcome}\"}}"
            )),
            "{outcome}"
        );
    }
}

#[tokio::test]
async fn watchers_are_the_parties_only_and_a_late_one_gets_the_latest_position_at_once() {
    let app = app().await;
    let (b, dest) = in_transit(&app).await;
    let stranger = app.register_user().await;
    let mut intruder = connect(&app, &stranger).await;
    let answer = watch(&mut intruder, &b.id).await;
    assert_eq!(
        (answer["type"].as_str(), answer["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    let res = app
        .get_as(&stranger, &format!("/api/matches/{}/tracking", b.id))
        .await;
    assert_eq!(res.status(), 404);

    let t0 = now();
    for i in 0..3 {
        report(&app, &b, &south(dest, 30.0 - 2.0 * i as f64, t0, 60 * i)).await;
    }
    // Subscribing late: the latest at once, right after `subscribed`.
    let mut late = connect(&app, &b.traveler).await;
    let subscribed = watch(&mut late, &b.id).await;
    assert_eq!(subscribed["type"], "subscribed");
    let first = next_tracking(&mut late).await;
    assert_eq!(first["type"], "position", "{first}");
    assert_eq!(
        parse_v(&first["recorded_at"]),
        t0 + chrono::Duration::seconds(120)
    );

    // Subscribing twice in a row leaves one live subscription; unsubscribing ends it. A
    // control socket shows when a position has been fanned out.
    let mut control = connect(&app, &b.sender).await;
    assert_eq!(watch(&mut control, &b.id).await["type"], "subscribed");
    next_tracking(&mut control).await; // the latest
    let again = json!({"type": "subscribe", "channel": format!("tracking:{}", b.id)});
    send(&mut late, again.clone()).await;
    send(&mut late, again).await;
    assert_eq!(next_tracking(&mut late).await["type"], "subscribed");
    report(&app, &b, &south(dest, 24.0, t0, 180)).await;
    next_of(&mut control, "position").await;
    // (A second `subscribed` and the latest again may come first.)
    let live = loop {
        let frame = next_tracking(&mut late).await;
        let at = frame["recorded_at"].as_str().map(parse);
        if at == Some(t0 + chrono::Duration::seconds(180)) {
            break frame;
        }
        assert!(
            matches!(frame["type"].as_str(), Some("subscribed" | "position")),
            "{frame}"
        );
    };
    assert_eq!(live["type"], "position");
    send(&mut late, json!({"type": "ping"})).await;
    let next = next_tracking(&mut late).await;
    assert_eq!(next["type"], "pong", "the position came once: {next}");

    send(
        &mut late,
        json!({"type": "unsubscribe", "channel": format!("tracking:{}", b.id)}),
    )
    .await;
    send(&mut late, json!({"type": "ping"})).await;
    next_of(&mut late, "pong").await;
    report(&app, &b, &south(dest, 20.0, t0, 240)).await;
    next_of(&mut control, "position").await;
    send(&mut late, json!({"type": "ping"})).await;
    let next = next_tracking(&mut late).await;
    assert_eq!(next["type"], "pong", "nothing after unsubscribing: {next}");
}

#[tokio::test]
async fn a_watcher_on_another_node_gets_the_positions_reported_on_this_one() {
    let one = app().await;
    let prefix = one.settings.redis.key_prefix.clone();
    let two = spawn_app_on(one.db_name.clone(), |s| {
        s.redis.key_prefix = prefix;
        s.tracking.max_future_secs = 3600;
    })
    .await;
    let (b, dest) = in_transit(&one).await;
    let mut sender = connect(&two, &b.sender).await;
    assert_eq!(watch(&mut sender, &b.id).await["type"], "subscribed");
    let t0 = now();
    for i in 0..3 {
        let p = south(dest, 30.0 - 2.0 * i as f64, t0, 60 * i);
        report(&one, &b, &p).await;
        let frame = next_of(&mut sender, "position").await;
        assert_eq!(parse_v(&frame["recorded_at"]), parse_v(&p["recorded_at"]));
    }
    // Node two's tracker followed: it filters the next report against the same latest.
    let (_, r) = report(&two, &b, &south(dest, 26.0, t0, 60)).await;
    assert_eq!(r["dropped"], "out_of_order", "{r}");
}

#[tokio::test]
async fn a_restarted_node_rebuilds_the_tracker_with_the_latest_position() {
    let first = app().await;
    let (b, dest) = in_transit(&first).await;
    let t0 = now();
    for i in 0..4 {
        report(&first, &b, &south(dest, 40.0 - 5.0 * i as f64, t0, 60 * i)).await;
    }
    let db_name = first.db_name.clone();
    drop(first);

    // A new process (and a fresh Redis prefix: nothing kept there) on the same database.
    let second = spawn_app_on(db_name, |s| s.tracking.max_future_secs = 3600).await;
    let mut sender = connect(&second, &b.sender).await;
    assert_eq!(watch(&mut sender, &b.id).await["type"], "subscribed");
    let latest = next_tracking(&mut sender).await;
    assert_eq!(latest["type"], "position", "{latest}");
    assert_eq!(
        parse_v(&latest["recorded_at"]),
        t0 + chrono::Duration::seconds(180)
    );
    // The filter goes on from there: an older fix is out of order, a newer one is taken.
    let (_, r) = report(&second, &b, &south(dest, 30.0, t0, 120)).await;
    assert_eq!(r["dropped"], "out_of_order");
    let (_, r) = report(&second, &b, &south(dest, 20.0, t0, 240)).await;
    assert_eq!(r["stored"], true, "{r}");
    let view = second
        .json_of(&b.traveler, &format!("/api/matches/{}/tracking", b.id))
        .await;
    assert_eq!(
        parse_v(&view["latest"]["recorded_at"]),
        t0 + chrono::Duration::seconds(240)
    );
}

#[tokio::test]
async fn the_recipients_link_and_stream_need_no_account_and_show_nothing_personal() {
    let app = app().await;
    let (b, dest) = in_transit(&app).await;
    let m = app
        .json_of(&b.sender, &format!("/api/matches/{}", b.id))
        .await;
    let url = m["tracking_url"].as_str().unwrap().to_owned();
    let traveler_view = app
        .json_of(&b.traveler, &format!("/api/matches/{}", b.id))
        .await;
    assert!(traveler_view.get("tracking_url").is_none_or(Value::is_null));

    let t0 = now();
    report(&app, &b, &south(dest, 12.0, t0, 0)).await;
    report(&app, &b, &south(dest, 8.0, t0, 60)).await;

    let (status, view) = app.get_json(&url).await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "in_transit");
    assert_eq!(
        parse_v(&view["latest"]["recorded_at"]),
        t0 + chrono::Duration::seconds(60)
    );
    assert!(view["eta"].is_string());
    assert!(view.get("trail").is_none(), "no trail for the link: {view}");
    let text = view.to_string();
    let traveler = app.json_of(&b.traveler, "/api/users/me").await;
    let sender = app.json_of(&b.sender, "/api/users/me").await;
    for secret in [
        traveler["id"].as_str().unwrap(),
        traveler["email"].as_str().unwrap(),
        traveler["display_name"].as_str().unwrap(),
        sender["id"].as_str().unwrap(),
        sender["email"].as_str().unwrap(),
        "Ann Recipient",
        "ann@example.com",
        "+12125550123",
        "Private Road",
        "Secret Street",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert_eq!(app.get("/api/track/not-a-token").await.status(), 404);

    // The stream: status, the latest position, then live positions, then the end at delivery.
    let res = app.get(&format!("{url}/stream")).await;
    let mut records = EventStream::new(res);
    let status = records.next().await.1;
    assert_eq!(
        (status["type"].as_str(), status["status"].as_str()),
        (Some("status"), Some("in_transit"))
    );
    let latest = records.next().await.1;
    assert_eq!(
        parse_v(&latest["recorded_at"]),
        t0 + chrono::Duration::seconds(60)
    );
    report(&app, &b, &south(dest, 0.2, t0, 240)).await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let r = records.next().await.1;
        seen.push(r["type"].as_str().unwrap().to_owned());
        let text = r.to_string();
        for secret in [
            traveler["id"].as_str().unwrap(),
            sender["id"].as_str().unwrap(),
        ] {
            assert!(!text.contains(secret));
        }
    }
    seen.sort();
    assert_eq!(seen, ["arriving", "position"]);
    let code = app.code(&b, "delivery_code").await;
    assert_eq!(app.hand_over(&b, "deliver", &code).await.status(), 200);
    let done = records.next().await.1;
    assert_eq!(
        (done["type"].as_str(), done["status"].as_str()),
        (Some("status"), Some("delivered"))
    );
    assert!(
        records.next_or_end().await.is_none(),
        "the stream ends after delivery"
    );
    // Afterwards: no stream (204: EventSource stops reconnecting), no position in the view.
    assert_eq!(app.get(&format!("{url}/stream")).await.status(), 204);
    let (_, view) = app.get_json(&url).await;
    assert_eq!(view["status"], "completed");
    assert!(view["latest"].is_null(), "{view}");
}

#[tokio::test]
async fn a_parcel_with_as_many_watchers_as_a_node_takes_turns_the_next_one_away_until_one_leaves() {
    let app = spawn_app_with(|s| {
        s.tracking.max_future_secs = 3600;
        s.tracking.max_watchers = 2;
    })
    .await;
    let (b, _) = in_transit(&app).await;
    let m = app
        .json_of(&b.sender, &format!("/api/matches/{}", b.id))
        .await;
    let url = m["tracking_url"].as_str().unwrap().to_owned();

    let mut sender = connect(&app, &b.sender).await;
    assert_eq!(watch(&mut sender, &b.id).await["type"], "subscribed");
    let res = app.get(&format!("{url}/stream")).await;
    assert_eq!(res.status(), 200);
    let mut stream = EventStream::new(res);
    assert_eq!(stream.next().await.1["type"], "status");

    // Full: another stream is answered 503 before it starts, another socket `unavailable`.
    let res = app.get(&format!("{url}/stream")).await;
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "overloaded", "{body}");
    let mut traveler = connect(&app, &b.traveler).await;
    let answer = watch(&mut traveler, &b.id).await;
    assert_eq!(
        (answer["type"].as_str(), answer["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{answer}"
    );

    // The sender's socket leaves: its place is taken by the next one.
    send(
        &mut sender,
        json!({"type": "unsubscribe", "channel": format!("tracking:{}", b.id)}),
    )
    .await;
    send(&mut sender, json!({"type": "ping"})).await;
    next_of(&mut sender, "pong").await;
    send(
        &mut traveler,
        json!({"type": "subscribe", "channel": format!("tracking:{}", b.id)}),
    )
    .await;
    assert_eq!(next_tracking(&mut traveler).await["type"], "subscribed");
}
