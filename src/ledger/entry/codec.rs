//! Formats v1 and v2 of the canonical entry encoding.
//!
//! ```text
//! u8  format = 0x01 | 0x02
//! u64 seq | i64 time_ms | [16] query_id            (big-endian)
//! str caller | [32] caller_cert_sha256
//! u8 0|1 then str on_behalf_of
//! str purpose | str basis | str subject
//! u32 count, str*  requested_fields
//! u32 count, (str field, u8 tag, [str])*  decisions
//! u8 tag, payload  outcome
//! [32] response_sha256
//! v2 only, the query forwarded:
//! str node | u8 0|1 then (u64 seq, [32] leaf_hash, [32] result_sha256, [16] query_id)
//! ```
//! `str` is a u32 big-endian byte length then UTF-8. Tags outside their
//! enum, lengths past the end, and bytes after the last field are errors,
//! which is what makes the encoding canonical. An entry is v2 exactly when
//! it was forwarded, so v1 entries keep their bytes (and leaf hashes), and
//! no entry has two encodings.

use super::reader::Reader;
use super::{
    AdminAction, Administration, Decision, Entry, FieldDecision, Forwarded, Outcome, Review,
    ReviewDecision, UpstreamReceipt,
};

/// The leading format byte of an entry that was not forwarded.
pub const FORMAT_V1: u8 = 0x01;
/// The leading format byte of an entry of a forwarded query: v1, then where it went.
pub const FORMAT_V2: u8 = 0x02;

/// Why bytes are not a valid entry. `field` names where decoding stopped,
/// so `ledger verify` can say precisely what is wrong with a stored row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty input")]
    Empty,
    #[error("unknown entry format {0:#04x}")]
    UnknownFormat(u8),
    #[error("input ends inside field `{field}`")]
    Truncated { field: &'static str },
    #[error("invalid tag {tag} in field `{field}`")]
    BadTag { field: &'static str, tag: u8 },
    #[error("field `{field}` is not UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("review range {first}..={last} is reversed")]
    ReversedReview { first: u64, last: u64 },
    #[error("{count} trailing bytes after the entry")]
    TrailingBytes { count: usize },
}

pub(super) fn encode(e: &Entry) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(256));
    w.u8(match e.forwarded {
        None => FORMAT_V1,
        Some(_) => FORMAT_V2,
    });
    w.bytes(&e.seq.to_be_bytes());
    w.bytes(&e.time_ms.to_be_bytes());
    w.bytes(&e.query_id);
    w.str(&e.caller);
    w.bytes(&e.caller_cert_sha256);
    match &e.on_behalf_of {
        None => w.u8(0),
        Some(s) => {
            w.u8(1);
            w.str(s);
        }
    }
    w.str(&e.purpose);
    w.str(&e.basis);
    w.str(&e.subject);
    w.len(e.requested_fields.len());
    for f in &e.requested_fields {
        w.str(f);
    }
    w.len(e.decisions.len());
    for d in &e.decisions {
        w.str(&d.field);
        match &d.decision {
            Decision::GrantedRaw => w.u8(0),
            Decision::GrantedForm(form) => {
                w.u8(1);
                w.str(form);
            }
            Decision::Withheld(reason) => {
                w.u8(2);
                w.str(reason);
            }
        }
    }
    encode_outcome(&mut w, &e.outcome);
    w.bytes(&e.response_sha256);
    if let Some(forwarded) = &e.forwarded {
        w.str(&forwarded.node);
        match &forwarded.receipt {
            None => w.u8(0),
            Some(r) => {
                w.u8(1);
                w.bytes(&r.seq.to_be_bytes());
                w.bytes(&r.leaf_hash);
                w.bytes(&r.result_sha256);
                w.bytes(&r.query_id);
            }
        }
    }
    w.0
}

fn encode_outcome(w: &mut Writer, o: &Outcome) {
    match o {
        Outcome::Granted => w.u8(0),
        Outcome::PartlyWithheld => w.u8(1),
        Outcome::Denied { reason } => {
            w.u8(2);
            w.str(reason);
        }
        Outcome::Throttled {
            count,
            window_start_ms,
        } => {
            w.u8(3);
            w.bytes(&count.to_be_bytes());
            w.bytes(&window_start_ms.to_be_bytes());
        }
        Outcome::Invalid { reason } => {
            w.u8(4);
            w.str(reason);
        }
        Outcome::Review(r) => {
            w.u8(5);
            w.bytes(&r.first_seq.to_be_bytes());
            w.bytes(&r.last_seq.to_be_bytes());
            w.u8(match r.decision {
                ReviewDecision::Accepted => 0,
                ReviewDecision::Flagged => 1,
                ReviewDecision::Referred => 2,
            });
            w.str(&r.comment);
        }
        Outcome::Alert { reason } => {
            w.u8(6);
            w.str(reason);
        }
        Outcome::Administration(a) => {
            w.u8(7);
            w.u8(match a.action {
                AdminAction::IngestRecords => 0,
                AdminAction::RestoreRecord => 1,
                AdminAction::RemoveFromList => 2,
            });
            w.str(&a.detail);
        }
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, b: u8) {
        self.0.push(b);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// Lengths above u32::MAX cannot be produced by a real query (requests
    /// are size-capped long before); saturating keeps `encode` total, and
    /// the decoder would then reject the entry rather than misread it.
    fn len(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.bytes(&n.to_be_bytes());
    }
    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.bytes(s.as_bytes());
    }
}

pub(super) fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
    let (&format, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if format != FORMAT_V1 && format != FORMAT_V2 {
        return Err(DecodeError::UnknownFormat(format));
    }
    let mut r = Reader(rest);
    let mut entry = Entry {
        seq: r.u64("seq")?,
        time_ms: r.i64("time_ms")?,
        query_id: r.array("query_id")?,
        caller: r.str("caller")?,
        caller_cert_sha256: r.array("caller_cert_sha256")?,
        on_behalf_of: match r.u8("on_behalf_of")? {
            0 => None,
            1 => Some(r.str("on_behalf_of")?),
            tag => return Err(bad("on_behalf_of", tag)),
        },
        purpose: r.str("purpose")?,
        basis: r.str("basis")?,
        subject: r.str("subject")?,
        requested_fields: r.list("requested_fields", |r| r.str("requested_fields"))?,
        decisions: r.list("decisions", decode_decision)?,
        outcome: decode_outcome(&mut r)?,
        response_sha256: r.array("response_sha256")?,
        forwarded: None,
    };
    if format == FORMAT_V2 {
        entry.forwarded = Some(Forwarded {
            node: r.str("forwarded.node")?,
            receipt: match r.u8("forwarded.receipt")? {
                0 => None,
                1 => Some(UpstreamReceipt {
                    seq: r.u64("forwarded.receipt.seq")?,
                    leaf_hash: r.array("forwarded.receipt.leaf_hash")?,
                    result_sha256: r.array("forwarded.receipt.result_sha256")?,
                    query_id: r.array("forwarded.receipt.query_id")?,
                }),
                tag => return Err(bad("forwarded.receipt", tag)),
            },
        });
    }
    if !r.0.is_empty() {
        return Err(DecodeError::TrailingBytes { count: r.0.len() });
    }
    Ok(entry)
}

fn bad(field: &'static str, tag: u8) -> DecodeError {
    DecodeError::BadTag { field, tag }
}

fn decode_decision(r: &mut Reader<'_>) -> Result<FieldDecision, DecodeError> {
    let field = r.str("decisions.field")?;
    let decision = match r.u8("decisions.decision")? {
        0 => Decision::GrantedRaw,
        1 => Decision::GrantedForm(r.str("decisions.form")?),
        2 => Decision::Withheld(r.str("decisions.reason")?),
        tag => return Err(bad("decisions.decision", tag)),
    };
    Ok(FieldDecision { field, decision })
}

fn decode_outcome(r: &mut Reader<'_>) -> Result<Outcome, DecodeError> {
    Ok(match r.u8("outcome")? {
        0 => Outcome::Granted,
        1 => Outcome::PartlyWithheld,
        2 => Outcome::Denied {
            reason: r.str("outcome.reason")?,
        },
        3 => Outcome::Throttled {
            count: r.u64("outcome.count")?,
            window_start_ms: r.i64("outcome.window_start_ms")?,
        },
        4 => Outcome::Invalid {
            reason: r.str("outcome.reason")?,
        },
        5 => {
            let first_seq = r.u64("review.first_seq")?;
            let last_seq = r.u64("review.last_seq")?;
            if first_seq > last_seq {
                return Err(DecodeError::ReversedReview {
                    first: first_seq,
                    last: last_seq,
                });
            }
            let decision = match r.u8("review.decision")? {
                0 => ReviewDecision::Accepted,
                1 => ReviewDecision::Flagged,
                2 => ReviewDecision::Referred,
                tag => return Err(bad("review.decision", tag)),
            };
            Outcome::Review(Review {
                first_seq,
                last_seq,
                decision,
                comment: r.str("review.comment")?,
            })
        }
        6 => Outcome::Alert {
            reason: r.str("outcome.reason")?,
        },
        7 => {
            let action = match r.u8("administration.action")? {
                0 => AdminAction::IngestRecords,
                1 => AdminAction::RestoreRecord,
                2 => AdminAction::RemoveFromList,
                tag => return Err(bad("administration.action", tag)),
            };
            Outcome::Administration(Administration {
                action,
                detail: r.str("administration.detail")?,
            })
        }
        tag => return Err(bad("outcome", tag)),
    })
}
