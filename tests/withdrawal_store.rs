//! Withdrawals in the store (migration 5), on SQLite and on PostgreSQL alike: restorations and
//! removals from lists mark what they withdraw, and recipients page through the marks.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use credit_node::{
    records::{Designation, Record, Restoration, Withdrawal, WithdrawalReason},
    store::{Store, withdrawals::After},
};
use time::macros::date;

const SUBJECT: &str = "91110000100000000X";

fn penalty(number: u32) -> Record {
    common::penalty_record(SUBJECT, number)
}

fn listing(number: u32) -> Record {
    let mut r = penalty(number);
    r.item = "serious-untrustworthy".into();
    r.designation = Some(Designation {
        designated_on: date!(2026 - 05 - 02),
        removal_conditions: "履行完毕".into(),
        removed_on: None,
        removal_basis: None,
    });
    r
}

use common::demo_subject_types as types;

const ALL: &[&str] = &["admin-penalty", "serious-untrustworthy"];

async fn all(store: &Store, items: &[&str], since_ms: i64) -> Vec<Withdrawal> {
    store
        .withdrawals(items, since_ms, None, 1000)
        .await
        .unwrap()
}

/// Every withdrawal of `items`, a page of `limit` at a time, each page going on from the last.
async fn paged(store: &Store, items: &[&str], limit: u32) -> Vec<Withdrawal> {
    let mut out: Vec<Withdrawal> = Vec::new();
    loop {
        let after = out.last().map(|w| After {
            withdrawn_ms: w.withdrawn_ms,
            key_prefix: w.key[..16].try_into().unwrap(),
        });
        let page = store.withdrawals(items, 0, after, limit).await.unwrap();
        assert!(page.len() <= limit as usize);
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

#[tokio::test]
async fn restorations_and_removals_are_withdrawals_at_the_nodes_time() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        // Ingested restored already: never shared, so never withdrawn.
        let mut restored_at_ingest = penalty(9);
        restored_at_ingest.restoration = Some(Restoration {
            on: date!(2026 - 06 - 01),
            basis: "修复决定".into(),
        });
        let batch = [penalty(1), penalty(2), listing(3), restored_at_ingest];
        store.insert_records(&batch, types(), 1).await.unwrap();
        assert!(all(&store, ALL, 0).await.is_empty(), "{engine}");

        assert!(
            store
                .restore_record(&penalty(1).key(), date!(2026 - 09 - 01), "修复决定", 100)
                .await
                .unwrap()
        );
        let removed = store
            .remove_from_list(
                SUBJECT,
                "serious-untrustworthy",
                date!(2026 - 10 - 01),
                "移出决定",
                200,
            )
            .await
            .unwrap();
        assert_eq!(removed, 1, "{engine}");
        // Restored after its removal: the removal ended the sharing, and stays the withdrawal.
        assert!(
            store
                .restore_record(&listing(3).key(), date!(2026 - 10 - 02), "修复决定", 300)
                .await
                .unwrap()
        );
        let expected = vec![
            Withdrawal {
                key: penalty(1).key(),
                item: "admin-penalty".into(),
                withdrawn_ms: 100,
                reason: WithdrawalReason::Restored,
                on: date!(2026 - 09 - 01),
            },
            Withdrawal {
                key: listing(3).key(),
                item: "serious-untrustworthy".into(),
                withdrawn_ms: 200,
                reason: WithdrawalReason::RemovedFromList,
                on: date!(2026 - 10 - 01),
            },
        ];
        assert_eq!(all(&store, ALL, 0).await, expected, "{engine}");
        // Only the items asked for; from `since_ms` on, inclusive.
        assert_eq!(
            all(&store, &["serious-untrustworthy", "registration"], 0).await,
            expected[1..],
            "{engine}"
        );
        assert_eq!(all(&store, ALL, 101).await, expected[1..], "{engine}");
        assert_eq!(all(&store, ALL, 200).await, expected[1..], "{engine}");
        assert!(all(&store, ALL, 201).await.is_empty(), "{engine}");
        assert!(all(&store, &[], 0).await.is_empty(), "{engine}");
        store.close().await;
    }
}

/// Withdrawals at one and the same millisecond are ordered by key, so a page that ends among
/// them goes on with the next, and every one is listed exactly once.
#[tokio::test]
async fn pages_list_every_withdrawal_once_also_within_one_millisecond() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let records: Vec<Record> = (1..=7).map(penalty).collect();
        store.insert_records(&records, types(), 1).await.unwrap();
        for (i, r) in records.iter().enumerate() {
            // Three at 10, four at 20.
            let now = if i < 3 { 10 } else { 20 };
            store
                .restore_record(&r.key(), date!(2026 - 09 - 01), "修复决定", now)
                .await
                .unwrap();
        }
        let whole = all(&store, ALL, 0).await;
        assert_eq!(whole.len(), 7, "{engine}");
        let order: Vec<(i64, [u8; 32])> = whole.iter().map(|w| (w.withdrawn_ms, w.key)).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "{engine}: by time, then key");
        for limit in [1, 2, 3, 7] {
            assert_eq!(
                paged(&store, ALL, limit).await,
                whole,
                "{engine}, limit {limit}"
            );
        }
        store.close().await;
    }
}

/// A store from before migration 5 gains the columns with every existing record unwithdrawn,
/// already restored or not: nothing is announced for changes made before the node kept track.
#[tokio::test]
async fn migration_5_leaves_existing_records_unwithdrawn() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        store
            .insert_records(&[penalty(1), penalty(2)], types(), 1)
            .await
            .unwrap();
        store
            .restore_record(&penalty(1).key(), date!(2026 - 09 - 01), "修复决定", 5)
            .await
            .unwrap();
        // Back to the schema of migration 4, keeping the restoration made under it.
        for sql in [
            "DROP INDEX records_by_withdrawal",
            "ALTER TABLE records DROP COLUMN withdrawn_by",
            "ALTER TABLE records DROP COLUMN withdrawn_ms",
            "DELETE FROM _sqlx_migrations WHERE version = 5",
        ] {
            sqlx::query::<sqlx::Any>(sql)
                .execute(store.pool())
                .await
                .unwrap_or_else(|e| panic!("{engine}: {sql}: {e}"));
        }
        let url = match engine {
            "sqlite" => format!("sqlite://{}", dir.path().join("node.db").display()),
            _ => store_url(&store).await,
        };
        store.close().await;

        let store = Store::open(&url).await.unwrap();
        assert!(all(&store, ALL, 0).await.is_empty(), "{engine}");
        let nulls: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM records WHERE withdrawn_ms IS NULL AND withdrawn_by IS NULL",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(nulls, 2, "{engine}");
        // The store works on as migrated: a restoration now is a withdrawal.
        store
            .restore_record(&penalty(2).key(), date!(2026 - 09 - 02), "修复决定", 7)
            .await
            .unwrap();
        let listed = all(&store, ALL, 0).await;
        assert_eq!(listed.len(), 1, "{engine}");
        assert_eq!(listed[0].key, penalty(2).key(), "{engine}");
        store.close().await;
    }
}

/// The URL of the PostgreSQL database `store` is connected to.
async fn store_url(store: &Store) -> String {
    let name: String = sqlx::query_scalar("SELECT current_database()::TEXT")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").unwrap();
    let cut = base.rfind('/').unwrap();
    format!("{}/{name}", &base[..cut])
}
