//! A client-side limit on each database round trip (`store.round_trip_timeout_ms`).
//!
//! Why: a PostgreSQL server that goes silent (a partition, a failover whose old address stops
//! answering without a reset) leaves every open connection waiting until the kernel's TCP
//! retransmissions give up, about a quarter of an hour, and sqlx 0.8 has no keepalive or
//! statement timeout of its own for PostgreSQL. Queries would wait for their request deadline
//! and end CANCELLED, the ledger's writer would hold every query behind its batch, and the pool
//! would spend a whole acquire timeout on each dead idle connection. With a limit per round
//! trip a silent connection is given up after that limit: the statement fails with
//! [`timed_out`] (an I/O error, so [`super::connection_lost`] counts it as lost), the caller
//! answers UNAVAILABLE, and the connection is closed rather than put back, so the next attempt
//! opens a fresh one.
//!
//! SQLite has no limit: its file cannot go silent, and its hot path keeps no timer.

use std::{future::Future, time::Duration};

/// The limit on one round trip, or none (SQLite).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deadline(Option<Duration>);

/// A round trip given up at its deadline, inside the [`sqlx::Error::Io`] that reports it.
#[derive(Debug, thiserror::Error)]
#[error("the database did not answer within {0} ms; its connection is given up")]
pub struct Silent(u64);

impl Deadline {
    /// No limit: what SQLite gets.
    pub const NONE: Deadline = Deadline(None);

    /// A limit of `ms` milliseconds.
    pub fn of_ms(ms: u64) -> Self {
        Deadline(Some(Duration::from_millis(ms)))
    }

    pub fn limit(self) -> Option<Duration> {
        self.0
    }

    /// `round_trip`, failed with [`timed_out`] if it has not finished within the limit.
    /// Dropping it at the deadline leaves its connection mid-exchange: the caller must not use
    /// that connection again, nor put it back in the pool.
    pub async fn run<T, E, F>(self, round_trip: F) -> Result<T, E>
    where
        F: Future<Output = Result<T, E>>,
        E: From<sqlx::Error>,
    {
        match self.0 {
            None => round_trip.await,
            Some(limit) => match tokio::time::timeout(limit, round_trip).await {
                Ok(result) => result,
                Err(_) => Err(silent(limit).into()),
            },
        }
    }
}

fn silent(limit: Duration) -> sqlx::Error {
    let ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        Silent(ms),
    ))
}

/// Whether `error` is a round trip given up at its [`Deadline`] (rather than one the server
/// or the socket ended).
pub fn timed_out(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(e) if e.get_ref().is_some_and(|inner| inner.is::<Silent>()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_round_trip_past_its_deadline_fails_as_a_lost_connection() {
        let never = std::future::pending::<Result<(), sqlx::Error>>();
        let Err(e) = Deadline::of_ms(1).run(never).await else {
            panic!("a round trip that never ends must fail");
        };
        assert!(timed_out(&e), "{e}");
        assert!(crate::store::connection_lost(&e), "{e}");
        assert!(e.to_string().contains("within 1 ms"), "{e}");
        let done = Deadline::NONE.run(async { Ok::<_, sqlx::Error>(7) }).await;
        assert_eq!(done.ok(), Some(7));
        let other = sqlx::Error::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, "x"));
        assert!(!timed_out(&other), "only the deadline's own error");
    }
}
