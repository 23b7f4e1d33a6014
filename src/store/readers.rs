//! The query path's read connections on SQLite, kept out of sqlx's pool.
//!
//! Why: sqlx 0.8 returns every connection to its pool through a spawned task that first pings
//! it (`PoolConnection::return_to_pool`), and a SQLite connection is a thread of its own, so
//! the ping is one more round trip to that thread: per read, a second pair of thread wake-ups
//! beside the read's own and a task. Wake-ups were a quarter of the CPU at concurrency 64
//! (BENCHMARKS.md). Here a read checks a connection out of a bag (a channel receive) and puts
//! it back (a send), and nothing else.
//!
//! What the ping was for, done otherwise: a connection whose statement failed is closed, not
//! put back, and its slot opens a new one (through the pool, so with the same `after_connect`
//! settings) at its next checkout. A read cancelled mid-statement puts its connection back:
//! the connection's thread finishes that statement before the next, so the next reader sees
//! a clean connection; one cancelled while its slot opens a connection puts the empty slot
//! back. Reads only, never a transaction, which the ping's rollback would have had to undo.
//! PostgreSQL keeps the pool: there a connection is a socket a server restart can break, which
//! the pool's tests catch before a query meets it.

use std::time::Duration;

use sqlx::{Any, AnyConnection, AnyPool, pool::PoolConnection};

use super::StoreError;

/// A connection for one read: from the bag on SQLite, from the pool on PostgreSQL.
pub(super) enum ReadConn<'a> {
    Kept(Reader<'a>),
    Pooled(PoolConnection<Any>),
}

impl ReadConn<'_> {
    pub(super) fn conn(&mut self) -> &mut AnyConnection {
        match self {
            ReadConn::Kept(reader) => reader.conn(),
            ReadConn::Pooled(conn) => conn,
        }
    }

    /// Passes the read's `result` through; a kept connection whose read failed is closed.
    pub(super) fn check<T>(self, result: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        match self {
            ReadConn::Kept(reader) => reader.check(result),
            ReadConn::Pooled(_) => Ok(result?),
        }
    }
}

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
        let mut reader = Reader {
            conn: slot,
            readers: self,
        };
        if reader.conn.is_none() {
            reader.conn = Some(self.pool.acquire().await?.detach());
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
    fn conn(&mut self) -> &mut AnyConnection {
        // Set by `Readers::get` before it returns the reader; taken only by `check`, which
        // consumes it.
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("a reader holds its connection until dropped"))
    }

    /// Passes `result` through, closing the connection if it is an error: whatever broke the
    /// statement may have broken the connection, and a new one is cheap.
    fn check<T>(mut self, result: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        if result.is_err() {
            self.conn = None;
        }
        Ok(result?)
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        // Cannot fail: at most `size` slots exist, and the bag has room for all of them.
        let _ = self.readers.put.try_send(self.conn.take());
    }
}
