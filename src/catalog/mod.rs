//! The signed catalog: which items exist, on what legal basis, who may receive which fields for
//! which purpose, and in which form. CATALOG.md is the format reference.
//!
//! Promise 3 of design.md: the catalog cannot be widened locally. A [`SignedCatalog`] is built
//! only by [`SignedCatalog::verify_and_parse`] (or [`SignedCatalog::load`], which reads files and
//! calls it): the Ed25519 signature of the catalog authority is checked over the exact file bytes
//! *before* they are parsed, and the policy engine accepts nothing else. A node that fails to
//! load a new catalog keeps the one it has (the caller simply keeps its old value).
//!
//! Promise 9: every parse error names the file, line, column and key path, for syntax errors,
//! unknown keys and semantic errors (duplicate ids, grants naming unknown fields ...) alike.
//!
//! Architecture invariant: pure except [`SignedCatalog::load`] and [`keyfiles`], which read and
//! write files and do nothing else.

mod explain;
pub mod keyfiles;
mod location;
mod parse;
mod period;
mod raw;
mod sign;

use std::path::Path;

pub use explain::{ExplainRow, Explanation, explain};
pub use location::ParseError;
pub use period::{DisclosurePeriods, Severity, disclosure_end};
pub use sign::{AuthorityKeyPair, AuthorityPublicKey, KeyError, SignatureError};

use crate::desensitize::Form;
use crate::identity::TrustDomain;

/// The demo catalog for the dev PKI (region-a.credit.test, region-b.credit.test).
pub const DEMO: &str = include_str!("demo.toml");

/// A parsed, validated catalog. Reading it is free; using it for a decision needs a
/// [`SignedCatalog`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Catalog {
    pub authority: String,
    pub version: String,
    pub date: time::Date,
    pub purposes: Vec<Purpose>,
    pub items: Vec<Item>,
}

#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Purpose {
    pub id: String,
    pub description: String,
}

#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Item {
    pub id: String,
    pub name: String,
    pub category: String,
    pub legal_basis: String,
    /// Code of the department that records the item.
    pub source_department: String,
    pub subject: SubjectType,
    pub fields: Vec<Field>,
    pub disclosure: DisclosurePeriods,
    pub restorable: bool,
    pub sharing: Sharing,
}

/// Which kind of subject each item is about, by item id: what an ingest stores for the
/// subjects it adds (an identifier's shape cannot tell: an all-digit code ending in X may be
/// either).
pub type SubjectTypes = std::collections::HashMap<String, SubjectType>;

impl Catalog {
    pub fn subject_types(&self) -> SubjectTypes {
        self.items
            .iter()
            .map(|i| (i.id.clone(), i.subject))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectType {
    /// Identified by a Unified Social Credit Code.
    LegalPerson,
    /// Identified by a resident identity number.
    NaturalPerson,
}

#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub personal: bool,
    /// Allowed values of an `enum` field; empty otherwise.
    pub values: Vec<String>,
    /// The form a grant gives this field in unless it names another. Never `raw` for a
    /// personal field: raw is given only where a grant says so explicitly.
    pub form: Form,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Text,
    Date,
    Amount,
    Integer,
    Boolean,
    Enum,
    DivisionCode,
    Uscc,
    ResidentId,
    Mobile,
    Address,
}

/// The sharing attribute of an item.
#[derive(Clone, Debug)]
pub enum Sharing {
    /// Every department caller, for any declared purpose, every field in its default form.
    Unconditional,
    /// Only what the grants say.
    Conditional(Vec<Grant>),
    /// Never shared.
    None,
}

#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Grant {
    pub trust_domains: Vec<TrustDomain>,
    /// Department codes, in each of `trust_domains`.
    pub departments: Vec<String>,
    pub purposes: Vec<String>,
    /// Each granted field with the form it is given in (the grant's `forms` entry, or the
    /// field's default form).
    pub fields: Vec<(String, Form)>,
}

impl Catalog {
    /// Parses and validates catalog text without checking a signature: for linting a catalog
    /// before it is signed. The result cannot be used for decisions.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self, ParseError> {
        parse::parse(name, bytes)
    }

    pub fn item(&self, id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.id == id)
    }

    pub fn has_purpose(&self, id: &str) -> bool {
        self.purposes.iter().any(|p| p.id == id)
    }
}

impl Item {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// First day on which a record of this item with the given class and decision date is no
    /// longer disclosed; `None` if records of that class are not disclosed at all.
    pub fn disclosure_end(&self, decision: time::Date, class: Severity) -> Option<time::Date> {
        disclosure_end(decision, class, &self.disclosure)
    }
}

impl Grant {
    /// Whether this grant names the department `code` of `domain`.
    pub fn names(&self, domain: &TrustDomain, code: &str) -> bool {
        self.trust_domains.contains(domain) && self.departments.iter().any(|d| d == code)
    }
}

/// A catalog whose authority signature was verified before it was parsed. The only catalog
/// the policy engine accepts.
#[derive(Clone, Debug)]
pub struct SignedCatalog {
    catalog: Catalog,
    digest: [u8; 32],
    signer: String,
}

impl SignedCatalog {
    /// Verifies `signature` (the contents of the signature file) over `bytes` with the
    /// authority's key, then parses. `name` is the file name used in error messages.
    pub fn verify_and_parse(
        name: &str,
        bytes: &[u8],
        signature: &str,
        key: &AuthorityPublicKey,
    ) -> Result<Self, CatalogError> {
        key.verify(bytes, signature)
            .map_err(|reason| CatalogError::Signature {
                file: name.to_owned(),
                reason,
            })?;
        let catalog = parse::parse(name, bytes)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Ok(Self {
            catalog,
            digest: out,
            signer: key.fingerprint(),
        })
    }

    /// Reads the catalog, its detached signature and the authority's public key (SPKI PEM),
    /// then [`SignedCatalog::verify_and_parse`].
    pub fn load(catalog: &Path, signature: &Path, public_key: &Path) -> Result<Self, CatalogError> {
        let key_pem = keyfiles::read_text(public_key)?;
        let key = AuthorityPublicKey::from_pem(&key_pem).map_err(|reason| CatalogError::Key {
            file: public_key.display().to_string(),
            reason,
        })?;
        let sig = keyfiles::read_text(signature)?;
        let bytes = keyfiles::read(catalog)?;
        let name = catalog.display().to_string();
        Self::verify_and_parse(&name, &bytes, &sig, &key)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// SHA-256 of the exact signed bytes, lower-case hex: which catalog a ledger entry was
    /// decided under.
    pub fn digest_hex(&self) -> String {
        sign::hex(&self.digest)
    }

    /// Fingerprint of the authority key that signed it (see [`AuthorityPublicKey::fingerprint`]).
    pub fn signer(&self) -> &str {
        &self.signer
    }

    /// Whether this catalog may replace `running` on a reload. A valid signature is not enough:
    /// last year's catalog is validly signed too, and putting it back would restore grants the
    /// authority has since withdrawn. So a reload takes only a catalog dated after the running
    /// one (or the very same bytes), signed by the same authority key; going back, or to
    /// another key, takes a restart, which is a deliberate act an operator answers for.
    pub fn may_replace(&self, running: &SignedCatalog) -> Result<(), ReplaceError> {
        if self.digest == running.digest {
            return Ok(());
        }
        if self.signer != running.signer {
            return Err(ReplaceError::OtherAuthority {
                running: running.signer.clone(),
                offered: self.signer.clone(),
            });
        }
        if self.catalog.date <= running.catalog.date {
            return Err(ReplaceError::NotNewer {
                running: running.catalog.date,
                running_version: running.catalog.version.clone(),
                offered: self.catalog.date,
                offered_version: self.catalog.version.clone(),
            });
        }
        Ok(())
    }
}

/// Why a reload keeps the running catalog although the offered one is validly signed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplaceError {
    #[error(
        "the catalog is signed by authority key {offered}, the running one by {running}; \
         a new authority key is taken only at start-up"
    )]
    OtherAuthority { running: String, offered: String },
    #[error(
        "the catalog is dated {offered} (version {offered_version}), not after the running \
         one's {running} (version {running_version}); an older or same-day catalog is taken \
         only at start-up"
    )]
    NotNewer {
        running: time::Date,
        running_version: String,
        offered: time::Date,
        offered_version: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: catalog signature refused: {reason}")]
    Signature {
        file: String,
        reason: SignatureError,
    },
    #[error("{file}: {reason}")]
    Key { file: String, reason: KeyError },
    #[error(transparent)]
    Parse(#[from] ParseError),
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
