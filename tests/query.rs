//! The query path over mutual TLS, end to end: records ingested by an operator, asked for by
//! departments of two regions under the signed catalog, with a clock the test sets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{MOBILE, REP_ID, TestPki, ask_for as ask, registration_row};
use credit_node::{
    clock::Clock,
    identifier::Uscc,
    identity::Kind,
    pki::{REGION_A, REGION_B},
    proto::{
        self, administration_client::AdministrationClient, credit_query_client::CreditQueryClient,
        ledger_review_client::LedgerReviewClient,
    },
    server::RunningNode,
};
use tonic::Code;

fn today() -> Clock {
    Clock::fixed(time::macros::datetime!(2026-11-23 10:00 UTC))
}

struct Fixture {
    pki: TestPki,
    node: RunningNode,
    subject: String,
}

async fn fixture() -> Fixture {
    let pki = TestPki::new();
    let node = common::start_with_clock(&pki.write_config(REGION_A), today()).await;
    let subject = Uscc::from_seed(42).to_string();
    let rows = vec![
        registration_row(&subject),
        common::penalty_row(&subject, "浙市监罚〔2026〕1号", "2026-05-01"), // current until 2027-05-01
        common::penalty_row(&subject, "浙市监罚〔2024〕7号", "2024-05-01"), // expired 2025-05-01
        common::penalty_row(&subject, "浙市监罚〔2026〕2号", "2026-06-01"), // restored below
    ];
    let mut admin = admin_as(&pki, &node, REGION_A, Kind::Operator, "admin").await;
    let done = admin
        .ingest_records(proto::IngestRecordsRequest { json_lines: rows })
        .await
        .expect("operator ingests")
        .into_inner();
    assert_eq!(done.inserted, 4);
    Fixture { pki, node, subject }
}

async fn channel(
    pki: &TestPki,
    node: &RunningNode,
    region: &str,
    kind: Kind,
    id: &str,
) -> tonic::transport::Channel {
    pki.channel(node, region, kind, id).await
}

async fn query_as(
    pki: &TestPki,
    node: &RunningNode,
    region: &str,
    id: &str,
    request: proto::QueryRequest,
) -> Result<proto::QueryResponse, tonic::Status> {
    let mut client = CreditQueryClient::new(channel(pki, node, region, Kind::Dept, id).await);
    client.query(request).await.map(tonic::Response::into_inner)
}

async fn admin_as(
    pki: &TestPki,
    node: &RunningNode,
    region: &str,
    kind: Kind,
    id: &str,
) -> AdministrationClient<tonic::transport::Channel> {
    AdministrationClient::new(channel(pki, node, region, kind, id).await)
}

/// A node started from `config` whose operator has ingested the registration of the subject of
/// seed 42, and that subject.
async fn node_with_a_registration(
    pki: &TestPki,
    config: &std::path::Path,
) -> (RunningNode, String) {
    let node = common::start_with_clock(config, today()).await;
    let subject = Uscc::from_seed(42).to_string();
    let mut admin = admin_as(pki, &node, REGION_A, Kind::Operator, "admin").await;
    admin
        .ingest_records(proto::IngestRecordsRequest {
            json_lines: vec![registration_row(&subject)],
        })
        .await
        .expect("operator ingests");
    (node, subject)
}

/// Whether region A's tax bureau finds a registration of the subject of `seed`.
async fn registration_found(f: &Fixture, seed: u64) -> bool {
    let subject = Uscc::from_seed(seed).to_string();
    let asked = ask(&subject, "registration", "tax-administration");
    let r = query_as(&f.pki, &f.node, REGION_A, "tax", asked)
        .await
        .unwrap();
    !r.result.unwrap().records.is_empty()
}

/// The penalties of the fixture's subject that region A's tax bureau receives.
async fn penalties(f: &Fixture) -> Vec<proto::RecordView> {
    let asked = ask(&f.subject, "admin-penalty", "public-procurement");
    let r = query_as(&f.pki, &f.node, REGION_A, "tax", asked)
        .await
        .unwrap();
    r.result.unwrap().records
}

/// The administration entries of the fixture's node, in ledger order, as its officer lists them.
async fn administration_entries(f: &Fixture) -> Vec<proto::LedgerEntry> {
    let mut officer =
        LedgerReviewClient::new(channel(&f.pki, &f.node, REGION_A, Kind::Officer, "auditor").await);
    officer
        .list_entries(proto::ListEntriesRequest {
            outcome: proto::EntryOutcome::Administration.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

/// What each administration entry of the fixture's node records was done.
async fn administration_actions(f: &Fixture) -> Vec<String> {
    administration_entries(f)
        .await
        .into_iter()
        .map(|e| e.administration_action)
        .collect()
}

/// Takes `subject` off the list of seriously untrustworthy entities from `on`.
fn off_the_list(subject: &str, on: &str, basis: &str) -> proto::RemoveFromListRequest {
    proto::RemoveFromListRequest {
        subject: subject.into(),
        item: "serious-untrustworthy".into(),
        removed_on: on.into(),
        basis: basis.into(),
    }
}

fn field<'a>(
    response: &'a proto::QueryResponse,
    item: &str,
    name: &str,
) -> Option<&'a proto::FieldValue> {
    let result = response.result.as_ref()?;
    result
        .records
        .iter()
        .find(|r| r.item == item)?
        .fields
        .iter()
        .find(|f| f.field == name)
}

#[tokio::test]
async fn two_regions_tax_bureaus_and_a_court_see_one_record_in_their_own_forms() {
    let f = fixture().await;
    let a = query_as(
        &f.pki,
        &f.node,
        REGION_A,
        "tax",
        ask(&f.subject, "registration", "tax-administration"),
    )
    .await
    .unwrap();
    let b = query_as(
        &f.pki,
        &f.node,
        REGION_B,
        "tax",
        ask(&f.subject, "registration", "tax-administration"),
    )
    .await
    .unwrap();
    let court = query_as(
        &f.pki,
        &f.node,
        REGION_A,
        "court",
        ask(&f.subject, "registration", "enforcement"),
    )
    .await
    .unwrap();

    let id_a = field(&a, "registration", "legal_rep_id").unwrap();
    assert_eq!(
        (id_a.value.as_str(), id_a.form.as_str()),
        ("1****************X", "resident_id")
    );
    let id_b = field(&b, "registration", "legal_rep_id").unwrap();
    assert!(
        id_b.value.starts_with("p_") && id_b.form == "pseudonym",
        "{id_b:?}"
    );
    let id_court = field(&court, "registration", "legal_rep_id").unwrap();
    assert_eq!(
        (id_court.value.as_str(), id_court.form.as_str()),
        (REP_ID, "raw")
    );
    assert_eq!(
        field(&court, "registration", "legal_rep_mobile")
            .unwrap()
            .value,
        MOBILE
    );

    // What region A's tax bureau may not have is withheld, says why, and appears nowhere.
    let result = a.result.as_ref().unwrap();
    assert!(
        result
            .withheld
            .iter()
            .any(|w| w.field == "legal_rep_mobile" && w.reason == "field not granted")
    );
    let bytes = prost::Message::encode_to_vec(&a);
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains(REP_ID) && !text.contains(MOBILE),
        "no personal value in clear"
    );

    // Receipts: one entry each, and the digest covers exactly the result that was sent.
    let receipt = a.receipt.as_ref().unwrap();
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        &prost::Message::encode_to_vec(result),
    );
    assert_eq!(receipt.result_sha256, digest.as_ref());
    assert_eq!(receipt.leaf_hash.len(), 32);
    let seqs = [
        a.receipt.unwrap().sequence,
        b.receipt.unwrap().sequence,
        court.receipt.unwrap().sequence,
    ];
    assert!(seqs[0] < seqs[1] && seqs[1] < seqs[2], "{seqs:?}");
    f.node.shutdown().await;
}

#[tokio::test]
async fn expired_and_restored_records_never_appear() {
    let f = fixture().await;
    let before = query_as(
        &f.pki,
        &f.node,
        REGION_A,
        "tax",
        ask(&f.subject, "admin-penalty", "public-procurement"),
    )
    .await
    .unwrap();
    let numbers = |r: &proto::QueryResponse| -> Vec<String> {
        r.result
            .as_ref()
            .unwrap()
            .records
            .iter()
            .map(|rec| field_value(rec, "decision_no"))
            .collect()
    };
    assert_eq!(
        numbers(&before),
        vec!["浙市监罚〔2026〕1号", "浙市监罚〔2026〕2号"],
        "the 2024 penalty expired"
    );

    let restored = before
        .result
        .as_ref()
        .unwrap()
        .records
        .iter()
        .find(|r| field_value(r, "decision_no") == "浙市监罚〔2026〕2号")
        .unwrap()
        .record_id
        .clone();
    let mut admin = admin_as(&f.pki, &f.node, REGION_A, Kind::Operator, "admin").await;
    admin
        .restore_record(proto::RestoreRecordRequest {
            record_id: restored,
            restored_on: "2026-11-01".into(),
            basis: "信用修复决定〔2026〕9号".into(),
        })
        .await
        .expect("operator restores");
    let after = query_as(
        &f.pki,
        &f.node,
        REGION_A,
        "tax",
        ask(&f.subject, "admin-penalty", "public-procurement"),
    )
    .await
    .unwrap();
    assert_eq!(numbers(&after), vec!["浙市监罚〔2026〕1号"]);
    let text = format!("{after:?}");
    assert!(
        !text.contains("〔2024〕7号") && !text.contains("〔2026〕2号"),
        "no trace: {text}"
    );
    f.node.shutdown().await;
}

fn field_value(record: &proto::RecordView, name: &str) -> String {
    record
        .fields
        .iter()
        .find(|f| f.field == name)
        .map(|f| f.value.clone())
        .unwrap_or_default()
}

/// `item` with `n` field names.
fn selecting(item: &str, n: usize) -> proto::ItemSelection {
    proto::ItemSelection {
        item: item.into(),
        fields: (0..n).map(|i| format!("field_{i}")).collect(),
    }
}

#[tokio::test]
async fn malformed_requests_are_refused_naming_the_field_and_the_node_keeps_serving() {
    let f = fixture().await;
    let mut bad = f.subject.clone();
    let last = bad.pop().unwrap();
    bad.push(if last == '0' { '1' } else { '0' });
    for (request, expected) in [
        (
            ask(&bad, "registration", "tax-administration"),
            "subject: unified social credit code: check character expected",
        ),
        (
            ask("91330", "registration", "tax-administration"),
            "subject: unified social credit code: wrong length (expected 18, got 5)",
        ),
        (
            ask(&f.subject, "registration", "gossip"),
            "purpose: \"gossip\" is not a purpose the catalog declares",
        ),
        (
            proto::QueryRequest {
                basis_reference: " ".into(),
                ..ask(&f.subject, "registration", "tax-administration")
            },
            "basis_reference: required",
        ),
        (
            proto::QueryRequest {
                items: vec![selecting("registration", 65)],
                ..ask(&f.subject, "registration", "tax-administration")
            },
            "items[0].fields: more than 64 fields",
        ),
        (
            // Each field asked for is recorded: a request cannot make a huge ledger entry.
            proto::QueryRequest {
                items: vec![selecting("registration", 64); 5],
                ..ask(&f.subject, "registration", "tax-administration")
            },
            "items: more than 256 fields in all",
        ),
        (
            // A subject type this node does not know is not read as "unspecified".
            proto::QueryRequest {
                subject_type: 7,
                ..ask(&f.subject, "registration", "tax-administration")
            },
            "subject_type: unknown value 7",
        ),
        (
            // A birth date that cannot be: the message names the characters, never the
            // digits (asserted below), as it goes back to the caller's logs.
            proto::QueryRequest {
                subject_type: proto::SubjectType::NaturalPerson.into(),
                ..ask("11010519491331002X", "registration", "tax-administration")
            },
            "subject: resident identity number: characters 7-14 are not a real birth date",
        ),
    ] {
        let status = query_as(&f.pki, &f.node, REGION_A, "tax", request)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with(expected),
            "{expected:?} in {:?}",
            status.message()
        );
        assert!(!status.message().contains("1949"), "{:?}", status.message());
    }

    let mut client =
        CreditQueryClient::new(channel(&f.pki, &f.node, REGION_A, Kind::Dept, "tax").await);
    let mut subjects = vec![f.subject.clone(); 3];
    subjects[2] = bad;
    let status = client
        .batch_query(proto::BatchQueryRequest {
            subjects,
            subject_type: proto::SubjectType::LegalPerson.into(),
            items: vec![],
            purpose: "tax-administration".into(),
            basis_reference: "case 1".into(),
            node: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("subjects[2]: "),
        "{}",
        status.message()
    );

    let status = client
        .batch_query(proto::BatchQueryRequest {
            subjects: vec![f.subject.clone()],
            subject_type: 3,
            items: vec![],
            purpose: "tax-administration".into(),
            basis_reference: "case 1".into(),
            node: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .starts_with("subject_type: unknown value 3"),
        "{}",
        status.message()
    );

    let status = client
        .batch_query(proto::BatchQueryRequest {
            subjects: vec![f.subject.clone(); 101],
            subject_type: proto::SubjectType::LegalPerson.into(),
            items: vec![],
            purpose: "tax-administration".into(),
            basis_reference: "case 1".into(),
            node: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        status.message().contains("between 1 and 100 subjects"),
        "{}",
        status.message()
    );

    let ok = client
        .batch_query(proto::BatchQueryRequest {
            subjects: vec![f.subject.clone(), Uscc::from_seed(7).to_string()],
            subject_type: proto::SubjectType::LegalPerson.into(),
            items: vec![proto::ItemSelection {
                item: "registration".into(),
                fields: vec![],
            }],
            purpose: "tax-administration".into(),
            basis_reference: "case 1".into(),
            node: String::new(),
        })
        .await
        .expect("a good batch is served after the bad ones")
        .into_inner();
    assert_eq!(ok.answers.len(), 2);
    assert_eq!(ok.answers[0].result.as_ref().unwrap().records.len(), 1);
    assert!(
        ok.answers[1].result.as_ref().unwrap().records.is_empty(),
        "unknown subject: no records"
    );
    f.node.shutdown().await;
}

/// An item selected twice is refused naming the repeat, and recorded as an invalid request:
/// no record is sent, and the ledger holds no field as granted.
#[tokio::test]
async fn an_item_selected_twice_is_refused_and_nothing_is_disclosed() {
    let f = fixture().await;
    let select = |fields: &[&str]| proto::ItemSelection {
        item: "admin-penalty".into(),
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
    };
    let twice = proto::QueryRequest {
        items: vec![
            select(&["amount"]),
            selecting("registration", 1),
            select(&["decision_no"]),
        ],
        ..ask(&f.subject, "admin-penalty", "public-procurement")
    };
    let status = query_as(&f.pki, &f.node, REGION_A, "tax", twice)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("items[2].item: \"admin-penalty\" is already selected by items[0]"),
        "{}",
        status.message()
    );
    assert!(!format!("{status:?}").contains("浙市监罚"), "{status:?}");

    let mut officer =
        LedgerReviewClient::new(channel(&f.pki, &f.node, REGION_A, Kind::Officer, "auditor").await);
    let entries = officer
        .list_entries(proto::ListEntriesRequest {
            caller: "spiffe://region-a.credit.test/dept/tax".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry.outcome, i32::from(proto::EntryOutcome::Invalid));
    assert!(
        entry.reason.starts_with("items[2].item: "),
        "{}",
        entry.reason
    );
    assert!(entry.decisions.is_empty(), "nothing granted: {entry:?}");
    assert_eq!(entry.response_sha256, vec![0; 32], "nothing sent");

    // Selected once with both fields, the penalties are answered once each.
    let once = proto::QueryRequest {
        items: vec![select(&["amount", "decision_no"])],
        ..ask(&f.subject, "admin-penalty", "public-procurement")
    };
    let answer = query_as(&f.pki, &f.node, REGION_A, "tax", once)
        .await
        .unwrap();
    let records = &answer.result.as_ref().unwrap().records;
    assert_eq!(records.len(), 2, "{answer:?}");
    assert!(records.iter().all(|r| r.fields.len() == 2), "{answer:?}");
    f.node.shutdown().await;
}

#[tokio::test]
async fn only_this_departments_operators_reach_administration() {
    let f = fixture().await;
    let shared: Vec<String> = penalties(&f)
        .await
        .into_iter()
        .map(|r| r.record_id)
        .collect();
    assert!(!shared.is_empty());
    // An operator certificate from this node's own regional CA, but of another department: the
    // node's config does not name it.
    credit_node::pki::issue_identity(&f.pki.layout, REGION_A, Kind::Operator, "tax-ops")
        .expect("another department's operator");
    for (region, kind, id) in [
        (REGION_A, Kind::Dept, "tax"),
        (REGION_A, Kind::Dept, "samr"),
        (REGION_A, Kind::Officer, "auditor"),
        (REGION_A, Kind::Operator, "tax-ops"),
        (REGION_B, Kind::Operator, "admin"),
    ] {
        let mut admin = admin_as(&f.pki, &f.node, region, kind, id).await;
        let status = admin
            .ingest_records(proto::IngestRecordsRequest {
                json_lines: vec![registration_row(&Uscc::from_seed(9).to_string())],
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{region} {kind} {id}"
        );
        let status = admin
            .remove_from_list(off_the_list(&f.subject, "2026-11-01", "x"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        let status = admin
            .restore_record(proto::RestoreRecordRequest {
                record_id: shared[0].clone(),
                restored_on: "2026-11-01".into(),
                basis: "信用修复决定〔2026〕9号".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{region} {kind} {id}"
        );
    }
    // Nothing was written by the refused callers: no new record, none restored.
    assert!(!registration_found(&f, 9).await);
    let still: Vec<String> = penalties(&f)
        .await
        .into_iter()
        .map(|r| r.record_id)
        .collect();
    assert_eq!(still, shared, "still shared after refused restorations");
    // Every refused attempt is on record for the officers, naming the call; none changed
    // anything.
    let mut officer =
        LedgerReviewClient::new(channel(&f.pki, &f.node, REGION_A, Kind::Officer, "auditor").await);
    let entries = officer
        .list_entries(proto::ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let refusals: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e.reason.starts_with("credit.v1.Administration/"))
        .map(|e| {
            assert_eq!(e.outcome(), proto::EntryOutcome::Denied, "{e:?}");
            (e.caller.as_str(), e.reason.as_str())
        })
        .collect();
    assert_eq!(refusals.len(), 5 * 3, "{refusals:?}");
    assert!(refusals.contains(&(
        "spiffe://region-a.credit.test/operator/tax-ops",
        "credit.v1.Administration/RestoreRecord: administration is for this department's \
         operators only"
    )));
    assert!(
        !entries.iter().any(|e| {
            e.outcome() == proto::EntryOutcome::Administration
                && refusals.iter().any(|(caller, _)| *caller == e.caller)
        }),
        "no change recorded for a refused caller"
    );

    // A bad row in an operator's batch: nothing written, the row named.
    let mut admin = admin_as(&f.pki, &f.node, REGION_A, Kind::Operator, "admin").await;
    let good = registration_row(&Uscc::from_seed(10).to_string());
    let bad = registration_row(&Uscc::from_seed(11).to_string()).replace("营业执照", "");
    let status = admin
        .ingest_records(proto::IngestRecordsRequest {
            json_lines: vec![good, bad],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("line 2"), "{}", status.message());
    assert!(
        !registration_found(&f, 10).await,
        "the good row of a bad batch is not written"
    );
    f.node.shutdown().await;
}

/// Promise 5 under concurrent load: every answer a client received has its ledger entry, with
/// the digest of exactly the result it received, and the stored ledger verifies.
#[tokio::test]
async fn no_unlogged_disclosure_under_concurrent_load() {
    use credit_node::ledger::{audit, entry::Entry};
    use sqlx::Row;
    let f = fixture().await;
    let channel = channel(&f.pki, &f.node, REGION_B, Kind::Dept, "tax").await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut client = CreditQueryClient::new(channel.clone());
        let subject = f.subject.clone();
        tasks.push(tokio::spawn(async move {
            let purpose = if i % 2 == 0 {
                "tax-administration"
            } else {
                "public-procurement"
            };
            client
                .query(ask(&subject, "registration", purpose))
                .await
                .map(tonic::Response::into_inner)
        }));
    }
    let mut responses = Vec::new();
    for t in tasks {
        responses.push(t.await.unwrap().unwrap());
    }
    let ledger = f.node.state().ledger().clone();
    ledger.sign_now().await.unwrap();
    let store = f.node.state().store();
    for response in &responses {
        let receipt = response.receipt.as_ref().unwrap();
        let result = response.result.as_ref().unwrap();
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            &prost::Message::encode_to_vec(result),
        );
        let row =
            sqlx::query::<sqlx::Any>("SELECT entry, leaf_hash FROM ledger_entries WHERE seq = $1")
                .bind(receipt.sequence as i64)
                .fetch_one(store.pool())
                .await
                .unwrap();
        let bytes: Vec<u8> = row.try_get(0).unwrap();
        let entry = Entry::decode(&bytes).unwrap();
        assert_eq!(entry.seq, receipt.sequence);
        assert_eq!(
            entry.response_sha256.as_slice(),
            digest.as_ref(),
            "the entry covers what was sent"
        );
        assert_eq!(entry.leaf_hash().as_slice(), receipt.leaf_hash.as_slice());
        assert_eq!(entry.query_id.as_slice(), receipt.query_id.as_slice());
        assert_eq!(entry.caller, "spiffe://region-b.credit.test/dept/tax");
        assert_eq!(entry.subject, f.subject);
        assert_eq!(entry.basis, "（2026）浙0106执123号");
    }
    let ids: std::collections::HashSet<&[u8]> = responses
        .iter()
        .map(|r| r.receipt.as_ref().unwrap().query_id.as_slice())
        .collect();
    assert_eq!(ids.len(), responses.len(), "every query has its own id");
    let report = audit::verify_store(store, ledger.public_key(), |_| {})
        .await
        .unwrap();
    assert_eq!(
        report.entries, 65,
        "the fixture's ingest and every query of this test are in the verified log"
    );
    f.node.shutdown().await;
}

/// Promise 5, fail closed: when the ledger cannot be written, the caller gets UNAVAILABLE and
/// not one field; once it can be written again the node answers again.
#[tokio::test]
async fn when_the_ledger_cannot_be_written_nothing_is_disclosed() {
    let f = fixture().await;
    let store = f.node.state().store().clone();
    common::fail_ledger_writes(&store, true).await;
    let status = query_as(
        &f.pki,
        &f.node,
        REGION_A,
        "court",
        ask(&f.subject, "registration", "enforcement"),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        !format!("{status:?}").contains(REP_ID),
        "no data in the refusal: {status:?}"
    );
    // Refusals are recorded too, so a malformed request cannot be answered either.
    let status = query_as(
        &f.pki,
        &f.node,
        REGION_A,
        "court",
        ask("bad", "registration", "enforcement"),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    common::fail_ledger_writes(&store, false).await;
    let ok = query_as(
        &f.pki,
        &f.node,
        REGION_A,
        "court",
        ask(&f.subject, "registration", "enforcement"),
    )
    .await
    .expect("the node answers again once its ledger can be written");
    assert_eq!(
        field(&ok, "registration", "legal_rep_id").unwrap().value,
        REP_ID
    );
    f.node.shutdown().await;
}

/// A call that runs past `limits.request_timeout_ms` is ended by the node. Here a query's
/// ledger entry waits behind another writer's lock on the ledger's file, which SQLite would
/// wait out for 10 s: the caller gets CANCELLED after the 2 s deadline, with not one field.
/// Once the lock is gone the node answers again, and the ended query is on record too.
#[tokio::test]
async fn a_query_past_the_request_deadline_is_ended_and_nothing_is_disclosed() {
    let pki = TestPki::new();
    let config = pki.write_config(REGION_A);
    let text = std::fs::read_to_string(&config).unwrap();
    let limited = text.replace("[limits]\n", "[limits]\nrequest_timeout_ms = 2000\n");
    assert_ne!(limited, text, "the config has [limits]");
    std::fs::write(&config, limited).unwrap();
    let (node, subject) = node_with_a_registration(&pki, &config).await;
    let asked = || ask(&subject, "registration", "enforcement");

    let store = node.state().store();
    let mut lock = store.pool().begin().await.unwrap();
    sqlx::query("UPDATE activity.ledger_head SET size = size WHERE id = 0")
        .execute(&mut *lock)
        .await
        .unwrap();
    let status = query_as(&pki, &node, REGION_A, "court", asked())
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::Cancelled, "Timeout expired"),
        "{status:?}"
    );
    assert!(
        !format!("{status:?}").contains(REP_ID),
        "no data in the refusal: {status:?}"
    );
    lock.rollback().await.unwrap();

    let back = query_as(&pki, &node, REGION_A, "court", asked())
        .await
        .expect("answered again once the lock is gone");
    assert_eq!(
        field(&back, "registration", "legal_rep_id").unwrap().value,
        REP_ID
    );
    let ledger = node.state().ledger();
    ledger.sign_now().await.unwrap();
    let report = credit_node::ledger::audit::verify_store(store, ledger.public_key(), |_| {})
        .await
        .unwrap();
    // The ingest, the query ended by the deadline (its entry was committed once the lock was
    // gone: the ledger holds what was about to leave) and the one answered.
    assert_eq!(report.entries, 3);
    node.shutdown().await;
}

/// A subject taken off the list of seriously untrustworthy entities is no longer shown on it,
/// from the removal on, and the answer keeps no trace of the listing.
#[tokio::test]
async fn a_subject_removed_from_a_list_is_no_longer_shared_as_listed() {
    let f = fixture().await;
    let listing = common::listing_row(&f.subject);
    let mut admin = admin_as(&f.pki, &f.node, REGION_A, Kind::Operator, "admin").await;
    let done = admin
        .ingest_records(proto::IngestRecordsRequest {
            json_lines: vec![listing],
        })
        .await
        .expect("operator ingests the listing")
        .into_inner();
    assert_eq!(done.inserted, 1);
    let listed = || async {
        let asked = ask(&f.subject, "serious-untrustworthy", "public-procurement");
        query_as(&f.pki, &f.node, REGION_A, "tax", asked)
            .await
            .unwrap()
    };
    let before = listed().await;
    let records = &before.result.as_ref().unwrap().records;
    assert_eq!(records.len(), 1, "{before:?}");
    assert_eq!(
        field_value(&records[0], "list_reason"),
        "拒不履行行政处罚决定"
    );

    // A removal dated after the node's today is refused before anything is recorded, and
    // the listing stays shared.
    let status = admin
        .remove_from_list(off_the_list(
            &f.subject,
            "2026-11-24",
            "移出决定〔2026〕3号",
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), "removed_on: after today (2026-11-23)");
    assert_eq!(
        listed().await.result.unwrap().records.len(),
        1,
        "still listed"
    );

    let removed = admin
        .remove_from_list(off_the_list(
            &f.subject,
            "2026-11-02",
            "移出决定〔2026〕3号",
        ))
        .await
        .expect("operator removes the subject from the list")
        .into_inner();
    assert_eq!(removed.removed, 1);
    assert!(removed.receipt.is_some());
    let after = listed().await;
    assert!(
        after.result.as_ref().unwrap().records.is_empty(),
        "{after:?}"
    );
    let encoded = format!("{after:?}");
    assert!(
        !encoded.contains("拒不履行") && !encoded.contains("列严"),
        "no trace of the listing: {encoded}"
    );
    // The subject's other records are shared as before.
    assert_eq!(penalties(&f).await.len(), 2);
    f.node.shutdown().await;
}

/// Every change an operator makes is in the ledger before it takes effect: an officer finds
/// who changed what on which basis, the operator gets the entry's receipt, and when the ledger
/// cannot be written nothing changes.
#[tokio::test]
async fn administration_is_on_record_before_it_takes_effect() {
    let f = fixture().await;
    let operator = "spiffe://region-a.credit.test/operator/admin";
    let records = penalties(&f).await;
    let (first, second) = (records[0].record_id.clone(), records[1].record_id.clone());

    let mut admin = admin_as(&f.pki, &f.node, REGION_A, Kind::Operator, "admin").await;
    let restored = admin
        .restore_record(proto::RestoreRecordRequest {
            record_id: first.clone(),
            restored_on: "2026-11-01".into(),
            basis: "信用修复决定〔2026〕9号".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap();
    let removed = admin
        .remove_from_list(off_the_list(
            &f.subject,
            "2026-11-02",
            "移出决定〔2026〕3号",
        ))
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap();

    let listed = administration_entries(&f).await;
    let seen: Vec<(&str, &str, &str, &str)> = listed
        .iter()
        .map(|e| {
            (
                e.caller.as_str(),
                e.administration_action.as_str(),
                e.subject.as_str(),
                e.basis.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (operator, "ingest_records", f.subject.as_str(), ""),
            (
                operator,
                "restore_record",
                f.subject.as_str(),
                "信用修复决定〔2026〕9号"
            ),
            (
                operator,
                "remove_from_list",
                f.subject.as_str(),
                "移出决定〔2026〕3号"
            ),
        ]
    );
    assert!(
        listed[0]
            .reason
            .starts_with("4 records of this subject in a batch of 4 records in 4 rows"),
        "{}",
        listed[0].reason
    );
    assert!(listed[1].reason.contains(&first), "{}", listed[1].reason);
    assert!(
        listed[2].reason.contains("serious-untrustworthy"),
        "{}",
        listed[2].reason
    );
    for (entry, receipt) in listed[1..].iter().zip([&restored, &removed]) {
        assert_eq!(
            (entry.seq, &entry.leaf_hash),
            (receipt.seq, &receipt.leaf_hash)
        );
    }

    // The ledger cannot be written: the restoration is refused and does not happen.
    let store = f.node.state().store().clone();
    common::fail_ledger_writes(&store, true).await;
    let status = admin
        .restore_record(proto::RestoreRecordRequest {
            record_id: second.clone(),
            restored_on: "2026-11-01".into(),
            basis: "信用修复决定〔2026〕10号".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let status = admin
        .ingest_records(proto::IngestRecordsRequest {
            json_lines: vec![registration_row(&Uscc::from_seed(12).to_string())],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    common::fail_ledger_writes(&store, false).await;
    let still = penalties(&f).await;
    assert_eq!(
        still
            .iter()
            .map(|r| r.record_id.as_str())
            .collect::<Vec<_>>(),
        vec![second.as_str()],
        "the unrecorded restoration did not happen"
    );
    assert!(
        !registration_found(&f, 12).await,
        "the unrecorded ingest wrote nothing"
    );
    f.node.shutdown().await;
}

/// A restoration that ingest would refuse in a row is refused over the RPC too, naming the
/// field: a record of an item the catalog makes not restorable (`registration`), and a
/// restoration dated before the record's decision. Nothing changes: both records are still
/// shared, and the ledger holds no restoration that did not happen.
#[tokio::test]
async fn restorations_the_catalog_or_the_record_does_not_allow_are_refused() {
    let f = fixture().await;
    let registrations = || async {
        let asked = ask(&f.subject, "registration", "tax-administration");
        let r = query_as(&f.pki, &f.node, REGION_A, "tax", asked)
            .await
            .unwrap();
        r.result.unwrap().records
    };
    let registration = registrations().await[0].record_id.clone();
    let decided_in_may = |records: &[proto::RecordView]| {
        records
            .iter()
            .find(|r| field_value(r, "decision_no") == "浙市监罚〔2026〕1号")
            .map(|r| r.record_id.clone())
    };
    let penalty = decided_in_may(&penalties(&f).await).unwrap(); // decided 2026-05-01

    let mut admin = admin_as(&f.pki, &f.node, REGION_A, Kind::Operator, "admin").await;
    for (record_id, restored_on, expected) in [
        (
            &registration,
            "2026-11-01",
            "record_id: item \"registration\" is not restorable",
        ),
        (
            &penalty,
            "2026-04-30",
            "restored_on: before 2026-05-01, the record's decision date",
        ),
    ] {
        let status = admin
            .restore_record(proto::RestoreRecordRequest {
                record_id: record_id.clone(),
                restored_on: restored_on.into(),
                basis: "信用修复决定〔2026〕9号".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(status.message(), expected);
    }

    assert_eq!(registrations().await.len(), 1, "the registration is shared");
    assert_eq!(
        decided_in_may(&penalties(&f).await),
        Some(penalty.clone()),
        "the penalty is shared"
    );
    assert_eq!(
        administration_actions(&f).await,
        vec!["ingest_records"],
        "no refused restoration on record"
    );

    // Restored from its decision date on, the same penalty is restored: the check is the
    // decision date, nothing stricter.
    admin
        .restore_record(proto::RestoreRecordRequest {
            record_id: penalty.clone(),
            restored_on: "2026-05-01".into(),
            basis: "信用修复决定〔2026〕9号".into(),
        })
        .await
        .expect("a restoration from the decision date");
    assert_eq!(decided_in_may(&penalties(&f).await), None);
    f.node.shutdown().await;
}

/// A restoration dated after the node's today (its clock reads 2026-11-23, while the machine's
/// may read later) is refused as ingest refuses it in a row, naming the field: the record is
/// still shared, the ledger holds no restoration, and the record can still be restored from
/// today, the latest date allowed.
#[tokio::test]
async fn a_restoration_dated_after_today_is_refused_and_changes_nothing() {
    let f = fixture().await;
    let current = |records: &[proto::RecordView]| {
        records
            .iter()
            .find(|r| field_value(r, "decision_no") == "浙市监罚〔2026〕1号")
            .map(|r| r.record_id.clone())
    };
    let penalty = current(&penalties(&f).await).unwrap();
    let restore = |restored_on: &str| proto::RestoreRecordRequest {
        record_id: penalty.clone(),
        restored_on: restored_on.into(),
        basis: "信用修复决定〔2026〕9号".into(),
    };

    let mut admin = admin_as(&f.pki, &f.node, REGION_A, Kind::Operator, "admin").await;
    let status = admin
        .restore_record(restore("2026-11-24"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), "restored_on: after today (2026-11-23)");
    assert_eq!(
        current(&penalties(&f).await),
        Some(penalty.clone()),
        "the penalty is still shared"
    );
    assert_eq!(
        administration_actions(&f).await,
        vec!["ingest_records"],
        "no refused restoration on record"
    );

    admin
        .restore_record(restore("2026-11-23"))
        .await
        .expect("a restoration from today");
    assert_eq!(current(&penalties(&f).await), None);
    f.node.shutdown().await;
}

/// The database goes down under a running node (PostgreSQL refuses connections, and those open
/// are cut): queries get UNAVAILABLE and no record data, the node keeps serving what needs no
/// database, and answers again once the database is back, its ledger whole.
#[tokio::test]
async fn when_the_database_is_down_nothing_is_disclosed_and_the_node_recovers() {
    let Some(url) = common::postgres_url().await else {
        return; // postgres_url says it was skipped
    };
    let pki = TestPki::new();
    let config = pki.write_config_on(REGION_A, &url);
    let (node, subject) = node_with_a_registration(&pki, &config).await;
    let asked = || ask(&subject, "registration", "enforcement");
    let up = query_as(&pki, &node, REGION_A, "court", asked())
        .await
        .unwrap();
    assert_eq!(
        field(&up, "registration", "legal_rep_id").unwrap().value,
        REP_ID
    );

    let name = common::database_name(node.state().store()).await;
    common::set_database_up(&name, false).await;

    for id in ["court", "tax"] {
        let status = query_as(&pki, &node, REGION_A, id, asked())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{id}: {status:?}");
        assert!(
            !status.message().contains(REP_ID) && !status.message().contains("欧阳"),
            "{status:?}"
        );
    }
    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "court");
    let who = common::whoami_as(&pki, &node, &cert, &key).await.unwrap();
    assert_eq!(who.spiffe_id, "spiffe://region-a.credit.test/dept/court");

    common::set_database_up(&name, true).await;
    let back = query_as(&pki, &node, REGION_A, "court", asked())
        .await
        .expect("answered again once the database is back");
    assert_eq!(
        field(&back, "registration", "legal_rep_id").unwrap().value,
        REP_ID
    );
    let ledger = node.state().ledger();
    ledger.sign_now().await.unwrap();
    let report =
        credit_node::ledger::audit::verify_store(node.state().store(), ledger.public_key(), |_| {})
            .await
            .unwrap();
    // The ingest's entry and the two answered queries; the refused ones could not be logged
    // (the ledger is in the database that was down), and disclosed nothing.
    assert_eq!(report.entries, 3);
    node.shutdown().await;
}

/// A record's dates obey the grants of the fields they would tell: asked for the decision
/// number alone, the penalty comes without its decision date and the end of its disclosure
/// period (which would tell the decision date and the severity); asked for both, with both;
/// a registration's date only with its `established` date, which it repeats.
#[tokio::test]
async fn record_dates_come_only_with_the_fields_they_tell() {
    let f = fixture().await;
    let dates = async |fields: &[&str]| {
        let asked = proto::QueryRequest {
            items: vec![proto::ItemSelection {
                item: "admin-penalty".into(),
                fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            }],
            ..ask(&f.subject, "admin-penalty", "public-procurement")
        };
        let r = query_as(&f.pki, &f.node, REGION_A, "tax", asked)
            .await
            .unwrap();
        let records = r.result.unwrap().records;
        let view = records
            .iter()
            .find(|r| r.fields.iter().any(|v| v.value == "浙市监罚〔2026〕1号"))
            .unwrap_or_else(|| panic!("the penalty of 2026-05-01: {records:?}"));
        (view.decision_date.clone(), view.disclosure_end.clone())
    };
    assert_eq!(
        dates(&["decision_no"]).await,
        (String::new(), String::new())
    );
    assert_eq!(
        dates(&["decision_no", "decision_date", "severity"]).await,
        ("2026-05-01".to_owned(), "2027-05-01".to_owned())
    );
    // A registration's decision date is its `established` date: it goes out with that field,
    // raw, and not without it.
    let registration_dates = async |fields: &[&str]| {
        let asked = proto::QueryRequest {
            items: vec![proto::ItemSelection {
                item: "registration".into(),
                fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            }],
            ..ask(&f.subject, "registration", "tax-administration")
        };
        let r = query_as(&f.pki, &f.node, REGION_A, "tax", asked)
            .await
            .unwrap();
        let records = r.result.unwrap().records;
        let [view] = records.as_slice() else {
            panic!("one registration: {records:?}");
        };
        (view.decision_date.clone(), view.disclosure_end.clone())
    };
    assert_eq!(
        registration_dates(&["uscc", "name"]).await,
        (String::new(), String::new())
    );
    assert_eq!(
        registration_dates(&["uscc", "established"]).await,
        ("2009-03-17".to_owned(), String::new())
    );
    f.node.shutdown().await;
}
