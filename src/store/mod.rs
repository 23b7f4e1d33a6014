//! Storage through sqlx: SQLite (WAL, a file; the embedded default) or PostgreSQL (production,
//! several replicas of one node), from one code base over sqlx's `Any` driver.
//!
//! Durability is never traded for speed (promise 5): SQLite runs in WAL mode with
//! `synchronous=FULL`, PostgreSQL with `synchronous_commit=on`, set on every connection.
//! Throughput comes from batching (one transaction per ingest file, group commit in the ledger).
//!
//! Queries are written once, with `$1` placeholders, which both engines accept; types stay
//! within what both map the same way (TEXT, BIGINT, BLOB/BYTEA).

mod migrations;
pub mod records;

use std::time::Duration;

use sqlx::{
    AnyPool, Executor,
    any::{AnyPoolOptions, install_default_drivers},
};

/// Which engine a store runs on; some SQL (upserts, locking) differs slightly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    BadUrl(String),
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates. `url` is `sqlite://PATH` or
    /// `postgres://...`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let (engine, url) = if let Some(path) = url.strip_prefix("sqlite://") {
            (Engine::Sqlite, format!("sqlite://{path}?mode=rwc"))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Engine::Postgres, url.to_owned())
        } else {
            return Err(StoreError::BadUrl(url.to_owned()));
        };
        let max = match engine {
            // One writer at a time either way; readers run beside it in WAL mode.
            Engine::Sqlite => 8,
            Engine::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    let settings = match engine {
                        Engine::Sqlite => {
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                             PRAGMA cache_size = -65536;"
                        }
                        Engine::Postgres => "SET synchronous_commit = on",
                    };
                    conn.execute(settings).await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        migrations::run(&pool, engine).await?;
        Ok(Self { pool, engine })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
