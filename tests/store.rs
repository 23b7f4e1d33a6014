//! The store suite, run on SQLite and on PostgreSQL alike.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use credit_node::records::{Designation, Record};
use time::macros::date;

use common::{demo_subject_types as types, penalty_record as record};

const SUBJECT: &str = "91110000100000000X";
/// The items of the records these tests store.
const ITEMS: &[&str] = &["admin-penalty", "serious-untrustworthy"];

#[tokio::test]
async fn records_round_trip_and_reingest_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let mut listed = record(SUBJECT, 2);
        listed.item = "serious-untrustworthy".into();
        listed.designation = Some(Designation {
            designated_on: date!(2026 - 05 - 02),
            removal_conditions: "履行完毕".into(),
            removed_on: None,
            removal_basis: None,
        });
        let batch = vec![
            record(SUBJECT, 1),
            listed.clone(),
            record("110105194912310029", 3),
        ];
        let first = store.insert_records(&batch, types(), 1).await.unwrap();
        assert_eq!((first.inserted, first.already_present), (3, 0), "{engine}");
        let again = store.insert_records(&batch, types(), 2).await.unwrap();
        assert_eq!(
            (again.inserted, again.already_present),
            (0, 3),
            "{engine}: no duplicates"
        );

        let stored = store.records_of(SUBJECT, ITEMS).await.unwrap();
        assert_eq!(stored, vec![record(SUBJECT, 1), listed.clone()], "{engine}");
        // Only the items asked for are read.
        let listed_only = store
            .records_of(SUBJECT, &["serious-untrustworthy", "registration"])
            .await
            .unwrap();
        assert_eq!(listed_only, vec![listed], "{engine}");
        assert!(store.records_of(SUBJECT, &[]).await.unwrap().is_empty());
        assert!(store.subject_exists(SUBJECT).await.unwrap());
        assert!(!store.subject_exists("91110000100000001X").await.unwrap());

        let key = record(SUBJECT, 1).key();
        // A record id names the record by its key's first half (records::RecordIds).
        let prefix: [u8; 16] = key[..16].try_into().unwrap();
        let found = store.unrestored(&prefix).await.unwrap().expect("found");
        assert_eq!(
            (found.key, found.subject.as_str()),
            (key, SUBJECT),
            "{engine}"
        );
        assert_eq!(store.unrestored(&[0; 16]).await.unwrap(), None, "{engine}");
        assert!(
            store
                .restore_record(&key, date!(2026 - 09 - 01), "修复决定", 3)
                .await
                .unwrap(),
            "{engine}"
        );
        assert!(
            !store
                .restore_record(&[0; 32], date!(2026 - 09 - 01), "x", 3)
                .await
                .unwrap()
        );
        assert_eq!(
            store.unrestored(&prefix).await.unwrap(),
            None,
            "{engine}: restored already"
        );
        assert_eq!(
            store
                .remove_from_list(
                    SUBJECT,
                    "serious-untrustworthy",
                    date!(2026 - 10 - 01),
                    "移出决定",
                    4
                )
                .await
                .unwrap(),
            1
        );
        let stored = store.records_of(SUBJECT, ITEMS).await.unwrap();
        assert_eq!(
            stored[0].restoration.as_ref().map(|r| r.on),
            Some(date!(2026 - 09 - 01))
        );
        assert_eq!(
            stored[1].designation.as_ref().and_then(|d| d.removed_on),
            Some(date!(2026 - 10 - 01)),
            "{engine}"
        );
        store.close().await;
    }
}

/// A subject's kind comes from its item's subject type, not from its identifier's shape:
/// `91110000100000000X`, all digits and an X, is an organisation's code. A record of an item
/// the catalog does not have is refused, and nothing of its batch written.
#[tokio::test]
async fn subjects_are_stored_with_their_items_subject_type() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let person = "11010519491231002X";
        let mut debtor = record(person, 1);
        debtor.item = "dishonest-debtor".into();
        let batch = [record(SUBJECT, 1), debtor];
        store.insert_records(&batch, types(), 1).await.unwrap();
        let kind = |subject: &'static str| {
            let store = store.clone();
            async move {
                sqlx::query_scalar::<_, String>("SELECT kind FROM subjects WHERE id = $1")
                    .bind(subject)
                    .fetch_one(store.pool())
                    .await
                    .unwrap()
            }
        };
        assert_eq!(kind(SUBJECT).await, "legal_person", "{engine}");
        assert_eq!(kind(person).await, "natural_person", "{engine}");

        let other = "91110000100000002X";
        let mut unknown = record(other, 2);
        unknown.item = "no-such-item".into();
        let err = store
            .insert_records(&[record(other, 1), unknown], types(), 1)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no-such-item"), "{engine}: {err}");
        assert!(!store.subject_exists(other).await.unwrap(), "{engine}");
        store.close().await;
    }
}

#[tokio::test]
async fn a_batch_with_one_bad_row_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let mut batch: Vec<Record> = (0..1000).map(|n| record(SUBJECT, n)).collect();
        // The store itself refuses a record without a basis document, whatever the caller
        // validated: a CHECK constraint, so the whole transaction rolls back.
        batch[700].basis.kind.clear();
        assert!(
            store.insert_records(&batch, types(), 1).await.is_err(),
            "{engine}"
        );
        assert!(
            store.records_of(SUBJECT, ITEMS).await.unwrap().is_empty(),
            "{engine}: nothing written"
        );
        assert!(
            !store.subject_exists(SUBJECT).await.unwrap(),
            "{engine}: not even the subject"
        );
        store.close().await;
    }
}

/// An ingest of thousands of records goes to the store in several multi-row statements, each
/// bound while the one before runs: every row is counted once, and a bad row in a later
/// statement still undoes the earlier ones.
#[tokio::test]
async fn a_batch_of_several_statements_counts_every_row_once_and_stays_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let batch: Vec<Record> = (0..3000).map(|n| record(SUBJECT, n)).collect();
        let first = store
            .insert_records(&batch[..2500], types(), 1)
            .await
            .unwrap();
        assert_eq!(
            (first.inserted, first.already_present),
            (2500, 0),
            "{engine}"
        );
        let again = store.insert_records(&batch, types(), 2).await.unwrap();
        assert_eq!(
            (again.inserted, again.already_present),
            (500, 2500),
            "{engine}"
        );
        assert_eq!(
            store.records_of(SUBJECT, ITEMS).await.unwrap().len(),
            3000,
            "{engine}"
        );

        let other = "91110000100000002X";
        let mut bad: Vec<Record> = (0..2500).map(|n| record(other, n)).collect();
        // Rows go in key order, and the issuer is not part of the key: the row with the
        // largest key, its issuer cleared, fails the last statement.
        let last = (0..bad.len()).max_by_key(|&i| bad[i].key()).unwrap();
        bad[last].basis.issuer.clear();
        assert!(
            store.insert_records(&bad, types(), 3).await.is_err(),
            "{engine}"
        );
        assert!(
            store.records_of(other, ITEMS).await.unwrap().is_empty(),
            "{engine}: nothing of the failed batch"
        );
        store.close().await;
    }
}

/// A SQLite store from before the activity file (ledger and quota tables in the records file)
/// has its tables and rows moved on the next start, and the records file keeps no copy.
#[tokio::test]
async fn sqlite_moves_ledger_and_quota_tables_into_the_activity_file() {
    use sqlx::{Executor, Row};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("node.db").display());
    let tables_in = |schema: &str| {
        format!(
            "SELECT COUNT(*) FROM {schema}.sqlite_master WHERE type = 'table' \
             AND name IN ('ledger_entries', 'ledger_head', 'quota_usage', 'suspensions')"
        )
    };
    let count = |store: &credit_node::store::Store, sql: String| {
        let pool = store.pool().clone();
        async move {
            sqlx::query(&sql)
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<i64, _>(0)
        }
    };

    let store = credit_node::store::Store::open(&url).await.unwrap();
    assert!(dir.path().join("node.activity.db").exists());
    assert_eq!(count(&store, tables_in("main")).await, 0);
    assert_eq!(count(&store, tables_in("activity")).await, 4);
    // Rebuild the layout of before: every activity table back in the records file, with rows.
    let mut conn = store.pool().acquire().await.unwrap();
    conn.execute(
        "INSERT INTO suspensions (caller, since_ms, alert_seq, reason) \
         VALUES ('spiffe://a/dept/x', 1, 7, 'sequential identifiers')",
    )
    .await
    .unwrap();
    let mut column = async |sql: &str| -> Vec<String> {
        sqlx::query(sql)
            .fetch_all(&mut *conn)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    let ddl = column(
        "SELECT sql FROM activity.sqlite_master WHERE sql IS NOT NULL ORDER BY type = 'index'",
    )
    .await;
    let names = column("SELECT name FROM activity.sqlite_master WHERE type = 'table'").await;
    for sql in ddl {
        conn.execute(sql.as_str()).await.unwrap();
    }
    for name in &names {
        conn.execute(format!("INSERT INTO main.{name} SELECT * FROM activity.{name}").as_str())
            .await
            .unwrap();
        conn.execute(format!("DROP TABLE activity.{name}").as_str())
            .await
            .unwrap();
    }
    drop(conn);
    assert_eq!(count(&store, tables_in("main")).await, 4);
    store.close().await;

    let store = credit_node::store::Store::open(&url).await.unwrap();
    assert_eq!(count(&store, tables_in("main")).await, 0);
    assert_eq!(count(&store, tables_in("activity")).await, 4);
    let reason: String =
        sqlx::query("SELECT reason FROM suspensions WHERE caller = 'spiffe://a/dept/x'")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get(0);
    assert_eq!(reason, "sequential identifiers");
    assert_eq!(
        count(&store, "SELECT size FROM ledger_head WHERE id = 0".into()).await,
        0
    );
}

/// A fresh SQLite store in `dir`.
async fn sqlite_store(dir: &std::path::Path) -> credit_node::store::Store {
    credit_node::store::Store::open(&format!("sqlite://{}", dir.join("node.db").display()))
        .await
        .unwrap()
}

/// The SQLite connections are set up as ARCHITECTURE.md (`store`) describes: the bundled
/// SQLite compiled without the process-wide page-cache pool and memory statistics (options
/// from `.cargo/config.toml`), and the records file mapped. Either lost, a build still works
/// but every connection queues on a global mutex again.
#[tokio::test]
async fn sqlite_connections_share_no_global_mutex_and_map_the_records() {
    use sqlx::Row;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let options: Vec<String> = sqlx::query("PRAGMA compile_options")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    assert!(
        !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "{options:?}"
    );
    assert!(
        options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
        "{options:?}"
    );
    let mapped: i64 = sqlx::query("PRAGMA main.mmap_size")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(mapped, 1 << 30);
    store.close().await;
}

/// Reads that arrive together go to the database as one statement (`store::grouped_reads`):
/// each must still get exactly its own subject's records of its own items, whoever it was
/// grouped with, a subject asked twice with other items, and one the store does not have.
#[tokio::test]
async fn reads_at_once_each_get_their_own_subjects_records_of_their_own_items() {
    let dir = tempfile::tempdir().unwrap();
    let catalog =
        credit_node::catalog::Catalog::parse("demo.toml", credit_node::catalog::DEMO.as_bytes())
            .unwrap();
    let records: Vec<Record> =
        credit_node::gen_data::generate(&catalog, "samr", 60, 7, date!(2026 - 11 - 01)).collect();
    let mut subjects: Vec<&str> = records.iter().map(|r| r.subject.as_str()).collect();
    subjects.sort_unstable();
    subjects.dedup();
    subjects.push("91110000100000001Y"); // valid, and never stored
    let selections: [&[&str]; 4] = [
        &["registration"],
        &["admin-penalty", "dishonest-debtor"],
        &[
            "registration",
            "admin-penalty",
            "serious-untrustworthy",
            "tax-credit-rating",
        ],
        &["inspection-notes", "social-insurance-arrears"],
    ];
    // Every subject with every selection: 4 reads of each subject, interleaved.
    let asks: Vec<(&str, &[&str])> = selections
        .iter()
        .flat_map(|items| subjects.iter().map(move |s| (*s, *items)))
        .collect();
    let expected = |subject: &str, items: &[&str]| {
        let mut mine: Vec<Record> = records
            .iter()
            .filter(|r| r.subject == subject && items.contains(&r.item.as_str()))
            .cloned()
            .collect();
        mine.sort_by_key(Record::key);
        mine
    };
    for (engine, store) in common::test_stores(dir.path()).await {
        store
            .insert_records(&records, catalog.subject_types(), 1)
            .await
            .unwrap();
        let reads = asks.iter().map(|(s, items)| store.records_of(s, items));
        let answers = futures_util::future::join_all(reads).await;
        let mut found = 0;
        for ((subject, items), answer) in asks.iter().zip(answers) {
            let answer = answer.unwrap();
            // In item order, then by decision date, as one subject's read always was.
            assert!(
                answer.is_sorted_by_key(|r| (r.item.clone(), r.decision_date)),
                "{engine}: {subject} {items:?}"
            );
            let mut answer = answer;
            answer.sort_by_key(Record::key);
            assert_eq!(
                answer,
                expected(subject, items),
                "{engine}: {subject} {items:?}"
            );
            found += answer.len();
        }
        assert!(found > subjects.len(), "{engine}: the reads found records");
        store.close().await;
    }
}

/// The query path reads through connections it keeps (on SQLite), not through the pool: each
/// of them must see every commit made after its last read (a stale snapshot would disclose a
/// record after its restoration), and a closed store must refuse reads.
#[tokio::test]
async fn reads_see_every_commit_and_stop_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let subject = "91110000100000001Y";
        // More reads than the store keeps connections, so that every connection has read.
        for _ in 0..16 {
            assert!(store.records_of(subject, ITEMS).await.unwrap().is_empty());
            assert!(!store.subject_exists(subject).await.unwrap());
        }
        store
            .insert_records(&[record(subject, 7)], types(), 1)
            .await
            .unwrap();
        for _ in 0..16 {
            let read = store.records_of(subject, ITEMS).await.unwrap();
            assert_eq!(read, vec![record(subject, 7)], "{engine}");
            assert!(store.subject_exists(subject).await.unwrap(), "{engine}");
        }
        store.close().await;
        assert!(
            store.records_of(subject, ITEMS).await.is_err(),
            "{engine}: a closed store reads nothing"
        );
    }
}

/// On PostgreSQL too the query path's reads keep their connections out of the pool, whose
/// ping before each acquire used to find a connection that died while idle. The server ends
/// every session of the store's database (as a restart would): the next reads, more than the
/// store keeps connections, are all answered, none refused, each kept connection found dead
/// being replaced and its read run again.
#[tokio::test]
async fn postgres_reads_are_answered_after_the_server_ended_their_kept_connections() {
    let Some(url) = common::postgres_url().await else {
        return; // postgres_url says it was skipped
    };
    let store = credit_node::store::Store::open(&url).await.unwrap();
    store
        .insert_records(&[record(SUBJECT, 1)], types(), 1)
        .await
        .unwrap();
    let reads = async || {
        let reads = (0..16).map(|_| async {
            let records = store.records_of(SUBJECT, ITEMS).await;
            let exists = store.subject_exists(SUBJECT).await;
            (records, exists)
        });
        futures_util::future::join_all(reads).await
    };
    // At once, so that every kept connection has read.
    for (records, exists) in reads().await {
        assert_eq!(records.unwrap(), vec![record(SUBJECT, 1)]);
        assert!(exists.unwrap());
    }
    let name = common::database_name(&store).await;
    common::set_database_up(&name, false).await;
    common::set_database_up(&name, true).await;
    for (records, exists) in reads().await {
        assert_eq!(
            records.unwrap(),
            vec![record(SUBJECT, 1)],
            "read after the sessions ended"
        );
        assert!(exists.unwrap(), "read after the sessions ended");
    }
    store.close().await;
}

/// A read cancelled while its statement is under way (its query's deadline passed) puts its
/// connection back, and the next read on that connection gets its own answer, not the rest
/// of the cancelled one's.
#[tokio::test]
async fn reads_cancelled_mid_statement_leave_their_connections_clean() {
    use futures_util::FutureExt as _;
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        store
            .insert_records(&[record(SUBJECT, 1)], types(), 1)
            .await
            .unwrap();
        let other = "91110000100000001Y";
        // Every kept connection opened and read once.
        let warm = (0..16).map(|_| store.records_of(other, ITEMS));
        for read in futures_util::future::join_all(warm).await {
            assert!(read.unwrap().is_empty(), "{engine}");
        }
        for _ in 0..16 {
            // Polled once (the statement sent), then dropped before its answer.
            let _ = store.records_of(SUBJECT, ITEMS).now_or_never();
        }
        for _ in 0..16 {
            assert!(
                store.records_of(other, ITEMS).await.unwrap().is_empty(),
                "{engine}"
            );
            assert_eq!(
                store.records_of(SUBJECT, ITEMS).await.unwrap(),
                vec![record(SUBJECT, 1)],
                "{engine}"
            );
        }
        store.close().await;
    }
}

/// A query cancelled (its deadline passed, its client gone) while its read waits to open a
/// connection must give its slot back: the node keeps four, and losing them one by one would
/// leave every later query waiting.
#[tokio::test]
async fn sqlite_reads_cancelled_while_opening_a_connection_leave_the_store_readable() {
    use futures_util::FutureExt as _;
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    // Every connection of the pool taken: a read's slot, empty at first, cannot open one.
    let mut held = Vec::new();
    for _ in 0..store.pool().options().get_max_connections() {
        held.push(store.pool().acquire().await.unwrap());
    }
    for _ in 0..8 {
        // Polled once, then dropped while it waits for the pool.
        assert!(store.records_of(SUBJECT, ITEMS).now_or_never().is_none());
    }
    drop(held);
    assert_eq!(store.records_of(SUBJECT, ITEMS).await.unwrap(), vec![]);
    store.close().await;
}

/// A read that fails (here: its table renamed away under it) is an error, not a hang or a
/// wrong answer, and the store reads again once the cause is gone: every kept connection a
/// failed read closed is replaced.
#[tokio::test]
async fn failed_reads_are_errors_and_the_store_reads_again_after() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        store
            .insert_records(&[record(SUBJECT, 1)], types(), 1)
            .await
            .unwrap();
        let rename = |from: &str, to: &str| {
            let (pool, sql) = (
                store.pool().clone(),
                format!("ALTER TABLE {from} RENAME TO {to}"),
            );
            async move { sqlx::query(&sql).execute(&pool).await.unwrap() }
        };
        rename("records", "records_away").await;
        // More failed reads than the store keeps connections.
        for _ in 0..8 {
            assert!(
                store.records_of(SUBJECT, ITEMS).await.is_err(),
                "{engine}: a read of a missing table fails"
            );
        }
        rename("records_away", "records").await;
        for _ in 0..8 {
            assert_eq!(
                store.records_of(SUBJECT, ITEMS).await.unwrap(),
                vec![record(SUBJECT, 1)],
                "{engine}"
            );
        }
        store.close().await;
    }
}

/// Ingests that overlap, at once, on PostgreSQL: two `credit-node ingest`s of files holding
/// the same records in opposite orders, each file long enough to reach the store in several
/// parts, so that each ingest's later parts are the other's earlier ones. Both succeed, round
/// after round, and every record is stored once. (SQLite lets one writer in at a time.)
#[tokio::test]
async fn overlapping_ingests_at_once_on_postgresql_both_succeed() {
    use credit_node::{
        catalog::{Catalog, DEMO},
        identifier::Uscc,
        ingest::{Format, Rows, load},
        store::Store,
    };
    let Some(url) = common::postgres_url().await else {
        return; // postgres_url says it was skipped
    };
    // One store each, as two processes have.
    let stores = [
        Store::open(&url).await.unwrap(),
        Store::open(&url).await.unwrap(),
    ];
    let catalog = Catalog::parse("demo.toml", DEMO.as_bytes()).unwrap();
    let ingest = |store: &Store, lines: Vec<String>| {
        let rows = Rows::from_reader(
            Format::JsonLines,
            std::io::Cursor::new(lines.join("\n").into_bytes()),
        );
        let store = store.clone();
        let catalog = catalog.clone();
        async move {
            let (_, staged) = load::validate_and_stage(
                &store,
                catalog,
                "samr".into(),
                date!(2026 - 11 - 23),
                rows,
                1,
                u64::MAX,
                |_| {},
            )
            .await?;
            Ok::<_, load::LoadError>(staged.commit().await?)
        }
    };
    // More than two of the parts (4,096 records) an ingest writes at a time.
    const RECORDS: u64 = 9_000;
    const ROUNDS: u64 = 4;
    for round in 0..ROUNDS {
        let lines: Vec<String> = (round * RECORDS..(round + 1) * RECORDS)
            .map(|n| {
                let subject = Uscc::complete(&format!("91330106{n:09}"))
                    .unwrap()
                    .to_string();
                serde_json::json!({
                    "subject": subject, "item": "registration",
                    "fields": {
                        "uscc": subject, "name": "杭州星河网络科技有限公司", "status": "存续",
                        "established": "2009-03-17", "registered_capital": "1500000.00",
                        "division": "330106", "legal_rep_name": "欧阳娜娜",
                        "legal_rep_id": "11010519491231002X", "legal_rep_mobile": "13812341234"
                    },
                    "basis": {"kind": "营业执照", "number": format!("REG-{subject}"),
                        "date": "2009-03-17", "issuer": "samr"},
                    "decision_date": "2009-03-17"
                })
                .to_string()
            })
            .collect();
        let backwards = lines.iter().rev().cloned().collect();
        let (a, b) = tokio::join!(ingest(&stores[0], lines), ingest(&stores[1], backwards));
        let a = a.unwrap_or_else(|e| panic!("round {round}, the first ingest: {e}"));
        let b = b.unwrap_or_else(|e| panic!("round {round}, the second ingest: {e}"));
        for done in [a, b] {
            assert_eq!(done.inserted + done.already_present, RECORDS, "{done:?}");
        }
        assert_eq!(a.inserted + b.inserted, RECORDS, "round {round}");
    }
    let (rows, keys): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT record_key) FROM records")
            .fetch_one(stores[0].pool())
            .await
            .unwrap();
    let stored = i64::try_from(ROUNDS * RECORDS).unwrap();
    assert_eq!((rows, keys), (stored, stored));
    for store in stores {
        store.close().await;
    }
}
