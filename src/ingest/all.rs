//! A whole file: all rows validated, duplicates handled, either every record or a report of
//! every bad row, so the caller writes one file as one transaction or nothing.

use std::collections::{HashMap, hash_map::Entry};
use std::fmt;

use serde::Serialize;
use time::Date;

use super::{RawRow, RowError, validate};
use crate::catalog::Catalog;
use crate::records::Record;

/// Problems kept in a report; beyond this they are counted, not kept, so a file of millions of
/// bad rows cannot exhaust memory. The first ten thousand are enough to fix a file by.
pub const MAX_REPORTED_ERRORS: usize = 10_000;

/// Progress so far, handed to the progress callback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Rows read (including bad ones).
    pub rows: u64,
    /// Rows with at least one problem.
    pub bad_rows: u64,
    /// Rows identical to an earlier row of the file, collapsed into it.
    pub duplicates: u64,
}

/// What a good file gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub counts: Counts,
    /// Distinct records handed to the sink.
    pub records: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rows read, {} records, {} identical duplicate rows collapsed",
            self.counts.rows, self.records, self.counts.duplicates
        )
    }
}

/// Every problem of a refused file. Nothing of the file may be written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IngestReport {
    /// The file, when the caller names it ([`IngestReport::with_file`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub counts: Counts,
    /// Every problem, in file order, up to [`MAX_REPORTED_ERRORS`].
    pub errors: Vec<RowError>,
    /// Problems beyond [`MAX_REPORTED_ERRORS`], counted only.
    pub omitted: u64,
}

impl IngestReport {
    pub fn with_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }

    fn push(&mut self, e: RowError) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(e);
        } else {
            self.omitted += 1;
        }
    }
}

impl fmt::Display for IngestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        if self.counts.rows == 0 && self.errors.iter().any(RowError::is_header) {
            writeln!(
                f,
                "refused: the header is bad, no row was read; nothing was written"
            )?;
        } else {
            writeln!(
                f,
                "refused: {} of {} rows bad; nothing was written",
                self.counts.bad_rows, self.counts.rows
            )?;
        }
        for e in &self.errors {
            match &self.file {
                Some(file) => writeln!(f, "  {file}:{e}")?,
                None => writeln!(f, "  {e}")?,
            }
        }
        if self.omitted > 0 {
            writeln!(f, "  ... and {} more problems", self.omitted)?;
        }
        Ok(())
    }
}

impl std::error::Error for IngestReport {}

/// Validates every row, handing each good distinct record to `sink` as it goes, and calls
/// `progress` every `every` rows (0: never). Returns the summary, or the report of every bad
/// row: a caller writing inside one transaction rolls it back on `Err`, so a file is written
/// whole or not at all, without holding it in memory. Once a bad row is seen the sink is no
/// longer called (the file is lost anyway); the rest is still read, to report every problem.
///
/// Identical rows (same [`Record::key`] and same content) are collapsed into the first; the same
/// key with different content is an error on the later row.
#[allow(clippy::too_many_arguments)]
pub fn validate_into(
    catalog: &Catalog,
    own_department: &str,
    today: Date,
    rows: impl IntoIterator<Item = Result<RawRow, RowError>>,
    every: u64,
    mut progress: impl FnMut(&Counts),
    mut sink: impl FnMut(Record),
) -> Result<Summary, IngestReport> {
    let mut report = IngestReport::default();
    let mut records = 0u64;
    // Record key -> (first line, digest of the record's full content).
    let mut seen: HashMap<[u8; 32], (u64, [u8; 32])> = HashMap::new();
    let mut last_bad_line = None;
    for row in rows {
        let row = match row {
            // Not a row: the file is refused before any row is read.
            Err(e) if e.is_header() => {
                report.push(e);
                continue;
            }
            row => row,
        };
        report.counts.rows += 1;
        let result = row
            .map_err(|e| vec![e])
            .and_then(|raw| validate(catalog, own_department, today, &raw).map(|r| (raw.line, r)));
        match result {
            Ok((line, record)) => {
                let content = record.content_digest();
                match seen.entry(record.key()) {
                    Entry::Vacant(vacant) => {
                        vacant.insert((line, content));
                        records += 1;
                        if report.errors.is_empty() && report.omitted == 0 {
                            sink(record);
                        }
                    }
                    Entry::Occupied(seen) if seen.get().1 == content => {
                        report.counts.duplicates += 1
                    }
                    Entry::Occupied(seen) => {
                        let first_line = seen.get().0;
                        report.counts.bad_rows += 1;
                        report.push(RowError::new(
                            line,
                            "(row)",
                            format!(
                                "same subject, item and basis document as line {first_line} \
                                 but different content"
                            ),
                        ));
                    }
                }
            }
            Err(errors) => {
                // Errors of one row share a line; a reader error may repeat a line (CSV
                // header problems), which still counts as one bad row.
                let line = errors.first().map(|e| e.line);
                if line.is_none() || line != last_bad_line {
                    report.counts.bad_rows += 1;
                }
                last_bad_line = line;
                for e in errors {
                    report.push(e);
                }
            }
        }
        if every > 0 && report.counts.rows % every == 0 {
            progress(&report.counts);
        }
    }
    if report.errors.is_empty() && report.omitted == 0 {
        Ok(Summary {
            counts: report.counts,
            records,
        })
    } else {
        Err(report)
    }
}

/// [`validate_into`] collecting the records: for files that fit in memory.
pub fn validate_all(
    catalog: &Catalog,
    own_department: &str,
    today: Date,
    rows: impl IntoIterator<Item = Result<RawRow, RowError>>,
    every: u64,
    progress: impl FnMut(&Counts),
) -> Result<Vec<Record>, IngestReport> {
    let mut out = Vec::new();
    validate_into(catalog, own_department, today, rows, every, progress, |r| {
        out.push(r)
    })?;
    Ok(out)
}
