//! Who may administer and review this node: the department names its operators and officers.
//!
//! Why a list and not "any operator of the region": one trust domain (one regional CA) issues
//! identities to many departments, and an operator or officer ID carries no department. Trusting
//! the whole region would let another department's operator restore or ingest this department's
//! records, and its officer read this department's query log, subjects included. Default deny:
//! an identity not named here gets PERMISSION_DENIED for every administration and review RPC.

use crate::identity::{Kind, SpiffeId};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    operators: Vec<SpiffeId>,
    officers: Vec<SpiffeId>,
}

impl Access {
    /// The lists as configured; [`crate::config::LoadedConfig::access`] has checked that each
    /// is of the right kind and of the node's own trust domain.
    pub fn new(operators: Vec<SpiffeId>, officers: Vec<SpiffeId>) -> Self {
        Self {
            operators,
            officers,
        }
    }

    pub fn operators(&self) -> &[SpiffeId] {
        &self.operators
    }

    pub fn officers(&self) -> &[SpiffeId] {
        &self.officers
    }

    /// May call the `Administration` service (ingest, restore, list removal).
    pub fn is_operator(&self, id: &SpiffeId) -> bool {
        id.kind() == Kind::Operator && self.operators.contains(id)
    }

    /// May call every `LedgerReview` RPC on every entry.
    pub fn is_officer(&self, id: &SpiffeId) -> bool {
        id.kind() == Kind::Officer && self.officers.contains(id)
    }
}
