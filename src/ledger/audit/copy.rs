//! The audit's reads on PostgreSQL: the log and the lookup through `COPY (SELECT …) TO STDOUT
//! (FORMAT binary)`, on connections of the audit's own.
//!
//! Why COPY: on SQLite the audit has the database pack a range into one row (see
//! `PACK_SQLITE`), because sqlx's per-row cost was the audit's whole cost. On PostgreSQL the
//! same packing cost the server more than it saved: per entry a chain of `||` on `bytea`, five
//! `convert_to`, a text cast and the aggregates' appends (measured: the packed statement took
//! about twice a plain `SELECT` of the same rows, and the audit ran at a fifth of reading the
//! rows one by one). Binary COPY sends each row as its columns' lengths and bytes exactly as
//! stored: nothing is built on the server, nothing is decoded row by row by sqlx, and the rows
//! are checked as slices of what came over the wire. The lengths are the server's own, so a
//! stored value of an odd length is split exactly where it was stored (and found bad by the
//! verifier), and a NULL (length -1) is told apart from an empty value.
//!
//! The lookup is read the same way, whole and in the heap's order: its digest does not depend
//! on order, so no sort and no chunk boundaries are needed (those sorted on disk until the
//! tables had statistics: 136 ms a chunk before `ANALYZE`, 12 ms after).
//!
//! Why connections of their own: `COPY … TO STDOUT` is PostgreSQL's own sub-protocol, which
//! sqlx's `Any` driver does not speak; and a COPY left unread (an audit that stops at a bad
//! entry) can only be ended by closing its connection, which a pooled connection never is. The
//! connections take the pool's own options (same server, user, TLS).

use futures_util::StreamExt;
use sqlx::{
    Connection,
    postgres::{PgConnectOptions, PgConnection},
};
use tokio::sync::mpsc;

use super::{AuditError, Checks, RANGE, StopOnDrop};
use crate::ledger::{filter::StoredColumns, store::LedgerError, verify::StoredRow};
use crate::store::Store;

/// A connection to the store's server, outside its pool, that plans the audit's reads by the
/// primary key's order.
///
/// Why `enable_sort = off`: each range asks for its rows `ORDER BY seq`, which the primary key
/// yields in order. On tables never analyzed (a node's first minutes, a restored dump) the
/// planner guessed a few rows, took a bitmap scan and sorted the range, on disk past
/// `work_mem` (measured in `psql`, 16,384 rows: 44–73 ms sorted, 28–32 ms by the index). With
/// sorts priced out it walks the index whatever the statistics say; only this connection's
/// plans are affected.
pub(super) async fn connect(store: &Store) -> Result<PgConnection, LedgerError> {
    let options = PgConnectOptions::try_from(&*store.pool().connect_options())?
        .options([("enable_sort", "off")]);
    Ok(PgConnection::connect_with(&options).await?)
}

/// The binary COPY format's signature, the start of its header (PostgreSQL's `COPY` page).
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

fn corrupt(what: &str) -> LedgerError {
    LedgerError::Corrupt(format!("binary COPY from the database: {what}"))
}

/// The length of the COPY header at the start of `bytes`, once all of it has come.
fn header_len(bytes: &[u8]) -> Result<Option<usize>, LedgerError> {
    if bytes.len() < SIGNATURE.len() {
        return Ok(None);
    }
    if &bytes[..SIGNATURE.len()] != SIGNATURE {
        return Err(corrupt("no COPY signature"));
    }
    // The signature, 32 bits of flags, 32 bits of extension length, the extension.
    let Some(extension) = bytes.get(15..19) else {
        return Ok(None);
    };
    let extension = u32::from_be_bytes([extension[0], extension[1], extension[2], extension[3]]);
    let len = usize::try_from(extension)
        .ok()
        .and_then(|e| e.checked_add(19))
        .ok_or_else(|| corrupt("header extension too long"))?;
    Ok((bytes.len() >= len).then_some(len))
}

/// What starts at a place in a COPY stream.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// A whole row, of this many bytes.
    Row(usize),
    /// The trailer: no more rows.
    End,
    /// Not all of it has come yet.
    More,
}

/// What starts at `bytes`: a whole row of `columns` columns (16 bits of column count, then
/// each column as 32 bits of length, -1 for NULL, and its bytes), the trailer (a count of
/// -1), or a part of one.
fn next_row(bytes: &[u8], columns: usize) -> Result<Next, LedgerError> {
    let Some(count) = bytes.get(..2) else {
        return Ok(Next::More);
    };
    match i16::from_be_bytes([count[0], count[1]]) {
        -1 => return Ok(Next::End),
        n if usize::try_from(n).ok() == Some(columns) => {}
        n => {
            return Err(corrupt(&format!(
                "a row of {n} columns, {columns} asked for"
            )));
        }
    }
    let mut at = 2usize;
    for _ in 0..columns {
        let Some(len) = bytes.get(at..at + 4) else {
            return Ok(Next::More);
        };
        at += 4;
        match i32::from_be_bytes([len[0], len[1], len[2], len[3]]) {
            -1 => {}
            n => {
                let n = usize::try_from(n).map_err(|_| corrupt("a negative length"))?;
                at = at
                    .checked_add(n)
                    .ok_or_else(|| corrupt("a length past memory"))?;
            }
        }
    }
    Ok(if at <= bytes.len() {
        Next::Row(at)
    } else {
        Next::More
    })
}

/// The columns of a whole row as [`next_row`] found it (NULL as `None`).
pub(super) fn columns<const N: usize>(row: &[u8]) -> [Option<&[u8]>; N] {
    let mut out = [None; N];
    let mut at = 2usize;
    for column in &mut out {
        let Some(len) = row.get(at..at + 4) else {
            break;
        };
        at += 4;
        if let Ok(n) = usize::try_from(i32::from_be_bytes([len[0], len[1], len[2], len[3]])) {
            *column = row.get(at..at + n);
            at += n;
        }
    }
    out
}

/// A BIGINT column as binary COPY sends it (8 bytes, big-endian); anything else is `None`.
pub(super) fn int8(column: Option<&[u8]>) -> Option<i64> {
    column
        .and_then(|c| <[u8; 8]>::try_from(c).ok())
        .map(i64::from_be_bytes)
}

/// Runs `sql` (a `COPY … TO STDOUT (FORMAT binary)` of `width` columns) on `conn` and hands
/// each whole row to `row`, in the order the server sends them.
pub(super) async fn for_each_row(
    conn: &mut PgConnection,
    sql: &str,
    width: usize,
    mut row: impl FnMut(&[u8]) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    let mut stream = conn.copy_out_raw(sql).await?;
    let mut rows = Rows::new(width);
    while let Some(chunk) = stream.next().await {
        rows.feed(&chunk?, &mut row)?;
    }
    rows.finish()
}

/// Splits a binary COPY stream, fed in the pieces the protocol's messages bring, into whole
/// rows: a row split across pieces is put back together, other rows are read in place.
struct Rows {
    width: usize,
    /// The start of a row (or of the header) whose end has not come yet.
    carry: Vec<u8>,
    header: bool,
    ended: bool,
}

impl Rows {
    fn new(width: usize) -> Self {
        Self {
            width,
            carry: Vec::new(),
            header: true,
            ended: false,
        }
    }

    /// Reads the rows `chunk` completes, handing each to `row`.
    fn feed(
        &mut self,
        chunk: &[u8],
        row: &mut impl FnMut(&[u8]) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError> {
        if self.ended && !chunk.is_empty() {
            return Err(corrupt("data after the trailer"));
        }
        let data: &[u8] = if self.carry.is_empty() {
            chunk
        } else {
            self.carry.extend_from_slice(chunk);
            &self.carry
        };
        let mut at = 0;
        if self.header
            && let Some(len) = header_len(data)?
        {
            at = len;
            self.header = false;
        }
        if !self.header {
            loop {
                match next_row(&data[at..], self.width)? {
                    Next::Row(len) => {
                        row(&data[at..at + len])?;
                        at += len;
                    }
                    Next::End => {
                        self.ended = true;
                        if at + 2 != data.len() {
                            return Err(corrupt("data after the trailer"));
                        }
                        at = data.len();
                        break;
                    }
                    Next::More => break,
                }
            }
        }
        if self.carry.is_empty() {
            self.carry.extend_from_slice(&chunk[at..]);
        } else {
            self.carry.drain(..at);
        }
        Ok(())
    }

    /// The stream is over: it must have ended with its trailer.
    fn finish(self) -> Result<(), LedgerError> {
        if self.ended {
            Ok(())
        } else {
            Err(corrupt("the stream ended before its trailer"))
        }
    }
}

/// The log's columns as [`copy_range`] reads them.
const LOG_COLUMNS: usize = 8;

/// One range of the log as COPY sent it: its rows, whole, in sequence order.
struct Range {
    bytes: Vec<u8>,
}

/// What [`copy_range`] read.
struct Filled {
    rows: u64,
    /// The sequence number after the last row kept, when the budget cut the range short.
    cut_at: Option<u64>,
}

/// Reads the rows with `from <= seq < until` into `buf` (emptied first), in sequence order;
/// only those that fit `budget` bytes (the first whatever its size): the rest is read and
/// dropped, as a COPY cannot be stopped but by closing its connection.
async fn copy_range(
    conn: &mut PgConnection,
    from: u64,
    until: u64,
    budget: usize,
    buf: &mut Vec<u8>,
) -> Result<Filled, LedgerError> {
    buf.clear();
    // Numbers only: nothing but the audit's own counters reaches the SQL as text. (COPY takes
    // no parameters.)
    let sql = format!(
        "COPY (SELECT seq, entry, leaf_hash, caller, subject, purpose, outcome, time_ms \
         FROM ledger_entries WHERE seq >= {from} AND seq < {until} ORDER BY seq) \
         TO STDOUT (FORMAT binary)"
    );
    let mut filled = Filled {
        rows: 0,
        cut_at: None,
    };
    let mut last = None;
    for_each_row(conn, &sql, LOG_COLUMNS, |row| {
        if filled.cut_at.is_some() {
            return Ok(());
        }
        if filled.rows > 0 && buf.len() + row.len() > budget {
            // After the last row kept: the range's query holds no row past `until`.
            filled.cut_at = Some(last.map_or(from, |seq: u64| seq + 1));
            return Ok(());
        }
        let [seq] = columns::<1>(row);
        let seq = sequence_number(seq)?;
        last = Some(seq);
        buf.extend_from_slice(row);
        filled.rows += 1;
        Ok(())
    })
    .await?;
    Ok(filled)
}

/// Reads the log `[0, head_size)` range by range on `conn`, each range into a buffer taken from
/// `free` and sent to `full`; returns when all are sent or the checks stop taking them.
async fn read_ranges(
    mut conn: PgConnection,
    head_size: u64,
    range_bytes: u64,
    mut free: mpsc::Receiver<Vec<u8>>,
    full: mpsc::Sender<Range>,
) -> Result<(), LedgerError> {
    let budget = usize::try_from(range_bytes).unwrap_or(usize::MAX);
    let (mut from, mut count) = (0, RANGE);
    while from < head_size {
        let Some(mut buf) = free.recv().await else {
            break;
        };
        let until = from.saturating_add(count).min(head_size);
        let filled = copy_range(&mut conn, from, until, budget, &mut buf).await?;
        if let Some(per_entry) = (buf.len() as u64).checked_div(filled.rows) {
            // As many entries as fit the budget at this range's size per entry, so that a
            // range of large entries is rarely read twice.
            let per_entry = per_entry.max(1);
            count = (range_bytes / per_entry).clamp(1, RANGE);
        }
        from = filled.cut_at.unwrap_or(until);
        if full.send(Range { bytes: buf }).await.is_err() {
            break;
        }
    }
    conn.close().await?;
    Ok(())
}

/// Reads the log on a connection and task of its own, each range while the one before is
/// checked, and pushes every row through `checks`. Two ranges are in memory at once: the
/// reader fills a buffer only when the checks hand one back.
pub(super) async fn check_log(
    store: &Store,
    head_size: u64,
    range_bytes: u64,
    checks: &mut Checks<'_, '_>,
    progress: &mut impl FnMut(u64),
) -> Result<(), AuditError> {
    if head_size == 0 {
        return Ok(());
    }
    let conn = connect(store).await?;
    let (give_back, free) = mpsc::channel(2);
    for _ in 0..2 {
        // Room for both: the channel holds two.
        let _ = give_back.try_send(Vec::new());
    }
    let (full, mut ranges) = mpsc::channel(1);
    let reader = tokio::spawn(read_ranges(conn, head_size, range_bytes, free, full));
    // An audit that stops early (the log is bad) closes the reader's connection, which is the
    // only way to end a COPY.
    let _stop = StopOnDrop(reader.abort_handle());
    while let Some(range) = ranges.recv().await {
        check_range(&range.bytes, checks, progress)?;
        // The reader may be done already.
        let _ = give_back.send(range.bytes).await;
    }
    reader
        .await
        .map_err(|e| LedgerError::Unavailable(format!("reading the ledger: {e}")))??;
    Ok(())
}

/// A row's `seq` column: a BIGINT that is not negative.
fn sequence_number(column: Option<&[u8]>) -> Result<u64, LedgerError> {
    int8(column)
        .and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| corrupt("a row without a readable sequence number"))
}

/// A text column as binary COPY sends it (its UTF-8 bytes); `None` for NULL or bytes that are
/// not UTF-8, which no field of an entry equals.
fn text(column: Option<&[u8]>) -> Option<&str> {
    column.and_then(|c| std::str::from_utf8(c).ok())
}

/// Checks the rows of one range, in order: the entry by the verifier, its five columns against
/// the fields it lends out.
fn check_range(
    mut rest: &[u8],
    checks: &mut Checks<'_, '_>,
    progress: &mut impl FnMut(u64),
) -> Result<(), AuditError> {
    let bad = |what: String| LedgerError::Corrupt(format!("stored entry row: {what}"));
    while !rest.is_empty() {
        let Next::Row(len) = next_row(rest, LOG_COLUMNS)? else {
            return Err(corrupt("a range ends within a row").into());
        };
        let (row, after) = rest.split_at(len);
        rest = after;
        let [seq, entry, hash, caller, subject, purpose, outcome, time_ms] =
            columns::<LOG_COLUMNS>(row);
        let seq = sequence_number(seq)?;
        let entry = entry.ok_or_else(|| bad(format!("entry {seq} is NULL")))?;
        let hash = hash.ok_or_else(|| bad(format!("entry {seq}'s leaf hash is NULL")))?;
        let row = StoredRow::from_columns(seq, entry, hash);
        checks.entry(
            row,
            |fields| {
                let stored = StoredColumns {
                    caller: text(caller),
                    subject: text(subject),
                    purpose: text(purpose),
                    outcome: text(outcome).and_then(|o| o.parse().ok()),
                    time_ms: int8(time_ms),
                };
                match fields.first_difference(&stored) {
                    Some(column) => Err(AuditError::ColumnMismatch { seq, column }),
                    None => Ok(()),
                }
            },
            progress,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
