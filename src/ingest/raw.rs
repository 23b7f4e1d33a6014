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
    /// How the file names a row's parts, so that a problem is reported under the name the
    /// operator sees in the file.
    pub naming: Naming,
}

/// The names a file gives a row's parts: JSON paths (`basis.date`, `fields.amount`) or CSV
/// columns (`basis_date`, `amount`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Naming {
    #[default]
    JsonPaths,
    CsvColumns,
}

impl Naming {
    /// The name of `path` (a JSON path, as validation names parts) in this file's terms.
    pub fn name(self, path: &str) -> &str {
        if self == Naming::JsonPaths {
            return path;
        }
        if let Some(field) = path.strip_prefix("fields.") {
            return field;
        }
        match path {
            "basis" => "basis_kind, basis_number, basis_date, basis_issuer",
            "basis.kind" => "basis_kind",
            "basis.number" => "basis_number",
            "basis.date" => "basis_date",
            "basis.issuer" => "basis_issuer",
            "restoration" | "restoration.on" => "restored_on",
            "restoration.basis" => "restoration_basis",
            "designation" | "designation.designated_on" => "designated_on",
            "designation.removal_conditions" => "removal_conditions",
            "designation.removed_on" => "removed_on",
            "designation.removal_basis" => "removal_basis",
            other => other,
        }
    }
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
