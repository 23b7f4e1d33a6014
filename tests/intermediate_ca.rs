//! Promise 1 with intermediate CAs: a revoked certificate fails the handshake whichever link of
//! the chain it is, and a chain whose revocation status the configured CRLs cannot tell is
//! refused (fail closed).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};

use common::{TestPki, endpoint, whoami_as};
use credit_node::{
    client::{self, ClientError},
    identity::Kind,
    pki::{self, REGION_A},
    proto::{self, credit_query_client::CreditQueryClient},
};

/// The intermediate CA every test here issues its leaf under.
const INTERMEDIATE: &str = "issuing-1";

/// A PKI with an intermediate CA under region A's root and a department certificate issued by
/// it (the file holds leaf and intermediate), with the certificate and key paths.
/// Region A's root and its intermediate in one PEM bundle, `name` in the intermediate's folder:
/// what an operator who lists the whole chain as CAs would give.
fn root_and_intermediate(pki: &TestPki, name: &str) -> PathBuf {
    let bundle = pki
        .layout
        .intermediate_dir(REGION_A, INTERMEDIATE)
        .join(name);
    let mut pem = std::fs::read_to_string(pki.layout.ca_cert(REGION_A)).unwrap();
    pem.push_str(
        &std::fs::read_to_string(pki.layout.intermediate_cert(REGION_A, INTERMEDIATE)).unwrap(),
    );
    std::fs::write(&bundle, pem).unwrap();
    bundle
}

fn pki_with_intermediate() -> (TestPki, PathBuf, PathBuf) {
    let pki = TestPki::new();
    pki::issue_intermediate(&pki.layout, REGION_A, INTERMEDIATE).expect("intermediate CA");
    let (cert, key) =
        pki::issue_under_intermediate(&pki.layout, REGION_A, INTERMEDIATE, Kind::Dept, "customs")
            .expect("leaf under the intermediate");
    (pki, cert, key)
}

/// Region A's CRLs for a chain through the intermediate: the root's, which covers the
/// intermediate, and the intermediate's, which covers its leaves.
fn both_crls(pki: &TestPki) -> Vec<PathBuf> {
    vec![
        pki.layout.crl(REGION_A),
        pki.layout.intermediate_crl(REGION_A, INTERMEDIATE),
    ]
}

/// Connects as the certificate and expects the node to refuse the handshake with `alert`:
/// refused before any call, so nothing can have been answered.
async fn assert_refused(pki: &TestPki, node_endpoint: &str, cert: &Path, key: &Path, alert: &str) {
    match client::connect(node_endpoint, pki.client_tls(cert, key)).await {
        Ok(channel) => {
            let answer = CreditQueryClient::new(channel)
                .who_am_i(proto::WhoAmIRequest {})
                .await;
            panic!("the handshake was accepted; WhoAmI gave {answer:?}");
        }
        Err(ClientError::Refused { alert: got, .. }) => assert_eq!(got, alert),
        Err(other) => panic!("expected the TLS alert {alert:?}, got: {other}"),
    }
}

#[tokio::test]
async fn a_leaf_under_an_intermediate_is_let_in_when_both_crls_are_configured() {
    let (pki, cert, key) = pki_with_intermediate();
    let config = pki.write_config_with_crls(REGION_A, REGION_A, &both_crls(&pki));
    let node = common::start_from_config(&config).await;
    let who = whoami_as(&pki, &node, &cert, &key)
        .await
        .expect("a valid chain through the intermediate");
    assert_eq!(who.spiffe_id, "spiffe://region-a.credit.test/dept/customs");
    // The region's certificates issued by the root itself still get in.
    let (tax_cert, tax_key) = pki.identity(REGION_A, Kind::Dept, "tax");
    whoami_as(&pki, &node, &tax_cert, &tax_key)
        .await
        .expect("a leaf of the root");
    node.shutdown().await;
}

/// The intermediate's own CRL is the one consulted for its leaves.
#[tokio::test]
async fn a_leaf_revoked_by_its_intermediate_is_refused() {
    let (pki, cert, key) = pki_with_intermediate();
    pki::revoke_by_intermediate(&pki.layout, REGION_A, INTERMEDIATE, &cert).expect("revoke");
    let config = pki.write_config_with_crls(REGION_A, REGION_A, &both_crls(&pki));
    let node = common::start_from_config(&config).await;
    assert_refused(&pki, &endpoint(&node), &cert, &key, "certificate revoked").await;
    node.shutdown().await;
}

/// The root revokes the intermediate: every leaf it issued is refused, though none of them is
/// listed anywhere and the intermediate's own CRL is clean.
#[tokio::test]
async fn an_intermediate_revoked_by_the_root_refuses_its_leaves() {
    let (pki, cert, key) = pki_with_intermediate();
    pki::revoke(
        &pki.layout,
        REGION_A,
        &pki.layout.intermediate_cert(REGION_A, INTERMEDIATE),
    )
    .expect("revoke the intermediate");
    let config = pki.write_config_with_crls(REGION_A, REGION_A, &both_crls(&pki));
    let node = common::start_from_config(&config).await;
    assert_refused(&pki, &endpoint(&node), &cert, &key, "certificate revoked").await;
    let (tax_cert, tax_key) = pki.identity(REGION_A, Kind::Dept, "tax");
    whoami_as(&pki, &node, &tax_cert, &tax_key)
        .await
        .expect("a leaf of the root is not affected");
    node.shutdown().await;
}

/// Only the intermediate's CRL is configured: whether the root has revoked the intermediate
/// cannot be told, so the chain is refused rather than assumed good.
#[tokio::test]
async fn a_chain_is_refused_when_the_roots_crl_is_missing() {
    let (pki, cert, key) = pki_with_intermediate();
    let config = pki.write_config_with_crls(
        REGION_A,
        REGION_A,
        &[pki.layout.intermediate_crl(REGION_A, INTERMEDIATE)],
    );
    let node = common::start_from_config(&config).await;
    // rustls, like OpenSSL and BoringSSL, says `unknown ca` for an unknown revocation status.
    assert_refused(&pki, &endpoint(&node), &cert, &key, "unknown ca").await;
    node.shutdown().await;
}

/// The re-verification of open connections after a reload holds chains to the same rule: a
/// client whose intermediate the root revokes loses the connection it has open.
#[tokio::test]
async fn an_intermediate_revoked_while_connected_cuts_off_its_leaves_at_the_reload() {
    let (pki, cert, key) = pki_with_intermediate();
    let config = pki.write_config_with_crls(REGION_A, REGION_A, &both_crls(&pki));
    let node = common::start_from_config(&config).await;
    let channel = client::connect(&endpoint(&node), pki.client_tls(&cert, &key))
        .await
        .expect("customs connects");
    let mut api = CreditQueryClient::new(channel);
    api.who_am_i(proto::WhoAmIRequest {})
        .await
        .expect("customs before the revocation");

    pki::revoke(
        &pki.layout,
        REGION_A,
        &pki.layout.intermediate_cert(REGION_A, INTERMEDIATE),
    )
    .expect("revoke the intermediate");
    common::reload_and_assert_cut_off(&node, &config, &mut api).await;
    node.shutdown().await;
}

/// An intermediate listed in `ca` would be a trust anchor, which webpki never checks for
/// revocation: its root could revoke it and its leaves would still get in. The node refuses
/// such a bundle at start-up and at a reload, naming the key, the file and the certificate.
#[tokio::test]
async fn an_intermediate_listed_as_a_root_is_refused_by_the_config() {
    let (pki, _, _) = pki_with_intermediate();
    let config = pki.write_config_with_crls(REGION_A, REGION_A, &both_crls(&pki));
    let bundle = root_and_intermediate(&pki, "bundle.crt");
    let text = std::fs::read_to_string(&config).unwrap();
    let root = format!(
        "ca = {:?}",
        pki.layout.ca_cert(REGION_A).display().to_string()
    );
    let edited = text.replacen(
        &root,
        &format!("ca = {:?}", bundle.display().to_string()),
        1,
    );
    assert_ne!(edited, text, "the config names region A's root");
    std::fs::write(&config, edited).unwrap();

    let err = credit_node::config::LoadedConfig::load(&config)
        .expect("the config parses")
        .tls_material()
        .expect_err("an intermediate as trust anchor must be refused");
    let message = err.to_string();
    for part in [
        "trust_domain[0].ca",
        &bundle.display().to_string(),
        "certificate 2",
        "is not a root CA",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
}

/// The client commands read `--ca` by the same rule: an intermediate there would be a trust
/// anchor, which `--crl` never reaches, so a node certificate it issued would stay trusted
/// after the root revokes it.
#[test]
fn an_intermediate_given_to_a_client_as_a_ca_is_refused() {
    let (pki, cert, key) = pki_with_intermediate();
    let bundle = root_and_intermediate(&pki, "client-bundle.crt");
    let err = credit_node::client::tls_config_from_files(&cert, &key, &[&bundle])
        .expect_err("an intermediate as the client's trust anchor must be refused");
    let message = err.to_string();
    for part in [
        &bundle.display().to_string(),
        "certificate 2",
        "is not a root CA",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    // The root alone is what --ca takes.
    let root = pki.layout.ca_cert(REGION_A);
    assert!(credit_node::client::tls_config_from_files(&cert, &key, &[&root]).is_ok());
}

/// A connection can outlive its chain as well as its leaf: a leaf whose intermediate CA expires
/// before it (nothing stops a CA from issuing past its own end) is refused on the connection it
/// opened while both were valid, from the intermediate's notAfter on, as a new handshake would
/// be.
#[tokio::test]
async fn an_intermediate_that_expires_on_an_open_connection_refuses_its_leaf_from_then_on() {
    let pki = TestPki::new();
    pki::issue_intermediate_valid_for(&pki.layout, REGION_A, INTERMEDIATE, 30)
        .expect("a short-lived intermediate CA");
    let (cert, key) =
        pki::issue_under_intermediate(&pki.layout, REGION_A, INTERMEDIATE, Kind::Dept, "customs")
            .expect("a leaf that outlives it");
    let intermediate =
        &credit_node::tls::load_certs(&pki.layout.intermediate_cert(REGION_A, INTERMEDIATE))
            .unwrap()[0];
    let (_, parsed) = x509_parser::parse_x509_certificate(intermediate.as_ref()).unwrap();
    let intermediate_ends = parsed.validity().not_after.timestamp();
    let leaf = credit_node::tls::caller_from_cert(&credit_node::tls::load_certs(&cert).unwrap()[0])
        .unwrap();
    assert!(
        leaf.not_after_unix > intermediate_ends + 86_400,
        "the leaf outlives its CA"
    );

    let now = common::SetClock::now();
    let config = pki.write_config_with_crls(REGION_A, REGION_A, &both_crls(&pki));
    let node = common::start_with_clock(&config, now.clock()).await;
    let channel = client::connect(&endpoint(&node), pki.client_tls(&cert, &key))
        .await
        .expect("the whole chain is valid today");
    let mut api = CreditQueryClient::new(channel);
    api.who_am_i(proto::WhoAmIRequest {})
        .await
        .expect("valid: answered");

    now.set(intermediate_ends + 1);
    let status = api
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .expect_err("the chain has expired: refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("has expired"), "{status:?}");
    node.shutdown().await;
}
