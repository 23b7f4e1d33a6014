//! Proof generation from stored perfect-subtree nodes.
//!
//! These mirror the recursive definitions of RFC 9162 §2.1.3.1 (PATH) and
//! §2.1.4.1 (PROOF/SUBPROOF) so they can be read against the RFC, but every
//! MTH of a sub-range is assembled from stored perfect subtrees: a sub-range
//! in that recursion always starts on a boundary of its own largest power of
//! two, so its left part is one stored node and only its ragged right edge
//! recurses. Each proof element costs O(log n) lookups, a proof O(log² n).

use super::{Hash, empty_root, node_hash, split_point};

/// Why a proof or root could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("consistency proof asked from size {first} to smaller size {second}")]
    SizeOrder { first: u64, second: u64 },
    #[error("stored node (level {level}, index {index}) is missing")]
    MissingNode { level: u8, index: u64 },
}

/// MTH(D[start:end]) for `end > start`, from stored perfect subtrees.
fn range_hash<L>(start: u64, end: u64, lookup: &L) -> Result<Hash, ProofError>
where
    L: Fn(u8, u64) -> Option<Hash>,
{
    let len = end - start;
    if len.is_power_of_two() && start.is_multiple_of(len) {
        // `len` is a power of two below 2^64, so its level fits in a u8.
        let level = len.trailing_zeros() as u8;
        let index = start >> level;
        return lookup(level, index).ok_or(ProofError::MissingNode { level, index });
    }
    let k = split_point(len);
    let left = range_hash(start, start + k, lookup)?;
    let right = range_hash(start + k, end, lookup)?;
    Ok(node_hash(&left, &right))
}

/// The root of a tree of `size` leaves, from stored perfect-subtree nodes.
/// Lets storage answer "root at size n" for any past n, e.g. to sign or to
/// check an old tree head, without replaying the log.
pub fn root_from_nodes<L>(size: u64, lookup: L) -> Result<Hash, ProofError>
where
    L: Fn(u8, u64) -> Option<Hash>,
{
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(0, size, &lookup)
}

/// Inclusion proof `PATH(index, D[0:size])` (RFC 9162 §2.1.3.1), ordered from
/// the leaf's sibling up to the root's child, as verification consumes it.
pub fn inclusion_proof<L>(index: u64, size: u64, lookup: L) -> Result<Vec<Hash>, ProofError>
where
    L: Fn(u8, u64) -> Option<Hash>,
{
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut start, mut end) = (0, size);
    let mut top_down = Vec::with_capacity(64);
    while end - start > 1 {
        let k = split_point(end - start);
        if index < start + k {
            top_down.push(range_hash(start + k, end, &lookup)?);
            end = start + k;
        } else {
            top_down.push(range_hash(start, start + k, &lookup)?);
            start += k;
        }
    }
    top_down.reverse();
    Ok(top_down)
}

/// Consistency proof `PROOF(first, D[0:second])` (RFC 9162 §2.1.4.1), ordered
/// as verification consumes it. Empty when `first` is 0 or equals `second`:
/// those pairs are consistent by definition (as transparency-dev does).
pub fn consistency_proof<L>(first: u64, second: u64, lookup: L) -> Result<Vec<Hash>, ProofError>
where
    L: Fn(u8, u64) -> Option<Hash>,
{
    if first > second {
        return Err(ProofError::SizeOrder { first, second });
    }
    if first == 0 || first == second {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[start:end], b), unrolled: `m` is relative to `start`.
    let (mut start, mut end, mut m, mut whole) = (0u64, second, first, true);
    let mut top_down = Vec::with_capacity(64);
    while m != end - start {
        let k = split_point(end - start);
        if m <= k {
            top_down.push(range_hash(start + k, end, &lookup)?);
            end = start + k;
        } else {
            top_down.push(range_hash(start, start + k, &lookup)?);
            start += k;
            m -= k;
            whole = false;
        }
    }
    if !whole {
        top_down.push(range_hash(start, end, &lookup)?);
    }
    top_down.reverse();
    Ok(top_down)
}
