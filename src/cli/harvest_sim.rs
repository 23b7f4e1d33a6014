//! `credit-node harvest-sim`: how well a node resists bulk harvesting, measured (see
//! [`crate::harvest_sim`]). A tidy report for people, `--json` for programs.

use std::path::PathBuf;

use super::CliError;
use crate::harvest_sim::{self, HarvesterReport, SimReport, SimSettings};

#[derive(clap::Args)]
pub struct Args {
    /// Folder for the simulation's PKI, config and database (emptied first).
    #[arg(long, default_value = "harvest-sim-work")]
    pub work: PathBuf,
    /// Synthetic subjects the node holds.
    #[arg(long, default_value_t = 20_000)]
    pub subjects: u64,
    /// Distinct subjects per caller and day.
    #[arg(long, default_value_t = 500)]
    pub quota: u64,
    /// Requests per second of every caller.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Burst of every caller (also the harvester's batch size).
    #[arg(long, default_value_t = 50)]
    pub burst: u32,
    /// Certificates the harvesting department uses at once.
    #[arg(long, default_value_t = 3)]
    pub harvester_certs: usize,
    /// Queries per second of the legitimate department.
    #[arg(long, default_value_t = 20)]
    pub legit_rate: u32,
    /// Queries the legitimate department makes.
    #[arg(long, default_value_t = 300)]
    pub legit_queries: u32,
    /// Subjects in the legitimate department's caseload.
    #[arg(long, default_value_t = 200)]
    pub legit_caseload: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    crate::logging::init(crate::config::LogFormat::Text, "error");
    let settings = SimSettings {
        subjects: args.subjects,
        quota: args.quota,
        requests_per_second: args.rate,
        burst: args.burst,
        harvester_certs: args.harvester_certs,
        legit_rate: args.legit_rate,
        legit_queries: args.legit_queries,
        legit_caseload: args.legit_caseload,
        ..SimSettings::default()
    };
    let report = harvest_sim::run(settings, &args.work, |step| eprintln!("… {step}"))
        .await
        .map_err(|e| CliError::Input(e.to_string()))?;
    if args.json {
        let json =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Runtime(e.to_string()))?;
        crate::outln!("{json}")?;
    } else {
        crate::out!("{}", render(&report))?;
    }
    Ok(())
}

/// The report as people read it.
pub fn render(r: &SimReport) -> String {
    let s = &r.settings;
    let mut out = format!(
        "Harvest simulation: {} organisations on the node; every caller: {} requests/s, burst {}, \
         {} distinct subjects per day.\n\n",
        r.organisations, s.requests_per_second, s.burst, s.quota
    );
    for (title, h) in [
        (
            format!(
                "List harvester ({} certificates, leaked list, singles and batches)",
                s.harvester_certs
            ),
            &r.list_harvester,
        ),
        (
            "Counting harvester (sequential codes)".to_owned(),
            &r.counting_harvester,
        ),
    ] {
        out.push_str(&harvester(&title, h));
    }
    let l = &r.legitimate;
    out.push_str(&format!(
        "Legitimate department {}\n  {} queries over {} subjects (Zipf), {} refused ({:.1}%)\n\n",
        l.identity,
        l.queries,
        l.distinct_subjects,
        l.refused,
        l.refused_share * 100.0
    ));
    out.push_str(&format!("Enumeration alerts in the ledger: {}\n", r.alerts));
    out
}

fn harvester(title: &str, h: &HarvesterReport) -> String {
    let obtained = if h.subjects_obtained == 0 {
        "obtained no subject".to_owned()
    } else {
        format!(
            "obtained {} subjects, the last after {} ms and {} requests",
            h.subjects_obtained, h.stopped_after_ms, h.queries_until_stopped
        )
    };
    // `stopped_by` is JSON's word; the text says it as a sentence.
    let stopped = match h.stopped_by.as_str() {
        "quota" => "stopped by its quota",
        "suspended" => "stopped by its suspension",
        "gave up" => "gave up",
        other => other,
    };
    format!(
        "{title}: {}\n  {obtained}\n  {stopped} after {} ms and {} requests \
         ({} throttled, {} over quota, {} while suspended)\n\n",
        h.identity, h.ended_after_ms, h.queries, h.throttled, h.quota_refused, h.suspended_refused
    )
}
