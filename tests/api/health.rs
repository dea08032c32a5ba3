use crate::support::spawn_app;

#[tokio::test]
async fn live_answers_ok() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/live").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn ready_is_ok_when_postgres_and_redis_answer() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["postgres"]["ok"], true);
    assert_eq!(body["checks"]["redis"]["ok"], true);
    assert!(body["checks"]["postgres"]["latency_ms"].is_u64());
}

#[tokio::test]
async fn ready_is_503_naming_postgres_when_the_database_port_is_closed() {
    let app = crate::support::spawn_app_with(|s| {
        s.database.url = airbar::config::Secret::new("postgres://postgres@127.0.0.1:1/airbar");
    })
    .await;
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["checks"]["postgres"]["ok"], false);
    assert!(body["checks"]["postgres"]["error"].is_string());
    assert_eq!(body["checks"]["redis"]["ok"], true);
    // Liveness does not depend on the database.
    assert_eq!(app.get("/api/live").await.status(), 200);
}

#[tokio::test]
async fn ready_is_503_naming_redis_when_redis_is_configured_but_down() {
    let app = crate::support::spawn_app_with(|s| {
        s.redis.url = airbar::config::Secret::new("redis://127.0.0.1:1");
    })
    .await;
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["redis"]["ok"], false);
    assert_eq!(body["checks"]["postgres"]["ok"], true);
    let (status, health) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "degraded");
}

#[tokio::test]
async fn without_a_redis_url_the_node_runs_single_node_and_is_ready() {
    let app =
        crate::support::spawn_app_with(|s| s.redis.url = airbar::config::Secret::new("")).await;
    let (status, body) = app.get_json("/api/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["redis"]["mode"], "single_node");
}

#[tokio::test]
async fn health_reports_version_uptime_and_dependencies() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["environment"], "test");
    assert!(body["uptime_secs"].is_u64());
    assert_eq!(body["checks"]["postgres"]["ok"], true);
}
