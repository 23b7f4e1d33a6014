//! Test helpers: catalogs reach tests the same way they reach a node, signed then verified.

use super::{AuthorityKeyPair, SignedCatalog};

pub(crate) use super::DEMO;

pub(crate) fn signed(name: &str, text: &str) -> SignedCatalog {
    let pair = AuthorityKeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let sig = pair.sign(text.as_bytes());
    SignedCatalog::verify_and_parse(name, text.as_bytes(), &sig, &pair.public_key())
        .unwrap_or_else(|e| panic!("{e}"))
}

pub(crate) fn demo() -> SignedCatalog {
    signed("demo.toml", DEMO)
}
