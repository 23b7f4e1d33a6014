//! Storage through sqlx: SQLite (WAL; the embedded default: a records file and, beside it, the
//! [`activity`] file that query traffic writes) or PostgreSQL (production, several replicas of
//! one node), from one code base over sqlx's `Any` driver.
//!
//! Durability is never traded for speed (promise 5): SQLite runs in WAL mode with
//! `synchronous=FULL`, PostgreSQL with `synchronous_commit=on`, set on every connection.
//! Throughput comes from batching (one transaction per ingest file, group commit in the ledger).
//!
//! Queries are written once, with `$1` placeholders, which both engines accept; types stay
//! within what both map the same way (TEXT, BIGINT, BLOB/BYTEA). Statements built at run time
//! with many parameters take theirs from [`Placeholders`].

pub mod activity;
mod deadline;
mod grouped_reads;
mod migrations;
mod readers;
pub mod records;
pub mod withdrawals;

use std::{fmt, sync::Arc, time::Duration};

use sqlx::{
    AnyConnection, AnyPool, Executor,
    any::{AnyPoolOptions, install_default_drivers},
};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use self::deadline::{Deadline, timed_out};
pub(crate) use self::readers::lost as connection_lost;
use self::{grouped_reads::GroupedReads, readers::Readers};

/// Read connections of the query path on SQLite, beside the pool's: as many as the cores the
/// reads can use, and a few to spare for reads waiting on the disk.
const SQLITE_READERS: usize = 4;
/// On PostgreSQL, beside the pool's 16: a read also waits for the network and the server's
/// process, so more reads are under way at once than there are cores.
const POSTGRES_READERS: usize = 8;
/// How long a statement waits for a connection before the store answers unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a PostgreSQL session waits on others before it gives up (`[store]` in the config).
///
/// Replicas serialise on row locks (the ledger head, each caller's quota row). A replica that
/// stalls while holding one (paused, partitioned, stuck in a GC) would otherwise hold up every
/// other replica's writer forever: every query of the department waiting, none refused. With
/// `lock_timeout` a writer behind it fails its batch, which answers UNAVAILABLE (fail closed,
/// promise 5) and retries with the next; `idle_in_transaction_session_timeout` has the server
/// end the stalled session, which releases its locks. SQLite has its `busy_timeout` instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreSettings {
    /// `lock_timeout`, in ms; 0 waits forever.
    pub lock_timeout_ms: u64,
    /// `idle_in_transaction_session_timeout`, in ms; 0 never ends a session.
    pub idle_in_transaction_timeout_ms: u64,
    /// The client's own limit on one round trip, in ms ([`Deadline`]); PostgreSQL only. 0 sets
    /// none, which the node's config refuses: a silent server would hold every connection.
    pub round_trip_timeout_ms: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            // Longer than any lock is held in normal work (one group commit, one short
            // lookup transaction), short enough that callers get an answer.
            lock_timeout_ms: 5_000,
            idle_in_transaction_timeout_ms: 60_000,
            // Longer than `lock_timeout`, so a wait for a lock fails as one and is not taken
            // for a lost connection; short enough that a silent database is given up on well
            // within a query's own deadline (`limits.request_timeout_ms`, 30 s).
            round_trip_timeout_ms: 10_000,
        }
    }
}

/// Which engine a store runs on; some SQL (upserts, locking) differs slightly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The engine behind a connection of the `Any` driver.
    pub fn of(conn: &AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Engine::Sqlite
        } else {
            Engine::Postgres
        }
    }

    /// Placeholders for one statement built at run time, numbered from 1.
    pub fn placeholders(self) -> Placeholders {
        Placeholders {
            engine: self,
            next: 1,
        }
    }
}

/// A query on either engine, with its arguments bound so far.
pub type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Bind-parameter placeholders for statements built at run time (multi-row inserts, `IN` lists),
/// handed out in order of appearance.
///
/// PostgreSQL gets numbered ones (`$1`, `$2`, ...). SQLite gets anonymous `?`, bound in order:
/// for a numbered SQLite parameter sqlx asks SQLite for its name to find its argument, and
/// SQLite finds a name by a linear scan, so binding n numbered parameters costs O(n²). At the
/// 3,600 parameters of one ingest statement that was most of ingest's time, and most of the
/// ledger writer's. A statement takes all its parameters from one `Placeholders`: SQLite counts
/// anonymous and numbered parameters together, so the two must not mix.
pub struct Placeholders {
    engine: Engine,
    next: usize,
}

/// One placeholder, written with `{}`.
pub struct Placeholder(Option<usize>);

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("?"),
            Some(n) => write!(f, "${n}"),
        }
    }
}

impl Placeholders {
    /// The engine these placeholders are for, and so the dialect of their statement.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Placeholder {
        let n = self.next;
        self.next += 1;
        Placeholder(match self.engine {
            Engine::Sqlite => None,
            Engine::Postgres => Some(n),
        })
    }

    /// `count` placeholders separated by commas.
    pub fn list(&mut self, sql: &mut String, count: usize) {
        use fmt::Write as _;
        for i in 0..count {
            if i > 0 {
                sql.push(',');
            }
            let _ = write!(sql, "{}", self.next());
        }
    }

    /// `(p,p,...),(p,p,...)`: `rows` tuples of `cols` placeholders, for a multi-row `VALUES`.
    pub fn tuples(&mut self, sql: &mut String, rows: usize, cols: usize) {
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ",(" });
            self.list(sql, cols);
            sql.push(')');
        }
    }
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
    /// A record of an item the catalog given to the ingest does not have (validation lets
    /// none through).
    #[error("a record of item {0:?}, which the catalog does not have")]
    UnknownItem(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    BadUrl(String),
    /// [`Store::open_existing`] on a SQLite file that is not there: a deleted or mistyped
    /// database must not look like a new, empty one. The message names the file.
    #[error("{0}")]
    Missing(String),
}

/// Which SQLite file a write transaction writes: see [`activity`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum File {
    /// Records, subjects, restorations, list designations.
    Records = 0,
    /// The ledger, the quota and suspensions.
    Activity = 1,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    /// One per SQLite file: [`File::Records`], [`File::Activity`].
    write_turns: [Arc<Mutex<()>>; 2],
    /// The connections' session settings, for a transaction that lifts one for a statement to
    /// put it back after.
    settings: StoreSettings,
    /// The query path's read connections.
    readers: Arc<Readers>,
    /// The limit on each round trip of serving (PostgreSQL; none on SQLite).
    deadline: Deadline,
    /// The query path's reads of records, grouped onto those connections.
    grouped_reads: Arc<GroupedReads>,
}

impl Store {
    /// Opens (creating a SQLite file, and its folder, if needed) and migrates, with the
    /// default [`StoreSettings`]. `url` is `sqlite://PATH` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, StoreSettings::default()).await
    }

    /// [`Store::open`] with the settings of the node's config: what a node's first start does.
    pub async fn open_with(url: &str, settings: StoreSettings) -> Result<Self, StoreError> {
        Self::open_mode(url, settings, true).await
    }

    /// [`Store::open_with`] for commands that read an existing node's store (`ledger verify`,
    /// `list`, `export`): a SQLite file that is not there is [`StoreError::Missing`], never
    /// created. Migrations still run on a store that exists, as a node's start would run them.
    pub async fn open_existing(url: &str, settings: StoreSettings) -> Result<Self, StoreError> {
        Self::open_mode(url, settings, false).await
    }

    async fn open_mode(
        url: &str,
        settings: StoreSettings,
        create: bool,
    ) -> Result<Self, StoreError> {
        install_default_drivers();
        let (engine, url, activity) = if let Some(path) = url.strip_prefix("sqlite://") {
            let file = std::path::Path::new(path);
            let activity = activity::path_of(file);
            let activity = activity
                .to_str()
                .map(str::to_owned)
                .ok_or_else(|| StoreError::BadUrl(format!("{url} (the path must be UTF-8)")))?;
            let mode = if create {
                // The README's own example keeps the files in a folder `data/`: a first start
                // makes it rather than fail with SQLite's "unable to open database file".
                if let Some(folder) = file.parent().filter(|f| !f.as_os_str().is_empty()) {
                    std::fs::create_dir_all(folder).map_err(|e| {
                        StoreError::Unavailable(format!(
                            "cannot create the folder {} for {path}: {e}",
                            folder.display()
                        ))
                    })?;
                }
                "rwc"
            } else {
                if !file.try_exists().unwrap_or(true) {
                    return Err(StoreError::Missing(format!("no database at {path}")));
                }
                if !std::path::Path::new(&activity).try_exists().unwrap_or(true)
                    && !holds_its_ledger(path).await?
                {
                    // Attaching it would make an empty ledger that verifies.
                    return Err(StoreError::Missing(format!(
                        "no ledger at {activity} (the activity file of {path})"
                    )));
                }
                // Opened without `c` too: a file removed since the check is not made again.
                "rw"
            };
            (
                Engine::Sqlite,
                format!("sqlite://{path}?mode={mode}"),
                Some(activity),
            )
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Engine::Postgres, url.to_owned(), None)
        } else {
            return Err(StoreError::BadUrl(without_password(url)));
        };
        let max = match engine {
            // One writer at a time either way; readers run beside it in WAL mode.
            Engine::Sqlite => 8,
            Engine::Postgres => 16,
        };
        let deadline = match engine {
            Engine::Sqlite => Deadline::NONE,
            Engine::Postgres if settings.round_trip_timeout_ms == 0 => Deadline::NONE,
            Engine::Postgres => Deadline::of_ms(settings.round_trip_timeout_ms),
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A SQLite connection is a file handle in this process: a ping finds nothing the
            // statement itself would not, and costs a round trip to its thread per acquire.
            // PostgreSQL's ping is the `before_acquire` below, within the deadline.
            .test_before_acquire(false);
        if deadline.limit().is_some() {
            // sqlx's own pings, before an acquire and on release, wait as long as the socket
            // does: a dead idle connection cost a whole acquire timeout, and a connection
            // released as the server went silent held its pool slot for a quarter of an hour
            // (enough of them, and no connection is left to heal with). Pinged here within
            // the deadline, one that does not answer is closed (`Err`: closed without a
            // goodbye) and the pool opens another. On release sqlx still pings after this one,
            // which has just answered; pooled connections are released off the query path
            // (reads and the ledger's writer keep theirs), so the second ping costs a Query
            // nothing.
            options = options
                .before_acquire(bounded_ping(deadline))
                .after_release(bounded_ping(deadline));
        }
        let pool = options
            .after_connect(move |conn, _meta| {
                let activity = activity.clone();
                Box::pin(async move {
                    match activity {
                        Some(path) => {
                            sqlx::query("ATTACH DATABASE $1 AS activity")
                                .bind(path)
                                .execute(&mut *conn)
                                .await?;
                            // Per file: journal mode, durability and cache are per schema.
                            // The records file is also mapped: each connection has its own
                            // page cache, so a subject read for the first time was copied
                            // from the OS into the cache of whichever connection served it
                            // (a `pread` and a page allocation per page: close to a third of
                            // the SQLite threads' time at concurrency 64). Mapped, all
                            // connections read the OS's one copy in place. The price: a disk
                            // read error becomes SIGBUS, which stops the node (disclosing
                            // nothing) where it was an UNAVAILABLE. The activity file is
                            // written at every commit, so it keeps the page cache.
                            conn.execute(
                                "PRAGMA main.journal_mode = WAL; PRAGMA activity.journal_mode = WAL; \
                                 PRAGMA main.synchronous = FULL; PRAGMA activity.synchronous = FULL; \
                                 PRAGMA main.cache_size = -65536; PRAGMA activity.cache_size = -16384; \
                                 PRAGMA main.mmap_size = 1073741824; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                            )
                            .await?;
                        }
                        None => {
                            // Numbers only: nothing of the config reaches the SQL as text.
                            let StoreSettings {
                                lock_timeout_ms,
                                idle_in_transaction_timeout_ms,
                                round_trip_timeout_ms: _,
                            } = settings;
                            conn.execute(
                                format!(
                                    "SET synchronous_commit = on; \
                                     SET lock_timeout = {lock_timeout_ms}; \
                                     SET idle_in_transaction_session_timeout = \
                                     {idle_in_transaction_timeout_ms};"
                                )
                                .as_str(),
                            )
                            .await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| match (engine, url.strip_prefix("sqlite://")) {
                // SQLite's own messages ("unable to open database file") name no file. Only a
                // SQLite path is named: a PostgreSQL URL may carry a password.
                (Engine::Sqlite, Some(path)) => {
                    let path = path.split_once('?').map_or(path, |(path, _)| path);
                    StoreError::Unavailable(format!("{path}: {e}"))
                }
                _ => StoreError::Unavailable(e.to_string()),
            })?;
        migrations::run(&pool, engine).await?;
        if engine == Engine::Sqlite {
            activity::split(&pool).await?;
            activity::drop_replaced_indexes(&pool).await?;
            activity::make_seq_the_rowid(&pool).await?;
            warn_if_built_with_global_mutexes(&pool).await?;
        }
        let readers = match engine {
            Engine::Sqlite => SQLITE_READERS,
            Engine::Postgres => POSTGRES_READERS,
        };
        let readers = Arc::new(Readers::new(pool.clone(), readers, ACQUIRE_TIMEOUT));
        let grouped_reads = Arc::new(GroupedReads::start(readers.clone(), engine, deadline));
        Ok(Self {
            pool,
            engine,
            write_turns: Default::default(),
            settings,
            readers,
            deadline,
            grouped_reads,
        })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The limit to put on each round trip of serving ([`Deadline::run`]). A connection whose
    /// round trip it ends is lost: close it (detached from the pool, or dropped back into it,
    /// whose release ping is bounded too), never use it again.
    pub fn deadline(&self) -> Deadline {
        self.deadline
    }

    /// Waits for this process's turn to write `file`, on SQLite; PostgreSQL has no turn to
    /// take. Held across a write transaction, begun after it and dropped after it ends.
    ///
    /// SQLite lets one transaction write a file at a time, and a writer that finds the lock
    /// taken sleeps in SQLite's busy handler (1 ms, then 2, 5, 10 ...) however soon the lock is
    /// freed. Queued here instead, each writer gets the lock the moment the other releases it.
    /// One turn per file, so an administration write waiting on a CLI ingest's lock on the
    /// records file never holds up the ledger. Other processes on the same file (`ingest`)
    /// still meet the busy handler.
    pub async fn write_turn(&self, file: File) -> Option<OwnedMutexGuard<()>> {
        match self.engine {
            Engine::Sqlite => Some(self.write_turns[file as usize].clone().lock_owned().await),
            Engine::Postgres => None,
        }
    }

    /// A connection for one read of the query path, kept for it (see [`readers`]); other
    /// reads use the pool. Run the read in a loop that ends when [`readers::Reader::settle`]
    /// returns a result: a kept connection found dead (it died while idle, as in a
    /// PostgreSQL restart) is replaced and the read runs once more on the new one, so the
    /// first query after an outage is answered rather than refused.
    async fn reader(&self) -> Result<readers::Reader<'_>, StoreError> {
        self.readers.get().await
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.readers.close().await;
    }
}

/// `url` as an error may show it: any user and password before the host are left out, as
/// the URL of an unsupported engine (`mysql://user:secret@host/db`) may carry one.
fn without_password(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// The pool's ping before an acquire and on release, given up at `deadline`.
fn bounded_ping(
    deadline: Deadline,
) -> impl for<'c> Fn(
    &'c mut AnyConnection,
    sqlx::pool::PoolConnectionMetadata,
) -> futures_util::future::BoxFuture<'c, Result<bool, sqlx::Error>>
+ Send
+ Sync
+ 'static {
    move |conn, _meta| {
        Box::pin(async move {
            deadline.run(sqlx::Connection::ping(conn)).await?;
            Ok(true)
        })
    }
}

/// Whether the records file at `path` still holds the ledger itself: a store from before the
/// activity file, which its first open moves over. Read only, so nothing is created.
async fn holds_its_ledger(path: &str) -> Result<bool, StoreError> {
    use sqlx::Connection as _;
    let mut conn = AnyConnection::connect(&format!("sqlite://{path}?mode=ro"))
        .await
        .map_err(|e| StoreError::Unavailable(format!("{path}: {e}")))?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'ledger_entries'",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(tables > 0)
}

/// A node built outside the checkout misses the SQLite compile options of `.cargo/config.toml`
/// (cargo reads that file only there): it still works, but its connections queue on SQLite's
/// process-wide mutexes under load. Said once at start-up, so the operator knows why.
async fn warn_if_built_with_global_mutexes(pool: &AnyPool) -> Result<(), StoreError> {
    use sqlx::Row as _;
    let options = sqlx::query::<sqlx::Any>("PRAGMA compile_options")
        .fetch_all(pool)
        .await?;
    let shared_cache = options
        .iter()
        .filter_map(|row| row.try_get::<String, _>(0).ok())
        .any(|option| option == "ENABLE_MEMORY_MANAGEMENT");
    if shared_cache {
        tracing::warn!(
            "this build's SQLite shares one page-cache pool between all connections (built \
             without the checkout's .cargo/config.toml): expect lower throughput under load"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unsupported_url_is_named_without_its_password() {
        let Err(e) = Store::open("mysql://reader:s3cret@db.example:3306/credit").await else {
            panic!("mysql is not an engine of the store");
        };
        let shown = e.to_string();
        assert!(
            !shown.contains("s3cret") && !shown.contains("reader"),
            "{shown}"
        );
        assert!(
            shown.contains("mysql://…@db.example:3306/credit"),
            "{shown}"
        );
        let Err(e) = Store::open("data/node.db").await else {
            panic!("a path is not a URL");
        };
        assert!(e.to_string().contains("\"data/node.db\""), "{e}");
    }

    #[test]
    fn placeholders_are_numbered_across_one_statement_on_postgres_and_anonymous_on_sqlite() {
        for (engine, expected) in [
            (
                Engine::Postgres,
                "caller = $1 AND subject IN ($2,$3) VALUES ($4,$5),($6,$7)",
            ),
            (
                Engine::Sqlite,
                "caller = ? AND subject IN (?,?) VALUES (?,?),(?,?)",
            ),
        ] {
            let mut p = engine.placeholders();
            let mut sql = format!("caller = {} AND subject IN (", p.next());
            p.list(&mut sql, 2);
            sql.push_str(") VALUES ");
            p.tuples(&mut sql, 2, 2);
            assert_eq!(sql, expected);
        }
    }
}
