//! The ledger's lookups by caller and by subject, built off the commit path.
//!
//! Why not plain indexes on `ledger_entries`: a group commit of n entries about n subjects
//! dirtied n random pages of a subject index (and one page per active caller of a caller
//! index), and every query waited for them to be written and fsync'd. Measured at concurrency
//! 64 on SQLite, dropping the subject index alone took Query from about 7,200 to 9,600 per
//! second (BENCHMARKS.md). Here a background task ([`run`]) copies `(caller, seq)` and
//! `(subject, seq)` of committed entries into `ledger_lookup` in large sorted batches, where
//! many entries share each page written, and it does so outside the commits queries wait for.
//!
//! Entries `[0, indexed)` are in the lookup; a listing ([`seqs_matching`]) adds the rest by
//! scanning the log from `indexed` on, in the same statement, so it is complete however far
//! behind the task is (after a restart, or while it backfills an older ledger). Verification
//! never reads the lookup: like the other copies beside each entry it only serves listings.

use std::time::Duration;

use sqlx::{Any, Row};

use super::store::LedgerError;
use crate::store::{File, Store};

/// The columns of `ledger_entries` the lookup covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Caller,
    Subject,
}

impl Field {
    fn column(self) -> &'static str {
        match self {
            Field::Caller => "caller",
            Field::Subject => "subject",
        }
    }
}

/// Entries read and indexed per transaction: large enough that a batch of random subjects
/// shares pages, small enough that the ledger's writer never waits long for its turn.
const BATCH: u32 = 20_000;
/// Rows per INSERT statement (3 parameters each).
const ROWS_PER_STATEMENT: usize = 300;

/// A condition on `seq` for entries whose `field` equals the parameter `p`: the indexed part
/// from the lookup, the tail from the log itself. `p` is written twice; both engines bind one
/// numbered parameter wherever it appears.
pub(super) fn seqs_matching(field: Field, p: usize) -> String {
    let column = field.column();
    format!(
        "seq IN (SELECT seq FROM ledger_lookup WHERE field = '{column}' AND value = ${p} \
         UNION ALL SELECT seq FROM ledger_entries WHERE seq >= \
         (SELECT indexed FROM ledger_lookup_head WHERE id = 0) AND {column} = ${p})"
    )
}

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
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
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

/// One transaction: the next `limit` entries after `indexed` into the lookup, sorted so that
/// each page of it is written once.
async fn index_batch(store: &Store, limit: u32) -> Result<u64, LedgerError> {
    let _turn = store.write_turn(File::Activity).await;
    let mut tx = store.pool().begin().await?;
    // Lock first: replicas over one PostgreSQL index one at a time, never the same range twice.
    let indexed: i64 = sqlx::query::<Any>(
        "UPDATE ledger_lookup_head SET indexed = indexed WHERE id = 0 RETURNING indexed",
    )
    .fetch_one(&mut *tx)
    .await?
    .try_get(0)?;
    let rows = sqlx::query::<Any>(
        "SELECT seq, caller, subject FROM ledger_entries WHERE seq >= $1 ORDER BY seq LIMIT $2",
    )
    .bind(indexed)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    let Some(last) = rows.last() else {
        return Ok(0);
    };
    let next = last.try_get::<i64, _>(0)? + 1;
    let mut keys: Vec<(&'static str, String, i64)> = Vec::with_capacity(rows.len() * 2);
    for row in &rows {
        let seq: i64 = row.try_get(0)?;
        for field in [Field::Caller, Field::Subject] {
            keys.push((field.column(), row.try_get(field.column())?, seq));
        }
    }
    keys.sort_unstable();
    let engine = store.engine();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from("INSERT INTO ledger_lookup (field, value, seq) VALUES ");
        engine.placeholders().tuples(&mut sql, chunk.len(), 3);
        sql.push_str(" ON CONFLICT (field, value, seq) DO NOTHING");
        let mut q = sqlx::query::<Any>(&sql);
        for (field, value, seq) in chunk {
            q = q.bind(*field).bind(value.as_str()).bind(*seq);
        }
        q.execute(&mut *tx).await?;
    }
    sqlx::query::<Any>("UPDATE ledger_lookup_head SET indexed = $1 WHERE id = 0")
        .bind(next)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows.len() as u64)
}

/// How many entries the lookup covers (`[0, indexed)`).
pub async fn indexed(store: &Store) -> Result<u64, LedgerError> {
    let n: i64 = sqlx::query::<Any>("SELECT indexed FROM ledger_lookup_head WHERE id = 0")
        .fetch_one(store.pool())
        .await?
        .try_get(0)?;
    Ok(u64::try_from(n).unwrap_or_default())
}
