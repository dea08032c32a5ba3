//! Per-test databases cloned from a template that is migrated once per migration set.
//!
//! The template's name carries a hash of `migrations/`, so changing a migration builds a new
//! one. It is built under an advisory lock (several test processes may start together) under a
//! temporary name and renamed when complete, so a half-built template is never used. Databases
//! left by test processes that have exited are dropped when the template is first needed.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use airbar::db::{
    create_database_if_missing, migrate, quote_ident, split_database_url, url_with_database,
};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio::sync::OnceCell;

const TEMPLATE_LOCK_KEY: i64 = 0x0A1B_7E57;
static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The server URL tests use: `DATABASE_URL` when set, else the local default.
pub fn base_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/airbar".to_owned())
}

/// `base_url` pointing at database `name`.
pub fn url_for(name: &str) -> String {
    url_with_database(&base_url(), name).unwrap()
}

fn migrations_hash() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let sub = entry.unwrap().path();
        for file in std::fs::read_dir(&sub).unwrap() {
            files.push(file.unwrap().path());
        }
    }
    files.sort();
    let mut hasher = DefaultHasher::new();
    for f in files {
        f.strip_prefix(&dir).unwrap().hash(&mut hasher);
        std::fs::read(&f).unwrap().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

async fn admin() -> AsyncPgConnection {
    let (_, admin) = split_database_url(&base_url()).unwrap();
    AsyncPgConnection::establish(&admin)
        .await
        .expect("PostgreSQL must be running for the tests")
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    datname: String,
}

fn process_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

async fn drop_quietly(conn: &mut AsyncPgConnection, name: &str) {
    let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {}", quote_ident(name)))
        .execute(conn)
        .await;
}

async fn build_template() -> String {
    let name = format!("airbar_tpl_{}", migrations_hash());
    let mut conn = admin().await;
    diesel::sql_query(format!("SELECT pg_advisory_lock({TEMPLATE_LOCK_KEY})"))
        .execute(&mut conn)
        .await
        .unwrap();

    let existing: Vec<Name> =
        diesel::sql_query("SELECT datname FROM pg_database WHERE datname LIKE 'airbar\\_t%'")
            .load(&mut conn)
            .await
            .unwrap();
    for Name { datname } in &existing {
        let stale_test_db = datname
            .strip_prefix("airbar_test_")
            .and_then(|rest| rest.split('_').next())
            .is_some_and(|pid| !process_alive(pid));
        let stale_template = datname.starts_with("airbar_tpl_") && *datname != name;
        if stale_test_db || stale_template {
            drop_quietly(&mut conn, datname).await;
        }
    }

    if !existing.iter().any(|n| n.datname == name) {
        let building = format!("{name}_building");
        drop_quietly(&mut conn, &building).await;
        create_database_if_missing(&mut conn, &building, None)
            .await
            .unwrap();
        migrate(&url_for(&building)).await.unwrap();
        diesel::sql_query(format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&building),
            quote_ident(&name)
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    diesel::sql_query(format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK_KEY})"))
        .execute(&mut conn)
        .await
        .unwrap();
    name
}

/// A fresh, migrated database for one test; returns its name.
pub async fn fresh_database() -> String {
    let template = TEMPLATE.get_or_init(build_template).await;
    let name = unused_database_name();
    let mut conn = admin().await;
    create_database_if_missing(&mut conn, &name, Some(template))
        .await
        .unwrap();
    name
}

/// A database name no test has used, owned by this process (so it is swept after exit).
pub fn unused_database_name() -> String {
    format!(
        "airbar_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap()
    )
}

/// Whether a database exists.
pub async fn database_exists(name: &str) -> bool {
    let mut conn = admin().await;
    let found: Vec<Name> = diesel::sql_query("SELECT datname FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(name)
        .load(&mut conn)
        .await
        .unwrap();
    !found.is_empty()
}
