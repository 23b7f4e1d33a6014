//! Turning a byte span into `file:line:column: key.path[3].name`, for every kind of error.
//!
//! toml's serde errors carry a span but not a public key path, and semantic errors only have the
//! span of the offending value; so the key path is recovered the same way for both: walk the
//! parsed document and take the deepest key or value whose span holds the offset.

use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A catalog error located in its file. `Display`:
/// `file:line:column: key.path: message` (the key path is omitted for syntax errors).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// E.g. `items[3].grants[0].fields[1]`; empty when not known.
    pub key_path: String,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        f.write_str(&self.message)
    }
}

/// What a located error needs: the file name, its text and (once it parsed) its tree.
pub(super) struct Ctx<'a> {
    pub name: &'a str,
    pub text: &'a str,
    pub doc: Option<&'a Spanned<DeTable<'a>>>,
}

impl Ctx<'_> {
    pub fn error(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ParseError {
        let offset = span.map_or(0, |s| s.start).min(self.text.len());
        let (line, column) = line_col(self.text, offset);
        let key_path = self.doc.map(|d| key_path(d, offset)).unwrap_or_default();
        ParseError {
            file: self.name.to_owned(),
            line,
            column,
            key_path,
            message: message.into(),
        }
    }
}

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut cut = offset.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let before = &text[..cut];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

#[derive(Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn holds(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

fn key_path(doc: &Spanned<DeTable<'_>>, offset: usize) -> String {
    let mut best = Vec::new();
    let mut path = Vec::new();
    walk_table(doc.get_ref(), offset, &mut path, &mut best);
    render(&best)
}

fn walk_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<Seg>, best: &mut Vec<Seg>) {
    for (key, value) in table.iter() {
        path.push(Seg::Key(key.get_ref().to_string()));
        if (holds(&key.span(), offset) || holds(&value.span(), offset)) && path.len() > best.len() {
            *best = path.clone();
        }
        walk_value(value, offset, path, best);
        path.pop();
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    offset: usize,
    path: &mut Vec<Seg>,
    best: &mut Vec<Seg>,
) {
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, offset, path, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                if holds(&item.span(), offset) && path.len() > best.len() {
                    *best = path.clone();
                }
                walk_value(item, offset, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}
