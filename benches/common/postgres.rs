//! Fresh PostgreSQL databases for the benches that can put the node's store on PostgreSQL.
//!
//! `CN_BENCH_DATABASE_URL` names the server (e.g. `postgres://postgres@127.0.0.1:5432/test`);
//! unset, those benches run on SQLite as always. A bench variable rather than `DATABASE_URL`,
//! which the tests and other benches read: setting it for them does not switch these.

use sqlx::{Connection, Executor};

/// The server of `CN_BENCH_DATABASE_URL`, if set.
pub fn server() -> Option<String> {
    std::env::var("CN_BENCH_DATABASE_URL").ok()
}

/// A new, empty database on `server` named after `label`, the time and this process; returns
/// its URL. [`drop`] it when the bench is done with it.
pub async fn fresh(server: &str, label: &str) -> String {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {server}: {e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!("credit_bench_{now}_{}_{label}", std::process::id());
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    let _ = conn.close().await;
    let cut = server
        .rfind('/')
        .unwrap_or_else(|| panic!("{server} has no database path"));
    format!("{}/{name}", &server[..cut])
}

/// Drops the database of `url` (made by [`fresh`] on `server`), closing whatever still holds it.
pub async fn drop(server: &str, url: &str) {
    let name = url.rsplit('/').next().unwrap_or_default();
    assert!(
        name.starts_with("credit_bench_"),
        "not a bench database: {url}"
    );
    let mut conn = sqlx::AnyConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {server}: {e}"));
    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .unwrap_or_else(|e| panic!("drop database {name}: {e}"));
    let _ = conn.close().await;
}
