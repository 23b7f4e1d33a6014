//! Anti-harvesting over mutual TLS (design.md promise 7): rate limits, distinct-subject quotas,
//! batch caps, enumeration alerts and suspensions, each seen as a client sees it and as the
//! ledger records it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{TestPki, endpoint, registration_row};
use credit_node::{
    identifier::Uscc,
    identity::{Kind, SpiffeId},
    ledger::{
        entry::Outcome,
        store::{EntryFilter, OutcomeKind, Page, StoredEntry},
    },
    pki::{self, REGION_A, REGION_B},
    proto::{
        self, administration_client::AdministrationClient, credit_query_client::CreditQueryClient,
    },
    server::RunningNode,
    store::Store,
};
use serde_json::json;
use tonic::{Code, transport::Channel};

const TAX_B: &str = "spiffe://region-b.credit.test/dept/tax";

/// 2026-11-23 10:00 UTC: quota windows follow the test's clock, so no test waits for a new day.
fn test_clock() -> common::SetClock {
    common::SetClock::at(1_795_428_000)
}

fn subject(n: u64) -> String {
    Uscc::from_seed(n).to_string()
}

struct Node {
    pki: TestPki,
    node: RunningNode,
    db: String,
}

/// A region-A node with `harvest` as its `[harvest]` config and registrations of subjects
/// `0..subjects` ingested by its operator.
async fn start(harvest: &str, clock: &common::SetClock, subjects: u64) -> Node {
    let pki = TestPki::new();
    let path = pki.dir.path().join("node.toml");
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let toml = pki::node_config_toml_with_harvest(&pki.layout, REGION_A, listen, harvest);
    std::fs::write(&path, toml).unwrap();
    let node = common::start_with_clock(&path, clock.clock()).await;
    ingest(&pki, &node, subjects).await;
    let db = format!(
        "sqlite://{}",
        pki.layout.root().join(format!("{REGION_A}.db")).display()
    );
    Node { pki, node, db }
}

async fn ingest(pki: &TestPki, node: &RunningNode, subjects: u64) {
    let rows = (0..subjects)
        .map(|n| registration_row(&subject(n)))
        .collect();
    let mut admin =
        AdministrationClient::new(channel(pki, node, REGION_A, Kind::Operator, "admin").await);
    admin
        .ingest_records(proto::IngestRecordsRequest { json_lines: rows })
        .await
        .expect("operator ingests");
}

async fn channel(pki: &TestPki, node: &RunningNode, region: &str, kind: Kind, id: &str) -> Channel {
    let (cert, key) = pki.identity(region, kind, id);
    credit_node::client::connect(&endpoint(node), pki.client_tls(&cert, &key))
        .await
        .expect("connect")
}

async fn client(n: &Node, region: &str, id: &str) -> CreditQueryClient<Channel> {
    CreditQueryClient::new(channel(&n.pki, &n.node, region, Kind::Dept, id).await)
}

fn ask(subject: &str) -> proto::QueryRequest {
    common::ask_for(subject, "registration", "public-procurement")
}

fn batch(subjects: &[String]) -> proto::BatchQueryRequest {
    let one = ask("");
    proto::BatchQueryRequest {
        subjects: subjects.to_vec(),
        subject_type: one.subject_type,
        items: one.items,
        purpose: one.purpose,
        basis_reference: one.basis_reference,
        node: String::new(),
    }
}

async fn query(
    client: &mut CreditQueryClient<Channel>,
    subject: &str,
) -> Result<proto::QueryResponse, tonic::Status> {
    client
        .query(ask(subject))
        .await
        .map(tonic::Response::into_inner)
}

/// The query was answered with the subject's registration record.
fn answered(response: Result<proto::QueryResponse, tonic::Status>) -> proto::QueryResponse {
    let response = response.expect("answered");
    let records = &response.result.as_ref().unwrap().records;
    assert_eq!(records.len(), 1, "the registration record is disclosed");
    response
}

async fn ledger_entries(store: &Store, filter: EntryFilter) -> Vec<StoredEntry> {
    credit_node::ledger::store::entries(
        store,
        &filter,
        Page {
            after: None,
            limit: 10_000,
        },
    )
    .await
    .unwrap()
    .entries
}

/// Every entry of `caller` about `subject`.
async fn entries_about(store: &Store, caller: &str, subject: &str) -> Vec<StoredEntry> {
    let filter = EntryFilter {
        caller: Some(caller.into()),
        subject: Some(subject.into()),
        ..EntryFilter::default()
    };
    ledger_entries(store, filter).await
}

fn by_outcome(outcome: OutcomeKind) -> EntryFilter {
    EntryFilter {
        outcome: Some(outcome),
        ..EntryFilter::default()
    }
}

const QUOTA_3: &str = "\
[harvest]
[harvest.default]
requests_per_second = 1000
burst = 1000
distinct_subjects = 3
";

#[tokio::test]
async fn the_next_new_subject_over_the_quota_is_refused_but_repeats_still_pass() {
    let clock = test_clock();
    let n = start(QUOTA_3, &clock, 6).await;
    let mut tax = client(&n, REGION_B, "tax").await;
    for i in 0..3 {
        answered(query(&mut tax, &subject(i)).await);
    }

    let refused = query(&mut tax, &subject(3)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().starts_with("quota:"),
        "{}",
        refused.message()
    );
    assert!(
        !refused.message().contains(&subject(3)),
        "the refusal does not echo what it refused"
    );
    let pushback: u64 = refused
        .metadata()
        .get("grpc-retry-pushback-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        pushback > 0 && pushback <= 86_400_000,
        "retry at the next window: {pushback} ms"
    );

    // Subjects already counted cost nothing, however often they are asked about again.
    for _ in 0..3 {
        for i in 0..3 {
            answered(query(&mut tax, &subject(i)).await);
        }
    }
    // Another caller has a quota of its own.
    let mut eco = client(&n, REGION_B, "eco").await;
    answered(query(&mut eco, &subject(3)).await);

    // The refusal is on record, as a denial naming the quota.
    let store = n.node.state().store();
    let denied = ledger_entries(
        store,
        EntryFilter {
            caller: Some(TAX_B.into()),
            ..by_outcome(OutcomeKind::Denied)
        },
    )
    .await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].entry.subject, subject(3));
    assert!(
        matches!(&denied[0].entry.outcome, Outcome::Denied { reason } if reason.starts_with("quota:"))
    );
    // And only the denial: the answer computed before the charge failed left no entry behind.
    let about_it = entries_about(store, TAX_B, &subject(3)).await;
    assert_eq!(about_it.len(), 1);

    // A new window (the next day, UTC+8) brings a fresh quota.
    clock.advance_days(1);
    answered(query(&mut tax, &subject(3)).await);
    n.node.shutdown().await;
}

#[tokio::test]
async fn a_batch_counts_every_subject_and_is_refused_whole() {
    let clock = test_clock();
    let n = start(QUOTA_3, &clock, 6).await;
    let mut tax = client(&n, REGION_B, "tax").await;
    let first: Vec<String> = (0..2).map(subject).collect();
    let answers = tax
        .batch_query(batch(&first))
        .await
        .unwrap()
        .into_inner()
        .answers;
    assert_eq!(answers.len(), 2);

    // Two new subjects with one slot left: nothing of the batch is disclosed or counted.
    let over = vec![subject(2), subject(3)];
    let refused = tax.batch_query(batch(&over)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().starts_with("quota:"),
        "{}",
        refused.message()
    );
    // So the last slot is still free.
    answered(query(&mut tax, &subject(3)).await);
    let refused = query(&mut tax, &subject(2)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);

    // The batch size cap holds whatever the quota.
    let too_many: Vec<String> = (0..101).map(|i| subject(i % 3)).collect();
    let refused = tax.batch_query(batch(&too_many)).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused.message().starts_with("subjects:"),
        "{}",
        refused.message()
    );
    n.node.shutdown().await;
}

/// An operator raising a department's quota does not wait for a restart: SIGHUP takes in the
/// new limits, and the subject refused a moment ago is answered.
#[tokio::test]
async fn a_reload_applies_new_harvest_limits() {
    let clock = test_clock();
    let n = start(QUOTA_3, &clock, 6).await;
    let mut tax = client(&n, REGION_B, "tax").await;
    for i in 0..3 {
        answered(query(&mut tax, &subject(i)).await);
    }
    let refused = query(&mut tax, &subject(3)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    let config = n.pki.dir.path().join("node.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let raised = text.replace("distinct_subjects = 3", "distinct_subjects = 5");
    assert_ne!(raised, text, "the config holds the quota of 3");
    std::fs::write(&config, raised).unwrap();
    credit_node::cli::serve::reload(&config, &n.node);
    assert_eq!(
        n.node
            .state()
            .guard()
            .limits(&SpiffeId::parse(TAX_B).unwrap())
            .distinct_subjects,
        5
    );
    answered(query(&mut tax, &subject(3)).await);
    answered(query(&mut tax, &subject(4)).await);
    let refused = query(&mut tax, &subject(5)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("its 5 distinct"), "{refused:?}");

    // Limits of its own for the bureau: its burst of 2 refuses a batch of 3 at once (subjects
    // it has already obtained, so the quota is not what refuses it).
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!(
            "{text}\n[[harvest.caller]]\nid = \"{TAX_B}\"\nrequests_per_second = 1000\n\
             burst = 2\ndistinct_subjects = 5\n"
        ),
    )
    .unwrap();
    let counted: Vec<String> = (0..3).map(subject).collect();
    tax.batch_query(batch(&counted))
        .await
        .expect("within the default burst before the reload");
    credit_node::cli::serve::reload(&config, &n.node);
    let refused = tax.batch_query(batch(&counted)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("exceed this caller's burst of 2"),
        "{refused:?}"
    );
    n.node.shutdown().await;
}

const BURST_5: &str = "\
[harvest]
throttle_fold_ms = 60000

[harvest.default]
requests_per_second = 1000
burst = 1000
distinct_subjects = 100

[[harvest.caller]]
id = \"spiffe://region-b.credit.test/dept/tax\"
requests_per_second = 10
burst = 5
distinct_subjects = 100
";

#[tokio::test]
async fn bursts_are_refused_with_a_retry_time_recover_and_fold_into_one_entry() {
    let clock = test_clock();
    let n = start(BURST_5, &clock, 2).await;
    let mut tax = client(&n, REGION_B, "tax").await;
    let s = subject(0);
    let mut passed = 0;
    let mut refusals = Vec::new();
    // Far faster than 10/s: after the burst, nearly everything is refused.
    for _ in 0..40 {
        match query(&mut tax, &s).await {
            Ok(r) => {
                answered(Ok(r));
                passed += 1;
            }
            Err(status) => refusals.push(status),
        }
    }
    assert!(passed >= 5, "the burst passes: {passed}");
    assert!(!refusals.is_empty(), "a burst beyond 5 is refused");
    let last = refusals.last().unwrap();
    assert_eq!(last.code(), Code::ResourceExhausted);
    assert!(
        last.message().starts_with("rate limit:"),
        "{}",
        last.message()
    );
    let pushback: u64 = last
        .metadata()
        .get("grpc-retry-pushback-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=100).contains(&pushback),
        "one request per 100 ms: {pushback}"
    );
    assert!(last.metadata().get("retry-after").is_some());

    // Another department is not slowed by this one.
    let mut eco = client(&n, REGION_B, "eco").await;
    answered(query(&mut eco, &s).await);

    // A client that waits as told gets through.
    tokio::time::sleep(std::time::Duration::from_millis(pushback)).await;
    answered(query(&mut tax, &s).await);

    n.node.shutdown().await;
    // Every refusal of the flood is on record, in one entry with the count.
    let store = Store::open(&n.db).await.unwrap();
    let throttled = ledger_entries(&store, by_outcome(OutcomeKind::Throttled)).await;
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    assert_eq!(throttled[0].entry.caller, TAX_B);
    assert!(
        matches!(throttled[0].entry.outcome, Outcome::Throttled { count, .. } if count == refusals.len() as u64),
        "{:?}",
        throttled[0].entry.outcome
    );
    store.close().await;
}

#[tokio::test]
async fn a_batch_beyond_the_burst_is_refused_before_anything_is_read() {
    let clock = test_clock();
    let n = start(BURST_5, &clock, 8).await;
    let mut tax = client(&n, REGION_B, "tax").await;
    let six: Vec<String> = (0..6).map(subject).collect();
    let refused = tax.batch_query(batch(&six)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("burst of 5"),
        "{}",
        refused.message()
    );
    // A batch within the burst passes.
    let answers = tax
        .batch_query(batch(&six[..5]))
        .await
        .unwrap()
        .into_inner()
        .answers;
    assert_eq!(answers.len(), 5);
    n.node.shutdown().await;
}

const ENUMERATION: &str = "\
[harvest]
on_enumeration = \"suspend\"
enumeration_sequential_run = 4
enumeration_min_queries = 6

[harvest.default]
requests_per_second = 1000
burst = 1000
distinct_subjects = 1000
";

/// Organisation codes counted upwards, as a harvester walking the number space would.
fn sequential(n: u32) -> String {
    Uscc::complete(&format!("91330106MA2{n:05}0"))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn sequential_identifiers_raise_an_alert_and_suspend_the_caller() {
    let clock = test_clock();
    let n = start(ENUMERATION, &clock, 1).await;
    let mut tax = client(&n, REGION_B, "tax").await;
    for i in 0..4 {
        query(&mut tax, &sequential(i))
            .await
            .expect("answered, though about nobody");
    }
    // From the next query on, the caller is suspended: nothing, not even for a known subject.
    let refused = query(&mut tax, &subject(0)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("suspended"),
        "{}",
        refused.message()
    );
    // Others are not.
    let mut eco = client(&n, REGION_B, "eco").await;
    answered(query(&mut eco, &subject(0)).await);

    let store = n.node.state().store();
    let alerts = ledger_entries(store, by_outcome(OutcomeKind::Alert)).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].entry.caller, TAX_B);
    assert!(
        matches!(&alerts[0].entry.outcome, Outcome::Alert { reason } if reason.contains("sequential")),
        "{:?}",
        alerts[0].entry.outcome
    );
    let suspension = n
        .node
        .state()
        .guard()
        .suspension(TAX_B)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(suspension.alert_seq, alerts[0].seq);

    // Lifting it (what LedgerReview does for an officer) lets the caller work again.
    let guard = n.node.state().guard();
    assert!(guard.lift(TAX_B, suspension.alert_seq).await.unwrap());
    answered(query(&mut tax, &subject(0)).await);
    n.node.shutdown().await;
}

/// An officer's LiftSuspension names, in the review it records, the alert of the suspension it
/// read; if the caller was suspended again by a newer alert before that suspension is removed
/// (another replica's officer lifted the first one, the caller's enumeration went on), the
/// older alert's lifting removes nothing. The trigger below replaces the suspension while the
/// officer's review is being recorded, inside that window, as another replica would. The
/// officer gets NOT_FOUND naming the field and the alert it reviewed, the newer suspension
/// stands (the caller is still refused), and a lifting that reviews the newer alert works.
#[tokio::test]
async fn lifting_a_suspension_replaced_by_a_newer_alert_lifts_nothing_over_mtls() {
    use credit_node::{ledger::entry::Entry, proto::ledger_review_client::LedgerReviewClient};
    use sqlx::Executor;
    let clock = test_clock();
    let n = start(ENUMERATION, &clock, 1).await;
    let mut tax = client(&n, REGION_B, "tax").await;
    for i in 0..4 {
        query(&mut tax, &sequential(i))
            .await
            .expect("answered, though about nobody");
    }
    let refused = query(&mut tax, &subject(0)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let state = n.node.state();
    let store = state.store();
    let older = ledger_entries(store, by_outcome(OutcomeKind::Alert)).await[0].seq;

    // The newer alert, recorded as the query path records one.
    let newer = state
        .ledger()
        .append(Entry::unanswered(
            TAX_B.into(),
            [0; 32],
            clock.clock().now_ms(),
            Outcome::Alert {
                reason: "sequential identifiers, again".into(),
            },
        ))
        .await
        .unwrap()
        .seq;
    store
        .pool()
        .execute(
            format!(
                "CREATE TRIGGER activity.suspended_again AFTER INSERT ON ledger_entries \
                 WHEN NEW.outcome = 'review' \
                 BEGIN UPDATE suspensions SET alert_seq = {newer}, \
                 reason = 'sequential identifiers, again' WHERE caller = '{TAX_B}'; END"
            )
            .as_str(),
        )
        .await
        .unwrap();

    let mut officer =
        LedgerReviewClient::new(channel(&n.pki, &n.node, REGION_A, Kind::Officer, "auditor").await);
    let lift = || proto::LiftSuspensionRequest {
        caller: TAX_B.into(),
        comment: "audit case 2026-18: a misconfigured batch job".into(),
        alert_seq: None,
    };
    let status = officer.lift_suspension(lift()).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().starts_with(&format!(
            "caller: the suspension of alert entry {older} is no longer in place"
        )),
        "{status:?}"
    );
    let refused = query(&mut tax, &subject(0)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("suspended"), "{refused:?}");
    let listed = officer
        .list_suspensions(proto::ListSuspensionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .suspensions;
    assert_eq!(
        listed
            .iter()
            .map(|s| (s.caller.as_str(), s.alert_seq))
            .collect::<Vec<_>>(),
        vec![(TAX_B, newer)],
        "the newer suspension stands"
    );

    store
        .pool()
        .execute("DROP TRIGGER activity.suspended_again")
        .await
        .unwrap();
    let lifted = officer
        .lift_suspension(lift())
        .await
        .expect("the newer alert's suspension is lifted")
        .into_inner();
    assert_eq!(lifted.lifted.unwrap().alert_seq, newer);
    // Both liftings are on record, each reviewing the alert it named.
    let reviewed: Vec<(u64, u64)> = ledger_entries(store, by_outcome(OutcomeKind::Review))
        .await
        .iter()
        .map(|e| match &e.entry.outcome {
            Outcome::Review(r) => (r.first_seq, r.last_seq),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(reviewed, vec![(older, older), (newer, newer)]);
    answered(query(&mut tax, &subject(0)).await);
    n.node.shutdown().await;
}

/// The suspension that goes with an alert cannot be stored (the store refuses it, as a full
/// disk or a lost database would): the query is refused UNAVAILABLE, and the alert does not
/// count as the window's alert, so the caller's next sequential query raises it again, this
/// time with its suspension.
#[tokio::test]
async fn an_alert_whose_suspension_was_not_stored_is_raised_again() {
    use sqlx::Executor;
    let clock = test_clock();
    let n = start(ENUMERATION, &clock, 1).await;
    let store = n.node.state().store();
    store
        .pool()
        .execute(
            "CREATE TRIGGER activity.refuse_suspensions BEFORE INSERT ON suspensions \
             BEGIN SELECT RAISE(ABORT, 'the suspension store is failing'); END",
        )
        .await
        .unwrap();
    let mut tax = client(&n, REGION_B, "tax").await;
    for i in 0..3 {
        query(&mut tax, &sequential(i))
            .await
            .expect("answered, though about nobody");
    }
    let failed = query(&mut tax, &sequential(3)).await.unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
    assert!(
        n.node
            .state()
            .guard()
            .suspension(TAX_B)
            .await
            .unwrap()
            .is_none()
    );

    store
        .pool()
        .execute("DROP TRIGGER activity.refuse_suspensions")
        .await
        .unwrap();
    // The next sequential identifier raises the alert again; the query that raised it is
    // answered, the caller suspended from the next one on.
    query(&mut tax, &sequential(4))
        .await
        .expect("answered, though about nobody");
    let refused = query(&mut tax, &subject(0)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let alerts = ledger_entries(store, by_outcome(OutcomeKind::Alert)).await;
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let suspension = n
        .node
        .state()
        .guard()
        .suspension(TAX_B)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(suspension.alert_seq, alerts[1].seq);
    n.node.shutdown().await;
}

/// The caller is already suspended in the store by another replica (here a second quota store
/// over the same database, whose suspensions this node has not read yet) when its own query
/// raises an alert. That alert's suspension is not inserted (the other one stands), so the
/// query gets no exemption: it is refused like any query of a suspended caller.
#[tokio::test]
async fn a_query_whose_alert_found_the_caller_suspended_already_is_refused() {
    use credit_node::harvest::{Suspension, quota::QuotaStore};
    let clock = test_clock();
    let n = start(ENUMERATION, &clock, 1).await;
    let mut tax = client(&n, REGION_B, "tax").await;
    for i in 0..3 {
        query(&mut tax, &sequential(i))
            .await
            .expect("answered, though about nobody");
    }
    let store = n.node.state().store();
    let other_replica = QuotaStore::new(store.clone());
    let theirs = Suspension {
        caller: TAX_B.into(),
        since_ms: 1,
        alert_seq: 0,
        reason: "suspended by another replica".into(),
    };
    assert!(other_replica.suspend(&theirs).await.unwrap());
    // This query's own alert comes second: it suspends nothing and excuses nothing. (Should
    // this node read the other suspension first, it refuses the query before reading; the
    // answer is the same.)
    let refused = query(&mut tax, &sequential(3)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let about_it = entries_about(store, TAX_B, &sequential(3)).await;
    assert!(
        about_it
            .iter()
            .all(|e| !matches!(e.entry.outcome, Outcome::Granted | Outcome::PartlyWithheld)),
        "{about_it:?}"
    );
    let suspension = n.node.state().guard().suspension(TAX_B).await.unwrap();
    assert_eq!(suspension, Some(theirs), "the first suspension stands");
    n.node.shutdown().await;
}

const FLAG_ONLY: &str = "\
[harvest]
on_enumeration = \"flag\"
enumeration_sequential_run = 100
enumeration_min_queries = 6
enumeration_miss_share = 0.5

[harvest.default]
requests_per_second = 1000
burst = 1000
distinct_subjects = 1000
";

#[tokio::test]
async fn many_misses_raise_one_alert_and_flagging_does_not_suspend() {
    let clock = test_clock();
    let n = start(FLAG_ONLY, &clock, 1).await;
    let mut tax = client(&n, REGION_B, "tax").await;
    // Guessed identifiers the node knows nothing about, far apart.
    for i in 0..10u64 {
        query(&mut tax, &subject(1_000 + i * 7_919))
            .await
            .expect("a miss is answered with nothing");
    }
    answered(query(&mut tax, &subject(0)).await);
    let store = n.node.state().store();
    let alerts = ledger_entries(store, by_outcome(OutcomeKind::Alert)).await;
    assert_eq!(alerts.len(), 1, "one alert per caller and window");
    assert!(
        matches!(&alerts[0].entry.outcome, Outcome::Alert { reason } if reason.contains("unknown")),
        "{:?}",
        alerts[0].entry.outcome
    );
    assert!(
        n.node
            .state()
            .guard()
            .suspension(TAX_B)
            .await
            .unwrap()
            .is_none()
    );
    n.node.shutdown().await;
}

/// Query reads only the records of the items it asks for; a subject the node knows for other
/// items only is still no miss, so asking about such subjects raises no alert.
#[tokio::test]
async fn subjects_known_for_other_items_are_no_misses() {
    let clock = test_clock();
    let n = start(FLAG_ONLY, &clock, 0).await;
    let penalties = (0..10u64)
        .map(|i| {
            let s = subject(1_000 + i * 7_919);
            let number = format!("京市监罚〔2026〕{i}号");
            json!({
                "subject": s, "item": "admin-penalty",
                "fields": {
                    "decision_no": number, "uscc": s, "severity": "ordinary",
                    "penalty_type": "罚款", "amount": "15000.00", "decision_date": "2026-05-01",
                    "facts": "未按规定公示年度报告", "legal_rep_id": "11010519491231002X"
                },
                "basis": {"kind": "行政处罚决定书", "number": number, "date": "2026-05-01", "issuer": "samr"},
                "severity": "ordinary",
                "decision_date": "2026-05-01"
            })
            .to_string()
        })
        .collect();
    AdministrationClient::new(channel(&n.pki, &n.node, REGION_A, Kind::Operator, "admin").await)
        .ingest_records(proto::IngestRecordsRequest {
            json_lines: penalties,
        })
        .await
        .expect("operator ingests");
    let mut tax = client(&n, REGION_B, "tax").await;
    for i in 0..10u64 {
        let response = query(&mut tax, &subject(1_000 + i * 7_919))
            .await
            .expect("answered");
        assert!(
            response.result.unwrap().records.is_empty(),
            "no registration to disclose"
        );
    }
    let store = n.node.state().store();
    let alerts = ledger_entries(store, by_outcome(OutcomeKind::Alert)).await;
    assert!(alerts.is_empty(), "{alerts:?}");
    n.node.shutdown().await;
}

/// Two nodes over one PostgreSQL database, as replicas of one department: what a caller
/// obtained through one counts against its quota on the other.
#[tokio::test]
async fn replicas_on_one_postgresql_share_the_quota() {
    let Some(url) = common::postgres_url().await else {
        return; // postgres_url says it was skipped
    };
    let pki = TestPki::new();
    let clock = test_clock();
    let mut nodes = Vec::new();
    for replica in ["one", "two"] {
        let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let toml = pki::node_config_toml_with_harvest(&pki.layout, REGION_A, listen, QUOTA_3);
        let sqlite = format!(
            "sqlite://{}",
            pki.layout.root().join(format!("{REGION_A}.db")).display()
        );
        let toml = toml.replace(&sqlite, &url);
        assert!(toml.contains(&url));
        let path = pki.dir.path().join(format!("{replica}.toml"));
        std::fs::write(&path, toml).unwrap();
        nodes.push(common::start_with_clock(&path, clock.clock()).await);
    }
    ingest(&pki, &nodes[0], 6).await;
    let connect = |node: &RunningNode| {
        let (cert, key) = pki.identity(REGION_B, Kind::Dept, "tax");
        let tls = pki.client_tls(&cert, &key);
        let endpoint = endpoint(node);
        async move {
            CreditQueryClient::new(credit_node::client::connect(&endpoint, tls).await.unwrap())
        }
    };
    let mut one = connect(&nodes[0]).await;
    let mut two = connect(&nodes[1]).await;
    answered(query(&mut one, &subject(0)).await);
    answered(query(&mut two, &subject(1)).await);
    answered(query(&mut one, &subject(2)).await);
    // The quota of 3 is used up across both replicas.
    for client in [&mut one, &mut two] {
        let refused = query(client, &subject(3)).await.unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    }
    // Repeats pass on either.
    answered(query(&mut two, &subject(0)).await);
    answered(query(&mut one, &subject(1)).await);

    // A suspension made on one replica holds on the other: at once for anything the other
    // must check in the store, and for repeats from its next refresh on.
    let suspension = credit_node::harvest::Suspension {
        caller: TAX_B.into(),
        since_ms: 1,
        alert_seq: 0,
        reason: "test".into(),
    };
    nodes[0].state().guard().suspend(&suspension).await.unwrap();
    let refused = query(&mut two, &subject(5)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // Found in the transaction that would have charged it: only the denial is on record.
    let about_it = entries_about(nodes[1].state().store(), TAX_B, &subject(5)).await;
    assert_eq!(about_it.len(), 1);
    assert!(
        matches!(&about_it[0].entry.outcome, Outcome::Denied { reason } if reason.contains("suspended")),
        "{:?}",
        about_it[0].entry.outcome
    );
    nodes[1].state().guard().refresh().await.unwrap();
    let refused = query(&mut two, &subject(0)).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // And so does lifting it.
    let guard = nodes[0].state().guard();
    assert!(guard.lift(TAX_B, suspension.alert_seq).await.unwrap());
    nodes[1].state().guard().refresh().await.unwrap();
    answered(query(&mut two, &subject(0)).await);
    for node in nodes {
        node.shutdown().await;
    }
}

/// The harvest simulation at small scale: harvesters with a leaked list and a counter, several
/// certificates, singles and batches, beside a legitimate department working at its rate.
#[tokio::test]
async fn the_harvest_simulation_stops_harvesters_and_refuses_no_legitimate_query() {
    use credit_node::harvest_sim::{self, SimSettings};
    let dir = tempfile::tempdir().unwrap();
    let settings = SimSettings {
        subjects: 400,
        quota: 40,
        requests_per_second: 400,
        burst: 10,
        harvester_certs: 3,
        harvester_max_queries: 5_000,
        legit_rate: 200,
        legit_queries: 60,
        legit_caseload: 30,
    };
    let report = harvest_sim::run(settings, &dir.path().join("sim"), |_| {})
        .await
        .unwrap();
    assert!(report.organisations > 40, "{report:?}");
    let list = &report.list_harvester;
    assert_eq!(list.subjects_obtained, 40, "exactly its quota: {list:?}");
    assert_eq!(list.stopped_by, "quota", "{list:?}");
    let counting = &report.counting_harvester;
    assert_eq!(counting.stopped_by, "suspended", "{counting:?}");
    assert!(counting.subjects_obtained <= 8, "{counting:?}");
    assert_eq!(report.alerts, 1, "the counter's alert, and no other");
    let legit = &report.legitimate;
    assert_eq!(legit.queries, 60);
    assert_eq!(legit.refused, 0, "{legit:?}");
}
