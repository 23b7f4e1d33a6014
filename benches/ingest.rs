//! Ingest throughput: our pipeline against a bare sqlx batched insert of the same rows, in the
//! same run, on SQLite (and PostgreSQL when DATABASE_URL is set).
//!
//! `cargo bench --bench ingest` — prints a Markdown table for BENCHMARKS.md.

use std::time::Instant;

use credit_node::{
    catalog::Catalog,
    gen_data,
    ingest::{Format, Rows, load},
    records::Record,
    store::Store,
};
use sqlx::{Any, Executor};

const SUBJECTS: u64 = 50_000;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(run());
}

async fn run() {
    let catalog = Catalog::parse("demo.toml", credit_node::catalog::DEMO.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let today = time::macros::date!(2026 - 11 - 23);
    let records: Vec<Record> = gen_data::generate(&catalog, "samr", SUBJECTS, 1, today).collect();
    let jsonl: String = records
        .iter()
        .map(|r| gen_data::to_json_line(r) + "\n")
        .collect();
    let rows = records.len() as f64;
    println!(
        "{} records of {SUBJECTS} subjects ({} bytes of JSON Lines)\n",
        records.len(),
        jsonl.len()
    );
    println!("| engine | case | rows/s | ratio to bare insert |");
    println!("| --- | --- | --- | --- |");

    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut targets = vec![(
        "sqlite",
        format!("sqlite://{}", dir.path().join("x.db").display()),
    )];
    if let Ok(url) = std::env::var("DATABASE_URL") {
        targets.push(("postgres", url));
    }
    for (engine, url) in targets {
        let mut results = Vec::new();
        for case in ["bare", "store", "pipeline"] {
            let store = fresh_store(engine, &url, dir.path(), case).await;
            // The validating thread owns its input, as the CLI's owns its file.
            let input = std::io::Cursor::new(jsonl.clone().into_bytes());
            let started = Instant::now();
            match case {
                "bare" => bare_insert(&store, &records).await,
                "store" => {
                    store
                        .insert_records(&records, catalog.subject_types(), 1)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                _ => {
                    let parsed = Rows::from_reader(Format::JsonLines, input);
                    let (_, staged) = load::validate_and_stage(
                        &store,
                        catalog.clone(),
                        "samr".into(),
                        today,
                        parsed,
                        1,
                        u64::MAX,
                        |_| {},
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                    staged.commit().await.unwrap_or_else(|e| panic!("{e}"));
                }
            }
            let secs = started.elapsed().as_secs_f64();
            results.push((case, rows / secs));
            store.close().await;
        }
        let bare = results[0].1;
        for (case, rate) in results {
            let label = match case {
                "bare" => "bare sqlx multi-row INSERT, one transaction (baseline)",
                "store" => "`Store::insert_records` (idempotent, subjects upserted)",
                _ => {
                    "`ingest`: parse JSON Lines + validate against the catalog + insert, overlapped"
                }
            };
            println!("| {engine} | {label} | {rate:.0} | {:.2} |", rate / bare);
        }
    }
}

/// A fresh database per case, so no case finds the previous one's rows.
async fn fresh_store(engine: &str, url: &str, dir: &std::path::Path, case: &str) -> Store {
    if engine == "sqlite" {
        return Store::open(&format!(
            "sqlite://{}",
            dir.join(format!("{case}.db")).display()
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let store = Store::open(url).await.unwrap_or_else(|e| panic!("{e}"));
    store
        .pool()
        .execute("TRUNCATE records, subjects")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    store
}

/// The baseline: the same rows into the same table, one transaction, multi-row INSERT
/// statements of the same size, no conflict handling, no subject rows.
async fn bare_insert(store: &Store, records: &[Record]) {
    const CHUNK: usize = 1000;
    store
        .pool()
        .execute("DROP TABLE IF EXISTS bare")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The same table as `records`: same columns, keys, constraints and index.
    let ddl = match store.engine() {
        credit_node::store::Engine::Sqlite => include_str!("../migrations/sqlite/0001_records.sql"),
        credit_node::store::Engine::Postgres => {
            include_str!("../migrations/postgres/0001_records.sql")
        }
    };
    let ddl = ddl
        .split("CREATE TABLE records")
        .nth(1)
        .unwrap_or_else(|| panic!("records DDL"))
        .replace(
            "CREATE INDEX records_by_subject ON records",
            "CREATE INDEX bare_by_subject ON bare",
        )
        .replace(" REFERENCES subjects(id)", "");
    store
        .pool()
        .execute(format!("CREATE TABLE bare{ddl}").as_str())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut tx = store.pool().begin().await.unwrap_or_else(|e| panic!("{e}"));
    for chunk in records.chunks(CHUNK) {
        let mut sql = String::from(
            "INSERT INTO bare (record_key, subject_id, item_id, fields, basis_kind, basis_number, basis_date, basis_issuer, decision_date, ingested_ms) VALUES ",
        );
        store
            .engine()
            .placeholders()
            .tuples(&mut sql, chunk.len(), 10);
        let mut q = sqlx::query::<Any>(&sql);
        for r in chunk {
            q = q
                .bind(r.key().to_vec())
                .bind(r.subject.clone())
                .bind(r.item.clone())
                .bind(serde_json::to_string(&r.fields).unwrap_or_default())
                .bind(r.basis.kind.clone())
                .bind(r.basis.number.clone())
                .bind(r.basis.date.to_string())
                .bind(r.basis.issuer.clone())
                .bind(r.decision_date.to_string())
                .bind(1_i64);
        }
        q.execute(&mut *tx).await.unwrap_or_else(|e| panic!("{e}"));
    }
    tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
}
