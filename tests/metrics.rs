//! The metrics endpoint as a monitoring system scrapes it: counts that follow what the node did,
//! and nothing of who asked about whom.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{TestPki, endpoint, get, http, scrape};
use credit_node::{
    identifier::Uscc,
    identity::Kind,
    pki::REGION_A,
    proto::{
        self, administration_client::AdministrationClient, credit_query_client::CreditQueryClient,
    },
    server::RunningNode,
};

async fn start() -> (TestPki, RunningNode) {
    start_on(None).await
}

/// A node with its metrics served, on `database_url` or on its SQLite file.
async fn start_on(database_url: Option<&str>) -> (TestPki, RunningNode) {
    let pki = TestPki::new();
    let config = match database_url {
        Some(url) => pki.write_config_on(REGION_A, url),
        None => pki.write_config(REGION_A),
    };
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&config, text).unwrap();
    let node = common::start_from_config(&config).await;
    (pki, node)
}

/// Ingests one penalty of `subject` as region A's operator, whose client (and its open
/// connection) it returns.
async fn ingest_penalty(
    pki: &TestPki,
    node: &RunningNode,
    subject: &str,
) -> AdministrationClient<tonic::transport::Channel> {
    let channel = pki.channel(node, REGION_A, Kind::Operator, "admin").await;
    let mut admin = AdministrationClient::new(channel);
    admin
        .ingest_records(proto::IngestRecordsRequest {
            json_lines: vec![common::penalty_row(
                subject,
                "浙市监罚〔2026〕1号",
                "2026-05-01",
            )],
        })
        .await
        .unwrap();
    admin
}

async fn tax_client(
    pki: &TestPki,
    node: &RunningNode,
) -> CreditQueryClient<tonic::transport::Channel> {
    CreditQueryClient::new(pki.channel(node, REGION_A, Kind::Dept, "tax").await)
}

fn ask(subject: &str) -> proto::QueryRequest {
    common::ask_for(subject, "admin-penalty", "public-procurement")
}

#[tokio::test]
async fn the_metrics_count_what_the_node_did_and_name_no_one() {
    let (pki, node) = start().await;
    let subject = Uscc::from_seed(42).to_string();
    let (body, before) = scrape(&node).await;
    assert_eq!(get(&before, "credit_node_store_up"), 1.0);
    assert_eq!(
        get(
            &before,
            "credit_node_ledger_entries_total{outcome=\"granted\"}"
        ),
        0.0
    );
    let version = node.state().catalog().catalog().version.clone();
    assert!(
        body.contains(&format!("credit_node_catalog_info{{version=\"{version}\"")),
        "{body}"
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert!(get(&before, "credit_node_certificate_not_after_seconds") > now);

    let _admin = ingest_penalty(&pki, &node, &subject).await;
    let mut tax = tax_client(&pki, &node).await;
    let answer = tax.query(ask(&subject)).await.unwrap().into_inner();
    assert_eq!(answer.result.unwrap().records.len(), 1);
    let status = tax.query(ask("91330")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    // A certificate of a CA the node does not know: the handshake is refused and counted.
    let (rogue_cert, rogue_key) = pki.layout.negative("rogue");
    assert!(
        credit_node::client::connect(&endpoint(&node), pki.client_tls(&rogue_cert, &rogue_key))
            .await
            .is_err()
            || common::whoami_as(&pki, &node, &rogue_cert, &rogue_key)
                .await
                .is_err()
    );

    let (body, after) = scrape(&node).await;
    let entries = |outcome: &str| {
        get(
            &after,
            &format!("credit_node_ledger_entries_total{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(entries("administration"), 1.0);
    // The penalty's legal representative is withheld from procurement: partly withheld.
    assert_eq!(entries("partly_withheld"), 1.0);
    assert_eq!(entries("granted"), 0.0);
    assert_eq!(entries("invalid"), 1.0);
    let recorded: f64 = after
        .iter()
        .filter(|(name, _)| name.starts_with("credit_node_ledger_entries_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(get(&after, "credit_node_ledger_size"), recorded);
    assert_eq!(get(&after, "credit_node_ledger_appends_total"), recorded);
    assert!(get(&after, "credit_node_ledger_batches_total") >= 1.0);
    assert_eq!(get(&after, "credit_node_ledger_failed_batches_total"), 0.0);
    // On SQLite too a plain batch goes in one trip; this node alone writes its ledger.
    assert!(get(&after, "credit_node_ledger_one_statement_batches_total") >= 1.0);
    assert_eq!(get(&after, "credit_node_ledger_head_moved_total"), 0.0);
    // Two clients hold their connections open.
    assert!(get(&after, "credit_node_connections_open") >= 2.0);
    assert!(
        get(
            &after,
            "credit_node_handshake_failures_total{reason=\"refused\"}"
        ) >= 1.0
    );
    // Counts only: no subject, no caller, no field value.
    for secret in [subject.as_str(), "spiffe://", "浙市监罚", "91330"] {
        assert!(!body.contains(secret), "{secret:?} in {body}");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn only_get_metrics_is_answered() {
    let (_pki, node) = start().await;
    let addr = node.metrics_addr().unwrap();
    let post = http(
        addr,
        "POST /metrics HTTP/1.1\r\nHost: m\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let other = http(
        addr,
        "GET / HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    // Garbage is not a request: the connection is closed, and the node goes on serving.
    let garbage = http(addr, "\u{1}\u{2}not http\r\n\r\n").await;
    assert!(!garbage.contains("credit_node_"), "{garbage}");
    let (_, samples) = scrape(&node).await;
    assert_eq!(get(&samples, "credit_node_store_up"), 1.0);
    node.shutdown().await;
}

#[tokio::test]
async fn without_a_metrics_section_nothing_is_served() {
    let pki = TestPki::new();
    let node = pki.start_node(REGION_A).await;
    assert_eq!(node.metrics_addr(), None);
    node.shutdown().await;
}

/// The database down: the scrape still answers and says so, and the store gauges come back with it.
#[tokio::test]
async fn with_the_database_down_the_metrics_say_so() {
    let Some(url) = common::postgres_url().await else {
        return; // postgres_url says it was skipped
    };
    let (pki, node) = start_on(Some(&url)).await;
    let subject = Uscc::from_seed(42).to_string();
    let _admin = ingest_penalty(&pki, &node, &subject).await;
    // The ingest's entries went as one statement; no other replica moved the head.
    let (_, before) = scrape(&node).await;
    assert!(get(&before, "credit_node_ledger_one_statement_batches_total") >= 1.0);
    assert_eq!(get(&before, "credit_node_ledger_head_moved_total"), 0.0);
    let name = common::database_name(node.state().store()).await;
    common::set_database_up(&name, false).await;
    let mut tax = tax_client(&pki, &node).await;
    let status = tax.query(ask(&subject)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let (_, down) = scrape(&node).await;
    assert_eq!(get(&down, "credit_node_store_up"), 0.0);
    assert!(!down.contains_key("credit_node_ledger_size"), "{down:?}");
    common::set_database_up(&name, true).await;
    tax.query(ask(&subject)).await.expect("answered again");
    let (_, up) = scrape(&node).await;
    assert_eq!(get(&up, "credit_node_store_up"), 1.0);
    assert!(get(&up, "credit_node_ledger_size") >= 2.0);
    node.shutdown().await;
}
