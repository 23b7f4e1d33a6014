//! Query throughput over mutual TLS against WhoAmI (the bare mTLS round trip through the same
//! node), at concurrency 1 and 64, in the same run. Every Query is appended to the durable
//! ledger (group commit) before it is answered, exactly as in production.
//!
//! Two nodes over two SQLite files: one with the anti-harvesting guard on (limits so high that
//! nothing is refused: what is measured is the cost of checking, rate limit and quota read or
//! charge on every query), one with `harvest.enabled = false`. Two workloads: first contact
//! (every query about a subject the caller has not asked about before: the quota is charged in
//! the store) and repeats (subjects already counted: the quota costs no database work). Each
//! guarded case runs right after the same case on the unguarded node.
//!
//! `cargo bench --bench query_load` — prints a Markdown table for BENCHMARKS.md.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use credit_node::{
    catalog::Catalog,
    cli::serve,
    client,
    config::LoadedConfig,
    gen_data,
    identity::Kind,
    ledger::store::{AppendWaits, Ledger},
    pki::{self, REGION_A},
    proto::{self, credit_query_client::CreditQueryClient},
};
use tonic::transport::Channel;

const SUBJECTS: u64 = 100_000;
const RUN: Duration = Duration::from_secs(3);
const CONNECTIONS: usize = 4;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(run());
}

async fn run() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let layout = pki::generate(&dir.path().join("pki")).unwrap_or_else(|e| panic!("{e}"));
    pki::write_signed_demo_catalog(&layout).unwrap_or_else(|e| panic!("{e}"));
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut nodes = Vec::new();
    for (name, harvest) in [("guarded", GUARDED), ("unguarded", UNGUARDED)] {
        let config = dir.path().join(format!("{name}.toml"));
        // The ledger's lookup catches up every second: the steady cost of indexing falls
        // inside each 3 s case (the default, every 5 s, would hit some cases and not others).
        let toml = pki::node_config_toml_with_harvest(&layout, REGION_A, listen, harvest)
            .replace(&format!("{REGION_A}.db"), &format!("{name}.db"))
            .replace("[ledger]\n", "[ledger]\nlookup_every_ms = 1000\n");
        std::fs::write(&config, toml).unwrap_or_else(|e| panic!("{e}"));
        let loaded = LoadedConfig::load(&config).unwrap_or_else(|e| panic!("{e}"));
        nodes.push(
            serve::start(&loaded)
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }

    let catalog = Catalog::parse("demo.toml", credit_node::catalog::DEMO.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let today = nodes[0].state().clock().today();
    let records: Vec<_> = gen_data::generate(&catalog, "samr", SUBJECTS, 3, today).collect();
    for node in &nodes {
        node.state()
            .store()
            .insert_records(&records, 1)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let subjects: Arc<Vec<String>> = Arc::new(
        records
            .iter()
            .filter(|r| r.item == "registration")
            .map(|r| r.subject.clone())
            .collect(),
    );

    let (cert, key) = layout.identity(REGION_A, Kind::Dept, "tax");
    let ca = layout.ca_cert(REGION_A);
    let tls = client::tls_config_from_files(&cert, &key, &[&ca]).unwrap_or_else(|e| panic!("{e}"));
    let mut channels = Vec::new();
    for node in &nodes {
        let endpoint = format!("https://127.0.0.1:{}", node.local_addr().port());
        let mut of_node = Vec::new();
        for _ in 0..CONNECTIONS {
            of_node.push(
                client::connect(&endpoint, tls.clone())
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        channels.push(of_node);
    }
    let (guarded, unguarded) = (&channels[0], &channels[1]);

    println!(
        "{} records, {} subjects with a registration; {CONNECTIONS} connections; {} s per case\n",
        records.len(),
        subjects.len(),
        RUN.as_secs()
    );
    println!(
        "| concurrency | case | requests/s | p50 | p99 | ratio to WhoAmI | ratio to guard off |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    // Subjects from `fresh` on have never been asked about; the first 256 are asked about in
    // the first run, so they are counted from then on.
    let mut fresh = 0usize;
    let known = Arc::new(subjects[..256].to_vec());
    let (guarded_ledger, unguarded_ledger) = (nodes[0].state().ledger(), nodes[1].state().ledger());
    let mut waits = Vec::new();
    for concurrency in [1usize, 64] {
        settle(&nodes).await;
        let whoami = load(
            guarded,
            guarded_ledger,
            concurrency,
            subjects.clone(),
            0,
            false,
        )
        .await;
        settle(&nodes).await;
        let off_new = load(
            unguarded,
            unguarded_ledger,
            concurrency,
            subjects.clone(),
            fresh,
            true,
        )
        .await;
        settle(&nodes).await;
        let on_new = load(
            guarded,
            guarded_ledger,
            concurrency,
            subjects.clone(),
            fresh,
            true,
        )
        .await;
        fresh += on_new.count;
        assert!(
            fresh < subjects.len(),
            "more subjects needed for first contact"
        );
        settle(&nodes).await;
        let off_known = load(
            unguarded,
            unguarded_ledger,
            concurrency,
            known.clone(),
            0,
            true,
        )
        .await;
        settle(&nodes).await;
        let on_known = load(guarded, guarded_ledger, concurrency, known.clone(), 0, true).await;
        for (case, r) in [
            ("first contact, guard off", &off_new),
            ("first contact, guard on", &on_new),
            ("repeats, guard off", &off_known),
            ("repeats, guard on", &on_known),
        ] {
            waits.push((concurrency, case, r.mean, r.ledger_wait));
        }
        for (name, r, off) in [
            ("WhoAmI (baseline)", &whoami, &whoami),
            (
                "Query, first contact, anti-harvesting off",
                &off_new,
                &off_new,
            ),
            (
                "Query, first contact, anti-harvesting on",
                &on_new,
                &off_new,
            ),
            (
                "Query, repeats, anti-harvesting off",
                &off_known,
                &off_known,
            ),
            ("Query, repeats, anti-harvesting on", &on_known, &off_known),
        ] {
            println!(
                "| {concurrency} | {name} | {:.0} | {} µs | {} µs | {:.2} | {:.2} |",
                r.rate,
                r.p50,
                r.p99,
                r.rate / whoami.rate,
                r.rate / off.rate
            );
        }
    }
    println!(
        "\n| concurrency | Query | mean latency | mean wait for the ledger's commit | share of latency |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for (concurrency, case, mean, wait) in waits {
        println!(
            "| {concurrency} | {case} | {mean:.0} µs | {wait:.0} µs | {:.2} |",
            wait / mean
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}

/// Lets both nodes' ledger lookups catch up before a case, so that neither case pays for the
/// other node's backlog; during the case the measured node indexes its own, as in production.
async fn settle(nodes: &[credit_node::server::RunningNode]) {
    for node in nodes {
        credit_node::ledger::lookup::catch_up(node.state().store())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Limits no load of this benchmark reaches: the guard checks every query and refuses none.
const GUARDED: &str = "[harvest]\n[harvest.default]\nrequests_per_second = 10000000\n\
                       burst = 10000000\ndistinct_subjects = 10000000\n";
const UNGUARDED: &str = "[harvest]\nenabled = false\n";

struct Result {
    rate: f64,
    p50: u128,
    p99: u128,
    /// Mean latency, µs.
    mean: f64,
    /// Mean wait of the node's ledger appends for their commit during the run, µs.
    ledger_wait: f64,
    count: usize,
}

/// Mean wait per append between two readings, µs.
fn mean_wait(before: AppendWaits, after: AppendWaits) -> f64 {
    let appends = after.appends.saturating_sub(before.appends).max(1);
    (after.total.saturating_sub(before.total)).as_secs_f64() * 1e6 / appends as f64
}

async fn load(
    channels: &[Channel],
    ledger: &Ledger,
    concurrency: usize,
    subjects: Arc<Vec<String>>,
    offset: usize,
    query: bool,
) -> Result {
    let waits_before = ledger.append_waits();
    let started = Instant::now();
    let deadline = started + RUN;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut api = CreditQueryClient::new(channels[worker % channels.len()].clone());
        let subjects = subjects.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            // Worker w asks about offset + w, offset + w + concurrency, ...: no subject twice
            // within a run.
            let mut i = offset + worker;
            while Instant::now() < deadline {
                let t = Instant::now();
                if query {
                    let subject = subjects[i % subjects.len()].clone();
                    i += concurrency;
                    api.query(proto::QueryRequest {
                        subject,
                        subject_type: proto::SubjectType::LegalPerson.into(),
                        items: vec![proto::ItemSelection {
                            item: "registration".into(),
                            fields: vec![],
                        }],
                        purpose: "tax-administration".into(),
                        basis_reference: "bench".into(),
                    })
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                } else {
                    api.who_am_i(proto::WhoAmIRequest {})
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                latencies.push(t.elapsed().as_micros());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_else(|e| panic!("{e}")));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Result {
        rate: all.len() as f64 / elapsed,
        p50: pick(0.5),
        p99: pick(0.99),
        mean: all.iter().sum::<u128>() as f64 / all.len().max(1) as f64,
        ledger_wait: mean_wait(waits_before, ledger.append_waits()),
        count: all.len(),
    }
}
