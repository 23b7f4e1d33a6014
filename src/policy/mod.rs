//! Field-level policy: from (caller, purpose, requested items and fields, signed catalog) to a
//! decision per field.
//!
//! Promise 2 of design.md: default deny, field by field. A field is granted only when the
//! signed catalog grants its item to this caller for this purpose; every other requested field
//! is withheld with a [`Withheld`] reason the response can carry.
//!
//! Style item 5 (authorization returns a permit): a [`Decision`] has private fields and only
//! [`decide`] builds one; [`Decision::disclose`], the only way this crate turns a stored record
//! into disclosed values, takes it. Disclosing without deciding does not compile, and it takes a
//! [`SignedCatalog`], so an unsigned catalog cannot reach it either.
//!
//! Architecture invariant: pure. No I/O, no clock, no randomness; the same inputs always give the
//! same decision.

mod decide;
mod disclose;
mod grants;

use std::borrow::Cow;
use std::fmt;

pub use decide::decide;
pub use disclose::{DiscloseError, Disclosed, FieldSource};
pub use grants::{FieldGrant, ItemGrants, PurposeGrants, effective_grants};

use crate::desensitize::Form;
use crate::identity::SpiffeId;

/// One requested item; an empty `fields` list means all of the item's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemRequest {
    pub item: String,
    pub fields: Vec<String>,
}

impl ItemRequest {
    pub fn all(item: &str) -> Self {
        Self {
            item: item.to_owned(),
            fields: Vec::new(),
        }
    }

    pub fn fields(item: &str, fields: &[&str]) -> Self {
        Self {
            item: item.to_owned(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        }
    }
}

/// Why a field is withheld. `Display` is the text a response and an explanation carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Withheld {
    /// The item, or the field of a known item, is not in the catalog.
    NotInCatalog,
    /// The item's sharing attribute is `none`.
    NotShared,
    /// No grant of the item names this caller (its trust domain and department).
    CallerNotGranted,
    /// Grants name this caller, but none for the stated purpose.
    PurposeNotGranted,
    /// The stated purpose is not one the catalog declares.
    UnknownPurpose,
    /// Officers and operators receive no credit data, whatever they ask.
    CallerNotDepartment,
    /// The grants for this caller and purpose do not list this field.
    FieldNotGranted,
    /// Granted in form `suppress`: the value is removed.
    Suppressed,
    /// The stored value does not fit the field's de-sensitization rule (a `generalise(year)`
    /// on a non-date): withheld rather than disclosed as is.
    NotDesensitizable,
    /// A forwarded query: the node that holds the record gave the field in another
    /// de-sensitized form than this node's catalog names, so neither form can be trusted to
    /// tell no more than the other allows.
    OtherForm,
    /// A forwarded query: the node that holds the record withheld it, for a reason this node
    /// does not know.
    WithheldByHolder,
}

impl Withheld {
    pub fn as_str(self) -> &'static str {
        match self {
            Withheld::NotInCatalog => "not in catalog",
            Withheld::NotShared => "not shared",
            Withheld::CallerNotGranted => "caller not granted",
            Withheld::PurposeNotGranted => "purpose not granted",
            Withheld::UnknownPurpose => "unknown purpose",
            Withheld::CallerNotDepartment => "caller is not a department",
            Withheld::FieldNotGranted => "field not granted",
            Withheld::Suppressed => "suppressed",
            Withheld::NotDesensitizable => "value does not fit its de-sensitization rule",
            Withheld::OtherForm => "given in another form by the node that holds it",
            Withheld::WithheldByHolder => "withheld by the node that holds it",
        }
    }

    /// The reason another node spelled as `text` ([`Withheld::as_str`]), or
    /// [`Withheld::WithheldByHolder`] for one this node does not know.
    pub fn from_other_node(text: &str) -> Self {
        [
            Withheld::NotInCatalog,
            Withheld::NotShared,
            Withheld::CallerNotGranted,
            Withheld::PurposeNotGranted,
            Withheld::UnknownPurpose,
            Withheld::CallerNotDepartment,
            Withheld::FieldNotGranted,
            Withheld::Suppressed,
            Withheld::NotDesensitizable,
            Withheld::OtherForm,
        ]
        .into_iter()
        .find(|w| w.as_str() == text)
        .unwrap_or(Withheld::WithheldByHolder)
    }
}

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to one requested field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Disclosed in this form (`Form::Raw` only where a grant says raw explicitly).
    Granted(Form),
    Withheld(Withheld),
}

/// The permit: per requested item and field, granted (in which form) or withheld (why).
/// Built only by [`decide`]; borrows names from the catalog it was decided under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'c> {
    caller: SpiffeId,
    purpose: String,
    items: Vec<ItemDecision<'c>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemDecision<'c> {
    item: Cow<'c, str>,
    refused: Option<Withheld>,
    fields: Vec<FieldDecision<'c>>,
    dates: RecordDates<'c>,
}

/// Which of a record's dates an answer may carry beside the granted fields: only what the
/// answer already tells (promise 2, default deny).
///
/// Why by value: a record's decision date usually repeats one of its date fields (a penalty's
/// `decision_date`, a registration's `established`, a listing's `listed_date`), but which one
/// is the ingesting department's practice, not the catalog's. The date goes out when a date
/// field this answer carries raw holds exactly it, so it tells nothing the answer does not,
/// whatever the item and however its records were ingested.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordDates<'c> {
    /// The item's date fields this answer carries raw.
    raw_dates: Vec<&'c str>,
    /// The item declares no `severity`, or this answer carries it raw: the end of the
    /// disclosure period (the decision date plus a period the severity sets) may go with the
    /// decision date without telling a withheld severity.
    end_with_date: bool,
    /// The item declares a `severity` field.
    severity: bool,
}

impl<'c> RecordDates<'c> {
    pub(crate) fn new(raw_dates: Vec<&'c str>, end_with_date: bool, severity: bool) -> Self {
        Self {
            raw_dates,
            end_with_date,
            severity,
        }
    }

    /// Whether a record whose answer sends these fields (name, value as sent) may carry its
    /// decision date `date`: only the values actually sent count, not what the record holds.
    pub fn decision_date(&self, sent: &[(&str, String)], date: time::Date) -> bool {
        if self.raw_dates.is_empty() {
            return false;
        }
        // Ingest stores dates as YYYY-MM-DD, as `Date` displays them.
        let date = date.to_string();
        sent.iter()
            .any(|(name, value)| *value == date && self.raw_dates.contains(name))
    }

    /// Whether the end of the disclosure period may go with a decision date that goes out.
    pub fn disclosure_end(&self) -> bool {
        self.end_with_date
    }

    /// [`RecordDates::disclosure_end`] for an answer another node sent: granting `severity`
    /// raw here is not enough, the record must carry it raw in `sent` (it may have withheld it).
    pub fn disclosure_end_with(&self, sent: &[(&str, String)]) -> bool {
        self.end_with_date && (!self.severity || sent.iter().any(|(name, _)| *name == "severity"))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldDecision<'c> {
    field: Cow<'c, str>,
    outcome: Outcome,
}

impl<'c> Decision<'c> {
    pub fn caller(&self) -> &SpiffeId {
        &self.caller
    }

    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    pub fn items(&self) -> &[ItemDecision<'c>] {
        &self.items
    }

    /// The items with at least one field granted: the only ones whose records an answer can
    /// use, so the only ones worth reading.
    pub fn granted_items(&self) -> impl Iterator<Item = &str> {
        self.items
            .iter()
            .filter(|i| {
                i.fields
                    .iter()
                    .any(|f| matches!(f.outcome, Outcome::Granted(_)))
            })
            .map(|i| i.item())
    }
}

impl<'c> ItemDecision<'c> {
    pub fn item(&self) -> &str {
        &self.item
    }

    /// Set when the whole item is refused for one reason (unknown item, not shared, caller or
    /// purpose not granted ...); every field then carries that reason too.
    pub fn refused(&self) -> Option<Withheld> {
        self.refused
    }

    pub fn fields(&self) -> &[FieldDecision<'_>] {
        &self.fields
    }

    /// The record dates this item's records may carry: none that would repeat or reveal a field
    /// this answer withholds.
    pub fn dates(&self) -> &RecordDates<'c> {
        &self.dates
    }
}

impl FieldDecision<'_> {
    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn outcome(&self) -> Outcome {
        self.outcome
    }
}

#[cfg(test)]
mod tests;
