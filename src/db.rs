//! PostgreSQL plumbing: the diesel-async pool, creating the database when missing, and the
//! embedded migrations. Queries belong in `models/`, transactions in `services/`.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::DatabaseSettings;
use crate::error::AppError;
use crate::telemetry::metrics::PoolSample;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Held while migrating so that several nodes starting together migrate one at a time.
const MIGRATION_LOCK_KEY: i64 = 0x0A1B_BA50;

pub type PgPool = Pool<AsyncPgConnection>;
pub type PoolError = diesel_async::pooled_connection::deadpool::PoolError;
pub type PgConn = Object<AsyncPgConnection>;

/// Why start-up could not prepare the database.
#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("database.url: {0}")]
    BadUrl(String),
    #[error("PostgreSQL unreachable after {secs} s of retrying: {cause}")]
    Unreachable { secs: u64, cause: String },
    #[error("could not create database `{name}`: {cause}")]
    Create { name: String, cause: String },
    #[error("migrations failed: {0}")]
    Migrate(String),
    #[error("could not build the connection pool: {0}")]
    Pool(String),
}

/// A lazily connecting pool: building it never touches the network, so a node starts even
/// while PostgreSQL is down and recovers on its own when it returns.
pub fn pool(settings: &DatabaseSettings) -> Result<PgPool, DbSetupError> {
    build_pool(settings, settings.pool_max_size, None)
}

/// A pool of its own for one writer: `size` connections, each running `session_sql` (session
/// settings such as `SET synchronous_commit = off`) once connected, so nothing else ever gets a
/// connection with them.
pub fn pool_with_session(
    settings: &DatabaseSettings,
    size: usize,
    session_sql: &'static str,
) -> Result<PgPool, DbSetupError> {
    build_pool(settings, size, Some(session_sql))
}

fn build_pool(
    settings: &DatabaseSettings,
    size: usize,
    session_sql: Option<&'static str>,
) -> Result<PgPool, DbSetupError> {
    let connect_timeout = settings.connect_timeout();
    let mut manager_config = ManagerConfig::default();
    manager_config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        Box::pin(async move {
            let connect = async {
                let mut conn = AsyncPgConnection::establish(&url).await?;
                if let Some(sql) = session_sql {
                    use diesel_async::SimpleAsyncConnection;
                    conn.batch_execute(sql)
                        .await
                        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                }
                Ok(conn)
            };
            tokio::time::timeout(connect_timeout, connect)
                .await
                .map_err(|_| diesel::ConnectionError::BadConnection("connect timed out".into()))?
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.expose(),
        manager_config,
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(settings.acquire_timeout()))
        .create_timeout(Some(connect_timeout))
        .recycle_timeout(Some(connect_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| DbSetupError::Pool(e.to_string()))
}

/// A connection from the pool, or 503 when PostgreSQL is unreachable.
pub async fn conn(pool: &PgPool) -> Result<PgConn, AppError> {
    pool.get()
        .await
        .map_err(|e| AppError::unavailable("PostgreSQL", e.to_string()))
}

/// `SELECT 1` through the pool.
pub async fn ping(pool: &PgPool) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    diesel::sql_query("SELECT 1")
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

pub fn pool_sample(pool: &PgPool) -> PoolSample {
    let status = pool.status();
    PoolSample {
        size: status.size,
        available: status.available,
        waiting: status.waiting,
        max_size: status.max_size,
    }
}

/// Splits `postgres://…/name?opts` into the database name and the same URL pointing at the
/// `postgres` maintenance database.
pub fn split_database_url(url: &str) -> Result<(String, String), DbSetupError> {
    let (name, _) = locate_name(url)?;
    Ok((name.to_owned(), url_with_database(url, "postgres")?))
}

/// The same server URL naming database `name` instead.
pub fn url_with_database(url: &str, name: &str) -> Result<String, DbSetupError> {
    let (_, range) = locate_name(url)?;
    Ok(format!(
        "{}{name}{}",
        &url[..range.start],
        &url[range.end..]
    ))
}

/// The database name of a URL and where it sits in the string.
fn locate_name(url: &str) -> Result<(&str, std::ops::Range<usize>), DbSetupError> {
    let base_end = url.find('?').unwrap_or(url.len());
    let after_scheme = url[..base_end]
        .find("://")
        .map(|i| i + 3)
        .ok_or_else(|| DbSetupError::BadUrl("missing scheme".into()))?;
    let start = url[after_scheme..base_end]
        .rfind('/')
        .map(|i| i + after_scheme + 1)
        .ok_or_else(|| DbSetupError::BadUrl("no database name in the URL".into()))?;
    let name = &url[start..base_end];
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(DbSetupError::BadUrl(
            "the database name must be 1-63 characters of [A-Za-z0-9_-]".into(),
        ));
    }
    Ok((name, start..base_end))
}

/// Connects, retrying with exponential backoff (100 ms doubling to 2 s) until `retry_for`.
pub async fn connect_with_retry(
    url: &str,
    retry_for: Duration,
    connect_timeout: Duration,
) -> Result<AsyncPgConnection, DbSetupError> {
    let deadline = Instant::now() + retry_for;
    let mut delay = Duration::from_millis(100);
    loop {
        let cause =
            match tokio::time::timeout(connect_timeout, AsyncPgConnection::establish(url)).await {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "connect timed out".to_owned(),
            };
        if Instant::now() + delay > deadline {
            return Err(DbSetupError::Unreachable {
                secs: retry_for.as_secs(),
                cause,
            });
        }
        tracing::warn!(retry_in_ms = delay.as_millis() as u64, %cause, "PostgreSQL not reachable yet");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Creates the database named in `settings.url` when it does not exist.
pub async fn ensure_database(settings: &DatabaseSettings) -> Result<(), DbSetupError> {
    let (name, admin_url) = split_database_url(settings.url.expose())?;
    let retry_for = Duration::from_secs(settings.startup_retry_secs);
    let mut conn = connect_with_retry(&admin_url, retry_for, settings.connect_timeout()).await?;
    create_database_if_missing(&mut conn, &name, None).await
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// `CREATE DATABASE name [TEMPLATE template]` unless it exists; a concurrent creator is fine.
pub async fn create_database_if_missing(
    admin: &mut AsyncPgConnection,
    name: &str,
    template: Option<&str>,
) -> Result<(), DbSetupError> {
    let found: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(name)
            .get_result(admin)
            .await
            .map_err(|e| DbSetupError::Create {
                name: name.to_owned(),
                cause: e.to_string(),
            })?;
    if found.exists {
        return Ok(());
    }
    let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
    if let Some(t) = template {
        sql.push_str(&format!(" TEMPLATE {}", quote_ident(t)));
    }
    match diesel::sql_query(sql).execute(admin).await {
        Ok(_) => {
            tracing::info!(database = name, "created database");
            Ok(())
        }
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") =>
        {
            Ok(())
        }
        Err(e) => Err(DbSetupError::Create {
            name: name.to_owned(),
            cause: e.to_string(),
        }),
    }
}

/// Double-quotes an identifier for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Applies pending embedded migrations under an advisory lock; returns how many ran.
pub async fn migrate(url: &str) -> Result<usize, DbSetupError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || -> Result<usize, DbSetupError> {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                .map_err(|e| DbSetupError::Migrate(e.to_string()))?;
        let lock = |conn: &mut AsyncConnectionWrapper<AsyncPgConnection>, f: &str| {
            diesel::RunQueryDsl::execute(
                diesel::sql_query(format!("SELECT {f}({MIGRATION_LOCK_KEY})")),
                conn,
            )
            .map_err(|e| DbSetupError::Migrate(e.to_string()))
        };
        lock(&mut conn, "pg_advisory_lock")?;
        let ran = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|v| v.len())
            .map_err(|e| DbSetupError::Migrate(e.to_string()));
        let unlocked = lock(&mut conn, "pg_advisory_unlock");
        let ran = ran?;
        unlocked?;
        Ok(ran)
    })
    .await
    .map_err(|e| DbSetupError::Migrate(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_split_from_the_url() {
        let (name, admin) =
            split_database_url("postgres://u:p@h:5432/airbar?sslmode=disable").unwrap();
        assert_eq!(name, "airbar");
        assert_eq!(admin, "postgres://u:p@h:5432/postgres?sslmode=disable");
        assert_eq!(
            url_with_database("postgres://postgres@h/postgres", "x").unwrap(),
            "postgres://postgres@h/x"
        );
    }

    #[test]
    fn a_url_without_a_usable_database_name_is_rejected() {
        assert!(split_database_url("postgres://h:5432/").is_err());
        assert!(split_database_url("postgres://h/a;drop").is_err());
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
    }
}
