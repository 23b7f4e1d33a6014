//! `credit.v1.LedgerReview` over mutual TLS on a real node: who may read and record what,
//! filters, proofs that verify with the crate's own verifiers, review decisions as ledger
//! entries, and lifting a suspension.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{TestPki, endpoint};
use credit_node::{
    clock::Clock,
    harvest::Suspension,
    identifier::Uscc,
    identity::Kind,
    ledger::{
        audit,
        entry::{Entry, Outcome},
        key, merkle,
        sth::{SignedTreeHead, TreeHead},
    },
    pki::{REGION_A, REGION_B},
    proto::{
        self, credit_query_client::CreditQueryClient, ledger_review_client::LedgerReviewClient,
    },
    server::RunningNode,
};
use tonic::{Code, transport::Channel};

const TAX_A: &str = "spiffe://region-a.credit.test/dept/tax";
const COURT_A: &str = "spiffe://region-a.credit.test/dept/court";
const TAX_B: &str = "spiffe://region-b.credit.test/dept/tax";

fn clock() -> Clock {
    Clock::fixed(time::macros::datetime!(2026-11-23 10:00 UTC))
}

fn now_ms() -> i64 {
    clock().now_ms()
}

async fn channel(pki: &TestPki, node: &RunningNode, region: &str, kind: Kind, id: &str) -> Channel {
    let (cert, key) = pki.identity(region, kind, id);
    credit_node::client::connect(&endpoint(node), pki.client_tls(&cert, &key))
        .await
        .expect("connect")
}

async fn review_as(
    pki: &TestPki,
    node: &RunningNode,
    region: &str,
    kind: Kind,
    id: &str,
) -> LedgerReviewClient<Channel> {
    LedgerReviewClient::new(channel(pki, node, region, kind, id).await)
}

async fn officer(pki: &TestPki, node: &RunningNode) -> LedgerReviewClient<Channel> {
    review_as(pki, node, REGION_A, Kind::Officer, "auditor").await
}

fn ask(subject: &str, purpose: &str) -> proto::QueryRequest {
    common::ask_for(subject, "registration", purpose)
}

/// One query as department `id` of `region`; returns the receipt of whatever it was recorded
/// as (an answer's receipt, or `None` for a refusal).
async fn query(
    pki: &TestPki,
    node: &RunningNode,
    region: &str,
    id: &str,
    request: proto::QueryRequest,
) -> Option<proto::Receipt> {
    let mut client = CreditQueryClient::new(channel(pki, node, region, Kind::Dept, id).await);
    client
        .query(request)
        .await
        .ok()
        .and_then(|r| r.into_inner().receipt)
}

struct Fixture {
    pki: TestPki,
    node: RunningNode,
    s1: String,
    s2: String,
    /// Region A's tax bureau's first receipt, and region A's court's.
    tax_receipt: proto::Receipt,
    court_receipt: proto::Receipt,
    tax_b_receipt: proto::Receipt,
}

/// A node with a few entries of different callers, subjects, purposes and outcomes.
async fn fixture() -> Fixture {
    let pki = TestPki::new();
    let node = common::start_with_clock(&pki.write_config(REGION_A), clock()).await;
    let s1 = Uscc::from_seed(42).to_string();
    let s2 = Uscc::from_seed(4242).to_string();
    let tax_receipt = query(&pki, &node, REGION_A, "tax", ask(&s1, "tax-administration"))
        .await
        .expect("tax A answered");
    let court_receipt = query(&pki, &node, REGION_A, "court", ask(&s2, "enforcement"))
        .await
        .expect("court answered");
    let tax_b_receipt = query(&pki, &node, REGION_B, "tax", ask(&s1, "tax-administration"))
        .await
        .expect("tax B answered");
    // Nothing of this item granted for this purpose: a denied entry.
    query(
        &pki,
        &node,
        REGION_A,
        "tax",
        common::ask_for(&s2, "admin-penalty", "enforcement"),
    )
    .await;
    // A malformed subject: an invalid entry.
    query(
        &pki,
        &node,
        REGION_A,
        "court",
        ask("not-a-code", "enforcement"),
    )
    .await;
    Fixture {
        pki,
        node,
        s1,
        s2,
        tax_receipt,
        court_receipt,
        tax_b_receipt,
    }
}

async fn all_entries(client: &mut LedgerReviewClient<Channel>) -> Vec<proto::LedgerEntry> {
    client
        .list_entries(proto::ListEntriesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
}

fn seqs(entries: &[proto::LedgerEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

fn hash(bytes: &[u8]) -> merkle::Hash {
    bytes.try_into().expect("32-byte hash")
}

fn code_and_message(status: &tonic::Status) -> (Code, &str) {
    (status.code(), status.message())
}

/// An officer taken off `access.officers` loses the review service at the next SIGHUP, on the
/// connection it already has open; one added gains it; a reload with a bad list keeps the
/// running lists.
#[tokio::test]
async fn a_reload_applies_the_access_lists() {
    let pki = TestPki::new();
    credit_node::pki::issue_identity(&pki.layout, REGION_A, Kind::Officer, "second")
        .expect("second officer");
    let config = pki.write_config(REGION_A);
    let node = common::start_from_config(&config).await;
    let list = async |c: &mut LedgerReviewClient<Channel>| {
        c.list_suspensions(proto::ListSuspensionsRequest {})
            .await
            .map(drop)
    };
    let mut auditor = officer(&pki, &node).await;
    list(&mut auditor).await.expect("the auditor is an officer");
    let mut second = review_as(&pki, &node, REGION_A, Kind::Officer, "second").await;
    let refused = list(&mut second).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    let text = std::fs::read_to_string(&config).unwrap();
    let auditor_id = format!("\"spiffe://{REGION_A}/officer/auditor\"");
    let second_id = format!("\"spiffe://{REGION_A}/officer/second\"");
    let replaced = text.replace(
        &format!("officers = [{auditor_id}]"),
        &format!("officers = [{second_id}]"),
    );
    assert_ne!(replaced, text, "the development config names the auditor");
    std::fs::write(&config, &replaced).unwrap();
    credit_node::cli::serve::reload(&config, &node);
    let refused = list(&mut auditor).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    list(&mut second)
        .await
        .expect("the second officer is named now");

    // A list the node would refuse at start-up: the running lists stay.
    std::fs::write(
        &config,
        replaced.replace(
            &format!("officers = [{second_id}]"),
            &format!("officers = [\"spiffe://{REGION_A}/dept/tax\"]"),
        ),
    )
    .unwrap();
    credit_node::cli::serve::reload(&config, &node);
    list(&mut second).await.expect("still an officer");
    let refused = list(&mut auditor).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    node.shutdown().await;
}

#[tokio::test]
async fn only_this_nodes_officers_reach_review() {
    let f = fixture().await;
    let mut allowed = officer(&f.pki, &f.node).await;
    assert_eq!(all_entries(&mut allowed).await.len(), 5);

    // An officer certificate from this node's own regional CA, but of another department: the
    // node's config does not name it, so it cannot read this department's query log.
    credit_node::pki::issue_identity(&f.pki.layout, REGION_A, Kind::Officer, "tax-auditor")
        .expect("another department's officer");
    for (region, kind, id) in [
        (REGION_A, Kind::Dept, "tax"),
        (REGION_A, Kind::Operator, "admin"),
        (REGION_A, Kind::Officer, "tax-auditor"),
        (REGION_B, Kind::Officer, "auditor"),
        (REGION_B, Kind::Dept, "tax"),
    ] {
        let who = format!("{region} {kind} {id}");
        let mut c = review_as(&f.pki, &f.node, region, kind, id).await;
        let denied = |r: Result<_, tonic::Status>| {
            let status = r.err().unwrap_or_else(|| panic!("{who} was let in"));
            assert_eq!(status.code(), Code::PermissionDenied, "{who}: {status:?}");
        };
        denied(
            c.list_entries(proto::ListEntriesRequest::default())
                .await
                .map(drop),
        );
        denied(
            c.record_review(proto::RecordReviewRequest {
                first_seq: 0,
                last_seq: 0,
                decision: proto::ReviewDecision::Accepted.into(),
                comment: "fine".into(),
            })
            .await
            .map(drop),
        );
        denied(
            c.lift_suspension(proto::LiftSuspensionRequest {
                caller: TAX_A.into(),
                comment: "fine".into(),
                alert_seq: None,
            })
            .await
            .map(drop),
        );
        denied(
            c.list_suspensions(proto::ListSuspensionsRequest {})
                .await
                .map(drop),
        );
        denied(
            c.get_consistency_proof(proto::GetConsistencyProofRequest {
                first: 1,
                second: 2,
            })
            .await
            .map(drop),
        );
    }
    // Operators and other regions' officers get no proofs either; departments do.
    for (region, kind, id) in [
        (REGION_A, Kind::Operator, "admin"),
        (REGION_A, Kind::Officer, "tax-auditor"),
        (REGION_B, Kind::Officer, "auditor"),
    ] {
        let mut c = review_as(&f.pki, &f.node, region, kind, id).await;
        let status = c
            .get_signed_tree_head(proto::GetSignedTreeHeadRequest {})
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    // Every refused call is on record as a denial naming the call and the caller; none of
    // them is a review.
    let refused = &all_entries(&mut allowed).await[5..];
    assert_eq!(refused.len(), 5 * 5 + 3, "{refused:?}");
    for e in refused {
        assert_eq!(e.outcome(), proto::EntryOutcome::Denied, "{e:?}");
        assert!(e.review.is_none(), "{e:?}");
        assert!(
            e.reason.starts_with("credit.v1.LedgerReview/"),
            "{}",
            e.reason
        );
        assert!(e.response_sha256.iter().all(|b| *b == 0), "nothing sent");
    }
    let by = |caller: &str, rpc: &str| {
        refused
            .iter()
            .filter(|e| e.caller == caller && e.reason.contains(rpc))
            .count()
    };
    assert_eq!(by(TAX_A, "/ListEntries: "), 1);
    assert_eq!(
        by(
            "spiffe://region-a.credit.test/officer/tax-auditor",
            "/GetSignedTreeHead: "
        ),
        1
    );
    assert_eq!(
        by(
            "spiffe://region-b.credit.test/officer/auditor",
            "/LiftSuspension: "
        ),
        1
    );
    f.node.shutdown().await;
}

#[tokio::test]
async fn filters_return_exactly_the_matching_entries() {
    let f = fixture().await;
    let mut c = officer(&f.pki, &f.node).await;
    let all = all_entries(&mut c).await;
    assert_eq!(seqs(&all), vec![0, 1, 2, 3, 4]);
    let outcome = |e: &proto::LedgerEntry| e.outcome();
    assert!(
        all.iter()
            .any(|e| outcome(e) == proto::EntryOutcome::Denied)
    );
    assert!(
        all.iter()
            .any(|e| outcome(e) == proto::EntryOutcome::Invalid)
    );
    // Decoded in full: the tax bureau's first entry.
    let first = &all[0];
    assert_eq!(first.caller, TAX_A);
    assert_eq!(first.subject, f.s1);
    assert_eq!(first.purpose, "tax-administration");
    assert_eq!(first.requested_fields, vec!["registration.*"]);
    assert_eq!(first.leaf_hash, f.tax_receipt.leaf_hash);
    assert_eq!(first.time_ms, now_ms());
    assert_eq!(first.query_id.len(), 16);
    assert_eq!(first.caller_cert_sha256.len(), 32);
    assert_eq!(first.response_sha256, f.tax_receipt.result_sha256);
    assert!(!first.decisions.is_empty());
    let denied = all
        .iter()
        .find(|e| outcome(e) == proto::EntryOutcome::Denied)
        .unwrap();
    assert!(!denied.reason.is_empty());

    type Check = (
        proto::ListEntriesRequest,
        Box<dyn Fn(&proto::LedgerEntry) -> bool>,
    );
    let checks: Vec<Check> = vec![
        (
            proto::ListEntriesRequest {
                caller: TAX_A.into(),
                ..Default::default()
            },
            Box::new(|e| e.caller == TAX_A),
        ),
        (
            proto::ListEntriesRequest {
                caller: TAX_B.into(),
                ..Default::default()
            },
            Box::new(|e| e.caller == TAX_B),
        ),
        (
            proto::ListEntriesRequest {
                subject: f.s1.clone(),
                ..Default::default()
            },
            Box::new({
                let s1 = f.s1.clone();
                move |e| e.subject == s1
            }),
        ),
        (
            proto::ListEntriesRequest {
                purpose: "enforcement".into(),
                ..Default::default()
            },
            Box::new(|e| e.purpose == "enforcement"),
        ),
        (
            proto::ListEntriesRequest {
                outcome: proto::EntryOutcome::Denied.into(),
                ..Default::default()
            },
            Box::new(|e| e.outcome() == proto::EntryOutcome::Denied),
        ),
        (
            proto::ListEntriesRequest {
                caller: COURT_A.into(),
                subject: f.s2.clone(),
                purpose: "enforcement".into(),
                ..Default::default()
            },
            Box::new({
                let s2 = f.s2.clone();
                move |e| e.caller == COURT_A && e.subject == s2 && e.purpose == "enforcement"
            }),
        ),
        (
            proto::ListEntriesRequest {
                from_ms: Some(now_ms()),
                until_ms: Some(now_ms() + 1),
                ..Default::default()
            },
            Box::new(|_| true),
        ),
        (
            proto::ListEntriesRequest {
                from_ms: Some(now_ms() + 1),
                ..Default::default()
            },
            Box::new(|_| false),
        ),
        (
            proto::ListEntriesRequest {
                until_ms: Some(now_ms()),
                ..Default::default()
            },
            Box::new(|_| false),
        ),
    ];
    for (request, matches) in checks {
        let expected: Vec<u64> = all.iter().filter(|e| matches(e)).map(|e| e.seq).collect();
        let got = c
            .list_entries(request.clone())
            .await
            .unwrap()
            .into_inner()
            .entries;
        assert_eq!(seqs(&got), expected, "{request:?}");
    }
    let tax_a = c
        .list_entries(proto::ListEntriesRequest {
            caller: TAX_A.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tax_a.entries.len(), 2, "a query and a denied one");

    // Paging: pages of two chain to the whole log.
    let mut after = None;
    let mut paged = Vec::new();
    loop {
        let page = c
            .list_entries(proto::ListEntriesRequest {
                after_seq: after,
                limit: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        paged.extend(seqs(&page.entries));
        match page.next_after_seq {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(paged, seqs(&all));

    // Bad filters name the field.
    for (request, field) in [
        (
            proto::ListEntriesRequest {
                caller: "tax".into(),
                ..Default::default()
            },
            "caller: ",
        ),
        (
            proto::ListEntriesRequest {
                limit: 1001,
                ..Default::default()
            },
            "limit: ",
        ),
        (
            proto::ListEntriesRequest {
                from_ms: Some(5),
                until_ms: Some(5),
                ..Default::default()
            },
            "until_ms: ",
        ),
        (
            proto::ListEntriesRequest {
                outcome: 99,
                ..Default::default()
            },
            "outcome: ",
        ),
        (
            proto::ListEntriesRequest {
                subject: "9".repeat(301),
                ..Default::default()
            },
            "subject: ",
        ),
    ] {
        let status = c.list_entries(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }
    f.node.shutdown().await;
}

/// An entry whose stored caller column was changed in the database (to pass it off as another
/// department's) is never listed under either: the listing is refused with DATA_LOSS naming
/// the entry and the column.
#[tokio::test]
async fn a_listing_refuses_an_entry_whose_stored_caller_was_changed() {
    let f = fixture().await;
    let mut c = officer(&f.pki, &f.node).await;
    let store = f.node.state().store().clone();
    sqlx::query::<sqlx::Any>("UPDATE ledger_entries SET caller = $1 WHERE seq = 0")
        .bind(COURT_A)
        .execute(store.pool())
        .await
        .unwrap();
    for request in [
        proto::ListEntriesRequest::default(),
        proto::ListEntriesRequest {
            caller: COURT_A.into(),
            ..Default::default()
        },
    ] {
        let status = c.list_entries(request.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::DataLoss, "{request:?}: {status:?}");
        assert!(
            status.message().starts_with("entry 0: ") && status.message().contains("`caller`"),
            "{status:?}"
        );
    }
    // Put back, the log lists again.
    sqlx::query::<sqlx::Any>("UPDATE ledger_entries SET caller = $1 WHERE seq = 0")
        .bind(TAX_A)
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(all_entries(&mut c).await.len(), 5);
    f.node.shutdown().await;
}

#[tokio::test]
async fn a_department_proves_its_own_receipt_and_nothing_else() {
    let f = fixture().await;
    let pinned = key::read_public_key(&f.pki.layout.ledger_pub(REGION_A)).unwrap();
    for (region, receipt) in [(REGION_A, &f.tax_receipt), (REGION_B, &f.tax_b_receipt)] {
        let mut tax = review_as(&f.pki, &f.node, region, Kind::Dept, "tax").await;
        let sth = tax
            .get_signed_tree_head(proto::GetSignedTreeHeadRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(sth.public_key, pinned, "the node's published ledger key");
        assert!(
            sth.tree_size > receipt.sequence,
            "the head covers the receipt"
        );
        let signed = SignedTreeHead {
            head: TreeHead {
                tree_size: sth.tree_size,
                root_hash: hash(&sth.root_hash),
                timestamp_ms: sth.timestamp_ms,
            },
            key_id: hash(&sth.key_id),
            signature: sth.signature.as_slice().try_into().unwrap(),
        };
        signed
            .verify(&pinned)
            .expect("tree head signed by the node");

        let proof = tax
            .get_inclusion_proof(proto::GetInclusionProofRequest {
                seq: receipt.sequence,
                tree_size: sth.tree_size,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(proof.leaf_hash, receipt.leaf_hash);
        let path: Vec<merkle::Hash> = proof.audit_path.iter().map(|h| hash(h)).collect();
        merkle::verify_inclusion(
            receipt.sequence,
            sth.tree_size,
            &hash(&receipt.leaf_hash),
            &path,
            &signed.head.root_hash,
        )
        .expect("the receipt is in the signed tree");

        // Another caller's entry: refused, and the refusal says nothing about it.
        let status = tax
            .get_inclusion_proof(proto::GetInclusionProofRequest {
                seq: f.court_receipt.sequence,
                tree_size: sth.tree_size,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        for secret in [COURT_A, f.s2.as_str(), "enforcement"] {
            assert!(!status.message().contains(secret), "{status:?}");
        }
    }
    // Region B's tax bureau is a different caller from region A's: A's receipt is not B's.
    let mut tax_b = review_as(&f.pki, &f.node, REGION_B, Kind::Dept, "tax").await;
    let status = tax_b
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            seq: f.tax_receipt.sequence,
            tree_size: 5,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Each probe of another caller's entry is on record for the officers, by its caller.
    let mut c = officer(&f.pki, &f.node).await;
    let probes: Vec<String> = all_entries(&mut c)
        .await
        .into_iter()
        .filter(|e| {
            e.outcome() == proto::EntryOutcome::Denied
                && e.reason
                    == "credit.v1.LedgerReview/GetInclusionProof: seq: departments may only \
                        prove their own entries"
        })
        .map(|e| e.caller)
        .collect();
    assert_eq!(
        probes,
        [
            TAX_A,
            "spiffe://region-b.credit.test/dept/tax",
            "spiffe://region-b.credit.test/dept/tax"
        ]
    );

    // Out-of-range arguments name the field.
    for (seq, tree_size, field) in [
        (99, 100, "seq: "),
        (3, 3, "tree_size: "),
        (1, 99, "tree_size: "),
    ] {
        let status = c
            .get_inclusion_proof(proto::GetInclusionProofRequest { seq, tree_size })
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), status.message().starts_with(field)),
            (Code::InvalidArgument, true),
            "{status:?}"
        );
    }
    f.node.shutdown().await;
}

#[tokio::test]
async fn consistency_proofs_verify_between_two_tree_heads() {
    let f = fixture().await;
    let mut c = officer(&f.pki, &f.node).await;
    let older = c
        .get_signed_tree_head(proto::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    for n in 0..6u64 {
        let subject = Uscc::from_seed(1000 + n * 7919).to_string();
        query(
            &f.pki,
            &f.node,
            REGION_A,
            "court",
            ask(&subject, "enforcement"),
        )
        .await;
    }
    let newer = c
        .get_signed_tree_head(proto::GetSignedTreeHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((older.tree_size, newer.tree_size), (5, 11));
    let proof = c
        .get_consistency_proof(proto::GetConsistencyProofRequest {
            first: older.tree_size,
            second: newer.tree_size,
        })
        .await
        .unwrap()
        .into_inner();
    let path: Vec<merkle::Hash> = proof.proof.iter().map(|h| hash(h)).collect();
    merkle::verify_consistency(
        older.tree_size,
        newer.tree_size,
        &hash(&older.root_hash),
        &hash(&newer.root_hash),
        &path,
    )
    .expect("the newer tree extends the older one");

    for (first, second, field) in [(0, 5, "first: "), (6, 5, "second: "), (5, 12, "second: ")] {
        let status = c
            .get_consistency_proof(proto::GetConsistencyProofRequest { first, second })
            .await
            .unwrap_err();
        let (code, message) = code_and_message(&status);
        assert_eq!(code, Code::InvalidArgument, "{status:?}");
        assert!(message.starts_with(field), "{status:?}");
    }
    f.node.shutdown().await;
}

#[tokio::test]
async fn a_review_is_a_ledger_entry_and_the_ledger_still_verifies() {
    let f = fixture().await;
    let mut c = officer(&f.pki, &f.node).await;
    let receipt = c
        .record_review(proto::RecordReviewRequest {
            first_seq: 1,
            last_seq: 4,
            decision: proto::ReviewDecision::Flagged.into(),
            comment: "  court queries without a case on file; ask the court  ".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .receipt
        .unwrap();
    assert_eq!(receipt.seq, 5);

    let reviews = c
        .list_entries(proto::ListEntriesRequest {
            outcome: proto::EntryOutcome::Review.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(seqs(&reviews), vec![5]);
    let review = &reviews[0];
    assert_eq!(
        review.caller,
        "spiffe://region-a.credit.test/officer/auditor"
    );
    assert_eq!(review.leaf_hash, receipt.leaf_hash);
    assert_eq!(
        review.review,
        Some(proto::Review {
            first_seq: 1,
            last_seq: 4,
            decision: proto::ReviewDecision::Flagged.into(),
            comment: "court queries without a case on file; ask the court".into(),
        })
    );

    // Bad requests name the field and record nothing.
    let request = |first_seq, last_seq, decision: proto::ReviewDecision, comment: &str| {
        proto::RecordReviewRequest {
            first_seq,
            last_seq,
            decision: decision.into(),
            comment: comment.into(),
        }
    };
    use proto::ReviewDecision::{Accepted, Unspecified};
    for (req, field) in [
        (
            request(0, 6, Accepted, "ok"),
            "last_seq: no entry 6; the log has 6 entries",
        ),
        (request(7, 9, Accepted, "ok"), "first_seq: no entry 7"),
        (request(3, 2, Accepted, "ok"), "last_seq: "),
        (request(0, 0, Unspecified, "ok"), "decision: "),
        (request(0, 0, Accepted, "   "), "comment: required"),
        (
            request(0, 0, Accepted, &"x".repeat(1001)),
            "comment: at most",
        ),
    ] {
        let status = c.record_review(req).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }
    assert_eq!(all_entries(&mut c).await.len(), 6);

    let store = f.node.state().store().clone();
    let public_key = f.node.state().ledger().public_key().to_vec();
    f.node.state().ledger().sign_now().await.unwrap();
    let report = audit::verify_store(&store, &public_key, |_| {})
        .await
        .expect("the whole ledger verifies");
    assert_eq!(report.entries, 6);
    f.node.shutdown().await;
}

#[tokio::test]
async fn lifting_a_suspension_reviews_its_alert_and_lets_the_caller_back() {
    let f = fixture().await;
    let state = f.node.state();
    // An enumeration alert against region A's tax bureau, recorded as the query path does.
    let alert = state
        .ledger()
        .append(Entry {
            seq: 0,
            time_ms: now_ms(),
            query_id: [7; 16],
            caller: TAX_A.into(),
            caller_cert_sha256: [0; 32],
            on_behalf_of: None,
            purpose: "tax-administration".into(),
            basis: String::new(),
            subject: String::new(),
            requested_fields: Vec::new(),
            decisions: Vec::new(),
            outcome: Outcome::Alert {
                reason: "sequential identifiers".into(),
            },
            response_sha256: [0; 32],
            forwarded: None,
        })
        .await
        .unwrap();
    state
        .guard()
        .suspend(&Suspension {
            caller: TAX_A.into(),
            since_ms: now_ms(),
            alert_seq: alert.seq,
            reason: "sequential identifiers".into(),
        })
        .await
        .unwrap();
    let s3 = Uscc::from_seed(777).to_string();
    let mut tax =
        CreditQueryClient::new(channel(&f.pki, &f.node, REGION_A, Kind::Dept, "tax").await);
    let refused = tax.query(ask(&s3, "tax-administration")).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("suspended"), "{refused:?}");

    let mut c = officer(&f.pki, &f.node).await;
    let listed = c
        .list_suspensions(proto::ListSuspensionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .suspensions;
    assert_eq!(
        listed,
        vec![proto::Suspension {
            caller: TAX_A.into(),
            since_ms: now_ms(),
            alert_seq: alert.seq,
            reason: "sequential identifiers".into(),
        }]
    );

    for (caller, comment, field) in [("tax", "ok", "caller: "), (TAX_A, "", "comment: required")] {
        let status = c
            .lift_suspension(proto::LiftSuspensionRequest {
                caller: caller.into(),
                comment: comment.into(),
                alert_seq: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().starts_with(field), "{status:?}");
    }

    // A lifting that names another alert than the one the suspension rests on (the officer
    // reviewed an older one) lifts nothing and records nothing.
    let before = all_entries(&mut c).await.len();
    let status = c
        .lift_suspension(proto::LiftSuspensionRequest {
            caller: TAX_A.into(),
            comment: "audit case 2026-17: legitimate bulk check".into(),
            alert_seq: Some(alert.seq + 1),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(
        status.message(),
        format!(
            "alert_seq: the caller's suspension now rests on alert entry {}, not {}; nothing \
             was lifted or recorded: review the current alert first",
            alert.seq,
            alert.seq + 1
        )
    );
    assert_eq!(all_entries(&mut c).await.len(), before, "nothing recorded");
    assert!(state.guard().suspension(TAX_A).await.unwrap().is_some());

    let lifted = c
        .lift_suspension(proto::LiftSuspensionRequest {
            caller: TAX_A.into(),
            comment: "audit case 2026-17: legitimate bulk check".into(),
            alert_seq: Some(alert.seq),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lifted.lifted.as_ref(), listed.first());
    let receipt = lifted.receipt.unwrap();
    let entries = all_entries(&mut c).await;
    let review = entries.iter().find(|e| e.seq == receipt.seq).unwrap();
    assert_eq!(review.outcome(), proto::EntryOutcome::Review);
    let detail = review.review.as_ref().unwrap();
    assert_eq!(
        (detail.first_seq, detail.last_seq, detail.decision()),
        (alert.seq, alert.seq, proto::ReviewDecision::Accepted)
    );
    assert_eq!(
        detail.comment,
        format!("suspension of {TAX_A} lifted: audit case 2026-17: legitimate bulk check")
    );
    assert!(
        c.list_suspensions(proto::ListSuspensionsRequest {})
            .await
            .unwrap()
            .into_inner()
            .suspensions
            .is_empty()
    );
    assert!(state.guard().suspension(TAX_A).await.unwrap().is_none());
    tax.query(ask(&s3, "tax-administration"))
        .await
        .expect("the caller is served again");

    // Not suspended (any more, or ever): NOT_FOUND, and nothing recorded.
    let before = all_entries(&mut c).await.len();
    for caller in [TAX_A, COURT_A] {
        let status = c
            .lift_suspension(proto::LiftSuspensionRequest {
                caller: caller.into(),
                comment: "again".into(),
                alert_seq: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
    assert_eq!(all_entries(&mut c).await.len(), before);
    f.node.shutdown().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_credit-node");

/// `credit-node ledger <args> --endpoint .. --cert .. --key .. --ca ..` as `kind`/`id` of
/// region A.
fn ledger_cli(
    pki: &TestPki,
    node: &RunningNode,
    kind: Kind,
    id: &str,
    args: &[&str],
) -> std::process::Output {
    let (cert, key) = pki.identity(REGION_A, kind, id);
    let ca = pki.layout.ca_cert(REGION_A);
    let mut command = std::process::Command::new(BIN);
    command.arg("ledger").args(args);
    command
        .arg("--endpoint")
        .arg(endpoint(node))
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .arg("--ca")
        .arg(ca);
    command.output().expect("run credit-node")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// Not a tokio test: the binary runs while the node serves on this runtime's worker threads.
#[test]
fn ledger_review_suspensions_and_lift_commands() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let pki = TestPki::new();
    let node = runtime.block_on(common::start_with_clock(
        &pki.write_config(REGION_A),
        clock(),
    ));
    let subject = Uscc::from_seed(42).to_string();
    runtime.block_on(async {
        query(
            &pki,
            &node,
            REGION_A,
            "tax",
            ask(&subject, "tax-administration"),
        )
        .await
        .expect("answered");
        query(&pki, &node, REGION_A, "court", ask(&subject, "enforcement"))
            .await
            .expect("answered");
    });

    let out = ledger_cli(
        &pki,
        &node,
        Kind::Officer,
        "auditor",
        &[
            "review",
            "--seq",
            "0",
            "--decision",
            "flagged",
            "--comment",
            "no case number on file",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let receipt: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON receipt");
    assert_eq!(receipt["seq"], 2);
    assert_eq!(receipt["decision"], "flagged");
    assert_eq!(
        (receipt["first_seq"].clone(), receipt["last_seq"].clone()),
        (0.into(), 0.into())
    );
    assert_eq!(receipt["leaf_hash"].as_str().map(str::len), Some(64));

    let out = ledger_cli(
        &pki,
        &node,
        Kind::Officer,
        "auditor",
        &[
            "review",
            "--from",
            "0",
            "--to",
            "2",
            "--decision",
            "accepted",
            "--comment",
            "fine",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!(
            "review recorded: entries 0..=2 accepted, as ledger entry 3 (leaf hash {})",
            receipt_hash(&runtime, &node, 3)
        )
    );

    // A range that does not exist: bad input, exit 2, the field named.
    let out = ledger_cli(
        &pki,
        &node,
        Kind::Officer,
        "auditor",
        &[
            "review",
            "--from",
            "1",
            "--to",
            "40",
            "--decision",
            "referred",
            "--comment",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("last_seq: no entry 40"),
        "{}",
        text(&out.stderr)
    );
    // Both a single entry and a range: refused by the argument parser.
    let out = ledger_cli(
        &pki,
        &node,
        Kind::Officer,
        "auditor",
        &[
            "review",
            "--seq",
            "1",
            "--from",
            "1",
            "--to",
            "2",
            "--decision",
            "accepted",
            "--comment",
            "x",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    // A department is refused: exit 1, nothing on stdout.
    let out = ledger_cli(
        &pki,
        &node,
        Kind::Dept,
        "tax",
        &[
            "review",
            "--seq",
            "0",
            "--decision",
            "accepted",
            "--comment",
            "mine",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("PERMISSION_DENIED"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    let out = ledger_cli(&pki, &node, Kind::Officer, "auditor", &["suspensions"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "no caller is suspended");
    runtime.block_on(async {
        node.state()
            .guard()
            .suspend(&Suspension {
                caller: TAX_A.into(),
                since_ms: now_ms(),
                alert_seq: 1,
                reason: "sequential identifiers".into(),
            })
            .await
            .unwrap();
    });
    let out = ledger_cli(
        &pki,
        &node,
        Kind::Officer,
        "auditor",
        &["suspensions", "--json"],
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON line");
    assert_eq!(listed["caller"], TAX_A);
    assert_eq!(listed["alert_seq"], 1);

    // Naming another alert than the suspension's: exit 1, nothing lifted or recorded.
    let lift = |alert: &str| {
        ledger_cli(
            &pki,
            &node,
            Kind::Officer,
            "auditor",
            &[
                "lift",
                "--caller",
                TAX_A,
                "--comment",
                "checked with the bureau",
                "--alert-seq",
                alert,
                "--json",
            ],
        )
    };
    let out = lift("3");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "FAILED_PRECONDITION: alert_seq: the caller's suspension now rests on alert entry 1, not 3"
        ),
        "{}",
        text(&out.stderr)
    );
    let out = lift("1");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lifted: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON receipt");
    // Entry 4 is the department's refused review, on record.
    assert_eq!(
        (lifted["seq"].clone(), lifted["alert_seq"].clone()),
        (5.into(), 1.into())
    );
    let out = ledger_cli(
        &pki,
        &node,
        Kind::Officer,
        "auditor",
        &["lift", "--caller", TAX_A, "--comment", "again"],
    );
    assert_eq!(out.status.code(), Some(1), "not suspended any more");
    assert!(
        text(&out.stderr).contains("NOT_FOUND: caller: not suspended"),
        "{}",
        text(&out.stderr)
    );

    runtime.block_on(node.shutdown());
}

/// The leaf hash of entry `seq`, hex, read in-process.
fn receipt_hash(runtime: &tokio::runtime::Runtime, node: &RunningNode, seq: u64) -> String {
    let page = runtime
        .block_on(node.state().ledger().entries(
            &credit_node::ledger::EntryFilter::default(),
            credit_node::ledger::Page {
                after: seq.checked_sub(1),
                limit: 1,
            },
        ))
        .unwrap();
    credit_node::ledger::hex::encode(&page.entries[0].leaf_hash)
}

#[tokio::test]
async fn reflection_lists_the_ledger_review_service() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let pki = TestPki::new();
    let node = pki.start_node(REGION_A).await;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let channel = channel(&pki, &node, REGION_A, Kind::Officer, "auditor").await;
    let response = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner()
        .message()
        .await
        .expect("message")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "credit.v1.LedgerReview"),
        "{list:?}"
    );
    node.shutdown().await;
}
