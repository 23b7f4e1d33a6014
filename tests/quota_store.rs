//! The distinct-subject quota in the store, on SQLite and on PostgreSQL alike: what a charge
//! counts, what it refuses, and that a refused charge writes nothing, both far from the quota
//! (counted without reading first) and near it (each charge all or nothing, in order); and the
//! same through the ledger's writer, which charges presuming the charge fits and
//! falls back to charging exactly when the store says otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;
// The benchmarks' typical entry, so that tests and benchmarks append the same thing.
#[path = "../benches/common/mod.rs"]
mod fixtures;

use credit_node::{
    harvest::{Charge, QuotaCharge, quota},
    ledger::{Ledger, LedgerSettings, OutcomeKind, audit, entry::Entry},
    store::Store,
};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sqlx::{Acquire, Any, Executor, Row};

const TAX: &str = "spiffe://region-a.credit.test/dept/tax";

fn charge(window: i64, subjects: &[&str], limit: u64) -> QuotaCharge {
    QuotaCharge {
        caller: TAX.into(),
        window,
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        limit,
        raised_suspension: false,
    }
}

/// Charges `charges` in one transaction, as the ledger writer does.
async fn charge_all(store: &Store, charges: &[QuotaCharge]) -> Vec<Charge> {
    let mut conn = store.pool().acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let refs: Vec<&QuotaCharge> = charges.iter().collect();
    let outcomes = quota::charge_all(&mut tx, &refs, None, store.deadline())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    outcomes
}

/// Suspends the caller in the store, since 7 ms.
async fn suspend_since_7(store: &Store) {
    store
        .pool()
        .execute(
            "INSERT INTO suspensions (caller, since_ms, alert_seq, reason) \
             VALUES ('spiffe://region-a.credit.test/dept/tax', 7, 0, 'enumeration')",
        )
        .await
        .unwrap();
}

/// (window, subjects counted, usage row) of the caller.
async fn state(store: &Store) -> Vec<(i64, i64, i64)> {
    let rows = sqlx::query::<Any>(
        "SELECT u.window_id, (SELECT COUNT(*) FROM quota_subjects s \
         WHERE s.caller = u.caller AND s.window_id = u.window_id), u.used \
         FROM quota_usage u WHERE u.caller = $1 ORDER BY u.window_id",
    )
    .bind(TAX)
    .fetch_all(store.pool())
    .await
    .unwrap();
    rows.iter()
        .map(|r| (r.get::<i64, _>(0), r.get::<i64, _>(1), r.get::<i64, _>(2)))
        .collect()
}

/// (window, used) of the caller.
async fn usage(store: &Store) -> Vec<(i64, i64)> {
    state(store)
        .await
        .into_iter()
        .map(|(window, _, used)| (window, used))
        .collect()
}

#[tokio::test]
async fn charges_count_new_subjects_once_refuse_past_the_quota_and_drop_spent_windows() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        // Far from the quota: everything fits.
        let first = charge_all(
            &store,
            &[charge(1, &["a", "b"], 5), charge(1, &["b", "c"], 5)],
        )
        .await;
        assert_eq!(first, vec![Charge::Within; 2], "{engine}");
        assert_eq!(
            state(&store).await,
            vec![(1, 3, 3)],
            "{engine}: b counted once"
        );

        // Repeats cost nothing; a new subject is counted beside them.
        let again = charge_all(&store, &[charge(1, &["a", "c", "d"], 5)]).await;
        assert_eq!(again, vec![Charge::Within], "{engine}");
        assert_eq!(state(&store).await, vec![(1, 4, 4)], "{engine}");

        // Near the quota: each charge all or nothing, in order.
        let near = charge_all(
            &store,
            &[
                charge(1, &["e", "f"], 5),
                charge(1, &["e"], 5),
                charge(1, &["a"], 5),
            ],
        )
        .await;
        assert_eq!(
            near,
            vec![
                Charge::Exhausted { used: 4 },
                Charge::Within,
                Charge::Within
            ],
            "{engine}: two new subjects do not fit, one does, repeats always do"
        );
        assert_eq!(
            state(&store).await,
            vec![(1, 5, 5)],
            "{engine}: f was not counted"
        );

        // The next window starts from zero and drops the spent one.
        let next = charge_all(&store, &[charge(2, &["f"], 5)]).await;
        assert_eq!(next, vec![Charge::Within], "{engine}");
        assert_eq!(state(&store).await, vec![(2, 1, 1)], "{engine}");

        // A charge still for the spent window (its query read the clock just before the
        // window ended) is refused: reopening the window would count it from zero again.
        let late = charge_all(&store, &[charge(1, &["x", "y"], 5)]).await;
        assert_eq!(late, vec![Charge::Exhausted { used: 5 }], "{engine}");
        assert_eq!(
            state(&store).await,
            vec![(2, 1, 1)],
            "{engine}: window 1 stays closed"
        );

        // A suspended caller is charged nothing.
        suspend_since_7(&store).await;
        let refused = charge_all(&store, &[charge(2, &["g"], 5)]).await;
        assert_eq!(refused, vec![Charge::Suspended { since_ms: 7 }], "{engine}");
        assert_eq!(
            state(&store).await,
            vec![(2, 1, 1)],
            "{engine}: g was not counted"
        );
        // Its first charge of a new window is refused too, and still drops the spent window:
        // once the suspension is lifted, the usage row of this window exists, so a charge
        // presumed to fit (the ledger writer's) would not clean up again until the next one.
        let refused = charge_all(&store, &[charge(3, &["g"], 5)]).await;
        assert_eq!(refused, vec![Charge::Suspended { since_ms: 7 }], "{engine}");
        assert_eq!(
            state(&store).await,
            vec![(3, 0, 0)],
            "{engine}: window 2 is spent"
        );
        store.close().await;
    }
}

/// A granted query entry about `subject`, by the tax department (the benchmarks' entry).
fn granted_entry(subject: &str) -> Entry {
    let entry = fixtures::entry(0);
    assert_eq!(entry.caller, TAX);
    Entry {
        subject: subject.into(),
        ..entry
    }
}

/// The ledger over `store`, signed with the key of seed 1, at a fixed time.
async fn open_ledger(store: &Store) -> Ledger {
    let settings = LedgerSettings {
        sth_every_entries: 16,
        sth_interval_ms: 60_000,
        max_batch: 1024,
        lookup_every_ms: 0,
    };
    let key = Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
    Ledger::open(store.clone(), key, settings, || 1_790_000_000_000)
        .await
        .unwrap()
}

/// Appends one query's entry with its charge; the charge's outcome and the stored outcome of
/// the entry.
async fn append_charged(ledger: &Ledger, store: &Store, charge: QuotaCharge) -> (Charge, String) {
    let entry = granted_entry(&charge.subjects[0]);
    let (outcomes, receipts) = ledger
        .append_charged(
            vec![charge],
            vec![entry],
            Box::new(|c| format!("quota: {c:?}")),
        )
        .await
        .unwrap();
    assert_eq!(receipts.len(), 1);
    let [outcome] = outcomes[..] else {
        panic!("one outcome per charge: {outcomes:?}")
    };
    let seq = i64::try_from(receipts[0].seq).unwrap();
    let row = sqlx::query::<Any>("SELECT outcome FROM ledger_entries WHERE seq = $1")
        .bind(seq)
        .fetch_one(store.pool())
        .await
        .unwrap();
    (outcome, row.get(0))
}

#[tokio::test]
async fn charges_through_the_ledger_refuse_past_the_quota_and_suspended_callers_in_any_batch() {
    let dir = tempfile::tempdir().unwrap();
    let key = || Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
    let granted = OutcomeKind::Granted.as_str();
    let denied = OutcomeKind::Denied.as_str();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open_ledger(&store).await;

        // The window's first charge opens the usage row; the next ones find it. The last asks
        // only about subjects counted by the one before (on SQLite, with their rows waiting).
        for (subjects, used) in [
            (&["a"][..], 1),
            (&["b", "c"], 3),
            (&["a", "b"], 3),
            (&["c", "b"], 3),
        ] {
            let (outcome, stored) = append_charged(&ledger, &store, charge(1, subjects, 4)).await;
            assert_eq!(
                (outcome, stored.as_str()),
                (Charge::Within, granted),
                "{engine}"
            );
            // On SQLite the writer writes the counted subjects' rows later, in bulk: the
            // count is exact before they are (b is not counted twice).
            assert_eq!(usage(&store).await, vec![(1, used)], "{engine}");
        }
        ledger.sign_now().await.unwrap();
        assert_eq!(
            state(&store).await,
            vec![(1, 3, 3)],
            "{engine}: every counted subject's row is written by a tree head"
        );
        // Past the quota: refused, recorded as a refusal, nothing counted.
        let (outcome, stored) = append_charged(&ledger, &store, charge(1, &["d", "e"], 4)).await;
        assert_eq!(
            (outcome, stored.as_str()),
            (Charge::Exhausted { used: 3 }, denied),
            "{engine}"
        );
        assert_eq!(
            state(&store).await,
            vec![(1, 3, 3)],
            "{engine}: d, e not counted"
        );

        // Many at once, whatever batches they fall into: exactly the quota's worth of new
        // subjects is granted, and the count never overshoots.
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let (ledger, store) = (ledger.clone(), store.clone());
                tokio::spawn(async move {
                    let subject = format!("n{i:02}");
                    append_charged(&ledger, &store, charge(2, &[&subject], 5)).await
                })
            })
            .collect();
        let mut within = 0;
        for task in tasks {
            match task.await.unwrap() {
                (Charge::Within, stored) => {
                    assert_eq!(stored, granted, "{engine}");
                    within += 1;
                }
                (Charge::Exhausted { used: 5 }, stored) => assert_eq!(stored, denied, "{engine}"),
                other => panic!("{engine}: {other:?}"),
            }
        }
        assert_eq!(within, 5, "{engine}");
        assert_eq!(usage(&store).await, vec![(2, 5)], "{engine}");

        // Suspended in the store behind this writer's back (by another replica, say): refused,
        // nothing counted.
        suspend_since_7(&store).await;
        let (outcome, stored) = append_charged(&ledger, &store, charge(2, &["z"], 50)).await;
        assert_eq!(
            (outcome, stored.as_str()),
            (Charge::Suspended { since_ms: 7 }, denied),
            "{engine}"
        );
        assert_eq!(
            state(&store).await,
            vec![(2, 5, 5)],
            "{engine}: z not counted"
        );

        ledger.shutdown().await;
        assert_eq!(
            state(&store).await,
            vec![(2, 5, 5)],
            "{engine}: the rows are written at shutdown"
        );
        let public = key().public_key().as_ref().to_vec();
        let report = audit::verify_store(&store, &public, |_| {}).await.unwrap();
        assert_eq!(report.entries, 18, "{engine}: every query recorded once");
        store.close().await;
    }
}

/// The writer's waiting rows (SQLite) never outlive their window: a window's first charge drops
/// the spent window's rows, and those still waiting are dropped with them rather than written
/// back afterwards.
#[tokio::test]
async fn rows_of_a_spent_window_are_not_written_back() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open_ledger(&store).await;
        // The window's first charge opens its usage row; the second is presumed to fit, and on
        // SQLite its row waits in the writer.
        for subjects in [["a"], ["b"]] {
            let (outcome, _) = append_charged(&ledger, &store, charge(1, &subjects, 10)).await;
            assert_eq!(outcome, Charge::Within, "{engine}");
        }
        let (outcome, _) = append_charged(&ledger, &store, charge(2, &["c"], 10)).await;
        assert_eq!(outcome, Charge::Within, "{engine}");
        ledger.sign_now().await.unwrap();
        let rows: Vec<(i64, i64)> = sqlx::query::<Any>(
            "SELECT window_id, COUNT(*) FROM quota_subjects WHERE caller = $1 \
             GROUP BY window_id ORDER BY window_id",
        )
        .bind(TAX)
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        assert_eq!(rows, vec![(2, 1)], "{engine}: window 1 is spent");
        assert_eq!(state(&store).await, vec![(2, 1, 1)], "{engine}");
        ledger.shutdown().await;
        store.close().await;
    }
}

/// Near the quota the writer falls back to the exact charge, which must count the subjects
/// still waiting for their rows (SQLite) as counted: a repeat passes even when the query
/// batched with it does not fit.
#[tokio::test]
async fn near_the_quota_the_exact_charge_counts_waiting_subjects() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open_ledger(&store).await;
        // The quota (3) used up; on SQLite b and c wait in the writer.
        for subjects in [&["a"][..], &["b", "c"]] {
            let (outcome, _) = append_charged(&ledger, &store, charge(1, subjects, 3)).await;
            assert_eq!(outcome, Charge::Within, "{engine}");
        }
        // One batch (this test's runtime has one thread: both are queued before the writer
        // runs): presumed, b and d do not fit, so the batch is charged exactly.
        let (repeat, new) = tokio::join!(
            append_charged(&ledger, &store, charge(1, &["b"], 3)),
            append_charged(&ledger, &store, charge(1, &["d"], 3)),
        );
        assert_eq!(repeat.0, Charge::Within, "{engine}: b was counted");
        assert_eq!(new.0, Charge::Exhausted { used: 3 }, "{engine}");
        assert_eq!(usage(&store).await, vec![(1, 3)], "{engine}");
        ledger.shutdown().await;
        store.close().await;
    }
}

/// A relayed query's charges, as the node makes them: the caller's own, then the relay's.
fn relayed(subjects: &[&str], own: u64, relay: u64) -> Vec<QuotaCharge> {
    let relay_charge = QuotaCharge {
        caller: RELAY.into(),
        ..charge(1, subjects, relay)
    };
    vec![charge(1, subjects, own), relay_charge]
}

const RELAY: &str = "spiffe://region-b.credit.test/dept/samr";

/// The usage row of `caller` in window 1.
async fn used(store: &Store, caller: &str) -> Option<i64> {
    sqlx::query::<Any>("SELECT used FROM quota_usage WHERE caller = $1 AND window_id = 1")
        .bind(caller)
        .fetch_optional(store.pool())
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// A relayed query is charged to its caller and to its relay, in one transaction with its
/// entry: the relay's charge is made only when the caller's own fits (a department asking past
/// its own quota must not spend the quota its relay shares with the others), and either one
/// exhausted refuses the query on record.
#[tokio::test]
async fn a_relayed_query_spends_its_relays_quota_only_when_its_callers_own_fits() {
    let dir = tempfile::tempdir().unwrap();
    let denied = OutcomeKind::Denied.as_str();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open_ledger(&store).await;
        let append = |charges: Vec<QuotaCharge>| {
            let entry = granted_entry(&charges[0].subjects[0]);
            let reason = Box::new(|c: &[Charge]| format!("quota: {c:?}"));
            ledger.append_charged(charges, vec![entry], reason)
        };
        let (outcomes, _) = append(relayed(&["a"], 1, 2)).await.unwrap();
        assert_eq!(outcomes, vec![Charge::Within; 2], "{engine}");

        // Past the caller's own quota: refused there, and the relay's charge is not made.
        let (outcomes, receipts) = append(relayed(&["b"], 1, 2)).await.unwrap();
        assert_eq!(outcomes, vec![Charge::Exhausted { used: 1 }], "{engine}");
        assert_eq!(
            used(&store, RELAY).await,
            Some(1),
            "{engine}: b not counted"
        );
        let row = sqlx::query::<Any>("SELECT outcome FROM ledger_entries WHERE seq = $1")
            .bind(i64::try_from(receipts[0].seq).unwrap())
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>(0), denied, "{engine}");

        // Within the caller's own (a larger quota) but past the relay's: refused; the caller's
        // charge stays counted, which only ever tightens its own quota.
        let (outcomes, _) = append(relayed(&["c", "d"], 5, 2)).await.unwrap();
        assert_eq!(
            outcomes,
            vec![Charge::Within, Charge::Exhausted { used: 1 }],
            "{engine}"
        );
        assert_eq!(used(&store, RELAY).await, Some(1), "{engine}");
        assert_eq!(used(&store, TAX).await, Some(3), "{engine}");

        // Repeats of what both have counted cost neither anything.
        let (outcomes, _) = append(relayed(&["a"], 1, 2)).await.unwrap();
        assert_eq!(outcomes, vec![Charge::Within; 2], "{engine}");
        ledger.shutdown().await;
        let public = Ed25519KeyPair::from_seed_unchecked(&[1; 32])
            .unwrap()
            .public_key()
            .as_ref()
            .to_vec();
        let report = audit::verify_store(&store, &public, |_| {}).await.unwrap();
        assert_eq!(report.entries, 4, "{engine}: every query recorded once");
        store.close().await;
    }
}

fn suspension(alert_seq: u64) -> credit_node::harvest::Suspension {
    credit_node::harvest::Suspension {
        caller: TAX.into(),
        since_ms: 7 + alert_seq as i64,
        alert_seq,
        reason: format!("alert {alert_seq}"),
    }
}

/// `suspend` says whether it suspended the caller: a second alert's suspension (from this
/// replica or another) is not inserted, and the first one stands.
#[tokio::test]
async fn suspend_reports_whether_it_suspended_and_keeps_the_first() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let one = quota::QuotaStore::new(store.clone());
        let other = quota::QuotaStore::new(store.clone());
        assert!(one.suspend(&suspension(5)).await.unwrap(), "{engine}");
        assert!(!other.suspend(&suspension(9)).await.unwrap(), "{engine}");
        assert!(!one.suspend(&suspension(9)).await.unwrap(), "{engine}");
        assert_eq!(
            one.suspension(TAX).await.unwrap(),
            Some(suspension(5)),
            "{engine}"
        );
    }
}

/// Lifting removes only the suspension of the alert the officer's review names: once that one
/// is gone (lifted by someone else) and a newer alert suspended the caller again, lifting the
/// old one again removes nothing and the newer suspension stays until it is lifted by name.
#[tokio::test]
async fn lift_removes_only_the_suspension_of_the_named_alert() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let quota = quota::QuotaStore::new(store.clone());
        assert!(quota.suspend(&suspension(5)).await.unwrap(), "{engine}");
        assert!(quota.lift(TAX, 5).await.unwrap(), "{engine}");
        assert!(quota.suspend(&suspension(9)).await.unwrap(), "{engine}");

        assert!(
            !quota.lift(TAX, 5).await.unwrap(),
            "{engine}: nothing lifted"
        );
        assert_eq!(
            quota.suspension(TAX).await.unwrap(),
            Some(suspension(9)),
            "{engine}: the newer suspension stays"
        );
        assert_eq!(
            quota.check(TAX, 1, &["a"], 10),
            quota::Check::Suspended { since_ms: 16 },
            "{engine}: and holds on this replica"
        );
        assert!(quota.lift(TAX, 9).await.unwrap(), "{engine}");
        assert_eq!(quota.suspension(TAX).await.unwrap(), None, "{engine}");
    }
}
