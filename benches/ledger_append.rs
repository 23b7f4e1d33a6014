//! Durable appends per second at concurrency 64: group commit (the writer takes up to
//! `max_batch` queued appends per transaction) against one transaction per entry
//! (`max_batch = 1`, same code path), on SQLite (a temp file, WAL, synchronous=FULL) and, when
//! DATABASE_URL is set, PostgreSQL (synchronous_commit=on). Both modes run in the same
//! process, one after the other, so each ratio compares like with like.
//!
//! A second table: group commit where each append also charges a new subject to its caller's
//! distinct-subject quota, as an anti-harvesting first contact does (`Ledger::append_charged`),
//! against plain group commit in the same run: what the quota charge costs the ledger.
//!
//! `cargo bench --bench ledger_append` (env: LEDGER_BENCH_SECONDS, default 5 per case).
//! A custom harness rather than criterion: one "iteration" is thousands of concurrent appends
//! against a database whose size grows, which criterion's model does not fit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::entry;
use credit_node::{
    harvest::QuotaCharge,
    ledger::{Ledger, LedgerSettings},
    store::Store,
};

mod common;
use ring::signature::Ed25519KeyPair;

const CONCURRENCY: usize = 64;

/// Appends/s over `seconds` with 64 appenders, each awaiting its durable receipt; `charged`:
/// each append charges a subject never asked about before.
async fn run(store: Store, max_batch: usize, seconds: f64, charged: bool) -> f64 {
    let key = Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
    let settings = LedgerSettings {
        sth_every_entries: 10_000,
        sth_interval_ms: 1_000,
        max_batch,
        // As a node runs: the lookup catches up beside the appends.
        lookup_every_ms: 5_000,
    };
    let ledger = Ledger::open(store, key, settings, || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    })
    .await
    .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let (ledger, done, stop) = (ledger.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = t as u64;
                while !stop.load(Ordering::Relaxed) {
                    if charged {
                        let mut entry = entry(n);
                        entry.subject = format!("9135010{n:011}");
                        let charge = QuotaCharge {
                            caller: entry.caller.clone(),
                            window: 1,
                            subjects: vec![entry.subject.clone()],
                            limit: u64::MAX / 2,
                            raised_suspension: false,
                        };
                        let reason = Box::new(|c: &[_]| format!("{c:?}"));
                        let (outcome, _) = ledger
                            .append_charged(vec![charge], vec![entry], reason)
                            .await
                            .unwrap();
                        assert_eq!(outcome, [credit_node::harvest::Charge::Within]);
                    } else {
                        ledger.append(entry(n)).await.unwrap();
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    n += CONCURRENCY as u64;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    ledger.shutdown().await;
    rate
}

async fn postgres_store() -> Option<Store> {
    use sqlx::{Connection, Executor};
    let base = std::env::var("DATABASE_URL").ok()?;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&base).await.unwrap();
    let name = format!("credit_bench_{}", std::process::id());
    conn.execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
        .await
        .unwrap();
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let cut = base.rfind('/').unwrap();
    Some(
        Store::open(&format!("{}/{name}", &base[..cut]))
            .await
            .unwrap(),
    )
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing: run briefly then.
    let benching = std::env::args().any(|a| a == "--bench");
    let seconds: f64 = std::env::var("LEDGER_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if benching { 5.0 } else { 0.2 });
    let dir = tempfile::tempdir().unwrap();
    let mut results = Vec::new();
    for (i, max_batch) in [(0, 1024), (1, 1)] {
        let path = dir.path().join(format!("bench{i}.db"));
        let store = Store::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        results.push((
            "sqlite",
            max_batch,
            run(store, max_batch, seconds, false).await,
        ));
    }
    let mut charged = Vec::new();
    for (i, charge) in [(2, true), (3, false)] {
        let path = dir.path().join(format!("bench{i}.db"));
        let store = Store::open(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        charged.push(("sqlite", charge, run(store, 1024, seconds, charge).await));
    }
    for max_batch in [1024, 1] {
        match postgres_store().await {
            Some(store) => results.push((
                "postgres",
                max_batch,
                run(store, max_batch, seconds, false).await,
            )),
            None => {
                eprintln!("PostgreSQL skipped: DATABASE_URL is not set");
                break;
            }
        }
    }
    println!("| engine | mode | durable appends/s | ratio to one transaction per entry |");
    println!("| --- | --- | --- | --- |");
    for pair in results.chunks(2) {
        let baseline = pair[pair.len() - 1].2;
        for &(engine, max_batch, rate) in pair {
            let mode = if max_batch == 1 {
                "one transaction per entry".to_string()
            } else {
                format!("group commit (max_batch {max_batch})")
            };
            println!(
                "| {engine} | {mode} | {rate:.0} | {:.1} |",
                rate / baseline.max(f64::MIN_POSITIVE)
            );
        }
    }
    if let Some(store) = postgres_store().await {
        charged.push(("postgres", true, run(store, 1024, seconds, true).await));
        let store = postgres_store().await.unwrap();
        charged.push(("postgres", false, run(store, 1024, seconds, false).await));
    }
    println!();
    println!("| engine | group commit (max_batch 1024) | durable appends/s | ratio to plain |");
    println!("| --- | --- | --- | --- |");
    for pair in charged.chunks(2) {
        let baseline = pair[pair.len() - 1].2;
        for &(engine, charge, rate) in pair {
            let mode = if charge {
                "each charging a new subject to the quota"
            } else {
                "plain"
            };
            println!(
                "| {engine} | {mode} | {rate:.0} | {:.2} |",
                rate / baseline.max(f64::MIN_POSITIVE)
            );
        }
    }
}
