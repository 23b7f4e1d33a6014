//! Query throughput over mutual TLS against WhoAmI (the bare mTLS round trip through the same
//! node), at concurrency 1 and 64, in the same run. Every Query is appended to the durable
//! ledger (group commit) before it is answered, exactly as in production.
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
    pki::{self, REGION_A},
    proto::{self, credit_query_client::CreditQueryClient},
};
use tonic::transport::Channel;

const SUBJECTS: u64 = 10_000;
const RUN: Duration = Duration::from_secs(4);
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
    let config = dir.path().join("node.toml");
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    std::fs::write(&config, pki::node_config_toml(&layout, REGION_A, listen))
        .unwrap_or_else(|e| panic!("{e}"));
    let loaded = LoadedConfig::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let node = serve::start(&loaded)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let catalog = Catalog::parse("demo.toml", credit_node::catalog::DEMO.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let today = node.state().clock().today();
    let records: Vec<_> = gen_data::generate(&catalog, "samr", SUBJECTS, 3, today).collect();
    node.state()
        .store()
        .insert_records(&records, 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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
    let endpoint = format!("https://127.0.0.1:{}", node.local_addr().port());
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(
            client::connect(&endpoint, tls.clone())
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }

    println!(
        "{} records, {} subjects with a registration; {CONNECTIONS} connections; {} s per case\n",
        records.len(),
        subjects.len(),
        RUN.as_secs()
    );
    println!("| concurrency | case | requests/s | p50 | p99 | ratio to WhoAmI |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for concurrency in [1usize, 64] {
        let whoami = load(&channels, concurrency, subjects.clone(), false).await;
        let query = load(&channels, concurrency, subjects.clone(), true).await;
        for (name, r) in [
            ("WhoAmI (baseline)", &whoami),
            ("Query (registration, de-sensitized, ledgered)", &query),
        ] {
            println!(
                "| {concurrency} | {name} | {:.0} | {} µs | {} µs | {:.2} |",
                r.rate,
                r.p50,
                r.p99,
                r.rate / whoami.rate
            );
        }
    }
    node.shutdown().await;
}

struct Result {
    rate: f64,
    p50: u128,
    p99: u128,
}

async fn load(
    channels: &[Channel],
    concurrency: usize,
    subjects: Arc<Vec<String>>,
    query: bool,
) -> Result {
    let started = Instant::now();
    let deadline = started + RUN;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut api = CreditQueryClient::new(channels[worker % channels.len()].clone());
        let subjects = subjects.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut i = worker;
            while Instant::now() < deadline {
                let t = Instant::now();
                if query {
                    let subject = subjects[i % subjects.len()].clone();
                    i += 64;
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
    }
}
