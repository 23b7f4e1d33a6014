//! The one TLS-building module, shared by the node and every client it ships.
//!
//! Promise 1 of design.md lives here: TLS 1.3 only, the ring provider only, a client
//! certificate always required, and a caller's identity taken from exactly one
//! `spiffe://<trust-domain>/...` URI SAN whose trust domain is the one whose CA issued the
//! certificate. A certificate from region B's CA can never speak for region A, because a
//! certificate is verified only against the roots (and CRLs) of the trust domain it claims.
//!
//! Architecture invariant: this is the only module that reads certificates for identity; the
//! rest of the node receives a typed [`Caller`].

use std::{fmt, path::Path, sync::Arc};

use rustls::{
    DigitallySignedStruct, DistinguishedName, SignatureScheme,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{
        CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime, pem::PemObject,
    },
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};

use crate::identity::{Caller, IdentityError, SpiffeId, TrustDomain};

/// ALPN for gRPC over HTTP/2.
const ALPN_H2: &[u8] = b"h2";

/// The crypto provider of every config we build: ring, never aws-lc-rs or OpenSSL.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("trust domain {domain}: {reason}")]
    TrustDomain { domain: String, reason: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0}")]
    Identity(#[from] IdentityError),
    /// A reload offered a certificate of another identity: the node's identity is fixed at
    /// start-up (its ledger entries, grants and quotas are the running identity's).
    #[error(
        "the new node certificate is {offered}, but this node is {running}; a node's identity changes only with a restart"
    )]
    OtherNode { running: String, offered: String },
}

fn file_err(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Reads every certificate of a PEM file; an empty file is an error, not an empty trust store.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE found in PEM file"));
    }
    Ok(certs)
}

/// Reads a trust domain's `ca` bundle and refuses any certificate in it that is not a root CA
/// (self-issued, with `cA` set). A certificate in the bundle becomes a trust anchor, and webpki
/// never checks an anchor's revocation: an intermediate listed here would stay trusted after
/// its root revokes it, which is exactly what promise 1 forbids. Peers send their
/// intermediates in their chains, where every link is checked. The node's trust domains and
/// the client commands' `--ca` both read their bundles through it.
pub fn load_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = load_certs(path)?;
    for (i, cert) in certs.iter().enumerate() {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
            .map_err(|e| file_err(path, format_args!("certificate {}: {e}", i + 1)))?;
        let subject = parsed.subject();
        if parsed.issuer().as_raw() != subject.as_raw() {
            return Err(file_err(
                path,
                format_args!(
                    "certificate {} ({subject}) is not a root CA: it was issued by {}; list \
                     only the trust domain's root CAs here (a listed certificate is a trust \
                     anchor, never checked for revocation); peers send intermediates in \
                     their chains",
                    i + 1,
                    parsed.issuer()
                ),
            ));
        }
        if !parsed.is_ca() {
            return Err(file_err(
                path,
                format_args!(
                    "certificate {} ({subject}) is not a CA certificate (no basicConstraints \
                     cA): list only the trust domain's root CAs here",
                    i + 1
                ),
            ));
        }
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    // Never include key material in the error: only the path and the parser's complaint.
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        // The parser's "no items found", said as what was looked for (a certificate given for
        // the key, typically).
        rustls::pki_types::pem::Error::NoItemsFound => {
            file_err(path, "no PRIVATE KEY found in PEM file")
        }
        e => file_err(path, e),
    })
}

pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if crls.is_empty() {
        return Err(file_err(path, "no X509 CRL found in PEM file"));
    }
    Ok(crls)
}

/// One region's trust material: its CA bundle and the CRLs of those CAs.
#[derive(Clone, Debug)]
pub struct TrustDomainMaterial {
    pub domain: TrustDomain,
    pub roots: Vec<CertificateDer<'static>>,
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

/// Everything a node's TLS endpoint is built from; reloaded as a whole on SIGHUP.
#[derive(Debug)]
pub struct ServerMaterial {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub trust: Vec<TrustDomainMaterial>,
}

/// The node's TLS server side: the rustls config for new connections, and the client verifier
/// it holds, kept so that open connections can be checked again when the material changes.
#[derive(Clone)]
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub verifier: Arc<SpiffeClientVerifier>,
}

/// Builds the node's server config: TLS 1.3, ring, HTTP/2, client certificates verified per
/// trust domain.
pub fn server_tls(material: ServerMaterial) -> Result<ServerTls, TlsError> {
    let verifier = Arc::new(SpiffeClientVerifier::new(&material.trust)?);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier.clone())
        .with_single_cert(material.chain, material.key)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    // No session resumption: a resumed TLS 1.3 session reuses the certificate checked when the
    // session began and is not verified again, so a certificate that has since expired, or been
    // revoked by a CRL loaded in between, would still get in. Every connection is a full
    // handshake; connections are long-lived HTTP/2, so this costs a handshake per connection.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(ServerTls {
        config: Arc::new(config),
        verifier,
    })
}

/// Verifies the certificate chain a connection was accepted with (`peer`, leaf first) again,
/// by `verifier` as of now: after a reload, its CRLs or trust bundles may refuse it. It goes
/// through the very verifier a handshake uses, so an open connection is held to the same rules
/// as a new one, revocation of every link of the chain included.
pub fn still_trusted(
    verifier: &SpiffeClientVerifier,
    peer: &[CertificateDer<'_>],
) -> Result<(), rustls::Error> {
    let (leaf, intermediates) = peer
        .split_first()
        .ok_or(rustls::Error::NoCertificatesPresented)?;
    verifier
        .verify_client_cert(leaf, intermediates, UnixTime::now())
        .map(drop)
}

/// Builds a client config: TLS 1.3, ring, HTTP/2, our certificate, and the server verified
/// against the given roots (all regions a client may call). With `crls`, the node's chain is
/// checked against them as the node checks its clients': every link, an unknown status or a
/// stale CRL refused, so a node whose certificate its CA has revoked is not talked to.
pub fn client_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: &[CertificateDer<'static>],
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone())?;
    }
    let mut builder = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider());
    if !crls.is_empty() {
        builder = builder.with_crls(crls).enforce_revocation_expiration();
    }
    let verifier: Arc<dyn ServerCertVerifier> = builder
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Reads the SPIFFE ID of a certificate: exactly one URI SAN, a well-formed `spiffe://` ID.
/// A certificate with any other URI SAN beside it is refused, as the X.509-SVID specification
/// requires ("exactly one URI SAN"): a second URI is a second claim of identity, which another
/// verifier of the same certificate (a proxy, a go-spiffe or Java client) may read instead, so
/// the node would no longer know whom everyone else takes the caller for. DNS and IP SANs serve
/// TLS server names, not identity, and stay allowed.
pub fn spiffe_id_of(cert: &CertificateDer<'_>) -> Result<SpiffeId, IdentityError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    spiffe_id_of_parsed(&parsed)
}

fn spiffe_id_of_parsed(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<SpiffeId, IdentityError> {
    use x509_parser::extensions::GeneralName;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|ext| ext.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        })
        .collect();
    let spiffe = uris
        .iter()
        .filter(|uri| {
            uri.get(..9)
                .is_some_and(|p| p.eq_ignore_ascii_case("spiffe://"))
        })
        .count();
    match (spiffe, uris.as_slice()) {
        (0, _) => Err(IdentityError::NoSpiffeId),
        (1, [only]) => SpiffeId::parse(only),
        (1, _) => Err(IdentityError::OtherUriSans(uris.len())),
        (n, _) => Err(IdentityError::SeveralSpiffeIds(n)),
    }
}

/// The facts of a verified peer certificate that the node keeps: identity, serial, expiry and
/// fingerprint. Called on certificates the verifier has already accepted. Its
/// `valid_until_unix` is the certificate's own notAfter: [`caller_from_chain`] also counts the
/// CA certificates sent with it.
pub fn caller_from_cert(cert: &CertificateDer<'_>) -> Result<Caller, IdentityError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let spiffe_id = spiffe_id_of_parsed(&parsed)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(digest.as_ref());
    let not_after_unix = parsed.validity().not_after.timestamp();
    Ok(Caller {
        spiffe_id,
        serial: hex(parsed.raw_serial()),
        not_after_unix,
        valid_until_unix: not_after_unix,
        fingerprint,
    })
}

/// The caller of a connection from the chain its client presented (leaf first), as the
/// verifier accepted it. The handshake checked every link's validity when the connection
/// opened, but a connection outlives that check, and an intermediate CA may expire before the
/// leaf it issued: `valid_until_unix` is the earliest notAfter along the issuing path through
/// the presented certificates (by issuer and subject name, up to the first self-issued one,
/// whose validity webpki does not check either: anchors come from the trust store), so a call
/// is refused once any of them has expired, as a new handshake would be.
pub fn caller_from_chain(chain: &[CertificateDer<'_>]) -> Result<Caller, IdentityError> {
    let (leaf, presented) = chain.split_first().ok_or(IdentityError::NoSpiffeId)?;
    let mut caller = caller_from_cert(leaf)?;
    let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
    let parsed_rest: Vec<_> = presented
        .iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
        .map(|(_, c)| c)
        .collect();
    let mut issuer = parsed.issuer().as_raw();
    // Each link at most once: a path cannot be longer than what was presented.
    for _ in 0..parsed_rest.len() {
        let Some(ca) = parsed_rest.iter().find(|c| {
            c.subject().as_raw() == issuer && c.issuer().as_raw() != c.subject().as_raw()
        }) else {
            break;
        };
        caller.valid_until_unix = caller
            .valid_until_unix
            .min(ca.validity().not_after.timestamp());
        issuer = ca.issuer().as_raw();
    }
    Ok(caller)
}

/// Lower-case hex: the one encoder, shared with the ledger.
pub fn hex(bytes: &[u8]) -> String {
    crate::ledger::hex::encode(bytes)
}

/// Verifies a client certificate against the trust domain it claims, and only that one.
///
/// The SPIFFE ID is read first (cheap, and it refuses certificates with no or several IDs before
/// any signature work); then the chain is verified by the webpki verifier built from that
/// domain's roots and CRLs. Expiry and revocation are webpki's checks.
///
/// Revocation is checked for every certificate of the chain, not only the leaf: a root that
/// revokes an intermediate CA withdraws everything that intermediate issued, and promise 1 says a
/// revoked certificate fails the handshake whichever link of the chain it is.
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    domains: Vec<DomainVerifier>,
    hints: Vec<DistinguishedName>,
    schemes: Vec<SignatureScheme>,
}

#[derive(Debug)]
struct DomainVerifier {
    domain: TrustDomain,
    verifier: Arc<dyn ClientCertVerifier>,
    /// The raw issuer names of the domain's CRLs, kept only to name the CA whose CRL is missing
    /// when a chain's revocation status is unknown: webpki's error does not say which.
    crl_issuers: Vec<Vec<u8>>,
}

impl SpiffeClientVerifier {
    pub fn new(trust: &[TrustDomainMaterial]) -> Result<Self, TlsError> {
        if trust.is_empty() {
            return Err(TlsError::TrustDomain {
                domain: "-".into(),
                reason: "no trust domain configured".into(),
            });
        }
        let mut domains = Vec::with_capacity(trust.len());
        let mut hints = Vec::new();
        // The public keys of the roots seen so far, with their trust domain: one CA key may
        // anchor one trust domain only.
        let mut keys: Vec<(Vec<u8>, &TrustDomain)> = Vec::new();
        for material in trust {
            let err = |reason: String| TlsError::TrustDomain {
                domain: material.domain.to_string(),
                reason,
            };
            let mut store = rustls::RootCertStore::empty();
            for (i, root) in material.roots.iter().enumerate() {
                // A trust domain is one region's CA, and only that CA may issue its
                // identities: a CA listed (by the same key) under two trust domains would let
                // every certificate it issued claim either, and "region B's CA never speaks
                // for region A" would rest on nothing. Refused at start-up and on reload.
                let key =
                    root_key(root).map_err(|e| err(format!("CA certificate {}: {e}", i + 1)))?;
                if let Some((_, other)) = keys
                    .iter()
                    .find(|(k, domain)| *k == key && *domain != &material.domain)
                {
                    return Err(err(format!(
                        "CA certificate {} has the same key as a CA of trust domain {other}; \
                         each trust domain must have its own CA, or either could issue the \
                         other's identities",
                        i + 1
                    )));
                }
                keys.push((key, &material.domain));
                store.add(root.clone()).map_err(|e| err(e.to_string()))?;
            }
            let mut builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider());
            if material.crls.is_empty() {
                tracing::warn!(trust_domain = %material.domain,
                    "no CRLs configured for this trust domain: its revoked certificates are accepted");
            } else {
                // Every link of the chain is checked (webpki's default depth), so each CA that
                // issues in it needs its CRL here: without it the status is unknown and the
                // handshake fails (webpki's default policy), which is the point. A CRL past its
                // nextUpdate no longer proves that a certificate is not revoked.
                builder = builder
                    .with_crls(material.crls.iter().cloned())
                    .enforce_revocation_expiration();
            }
            let verifier = builder.build().map_err(|e| err(e.to_string()))?;
            let crl_issuers = material
                .crls
                .iter()
                .map(|crl| crl_issuer(crl).map_err(&err))
                .collect::<Result<_, _>>()?;
            hints.extend_from_slice(verifier.root_hint_subjects());
            domains.push(DomainVerifier {
                domain: material.domain.clone(),
                verifier,
                crl_issuers,
            });
        }
        let schemes = domains[0].verifier.supported_verify_schemes();
        Ok(Self {
            domains,
            hints,
            schemes,
        })
    }

    fn verifier_for(&self, domain: &TrustDomain) -> Option<&DomainVerifier> {
        self.domains.iter().find(|d| &d.domain == domain)
    }

    fn any(&self) -> &Arc<dyn ClientCertVerifier> {
        // `new` refuses an empty list, so there is always a first verifier.
        &self.domains[0].verifier
    }
}

/// The subjectPublicKeyInfo of a CA certificate, as its identity: a CA re-issued with the same
/// key (a new validity, a new name) is the same CA.
fn root_key(cert: &CertificateDer<'_>) -> Result<Vec<u8>, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("cannot be read: {e}"))?;
    Ok(parsed.public_key().raw.to_vec())
}

/// The raw issuer name of a CRL, compared byte for byte with certificates' issuer names as
/// webpki does when it looks for a certificate's CRL.
fn crl_issuer(crl: &CertificateRevocationListDer<'_>) -> Result<Vec<u8>, String> {
    use x509_parser::prelude::FromDer;
    let (_, parsed) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(crl.as_ref())
            .map_err(|e| format!("a CRL cannot be read: {e}"))?;
    Ok(parsed.issuer().as_raw().to_vec())
}

/// The CAs that issued a certificate of the presented chain (`leaf`, then `intermediates`) and
/// have no CRL among `crl_issuers`, by name: what an operator must add when the chain's
/// revocation status is unknown. A self-signed certificate is skipped: it can only be a root,
/// and webpki never checks a root's revocation.
fn issuers_without_crl(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    crl_issuers: &[Vec<u8>],
) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();
    for cert in std::iter::once(leaf).chain(intermediates) {
        let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
            continue;
        };
        let issuer = parsed.issuer();
        if issuer.as_raw() == parsed.subject().as_raw()
            || crl_issuers.iter().any(|c| c.as_slice() == issuer.as_raw())
        {
            continue;
        }
        let name = issuer.to_string();
        if !missing.contains(&name) {
            missing.push(name);
        }
    }
    missing
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let refuse = |reason: String| {
            tracing::warn!(%reason, "client certificate refused");
            rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )
        };
        let id = spiffe_id_of(end_entity).map_err(|e| refuse(e.to_string()))?;
        let Some(verifier) = self.verifier_for(id.trust_domain()) else {
            tracing::warn!(spiffe_id = %id, "client certificate claims a trust domain this node does not trust");
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        };
        verifier
            .verifier
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| match e {
                // The client sees only `unknown ca`; the fault is usually the node's config, so
                // the log says which CRL it lacks.
                rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownRevocationStatus,
                ) => {
                    let missing =
                        issuers_without_crl(end_entity, intermediates, &verifier.crl_issuers);
                    tracing::warn!(spiffe_id = %id, error = %e,
                        trust_domain = %verifier.domain,
                        missing_crls_of = %if missing.is_empty() {
                            "a CA of the chain (no presented issuer lacks one by name)".to_owned()
                        } else {
                            missing.join("; ")
                        },
                        "client certificate refused: its revocation status is unknown because the trust domain's `crls` lack the CRL of a CA in its chain; every CA that issues in the chain needs its current CRL listed, the root's (which covers its intermediates) and each intermediate's")
                }
                _ => tracing::warn!(spiffe_id = %id, error = %e, "client certificate refused"),
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.any().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.any().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{identity::Kind, pki};

    /// One CA, one trust domain: a CA listed under two trust domains would let every
    /// certificate it issued claim either, so the verifier refuses to be built.
    #[test]
    fn a_ca_listed_under_two_trust_domains_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = pki::generate(dir.path()).unwrap();
        let material = |domain: &str, ca: &str| TrustDomainMaterial {
            domain: TrustDomain::parse(domain).unwrap(),
            roots: load_roots(&layout.ca_cert(ca)).unwrap(),
            crls: Vec::new(),
        };
        let separate = [
            material(pki::REGION_A, pki::REGION_A),
            material(pki::REGION_B, pki::REGION_B),
        ];
        SpiffeClientVerifier::new(&separate).expect("a CA each");
        let shared = [
            material(pki::REGION_A, pki::REGION_A),
            material(pki::REGION_B, pki::REGION_A),
        ];
        let err = SpiffeClientVerifier::new(&shared).expect_err("one CA for two trust domains");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("trust domain {}:", pki::REGION_B))
                && text.contains(&format!(
                    "same key as a CA of trust domain {}",
                    pki::REGION_A
                )),
            "{text}"
        );
    }

    /// The refusal's log names exactly the CAs of the chain whose CRL is not configured.
    #[test]
    fn the_cas_whose_crl_is_missing_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let layout = pki::generate(dir.path()).unwrap();
        let td = pki::REGION_A;
        pki::issue_intermediate(&layout, td, "issuing-1").unwrap();
        let (cert, _) =
            pki::issue_under_intermediate(&layout, td, "issuing-1", Kind::Dept, "customs").unwrap();
        let chain = load_certs(&cert).unwrap();
        let (leaf, intermediates) = chain.split_first().unwrap();
        let root_crl = crl_issuer(&load_crls(&layout.crl(td)).unwrap()[0]).unwrap();
        let own_crl =
            crl_issuer(&load_crls(&layout.intermediate_crl(td, "issuing-1")).unwrap()[0]).unwrap();
        let root = format!("O=credit-node development, OU={td}, CN=credit-node dev root CA {td}");
        let intermediate = format!(
            "O=credit-node development, OU={td}, CN=credit-node dev intermediate CA issuing-1 {td}"
        );

        let check = |crls: &[&Vec<u8>], presented: &[CertificateDer<'_>], expected: &[&str]| {
            let crls: Vec<Vec<u8>> = crls.iter().map(|c| c.to_vec()).collect();
            assert_eq!(issuers_without_crl(leaf, presented, &crls), expected);
        };
        check(&[&root_crl, &own_crl], intermediates, &[]);
        check(&[&own_crl], intermediates, &[&root]);
        check(&[&root_crl], intermediates, &[&intermediate]);
        check(&[], intermediates, &[&intermediate, &root]);
        // A client that also sends the root: a self-signed certificate needs no CRL.
        let with_root: Vec<_> = intermediates
            .iter()
            .cloned()
            .chain(load_certs(&layout.ca_cert(td)).unwrap())
            .collect();
        check(&[&root_crl, &own_crl], &with_root, &[]);
    }
}
