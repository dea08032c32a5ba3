//! The `airbar` binary itself: configuration errors, an unreachable database at start-up,
//! creating and migrating the database on `serve`, and graceful shutdown on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::support::app::config_dir;
use crate::support::database;

fn airbar() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airbar"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AIRBAR_CONFIG_DIR", config_dir())
        .env("AIRBAR_ENV", "test")
        .env(
            "DATABASE_URL",
            database::url_for(&database::unused_database_name()),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn run(cmd: &mut Command) -> (i32, String) {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_unknown_config_key_stops_start_up_with_one_line_naming_it() {
    let (code, stderr) = run(airbar().env("AIRBAR__SERVER__PROT", "1")).await;
    assert_ne!(code, 0);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("server.prot"), "{stderr}");
}

#[tokio::test]
async fn a_badly_typed_config_value_stops_start_up_naming_the_key() {
    let (code, stderr) = run(airbar().env("PORT", "eighty")).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("server.port"), "{stderr}");
}

#[tokio::test]
async fn an_unreachable_database_at_start_is_retried_then_reported_without_a_panic() {
    let (code, stderr) = run(airbar()
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/airbar")
        .env("AIRBAR__DATABASE__STARTUP_RETRY_SECS", "1")
        .arg("migrate"))
    .await;
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("PostgreSQL unreachable after 1 s"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn secrets_in_the_configuration_are_never_printed() {
    let (_, stderr) = run(airbar()
        .env(
            "DATABASE_URL",
            "postgres://postgres:hunter2-secret@127.0.0.1:1/airbar",
        )
        .env("AIRBAR__DATABASE__STARTUP_RETRY_SECS", "0")
        .env("AIRBAR__RATE_LIMIT__BYPASS_TOKEN", "sesame-secret")
        .arg("migrate"))
    .await;
    assert!(
        !stderr.contains("hunter2-secret") && !stderr.contains("sesame-secret"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_creates_and_migrates_its_database_then_stops_gracefully_on_sigterm() {
    let name = database::unused_database_name();
    assert!(!database::database_exists(&name).await);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = airbar()
        .env("DATABASE_URL", database::url_for(&name))
        .env("PORT", port.to_string())
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let client = reqwest::Client::new();
    let ready_url = format!("http://127.0.0.1:{port}/api/ready");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(&ready_url).send().await {
            assert_eq!(res.status(), 200);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve did not come up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(database::database_exists(&name).await);

    // An open socket is closed with 1001 (going away) when the node shuts down.
    let registered: serde_json::Value = client
        .post(format!("http://127.0.0.1:{port}/api/auth/register"))
        .json(&serde_json::json!({"email": "ws@example.com", "password": "correct horse battery", "display_name": "W"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = registered["access_token"].as_str().unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{port}/api/ws?access_token={token}"
    ))
    .await
    .unwrap();
    use futures_util::StreamExt;
    let hello = socket.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("hello"));

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn reconcile_passes_on_a_sound_ledger_and_fails_naming_a_tampered_balance() {
    let app = crate::support::spawn_app().await;
    let b = crate::payments::accepted(&app, 48).await;
    app.deliver(&b).await;
    let reconcile = || {
        let mut cmd = airbar();
        cmd.env("DATABASE_URL", database::url_for(&app.db_name))
            .args(["reconcile", "--from", "2026-01-01"]);
        cmd
    };
    let out = reconcile().output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("3 ledger transfers") && stdout.trim_end().ends_with("ok"),
        "{stdout}"
    );

    // A balance edited by hand no longer equals the sum of its transfers.
    let mut conn = app.db().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "UPDATE ledger_accounts SET balance = balance + 1 WHERE kind = 'platform_revenue'",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    let out = reconcile().output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("MISMATCH"), "{stdout}");
    let (code, stderr) = run(airbar().args(["reconcile", "--from", "yesterday"])).await;
    assert_eq!(code, 2, "{stderr}");
}
