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
//! but for a chance of 2^-64. The lookup is read in chunks the database packs, as the log is
//! (see `PACK_SQLITE` in the audit): a few integer-to-text conversions a row, no row through
//! sqlx. Rows at or after `indexed` are not read by listings (a crash part way through an
//! indexing round leaves some): they are only checked not to run past the log; once the
//! indexer moves `indexed` past them, the next audit holds them to their entries.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
};

use sqlx::{Any, Row};

use super::AuditError;
use crate::{
    ledger::{
        entry::Entry,
        filter::FilterFields,
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
const FIELDS: [&[u8]; 2] = [b"caller", b"subject"];

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

    /// The first bucket whose sum differs from `other`'s, as its range of sequence numbers.
    fn first_difference(&self, other: &KeyDigest) -> Option<(u64, u64)> {
        let b = self
            .buckets
            .iter()
            .zip(&other.buckets)
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
    fn bad(&mut self, seq: u64) {
        self.first_bad = Some(self.first_bad.map_or(seq, |b| b.min(seq)));
    }
}

/// Reads the whole lookup, chunk by chunk in its key order, into a digest like `digest`
/// (which must be empty); `size` is the log's size when the audit began.
pub(super) async fn scan(
    store: &Store,
    digest: KeyDigest,
    size: u64,
) -> Result<Scanned, LedgerError> {
    let mut scanned = Scanned {
        digest,
        first_bad: None,
        beyond: None,
    };
    let engine = store.engine();
    let mut after: Option<Key> = None;
    loop {
        // The last key of this chunk, found by the database in its own collation: a key
        // compared in Rust's byte order could differ from PostgreSQL's order.
        let bound = match last_key(store, engine, after.as_ref()).await? {
            Bound::Key(key) => Some(key),
            Bound::End => None,
            Bound::NotText(seq) => {
                // A key that cannot be bound back: nothing past it is read.
                scanned.bad(seq);
                return Ok(scanned);
            }
        };
        let sql = chunk_sql(engine, after.is_some(), bound.is_some());
        let mut q = sqlx::query::<Any>(&sql);
        for (field, value, seq) in after.iter().chain(bound.iter()) {
            q = q.bind(field.as_str()).bind(value.as_str()).bind(*seq);
        }
        let row = q.fetch_one(store.pool()).await?;
        let packed = match engine {
            Engine::Sqlite => row.try_get::<Option<Vec<u8>>, _>(0)?,
            Engine::Postgres => row.try_get::<Option<String>, _>(0)?.map(String::into_bytes),
        };
        parse_chunk(&packed.unwrap_or_default(), &mut scanned, size)?;
        match bound {
            Some(bound) => after = Some(bound),
            None => return Ok(scanned),
        }
    }
}

/// A lookup row's key: field, value, seq.
type Key = (String, String, i64);

/// Where a chunk of the lookup ends.
enum Bound {
    /// At this key, included.
    Key(Key),
    /// At the end of the lookup.
    End,
    /// At a key whose field or value is not text (SQLite), of this entry.
    NotText(u64),
}

/// The key `CHUNK` rows after `after` (from the first with `None`).
async fn last_key(
    store: &Store,
    engine: Engine,
    after: Option<&Key>,
) -> Result<Bound, LedgerError> {
    let typed = match engine {
        Engine::Sqlite => "typeof(field) = 'text' AND typeof(value) = 'text'",
        Engine::Postgres => "TRUE",
    };
    let lower = match after {
        Some(_) => "WHERE (field, value, seq) > ($1, $2, $3)",
        None => "",
    };
    let sql = format!(
        "SELECT seq, CAST(CASE WHEN {typed} THEN 1 ELSE 0 END AS BIGINT), field, value \
         FROM ledger_lookup {lower} ORDER BY field, value, seq LIMIT 1 OFFSET {}",
        CHUNK - 1
    );
    let mut q = sqlx::query::<Any>(&sql);
    if let Some((field, value, seq)) = after {
        q = q.bind(field.as_str()).bind(value.as_str()).bind(*seq);
    }
    let Some(row) = q.fetch_optional(store.pool()).await? else {
        return Ok(Bound::End);
    };
    let seq: i64 = row.try_get(0)?;
    let text = row.try_get::<i64, _>(1)? == 1;
    match (
        text,
        row.try_get::<String, _>(2),
        row.try_get::<String, _>(3),
    ) {
        (true, Ok(field), Ok(value)) => Ok(Bound::Key((field, value, seq))),
        _ => Ok(Bound::NotText(to_u64(seq, "ledger_lookup seq")?)),
    }
}

/// The statement packing the lookup's rows after a key (`lower`) up to and including another
/// (`upper`): per `(field, value)`, `field length:value length:seqs length:text?:` then the
/// field, the value and its sequence numbers, comma-separated. Lengths delimit everything, so
/// no value can pass for several rows.
fn chunk_sql(engine: Engine, lower: bool, upper: bool) -> String {
    let mut conditions = vec!["1 = 1"];
    if lower {
        conditions.push("(field, value, seq) > ($1, $2, $3)");
    }
    if upper {
        conditions.push(if lower {
            "(field, value, seq) <= ($4, $5, $6)"
        } else {
            "(field, value, seq) <= ($1, $2, $3)"
        });
    }
    let conditions = conditions.join(" AND ");
    match engine {
        Engine::Sqlite => format!(
            "SELECT CAST(group_concat(octet_length(field) || ':' || octet_length(value) || ':' \
             || octet_length(seqs) || ':' || text || ':' || field || value || seqs, '') AS BLOB) \
             FROM (SELECT field, value, \
             (typeof(field) = 'text' AND typeof(value) = 'text') AS text, \
             group_concat(seq, ',') AS seqs FROM ledger_lookup WHERE {conditions} \
             GROUP BY field, value)"
        ),
        Engine::Postgres => format!(
            "SELECT string_agg(octet_length(field) || ':' || octet_length(value) || ':' \
             || octet_length(seqs) || ':1:' || field || value || seqs, '') \
             FROM (SELECT field, value, string_agg(seq::text, ',') AS seqs \
             FROM ledger_lookup WHERE {conditions} GROUP BY field, value) g"
        ),
    }
}

fn parse_chunk(mut rest: &[u8], scanned: &mut Scanned, size: u64) -> Result<(), LedgerError> {
    let bad = |what: &str| LedgerError::Corrupt(format!("ledger_lookup: {what}"));
    let number = |rest: &mut &[u8]| {
        let end = rest
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| bad("unreadable pack"))?;
        let n = std::str::from_utf8(&rest[..end])
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
            .ok_or_else(|| bad("unreadable length in its pack"))?;
        *rest = &rest[end + 1..];
        Ok::<_, LedgerError>(n)
    };
    while !rest.is_empty() {
        let (field_len, value_len, seqs_len) =
            (number(&mut rest)?, number(&mut rest)?, number(&mut rest)?);
        let text = number(&mut rest)? == 1;
        let len = field_len
            .checked_add(value_len)
            .and_then(|n| n.checked_add(seqs_len));
        if len.is_none_or(|len| len > rest.len()) {
            return Err(bad("a row runs past its pack"));
        }
        let (field, after) = rest.split_at(field_len);
        let (value, after) = after.split_at(value_len);
        let (seqs, after) = after.split_at(seqs_len);
        rest = after;
        let tag = FIELDS.iter().position(|f| *f == field);
        // The key's hash up to its sequence number, shared by the group's rows.
        let mut group = scanned.digest.key.build_hasher();
        if let Some(tag) = tag {
            group.write_u8(tag as u8);
            group.write(value);
        }
        for seq in seqs.split(|&b| b == b',') {
            let seq = std::str::from_utf8(seq)
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .ok_or_else(|| {
                    bad(&format!(
                        "a row's sequence number is {:?}",
                        String::from_utf8_lossy(seq)
                    ))
                })?;
            if seq >= size {
                scanned.beyond = Some(scanned.beyond.map_or(seq, |b| b.max(seq)));
            }
            if tag.is_none() || !text {
                scanned.bad(seq);
            } else if seq < scanned.digest.indexed {
                let mut h = group.clone();
                h.write_u64(seq);
                scanned.digest.add_hash(seq, h.finish());
            }
        }
    }
    Ok(())
}

/// Holds the lookup as read to the entries' digest (`entries`, of a log found to have `have`
/// entries, whose lookup claimed `indexed`).
pub(super) async fn compare(
    store: &Store,
    entries: &KeyDigest,
    indexed: u64,
    scanned: Scanned,
    have: u64,
) -> Result<(), AuditError> {
    let mut first = scanned.first_bad;
    if let Some((from, until)) = entries.first_difference(&scanned.digest) {
        let seq = first_differing_entry(store, from, until).await?;
        first = Some(first.map_or(seq, |f| f.min(seq)));
    }
    if let Some(seq) = first {
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

/// The first entry in `[from, until)` whose lookup rows are not exactly its keys (read again on
/// both sides, all in memory: at most a bucket's worth, and only after a difference).
async fn first_differing_entry(store: &Store, from: u64, until: u64) -> Result<u64, LedgerError> {
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
    // Sums that differ with equal rows: the lookup changed between the two reads.
    let seq = match (differing, first_unreadable) {
        (Some(d), Some(u)) => d.min(u),
        (d, u) => d.or(u).unwrap_or(from),
    };
    Ok(seq)
}
