//! The query path's reads of subjects' records, grouped: reads that arrive while every reader
//! is busy go to the database together, as one statement.
//!
//! Why: a read of one subject's few rows costs far more in getting to the database than in the
//! rows. On SQLite each statement wakes the connection's own thread and the rows wake the
//! query's task back; on PostgreSQL each statement is a round trip that wakes a backend
//! process. Measured at concurrency 64 on SQLite, the read was more than half of a Query's CPU
//! and most of its context switches (BENCHMARKS.md). Like the ledger's group commit, grouping
//! costs nothing at low load (a read alone goes out alone, at once) and takes one trip for many
//! under load, with no timer and no waiting for company.
//!
//! The statement is `subject_id IN (...) AND item_id IN (...)` over the index on both, with the
//! union of the items asked, and each query takes only its own subject's rows of its own items.
//! The lists' lengths are rounded up to powers of two (the last value repeated), so a reader's
//! connection prepares a few dozen statements at most, not one per combination of lengths.
//!
//! Failure stays per read: a row that does not parse fails only the query of its subject; a
//! statement that fails fails every query of the group with UNAVAILABLE (through the
//! [`Readers`]' usual handling of lost connections). A query cancelled while queued is dropped
//! from its group before the statement is built.

use std::{collections::HashMap, sync::Arc};

use sqlx::{Any, Row, any::AnyRow};
use tokio::sync::oneshot;

use super::{Deadline, Engine, StoreError, readers::Readers, records};
use crate::records::Record;

/// Subjects per statement at most: 64 × 2 placeholders with the items stays far below both
/// engines' parameter limits, and a group that large is as many queries as a node answers in
/// about a millisecond at full load.
const MOST: usize = 64;

/// Where the query path queues its reads; the reading tasks end when it is dropped.
pub(super) struct GroupedReads {
    asks: flume::Sender<Ask>,
}

/// One query's read, waiting for its group.
struct Ask {
    subject: String,
    items: Vec<String>,
    reply: oneshot::Sender<Result<Vec<Record>, StoreError>>,
}

impl GroupedReads {
    /// Starts one reading task per read connection of `readers`: each takes every read queued
    /// when it is free, so reads group exactly when all of them are busy.
    pub(super) fn start(readers: Arc<Readers>, engine: Engine, deadline: Deadline) -> Self {
        let (asks, queue) = flume::unbounded();
        for _ in 0..readers.size() {
            tokio::spawn(read_groups(
                queue.clone(),
                readers.clone(),
                engine,
                deadline,
            ));
        }
        Self { asks }
    }

    /// The records of `subject` for `items` (not empty), in item and decision-date order.
    pub(super) async fn records_of(
        &self,
        subject: &str,
        items: &[&str],
    ) -> Result<Vec<Record>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let ask = Ask {
            subject: subject.to_owned(),
            items: items.iter().map(|&i| i.to_owned()).collect(),
            reply,
        };
        let stopped = || StoreError::Unavailable("the store's readers have stopped".into());
        self.asks.send(ask).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn read_groups(
    queue: flume::Receiver<Ask>,
    readers: Arc<Readers>,
    engine: Engine,
    deadline: Deadline,
) {
    let mut group = Vec::with_capacity(MOST);
    while let Ok(first) = queue.recv_async().await {
        group.push(first);
        while group.len() < MOST {
            match queue.try_recv() {
                Ok(ask) => group.push(ask),
                Err(_) => break,
            }
        }
        // Queries cancelled while they waited (their deadline passed) need no read.
        group.retain(|ask| !ask.reply.is_closed());
        if !group.is_empty() {
            read_group(&readers, engine, deadline, &mut group).await;
        }
        group.clear();
    }
}

/// Reads the records of every query in `group` with one statement and answers each.
async fn read_group(readers: &Readers, engine: Engine, deadline: Deadline, group: &mut Vec<Ask>) {
    let subjects = padded(group.iter().map(|a| a.subject.as_str()));
    let items = padded(
        group
            .iter()
            .flat_map(|a| a.items.iter().map(String::as_str)),
    );
    let mut p = engine.placeholders();
    let mut sql = format!(
        "SELECT {} FROM records WHERE subject_id IN (",
        records::COLUMNS
    );
    p.list(&mut sql, subjects.len());
    sql.push_str(") AND item_id IN (");
    p.list(&mut sql, items.len());
    sql.push_str(") ORDER BY subject_id, item_id, decision_date");
    let query = || {
        let mut q = sqlx::query::<Any>(&sql);
        for value in subjects.iter().chain(&items) {
            q = q.bind(*value);
        }
        q
    };
    let rows = match read(readers, deadline, query).await {
        Ok(rows) => rows,
        Err(e) => {
            // One error for the group, worded once; each query answers UNAVAILABLE from it.
            let message = e.to_string();
            for ask in group.drain(..) {
                let _ = ask
                    .reply
                    .send(Err(StoreError::Unavailable(message.clone())));
            }
            return;
        }
    };
    // Each subject's rows, in the statement's order (item, then decision date), with the item
    // read apart so that a row that does not parse still fails only the queries that asked
    // for its item.
    type Parsed = (String, Result<Record, String>);
    let mut of_subject: HashMap<String, Vec<Parsed>> = HashMap::new();
    for row in &rows {
        let (Ok(subject), Ok(item)) = (
            row.try_get::<String, _>("subject_id"),
            row.try_get::<String, _>("item_id"),
        ) else {
            // Not text: no query's bound text equals it, so the statement did not select it.
            continue;
        };
        let record = records::record_from_row(row).map_err(|e| e.to_string());
        of_subject.entry(subject).or_default().push((item, record));
    }
    // Sorted by subject, a subject's last query takes its rows and any before it a copy.
    group.sort_unstable_by(|a, b| a.subject.cmp(&b.subject));
    let mut asks = group.drain(..).peekable();
    while let Some(ask) = asks.next() {
        let last = asks.peek().is_none_or(|next| next.subject != ask.subject);
        let rows = if last {
            of_subject.remove(&ask.subject).unwrap_or_default()
        } else {
            of_subject.get(&ask.subject).cloned().unwrap_or_default()
        };
        let answer = rows
            .into_iter()
            .filter(|(item, _)| ask.items.contains(item))
            .map(|(_, record)| record.map_err(StoreError::Corrupt))
            .collect();
        let _ = ask.reply.send(answer);
    }
}

/// Runs `query` on a reader within `deadline`, once more on a new connection if the kept one
/// was found dead.
async fn read<'q>(
    readers: &Readers,
    deadline: Deadline,
    query: impl Fn() -> super::AnyQuery<'q>,
) -> Result<Vec<AnyRow>, StoreError> {
    let mut reader = readers.get().await?;
    loop {
        let rows = deadline.run(query().fetch_all(reader.conn())).await;
        if let Some(rows) = reader.settle(rows).await? {
            return Ok(rows);
        }
    }
}

/// The distinct `values`, sorted, their number rounded up to a power of two by repeating the
/// last: `IN` ignores the repeats, and the statement's text takes one of a few shapes.
fn padded<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut list: Vec<&str> = values.collect();
    list.sort_unstable();
    list.dedup();
    if let Some(&last) = list.last() {
        list.resize(list.len().next_power_of_two(), last);
    }
    list
}

#[cfg(test)]
mod tests {
    use super::padded;

    #[test]
    fn lists_are_distinct_sorted_and_a_power_of_two_long() {
        assert_eq!(padded(["b", "a", "b"].into_iter()), ["a", "b"]);
        assert_eq!(padded(["c", "a", "b"].into_iter()), ["a", "b", "c", "c"]);
        assert_eq!(padded(["x"].into_iter()), ["x"]);
        assert!(padded([].into_iter()).is_empty());
    }
}
