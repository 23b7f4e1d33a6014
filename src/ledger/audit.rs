//! Auditing a stored ledger (`credit-node ledger verify`) and exporting entries with inclusion
//! proofs (`credit-node ledger export`): the database side of promise 6.
//!
//! The audit trusts only the ledger public key. It reads every tree head, then the committed
//! size from the head row, then every entry in sequence order (in ranges, each read
//! while the one before is checked: packed by the database on SQLite, [`PACK_SQLITE`], and
//! through binary COPY on PostgreSQL, [`copy`]) through the core's [`Verifier`], which
//! recomputes each leaf from the stored bytes and checks each tree head's signature and root
//! where the log reaches its size. Finally the stream must have
//! reached the committed size: a tail cut after the last tree head is caught by the head row
//! (and one cut before it by the tree head, even with the head row lowered to match).
//!
//! Listings select entries by copies of their fields that the log does not cover: five columns
//! beside each entry and the lookup by caller and subject. The audit holds both to the entries:
//! the columns ride in the same ranges and are compared in place with the fields the
//! verifier's validation lends out ([`AuditError::ColumnMismatch`]); the lookup is read beside
//! the log on another task and compared through a keyed digest ([`lookup_check`]). Whichever
//! check finds it, the audit names the first bad sequence number: when the log's check stops
//! at an entry, the lookup is still held to the entries before it.
//!
//! What a database alone cannot show: a cut that also deletes every tree head above it and
//! lowers the head row leaves a shorter log that is consistent in itself. Only a tree head kept
//! outside the database catches that (a receipt or tree head a caller, peer or officer holds),
//! as with any transparency log: [`verify_store_against`] (`ledger verify --sth`) holds the
//! stored log to such heads.

use std::io::Write;

use sqlx::{Any, Row};

mod copy;
mod lookup_check;

use self::lookup_check::KeyDigest;
use super::{
    filter::{Column, FilterFields, PACK_SEPARATOR},
    lookup,
    sth::SignedTreeHead,
    store::{
        EntryFilter, LedgerError, Page, committed_size, entries, inclusion_proof_on, latest_sth,
        sths, to_i64,
    },
    verify::{StoredRow, Verifier, VerifyError, VerifyReport, entry_line, sth_line},
};
use crate::store::{Engine, Store};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log is not what was signed: tampering (or a bug). The message names the first bad
    /// sequence number.
    #[error("{0}")]
    Tampered(#[from] VerifyError),
    /// The head row claims more entries than are stored after the last one checked.
    #[error(
        "entry {expected_seq} is missing: the head records {head_size} entries, {have} are stored"
    )]
    TailMissing {
        expected_seq: u64,
        head_size: u64,
        have: u64,
    },
    /// A column of `ledger_entries` (a copy of one of the entry's fields that listings select
    /// by) is not the entry's own field: it could hide the entry from a listing or an export,
    /// or show it as someone else's.
    #[error(
        "entry {seq}: its stored `{column}` column disagrees with the entry's own (signed) \
         bytes; listings select by it, so it could hide or misattribute the entry"
    )]
    ColumnMismatch { seq: u64, column: Column },
    /// `ledger_lookup` (the listings' index by caller and by subject) lacks a row of the entry,
    /// has one too many, or has one changed: it could hide the entry from a listing by caller
    /// or subject, or list it under another.
    #[error(
        "ledger_lookup disagrees with entry {seq}: a row of it was added, removed or changed; \
         listings by caller or subject read it"
    )]
    LookupMismatch { seq: u64 },
    /// `ledger_lookup` claims entries the log does not have (a row of a later sequence number,
    /// or a head saying it covers more than the log): listings would skip the log's own tail.
    #[error("ledger_lookup is ahead of the log: it names entry {seq}, the log has {size} entries")]
    LookupAhead { seq: u64, size: u64 },
    /// The audit could not run (database unreachable ...): says nothing about the log.
    #[error("{0}")]
    Ledger(#[from] LedgerError),
}

impl AuditError {
    /// The first sequence number found bad, when the failure concerns one entry.
    pub fn first_bad_seq(&self) -> Option<u64> {
        match self {
            AuditError::Tampered(e) => match e {
                VerifyError::ModifiedEntry { seq }
                | VerifyError::Undecodable { seq, .. }
                | VerifyError::Reordered { seq, .. } => Some(*seq),
                VerifyError::MissingEntry { expected_seq } => Some(*expected_seq),
                VerifyError::Truncated { have, .. } => Some(*have),
                VerifyError::BadSthSignature { .. }
                | VerifyError::RootMismatch { .. }
                | VerifyError::NonMonotonicSth { .. } => None,
            },
            AuditError::TailMissing { expected_seq, .. } => Some(*expected_seq),
            AuditError::ColumnMismatch { seq, .. }
            | AuditError::LookupMismatch { seq }
            | AuditError::LookupAhead { seq, .. } => Some(*seq),
            AuditError::Ledger(_) => None,
        }
    }
}

/// Total entries the audit will read (for a progress bar).
pub async fn audit_size(store: &Store) -> Result<u64, LedgerError> {
    committed_size(store).await
}

/// Verifies the whole stored log. `progress` is called with the number of entries checked,
/// every 4096 entries.
pub async fn verify_store(
    store: &Store,
    public_key: &[u8],
    progress: impl FnMut(u64),
) -> Result<VerifyReport, AuditError> {
    verify(store, public_key, &[], RANGE_BYTES, progress).await
}

/// The stored tree heads with the kept ones placed among them by size. A kept head of a size a
/// stored head also has must be that head: two signed heads of one size with different roots
/// mean the log was rewritten after one of them.
fn with_kept(
    mut heads: Vec<SignedTreeHead>,
    kept: &[SignedTreeHead],
) -> Result<Vec<SignedTreeHead>, AuditError> {
    for k in kept {
        let size = k.head.tree_size;
        match heads.binary_search_by_key(&size, |h| h.head.tree_size) {
            Ok(i) if heads[i].head.root_hash != k.head.root_hash => {
                return Err(VerifyError::RootMismatch { size }.into());
            }
            Ok(_) => {}
            Err(i) => heads.insert(i, k.clone()),
        }
    }
    Ok(heads)
}

/// [`verify_store`] that also holds the log to `kept`: tree heads kept away from the database
/// (an officer's copy of an export's first line, say). A log cut back together with its own
/// tree heads and head row is consistent in itself; it is not with a head kept elsewhere.
pub async fn verify_store_against(
    store: &Store,
    public_key: &[u8],
    kept: &[SignedTreeHead],
    progress: impl FnMut(u64),
) -> Result<VerifyReport, AuditError> {
    verify(store, public_key, kept, RANGE_BYTES, progress).await
}

/// [`verify_store`] reading at most `range_bytes` of entries at a time (two such ranges are in
/// memory at once, and on SQLite an entry too large for its share of one, read alone), where
/// the default, 64 MiB, is too much.
pub async fn verify_store_within(
    store: &Store,
    public_key: &[u8],
    range_bytes: u64,
    progress: impl FnMut(u64),
) -> Result<VerifyReport, AuditError> {
    verify(store, public_key, &[], range_bytes, progress).await
}

async fn verify(
    store: &Store,
    public_key: &[u8],
    kept: &[SignedTreeHead],
    range_bytes: u64,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, AuditError> {
    let range_bytes = i64::try_from(range_bytes).unwrap_or(i64::MAX);
    // How far the lookup claims to cover, read before the log's size: the indexer only covers
    // committed entries, so on a live node this never passes the size read after it.
    let indexed = lookup::indexed(store).await?;
    // Every stored tree head, read before the head row: a head is committed with the entries
    // it covers, so on a live node none read here can pass the size read after it, while one
    // left behind by entries cut off the tail (and the head row lowered to match) still
    // reaches the verifier, which reports the truncation.
    let heads = with_kept(sths(store).await?, kept)?;
    let head_size = committed_size(store).await?;
    let mut verifier = Verifier::new(public_key, heads)?;
    let digest = KeyDigest::new(indexed, head_size);
    // The lookup is read beside the log (on another connection and task): the audit of the log
    // leaves part of a core idle while it waits for its next range.
    let lookup_scan = {
        let (store, digest) = (store.clone(), digest.clone());
        tokio::spawn(async move { lookup_check::scan(&store, digest, head_size).await })
    };
    // An audit that stops early (the log is bad) stops reading the lookup too.
    let _stop_scan = StopOnDrop(lookup_scan.abort_handle());
    let mut checks = Checks {
        verifier: &mut verifier,
        digest,
    };
    let read = match store.engine() {
        Engine::Sqlite => {
            check_packed(store, head_size, range_bytes, &mut checks, &mut progress).await
        }
        Engine::Postgres => {
            copy::check_log(
                store,
                head_size,
                range_bytes.unsigned_abs(),
                &mut checks,
                &mut progress,
            )
            .await
        }
    };
    let Checks { digest, .. } = checks;
    let have = verifier.size();
    let log = read.and_then(|()| {
        let report = verifier.finish()?;
        if have < head_size {
            return Err(AuditError::TailMissing {
                expected_seq: have,
                head_size,
                have,
            });
        }
        Ok(report)
    });
    let report = match log {
        Ok(report) => report,
        Err(found) => return Err(first_finding(store, found, &digest, lookup_scan).await),
    };
    let scanned = lookup_scan
        .await
        .map_err(|e| LedgerError::Unavailable(format!("reading the ledger's lookup: {e}")))??;
    lookup_check::compare(store, &digest, indexed, scanned, have).await?;
    progress(have);
    Ok(report)
}

/// The log's own finding `found`, or the lookup's when it names an earlier entry: the audit
/// reports the first bad sequence number (issue 5), and a lookup row changed at entry 5 hides
/// that entry from listings whatever the log holds at entry 100,000. `digest` holds the keys
/// of the entries checked before the log's check stopped, which are exactly those below its
/// finding.
///
/// A finding of no entry (a tree head's signature or root) keeps its precedence, and nothing
/// comes before entry 0: the lookup's reading is then stopped, as it is when the entries below
/// the finding are few enough to read again directly ([`lookup_check::needs_scan`]). A
/// lookup that cannot be read leaves the log's finding, which stands on its own.
async fn first_finding(
    store: &Store,
    found: AuditError,
    digest: &KeyDigest,
    lookup_scan: tokio::task::JoinHandle<Result<lookup_check::Scanned, LedgerError>>,
) -> AuditError {
    let Some(bad) = found.first_bad_seq().filter(|&seq| seq > 0) else {
        lookup_scan.abort();
        return found;
    };
    let scanned = if lookup_check::needs_scan(digest, bad) {
        match lookup_scan.await {
            Ok(Ok(scanned)) => Some(scanned),
            _ => return found,
        }
    } else {
        lookup_scan.abort();
        None
    };
    match lookup_check::first_mismatch(store, digest, scanned.as_ref(), bad).await {
        Ok(Some(seq)) => AuditError::LookupMismatch { seq },
        Ok(None) | Err(_) => found,
    }
}

/// Aborts a task when dropped.
struct StopOnDrop(tokio::task::AbortHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads the log in ranges the database packs (SQLite), the next read (on another connection
/// and task) while this one is checked, and pushes every entry through `checks`.
async fn check_packed(
    store: &Store,
    head_size: u64,
    range_bytes: i64,
    checks: &mut Checks<'_, '_>,
    progress: &mut impl FnMut(u64),
) -> Result<(), AuditError> {
    let budget = range_bytes.unsigned_abs();
    let fetch = |from: u64, count: u64| {
        let store = store.clone();
        let until = from.saturating_add(count).min(head_size);
        tokio::spawn(async move { read_range(&store, from, until, range_bytes).await })
    };
    let first = (budget / FIRST_GUESS).clamp(1, RANGE);
    let mut next = (head_size > 0).then(|| fetch(0, first));
    while let Some(reading) = next.take() {
        let pack = reading
            .await
            .map_err(|e| LedgerError::Unavailable(format!("reading the ledger: {e}")))??;
        if pack.until < head_size {
            // As many entries as fit the budget were they all as large as this range's largest,
            // so that entries like those just seen are packed whole.
            let count = (budget / pack.largest.max(1)).clamp(1, RANGE);
            next = Some(fetch(pack.until, count));
        }
        let mut at = 0;
        while let Some(seq) = pack.push_into(&mut at, checks, progress)? {
            // Too large for its range: read alone (a range of one holds it, whatever its size).
            let alone = read_range(store, seq, seq + 1, range_bytes).await?;
            if alone.push_into(&mut 0, checks, progress)?.is_some() {
                return Err(LedgerError::Corrupt(format!(
                    "stored entry row: entry {seq} was left out of a range of its own"
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// What the audit checks of each entry besides the log itself: its stored columns, and its
/// keys in the lookup's digest.
struct Checks<'v, 'k> {
    verifier: &'v mut Verifier<'k>,
    digest: KeyDigest,
}

impl Checks<'_, '_> {
    /// Checks one stored entry: the verifier's checks of the log, then its stored columns by
    /// `columns` (given the fields the verifier lends out); then adds its lookup keys to the
    /// digest. Both engines' reads end here, so they check the same things in the same order.
    fn entry<'b>(
        &mut self,
        row: StoredRow<&'b [u8]>,
        columns: impl FnOnce(&FilterFields<'b>) -> Result<(), AuditError>,
        progress: &mut impl FnMut(u64),
    ) -> Result<(), AuditError> {
        let seq = row.seq;
        let fields = self.verifier.push_fields(row)?;
        columns(&fields)?;
        self.digest.add_entry(seq, &fields);
        if self.verifier.size().is_multiple_of(4096) {
            progress(self.verifier.size());
        }
        Ok(())
    }
}

/// Entries read at a time by the audit, at most: one row of the database on SQLite, one COPY on
/// PostgreSQL.
const RANGE: u64 = 16_384;

/// Bytes of entries, hashes and columns one range holds at most, by default (a range of one
/// entry holds it whatever its size; on PostgreSQL the bound is on the rows as COPY sends
/// them). Entries are a few hundred bytes, but a caller can make one of ≈ 100 KB (256 field
/// names of 200 bytes, each recorded); without the bound a range of such entries would pass
/// the engines' largest value (1 GB) and stop every audit from then on.
const RANGE_BYTES: u64 = 64 << 20;

/// The bytes per entry the first range of an audit is sized for (on SQLite): a few times a
/// usual entry with its columns, so that the first range is whole under the default budget,
/// and a small budget starts from small ranges rather than reading most entries alone.
const FIRST_GUESS: u64 = 1024;

/// One range of the log as SQLite packs it: the size of its largest entry (bytes of the entry,
/// its hash and its columns), and per entry, in sequence order, `seq:entry length:hash length:`
/// in decimal, the entry's bytes, its leaf hash and its five filter columns (caller, subject,
/// purpose, outcome, time_ms, each followed by 0xFF:
/// [`crate::ledger::filter::FilterFields::pack_into`]) and the columns' type bits (followed by
/// 0xFF). An entry larger than its share of the budget (`$3`: the budget over the range's
/// entries) is packed as `seq:+` alone, and [`check_packed`] reads it in a range of its own.
///
/// Why a share per entry, checked as the rows come: the budget must hold before SQLite builds
/// the buffer, and a sum over the range first walked every range twice (measured on the
/// bundled SQLite: 48–52 ms of CPU per 200,000 entries, against 250–380 ms for the pack). A
/// range of `n` entries each within `budget / n` holds at most the budget (plus the heads),
/// whatever was tampered with; each entry's size comes from the lengths SQLite keeps in the
/// record's header (`octet_length` of a BLOB or TEXT column does not read its content). Ranges
/// are sized by the largest entry of the one before, so a log of large entries (legitimate or
/// not) reads few of them alone.
///
/// Why packed: sqlx hands over rows one by one through a channel, building each column as an
/// owned value; at 2–4 µs a row that was the whole cost of an audit (measured: the audit ran
/// at the speed of reading the rows). Aggregated by the database, a range is one row and one
/// buffer, and the entries are checked as slices of it. Each entry's head rides in the same
/// `concat()` as its bytes, where a second aggregate of `seq || ':' || …` cost SQLite an
/// allocation per `||` (measured on the bundled SQLite, 200,000 entries in 13 ranges: 13–30 %
/// less CPU for the pack folded; the whole audit showed no difference beyond the noise). The
/// lengths come from the database too, so a stored value of an odd length or type is split
/// exactly where it was stored and found bad by the verifier as before (`octet_length` counts
/// bytes); a NULL has length -1, which no parse accepts (and no size, so it is never left out
/// as too large). (PostgreSQL packed the same way built each entry's part from a chain of `||`
/// on `bytea` and `convert_to`s, which cost its server more than a plain read of the rows:
/// there the audit reads through binary COPY instead, see [`copy`].)
///
/// Why the columns: listings select entries by them (promise 6 covers only the entry's bytes),
/// so a column changed could hide an entry or misattribute it; they ride in the same scan and
/// the same buffer, compared in place with the fields the verifier's validation lends out.
/// 0xFF is in no UTF-8 text, and the separators are the statement's own, so a column holding
/// one cannot pass for its neighbours. On SQLite a column may also hold another type than
/// declared with the same bytes (a BLOB caller, which `caller = $1` no longer matches): `x < X''`
/// holds for text and numbers, never for a BLOB, and `x < ''` for numbers only, so one
/// comparison a column gives a bit, and an entry whose bits do not add up to 31 names its
/// column. `concat` builds each entry's part in one allocation, where a chain of `||` copied
/// the growing string at every step (measured: the chain cost about as much as the rest of the
/// read); it reads a NULL as empty, which shifts the entries after it, so it is found too.
/// A number's text (time_ms) is counted as nothing in the size: it is at most 24 bytes, and
/// measuring it would convert it.
///
/// The rows come in order from an ordered subquery rather than by `ORDER BY` inside
/// the aggregates, which sorts what the primary key's index already yields in order (measured:
/// five times the cost of the read). SQLite does not flatten an ordered subquery into an
/// aggregate; should an order ever come out different, the verifier reports entries out of
/// place: a false alarm, never a false pass.
const PACK_SQLITE: &str = "SELECT max(size), \
    CAST(group_concat(CASE WHEN size > $3 THEN concat(seq, ':+') \
        ELSE concat(seq, ':', coalesce(octet_length(entry), -1), ':', \
        coalesce(octet_length(leaf_hash), -1), ':', entry, leaf_hash, \
        caller, X'FF', subject, X'FF', purpose, X'FF', \
        outcome, X'FF', time_ms, X'FF', (caller < X'') + 2 * (subject < X'') \
        + 4 * (purpose < X'') + 8 * (outcome < X'') + 16 * (time_ms < ''), X'FF') END, '') \
        AS BLOB) \
    FROM (SELECT seq, entry, leaf_hash, caller, subject, purpose, outcome, time_ms, \
        octet_length(entry) + octet_length(leaf_hash) + octet_length(caller) \
        + octet_length(subject) + octet_length(purpose) + octet_length(outcome) \
        + iif(time_ms < '', 0, octet_length(time_ms)) AS size \
        FROM ledger_entries \
        WHERE seq >= $1 AND seq < $2 ORDER BY seq)";

/// The type bits of a well-typed entry's columns (see [`PACK_SQLITE`]): 1 caller, 2 subject,
/// 4 purpose, 8 outcome (text), 16 time_ms (a number).
const WELL_TYPED: &[u8] = b"31";

/// A range of stored rows, read by [`read_range`].
struct Pack {
    /// The first sequence number after the range.
    until: u64,
    /// The size of the range's largest entry, its hash and columns included.
    largest: u64,
    bytes: Vec<u8>,
}

impl Pack {
    /// Pushes the range's rows from byte `at` on into the verifier, in sequence order, as
    /// slices of the pack, and holds each entry's columns and lookup keys to it. Stops after an
    /// entry left out as too large for the range, with `at` past it, and returns its sequence
    /// number: it is to be read alone and pushed before the rest.
    fn push_into<'p>(
        &'p self,
        at: &mut usize,
        checks: &mut Checks<'_, '_>,
        progress: &mut impl FnMut(u64),
    ) -> Result<Option<u64>, AuditError> {
        let bad = |what: String| LedgerError::Corrupt(format!("stored entry row: {what}"));
        let mut rest = &self.bytes[(*at).min(self.bytes.len())..];
        let take = |rest: &mut &'p [u8], len: u64, seq: u64| {
            let len = usize::try_from(len)
                .ok()
                .filter(|&len| len <= rest.len())
                .ok_or_else(|| bad(format!("entry {seq} runs past its range")))?;
            let (taken, after) = rest.split_at(len);
            *rest = after;
            Ok::<_, LedgerError>(taken)
        };
        while !rest.is_empty() {
            let at_byte = self.bytes.len() - rest.len();
            let unreadable = || {
                bad(format!(
                    "unreadable sequence number or length at byte {at_byte} of its range"
                ))
            };
            let [seq] = numbers(&mut rest).ok_or_else(unreadable)?;
            if let Some(after) = rest.strip_prefix(b"+") {
                *at = self.bytes.len() - after.len();
                return Ok(Some(seq));
            }
            let [len, hash_len] = numbers(&mut rest).ok_or_else(unreadable)?;
            let entry = take(&mut rest, len, seq)?;
            let hash = take(&mut rest, hash_len, seq)?;
            let row = StoredRow::from_columns(seq, entry, hash);
            checks.entry(
                row,
                |fields| {
                    let used = fields
                        .check_packed(rest)
                        .map_err(|column| AuditError::ColumnMismatch { seq, column })?;
                    rest = &rest[used..];
                    let bits = rest
                        .iter()
                        .position(|&b| b == PACK_SEPARATOR)
                        .ok_or_else(|| {
                            bad(format!("entry {seq}'s column types run past its range"))
                        })?;
                    if &rest[..bits] != WELL_TYPED {
                        return Err(AuditError::ColumnMismatch {
                            seq,
                            column: mistyped(&rest[..bits]),
                        });
                    }
                    rest = &rest[bits + 1..];
                    Ok(())
                },
                progress,
            )?;
        }
        *at = self.bytes.len();
        Ok(None)
    }
}

/// The share of `range_bytes` each of `entries` entries may take in one range: all of it for a
/// range of one.
fn share(range_bytes: i64, entries: u64) -> i64 {
    if entries <= 1 {
        i64::MAX
    } else {
        range_bytes / i64::try_from(entries).unwrap_or(i64::MAX)
    }
}

/// The stored rows with `from <= seq < until`, packed; those larger than their share of
/// `range_bytes` left out, to be read alone.
async fn read_range(
    store: &Store,
    from: u64,
    until: u64,
    range_bytes: i64,
) -> Result<Pack, LedgerError> {
    let row = sqlx::query::<Any>(PACK_SQLITE)
        .bind(to_i64(from)?)
        .bind(to_i64(until)?)
        .bind(share(range_bytes, until - from))
        .fetch_one(store.pool())
        .await?;
    // No rows in the range: every column is NULL.
    let largest = row.try_get::<Option<i64>, _>(0)?.unwrap_or(0);
    Ok(Pack {
        until,
        largest: largest.unsigned_abs(),
        bytes: row.try_get::<Option<Vec<u8>>, _>(1)?.unwrap_or_default(),
    })
}

/// The `N` decimal numbers at the front of `rest`, each followed by `:` (an entry's head in
/// [`PACK_SQLITE`]), read off it; `None` if they are not there (a NULL's `-1`, a range cut
/// short).
fn numbers<const N: usize>(rest: &mut &[u8]) -> Option<[u64; N]> {
    let mut out = [0; N];
    for n in &mut out {
        // u64::MAX has 20 digits.
        let end = rest.iter().take(21).position(|&b| b == b':')?;
        *n = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
        *rest = &rest[end + 1..];
    }
    Some(out)
}

/// The first column whose bit is missing from an entry's type bits.
fn mistyped(bits: &[u8]) -> Column {
    let bits = std::str::from_utf8(bits)
        .ok()
        .and_then(|b| b.parse::<u8>().ok())
        .unwrap_or(0);
    let columns = [
        Column::Caller,
        Column::Subject,
        Column::Purpose,
        Column::Outcome,
        Column::TimeMs,
    ];
    columns
        .into_iter()
        .enumerate()
        .find(|(i, _)| bits & (1 << i) == 0)
        .map_or(Column::Caller, |(_, column)| column)
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub entries: u64,
    pub tree_size: u64,
}

/// Writes the latest signed tree head and every entry it covers that matches `filter`, each
/// with its inclusion proof against that head, as JSON Lines (the format `verify_export`
/// reads). Entries appended after the latest head are not covered by a signature, so they are
/// not exported; sign first (the node signs on shutdown and on its cadence).
pub async fn export(
    store: &Store,
    filter: &EntryFilter,
    out: &mut impl Write,
) -> Result<ExportSummary, LedgerError> {
    let sth: SignedTreeHead = latest_sth(store)
        .await?
        .ok_or_else(|| LedgerError::Corrupt("no signed tree head to export against".into()))?;
    let io = |e: std::io::Error| LedgerError::Unavailable(format!("writing the export: {e}"));
    writeln!(out, "{}", sth_line(&sth)).map_err(io)?;
    let tree_size = sth.head.tree_size;
    let mut conn = store.pool().acquire().await?;
    let mut page = Page {
        after: None,
        limit: 1000,
    };
    let mut written = 0;
    'pages: loop {
        let batch = entries(store, filter, page).await?;
        for e in &batch.entries {
            if e.seq >= tree_size {
                break 'pages;
            }
            let proof = inclusion_proof_on(&mut conn, e.seq, tree_size).await?;
            writeln!(out, "{}", entry_line(e.seq, &e.bytes, &e.leaf_hash, &proof)).map_err(io)?;
            written += 1;
        }
        match batch.next_after {
            Some(after) => page.after = Some(after),
            None => break,
        }
    }
    out.flush().map_err(io)?;
    Ok(ExportSummary {
        entries: written,
        tree_size,
    })
}

#[cfg(test)]
mod tests {
    use sqlx::Any;

    use super::{Store, numbers, read_range};

    /// A range never packs more than its byte budget (and the entries' heads), whatever was
    /// stored: an entry or a column larger than its share is left out as `seq:+`, and a range
    /// of one packs it whole.
    #[tokio::test]
    async fn a_range_packs_within_its_budget_whatever_was_stored() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("pack.db").display());
        let store = Store::open(&url).await.unwrap();
        for seq in 0..100_i64 {
            let (entry, caller) = match seq {
                40 => (1 << 20, 10),
                60 => (300, 1 << 20),
                _ => (300, 10),
            };
            sqlx::query::<Any>(
                "INSERT INTO ledger_entries \
                 (seq, entry, leaf_hash, time_ms, caller, subject, purpose, outcome) \
                 VALUES ($1, $2, $3, 0, $4, 's', 'p', 'o')",
            )
            .bind(seq)
            .bind(vec![0_u8; entry])
            .bind(vec![1_u8; 32])
            .bind("c".repeat(caller))
            .execute(store.pool())
            .await
            .unwrap();
        }
        let budget: i64 = 64 << 10;
        let pack = read_range(&store, 0, 100, budget).await.unwrap();
        let heads = 100 * 20;
        assert!(
            pack.bytes.len() <= (64 << 10) + heads,
            "{}",
            pack.bytes.len()
        );
        assert!(pack.largest > 1 << 20, "{}", pack.largest);
        let has = |bytes: &[u8], head: &[u8]| bytes.windows(head.len()).any(|w| w == head);
        assert!(has(&pack.bytes, b"40:+") && has(&pack.bytes, b"60:+"));
        assert!(
            has(&pack.bytes, b"41:300:32:"),
            "the entries after it are packed"
        );
        for seq in [40, 60] {
            let alone = read_range(&store, seq, seq + 1, budget).await.unwrap();
            assert!(alone.bytes.len() > 1 << 20, "{seq}: {}", alone.bytes.len());
            assert!(!has(&alone.bytes, b":+"), "{seq}");
        }
    }

    /// An entry's head in the SQLite pack: three numbers, each ended by `:`; a NULL's `-1`, a
    /// missing `:` or a number past `u64` is no head.
    #[test]
    fn an_entry_head_is_three_numbers_each_ended_by_a_colon() {
        let mut rest: &[u8] = b"7:310:32:\x01\x02";
        assert_eq!(numbers::<3>(&mut rest), Some([7, 310, 32]));
        assert_eq!(rest, b"\x01\x02", "the entry's bytes follow");
        for bad in [
            &b"7:-1:32:"[..],
            b"7:310:32",
            b"7::32:",
            b"7:310:x:",
            b"99999999999999999999:1:1:",
            b"",
        ] {
            let mut rest = bad;
            assert_eq!(
                numbers::<3>(&mut rest),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
