//! Helpers for tests in this and other crates: fresh, isolated stores on either backend.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::{Result, Store, StoreError};

/// A SQLite store in a new temporary directory, deleted when the returned guard drops.
pub fn fresh_sqlite() -> Result<(Arc<dyn Store>, tempfile::TempDir)> {
    fresh_sqlite_cached(Duration::ZERO)
}

/// [`fresh_sqlite`], its cache on for `ttl` (see [`crate::cached`]).
pub fn fresh_sqlite_cached(ttl: Duration) -> Result<(Arc<dyn Store>, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(&dir.path().join("gramkey.db"))?.cached(ttl);
    Ok((Arc::new(store), dir))
}

/// A PostgreSQL store in a new, uniquely named schema of the database at `url`, so tests can
/// run in parallel and leave each other alone.
pub async fn fresh_postgres(url: &str) -> Result<Arc<dyn Store>> {
    fresh_postgres_cached(url, Duration::ZERO).await
}

/// [`fresh_postgres`], its cache on for `ttl`.
pub async fn fresh_postgres_cached(url: &str, ttl: Duration) -> Result<Arc<dyn Store>> {
    let (_, mut nodes) = postgres_nodes(url, &[ttl]).await?;
    nodes
        .pop()
        .ok_or_else(|| StoreError::Backend("no store".into()))
}

/// Several stores on one new schema of the database at `url`, as several nodes (and the CLI)
/// share one database, each with its cache on for its `ttl`; with the schema's name.
pub async fn postgres_nodes(url: &str, ttls: &[Duration]) -> Result<(String, Vec<Arc<dyn Store>>)> {
    let options: PgConnectOptions = url.parse()?;
    let schema = format!("gk_test_{}", unique_suffix());
    let mut admin = PgConnection::connect_with(&options).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let mut nodes: Vec<Arc<dyn Store>> = Vec::new();
    for ttl in ttls {
        let store = PgStore::connect_with(
            options.clone().options([("search_path", schema.as_str())]),
            PgStore::ACQUIRE_TIMEOUT,
        )
        .await?
        .cached(*ttl);
        nodes.push(Arc::new(store));
    }
    Ok((schema, nodes))
}

/// A new, empty database on the server at `url`, for a test that runs `gramkey` processes of
/// its own (they take a URL, not a connection): that database's URL.
pub async fn fresh_postgres_database(url: &str) -> Result<String> {
    let options: PgConnectOptions = url.parse()?;
    let name = format!("gk_test_{}", unique_suffix());
    let mut admin = PgConnection::connect_with(&options).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    // The database is the URL's path: replace it, keep the query.
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base
        .rsplit_once('/')
        .filter(|(head, _)| head.contains("//") && !head.ends_with('/'))
        .map_or(base, |(head, _)| head);
    Ok(match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    })
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    // Only to make names unique across processes; no rule reads it.
    #[allow(clippy::disallowed_methods)]
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{}_{}_{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `GRAMKEY_TEST_POSTGRES_URL`, or `None` after saying loudly that PostgreSQL tests are
/// skipped. Under CI (`CI` set) a missing URL is a failure, not a skip.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("GRAMKEY_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: GRAMKEY_TEST_POSTGRES_URL is not set, and under CI PostgreSQL tests must run"
            );
            eprintln!("!!! SKIPPED {test} on PostgreSQL: set GRAMKEY_TEST_POSTGRES_URL to run it");
            None
        }
    }
}

/// `GRAMKEY_TEST_REDIS_URL`, or `None` after saying loudly that Redis tests are skipped. Under
/// CI a missing URL is a failure.
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("GRAMKEY_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: GRAMKEY_TEST_REDIS_URL is not set, and under CI Redis tests must run"
            );
            eprintln!("!!! SKIPPED {test}: set GRAMKEY_TEST_REDIS_URL to run it");
            None
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}
