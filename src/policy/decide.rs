//! The decision itself. Default deny: every path that does not end in a grant ends in a
//! [`Withheld`] reason.

use std::borrow::Cow;

use super::{Decision, FieldDecision, ItemDecision, ItemRequest, Outcome, RecordDates, Withheld};
use crate::catalog::{FieldType, Item, Sharing, SignedCatalog};
use crate::desensitize::Form;
use crate::identity::{Kind, SpiffeId};

/// Decides every requested field. Requested fields are deduplicated, in request order; an item
/// requested with no fields stands for all of its fields, in catalog order. Each item is
/// requested at most once (the api refuses a repeated item): a decision, and the answer built
/// from it, has one entry per item.
pub fn decide<'c>(
    catalog: &'c SignedCatalog,
    caller: &SpiffeId,
    purpose: &str,
    request: &[ItemRequest],
) -> Decision<'c> {
    let catalog = catalog.catalog();
    let everything = if caller.kind() != Kind::Dept {
        Some(Withheld::CallerNotDepartment)
    } else if !catalog.has_purpose(purpose) {
        Some(Withheld::UnknownPurpose)
    } else {
        None
    };
    let items = request
        .iter()
        .map(|req| match catalog.item(&req.item) {
            None => unknown_item(req),
            Some(item) => decide_item(item, req, caller, purpose, everything),
        })
        .collect();
    Decision {
        caller: caller.clone(),
        purpose: purpose.to_owned(),
        items,
    }
}

fn unknown_item<'c>(req: &ItemRequest) -> ItemDecision<'c> {
    let mut fields: Vec<FieldDecision<'c>> = Vec::with_capacity(req.fields.len());
    for f in &req.fields {
        if !fields.iter().any(|d| d.field == f.as_str()) {
            fields.push(FieldDecision {
                field: Cow::Owned(f.clone()),
                outcome: Outcome::Withheld(Withheld::NotInCatalog),
            });
        }
    }
    ItemDecision {
        item: Cow::Owned(req.item.clone()),
        refused: Some(Withheld::NotInCatalog),
        fields,
        dates: RecordDates::default(),
    }
}

/// What the item's sharing attribute gives this caller for this purpose, before looking at
/// single fields.
enum Access<'c> {
    Refused(Withheld),
    All,
    Grants(&'c [crate::catalog::Grant]),
}

fn access<'c>(item: &'c Item, caller: &SpiffeId, purpose: &str) -> Access<'c> {
    match &item.sharing {
        Sharing::None => Access::Refused(Withheld::NotShared),
        Sharing::Unconditional => Access::All,
        Sharing::Conditional(grants) => {
            let td = caller.trust_domain();
            let mut named = grants
                .iter()
                .filter(|g| g.names(td, caller.id()))
                .peekable();
            if named.peek().is_none() {
                Access::Refused(Withheld::CallerNotGranted)
            } else if !named.any(|g| g.purposes.iter().any(|p| p == purpose)) {
                Access::Refused(Withheld::PurposeNotGranted)
            } else {
                Access::Grants(grants)
            }
        }
    }
}

fn decide_item<'c>(
    item: &'c Item,
    req: &ItemRequest,
    caller: &SpiffeId,
    purpose: &str,
    everything: Option<Withheld>,
) -> ItemDecision<'c> {
    let access = match everything {
        Some(reason) => Access::Refused(reason),
        None => access(item, caller, purpose),
    };
    let refused = match access {
        Access::Refused(reason) => Some(reason),
        _ => None,
    };
    let field_outcome = |name: &str| -> Outcome {
        let Some(field) = item.field(name) else {
            return Outcome::Withheld(Withheld::NotInCatalog);
        };
        match &access {
            Access::Refused(reason) => Outcome::Withheld(*reason),
            Access::All => Outcome::Granted(field.form),
            Access::Grants(grants) => grants
                .iter()
                .filter(|g| {
                    g.names(caller.trust_domain(), caller.id())
                        && g.purposes.iter().any(|p| p == purpose)
                })
                .find_map(|g| {
                    g.fields
                        .iter()
                        .find(|(f, _)| f == name)
                        .map(|(_, form)| *form)
                })
                .map_or(
                    Outcome::Withheld(Withheld::FieldNotGranted),
                    Outcome::Granted,
                ),
        }
    };
    let fields = if req.fields.is_empty() {
        item.fields
            .iter()
            .map(|f| FieldDecision {
                field: Cow::Borrowed(f.name.as_str()),
                outcome: field_outcome(&f.name),
            })
            .collect()
    } else {
        let mut out: Vec<FieldDecision<'c>> = Vec::with_capacity(req.fields.len());
        for name in &req.fields {
            if out.iter().any(|d| d.field == name.as_str()) {
                continue;
            }
            let field = match item.field(name) {
                Some(f) => Cow::Borrowed(f.name.as_str()),
                None => Cow::Owned(name.clone()),
            };
            out.push(FieldDecision {
                field,
                outcome: field_outcome(name),
            });
        }
        out
    };
    // A record's dates go out beside its fields, so they obey the same grants: see
    // `RecordDates`, which holds the date fields carried raw to the record's date.
    let granted_raw = |name: &str| {
        fields
            .iter()
            .any(|f| f.field == name && f.outcome == Outcome::Granted(Form::Raw))
    };
    let raw_dates = item
        .fields
        .iter()
        .filter(|f| f.ty == FieldType::Date && granted_raw(&f.name))
        .map(|f| f.name.as_str())
        .collect();
    let severity = item.field("severity").is_some();
    let dates = RecordDates::new(raw_dates, !severity || granted_raw("severity"), severity);
    ItemDecision {
        item: Cow::Borrowed(item.id.as_str()),
        refused,
        fields,
        dates,
    }
}
