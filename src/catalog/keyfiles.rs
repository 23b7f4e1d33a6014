//! The few file operations around catalogs: reading a catalog, its signature and a public key,
//! and writing a freshly generated authority key pair. Kept apart so the rest stays pure.

use std::path::Path;

use super::{AuthorityKeyPair, CatalogError};

pub(super) fn read(path: &Path) -> Result<Vec<u8>, CatalogError> {
    std::fs::read(path).map_err(|source| CatalogError::Io {
        file: path.display().to_string(),
        source,
    })
}

pub(super) fn read_text(path: &Path) -> Result<String, CatalogError> {
    std::fs::read_to_string(path).map_err(|source| CatalogError::Io {
        file: path.display().to_string(),
        source,
    })
}

/// Generates an authority key pair and writes `private_key` (PKCS#8 PEM, created with mode 0600
/// on Unix and never overwritten) and `public_key` (SPKI PEM).
pub fn generate_key_files(private_key: &Path, public_key: &Path) -> Result<(), CatalogError> {
    use std::io::Write;
    let io = |path: &Path| {
        let file = path.display().to_string();
        move |source| CatalogError::Io { file, source }
    };
    let pair = AuthorityKeyPair::generate().map_err(|reason| CatalogError::Key {
        file: private_key.display().to_string(),
        reason,
    })?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(private_key).map_err(io(private_key))?;
    file.write_all(pair.private_key_pem().as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(private_key))?;
    std::fs::write(public_key, pair.public_key().to_pem()).map_err(io(public_key))
}

/// Signs the catalog file at `catalog` with the key at `private_key` and writes the signature
/// file to `signature`.
pub fn sign_file(catalog: &Path, private_key: &Path, signature: &Path) -> Result<(), CatalogError> {
    let pem = read_text(private_key)?;
    let pair = AuthorityKeyPair::from_pem(&pem).map_err(|reason| CatalogError::Key {
        file: private_key.display().to_string(),
        reason,
    })?;
    let bytes = read(catalog)?;
    std::fs::write(signature, pair.sign(&bytes)).map_err(|source| CatalogError::Io {
        file: signature.display().to_string(),
        source,
    })
}
