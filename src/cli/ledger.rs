//! `credit-node ledger ...`: what a security officer or auditor does with a node's ledger:
//! verify it (stored, or an export offline), list entries, export entries with proofs; and,
//! over gRPC on a running node ([`super::review`]), record review decisions and lift
//! suspensions.
//!
//! Personal values: the table of `list` shows subject identifiers masked (first 4 and last 2
//! characters, the rest `*`; shorter values masked whole), because a table ends up in
//! terminals, tickets and screenshots. `list --jsonl` and `export` carry the full entries:
//! they are the auditor's material (an export must hold the exact bytes to be verifiable), so
//! they go to a file or pipe the auditor chose. Nothing here logs a subject.

use std::{
    fs::File,
    io::{BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use clap::Subcommand;
use serde_json::{Value, json};

use super::{
    CliError,
    progress::{self, Unit},
};
use crate::{
    config::LoadedConfig,
    ledger::{
        EntryFilter, OutcomeKind, Page, StoredEntry, audit,
        entry::{Decision, Outcome},
        hex, key, store,
        verify::{read_sth, verify_export},
    },
    store::{Store, StoreError},
};

#[derive(Subcommand)]
pub enum Command {
    /// Verify every stored entry and signed tree head (or, with --export, an export file
    /// offline, without a database). Exit 1 and the first bad sequence number on failure.
    Verify {
        /// The node's config: its database (read only, never created) and ledger key.
        #[arg(
            long,
            short,
            required_unless_present = "export",
            conflicts_with = "export"
        )]
        config: Option<PathBuf>,
        /// An export file (JSON Lines) to verify offline; needs --key.
        #[arg(long, requires = "key")]
        export: Option<PathBuf>,
        /// The ledger public key (SPKI PEM). With --config it defaults to the public half of
        /// the node's signing key; an auditor should pass the key published for the node.
        #[arg(long)]
        key: Option<PathBuf>,
        /// A signed tree head kept away from the node's database (an export, or its first
        /// line) that the stored log must still contain; repeatable. Catches a log cut back
        /// together with its own tree heads, which the database alone cannot show.
        #[arg(long, conflicts_with = "export")]
        sth: Vec<PathBuf>,
        /// With --export: require every entry of the signed tree, not a selection. An entry
        /// deleted from a whole export is caught only this way, since a filtered export is
        /// short by design.
        #[arg(long, requires = "export")]
        complete: bool,
        /// Print a JSON summary on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List entries, oldest first. Subjects are masked in the table; --jsonl prints them in
    /// full (for auditors).
    List {
        /// The node's config: its database (read only, never created).
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
        /// Only entries after this sequence number (paging).
        #[arg(long)]
        after: Option<u64>,
        /// At most this many entries (at least 1); the last line then says how to ask for the
        /// next page, when more entries match.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// JSON Lines, one full entry per line, instead of a table.
        #[arg(long)]
        jsonl: bool,
    },
    /// Export entries with inclusion proofs against the latest signed tree head (JSON Lines),
    /// for `ledger verify --export`.
    Export {
        /// The node's config: its database (read only, never created).
        #[arg(long, short)]
        config: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
        /// The export file to write (JSON Lines; replaced if it exists).
        #[arg(long)]
        out: PathBuf,
    },
    /// Record a review decision about entries of a running node, over gRPC with an officer's
    /// certificate: the decision becomes a ledger entry; prints its receipt.
    Review(super::review::ReviewArgs),
    /// List the callers a running node has suspended after enumeration alerts (officers).
    Suspensions(super::review::SuspensionsArgs),
    /// Lift a caller's suspension on a running node (officers); recorded as a review entry.
    Lift(super::review::LiftArgs),
}

#[derive(clap::Args, Debug, Default)]
pub struct FilterArgs {
    /// Only entries of this caller: its SPIFFE ID, e.g. spiffe://region-a.credit.test/dept/tax.
    #[arg(long, value_parser = parse_caller)]
    pub caller: Option<String>,
    /// Only entries a relay (another region's node) recorded on behalf of this caller: its
    /// SPIFFE ID. Matched on each entry read: on a large ledger, give --caller (the relay) or
    /// --subject with it.
    #[arg(long, value_parser = parse_caller)]
    pub on_behalf_of: Option<String>,
    /// Only queries this node forwarded to the node of another region: that node's SPIFFE ID.
    /// Matched on each entry read, as --on-behalf-of is.
    #[arg(long, value_parser = parse_caller)]
    pub forwarded_to: Option<String>,
    /// Only entries about this subject (its identifier, exact).
    #[arg(long)]
    pub subject: Option<String>,
    /// Only entries of queries that stated this purpose (a purpose id of the catalog).
    #[arg(long)]
    pub purpose: Option<String>,
    /// Only entries of this outcome: granted, partly_withheld, denied, throttled, invalid,
    /// review, alert, administration.
    #[arg(long)]
    pub outcome: Option<OutcomeKind>,
    /// From this time (inclusive): RFC 3339 (2026-11-23T10:00:00Z), a date (2026-11-23, from
    /// 00:00 UTC) or Unix milliseconds.
    #[arg(long, value_parser = parse_time)]
    pub from: Option<i64>,
    /// Until this time (exclusive): RFC 3339, a date (until 00:00 UTC of that day) or Unix
    /// milliseconds.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
}

impl FilterArgs {
    /// The filter, or exit 2 for a window that no entry could fall in.
    pub fn to_filter(&self) -> Result<EntryFilter, CliError> {
        if let (Some(from), Some(until)) = (self.from, self.until)
            && from >= until
        {
            return Err(input(format!(
                "--from ({}) must be before --until ({}): no entry could match",
                time_text(from),
                time_text(until)
            )));
        }
        Ok(EntryFilter {
            caller: self.caller.clone(),
            on_behalf_of: self.on_behalf_of.clone(),
            forwarded_to: self.forwarded_to.clone(),
            subject: self.subject.clone(),
            purpose: self.purpose.clone(),
            outcome: self.outcome,
            from_ms: self.from,
            until_ms: self.until,
        })
    }
}

/// A caller as the ledger records it: a SPIFFE ID, in its one spelling. Anything else would
/// match no entry, silently.
fn parse_caller(text: &str) -> Result<String, String> {
    crate::identity::SpiffeId::parse(text)
        .map(|id| id.to_string())
        .map_err(|e| e.to_string())
}

/// RFC 3339, a bare date (its first instant, UTC) or Unix milliseconds.
fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let day = time::macros::format_description!("[year]-[month]-[day]");
    let t = match time::Date::parse(text, &day) {
        Ok(date) => date.midnight().assume_utc(),
        Err(_) => time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .map_err(|_| {
                format!(
                    "expected RFC 3339 (2026-11-23T10:00:00Z or 2026-11-23T18:00:00+08:00), \
                         a date (2026-11-23, meaning 00:00 UTC) or Unix milliseconds, got {text:?}"
                )
            })?,
    };
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| "time out of range".into())
}

fn runtime(e: impl std::fmt::Display) -> CliError {
    CliError::Runtime(e.to_string())
}

fn input(e: impl std::fmt::Display) -> CliError {
    CliError::Input(e.to_string())
}

pub async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Verify {
            export: Some(file),
            key: Some(key),
            complete,
            json,
            ..
        } => verify_export_file(&file, &key, complete, json),
        Command::Verify {
            config: Some(config),
            key,
            sth,
            json,
            ..
        } => verify_stored(&config, key.as_deref(), &sth, json).await,
        Command::Verify { .. } => Err(input("give --config NODE.toml, or --export FILE --key KEY")),
        Command::List {
            config,
            filter,
            after,
            limit,
            jsonl,
        } => list(&config, &filter.to_filter()?, after, limit, jsonl).await,
        Command::Export {
            config,
            filter,
            out,
        } => export(&config, &filter.to_filter()?, &out).await,
        Command::Review(args) => super::review::run_review(args).await,
        Command::Suspensions(args) => super::review::run_suspensions(args).await,
        Command::Lift(args) => super::review::run_lift(args).await,
    }
}

/// Opens the store of an existing node, never creating one: a deleted or mistyped database
/// would otherwise verify as an empty ledger.
async fn open_store(config: &Path) -> Result<(LoadedConfig, Store), CliError> {
    let loaded = LoadedConfig::load(config)?;
    let url = loaded.database_url()?;
    let store = Store::open_existing(&url, (&loaded.config.store).into())
        .await
        .map_err(|e| match e {
            StoreError::Missing(_) => CliError::Config(loaded.database_url_error(format!(
                "{e}: the ledger commands read an existing node's store and create none \
                 (a node's first start, or `credit-node ingest`, creates it)"
            ))),
            e => runtime(format!("store.database_url: {e}")),
        })?;
    Ok((loaded, store))
}

async fn verify_stored(
    config: &Path,
    key: Option<&Path>,
    kept: &[PathBuf],
    json: bool,
) -> Result<(), CliError> {
    let (loaded, store) = open_store(config).await?;
    let public_key = match key {
        Some(path) => key::read_public_key(path).map_err(input)?,
        None => {
            key::public_key_of(&key::read_signing_key(&loaded.ledger_key_path()).map_err(input)?)
        }
    };
    let kept = kept
        .iter()
        .map(|file| {
            File::open(file)
                .map_err(|e| e.to_string())
                .and_then(|f| read_sth(BufReader::new(f), &public_key).map_err(|e| e.to_string()))
                .map_err(|e| input(format!("--sth {}: {e}", file.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let total = audit::audit_size(&store).await.map_err(runtime)?;
    let bar = progress::bar("verifying", total, Unit::Count("entries"));
    let result = audit::verify_store_against(&store, &public_key, &kept, |done| {
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
    })
    .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    store.close().await;
    match result {
        Ok(report) => {
            if json {
                crate::outln!(
                    "{}",
                    json!({
                        "ok": true,
                        "entries": report.entries,
                        "root_hash": hex::encode(&report.root),
                        "sths_checked": report.sths_checked,
                        "signed_size": report.signed_size,
                        "unsigned_tail": report.unsigned_tail,
                        "kept_heads_checked": kept.len(),
                    })
                )?;
            } else {
                crate::outln!(
                    "ledger verified: {} entries, {} signed tree heads checked{}, latest signed size {} ({} entries appended since), root {}",
                    report.entries,
                    report.sths_checked,
                    match kept.len() {
                        0 => String::new(),
                        n => format!(" ({n} kept outside the database)"),
                    },
                    report.signed_size,
                    report.unsigned_tail,
                    hex::encode(&report.root),
                )?;
            }
            Ok(())
        }
        Err(audit::AuditError::Ledger(e)) => Err(runtime(format!("cannot verify the ledger: {e}"))),
        Err(e) => {
            let seq = e.first_bad_seq();
            if json {
                crate::outln!(
                    "{}",
                    json!({ "ok": false, "first_bad_seq": seq, "error": e.to_string() })
                )?;
            }
            Err(CliError::Runtime(match seq {
                Some(seq) => format!("ledger verification FAILED at entry {seq}: {e}"),
                None => format!("ledger verification FAILED: {e}"),
            }))
        }
    }
}

fn verify_export_file(
    file: &Path,
    key_path: &Path,
    complete: bool,
    json: bool,
) -> Result<(), CliError> {
    let public_key = key::read_public_key(key_path).map_err(input)?;
    let opened =
        File::open(file).map_err(|e| input(format!("cannot open {}: {e}", file.display())))?;
    let size = opened.metadata().map_or(0, |m| m.len());
    let bar = progress::bar(
        "verifying",
        size,
        Unit::Bytes {
            per_item: progress::EXPORT_BYTES_PER_ENTRY,
        },
    );
    let verified = match &bar {
        Some(bar) => verify_export(BufReader::new(bar.wrap_read(opened)), &public_key),
        None => verify_export(BufReader::new(opened), &public_key),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match verified {
        Ok(report) if complete && !report.complete() => {
            let missing = report.first_missing.unwrap_or_default();
            let e = format!(
                "incomplete: it holds {} of the {} entries of its signed tree; entry {missing} \
                 is the first missing",
                report.entries, report.tree_size
            );
            if json {
                crate::outln!(
                    "{}",
                    json!({ "ok": false, "first_missing": missing, "error": e })
                )?;
            }
            Err(CliError::Runtime(format!(
                "export verification FAILED ({}): {e}",
                file.display()
            )))
        }
        Ok(report) => {
            if json {
                crate::outln!(
                    "{}",
                    json!({
                        "ok": true,
                        "entries": report.entries,
                        "tree_size": report.tree_size,
                        "root_hash": hex::encode(&report.root_hash),
                        "complete": report.complete(),
                        "first_missing": report.first_missing,
                    })
                )?;
            } else {
                crate::outln!(
                    "export verified: {} entries proven included in the signed tree of size {}{}",
                    report.entries,
                    report.tree_size,
                    if report.complete() {
                        " (complete)".to_owned()
                    } else {
                        format!(
                            "; a selection, not the whole log (entry {} is the first it lacks): \
                             pass --complete to require every entry",
                            report.first_missing.unwrap_or_default()
                        )
                    },
                )?;
            }
            Ok(())
        }
        Err(e) => {
            if json {
                crate::outln!("{}", json!({ "ok": false, "error": e.to_string() }))?;
            }
            Err(CliError::Runtime(format!(
                "export verification FAILED ({}): {e}",
                file.display()
            )))
        }
    }
}

async fn list(
    config: &Path,
    filter: &EntryFilter,
    after: Option<u64>,
    limit: u32,
    jsonl: bool,
) -> Result<(), CliError> {
    let (_, store) = open_store(config).await?;
    let page = store::entries(&store, filter, Page { after, limit })
        .await
        .map_err(runtime)?;
    store.close().await;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let io = super::output::write_error;
    if jsonl {
        for e in &page.entries {
            writeln!(out, "{}", entry_json(e)).map_err(io)?;
        }
        if let Some(next) = page.next_after {
            // On stderr: standard output stays one JSON object per line.
            eprintln!("(more: --after {next})");
        }
    } else {
        // As wide as the longest caller shown (SPIFFE IDs run from 30 to 60 characters).
        let caller_width = page
            .entries
            .iter()
            .map(|e| caller_text(&e.entry).chars().count())
            .max()
            .unwrap_or(0)
            .max("CALLER".len());
        writeln!(
            out,
            "{:>8}  {:<24}  {:<18}  {:<16}  {:<caller_width$}  PURPOSE OR WHAT",
            "SEQ", "TIME (UTC)", "SUBJECT", "OUTCOME", "CALLER"
        )
        .map_err(io)?;
        if page.entries.is_empty() {
            let none = match page.next_after {
                None => "(no entries match)",
                // A listing by --on-behalf-of or --forwarded-to reads a bounded number of
                // entries per page.
                Some(_) => "(none of the entries read so far matches)",
            };
            writeln!(out, "{none}").map_err(io)?;
        }
        for e in &page.entries {
            writeln!(
                out,
                "{:>8}  {:<24}  {:<18}  {:<16}  {:<caller_width$}  {}",
                e.seq,
                time_text(e.entry.time_ms),
                mask(&e.entry.subject),
                OutcomeKind::of(&e.entry.outcome).as_str(),
                caller_text(&e.entry),
                what(&e.entry),
            )
            .map_err(io)?;
        }
        if let Some(next) = page.next_after {
            writeln!(out, "(more: --after {next})").map_err(io)?;
        }
    }
    out.flush().map_err(io)
}

/// The caller as a person reads it: a relay's entry names both the relay, whose certificate
/// made the call, and the department it relayed for.
fn caller_text(entry: &crate::ledger::entry::Entry) -> std::borrow::Cow<'_, str> {
    match &entry.on_behalf_of {
        Some(original) => format!("{} for {original}", entry.caller).into(),
        None => entry.caller.as_str().into(),
    }
}

async fn export(config: &Path, filter: &EntryFilter, out: &Path) -> Result<(), CliError> {
    let (_, store) = open_store(config).await?;
    let file =
        File::create(out).map_err(|e| input(format!("cannot create {}: {e}", out.display())))?;
    // The export reads the log in order up to its latest signed tree head, so how far it has
    // gone is the sequence number of the last entry written, a selection's or the whole log's.
    let signed = store::latest_sth(&store)
        .await
        .map_err(runtime)?
        .map_or(0, |sth| sth.head.tree_size);
    let bar = progress::bar("exporting", signed, Unit::Count("entries of the log"));
    let mut writer = ExportProgress::new(BufWriter::new(file), bar.clone());
    let exported = audit::export(&store, filter, &mut writer).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    store.close().await;
    let summary = match exported {
        Ok(summary) => summary,
        Err(e) => {
            // What was written verifies as a selection, yet it is not the one asked for (an
            // entry misattributed, say): no file rather than a plausible partial one.
            drop(writer);
            let _ = std::fs::remove_file(out);
            return Err(runtime(e));
        }
    };
    crate::outln!(
        "exported {} {} with inclusion proofs against the signed tree head of size {} to {}",
        summary.entries,
        if summary.entries == 1 {
            "entry"
        } else {
            "entries"
        },
        summary.tree_size,
        out.display()
    )?;
    Ok(())
}

/// A writer of an export that moves `bar` to each entry line's sequence number as the line is
/// written (`{"type":"entry","seq":N,…`, the format of [`crate::ledger::verify`]).
struct ExportProgress<W> {
    inner: W,
    bar: Option<indicatif::ProgressBar>,
    /// The start of the line being written, as far as the sequence number.
    head: Vec<u8>,
}

impl<W: Write> ExportProgress<W> {
    /// Enough of a line for `{"type":"entry","seq":` and 20 digits.
    const HEAD: usize = 48;

    fn new(inner: W, bar: Option<indicatif::ProgressBar>) -> Self {
        Self {
            inner,
            bar,
            head: Vec::with_capacity(Self::HEAD),
        }
    }

    fn line_written(&mut self) {
        if let (Some(bar), Some(seq)) = (&self.bar, entry_seq(&self.head)) {
            bar.set_position(seq + 1);
        }
        self.head.clear();
    }
}

/// The sequence number at the start of an export's entry line.
fn entry_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(br#"{"type":"entry","seq":"#.as_slice())?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

impl<W: Write> Write for ExportProgress<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.bar.is_some() {
            for &b in &buf[..n] {
                if b == b'\n' {
                    self.line_written();
                } else if self.head.len() < Self::HEAD {
                    self.head.push(b);
                }
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// First 4 and last 2 characters in clear, the rest `*` (in characters, never bytes); values
/// of 8 characters or fewer are masked whole, so nothing short is shown nearly in full.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let n = chars.len();
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < 4 || i >= n - 2 { *c } else { '*' })
        .collect()
}

/// RFC 3339 in UTC with milliseconds always written, so a table's times line up.
pub(super) fn time_text(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// The table's last column: a query's purpose, or what an entry that is not a query records;
/// for a refusal, its reason. On one line whatever the text holds, so rows stay rows.
fn what(entry: &crate::ledger::entry::Entry) -> String {
    let purpose = entry.purpose.as_str();
    let mut text = match &entry.outcome {
        Outcome::Administration(a) => a.action.as_str().to_owned(),
        Outcome::Review(r) => {
            let entries = if r.first_seq == r.last_seq {
                format!("#{}", r.first_seq)
            } else {
                format!("#{}–#{}", r.first_seq, r.last_seq)
            };
            match r.comment.trim() {
                "" => format!("review of {entries}: {}", r.decision.as_str()),
                comment => format!("review of {entries}: {} — {comment}", r.decision.as_str()),
            }
        }
        Outcome::Throttled { count, .. } => format!("{count} refused in one window"),
        Outcome::Denied { reason } | Outcome::Invalid { reason } | Outcome::Alert { reason } => {
            match purpose.trim() {
                "" => reason.clone(),
                purpose => format!("{purpose} — {reason}"),
            }
        }
        Outcome::Granted | Outcome::PartlyWithheld => purpose.to_owned(),
    };
    // Where the query went: the other node's entry of it is the one to look up there.
    if let Some(f) = &entry.forwarded {
        match &f.receipt {
            Some(r) => text.push_str(&format!(" (forwarded to {}, its #{})", f.node, r.seq)),
            None => text.push_str(&format!(" (forwarded to {}, no receipt)", f.node)),
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The full entry as JSON (auditors' format; holds the subject in clear).
pub fn entry_json(e: &StoredEntry) -> Value {
    let entry = &e.entry;
    let decisions: Vec<Value> = entry
        .decisions
        .iter()
        .map(|d| match &d.decision {
            Decision::GrantedRaw => json!({ "field": d.field, "decision": "granted_raw" }),
            Decision::GrantedForm(form) => {
                json!({ "field": d.field, "decision": "granted_form", "form": form })
            }
            Decision::Withheld(reason) => {
                json!({ "field": d.field, "decision": "withheld", "reason": reason })
            }
        })
        .collect();
    let outcome = match &entry.outcome {
        Outcome::Granted | Outcome::PartlyWithheld => json!({}),
        Outcome::Denied { reason } | Outcome::Invalid { reason } | Outcome::Alert { reason } => {
            json!({ "reason": reason })
        }
        Outcome::Throttled {
            count,
            window_start_ms,
        } => json!({ "count": count, "window_start_ms": window_start_ms }),
        Outcome::Review(r) => json!({
            "first_seq": r.first_seq,
            "last_seq": r.last_seq,
            "decision": r.decision.as_str(),
            "comment": r.comment,
        }),
        Outcome::Administration(a) => json!({ "action": a.action.as_str(), "detail": a.detail }),
    };
    json!({
        "seq": e.seq,
        "leaf_hash": hex::encode(&e.leaf_hash),
        "time_ms": entry.time_ms,
        "query_id": hex::encode(&entry.query_id),
        "caller": entry.caller,
        "caller_cert_sha256": hex::encode(&entry.caller_cert_sha256),
        "on_behalf_of": entry.on_behalf_of,
        "purpose": entry.purpose,
        "basis": entry.basis,
        "subject": entry.subject,
        "requested_fields": entry.requested_fields,
        "decisions": decisions,
        "outcome": OutcomeKind::of(&entry.outcome).as_str(),
        "outcome_detail": outcome,
        "response_sha256": hex::encode(&entry.response_sha256),
        "forwarded": entry.forwarded.as_ref().map(|f| json!({
            "node": f.node,
            "receipt": f.receipt.map(|r| json!({
                "seq": r.seq,
                "leaf_hash": hex::encode(&r.leaf_hash),
                "result_sha256": hex::encode(&r.result_sha256),
                "query_id": hex::encode(&r.query_id),
            })),
        })),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report
    use super::*;

    #[test]
    fn mask_keeps_first_four_and_last_two_characters() {
        assert_eq!(mask("91110000100000000X"), "9111************0X");
        assert_eq!(mask("11010519491231002X"), "1101************2X");
        assert_eq!(mask("12345678"), "********");
        assert_eq!(mask(""), "");
        // Characters, not bytes.
        assert_eq!(mask("𠮷一二三四五六七八"), "𠮷一二三***七八");
    }

    #[test]
    fn the_table_says_what_an_entry_that_is_not_a_query_records() {
        use crate::ledger::entry::{Entry, Review, ReviewDecision};
        let what = |outcome: &Outcome, purpose: &str| {
            let mut entry = Entry::unanswered(String::new(), [0; 32], 0, outcome.clone());
            entry.purpose = purpose.into();
            what(&entry)
        };
        let review = |first_seq, last_seq, comment: &str| {
            Outcome::Review(Review {
                first_seq,
                last_seq,
                decision: ReviewDecision::Flagged,
                comment: comment.into(),
            })
        };
        assert_eq!(
            what(&review(3, 5, "asked the\ncourt   why"), ""),
            "review of #3–#5: flagged — asked the court why"
        );
        assert_eq!(what(&review(5, 5, "ok"), ""), "review of #5: flagged — ok");
        assert_eq!(what(&review(5, 5, " "), ""), "review of #5: flagged");
        let throttled = Outcome::Throttled {
            count: 7,
            window_start_ms: 0,
        };
        assert_eq!(what(&throttled, ""), "7 refused in one window");
        assert_eq!(what(&Outcome::Granted, "licensing"), "licensing");
        let refused = "credit.v1.LedgerReview/RecordReview: ledger review is for this node's \
                       officers only";
        let denied = Outcome::Denied {
            reason: refused.into(),
        };
        assert_eq!(what(&denied, ""), refused);
        let invalid = Outcome::Invalid {
            reason: "basis_reference: required".into(),
        };
        assert_eq!(
            what(&invalid, "licensing"),
            "licensing — basis_reference: required"
        );
        assert_eq!(time_text(1_790_000_000_000), "2026-09-21T14:13:20.000Z");
    }

    #[test]
    fn the_table_says_where_a_query_was_forwarded_and_the_other_nodes_entry_of_it() {
        use crate::ledger::entry::tests::{forwarded_sample, sample};
        let answered = forwarded_sample(1);
        assert_eq!(
            what(&answered),
            "licensing (forwarded to spiffe://bj.gov.cn/node/credit, its #77)"
        );
        let mut unanswered = answered;
        if let Some(f) = unanswered.forwarded.as_mut() {
            f.receipt = None;
        }
        unanswered.outcome = Outcome::Denied {
            reason: "node unreachable".into(),
        };
        assert_eq!(
            what(&unanswered),
            "licensing — node unreachable (forwarded to spiffe://bj.gov.cn/node/credit, no receipt)"
        );
        assert_eq!(what(&sample(1)), "licensing");
    }

    #[test]
    fn an_export_shows_how_far_into_the_log_it_has_written() {
        let bar = indicatif::ProgressBar::hidden();
        bar.set_length(100);
        let mut out = ExportProgress::new(Vec::new(), Some(bar.clone()));
        let sth = r#"{"type":"sth","tree_size":100}"#;
        writeln!(out, "{sth}").unwrap();
        assert_eq!(bar.position(), 0);
        // Written in pieces, as a buffered writer may pass it on.
        let line = r#"{"type":"entry","seq":41,"entry":"00","leaf_hash":"00","proof":[]}"#;
        let (a, b) = line.split_at(20);
        write!(out, "{a}").unwrap();
        writeln!(out, "{b}").unwrap();
        assert_eq!(bar.position(), 42);
        assert_eq!(out.inner, format!("{sth}\n{line}\n").into_bytes());
        assert_eq!(entry_seq(br#"{"type":"entry","seq":7,"#), Some(7));
        assert_eq!(entry_seq(br#"{"type":"sth","tree_size":7,"#), None);
    }

    #[test]
    fn times_parse_as_rfc3339_or_milliseconds() {
        assert_eq!(parse_time("1790000000000"), Ok(1_790_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_time("1970-01-02"), Ok(86_400_000));
        assert_eq!(
            parse_time("2026-11-29"),
            parse_time("2026-11-29T00:00:00Z"),
            "a date is its first instant, UTC"
        );
        let refused = parse_time("yesterday").unwrap_err();
        assert!(refused.contains("a date (2026-11-23"), "{refused}");
        assert!(parse_time("2026-02-30").is_err());
    }
}
