//! Promises 2 and 3 at the node: what a caller may receive comes from the signed catalog only,
//! field by field, and a catalog that is not validly signed is never loaded.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::process::Command;

use common::{TestPki, endpoint};
use credit_node::{
    identity::Kind,
    pki::{self, REGION_A, REGION_B},
    proto::{self, credit_query_client::CreditQueryClient},
};

const BIN: &str = env!("CARGO_BIN_EXE_credit-node");

async fn grants_of(
    pki: &TestPki,
    node: &credit_node::server::RunningNode,
    region: &str,
    kind: Kind,
    id: &str,
) -> proto::DescribeGrantsResponse {
    let (cert, key) = pki.identity(region, kind, id);
    let channel = credit_node::client::connect(&endpoint(node), pki.client_tls(&cert, &key))
        .await
        .expect("connect");
    CreditQueryClient::new(channel)
        .describe_grants(proto::DescribeGrantsRequest {})
        .await
        .expect("DescribeGrants")
        .into_inner()
}

fn form(
    grants: &proto::DescribeGrantsResponse,
    purpose: &str,
    item: &str,
    field: &str,
) -> Option<String> {
    grants
        .purposes
        .iter()
        .find(|p| p.purpose == purpose)?
        .items
        .iter()
        .find(|i| i.item == item)?
        .fields
        .iter()
        .find(|f| f.field == field)
        .map(|f| f.form.clone())
}

#[tokio::test]
async fn describe_grants_returns_the_callers_own_grants_only() {
    let pki = TestPki::new();
    let node = pki.start_node(REGION_A).await;

    let tax_a = grants_of(&pki, &node, REGION_A, Kind::Dept, "tax").await;
    let tax_b = grants_of(&pki, &node, REGION_B, Kind::Dept, "tax").await;
    let court_a = grants_of(&pki, &node, REGION_A, Kind::Dept, "court").await;
    let eco_b = grants_of(&pki, &node, REGION_B, Kind::Dept, "eco").await;
    let officer = grants_of(&pki, &node, REGION_A, Kind::Officer, "auditor").await;

    let id = ("tax-administration", "registration", "legal_rep_id");
    assert_eq!(
        form(&tax_a, id.0, id.1, id.2).as_deref(),
        Some("resident_id"),
        "region A tax: masked"
    );
    assert_eq!(
        form(&tax_b, id.0, id.1, id.2).as_deref(),
        Some("pseudonym"),
        "region B tax: pseudonym"
    );
    assert_eq!(
        form(&court_a, "enforcement", "registration", "legal_rep_id").as_deref(),
        Some("raw")
    );
    assert_eq!(
        form(&tax_a, "enforcement", "registration", "legal_rep_id"),
        None,
        "purpose not granted"
    );
    assert_eq!(
        form(&tax_a, id.0, "registration", "legal_rep_mobile"),
        None,
        "field not granted"
    );
    assert!(
        eco_b
            .purposes
            .iter()
            .all(|p| p.items.iter().all(|i| i.item != "tax-credit-rating")),
        "region B eco gets no tax credit rating"
    );
    assert!(
        [&tax_a, &tax_b, &court_a, &eco_b].iter().all(|g| g
            .purposes
            .iter()
            .all(|p| p.items.iter().all(|i| i.item != "inspection-notes"))),
        "an item with sharing = none reaches nobody"
    );
    assert!(
        officer.purposes.is_empty(),
        "an officer receives no credit data: {officer:?}"
    );
    assert_eq!(tax_a.catalog_sha256, node.state().catalog().digest_hex());
    node.shutdown().await;
}

#[tokio::test]
async fn a_node_does_not_start_with_a_tampered_or_foreign_signed_catalog() {
    let pki = TestPki::new();
    let config = pki.write_config(REGION_A);
    let catalog = pki.layout.demo_catalog();
    let original = std::fs::read(&catalog).unwrap();

    // One byte changed after signing.
    let mut tampered = original.clone();
    let at = tampered.iter().position(|&b| b == b'"').unwrap() + 1;
    tampered[at] ^= 0x01;
    std::fs::write(&catalog, &tampered).unwrap();
    let err = credit_node::config::LoadedConfig::load(&config)
        .unwrap()
        .catalog()
        .unwrap_err();
    assert!(
        err.to_string().contains("catalog.path") && err.to_string().contains("signature"),
        "{err}"
    );

    // Validly formed, but signed by another key than the configured authority's.
    std::fs::write(&catalog, &original).unwrap();
    let other = pki.dir.path().join("other");
    credit_node::catalog::keyfiles::generate_key_files(
        &other.with_extension("key"),
        &other.with_extension("pub"),
    )
    .unwrap();
    let sig = format!("{}.sig", catalog.display());
    credit_node::catalog::keyfiles::sign_file(&catalog, &other.with_extension("key"), sig.as_ref())
        .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("catalog.path") && stderr.contains("signature"),
        "{stderr}"
    );
}

#[tokio::test]
async fn reload_takes_a_newly_signed_catalog_and_refuses_a_tampered_one() {
    let pki = TestPki::new();
    let config = pki.write_config(REGION_A);
    let node = common::start_from_config(&config).await;
    let before = grants_of(&pki, &node, REGION_B, Kind::Dept, "tax").await;
    assert_eq!(
        form(
            &before,
            "tax-administration",
            "registration",
            "legal_rep_id"
        )
        .as_deref(),
        Some("pseudonym")
    );

    // The authority re-signs a catalog that withdraws region B tax's access to the legal rep.
    let catalog = pki.layout.demo_catalog();
    let text = std::fs::read_to_string(&catalog).unwrap();
    let narrowed = text.replace(
        "trust_domains = [\"region-b.credit.test\"]\ndepartments = [\"tax\"]\npurposes = [\"tax-administration\"]\nfields = [\"legal_rep_name\", \"legal_rep_id\"]",
        "trust_domains = [\"region-b.credit.test\"]\ndepartments = [\"tax\"]\npurposes = [\"tax-administration\"]\nfields = [\"legal_rep_name\"]",
    );
    assert_ne!(
        narrowed, text,
        "the demo catalog has the grant this test narrows"
    );
    let narrowed = narrowed
        .replace("forms = { legal_rep_id = \"pseudonym\" }\n", "")
        .replace("date = 2026-04-01", "date = 2026-10-01")
        .replace("version = \"2026.1-demo\"", "version = \"2026.2-demo\"");
    std::fs::write(&catalog, &narrowed).unwrap();
    let sig = format!("{}.sig", catalog.display());
    let old_sig = std::fs::read(&sig).unwrap();
    credit_node::catalog::keyfiles::sign_file(
        &catalog,
        &pki.layout.catalog_authority_key(),
        sig.as_ref(),
    )
    .unwrap();
    credit_node::cli::serve::reload(&config, &node);
    let after = grants_of(&pki, &node, REGION_B, Kind::Dept, "tax").await;
    assert_eq!(
        form(&after, "tax-administration", "registration", "legal_rep_id"),
        None
    );
    assert_ne!(after.catalog_sha256, before.catalog_sha256);

    // Someone widens the catalog locally without the authority's key: refused, the signed
    // narrowed catalog stays in force.
    std::fs::write(&catalog, &text).unwrap();
    let still_narrowed = async || {
        let still = grants_of(&pki, &node, REGION_B, Kind::Dept, "tax").await;
        assert_eq!(still.catalog_sha256, after.catalog_sha256);
        assert_eq!(
            form(&still, "tax-administration", "registration", "legal_rep_id"),
            None
        );
    };
    credit_node::cli::serve::reload(&config, &node);
    still_narrowed().await;

    // The old catalog with its own, valid signature: a rollback to grants the authority has
    // withdrawn. Refused: a reload takes only a later catalog.
    std::fs::write(&sig, &old_sig).unwrap();
    credit_node::cli::serve::reload(&config, &node);
    still_narrowed().await;

    // A later catalog signed by another key, the config pointed at that key: refused too.
    let other = credit_node::catalog::AuthorityKeyPair::generate().unwrap();
    let later = narrowed.replace("date = 2026-10-01", "date = 2026-11-01");
    std::fs::write(&catalog, &later).unwrap();
    std::fs::write(&sig, other.sign(later.as_bytes())).unwrap();
    std::fs::write(
        pki.layout.catalog_authority_pub(),
        other.public_key().to_pem(),
    )
    .unwrap();
    credit_node::cli::serve::reload(&config, &node);
    still_narrowed().await;
    node.shutdown().await;
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

#[test]
fn catalog_commands_sign_verify_and_explain() {
    let pki = TestPki::new();
    let dir = pki.dir.path();
    let file = dir.join("my-catalog.toml");
    std::fs::write(&file, credit_node::catalog::DEMO).unwrap();
    let key = pki.layout.catalog_authority_key();
    let public = pki.layout.catalog_authority_pub();

    let out = run(&[
        "catalog",
        "sign",
        "--key",
        key.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "catalog",
        "verify",
        "--key",
        public.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("signature valid"));

    let out = run(&[
        "catalog",
        "explain",
        "--catalog",
        file.to_str().unwrap(),
        "--key",
        public.to_str().unwrap(),
        "--caller",
        "spiffe://region-b.credit.test/dept/tax",
        "--purpose",
        "tax-administration",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let rep_id = rows
        .iter()
        .find(|r| r["item"] == "registration" && r["field"] == "legal_rep_id")
        .unwrap();
    assert_eq!(rep_id["decision"], "granted");
    assert_eq!(rep_id["form"], "pseudonym");
    let mobile = rows
        .iter()
        .find(|r| r["item"] == "registration" && r["field"] == "legal_rep_mobile")
        .unwrap();
    assert_eq!(mobile["decision"], "withheld");

    // The table form, through the node's config.
    let config = pki.write_config(REGION_A);
    let out = run(&[
        "catalog",
        "explain",
        "--config",
        config.to_str().unwrap(),
        "--caller",
        "spiffe://region-a.credit.test/dept/court",
        "--purpose",
        "enforcement",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("legal_rep_mobile"));

    // After signing, one changed byte: verification fails, exit code 1 (as `ledger verify`
    // exits on tampering; 2 is for input it cannot read).
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();
    let out = run(&[
        "catalog",
        "verify",
        "--key",
        public.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature"));
}

#[test]
fn a_bad_catalog_is_refused_before_signing_with_file_line_and_key() {
    let pki = TestPki::new();
    let file = pki.dir.path().join("dup.toml");
    // The second item gets the first item's id.
    let text =
        credit_node::catalog::DEMO.replacen("id = \"admin-licence\"", "id = \"registration\"", 1);
    std::fs::write(&file, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l == "id = \"registration\"")
        .unwrap();
    let second = text
        .lines()
        .skip(line + 1)
        .position(|l| l == "id = \"registration\"")
        .unwrap()
        + line
        + 2;
    let out = run(&[
        "catalog",
        "sign",
        "--key",
        pki.layout.catalog_authority_key().to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("dup.toml:{second}:")),
        "line {second} named: {stderr}"
    );
    assert!(stderr.contains("duplicate"), "{stderr}");
    assert!(
        !pki.dir.path().join("dup.toml.sig").exists(),
        "nothing signed"
    );
    let _ = pki::REGION_A;
}
