//! The catalog authority's Ed25519 key and detached signatures over the exact catalog bytes.
//!
//! Key files are standard PEM so that stock tools read them: the private key is PKCS#8
//! (`-----BEGIN PRIVATE KEY-----`), the public key SubjectPublicKeyInfo
//! (`-----BEGIN PUBLIC KEY-----`). The private key is written as PKCS#8 v1 (RFC 8410), not the
//! v2 that ring generates: OpenSSL reads v2 Ed25519 keys only from 3.5 on, and 3.0 is still
//! common (Debian 12, RHEL 9). Both versions are read, including keys made by
//! `openssl genpkey -algorithm ed25519`.
//!
//! Signature file format: one line, the 64-byte Ed25519 signature as 128 lower-case hex digits,
//! then a newline (a missing final newline or CRLF is tolerated; nothing else is).

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (0 unused bits) }, followed by the 32-byte key.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER prefixes of Ed25519 PKCS#8 v2 (as ring writes it, public key after the seed) and v1:
/// SEQUENCE { INTEGER version, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }.
const PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no PEM block of the expected type ({0}) found")]
    NoPem(&'static str),
    #[error("not an Ed25519 key: {0}")]
    NotEd25519(String),
    #[error("key generation failed")]
    Generation,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature file is not one line of 128 lower-case hex digits")]
    Malformed,
    #[error("signature does not verify with the authority key {0}")]
    Invalid(String),
}

/// The authority's signing key. Lives only where catalogs are signed, never on a node.
pub struct AuthorityKeyPair {
    pkcs8: Vec<u8>,
    pair: Ed25519KeyPair,
}

impl AuthorityKeyPair {
    pub fn generate() -> Result<Self, KeyError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| KeyError::Generation)?;
        let seed = doc
            .as_ref()
            .strip_prefix(&PKCS8_V2_PREFIX[..])
            .and_then(|rest| rest.get(..32))
            .ok_or(KeyError::Generation)?;
        let mut v1 = PKCS8_V1_PREFIX.to_vec();
        v1.extend_from_slice(seed);
        Self::from_pkcs8(v1)
    }

    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| KeyError::NoPem("PRIVATE KEY"))?;
        Self::from_pkcs8(der.secret_pkcs8_der().to_vec())
    }

    fn from_pkcs8(pkcs8: Vec<u8>) -> Result<Self, KeyError> {
        // maybe_unchecked: also reads PKCS#8 v1 (OpenSSL's), whose public key is derived.
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|e| KeyError::NotEd25519(e.to_string()))?;
        Ok(Self { pkcs8, pair })
    }

    pub fn private_key_pem(&self) -> String {
        pem("PRIVATE KEY", &self.pkcs8)
    }

    pub fn public_key(&self) -> AuthorityPublicKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.pair.public_key().as_ref());
        AuthorityPublicKey(key)
    }

    /// The contents of the detached signature file for `bytes`.
    pub fn sign(&self, bytes: &[u8]) -> String {
        let mut out = hex(self.pair.sign(bytes).as_ref());
        out.push('\n');
        out
    }
}

impl Drop for AuthorityKeyPair {
    fn drop(&mut self) {
        // Best effort without unsafe: ring keeps its own copy, which it does not zeroize.
        self.pkcs8.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&self.pkcs8);
    }
}

/// The authority's public key, as nodes hold it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthorityPublicKey([u8; 32]);

impl AuthorityPublicKey {
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| KeyError::NoPem("PUBLIC KEY"))?;
        let der: &[u8] = der.as_ref();
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(key) if key.len() == 32 => {
                let mut out = [0u8; 32];
                out.copy_from_slice(key);
                Ok(Self(out))
            }
            _ => Err(KeyError::NotEd25519(
                "SubjectPublicKeyInfo is not Ed25519".into(),
            )),
        }
    }

    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.0);
        pem("PUBLIC KEY", &der)
    }

    /// `ed25519:` and the first 8 bytes of SHA-256 of the raw key, hex: names the key in
    /// errors and ledger entries.
    pub fn fingerprint(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        format!("ed25519:{}", hex(&digest.as_ref()[..8]))
    }

    /// Checks a signature file's contents over `bytes` (ring's verifier, no comparison of ours).
    pub fn verify(&self, bytes: &[u8], signature_file: &str) -> Result<(), SignatureError> {
        let line = signature_file
            .strip_suffix("\r\n")
            .or_else(|| signature_file.strip_suffix('\n'))
            .unwrap_or(signature_file);
        let sig = unhex(line).ok_or(SignatureError::Malformed)?;
        if sig.len() != 64 {
            return Err(SignatureError::Malformed);
        }
        UnparsedPublicKey::new(&ED25519, &self.0)
            .verify(bytes, &sig)
            .map_err(|_| SignatureError::Invalid(self.fingerprint()))
    }
}

impl std::fmt::Debug for AuthorityPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    crate::ledger::hex::encode(bytes)
}

/// Lower-case only, so that one signature has one spelling.
fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let b = text.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

fn pem(label: &str, der: &[u8]) -> String {
    // LF line endings, as OpenSSL writes them.
    let config = ::pem::EncodeConfig::new().set_line_ending(::pem::LineEnding::LF);
    ::pem::encode_config(&::pem::Pem::new(label, der), config)
}
