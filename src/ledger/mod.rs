//! The tamper-evident registration-and-review ledger: its pure core.
//!
//! Keeps promise 6 of design.md ("the ledger is tamper-evident"): entries are
//! canonically encoded ([`entry`]), hashed into an RFC 9162 Merkle log
//! ([`merkle`]), committed to by Ed25519 signed tree heads ([`sth`]), and
//! checked end to end by [`verify`], which recomputes every leaf from the
//! stored entry bytes rather than trusting stored hashes (immudb's mistake).
//!
//! Architecture Invariant: nothing under `ledger` outside its storage edge
//! (`store`, `writer`, `audit`, `key`) imports tonic, sqlx or tokio. `merkle` and `entry` are
//! pure functions over plain types; storage calls into them, never the other
//! way round, so the math is testable without a database and reusable by the
//! offline `credit-node ledger verify` command.

pub mod audit;
pub mod entry;
pub mod filter;
pub mod hex;
pub mod key;
pub mod lookup;
pub mod merkle;
pub mod sth;
pub mod store;
pub mod verify;
mod writer;

pub use store::{
    Column, Copied, EntryFilter, EntryPage, Ledger, LedgerError, LedgerSettings, OutcomeKind, Page,
    Receipt, StoredEntry,
};
