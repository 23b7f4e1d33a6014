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

/// Entries indexed at a time: the more, the more of them share each page of the lookup.
const BATCH: u32 = 50_000;
/// Lookup rows per transaction: short, so the ledger's writer never waits long for its turn.
const ROWS_PER_TRANSACTION: usize = 2_000;
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

/// The next `limit` entries after `indexed` into the lookup, sorted so that each page of it is
/// written once, then `indexed` moved past them. The rows go in in short transactions over
/// disjoint key ranges, each taking the activity file's write turn on its own, so the ledger's
/// writer waits for one of them at most, never for the whole batch. A crash part way leaves
/// rows beyond `indexed`: harmless (a listing asks `seq IN (...)`, so a seq found twice is
/// found once) and skipped by the next attempt's `ON CONFLICT`.
async fn index_batch(store: &Store, limit: u32) -> Result<u64, LedgerError> {
    let indexed = indexed(store).await?;
    let rows = sqlx::query::<Any>(
        "SELECT seq, caller, subject FROM ledger_entries WHERE seq >= $1 ORDER BY seq LIMIT $2",
    )
    .bind(i64::try_from(indexed).unwrap_or(i64::MAX))
    .bind(i64::from(limit))
    .fetch_all(store.pool())
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
    for part in keys.chunks(ROWS_PER_TRANSACTION) {
        let _turn = store.write_turn(File::Activity).await;
        let mut tx = store.pool().begin().await?;
        for chunk in part.chunks(ROWS_PER_STATEMENT) {
            let mut sql = String::from("INSERT INTO ledger_lookup (field, value, seq) VALUES ");
            engine.placeholders().tuples(&mut sql, chunk.len(), 3);
            sql.push_str(" ON CONFLICT (field, value, seq) DO NOTHING");
            let mut q = sqlx::query::<Any>(&sql);
            for (field, value, seq) in chunk {
                q = q.bind(*field).bind(value.as_str()).bind(*seq);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    // Never backwards: another replica may have indexed further meanwhile.
    let _turn = store.write_turn(File::Activity).await;
    sqlx::query::<Any>("UPDATE ledger_lookup_head SET indexed = $1 WHERE id = 0 AND indexed < $1")
        .bind(next)
        .execute(store.pool())
        .await?;
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
