//! The distinct-subject quota in the store, on SQLite and on PostgreSQL alike: what a charge
//! counts, what it refuses, and that a refused charge writes nothing, both far from the quota
//! (counted without reading first) and near it (each charge all or nothing, in order).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use credit_node::{
    harvest::{Charge, QuotaCharge, quota},
    store::Store,
};
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
    let outcomes = quota::charge_all(&mut tx, &refs).await.unwrap();
    tx.commit().await.unwrap();
    outcomes
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

        // A suspended caller is charged nothing.
        store
            .pool()
            .execute(
                "INSERT INTO suspensions (caller, since_ms, alert_seq, reason) \
                 VALUES ('spiffe://region-a.credit.test/dept/tax', 7, 0, 'enumeration')",
            )
            .await
            .unwrap();
        let refused = charge_all(&store, &[charge(2, &["g"], 5)]).await;
        assert_eq!(refused, vec![Charge::Suspended { since_ms: 7 }], "{engine}");
        assert_eq!(
            state(&store).await,
            vec![(2, 1, 1)],
            "{engine}: g was not counted"
        );
        store.close().await;
    }
}
