//! Allocation-free validation for the audit's hot loop.
//!
//! `ledger verify` must check that every stored entry decodes and carries
//! its own position, at a million entries a second; building a full
//! [`Entry`](super::Entry) allocates a dozen strings per entry. This walks
//! the same grammar as the decoder (through the same [`Reader`]) but only
//! borrows. A property test holds it to the decoder: for any bytes,
//! `validate(b) == decode(b).map(|e| e.seq)`, errors included. It also
//! lends out the fields listings select by, so that the audit can compare
//! them with their stored copies at no extra cost.

use super::DecodeError;
use super::reader::Reader;
use super::{FORMAT_V1, FORMAT_V2};
use crate::ledger::filter::{FilterFields, OutcomeKind};

/// Validates canonical entry bytes exactly as `Entry::decode` would and
/// returns the entry's own sequence number and its filter fields.
pub(super) fn validate(bytes: &[u8]) -> Result<(u64, FilterFields<'_>), DecodeError> {
    let (&format, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if format != FORMAT_V1 && format != FORMAT_V2 {
        return Err(DecodeError::UnknownFormat(format));
    }
    let mut r = Reader(rest);
    let seq = r.u64("seq")?;
    let time_ms = r.i64("time_ms")?;
    r.array::<16>("query_id")?;
    let caller = r.str_ref("caller")?;
    r.array::<32>("caller_cert_sha256")?;
    match r.u8("on_behalf_of")? {
        0 => {}
        1 => {
            r.str_ref("on_behalf_of")?;
        }
        tag => {
            return Err(DecodeError::BadTag {
                field: "on_behalf_of",
                tag,
            });
        }
    }
    let purpose = r.str_ref("purpose")?;
    r.str_ref("basis")?;
    let subject = r.str_ref("subject")?;
    for _ in 0..r.u32("requested_fields")? {
        r.str_ref("requested_fields")?;
    }
    for _ in 0..r.u32("decisions")? {
        r.str_ref("decisions.field")?;
        match r.u8("decisions.decision")? {
            0 => {}
            1 => {
                r.str_ref("decisions.form")?;
            }
            2 => {
                r.str_ref("decisions.reason")?;
            }
            tag => {
                return Err(DecodeError::BadTag {
                    field: "decisions.decision",
                    tag,
                });
            }
        }
    }
    let outcome = outcome(&mut r)?;
    r.array::<32>("response_sha256")?;
    if format == FORMAT_V2 {
        r.str_ref("forwarded.node")?;
        match r.u8("forwarded.receipt")? {
            0 => {}
            1 => {
                r.u64("forwarded.receipt.seq")?;
                r.array::<32>("forwarded.receipt.leaf_hash")?;
                r.array::<32>("forwarded.receipt.result_sha256")?;
                r.array::<16>("forwarded.receipt.query_id")?;
            }
            tag => {
                return Err(DecodeError::BadTag {
                    field: "forwarded.receipt",
                    tag,
                });
            }
        }
    }
    if !r.0.is_empty() {
        return Err(DecodeError::TrailingBytes { count: r.0.len() });
    }
    let fields = FilterFields {
        caller,
        subject,
        purpose,
        outcome,
        time_ms,
    };
    Ok((seq, fields))
}

fn outcome(r: &mut Reader<'_>) -> Result<OutcomeKind, DecodeError> {
    let tag = r.u8("outcome")?;
    match tag {
        0 | 1 => {}
        2 | 4 | 6 => {
            r.str_ref("outcome.reason")?;
        }
        3 => {
            r.u64("outcome.count")?;
            r.i64("outcome.window_start_ms")?;
        }
        5 => {
            let first = r.u64("review.first_seq")?;
            let last = r.u64("review.last_seq")?;
            if first > last {
                return Err(DecodeError::ReversedReview { first, last });
            }
            match r.u8("review.decision")? {
                0..=2 => {}
                tag => {
                    return Err(DecodeError::BadTag {
                        field: "review.decision",
                        tag,
                    });
                }
            }
            r.str_ref("review.comment")?;
        }
        7 => {
            match r.u8("administration.action")? {
                0..=2 => {}
                tag => {
                    return Err(DecodeError::BadTag {
                        field: "administration.action",
                        tag,
                    });
                }
            }
            r.str_ref("administration.detail")?;
        }
        tag => {
            return Err(DecodeError::BadTag {
                field: "outcome",
                tag,
            });
        }
    }
    // The tags of `codec::encode_outcome` are the indexes of `OutcomeKind::ALL`.
    OutcomeKind::ALL
        .get(usize::from(tag))
        .copied()
        .ok_or(DecodeError::BadTag {
            field: "outcome",
            tag,
        })
}
