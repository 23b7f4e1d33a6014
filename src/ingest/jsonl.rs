//! JSON Lines reader: one JSON object per line, unknown keys refused.
//!
//! Lines are read with a length bound ([`MAX_LINE_BYTES`]) so a file without newlines cannot
//! make the node load it whole. Field values must be JSON strings (or `null`): the CSV format
//! carries only text, and accepting JSON numbers would let `12.345` and `1e3` mean different
//! things in the two formats.

use std::io::{BufRead, Read};

use serde_json::{Map, Value};

use super::RowError;
use super::raw::{RawBasis, RawDesignation, RawRestoration, RawRow};

/// Longest accepted line, in bytes.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Streams the rows of a JSON Lines file. Blank lines are skipped.
pub struct JsonlRows<R> {
    reader: R,
    line: u64,
    done: bool,
    buf: Vec<u8>,
}

impl<R: BufRead> JsonlRows<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: 0,
            done: false,
            buf: Vec::new(),
        }
    }

    /// Reads one line of at most [`MAX_LINE_BYTES`] into `buf`: `None` at the end of the file,
    /// `Some(false)` when the line was too long (the rest of it is discarded unread into memory).
    fn read_line(&mut self) -> std::io::Result<Option<bool>> {
        self.buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        let n = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() != Some(&b'\n') && n as u64 == limit {
            // Discard the rest of the over-long line without keeping it.
            let mut sink = Vec::new();
            loop {
                sink.clear();
                let m = (&mut self.reader)
                    .take(64 * 1024)
                    .read_until(b'\n', &mut sink)?;
                if m == 0 || sink.last() == Some(&b'\n') {
                    break;
                }
            }
            self.buf.clear();
            return Ok(Some(false));
        }
        Ok(Some(true))
    }
}

impl<R: BufRead> Iterator for JsonlRows<R> {
    type Item = Result<RawRow, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let read = self.read_line();
            self.line += 1;
            let line = self.line;
            match read {
                Err(e) => {
                    self.done = true;
                    return Some(Err(RowError::new(
                        line,
                        "(file)",
                        format!("read error: {e}"),
                    )));
                }
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Ok(Some(false)) => {
                    return Some(Err(RowError::new(
                        line,
                        "(row)",
                        format!("line longer than {MAX_LINE_BYTES} bytes"),
                    )));
                }
                Ok(Some(true)) => {}
            }
            let mut bytes = self.buf.as_slice();
            if line == 1 {
                bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            }
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(parse_line(line, bytes));
        }
    }
}

/// Parses one JSON object line into a [`RawRow`].
pub(super) fn parse_line(line: u64, bytes: &[u8]) -> Result<RawRow, RowError> {
    // Without its line end, so that a line cut short is "EOF ... at column N", not column 0
    // of a second line.
    let value: Value = serde_json::from_slice(bytes.trim_ascii_end()).map_err(|e| {
        // serde_json's messages name the position, never the content. Its "line 1" is the
        // line's own first line, which would read as a second line number beside ours.
        let text = e.to_string();
        let what = text
            .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
            .unwrap_or(&text);
        RowError::new(
            line,
            "(row)",
            format!("not valid JSON at column {}: {what}", e.column()),
        )
    })?;
    let Value::Object(map) = value else {
        return Err(RowError::new(line, "(row)", "expected a JSON object"));
    };
    let mut p = Shape {
        line,
        problems: Vec::new(),
    };
    let mut row = RawRow {
        line,
        ..RawRow::default()
    };
    for (key, value) in map {
        match key.as_str() {
            "subject" => row.subject = p.text("subject", value),
            "item" => row.item = p.text("item", value),
            "severity" => row.severity = p.text("severity", value),
            "decision_date" => row.decision_date = p.text("decision_date", value),
            "fields" => {
                for (name, v) in p.object("fields", value).into_iter().flatten() {
                    // The field's path is only needed to report a problem: not built per row.
                    let text = p.text_at(|| format!("fields.{}", shorten(&name)), v);
                    if let Some(text) = text {
                        row.fields.insert(name, text);
                    }
                }
            }
            "basis" => row.basis = p.basis(value),
            "restoration" => row.restoration = p.restoration(value),
            "designation" => row.designation = p.designation(value),
            other => p.unknown("", other),
        }
    }
    row.problems = p.problems;
    Ok(row)
}

/// Collects shape problems while a line is converted.
struct Shape {
    line: u64,
    problems: Vec<RowError>,
}

impl Shape {
    fn push(&mut self, field: &str, reason: impl Into<String>) {
        self.problems.push(RowError::new(self.line, field, reason));
    }

    fn unknown(&mut self, prefix: &str, key: &str) {
        let field = format!("{prefix}{}", shorten(key));
        self.push(&field, "unknown key");
    }

    fn text(&mut self, field: &str, value: Value) -> Option<String> {
        self.text_at(|| field.to_owned(), value)
    }

    /// [`Shape::text`] for a field whose name is built from the file's keys, only when needed.
    /// Empty text is absence, as in [`super::raw::present`]; the parsed string is kept, not copied.
    fn text_at(&mut self, field: impl FnOnce() -> String, value: Value) -> Option<String> {
        match value {
            Value::String(s) => (!s.is_empty()).then_some(s),
            Value::Null => None,
            other => {
                self.push(
                    &field(),
                    format!("expected a string, found {}", kind(&other)),
                );
                None
            }
        }
    }

    fn object(&mut self, field: &str, value: Value) -> Option<Map<String, Value>> {
        match value {
            Value::Object(m) => Some(m),
            Value::Null => None,
            other => {
                self.push(field, format!("expected an object, found {}", kind(&other)));
                None
            }
        }
    }

    fn basis(&mut self, value: Value) -> Option<RawBasis> {
        let map = self.object("basis", value)?;
        let mut b = RawBasis::default();
        for (key, v) in map {
            match key.as_str() {
                "kind" => b.kind = self.text("basis.kind", v),
                "number" => b.number = self.text("basis.number", v),
                "date" => b.date = self.text("basis.date", v),
                "issuer" => b.issuer = self.text("basis.issuer", v),
                other => self.unknown("basis.", other),
            }
        }
        Some(b)
    }

    fn restoration(&mut self, value: Value) -> Option<RawRestoration> {
        let map = self.object("restoration", value)?;
        let mut r = RawRestoration::default();
        for (key, v) in map {
            match key.as_str() {
                "on" => r.on = self.text("restoration.on", v),
                "basis" => r.basis = self.text("restoration.basis", v),
                other => self.unknown("restoration.", other),
            }
        }
        Some(r)
    }

    fn designation(&mut self, value: Value) -> Option<RawDesignation> {
        let map = self.object("designation", value)?;
        let mut d = RawDesignation::default();
        for (key, v) in map {
            match key.as_str() {
                "designated_on" => d.designated_on = self.text("designation.designated_on", v),
                "removal_conditions" => {
                    d.removal_conditions = self.text("designation.removal_conditions", v)
                }
                "removed_on" => d.removed_on = self.text("designation.removed_on", v),
                "removal_basis" => d.removal_basis = self.text("designation.removal_basis", v),
                other => self.unknown("designation.", other),
            }
        }
        Some(d)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Key names come from the file: bound what is echoed of them.
pub(super) fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}
