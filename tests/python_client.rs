//! A client of another language and another TLS stack: `clients/python/credit_client.py` on
//! Python's grpcio (gRPC's C core, BoringSSL), with stubs generated from the `.proto` files
//! alone, against a real node. It proves its receipts with its own code (the result's digest,
//! the tree head's Ed25519 signature, the RFC 9162 inclusion proof), so the proto comments
//! that describe them are held to what the node does.
//!
//! Needs a Python with grpcio, grpcio-tools and cryptography (`CN_PYTHON`, else `python3`):
//! `.ci/run` installs them; elsewhere the tests say they were skipped, and fail under CI=true.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::{ffi::OsString, path::Path, process::Command};

use common::{MOBILE, REP_ID, TestPki, ask_for, registration_row};
use credit_node::{
    identifier::Uscc,
    identity::Kind,
    pki::{REGION_A, REGION_B},
    proto::{
        self, administration_client::AdministrationClient, credit_query_client::CreditQueryClient,
    },
    server::RunningNode,
    tls,
};
use serde_json::Value;

/// The Python to run the client with, or `None` (the test is skipped) when it lacks the
/// client's packages outside CI.
fn python() -> Option<String> {
    let python = std::env::var("CN_PYTHON").unwrap_or_else(|_| "python3".into());
    let ready = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools, cryptography"])
        .output()
        .is_ok_and(|out| out.status.success());
    if ready {
        return Some(python);
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "{python} lacks grpcio, grpcio-tools or cryptography under CI=true (.ci/run installs \
         them and sets CN_PYTHON)"
    );
    eprintln!(
        "skipped: {python} lacks grpcio, grpcio-tools or cryptography (pip install grpcio \
         grpcio-tools cryptography, or set CN_PYTHON)"
    );
    None
}

/// Region A's node holding `subject`'s registration.
async fn node_holding(pki: &TestPki, subject: &str) -> RunningNode {
    let node = pki.start_node(REGION_A).await;
    let channel = pki.channel(&node, REGION_A, Kind::Operator, "admin").await;
    AdministrationClient::new(channel)
        .ingest_records(proto::IngestRecordsRequest {
            json_lines: vec![registration_row(subject)],
        })
        .await
        .expect("operator ingests");
    node
}

/// Runs the client as `cert`/`key` against `node` with `command`; its exit code and the JSON
/// it printed. On a thread of its own: the node serves on this test's runtime meanwhile.
async fn client(
    python: &str,
    pki: &TestPki,
    node: &RunningNode,
    (cert, key): (&Path, &Path),
    command: &[&str],
) -> (i32, Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python/credit_client.py");
    let mut args: Vec<OsString> = vec![script.into(), "--endpoint".into()];
    args.push(format!("127.0.0.1:{}", node.local_addr().port()).into());
    for region in [REGION_A, REGION_B] {
        args.push("--ca".into());
        args.push(pki.layout.ca_cert(region).into());
    }
    args.extend(["--cert".into(), cert.into(), "--key".into(), key.into()]);
    args.extend(command.iter().map(OsString::from));
    let python = python.to_owned();
    let run = move || {
        Command::new(python)
            .args(args)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
    };
    let out = tokio::task::spawn_blocking(run)
        .await
        .unwrap()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

fn query_args<'a>(subject: &'a str, ledger_key: &'a str) -> Vec<&'a str> {
    vec![
        "query",
        "--subject",
        subject,
        "--item",
        "registration",
        "--purpose",
        "tax-administration",
        "--basis",
        "（2026）浙0106执123号",
        "--ledger-key",
        ledger_key,
    ]
}

#[tokio::test]
async fn a_python_grpcio_client_queries_over_mutual_tls_and_proves_its_receipt() {
    let Some(python) = python() else { return };
    let pki = TestPki::new();
    let subject = Uscc::from_seed(31).to_string();
    let node = node_holding(&pki, &subject).await;
    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "tax");
    let tax = (cert.as_path(), key.as_path());

    // BoringSSL completes the handshake with the development PKI, and the node names the
    // caller by its certificate.
    let (code, who) = client(&python, &pki, &node, tax, &["whoami"]).await;
    assert_eq!(code, 0, "{who}");
    assert_eq!(
        who["identity"]["spiffe_id"],
        "spiffe://region-a.credit.test/dept/tax"
    );

    // Some entries before, so the proof's path is a real one: a tree of 7, the client's entry
    // the last, whose path skips the levels where the right edge has no sibling.
    let channel = pki.channel(&node, REGION_A, Kind::Dept, "court").await;
    let mut court = CreditQueryClient::new(channel);
    for _ in 0..5 {
        court
            .query(ask_for(&subject, "registration", "enforcement"))
            .await
            .expect("the court's query");
    }
    let ledger_key = pki.layout.ledger_pub(REGION_A).display().to_string();
    let (code, out) = client(
        &python,
        &pki,
        &node,
        tax,
        &query_args(&subject, &ledger_key),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["proof"]["sequence"], 6, "{out}");
    // Proved in Python: digest, signature over the tree head, inclusion in it.
    assert_eq!(out["proof"]["verified"], true, "{out}");
    let records = out["response"]["result"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{out}");
    let id = records[0]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "legal_rep_id")
        .unwrap();
    assert_eq!(id["form"], "resident_id", "{out}");
    let text = out.to_string();
    assert!(!text.contains(REP_ID) && !text.contains(MOBILE), "{text}");

    // The entry the client proved is the node's record of this query.
    let channel = pki.channel(&node, REGION_A, Kind::Officer, "auditor").await;
    let entries = credit_node::proto::ledger_review_client::LedgerReviewClient::new(channel)
        .list_entries(proto::ListEntriesRequest {
            subject: subject.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let sequence = out["proof"]["sequence"].as_u64().unwrap();
    let entry = entries.iter().find(|e| e.seq == sequence).unwrap();
    assert_eq!(entry.caller, "spiffe://region-a.credit.test/dept/tax");
    assert_eq!(out["proof"]["leaf_hash"], tls::hex(&entry.leaf_hash));
    // The mobile number was asked for (all fields) and withheld.
    assert_eq!(entry.outcome, proto::EntryOutcome::PartlyWithheld as i32);
}

#[tokio::test]
async fn the_python_client_gets_precise_refusals_and_its_proof_fails_closed() {
    let Some(python) = python() else { return };
    let pki = TestPki::new();
    let subject = Uscc::from_seed(32).to_string();
    let node = node_holding(&pki, &subject).await;
    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "tax");
    let tax = (cert.as_path(), key.as_path());
    let ledger_key = pki.layout.ledger_pub(REGION_A).display().to_string();

    // A malformed subject: INVALID_ARGUMENT naming the field.
    let mut bad = subject.clone();
    bad.replace_range(17.., if subject.ends_with('0') { "1" } else { "0" });
    let (code, out) = client(&python, &pki, &node, tax, &query_args(&bad, &ledger_key)).await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["error"]["code"], "INVALID_ARGUMENT", "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("subject"),
        "{out}"
    );

    // Another node's ledger key pinned: the tree head is not that node's, and the client says
    // so rather than calling the receipt proved.
    let other_key = pki.layout.ledger_pub(REGION_B).display().to_string();
    let (code, out) = client(&python, &pki, &node, tax, &query_args(&subject, &other_key)).await;
    assert_eq!(code, 2, "{out}");
    assert_eq!(out["proof"]["verified"], false, "{out}");
    assert!(
        out["proof"]["failure"]
            .as_str()
            .unwrap()
            .contains("another key"),
        "{out}"
    );

    // A certificate of a CA the node does not trust: refused at the handshake, nothing sent.
    let (cert, key) = pki.layout.negative("rogue");
    let (code, out) = client(
        &python,
        &pki,
        &node,
        (&cert, &key),
        &query_args(&subject, &ledger_key),
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["error"]["code"], "UNAVAILABLE", "{out}");
    assert!(out.get("response").is_none(), "nothing received: {out}");
}

/// The client's own proof checks, against trees built from RFC 9162's definitions and against
/// tampered proofs (`clients/python/test_credit_client.py`).
#[test]
fn the_python_clients_proof_checks_hold_to_rfc_9162_and_refuse_tampered_proofs() {
    let Some(python) = python() else { return };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let out = Command::new(python)
        .args(["-m", "unittest", "discover", "-s"])
        .arg(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python runs");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("Ran 3 tests"), "{report}");
}

#[tokio::test]
async fn the_python_client_learns_which_records_it_received_were_withdrawn() {
    let Some(python) = python() else { return };
    let pki = TestPki::new();
    let subject = Uscc::from_seed(33).to_string();
    let node = node_holding(&pki, &subject).await;
    let operator = pki.channel(&node, REGION_A, Kind::Operator, "admin").await;
    let mut admin = AdministrationClient::new(operator);
    admin
        .ingest_records(proto::IngestRecordsRequest {
            json_lines: vec![common::penalty_row(
                &subject,
                "京市监罚〔2026〕8号",
                "2026-05-01",
            )],
        })
        .await
        .expect("operator ingests");
    // The court receives the penalty, which is then restored.
    let channel = pki.channel(&node, REGION_A, Kind::Dept, "court").await;
    let received = CreditQueryClient::new(channel)
        .query(ask_for(&subject, "admin-penalty", "enforcement"))
        .await
        .unwrap()
        .into_inner();
    let record_id = received.result.unwrap().records[0].record_id.clone();
    common::restore(&mut admin, &record_id, "2026-11-01").await;

    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "court");
    let court = (cert.as_path(), key.as_path());
    let (code, out) = client(&python, &pki, &node, court, &["withdrawals"]).await;
    assert_eq!(code, 0, "{out}");
    let listed = out["withdrawals"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{out}");
    assert_eq!(listed[0]["record_id"], record_id.as_str(), "{out}");
    assert_eq!(listed[0]["reason"], "WITHDRAWAL_REASON_RESTORED", "{out}");
    assert_eq!(listed[0]["on"], "2026-11-01", "{out}");
    // One page, on record at the node.
    assert_eq!(
        out["listed_in_entries"].as_array().unwrap().len(),
        1,
        "{out}"
    );
}
