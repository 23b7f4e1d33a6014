//! Validation of one [`RawRow`] against the catalog: pure, every problem reported.

use time::Date;

use super::RowError;
use super::fields::{check_field, date};
use super::jsonl::shorten;
use super::raw::{Naming, RawBasis, RawDesignation, RawRestoration, RawRow};
use crate::catalog::{Catalog, Item, Severity, SubjectType};
use crate::identifier::{ResidentId, Uscc};
use crate::records::{Basis, Designation, Record, Restoration};

/// No record of the People's Republic's public credit system predates its founding: an earlier
/// date is a typo.
pub const EARLIEST: Date = time::macros::date!(1949 - 10 - 01);

/// Longest basis kind, number, restoration basis or removal text, in characters.
const MAX_DOC_CHARS: usize = 200;

/// Whether records of `item` are list designations: its category ends with `名单` ("list"),
/// as in `严重失信主体名单`.
pub fn is_list_item(item: &Item) -> bool {
    item.category.ends_with("名单")
}

/// Why a credit restoration cannot be recorded for a record. The `Display` text names neither
/// the subject nor a field value, so it can reach an ingest report and a gRPC status alike.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unrestorable {
    /// The catalog does not make the record's item restorable (`restorable = false`).
    #[error("item {0:?} is not restorable")]
    Item(String),
    /// A restoration cannot take effect before the decision it lifts.
    #[error("before {0}, the record's decision date")]
    BeforeDecision(Date),
    /// A restoration decided today cannot be dated later (see [`AfterToday`]).
    #[error(transparent)]
    AfterToday(#[from] AfterToday),
}

/// A date after today given for something that has already happened: a decision, a document,
/// a restoration. Ingest refuses one in any row, so a restoration dated ahead cannot enter
/// through `RestoreRecord` either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("after today ({today})")]
pub struct AfterToday {
    pub today: Date,
}

/// The one "not after today" rule of ingest's dates. `today` is the node's clock's
/// ([`crate::clock::Clock::today`]), never read here: validation is pure.
pub fn check_not_after_today(d: Date, today: Date) -> Result<(), AfterToday> {
    if d > today {
        Err(AfterToday { today })
    } else {
        Ok(())
    }
}

/// The catalog's part of a credit restoration: only records of a `restorable` item may be
/// restored. Asked by ingest (a row's `restoration`) and by the `RestoreRecord` RPC, so an
/// operator cannot do through one what the other refuses.
pub fn check_restorable(item: &Item) -> Result<(), Unrestorable> {
    if item.restorable {
        Ok(())
    } else {
        Err(Unrestorable::Item(item.id.clone()))
    }
}

/// The record's part of a credit restoration: it takes effect on `on`, no earlier than the
/// record's `decision_date` and no later than `today`. Shared as [`check_restorable`] is.
pub fn check_restored_on(decision_date: Date, on: Date, today: Date) -> Result<(), Unrestorable> {
    check_not_after_today(on, today)?;
    if on < decision_date {
        Err(Unrestorable::BeforeDecision(decision_date))
    } else {
        Ok(())
    }
}

/// Validates one row for the node of department `own_department` on `today`.
///
/// The item must exist and be recorded by `own_department` (a node ingests only what its
/// department records); the subject must be an identifier of the item's subject type; every
/// field of the item must be present and well-typed and no other field given; the basis must be
/// complete (a record without basis is refused); dates must be sane; severity must be given
/// exactly when the item has disclosure periods; restoration only for restorable items and
/// designation exactly for list items ([`is_list_item`]). All problems are returned, not just
/// the first, including the shape problems the reader found.
pub fn validate(
    catalog: &Catalog,
    own_department: &str,
    today: Date,
    raw: &RawRow,
) -> Result<Record, Vec<RowError>> {
    let mut v = Checker {
        line: raw.line,
        today,
        errors: raw.problems.clone(),
        naming: raw.naming,
    };
    let item = v.item(catalog, own_department, raw.item.as_deref());
    let subject = item.and_then(|i| v.subject(i, raw.subject.as_deref()));
    let decision_date = v.sane_date("decision_date", raw.decision_date.as_deref(), EARLIEST);
    let basis = v.basis(raw.basis.as_ref());
    let severity = item.and_then(|i| v.severity(i, raw.severity.as_deref()));
    let fields = item.map(|i| v.fields(i, raw)).unwrap_or_default();
    let restoration = item.and_then(|i| v.restoration(i, raw.restoration.as_ref(), decision_date));
    let designation = item.and_then(|i| v.designation(i, raw.designation.as_ref(), decision_date));
    if let (Some(i), Some(s)) = (item, subject.as_deref()) {
        v.echoes(i, &fields, s, severity, decision_date);
    }

    let (Some(item), Some(subject), Some(decision_date), Some(basis), true) =
        (item, subject, decision_date, basis, v.errors.is_empty())
    else {
        if v.errors.is_empty() {
            // Every path that yields `None` reports why; this keeps a refused row from ever
            // carrying no error (which `validate_all` would take for a good file).
            v.err("(row)", "refused");
        }
        return Err(v.errors);
    };
    // A class with period 0 is held but never disclosed: its disclosure ends on the decision
    // date. `None` is kept for items without periods (no severity), which never expire.
    let disclosure_end = severity.map(|s| {
        item.disclosure_end(decision_date, s)
            .unwrap_or(decision_date)
    });
    Ok(Record {
        subject,
        item: item.id.clone(),
        fields,
        basis,
        severity,
        decision_date,
        disclosure_end,
        restoration,
        designation,
    })
}

struct Checker {
    line: u64,
    today: Date,
    errors: Vec<RowError>,
    naming: Naming,
}

impl Checker {
    fn err(&mut self, field: &str, reason: impl Into<String>) {
        self.errors
            .push(RowError::new(self.line, self.naming.name(field), reason));
    }

    fn item<'c>(&mut self, catalog: &'c Catalog, own: &str, id: Option<&str>) -> Option<&'c Item> {
        let Some(id) = id else {
            self.err("item", "missing");
            return None;
        };
        let Some(item) = catalog.item(id) else {
            self.err("item", format!("unknown item {:?}", shorten(id)));
            return None;
        };
        if item.source_department != own {
            self.err(
                "item",
                format!(
                    "item {:?} is recorded by department {:?}, not by this node's {:?}",
                    item.id, item.source_department, own
                ),
            );
            return None;
        }
        Some(item)
    }

    fn subject(&mut self, item: &Item, s: Option<&str>) -> Option<String> {
        let Some(s) = s else {
            self.err("subject", "missing");
            return None;
        };
        let parsed = match item.subject {
            SubjectType::LegalPerson => Uscc::parse(s).map(|u| u.to_string()),
            SubjectType::NaturalPerson => {
                ResidentId::parse_as_of(s, self.today).map(|r| r.to_string())
            }
        };
        parsed.map_err(|e| self.err("subject", e.to_string())).ok()
    }

    /// A date in `[not_before, today]`.
    fn sane_date(&mut self, field: &str, s: Option<&str>, not_before: Date) -> Option<Date> {
        let Some(s) = s else {
            self.err(field, "missing");
            return None;
        };
        let d = date(s).map_err(|e| self.err(field, e)).ok()?;
        if let Err(e) = check_not_after_today(d, self.today) {
            self.err(field, e.to_string());
            return None;
        }
        if d < not_before {
            self.err(field, format!("before {not_before}"));
            return None;
        }
        Some(d)
    }

    fn doc_text(&mut self, field: &str, s: Option<&str>) -> Option<String> {
        let Some(s) = s else {
            self.err(field, "missing");
            return None;
        };
        let n = s.chars().count();
        if s.trim().is_empty() {
            self.err(field, "empty");
        } else if n > MAX_DOC_CHARS {
            self.err(
                field,
                format!("too long ({n} characters, at most {MAX_DOC_CHARS})"),
            );
        } else if s.chars().any(char::is_control) {
            self.err(field, "control character");
        } else {
            return Some(s.to_owned());
        }
        None
    }

    fn basis(&mut self, raw: Option<&RawBasis>) -> Option<Basis> {
        let Some(b) = raw else {
            self.err(
                "basis",
                "missing: a record must rest on a legally effective document",
            );
            return None;
        };
        let kind = self.doc_text("basis.kind", b.kind.as_deref());
        let number = self.doc_text("basis.number", b.number.as_deref());
        let date = self.sane_date("basis.date", b.date.as_deref(), EARLIEST);
        let issuer = match b.issuer.as_deref() {
            None => {
                self.err("basis.issuer", "missing");
                None
            }
            Some(s) if is_department(s) => Some(s.to_owned()),
            Some(_) => {
                self.err("basis.issuer", "expected a department code such as samr");
                None
            }
        };
        Some(Basis {
            kind: kind?,
            number: number?,
            date: date?,
            issuer: issuer?,
        })
    }

    fn severity(&mut self, item: &Item, s: Option<&str>) -> Option<Severity> {
        let p = item.disclosure;
        let has_periods = p.minor.is_some() || p.ordinary.is_some() || p.serious.is_some();
        match (s, has_periods) {
            (None, false) => None,
            (Some(_), false) => {
                self.err(
                    "severity",
                    format!("item {:?} has no disclosure periods", item.id),
                );
                None
            }
            (None, true) => {
                self.err("severity", "missing");
                None
            }
            (Some(s), true) => {
                let class = match s {
                    "minor" => Severity::Minor,
                    "ordinary" => Severity::Ordinary,
                    "serious" => Severity::Serious,
                    other => {
                        self.err("severity", format!("unknown class {:?}", shorten(other)));
                        return None;
                    }
                };
                if p.months(class).is_none() {
                    self.err(
                        "severity",
                        format!("item {:?} has no class {}", item.id, class.as_str()),
                    );
                    return None;
                }
                Some(class)
            }
        }
    }

    fn fields(&mut self, item: &Item, raw: &RawRow) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        for field in &item.fields {
            // Built only for a problem, not for every field of every row.
            let path = || format!("fields.{}", field.name);
            let echoed = match field.name.as_str() {
                "severity" => raw.severity.as_ref(),
                "decision_date" => raw.decision_date.as_ref(),
                _ => None,
            };
            match raw.fields.get(&field.name).or(echoed) {
                None => self.err(&path(), "missing"),
                Some(value) => match check_field(field, value, self.today) {
                    Ok(canonical) => {
                        out.insert(field.name.clone(), canonical);
                    }
                    Err(reason) => self.err(&path(), reason),
                },
            }
        }
        for name in raw.fields.keys() {
            if item.field(name).is_none() {
                let path = format!("fields.{}", shorten(name));
                self.err(&path, format!("not a field of item {:?}", item.id));
            }
        }
        out
    }

    fn restoration(
        &mut self,
        item: &Item,
        raw: Option<&RawRestoration>,
        decision: Option<Date>,
    ) -> Option<Restoration> {
        let r = raw?;
        if let Err(e) = check_restorable(item) {
            self.err("restoration", e.to_string());
            return None;
        }
        let on = self
            .sane_date("restoration.on", r.on.as_deref(), EARLIEST)
            .filter(|&on| match decision {
                Some(d) => check_restored_on(d, on, self.today)
                    .map_err(|e| self.err("restoration.on", e.to_string()))
                    .is_ok(),
                // The decision date's own error is reported; nothing to compare with.
                None => true,
            });
        let basis = self.doc_text("restoration.basis", r.basis.as_deref());
        Some(Restoration {
            on: on?,
            basis: basis?,
        })
    }

    fn designation(
        &mut self,
        item: &Item,
        raw: Option<&RawDesignation>,
        decision: Option<Date>,
    ) -> Option<Designation> {
        let list = is_list_item(item);
        let Some(d) = raw else {
            if list {
                self.err(
                    "designation",
                    format!("missing: item {:?} is a list", item.id),
                );
            }
            return None;
        };
        if !list {
            self.err("designation", format!("item {:?} is not a list", item.id));
            return None;
        }
        let on = self.sane_date(
            "designation.designated_on",
            d.designated_on.as_deref(),
            decision.unwrap_or(EARLIEST),
        );
        let conditions = self.doc_text(
            "designation.removal_conditions",
            d.removal_conditions.as_deref(),
        );
        let (removed_on, removal_basis) = match (&d.removed_on, &d.removal_basis) {
            (None, None) => (None, None),
            (removed, basis) => {
                let r = self.sane_date(
                    "designation.removed_on",
                    removed.as_deref(),
                    on.unwrap_or(EARLIEST),
                );
                let b = self.doc_text("designation.removal_basis", basis.as_deref());
                (Some(r?), Some(b?))
            }
        };
        Some(Designation {
            designated_on: on?,
            removal_conditions: conditions?,
            removed_on,
            removal_basis,
        })
    }

    /// Fields that repeat a record-level fact must agree with it; compared only when both are
    /// valid, so one mistake is reported once. (A missing `severity` or `decision_date` field
    /// was filled from the record in [`Checker::fields`], so it agrees by construction.)
    fn echoes(
        &mut self,
        item: &Item,
        fields: &std::collections::BTreeMap<String, String>,
        subject: &str,
        severity: Option<Severity>,
        decision_date: Option<Date>,
    ) {
        if item.subject == SubjectType::LegalPerson
            && fields.get("uscc").is_some_and(|u| u != subject)
        {
            self.err("fields.uscc", "differs from the subject");
        }
        if let (Some(f), Some(s)) = (fields.get("severity"), severity)
            && f != s.as_str()
        {
            self.err("fields.severity", "differs from the record's severity");
        }
        if let (Some(f), Some(d)) = (fields.get("decision_date"), decision_date)
            && *f != d.to_string()
        {
            self.err(
                "fields.decision_date",
                "differs from the record's decision_date",
            );
        }
    }
}

/// Same shape as the catalog's department codes.
fn is_department(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
        && s.as_bytes()[0].is_ascii_lowercase()
}
