//! Proof verification, step for step as RFC 9162 §2.1.3.2 (inclusion) and
//! §2.1.4.2 (consistency), so a reviewer can hold the code against the RFC.
//!
//! Hashes are public values, so comparing them with `==` leaks nothing; this
//! is unlike MACs and signatures, which go through ring.

use super::{Hash, node_hash};

/// Why a proof was rejected. Kept precise so an auditor can tell a
/// malformed proof from a tree that really does not contain the leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyProofError {
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("first size {first} is larger than second size {second}")]
    SizeOrder { first: u64, second: u64 },
    #[error("proof has more hashes than the tree shape allows")]
    ProofTooLong,
    #[error("proof has fewer hashes than the tree shape needs")]
    ProofTooShort,
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    #[error("proof does not lead to the expected first (older) root")]
    FirstRootMismatch,
}

/// Verifies that `leaf` is leaf number `index` of the tree of `size` leaves
/// whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyProofError> {
    if index >= size {
        return Err(VerifyProofError::IndexOutOfRange { index, size });
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return Err(VerifyProofError::ProofTooLong);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    if sn != 0 {
        return Err(VerifyProofError::ProofTooShort);
    }
    if r != *root {
        return Err(VerifyProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `first` leaves with root `first_root` is a
/// prefix of the tree of `second` leaves with root `second_root`
/// (RFC 9162 §2.1.4.2).
///
/// Edge cases the RFC leaves implicit follow transparency-dev/merkle: size 0
/// is a prefix of everything (empty proof), and equal sizes need an empty
/// proof and equal roots.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    proof: &[Hash],
) -> Result<(), VerifyProofError> {
    if first > second {
        return Err(VerifyProofError::SizeOrder { first, second });
    }
    if first == second || first == 0 {
        if !proof.is_empty() {
            return Err(VerifyProofError::ProofTooLong);
        }
        if first == second && first_root != second_root {
            return Err(VerifyProofError::RootMismatch);
        }
        return Ok(());
    }
    // Step 1: an empty path cannot prove a proper extension.
    let Some((head, rest)) = proof.split_first() else {
        return Err(VerifyProofError::ProofTooShort);
    };
    // Step 2: if `first` is a power of two, its root is the path's first
    // element, implied rather than sent.
    let (start, rest): (&Hash, &[Hash]) = if first.is_power_of_two() {
        (first_root, proof)
    } else {
        (head, rest)
    };
    // Steps 3-4.
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (*start, *start);
    // Step 6.
    for c in rest {
        if sn == 0 {
            return Err(VerifyProofError::ProofTooLong);
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if sn != 0 {
        return Err(VerifyProofError::ProofTooShort);
    }
    if fr != *first_root {
        return Err(VerifyProofError::FirstRootMismatch);
    }
    if sr != *second_root {
        return Err(VerifyProofError::RootMismatch);
    }
    Ok(())
}
