//! What every handler of one node shares: the node's identity, its current signed catalog and
//! its pseudonym secret. The catalog and the access lists are swapped whole on SIGHUP; a
//! request reads the catalog once and decides under that one version from start to end.

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
    interconnect::Interconnect,
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
    access: ArcSwap<Access>,
    interconnect: Interconnect,
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
    pub interconnect: Interconnect,
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
            access: ArcSwap::from_pointee(parts.access),
            interconnect: parts.interconnect,
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

    /// Who may administer and review this node, as the config said at the last (re)load.
    pub fn access(&self) -> Arc<Access> {
        self.access.load_full()
    }

    /// Installs access lists already checked against this node's trust domain. Taking someone
    /// off a list must not wait for a restart: from the next call on, they are refused.
    pub fn replace_access(&self, access: Access) {
        self.access.store(Arc::new(access));
    }

    /// Routes to other regions' nodes and the relays this node answers (fixed at start-up).
    pub fn interconnect(&self) -> &Interconnect {
        &self.interconnect
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
