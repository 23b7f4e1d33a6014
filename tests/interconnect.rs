//! Regions interconnected, end to end: a department of region A asks its own node about a
//! subject whose records a node of region B holds; A's node forwards the query over its own
//! mutual TLS, B's node answers for that department as `on_behalf_of`, and both record it.
//! Each hop enforces its own catalog, and a hop never grants more than the caller has.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};

use common::{MOBILE, REP_ID, TestPki, ask_for, registration_row};
use credit_node::{
    identifier::Uscc,
    identity::Kind,
    pki::{self, REGION_A, REGION_B},
    proto::{
        self, administration_client::AdministrationClient, credit_query_client::CreditQueryClient,
        interconnect_client::InterconnectClient, ledger_review_client::LedgerReviewClient,
    },
    server::RunningNode,
};
use prost::Message;
use tonic::Code;

const NODE_A: &str = "spiffe://region-a.credit.test/dept/samr";
const NODE_B: &str = "spiffe://region-b.credit.test/dept/samr";
const COURT_A: &str = "spiffe://region-a.credit.test/dept/court";
/// Both nodes serve their metrics, on a free port.
const METRICS: &str = "\n[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// A node's count `name` (with its labels, as the scrape spells them).
async fn count(node: &RunningNode, name: &str) -> f64 {
    let (_, samples) = common::scrape(node).await;
    common::get(&samples, name)
}

/// Region B's market regulator's node, holding `subject`'s registration (an item the market
/// regulator records), answering relays from region A's node.
async fn holding_node(pki: &TestPki, subject: &str) -> RunningNode {
    holding_node_with(pki, &[subject], |config| config).await
}

/// [`holding_node`] holding `subjects`, its config text passed through `edit` first.
async fn holding_node_with(
    pki: &TestPki,
    subjects: &[impl AsRef<str>],
    edit: impl FnOnce(String) -> String,
) -> RunningNode {
    let config = pki.write_config(REGION_B);
    let (hrss_cert, hrss_key) = pki.identity(REGION_B, Kind::Dept, "hrss");
    let (cert, key) = pki::issue_identity(&pki.layout, REGION_B, Kind::Dept, "samr").unwrap();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            &hrss_cert.display().to_string(),
            &cert.display().to_string(),
        )
        .replace(&hrss_key.display().to_string(), &key.display().to_string());
    std::fs::write(&config, edit(text) + METRICS).unwrap();
    append(
        &config,
        &format!("\n[interconnect]\nrelays = [\"{NODE_A}\"]\n"),
    );
    let node = common::start_from_config(&config).await;
    let channel = pki.channel(&node, REGION_B, Kind::Operator, "admin").await;
    let done = AdministrationClient::new(channel)
        .ingest_records(proto::IngestRecordsRequest {
            json_lines: subjects
                .iter()
                .map(|s| registration_row(s.as_ref()))
                .collect(),
        })
        .await
        .expect("operator ingests")
        .into_inner();
    assert_eq!(done.inserted as usize, subjects.len());
    node
}

/// Region A's node with a route to `node` at `port`, under `catalog` (its path) when given.
async fn forwarding_node(
    pki: &TestPki,
    node: &str,
    port: u16,
    catalog: Option<&Path>,
) -> RunningNode {
    forwarding_node_timed(pki, node, port, catalog, 10_000).await
}

/// [`forwarding_node`] whose route gives up after `timeout_ms`.
async fn forwarding_node_timed(
    pki: &TestPki,
    node: &str,
    port: u16,
    catalog: Option<&Path>,
    timeout_ms: u64,
) -> RunningNode {
    let config = pki.write_config(REGION_A);
    if let Some(catalog) = catalog {
        let text = std::fs::read_to_string(&config).unwrap();
        let demo = format!("{:?}", pki.layout.demo_catalog().display().to_string());
        let ours = format!("{:?}", catalog.display().to_string());
        assert!(text.contains(&demo));
        std::fs::write(&config, text.replace(&demo, &ours)).unwrap();
    }
    append(
        &config,
        &format!(
            "{METRICS}\n[[interconnect.route]]\nnode = \"{node}\"\naddress = \"127.0.0.1:{port}\"\n\
             timeout_ms = {timeout_ms}\n"
        ),
    );
    common::start_from_config(&config).await
}

fn append(path: &Path, text: &str) {
    let mut config = std::fs::read_to_string(path).unwrap();
    config.push_str(text);
    std::fs::write(path, config).unwrap();
}

/// The demo catalog with region A's court granted less: the legal representative's identity
/// number masked instead of raw, and no mobile number. Signed by the catalog authority.
fn narrower_catalog(pki: &TestPki) -> PathBuf {
    let wide = "fields = [\"legal_rep_name\", \"legal_rep_id\", \"legal_rep_mobile\"]\n\
                forms = { legal_rep_name = \"raw\", legal_rep_id = \"raw\", legal_rep_mobile = \"raw\" }";
    let narrow =
        "fields = [\"legal_rep_name\", \"legal_rep_id\"]\nforms = { legal_rep_name = \"raw\" }";
    assert!(
        credit_node::catalog::DEMO.contains(wide),
        "the demo catalog grants the court in clear"
    );
    signed_catalog(pki, "narrower", |demo| demo.replace(wide, narrow))
}

/// The demo catalog passed through `edit`, written as `<name>-catalog.toml` and signed by the
/// catalog authority.
fn signed_catalog(pki: &TestPki, name: &str, edit: impl FnOnce(&str) -> String) -> PathBuf {
    let path = pki.dir.path().join(format!("{name}-catalog.toml"));
    std::fs::write(&path, edit(credit_node::catalog::DEMO)).unwrap();
    let sig = pki.dir.path().join(format!("{name}-catalog.toml.sig"));
    credit_node::catalog::keyfiles::sign_file(&path, &pki.layout.catalog_authority_key(), &sig)
        .unwrap();
    path
}

/// `refused` has `code`, and a message starting with `prefix`.
#[track_caller]
fn assert_refused(refused: &tonic::Status, code: Code, prefix: &str) {
    assert_eq!(refused.code(), code, "{refused:?}");
    assert!(refused.message().starts_with(prefix), "{refused:?}");
}

/// `refused` says when to try again (the other node's word, passed on).
#[track_caller]
fn assert_retry_after(refused: &tonic::Status) {
    assert!(
        refused.metadata().get("retry-after").is_some(),
        "{refused:?}"
    );
}

fn port(node: &RunningNode) -> u16 {
    node.local_addr().port()
}

/// A `CreditQuery` client of `node` as region A's department `id`.
async fn department(
    pki: &TestPki,
    node: &RunningNode,
    id: &str,
) -> CreditQueryClient<tonic::transport::Channel> {
    CreditQueryClient::new(pki.channel(node, REGION_A, Kind::Dept, id).await)
}

async fn query(
    pki: &TestPki,
    node: &RunningNode,
    id: &str,
    request: proto::QueryRequest,
) -> Result<proto::QueryResponse, tonic::Status> {
    let answer = department(pki, node, id).await.query(request).await;
    answer.map(tonic::Response::into_inner)
}

fn enforcement(subject: &str, node: &str) -> proto::QueryRequest {
    proto::QueryRequest {
        node: node.into(),
        ..ask_for(subject, "registration", "enforcement")
    }
}

/// A tax bureau's query of `subject`'s registration, naming the node that holds it.
fn tax_administration(subject: &str, node: &str) -> proto::QueryRequest {
    proto::QueryRequest {
        node: node.into(),
        ..ask_for(subject, "registration", "tax-administration")
    }
}

/// Every entry of `node`'s ledger, as its officer reads them.
async fn ledger(pki: &TestPki, node: &RunningNode, region: &str) -> Vec<proto::LedgerEntry> {
    ledger_selected(pki, node, region, proto::ListEntriesRequest::default()).await
}

/// The entries of `node`'s ledger that `request` selects, as its officer reads them.
async fn ledger_selected(
    pki: &TestPki,
    node: &RunningNode,
    region: &str,
    request: proto::ListEntriesRequest,
) -> Vec<proto::LedgerEntry> {
    let channel = pki.channel(node, region, Kind::Officer, "auditor").await;
    LedgerReviewClient::new(channel)
        .list_entries(request)
        .await
        .unwrap()
        .into_inner()
        .entries
}

/// Where an entry says its query was forwarded: to `node`, with that node's receipt if any.
fn sent_to(node: &str, receipt: Option<&proto::Receipt>) -> Option<proto::Upstream> {
    Some(proto::Upstream {
        node: node.to_owned(),
        receipt: receipt.cloned(),
    })
}

fn field<'r>(record: &'r proto::RecordView, name: &str) -> Option<&'r proto::FieldValue> {
    record.fields.iter().find(|f| f.field == name)
}

#[tokio::test]
async fn a_forwarded_query_is_answered_by_the_holding_node_and_recorded_by_both() {
    let pki = TestPki::new();
    let subject = Uscc::from_seed(7).to_string();
    let b = holding_node(&pki, &subject).await;
    let a = forwarding_node(&pki, NODE_B, port(&b), None).await;

    let answer = query(&pki, &a, "court", enforcement(&subject, NODE_B))
        .await
        .expect("the forwarded query is answered");
    let result = answer.result.clone().unwrap();
    assert_eq!(result.records.len(), 1, "{result:?}");
    let record = &result.records[0];
    // Both catalogs grant the court the legal representative in clear for enforcement.
    assert_eq!(field(record, "legal_rep_id").unwrap().value, REP_ID);
    assert_eq!(field(record, "legal_rep_id").unwrap().form, "raw");
    assert_eq!(field(record, "legal_rep_mobile").unwrap().value, MOBILE);
    let upstream = answer.upstream.clone().expect("the holding node's receipt");
    assert_eq!(upstream.node, NODE_B);
    let theirs = upstream.receipt.clone().unwrap();
    let ours = answer.receipt.clone().unwrap();

    // Region A's node: the court's query, its digest binding the result and B's receipt.
    let entries_a = ledger(&pki, &a, REGION_A).await;
    let entry_a = entries_a
        .iter()
        .find(|e| e.seq == ours.sequence)
        .expect("A recorded the query");
    assert_eq!(entry_a.caller, COURT_A);
    assert_eq!(entry_a.on_behalf_of, None);
    assert_eq!(entry_a.subject, subject);
    assert_eq!(entry_a.outcome, proto::EntryOutcome::Granted as i32);
    // It names where the query went and B's entry of it.
    assert_eq!(entry_a.forwarded, sent_to(NODE_B, Some(&theirs)));
    let covered = proto::QueryResponse {
        result: Some(result),
        receipt: None,
        upstream: Some(upstream),
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &covered.encode_to_vec());
    assert_eq!(ours.result_sha256, digest.as_ref());

    // Region B's node: A's node as the caller, on behalf of the court, with the digest it sent.
    let entries_b = ledger(&pki, &b, REGION_B).await;
    let entry_b = entries_b
        .iter()
        .find(|e| e.seq == theirs.sequence)
        .expect("B recorded the query");
    assert_eq!(entry_b.caller, NODE_A);
    assert_eq!(entry_b.on_behalf_of.as_deref(), Some(COURT_A));
    assert_eq!(entry_b.subject, subject);
    assert_eq!(entry_b.purpose, "enforcement");
    assert_eq!(theirs.result_sha256, entry_b.response_sha256);
    assert_eq!(entry_b.forwarded, None, "B answered it itself");
    let answered = r#"credit_node_forwarded_total{result="answered"}"#;
    assert_eq!(count(&a, answered).await, 1.0);

    // A's officers select what went to B, over the RPC and in `ledger list`, which shows B's
    // entry to look up there.
    let to_b = |node: &str| proto::ListEntriesRequest {
        forwarded_to: node.to_owned(),
        ..Default::default()
    };
    let sent = ledger_selected(&pki, &a, REGION_A, to_b(NODE_B)).await;
    assert_eq!(
        sent.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![ours.sequence]
    );
    let elsewhere = "spiffe://region-b.credit.test/dept/court";
    assert!(
        ledger_selected(&pki, &a, REGION_A, to_b(elsewhere))
            .await
            .is_empty()
    );
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_credit-node"))
        .args(["ledger", "list", "--forwarded-to", NODE_B, "--config"])
        .arg(pki.dir.path().join(format!("{REGION_A}.toml")))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{table}");
    assert!(
        table.contains(&format!(
            "(forwarded to {NODE_B}, its #{})",
            theirs.sequence
        )),
        "{table}"
    );
    assert_eq!(
        table.lines().count(),
        2,
        "a heading and the one entry: {table}"
    );
    assert_eq!(count(&b, "credit_node_relayed_total").await, 1.0);

    // B's officers read it in `ledger list` as the relay acting for the court.
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_credit-node"))
        .args(["ledger", "list", "--config"])
        .arg(pki.dir.path().join(format!("{REGION_B}.toml")))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{table}");
    assert!(
        table.contains(&format!("{NODE_A} for {COURT_A}")),
        "{table}"
    );
    // And select what was obtained for the court alone.
    let list_for = |department: &str| {
        let listed = std::process::Command::new(env!("CARGO_BIN_EXE_credit-node"))
            .args([
                "ledger",
                "list",
                "--jsonl",
                "--on-behalf-of",
                department,
                "--config",
            ])
            .arg(pki.dir.path().join(format!("{REGION_B}.toml")))
            .output()
            .unwrap();
        assert!(listed.status.success(), "{listed:?}");
        String::from_utf8(listed.stdout).unwrap()
    };
    let courts = list_for(COURT_A);
    assert_eq!(courts.lines().count(), 1, "{courts}");
    assert!(courts.contains(&subject), "{courts}");
    let taxs = list_for("spiffe://region-a.credit.test/dept/tax");
    assert_eq!(taxs.lines().count(), 0, "{taxs}");

    // The court may prove B's receipt against B's tree: the entry is its own.
    let channel = pki.channel(&b, REGION_A, Kind::Dept, "court").await;
    let mut review = LedgerReviewClient::new(channel);
    let head = review
        .get_signed_tree_head(proto::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    let tree_size = head.tree_size;
    review
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            seq: theirs.sequence,
            tree_size,
        })
        .await
        .expect("the court proves its relayed entry");
}

#[tokio::test]
async fn a_hop_never_grants_more_than_its_own_catalog() {
    let pki = TestPki::new();
    let subject = Uscc::from_seed(8).to_string();
    let b = holding_node(&pki, &subject).await;
    let narrower = narrower_catalog(&pki);
    let a = forwarding_node(&pki, NODE_B, port(&b), Some(&narrower)).await;

    let answer = query(&pki, &a, "court", enforcement(&subject, NODE_B))
        .await
        .expect("answered");
    let result = answer.result.unwrap();
    let record = &result.records[0];
    // B grants the identity number raw; A masks it, and never asked for the mobile.
    let id = field(record, "legal_rep_id").unwrap();
    assert_eq!(id.form, "resident_id");
    assert_ne!(id.value, REP_ID);
    assert!(field(record, "legal_rep_mobile").is_none());
    assert!(
        result
            .withheld
            .iter()
            .any(|w| w.field == "legal_rep_mobile" && w.reason == "field not granted"),
        "{:?}",
        result.withheld
    );
    let sent = format!("{result:?}");
    assert!(!sent.contains(REP_ID) && !sent.contains(MOBILE), "{sent}");

    // B was asked for the fields A grants only, and disclosed no more than that to A.
    let entries_b = ledger(&pki, &b, REGION_B).await;
    let relayed = entries_b
        .iter()
        .find(|e| e.on_behalf_of.as_deref() == Some(COURT_A))
        .unwrap();
    assert!(
        !relayed
            .requested_fields
            .iter()
            .any(|f| f.contains("legal_rep_mobile") || f.ends_with(".*")),
        "{:?}",
        relayed.requested_fields
    );
}

#[tokio::test]
async fn only_listed_relays_speak_and_only_for_their_own_region() {
    let pki = TestPki::new();
    let subject = Uscc::from_seed(9).to_string();
    let b = holding_node(&pki, &subject).await;
    let relay = |region: &str, id: &str| {
        let (pki, b) = (&pki, &b);
        let (region, id) = (region.to_owned(), id.to_owned());
        async move { InterconnectClient::new(pki.channel(b, &region, Kind::Dept, &id).await) }
    };
    let asking = |on_behalf_of: &str| proto::RelayRequest {
        on_behalf_of: on_behalf_of.into(),
        query: Some(ask_for(&subject, "registration", "enforcement")),
    };

    // A department that is no relay of B cannot claim to act for anyone.
    let refused = relay(REGION_A, "court")
        .await
        .relay(asking(COURT_A))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("not a relay"), "{refused:?}");

    // A listed relay of region A cannot speak for a department of region B.
    let refused = relay(REGION_A, "samr")
        .await
        .relay(asking("spiffe://region-b.credit.test/dept/tax"))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::PermissionDenied, "on_behalf_of:");

    // Nor send a relayed query on to a further node.
    let mut onwards = asking(COURT_A);
    onwards.query.as_mut().unwrap().node = "spiffe://region-a.credit.test/dept/tax".into();
    let refused = relay(REGION_A, "samr")
        .await
        .relay(onwards)
        .await
        .unwrap_err();
    assert_refused(&refused, Code::InvalidArgument, "node:");

    // Each refusal is on record at B, and none disclosed anything.
    let entries = ledger(&pki, &b, REGION_B).await;
    let reasons: Vec<&str> = entries
        .iter()
        .filter(|e| e.caller.starts_with("spiffe://region-a"))
        .map(|e| e.reason.as_str())
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    // Two refused as relay calls; the third was a relayed query, refused as malformed.
    assert_eq!(count(&b, "credit_node_relays_refused_total").await, 2.0);
    assert_eq!(count(&b, "credit_node_relayed_total").await, 1.0);
    assert!(reasons[0].starts_with("credit.v1.Interconnect/Relay: "));
    assert!(
        entries
            .iter()
            .filter(|e| e.caller.starts_with("spiffe://region-a"))
            .all(|e| e.decisions.is_empty()),
        "{entries:?}"
    );
}

#[tokio::test]
async fn a_node_without_a_route_or_with_its_peer_down_refuses_on_record() {
    let pki = TestPki::new();
    let subject = Uscc::from_seed(10).to_string();
    // A port nothing listens on any more: the route's node is down.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_port = down.local_addr().unwrap().port();
    drop(down);
    let a = forwarding_node(&pki, NODE_B, down_port, None).await;

    let unreachable = query(&pki, &a, "court", enforcement(&subject, NODE_B))
        .await
        .unwrap_err();
    assert_eq!(unreachable.code(), Code::Unavailable, "{unreachable:?}");
    assert!(unreachable.message().contains(NODE_B), "{unreachable:?}");
    let unanswered = r#"credit_node_forwarded_total{result="unanswered"}"#;
    assert_eq!(count(&a, unanswered).await, 1.0);

    let no_route = query(
        &pki,
        &a,
        "court",
        enforcement(&subject, "spiffe://region-b.credit.test/dept/eco"),
    )
    .await
    .unwrap_err();
    assert_eq!(no_route.code(), Code::InvalidArgument, "{no_route:?}");
    assert!(no_route.message().starts_with("node: "), "{no_route:?}");

    let entries = ledger(&pki, &a, REGION_A).await;
    let court: Vec<&proto::LedgerEntry> = entries.iter().filter(|e| e.caller == COURT_A).collect();
    assert_eq!(court.len(), 2, "{entries:?}");
    assert_eq!(court[0].outcome, proto::EntryOutcome::Denied as i32);
    assert!(court[0].reason.contains(NODE_B), "{:?}", court[0]);
    // Sent towards B, with no answer from it; the query with no route went nowhere.
    assert_eq!(court[0].forwarded, sent_to(NODE_B, None));
    assert_eq!(court[1].outcome, proto::EntryOutcome::Invalid as i32);
    assert_eq!(court[1].forwarded, None);
}

#[tokio::test]
async fn a_route_talks_only_to_the_node_it_names() {
    let pki = TestPki::new();
    let subject = Uscc::from_seed(11).to_string();
    let b = holding_node(&pki, &subject).await;
    // The route names region B's ecology node, but B's market regulator answers there.
    let eco = "spiffe://region-b.credit.test/dept/eco";
    let a = forwarding_node(&pki, eco, port(&b), None).await;

    let refused = query(&pki, &a, "court", enforcement(&subject, eco))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    // Nothing reached B: its ledger holds the ingest only.
    let entries = ledger(&pki, &b, REGION_B).await;
    assert!(entries.iter().all(|e| e.caller != NODE_A), "{entries:?}");
}

/// `config` (a node's, `[harvest]` its last section) with one distinct subject a day for every
/// caller, and `relay` held to `relay_quota` of its own.
fn quotas(config: String, relay_quota: u64) -> String {
    let tight = config.replace("distinct_subjects = 200", "distinct_subjects = 1");
    assert_ne!(tight, config, "the development config sets a quota");
    format!(
        "{tight}\n[[harvest.caller]]\nid = \"{NODE_A}\"\nrequests_per_second = 100\nburst = 200\n\
         distinct_subjects = {relay_quota}\n"
    )
}

/// `config` (B's) where every caller may obtain a hundred subjects a day, and the relay from A
/// two in all.
fn relay_holds_two(config: String) -> String {
    quotas(config, 2).replace("distinct_subjects = 1\n", "distinct_subjects = 100\n")
}

/// Three subjects' identifiers, of seeds `from`, `from + 1` and `from + 2`.
fn three_subjects(from: u64) -> Vec<String> {
    (from..from + 3)
        .map(|s| Uscc::from_seed(s).to_string())
        .collect()
}

#[tokio::test]
async fn the_holding_node_counts_relayed_subjects_against_the_original_callers_quota() {
    let pki = TestPki::new();
    let subjects = three_subjects(12);
    let [first, second, third] = &subjects[..] else {
        unreachable!()
    };
    // One distinct subject a day per caller at B; its relay from A may obtain two in all.
    let b = holding_node_with(&pki, &subjects, |config| quotas(config, 2)).await;
    let a = forwarding_node(&pki, NODE_B, port(&b), None).await;

    query(&pki, &a, "court", enforcement(first, NODE_B))
        .await
        .expect("the court's first subject");
    let refused = query(&pki, &a, "court", enforcement(second, NODE_B))
        .await
        .unwrap_err();
    assert_refused(
        &refused,
        Code::ResourceExhausted,
        &format!("node {NODE_B}: quota: this caller "),
    );
    assert_retry_after(&refused);
    // The quota is the court's: another department of region A still gets a subject through
    // the same relay, and the relay's own quota was not spent by the court's refused query
    // (it holds two: the court's first, and this one).
    let answer = query(&pki, &a, "tax", tax_administration(third, NODE_B))
        .await
        .expect("tax's own quota");
    assert_eq!(answer.result.unwrap().records.len(), 1);

    // A recorded the court's refused query, and nothing of the second subject reached it.
    let entries = ledger(&pki, &a, REGION_A).await;
    let refusal = entries
        .iter()
        .find(|e| e.caller == COURT_A && e.subject == *second)
        .expect("the refusal is on record at A");
    assert_eq!(refusal.outcome, proto::EntryOutcome::Denied as i32);
    assert!(refusal.reason.contains("quota"), "{refusal:?}");
    assert!(refusal.decisions.is_empty(), "{refusal:?}");
}

#[tokio::test]
async fn a_relay_obtains_no_more_subjects_than_its_own_quota_whomever_it_names() {
    let pki = TestPki::new();
    let subjects = three_subjects(15);
    let [first, second, third] = &subjects[..] else {
        unreachable!()
    };
    // Every caller at B may obtain a hundred subjects a day; the relay from A two in all.
    let b = holding_node_with(&pki, &subjects, relay_holds_two).await;
    let a = forwarding_node(&pki, NODE_B, port(&b), None).await;
    let tax = |subject: &str| tax_administration(subject, NODE_B);

    query(&pki, &a, "court", enforcement(first, NODE_B))
        .await
        .expect("within the relay's quota");
    query(&pki, &a, "tax", tax(second))
        .await
        .expect("within the relay's quota");
    // A third subject, asked for by either department, would take the relay past its two.
    for (id, request) in [("court", enforcement(third, NODE_B)), ("tax", tax(third))] {
        let refused = query(&pki, &a, id, request).await.unwrap_err();
        assert_refused(
            &refused,
            Code::ResourceExhausted,
            &format!(
                "node {NODE_B}: quota: the relay {NODE_A} has obtained records about its 2 \
                 distinct subjects"
            ),
        );
    }
    // Nor does naming another caller get round it: the relay itself asks for a department of
    // its region that is granted the item and has asked for nothing yet.
    let channel = pki.channel(&b, REGION_A, Kind::Dept, "samr").await;
    let refused = InterconnectClient::new(channel)
        .relay(proto::RelayRequest {
            on_behalf_of: "spiffe://region-a.credit.test/dept/eco".into(),
            query: Some(ask_for(third, "registration", "environmental-supervision")),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // Subjects it has obtained are still answered, for any caller it acts for.
    let again = query(&pki, &a, "tax", tax(first))
        .await
        .expect("a subject the relay has obtained");
    assert_eq!(again.result.unwrap().records.len(), 1);

    // B recorded each refusal, and nothing of the third subject left it.
    let entries = ledger(&pki, &b, REGION_B).await;
    let third_entries: Vec<_> = entries
        .iter()
        .filter(|e| e.subject == *third && e.caller == NODE_A)
        .collect();
    assert_eq!(third_entries.len(), 3, "{entries:?}");
    for e in third_entries {
        assert_eq!(e.outcome, proto::EntryOutcome::Denied as i32, "{e:?}");
        assert!(e.reason.contains("the relay"), "{e:?}");
        assert!(
            e.decisions.is_empty() && e.response_sha256.iter().all(|b| *b == 0),
            "{e:?}"
        );
    }

    // B's officer reviews what the court obtained through the relay, and nothing else.
    let channel = pki.channel(&b, REGION_B, Kind::Officer, "auditor").await;
    let mut review = LedgerReviewClient::new(channel);
    let courts = review
        .list_entries(proto::ListEntriesRequest {
            on_behalf_of: COURT_A.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let seen: Vec<(&str, i32)> = courts
        .iter()
        .map(|e| (e.subject.as_str(), e.outcome))
        .collect();
    let (granted, denied) = (
        proto::EntryOutcome::Granted as i32,
        proto::EntryOutcome::Denied as i32,
    );
    assert_eq!(
        seen,
        vec![(first.as_str(), granted), (third.as_str(), denied)]
    );
    assert!(courts.iter().all(|e| e.caller == NODE_A));
    let refused = review
        .list_entries(proto::ListEntriesRequest {
            on_behalf_of: "court".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_refused(&refused, Code::InvalidArgument, "on_behalf_of");
}

#[tokio::test]
async fn a_suspended_relay_is_refused_whomever_it_acts_for() {
    let pki = TestPki::new();
    let subject = Uscc::from_seed(14).to_string();
    let b = holding_node(&pki, &subject).await;
    let a = forwarding_node(&pki, NODE_B, port(&b), None).await;
    let suspension = credit_node::harvest::Suspension {
        caller: NODE_A.into(),
        since_ms: 1,
        alert_seq: 0,
        reason: "enumeration suspected".into(),
    };
    b.state().guard().suspend(&suspension).await.unwrap();

    let refused = query(&pki, &a, "court", enforcement(&subject, NODE_B))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // The relay is named as the one suspended, not the court it acts for.
    assert!(
        refused.message().starts_with(&format!(
            "node {NODE_B}: the relay {NODE_A} is suspended since"
        )),
        "{refused:?}"
    );
    let entries = ledger(&pki, &b, REGION_B).await;
    let relayed: Vec<_> = entries.iter().filter(|e| e.caller == NODE_A).collect();
    assert_eq!(relayed.len(), 1, "{entries:?}");
    assert_eq!(relayed[0].outcome, proto::EntryOutcome::Denied as i32);
    assert!(relayed[0].decisions.is_empty());
}

#[tokio::test]
async fn a_department_suspended_here_gets_no_listing_from_another_region() {
    let pki = TestPki::new();
    let b = holding_node(&pki, &Uscc::from_seed(16).to_string()).await;
    let a = forwarding_node(&pki, NODE_B, port(&b), None).await;
    let suspension = credit_node::harvest::Suspension {
        caller: COURT_A.into(),
        since_ms: 1,
        alert_seq: 0,
        reason: "enumeration suspected".into(),
    };
    a.state().guard().suspend(&suspension).await.unwrap();

    let refused = withdrawals(&pki, &a, NODE_B).await.unwrap_err();
    assert_refused(&refused, Code::PermissionDenied, "this caller is suspended");
    // Refused at A, on record there; nothing asked of B.
    let at_b = ledger(&pki, &b, REGION_B).await;
    assert!(at_b.iter().all(|e| e.caller != NODE_A), "{at_b:?}");
    let at_a = ledger(&pki, &a, REGION_A).await;
    let court: Vec<_> = at_a.iter().filter(|e| e.caller == COURT_A).collect();
    assert_eq!(court.len(), 1, "{at_a:?}");
    assert_eq!(court[0].purpose, "withdrawal-notices");
    assert_eq!(court[0].outcome, proto::EntryOutcome::Denied as i32);
    assert_eq!(court[0].forwarded, None);
}

#[tokio::test]
async fn a_node_forwards_for_its_own_regions_departments_only() {
    let pki = TestPki::new();
    let subject = Uscc::from_seed(15).to_string();
    let b = holding_node(&pki, &subject).await;
    let a = forwarding_node(&pki, NODE_B, port(&b), None).await;
    // Region B's tax bureau asks region A's node to forward to region B: refused at A, which
    // B would refuse anyway (a relay speaks for its own region only).
    let channel = pki.channel(&a, REGION_B, Kind::Dept, "tax").await;
    let refused = CreditQueryClient::new(channel)
        .query(tax_administration(&subject, NODE_B))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::PermissionDenied, "node: ");
    // Its listing of withdrawals there likewise.
    let channel = pki.channel(&a, REGION_B, Kind::Dept, "tax").await;
    let refused = CreditQueryClient::new(channel)
        .list_withdrawals(proto::ListWithdrawalsRequest {
            node: NODE_B.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_refused(&refused, Code::PermissionDenied, "node: ");
    let at_b = ledger(&pki, &b, REGION_B).await;
    assert!(at_b.iter().all(|e| e.caller != NODE_A), "{at_b:?}");
    // A recorded both refusals, as sent nowhere.
    let tax_b = "spiffe://region-b.credit.test/dept/tax";
    let at_a = ledger(&pki, &a, REGION_A).await;
    let refusals: Vec<_> = at_a.iter().filter(|e| e.caller == tax_b).collect();
    assert_eq!(refusals.len(), 2, "{at_a:?}");
    for e in refusals {
        assert_eq!(e.outcome, proto::EntryOutcome::Denied as i32, "{e:?}");
        assert!(e.reason.starts_with("node: "), "{e:?}");
        assert_eq!(e.forwarded, None, "{e:?}");
    }

    // And a node does not list a relay of its own region.
    let config = pki.write_config(REGION_A);
    append(
        &config,
        "\n[interconnect]\nrelays = [\"spiffe://region-a.credit.test/dept/tax\"]\n",
    );
    let loaded = credit_node::config::LoadedConfig::load(&config).unwrap();
    let refused = credit_node::cli::serve::start(&loaded).await.err().unwrap();
    assert!(
        refused
            .to_string()
            .contains("interconnect.relays[0]: spiffe://region-a.credit.test/dept/tax is of this node's own trust domain"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_reload_that_revokes_the_routes_node_stops_forwarding_to_it() {
    let pki = TestPki::new();
    let subject = Uscc::from_seed(16).to_string();
    let b = holding_node(&pki, &subject).await;
    let a = forwarding_node(&pki, NODE_B, port(&b), None).await;
    query(&pki, &a, "court", enforcement(&subject, NODE_B))
        .await
        .expect("forwarded while B's certificate is good");

    // Region B's CA revokes B's node certificate; A reloads its TLS material (SIGHUP).
    let (b_cert, _) = pki.identity(REGION_B, Kind::Dept, "samr");
    pki::revoke(&pki.layout, REGION_B, &b_cert).unwrap();
    credit_node::cli::serve::reload(&pki.dir.path().join(format!("{REGION_A}.toml")), &a);

    let refused = query(&pki, &a, "court", enforcement(&subject, NODE_B))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let at_b = ledger(&pki, &b, REGION_B).await;
    assert_eq!(
        at_b.iter().filter(|e| e.caller == NODE_A).count(),
        1,
        "only the query before the revocation reached B: {at_b:?}"
    );
}

#[tokio::test]
async fn a_query_granted_nothing_here_is_not_forwarded() {
    let pki = TestPki::new();
    let subject = Uscc::from_seed(17).to_string();
    let b = holding_node(&pki, &subject).await;
    let a = forwarding_node(&pki, NODE_B, port(&b), None).await;
    // No grant of penalties to anyone for social insurance.
    let request = proto::QueryRequest {
        node: NODE_B.into(),
        ..ask_for(&subject, "admin-penalty", "social-insurance")
    };
    let answer = query(&pki, &a, "court", request).await.expect("answered");
    let result = answer.result.unwrap();
    assert!(result.records.is_empty());
    assert_eq!(result.withheld[0].reason, "purpose not granted");
    // Nothing went to B, so no receipt of B's, and the digest is of the result alone.
    assert_eq!(answer.upstream, None);
    let digest = ring::digest::digest(&ring::digest::SHA256, &result.encode_to_vec());
    assert_eq!(answer.receipt.unwrap().result_sha256, digest.as_ref());
    let at_b = ledger(&pki, &b, REGION_B).await;
    assert!(at_b.iter().all(|e| e.caller != NODE_A), "{at_b:?}");
    let at_a = ledger(&pki, &a, REGION_A).await;
    let entry = at_a.iter().find(|e| e.caller == COURT_A).unwrap();
    assert_eq!(entry.outcome, proto::EntryOutcome::Denied as i32);
}

/// Promise 5 at the asking node: once a query is on its way to another region, it is recorded
/// whatever the department does meanwhile. Here the department hangs up while its node waits
/// on a peer that took the connection and never answers; the node still records the query
/// (refused: the peer did not answer in time), and nothing is left unrecorded.
#[tokio::test]
async fn a_forwarded_query_is_recorded_even_when_its_caller_hangs_up() {
    let pki = TestPki::new();
    let subject = Uscc::from_seed(30).to_string();
    // Takes the route's connection and says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let a = forwarding_node_timed(&pki, NODE_B, port, None, 500).await;

    let mut asking = Box::pin(query(&pki, &a, "court", enforcement(&subject, NODE_B)));
    let held = tokio::select! {
        accepted = silent.accept() => accepted.unwrap().0,
        answer = &mut asking => panic!("answered before its node reached the peer: {answer:?}"),
    };
    // The forward is under way: the court hangs up (its call and connection dropped).
    drop(asking);

    let patience = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let entry = loop {
        let entries = ledger(&pki, &a, REGION_A).await;
        if let Some(e) = entries
            .into_iter()
            .find(|e| e.caller == COURT_A && e.subject == subject)
        {
            break e;
        }
        assert!(
            std::time::Instant::now() < patience,
            "the forwarded query was never recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        entry.outcome,
        proto::EntryOutcome::Denied as i32,
        "{entry:?}"
    );
    assert!(entry.reason.contains(NODE_B), "{entry:?}");
    assert!(entry.decisions.is_empty(), "{entry:?}");
    assert_eq!(
        count(&a, "credit_node_forwarded_total{result=\"unanswered\"}").await,
        1.0
    );
    drop(held);
}

fn batch(subjects: &[String], node: &str) -> proto::BatchQueryRequest {
    let one = enforcement(&subjects[0], node);
    proto::BatchQueryRequest {
        subjects: subjects.to_vec(),
        subject_type: one.subject_type,
        items: one.items,
        purpose: one.purpose,
        basis_reference: one.basis_reference,
        node: one.node,
    }
}

async fn batch_query(
    pki: &TestPki,
    node: &RunningNode,
    request: proto::BatchQueryRequest,
) -> Result<proto::BatchQueryResponse, tonic::Status> {
    let answer = department(pki, node, "court")
        .await
        .batch_query(request)
        .await;
    answer.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_forwarded_batch_is_answered_in_order_and_recorded_per_subject_by_both() {
    let pki = TestPki::new();
    let subjects = three_subjects(40);
    let b = holding_node_with(&pki, &subjects, |config| config).await;
    let a = forwarding_node(&pki, NODE_B, port(&b), None).await;

    // Asked in another order than ingested: the answers follow the request.
    let asked = vec![
        subjects[2].clone(),
        subjects[0].clone(),
        subjects[1].clone(),
    ];
    let answers = batch_query(&pki, &a, batch(&asked, NODE_B))
        .await
        .expect("the forwarded batch is answered")
        .answers;
    assert_eq!(answers.len(), 3);
    let entries_a = ledger(&pki, &a, REGION_A).await;
    let entries_b = ledger(&pki, &b, REGION_B).await;
    for (subject, answer) in asked.iter().zip(&answers) {
        let result = answer.result.as_ref().unwrap();
        assert_eq!(&result.subject, subject);
        assert_eq!(result.records.len(), 1, "{result:?}");
        assert_eq!(
            field(&result.records[0], "legal_rep_mobile").unwrap().value,
            MOBILE
        );
        let ours = answer.receipt.as_ref().unwrap();
        let theirs = answer.upstream.as_ref().unwrap().receipt.as_ref().unwrap();
        let mine = entries_a.iter().find(|e| e.seq == ours.sequence).unwrap();
        assert_eq!((mine.caller.as_str(), &mine.subject), (COURT_A, subject));
        assert_eq!(mine.outcome, proto::EntryOutcome::Granted as i32);
        assert_eq!(mine.forwarded, sent_to(NODE_B, Some(theirs)));
        let other = entries_b.iter().find(|e| e.seq == theirs.sequence).unwrap();
        assert_eq!(other.on_behalf_of.as_deref(), Some(COURT_A));
        assert_eq!(&other.subject, subject);
        assert_eq!(theirs.result_sha256, other.response_sha256);
    }
    let answered = r#"credit_node_forwarded_total{result="answered"}"#;
    assert_eq!(count(&a, answered).await, 3.0);

    // A batch naming a node this node has no route to is refused whole, on record.
    let nowhere = "spiffe://region-b.credit.test/dept/court";
    let refused = batch_query(&pki, &a, batch(&asked, nowhere))
        .await
        .unwrap_err();
    assert_refused(&refused, Code::InvalidArgument, "node:");
}

#[tokio::test]
async fn a_forwarded_batch_is_refused_whole_by_both_nodes_when_one_subject_does_not_fit() {
    let pki = TestPki::new();
    let subjects = three_subjects(50);
    // B lets the relay obtain two subjects in all: the batch of three does not fit.
    let b = holding_node_with(&pki, &subjects, relay_holds_two).await;
    let a = forwarding_node(&pki, NODE_B, port(&b), None).await;

    let refused = batch_query(&pki, &a, batch(&subjects, NODE_B))
        .await
        .unwrap_err();
    assert_refused(
        &refused,
        Code::ResourceExhausted,
        &format!("node {NODE_B}: quota: the relay"),
    );
    assert_retry_after(&refused);
    // Both nodes recorded every subject's query as refused: nothing of the batch left B.
    let mut expected: Vec<&str> = subjects.iter().map(String::as_str).collect();
    expected.sort_unstable();
    for (node, region, caller) in [(&a, REGION_A, COURT_A), (&b, REGION_B, NODE_A)] {
        let entries = ledger(&pki, node, region).await;
        let batch: Vec<_> = entries.iter().filter(|e| e.caller == caller).collect();
        let mut recorded: Vec<&str> = batch.iter().map(|e| e.subject.as_str()).collect();
        recorded.sort_unstable();
        assert_eq!(recorded, expected, "{region}: {batch:?}");
        // A sent the batch to B, which refused it: no receipt.
        let sent = (caller == COURT_A).then(|| sent_to(NODE_B, None)).flatten();
        for e in &batch {
            assert_eq!(e.outcome, proto::EntryOutcome::Denied as i32, "{e:?}");
            assert!(e.reason.contains("quota: the relay"), "{e:?}");
            assert!(e.decisions.is_empty(), "{e:?}");
            assert_eq!(e.forwarded, sent, "{e:?}");
        }
    }
    // Two subjects still fit, and are answered through the same relay.
    let answers = batch_query(&pki, &a, batch(&subjects[..2], NODE_B))
        .await
        .expect("within the relay's quota")
        .answers;
    assert_eq!(answers.len(), 2);
    let refused = r#"credit_node_forwarded_total{result="refused"}"#;
    assert_eq!(count(&a, refused).await, 3.0);
    assert_eq!(count(&b, "credit_node_relayed_total").await, 5.0);
}

#[tokio::test]
async fn a_forwarded_batch_past_the_relays_burst_is_refused_naming_the_relays_limit() {
    let pki = TestPki::new();
    let subjects = three_subjects(70);
    // The relay may send two subjects at once; the court, at its own node, a hundred.
    let b = holding_node_with(&pki, &subjects, |config| {
        relay_holds_two(config).replace(
            "burst = 200\ndistinct_subjects = 2",
            "burst = 2\ndistinct_subjects = 2",
        )
    })
    .await;
    let a = forwarding_node(&pki, NODE_B, port(&b), None).await;

    let refused = batch_query(&pki, &a, batch(&subjects, NODE_B))
        .await
        .unwrap_err();
    assert_refused(
        &refused,
        Code::ResourceExhausted,
        &format!("node {NODE_B}: the relay {NODE_A}'s limit: subjects: 3 subjects exceed"),
    );
    // A recorded the court's three queries as refused; B read nothing.
    let entries = ledger(&pki, &a, REGION_A).await;
    let court = entries.iter().filter(|e| e.caller == COURT_A).count();
    assert_eq!(court, 3, "{entries:?}");
    let entries = ledger(&pki, &b, REGION_B).await;
    assert!(
        entries
            .iter()
            .all(|e| e.caller != NODE_A || e.decisions.is_empty()),
        "{entries:?}"
    );
}

/// `credit-node routes --config CONFIG --relay --json`, run beside the nodes of this test
/// (which keep serving meanwhile): its exit code, and the check of its one route.
async fn check_routes(config: &Path) -> (Option<i32>, serde_json::Value) {
    let config = config.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_credit-node"))
            .args(["routes", "--relay", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), json["routes"][0].clone())
}

#[tokio::test]
async fn routes_checks_each_route_with_the_nodes_own_certificate() {
    let pki = TestPki::new();
    let subject = Uscc::from_seed(60).to_string();
    let b = holding_node(&pki, &subject).await;
    let route = |port: u16| {
        format!(
            "\n[[interconnect.route]]\nnode = \"{NODE_B}\"\naddress = \"127.0.0.1:{port}\"\n\
             timeout_ms = 5000\n"
        )
    };
    // Region A's node as deployed: B answers, sees it as itself, and takes its relays.
    let config = pki.write_config(REGION_A);
    append(&config, &route(port(&b)));
    let (code, checked) = check_routes(&config).await;
    assert_eq!(code, Some(0), "{checked}");
    assert_eq!(checked["ok"], true, "{checked}");
    assert_eq!(checked["seen_as"], NODE_A, "{checked}");
    assert_eq!(checked["relay"], "accepted", "{checked}");

    // Another department's node of region A: B knows its certificate, but it is no relay there.
    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "samr");
    let (tax_cert, tax_key) = pki.identity(REGION_A, Kind::Dept, "tax");
    let text = std::fs::read_to_string(&config).unwrap();
    let tax_node = pki.dir.path().join("tax-node.toml");
    let swapped = text
        .replace(&cert.display().to_string(), &tax_cert.display().to_string())
        .replace(&key.display().to_string(), &tax_key.display().to_string());
    assert_ne!(swapped, text);
    std::fs::write(&tax_node, swapped).unwrap();
    let (code, checked) = check_routes(&tax_node).await;
    assert_eq!(code, Some(1), "{checked}");
    assert_eq!(checked["ok"], false, "{checked}");
    assert_eq!(
        checked["seen_as"], "spiffe://region-a.credit.test/dept/tax",
        "{checked}"
    );
    let refusal = checked["relay"].as_str().unwrap();
    assert!(
        refusal.starts_with("PERMISSION_DENIED") && refusal.contains("not a relay"),
        "{checked}"
    );

    // A route to an address where nothing listens: failed, and why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = pki.write_config(REGION_A);
    append(&nowhere, &route(closed));
    let (code, checked) = check_routes(&nowhere).await;
    assert_eq!(code, Some(1), "{checked}");
    assert_eq!(checked["ok"], false, "{checked}");
    let error = checked["error"].as_str().unwrap();
    assert!(error.starts_with("UNAVAILABLE"), "{checked}");
}

/// A listing of withdrawals at `node` as region A's court, naming `through` (empty: `node`'s
/// own).
async fn withdrawals(
    pki: &TestPki,
    node: &RunningNode,
    through: &str,
) -> Result<proto::ListWithdrawalsResponse, tonic::Status> {
    let request = proto::ListWithdrawalsRequest {
        node: through.into(),
        ..Default::default()
    };
    withdrawals_page(pki, node, request).await
}

async fn withdrawals_page(
    pki: &TestPki,
    node: &RunningNode,
    request: proto::ListWithdrawalsRequest,
) -> Result<proto::ListWithdrawalsResponse, tonic::Status> {
    let listed = department(pki, node, "court")
        .await
        .list_withdrawals(request)
        .await;
    listed.map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_department_learns_of_withdrawals_at_another_region_through_its_own_node() {
    let pki = TestPki::new();
    let subject = Uscc::from_seed(60).to_string();
    let b = holding_node(&pki, &subject).await;
    let operator = pki.channel(&b, REGION_B, Kind::Operator, "admin").await;
    let mut admin = AdministrationClient::new(operator);
    admin
        .ingest_records(proto::IngestRecordsRequest {
            json_lines: vec![
                common::penalty_row(&subject, "京市监罚〔2026〕7号", "2026-05-01"),
                common::listing_row(&subject),
            ],
        })
        .await
        .expect("operator ingests");
    // Region A's catalog grants its court no administrative penalty at all: its node passes on
    // no withdrawal of one, whatever region B's node lists.
    let penalty = "id = \"admin-penalty\"";
    let no_penalties = signed_catalog(&pki, "no-penalties", |demo| {
        let start = demo.find(penalty).unwrap();
        let end = start + demo[start..].find("\n[[items]]").unwrap();
        let section = demo[start..end]
            .replace("\"tax\", \"court\", \"hrss\"", "\"tax\", \"hrss\"")
            .replace("departments = [\"court\"]", "departments = [\"samr\"]");
        format!("{}{section}{}", &demo[..start], &demo[end..])
    });
    let a = forwarding_node(&pki, NODE_B, port(&b), Some(&no_penalties)).await;

    // B withdraws both records of the subject the court may hold from it.
    let ask = ask_for(&subject, "admin-penalty", "enforcement");
    let penalty_id = query(&pki, &b, "court", ask)
        .await
        .unwrap()
        .result
        .unwrap()
        .records[0]
        .record_id
        .clone();
    common::restore(&mut admin, &penalty_id, "2026-11-01").await;
    admin
        .remove_from_list(proto::RemoveFromListRequest {
            subject: subject.clone(),
            item: "serious-untrustworthy".into(),
            removed_on: "2026-11-01".into(),
            basis: "移出决定〔2026〕3号".into(),
        })
        .await
        .expect("operator removes");
    // Asked of B itself, the court's listing holds both.
    let direct = withdrawals(&pki, &b, "").await.unwrap();
    let mut items: Vec<&str> = direct.withdrawals.iter().map(|w| w.item.as_str()).collect();
    items.sort_unstable();
    assert_eq!(
        items,
        ["admin-penalty", "serious-untrustworthy"],
        "{direct:?}"
    );

    // Through A: only the removal from the list, which A's catalog grants the court too.
    let through_a = withdrawals(&pki, &a, NODE_B)
        .await
        .expect("forwarded listing");
    assert_eq!(through_a.withdrawals.len(), 1, "{through_a:?}");
    let removal = &through_a.withdrawals[0];
    assert_eq!(removal.item, "serious-untrustworthy");
    assert_eq!(
        removal.reason,
        proto::WithdrawalReason::RemovedFromList as i32
    );
    assert!(
        through_a
            .withdrawals
            .iter()
            .all(|w| w.record_id != penalty_id)
    );
    let upstream = through_a.upstream.clone().expect("B's receipt");
    assert_eq!(upstream.node, NODE_B);
    let theirs = upstream.receipt.clone().unwrap();
    let ours = through_a.receipt.clone().unwrap();
    let covered = proto::ListWithdrawalsResponse {
        receipt: None,
        ..through_a.clone()
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &covered.encode_to_vec());
    assert_eq!(ours.result_sha256, digest.as_ref());

    // Both recorded it: A with where it went and B's receipt, B as the relay's for the court.
    let entry_a = ledger(&pki, &a, REGION_A)
        .await
        .into_iter()
        .find(|e| e.seq == ours.sequence)
        .unwrap();
    assert_eq!(entry_a.caller, COURT_A);
    assert_eq!(entry_a.purpose, "withdrawal-notices");
    assert_eq!(entry_a.forwarded, sent_to(NODE_B, Some(&theirs)));
    let entry_b = ledger(&pki, &b, REGION_B)
        .await
        .into_iter()
        .find(|e| e.seq == theirs.sequence)
        .unwrap();
    assert_eq!(entry_b.caller, NODE_A);
    assert_eq!(entry_b.on_behalf_of.as_deref(), Some(COURT_A));
    assert_eq!(entry_b.purpose, "withdrawal-notices");
    assert_eq!(entry_b.response_sha256, theirs.result_sha256);

    // Page by page, nothing tells of the penalty either: B lists only the items A may pass on,
    // so no page token names it (B withdrew it first).
    let mut request = proto::ListWithdrawalsRequest {
        node: NODE_B.into(),
        limit: 1,
        ..Default::default()
    };
    let mut listed = Vec::new();
    loop {
        let page = withdrawals_page(&pki, &a, request.clone()).await.unwrap();
        assert!(!format!("{page:?}").contains(&penalty_id), "{page:?}");
        listed.extend(page.withdrawals.into_iter().map(|w| w.record_id));
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(listed, std::slice::from_ref(&removal.record_id));

    // A node A has no route to is refused, naming `node`.
    let refused = withdrawals(&pki, &a, "spiffe://region-b.credit.test/dept/court")
        .await
        .unwrap_err();
    assert_refused(&refused, Code::InvalidArgument, "node:");

    // `credit-node withdrawals --from-node` lists the same, through A.
    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "court");
    let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_credit-node"));
    cli.args(["withdrawals", "--json", "--from-node", NODE_B, "--endpoint"])
        .arg(common::endpoint(&a))
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg("--ca")
        .arg(pki.layout.ca_cert(REGION_A));
    let out = tokio::task::spawn_blocking(move || cli.output())
        .await
        .unwrap()
        .unwrap();
    let lines = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{lines}");
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(lines.contains(&removal.record_id), "{lines}");
}

/// A node of region B that answers every relayed query with a well-formed receipt and an
/// answer about another subject, as a buggy or hostile peer might: region A's node must pass
/// none of it on, and keep the receipt.
mod misbehaving {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    use credit_node::{
        identity::{Kind, TrustDomain},
        pki::{self, REGION_A, REGION_B},
        proto::{self, interconnect_server::InterconnectServer},
        tls,
    };
    use tokio::{
        io::{AsyncRead, AsyncWrite, ReadBuf},
        net::{TcpListener, TcpStream},
    };
    use tonic::{Request, Response, Status, transport::server::Connected};

    use super::TestPki;

    /// The receipt it sends with its `n`th answer (from 0).
    pub fn receipt(n: u64) -> proto::Receipt {
        proto::Receipt {
            sequence: 40 + n,
            leaf_hash: vec![7; 32],
            result_sha256: vec![8; 32],
            query_id: vec![9; 16],
        }
    }

    fn answer(n: u64, subject: &str) -> proto::QueryResponse {
        proto::QueryResponse {
            result: Some(proto::QueryResult {
                subject: format!("{subject}-not"),
                ..Default::default()
            }),
            receipt: Some(receipt(n)),
            upstream: None,
        }
    }

    struct Peer;

    #[tonic::async_trait]
    impl proto::interconnect_server::Interconnect for Peer {
        async fn relay(
            &self,
            request: Request<proto::RelayRequest>,
        ) -> Result<Response<proto::QueryResponse>, Status> {
            let subject = request.into_inner().query.unwrap_or_default().subject;
            Ok(Response::new(answer(0, &subject)))
        }

        async fn relay_batch(
            &self,
            request: Request<proto::RelayBatchRequest>,
        ) -> Result<Response<proto::BatchQueryResponse>, Status> {
            let batch = request.into_inner().batch.unwrap_or_default();
            let answers = batch
                .subjects
                .iter()
                .zip(0..)
                .map(|(s, n)| answer(n, s))
                .collect();
            Ok(Response::new(proto::BatchQueryResponse { answers }))
        }

        async fn relay_withdrawals(
            &self,
            _: Request<proto::RelayWithdrawalsRequest>,
        ) -> Result<Response<proto::ListWithdrawalsResponse>, Status> {
            // A date no decision has, where the department's tools would print it.
            let withdrawal = proto::Withdrawal {
                record_id: "0123456789abcdef0123456789abcdef".into(),
                item: "registration".into(),
                withdrawn_ms: 1,
                reason: proto::WithdrawalReason::Restored.into(),
                on: "\u{1b}[2J2026-11-01".into(),
            };
            Ok(Response::new(proto::ListWithdrawalsResponse {
                withdrawals: vec![withdrawal],
                receipt: Some(receipt(9)),
                ..Default::default()
            }))
        }
    }

    /// A TLS connection as tonic takes it.
    struct Tls(tokio_rustls::server::TlsStream<TcpStream>);

    impl Connected for Tls {
        type ConnectInfo = ();
        fn connect_info(&self) {}
    }

    impl AsyncRead for Tls {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Tls {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.0).poll_write(cx, buf)
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    /// Starts the peer with region B's node certificate, trusting region A's CA; its port.
    pub async fn start(pki: &TestPki) -> u16 {
        let (cert, key) = pki::issue_identity(&pki.layout, REGION_B, Kind::Dept, "samr").unwrap();
        let material = tls::ServerMaterial {
            chain: tls::load_certs(&cert).unwrap(),
            key: tls::load_key(&key).unwrap(),
            trust: vec![tls::TrustDomainMaterial {
                domain: TrustDomain::parse(REGION_A).unwrap(),
                roots: tls::load_roots(&pki.layout.ca_cert(REGION_A)).unwrap(),
                crls: Vec::new(),
            }],
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_tls(material).unwrap().config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let incoming = futures_util::stream::unfold(listener, move |listener| {
            let acceptor = acceptor.clone();
            async move {
                loop {
                    let (tcp, _) = listener.accept().await.ok()?;
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        return Some((Ok::<_, std::io::Error>(Tls(tls)), listener));
                    }
                }
            }
        });
        let server = tonic::transport::Server::builder()
            .add_service(InterconnectServer::new(Peer))
            .serve_with_incoming(incoming);
        tokio::spawn(server);
        port
    }
}

#[tokio::test]
async fn a_malformed_answer_is_passed_on_to_no_one_and_its_receipt_is_kept() {
    let pki = TestPki::new();
    let port = misbehaving::start(&pki).await;
    let a = forwarding_node(&pki, NODE_B, port, None).await;
    let subjects = three_subjects(70);

    let refused = query(&pki, &a, "court", enforcement(&subjects[0], NODE_B))
        .await
        .unwrap_err();
    assert_refused(
        &refused,
        Code::Unavailable,
        &format!("node {NODE_B} sent a malformed answer (result.subject is another subject)"),
    );
    let refused = batch_query(&pki, &a, batch(&subjects[1..], NODE_B))
        .await
        .unwrap_err();
    assert_refused(
        &refused,
        Code::Unavailable,
        &format!("node {NODE_B} sent a malformed"),
    );
    let unanswered = r#"credit_node_forwarded_total{result="unanswered"}"#;
    assert_eq!(count(&a, unanswered).await, 3.0);

    // Each refusal here names the other node's entry of the query, which it sent, answered.
    let entries = ledger(&pki, &a, REGION_A).await;
    let court: Vec<_> = entries.iter().filter(|e| e.caller == COURT_A).collect();
    assert_eq!(court.len(), 3, "{entries:?}");
    for (subject, n) in subjects.iter().zip([0, 0, 1]) {
        let e = court.iter().find(|e| &e.subject == subject).unwrap();
        assert_eq!(e.outcome, proto::EntryOutcome::Denied as i32, "{e:?}");
        assert!(e.decisions.is_empty(), "{e:?}");
        let theirs = misbehaving::receipt(n);
        assert_eq!(e.forwarded, sent_to(NODE_B, Some(&theirs)), "{e:?}");
    }

    // A listing of withdrawals likewise: nothing of the page reaches the court.
    let refused = withdrawals(&pki, &a, NODE_B).await.unwrap_err();
    assert_refused(
        &refused,
        Code::Unavailable,
        &format!("node {NODE_B} sent a malformed answer (withdrawals[0].on)"),
    );
    let entries = ledger(&pki, &a, REGION_A).await;
    let listing = entries
        .iter()
        .find(|e| e.purpose == "withdrawal-notices")
        .unwrap();
    assert_eq!(listing.outcome, proto::EntryOutcome::Denied as i32);
    let theirs = misbehaving::receipt(9);
    assert_eq!(listing.forwarded, sent_to(NODE_B, Some(&theirs)));
}
