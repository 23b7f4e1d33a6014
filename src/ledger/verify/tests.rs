//! Every kind of tampering is detected, with the first bad position.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::ledger::entry::tests::sample;
use crate::ledger::merkle::{self, CompactRange};
use crate::ledger::sth::TreeHead;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::collections::HashMap;

fn key(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
}

/// A stored log of `n` entries, with tree heads signed at `sth_sizes`.
pub(super) struct Log {
    pub rows: Vec<StoredRow<Vec<u8>>>,
    pub sths: Vec<SignedTreeHead>,
    pub nodes: HashMap<(u8, u64), Hash>,
    pub key: Ed25519KeyPair,
}

impl Log {
    pub fn new(n: u64, sth_sizes: &[u64]) -> Log {
        let key = key(1);
        let mut tree = CompactRange::new();
        let mut nodes = HashMap::new();
        let mut rows = Vec::new();
        let mut sths = Vec::new();
        let sign = |tree: &CompactRange, sths: &mut Vec<SignedTreeHead>| {
            for _ in sth_sizes.iter().filter(|&&s| s == tree.size()) {
                let head = TreeHead {
                    tree_size: tree.size(),
                    root_hash: tree.root(),
                    timestamp_ms: 1_000 + tree.size() as i64,
                };
                sths.push(head.sign(&key));
            }
        };
        sign(&tree, &mut sths);
        for seq in 0..n {
            let entry = sample(seq).encode();
            let leaf_hash = merkle::leaf_hash(&entry);
            tree.push_with(leaf_hash, |node| {
                nodes.insert((node.level, node.index), node.hash);
            });
            rows.push(StoredRow {
                seq,
                entry,
                leaf_hash,
            });
            sign(&tree, &mut sths);
        }
        Log {
            rows,
            sths,
            nodes,
            key,
        }
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    fn verify(&self) -> Result<VerifyReport, VerifyError> {
        verify(
            self.rows.clone(),
            self.sths.clone(),
            &self.public_key(),
            0,
            |_| {},
        )
    }

    /// Replaces an entry's bytes and, like a careful attacker, its hash.
    fn rewrite(&mut self, seq: usize, entry: Vec<u8>) {
        self.rows[seq].leaf_hash = merkle::leaf_hash(&entry);
        self.rows[seq].entry = entry;
    }
}

#[test]
fn an_untouched_log_verifies() {
    let log = Log::new(100, &[0, 10, 10, 64, 99]);
    let report = log.verify().unwrap();
    assert_eq!(report.entries, 100);
    assert_eq!(report.sths_checked, 5);
    assert_eq!(report.signed_size, 99);
    assert_eq!(report.unsigned_tail, 1);
    let leaves: Vec<Hash> = log.rows.iter().map(|r| r.leaf_hash).collect();
    assert_eq!(
        report.root,
        merkle::root_from_nodes(100, |l, i| log.nodes.get(&(l, i)).copied()).unwrap()
    );
    assert_eq!(leaves.len(), 100);
}

#[test]
fn empty_log_verifies() {
    let log = Log::new(0, &[0]);
    let report = log.verify().unwrap();
    assert_eq!(report.entries, 0);
    assert_eq!(report.root, merkle::empty_root());
}

#[test]
fn one_changed_byte_is_a_modified_entry() {
    let mut log = Log::new(50, &[50]);
    let last = log.rows[17].entry.len() - 40; // inside the outcome/digest area
    log.rows[17].entry[last] ^= 0x01;
    assert_eq!(log.verify(), Err(VerifyError::ModifiedEntry { seq: 17 }));
}

#[test]
fn a_changed_stored_hash_is_caught_too() {
    let mut log = Log::new(50, &[50]);
    log.rows[3].leaf_hash[0] ^= 1;
    assert_eq!(log.verify(), Err(VerifyError::ModifiedEntry { seq: 3 }));
}

/// immudb's mistake: the attacker also rewrites the stored leaf hash. Only
/// recomputing the tree from entries catches it, at the next signed head.
#[test]
fn a_rewritten_entry_with_rewritten_hash_breaks_the_signed_root() {
    let mut log = Log::new(50, &[10, 20, 50]);
    let mut e = sample(15);
    e.subject = "91350100M000100Y44".into();
    log.rewrite(15, e.encode());
    assert_eq!(log.verify(), Err(VerifyError::RootMismatch { size: 20 }));
}

#[test]
fn undecodable_entry_is_reported_with_its_reason() {
    let mut log = Log::new(5, &[5]);
    let mut bytes = log.rows[2].entry.clone();
    bytes.push(0);
    log.rewrite(2, bytes);
    assert!(matches!(
        log.verify(),
        Err(VerifyError::Undecodable {
            seq: 2,
            reason: DecodeError::TrailingBytes { count: 1 }
        })
    ));
}

#[test]
fn a_deleted_entry_is_missing() {
    let mut log = Log::new(30, &[30]);
    log.rows.remove(12);
    assert_eq!(
        log.verify(),
        Err(VerifyError::MissingEntry { expected_seq: 12 })
    );
}

#[test]
fn a_deletion_hidden_by_renumbering_is_caught() {
    let mut log = Log::new(30, &[30]);
    log.rows.remove(12);
    for (i, row) in log.rows.iter_mut().enumerate() {
        row.seq = i as u64;
    }
    assert_eq!(
        log.verify(),
        Err(VerifyError::Reordered { seq: 12, found: 13 })
    );
}

#[test]
fn two_swapped_entries_are_reordered() {
    let mut log = Log::new(30, &[30]);
    let (a, b) = (log.rows[7].clone(), log.rows[21].clone());
    log.rewrite(7, b.entry);
    log.rewrite(21, a.entry);
    assert_eq!(
        log.verify(),
        Err(VerifyError::Reordered { seq: 7, found: 21 })
    );
}

#[test]
fn rows_out_of_order_are_reordered() {
    let mut log = Log::new(30, &[30]);
    log.rows.swap(4, 5);
    assert_eq!(
        log.verify(),
        Err(VerifyError::MissingEntry { expected_seq: 4 })
    );
    let mut log = Log::new(30, &[30]);
    log.rows[5].seq = 3; // a duplicate sequence number
    assert_eq!(
        log.verify(),
        Err(VerifyError::Reordered { seq: 5, found: 3 })
    );
}

#[test]
fn a_truncated_tail_is_detected() {
    let mut log = Log::new(40, &[20, 40]);
    log.rows.truncate(35);
    assert_eq!(
        log.verify(),
        Err(VerifyError::Truncated {
            have: 35,
            sth_size: 40
        })
    );
    // Cut below every tree head, even to nothing.
    log.rows.clear();
    assert_eq!(
        log.verify(),
        Err(VerifyError::Truncated {
            have: 0,
            sth_size: 20
        })
    );
}

#[test]
fn a_tree_head_signed_by_another_key_is_rejected() {
    let mut log = Log::new(40, &[20, 40]);
    let forged = log.sths[0].head.sign(&key(2));
    log.sths[0] = forged;
    assert!(matches!(
        log.verify(),
        Err(VerifyError::BadSthSignature { size: 20, .. })
    ));
}

#[test]
fn a_forged_head_beyond_the_log_is_a_forgery_not_a_truncation() {
    let mut log = Log::new(10, &[10]);
    let mut head = log.sths[0].clone();
    head.head.tree_size = 11;
    log.sths.push(head);
    assert!(matches!(
        log.verify(),
        Err(VerifyError::BadSthSignature { size: 11, .. })
    ));
}

#[test]
fn a_signed_head_of_a_forked_tree_is_a_root_mismatch() {
    let mut log = Log::new(40, &[20, 40]);
    let fork = TreeHead {
        root_hash: [9; 32],
        ..log.sths[0].head
    };
    log.sths[0] = fork.sign(&log.key);
    assert_eq!(log.verify(), Err(VerifyError::RootMismatch { size: 20 }));
}

#[test]
fn tree_heads_must_not_go_back() {
    let mut log = Log::new(40, &[20, 40]);
    log.sths.swap(0, 1);
    assert_eq!(
        log.verify(),
        Err(VerifyError::NonMonotonicSth {
            index: 1,
            size: 20,
            previous_size: 40
        })
    );
}

#[test]
fn progress_is_reported_every_n_entries() {
    let log = Log::new(25, &[25]);
    let mut seen = Vec::new();
    verify(
        log.rows.clone(),
        log.sths.clone(),
        &log.public_key(),
        10,
        |n| seen.push(n),
    )
    .unwrap();
    assert_eq!(seen, vec![10, 20]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any single changed byte anywhere is reported at exactly its entry,
    /// whether or not the attacker also rewrote the stored hash.
    #[test]
    fn any_changed_byte_is_found_at_its_entry(
        n in 1u64..60,
        which in proptest::prelude::any::<proptest::sample::Index>(),
        at in proptest::prelude::any::<proptest::sample::Index>(),
        bit in 0u8..8,
        rehash: bool,
    ) {
        let mut log = Log::new(n, &[n]);
        let seq = which.index(n as usize);
        let mut bytes = log.rows[seq].entry.clone();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        if rehash {
            log.rewrite(seq, bytes);
        } else {
            log.rows[seq].entry = bytes;
        }
        let seq = seq as u64;
        let err = log.verify().unwrap_err();
        let located = match err {
            VerifyError::ModifiedEntry { seq: s } | VerifyError::Undecodable { seq: s, .. } => s == seq,
            VerifyError::Reordered { seq: s, .. } => s == seq,
            // Decodable and renumbered consistently: only the signed root
            // can tell, at the first head covering the entry.
            VerifyError::RootMismatch { size } => rehash && size == n,
            _ => false,
        };
        proptest::prop_assert!(located, "{:?} for a change in entry {}", err, seq);
    }
}
