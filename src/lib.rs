//! credit-node: share public credit information between departments lawfully, privately and
//! verifiably. See ARCHITECTURE.md for the module map and its invariants.
#![forbid(unsafe_code)]

/// mimalloc for every binary that links the crate (the node, its tests and benches). Under load
/// glibc's allocator was about a seventh of all CPU (`malloc_consolidate` alone 3 %: TLS records,
/// h2 buffers and row values are "large" requests that make it sweep its fast bins); with
/// mimalloc Query at concurrency 64 went from 0.14–0.15 to 0.16–0.17 of WhoAmI (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod access;
pub mod api;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod desensitize;
pub mod gen_data;
pub mod harvest;
pub mod harvest_sim;
pub mod identifier;
pub mod identity;
pub mod ingest;
pub mod interconnect;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod pki;
pub mod policy;
pub mod query;
pub mod records;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;

/// Generated from `proto/credit/v1/*.proto` at build time.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("credit.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("credit_descriptor");
}
