//! The tamper-evident registration-and-review ledger: its pure core.
//!
//! Keeps promise 6 of design.md ("the ledger is tamper-evident"): entries are
//! canonically encoded ([`entry`]), hashed into an RFC 9162 Merkle log
//! ([`merkle`]), committed to by Ed25519 signed tree heads ([`sth`]), and
//! checked end to end by [`verify`], which recomputes every leaf from the
//! stored entry bytes rather than trusting stored hashes (immudb's mistake).
//!
//! Architecture Invariant: nothing under `ledger` (outside the storage layer
//! that will wrap it) imports tonic, sqlx or tokio. `merkle` and `entry` are
//! pure functions over plain types; storage calls into them, never the other
//! way round, so the math is testable without a database and reusable by the
//! offline `credit-node ledger verify` command.

pub mod entry;
pub mod hex;
pub mod merkle;
pub mod sth;
pub mod verify;
