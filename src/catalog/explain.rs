//! `explain`: exactly what one caller gets for one purpose, item by item and field by field,
//! and what is withheld and why. Built on [`crate::policy::decide`], so the explanation is the
//! decision, not a second reading of the catalog.

use std::fmt;

use serde::Serialize;

use super::SignedCatalog;
use crate::identity::SpiffeId;
use crate::policy::{ItemRequest, Outcome, decide};

/// Output type for text and JSON; internal types are not serialized directly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub caller: String,
    pub purpose: String,
    pub catalog_version: String,
    pub catalog_digest: String,
    pub rows: Vec<ExplainRow>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExplainRow {
    pub item: String,
    pub item_name: String,
    pub field: String,
    pub personal: bool,
    /// `granted` or `withheld`.
    pub decision: &'static str,
    /// The form, for a granted field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<String>,
    /// The reason, for a withheld field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// Every item and field of the catalog as `decide` sees them for this caller and purpose.
pub fn explain(catalog: &SignedCatalog, caller: &SpiffeId, purpose: &str) -> Explanation {
    let cat = catalog.catalog();
    let all: Vec<ItemRequest> = cat.items.iter().map(|i| ItemRequest::all(&i.id)).collect();
    let decision = decide(catalog, caller, purpose, &all);
    let mut rows = Vec::new();
    for (item, decided) in cat.items.iter().zip(decision.items()) {
        for (field, f) in item.fields.iter().zip(decided.fields()) {
            let (decision, form, reason) = match f.outcome() {
                Outcome::Granted(form) => ("granted", Some(form.to_string()), None),
                Outcome::Withheld(why) => ("withheld", None, Some(why.as_str())),
            };
            rows.push(ExplainRow {
                item: item.id.clone(),
                item_name: item.name.clone(),
                field: field.name.clone(),
                personal: field.personal,
                decision,
                form,
                reason,
            });
        }
    }
    Explanation {
        caller: caller.to_string(),
        purpose: purpose.to_owned(),
        catalog_version: cat.version.clone(),
        catalog_digest: catalog.digest_hex(),
        rows,
    }
}

impl Explanation {
    pub fn to_json(&self) -> String {
        // Serializing plain strings and bools cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Terminal columns a string takes: CJK and full-width characters take two.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0x303E
            | 0x3041..=0x33FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA000..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6
            | 0x20000..=0x3FFFD => 2,
            _ => 1,
        })
        .sum()
}

fn pad(f: &mut fmt::Formatter<'_>, s: &str, to: usize) -> fmt::Result {
    f.write_str(s)?;
    for _ in width(s)..to {
        f.write_str(" ")?;
    }
    Ok(())
}

/// An aligned table: ITEM, FIELD, P (personal), DECISION, FORM / REASON, NAME. The item's
/// Chinese name comes last, so the alignment of the other columns does not depend on how a
/// terminal draws it (widths are still computed with CJK as two columns).
impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "caller:  {}", self.caller)?;
        writeln!(f, "purpose: {}", self.purpose)?;
        writeln!(
            f,
            "catalog: version {} (sha256 {})",
            self.catalog_version, self.catalog_digest
        )?;
        let header = ["ITEM", "FIELD", "P", "DECISION", "FORM / REASON", "NAME"];
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.item.clone(),
                    r.field.clone(),
                    if r.personal {
                        "*".into()
                    } else {
                        String::new()
                    },
                    r.decision.to_owned(),
                    r.form
                        .clone()
                        .or(r.reason.map(str::to_owned))
                        .unwrap_or_default(),
                    r.item_name.clone(),
                ]
            })
            .collect();
        let mut widths = header.map(width);
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(c));
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, row: [&str; 6]| -> fmt::Result {
            for (i, c) in row.iter().enumerate() {
                if i == 5 {
                    f.write_str(c)?;
                } else {
                    pad(f, c, widths[i] + 2)?;
                }
            }
            writeln!(f)
        };
        line(f, header)?;
        for row in &cells {
            line(f, [&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]])?;
        }
        let granted = self.rows.iter().filter(|r| r.decision == "granted").count();
        writeln!(
            f,
            "{granted} of {} fields granted; P = personal field",
            self.rows.len()
        )
    }
}
