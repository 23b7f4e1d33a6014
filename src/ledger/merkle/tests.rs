//! Golden vectors (RFC 9162 / transparency-dev), negative vectors, and
//! differential property tests against the O(n) reference.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::reference;
use super::vectors::*;
use super::*;
use proptest::prelude::*;
use std::cell::Cell;
use std::collections::HashMap;

/// A stored log: every node the compact range emitted, keyed (level, index).
struct Store {
    nodes: HashMap<(u8, u64), Hash>,
    lookups: Cell<u64>,
}

impl Store {
    fn build(leaves: &[Hash]) -> (Store, Vec<Hash>) {
        let mut cr = CompactRange::new();
        let mut nodes = HashMap::new();
        let mut roots = vec![cr.root()];
        for leaf in leaves {
            let (root, new) = cr.append(*leaf);
            for n in new {
                assert!(nodes.insert((n.level, n.index), n.hash).is_none());
            }
            roots.push(root);
        }
        let lookups = Cell::new(0);
        (Store { nodes, lookups }, roots)
    }

    fn lookup(&self) -> impl Fn(u8, u64) -> Option<Hash> + '_ {
        |level, index| {
            self.lookups.set(self.lookups.get() + 1);
            self.nodes.get(&(level, index)).copied()
        }
    }
}

#[test]
fn empty_tree_root_is_sha256_of_nothing() {
    assert_eq!(empty_root(), h(EMPTY));
    assert_eq!(CompactRange::new().root(), h(EMPTY));
    assert_eq!(root_from_nodes(0, |_, _| None).unwrap(), h(EMPTY));
}

#[test]
fn golden_roots_sizes_0_to_8() {
    let leaves = golden_leaves();
    let (store, roots) = Store::build(&leaves);
    assert_eq!(roots[0], h(EMPTY));
    for size in 1..=8 {
        let want = h(ROOTS[size - 1]);
        assert_eq!(roots[size], want, "compact range, size {size}");
        assert_eq!(
            reference::mth(&leaves[..size]),
            want,
            "reference, size {size}"
        );
        let from_nodes = root_from_nodes(size as u64, store.lookup()).unwrap();
        assert_eq!(from_nodes, want, "from nodes, size {size}");
    }
}

#[test]
fn golden_inclusion_proofs_generate_and_verify() {
    let leaves = golden_leaves();
    let (store, _) = Store::build(&leaves);
    for (leaf, size, want) in golden_inclusion() {
        let index = leaf - 1;
        let got = inclusion_proof(index, size, store.lookup()).unwrap();
        assert_eq!(got, want, "generate leaf {leaf} size {size}");
        let root = h(ROOTS[size as usize - 1]);
        verify_inclusion(index, size, &leaves[index as usize], &want, &root).unwrap();
        assert_inclusion_negatives(index, size, &leaves[index as usize], &want, &root);
    }
}

#[test]
fn golden_consistency_proofs_generate_and_verify() {
    let leaves = golden_leaves();
    let (store, _) = Store::build(&leaves);
    for (s1, s2, want) in golden_consistency() {
        let got = consistency_proof(s1, s2, store.lookup()).unwrap();
        assert_eq!(got, want, "generate {s1} -> {s2}");
        let r1 = h(ROOTS[s1 as usize - 1]);
        let r2 = h(ROOTS[s2 as usize - 1]);
        verify_consistency(s1, s2, &r1, &r2, &want).unwrap();
        if !want.is_empty() {
            assert_consistency_negatives(s1, s2, &r1, &r2, &want);
        }
    }
}

#[test]
fn consistency_edge_cases() {
    let (a, b, e) = (h(ROOTS[0]), h(ROOTS[1]), h(EMPTY));
    let check = |s1, s2, r1: &Hash, r2: &Hash, p: &[Hash]| verify_consistency(s1, s2, r1, r2, p);
    assert!(
        check(0, 0, &a, &b, &[]).is_err(),
        "equal sizes need equal roots"
    );
    assert!(check(0, 0, &a, &a, &[]).is_ok());
    assert!(
        check(0, 1, &a, &b, &[]).is_ok(),
        "size 0 is a prefix of all"
    );
    assert!(check(1, 1, &b, &b, &[]).is_ok());
    assert!(
        check(1, 1, &a, &b, &[]).is_err(),
        "same size, different roots"
    );
    assert!(check(1, 0, &a, &b, &[]).is_err(), "time travel");
    assert!(check(2, 1, &a, &b, &[]).is_err());
    assert!(check(1, 2, &a, &b, &[]).is_err(), "empty proof");
    assert!(
        check(0, 1, &e, &e, &[e]).is_err(),
        "non-empty trivial proof"
    );
    assert!(check(1, 1, &e, &e, &[e]).is_err());
}

#[test]
fn inclusion_edge_cases() {
    let e = h(EMPTY);
    for (index, size) in [(0, 0), (1, 0), (2, 1)] {
        assert!(verify_inclusion(index, size, &e, &[], &e).is_err());
    }
    let leaf = leaf_hash(b"data");
    assert!(verify_inclusion(0, 1, &leaf, &[], &leaf).is_ok());
    assert!(verify_inclusion(0, 1, &leaf, &[], &e).is_err());
    assert_eq!(
        inclusion_proof(3, 3, |_, _| None),
        Err(ProofError::IndexOutOfRange { index: 3, size: 3 })
    );
    assert_eq!(
        consistency_proof(4, 3, |_, _| None),
        Err(ProofError::SizeOrder {
            first: 4,
            second: 3
        })
    );
    assert_eq!(
        root_from_nodes(3, |_, _| None),
        Err(ProofError::MissingNode { level: 1, index: 0 })
    );
}

fn flip(p: &[Hash], i: usize, bit: u8) -> Vec<Hash> {
    let mut p = p.to_vec();
    p[i][0] ^= bit;
    p
}

fn with(p: &[Hash], front: Option<Hash>, back: Option<Hash>) -> Vec<Hash> {
    front
        .into_iter()
        .chain(p.iter().copied())
        .chain(back)
        .collect()
}

/// transparency-dev's corruptInclusionProof: every probe must be rejected.
fn assert_inclusion_negatives(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    let mut probes: Vec<(u64, u64, Hash, Vec<Hash>, Hash, String)> = vec![
        (
            index.wrapping_sub(1),
            size,
            *leaf,
            proof.to_vec(),
            *root,
            "index-1".into(),
        ),
        (
            index + 1,
            size,
            *leaf,
            proof.to_vec(),
            *root,
            "index+1".into(),
        ),
        (
            index ^ 2,
            size,
            *leaf,
            proof.to_vec(),
            *root,
            "index^2".into(),
        ),
        (
            index,
            size * 2,
            *leaf,
            proof.to_vec(),
            *root,
            "size*2".into(),
        ),
        (
            index,
            size / 2,
            *leaf,
            proof.to_vec(),
            *root,
            "size/2".into(),
        ),
        (
            index,
            size,
            leaf_hash(b"WrongLeaf"),
            proof.to_vec(),
            *root,
            "wrong leaf".into(),
        ),
        (
            index,
            size,
            *leaf,
            proof.to_vec(),
            h(EMPTY),
            "empty root".into(),
        ),
        (
            index,
            size,
            *leaf,
            proof.to_vec(),
            some,
            "random root".into(),
        ),
        (
            index,
            size,
            *leaf,
            with(proof, None, Some(*root)),
            *root,
            "trailing root".into(),
        ),
        (
            index,
            size,
            *leaf,
            with(proof, None, Some(some)),
            *root,
            "trailing hash".into(),
        ),
        (
            index,
            size,
            *leaf,
            with(proof, Some(*root), None),
            *root,
            "preceding root".into(),
        ),
    ];
    for i in 0..proof.len() {
        probes.push((
            index,
            size,
            *leaf,
            flip(proof, i, 8),
            *root,
            format!("flip {i}"),
        ));
    }
    if let Some((_, init)) = proof.split_last() {
        probes.push((index, size, *leaf, init.to_vec(), *root, "truncated".into()));
    }
    if proof.len() > 1 {
        let mut p = vec![proof[0], some];
        p.extend_from_slice(&proof[1..]);
        probes.push((index, size, *leaf, p, *root, "inserted".into()));
    }
    for (i, s, l, p, r, desc) in probes {
        assert!(
            verify_inclusion(i, s, &l, &p, &r).is_err(),
            "accepted corrupt inclusion probe '{desc}' for ({index}, {size})"
        );
    }
}

/// transparency-dev's corruptConsistencyProof: every probe must be rejected.
fn assert_consistency_negatives(s1: u64, s2: u64, r1: &Hash, r2: &Hash, proof: &[Hash]) {
    let wrong = leaf_hash(b"WrongRoot");
    let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>, String)> = vec![
        (s1 - 1, s2, *r1, *r2, proof.to_vec(), "size1-1".into()),
        (s1 + 1, s2, *r1, *r2, proof.to_vec(), "size1+1".into()),
        (s1 ^ 2, s2, *r1, *r2, proof.to_vec(), "size1^2".into()),
        (s1, s2 * 2, *r1, *r2, proof.to_vec(), "size2*2".into()),
        (s1, s2 / 2, *r1, *r2, proof.to_vec(), "size2/2".into()),
        (s1, s2, wrong, *r2, proof.to_vec(), "wrong root1".into()),
        (s1, s2, *r1, wrong, proof.to_vec(), "wrong root2".into()),
        (s1, s2, *r2, *r1, proof.to_vec(), "swapped roots".into()),
        (s1, s2, *r1, *r2, vec![], "empty proof".into()),
        (
            s1,
            s2,
            *r1,
            *r2,
            with(proof, None, Some(*r1)),
            "trailing root1".into(),
        ),
        (
            s1,
            s2,
            *r1,
            *r2,
            with(proof, None, Some(*r2)),
            "trailing root2".into(),
        ),
        (
            s1,
            s2,
            *r1,
            *r2,
            with(proof, Some(*r1), None),
            "preceding root1".into(),
        ),
        (
            s1,
            s2,
            *r1,
            *r2,
            with(proof, Some(*r2), None),
            "preceding root2".into(),
        ),
        (
            s1,
            s2,
            *r1,
            *r2,
            with(proof, Some(proof[0]), None),
            "preceding proof[0]".into(),
        ),
        (
            s1,
            s2,
            *r1,
            *r2,
            proof[..proof.len() - 1].to_vec(),
            "truncated".into(),
        ),
    ];
    for i in 0..proof.len() {
        probes.push((s1, s2, *r1, *r2, flip(proof, i, 16), format!("flip {i}")));
    }
    for (a, b, x, y, p, desc) in probes {
        // A probe that happens to describe another true statement (e.g.
        // size1 - 1 = 0, always consistent) is not a corruption.
        if a == 0 || (a == b && x == y) {
            continue;
        }
        assert!(
            verify_consistency(a, b, &x, &y, &p).is_err(),
            "accepted corrupt consistency probe '{desc}' for ({s1}, {s2})"
        );
    }
}

fn random_leaves(n: usize, seed: u64) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| leaf_hash(&[seed.to_be_bytes(), i.to_be_bytes()].concat()))
        .collect()
}

/// Upper bound on lookups for one proof: O(log² n).
fn log2_sq_bound(n: u64) -> u64 {
    let l = u64::from(64 - n.leading_zeros()) + 1;
    l * l
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn inclusion_matches_reference_and_verifies(n in 1usize..300, i in any::<prop::sample::Index>(), seed: u64) {
        let leaves = random_leaves(n, seed);
        let (store, roots) = Store::build(&leaves);
        let index = i.index(n);
        let root = roots[n];
        prop_assert_eq!(root, reference::mth(&leaves));
        prop_assert_eq!(root_from_nodes(n as u64, store.lookup()).unwrap(), root);
        store.lookups.set(0);
        let proof = inclusion_proof(index as u64, n as u64, store.lookup()).unwrap();
        prop_assert!(store.lookups.get() <= log2_sq_bound(n as u64));
        prop_assert_eq!(&proof, &reference::path(index, &leaves));
        prop_assert!(verify_inclusion(index as u64, n as u64, &leaves[index], &proof, &root).is_ok());
        assert_inclusion_negatives(index as u64, n as u64, &leaves[index], &proof, &root);
    }

    #[test]
    fn consistency_matches_reference_and_verifies(n in 1usize..300, a in any::<prop::sample::Index>(), seed: u64) {
        let leaves = random_leaves(n, seed);
        let (store, roots) = Store::build(&leaves);
        let m = a.index(n + 1);
        store.lookups.set(0);
        let proof = consistency_proof(m as u64, n as u64, store.lookup()).unwrap();
        prop_assert!(store.lookups.get() <= log2_sq_bound(n as u64));
        prop_assert_eq!(&proof, &reference::proof(m, &leaves));
        prop_assert!(verify_consistency(m as u64, n as u64, &roots[m], &roots[n], &proof).is_ok());
        if !proof.is_empty() {
            assert_consistency_negatives(m as u64, n as u64, &roots[m], &roots[n], &proof);
        }
    }

    #[test]
    fn frontier_rebuilt_from_nodes_continues_identically(n in 0usize..200, extra in 0usize..50, seed: u64) {
        let leaves = random_leaves(n + extra, seed);
        let (store, roots) = Store::build(&leaves[..n]);
        let mut cr = CompactRange::from_nodes(n as u64, store.lookup()).unwrap();
        prop_assert_eq!(cr.root(), roots[n]);
        for leaf in &leaves[n..] {
            cr.push(*leaf);
        }
        prop_assert_eq!(cr.root(), reference::mth(&leaves));
    }
}

#[test]
fn large_tree_proofs_use_few_lookups() {
    // A log of 2^17 + 1234 leaves: deep enough to exercise every shape.
    let n: u64 = (1 << 17) + 1_234;
    let leaves = random_leaves(n as usize, 7);
    let (store, roots) = Store::build(&leaves);
    for &(i, m) in &[
        (0u64, 1u64),
        (n - 1, n - 1),
        (77_777, 99_999),
        (12, (1 << 17) + 1),
    ] {
        store.lookups.set(0);
        let p = inclusion_proof(i, n, store.lookup()).unwrap();
        assert!(store.lookups.get() <= log2_sq_bound(n));
        verify_inclusion(i, n, &leaves[i as usize], &p, &roots[n as usize]).unwrap();
        store.lookups.set(0);
        let c = consistency_proof(m, n, store.lookup()).unwrap();
        assert!(store.lookups.get() <= log2_sq_bound(n));
        verify_consistency(m, n, &roots[m as usize], &roots[n as usize], &c).unwrap();
    }
}
