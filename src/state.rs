//! What every handler of one node shares: the node's identity, its current signed catalog and
//! its pseudonym secret. The catalog is swapped whole on SIGHUP; a request reads it once and
//! decides under that one version from start to end.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::{
    access::Access,
    catalog::{ReplaceError, SignedCatalog},
    clock::Clock,
    config::Limits,
    desensitize::PseudonymKey,
    harvest::Guard,
    identity::SpiffeId,
    ledger::store::Ledger,
    records::RecordIds,
    store::Store,
};

pub struct NodeState {
    node_id: SpiffeId,
    catalog: ArcSwap<SignedCatalog>,
    pseudonym_key: PseudonymKey,
    record_ids: RecordIds,
    store: Store,
    ledger: Ledger,
    clock: Clock,
    limits: Limits,
    guard: Guard,
    access: Access,
}

/// The parts a node is built from.
pub struct NodeParts {
    pub node_id: SpiffeId,
    pub catalog: SignedCatalog,
    pub pseudonym_key: PseudonymKey,
    pub store: Store,
    pub ledger: Ledger,
    pub clock: Clock,
    pub limits: Limits,
    pub guard: Guard,
    pub access: Access,
}

impl NodeState {
    pub fn new(parts: NodeParts) -> Self {
        Self {
            node_id: parts.node_id,
            catalog: ArcSwap::from_pointee(parts.catalog),
            record_ids: parts.pseudonym_key.record_ids(),
            pseudonym_key: parts.pseudonym_key,
            store: parts.store,
            ledger: parts.ledger,
            clock: parts.clock,
            limits: parts.limits,
            guard: parts.guard,
            access: parts.access,
        }
    }

    /// The department this node records and answers for (its own SPIFFE ID's id).
    pub fn department(&self) -> &str {
        self.node_id.id()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Rate limits, quotas and enumeration detection (promise 7).
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Who may administer and review this node.
    pub fn access(&self) -> &Access {
        &self.access
    }

    pub fn node_id(&self) -> &SpiffeId {
        &self.node_id
    }

    /// The catalog in force now. Lock-free: readers never wait for a reload.
    pub fn catalog(&self) -> Arc<SignedCatalog> {
        self.catalog.load_full()
    }

    /// Installs a catalog that has already been verified (only a [`SignedCatalog`] can be
    /// passed, so an unsigned one cannot get here).
    /// Refused, keeping the running catalog, unless [`SignedCatalog::may_replace`] allows it.
    /// Reloads come one at a time (the SIGHUP loop), so the check and the swap cannot race.
    pub fn replace_catalog(&self, catalog: SignedCatalog) -> Result<(), ReplaceError> {
        catalog.may_replace(&self.catalog.load())?;
        self.catalog.store(Arc::new(catalog));
        Ok(())
    }

    pub fn pseudonym_key(&self) -> &PseudonymKey {
        &self.pseudonym_key
    }

    pub fn record_ids(&self) -> &RecordIds {
        &self.record_ids
    }
}
