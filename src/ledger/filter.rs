//! Which entries a listing selects, and the five fields it selects them by.
//!
//! Why a module of its own: `ledger_entries` keeps copies of these fields in columns (and
//! `ledger_lookup` copies of two of them) so that listings can select by them, but only the
//! entry's own bytes are covered by the Merkle log. A copy changed in the database would hide an
//! entry from a listing, or show it under another caller, while the log still verifies. So
//! listings re-check each entry they read, decoded, against the filter and against its columns,
//! and the audit compares every entry's columns with the entry: both through [`FilterFields`],
//! borrowed from the entry without building it.
//!
//! Architecture Invariant: pure, like `entry`: no tonic, sqlx or tokio.

use std::fmt;

use super::entry::{Entry, Outcome};

/// The kind of an entry's outcome, as stored in the `outcome` column for filtering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutcomeKind {
    Granted,
    PartlyWithheld,
    Denied,
    Throttled,
    Invalid,
    Review,
    Alert,
    Administration,
}

impl OutcomeKind {
    /// Its place in [`OutcomeKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const ALL: [OutcomeKind; 8] = [
        OutcomeKind::Granted,
        OutcomeKind::PartlyWithheld,
        OutcomeKind::Denied,
        OutcomeKind::Throttled,
        OutcomeKind::Invalid,
        OutcomeKind::Review,
        OutcomeKind::Alert,
        OutcomeKind::Administration,
    ];

    pub fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Granted => OutcomeKind::Granted,
            Outcome::PartlyWithheld => OutcomeKind::PartlyWithheld,
            Outcome::Denied { .. } => OutcomeKind::Denied,
            Outcome::Throttled { .. } => OutcomeKind::Throttled,
            Outcome::Invalid { .. } => OutcomeKind::Invalid,
            Outcome::Review(_) => OutcomeKind::Review,
            Outcome::Alert { .. } => OutcomeKind::Alert,
            Outcome::Administration(_) => OutcomeKind::Administration,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Granted => "granted",
            OutcomeKind::PartlyWithheld => "partly_withheld",
            OutcomeKind::Denied => "denied",
            OutcomeKind::Throttled => "throttled",
            OutcomeKind::Invalid => "invalid",
            OutcomeKind::Review => "review",
            OutcomeKind::Alert => "alert",
            OutcomeKind::Administration => "administration",
        }
    }
}

impl std::str::FromStr for OutcomeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        OutcomeKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = OutcomeKind::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown outcome {s:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// Which entries to list; every set field must match (AND). Times are Unix ms, `from_ms`
/// inclusive and `until_ms` exclusive.
#[derive(Clone, Debug, Default)]
pub struct EntryFilter {
    pub caller: Option<String>,
    /// The caller a relay acted for ([`Entry::on_behalf_of`]). No column or lookup copies it:
    /// it is matched on the decoded entry, among those the other conditions select (see
    /// `store::entries`), so it needs no copy the audit would have to hold to the log.
    pub on_behalf_of: Option<String>,
    /// The node this node forwarded the query to ([`Entry::forwarded`]); matched on the
    /// decoded entry, as `on_behalf_of` is.
    pub forwarded_to: Option<String>,
    pub subject: Option<String>,
    pub purpose: Option<String>,
    pub outcome: Option<OutcomeKind>,
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

/// A column of `ledger_entries` that copies a field of the entry for listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Caller,
    Subject,
    Purpose,
    Outcome,
    TimeMs,
}

impl Column {
    /// The column's name in `ledger_entries` (and the field's in `ledger_lookup`).
    pub fn as_str(self) -> &'static str {
        match self {
            Column::Caller => "caller",
            Column::Subject => "subject",
            Column::Purpose => "purpose",
            Column::Outcome => "outcome",
            Column::TimeMs => "time_ms",
        }
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fields listings select an entry by, borrowed: from a decoded [`Entry`], from its
/// canonical bytes ([`Entry::filter_fields`], no allocation), or from its stored columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterFields<'a> {
    pub caller: &'a str,
    pub subject: &'a str,
    pub purpose: &'a str,
    pub outcome: OutcomeKind,
    pub time_ms: i64,
}

/// An entry's fields as its stored columns hold them, compared with the entry's own by
/// [`FilterFields::first_difference`]. `None` is a column that could not be read as its type:
/// on SQLite a column may hold any type (a BLOB caller, which `caller = $1` no longer
/// matches), and such a column is a difference like any other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoredColumns<'a> {
    pub caller: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub purpose: Option<&'a str>,
    pub outcome: Option<OutcomeKind>,
    pub time_ms: Option<i64>,
}

impl<'a> From<FilterFields<'a>> for StoredColumns<'a> {
    fn from(fields: FilterFields<'a>) -> Self {
        Self {
            caller: Some(fields.caller),
            subject: Some(fields.subject),
            purpose: Some(fields.purpose),
            outcome: Some(fields.outcome),
            time_ms: Some(fields.time_ms),
        }
    }
}

/// The separator of [`FilterFields::pack_into`]: a byte no UTF-8 text holds, so the packing of
/// five fields splits back into exactly those five.
pub const PACK_SEPARATOR: u8 = 0xFF;

impl<'a> FilterFields<'a> {
    pub fn of(entry: &'a Entry) -> Self {
        Self {
            caller: &entry.caller,
            subject: &entry.subject,
            purpose: &entry.purpose,
            outcome: OutcomeKind::of(&entry.outcome),
            time_ms: entry.time_ms,
        }
    }

    /// The first column, in the order caller, subject, purpose, outcome, time_ms, whose copy in
    /// `stored` is not this field, if any. The one place that knows that order for listings:
    /// a row that differs in several columns is always refused for the same one.
    pub fn first_difference(&self, stored: &StoredColumns<'_>) -> Option<Column> {
        if stored.caller != Some(self.caller) {
            Some(Column::Caller)
        } else if stored.subject != Some(self.subject) {
            Some(Column::Subject)
        } else if stored.purpose != Some(self.purpose) {
            Some(Column::Purpose)
        } else if stored.outcome != Some(self.outcome) {
            Some(Column::Outcome)
        } else if stored.time_ms != Some(self.time_ms) {
            Some(Column::TimeMs)
        } else {
            None
        }
    }

    /// Appends the fields as the audit's query packs the columns: caller, subject, purpose,
    /// outcome and time_ms (decimal), each followed by [`PACK_SEPARATOR`].
    pub fn pack_into(&self, out: &mut Vec<u8>) {
        for text in [
            self.caller,
            self.subject,
            self.purpose,
            self.outcome.as_str(),
        ] {
            out.extend_from_slice(text.as_bytes());
            out.push(PACK_SEPARATOR);
        }
        out.extend_from_slice(Decimal::of(self.time_ms).as_bytes());
        out.push(PACK_SEPARATOR);
    }

    /// Compares the packing of stored columns at the start of `packed` (see
    /// [`FilterFields::pack_into`]) with these fields, without building the packing: the bytes
    /// it took, or the first column that differs. A column holding the separator cannot match,
    /// so a packing never lines up with another entry's fields by accident of splitting.
    pub fn check_packed(&self, packed: &[u8]) -> Result<usize, Column> {
        let time = Decimal::of(self.time_ms);
        let fields = [
            (Column::Caller, self.caller.as_bytes()),
            (Column::Subject, self.subject.as_bytes()),
            (Column::Purpose, self.purpose.as_bytes()),
            (Column::Outcome, self.outcome.as_str().as_bytes()),
            (Column::TimeMs, time.as_bytes()),
        ];
        let mut at = 0;
        for (column, want) in fields {
            let end = at + want.len();
            if packed.get(at..end) != Some(want) || packed.get(end) != Some(&PACK_SEPARATOR) {
                return Err(column);
            }
            at = end + 1;
        }
        Ok(at)
    }
}

/// An `i64` in decimal, as both engines cast a BIGINT to text, on the stack.
struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    fn of(n: i64) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = n.unsigned_abs();
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if n < 0 {
            start -= 1;
            digits[start] = b'-';
        }
        Self { digits, start }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start..]
    }
}

impl EntryFilter {
    /// The first condition of the filter that `fields` does not meet, if any.
    pub fn first_unmet(&self, fields: &FilterFields<'_>) -> Option<Column> {
        let text = |want: &Option<String>, have: &str| want.as_deref().is_some_and(|w| w != have);
        if text(&self.caller, fields.caller) {
            Some(Column::Caller)
        } else if text(&self.subject, fields.subject) {
            Some(Column::Subject)
        } else if text(&self.purpose, fields.purpose) {
            Some(Column::Purpose)
        } else if self.outcome.is_some_and(|o| o != fields.outcome) {
            Some(Column::Outcome)
        } else if self.from_ms.is_some_and(|from| fields.time_ms < from)
            || self.until_ms.is_some_and(|until| fields.time_ms >= until)
        {
            Some(Column::TimeMs)
        } else {
            None
        }
    }

    pub fn matches(&self, fields: &FilterFields<'_>) -> bool {
        self.first_unmet(fields).is_none()
    }

    /// Whether a condition no column copies is set (`on_behalf_of`, `forwarded_to`): then
    /// only the decoded entries tell which match.
    pub fn has_uncopied(&self) -> bool {
        self.on_behalf_of.is_some() || self.forwarded_to.is_some()
    }

    /// Whether `entry` meets the conditions no column copies.
    pub fn meets_uncopied(&self, entry: &Entry) -> bool {
        self.on_behalf_of
            .as_deref()
            .is_none_or(|want| entry.on_behalf_of.as_deref() == Some(want))
            && self
                .forwarded_to
                .as_deref()
                .is_none_or(|want| entry.forwarded.as_ref().is_some_and(|f| f.node == want))
    }
}

#[cfg(test)]
mod tests;
