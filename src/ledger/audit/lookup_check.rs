//! The audit's check of `ledger_lookup`, the listings' index by caller and by subject
//! ([`crate::ledger::lookup`]): below `indexed` it must hold exactly the keys `(caller, seq)`
//! and `(subject, seq)` of every entry, as the entries themselves say, and no row may name an
//! entry the log does not have.
//!
//! Why: listings by caller or subject read the lookup below `indexed` rather than the log, so a
//! row deleted or changed there hides an entry from them, or lists it under someone else,
//! while the log itself verifies. The listing cannot see what it did not select; the audit
//! must.
//!
//! How, without holding either side in memory: both sides add a keyed hash (SipHash with a
//! key drawn for this audit, which a database administrator cannot know in advance) of each
//! key into a sum per bucket of 16,384 sequence numbers. The sums do not depend on order, so
//! the lookup is read in its own key order (field, value, seq) on another task, while the log
//! is read in sequence order; a bucket whose sums differ is then read again on both sides to
//! name the first entry that differs. A row added, removed or changed changes its bucket's sum
//! but for a chance of 2^-64.
//!
//! The audit names the first bad entry, whichever side it is on (issue 5): when the log's own
//! check stops at an entry, the lookup is still held to the entries before it
//! ([`first_mismatch`]), so a lookup row changed earlier is named before an entry changed
//! later. On a tie the log's finding is named: it says more.
//!
//! On SQLite the lookup is read field by field in chunks the database packs, as the log is
//! (see `PACK_SQLITE` in the audit): two aggregates over the rows, one integer conversion a
//! row, no row through sqlx. (Grouping the rows by value first, to send each value once,
//! measured twice as slow: the grouping cost more than the copies it saved.) On PostgreSQL it
//! is read whole through one binary COPY, in no order ([`scan_copied`]).
//!
//! Rows at or after `indexed` are not read by listings (a crash part way through an indexing
//! round leaves some): they are only checked not to run past the log; once the indexer moves
//! `indexed` past them, the next audit holds them to their entries.

use std::{
    collections::hash_map::{DefaultHasher, RandomState},
    hash::{BuildHasher, Hasher},
};

use sqlx::{Any, Row};

use super::{AuditError, copy};
use crate::{
    ledger::{
        entry::Entry,
        filter::{FilterFields, PACK_SEPARATOR},
        store::{LedgerError, committed_size, to_i64, to_u64},
    },
    store::{Engine, Store},
};

/// Sequence numbers per bucket, as a shift.
const BUCKET_BITS: u32 = 14;
/// Lookup rows per chunk the database packs.
const CHUNK: i64 = 32_768;

/// Sums of keyed hashes of lookup keys, by bucket of sequence numbers, for `[0, indexed)`.
#[derive(Clone)]
pub(super) struct KeyDigest {
    key: RandomState,
    indexed: u64,
    buckets: Vec<u64>,
}

/// The lookup field names, by tag.
const FIELDS: [&str; 2] = ["caller", "subject"];

impl KeyDigest {
    /// A digest of the lookup's part `[0, indexed)` of a log of `size` entries: the part the
    /// log has, however far `indexed` claims (the rest is reported as ahead).
    pub(super) fn new(indexed: u64, size: u64) -> Self {
        let indexed = indexed.min(size);
        let buckets = usize::try_from(indexed.div_ceil(1 << BUCKET_BITS)).unwrap_or(0);
        Self {
            key: RandomState::new(),
            indexed,
            buckets: vec![0; buckets],
        }
    }

    /// Adds the lookup keys of entry `seq`, whose checked fields are `fields`.
    pub(super) fn add_entry(&mut self, seq: u64, fields: &FilterFields<'_>) {
        if seq < self.indexed {
            self.add(0, fields.caller.as_bytes(), seq);
            self.add(1, fields.subject.as_bytes(), seq);
        }
    }

    fn add(&mut self, tag: u8, value: &[u8], seq: u64) {
        let mut h = self.key.build_hasher();
        h.write_u8(tag);
        h.write(value);
        h.write_u64(seq);
        self.add_hash(seq, h.finish());
    }

    fn add_hash(&mut self, seq: u64, hash: u64) {
        if let Some(sum) = self.buckets.get_mut((seq >> BUCKET_BITS) as usize) {
            *sum = sum.wrapping_add(hash);
        }
    }

    /// How many buckets, from the first, hold every entry they will hold once the entries
    /// below `until` are added: the ones whose sums can be compared.
    fn whole_buckets(&self, until: u64) -> usize {
        if until >= self.indexed {
            self.buckets.len()
        } else {
            usize::try_from(until >> BUCKET_BITS).unwrap_or(usize::MAX)
        }
    }

    /// The first of the first `whole` buckets whose sum differs from `other`'s, as its range
    /// of sequence numbers.
    fn first_difference(&self, other: &KeyDigest, whole: usize) -> Option<(u64, u64)> {
        let b = self
            .buckets
            .iter()
            .zip(&other.buckets)
            .take(whole)
            .position(|(a, b)| a != b)? as u64;
        let from = b << BUCKET_BITS;
        Some((from, (from + (1 << BUCKET_BITS)).min(self.indexed)))
    }
}

/// What reading the lookup found.
pub(super) struct Scanned {
    digest: KeyDigest,
    /// The lowest sequence number of a row no entry could have (another field, another type).
    first_bad: Option<u64>,
    /// The highest sequence number of a row at or past the log's size when the audit began.
    beyond: Option<u64>,
}

impl Scanned {
    fn new(digest: KeyDigest) -> Self {
        Self {
            digest,
            first_bad: None,
            beyond: None,
        }
    }

    fn bad(&mut self, seq: u64) {
        self.first_bad = Some(self.first_bad.map_or(seq, |b| b.min(seq)));
    }

    /// Takes one lookup row of field `tag`, a text `value`, for entry `seq` of a log of `size`
    /// entries. `last` keeps the key's hash up to its value, shared by rows of one value (rows
    /// read in key order come in runs of one value).
    fn row(&mut self, tag: u8, value: &[u8], seq: u64, size: u64, last: &mut LastValue) {
        if seq >= size {
            self.beyond = Some(self.beyond.map_or(seq, |b| b.max(seq)));
        }
        if seq < self.digest.indexed {
            if last.hasher.is_none() || last.tag != tag || last.value != value {
                let mut h = self.digest.key.build_hasher();
                h.write_u8(tag);
                h.write(value);
                last.tag = tag;
                last.value.clear();
                last.value.extend_from_slice(value);
                last.hasher = Some(h);
            }
            let mut h = last
                .hasher
                .clone()
                .unwrap_or_else(|| self.digest.key.build_hasher());
            h.write_u64(seq);
            self.digest.add_hash(seq, h.finish());
        }
    }
}

/// The last value a lookup row held, and its key's hash up to it ([`Scanned::row`]).
#[derive(Default)]
struct LastValue {
    tag: u8,
    value: Vec<u8>,
    hasher: Option<DefaultHasher>,
}

/// Reads the whole lookup, chunk by chunk in its key order, into a digest like `digest`
/// (which must be empty); `size` is the log's size when the audit began.
pub(super) async fn scan(
    store: &Store,
    digest: KeyDigest,
    size: u64,
) -> Result<Scanned, LedgerError> {
    if store.engine() == Engine::Postgres {
        return scan_copied(store, digest, size).await;
    }
    let mut scanned = Scanned::new(digest);
    // Rows of another field: listings never read them, but they stand for rows that are gone.
    let other = sqlx::query::<Any>(
        "SELECT min(seq) FROM ledger_lookup \
         WHERE field < 'caller' OR (field > 'caller' AND field < 'subject') OR field > 'subject'",
    )
    .fetch_one(store.pool())
    .await?
    .try_get::<Option<i64>, _>(0)?;
    if let Some(seq) = other {
        scanned.bad(u64::try_from(seq).unwrap_or(0));
    }
    let engine = store.engine();
    for (tag, field) in FIELDS.iter().enumerate() {
        let mut after: Option<(String, i64)> = None;
        loop {
            // The last key of this chunk, found by the database in its own collation: a key
            // compared in Rust's byte order could differ from PostgreSQL's order.
            let bound = match last_key(store, engine, field, after.as_ref()).await? {
                Bound::Key(key) => Some(key),
                Bound::End => None,
                Bound::NotText(seq) => {
                    // A key that cannot be bound back: nothing past it is read.
                    scanned.bad(seq);
                    return Ok(scanned);
                }
            };
            let sql = chunk_sql(engine, after.is_some(), bound.is_some());
            let mut q = sqlx::query::<Any>(&sql).bind(*field);
            for (value, seq) in after.iter().chain(bound.iter()) {
                q = q.bind(value.as_str()).bind(*seq);
            }
            let row = q.fetch_one(store.pool()).await?;
            let seqs = row.try_get::<Option<String>, _>(0)?.unwrap_or_default();
            let values = row.try_get::<Option<Vec<u8>>, _>(1)?.unwrap_or_default();
            parse_chunk(tag as u8, &seqs, &values, &mut scanned, size)?;
            match bound {
                Some(bound) => after = Some(bound),
                None => break,
            }
        }
    }
    Ok(scanned)
}

/// [`scan`] on PostgreSQL: the whole lookup in one binary COPY on a connection of its own, in
/// the heap's order (see [`super::copy`]): the sums do not depend on order, so the database
/// neither sorts nor needs statistics to find chunk boundaries.
async fn scan_copied(store: &Store, digest: KeyDigest, size: u64) -> Result<Scanned, LedgerError> {
    let mut scanned = Scanned::new(digest);
    let mut last = LastValue::default();
    let mut conn = copy::connect(store).await?;
    copy::for_each_row(
        &mut conn,
        "COPY (SELECT field, value, seq FROM ledger_lookup) TO STDOUT (FORMAT binary)",
        3,
        |row| {
            let [field, value, seq] = copy::columns::<3>(row);
            // A negative sequence number names no entry: it stands for a row that is gone,
            // the first entry's for all the audit can tell.
            let seq = copy::int8(seq)
                .map(|s| u64::try_from(s).unwrap_or(0))
                .ok_or_else(|| {
                    LedgerError::Corrupt("ledger_lookup: a row without a sequence number".into())
                })?;
            let tag = FIELDS.iter().position(|f| Some(f.as_bytes()) == field);
            match (tag, value) {
                (Some(tag), Some(value)) => scanned.row(tag as u8, value, seq, size, &mut last),
                // Rows of another field: listings never read them, but they stand for rows
                // that are gone. A NULL value is no key.
                _ => scanned.bad(seq),
            }
            Ok(())
        },
    )
    .await?;
    sqlx::Connection::close(conn).await?;
    Ok(scanned)
}

/// A lookup row's key within its field: value, seq.
type Key = (String, i64);

/// Where a chunk of the lookup ends.
enum Bound {
    /// At this key, included.
    Key(Key),
    /// At the end of the field's rows.
    End,
    /// At a key whose value is not text (SQLite), of this entry.
    NotText(u64),
}

/// The key `CHUNK` rows of `field` after `after` (from the first with `None`).
async fn last_key(
    store: &Store,
    engine: Engine,
    field: &str,
    after: Option<&Key>,
) -> Result<Bound, LedgerError> {
    let text = match engine {
        Engine::Sqlite => "value < X''",
        Engine::Postgres => "TRUE",
    };
    let lower = match after {
        Some(_) => "AND (value, seq) > ($2, $3)",
        None => "",
    };
    let sql = format!(
        "SELECT seq, CAST(CASE WHEN {text} THEN 1 ELSE 0 END AS BIGINT), value \
         FROM ledger_lookup WHERE field = $1 {lower} ORDER BY value, seq LIMIT 1 OFFSET {}",
        CHUNK - 1
    );
    let mut q = sqlx::query::<Any>(&sql).bind(field);
    if let Some((value, seq)) = after {
        q = q.bind(value.as_str()).bind(*seq);
    }
    let Some(row) = q.fetch_optional(store.pool()).await? else {
        return Ok(Bound::End);
    };
    let seq: i64 = row.try_get(0)?;
    let text = row.try_get::<i64, _>(1)? == 1;
    match (text, row.try_get::<String, _>(2)) {
        (true, Ok(value)) => Ok(Bound::Key((value, seq))),
        _ => Ok(Bound::NotText(to_u64(seq, "ledger_lookup seq")?)),
    }
}

/// The statement packing one field's rows after a key (`lower`) up to and including another
/// (`upper`): their sequence numbers, comma-separated, and their values, separated by 0xFF, as
/// two aggregates over the same rows, so the n-th of each belong together. 0xFF is in no
/// UTF-8 text: a value holding one leaves more values than sequence numbers. On SQLite a
/// value that is not text (a BLOB, which `value = $1` no longer matches) shows as `-1 - seq`.
fn chunk_sql(engine: Engine, lower: bool, upper: bool) -> String {
    let mut conditions = vec!["field = $1"];
    if lower {
        conditions.push("(value, seq) > ($2, $3)");
    }
    if upper {
        conditions.push(if lower {
            "(value, seq) <= ($4, $5)"
        } else {
            "(value, seq) <= ($2, $3)"
        });
    }
    let conditions = conditions.join(" AND ");
    match engine {
        Engine::Sqlite => format!(
            "SELECT group_concat(CASE WHEN value < X'' THEN seq ELSE -1 - seq END, ','), \
             CAST(group_concat(value, X'FF') AS BLOB) \
             FROM ledger_lookup WHERE {conditions}"
        ),
        Engine::Postgres => format!(
            "SELECT string_agg(seq::text, ','), \
             string_agg(convert_to(value, 'UTF8'), '\\xff'::bytea) \
             FROM ledger_lookup WHERE {conditions}"
        ),
    }
}

fn parse_chunk(
    tag: u8,
    seqs: &str,
    values: &[u8],
    scanned: &mut Scanned,
    size: u64,
) -> Result<(), LedgerError> {
    let mut values = values.split(|&b| b == PACK_SEPARATOR);
    let mut last = LastValue::default();
    let mut first_seq = None;
    for seq in seqs.split(',').filter(|s| !s.is_empty()) {
        let (seq, text) = match seq.parse::<i64>() {
            Ok(n) if n >= 0 => (n as u64, true),
            Ok(n) => ((-1 - n).max(0) as u64, false),
            Err(_) => {
                return Err(LedgerError::Corrupt(format!(
                    "ledger_lookup: a row's sequence number is {seq:?}"
                )));
            }
        };
        first_seq.get_or_insert(seq);
        let Some(value) = values.next() else {
            // Fewer values than sequence numbers: a NULL value.
            scanned.bad(seq);
            continue;
        };
        if text {
            scanned.row(tag, value, seq, size, &mut last);
        } else {
            if seq >= size {
                scanned.beyond = Some(scanned.beyond.map_or(seq, |b| b.max(seq)));
            }
            scanned.bad(seq);
        }
    }
    // More values than rows: a value held 0xFF.
    if first_seq.is_some() && values.next().is_some() {
        scanned.bad(first_seq.unwrap_or(0));
    }
    Ok(())
}

/// Holds the lookup as read to the entries' digest (`entries`, of a log found whole with
/// `have` entries, whose lookup claimed `indexed`).
pub(super) async fn compare(
    store: &Store,
    entries: &KeyDigest,
    indexed: u64,
    scanned: Scanned,
    have: u64,
) -> Result<(), AuditError> {
    // The log is whole: every bucket holds all its entries, and a bad row anywhere counts.
    if let Some(seq) = first_mismatch(store, entries, Some(&scanned), u64::MAX).await? {
        return Err(AuditError::LookupMismatch { seq });
    }
    if indexed > have {
        return Err(AuditError::LookupAhead {
            seq: have,
            size: have,
        });
    }
    if let Some(seq) = scanned.beyond {
        // Entries appended since the audit began are the lookup's to index: only a row beyond
        // the log as it is now is ahead of it.
        let size = committed_size(store).await?;
        if seq >= size {
            return Err(AuditError::LookupAhead { seq, size });
        }
    }
    Ok(())
}

/// Whether naming the lookup's first bad entry below `until` needs the whole lookup read
/// ([`scan`]): only its bucket sums cover a whole bucket below `until`, and only it checks
/// rows past `indexed`. Otherwise [`first_mismatch`] reads `[0, until)` again without it, so
/// an audit that found the log bad early need not wait for the whole lookup.
pub(super) fn needs_scan(entries: &KeyDigest, until: u64) -> bool {
    until > entries.indexed || until > 1 << BUCKET_BITS
}

/// The first entry below `until` whose lookup rows are not exactly its keys, or named by a row
/// no entry could have; `entries` holds the keys of every entry below `until` (the log was
/// checked that far).
///
/// Why below a bound: the log's own check may stop at an entry, and the audit names the first
/// bad entry, whichever side it is on (issue 5). Buckets the entries' side holds whole are
/// compared by their sums; the one the log's check stopped in is read again up to `until`.
/// Without `scanned` (see [`needs_scan`]) that second read covers all of `[0, until)`.
pub(super) async fn first_mismatch(
    store: &Store,
    entries: &KeyDigest,
    scanned: Option<&Scanned>,
    until: u64,
) -> Result<Option<u64>, LedgerError> {
    let (first_bad, whole) = match scanned {
        Some(scanned) => (
            scanned.first_bad.filter(|&seq| seq < until),
            entries.whole_buckets(until),
        ),
        None => (None, 0),
    };
    let differing = match scanned.and_then(|s| entries.first_difference(&s.digest, whole)) {
        // Sums that differ with equal rows: the lookup changed between the two reads.
        Some((from, to)) => Some(
            first_differing_entry(store, from, to)
                .await?
                .unwrap_or(from),
        ),
        None => {
            let from = (whole as u64) << BUCKET_BITS;
            let to = until.min(entries.indexed);
            if from < to {
                first_differing_entry(store, from, to).await?
            } else {
                None
            }
        }
    };
    Ok(first_bad.into_iter().chain(differing).min())
}

/// The first entry in `[from, until)` whose lookup rows are not exactly its keys (read again on
/// both sides, all in memory: at most a bucket's worth, and only after a difference or a bad
/// log), if any.
async fn first_differing_entry(
    store: &Store,
    from: u64,
    until: u64,
) -> Result<Option<u64>, LedgerError> {
    let typed = match store.engine() {
        Engine::Sqlite => "typeof(field) = 'text' AND typeof(value) = 'text'",
        Engine::Postgres => "TRUE",
    };
    let rows = sqlx::query::<Any>(&format!(
        "SELECT seq, CAST(CASE WHEN {typed} THEN 1 ELSE 0 END AS BIGINT), field, value \
         FROM ledger_lookup WHERE seq >= $1 AND seq < $2"
    ))
    .bind(to_i64(from)?)
    .bind(to_i64(until)?)
    .fetch_all(store.pool())
    .await?;
    let mut found = Vec::with_capacity(rows.len());
    let mut first_unreadable: Option<u64> = None;
    for row in &rows {
        let seq = to_u64(row.try_get::<i64, _>(0)?, "ledger_lookup seq")?;
        let text = row.try_get::<i64, _>(1)? == 1;
        match (
            text,
            row.try_get::<String, _>(2),
            row.try_get::<String, _>(3),
        ) {
            (true, Ok(field), Ok(value)) => found.push((seq, field, value)),
            _ => first_unreadable = Some(first_unreadable.map_or(seq, |f| f.min(seq))),
        }
    }
    found.sort_unstable();
    let entries = sqlx::query::<Any>(
        "SELECT seq, entry FROM ledger_entries WHERE seq >= $1 AND seq < $2 ORDER BY seq",
    )
    .bind(to_i64(from)?)
    .bind(to_i64(until)?)
    .fetch_all(store.pool())
    .await?;
    let mut want = Vec::with_capacity(entries.len() * 2);
    for row in &entries {
        let bytes: Vec<u8> = row.try_get(1)?;
        // Checked by the audit already: these decode.
        let (seq, fields) = Entry::filter_fields(&bytes).map_err(|e| {
            LedgerError::Corrupt(format!("entry cannot be decoded on a second read: {e}"))
        })?;
        want.push((seq, "caller".to_owned(), fields.caller.to_owned()));
        want.push((seq, "subject".to_owned(), fields.subject.to_owned()));
    }
    want.sort_unstable();
    let differing = found
        .iter()
        .zip(&want)
        .find(|(f, w)| f != w)
        .map(|(f, w)| f.0.min(w.0))
        .or_else(|| {
            // One list is a prefix of the other: the first key only the longer one has.
            let n = found.len().min(want.len());
            found.get(n).or(want.get(n)).map(|k| k.0)
        });
    Ok(differing.into_iter().chain(first_unreadable).min())
}
