//! Withdrawal notices over mutual TLS, end to end: a department receives a record, an operator
//! restores it or removes its subject from a list, and the department learns of it through
//! `ListWithdrawals`, on record in the ledger, while Query no longer shows the record.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

use common::{TestPki, endpoint};
use credit_node::{
    clock::Clock,
    identifier::Uscc,
    identity::Kind,
    pki::REGION_A,
    proto::{
        self, administration_client::AdministrationClient, credit_query_client::CreditQueryClient,
        ledger_review_client::LedgerReviewClient,
    },
    server::RunningNode,
};
use tonic::Code;

/// 2026-11-23 10:00 UTC.
const START_MS: i64 = 1_795_428_000_000;
const TAX: &str = "spiffe://region-a.credit.test/dept/tax";

struct Fixture {
    pki: TestPki,
    node: RunningNode,
    subject: String,
    /// The node's clock, in Unix milliseconds: the test moves it.
    now: Arc<AtomicI64>,
}

impl Fixture {
    /// A node on its SQLite file.
    async fn new() -> Fixture {
        Self::on(None).await
    }

    /// A node on `database_url` (a fresh PostgreSQL database), or on its SQLite file.
    async fn on(database_url: Option<String>) -> Fixture {
        let pki = TestPki::new();
        let now = Arc::new(AtomicI64::new(START_MS));
        let read = now.clone();
        let clock = Clock::from_fn(move || {
            let ms = read.load(Ordering::SeqCst);
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
        });
        let config = match &database_url {
            Some(url) => pki.write_config_on(REGION_A, url),
            None => pki.write_config(REGION_A),
        };
        let node = common::start_with_clock(&config, clock).await;
        let subject = Uscc::from_seed(42).to_string();
        let rows = vec![
            common::penalty_row(&subject, "浙市监罚〔2026〕1号", "2026-05-01"),
            common::penalty_row(&subject, "浙市监罚〔2026〕2号", "2026-06-01"),
            common::penalty_row(&subject, "浙市监罚〔2026〕3号", "2026-07-01"),
            common::listing_row(&subject),
        ];
        let f = Fixture {
            pki,
            node,
            subject,
            now,
        };
        let done = f
            .admin()
            .await
            .ingest_records(proto::IngestRecordsRequest { json_lines: rows })
            .await
            .expect("operator ingests")
            .into_inner();
        assert_eq!(done.inserted, 4);
        f
    }

    fn advance(&self, ms: i64) -> i64 {
        self.now.fetch_add(ms, Ordering::SeqCst) + ms
    }

    async fn channel(&self, kind: Kind, id: &str) -> tonic::transport::Channel {
        let (cert, key) = self.pki.identity(REGION_A, kind, id);
        credit_node::client::connect(&endpoint(&self.node), self.pki.client_tls(&cert, &key))
            .await
            .expect("connect")
    }

    async fn admin(&self) -> AdministrationClient<tonic::transport::Channel> {
        AdministrationClient::new(self.channel(Kind::Operator, "admin").await)
    }

    async fn query_client(&self, kind: Kind, id: &str) -> QueryClient {
        CreditQueryClient::new(self.channel(kind, id).await)
    }

    /// The records of `item` region A's tax bureau receives about the subject, by record id.
    async fn received(&self, item: &str) -> Vec<String> {
        let asked = proto::QueryRequest {
            subject: self.subject.clone(),
            subject_type: proto::SubjectType::LegalPerson.into(),
            items: vec![proto::ItemSelection {
                item: item.into(),
                fields: vec![],
            }],
            purpose: "public-procurement".into(),
            basis_reference: "（2026）浙0106执123号".into(),
            node: String::new(),
        };
        let mut tax = self.query_client(Kind::Dept, "tax").await;
        let answer = tax.query(asked).await.unwrap().into_inner();
        answer
            .result
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.record_id)
            .collect()
    }

    async fn restore(&self, record_id: &str, on: &str) {
        self.admin()
            .await
            .restore_record(proto::RestoreRecordRequest {
                record_id: record_id.into(),
                restored_on: on.into(),
                basis: "信用修复决定〔2026〕9号".into(),
            })
            .await
            .expect("operator restores");
    }

    async fn remove_listing(&self, on: &str) {
        let removed = self
            .admin()
            .await
            .remove_from_list(proto::RemoveFromListRequest {
                subject: self.subject.clone(),
                item: "serious-untrustworthy".into(),
                removed_on: on.into(),
                basis: "移出决定〔2026〕3号".into(),
            })
            .await
            .expect("operator removes")
            .into_inner();
        assert_eq!(removed.removed, 1);
    }

    /// The officer's view of the withdrawal listings recorded, oldest first.
    async fn listings_on_record(&self) -> Vec<proto::LedgerEntry> {
        let mut officer = LedgerReviewClient::new(self.channel(Kind::Officer, "auditor").await);
        officer
            .list_entries(proto::ListEntriesRequest {
                purpose: "withdrawal-notices".into(),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .entries
    }
}

type QueryClient = CreditQueryClient<tonic::transport::Channel>;

async fn list(
    client: &mut QueryClient,
    since_ms: i64,
    page_token: &str,
    limit: u32,
) -> Result<proto::ListWithdrawalsResponse, tonic::Status> {
    client
        .list_withdrawals(proto::ListWithdrawalsRequest {
            since_ms,
            page_token: page_token.into(),
            limit,
            node: String::new(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The SHA-256 the receipt and the ledger entry give: of the response without its receipt.
fn digest(response: &proto::ListWithdrawalsResponse) -> Vec<u8> {
    let mut page = response.clone();
    page.receipt = None;
    let bytes = prost::Message::encode_to_vec(&page);
    ring::digest::digest(&ring::digest::SHA256, &bytes)
        .as_ref()
        .to_vec()
}

fn withdrawal(
    record_id: &str,
    item: &str,
    withdrawn_ms: i64,
    reason: proto::WithdrawalReason,
    on: &str,
) -> proto::Withdrawal {
    proto::Withdrawal {
        record_id: record_id.into(),
        item: item.into(),
        withdrawn_ms,
        reason: reason.into(),
        on: on.into(),
    }
}

#[tokio::test]
async fn a_restored_record_is_listed_to_its_recipients_and_shared_no_more() {
    a_restored_record_is_listed_to_its_recipients_and_shared_no_more_(Fixture::new().await).await;
}

#[tokio::test]
async fn a_restored_record_is_listed_to_its_recipients_and_shared_no_more_on_postgres() {
    let Some(url) = common::postgres_url().await else {
        return; // postgres_url says it was skipped
    };
    a_restored_record_is_listed_to_its_recipients_and_shared_no_more_(Fixture::on(Some(url)).await)
        .await;
}

async fn a_restored_record_is_listed_to_its_recipients_and_shared_no_more_(f: Fixture) {
    let received = f.received("admin-penalty").await;
    assert_eq!(received.len(), 3);
    let mut tax = f.query_client(Kind::Dept, "tax").await;
    let none = list(&mut tax, 0, "", 0).await.unwrap();
    assert!(none.withdrawals.is_empty() && none.next_page_token.is_empty());

    let restored_at = f.advance(1000);
    f.restore(&received[1], "2026-11-01").await;
    f.advance(1000);
    let listed = list(&mut tax, 0, "", 0).await.unwrap();
    assert_eq!(
        listed.withdrawals,
        vec![withdrawal(
            &received[1],
            "admin-penalty",
            restored_at,
            proto::WithdrawalReason::Restored,
            "2026-11-01"
        )]
    );
    assert!(listed.next_page_token.is_empty());
    // Query no longer shows it; the others are shared as before.
    assert_eq!(
        f.received("admin-penalty").await,
        vec![received[0].clone(), received[2].clone()]
    );
    // Nothing of the record but its id and item: no subject, no field value.
    let text = format!("{listed:?}");
    assert!(
        !text.contains(&f.subject) && !text.contains("浙市监罚"),
        "{text}"
    );

    // Callers the catalog grants nothing get nothing (default deny), on record as well.
    for (kind, id) in [(Kind::Officer, "auditor"), (Kind::Operator, "admin")] {
        let mut client = f.query_client(kind, id).await;
        let page = list(&mut client, 0, "", 0).await.unwrap();
        assert!(page.withdrawals.is_empty(), "{id}: {page:?}");
        assert!(page.receipt.is_some());
    }

    // Each listing is one ledger entry, by its caller, with the digest of exactly what it sent.
    let on_record = f.listings_on_record().await;
    let by_tax: Vec<&proto::LedgerEntry> = on_record.iter().filter(|e| e.caller == TAX).collect();
    assert_eq!(by_tax.len(), 2, "{on_record:?}");
    for (entry, response) in by_tax.iter().zip([&none, &listed]) {
        let receipt = response.receipt.as_ref().unwrap();
        assert_eq!(entry.seq, receipt.sequence);
        assert_eq!(entry.leaf_hash, receipt.leaf_hash);
        assert_eq!(entry.query_id, receipt.query_id);
        assert_eq!(entry.response_sha256, digest(response));
        assert_eq!(receipt.result_sha256, digest(response));
        assert_eq!(entry.outcome, i32::from(proto::EntryOutcome::Granted));
        assert_eq!(entry.requested_fields, vec!["withdrawals"]);
        assert_eq!(entry.subject, "");
    }
    assert_eq!(
        on_record.len(),
        4,
        "two by tax, one by the officer, one by the operator"
    );
    f.node.shutdown().await;
}

#[tokio::test]
async fn a_removal_from_a_list_is_listed_as_such() {
    a_removal_from_a_list_is_listed_as_such_(Fixture::new().await).await;
}

#[tokio::test]
async fn a_removal_from_a_list_is_listed_as_such_on_postgres() {
    let Some(url) = common::postgres_url().await else {
        return; // postgres_url says it was skipped
    };
    a_removal_from_a_list_is_listed_as_such_(Fixture::on(Some(url)).await).await;
}

async fn a_removal_from_a_list_is_listed_as_such_(f: Fixture) {
    let received = f.received("serious-untrustworthy").await;
    assert_eq!(received.len(), 1);
    let removed_at = f.advance(5);
    f.remove_listing("2026-11-02").await;
    let mut tax = f.query_client(Kind::Dept, "tax").await;
    let listed = list(&mut tax, 0, "", 0).await.unwrap();
    assert_eq!(
        listed.withdrawals,
        vec![withdrawal(
            &received[0],
            "serious-untrustworthy",
            removed_at,
            proto::WithdrawalReason::RemovedFromList,
            "2026-11-02"
        )]
    );
    assert!(f.received("serious-untrustworthy").await.is_empty());
    // Restored after its removal, it is not withdrawn a second time.
    f.advance(5);
    f.restore(&received[0], "2026-11-03").await;
    assert_eq!(
        list(&mut tax, 0, "", 0).await.unwrap().withdrawals,
        listed.withdrawals
    );
    f.node.shutdown().await;
}

#[tokio::test]
async fn pages_list_every_withdrawal_exactly_once_and_since_ms_filters() {
    pages_list_every_withdrawal_exactly_once_and_since_ms_filters_(Fixture::new().await).await;
}

#[tokio::test]
async fn pages_list_every_withdrawal_exactly_once_and_since_ms_filters_on_postgres() {
    let Some(url) = common::postgres_url().await else {
        return; // postgres_url says it was skipped
    };
    pages_list_every_withdrawal_exactly_once_and_since_ms_filters_(Fixture::on(Some(url)).await)
        .await;
}

async fn pages_list_every_withdrawal_exactly_once_and_since_ms_filters_(f: Fixture) {
    let penalties = f.received("admin-penalty").await;
    let listed_id = f.received("serious-untrustworthy").await.remove(0);
    // Two restorations within one millisecond, one later, then a removal.
    let t1 = f.advance(10);
    f.restore(&penalties[0], "2026-11-01").await;
    f.restore(&penalties[2], "2026-11-01").await;
    let t2 = f.advance(10);
    f.restore(&penalties[1], "2026-11-02").await;
    let t3 = f.advance(10);
    f.remove_listing("2026-11-03").await;

    let mut tax = f.query_client(Kind::Dept, "tax").await;
    let whole = list(&mut tax, 0, "", 0).await.unwrap().withdrawals;
    let times: Vec<i64> = whole.iter().map(|w| w.withdrawn_ms).collect();
    assert_eq!(times, vec![t1, t1, t2, t3]);
    let mut ids: Vec<&str> = whole.iter().map(|w| w.record_id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![
        penalties[0].as_str(),
        penalties[1].as_str(),
        penalties[2].as_str(),
        listed_id.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(ids, expected);

    for limit in [1, 2, 3] {
        let (mut paged, mut token, mut pages) = (Vec::new(), String::new(), 0);
        loop {
            let page = list(&mut tax, 0, &token, limit).await.unwrap();
            assert!(page.withdrawals.len() <= limit as usize);
            paged.extend(page.withdrawals);
            pages += 1;
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(paged, whole, "limit {limit}");
        assert_eq!(pages, 4usize.div_ceil(limit as usize), "limit {limit}");
    }

    let since = |ms| {
        let mut tax = tax.clone();
        async move { list(&mut tax, ms, "", 0).await.unwrap().withdrawals }
    };
    assert_eq!(since(t2).await, whole[2..]);
    assert_eq!(since(t2 + 1).await, whole[3..]);
    assert!(since(t3 + 1).await.is_empty());
    // A page token and `since_ms` together: the later of the two bounds.
    let first = list(&mut tax, 0, "", 1).await.unwrap();
    let rest = list(&mut tax, t3, &first.next_page_token, 0).await.unwrap();
    assert_eq!(rest.withdrawals, whole[3..]);
    f.node.shutdown().await;
}

#[tokio::test]
async fn malformed_listings_are_refused_naming_the_field_and_on_record() {
    let f = Fixture::new().await;
    let mut tax = f.query_client(Kind::Dept, "tax").await;
    let status = list(&mut tax, 0, "", 1001).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("limit: at most 1000"),
        "{status:?}"
    );
    for token in [
        "x",
        "not a token",
        &"0".repeat(50),
        &format!("02{}", "0".repeat(48)),
    ] {
        let status = list(&mut tax, 0, token, 0).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{token}: {status:?}");
        assert!(status.message().starts_with("page_token: "), "{status:?}");
    }
    // A limit of exactly the maximum is fine.
    assert!(list(&mut tax, 0, "", 1000).await.is_ok());
    let on_record = f.listings_on_record().await;
    let outcomes: Vec<i32> = on_record.iter().map(|e| e.outcome).collect();
    let invalid = i32::from(proto::EntryOutcome::Invalid);
    let granted = i32::from(proto::EntryOutcome::Granted);
    assert_eq!(
        outcomes,
        vec![invalid, invalid, invalid, invalid, invalid, granted]
    );
    assert!(on_record[0].reason.starts_with("limit: "), "{on_record:?}");
    assert!(on_record[1].reason.starts_with("page_token: "));
    f.node.shutdown().await;
}

#[tokio::test]
async fn a_suspended_caller_is_listed_no_withdrawal_and_the_refusal_is_on_record() {
    let f = Fixture::new().await;
    let received = f.received("admin-penalty").await;
    f.advance(1);
    f.restore(&received[0], "2026-11-01").await;
    let suspension = credit_node::harvest::Suspension {
        caller: TAX.into(),
        since_ms: START_MS,
        alert_seq: 0,
        reason: "enumeration suspected".into(),
    };
    f.node.state().guard().suspend(&suspension).await.unwrap();
    let mut tax = f.query_client(Kind::Dept, "tax").await;
    let status = list(&mut tax, 0, "", 0).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("suspended"), "{status:?}");
    assert!(!format!("{status:?}").contains(&received[0]), "{status:?}");
    let on_record = f.listings_on_record().await;
    let refusal = on_record.last().expect("the refusal is on record");
    assert_eq!(refusal.outcome, i32::from(proto::EntryOutcome::Denied));
    assert!(refusal.reason.contains("suspended"), "{refusal:?}");
    f.node.shutdown().await;
}

#[tokio::test]
async fn when_the_ledger_cannot_be_written_no_withdrawal_is_listed() {
    let f = Fixture::new().await;
    let received = f.received("admin-penalty").await;
    f.advance(1);
    f.restore(&received[0], "2026-11-01").await;
    let store = f.node.state().store().clone();
    common::fail_ledger_writes(&store, true).await;
    let mut tax = f.query_client(Kind::Dept, "tax").await;
    let status = list(&mut tax, 0, "", 0).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let text = format!("{status:?}");
    assert!(
        !text.contains(&received[0]),
        "no data in the refusal: {text}"
    );
    // A malformed listing cannot be answered either: its refusal is not on record.
    let status = list(&mut tax, 0, "", 5000).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");

    common::fail_ledger_writes(&store, false).await;
    let listed = list(&mut tax, 0, "", 0)
        .await
        .expect("the node answers again once its ledger can be written");
    assert_eq!(listed.withdrawals.len(), 1);
    assert_eq!(listed.withdrawals[0].record_id, received[0]);
    f.node.shutdown().await;
}

/// `credit-node withdrawals` as a department runs it: the table for people, JSON Lines naming
/// the ledger entry that recorded each page, `--since-ms` to go on from an earlier run.
// Not a tokio test: the binary runs while the node serves on this runtime's worker threads.
#[test]
fn the_withdrawals_command_lists_them_on_record() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let f = runtime.block_on(Fixture::new());
    let cli = |args: &[&str]| {
        let (cert, key) = f.pki.identity(REGION_A, Kind::Dept, "tax");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_credit-node"))
            .arg("withdrawals")
            .args(args)
            .arg("--endpoint")
            .arg(endpoint(&f.node))
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg("--ca")
            .arg(f.pki.layout.ca_cert(REGION_A))
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };

    let (code, stdout, stderr) = cli(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("no withdrawal; this listing is on record as ledger entry "),
        "{stdout}"
    );

    let received = runtime.block_on(f.received("admin-penalty"));
    let restored_at = f.advance(1000);
    runtime.block_on(f.restore(&received[0], "2026-11-01"));
    let removed_at = f.advance(1000);
    runtime.block_on(f.remove_listing("2026-11-02"));

    let (code, stdout, stderr) = cli(&["--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["record_id"], received[0].as_str());
    assert_eq!(lines[0]["reason"], "restored");
    assert_eq!(lines[0]["withdrawn_ms"], restored_at);
    assert_eq!(lines[0]["on"], "2026-11-01");
    assert_eq!(lines[1]["reason"], "removed_from_list");
    assert_eq!(lines[1]["item"], "serious-untrustworthy");
    assert_eq!(lines[1]["withdrawn_ms"], removed_at);
    // The page is on record under the department's identity, with what it was sent.
    let entry = lines[0]["listed_in_entry"].as_u64().unwrap();
    assert_eq!(lines[1]["listed_in_entry"], entry);
    let on_record = runtime.block_on(f.listings_on_record());
    let recorded = on_record.iter().find(|e| e.seq == entry).unwrap();
    assert_eq!(recorded.caller, TAX);

    let (code, stdout, _) = cli(&[]);
    assert_eq!(code, Some(0));
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(rows[0].starts_with("WITHDRAWN (UTC)"), "{stdout}");
    assert!(
        rows[1].contains("restored") && rows[1].ends_with(received[0].as_str()),
        "{stdout}"
    );
    assert!(rows[2].contains("removed_from_list"), "{stdout}");
    assert!(rows[3].starts_with("2 withdrawals; this listing is on record as ledger entry "));

    let since = removed_at.to_string();
    let (_, stdout, _) = cli(&["--json", "--since-ms", &since]);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let (code, stdout, stderr) = cli(&["--since-ms=-5"]);
    assert_eq!((code, stdout.as_str()), (Some(2), ""), "{stderr}");
    assert!(
        stderr.contains("--since-ms: must not be negative"),
        "{stderr}"
    );
    runtime.block_on(f.node.shutdown());
}
