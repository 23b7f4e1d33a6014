//! The core of `credit-node ledger verify`: a streaming audit of the whole
//! stored log against the node's signed tree heads (promise 6).
//!
//! What it trusts: only the ledger public key. Every leaf hash is
//! recomputed from the stored entry bytes — a stored hash is compared, never
//! used — because immudb's audit once passed after a stored value was
//! edited: it checked tree heads only. Then each entry is decoded and its
//! own sequence number must equal its position, the tree is rebuilt with a
//! [`CompactRange`] (O(log n) memory), and at every tree head's size the
//! recomputed root must equal the signed one. Failures are typed and the
//! first one in log order is reported.
//!
//! Architecture Invariant: no I/O of its own and no tonic, sqlx or tokio.
//! Storage feeds rows, either through [`verify`] with an iterator or by
//! driving a [`Verifier`] from an async stream; the export verifier reads
//! from whatever `BufRead` the CLI opens. The math never knows where rows
//! come from.

mod export;
#[cfg(test)]
pub(crate) mod tests;

pub use export::{
    ExportError, ExportReport, MAX_LINE_BYTES, entry_line, read_sth, sth_line, verify_export,
};

use crate::ledger::entry::{DecodeError, Entry};
use crate::ledger::filter::FilterFields;
use crate::ledger::merkle::{CompactRange, Hash, leaf_hash};
use crate::ledger::sth::{SignedTreeHead, SthError};

/// One stored ledger row as storage reads it.
#[derive(Clone, Debug)]
pub struct StoredRow<B> {
    /// The sequence-number column.
    pub seq: u64,
    /// The stored canonical entry bytes.
    pub entry: B,
    /// The stored leaf hash (checked, never trusted).
    pub leaf_hash: Hash,
}

impl<'a> StoredRow<&'a [u8]> {
    /// A row as a database column holds it: a stored hash of the wrong length becomes one no
    /// recomputed hash matches, so the verifier names the entry modified.
    pub fn from_columns(seq: u64, entry: &'a [u8], leaf_hash: &[u8]) -> Self {
        Self {
            seq,
            entry,
            leaf_hash: leaf_hash.try_into().unwrap_or([0; 32]),
        }
    }
}

/// The first thing found wrong, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("entry {seq} was modified: its bytes do not hash to its stored leaf hash")]
    ModifiedEntry { seq: u64 },
    #[error("entry {seq} cannot be decoded: {reason}")]
    Undecodable { seq: u64, reason: DecodeError },
    #[error("entry {expected_seq} is missing")]
    MissingEntry { expected_seq: u64 },
    #[error("position {seq} holds entry {found}: entries were reordered or renumbered")]
    Reordered { seq: u64, found: u64 },
    #[error("log has {have} entries but a signed tree head covers {sth_size}: truncated")]
    Truncated { have: u64, sth_size: u64 },
    #[error("tree head of size {size} is not signed by the ledger key: {reason}")]
    BadSthSignature { size: u64, reason: SthError },
    #[error("recomputed root at size {size} differs from the signed tree head")]
    RootMismatch { size: u64 },
    #[error("tree head #{index} (size {size}) goes back from size {previous_size} or in time")]
    NonMonotonicSth {
        index: usize,
        size: u64,
        previous_size: u64,
    },
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Root of the whole stored log.
    pub root: Hash,
    /// Signed tree heads whose signature and root were checked.
    pub sths_checked: usize,
    /// Size of the latest signed tree head (0 if none).
    pub signed_size: u64,
    /// Entries after the latest tree head: appended since it was signed,
    /// so not yet covered by a signature (normal between signing rounds).
    pub unsigned_tail: u64,
}

/// Push-style verifier, for storage layers that read rows from an async
/// stream: call [`Verifier::push`] per row in sequence order, then
/// [`Verifier::finish`].
pub struct Verifier<'k> {
    public_key: &'k [u8],
    tree: CompactRange,
    /// Tree heads in issuance order; sizes and times never decrease.
    sths: Vec<SignedTreeHead>,
    next_sth: usize,
}

impl<'k> Verifier<'k> {
    /// Takes the tree heads in the order they were issued and rejects a
    /// sequence that goes back in size or time: a log only grows.
    pub fn new(public_key: &'k [u8], sths: Vec<SignedTreeHead>) -> Result<Self, VerifyError> {
        for (index, pair) in sths.windows(2).enumerate() {
            let (prev, next) = (&pair[0].head, &pair[1].head);
            if next.tree_size < prev.tree_size || next.timestamp_ms < prev.timestamp_ms {
                return Err(VerifyError::NonMonotonicSth {
                    index: index + 1,
                    size: next.tree_size,
                    previous_size: prev.tree_size,
                });
            }
        }
        let mut v = Self {
            public_key,
            tree: CompactRange::new(),
            sths,
            next_sth: 0,
        };
        v.check_reached_sths()?;
        Ok(v)
    }

    /// Checks one row: position, stored hash against recomputed hash,
    /// decoding, the entry's own sequence number; then any tree head whose
    /// size this row completes.
    pub fn push(&mut self, row: StoredRow<impl AsRef<[u8]>>) -> Result<(), VerifyError> {
        self.push_fields(StoredRow {
            seq: row.seq,
            entry: row.entry.as_ref(),
            leaf_hash: row.leaf_hash,
        })
        .map(|_| ())
    }

    /// [`Verifier::push`] that lends out the checked entry's filter fields, so that storage
    /// can hold its copies of them (columns, lookup rows) to the entry at no extra decoding.
    pub fn push_fields<'b>(
        &mut self,
        row: StoredRow<&'b [u8]>,
    ) -> Result<FilterFields<'b>, VerifyError> {
        let seq = self.tree.size();
        if row.seq != seq {
            return Err(if row.seq > seq {
                VerifyError::MissingEntry { expected_seq: seq }
            } else {
                VerifyError::Reordered {
                    seq,
                    found: row.seq,
                }
            });
        }
        let bytes = row.entry;
        let hash = leaf_hash(bytes);
        if hash != row.leaf_hash {
            return Err(VerifyError::ModifiedEntry { seq });
        }
        // Same verdict as `Entry::decode`, without allocating.
        let (found, fields) = Entry::filter_fields(bytes)
            .map_err(|reason| VerifyError::Undecodable { seq, reason })?;
        if found != seq {
            return Err(VerifyError::Reordered { seq, found });
        }
        self.tree.push(hash);
        self.check_reached_sths()?;
        Ok(fields)
    }

    /// Entries accepted so far.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// Ends the audit: a tree head larger than the log means entries were
    /// cut off the tail after it was signed.
    pub fn finish(self) -> Result<VerifyReport, VerifyError> {
        let have = self.tree.size();
        if let Some(sth) = self.sths.get(self.next_sth) {
            // A forged head claiming a larger log is a forgery, not a
            // truncation: check the signature first.
            self.check_signature(sth)?;
            return Err(VerifyError::Truncated {
                have,
                sth_size: sth.head.tree_size,
            });
        }
        let signed_size = self.sths.last().map_or(0, |s| s.head.tree_size);
        Ok(VerifyReport {
            entries: have,
            root: self.tree.root(),
            sths_checked: self.sths.len(),
            signed_size,
            unsigned_tail: have - signed_size,
        })
    }

    fn check_reached_sths(&mut self) -> Result<(), VerifyError> {
        while let Some(sth) = self.sths.get(self.next_sth) {
            if sth.head.tree_size != self.tree.size() {
                return Ok(());
            }
            self.check_signature(sth)?;
            if sth.head.root_hash != self.tree.root() {
                return Err(VerifyError::RootMismatch {
                    size: sth.head.tree_size,
                });
            }
            self.next_sth += 1;
        }
        Ok(())
    }

    fn check_signature(&self, sth: &SignedTreeHead) -> Result<(), VerifyError> {
        sth.verify(self.public_key)
            .map_err(|reason| VerifyError::BadSthSignature {
                size: sth.head.tree_size,
                reason,
            })
    }
}

/// Verifies a whole stored log in one pass. `rows` must come in sequence
/// order (`ORDER BY seq`); `sths` in issuance order. `progress` is called
/// with the number of entries checked every `progress_every` entries
/// (0 disables it), so a long audit can show it is alive.
pub fn verify<B: AsRef<[u8]>>(
    rows: impl IntoIterator<Item = StoredRow<B>>,
    sths: Vec<SignedTreeHead>,
    public_key: &[u8],
    progress_every: u64,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, VerifyError> {
    let mut v = Verifier::new(public_key, sths)?;
    for row in rows {
        v.push(row)?;
        if progress_every != 0 && v.size() % progress_every == 0 {
            progress(v.size());
        }
    }
    v.finish()
}
