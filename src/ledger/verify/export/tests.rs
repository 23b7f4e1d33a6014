//! An export verifies offline; each kind of tampering with it is caught.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::ledger::entry::tests::sample;
use crate::ledger::merkle::inclusion_proof;
use crate::ledger::verify::tests::Log;
use ring::signature::Ed25519KeyPair;

/// Exports entries `seqs` of a 20-entry log against its head at size 20.
fn export(log: &Log, seqs: &[u64]) -> Vec<String> {
    let sth = log.sths.last().unwrap();
    let mut lines = vec![sth_line(sth)];
    for &seq in seqs {
        let row = &log.rows[seq as usize];
        let lookup = |l: u8, i: u64| log.nodes.get(&(l, i)).copied();
        let proof = inclusion_proof(seq, sth.head.tree_size, lookup).unwrap();
        lines.push(entry_line(seq, &row.entry, &row.leaf_hash, &proof));
    }
    lines
}

fn check(lines: &[String], log: &Log) -> Result<ExportReport, ExportError> {
    verify_export(lines.join("\n").as_bytes(), &log.public_key())
}

#[test]
fn full_and_partial_exports_verify() {
    let log = Log::new(20, &[20]);
    let all: Vec<u64> = (0..20).collect();
    let report = check(&export(&log, &all), &log).unwrap();
    assert_eq!(
        (report.entries, report.tree_size, report.complete()),
        (20, 20, true)
    );
    assert_eq!(report.first_missing, None);
    let some = check(&export(&log, &[0, 1, 9, 19]), &log).unwrap();
    assert_eq!((some.entries, some.complete()), (4, false));
    assert_eq!(some.first_missing, Some(2));
    // A whole export with entries cut from its end is short too.
    let cut = check(&export(&log, &all[..17]), &log).unwrap();
    assert_eq!((cut.complete(), cut.first_missing), (false, Some(17)));
    let empty = check(&export(&log, &[]), &log).unwrap();
    assert_eq!((empty.entries, empty.first_missing), (0, Some(0)));
}

/// Rewrites the JSON field `key` of line `i` with `f`.
fn edit(lines: &mut [String], i: usize, key: &str, f: impl Fn(&str) -> String) {
    let mut v: serde_json::Value = serde_json::from_str(&lines[i]).unwrap();
    let old = v[key].as_str().unwrap().to_owned();
    v[key] = serde_json::Value::String(f(&old));
    lines[i] = v.to_string();
}

fn flip_hex(s: &str) -> String {
    let mut b = hex::decode(s).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    hex::encode(&b)
}

#[test]
fn tampering_is_caught() {
    let log = Log::new(20, &[20]);
    let good = export(&log, &[0, 5, 6, 19]);

    let mut t = good.clone();
    edit(&mut t, 2, "entry", flip_hex);
    assert!(matches!(
        check(&t, &log),
        Err(ExportError::LeafMismatch { seq: 5 })
    ));

    // Entry and its leaf hash both rewritten: only the proof catches it.
    let mut t = good.clone();
    let mut e = sample(5);
    e.purpose = "curiosity".into();
    let bytes = e.encode();
    edit(&mut t, 2, "entry", |_| hex::encode(&bytes));
    edit(&mut t, 2, "leaf_hash", |_| {
        hex::encode(&crate::ledger::merkle::leaf_hash(&bytes))
    });
    assert!(matches!(
        check(&t, &log),
        Err(ExportError::BadProof { seq: 5, .. })
    ));

    // An entry presented at another position.
    let mut t = good.clone();
    t[3] = t[3].replace("\"seq\":6", "\"seq\":7");
    assert!(matches!(
        check(&t, &log),
        Err(ExportError::SeqMismatch { seq: 7, found: 6 })
    ));

    let mut t = good.clone();
    let mut v: serde_json::Value = serde_json::from_str(&t[1]).unwrap();
    let p0 = v["proof"][0].as_str().unwrap().to_owned();
    v["proof"][0] = serde_json::Value::String(flip_hex(&p0));
    t[1] = v.to_string();
    assert!(matches!(
        check(&t, &log),
        Err(ExportError::BadProof { seq: 0, .. })
    ));

    let mut t = good.clone();
    t.swap(2, 3);
    assert!(matches!(
        check(&t, &log),
        Err(ExportError::NotIncreasing {
            line: 4,
            seq: 5,
            previous: 6
        })
    ));

    let mut t = good.clone();
    edit(&mut t, 0, "root_hash", flip_hex);
    assert!(matches!(
        check(&t, &log),
        Err(ExportError::Sth(SthError::BadSignature { size: 20 }))
    ));

    let other = Ed25519KeyPair::from_seed_unchecked(&[2; 32]).unwrap();
    let mut t = good.clone();
    t[0] = sth_line(&log.sths[0].head.sign(&other));
    assert!(matches!(
        check(&t, &log),
        Err(ExportError::Sth(SthError::UnknownKey { .. }))
    ));
}

#[test]
fn malformed_exports_are_rejected() {
    let log = Log::new(4, &[4]);
    let good = export(&log, &[0, 1]);
    assert!(matches!(
        check(&good[1..], &log),
        Err(ExportError::MissingSth)
    ));
    assert!(matches!(check(&[], &log), Err(ExportError::MissingSth)));
    let twice = vec![good[0].clone(), good[0].clone()];
    assert!(matches!(
        check(&twice, &log),
        Err(ExportError::DuplicateSth { line: 2 })
    ));
    let mut t = good.clone();
    t.push("{not json".into());
    assert!(matches!(
        check(&t, &log),
        Err(ExportError::Json { line: 4, .. })
    ));
    let mut t = good.clone();
    t[1] = t[1].replace("}", ",\"extra\":1}");
    assert!(matches!(
        check(&t, &log),
        Err(ExportError::Json { line: 2, .. })
    ));
    let mut t = good.clone();
    edit(&mut t, 1, "leaf_hash", |s| s[2..].to_owned());
    assert!(matches!(
        check(&t, &log),
        Err(ExportError::BadHex {
            line: 2,
            field: "leaf_hash"
        })
    ));
    let long = format!("{}\n{}", good[0], "x".repeat(MAX_LINE_BYTES as usize + 1));
    assert!(matches!(
        verify_export(long.as_bytes(), &log.public_key()),
        Err(ExportError::LineTooLong { line: 2 })
    ));
    let bad_utf8 = [good[0].as_bytes(), b"\n\xff\n"].concat();
    assert!(matches!(
        verify_export(bad_utf8.as_slice(), &log.public_key()),
        Err(ExportError::NotUtf8 { line: 2 })
    ));
    let mut t = good;
    edit(&mut t, 1, "entry", |s| format!("{s}zz"));
    assert!(matches!(
        check(&t, &log),
        Err(ExportError::BadHex {
            line: 2,
            field: "entry"
        })
    ));
}
