//! Reading the ledger's key files (written by `dev-pki` or `catalog keygen`; same formats as the
//! catalog authority's): `ledger.key` PKCS#8 PEM, `ledger.pub` SubjectPublicKeyInfo PEM.
//!
//! The writer needs an owned ring key pair (it lives in the writer task), which the catalog's
//! `AuthorityKeyPair` only lends; hence this small loader over the same formats. The public
//! key file is validated by the catalog's parser first, so both modules accept the same files.

use std::path::Path;

use ring::signature::{Ed25519KeyPair, KeyPair};
use rustls::pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer, pem::PemObject};

use crate::catalog::AuthorityPublicKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read ledger key {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ledger key {path} is readable by group or others (mode {mode:o}); chmod 600 it")]
    TooOpen { path: String, mode: u32 },
    #[error("ledger key {path} is not an Ed25519 {kind} in PEM")]
    Format { path: String, kind: &'static str },
}

/// The ledger signing key pair. Refused when group or others may read it: whoever holds it can
/// sign tree heads over a rewritten log.
pub fn read_signing_key(path: &Path) -> Result<Ed25519KeyPair, KeyFileError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| KeyFileError::Read {
                path: path.display().to_string(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen {
                path: path.display().to_string(),
                mode: mode & 0o777,
            });
        }
    }
    let pem = read(path)?;
    let bad = || KeyFileError::Format {
        path: path.display().to_string(),
        kind: "private key (PKCS#8)",
    };
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| bad())?;
    // maybe_unchecked: also reads PKCS#8 v1 (OpenSSL's and dev-pki's), as the catalog does.
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der()).map_err(|_| bad())
}

/// The raw 32-byte public key of a key pair file, for verifying with the node's own config.
pub fn public_key_of(pair: &Ed25519KeyPair) -> Vec<u8> {
    pair.public_key().as_ref().to_vec()
}

/// The raw 32-byte public key from an SPKI PEM file (`ledger.pub`).
pub fn read_public_key(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    let pem = read(path)?;
    let bad = || KeyFileError::Format {
        path: path.display().to_string(),
        kind: "public key (SubjectPublicKeyInfo)",
    };
    AuthorityPublicKey::from_pem(&pem).map_err(|_| bad())?;
    let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).map_err(|_| bad())?;
    let der: &[u8] = der.as_ref();
    // Checked above: the DER is the fixed Ed25519 SPKI prefix followed by the 32-byte key.
    der.get(der.len().saturating_sub(32)..)
        .filter(|k| k.len() == 32)
        .map(<[u8]>::to_vec)
        .ok_or_else(bad)
}

fn read(path: &Path) -> Result<String, KeyFileError> {
    std::fs::read_to_string(path).map_err(|source| KeyFileError::Read {
        path: path.display().to_string(),
        source,
    })
}
