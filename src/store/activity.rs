//! On SQLite, the tables that query traffic writes (the ledger and the anti-harvesting state)
//! live in a second file beside the records, attached to every connection as `activity`.
//!
//! Why: in WAL mode a connection that starts a read after *any* commit to its file throws its
//! whole page cache away (SQLite cannot tell which pages changed). With the ledger in the
//! records' file, every group commit emptied the cache of every reader, so each Query read its
//! B-tree pages back from the OS one `pread` and one `malloc` at a time: under `perf` at
//! concurrency 64 that was about half of the SQLite threads' CPU. Records change only on ingest
//! and administration, so their file's cache now stays warm. A side effect worth having: a CLI
//! ingest into a running node's file no longer blocks the ledger's writer.
//!
//! Nothing writes both files in one transaction (SQLite in WAL mode commits a multi-file
//! transaction atomically per file, not as a set). PostgreSQL has no such cache: one database.
//!
//! Table names stay unqualified in queries: SQLite finds a table in whichever attached file
//! holds it. DDL is the exception: a later migration that creates an index or trigger on one of
//! [`TABLES`] must name the schema (`CREATE INDEX activity.x ON ledger_entries ...`).

use std::path::{Path, PathBuf};

use sqlx::{Any, AnyConnection, AnyPool, Row};

use super::StoreError;

/// The schema name the activity file is attached under.
pub const SCHEMA: &str = "activity";

/// The tables that live in the activity file, in the order they are moved.
const TABLES: &[&str] = &[
    "ledger_entries",
    "ledger_nodes",
    "ledger_sths",
    "ledger_head",
    "ledger_lookup",
    "ledger_lookup_head",
    "quota_subjects",
    "quota_usage",
    "suspensions",
];

/// The activity file of the records file at `path`: `node.db` → `node.activity.db`.
pub fn path_of(path: &Path) -> PathBuf {
    path.with_extension("activity.db")
}

/// Moves [`TABLES`] from the records file into the activity file, once. Migrations create them
/// in the records file (unqualified `CREATE TABLE` always means `main`), so a new store moves
/// empty tables and a store from before the split moves its rows.
///
/// Two transactions, each writing one file, so a crash cannot lose rows: the first creates the
/// tables in the activity file (with the DDL SQLite kept for them, so the schema has one
/// source) and copies the rows; the second drops the originals. After a crash between the two
/// the next start copies again (rows already there are kept) and then drops.
pub async fn split(pool: &AnyPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    if in_main(&mut conn).await?.is_empty() {
        return Ok(());
    }
    // Another process may be splitting the same store at this moment (a node and a CLI command
    // started together after an upgrade). A deferred transaction would read first and then
    // fail to write (SQLite refuses to turn a snapshot another writer has moved past into a
    // write), so the write lock is taken first, waiting for the other's move, and what is left
    // to move is read under it.
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
    let pending = in_main(&mut tx).await?;
    if pending.is_empty() {
        return Ok(tx.commit().await?);
    }
    for &table in &pending {
        let exists = sqlx::query::<Any>(&format!(
            "SELECT COUNT(*) FROM {SCHEMA}.sqlite_master WHERE type = 'table' AND name = '{table}'"
        ))
        .fetch_one(&mut *tx)
        .await?
        .try_get::<i64, _>(0)?
            > 0;
        if !exists {
            // Tables first, then their indexes; automatic indexes (sql NULL) come with the table.
            let ddl = sqlx::query::<Any>(
                "SELECT type, sql FROM main.sqlite_master WHERE tbl_name = $1 AND sql IS NOT NULL \
                 ORDER BY type = 'index'",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await?;
            for row in ddl {
                let kind: String = row.try_get(0)?;
                let sql: String = row.try_get(1)?;
                let qualified = qualify(&sql).ok_or_else(|| {
                    StoreError::Corrupt(format!("unexpected schema of {table} ({kind}): {sql}"))
                })?;
                sqlx::query::<Any>(&qualified).execute(&mut *tx).await?;
            }
        }
        sqlx::query::<Any>(&format!(
            "INSERT OR IGNORE INTO {SCHEMA}.{table} SELECT * FROM main.{table}"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;

    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
    for &table in &pending {
        sqlx::query::<Any>(&format!("DROP TABLE IF EXISTS main.{table}"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    tracing::info!(
        tables = pending.len(),
        "moved the ledger and quota tables into the activity file"
    );
    Ok(())
}

/// Which of [`TABLES`] are still in the records file.
async fn in_main(conn: &mut AnyConnection) -> Result<Vec<&'static str>, StoreError> {
    let mut found = Vec::new();
    for &table in TABLES {
        let row = sqlx::query::<Any>(
            "SELECT COUNT(*) FROM main.sqlite_master WHERE type = 'table' AND name = $1",
        )
        .bind(table)
        .fetch_one(&mut *conn)
        .await?;
        if row.try_get::<i64, _>(0)? > 0 {
            found.push(table);
        }
    }
    Ok(found)
}

/// Drops the ledger's indexes by caller and subject, which `ledger_lookup` replaced (migration
/// 4), wherever they are: after [`split`], so each drop writes one file (a migration dropping
/// them from an already split store would write both in one transaction). Idempotent.
pub async fn drop_replaced_indexes(pool: &AnyPool) -> Result<(), StoreError> {
    for index in ["ledger_entries_by_caller", "ledger_entries_by_subject"] {
        sqlx::query::<Any>(&format!("DROP INDEX IF EXISTS {index}"))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Makes `ledger_entries.seq` the table's rowid, once. Migration 2 declares it `BIGINT PRIMARY
/// KEY`, which on SQLite is not an alias of the rowid (only `INTEGER PRIMARY KEY` is): the table
/// then keeps a separate index from `seq` to the rowid, and every group commit writes both B-trees
/// (measured: about a fifth more WAL pages fsync'd per batch of 64 entries). Rebuilt here, after
/// [`split`] and [`drop_replaced_indexes`], because only now is it known which file holds the
/// table, and so the rebuild writes one file in one transaction: a crash leaves the old table or
/// the new one, never half of each. The rows are copied byte for byte in `seq` order, so the log
/// and every proof over it are unchanged. On a large ledger the copy takes a while, once.
///
/// Several processes may start on the same store at once: the write lock is taken first and the
/// need re-checked under it, as in [`split`].
pub async fn make_seq_the_rowid(pool: &AnyPool) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    if !seq_has_own_index(&mut conn).await? {
        return Ok(());
    }
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
    if !seq_has_own_index(&mut tx).await? {
        return Ok(tx.commit().await?);
    }
    let entries = sqlx::query::<Any>(&format!("SELECT COUNT(*) FROM {SCHEMA}.ledger_entries"))
        .fetch_one(&mut *tx)
        .await?
        .try_get::<i64, _>(0)?;
    tracing::info!(
        entries,
        "rebuilding the ledger's entry table once, keyed by its sequence number"
    );
    // The table's other indexes, re-created on the new table from the statements SQLite kept.
    let indexes = sqlx::query::<Any>(&format!(
        "SELECT sql FROM {SCHEMA}.sqlite_master WHERE type = 'index' \
         AND tbl_name = 'ledger_entries' AND sql IS NOT NULL"
    ))
    .fetch_all(&mut *tx)
    .await?;
    let mut statements = vec![
        format!(
            "CREATE TABLE {SCHEMA}.ledger_entries_by_seq (\
                seq INTEGER PRIMARY KEY, entry BLOB NOT NULL, leaf_hash BLOB NOT NULL, \
                time_ms BIGINT NOT NULL, caller TEXT NOT NULL, subject TEXT NOT NULL, \
                purpose TEXT NOT NULL, outcome TEXT NOT NULL)"
        ),
        format!(
            "INSERT INTO {SCHEMA}.ledger_entries_by_seq \
             (seq, entry, leaf_hash, time_ms, caller, subject, purpose, outcome) \
             SELECT seq, entry, leaf_hash, time_ms, caller, subject, purpose, outcome \
             FROM {SCHEMA}.ledger_entries ORDER BY seq"
        ),
        format!("DROP TABLE {SCHEMA}.ledger_entries"),
        format!("ALTER TABLE {SCHEMA}.ledger_entries_by_seq RENAME TO ledger_entries"),
    ];
    for row in indexes {
        let sql: String = row.try_get(0)?;
        statements.push(qualify(&sql).ok_or_else(|| {
            StoreError::Corrupt(format!("unexpected index on ledger_entries: {sql}"))
        })?);
    }
    for sql in &statements {
        sqlx::query::<Any>(sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    tracing::info!(
        entries,
        "the ledger's entry table is keyed by its sequence number"
    );
    Ok(())
}

/// Whether `ledger_entries` keeps an index of its own for `seq` (declared other than as an
/// alias of the rowid).
async fn seq_has_own_index(conn: &mut AnyConnection) -> Result<bool, StoreError> {
    let row = sqlx::query::<Any>(&format!(
        "SELECT COUNT(*) FROM {SCHEMA}.sqlite_master WHERE type = 'index' \
         AND tbl_name = 'ledger_entries' AND name LIKE 'sqlite_autoindex_%'"
    ))
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}

/// `CREATE TABLE t ...` → `CREATE TABLE activity.t ...`, and the same for indexes. SQLite stores
/// the original statement with its leading keywords normalised, so the prefix is exact.
fn qualify(sql: &str) -> Option<String> {
    ["CREATE TABLE ", "CREATE INDEX ", "CREATE UNIQUE INDEX "]
        .iter()
        .find_map(|prefix| {
            sql.strip_prefix(prefix)
                .map(|rest| format!("{prefix}{SCHEMA}.{rest}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_file_sits_beside_the_records_file() {
        assert_eq!(
            path_of(Path::new("/var/lib/node/node.db")),
            Path::new("/var/lib/node/node.activity.db")
        );
        assert_eq!(path_of(Path::new("data")), Path::new("data.activity.db"));
    }

    #[test]
    fn only_known_statements_are_qualified() {
        assert_eq!(
            qualify("CREATE TABLE ledger_head (id BIGINT)").as_deref(),
            Some("CREATE TABLE activity.ledger_head (id BIGINT)")
        );
        assert_eq!(
            qualify("CREATE INDEX by_caller ON ledger_entries (caller, seq)").as_deref(),
            Some("CREATE INDEX activity.by_caller ON ledger_entries (caller, seq)")
        );
        assert_eq!(
            qualify("CREATE TRIGGER t AFTER INSERT ON x BEGIN END"),
            None
        );
    }
}
