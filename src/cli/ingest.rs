//! `credit-node ingest --config NODE.toml DATA`: load a CSV or JSON Lines file of credit
//! records into the node's store. One file is one transaction: any bad row, and nothing is
//! written; the report names every bad row with its line, field and reason.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::CliError;
use crate::{
    clock::Clock,
    config::LoadedConfig,
    identity::Kind,
    ingest::{
        self, Counts,
        load::{self, LoadError},
    },
    store::{Store, records::InsertOutcome},
    tls,
};

#[derive(clap::Args)]
pub struct Args {
    /// The node's config file (catalog, store, identity).
    #[arg(long, short)]
    pub config: PathBuf,
    /// The records: `.csv` or `.jsonl` / `.ndjson`.
    pub data: PathBuf,
    /// Print the summary (or the report of bad rows) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a successful ingest did, as printed with `--json`.
#[derive(Serialize)]
struct IngestSummary<'a> {
    file: String,
    rows: u64,
    /// Distinct records in the file (rows less repeats).
    records: u64,
    duplicates_in_file: u64,
    #[serde(flatten)]
    outcome: &'a InsertOutcome,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let loaded = LoadedConfig::load(&args.config)?;
    let catalog = loaded.catalog()?;
    let department = own_department(&loaded)?;
    let clock = Clock::system();

    let progress = bar(&args.data);
    let rows = ingest::parse_file_through(&args.data, |file| {
        if let Ok(meta) = file.metadata() {
            progress.set_length(meta.len());
        }
        progress.wrap_read(file)
    })
    .map_err(|e| CliError::Input(e.to_string()))?;
    let store = Store::open(&loaded.database_url()?)
        .await
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    let shown = progress.clone();
    let result = load::validate_and_write(
        &store,
        catalog.catalog().clone(),
        department,
        clock.today(),
        rows,
        clock.now_ms(),
        10_000,
        move |counts: &Counts| shown.set_message(format!("{} rows validated", counts.rows)),
    )
    .await;
    store.close().await;
    progress.finish_and_clear();
    let (summary, outcome) = match result {
        Ok(done) => done,
        Err(LoadError::Refused(report)) => {
            let report = report.with_file(args.data.display().to_string());
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else {
                eprint!("{report}");
            }
            return Err(CliError::Input(format!(
                "{}: nothing written: the file has bad rows",
                args.data.display()
            )));
        }
        Err(LoadError::Store(e)) => {
            return Err(CliError::Runtime(format!(
                "{}: nothing written: {e}",
                args.data.display()
            )));
        }
    };

    if args.json {
        let printed = IngestSummary {
            file: args.data.display().to_string(),
            rows: summary.counts.rows,
            records: summary.records,
            duplicates_in_file: summary.counts.duplicates,
            outcome: &outcome,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&printed).unwrap_or_default()
        );
    } else {
        println!(
            "{}: {} rows, {} records: {} inserted, {} already present{}",
            args.data.display(),
            summary.counts.rows,
            summary.records,
            outcome.inserted,
            outcome.already_present,
            match summary.counts.duplicates {
                0 => String::new(),
                n => format!(" ({n} repeated rows in the file collapsed)"),
            }
        );
    }
    Ok(())
}

/// The department this node records for: the id of its own `dept` SPIFFE ID. A node ingests
/// only items its department is the source of.
pub fn own_department(loaded: &LoadedConfig) -> Result<String, CliError> {
    let material = loaded.tls_material()?;
    let cert = material
        .chain
        .first()
        .ok_or_else(|| CliError::Input("node.cert: empty certificate chain".into()))?;
    let id = tls::spiffe_id_of(cert).map_err(|e| CliError::Input(format!("node.cert: {e}")))?;
    if id.kind() != Kind::Dept {
        return Err(CliError::Input(format!(
            "node.cert: {id} is not a department identity"
        )));
    }
    Ok(id.id().to_owned())
}

/// A bar on stderr over the file's bytes (rows vary in length; bytes read is what is known
/// ahead); indicatif draws nothing when stderr is not a terminal.
fn bar(data: &Path) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix}: [{bar:30}] {percent:>3}% {msg} [{elapsed} of ~{duration}]",
        )
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(data.display().to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
