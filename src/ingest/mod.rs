//! Ingest: reading CSV and JSON Lines files of credit records and validating every row against
//! the catalog before anything is written.
//!
//! Promise 9 of design.md (bad input gets a precise error and loses nothing) is kept here:
//! [`validate`] reports *every* problem of a row with its line and field, and [`validate_all`]
//! returns either all records of a file or an [`IngestReport`] of all bad rows, so the store can
//! write a file as one transaction and a bad file writes nothing. Error messages never echo a
//! subject identifier or a field value (they reach terminals and logs); they name the field and
//! say what is wrong.
//!
//! Decisions (documented here because the catalog does not say):
//! - **Every field of an item is required** and must be non-empty: the catalog has no notion of
//!   an optional field, and a record missing a field the catalog grants would make the policy's
//!   per-field answers depend on the data rather than on the catalog. An empty CSV cell and a
//!   JSON `""` or `null` both count as absent.
//! - **List items** are those whose catalog category ends with `名单` ("list", e.g.
//!   `严重失信主体名单`): a record of a list item must carry a designation, and only such records
//!   may.
//! - **Duplicates in one file** (same [`Record::key`]): an identical repetition is collapsed and
//!   counted; a row with the same key but different content is an error, because which of the
//!   two is true cannot be decided here.
//! - **Not-disclosed classes** (a period of 0 months, such as `minor = 0`) get
//!   `disclosure_end = decision_date`: the record is held but never disclosable. Leaving it `None`
//!   would read as "no period, disclosed forever" in [`Record::disclosable`].
//! - **Echo fields**: an item field named `severity` or `decision_date` must agree with the
//!   record's own severity and decision date, and a field named `uscc` of a legal-person item
//!   with the subject, so a record cannot contradict itself. A missing `severity` or
//!   `decision_date` field takes the record's value: in CSV those names are fixed columns, so
//!   one column carries both (the demo's `admin-penalty` has both fields).
//!
//! Architecture invariant: parsing reads only the stream it is given; validation is pure (no
//! I/O, no clock: `today` is a parameter). Only [`load`] touches the store: it joins
//! validation to one ingest transaction.

mod all;
mod csv_rows;
mod fields;
mod jsonl;
pub mod load;
mod raw;
mod validate;
mod write;

use std::fmt;

use serde::Serialize;

pub use all::{Counts, IngestReport, MAX_REPORTED_ERRORS, Summary, validate_all, validate_into};
pub use csv_rows::{CsvRows, fixed_columns};
pub use fields::check_field;
pub use jsonl::{JsonlRows, MAX_LINE_BYTES};
pub use raw::{Naming, RawBasis, RawDesignation, RawRestoration, RawRow};
pub use validate::{
    AfterToday, EARLIEST, Unrestorable, check_not_after_today, check_restorable, check_restored_on,
    is_list_item, validate,
};
pub use write::{to_json_line, write_csv};

#[cfg(doc)]
use crate::records::Record;

/// One problem of one row. `field` is a path such as `subject`, `fields.amount`, `basis.date`
/// `(row)` for the row as a whole, or `(header)` for a CSV header; `line` counts from 1 (the CSV
/// header is line 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub field: String,
    pub reason: String,
}

impl RowError {
    pub fn new(line: u64, field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            line,
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A problem of the CSV header rather than of a row: no row of the file could be read.
    pub fn is_header(&self) -> bool {
        self.field == "(header)" || self.field.starts_with("(header).")
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, {}: {}", self.line, self.field, self.reason)
    }
}

impl std::error::Error for RowError {}

/// Counts records per subject, keeping the order subjects first appear in: an ingest is put
/// on record one ledger entry per subject, each saying how many of its records came.
#[derive(Default)]
pub struct BySubject {
    index: std::collections::HashMap<String, usize>,
    counts: Vec<(String, u64)>,
}

impl BySubject {
    pub fn add(&mut self, records: &[crate::records::Record]) {
        for r in records {
            match self.index.get(&r.subject) {
                Some(&i) => self.counts[i].1 += 1,
                None => {
                    self.index.insert(r.subject.clone(), self.counts.len());
                    self.counts.push((r.subject.clone(), 1));
                }
            }
        }
    }

    /// Each subject with its number of records, in the order the subjects first appeared.
    pub fn into_counts(self) -> Vec<(String, u64)> {
        self.counts
    }
}

/// The two file formats, told apart by extension in [`parse_file`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    /// `.csv` is CSV; `.jsonl`, `.ndjson` and `.json` are JSON Lines.
    pub fn from_path(path: &std::path::Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" | "json" => Some(Format::JsonLines),
            _ => None,
        }
    }
}

/// The rows of one file, read lazily: a file of any size is streamed, one row in memory at a
/// time.
pub enum Rows<R: std::io::Read> {
    Csv(CsvRows<R>),
    JsonLines(JsonlRows<std::io::BufReader<R>>),
}

impl<R: std::io::Read> Rows<R> {
    pub fn from_reader(format: Format, reader: R) -> Self {
        match format {
            Format::Csv => Rows::Csv(CsvRows::new(reader)),
            Format::JsonLines => Rows::JsonLines(JsonlRows::new(std::io::BufReader::new(reader))),
        }
    }
}

impl<R: std::io::Read> Iterator for Rows<R> {
    type Item = Result<RawRow, RowError>;
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Rows::Csv(r) => r.next(),
            Rows::JsonLines(r) => r.next(),
        }
    }
}

/// Why a file could not be opened as an ingest file at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: unknown format (expected a .csv, .jsonl, .ndjson or .json file)")]
    UnknownFormat { file: String },
}

/// Opens `path` and streams its rows; the format comes from the extension.
pub fn parse_file(path: &std::path::Path) -> Result<Rows<std::fs::File>, OpenError> {
    parse_file_through(path, |f| f)
}

/// [`parse_file`] reading the file through `wrap` (a reader that counts bytes for a progress
/// bar, say).
pub fn parse_file_through<R: std::io::Read>(
    path: &std::path::Path,
    wrap: impl FnOnce(std::fs::File) -> R,
) -> Result<Rows<R>, OpenError> {
    let file = path.display().to_string();
    let format =
        Format::from_path(path).ok_or_else(|| OpenError::UnknownFormat { file: file.clone() })?;
    let f = std::fs::File::open(path).map_err(|source| OpenError::Io { file, source })?;
    Ok(Rows::from_reader(format, wrap(f)))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fields;
#[cfg(test)]
mod tests_files;
