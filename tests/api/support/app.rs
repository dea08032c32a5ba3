//! `spawn_app()`: the real application, built from `config/test.toml`, listening on port 0, on
//! a thread of its own (its own actix system), with a fresh database and a unique Redis key
//! prefix. Dropping the `TestApp` stops the server and joins the thread, so its pools close
//! before the next test starts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, HttpResponse};
use airbar::config::{Environment, Settings, Source};
use airbar::error::AppError;
use airbar::startup::Application;
use serde::{Deserialize, Serialize};

use super::database;

pub struct TestApp {
    pub address: String,
    pub db_name: String,
    pub settings: Settings,
    pub client: reqwest::Client,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

pub fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The test settings: `config/test.toml`, honouring only `DATABASE_URL`/`REDIS_URL` from the
/// process environment so a developer's other variables cannot change test behaviour.
pub fn test_settings() -> Settings {
    let vars: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k == "DATABASE_URL" || k == "REDIS_URL")
        .collect();
    let source = Source {
        dir: config_dir(),
        environment: Environment::Test,
    };
    Settings::load(&source, &vars).unwrap()
}

#[derive(Debug, Serialize, Deserialize)]
struct Echo {
    name: String,
    count: u32,
}

/// Routes only the tests mount, to reach the real error stack through a JSON endpoint and a
/// handler that fails internally.
fn test_routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/api/_test/echo",
        web::post()
            .to(|body: web::Json<Echo>| async move { HttpResponse::Ok().json(body.into_inner()) }),
    )
    .route(
        "/api/_test/boom",
        web::get().to(|| async {
            Err::<HttpResponse, _>(AppError::internal(
                "connection to 10.1.2.3:5432 refused: secret-detail",
            ))
        }),
    );
}

/// `TEST_LOG=1` shows the app's logs (at the configured filter, or `RUST_LOG`).
fn init_logs(settings: &Settings) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("TEST_LOG").is_some() {
        ONCE.call_once(|| airbar::telemetry::init(&settings.telemetry));
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like `spawn_app`, with a chance to change the settings after the harness has set the test
/// database and Redis prefix.
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let db_name = database::fresh_database().await;
    spawn_app_on(db_name, customize).await
}

/// Another node: an app on an existing test database (and its own Redis prefix unless
/// `customize` sets one).
pub async fn spawn_app_on(db_name: String, customize: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings();
    settings.database.url = airbar::config::Secret::new(database::url_for(&db_name));
    settings.redis.key_prefix = format!("airbar:test:{}:", uuid::Uuid::new_v4().simple());
    customize(&mut settings);
    init_logs(&settings);

    let app_settings = settings.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let system = actix_web::rt::System::new();
        system.block_on(async move {
            let app =
                Application::build(app_settings, Environment::Test, Some(test_routes)).unwrap();
            tx.send((app.port(), app.handle())).unwrap();
            app.run_until_stopped().await.unwrap();
        });
    });
    let (port, handle) =
        tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap()
            .expect("the app did not start within 30 s");

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        db_name,
        settings,
        client,
        handle,
        thread: Some(thread),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let res = self.get(path).await;
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }

    /// Polls `path` until it answers `status` or `within` passes; returns the last status.
    pub async fn wait_for_status(&self, path: &str, status: u16, within: Duration) -> u16 {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.get(path).await.status().as_u16();
            if got == status || tokio::time::Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A signed-in test user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
    pub session_id: String,
}

impl TestUser {
    fn from_auth(body: &serde_json::Value, email: &str, password: &str) -> Self {
        Self {
            id: body["user"]["id"].as_str().unwrap().to_owned(),
            email: email.to_owned(),
            password: password.to_owned(),
            access_token: body["access_token"].as_str().unwrap().to_owned(),
            refresh_token: body["refresh_token"].as_str().unwrap().to_owned(),
            session_id: body["session_id"].as_str().unwrap().to_owned(),
        }
    }
}

pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    /// The configured rate-limit bypass header, for requests a test does not mean to count.
    pub fn bypass(&self) -> (&'static str, String) {
        (
            "x-ratelimit-bypass",
            self.settings.rate_limit.bypass_token.expose().to_owned(),
        )
    }

    /// A direct connection to this test's database.
    pub async fn db(&self) -> diesel_async::AsyncPgConnection {
        use diesel_async::AsyncConnection;
        diesel_async::AsyncPgConnection::establish(&database::url_for(&self.db_name))
            .await
            .unwrap()
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap()
    }

    pub async fn get_authed(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Registers a fresh user (not counted by the rate limiter).
    pub async fn register_user(&self) -> TestUser {
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
        let (k, v) = self.bypass();
        let res = self
            .client
            .post(self.url("/api/auth/register"))
            .header(k, v)
            .json(&serde_json::json!({"email": email, "password": PASSWORD, "display_name": "Test User"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        TestUser::from_auth(&res.json().await.unwrap(), &email, PASSWORD)
    }

    /// Signs `user` in again, on the device `device_id` (not counted by the rate limiter).
    pub async fn login(&self, user: &TestUser, device_id: &str) -> TestUser {
        let (k, v) = self.bypass();
        let res = self
            .client
            .post(self.url("/api/auth/login"))
            .header(k, v)
            .header("x-device-id", device_id)
            .json(&serde_json::json!({"email": user.email, "password": user.password}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        TestUser::from_auth(&res.json().await.unwrap(), &user.email, &user.password)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // `stop` sends the command at once; the server thread then winds down and closes pools.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
