//! The incremental frontier ("compact range" `[0, n)`): the roots of the
//! perfect subtrees that make up the binary decomposition of the tree size.
//! O(log n) state is all a writer or a streaming verifier needs to keep.

use super::{Hash, empty_root, node_hash};

/// A perfect-subtree node that became complete during an append, for storage
/// to persist. It covers leaves `[index << level, (index + 1) << level)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewNode {
    pub level: u8,
    pub index: u64,
    pub hash: Hash,
}

/// The frontier of a Merkle log of `size` leaves.
///
/// Why a frontier instead of a tree: appends and verification stream over
/// millions of entries; keeping one hash per set bit of `size` bounds memory
/// to 64 hashes whatever the log's length.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    /// Perfect-subtree roots, left to right, strictly decreasing level.
    /// `stack[i]` has the level of the i-th highest set bit of `size`.
    stack: Vec<Hash>,
}

impl CompactRange {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Self {
            size: 0,
            stack: Vec::with_capacity(64),
        }
    }

    /// Rebuilds the frontier of a tree of `size` leaves from stored nodes:
    /// one lookup per set bit of `size`. `None` if a node is missing.
    pub fn from_nodes(size: u64, mut lookup: impl FnMut(u8, u64) -> Option<Hash>) -> Option<Self> {
        let mut stack = Vec::with_capacity(64);
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            if size & (1 << level) != 0 {
                stack.push(lookup(level, start >> level)?);
                start += 1 << level;
            }
        }
        Some(Self { size, stack })
    }

    /// Number of leaves appended so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash, calling `emit` for every node that became
    /// complete (the leaf itself at level 0 first, then each merge upwards).
    /// The hot path of verification: no allocation, no root computation.
    pub fn push_with(&mut self, leaf: Hash, mut emit: impl FnMut(NewNode)) {
        let index = self.size;
        emit(NewNode {
            level: 0,
            index,
            hash: leaf,
        });
        let mut hash = leaf;
        let mut level = 0u8;
        // Each trailing one bit of the old size is a left sibling to merge.
        while index & (1 << level) != 0 {
            // The stack holds one entry per set bit, so a set bit means
            // there is an entry to pop; `unwrap_or` keeps this panic-free.
            let left = self.stack.pop().unwrap_or_default();
            hash = node_hash(&left, &hash);
            level += 1;
            emit(NewNode {
                level,
                index: index >> level,
                hash,
            });
        }
        self.stack.push(hash);
        self.size += 1;
    }

    /// Appends a leaf hash without reporting new nodes.
    pub fn push(&mut self, leaf: Hash) {
        self.push_with(leaf, |_| {});
    }

    /// Appends a leaf hash; returns the new root and the newly completed
    /// perfect-subtree nodes, which storage persists in the same transaction
    /// as the entry so proofs can later be served from them.
    pub fn append(&mut self, leaf: Hash) -> (Hash, Vec<NewNode>) {
        let mut nodes = Vec::with_capacity(2);
        self.push_with(leaf, |n| nodes.push(n));
        (self.root(), nodes)
    }

    /// The tree root: the frontier folded right to left (RFC 9162 MTH).
    pub fn root(&self) -> Hash {
        let mut iter = self.stack.iter().rev();
        match iter.next() {
            None => empty_root(),
            Some(last) => iter.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }
}
