//! Offline verification of a ledger export, for an auditor who holds only
//! the export file and the node's public key.
//!
//! Format: JSON Lines. The first line is the signed tree head every proof
//! is made against (sent once rather than repeated per entry):
//! `{"type":"sth","tree_size":N,"root_hash":HEX,"timestamp_ms":T,"key_id":HEX,"signature":HEX}`
//! then one line per exported entry, in increasing sequence order:
//! `{"type":"entry","seq":S,"entry":HEX,"leaf_hash":HEX,"proof":[HEX,...]}`.
//! An export may be a selection (say, one subject's entries); the report
//! says whether it covers the whole tree. Hex is lower-case on output and
//! accepted in either case.

use crate::ledger::entry::{DecodeError, Entry};
use crate::ledger::hex;
use crate::ledger::merkle::{Hash, VerifyProofError, leaf_hash, verify_inclusion};
use crate::ledger::sth::{SignedTreeHead, SthError, TreeHead};
use serde::Deserialize;
use std::io::{BufRead, Read};

/// Longest line accepted. An entry is a few hundred bytes; the bound stops
/// a hostile export from making the verifier buffer an endless line.
pub const MAX_LINE_BYTES: u64 = 1 << 20;

/// A line as parsed; private so serde stays at this edge.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    Sth {
        tree_size: u64,
        root_hash: String,
        timestamp_ms: i64,
        key_id: String,
        signature: String,
    },
    Entry {
        seq: u64,
        entry: String,
        leaf_hash: String,
        proof: Vec<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("reading line {line}: {source}")]
    Io {
        line: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line} is longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong { line: u64 },
    #[error("line {line} is not UTF-8")]
    NotUtf8 { line: u64 },
    #[error("line {line} is not a valid export line: {message}")]
    Json { line: u64, message: String },
    #[error("line {line}: field `{field}` is not valid hex of the right length")]
    BadHex { line: u64, field: &'static str },
    #[error("the export does not start with a signed tree head")]
    MissingSth,
    #[error("line {line}: a second signed tree head")]
    DuplicateSth { line: u64 },
    #[error("the export's tree head: {0}")]
    Sth(#[from] SthError),
    #[error("line {line}: entry {seq} does not follow entry {previous} in order")]
    NotIncreasing { line: u64, seq: u64, previous: u64 },
    #[error("entry {seq}: its bytes do not hash to the stated leaf hash")]
    LeafMismatch { seq: u64 },
    #[error("entry {seq} cannot be decoded: {reason}")]
    Undecodable { seq: u64, reason: DecodeError },
    #[error("line for entry {seq} holds an entry numbered {found}")]
    SeqMismatch { seq: u64, found: u64 },
    #[error("entry {seq}: inclusion proof rejected: {reason}")]
    BadProof { seq: u64, reason: VerifyProofError },
}

/// What a valid export proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Entries proven included.
    pub entries: u64,
    /// The tree head they are proven against.
    pub tree_size: u64,
    pub root_hash: Hash,
    /// The first sequence number below `tree_size` the export does not hold: a selection's
    /// first gap, or the entry cut out of what was meant to be a whole export.
    pub first_missing: Option<u64>,
}

impl ExportReport {
    /// True when the export holds every entry `0..tree_size`.
    pub fn complete(&self) -> bool {
        self.first_missing.is_none()
    }
}

/// The header line for `sth`.
pub fn sth_line(sth: &SignedTreeHead) -> String {
    format!(
        r#"{{"type":"sth","tree_size":{},"root_hash":"{}","timestamp_ms":{},"key_id":"{}","signature":"{}"}}"#,
        sth.head.tree_size,
        hex::encode(&sth.head.root_hash),
        sth.head.timestamp_ms,
        hex::encode(&sth.key_id),
        hex::encode(&sth.signature),
    )
}

/// One entry line. Numbers and hex need no JSON escaping, hence `format!`.
pub fn entry_line(seq: u64, entry: &[u8], leaf_hash: &Hash, proof: &[Hash]) -> String {
    let proof: Vec<String> = proof
        .iter()
        .map(|h| format!("\"{}\"", hex::encode(h)))
        .collect();
    format!(
        r#"{{"type":"entry","seq":{seq},"entry":"{}","leaf_hash":"{}","proof":[{}]}}"#,
        hex::encode(entry),
        hex::encode(leaf_hash),
        proof.join(","),
    )
}

/// Checks an export: the tree head's signature, then for every entry its
/// leaf hash recomputed from its bytes, its own sequence number, and its
/// inclusion proof against the tree head.
pub fn verify_export(reader: impl BufRead, public_key: &[u8]) -> Result<ExportReport, ExportError> {
    let mut sth: Option<SignedTreeHead> = None;
    let mut previous: Option<u64> = None;
    let mut entries = 0u64;
    let mut first_missing = None;
    let mut lines = BoundedLines { reader, line: 0 };
    while let Some(text) = lines.next_line()? {
        let line = lines.line;
        if text.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&text).map_err(|e| ExportError::Json {
            line,
            message: e.to_string(),
        })?;
        match (parsed, &sth) {
            (Line::Sth { .. }, Some(_)) => return Err(ExportError::DuplicateSth { line }),
            (Line::Entry { .. }, None) => return Err(ExportError::MissingSth),
            (sth_fields @ Line::Sth { .. }, None) => {
                let head = signed_head(sth_fields, line)?;
                head.verify(public_key)?;
                sth = Some(head);
            }
            (
                Line::Entry {
                    seq,
                    entry,
                    leaf_hash: stated,
                    proof,
                },
                Some(head),
            ) => {
                if let Some(previous) = previous.filter(|&p| seq <= p) {
                    return Err(ExportError::NotIncreasing {
                        line,
                        seq,
                        previous,
                    });
                }
                let bytes = hex::decode(&entry).ok_or(ExportError::BadHex {
                    line,
                    field: "entry",
                })?;
                let stated: Hash = hex_field(&stated, line, "leaf_hash")?;
                let proof = proof
                    .iter()
                    .map(|h| hex_field(h, line, "proof"))
                    .collect::<Result<Vec<Hash>, _>>()?;
                check_entry(seq, &bytes, &stated, &proof, &head.head)?;
                let expected = previous.map_or(0, |p| p + 1);
                if seq != expected {
                    first_missing.get_or_insert(expected);
                }
                previous = Some(seq);
                entries += 1;
            }
        }
    }
    let head = sth.ok_or(ExportError::MissingSth)?.head;
    // Entries are proven below `tree_size` and strictly increasing, so a gap is all that can
    // make an export short: in the middle, or after its last entry.
    let after_last = previous.map_or(0, |p| p + 1);
    if after_last < head.tree_size {
        first_missing.get_or_insert(after_last);
    }
    Ok(ExportReport {
        entries,
        tree_size: head.tree_size,
        root_hash: head.root_hash,
        first_missing,
    })
}

/// The signed tree head on the first line of `reader` (an export, or a file holding just its
/// first line), checked against `public_key`: a head kept away from the node's database, for
/// `ledger verify --sth` to hold the stored log to.
pub fn read_sth(reader: impl BufRead, public_key: &[u8]) -> Result<SignedTreeHead, ExportError> {
    let mut lines = BoundedLines { reader, line: 0 };
    while let Some(text) = lines.next_line()? {
        if text.trim().is_empty() {
            continue;
        }
        let line = lines.line;
        let parsed: Line = serde_json::from_str(&text).map_err(|e| ExportError::Json {
            line,
            message: e.to_string(),
        })?;
        let head = signed_head(parsed, line)?;
        head.verify(public_key)?;
        return Ok(head);
    }
    Err(ExportError::MissingSth)
}

/// The head of an `sth` line; any other line is [`ExportError::MissingSth`].
fn signed_head(parsed: Line, line: u64) -> Result<SignedTreeHead, ExportError> {
    let Line::Sth {
        tree_size,
        root_hash,
        timestamp_ms,
        key_id,
        signature,
    } = parsed
    else {
        return Err(ExportError::MissingSth);
    };
    Ok(SignedTreeHead {
        head: TreeHead {
            tree_size,
            root_hash: hex_field(&root_hash, line, "root_hash")?,
            timestamp_ms,
        },
        key_id: hex_field(&key_id, line, "key_id")?,
        signature: hex_field(&signature, line, "signature")?,
    })
}

/// `BufRead::lines` with a length bound per line.
struct BoundedLines<R> {
    reader: R,
    line: u64,
}

impl<R: BufRead> BoundedLines<R> {
    fn next_line(&mut self) -> Result<Option<String>, ExportError> {
        self.line += 1;
        let line = self.line;
        let mut buf = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| ExportError::Io { line, source })?;
        if read == 0 {
            return Ok(None);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if read as u64 > MAX_LINE_BYTES {
            return Err(ExportError::LineTooLong { line });
        }
        String::from_utf8(buf)
            .map(Some)
            .map_err(|_| ExportError::NotUtf8 { line })
    }
}

fn check_entry(
    seq: u64,
    bytes: &[u8],
    stated: &Hash,
    proof: &[Hash],
    head: &TreeHead,
) -> Result<(), ExportError> {
    let hash = leaf_hash(bytes);
    if hash != *stated {
        return Err(ExportError::LeafMismatch { seq });
    }
    let entry = Entry::decode(bytes).map_err(|reason| ExportError::Undecodable { seq, reason })?;
    if entry.seq != seq {
        return Err(ExportError::SeqMismatch {
            seq,
            found: entry.seq,
        });
    }
    verify_inclusion(seq, head.tree_size, &hash, proof, &head.root_hash)
        .map_err(|reason| ExportError::BadProof { seq, reason })
}

fn hex_field<const N: usize>(
    text: &str,
    line: u64,
    field: &'static str,
) -> Result<[u8; N], ExportError> {
    hex::decode_array(text).ok_or(ExportError::BadHex { line, field })
}

#[cfg(test)]
mod tests;
