//! Caller identity: the SPIFFE-style URI SAN of a client certificate, parsed once and then typed.
//!
//! Promise 1 of design.md: the caller is who its certificate says, never what a request field
//! says. The TLS layer ([`crate::tls`]) is the only code that constructs a [`Caller`]; everything
//! downstream receives it as a typed value from the request's extensions.
//!
//! Architecture invariant: this module is pure (no I/O, no clock, no tonic).

use std::fmt;

/// What a certificate speaks for, from the first path segment of its SPIFFE ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A department's node or inter-agency client (`/dept/<code>`).
    Dept,
    /// A security officer who reviews the ledger (`/officer/<id>`).
    Officer,
    /// One of the department's own administrators (`/operator/<id>`).
    Operator,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dept => "dept",
            Kind::Officer => "officer",
            Kind::Operator => "operator",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trust domain: one region, with its own CA (e.g. `region-a.credit.test`).
///
/// Kept lower-case and restricted to the SPIFFE trust-domain alphabet so that two spellings of
/// one region can never compare unequal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let ok = !s.is_empty()
            && s.len() <= 255
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            })
            && !s.starts_with('.')
            && !s.ends_with('.');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdentityError::BadTrustDomain(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `spiffe://<trust-domain>/<kind>/<id>`: the only identity format a node accepts.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: TrustDomain,
    kind: Kind,
    id: String,
}

impl SpiffeId {
    pub fn new(trust_domain: TrustDomain, kind: Kind, id: &str) -> Result<Self, IdentityError> {
        if !valid_segment(id) {
            return Err(IdentityError::BadId(id.to_owned()));
        }
        Ok(Self {
            trust_domain,
            kind,
            id: id.to_owned(),
        })
    }

    /// Parses a URI SAN. Anything but exactly `spiffe://td/kind/id` is refused: no port, no
    /// user info, no query, no fragment, no further path segments.
    pub fn parse(uri: &str) -> Result<Self, IdentityError> {
        let bad = || IdentityError::BadSpiffeId(uri.to_owned());
        let rest = uri.strip_prefix("spiffe://").ok_or_else(bad)?;
        let mut parts = rest.split('/');
        let td = parts.next().ok_or_else(bad)?;
        let kind = parts.next().ok_or_else(bad)?;
        let id = parts.next().ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        let trust_domain = TrustDomain::parse(td).map_err(|_| bad())?;
        let kind = match kind {
            "dept" => Kind::Dept,
            "officer" => Kind::Officer,
            "operator" => Kind::Operator,
            _ => return Err(IdentityError::UnknownKind(kind.to_owned())),
        };
        Self::new(trust_domain, kind, id).map_err(|_| bad())
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The department code, officer id or operator id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/{}/{}",
            self.trust_domain, self.kind, self.id
        )
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
        })
        && s != "."
        && s != ".."
}

/// An authenticated caller: its SPIFFE ID plus the facts of the certificate that proved it,
/// which the ledger records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub spiffe_id: SpiffeId,
    /// Certificate serial number, lower-case hex.
    pub serial: String,
    /// Certificate notAfter, seconds since the Unix epoch.
    pub not_after_unix: i64,
    /// When the chain the caller was let in with stops being valid: the earliest notAfter of
    /// the certificate and of the CA certificates it sent that issued it (an intermediate may
    /// end before its leaf). Every call is refused from then on.
    pub valid_until_unix: i64,
    /// SHA-256 of the certificate DER.
    pub fingerprint: [u8; 32],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("certificate has no spiffe:// URI SAN")]
    NoSpiffeId,
    #[error("certificate has {0} spiffe:// URI SANs; exactly one is required")]
    SeveralSpiffeIds(usize),
    #[error(
        "certificate has {0} URI SANs, a spiffe:// one and others; an X.509-SVID has exactly \
         one URI SAN"
    )]
    OtherUriSans(usize),
    #[error(
        "malformed SPIFFE ID {0:?}: expected spiffe://<trust-domain>/<dept|officer|operator>/<id>"
    )]
    BadSpiffeId(String),
    #[error("unknown principal kind {0:?}: expected dept, officer or operator")]
    UnknownKind(String),
    #[error("malformed trust domain {0:?}")]
    BadTrustDomain(String),
    #[error("malformed principal id {0:?}")]
    BadId(String),
    #[error("certificate claims trust domain {claimed} but was issued by the CA of {issuer}")]
    WrongTrustDomain { claimed: String, issuer: String },
    #[error("certificate cannot be parsed: {0}")]
    BadCertificate(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uri: &str, expected: Result<(&str, Kind, &str), ()>) {
        let got = SpiffeId::parse(uri);
        match expected {
            Ok((td, kind, id)) => {
                let got = got.unwrap_or_else(|e| panic!("{uri}: {e}"));
                assert_eq!(got.trust_domain().as_str(), td);
                assert_eq!(got.kind(), kind);
                assert_eq!(got.id(), id);
                assert_eq!(got.to_string(), uri, "display round-trips");
            }
            Err(()) => assert!(got.is_err(), "{uri} should be refused, got {got:?}"),
        }
    }

    #[test]
    fn parses_the_three_kinds() {
        check(
            "spiffe://region-a.credit.test/dept/tax",
            Ok(("region-a.credit.test", Kind::Dept, "tax")),
        );
        check(
            "spiffe://region-b.credit.test/officer/auditor-01",
            Ok(("region-b.credit.test", Kind::Officer, "auditor-01")),
        );
        check(
            "spiffe://region-a.credit.test/operator/ops_1",
            Ok(("region-a.credit.test", Kind::Operator, "ops_1")),
        );
    }

    #[test]
    fn refuses_everything_else() {
        for uri in [
            "",
            "https://region-a.credit.test/dept/tax",
            "spiffe://region-a.credit.test/dept",
            "spiffe://region-a.credit.test/dept/",
            "spiffe://region-a.credit.test/dept/tax/extra",
            "spiffe://region-a.credit.test/admin/tax",
            "spiffe://Region-A.credit.test/dept/tax",
            "spiffe://region-a.credit.test:443/dept/tax",
            "spiffe://user@region-a.credit.test/dept/tax",
            "spiffe://region-a.credit.test/dept/tax?x=1",
            "spiffe://region-a.credit.test/dept/tax#f",
            "spiffe://region-a.credit.test/dept/..",
            "spiffe:///dept/tax",
            "spiffe://region-a.credit.test/dept/TAX",
        ] {
            check(uri, Err(()));
        }
    }
}
