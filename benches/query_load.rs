//! Query throughput over mutual TLS against WhoAmI (the bare mTLS round trip through the same
//! node), at concurrency 1 and 64, in the same run. Every Query is appended to the durable
//! ledger (group commit) before it is answered, exactly as in production.
//!
//! Two nodes over two SQLite files: one with the anti-harvesting guard on (limits so high that
//! nothing is refused: what is measured is the cost of checking, rate limit and quota read or
//! charge on every query), one with `harvest.enabled = false`. Two workloads: first contact
//! (every query about a subject the caller has not asked about before: the quota is charged in
//! the store) and repeats (subjects already counted: the quota costs no database work).
//!
//! The machine's speed drifts by more than the differences measured, so every case runs in
//! several short rounds, every other round in reverse order, and each figure is over all its
//! rounds; the guard's ratio is also printed round by round, to show its spread.
//!
//! `cargo bench --bench query_load` — prints a Markdown table for BENCHMARKS.md. With
//! `CN_BENCH_DATABASE_URL` naming a PostgreSQL server, both nodes store in fresh databases on it
//! (dropped at the end) instead of their SQLite files; everything else is the same.

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
    ledger::store::Ledger,
    pki::{self, REGION_A},
    proto::credit_query_client::CreditQueryClient,
};
use tonic::transport::Channel;

#[path = "common/nodes.rs"]
mod nodes;

#[path = "common/postgres.rs"]
mod postgres;

/// Enough organisations (about two in five subjects) for every first contact of every round,
/// on a fast day too: 250,000 ran out when Query reached 18,000 requests/s at concurrency 64.
const SUBJECTS: u64 = 500_000;
const RUN: Duration = Duration::from_millis(1500);
const ROUNDS: usize = 4;
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
    let server = postgres::server();
    let mut databases = Vec::new();
    let mut nodes = Vec::new();
    for (name, harvest) in [("guarded", GUARDED), ("unguarded", UNGUARDED)] {
        let config = dir.path().join(format!("{name}.toml"));
        // The ledger's lookup catches up every second: the steady cost of indexing falls
        // inside each 3 s case (the default, every 5 s, would hit some cases and not others).
        let mut toml = pki::node_config_toml_with_harvest(&layout, REGION_A, listen, harvest)
            .replace(&format!("{REGION_A}.db"), &format!("{name}.db"))
            .replace("[ledger]\n", "[ledger]\nlookup_every_ms = 1000\n");
        if let Some(server) = &server {
            let url = postgres::fresh(server, name).await;
            let sqlite = format!(
                "sqlite://{}",
                layout.root().join(format!("{name}.db")).display()
            );
            assert!(toml.contains(&sqlite), "the config names {sqlite}");
            toml = toml.replace(&sqlite, &url);
            databases.push(url);
        }
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
            .insert_records(&records, catalog.subject_types(), 1)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let subjects = nodes::registered(&records);

    let (cert, key) = layout.identity(REGION_A, Kind::Dept, "tax");
    let ca = layout.ca_cert(REGION_A);
    let tls = client::tls_config_from_files(&cert, &key, &[&ca]).unwrap_or_else(|e| panic!("{e}"));
    let mut channels = Vec::new();
    for node in &nodes {
        channels.push(nodes::connections(node, &tls, CONNECTIONS).await);
    }
    let (guarded, unguarded) = (&channels[0], &channels[1]);

    if server.is_some() {
        println!("Both nodes' stores on PostgreSQL, in fresh databases\n");
    }
    println!(
        "{} records, {} subjects with a registration; {CONNECTIONS} connections; {ROUNDS} rounds \
         of {} s per case, every other round in reverse order\n",
        records.len(),
        subjects.len(),
        RUN.as_secs_f64()
    );
    // The repeats ask about the first 256 subjects, asked about once on each node before any
    // case runs, so they are counted from then on; subjects from `fresh` on have never been
    // asked about. (They were counted by the first round's first contact, which on a slow day
    // at concurrency 1 asked about fewer than 256 and stopped the bench.)
    let known = Arc::new(subjects[..256].to_vec());
    let mut fresh = known.len();
    let ledgers = [nodes[0].state().ledger(), nodes[1].state().ledger()];
    for (channels, ledger) in [guarded, unguarded].into_iter().zip(ledgers) {
        let asked = load(channels, ledger, known.len(), &known, 0, true, Some(1)).await;
        assert_eq!(
            asked.latencies.len(),
            known.len(),
            "every known subject asked once"
        );
    }
    let mut tables = Vec::new();
    let mut round_ratios = Vec::new();
    for concurrency in [1usize, 64] {
        let mut runs: [Vec<Run>; CASES.len()] = Default::default();
        for round in 0..ROUNDS {
            // Each case runs as often first as last: whatever one case leaves behind (a
            // checkpoint due, dirty pages being written back) burdens each side alike.
            let mut order: Vec<usize> = (0..CASES.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            let mut most = 0;
            for case in order {
                let Case {
                    guarded: on,
                    load: what,
                    ..
                } = CASES[case];
                let node = usize::from(!on);
                let (channels, ledger) = ([guarded, unguarded][node], ledgers[node]);
                settle(&nodes).await;
                let run = match what {
                    Load::WhoAmI => {
                        load(channels, ledger, concurrency, &subjects, 0, false, None).await
                    }
                    Load::FirstContact => {
                        load(channels, ledger, concurrency, &subjects, fresh, true, None).await
                    }
                    Load::Repeats => {
                        load(channels, ledger, concurrency, &known, 0, true, None).await
                    }
                };
                if let Load::FirstContact = what {
                    most = most.max(run.latencies.len());
                }
                runs[case].push(run);
            }
            fresh += most;
            assert!(
                fresh < subjects.len(),
                "more subjects needed for first contact"
            );
            round_ratios.push((concurrency, round, runs.each_ref().map(|r| r[round].rate())));
        }
        tables.push((concurrency, runs.map(|r| Summary::of(&r))));
    }

    println!(
        "| concurrency | case | requests/s | p50 | p99 | ratio to WhoAmI | ratio to guard off |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (concurrency, summaries) in &tables {
        let whoami = summaries[0].rate;
        for (case, s) in CASES.iter().zip(summaries) {
            let off = summaries[case.against].rate;
            println!(
                "| {concurrency} | {} | {:.0} | {} µs | {} µs | {:.2} | {:.2} |",
                case.name,
                s.rate,
                s.p50,
                s.p99,
                s.rate / whoami,
                s.rate / off
            );
        }
    }
    println!("\nGuard on / off, round by round (requests/s of the round's two runs):\n");
    println!("| concurrency | round | first contact | repeats | Query first contact / WhoAmI |");
    println!("| --- | --- | --- | --- | --- |");
    for (concurrency, round, rates) in round_ratios {
        println!(
            "| {concurrency} | {} | {:.2} | {:.2} | {:.2} |",
            round + 1,
            rates[2] / rates[1],
            rates[4] / rates[3],
            rates[1] / rates[0]
        );
    }
    println!(
        "\n| concurrency | Query | mean latency | until durable | share | until running again | share |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (concurrency, summaries) in &tables {
        for (case, s) in CASES.iter().zip(summaries).skip(1) {
            println!(
                "| {concurrency} | {} | {:.0} µs | {:.0} µs | {:.2} | {:.0} µs | {:.2} |",
                case.short,
                s.mean,
                s.durable_wait,
                s.durable_wait / s.mean,
                s.ledger_wait,
                s.ledger_wait / s.mean
            );
        }
    }
    for node in nodes {
        node.shutdown().await;
    }
    if let Some(server) = &server {
        for url in &databases {
            postgres::drop(server, url).await;
        }
    }
}

#[derive(Clone, Copy)]
enum Load {
    WhoAmI,
    FirstContact,
    Repeats,
}

#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    short: &'static str,
    guarded: bool,
    load: Load,
    /// The case this one's "ratio to guard off" is taken against (itself for a baseline).
    against: usize,
}

/// In the order of a forward round; the round-by-round table indexes them by position.
const CASES: [Case; 5] = [
    Case {
        name: "WhoAmI (baseline)",
        short: "WhoAmI",
        guarded: true,
        load: Load::WhoAmI,
        against: 0,
    },
    Case {
        name: "Query, first contact, anti-harvesting off",
        short: "first contact, guard off",
        guarded: false,
        load: Load::FirstContact,
        against: 1,
    },
    Case {
        name: "Query, first contact, anti-harvesting on",
        short: "first contact, guard on",
        guarded: true,
        load: Load::FirstContact,
        against: 1,
    },
    Case {
        name: "Query, repeats, anti-harvesting off",
        short: "repeats, guard off",
        guarded: false,
        load: Load::Repeats,
        against: 3,
    },
    Case {
        name: "Query, repeats, anti-harvesting on",
        short: "repeats, guard on",
        guarded: true,
        load: Load::Repeats,
        against: 3,
    },
];

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

/// One timed run of one case.
struct Run {
    /// Of every request, µs.
    latencies: Vec<u128>,
    elapsed: f64,
    /// Ledger appends answered during the run, and their waits for the commit.
    appends: u64,
    waited: Duration,
    /// Of those, the ones committed, and their waits until the writer's COMMIT returned.
    committed: u64,
    durable: Duration,
}

impl Run {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed
    }
}

/// A case over all its rounds.
struct Summary {
    rate: f64,
    p50: u128,
    p99: u128,
    /// Mean latency, µs.
    mean: f64,
    /// Mean wait of the node's ledger appends for their answer, µs.
    ledger_wait: f64,
    /// Mean wait of the node's ledger appends until their COMMIT returned, µs.
    durable_wait: f64,
}

impl Summary {
    fn of(runs: &[Run]) -> Self {
        let mut all: Vec<u128> = runs
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        all.sort_unstable();
        let pick = |q: f64| {
            all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        let appends = runs.iter().map(|r| r.appends).sum::<u64>().max(1);
        let waited: Duration = runs.iter().map(|r| r.waited).sum();
        let committed = runs.iter().map(|r| r.committed).sum::<u64>().max(1);
        let durable: Duration = runs.iter().map(|r| r.durable).sum();
        Summary {
            rate: all.len() as f64 / runs.iter().map(|r| r.elapsed).sum::<f64>(),
            p50: pick(0.5),
            p99: pick(0.99),
            mean: all.iter().sum::<u128>() as f64 / all.len().max(1) as f64,
            ledger_wait: waited.as_secs_f64() * 1e6 / appends as f64,
            durable_wait: durable.as_secs_f64() * 1e6 / committed as f64,
        }
    }
}

/// `concurrency` workers asking for `RUN`, or each `times` times when given.
async fn load(
    channels: &[Channel],
    ledger: &Ledger,
    concurrency: usize,
    subjects: &Arc<Vec<String>>,
    offset: usize,
    query: bool,
    times: Option<usize>,
) -> Run {
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
            while times.map_or(Instant::now() < deadline, |n| latencies.len() < n) {
                let t = Instant::now();
                if query {
                    let subject = subjects[i % subjects.len()].clone();
                    i += concurrency;
                    nodes::query(&mut api, subject, "").await;
                } else {
                    nodes::who_am_i(&mut api).await;
                }
                latencies.push(t.elapsed().as_micros());
            }
            latencies
        }));
    }
    let latencies = nodes::joined(tasks).await;
    let elapsed = started.elapsed().as_secs_f64();
    let waits = ledger.append_waits();
    Run {
        latencies,
        elapsed,
        appends: waits.appends.saturating_sub(waits_before.appends),
        waited: waits.total.saturating_sub(waits_before.total),
        committed: waits.committed.saturating_sub(waits_before.committed),
        durable: waits.durable.saturating_sub(waits_before.durable),
    }
}
