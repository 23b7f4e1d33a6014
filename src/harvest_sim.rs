//! The harvest simulation (design.md promise 7, measured): a real node over mutual TLS with
//! synthetic subjects, harvesters that try to copy it as fast as the node lets them, and a
//! legitimate department working beside them. It reports what the harvesters obtained, how soon
//! they were stopped, and how much of the legitimate work was refused — which must be nothing.
//!
//! Used by `credit-node harvest-sim`, by `demo`, and (at small scale) by the tests, so the
//! numbers in BENCHMARKS.md come from the same code the tests check.

use std::{
    collections::HashSet,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;
use tonic::{Code, transport::Channel};

use crate::{
    config::LoadedConfig,
    identifier::Uscc,
    identity::Kind,
    pki::{self, Layout, REGION_A, REGION_B},
    proto::{self, credit_query_client::CreditQueryClient},
    server::RunningNode,
};

/// The shape of one simulation run.
#[derive(Clone, Debug, Serialize)]
pub struct SimSettings {
    /// Synthetic records are generated for this many subjects (about half are organisations).
    pub subjects: u64,
    /// Distinct subjects per caller and day.
    pub quota: u64,
    /// Requests per second every caller may make, and its burst (also the harvester's batch).
    pub requests_per_second: u32,
    pub burst: u32,
    /// Certificates of the harvesting department, each driving its own worker.
    pub harvester_certs: usize,
    /// A harvester worker gives up after this many queries even if never refused.
    pub harvester_max_queries: u64,
    /// The legitimate department's rate and number of queries, over a caseload of this many
    /// subjects drawn Zipf-distributed (a few often, most rarely).
    pub legit_rate: u32,
    pub legit_queries: u32,
    pub legit_caseload: usize,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self {
            subjects: 20_000,
            quota: 500,
            requests_per_second: 100,
            burst: 50,
            harvester_certs: 3,
            harvester_max_queries: 100_000,
            legit_rate: 20,
            legit_queries: 300,
            legit_caseload: 200,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SimReport {
    pub settings: SimSettings,
    /// Organisations the node holds (what a harvester would want to copy).
    pub organisations: usize,
    /// A department with a leaked list of every organisation's code, several certificates,
    /// single queries and batches.
    pub list_harvester: HarvesterReport,
    /// A department counting through the identifier space.
    pub counting_harvester: HarvesterReport,
    pub legitimate: LegitReport,
    /// Enumeration alerts in the ledger at the end.
    pub alerts: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct HarvesterReport {
    pub identity: String,
    /// Requests sent (a batch is one).
    pub queries: u64,
    /// Distinct subjects it received at least one record about.
    pub subjects_obtained: u64,
    /// When it received its last new subject, from its start: how fast it was stopped.
    pub stopped_after_ms: u64,
    /// Requests (a batch is one) it sent until then.
    pub queries_until_stopped: u64,
    /// When the node refused it for good, from its start.
    pub ended_after_ms: u64,
    pub throttled: u64,
    pub quota_refused: u64,
    pub suspended_refused: u64,
    pub other_errors: u64,
    /// What ended it: "quota", "suspended", or "gave up".
    pub stopped_by: String,
}

#[derive(Debug, Default, Serialize)]
pub struct LegitReport {
    pub identity: String,
    pub queries: u64,
    pub refused: u64,
    pub refused_share: f64,
    pub distinct_subjects: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{0}")]
    Setup(String),
}

fn setup(e: impl std::fmt::Display) -> SimError {
    SimError::Setup(e.to_string())
}

/// The node's `[harvest]` section for `s`: every caller under the same limits.
fn harvest_toml(s: &SimSettings) -> String {
    format!(
        "[harvest]\nwindow = \"day\"\non_enumeration = \"suspend\"\n\n[harvest.default]\n\
         requests_per_second = {}\nburst = {}\ndistinct_subjects = {}\n",
        s.requests_per_second, s.burst, s.quota
    )
}

/// Runs the simulation in `work` (a fresh development PKI and SQLite database are made there).
pub async fn run(
    settings: SimSettings,
    work: &Path,
    progress: impl Fn(&str),
) -> Result<SimReport, SimError> {
    if settings.legit_caseload as u64 > settings.quota {
        return Err(SimError::Setup(format!(
            "legit caseload {} exceeds the quota {}: legitimate work would be refused by design",
            settings.legit_caseload, settings.quota
        )));
    }
    let _ = std::fs::remove_dir_all(work);
    std::fs::create_dir_all(work).map_err(setup)?;
    // The config names files by absolute path: it is resolved against its own folder.
    let work = &std::fs::canonicalize(work).map_err(setup)?;
    let layout = pki::generate(&work.join("pki")).map_err(setup)?;
    pki::write_signed_demo_catalog(&layout).map_err(setup)?;
    let config = work.join("node.toml");
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let toml =
        pki::node_config_toml_with_harvest(&layout, REGION_A, listen, &harvest_toml(&settings));
    std::fs::write(&config, toml).map_err(setup)?;
    let loaded = LoadedConfig::load(&config).map_err(setup)?;
    let node = crate::cli::serve::start(&loaded).await.map_err(setup)?;

    progress(&format!("generating {} subjects", settings.subjects));
    let organisations = load_records(&node, settings.subjects).await?;
    if organisations.len() < settings.legit_caseload {
        return Err(SimError::Setup(format!(
            "only {} organisations for a caseload of {}",
            organisations.len(),
            settings.legit_caseload
        )));
    }
    let endpoint = format!("https://127.0.0.1:{}", node.local_addr().port());
    let result = simulate(&settings, &layout, &endpoint, &organisations, progress).await;
    let alerts = count_alerts(&node).await;
    node.shutdown().await;
    let (list_harvester, counting_harvester, legitimate) = result?;
    Ok(SimReport {
        settings,
        organisations: organisations.len(),
        list_harvester,
        counting_harvester,
        legitimate,
        alerts,
    })
}

/// Synthetic records of region A's market regulator, straight into the store; returns the
/// organisations' codes (the subjects of registrations).
async fn load_records(node: &RunningNode, subjects: u64) -> Result<Vec<String>, SimError> {
    let state = node.state();
    let catalog = state.catalog();
    let today = state.clock().today();
    let records: Vec<_> =
        crate::gen_data::generate(catalog.catalog(), state.department(), subjects, 7, today)
            .collect();
    for chunk in records.chunks(5_000) {
        state
            .store()
            .insert_records(
                chunk,
                catalog.catalog().subject_types(),
                state.clock().now_ms(),
            )
            .await
            .map_err(setup)?;
    }
    let mut organisations: Vec<String> = records
        .iter()
        .filter(|r| r.item == "registration")
        .map(|r| r.subject.clone())
        .collect();
    organisations.sort_unstable();
    organisations.dedup();
    Ok(organisations)
}

async fn count_alerts(node: &RunningNode) -> u64 {
    use crate::ledger::store::{EntryFilter, OutcomeKind, Page};
    let filter = EntryFilter {
        outcome: Some(OutcomeKind::Alert),
        ..EntryFilter::default()
    };
    let page = Page {
        after: None,
        limit: 1_000,
    };
    match node.state().ledger().entries(&filter, page).await {
        Ok(page) => page.entries.len() as u64,
        Err(_) => 0,
    }
}

type Reports = (HarvesterReport, HarvesterReport, LegitReport);

async fn simulate(
    s: &SimSettings,
    layout: &Layout,
    endpoint: &str,
    organisations: &[String],
    progress: impl Fn(&str),
) -> Result<Reports, SimError> {
    let connect = |(cert, key): (PathBuf, PathBuf)| {
        let cas = [layout.ca_cert(REGION_A), layout.ca_cert(REGION_B)];
        let endpoint = endpoint.to_owned();
        async move {
            let cas: Vec<&Path> = cas.iter().map(PathBuf::as_path).collect();
            let tls = crate::client::tls_config_from_files(&cert, &key, &cas).map_err(setup)?;
            let channel = crate::client::connect(&endpoint, tls)
                .await
                .map_err(setup)?;
            Ok::<_, SimError>(CreditQueryClient::new(channel))
        }
    };

    // The list harvester: region B's tax bureau, several certificates of the one identity.
    let mut list_clients = Vec::new();
    for i in 0..s.harvester_certs.max(1) {
        let files = if i == 0 {
            layout.identity(REGION_B, Kind::Dept, "tax")
        } else {
            pki::issue_another(layout, REGION_B, Kind::Dept, "tax", &format!("client{i}"))
                .map_err(setup)?
        };
        list_clients.push(connect(files).await?);
    }
    let counting_client = connect(layout.identity(REGION_B, Kind::Dept, "eco")).await?;
    let legit_client = connect(layout.identity(REGION_A, Kind::Dept, "court")).await?;

    progress("harvesters and the legitimate workload running");
    let start = Instant::now();
    let list_run = {
        let shared = Arc::new(Shared::new(start));
        let workers: Vec<_> = list_clients
            .into_iter()
            .enumerate()
            .map(|(i, client)| {
                let plan = if i % 2 == 1 {
                    Plan::Batches(s.burst.max(1) as usize)
                } else {
                    Plan::Singles
                };
                let targets = shuffled(organisations, 1 + i as u64);
                harvest(
                    client,
                    plan,
                    targets,
                    s.harvester_max_queries,
                    shared.clone(),
                )
            })
            .collect();
        async move {
            futures_util::future::join_all(workers).await;
            Arc::try_unwrap(shared)
                .map(Shared::into_report)
                .unwrap_or_default()
        }
    };
    let counting_run = {
        let shared = Arc::new(Shared::new(start));
        let base = organisations.first().cloned().unwrap_or_default();
        let targets = counting_from(&base, s.harvester_max_queries);
        let worker = harvest(
            counting_client,
            Plan::Singles,
            targets,
            s.harvester_max_queries,
            shared.clone(),
        );
        async move {
            worker.await;
            Arc::try_unwrap(shared)
                .map(Shared::into_report)
                .unwrap_or_default()
        }
    };
    let caseload = &organisations[..s.legit_caseload];
    let legit_run = legitimate(legit_client, caseload, s.legit_rate, s.legit_queries);
    let (mut list, mut counting, mut legit) = tokio::join!(list_run, counting_run, legit_run);
    list.identity = format!("spiffe://{REGION_B}/dept/tax");
    counting.identity = format!("spiffe://{REGION_B}/dept/eco");
    legit.identity = format!("spiffe://{REGION_A}/dept/court");
    Ok((list, counting, legit))
}

/// The organisations in a fixed pseudo-random order (each worker its own).
fn shuffled(organisations: &[String], seed: u64) -> Vec<String> {
    let mut next = crate::identifier::splitmix64(seed);
    let mut v = organisations.to_vec();
    for i in (1..v.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// Codes counted upwards from `base`'s first 10 characters, each with a valid check character:
/// what a harvester walking the identifier space asks about.
pub fn counting_from(base: &str, n: u64) -> Vec<String> {
    let prefix: String = base.chars().take(10).collect();
    (0..n.min(1_000_000))
        .filter_map(|i| Uscc::complete(&format!("{prefix}{i:06}0")).ok())
        .map(|c| c.to_string())
        .collect()
}

/// One harvester on one connection, as `demo` shows it: `targets` asked about `batch` at a time
/// (1: single queries), as fast as the node allows, until it refuses for good.
pub async fn run_harvester(
    client: CreditQueryClient<Channel>,
    targets: Vec<String>,
    batch: usize,
    identity: String,
) -> HarvesterReport {
    let shared = Arc::new(Shared::new(Instant::now()));
    let plan = if batch > 1 {
        Plan::Batches(batch)
    } else {
        Plan::Singles
    };
    let max = targets.len() as u64;
    harvest(client, plan, targets, max, shared.clone()).await;
    let mut report = Arc::try_unwrap(shared)
        .map(Shared::into_report)
        .unwrap_or_default();
    report.identity = identity;
    report
}

enum Plan {
    Singles,
    Batches(usize),
}

/// What a harvester does after a refusal.
enum Next {
    /// Throttled: the same request again, as soon as the node allows.
    Retry(Duration),
    /// Some other error: on to the next target.
    Skip,
    /// Refused for good: quota used up, or suspended.
    Stop,
}

/// What a harvester's workers saw, merged.
struct Shared {
    start: Instant,
    inner: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    obtained: HashSet<String>,
    report: HarvesterReport,
}

impl Shared {
    fn new(start: Instant) -> Self {
        Self {
            start,
            inner: Mutex::new(Tally::default()),
        }
    }

    /// Counts one answered request and the subjects it disclosed records about.
    fn answered(&self, subjects_with_records: impl IntoIterator<Item = String>) {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.report.queries += 1;
        let mut new = false;
        for s in subjects_with_records {
            new |= t.obtained.insert(s);
        }
        if new {
            t.report.stopped_after_ms = self.start.elapsed().as_millis() as u64;
            t.report.queries_until_stopped = t.report.queries;
        }
    }

    /// Counts a refusal and says what the harvester does next.
    fn refused(&self, status: &tonic::Status) -> Next {
        let mut t = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        t.report.queries += 1;
        match status.code() {
            Code::ResourceExhausted if status.message().starts_with("rate limit") => {
                t.report.throttled += 1;
                let ms = status
                    .metadata()
                    .get("grpc-retry-pushback-ms")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(10);
                Next::Retry(Duration::from_millis(ms))
            }
            Code::ResourceExhausted => {
                t.report.quota_refused += 1;
                t.report.stopped_by = "quota".into();
                t.report.ended_after_ms = self.start.elapsed().as_millis() as u64;
                Next::Stop
            }
            Code::PermissionDenied => {
                t.report.suspended_refused += 1;
                t.report.stopped_by = "suspended".into();
                t.report.ended_after_ms = self.start.elapsed().as_millis() as u64;
                Next::Stop
            }
            _ => {
                t.report.other_errors += 1;
                Next::Skip
            }
        }
    }

    fn into_report(self) -> HarvesterReport {
        let t = self.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut report = t.report;
        report.subjects_obtained = t.obtained.len() as u64;
        if report.stopped_by.is_empty() {
            report.stopped_by = "gave up".into();
        }
        report
    }
}

/// One harvester worker: as fast as the rate limit lets it (it waits exactly as long as told),
/// until the node refuses it for good (quota or suspension) or it runs out of targets.
async fn harvest(
    mut client: CreditQueryClient<Channel>,
    plan: Plan,
    targets: Vec<String>,
    max_queries: u64,
    shared: Arc<Shared>,
) {
    let per_request = match plan {
        Plan::Singles => 1,
        Plan::Batches(n) => n,
    };
    let mut sent = 0u64;
    let mut chunks = targets.chunks(per_request);
    let mut current = chunks.next();
    while let Some(chunk) = current {
        if sent >= max_queries {
            break;
        }
        let outcome = if per_request == 1 {
            client.query(ask(&chunk[0])).await.map(|r| {
                let r = r.into_inner();
                vec![r]
            })
        } else {
            client
                .batch_query(batch(chunk))
                .await
                .map(|r| r.into_inner().answers)
        };
        sent += chunk.len() as u64;
        match outcome {
            Ok(answers) => {
                let got = answers.into_iter().filter_map(|a| {
                    let result = a.result?;
                    (!result.records.is_empty()).then_some(result.subject)
                });
                shared.answered(got);
                current = chunks.next();
            }
            Err(status) => match shared.refused(&status) {
                Next::Retry(wait) => tokio::time::sleep(wait).await,
                Next::Skip => current = chunks.next(),
                Next::Stop => return,
            },
        }
    }
}

/// The legitimate department: Zipf-distributed subjects of its caseload, at its rate.
async fn legitimate(
    mut client: CreditQueryClient<Channel>,
    caseload: &[String],
    rate: u32,
    queries: u32,
) -> LegitReport {
    let zipf = Zipf::new(caseload.len());
    let mut next = crate::identifier::splitmix64(99);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    // A department's caseload keeps its pace: after a stall (a busy machine) it goes on at its
    // rate rather than firing the missed queries at once, which is a burst no caseload makes
    // and the rate limit would rightly throttle.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut report = LegitReport::default();
    let mut seen = HashSet::new();
    for _ in 0..queries {
        tick.tick().await;
        let subject = &caseload[zipf.sample(next())];
        seen.insert(subject.clone());
        let mut request = ask(subject);
        request.purpose = "enforcement".into();
        request.basis_reference = "（2026）浙0106执123号".into();
        report.queries += 1;
        if client.query(request).await.is_err() {
            report.refused += 1;
        }
    }
    report.distinct_subjects = seen.len() as u64;
    report.refused_share = report.refused as f64 / report.queries.max(1) as f64;
    report
}

/// Zipf with exponent 1 over ranks `0..n`, by inverse transform on the cumulative weights.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|rank| {
                total += 1.0 / rank as f64;
                total
            })
            .collect();
        Self { cumulative }
    }

    fn sample(&self, random: u64) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let u = (random >> 11) as f64 / (1u64 << 53) as f64 * total;
        self.cumulative
            .partition_point(|&c| c < u)
            .min(self.cumulative.len() - 1)
    }
}

fn ask(subject: &str) -> proto::QueryRequest {
    proto::QueryRequest {
        subject: subject.to_owned(),
        subject_type: proto::SubjectType::LegalPerson.into(),
        items: vec![proto::ItemSelection {
            item: "registration".into(),
            fields: vec![],
        }],
        purpose: "public-procurement".into(),
        basis_reference: "政府采购项目 ZC-2026-118".into(),
        node: String::new(),
    }
}

fn batch(subjects: &[String]) -> proto::BatchQueryRequest {
    let one = ask("");
    proto::BatchQueryRequest {
        subjects: subjects.to_vec(),
        subject_type: one.subject_type,
        items: one.items,
        purpose: one.purpose,
        basis_reference: one.basis_reference,
        node: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_low_ranks_and_stays_in_range() {
        let z = Zipf::new(100);
        let mut next = crate::identifier::splitmix64(1);
        let mut counts = [0u32; 100];
        for _ in 0..10_000 {
            counts[z.sample(next())] += 1;
        }
        assert!(counts[0] > counts[9] && counts[9] > counts[99]);
        assert_eq!(z.sample(u64::MAX), 99);
        assert_eq!(z.sample(0), 0);
    }

    #[test]
    fn counting_codes_are_valid_and_consecutive() {
        let codes = counting_from("91330106MA2B3C4D5E", 3);
        assert_eq!(codes.len(), 3);
        for c in &codes {
            Uscc::parse(c).unwrap();
        }
    }
}
