//! A row as read from a file, before validation: every value still text, every part optional,
//! so that validation can report everything that is missing or wrong at once.

use std::collections::BTreeMap;

use super::RowError;

/// One row of an ingest file. `None` means absent (an empty CSV cell, a missing or `null` or
/// `""` JSON value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawRow {
    pub line: u64,
    pub subject: Option<String>,
    pub item: Option<String>,
    /// Non-empty field values by field name.
    pub fields: BTreeMap<String, String>,
    pub basis: Option<RawBasis>,
    pub severity: Option<String>,
    pub decision_date: Option<String>,
    pub restoration: Option<RawRestoration>,
    pub designation: Option<RawDesignation>,
    /// Problems of shape the reader found (unknown keys, values of the wrong JSON type);
    /// [`super::validate`] reports them together with everything else.
    pub problems: Vec<RowError>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawBasis {
    pub kind: Option<String>,
    pub number: Option<String>,
    pub date: Option<String>,
    pub issuer: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawRestoration {
    pub on: Option<String>,
    pub basis: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawDesignation {
    pub designated_on: Option<String>,
    pub removal_conditions: Option<String>,
    pub removed_on: Option<String>,
    pub removal_basis: Option<String>,
}

/// Empty text is absence: a CSV cannot tell the two apart, so JSON does not either.
pub(super) fn present(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}
