//! What a query across regions costs: Query forwarded by region A's node to region B's node
//! that holds the records (`QueryRequest.node`), against the same Query asked of B directly, at
//! concurrency 1 and 64, in the same run. WhoAmI on A is printed beside them as the bare mTLS
//! round trip.
//!
//! A forwarded query is two recorded queries in series (B records it for the relay, then A
//! records it for its caller, each durably before answering), plus one more mTLS round trip
//! between the nodes. Both nodes run in this process on two SQLite files, with the
//! anti-harvesting guard off (what is measured is the hop, not the quota), and the callers ask
//! about subjects at random among those B holds. Cases alternate their order round by round.
//!
//! `cargo bench --bench forward_load` — prints a Markdown table for BENCHMARKS.md.

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
    pki::{self, REGION_A, REGION_B},
    proto::credit_query_client::CreditQueryClient,
    server::RunningNode,
};
use tonic::transport::Channel;

#[path = "common/nodes.rs"]
mod nodes;

const SUBJECTS: u64 = 20_000;
const RUN: Duration = Duration::from_millis(1500);
const ROUNDS: usize = 4;
const CONNECTIONS: usize = 4;
const UNGUARDED: &str = "[harvest]\nenabled = false\n";

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    runtime.block_on(run());
}

/// One node of `region`, its config's text passed through `edit`.
async fn node(
    layout: &pki::Layout,
    dir: &std::path::Path,
    region: &str,
    edit: impl FnOnce(String) -> String,
) -> RunningNode {
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let toml = pki::node_config_toml_with_harvest(layout, region, listen, UNGUARDED);
    let config = dir.join(format!("{region}.toml"));
    std::fs::write(&config, edit(toml)).unwrap_or_else(|e| panic!("{e}"));
    let loaded = LoadedConfig::load(&config).unwrap_or_else(|e| panic!("{e}"));
    serve::start(&loaded)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn run() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let layout = pki::generate(&dir.path().join("pki")).unwrap_or_else(|e| panic!("{e}"));
    pki::write_signed_demo_catalog(&layout).unwrap_or_else(|e| panic!("{e}"));
    let id_of = |region: &str, id: &str| format!("spiffe://{region}/dept/{id}");
    let (node_a, node_b) = (id_of(REGION_A, "samr"), id_of(REGION_B, "hrss"));
    let b = node(&layout, dir.path(), REGION_B, |toml| {
        format!("{toml}\n[interconnect]\nrelays = [\"{node_a}\"]\n")
    })
    .await;
    let port_b = b.local_addr().port();
    let a = node(&layout, dir.path(), REGION_A, |toml| {
        format!(
            "{toml}\n[[interconnect.route]]\nnode = \"{node_b}\"\n\
             address = \"127.0.0.1:{port_b}\"\ntimeout_ms = 10000\n"
        )
    })
    .await;

    let catalog = Catalog::parse("demo.toml", credit_node::catalog::DEMO.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let today = b.state().clock().today();
    let records: Vec<_> = gen_data::generate(&catalog, "samr", SUBJECTS, 3, today).collect();
    b.state()
        .store()
        .insert_records(&records, catalog.subject_types(), 1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let subjects = nodes::registered(&records);

    // Region A's tax bureau, which may call either node (both trust its CA).
    let (cert, key) = layout.identity(REGION_A, Kind::Dept, "tax");
    let cas = [layout.ca_cert(REGION_A), layout.ca_cert(REGION_B)];
    let ca_refs: Vec<&std::path::Path> = cas.iter().map(|p| p.as_path()).collect();
    let tls =
        client::tls_config_from_files(&cert, &key, &ca_refs).unwrap_or_else(|e| panic!("{e}"));
    let mut channels = Vec::new();
    for node in [&a, &b] {
        channels.push(nodes::connections(node, &tls, CONNECTIONS).await);
    }
    let cases: [(&str, &[Channel], Ask); 3] = [
        ("WhoAmI on A (baseline)", &channels[0], Ask::WhoAmI),
        (
            "Query of B, asked of B",
            &channels[1],
            Ask::Query(String::new()),
        ),
        (
            "Query of B, asked of A (forwarded)",
            &channels[0],
            Ask::Query(node_b.clone()),
        ),
    ];
    // Both routes warm: A's connection to B, and B's first answers.
    for (_, channels, ask) in &cases {
        load(channels, 1, &subjects, ask, Some(10)).await;
    }
    println!(
        "{} subjects with a registration at B; {CONNECTIONS} connections per node; {ROUNDS} \
         rounds of {} s per case, every other round in reverse order\n",
        subjects.len(),
        RUN.as_secs_f64()
    );
    println!("| concurrency | case | requests/s | p50 | p99 | ratio to asked of B |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for concurrency in [1usize, 64] {
        let mut latencies: [Vec<u128>; 3] = Default::default();
        let mut elapsed = [0f64; 3];
        for round in 0..ROUNDS {
            let mut order: Vec<usize> = (0..cases.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for case in order {
                let (_, channels, ask) = &cases[case];
                let started = Instant::now();
                latencies[case].extend(load(channels, concurrency, &subjects, ask, None).await);
                elapsed[case] += started.elapsed().as_secs_f64();
            }
        }
        let rates: Vec<f64> = (0..cases.len())
            .map(|case| latencies[case].len() as f64 / elapsed[case])
            .collect();
        let rate = |case: usize| rates[case];
        for (case, (name, ..)) in cases.iter().enumerate() {
            let all = &mut latencies[case];
            all.sort_unstable();
            let pick = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
            println!(
                "| {concurrency} | {name} | {:.0} | {} µs | {} µs | {:.2} |",
                rate(case),
                pick(0.5),
                pick(0.99),
                rate(case) / rate(1)
            );
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}

enum Ask {
    WhoAmI,
    /// A Query naming this node (empty: the node asked).
    Query(String),
}

/// `concurrency` workers asking for `RUN`, or each `times` times when given; the latencies,
/// µs.
async fn load(
    channels: &[Channel],
    concurrency: usize,
    subjects: &Arc<Vec<String>>,
    ask: &Ask,
    times: Option<usize>,
) -> Vec<u128> {
    let deadline = Instant::now() + RUN;
    let node = match ask {
        Ask::WhoAmI => None,
        Ask::Query(node) => Some(node.clone()),
    };
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut api = CreditQueryClient::new(channels[worker % channels.len()].clone());
        let (subjects, node) = (subjects.clone(), node.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(50_000);
            // A cheap spread over the subjects, different per worker.
            let mut i = worker.wrapping_mul(7919);
            while times.map_or(Instant::now() < deadline, |n| latencies.len() < n) {
                let t = Instant::now();
                match &node {
                    Some(node) => {
                        i = i
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let subject = subjects[(i >> 33) % subjects.len()].clone();
                        nodes::query(&mut api, subject, node).await;
                    }
                    None => nodes::who_am_i(&mut api).await,
                }
                latencies.push(t.elapsed().as_micros());
            }
            latencies
        }));
    }
    nodes::joined(tasks).await
}
