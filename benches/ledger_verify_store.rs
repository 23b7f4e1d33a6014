//! `credit-node ledger verify` end to end on SQLite (or PostgreSQL, see below):
//! [`audit::verify_store`] over a ledger of 200,000 entries written by the real writer, against
//! bare SHA-256 over the same entries' bytes in memory (the baseline), and beside reading
//! the same rows and columns (seq, entry, leaf hash) row by row through the same pool and
//! SHA-256-hashing each entry (how the audit read until it had the database pack ranges), in the
//! same run. The criterion bench `ledger_verify` measures the verifier's core over entries in
//! memory; this one adds the store: sqlx's row stream, decoding, the signed tree heads, the five
//! filter columns of each entry and the lookup by caller and subject (caught up before the
//! audits, as on a node).
//!
//! `cargo bench --bench ledger_verify_store` — prints a Markdown table for BENCHMARKS.md. With
//! `CN_BENCH_DATABASE_URL` naming a PostgreSQL server, the ledger is written to and audited in
//! a fresh database on it (dropped at the end) instead of a SQLite file, and audited once more
//! after `ANALYZE` (the statistics autovacuum gives a running node's tables).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use common::entry;
use credit_node::{
    ledger::{Ledger, LedgerSettings, audit},
    store::Store,
};
use futures_util::TryStreamExt;
use ring::signature::{Ed25519KeyPair, KeyPair};
use sqlx::{Any, Row};

mod common;
#[path = "common/postgres.rs"]
mod postgres;

const N: u64 = 200_000;
const CONCURRENCY: u64 = 64;
const RUNS: usize = 3;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let server = postgres::server();
    let url = match &server {
        Some(server) => postgres::fresh(server, "verify").await,
        None => format!("sqlite://{}", dir.path().join("v.db").display()),
    };
    let store = Store::open(&url).await.unwrap();
    let key = Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
    let public_key = key.public_key().as_ref().to_vec();
    let settings = LedgerSettings {
        sth_every_entries: 10_000,
        sth_interval_ms: 1_000,
        max_batch: 1024,
        lookup_every_ms: 0,
    };
    let ledger = Ledger::open(store.clone(), key, settings, || 1_790_000_000_000)
        .await
        .unwrap();
    let writers: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for n in (t..N).step_by(CONCURRENCY as usize) {
                    ledger.append(entry(n)).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    ledger.shutdown().await;
    // The lookup by caller and subject caught up, as a running node keeps it: the audit reads
    // and checks it too.
    assert_eq!(
        credit_node::ledger::lookup::catch_up(&store).await.unwrap(),
        N
    );

    let mut verify = Vec::new();
    let mut floor = Vec::new();
    let mut bare = Vec::new();
    let mut in_memory: Vec<Vec<u8>> = Vec::with_capacity(N as usize);
    for _ in 0..RUNS {
        let started = Instant::now();
        let report = audit::verify_store(&store, &public_key, |_| {})
            .await
            .unwrap();
        verify.push(started.elapsed().as_secs_f64());
        assert_eq!(report.entries, N);

        let started = Instant::now();
        let mut rows =
            sqlx::query::<Any>("SELECT entry, seq, leaf_hash FROM ledger_entries ORDER BY seq")
                .fetch(store.pool());
        let mut hashed = 0u64;
        while let Some(row) = rows.try_next().await.unwrap() {
            let bytes: Vec<u8> = row.get(0);
            let _s: i64 = row.get(1);
            let _h: Vec<u8> = row.get(2);
            std::hint::black_box(ring::digest::digest(&ring::digest::SHA256, &bytes));
            hashed += 1;
            if in_memory.len() < N as usize {
                in_memory.push(bytes);
            }
        }
        floor.push(started.elapsed().as_secs_f64());
        assert_eq!(hashed, N);

        let started = Instant::now();
        for bytes in &in_memory {
            std::hint::black_box(ring::digest::digest(&ring::digest::SHA256, bytes));
        }
        bare.push(started.elapsed().as_secs_f64());
    }
    // A fresh PostgreSQL table has no statistics until autovacuum analyzes it (within a minute
    // or so of the writes on a running node), and without them the planner sorts where an
    // index would do: the audit again once the tables are analyzed, as a node's would be.
    let mut analyzed = Vec::new();
    if server.is_some() {
        sqlx::query::<Any>("ANALYZE")
            .execute(store.pool())
            .await
            .unwrap();
        for _ in 0..RUNS {
            let started = Instant::now();
            let report = audit::verify_store(&store, &public_key, |_| {})
                .await
                .unwrap();
            analyzed.push(started.elapsed().as_secs_f64());
            assert_eq!(report.entries, N);
        }
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let rate = |v: &[f64]| N as f64 / best(v);
    let (verify, floor, bare) = (rate(&verify), rate(&floor), rate(&bare));
    let engine = if server.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("{N} entries in {engine}, best of {RUNS} runs each\n");
    println!("| case | entries/s | ratio to bare SHA-256 |");
    println!("| --- | --- | --- |");
    println!("| SHA-256 of each entry's bytes, in memory (baseline) | {bare:.0} | 1.00 |");
    println!(
        "| read seq, entry and leaf hash row by row through sqlx, SHA-256 the entry | {floor:.0} | {:.2} |",
        floor / bare
    );
    println!(
        "| `audit::verify_store` (`ledger verify`) | {verify:.0} | {:.2} |",
        verify / bare
    );
    if !analyzed.is_empty() {
        let analyzed = rate(&analyzed);
        println!(
            "| `audit::verify_store` (`ledger verify`) after `ANALYZE` | {analyzed:.0} | {:.2} |",
            analyzed / bare
        );
    }
    store.close().await;
    if let Some(server) = &server {
        postgres::drop(server, &url).await;
    }
}
