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
    store::{AnyQuery, Engine, Store},
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
    for (tag, field) in FIELDS.iter().enumerate() {
        let mut after: Option<Key> = None;
        loop {
            let sql = chunk_sql(after.as_ref().map(|key| key.text));
            let q = sqlx::query::<Any>(&sql).bind(*field);
            let row = bind_after(q, after.as_ref())
                .fetch_one(store.pool())
                .await?;
            let seqs = row.try_get::<Option<String>, _>(0)?.unwrap_or_default();
            let values = row.try_get::<Option<Vec<u8>>, _>(1)?.unwrap_or_default();
            let chunk = parse_chunk(tag as u8, &seqs, &values, &mut scanned, size)?;
            if chunk.rows < CHUNK {
                break;
            }
            // A key read off a pack of odd rows (a NULL and a 0xFF cancelling out) may not be
            // past the one before: the database's own is read then, so every chunk moves on.
            let next = chunk
                .last
                .filter(|key| after.as_ref().is_none_or(|a| key.order() > a.order()));
            after = Some(match next {
                Some(key) => key,
                None => nth_key(store, field, after.as_ref(), chunk.rows - 1).await?,
            });
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

/// A lookup row's key within its field, to read on from: its value's bytes, whether it is
/// text (or else a BLOB, sorted after all text), and its seq.
struct Key {
    value: Vec<u8>,
    text: bool,
    seq: i64,
}

impl Key {
    /// The key's place in the primary key's order (text before BLOB, then bytes, then seq).
    fn order(&self) -> (bool, &[u8], i64) {
        (!self.text, &self.value, self.seq)
    }
}

/// The key of the row `n` rows after `after` in `field` (from the first with `None`), found
/// by the database: for a chunk whose last value cannot be told from its pack (a value
/// holding 0xFF, or a NULL).
async fn nth_key(
    store: &Store,
    field: &str,
    after: Option<&Key>,
    n: i64,
) -> Result<Key, LedgerError> {
    let sql = format!(
        "SELECT seq, CAST(CASE WHEN value < X'' THEN 1 ELSE 0 END AS BIGINT), \
         CAST(value AS BLOB) FROM ledger_lookup WHERE field = $1 {} \
         ORDER BY value, seq LIMIT 1 OFFSET {n}",
        after.map_or("", |key| lower_bound(key.text))
    );
    let q = sqlx::query::<Any>(&sql).bind(field);
    let row = bind_after(q, after).fetch_one(store.pool()).await?;
    Ok(Key {
        seq: row.try_get(0)?,
        text: row.try_get::<i64, _>(1)? == 1,
        value: row.try_get::<Option<Vec<u8>>, _>(2)?.unwrap_or_default(),
    })
}

/// Binds `after`, if any, as the key of [`lower_bound`].
fn bind_after<'q>(q: AnyQuery<'q>, after: Option<&Key>) -> AnyQuery<'q> {
    match after {
        Some(key) => q.bind(key.value.clone()).bind(key.seq),
        None => q,
    }
}

/// The condition for rows after a key bound as `$2` (its value's bytes) and `$3` (its seq): the
/// bytes are cast back to text for a text key, so that it compares in the index's order.
fn lower_bound(text: bool) -> &'static str {
    if text {
        "AND (value, seq) > (CAST($2 AS TEXT), $3)"
    } else {
        "AND (value, seq) > ($2, $3)"
    }
}

/// The statement packing the next `CHUNK` rows of one field in key order, after a key whose
/// value is text or not (`after`; from the first row with `None`): their sequence numbers,
/// comma-separated, and their values, separated by 0xFF, as two aggregates over the same
/// rows, so the n-th of each belong together. 0xFF is in no UTF-8 text: a value holding one
/// leaves more values than sequence numbers. On SQLite a value that is not text (a BLOB,
/// which `value = $1` no longer matches) shows as `-1 - seq`.
///
/// Why `LIMIT` on an ordered subquery: the chunk's last key, which the next chunk starts
/// after, is then its last row, read off the pack. Finding each chunk's end first (`ORDER BY
/// value, seq LIMIT 1 OFFSET 32767`) walked every row of the lookup twice. The subquery walks
/// the primary key in its order (no sort) and is not flattened into the aggregate.
fn chunk_sql(after: Option<bool>) -> String {
    format!(
        "SELECT group_concat(CASE WHEN value < X'' THEN seq ELSE -1 - seq END, ','), \
         CAST(group_concat(value, X'FF') AS BLOB) \
         FROM (SELECT value, seq FROM ledger_lookup WHERE field = $1 {} \
         ORDER BY value, seq LIMIT {CHUNK})",
        after.map_or("", lower_bound)
    )
}

/// What [`parse_chunk`] found besides the rows' keys.
struct Chunk {
    rows: i64,
    /// The last row's key, when the pack tells it exactly (as many values as rows).
    last: Option<Key>,
}

fn parse_chunk(
    tag: u8,
    seqs: &str,
    values: &[u8],
    scanned: &mut Scanned,
    size: u64,
) -> Result<Chunk, LedgerError> {
    let mut values = values.split(|&b| b == PACK_SEPARATOR);
    let mut last = LastValue::default();
    let mut first_seq = None;
    let mut rows = 0;
    let mut last_key = None;
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
        rows += 1;
        first_seq.get_or_insert(seq);
        let Some(value) = values.next() else {
            // Fewer values than sequence numbers: a NULL value.
            scanned.bad(seq);
            last_key = None;
            continue;
        };
        last_key = Some((value, text, seq));
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
    let whole = values.next().is_none();
    if first_seq.is_some() && !whole {
        scanned.bad(first_seq.unwrap_or(0));
    }
    // A seq past i64 cannot be bound back: the database's key is read instead.
    let last = last_key.filter(|_| whole).and_then(|(value, text, seq)| {
        Some(Key {
            value: value.to_vec(),
            text,
            seq: i64::try_from(seq).ok()?,
        })
    });
    Ok(Chunk { rows, last })
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

#[cfg(test)]
mod tests {
    use sqlx::Any;

    use super::{CHUNK, KeyDigest, scan};
    use crate::store::Store;

    const ROWS: i64 = 2 * CHUNK + 5;

    async fn exec(store: &Store, sql: &str) {
        sqlx::query::<Any>(sql).execute(store.pool()).await.unwrap();
    }

    /// The lookup is read in chunks that each start after the last key of the one before, read
    /// off its pack: every row is read once, across chunks, whatever its value holds (a BLOB,
    /// sorted after all text; 0xFF, which hides where a value ends, so the key is asked for).
    #[tokio::test]
    async fn the_lookup_is_read_whole_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("lookup.db").display());
        let store = Store::open(&url).await.unwrap();
        // Runs of three rows a value; the last row is past the log (`ROWS - 1` entries).
        exec(
            &store,
            &format!(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {}) \
                 INSERT INTO ledger_lookup (field, value, seq) \
                 SELECT 'caller', printf('c%06d', i / 3), i FROM n",
                ROWS - 1
            ),
        )
        .await;
        let size = (ROWS - 1) as u64;
        let digest = KeyDigest::new(size, size);
        let mut want = digest.clone();
        for i in 0..ROWS - 1 {
            want.add(0, format!("c{:06}", i / 3).as_bytes(), i as u64);
        }
        let scanned = scan(&store, digest.clone(), size).await.unwrap();
        assert_eq!(scanned.beyond, Some(size), "the last chunk was read");
        assert_eq!(scanned.first_bad, None);
        assert!(scanned.digest.buckets == want.buckets, "every row once");

        // Two BLOBs: sorted last, named, and the rows around them read as before.
        exec(
            &store,
            "UPDATE ledger_lookup SET value = CAST(value AS BLOB) WHERE seq IN (5, 40000)",
        )
        .await;
        let mut want = digest.clone();
        for i in (0..ROWS - 1).filter(|i| ![5, 40000].contains(i)) {
            want.add(0, format!("c{:06}", i / 3).as_bytes(), i as u64);
        }
        let scanned = scan(&store, digest.clone(), size).await.unwrap();
        assert_eq!(scanned.beyond, Some(size));
        assert_eq!(scanned.first_bad, Some(5));
        assert!(scanned.digest.buckets == want.buckets);

        // Every value holding 0xFF: no chunk tells its last key, and the scan still ends.
        exec(
            &store,
            "UPDATE ledger_lookup SET value = CAST(value AS TEXT) || CAST(X'FF' AS TEXT)",
        )
        .await;
        let scanned = scan(&store, digest, size).await.unwrap();
        assert_eq!(scanned.beyond, Some(size));
        assert_eq!(scanned.first_bad, Some(0));
    }
}
