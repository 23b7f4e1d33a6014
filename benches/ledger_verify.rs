//! `verify` throughput (entries/s) against bare SHA-256 over the same bytes,
//! in the same run, so the number says how close to the hashing floor the
//! audit is. Target: ≥ 1,000,000 entries/s for ≈ 200-byte entries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use credit_node::ledger::entry::{Decision, Entry, FieldDecision, Outcome};
use credit_node::ledger::merkle::{CompactRange, leaf_hash};
use credit_node::ledger::sth::{SignedTreeHead, TreeHead};
use credit_node::ledger::verify::{StoredRow, verify};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ring::digest;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::hint::black_box;
use std::time::Duration;

const N: u64 = 200_000;
const STH_EVERY: u64 = 10_000;

fn entry(seq: u64) -> Entry {
    Entry {
        seq,
        time_ms: 1_790_000_000_000 + seq as i64,
        query_id: [7; 16],
        caller: "spiffe://gd.gov.cn/dept/tax".into(),
        caller_cert_sha256: [0xab; 32],
        on_behalf_of: None,
        purpose: "licensing".into(),
        basis: "doc-2026-17".into(),
        subject: "91350100M000100Y43".into(),
        requested_fields: vec!["penalty.amount".into()],
        decisions: vec![FieldDecision {
            field: "penalty.amount".into(),
            decision: Decision::GrantedRaw,
        }],
        outcome: Outcome::Granted,
        response_sha256: [0x11; 32],
        forwarded: None,
    }
}

fn build() -> (Vec<StoredRow<Vec<u8>>>, Vec<SignedTreeHead>, Vec<u8>) {
    let key = Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
    let mut tree = CompactRange::new();
    let mut rows = Vec::with_capacity(N as usize);
    let mut sths = Vec::new();
    for seq in 0..N {
        let bytes = entry(seq).encode();
        let hash = leaf_hash(&bytes);
        tree.push(hash);
        rows.push(StoredRow {
            seq,
            entry: bytes,
            leaf_hash: hash,
        });
        if tree.size().is_multiple_of(STH_EVERY) {
            let head = TreeHead {
                tree_size: tree.size(),
                root_hash: tree.root(),
                timestamp_ms: seq as i64,
            };
            sths.push(head.sign(&key));
        }
    }
    (rows, sths, key.public_key().as_ref().to_vec())
}

fn bench(c: &mut Criterion) {
    let (rows, sths, public_key) = build();
    let avg = rows.iter().map(|r| r.entry.len()).sum::<usize>() / rows.len();
    eprintln!("{N} entries, {avg} bytes each on average, a tree head every {STH_EVERY}");
    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("verify", |b| {
        b.iter(|| {
            let rows = rows.iter().map(|r| StoredRow {
                seq: r.seq,
                entry: r.entry.as_slice(),
                leaf_hash: r.leaf_hash,
            });
            verify(rows, sths.clone(), &public_key, 0, |_| {}).unwrap()
        })
    });
    g.bench_function("bare_sha256_of_entries", |b| {
        b.iter(|| {
            for r in &rows {
                black_box(digest::digest(&digest::SHA256, &r.entry));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
