use crate::support::spawn_app;

#[tokio::test]
async fn metrics_expose_http_pool_and_actor_series() {
    let app = spawn_app().await;
    assert_eq!(app.get("/api/ready").await.status(), 200);
    assert_eq!(app.get("/api/nowhere").await.status(), 404);

    let res = app.get("/api/metrics").await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = res.text().await.unwrap();
    for series in [
        r#"airbar_http_requests_total{method="GET",route="/api/ready",status="200"} 1"#,
        r#"airbar_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"airbar_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/api/ready"} 1"#,
        r#"airbar_pool_connections{pool="postgres",state="max"} 4"#,
        r#"airbar_pool_connections{pool="redis",state="max"} 4"#,
        r#"airbar_actors_live{kind="registry"} 1"#,
        r#"airbar_actor_mailbox_backlog{kind="registry"} 0"#,
    ] {
        assert!(text.contains(series), "missing `{series}` in:\n{text}");
    }
    assert!(text.trim_end().ends_with("# EOF"));
}
