//! Signed tree heads: the node's Ed25519 signature over (size, root, time,
//! key id), which is what makes the Merkle root a commitment that a
//! verifier who holds only the public key can check (promise 6).
//!
//! The signed bytes are domain-separated ("credit-node/sth/v1\0" first) so
//! an STH signature can never be replayed as a signature over anything else
//! the same key might sign, and fixed-width so they are canonical.
//! Signatures are checked only through ring's `UnparsedPublicKey::verify`,
//! never compared with `==`.

use crate::ledger::merkle::Hash;
use ring::digest;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// Domain-separation prefix of the signed message.
pub const STH_DOMAIN: &[u8] = b"credit-node/sth/v1\0";

/// Identifies a ledger key: SHA-256 of its raw 32-byte Ed25519 public key.
/// Lets a verifier pick the right key after a rotation; it is *not* trusted
/// on its own — only the signature check is.
pub type KeyId = [u8; 32];

/// The unsigned head: what the node commits to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeHead {
    pub tree_size: u64,
    pub root_hash: Hash,
    pub timestamp_ms: i64,
}

/// A tree head with the node's signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTreeHead {
    pub head: TreeHead,
    pub key_id: KeyId,
    pub signature: [u8; 64],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SthError {
    #[error("tree head of size {size} names key {key_id}, not the ledger key")]
    UnknownKey { size: u64, key_id: String },
    #[error("tree head of size {size} has an invalid signature")]
    BadSignature { size: u64 },
}

/// The key id of a raw Ed25519 public key.
pub fn key_id(public_key: &[u8]) -> KeyId {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, public_key).as_ref());
    out
}

impl TreeHead {
    /// The exact bytes signed: domain || size || root || timestamp || key id.
    pub fn signed_message(&self, key_id: &KeyId) -> Vec<u8> {
        let mut m = Vec::with_capacity(STH_DOMAIN.len() + 8 + 32 + 8 + 32);
        m.extend_from_slice(STH_DOMAIN);
        m.extend_from_slice(&self.tree_size.to_be_bytes());
        m.extend_from_slice(&self.root_hash);
        m.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        m.extend_from_slice(key_id);
        m
    }

    /// Signs with the node's ledger key. Ed25519 is deterministic, so this
    /// needs no randomness source and cannot fail.
    pub fn sign(self, key: &Ed25519KeyPair) -> SignedTreeHead {
        let key_id = key_id(key.public_key().as_ref());
        let sig = key.sign(&self.signed_message(&key_id));
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig.as_ref());
        SignedTreeHead {
            head: self,
            key_id,
            signature,
        }
    }
}

impl SignedTreeHead {
    /// Checks the signature against the ledger's raw Ed25519 public key.
    /// The key id must name that key as well, so a head signed by a rotated
    /// or foreign key is reported as such rather than as a bad signature.
    pub fn verify(&self, public_key: &[u8]) -> Result<(), SthError> {
        let size = self.head.tree_size;
        if self.key_id != key_id(public_key) {
            return Err(SthError::UnknownKey {
                size,
                key_id: crate::ledger::hex::encode(&self.key_id),
            });
        }
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&self.head.signed_message(&self.key_id), &self.signature)
            .map_err(|_| SthError::BadSignature { size })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    pub(crate) fn key(seed: u8) -> Ed25519KeyPair {
        Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
    }

    fn head() -> TreeHead {
        TreeHead {
            tree_size: 8,
            root_hash: [5; 32],
            timestamp_ms: 1_790_000_000_000,
        }
    }

    #[test]
    fn sign_then_verify() {
        let k = key(1);
        let sth = head().sign(&k);
        assert_eq!(sth.verify(k.public_key().as_ref()), Ok(()));
    }

    #[test]
    fn every_signed_field_is_covered() {
        let k = key(1);
        let pk = k.public_key().as_ref().to_vec();
        let sth = head().sign(&k);
        let mut tampered = vec![sth.clone(), sth.clone(), sth.clone(), sth.clone()];
        tampered[0].head.tree_size += 1;
        tampered[1].head.root_hash[31] ^= 1;
        tampered[2].head.timestamp_ms += 1;
        tampered[3].signature[0] ^= 1;
        for t in tampered {
            assert_eq!(
                t.verify(&pk),
                Err(SthError::BadSignature {
                    size: t.head.tree_size
                })
            );
        }
    }

    #[test]
    fn another_key_is_rejected() {
        let honest = key(1);
        let forged = head().sign(&key(2));
        assert!(matches!(
            forged.verify(honest.public_key().as_ref()),
            Err(SthError::UnknownKey { size: 8, .. })
        ));
        // Even with the honest key id copied in, the signature fails.
        let mut forged = forged;
        forged.key_id = key_id(honest.public_key().as_ref());
        assert_eq!(
            forged.verify(honest.public_key().as_ref()),
            Err(SthError::BadSignature { size: 8 })
        );
    }

    #[test]
    fn message_is_domain_separated_and_fixed_width() {
        let m = head().signed_message(&[9; 32]);
        assert!(m.starts_with(STH_DOMAIN));
        assert_eq!(m.len(), STH_DOMAIN.len() + 80);
    }
}
