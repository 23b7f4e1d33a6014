//! Auditing a stored ledger (`credit-node ledger verify`) and exporting entries with inclusion
//! proofs (`credit-node ledger export`): the database side of promise 6.
//!
//! The audit trusts only the ledger public key. It reads the committed size from the head row,
//! then every tree head up to it, then every entry in sequence order (in ranges, each read
//! while the one before is checked) through the core's [`Verifier`], which recomputes each leaf from the stored bytes and checks each tree
//! head's signature and root where the log reaches its size. Finally the stream must have
//! reached the committed size: a tail cut after the last tree head is caught by the head row
//! (and one cut before it by the tree head).

use std::io::Write;

use sqlx::{Any, Row};

use super::{
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
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, AuditError> {
    let head_size = committed_size(store).await?;
    let heads = sths(store, head_size).await?;
    let mut verifier = Verifier::new(public_key, heads)?;
    // Ranges of the log, the next read (on another connection and task) while this one is
    // checked.
    let fetch = |from: u64| {
        let store = store.clone();
        let until = from.saturating_add(RANGE).min(head_size);
        tokio::spawn(async move { read_range(&store, from, until).await })
    };
    let mut next = (head_size > 0).then(|| fetch(0));
    let mut from: u64 = 0;
    while let Some(reading) = next.take() {
        let pack = reading
            .await
            .map_err(|e| LedgerError::Unavailable(format!("reading the ledger: {e}")))??;
        from = from.saturating_add(RANGE);
        if from < head_size {
            next = Some(fetch(from));
        }
        for row in pack.rows() {
            verifier.push(row?)?;
            if verifier.size() % 4096 == 0 {
                progress(verifier.size());
            }
        }
    }
    let have = verifier.size();
    let report = verifier.finish()?;
    if have < head_size {
        return Err(AuditError::TailMissing {
            expected_seq: have,
            head_size,
            have,
        });
    }
    progress(have);
    Ok(report)
}

/// Entries read at a time by the audit: one row of the database.
const RANGE: u64 = 16_384;

/// One range of the log as the database packs it: per entry `seq:entry length:hash length`,
/// comma-separated, and the entries' bytes each followed by its leaf hash, in sequence order.
///
/// Why packed: sqlx hands over rows one by one through a channel, building each column as an
/// owned value; at 2–4 µs a row that was the whole cost of an audit (measured: the audit ran
/// at the speed of reading the rows). Aggregated by the database, a range is one row and two
/// buffers, and the entries are checked as slices of them. The lengths come from the database
/// too, so a stored value of an odd length or type is split exactly where it was stored and
/// found bad by the verifier as before (`octet_length` counts bytes on both engines).
///
/// On SQLite the rows come in order from an ordered subquery rather than by `ORDER BY` inside
/// the aggregates, which sorts what the primary key's index already yields in order (measured:
/// five times the cost of the read). SQLite does not flatten an ordered subquery into an
/// aggregate, and both aggregates see the rows in the same order, so each entry stays beside
/// its own lengths; should an order ever come out different, the verifier reports entries out
/// of place: a false alarm, never a false pass.
const PACK_SQLITE: &str = "SELECT \
    group_concat(seq || ':' || octet_length(entry) || ':' || octet_length(leaf_hash), ','), \
    CAST(group_concat(entry || leaf_hash, '') AS BLOB) \
    FROM (SELECT seq, entry, leaf_hash FROM ledger_entries \
        WHERE seq >= $1 AND seq < $2 ORDER BY seq)";
const PACK_POSTGRES: &str = "SELECT \
    string_agg(seq || ':' || octet_length(entry) || ':' || octet_length(leaf_hash), ',' \
        ORDER BY seq), \
    string_agg(entry || leaf_hash, ''::bytea ORDER BY seq) \
    FROM ledger_entries WHERE seq >= $1 AND seq < $2";

/// A range of stored rows, read by [`read_range`].
struct Pack {
    index: String,
    bytes: Vec<u8>,
}

impl Pack {
    /// The stored rows, in sequence order, borrowing their bytes from the pack.
    fn rows(&self) -> impl Iterator<Item = Result<StoredRow<&[u8]>, LedgerError>> {
        let mut offset = 0usize;
        let bad = |what: &str| LedgerError::Corrupt(format!("stored entry row: {what}"));
        self.index
            .split(',')
            .filter(|item| !item.is_empty())
            .map(move |item| {
                let mut parts = item.split(':').map(str::parse::<u64>);
                let (Some(Ok(seq)), Some(Ok(len)), Some(Ok(hash_len)), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad(&format!(
                        "unreadable sequence number or length in {item:?}"
                    )));
                };
                let take = |len: u64, offset: &mut usize| {
                    let end = usize::try_from(len)
                        .ok()
                        .and_then(|len| offset.checked_add(len))
                        .filter(|&end| end <= self.bytes.len())
                        .ok_or_else(|| bad(&format!("entry {seq} runs past its range")))?;
                    let slice = &self.bytes[*offset..end];
                    *offset = end;
                    Ok::<_, LedgerError>(slice)
                };
                let entry = take(len, &mut offset)?;
                let hash = take(hash_len, &mut offset)?;
                Ok(StoredRow {
                    seq,
                    entry,
                    // A stored hash of the wrong length cannot match any recomputed one.
                    leaf_hash: hash.try_into().unwrap_or([0; 32]),
                })
            })
    }
}

/// The stored rows with `from <= seq < until`, packed.
async fn read_range(store: &Store, from: u64, until: u64) -> Result<Pack, LedgerError> {
    let sql = match store.engine() {
        Engine::Sqlite => PACK_SQLITE,
        Engine::Postgres => PACK_POSTGRES,
    };
    let row = sqlx::query::<Any>(sql)
        .bind(to_i64(from)?)
        .bind(to_i64(until)?)
        .fetch_one(store.pool())
        .await?;
    // No rows in the range: both aggregates are NULL.
    Ok(Pack {
        index: row.try_get::<Option<String>, _>(0)?.unwrap_or_default(),
        bytes: row.try_get::<Option<Vec<u8>>, _>(1)?.unwrap_or_default(),
    })
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
