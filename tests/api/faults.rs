//! Dependencies going away and coming back while the app runs: requests fail fast with 503 and
//! recover without restarting the app.

use std::time::Duration;

use crate::support::proxy::Proxy;
use crate::support::spawn_app_with;

#[tokio::test]
async fn postgres_going_down_makes_ready_503_fast_and_coming_back_recovers() {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let port = proxy.port;
    let app = spawn_app_with(|s| {
        let url = s
            .database
            .url
            .expose()
            .replacen(":5432/", &format!(":{port}/"), 1);
        s.database.url = airbar::config::Secret::new(url);
    })
    .await;
    assert!(app
        .settings
        .database
        .url
        .expose()
        .contains(&format!(":{port}/")));
    assert_eq!(app.get("/api/ready").await.status(), 200);

    proxy.cut();
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["postgres"]["ok"], false);

    proxy.restore();
    assert_eq!(
        app.wait_for_status("/api/ready", 200, Duration::from_secs(15))
            .await,
        200
    );
}

#[tokio::test]
async fn redis_going_down_makes_ready_503_and_coming_back_recovers() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let port = proxy.port;
    let app = spawn_app_with(|s| {
        s.redis.url = airbar::config::Secret::new(format!("redis://127.0.0.1:{port}"));
    })
    .await;
    assert_eq!(app.get("/api/ready").await.status(), 200);

    proxy.cut();
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["redis"]["ok"], false);
    assert_eq!(body["checks"]["postgres"]["ok"], true);
    assert_eq!(
        app.get("/api/live").await.status(),
        200,
        "REST keeps serving"
    );

    proxy.restore();
    assert_eq!(
        app.wait_for_status("/api/ready", 200, Duration::from_secs(15))
            .await,
        200
    );
}
