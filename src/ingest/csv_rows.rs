//! CSV reader: a header row naming fixed columns and one column per field name.
//!
//! Fixed columns: `subject,item,basis_kind,basis_number,basis_date,basis_issuer,severity,
//! decision_date`, optionally `restored_on,restoration_basis,designated_on,removal_conditions,
//! removed_on,removal_basis`. Every other column is a field name; the reader does not know the
//! catalog, so a non-empty cell in a column that is not a field of the row's item reaches
//! validation as an unknown field. Header problems (missing or repeated columns) are reported
//! for line 1 and end the file, since no row can be read without a sound header.

use std::collections::{BTreeSet, VecDeque};
use std::io::Read;

use super::RowError;
use super::jsonl::shorten;
use super::raw::{Naming, RawBasis, RawDesignation, RawRestoration, RawRow, present};

const REQUIRED: [&str; 8] = [
    "subject",
    "item",
    "basis_kind",
    "basis_number",
    "basis_date",
    "basis_issuer",
    "severity",
    "decision_date",
];
const OPTIONAL: [&str; 6] = [
    "restored_on",
    "restoration_basis",
    "designated_on",
    "removal_conditions",
    "removed_on",
    "removal_basis",
];

/// Every fixed column, in the order `gen_data`-style writers use.
pub fn fixed_columns() -> impl Iterator<Item = &'static str> {
    REQUIRED.into_iter().chain(OPTIONAL)
}

/// Streams the rows of a CSV file.
pub struct CsvRows<R: Read> {
    reader: csv::Reader<LineEnds<R>>,
    /// Line ends before the last row's end that were taken off `LineEnds`.
    lines_before: u64,
    header: Option<Vec<String>>,
    pending: Vec<RowError>,
    done: bool,
    /// The header as read.
    record: csv::StringRecord,
    /// A row as read, bytes until checked for UTF-8 (csv's `StringRecord` empties a row that
    /// is not, and its line could no longer be counted back from its end).
    bytes: csv::ByteRecord,
}

impl<R: Read> CsvRows<R> {
    pub fn new(reader: R) -> Self {
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(false)
            .from_reader(LineEnds {
                inner: reader,
                read: 0,
                ends: VecDeque::new(),
                pending_cr: None,
                at_end: false,
            });
        Self {
            reader,
            lines_before: 0,
            header: None,
            pending: Vec::new(),
            done: false,
            record: csv::StringRecord::new(),
            bytes: csv::ByteRecord::new(),
        }
    }

    /// The line the record just read starts on, counted from the line ends before its end
    /// (csv's own count lags by one after a CRLF line end: BurntSushi/rust-csv#395, and it
    /// counts blank lines skipped before a record as the record's).
    fn first_line_of_last_record(&mut self) -> u64 {
        // The reader stands just past the record's terminator (its first byte, for CRLF), or
        // at the end of the file, where a record has no terminator: its last byte may then be
        // a line end inside it (an unclosed quote swallows the rest of the file).
        let at = self.reader.position().byte();
        let file = self.reader.get_mut();
        let terminator = if file.at_end && at == file.read {
            at
        } else {
            at.saturating_sub(1)
        };
        let ends = &mut file.ends;
        while ends.front().is_some_and(|&at| at < terminator) {
            ends.pop_front();
            self.lines_before += 1;
        }
        let inside: usize = self.bytes.iter().map(line_ends_in).sum();
        (self.lines_before + 1).saturating_sub(inside as u64)
    }

    /// Reads and checks the header; on failure queues its problems and ends the file.
    fn read_header(&mut self) {
        match self.reader.read_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => {
                self.pending
                    .push(RowError::new(1, "(header)", "empty file: no header row"));
                self.done = true;
                return;
            }
            Err(e) => {
                let mut e = csv_error(1, &e);
                e.field = "(header)".into();
                self.pending.push(e);
                self.done = true;
                return;
            }
        }
        let names: Vec<String> = self
            .record
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let n = if i == 0 {
                    n.trim_start_matches('\u{feff}')
                } else {
                    n
                };
                n.trim().to_owned()
            })
            .collect();
        let mut seen = BTreeSet::new();
        for name in &names {
            if name.is_empty() {
                self.pending
                    .push(RowError::new(1, "(header)", "empty column name"));
            } else if !seen.insert(name.as_str()) {
                self.pending.push(RowError::new(
                    1,
                    format!("(header).{}", shorten(name)),
                    "column appears more than once",
                ));
            }
        }
        for col in REQUIRED {
            if !seen.contains(col) {
                self.pending.push(RowError::new(
                    1,
                    format!("(header).{col}"),
                    "required column missing",
                ));
            }
        }
        if self.pending.is_empty() {
            self.header = Some(names);
        } else {
            self.done = true;
        }
    }
}

impl<R: Read> Iterator for CsvRows<R> {
    type Item = Result<RawRow, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.header.is_none() && !self.done {
            self.read_header();
        }
        if !self.pending.is_empty() {
            return Some(Err(self.pending.remove(0)));
        }
        if self.done {
            return None;
        }
        self.header.as_ref()?;
        match self.reader.read_byte_record(&mut self.bytes) {
            Ok(false) => {
                self.done = true;
                None
            }
            Ok(true) => {
                let line = self.first_line_of_last_record();
                let header = self.header.as_deref().unwrap_or_default();
                Some(to_row(line, header, &self.bytes))
            }
            Err(e) => {
                let line = self.first_line_of_last_record();
                if matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    self.done = true;
                }
                Some(Err(csv_error(line, &e)))
            }
        }
    }
}

/// Our own wording: the csv crate's messages are precise but may grow to quote data.
fn csv_error(line: u64, e: &csv::Error) -> RowError {
    let reason = match e.kind() {
        csv::ErrorKind::Io(io) => format!("read error: {io}"),
        csv::ErrorKind::Utf8 { err, .. } => {
            format!("column {}: not valid UTF-8", err.field() + 1)
        }
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("row has {len} columns, the header has {expected_len}"),
        _ => "malformed CSV".to_owned(),
    };
    RowError::new(line, "(row)", reason)
}

/// The row's cells by column name, each checked for UTF-8 on the way.
fn to_row(line: u64, header: &[String], record: &csv::ByteRecord) -> Result<RawRow, RowError> {
    let mut row = RawRow {
        line,
        naming: Naming::CsvColumns,
        ..RawRow::default()
    };
    let (mut basis, mut restoration, mut designation) = (
        RawBasis::default(),
        RawRestoration::default(),
        RawDesignation::default(),
    );
    for (column, (name, cell)) in header.iter().zip(record).enumerate() {
        let cell = str::from_utf8(cell).map_err(|_| {
            RowError::new(
                line,
                "(row)",
                format!("column {}: not valid UTF-8", column + 1),
            )
        })?;
        let v = present(cell);
        match name.as_str() {
            "subject" => row.subject = v,
            "item" => row.item = v,
            "severity" => row.severity = v,
            "decision_date" => row.decision_date = v,
            "basis_kind" => basis.kind = v,
            "basis_number" => basis.number = v,
            "basis_date" => basis.date = v,
            "basis_issuer" => basis.issuer = v,
            "restored_on" => restoration.on = v,
            "restoration_basis" => restoration.basis = v,
            "designated_on" => designation.designated_on = v,
            "removal_conditions" => designation.removal_conditions = v,
            "removed_on" => designation.removed_on = v,
            "removal_basis" => designation.removal_basis = v,
            field => {
                if let Some(v) = v {
                    row.fields.insert(field.to_owned(), v);
                }
            }
        }
    }
    // A group of columns all empty is an absent part, as an absent JSON key would be.
    row.basis = (basis != RawBasis::default()).then_some(basis);
    row.restoration = (restoration != RawRestoration::default()).then_some(restoration);
    row.designation = (designation != RawDesignation::default()).then_some(designation);
    Ok(row)
}

/// The file as the csv reader reads it, noting where each line end is (`\n`, `\r\n` at its
/// `\n`, or a lone `\r` as old Mac files have, all of which csv takes for a row's end): the
/// reader's buffer runs ahead of the record being returned, so only the offsets not yet behind
/// a record are kept.
struct LineEnds<R> {
    inner: R,
    read: u64,
    ends: VecDeque<u64>,
    /// A `\r` whose next byte is not read yet: a line end unless that byte is `\n`.
    pending_cr: Option<u64>,
    /// A read found the end of the file.
    at_end: bool,
}

impl<R: Read> Read for LineEnds<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.at_end = true;
            self.ends.extend(self.pending_cr.take());
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            let at = self.read + i as u64;
            if let Some(cr) = self.pending_cr.take()
                && b != b'\n'
            {
                self.ends.push_back(cr);
            }
            match b {
                b'\n' => self.ends.push_back(at),
                b'\r' => self.pending_cr = Some(at),
                _ => {}
            }
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// Line ends inside a value, counted as [`LineEnds`] counts them in the file.
fn line_ends_in(value: &[u8]) -> usize {
    value
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && value.get(i + 1) != Some(&b'\n')))
        .count()
}
