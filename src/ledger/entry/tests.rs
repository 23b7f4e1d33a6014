//! Canonical encoding: round trips, a pinned golden hash, strict rejection,
//! and no panic on any input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::ledger::hex;
use proptest::prelude::*;

/// A realistic query entry (≈ 200 bytes encoded), shared by other tests.
pub(crate) fn sample(seq: u64) -> Entry {
    Entry {
        seq,
        time_ms: 1_790_000_000_000 + seq as i64,
        query_id: [7; 16],
        caller: "spiffe://gd.gov.cn/dept/tax".into(),
        caller_cert_sha256: [0xab; 32],
        on_behalf_of: None,
        purpose: "licensing".into(),
        basis: "GB/T 2026-17 §4".into(),
        subject: "91350100M000100Y43".into(),
        requested_fields: vec!["penalty.decision_no".into(), "penalty.amount".into()],
        decisions: vec![
            FieldDecision {
                field: "penalty.decision_no".into(),
                decision: Decision::GrantedRaw,
            },
            FieldDecision {
                field: "penalty.amount".into(),
                decision: Decision::Withheld("not granted".into()),
            },
        ],
        outcome: Outcome::PartlyWithheld,
        response_sha256: [0x11; 32],
        forwarded: None,
    }
}

/// [`sample`] as the node that forwarded it records it, with the holding node's receipt.
pub(crate) fn forwarded_sample(seq: u64) -> Entry {
    Entry {
        forwarded: Some(Forwarded {
            node: "spiffe://bj.gov.cn/node/credit".into(),
            receipt: Some(UpstreamReceipt {
                seq: 77,
                leaf_hash: [0x22; 32],
                result_sha256: [0x33; 32],
                query_id: [0x44; 16],
            }),
        }),
        ..sample(seq)
    }
}

fn all_outcomes() -> Vec<Outcome> {
    vec![
        Outcome::Granted,
        Outcome::PartlyWithheld,
        Outcome::Denied {
            reason: "no grant".into(),
        },
        Outcome::Throttled {
            count: 42,
            window_start_ms: -5,
        },
        Outcome::Invalid {
            reason: "bad check character".into(),
        },
        Outcome::Review(Review {
            first_seq: 10,
            last_seq: 20,
            decision: ReviewDecision::Flagged,
            comment: "查询过于频繁".into(),
        }),
        Outcome::Alert {
            reason: "enumeration".into(),
        },
        Outcome::Administration(Administration {
            action: AdminAction::RestoreRecord,
            detail: "record 0a1b… restored on 2026-11-01".into(),
        }),
    ]
}

#[test]
fn every_outcome_round_trips() {
    for outcome in all_outcomes() {
        let mut e = sample(3);
        e.on_behalf_of = Some("spiffe://bj.gov.cn/dept/court".into());
        e.decisions.push(FieldDecision {
            field: "person.name".into(),
            decision: Decision::GrantedForm("mask-3-4".into()),
        });
        e.outcome = outcome;
        let bytes = e.encode();
        assert_eq!(bytes[0], FORMAT_V1);
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
    }
}

#[test]
fn a_forwarded_entry_is_v2_and_round_trips_with_or_without_the_receipt() {
    let with = forwarded_sample(3);
    let bytes = with.encode();
    assert_eq!(bytes[0], FORMAT_V2);
    // v1's bytes, then the node and the receipt.
    let v1 = sample(3).encode();
    assert_eq!(bytes[1..v1.len()], v1[1..]);
    assert_eq!(
        bytes.len(),
        v1.len() + 4 + "spiffe://bj.gov.cn/node/credit".len() + 1 + 88
    );
    assert_eq!(Entry::decode(&bytes).unwrap(), with);
    assert_eq!(Entry::validate(&bytes), Ok(3));

    let mut without = with;
    if let Some(f) = without.forwarded.as_mut() {
        f.receipt = None;
    }
    let bytes = without.encode();
    assert_eq!(bytes[0], FORMAT_V2);
    assert_eq!(Entry::decode(&bytes).unwrap(), without);
}

#[test]
fn a_query_refused_at_the_last_moment_keeps_where_it_went_and_the_other_nodes_receipt() {
    let mut e = forwarded_sample(4);
    let sent = e.forwarded.clone();
    e.refuse("quota: this caller has obtained records about its 1 distinct subjects".into());
    assert_eq!(e.response_sha256, [0; 32], "nothing sent");
    assert!(e.decisions.is_empty());
    // The other node answered and recorded it: this entry says so.
    assert_eq!(e.forwarded, sent);
    assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
}

#[test]
fn golden_encoding_is_pinned() {
    // If this changes, old ledgers no longer verify: add a new format byte
    // instead of changing v1 or v2.
    let e = forwarded_sample(5);
    assert_eq!(e.encode().len(), 292 + 4 + 30 + 1 + 88);
    assert_eq!(
        hex::encode(&e.leaf_hash()),
        "56151e1edcc31a80290840e342070aba01dca2166b2e909cf890f43e4185f9ce"
    );
    let e = sample(5);
    assert_eq!(e.encode().len(), 292);
    assert_eq!(
        hex::encode(&e.leaf_hash()),
        "ca328dc698be92ba8d46994992242cf29438e114cf8b6c3af974a21298522905"
    );
}

#[test]
fn strict_rejections() {
    let good = sample(1).encode();
    let check = |bytes: &[u8], want: DecodeError| {
        assert_eq!(Entry::decode(bytes), Err(want.clone()));
        assert_eq!(Entry::validate(bytes), Err(want));
    };

    check(&[], DecodeError::Empty);
    let mut v = good.clone();
    v[0] = 3;
    check(&v, DecodeError::UnknownFormat(3));
    // A v1 body read as v2 lacks where it was forwarded; a v2 body read as v1 has bytes over.
    let mut v = good.clone();
    v[0] = FORMAT_V2;
    check(
        &v,
        DecodeError::Truncated {
            field: "forwarded.node",
        },
    );
    let forwarded = forwarded_sample(1).encode();
    let mut v = forwarded.clone();
    v[0] = FORMAT_V1;
    check(
        &v,
        DecodeError::TrailingBytes {
            count: forwarded.len() - good.len(),
        },
    );
    // The receipt's option tag other than 0/1.
    let mut v = forwarded.clone();
    v[good.len() + 4 + "spiffe://bj.gov.cn/node/credit".len()] = 2;
    check(
        &v,
        DecodeError::BadTag {
            field: "forwarded.receipt",
            tag: 2,
        },
    );
    let mut v = good.clone();
    v.push(0);
    check(&v, DecodeError::TrailingBytes { count: 1 });
    // Caller length claims more bytes than there are.
    let mut v = good.clone();
    v[33..37].copy_from_slice(&u32::MAX.to_be_bytes());
    check(&v, DecodeError::Truncated { field: "caller" });
    // Caller text made invalid UTF-8.
    let mut v = good.clone();
    v[37] = 0xff;
    check(&v, DecodeError::NotUtf8 { field: "caller" });
    // Option tag other than 0/1.
    let caller_len = "spiffe://gd.gov.cn/dept/tax".len();
    let tag_at = 37 + caller_len + 32;
    let mut v = good.clone();
    v[tag_at] = 2;
    check(
        &v,
        DecodeError::BadTag {
            field: "on_behalf_of",
            tag: 2,
        },
    );
    // Every strict prefix is rejected, never accepted or panicking.
    for n in 0..good.len() {
        assert!(Entry::decode(&good[..n]).is_err(), "prefix {n} accepted");
    }
    // A reversed review range is not a review.
    let mut e = sample(1);
    e.outcome = Outcome::Review(Review {
        first_seq: 9,
        last_seq: 8,
        decision: ReviewDecision::Accepted,
        comment: String::new(),
    });
    check(
        &e.encode(),
        DecodeError::ReversedReview { first: 9, last: 8 },
    );
}

#[test]
fn forged_huge_count_does_not_allocate() {
    // A requested_fields count of 4 billion with no bytes behind it.
    let mut e = sample(1);
    e.requested_fields.clear();
    e.decisions.clear();
    let mut v = e.encode();
    let at = v.len() - 32 - 1 - 4 - 4; // before decisions count, outcome, digest
    v[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(Entry::decode(&v).is_err());
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[a-z./:]{0,30}"]
}

fn decision() -> impl Strategy<Value = Decision> {
    prop_oneof![
        Just(Decision::GrantedRaw),
        text().prop_map(Decision::GrantedForm),
        text().prop_map(Decision::Withheld),
    ]
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Granted),
        Just(Outcome::PartlyWithheld),
        text().prop_map(|reason| Outcome::Denied { reason }),
        (any::<u64>(), any::<i64>()).prop_map(|(count, window_start_ms)| Outcome::Throttled {
            count,
            window_start_ms
        }),
        text().prop_map(|reason| Outcome::Invalid { reason }),
        (any::<u64>(), any::<u64>(), 0u8..3, text()).prop_map(|(a, b, d, comment)| {
            Outcome::Review(Review {
                first_seq: a.min(b),
                last_seq: a.max(b),
                decision: [
                    ReviewDecision::Accepted,
                    ReviewDecision::Flagged,
                    ReviewDecision::Referred,
                ][usize::from(d)],
                comment,
            })
        }),
        text().prop_map(|reason| Outcome::Alert { reason }),
        (0u8..3, text()).prop_map(|(a, detail)| {
            Outcome::Administration(Administration {
                action: [
                    AdminAction::IngestRecords,
                    AdminAction::RestoreRecord,
                    AdminAction::RemoveFromList,
                ][usize::from(a)],
                detail,
            })
        }),
    ]
}

prop_compose! {
    fn entry()(
        seq: u64, time_ms: i64, query_id: [u8; 16], caller in text(),
        caller_cert_sha256: [u8; 32], on_behalf_of in proptest::option::of(text()),
        purpose in text(), basis in text(), subject in text(),
        requested_fields in proptest::collection::vec(text(), 0..4),
        decisions in proptest::collection::vec((text(), decision()), 0..4),
        outcome in outcome(), response_sha256: [u8; 32],
        forwarded in proptest::option::of(forwarded()),
    ) -> Entry {
        Entry {
            seq, time_ms, query_id, caller, caller_cert_sha256, on_behalf_of, purpose, basis,
            subject, requested_fields,
            decisions: decisions.into_iter().map(|(field, decision)| FieldDecision { field, decision }).collect(),
            outcome, response_sha256, forwarded,
        }
    }
}

prop_compose! {
    fn forwarded()(
        node in text(),
        receipt in proptest::option::of(
            (any::<u64>(), any::<[u8; 32]>(), any::<[u8; 32]>(), any::<[u8; 16]>())
        ),
    ) -> Forwarded {
        Forwarded {
            node,
            receipt: receipt.map(|(seq, leaf_hash, result_sha256, query_id)| UpstreamReceipt {
                seq, leaf_hash, result_sha256, query_id,
            }),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn round_trip(e in entry()) {
        let bytes = e.encode();
        prop_assert_eq!(Entry::validate(&bytes), Ok(e.seq));
        // The fields the audit holds the stored columns to are the decoded entry's.
        let (seq, fields) = Entry::filter_fields(&bytes).unwrap();
        prop_assert_eq!(seq, e.seq);
        prop_assert_eq!(fields, crate::ledger::filter::FilterFields::of(&e));
        prop_assert_eq!(Entry::decode(&bytes), Ok(e));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        prop_assert_eq!(Entry::validate(&bytes), Entry::decode(&bytes).map(|e| e.seq));
        if let Ok(e) = Entry::decode(&bytes) {
            prop_assert_eq!(e.encode(), bytes, "accepted a non-canonical encoding");
        }
    }

    /// Mutations of valid encodings reach deep into the decoder, where
    /// random bytes rarely get; whatever is accepted must be canonical.
    #[test]
    fn mutated_encodings_are_rejected_or_canonical(
        e in entry(), at in any::<prop::sample::Index>(), byte: u8, cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = e.encode();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        prop_assert_eq!(Entry::validate(&bytes), Entry::decode(&bytes).map(|e| e.seq));
        if let Ok(d) = Entry::decode(&bytes) {
            prop_assert_eq!(d.encode(), bytes.clone());
        }
        bytes.truncate(cut.index(bytes.len()));
        prop_assert_eq!(Entry::validate(&bytes), Entry::decode(&bytes).map(|e| e.seq));
        if let Ok(d) = Entry::decode(&bytes) {
            prop_assert_eq!(d.encode(), bytes);
        }
    }
}
