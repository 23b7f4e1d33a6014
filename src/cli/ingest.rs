//! `credit-node ingest --config NODE.toml DATA`: load a CSV or JSON Lines file of credit
//! records into the node's store. One file is one transaction: any bad row, and nothing is
//! written; the report names every bad row with its line, field and reason.
//!
//! Like the `IngestRecords` RPC, the change is first put on record in the node's ledger (one
//! administration entry per subject, so that an officer listing a subject's entries finds the
//! ingest that put its records there) and made only once those entries are durable. The caller
//! on record is the node itself, whose keys the console user holds; the entry says it came
//! from the console, by which user, and names the file by its SHA-256.

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::CliError;
use crate::{
    clock::Clock,
    config::LoadedConfig,
    identity::{Caller, Kind},
    ingest::{
        self, Counts,
        load::{self, LoadError, Staged},
    },
    ledger::{
        Ledger,
        entry::{AdminAction, Administration, Entry, Outcome},
        store::{LedgerSettings, Receipt},
    },
    store::{Store, records::InsertOutcome},
    tls,
};

#[derive(clap::Args)]
pub struct Args {
    /// The node's config file (catalog, store, identity, ledger key).
    #[arg(long, short)]
    pub config: PathBuf,
    /// The records, by extension: `.csv` (CSV with a header), or `.jsonl`, `.ndjson` or
    /// `.json` (JSON Lines: one record per line, as gen-data writes).
    pub data: PathBuf,
    /// Print the summary (or the report of bad rows) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a successful ingest did, as printed with `--json`.
#[derive(Serialize)]
struct IngestSummary<'a> {
    file: String,
    file_sha256: String,
    rows: u64,
    /// Distinct records in the file (rows less repeats).
    records: u64,
    duplicates_in_file: u64,
    #[serde(flatten)]
    outcome: &'a InsertOutcome,
    /// The ledger entries that put the ingest on record, one per subject.
    ledger_entries: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let loaded = LoadedConfig::load(&args.config)?;
    let catalog = loaded.catalog()?;
    let node = node_identity(&loaded)?;
    let ledger_key = loaded.ledger_key()?;
    let clock = Clock::system();

    let progress = bar(&args.data);
    let digest = Arc::new(Mutex::new(ring::digest::Context::new(
        &ring::digest::SHA256,
    )));
    let hashed = digest.clone();
    let rows = ingest::parse_file_through(&args.data, |file| {
        if let Ok(meta) = file.metadata() {
            progress.set_length(meta.len());
        }
        Hashing {
            inner: progress.wrap_read(file),
            digest: hashed,
        }
    })
    .map_err(|e| CliError::Input(e.to_string()))?;
    let store = Store::open_with(&loaded.database_url()?, (&loaded.config.store).into())
        .await
        .map_err(|e| CliError::Runtime(format!("store.database_url: {e}")))?;
    let ledger_clock = clock.clone();
    let ledger = Ledger::open(
        store.clone(),
        ledger_key,
        LedgerSettings {
            // No background catch-up of the lookup for one command: the node does it.
            lookup_every_ms: 0,
            ..LedgerSettings::from(&loaded.config.ledger)
        },
        move || ledger_clock.now_ms(),
    )
    .await
    .map_err(|e| CliError::Runtime(format!("ledger: {e}")))?;
    let shown = progress.clone();
    let staged = load::validate_and_stage(
        &store,
        catalog.catalog().clone(),
        node.spiffe_id.id().to_owned(),
        clock.today(),
        rows,
        clock.now_ms(),
        10_000,
        move |counts: &Counts| shown.set_message(format!("{} rows validated", counts.rows)),
    )
    .await;
    let file = args.data.display().to_string();
    let file_sha256 = digest
        .lock()
        .map(|d| crate::ledger::hex::encode(d.clone().finish().as_ref()))
        .unwrap_or_default();
    let done = match staged {
        Ok((summary, staged)) => {
            progress.set_message(format!(
                "putting {} subjects on record in the ledger",
                staged.subjects().len()
            ));
            let batch = format!(
                "a batch of {} records in {} rows of {file} (SHA-256 {file_sha256}), by \
                 credit-node ingest at the node's console{}",
                summary.records,
                summary.counts.rows,
                console_user()
            );
            record_then_commit(&ledger, &node, &clock, &batch, staged)
                .await
                .map(|(receipts, outcome)| (summary, receipts, outcome))
        }
        Err(LoadError::Refused(report)) => {
            // Cleared first: a bar redrawn after the report would overwrite its last line.
            progress.finish_and_clear();
            Err(refused(&args, report))
        }
        Err(LoadError::Store(e)) => Err(CliError::Runtime(format!("nothing written: {e}"))),
    };
    // The tail gets its signed tree head before the ledger closes.
    ledger.shutdown().await;
    store.close().await;
    progress.finish_and_clear();
    let (summary, receipts, outcome) = done.map_err(|e| prefix(&file, e))?;

    if args.json {
        let printed = IngestSummary {
            file,
            file_sha256,
            rows: summary.counts.rows,
            records: summary.records,
            duplicates_in_file: summary.counts.duplicates,
            outcome: &outcome,
            ledger_entries: receipts.len() as u64,
            first_seq: seqs(&receipts).map(|(first, _)| first),
            last_seq: seqs(&receipts).map(|(_, last)| last),
        };
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&printed).unwrap_or_default()
        )?;
    } else {
        crate::outln!(
            "{file}: {} rows, {} records: {} inserted, {} already present{}",
            summary.counts.rows,
            summary.records,
            outcome.inserted,
            outcome.already_present,
            match summary.counts.duplicates {
                0 => String::new(),
                n => format!(" ({n} repeated rows in the file collapsed)"),
            }
        )?;
        if let Some((first, last)) = seqs(&receipts) {
            crate::outln!("  on record as ledger entries #{first}–#{last} (one per subject)")?;
        }
    }
    Ok(())
}

/// Appends at a time: group commit takes them in a few transactions, and a file of a
/// million subjects does not hold a million waiting appends.
const APPEND_CHUNK: usize = 4096;

/// Puts the staged change on record, one entry per subject, and commits it once they are all
/// durable. If the ledger cannot be written nothing is changed; entries appended before the
/// failure stand (they record an attempt), as in the `IngestRecords` RPC.
async fn record_then_commit(
    ledger: &Ledger,
    node: &Caller,
    clock: &Clock,
    batch: &str,
    staged: Staged,
) -> Result<(Vec<Receipt>, InsertOutcome), CliError> {
    let mut receipts = Vec::with_capacity(staged.subjects().len());
    for chunk in staged.subjects().chunks(APPEND_CHUNK) {
        let appends = chunk.iter().map(|(subject, n)| {
            let outcome = Outcome::Administration(Administration {
                action: AdminAction::IngestRecords,
                detail: format!("{n} records of this subject in {batch}"),
            });
            let entry = Entry {
                subject: subject.clone(),
                ..Entry::unanswered(
                    node.spiffe_id.to_string(),
                    node.fingerprint,
                    clock.now_ms(),
                    outcome,
                )
            };
            ledger.append(entry)
        });
        let mut failed = None;
        for appended in futures_util::future::join_all(appends).await {
            match appended {
                Ok(receipt) => receipts.push(receipt),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            let attempt = seqs(&receipts)
                .map(|(first, last)| {
                    format!(" (entries #{first}–#{last}, appended before, record the attempt)")
                })
                .unwrap_or_default();
            return Err(CliError::Runtime(format!(
                "nothing written: the ingest could not be put on record in the ledger{attempt}: {e}"
            )));
        }
    }
    let outcome = staged.commit().await.map_err(|e| {
        let on_record = seqs(&receipts)
            .map(|(first, last)| format!(" (on record as ledger entries #{first}–#{last})"))
            .unwrap_or_default();
        CliError::Runtime(format!("nothing written{on_record}: {e}"))
    })?;
    Ok((receipts, outcome))
}

/// The first and last sequence numbers of `receipts` (appended concurrently, so in no order).
fn seqs(receipts: &[Receipt]) -> Option<(u64, u64)> {
    let first = receipts.iter().map(|r| r.seq).min()?;
    let last = receipts.iter().map(|r| r.seq).max()?;
    Some((first, last))
}

/// Prints the report of a file with bad rows (JSON with `--json`).
fn refused(args: &Args, report: ingest::IngestReport) -> CliError {
    let report = report.with_file(args.data.display().to_string());
    if args.json {
        // The refusal stands (exit 2) whether or not anyone is still reading.
        let _ = crate::outln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        eprint!("{report}");
    }
    CliError::Input("nothing written: the file has bad rows".into())
}

fn prefix(file: &str, e: CliError) -> CliError {
    match e {
        CliError::Input(m) => CliError::Input(format!("{file}: {m}")),
        CliError::Runtime(m) => CliError::Runtime(format!("{file}: {m}")),
        other => other,
    }
}

/// Reads through to `inner`, hashing what it reads: the file's digest, from the one pass that
/// ingested it.
struct Hashing<R> {
    inner: R,
    digest: Arc<Mutex<ring::digest::Context>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut digest) = self.digest.lock() {
            digest.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// The node as the caller on record (its SPIFFE ID and certificate fingerprint), which must
/// be a department: a node ingests only items its department is the source of.
fn node_identity(loaded: &LoadedConfig) -> Result<Caller, CliError> {
    let material = loaded.tls_material()?;
    let cert = material
        .chain
        .first()
        .ok_or_else(|| CliError::Input("node.cert: empty certificate chain".into()))?;
    let node =
        tls::caller_from_cert(cert).map_err(|e| CliError::Input(format!("node.cert: {e}")))?;
    if node.spiffe_id.kind() != Kind::Dept {
        return Err(CliError::Input(format!(
            "node.cert: {} is not a department identity",
            node.spiffe_id
        )));
    }
    Ok(node)
}

/// A bar on stderr over the file's bytes (rows vary in length; bytes read is what is known
/// ahead); indicatif draws nothing when stderr is not a terminal.
fn bar(data: &Path) -> ProgressBar {
    // Sized before the first draw: a bar of length 0 draws as 100 % and then falls to 0 %.
    let bar = ProgressBar::new(std::fs::metadata(data).map_or(0, |m| m.len()));
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

/// Who ran the ingest, by the process's user id (`$USER` is whatever the shell says): the name
/// the system's user database gives it, and the id itself, which holds without a name.
fn console_user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => format!(", user {} (uid {uid})", user.name),
        _ => format!(", uid {uid}"),
    }
}
