//! The query path's read connections, kept out of sqlx's pool, on both engines.
//!
//! Why: sqlx 0.8 returns every connection to its pool through a spawned task that first pings
//! it (`PoolConnection::return_to_pool`), and on PostgreSQL the pool also pings it before each
//! acquire (`test_before_acquire`). On SQLite a connection is a thread of its own, so each ping
//! is one more round trip to that thread: per read, a second pair of thread wake-ups beside
//! the read's own and a task. Wake-ups were a quarter of the CPU at concurrency 64
//! (BENCHMARKS.md). On PostgreSQL each ping is a round trip to the server, a wake-up of its
//! backend process: three round trips per read where one is the read (BENCHMARKS.md, the
//! session that moved PostgreSQL's reads here). Here a read checks a connection out of a bag
//! (a channel receive) and puts it back (a send), and nothing else.
//!
//! What the pings were for, done otherwise: a connection whose statement failed is closed, not
//! put back, and its slot opens a new one (through the pool, so with the same `after_connect`
//! settings) at its next checkout. A connection kept from an earlier read may have died while
//! idle (on PostgreSQL, a server restart or an ended backend), which the acquire's ping used to
//! find: a read that fails on a kept connection with an error of the connection itself
//! ([`lost`]) is tried once more on a new connection ([`Reader::settle`]); a read is a
//! `SELECT`, so trying it twice changes nothing. A read cancelled mid-statement puts its
//! connection back: SQLite's connection thread finishes that statement before the next, and
//! sqlx's PostgreSQL connection reads the rest of the cancelled exchange before it sends the
//! next statement (as the pool's ping on release did), so the next reader sees a clean
//! connection; one cancelled while its slot opens a connection puts the empty slot back.
//! Reads only, never a transaction, which the ping's rollback would have had to undo.
//!
//! A read given up at its round trip's deadline ([`super::Deadline`]: the server went silent)
//! is not tried again: unlike a socket a restart broke, which fails at once, a silent server
//! would hold the second try as long as the first, and a fresh connection to it may hang in
//! its connect as well. The read answers UNAVAILABLE at once, its connection is closed (it
//! is mid-exchange, and a silent one would hold the next reader too), and the slot opens a
//! fresh one for the next read.

use std::time::Duration;

use sqlx::{AnyConnection, AnyPool};

use super::StoreError;

/// A bag of connections: `None` slots open a connection when checked out.
pub(super) struct Readers {
    pool: AnyPool,
    put: flume::Sender<Option<AnyConnection>>,
    take: flume::Receiver<Option<AnyConnection>>,
    size: usize,
    /// How long a read waits for a slot.
    wait: Duration,
}

/// A connection checked out of [`Readers`], put back when dropped.
pub(super) struct Reader<'a> {
    conn: Option<AnyConnection>,
    readers: &'a Readers,
    /// The connection was kept from an earlier read (not opened for this one), so it may have
    /// died while idle.
    kept: bool,
}

impl Readers {
    pub(super) fn new(pool: AnyPool, size: usize, wait: Duration) -> Self {
        let (put, take) = flume::bounded(size);
        for _ in 0..size {
            // Cannot fail: the channel has room for every slot and its receiver is alive.
            let _ = put.try_send(None);
        }
        Self {
            pool,
            put,
            take,
            size,
            wait,
        }
    }

    /// How many connections the bag holds, checked out or not.
    pub(super) fn size(&self) -> usize {
        self.size
    }

    pub(super) async fn get(&self) -> Result<Reader<'_>, StoreError> {
        // A closed store reads nothing, like the pool it replaces.
        if self.pool.is_closed() {
            return Err(StoreError::Database(sqlx::Error::PoolClosed));
        }
        // Bounded like the pool's acquire: a store that cannot serve reads answers UNAVAILABLE
        // rather than holding the query.
        let slot = tokio::time::timeout(self.wait, self.take.recv_async())
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))?
            .map_err(|_| StoreError::Database(sqlx::Error::PoolClosed))?;
        // The reader owns the slot from here: dropped at any await below (a query cancelled
        // by its deadline), it puts the slot back, empty or not.
        let kept = slot.is_some();
        let mut reader = Reader {
            conn: slot,
            readers: self,
            kept,
        };
        if reader.conn.is_none() {
            reader.reopen().await?;
        }
        Ok(reader)
    }

    /// Closes the connections in the bag and leaves their slots empty: a read that got past
    /// the closed check meets the closed pool when it tries to reopen one. Connections checked
    /// out now are closed when the store is dropped.
    pub(super) async fn close(&self) {
        for _ in 0..self.size {
            let Ok(slot) = self.take.try_recv() else {
                break;
            };
            if let Some(conn) = slot {
                let _ = sqlx::Connection::close(conn).await;
            }
            let _ = self.put.try_send(None);
        }
    }
}

impl Reader<'_> {
    /// Drops the connection (closing it) and opens a new one in its slot.
    async fn reopen(&mut self) -> Result<(), StoreError> {
        self.conn = None;
        self.kept = false;
        self.conn = Some(self.readers.pool.acquire().await?.detach());
        Ok(())
    }

    pub(super) fn conn(&mut self) -> &mut AnyConnection {
        // Set by `Readers::get` before it returns the reader; taken only by `settle` when it
        // returns an error, which ends the read.
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("a reader holds its connection until dropped"))
    }

    /// What to do with a read's `result`: `Some` when it is the answer, `None` when the read
    /// must run again on the new connection this opened (the kept one was [`lost`], but not
    /// given up at its deadline; at most once, as the new one is not kept). An error closes
    /// the connection: whatever broke the statement may have broken the connection, and a new
    /// one is cheap.
    pub(super) async fn settle<T>(
        &mut self,
        result: Result<T, sqlx::Error>,
    ) -> Result<Option<T>, StoreError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(e) if self.kept && lost(&e) && !super::timed_out(&e) => {
                tracing::info!(error = %e, "store: a kept read connection is lost; reading on a new one");
                self.reopen().await?;
                Ok(None)
            }
            Err(e) => {
                self.conn = None;
                Err(e.into())
            }
        }
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        // Cannot fail: at most `size` slots exist, and the bag has room for all of them.
        let _ = self.readers.put.try_send(self.conn.take());
    }
}

/// Whether `error` says the connection itself is gone (its socket closed or broken, the server
/// ending the session), rather than that the statement failed on a working connection.
pub(crate) fn lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        // SQLSTATE class 08 (connection exception) and 57P (the server shutting down, or an
        // administrator ending the backend; not 57014, a statement cancelled).
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}
