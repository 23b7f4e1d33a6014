//! The development PKI: two regions (trust domains), each with its own root CA, department,
//! officer and operator identities, plus the negative fixtures every refusal test needs.
//!
//! Development only. Real deployments get their certificates from each region's own CA; nothing
//! in the node depends on this module except `dev-pki` and `demo`.
//!
//! The certificates are built to satisfy every TLS stack an inter-agency client may use
//! (OpenSSL/BoringSSL, Go, Java, rustls): CA and leaves have distinct subjects, key usages and
//! extended key usages are set, and leaves name `localhost`, 127.0.0.1 and ::1 besides their
//! SPIFFE ID.

use std::{
    fs,
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::identity::{Kind, SpiffeId, TrustDomain};

/// The two development regions.
pub const REGION_A: &str = "region-a.credit.test";
pub const REGION_B: &str = "region-b.credit.test";

/// Identities issued in each region: (kind, id). The first department runs the region's node.
pub const REGION_A_IDENTITIES: &[(Kind, &str)] = &[
    (Kind::Dept, "samr"),
    (Kind::Dept, "tax"),
    (Kind::Dept, "court"),
    (Kind::Officer, "auditor"),
    (Kind::Operator, "admin"),
];
pub const REGION_B_IDENTITIES: &[(Kind, &str)] = &[
    (Kind::Dept, "hrss"),
    (Kind::Dept, "tax"),
    (Kind::Dept, "eco"),
    (Kind::Officer, "auditor"),
    (Kind::Operator, "admin"),
];

/// Where `dev-pki` puts each file, relative to its output folder. Tests, `demo` and the docs all
/// go through these functions so the layout is written down once.
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn region_dir(&self, trust_domain: &str) -> PathBuf {
        self.root.join(trust_domain)
    }
    pub fn ca_cert(&self, trust_domain: &str) -> PathBuf {
        self.region_dir(trust_domain).join("ca.crt")
    }
    pub fn ca_key(&self, trust_domain: &str) -> PathBuf {
        self.region_dir(trust_domain).join("ca.key")
    }
    pub fn crl(&self, trust_domain: &str) -> PathBuf {
        self.region_dir(trust_domain).join("crl.pem")
    }
    /// Certificate and key of an identity: `<region>/<kind>-<id>.crt|.key`.
    pub fn identity(&self, trust_domain: &str, kind: Kind, id: &str) -> (PathBuf, PathBuf) {
        let dir = self.region_dir(trust_domain);
        (
            dir.join(format!("{kind}-{id}.crt")),
            dir.join(format!("{kind}-{id}.key")),
        )
    }
    /// An intermediate CA issued under the region's root by [`issue_intermediate`]:
    /// `<region>/intermediate-<name>/`, holding `ca.crt`, `ca.key` and its `crl.pem`.
    pub fn intermediate_dir(&self, trust_domain: &str, name: &str) -> PathBuf {
        self.region_dir(trust_domain)
            .join(format!("intermediate-{name}"))
    }
    pub fn intermediate_cert(&self, trust_domain: &str, name: &str) -> PathBuf {
        self.intermediate_dir(trust_domain, name).join("ca.crt")
    }
    pub fn intermediate_key(&self, trust_domain: &str, name: &str) -> PathBuf {
        self.intermediate_dir(trust_domain, name).join("ca.key")
    }
    pub fn intermediate_crl(&self, trust_domain: &str, name: &str) -> PathBuf {
        self.intermediate_dir(trust_domain, name).join("crl.pem")
    }
    /// A negative fixture: `negative/<name>.crt|.key`.
    pub fn negative(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.root.join("negative");
        (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        )
    }
    pub fn catalog_authority_key(&self) -> PathBuf {
        self.root.join("catalog-authority.key")
    }
    pub fn catalog_authority_pub(&self) -> PathBuf {
        self.root.join("catalog-authority.pub")
    }
    /// The demo catalog, signed (`catalog.toml.sig` beside it) by [`write_signed_demo_catalog`].
    pub fn demo_catalog(&self) -> PathBuf {
        self.root.join("catalog.toml")
    }
    /// The Ed25519 ledger key of the region's development node (signs tree heads), and its
    /// public key (what an auditor verifies exports with).
    pub fn ledger_key(&self, trust_domain: &str) -> PathBuf {
        self.region_dir(trust_domain).join("ledger.key")
    }
    pub fn ledger_pub(&self, trust_domain: &str) -> PathBuf {
        self.region_dir(trust_domain).join("ledger.pub")
    }
    /// The pseudonym master key of the region's development node.
    pub fn pseudonym_key(&self, trust_domain: &str) -> PathBuf {
        self.region_dir(trust_domain).join("pseudonym.key")
    }
}

/// The negative fixtures, by file name under `negative/`, with what each must be refused for.
pub const NEGATIVE_FIXTURES: &[(&str, &str)] = &[
    ("rogue", "issued by a CA no node trusts"),
    ("expired", "expired yesterday"),
    ("revoked", "revoked by region A's CRL"),
    (
        "cross-domain",
        "issued by region B's CA but claims region A's trust domain",
    ),
    ("no-spiffe-id", "has no spiffe:// URI SAN"),
    ("two-spiffe-ids", "has two spiffe:// URI SANs"),
    (
        "extra-uri-san",
        "has a spiffe:// URI SAN and another URI SAN beside it",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("{0}")]
    Identity(#[from] crate::identity::IdentityError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes a development PKI under `out`. Existing files are overwritten.
pub fn generate(out: &Path) -> Result<Layout, PkiError> {
    let layout = Layout::new(out);
    let now = OffsetDateTime::now_utc();
    let region_a = new_ca(REGION_A, now)?;
    let region_b = new_ca(REGION_B, now)?;

    let mut revoked_serial = None;
    for (td, ca, identities) in [
        (REGION_A, &region_a, REGION_A_IDENTITIES),
        (REGION_B, &region_b, REGION_B_IDENTITIES),
    ] {
        fs::create_dir_all(layout.region_dir(td)).map_err(io_err(&layout.region_dir(td)))?;
        write_public(&layout.ca_cert(td), &ca.pem())?;
        write_private(&layout.ca_key(td), &ca.key().serialize_pem())?;
        for &(kind, id) in identities {
            let uri = SpiffeId::new(TrustDomain::parse(td)?, kind, id)?.to_string();
            let (crt, key) = layout.identity(td, kind, id);
            issue(ca, &[uri], &format!("{kind} {id}"), td, now, false)?.write(&crt, &key)?;
        }
    }

    let negative = layout.root.join("negative");
    fs::create_dir_all(&negative).map_err(io_err(&negative))?;
    let a_uri = |kind, id: &str| -> Result<String, PkiError> {
        Ok(SpiffeId::new(TrustDomain::parse(REGION_A)?, kind, id)?.to_string())
    };
    let rogue_ca = new_ca("rogue.invalid", now)?;
    let write_neg = |name: &str, leaf: Leaf| -> Result<(), PkiError> {
        let (crt, key) = layout.negative(name);
        leaf.write(&crt, &key)
    };
    write_public(&negative.join("rogue-ca.crt"), &rogue_ca.pem())?;
    write_neg(
        "rogue",
        issue(
            &rogue_ca,
            &[a_uri(Kind::Dept, "tax")?],
            "dept tax",
            REGION_A,
            now,
            false,
        )?,
    )?;
    write_neg(
        "expired",
        issue(
            &region_a,
            &[a_uri(Kind::Dept, "expired")?],
            "dept expired",
            REGION_A,
            now,
            true,
        )?,
    )?;
    let revoked = issue(
        &region_a,
        &[a_uri(Kind::Dept, "revoked")?],
        "dept revoked",
        REGION_A,
        now,
        false,
    )?;
    revoked_serial = revoked_serial.or(Some(revoked.serial.clone()));
    write_neg("revoked", revoked)?;
    write_neg(
        "cross-domain",
        issue(
            &region_b,
            &[a_uri(Kind::Dept, "tax")?],
            "dept tax (forged)",
            REGION_B,
            now,
            false,
        )?,
    )?;
    write_neg(
        "no-spiffe-id",
        issue(&region_a, &[], "dept anonymous", REGION_A, now, false)?,
    )?;
    write_neg(
        "two-spiffe-ids",
        issue(
            &region_a,
            &[a_uri(Kind::Dept, "tax")?, a_uri(Kind::Dept, "court")?],
            "dept ambiguous",
            REGION_A,
            now,
            false,
        )?,
    )?;

    // A second URI SAN, not spiffe://, beside a good SPIFFE ID: an X.509-SVID has exactly one.
    write_neg(
        "extra-uri-san",
        issue(
            &region_a,
            &[
                a_uri(Kind::Dept, "tax")?,
                format!("https://{REGION_A}/dept/court"),
            ],
            "dept extra uri",
            REGION_A,
            now,
            false,
        )?,
    )?;

    write_crl(
        &layout.crl(REGION_A),
        &region_a,
        revoked_serial.as_slice(),
        1,
        now,
    )?;
    write_crl(&layout.crl(REGION_B), &region_b, &[], 1, now)?;

    let authority = crate::catalog::AuthorityKeyPair::generate().map_err(|e| PkiError::Bad {
        path: layout.catalog_authority_key(),
        reason: e.to_string(),
    })?;
    write_private(
        &layout.catalog_authority_key(),
        &authority.private_key_pem(),
    )?;
    write_public(
        &layout.catalog_authority_pub(),
        &authority.public_key().to_pem(),
    )?;

    for td in [REGION_A, REGION_B] {
        let key = crate::desensitize::PseudonymKey::generate().map_err(|_| PkiError::Bad {
            path: layout.pseudonym_key(td),
            reason: "system random number generator failed".into(),
        })?;
        let mut text = key.to_hex();
        text.push('\n');
        write_private(&layout.pseudonym_key(td), &text)?;
        let ledger = crate::catalog::AuthorityKeyPair::generate().map_err(|e| PkiError::Bad {
            path: layout.ledger_key(td),
            reason: e.to_string(),
        })?;
        write_private(&layout.ledger_key(td), &ledger.private_key_pem())?;
        write_public(&layout.ledger_pub(td), &ledger.public_key().to_pem())?;
    }
    Ok(layout)
}

/// Writes the demo catalog next to the PKI and signs it with the development catalog-authority
/// key, as a catalog authority would before distributing it.
pub fn write_signed_demo_catalog(layout: &Layout) -> Result<(), PkiError> {
    let path = layout.demo_catalog();
    write_public(&path, crate::catalog::DEMO)?;
    let mut sig = path.clone().into_os_string();
    sig.push(".sig");
    crate::catalog::keyfiles::sign_file(&path, &layout.catalog_authority_key(), Path::new(&sig))
        .map_err(|e| PkiError::Bad {
            path: path.clone(),
            reason: e.to_string(),
        })
}

/// Revokes a certificate: rewrites its region's CRL with the certificate's serial added and a
/// higher CRL number. Used by operators' rehearsals and by the reload tests. An intermediate CA
/// is revoked this way too: the root's CRL is the one that lists it.
pub fn revoke(layout: &Layout, trust_domain: &str, cert_path: &Path) -> Result<(), PkiError> {
    revoke_in(
        &layout.ca_cert(trust_domain),
        &layout.ca_key(trust_domain),
        &layout.crl(trust_domain),
        cert_path,
    )
}

/// [`revoke`] for a certificate the intermediate CA `name` issued: its own CRL lists it.
pub fn revoke_by_intermediate(
    layout: &Layout,
    trust_domain: &str,
    name: &str,
    cert_path: &Path,
) -> Result<(), PkiError> {
    revoke_in(
        &layout.intermediate_cert(trust_domain, name),
        &layout.intermediate_key(trust_domain, name),
        &layout.intermediate_crl(trust_domain, name),
        cert_path,
    )
}

fn revoke_in(
    ca_cert: &Path,
    ca_key: &Path,
    crl_path: &Path,
    cert_path: &Path,
) -> Result<(), PkiError> {
    let ca_pem = read(ca_cert)?;
    let ca_key = KeyPair::from_pem(&read(ca_key)?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;

    let serial = serial_of(cert_path)?;
    let crl_path = crl_path.to_owned();
    let crl_pem = read(&crl_path)?;
    let bad = |reason: String| PkiError::Bad {
        path: crl_path.clone(),
        reason,
    };
    let crl_der = pem::parse(&crl_pem).map_err(|e| bad(e.to_string()))?;
    use x509_parser::prelude::FromDer;
    let (_, crl) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(crl_der.contents())
            .map_err(|e| bad(e.to_string()))?;
    let mut serials: Vec<Vec<u8>> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial().to_vec())
        .collect();
    serials.push(serial);
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
        + 1;
    write_crl(
        &crl_path,
        &issuer,
        &serials,
        number,
        OffsetDateTime::now_utc(),
    )
}

/// Issues another certificate for an existing identity (a department's second client, say),
/// written as `<id>-<suffix>.crt/.key` beside the first. It carries the same SPIFFE ID, so the
/// node treats it as the same caller: same grants, same limits.
pub fn issue_another(
    layout: &Layout,
    trust_domain: &str,
    kind: Kind,
    id: &str,
    suffix: &str,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let files = format!("{id}-{suffix}");
    issue_by_ca(
        layout,
        trust_domain,
        kind,
        id,
        &files,
        &format!("{kind} {id} ({suffix})"),
    )
}

/// Issues a certificate for a new identity of the region (another department's operator, say),
/// written where [`Layout::identity`] puts it.
pub fn issue_identity(
    layout: &Layout,
    trust_domain: &str,
    kind: Kind,
    id: &str,
) -> Result<(PathBuf, PathBuf), PkiError> {
    issue_by_ca(layout, trust_domain, kind, id, id, &format!("{kind} {id}"))
}

/// Issues an intermediate CA named `intermediate` under the region's root, with an empty CRL of its own,
/// written where [`Layout::intermediate_dir`] puts them. The development PKI itself has none:
/// this is for the tests and rehearsals of chains whose every link a CRL may revoke.
pub fn issue_intermediate(
    layout: &Layout,
    trust_domain: &str,
    intermediate: &str,
) -> Result<(), PkiError> {
    issue_intermediate_valid_for(layout, trust_domain, intermediate, 1825)
}

/// [`issue_intermediate`] with the intermediate valid for `days` from now: shorter than the
/// leaves it issues (a year), for the tests of a chain that expires before its leaf.
pub fn issue_intermediate_valid_for(
    layout: &Layout,
    trust_domain: &str,
    intermediate: &str,
    days: i64,
) -> Result<(), PkiError> {
    let root_pem = read(&layout.ca_cert(trust_domain))?;
    let root_key = KeyPair::from_pem(&read(&layout.ca_key(trust_domain))?)?;
    let root = Issuer::from_ca_cert_pem(&root_pem, root_key)?;
    let now = OffsetDateTime::now_utc();

    let mut params = CertificateParams::default();
    // Its own subject, distinct from the root's and from every leaf's (see the module doc).
    params.distinguished_name = name(
        trust_domain,
        &format!("credit-node dev intermediate CA {intermediate} {trust_domain}"),
    );
    // It issues leaves only, never another CA.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(days);
    params.serial_number = Some(random_serial()?);
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &root)?;

    let dir = layout.intermediate_dir(trust_domain, intermediate);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    write_public(
        &layout.intermediate_cert(trust_domain, intermediate),
        &cert.pem(),
    )?;
    write_private(
        &layout.intermediate_key(trust_domain, intermediate),
        &key.serialize_pem(),
    )?;
    let issuer = Issuer::from_ca_cert_pem(&cert.pem(), key)?;
    write_crl(
        &layout.intermediate_crl(trust_domain, intermediate),
        &issuer,
        &[],
        1,
        now,
    )
}

/// Issues a certificate for `spiffe://<trust_domain>/<kind>/<id>` under the intermediate CA
/// `name`, written where [`Layout::identity`] puts it. The certificate file holds the chain, leaf
/// then intermediate: the node trusts only the root, so the client must present the link.
pub fn issue_under_intermediate(
    layout: &Layout,
    trust_domain: &str,
    name: &str,
    kind: Kind,
    id: &str,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let ca_pem = read(&layout.intermediate_cert(trust_domain, name))?;
    let ca_key = KeyPair::from_pem(&read(&layout.intermediate_key(trust_domain, name))?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    let uri = SpiffeId::new(TrustDomain::parse(trust_domain)?, kind, id)?.to_string();
    let (crt, key) = layout.identity(trust_domain, kind, id);
    let now = OffsetDateTime::now_utc();
    let mut leaf = issue(
        &issuer,
        &[uri],
        &format!("{kind} {id} (via {name})"),
        trust_domain,
        now,
        false,
    )?;
    leaf.cert_pem.push_str(&ca_pem);
    leaf.write(&crt, &key)?;
    Ok((crt, key))
}

/// A certificate for `spiffe://<trust_domain>/<kind>/<id>` signed by the region's CA, written as
/// the identity `files` of the layout.
fn issue_by_ca(
    layout: &Layout,
    trust_domain: &str,
    kind: Kind,
    id: &str,
    files: &str,
    common_name: &str,
) -> Result<(PathBuf, PathBuf), PkiError> {
    let ca_pem = read(&layout.ca_cert(trust_domain))?;
    let ca_key = KeyPair::from_pem(&read(&layout.ca_key(trust_domain))?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    let uri = SpiffeId::new(TrustDomain::parse(trust_domain)?, kind, id)?.to_string();
    let (crt, key) = layout.identity(trust_domain, kind, files);
    let now = OffsetDateTime::now_utc();
    issue(&issuer, &[uri], common_name, trust_domain, now, false)?.write(&crt, &key)?;
    Ok((crt, key))
}

fn serial_of(cert_path: &Path) -> Result<Vec<u8>, PkiError> {
    let pem_text = read(cert_path)?;
    let bad = |reason: String| PkiError::Bad {
        path: cert_path.to_owned(),
        reason,
    };
    let der = pem::parse(&pem_text).map_err(|e| bad(e.to_string()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.contents()).map_err(|e| bad(e.to_string()))?;
    Ok(cert.raw_serial().to_vec())
}

fn new_ca(
    trust_domain: &str,
    now: OffsetDateTime,
) -> Result<CertifiedIssuer<'static, KeyPair>, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(
        trust_domain,
        &format!("credit-node dev root CA {trust_domain}"),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(3650);
    params.serial_number = Some(random_serial()?);
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(CertifiedIssuer::self_signed(params, KeyPair::generate()?)?)
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    serial: Vec<u8>,
}

impl Leaf {
    fn write(&self, crt: &Path, key: &Path) -> Result<(), PkiError> {
        write_public(crt, &self.cert_pem)?;
        write_private(key, &self.key_pem)
    }
}

/// Issues a leaf usable both as TLS server and TLS client.
fn issue(
    ca: &Issuer<'_, KeyPair>,
    spiffe_uris: &[String],
    common_name: &str,
    trust_domain: &str,
    now: OffsetDateTime,
    expired: bool,
) -> Result<Leaf, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(trust_domain, &format!("{common_name} ({trust_domain})"));
    params.subject_alt_names = spiffe_uris
        .iter()
        .map(|u| Ok(SanType::URI(u.as_str().try_into()?)))
        .collect::<Result<Vec<_>, rcgen::Error>>()?;
    params
        .subject_alt_names
        .push(SanType::DnsName("localhost".try_into()?));
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let serial = random_serial()?;
    let serial_bytes = serial.to_bytes();
    params.serial_number = Some(serial);
    if expired {
        params.not_before = now - Duration::days(30);
        params.not_after = now - Duration::days(1);
    } else {
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365);
    }
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok(Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        serial: serial_bytes,
    })
}

fn write_crl(
    path: &Path,
    issuer: &Issuer<'_, KeyPair>,
    serials: &[Vec<u8>],
    number: u64,
    now: OffsetDateTime,
) -> Result<(), PkiError> {
    let params = CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(30),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s),
                revocation_time: now - Duration::minutes(1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(issuer)?;
    write_public(path, &crl.pem()?)
}

fn name(trust_domain: &str, common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "credit-node development");
    dn.push(DnType::OrganizationalUnitName, trust_domain);
    dn.push(DnType::CommonName, common_name);
    dn
}

/// 16 random bytes with the top bit clear: a positive serial of full entropy, as RFC 5280 asks.
fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| {
        PkiError::Bad {
            path: PathBuf::new(),
            reason: "system random number generator failed".into(),
        }
    })?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(io_err(path))
}

fn write_public(path: &Path, contents: &str) -> Result<(), PkiError> {
    fs::write(path, contents).map_err(io_err(path))
}

/// Private keys are created with mode 0600 from the start, never widened after the fact.
pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // An existing file keeps its mode on open: force it.
        if path.exists() {
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err(path))?;
        }
    }
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(contents.as_bytes()).map_err(io_err(path))
}

/// The TOML config of a development node of `region` that runs as its first department and
/// trusts both development regions, with their CRLs. Used by `demo` and by the tests.
pub fn node_config_toml(layout: &Layout, region: &str, listen: std::net::SocketAddr) -> String {
    node_config_toml_with_harvest(layout, region, listen, DEV_HARVEST)
}

/// The development node's anti-harvesting limits: roomy enough for the demo, the tests and a
/// person at a terminal, tight enough that a harvester is stopped within seconds.
pub const DEV_HARVEST: &str = "\
[harvest]
window = \"day\"
on_enumeration = \"suspend\"

[harvest.default]
requests_per_second = 100
burst = 200
distinct_subjects = 200
";

/// The development config with `harvest` (a `[harvest]` table in TOML) as its last section, for
/// benchmarks and tests that need other limits.
pub fn node_config_toml_with_harvest(
    layout: &Layout,
    region: &str,
    listen: std::net::SocketAddr,
    harvest: &str,
) -> String {
    let identities = if region == REGION_A {
        REGION_A_IDENTITIES
    } else {
        REGION_B_IDENTITIES
    };
    let (kind, id) = identities[0];
    let (cert, key) = layout.identity(region, kind, id);
    let mut toml = format!(
        "# Development node of {region}, generated by credit-node.\n\
         [node]\nlisten = \"{listen}\"\ncert = {cert:?}\nkey = {key:?}\n",
        cert = cert.display().to_string(),
        key = key.display().to_string(),
    );
    for td in [REGION_A, REGION_B] {
        toml.push_str(&format!(
            "\n[[trust_domain]]\nname = \"{td}\"\nca = {ca:?}\ncrls = [{crl:?}]\n",
            ca = layout.ca_cert(td).display().to_string(),
            crl = layout.crl(td).display().to_string(),
        ));
    }
    toml.push_str(&format!(
        "\n[catalog]\npath = {catalog:?}\nauthority_key = {authority:?}\n\n[privacy]\npseudonym_key = {pseudonym:?}\n",
        catalog = layout.demo_catalog().display().to_string(),
        authority = layout.catalog_authority_pub().display().to_string(),
        pseudonym = layout.pseudonym_key(region).display().to_string(),
    ));
    toml.push_str(&format!(
        "\n[store]\ndatabase_url = \"sqlite://{db}\"\n\n[ledger]\nsigning_key = {ledger:?}\n",
        db = layout.root().join(format!("{region}.db")).display(),
        ledger = layout.ledger_key(region).display().to_string(),
    ));
    // The region's development operator and officer work for this node.
    let staff = |kind: Kind| {
        identities
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, id)| format!("\"spiffe://{region}/{kind}/{id}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    toml.push_str(&format!(
        "\n[access]\noperators = [{}]\nofficers = [{}]\n",
        staff(Kind::Operator),
        staff(Kind::Officer)
    ));
    toml.push_str("\n[limits]\nmax_message_bytes = 4194304\nmax_concurrent_streams = 256\n\n");
    toml.push_str(harvest);
    toml
}
