//! What every handler of one node shares: the node's identity, its current signed catalog and
//! its pseudonym secret. The catalog is swapped whole on SIGHUP; a request reads it once and
//! decides under that one version from start to end.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::{catalog::SignedCatalog, desensitize::PseudonymKey, identity::SpiffeId};

pub struct NodeState {
    node_id: SpiffeId,
    catalog: ArcSwap<SignedCatalog>,
    pseudonym_key: PseudonymKey,
}

impl NodeState {
    pub fn new(node_id: SpiffeId, catalog: SignedCatalog, pseudonym_key: PseudonymKey) -> Self {
        Self {
            node_id,
            catalog: ArcSwap::from_pointee(catalog),
            pseudonym_key,
        }
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
    pub fn replace_catalog(&self, catalog: SignedCatalog) {
        self.catalog.store(Arc::new(catalog));
    }

    pub fn pseudonym_key(&self) -> &PseudonymKey {
        &self.pseudonym_key
    }
}
