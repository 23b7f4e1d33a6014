//! RFC 9162 (Certificate Transparency v2) Merkle tree math.
//!
//! Hashing is exactly RFC 9162 §2.1.1: leaf = SHA-256(0x00 || data),
//! node = SHA-256(0x01 || left || right), empty tree = SHA-256(""). The
//! distinct prefixes stop a leaf being passed off as an interior node.
//!
//! Storage model, in the spirit of tiled logs (Tessera): storage persists the
//! hash of every *perfect* subtree, addressed by `(level, index)` — the node
//! covering leaves `[index << level, (index + 1) << level)`; level 0 holds the
//! leaf hashes. [`CompactRange`] appends in O(log n) state and hands back the
//! nodes that became complete; [`root_from_nodes`], [`inclusion_proof`] and
//! [`consistency_proof`] rebuild anything else from a lookup of those nodes
//! with O(log² n) lookups at worst, never O(n).
//!
//! Architecture Invariant: this module never imports tonic, sqlx or tokio.
//! It is pure functions over plain types; storage calls into it with a
//! lookup closure, so the math is tested without a database.

mod compact;
mod proof;
mod verify;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;

pub use compact::{CompactRange, NewNode};
pub use proof::{ProofError, consistency_proof, inclusion_proof, root_from_nodes};
pub use verify::{VerifyProofError, verify_consistency, verify_inclusion};

use ring::digest;

/// A SHA-256 output.
pub type Hash = [u8; 32];

/// Root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    sha256(&[&[]])
}

/// Leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[0x00], data])
}

/// Interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Largest power of two strictly less than `n` (the RFC's split point `k`).
/// Callers guarantee `n >= 2`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}
