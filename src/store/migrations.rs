//! Schema migrations, one set per engine under `migrations/<engine>/`, embedded in the binary
//! so a node needs no files beside its config, and applied at start-up by sqlx's migrator.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::{
    AnyPool, Connection as _, Executor as _,
    error::BoxDynError,
    migrate::{Migration, MigrationSource, MigrationType, Migrator},
};

use super::{Engine, StoreError};

/// (version, description, SQL) per engine. Append only: a released migration never changes
/// (sqlx refuses to start on a checksum mismatch, which is what we want). The checksum covers
/// the comments too, so a comment grown stale stays: 0002 and 0004 say verification never reads
/// the columns beside each entry and `ledger_lookup`; since then `ledger verify` holds both to
/// the entries (`ledger::audit`), and listings re-check what they read (`ledger::store`).
const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "records",
        include_str!("../../migrations/sqlite/0001_records.sql"),
    ),
    (
        2,
        "ledger",
        include_str!("../../migrations/sqlite/0002_ledger.sql"),
    ),
    (
        3,
        "harvest",
        include_str!("../../migrations/sqlite/0003_harvest.sql"),
    ),
    (
        4,
        "ledger lookup",
        include_str!("../../migrations/sqlite/0004_ledger_lookup.sql"),
    ),
    (
        5,
        "withdrawals",
        include_str!("../../migrations/sqlite/0005_withdrawals.sql"),
    ),
];
const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "records",
        include_str!("../../migrations/postgres/0001_records.sql"),
    ),
    (
        2,
        "ledger",
        include_str!("../../migrations/postgres/0002_ledger.sql"),
    ),
    (
        3,
        "harvest",
        include_str!("../../migrations/postgres/0003_harvest.sql"),
    ),
    (
        4,
        "ledger lookup",
        include_str!("../../migrations/postgres/0004_ledger_lookup.sql"),
    ),
    (
        5,
        "withdrawals",
        include_str!("../../migrations/postgres/0005_withdrawals.sql"),
    ),
];

#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> BoxFuture<'s, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

pub async fn run(pool: &AnyPool, engine: Engine) -> Result<(), StoreError> {
    let source = match engine {
        Engine::Sqlite => Embedded(SQLITE),
        Engine::Postgres => Embedded(POSTGRES),
    };
    let migrator = Migrator::new(source).await?;
    match engine {
        Engine::Sqlite => migrator.run(pool).await?,
        Engine::Postgres => {
            // Replicas starting together queue on the migrator's advisory lock for as long as
            // the first one migrates, which may be longer than the pool's `lock_timeout`
            // ([`super::StoreSettings`]): this connection waits without one, and is closed
            // after, not returned to the pool.
            let mut conn = pool.acquire().await?.detach();
            conn.execute("SET lock_timeout = 0").await?;
            let migrated = migrator.run(&mut conn).await;
            let _ = conn.close().await;
            migrated?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Why a stale comment in a released migration is left alone: it is part of the checksum
    /// sqlx holds every existing database to, so editing it would stop every node that applied
    /// the migration from starting.
    #[test]
    fn a_migrations_comments_are_part_of_its_checksum() {
        let migration = |sql: &'static str| {
            Migration::new(
                2,
                Cow::Borrowed("ledger"),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )
        };
        let released = migration(SQLITE[1].2);
        let recommented = migration(Box::leak(
            SQLITE[1]
                .2
                .replacen("are never", "were never", 1)
                .into_boxed_str(),
        ));
        assert_ne!(
            released.sql, recommented.sql,
            "the comment is there to change"
        );
        assert_ne!(released.checksum, recommented.checksum);
    }
}
