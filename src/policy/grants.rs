//! What a caller may receive, per purpose: the answer to DescribeGrants.
//!
//! Computed through [`decide`] itself, so that what a caller is told it may receive cannot
//! drift from what it receives.

use serde::Serialize;

use super::{ItemRequest, Outcome, decide};
use crate::catalog::SignedCatalog;
use crate::desensitize::Form;
use crate::identity::SpiffeId;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PurposeGrants {
    pub purpose: String,
    pub items: Vec<ItemGrants>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ItemGrants {
    pub item: String,
    pub fields: Vec<FieldGrant>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldGrant {
    pub field: String,
    /// Serialized as the catalog spelling: `raw`, `mask(3,4)`, `pseudonym` ...
    pub form: Form,
}

/// For each declared purpose (catalog order) under which `caller` gets anything, the items and
/// fields it gets and their forms. Purposes and items that give nothing are left out.
pub fn effective_grants(catalog: &SignedCatalog, caller: &SpiffeId) -> Vec<PurposeGrants> {
    let all: Vec<ItemRequest> = catalog
        .catalog()
        .items
        .iter()
        .map(|i| ItemRequest::all(&i.id))
        .collect();
    let mut out = Vec::new();
    for purpose in &catalog.catalog().purposes {
        let decision = decide(catalog, caller, &purpose.id, &all);
        let items: Vec<ItemGrants> = decision
            .items()
            .iter()
            .filter_map(|i| {
                let fields: Vec<FieldGrant> = i
                    .fields()
                    .iter()
                    .filter_map(|f| match f.outcome() {
                        Outcome::Granted(form) => Some(FieldGrant {
                            field: f.field().to_owned(),
                            form,
                        }),
                        Outcome::Withheld(_) => None,
                    })
                    .collect();
                (!fields.is_empty()).then(|| ItemGrants {
                    item: i.item().to_owned(),
                    fields,
                })
            })
            .collect();
        if !items.is_empty() {
            out.push(PurposeGrants {
                purpose: purpose.id.clone(),
                items,
            });
        }
    }
    out
}
