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
        EntryFilter, LedgerError, Page, committed_size, entries, fixed, inclusion_proof_on,
        latest_sth, sths, to_i64, to_u64,
    },
    verify::{StoredRow, Verifier, VerifyError, VerifyReport, entry_line, sth_line},
};
use crate::store::Store;

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
    // checked: reading through sqlx, not hashing, is what limits an audit.
    let fetch = |from: u64| {
        let store = store.clone();
        let until = from.saturating_add(RANGE).min(head_size);
        tokio::spawn(async move { read_range(&store, from, until).await })
    };
    let mut next = (head_size > 0).then(|| fetch(0));
    let mut from: u64 = 0;
    while let Some(reading) = next.take() {
        let rows = reading
            .await
            .map_err(|e| LedgerError::Unavailable(format!("reading the ledger: {e}")))??;
        from = from.saturating_add(RANGE);
        if from < head_size {
            next = Some(fetch(from));
        }
        for row in rows {
            verifier.push(row)?;
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

/// Entries read at a time by the audit.
const RANGE: u64 = 16_384;

/// The stored rows with `from <= seq < until`, in sequence order.
async fn read_range(
    store: &Store,
    from: u64,
    until: u64,
) -> Result<Vec<StoredRow<Vec<u8>>>, LedgerError> {
    let rows = sqlx::query::<Any>(
        "SELECT seq, entry, leaf_hash FROM ledger_entries WHERE seq >= $1 AND seq < $2 \
         ORDER BY seq",
    )
    .bind(to_i64(from)?)
    .bind(to_i64(until)?)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredRow {
                seq: to_u64(row.try_get::<i64, _>(0)?, "seq")?,
                entry: row.try_get::<Vec<u8>, _>(1)?,
                // A stored hash of the wrong length cannot match any recomputed one.
                leaf_hash: fixed(row.try_get::<Vec<u8>, _>(2)?, "leaf_hash").unwrap_or([0; 32]),
            })
        })
        .collect()
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
