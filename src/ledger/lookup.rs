//! The ledger's lookups by caller and by subject, built off the commit path.
//!
//! Why not plain indexes on `ledger_entries`: a group commit of n entries about n subjects
//! dirtied n random pages of a subject index (and one page per active caller of a caller
//! index), and every query waited for them to be written and fsync'd. Here a background task
//! ([`run`]) copies `(caller, seq)` and `(subject, seq)` of committed entries into
//! `ledger_lookup` in large sorted batches, where many entries share each page written, and it
//! does so outside the commits queries wait for. Measured at concurrency 64 on SQLite
//! (BENCHMARKS.md): Query +10–20 %, the ledger's share of its latency from ≈ 0.63 to ≈ 0.53.
//!
//! Entries `[0, indexed)` are in the lookup; a listing (`store::entries`) reads the rest from
//! the log itself, from `indexed` on, so it is complete however far behind the task is (after
//! a restart, or while it backfills an older ledger). Like the other copies beside each entry
//! it only serves listings, and is not covered by the Merkle log: a listing re-checks every
//! entry it reads through it, and the audit holds it to the entries
//! (`audit::lookup_check`), so a row changed or deleted here cannot hide an entry unnoticed.

use std::time::Duration;

use sqlx::{Any, AnyConnection, Row};

use super::store::LedgerError;
use crate::store::{Engine, File, Store};

/// The columns of `ledger_entries` the lookup covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Caller,
    Subject,
}

impl Field {
    pub(super) fn column(self) -> &'static str {
        match self {
            Field::Caller => "caller",
            Field::Subject => "subject",
        }
    }
}

/// Entries indexed at a time: the more, the more of them share each page of the lookup.
const BATCH: u32 = 50_000;
/// Lookup rows per transaction: short, so the ledger's writer never waits long for its turn.
const ROWS_PER_TRANSACTION: usize = 2_000;
/// Rows per INSERT statement (3 parameters each).
const ROWS_PER_STATEMENT: usize = 300;

/// Indexes what was committed since the last call until the lookup has caught up; returns the
/// number of entries indexed.
pub async fn catch_up(store: &Store) -> Result<u64, LedgerError> {
    let mut total = 0;
    loop {
        let n = index_batch(store, BATCH).await?;
        total += n;
        if n < u64::from(BATCH) {
            return Ok(total);
        }
    }
}

/// The background task of a node's ledger: catches up every `every` (never if zero), until
/// the store closes.
pub(super) async fn run(store: Store, every: Duration) {
    if every.is_zero() {
        return;
    }
    // The first round at once: after an upgrade or a restart, listings scan less sooner.
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if store.pool().is_closed() {
            return;
        }
        if let Err(e) = catch_up(&store).await {
            // Listings stay complete (they scan the tail); the next tick tries again.
            tracing::warn!(error = %e, "ledger lookup not updated");
        }
    }
}

/// The next `limit` entries after `indexed` into the lookup, sorted so that each page of it is
/// written once, then `indexed` moved past them; returns how many.
///
/// On SQLite the rows go in in short transactions over disjoint key ranges, each taking the
/// activity file's write turn on its own, so the ledger's writer waits for one of them at most,
/// never for the whole batch. A crash part way leaves rows beyond `indexed`: harmless (a
/// listing reads the lookup only below `indexed`, the log itself from there on) and skipped
/// by the next attempt's `ON CONFLICT`. On PostgreSQL, where writers do not exclude each
/// other, the batch is one transaction, and an advisory lock leaves each round to one replica:
/// the others would only index the same entries again and wait on each other's rows.
async fn index_batch(store: &Store, limit: u32) -> Result<u64, LedgerError> {
    let engine = store.engine();
    if engine == Engine::Postgres {
        // Each step within the store's deadline: stuck on a silent connection, this task would
        // hold a pool connection, and its replica the indexer's lock, for as long as TCP
        // retransmits. Given up, the transaction's connection goes back to the pool, whose
        // bounded release ping closes it.
        let deadline = store.deadline();
        let mut tx = deadline.run(store.pool().begin()).await?;
        let lock = sqlx::query::<Any>("SELECT pg_try_advisory_xact_lock($1)")
            .bind(PG_LOCK)
            .fetch_one(&mut *tx);
        let ours: bool = deadline.run(lock).await?.try_get(0)?;
        if !ours {
            return Ok(0);
        }
        let Some((count, next, keys)) = deadline.run(next_keys(&mut tx, limit)).await? else {
            return Ok(0);
        };
        deadline.run(insert(&mut tx, engine, &keys)).await?;
        deadline.run(advance(&mut tx, next)).await?;
        deadline.run(tx.commit()).await?;
        return Ok(count);
    }
    let mut conn = store.pool().acquire().await?;
    let Some((count, next, keys)) = next_keys(&mut conn, limit).await? else {
        return Ok(0);
    };
    drop(conn);
    for part in keys.chunks(ROWS_PER_TRANSACTION) {
        let _turn = store.write_turn(File::Activity).await;
        let mut tx = store.pool().begin().await?;
        insert(&mut tx, engine, part).await?;
        tx.commit().await?;
    }
    let _turn = store.write_turn(File::Activity).await;
    let mut conn = store.pool().acquire().await?;
    advance(&mut conn, next).await?;
    Ok(count)
}

/// The advisory lock of the PostgreSQL indexer: one value for every replica of a node.
const PG_LOCK: i64 = 0x6c65_6467_6572_6c6b; // "ledgerlk"

/// A lookup row: field, value, seq.
type Key = (&'static str, String, i64);

/// The keys of the next `limit` entries not yet indexed, sorted, with their count and the
/// `indexed` they lead to; `None` when the lookup has caught up.
async fn next_keys(
    conn: &mut AnyConnection,
    limit: u32,
) -> Result<Option<(u64, i64, Vec<Key>)>, LedgerError> {
    let indexed: i64 = sqlx::query::<Any>("SELECT indexed FROM ledger_lookup_head WHERE id = 0")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    let rows = sqlx::query::<Any>(
        "SELECT seq, caller, subject FROM ledger_entries WHERE seq >= $1 ORDER BY seq LIMIT $2",
    )
    .bind(indexed)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    let Some(last) = rows.last() else {
        return Ok(None);
    };
    let next = last.try_get::<i64, _>(0)? + 1;
    let mut keys: Vec<Key> = Vec::with_capacity(rows.len() * 2);
    for row in &rows {
        let seq: i64 = row.try_get(0)?;
        for field in [Field::Caller, Field::Subject] {
            keys.push((field.column(), row.try_get(field.column())?, seq));
        }
    }
    keys.sort_unstable();
    Ok(Some((rows.len() as u64, next, keys)))
}

async fn insert(conn: &mut AnyConnection, engine: Engine, keys: &[Key]) -> Result<(), LedgerError> {
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from("INSERT INTO ledger_lookup (field, value, seq) VALUES ");
        engine.placeholders().tuples(&mut sql, chunk.len(), 3);
        sql.push_str(" ON CONFLICT (field, value, seq) DO NOTHING");
        let mut q = sqlx::query::<Any>(&sql);
        for (field, value, seq) in chunk {
            q = q.bind(*field).bind(value.as_str()).bind(*seq);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Moves `indexed` to `next`, never backwards (another replica may have indexed further).
async fn advance(conn: &mut AnyConnection, next: i64) -> Result<(), LedgerError> {
    sqlx::query::<Any>("UPDATE ledger_lookup_head SET indexed = $1 WHERE id = 0 AND indexed < $1")
        .bind(next)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// How many entries the lookup covers (`[0, indexed)`).
pub async fn indexed(store: &Store) -> Result<u64, LedgerError> {
    let read = sqlx::query::<Any>("SELECT indexed FROM ledger_lookup_head WHERE id = 0")
        .fetch_one(store.pool());
    let n: i64 = store.deadline().run(read).await?.try_get(0)?;
    Ok(u64::try_from(n).unwrap_or_default())
}
