//! The ledger over a real store, on SQLite and PostgreSQL alike (promises 5 and 6): group
//! commit and sequencing, tamper detection by `ledger verify`'s function, fail-closed appends,
//! replicas over one database, proofs from stored nodes, exports.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::{
    collections::BTreeSet,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
};

use credit_node::{
    ledger::{
        Column, Copied, EntryFilter, Ledger, LedgerError, LedgerSettings, OutcomeKind, Page,
        audit::{self, AuditError},
        entry::{Decision, Entry, FieldDecision, Forwarded, Outcome, UpstreamReceipt},
        lookup,
        merkle::{verify_consistency, verify_inclusion},
        sth::TreeHead,
        store as ledger_store,
        verify::{ExportError, VerifyError, verify_export},
    },
    store::{Engine, Store},
};
use ring::signature::{Ed25519KeyPair, KeyPair};
use sqlx::{Any, Row};

const T0: i64 = 1_790_000_000_000;

fn key(seed: u8) -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap()
}

fn public(seed: u8) -> Vec<u8> {
    key(seed).public_key().as_ref().to_vec()
}

/// Whom the relayed entries of [`entry`] were recorded on behalf of.
const ACTED_FOR: &str = "spiffe://region-a.credit.test/dept/court";
/// Where the forwarded queries of [`entry`] went.
const FORWARDED_TO: &str = "spiffe://region-b.credit.test/node/credit";

fn entry(n: u64) -> Entry {
    Entry {
        seq: 0,
        time_ms: T0 + n as i64,
        query_id: [n as u8; 16],
        caller: format!("spiffe://region-a.credit.test/dept/d{}", n % 3),
        caller_cert_sha256: [0xab; 32],
        // Every seventh entry recorded by a relay, for a caller of its region.
        on_behalf_of: (n % 7 == 6).then(|| ACTED_FOR.to_owned()),
        purpose: "licensing".into(),
        basis: "doc-2026-17".into(),
        subject: format!("9111000010000{:04}X", n % 5),
        requested_fields: vec!["penalty.amount".into()],
        decisions: vec![FieldDecision {
            field: "penalty.amount".into(),
            decision: Decision::GrantedRaw,
        }],
        outcome: if n.is_multiple_of(4) {
            Outcome::Denied {
                reason: "no grant".into(),
            }
        } else {
            Outcome::Granted
        },
        response_sha256: [0x11; 32],
        // Every eleventh forwarded to another region's node, every other one of those answered
        // there.
        forwarded: (n % 11 == 10).then(|| Forwarded {
            node: FORWARDED_TO.into(),
            receipt: n.is_multiple_of(2).then_some(UpstreamReceipt {
                seq: n * 3,
                leaf_hash: [0x22; 32],
                result_sha256: [0x33; 32],
                query_id: [n as u8; 16],
            }),
        }),
    }
}

/// A clock the test moves.
#[derive(Clone)]
struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn new() -> Self {
        Self(Arc::new(AtomicI64::new(T0)))
    }
    fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    fn f(&self) -> impl Fn() -> i64 + Send + Sync + 'static {
        let c = self.0.clone();
        move || c.load(Ordering::SeqCst)
    }
}

fn settings(sth_every_entries: u64, max_batch: usize) -> LedgerSettings {
    LedgerSettings {
        sth_every_entries,
        sth_interval_ms: 60_000,
        max_batch,
        // The tests catch the lookup up themselves, when they mean to.
        lookup_every_ms: 0,
    }
}

async fn open(store: &Store, every: u64) -> Ledger {
    Ledger::open(
        store.clone(),
        key(1),
        settings(every, 1024),
        TestClock::new().f(),
    )
    .await
    .unwrap()
}

/// A ledger signing every `every` entries or `interval_ms` by `clock`.
async fn open_timed(store: &Store, clock: &TestClock, every: u64, interval_ms: u64) -> Ledger {
    let settings = LedgerSettings {
        sth_interval_ms: interval_ms,
        ..settings(every, 64)
    };
    Ledger::open(store.clone(), key(1), settings, clock.f())
        .await
        .unwrap()
}

/// Appends `n` entries one after another (one batch each, so tree heads land at multiples of
/// the cadence).
async fn append_sequentially(ledger: &Ledger, n: u64) {
    for i in 0..n {
        ledger.append(entry(i)).await.unwrap();
    }
}

async fn concurrently(ledger: &Ledger, n: u64) -> Vec<Result<u64, LedgerError>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move { ledger.append(entry(i)).await.map(|r| r.seq) })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn verify(store: &Store) -> Result<credit_node::ledger::verify::VerifyReport, AuditError> {
    audit::verify_store(store, &public(1), |_| {}).await
}

#[tokio::test]
async fn concurrent_appends_get_distinct_consecutive_seqs_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 16).await;
        let seqs: BTreeSet<u64> = concurrently(&ledger, 64)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(seqs, (0..64).collect(), "{engine}");
        let sth = ledger.sign_now().await.unwrap();
        assert_eq!(sth.head.tree_size, 64, "{engine}");
        let report = verify(&store).await.unwrap();
        assert_eq!((report.entries, report.unsigned_tail), (64, 0), "{engine}");
        // The receipt's leaf hash is the stored entry's.
        let receipt = ledger.append(entry(99)).await.unwrap();
        assert_eq!(receipt.seq, 64);
        let page = ledger
            .entries(
                &EntryFilter::default(),
                Page {
                    after: Some(63),
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.entries.len(), 1);
        assert_eq!(page.entries[0].leaf_hash, receipt.leaf_hash);
        assert_eq!(page.entries[0].entry.seq, 64);
        ledger.shutdown().await;
        assert!(matches!(
            ledger.append(entry(1)).await,
            Err(LedgerError::Closed)
        ));
        // Shutdown signed the tail.
        let report = verify(&store).await.unwrap();
        assert_eq!((report.entries, report.unsigned_tail), (65, 0), "{engine}");
    }
}

#[tokio::test]
async fn tree_heads_follow_the_entry_count_and_the_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let clock = TestClock::new();
        // An interval far beyond the test's run, so the writer's own timer never fires here.
        let ledger = open_timed(&store, &clock, 5, 600_000).await;
        let signed = || async { ledger.latest_sth().await.unwrap().map(|s| s.head.tree_size) };
        // The first batch signs (no tree head yet, and the interval has long passed).
        ledger.append(entry(0)).await.unwrap();
        assert_eq!(signed().await, Some(1), "{engine}");
        for i in 1..5 {
            ledger.append(entry(i)).await.unwrap();
        }
        assert_eq!(
            signed().await,
            Some(1),
            "{engine}: 4 unsigned, no time passed"
        );
        ledger.append(entry(5)).await.unwrap();
        assert_eq!(signed().await, Some(6), "{engine}: 5 unsigned");
        ledger.append(entry(6)).await.unwrap();
        assert_eq!(signed().await, Some(6), "{engine}");
        clock.advance(600_000);
        ledger.append(entry(7)).await.unwrap();
        assert_eq!(signed().await, Some(8), "{engine}: interval passed");
        let sth = ledger.latest_sth().await.unwrap().unwrap();
        assert_eq!(sth.head.timestamp_ms, T0 + 600_000);
        // sign_now with nothing new returns the same head.
        assert_eq!(ledger.sign_now().await.unwrap(), sth);
        verify(&store).await.unwrap();
    }
}

/// Waits until `ledger`'s latest tree head covers `size` entries (a guard against hanging,
/// not a timing assertion: the writer's timer does it, in its own time).
async fn until_signed(ledger: &Ledger, size: u64, engine: &str) {
    let patience = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ledger.latest_sth().await.unwrap().map(|s| s.head.tree_size) != Some(size) {
        assert!(
            std::time::Instant::now() < patience,
            "{engine}: the tail was never signed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A quiet node still signs its tail: entries committed without a tree head get one once the
/// interval is up, with no further entry to carry it; and so does a tail the last run left
/// unsigned (stopped without its final tree head).
#[tokio::test]
async fn a_quiet_ledger_signs_its_unsigned_tail_when_the_interval_is_up() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let clock = TestClock::new();
        let ledger = open_timed(&store, &clock, 1000, 20).await;
        let signed = |ledger: &Ledger| {
            let ledger = ledger.clone();
            async move { ledger.latest_sth().await.unwrap().map(|s| s.head.tree_size) }
        };
        ledger.append(entry(0)).await.unwrap();
        assert_eq!(
            signed(&ledger).await,
            Some(1),
            "{engine}: the first batch signs"
        );
        ledger.append(entry(1)).await.unwrap();
        ledger.append(entry(2)).await.unwrap();
        assert_eq!(signed(&ledger).await, Some(1), "{engine}: no time passed");
        // The ledger's clock moves on; nothing else happens.
        clock.advance(20);
        until_signed(&ledger, 3, engine).await;
        let sth = ledger.latest_sth().await.unwrap().unwrap();
        assert_eq!(sth.head.timestamp_ms, T0 + 20, "{engine}");
        let report = verify(&store).await.unwrap();
        assert_eq!((report.entries, report.unsigned_tail), (3, 0), "{engine}");

        // Two more, and the node stops before their head is due (dropped, not shut down).
        ledger.append(entry(3)).await.unwrap();
        ledger.append(entry(4)).await.unwrap();
        assert_eq!(signed(&ledger).await, Some(3), "{engine}");
        drop(ledger);
        let ledger = open_timed(&store, &clock, 1000, 20).await;
        clock.advance(20);
        until_signed(&ledger, 5, engine).await;
        assert_eq!(verify(&store).await.unwrap().unsigned_tail, 0, "{engine}");
        ledger.shutdown().await;
    }
}

/// Waits until the writer's timer is due at `due_ms` by the ledger's clock (`None`: no timer) (a guard against
/// hanging, not a timing assertion).
async fn until_next_head_due(ledger: &Ledger, due_ms: Option<i64>, engine: &str) {
    let patience = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ledger.next_tree_head_due_ms() != due_ms {
        assert!(
            std::time::Instant::now() < patience,
            "{engine}: the next tree head is due at {:?}, never at {due_ms:?}",
            ledger.next_tree_head_due_ms()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A timer signing the database refuses is retried 1 s, then 2 s later by the ledger's clock
/// (an immediate retry would never be due at those times), and the tail is signed once the
/// database takes it again, with no new entry to carry it.
#[tokio::test]
async fn a_refused_tree_head_is_retried_with_backoff_until_the_tail_is_signed() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let clock = TestClock::new();
        let ledger = open_timed(&store, &clock, 1000, 20).await;
        ledger.append(entry(0)).await.unwrap();
        refuse_inserts(&store, "ledger_sths").await;
        ledger.append(entry(1)).await.unwrap();
        ledger.append(entry(2)).await.unwrap();
        until_next_head_due(&ledger, Some(T0 + 20), engine).await;
        clock.advance(20);
        until_next_head_due(&ledger, Some(T0 + 20 + 1000), engine).await;
        clock.advance(1000);
        until_next_head_due(&ledger, Some(T0 + 20 + 1000 + 2000), engine).await;
        assert_eq!(
            ledger.latest_sth().await.unwrap().map(|s| s.head.tree_size),
            Some(1),
            "{engine}: nothing signed while refused"
        );
        allow_inserts(&store, "ledger_sths").await;
        clock.advance(2000);
        until_signed(&ledger, 3, engine).await;
        // Nothing left to sign: no timer.
        until_next_head_due(&ledger, None, engine).await;
        let report = verify(&store).await.unwrap();
        assert_eq!((report.entries, report.unsigned_tail), (3, 0), "{engine}");
        ledger.shutdown().await;
    }
}

#[tokio::test]
async fn empty_ledger_verifies_and_has_nothing_to_sign() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 10).await;
        assert!(
            matches!(ledger.sign_now().await, Err(LedgerError::Empty)),
            "{engine}"
        );
        assert_eq!(verify(&store).await.unwrap().entries, 0);
        // The writer is still healthy.
        assert_eq!(ledger.append(entry(0)).await.unwrap().seq, 0);
    }
}

/// A node started with another ledger key (a replica's, a key replaced by mistake) refuses to
/// extend a log whose tree heads that key did not sign, rather than leave a ledger no single
/// public key verifies. The rightful key still opens it.
#[tokio::test]
async fn a_ledger_is_not_extended_under_another_key() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 10).await;
        append_sequentially(&ledger, 3).await;
        ledger.shutdown().await;
        let refused = Ledger::open(
            store.clone(),
            key(2),
            settings(10, 1024),
            TestClock::new().f(),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{engine}: opened under another key"));
        assert!(
            matches!(refused, LedgerError::ForeignKey(_))
                && refused.to_string().contains("ledger.signing_key"),
            "{engine}: {refused}"
        );
        assert_eq!(verify(&store).await.unwrap().entries, 3, "{engine}");
        let reopened = open(&store, 10).await;
        assert_eq!(reopened.append(entry(3)).await.unwrap().seq, 3, "{engine}");
        reopened.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Tamper detection: a log of 20 entries with tree heads at 1 (the first batch: no head yet),
// 6, 11, 16 and 20 (shutdown), then one change.

async fn signed_log(store: &Store) {
    let ledger = open(store, 5).await;
    append_sequentially(&ledger, 20).await;
    ledger.shutdown().await;
    let report = verify(store).await.unwrap();
    assert_eq!((report.entries, report.sths_checked), (20, 5));
}

async fn stored_entry(store: &Store, seq: i64) -> (Vec<u8>, Vec<u8>) {
    let row = sqlx::query::<Any>("SELECT entry, leaf_hash FROM ledger_entries WHERE seq = $1")
        .bind(seq)
        .fetch_one(store.pool())
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn set_entry(store: &Store, seq: i64, bytes: Vec<u8>, hash: Vec<u8>) {
    sqlx::query::<Any>("UPDATE ledger_entries SET entry = $1, leaf_hash = $2 WHERE seq = $3")
        .bind(bytes)
        .bind(hash)
        .bind(seq)
        .execute(store.pool())
        .await
        .unwrap();
}

/// Makes every insert into the ledger's `table` fail, as a full disk would.
async fn refuse_inserts(store: &Store, table: &str) {
    match store.engine() {
        Engine::Sqlite => {
            let sql = format!(
                "CREATE TRIGGER activity.refuse_{table} BEFORE INSERT ON {table} \
                 BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            );
            exec(store, &sql).await;
        }
        Engine::Postgres => {
            exec(
                store,
                "CREATE OR REPLACE FUNCTION refuse_insert() RETURNS trigger AS $$ \
                 BEGIN RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql",
            )
            .await;
            let sql = format!(
                "CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION refuse_insert()"
            );
            exec(store, &sql).await;
        }
    }
}

/// Undoes [`refuse_inserts`].
async fn allow_inserts(store: &Store, table: &str) {
    let sql = match store.engine() {
        Engine::Sqlite => format!("DROP TRIGGER refuse_{table}"),
        Engine::Postgres => format!("DROP TRIGGER refuse_{table} ON {table}"),
    };
    exec(store, &sql).await;
}

async fn exec(store: &Store, sql: &str) {
    sqlx::query::<Any>(sql).execute(store.pool()).await.unwrap();
}

#[tokio::test]
async fn one_changed_byte_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        signed_log(&store).await;
        // Every entry larger than the audit's byte budget: ranges of one entry each.
        let one_by_one = audit::verify_store_within(&store, &public(1), 1, |_| {})
            .await
            .unwrap();
        assert_eq!(one_by_one.entries, 20, "{engine}");
        let (mut bytes, hash) = stored_entry(&store, 7).await;
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        set_entry(&store, 7, bytes.clone(), hash).await;
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Tampered(VerifyError::ModifiedEntry { seq: 7 })
            ),
            "{engine}: {err}"
        );
        assert_eq!(err.first_bad_seq(), Some(7));
        // Recomputing the stored hash too does not help: the signed root no longer matches.
        let rehashed = credit_node::ledger::merkle::leaf_hash(&bytes).to_vec();
        set_entry(&store, 7, bytes, rehashed).await;
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Tampered(VerifyError::RootMismatch { size: 11 })
            ),
            "{engine}: {err}"
        );
    }
}

/// An entry, or a copy of one of its fields, made huge is named under a small byte budget as
/// under the default: the audit leaves it out of its range and reads it alone, and the entries
/// around it in ranges within the budget.
#[tokio::test]
async fn a_huge_entry_or_column_is_named_under_a_small_budget() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        signed_log(&store).await;
        let budget = 4 << 10;
        let within = |store: Store| async move {
            audit::verify_store_within(&store, &public(1), budget, |_| {}).await
        };
        assert_eq!(within(store.clone()).await.unwrap().entries, 20, "{engine}");
        let (bytes, hash) = stored_entry(&store, 7).await;
        let mut huge = bytes.clone();
        huge.resize(1 << 20, b' ');
        set_entry(&store, 7, huge, hash.clone()).await;
        for err in [verify(&store).await, within(store.clone()).await] {
            let err = err.unwrap_err();
            assert_eq!(err.first_bad_seq(), Some(7), "{engine}: {err}");
        }
        set_entry(&store, 7, bytes, hash).await;
        exec(
            &store,
            &format!(
                "UPDATE ledger_entries SET caller = '{}' WHERE seq = 7",
                "x".repeat(1 << 20)
            ),
        )
        .await;
        for err in [verify(&store).await, within(store.clone()).await] {
            let err = err.unwrap_err();
            assert!(
                matches!(
                    err,
                    AuditError::ColumnMismatch {
                        seq: 7,
                        column: Column::Caller
                    }
                ),
                "{engine}: {err}"
            );
        }
        restore_columns(&store).await;
        assert_eq!(within(store.clone()).await.unwrap().entries, 20, "{engine}");
    }
}

/// The audit reads the log in ranges packed by the database: a log of several ranges verifies
/// whole, and a stored hash of the wrong length, or an entry longer than it was, in a later
/// range is named exactly (the lengths come from the database, so nothing after it shifts);
/// the same with ranges cut by a byte budget.
#[tokio::test]
async fn a_log_of_several_ranges_verifies_and_odd_lengths_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 1000).await;
        let seqs = concurrently(&ledger, 20_000).await;
        assert!(seqs.iter().all(Result::is_ok), "{engine}");
        ledger.shutdown().await;
        let mut checked = Vec::new();
        let report = audit::verify_store(&store, &public(1), |n| checked.push(n))
            .await
            .unwrap();
        assert_eq!(report.entries, 20_000, "{engine}");
        assert_eq!(
            checked.last(),
            Some(&20_000),
            "{engine}: progress reaches the end"
        );

        let (bytes, hash) = stored_entry(&store, 18_500).await;
        set_entry(&store, 18_500, bytes.clone(), hash[..31].to_vec()).await;
        let err = verify(&store).await.unwrap_err();
        assert_eq!(err.first_bad_seq(), Some(18_500), "{engine}: {err}");

        let mut longer = bytes.clone();
        longer.push(0);
        set_entry(&store, 18_500, longer, hash.clone()).await;
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Tampered(VerifyError::ModifiedEntry { seq: 18_500 })
            ),
            "{engine}: {err}"
        );

        set_entry(&store, 18_500, bytes, hash).await;
        assert_eq!(
            verify(&store).await.unwrap().entries,
            20_000,
            "{engine}: restored"
        );

        // Ranges bounded by bytes (large entries) rather than by count: about 30 entries each.
        let small = audit::verify_store_within(&store, &public(1), 10_000, |_| {})
            .await
            .unwrap();
        assert_eq!(small.entries, 20_000, "{engine}");
        let (mut bytes, hash) = stored_entry(&store, 19_990).await;
        bytes[0] ^= 1;
        set_entry(&store, 19_990, bytes, hash).await;
        let err = audit::verify_store_within(&store, &public(1), 10_000, |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Tampered(VerifyError::ModifiedEntry { seq: 19_990 })
            ),
            "{engine}: {err}"
        );
    }
}

#[tokio::test]
async fn a_deleted_entry_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        signed_log(&store).await;
        exec(&store, "DELETE FROM ledger_entries WHERE seq = 12").await;
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Tampered(VerifyError::MissingEntry { expected_seq: 12 })
            ),
            "{engine}: {err}"
        );
        assert_eq!(err.first_bad_seq(), Some(12));
    }
}

#[tokio::test]
async fn two_swapped_entries_are_detected() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        signed_log(&store).await;
        let (a, ha) = stored_entry(&store, 3).await;
        let (b, hb) = stored_entry(&store, 4).await;
        set_entry(&store, 3, b, hb).await;
        set_entry(&store, 4, a, ha).await;
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Tampered(VerifyError::Reordered { seq: 3, found: 4 })
            ),
            "{engine}: {err}"
        );
    }
}

#[tokio::test]
async fn a_truncated_tail_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        signed_log(&store).await;
        exec(&store, "DELETE FROM ledger_entries WHERE seq >= 17").await;
        let truncated = |err: &AuditError| {
            matches!(
                err,
                AuditError::Tampered(VerifyError::Truncated {
                    have: 17,
                    sth_size: 20
                })
            )
        };
        let err = verify(&store).await.unwrap_err();
        assert!(truncated(&err), "{engine}: {err}");
        assert_eq!(err.first_bad_seq(), Some(17), "{engine}");
        // The database administrator's cover-up, making the head row agree, is no better: the
        // tree head of size 20 still stands.
        exec(&store, "UPDATE ledger_head SET size = 17 WHERE id = 0").await;
        let err = verify(&store).await.unwrap_err();
        assert!(truncated(&err), "{engine}: {err}");
        // Cutting the tree heads instead still leaves the head row's count.
        exec(&store, "UPDATE ledger_head SET size = 20 WHERE id = 0").await;
        exec(&store, "DELETE FROM ledger_sths WHERE tree_size > 15").await;
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::TailMissing {
                    expected_seq: 17,
                    head_size: 20,
                    have: 17
                }
            ),
            "{engine}: {err}"
        );
    }
}

/// A cut made together with its tree heads and head row is consistent in itself; a tree head
/// kept outside the database catches it, and a kept head of the same size but another root
/// (a signed fork) is named as such.
#[tokio::test]
async fn a_tree_head_kept_outside_catches_what_the_database_cannot_show() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        signed_log(&store).await;
        let kept = ledger_store::latest_sth(&store).await.unwrap().unwrap();
        assert_eq!(kept.head.tree_size, 20);
        let against = |kept: Vec<credit_node::ledger::sth::SignedTreeHead>| {
            let store = store.clone();
            async move { audit::verify_store_against(&store, &public(1), &kept, |_| {}).await }
        };
        against(vec![kept.clone()]).await.unwrap();

        exec(&store, "DELETE FROM ledger_entries WHERE seq >= 17").await;
        exec(&store, "DELETE FROM ledger_sths WHERE tree_size > 16").await;
        exec(&store, "UPDATE ledger_head SET size = 17 WHERE id = 0").await;
        let alone = verify(&store).await.unwrap();
        assert_eq!(alone.entries, 17, "{engine}: consistent in itself");
        let err = against(vec![kept.clone()]).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Tampered(VerifyError::Truncated {
                    have: 17,
                    sth_size: 20
                })
            ),
            "{engine}: {err}"
        );

        let fork = TreeHead {
            root_hash: [9; 32],
            ..ledger_store::latest_sth(&store)
                .await
                .unwrap()
                .unwrap()
                .head
        }
        .sign(&key(1));
        let err = against(vec![fork]).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Tampered(VerifyError::RootMismatch { size: 16 })
            ),
            "{engine}: {err}"
        );
    }
}

#[tokio::test]
async fn a_tree_head_signed_by_another_key_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        signed_log(&store).await;
        let sths = ledger_store::sths(&store).await.unwrap();
        let honest = &sths[2];
        assert_eq!(honest.head.tree_size, 11);
        let forged = TreeHead {
            root_hash: [9; 32],
            ..honest.head
        }
        .sign(&key(2));
        sqlx::query::<Any>(
            "UPDATE ledger_sths SET root_hash = $1, key_id = $2, signature = $3 WHERE tree_size = 11",
        )
        .bind(forged.head.root_hash.to_vec())
        .bind(forged.key_id.to_vec())
        .bind(forged.signature.to_vec())
        .execute(store.pool())
        .await
        .unwrap();
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Tampered(VerifyError::BadSthSignature { size: 11, .. })
            ),
            "{engine}: {err}"
        );
        // And the honest key id with the forger's signature.
        sqlx::query::<Any>("UPDATE ledger_sths SET key_id = $1 WHERE tree_size = 11")
            .bind(honest.key_id.to_vec())
            .execute(store.pool())
            .await
            .unwrap();
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Tampered(VerifyError::BadSthSignature { size: 11, .. })
            ),
            "{engine}: {err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Fail closed (promise 5).

/// A failure inside the transaction (a trigger refuses the insert, as a full disk would):
/// every append of the batch errors, nothing is committed, and the writer recovers.
#[tokio::test]
async fn a_failed_commit_fails_every_append_of_the_batch_and_the_writer_recovers() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 8).await;
        append_sequentially(&ledger, 10).await;
        refuse_inserts(&store, "ledger_entries").await;
        let results = concurrently(&ledger, 64).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(e @ LedgerError::Unavailable(_)) if e.is_unavailable())),
            "{engine}: {results:?}"
        );
        assert_eq!(ledger_store::committed_size(&store).await.unwrap(), 10);
        allow_inserts(&store, "ledger_entries").await;
        // Recovered: the next appends continue the sequence without a gap.
        let seqs: BTreeSet<u64> = concurrently(&ledger, 16)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(seqs, (10..26).collect(), "{engine}");
        // Every append was answered; only the durable ones count as waits for durability.
        let waits = ledger.append_waits();
        assert_eq!((waits.appends, waits.committed), (90, 26), "{engine}");
        assert!(
            std::time::Duration::ZERO < waits.durable && waits.durable <= waits.total,
            "{engine}: {waits:?}"
        );
        ledger.sign_now().await.unwrap();
        assert_eq!(verify(&store).await.unwrap().entries, 26, "{engine}");
    }
}

/// On PostgreSQL a batch's entries, Merkle nodes, tree head and head update go as one
/// statement: a failure in any of them, not only the first, fails every append of the batch
/// and commits none of its rows.
#[tokio::test]
async fn a_failed_node_or_tree_head_write_fails_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 8).await;
        append_sequentially(&ledger, 10).await;
        let mut size = 10;
        for table in ["ledger_nodes", "ledger_sths"] {
            refuse_inserts(&store, table).await;
            // 64 entries complete nodes and pass the tree-head cadence of 8.
            let results = concurrently(&ledger, 64).await;
            assert!(
                results
                    .iter()
                    .all(|r| matches!(r, Err(LedgerError::Unavailable(_)))),
                "{engine}, {table}: {results:?}"
            );
            assert_eq!(
                ledger_store::committed_size(&store).await.unwrap(),
                size,
                "{engine}, {table}"
            );
            let rows: i64 = sqlx::query_scalar::<Any, i64>("SELECT COUNT(*) FROM ledger_entries")
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(rows, size as i64, "{engine}, {table}");
            allow_inserts(&store, table).await;
            let seqs: BTreeSet<u64> = concurrently(&ledger, 16)
                .await
                .into_iter()
                .map(|r| r.unwrap())
                .collect();
            assert_eq!(seqs, (size..size + 16).collect(), "{engine}, {table}");
            size += 16;
        }
        ledger.sign_now().await.unwrap();
        assert_eq!(verify(&store).await.unwrap().entries, size, "{engine}");
    }
}

/// One charged append of 9,000 entries is one batch whatever `max_batch` says: 72,000
/// parameters for its entries alone, past PostgreSQL's 65,535 per statement, so its writes
/// are cut into more than one statement there; all of them land in the one transaction.
#[tokio::test]
async fn a_batch_past_postgres_parameter_limit_commits_whole_and_verifies() {
    const N: u64 = 9_000;
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 100_000).await;
        append_sequentially(&ledger, 3).await;
        let entries: Vec<Entry> = (0..N).map(entry).collect();
        let charge = credit_node::harvest::QuotaCharge {
            caller: entries[0].caller.clone(),
            window: 1,
            subjects: vec![entries[0].subject.clone()],
            limit: 10,
            raised_suspension: false,
        };
        let (outcome, receipts) = ledger
            .append_charged(vec![charge], entries, Box::new(|c| format!("{c:?}")))
            .await
            .unwrap();
        assert_eq!(outcome, [credit_node::harvest::Charge::Within], "{engine}");
        let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (3..3 + N).collect::<Vec<_>>(), "{engine}");
        assert_eq!(
            ledger_store::committed_size(&store).await.unwrap(),
            3 + N,
            "{engine}"
        );
        ledger.sign_now().await.unwrap();
        assert_eq!(verify(&store).await.unwrap().entries, 3 + N, "{engine}");
    }
}

/// The database goes away (SQLite: the pool is closed; PostgreSQL: the database is dropped
/// under the node): every append errors, none hangs.
#[tokio::test]
async fn appends_fail_closed_when_the_database_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 8).await;
        append_sequentially(&ledger, 3).await;
        match store.engine() {
            Engine::Sqlite => store.close().await,
            Engine::Postgres => {
                use sqlx::{Connection, Executor};
                let name: String = sqlx::query::<Any>("SELECT current_database()::text")
                    .fetch_one(store.pool())
                    .await
                    .unwrap()
                    .get(0);
                let base = std::env::var("DATABASE_URL").unwrap();
                let mut admin = sqlx::AnyConnection::connect(&base).await.unwrap();
                admin
                    .execute(format!("DROP DATABASE {name} WITH (FORCE)").as_str())
                    .await
                    .unwrap();
            }
        }
        let results = concurrently(&ledger, 64).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(e) if e.is_unavailable())),
            "{engine}: {results:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Replicas: two ledgers (two pools, as two node processes would have) over one database.

/// The databases replicas share: a SQLite file in `dir`, and a fresh PostgreSQL database when
/// there is a server; by engine name.
async fn shared_databases(dir: &std::path::Path) -> Vec<(&'static str, String)> {
    let mut urls = vec![(
        "sqlite",
        format!("sqlite://{}", dir.join("shared.db").display()),
    )];
    if let Some(url) = common::postgres_url().await {
        urls.push(("postgres", url));
    }
    urls
}

/// One replica's clock runs a day ahead and signs a tree head with its date. A replica whose
/// clock is right still signs its entries once its interval is up by its own clock, by the
/// timer on a quiet node and with the next batch on a busy one, instead of waiting a day.
#[tokio::test]
async fn a_replica_whose_clock_runs_ahead_does_not_hold_back_the_others_tree_heads() {
    let dir = tempfile::tempdir().unwrap();
    let urls = shared_databases(dir.path()).await;
    const DAY: i64 = 86_400_000;
    for (engine, url) in urls {
        let (right, ahead) = (TestClock::new(), TestClock::new());
        ahead.advance(DAY);
        let open = |clock: &TestClock| {
            let (url, clock) = (url.clone(), clock.clone());
            async move {
                let store = Store::open(&url).await.unwrap();
                let settings = LedgerSettings {
                    sth_interval_ms: 20,
                    ..settings(1000, 64)
                };
                Ledger::open(store, key(1), settings, clock.f())
                    .await
                    .unwrap()
            }
        };
        let (la, lb) = (open(&right).await, open(&ahead).await);
        lb.append(entry(0)).await.unwrap();
        let first = lb.latest_sth().await.unwrap().unwrap();
        assert_eq!(first.head.timestamp_ms, T0 + DAY, "{engine}");

        // Quiet: the right replica's timer signs its tail 20 ms after it saw that head.
        la.append(entry(1)).await.unwrap();
        assert_eq!(la.next_tree_head_due_ms(), Some(T0 + 20), "{engine}");
        right.advance(20);
        until_signed(&la, 2, engine).await;

        // Busy: 20 ms later by its clock, its next batch carries a tree head.
        la.append(entry(2)).await.unwrap();
        right.advance(20);
        la.append(entry(3)).await.unwrap();
        let latest = la.latest_sth().await.unwrap().unwrap();
        assert_eq!(latest.head.tree_size, 4, "{engine}");
        // Never back in time: the heads keep the date the clock ahead gave them.
        assert_eq!(latest.head.timestamp_ms, T0 + DAY, "{engine}");
        la.shutdown().await;
        lb.shutdown().await;
    }
}

#[tokio::test]
async fn two_replicas_over_one_database_yield_one_verifiable_log() {
    let dir = tempfile::tempdir().unwrap();
    let urls = shared_databases(dir.path()).await;
    for (engine, url) in urls {
        let a = Store::open(&url).await.unwrap();
        let b = Store::open(&url).await.unwrap();
        let clock = TestClock::new();
        let la = Ledger::open(a.clone(), key(1), settings(7, 16), clock.f())
            .await
            .unwrap();
        let lb = Ledger::open(b.clone(), key(1), settings(7, 16), clock.f())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..256u64 {
            let l = if i % 2 == 0 { la.clone() } else { lb.clone() };
            tasks.push(tokio::spawn(async move {
                l.append(entry(i)).await.unwrap().seq
            }));
        }
        let mut seqs = BTreeSet::new();
        for t in tasks {
            assert!(
                seqs.insert(t.await.unwrap()),
                "{engine}: a seq was given twice"
            );
        }
        assert_eq!(seqs, (0..256).collect(), "{engine}");
        la.sign_now().await.unwrap();
        lb.shutdown().await;
        let report = verify(&a).await.unwrap();
        assert_eq!((report.entries, report.unsigned_tail), (256, 0), "{engine}");
        assert!(report.sths_checked >= 2, "{engine}: {report:?}");

        // Both replicas catch the lookup up at once: it ends up covering the log, each entry
        // listed once by subject from either replica.
        let (ca, cb) = tokio::join!(lookup::catch_up(&a), lookup::catch_up(&b));
        assert!(ca.unwrap() + cb.unwrap() >= 256, "{engine}");
        assert_eq!(lookup::indexed(&a).await.unwrap(), 256, "{engine}");
        let by_subject = EntryFilter {
            subject: Some(entry(3).subject),
            ..Default::default()
        };
        let page = Page {
            after: None,
            limit: 1000,
        };
        for store in [&a, &b] {
            let listed = ledger_store::entries(store, &by_subject, page)
                .await
                .unwrap();
            let mut subjects_seqs: Vec<u64> = listed.entries.iter().map(|e| e.seq).collect();
            subjects_seqs.dedup();
            assert_eq!(
                subjects_seqs.len(),
                listed.entries.len(),
                "{engine}: no seq twice"
            );
            let expected = (0..256u64).filter(|n| n % 5 == 3).count();
            assert_eq!(listed.entries.len(), expected, "{engine}");
            assert!(
                listed
                    .entries
                    .iter()
                    .all(|e| e.entry.subject == entry(3).subject),
                "{engine}"
            );
        }
    }
}

/// Replicas appending in turn, so that each finds the head moved by the other since its own
/// last batch. A writer sends a plain batch in one trip whose writes all depend on the head
/// being as it last saw it (PostgreSQL: one statement, its inserts gated on the head's update;
/// SQLite: one script, its first write a guard that fails unless the head is as seen); here it
/// never is, so that trip must write nothing (had it written, its first entry would take the
/// other replica's sequence number) and the batch go through the locking transaction, which
/// reloads the frontier. A tree head signed by
/// one replica alone moves the head too. One log, every seq once, and it verifies.
#[tokio::test]
async fn replicas_appending_in_turn_each_find_the_others_appends_and_signing() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, url) in shared_databases(dir.path()).await {
        let a = Store::open(&url).await.unwrap();
        let b = Store::open(&url).await.unwrap();
        let clock = TestClock::new();
        // No tree head by count or by time: only `sign_now` signs.
        let la = Ledger::open(a.clone(), key(1), settings(1_000, 16), clock.f())
            .await
            .unwrap();
        let lb = Ledger::open(b.clone(), key(1), settings(1_000, 16), clock.f())
            .await
            .unwrap();
        for i in 0..12u64 {
            let l = if i % 2 == 0 { &la } else { &lb };
            assert_eq!(l.append(entry(i)).await.unwrap().seq, i, "{engine}");
        }
        // A again, then alone: the head is as it left it.
        for i in 12..14u64 {
            assert_eq!(la.append(entry(i)).await.unwrap().seq, i, "{engine}");
        }
        // B signs the tail; A's next batch must not put the signed size back.
        let signed = lb.sign_now().await.unwrap();
        assert_eq!(signed.head.tree_size, 14, "{engine}");
        assert_eq!(la.append(entry(14)).await.unwrap().seq, 14, "{engine}");
        assert_eq!(la.append(entry(15)).await.unwrap().seq, 15, "{engine}");
        assert_eq!(
            ledger_store::latest_sth(&a)
                .await
                .unwrap()
                .map(|s| s.head.tree_size),
            Some(14),
            "{engine}: A's batches kept B's tree head"
        );

        let (ta, tb) = (la.tally(), lb.tally());
        // A: its first append and the three after its own; B: its first was already stale (A
        // had appended since B opened).
        assert_eq!(
            (ta.one_statement, ta.head_moved),
            (3, 7),
            "{engine}: {ta:?}"
        );
        assert_eq!(
            (tb.one_statement, tb.head_moved),
            (0, 6),
            "{engine}: {tb:?}"
        );

        // And both at once.
        let mut tasks = Vec::new();
        for i in 16..80u64 {
            let l = if i % 2 == 0 { la.clone() } else { lb.clone() };
            tasks.push(tokio::spawn(async move {
                l.append(entry(i)).await.unwrap().seq
            }));
        }
        let mut seqs: BTreeSet<u64> = (0..16).collect();
        for t in tasks {
            assert!(
                seqs.insert(t.await.unwrap()),
                "{engine}: a seq was given twice"
            );
        }
        assert_eq!(seqs, (0..80).collect(), "{engine}");
        la.sign_now().await.unwrap();
        lb.shutdown().await;
        la.shutdown().await;
        let report = verify(&a).await.unwrap();
        assert_eq!((report.entries, report.unsigned_tail), (80, 0), "{engine}");
    }
}

/// PostgreSQL: the writer's kept connection is ended while it is idle, as a server restart
/// ends it. The next batch, sent as one statement on it, finds it dead with its outcome
/// unknown to the writer; the batch is committed (on a fresh connection), once, not refused.
#[tokio::test]
async fn a_batch_sent_on_a_connection_ended_while_idle_is_committed_once() {
    use sqlx::{Connection, Executor};
    let Some(url) = common::postgres_url().await else {
        return; // postgres_url says it was skipped
    };
    let store = Store::open(&url).await.unwrap();
    let ledger = open(&store, 1_000).await;
    append_sequentially(&ledger, 3).await;
    let name = common::database_name(&store).await;
    let mut server = sqlx::AnyConnection::connect(&std::env::var("DATABASE_URL").unwrap())
        .await
        .unwrap();
    let others =
        format!("FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()");
    server
        .execute(format!("SELECT pg_terminate_backend(pid) {others}").as_str())
        .await
        .unwrap();
    // Ended, not just asked to end: otherwise the statement could still go through.
    let patience = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) {others}"))
            .fetch_one(&mut server)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < patience,
            "{left} sessions still there"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    let receipt = ledger.append(entry(3)).await.unwrap();
    assert_eq!(receipt.seq, 3);
    assert_eq!(ledger.append(entry(4)).await.unwrap().seq, 4);
    let tally = ledger.tally();
    assert_eq!((tally.batches, tally.failed_batches), (5, 0), "{tally:?}");
    ledger.sign_now().await.unwrap();
    let report = verify(&store).await.unwrap();
    assert_eq!((report.entries, report.unsigned_tail), (5, 0));
}

/// A relay between a store and PostgreSQL that, once armed, lets the next statement answered
/// with one row (tag `SELECT 1`) run and commit on the server, then cuts the connection before
/// the client reads that answer: a connection lost with the outcome unknown to the client.
struct Relay {
    /// The database's URL, through the relay.
    url: String,
    armed: Arc<std::sync::atomic::AtomicBool>,
    cut: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    async fn start(url: &str) -> Relay {
        use std::sync::atomic::AtomicBool;
        // postgres://user@host:port/db -> the same through the relay, without TLS so the
        // server's messages can be read.
        let (scheme_user, rest) = url.split_once('@').expect("user@ in the URL");
        let (upstream, db) = rest.split_once('/').expect("a database in the URL");
        let upstream = upstream.to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "{scheme_user}@{}/{db}{}sslmode=disable",
            listener.local_addr().unwrap(),
            if db.contains('?') { "&" } else { "?" }
        );
        let (armed, cut) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (a, c) = (armed.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                tokio::spawn(Self::relay(client, server, a.clone(), c.clone()));
            }
        });
        Relay { url, armed, cut }
    }

    async fn relay(
        client: tokio::net::TcpStream,
        server: tokio::net::TcpStream,
        armed: Arc<std::sync::atomic::AtomicBool>,
        cut: Arc<std::sync::atomic::AtomicBool>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut from_client, mut to_client) = client.into_split();
        let (mut from_server, mut to_server) = server.into_split();
        let upward = tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
        });
        // Server messages: a type byte, then a length that counts itself and the body. Each
        // exchange (up to ReadyForQuery, `Z`) is held whole while armed, the rows included.
        let mut held = Vec::new();
        let mut one_row = false;
        loop {
            let mut header = [0u8; 5];
            if from_server.read_exact(&mut header).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            let mut body = vec![0u8; len.saturating_sub(4)];
            if from_server.read_exact(&mut body).await.is_err() {
                break;
            }
            held.extend_from_slice(&header);
            held.extend_from_slice(&body);
            one_row |= header[0] == b'C' && body == b"SELECT 1\0";
            if header[0] != b'Z' && armed.load(Ordering::SeqCst) {
                continue;
            }
            if header[0] == b'Z' && one_row && armed.swap(false, Ordering::SeqCst) {
                // Committed (an autocommit statement commits at Sync, before `Z`): cut.
                cut.store(true, Ordering::SeqCst);
                break;
            }
            one_row &= header[0] != b'Z';
            if to_client.write_all(&held).await.is_err() {
                break;
            }
            held.clear();
        }
        upward.abort();
    }
}

/// PostgreSQL: a batch sent as one statement commits, and the connection is lost before the
/// writer reads that it did. The writer cannot tell a commit from a statement never run, so it
/// goes on in a locking transaction on a fresh connection, which finds the batch's first entry
/// in place: the batch is answered with the sequence numbers it committed under, and is not
/// written a second time.
#[tokio::test]
async fn a_batch_committed_as_its_connection_is_lost_is_not_written_twice() {
    let Some(url) = common::postgres_url().await else {
        return; // postgres_url says it was skipped
    };
    let relay = Relay::start(&url).await;
    let store = Store::open(&relay.url).await.unwrap();
    let ledger = open(&store, 1_000).await;
    append_sequentially(&ledger, 3).await;
    relay.armed.store(true, Ordering::SeqCst);
    let receipt = ledger.append(entry(3)).await.unwrap();
    assert!(
        relay.cut.load(Ordering::SeqCst),
        "the relay never cut a connection"
    );
    assert_eq!(receipt.seq, 3, "answered with where it was committed");
    assert_eq!(ledger.append(entry(4)).await.unwrap().seq, 4);
    ledger.sign_now().await.unwrap();
    let report = verify(&store).await.unwrap();
    assert_eq!(
        (report.entries, report.unsigned_tail),
        (5, 0),
        "no entry twice"
    );
    let (bytes, _) = stored_entry(&store, 3).await;
    let mut third = entry(3);
    third.seq = 3;
    assert_eq!(bytes, third.encode());
}

/// PostgreSQL: a stalled replica (here another session) holds the ledger head's row lock in an
/// open transaction. A writer queued behind it gives up after `lock_timeout` and its batch
/// answers UNAVAILABLE, rather than every query of every replica waiting forever; once the
/// lock is released, appends go through again and the log verifies.
#[tokio::test]
async fn a_writer_behind_a_stalled_replicas_head_lock_fails_unavailable_then_recovers() {
    use credit_node::store::StoreSettings;
    use sqlx::{Connection, Executor};
    let Some(url) = common::postgres_url().await else {
        return; // postgres_url says it was skipped
    };
    let settings = StoreSettings {
        lock_timeout_ms: 300,
        idle_in_transaction_timeout_ms: 60_000,
        ..StoreSettings::default()
    };
    let store = Store::open_with(&url, settings).await.unwrap();
    let ledger = open(&store, 8).await;
    append_sequentially(&ledger, 2).await;

    let mut stalled = sqlx::AnyConnection::connect(&url).await.unwrap();
    stalled
        .execute("BEGIN; UPDATE ledger_head SET size = size WHERE id = 0")
        .await
        .unwrap();
    // Generous: a regression (no lock timeout) fails here instead of hanging the test run.
    let blocked = tokio::time::timeout(std::time::Duration::from_secs(60), ledger.append(entry(2)))
        .await
        .expect("the append still waited for the lock after 60 s");
    assert!(
        matches!(blocked, Err(LedgerError::Unavailable(_))),
        "{blocked:?}"
    );

    stalled.execute("ROLLBACK").await.unwrap();
    let receipt = ledger.append(entry(3)).await.unwrap();
    assert_eq!(receipt.seq, 2, "the failed batch took no sequence number");
    ledger.sign_now().await.unwrap();
    let report = verify(&store).await.unwrap();
    assert_eq!((report.entries, report.unsigned_tail), (3, 0));
    let mut shown = Vec::new();
    for name in ["lock_timeout", "idle_in_transaction_session_timeout"] {
        let row = sqlx::query::<Any>(&format!("SHOW {name}"))
            .fetch_one(store.pool())
            .await
            .unwrap();
        shown.push(row.get::<String, _>(0));
    }
    assert_eq!(shown, ["300ms", "1min"], "both are set on every connection");
}

// ---------------------------------------------------------------------------------------------
// Proofs, listing and export.

#[tokio::test]
async fn inclusion_and_consistency_proofs_from_the_store_verify() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 6).await;
        append_sequentially(&ledger, 37).await;
        ledger.sign_now().await.unwrap();
        let sths = ledger_store::sths(&store).await.unwrap();
        assert_eq!(sths.last().unwrap().head.tree_size, 37, "{engine}");
        let page = ledger
            .entries(
                &EntryFilter::default(),
                Page {
                    after: None,
                    limit: 100,
                },
            )
            .await
            .unwrap();
        for sth in &sths {
            let (size, root) = (sth.head.tree_size, sth.head.root_hash);
            for e in page.entries.iter().filter(|e| e.seq < size) {
                let proof = ledger.inclusion_proof(e.seq, size).await.unwrap();
                verify_inclusion(e.seq, size, &e.leaf_hash, &proof, &root)
                    .unwrap_or_else(|err| panic!("{engine}: {} in {size}: {err}", e.seq));
            }
            for older in sths.iter().filter(|o| o.head.tree_size <= size) {
                let first = older.head.tree_size;
                let proof = ledger.consistency_proof(first, size).await.unwrap();
                verify_consistency(first, size, &older.head.root_hash, &root, &proof)
                    .unwrap_or_else(|err| panic!("{engine}: {first}→{size}: {err}"));
            }
        }
        assert!(matches!(
            ledger.inclusion_proof(3, 38).await,
            Err(LedgerError::BeyondLog {
                requested: 38,
                size: 37
            })
        ));
    }
}

/// Filters and pages give the same answers whether the lookup by caller and subject has not
/// caught up at all, covers part of the log (the rest scanned), or all of it.
#[tokio::test]
async fn entries_are_filtered_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 100).await;
        let all = |filter: EntryFilter| {
            let ledger = ledger.clone();
            async move {
                let mut seqs = Vec::new();
                let mut page = Page {
                    after: None,
                    limit: 4,
                };
                for _ in 0..100 {
                    let got = ledger.entries(&filter, page).await.unwrap();
                    seqs.extend(got.entries.iter().map(|e| e.seq));
                    match got.next_after {
                        Some(after) => page.after = Some(after),
                        None => return seqs,
                    }
                }
                panic!("paging did not end");
            }
        };
        let mut size = 0;
        for (phase, grow) in [
            ("nothing indexed", 30),
            ("partly indexed", 20),
            ("all indexed", 0),
        ] {
            // Entry n at seq n, so the expectations below are about n alone.
            for n in size..size + grow {
                ledger.append(entry(n)).await.unwrap();
            }
            if phase == "all indexed" {
                assert_eq!(lookup::catch_up(&store).await.unwrap(), 20, "{engine}");
            }
            size += grow;
            let indexed = match phase {
                "nothing indexed" => 0,
                "partly indexed" => 30,
                _ => size,
            };
            assert_eq!(lookup::indexed(&store).await.unwrap(), indexed, "{engine}");
            let context = format!("{engine}, {phase}");
            assert_eq!(
                all(EntryFilter::default()).await,
                (0..size).collect::<Vec<_>>(),
                "{context}"
            );
            let expect = |p: &dyn Fn(u64) -> bool| (0..size).filter(|&n| p(n)).collect::<Vec<_>>();
            let by_caller = EntryFilter {
                caller: Some("spiffe://region-a.credit.test/dept/d1".into()),
                ..Default::default()
            };
            assert_eq!(all(by_caller).await, expect(&|n| n % 3 == 1), "{context}");
            let by_subject = EntryFilter {
                subject: Some(entry(2).subject),
                outcome: Some(OutcomeKind::Granted),
                ..Default::default()
            };
            assert_eq!(
                all(by_subject).await,
                expect(&|n| n % 5 == 2 && n % 4 != 0),
                "{context}"
            );
            let by_both = EntryFilter {
                caller: Some("spiffe://region-a.credit.test/dept/d1".into()),
                subject: Some(entry(2).subject),
                ..Default::default()
            };
            assert_eq!(
                all(by_both).await,
                expect(&|n| n % 3 == 1 && n % 5 == 2),
                "{context}"
            );
            let nobody = EntryFilter {
                subject: Some("91110000100009999X".into()),
                ..Default::default()
            };
            assert!(all(nobody).await.is_empty(), "{context}");
            // On behalf of a caller: matched on the entries, alone or beside the lookup's keys.
            let acted_for = EntryFilter {
                on_behalf_of: Some(ACTED_FOR.into()),
                ..Default::default()
            };
            assert_eq!(all(acted_for).await, expect(&|n| n % 7 == 6), "{context}");
            let relayed_by_d1 = EntryFilter {
                caller: Some("spiffe://region-a.credit.test/dept/d1".into()),
                on_behalf_of: Some(ACTED_FOR.into()),
                ..Default::default()
            };
            assert_eq!(
                all(relayed_by_d1).await,
                expect(&|n| n % 3 == 1 && n % 7 == 6),
                "{context}"
            );
            let for_another = EntryFilter {
                on_behalf_of: Some("spiffe://region-a.credit.test/dept/tax".into()),
                ..Default::default()
            };
            assert!(all(for_another).await.is_empty(), "{context}");
            // Forwarded to a node: matched on the entries too.
            let forwarded = EntryFilter {
                forwarded_to: Some(FORWARDED_TO.into()),
                ..Default::default()
            };
            assert_eq!(all(forwarded).await, expect(&|n| n % 11 == 10), "{context}");
            let forwarded_by_d1 = EntryFilter {
                caller: Some("spiffe://region-a.credit.test/dept/d1".into()),
                forwarded_to: Some(FORWARDED_TO.into()),
                ..Default::default()
            };
            assert_eq!(
                all(forwarded_by_d1).await,
                expect(&|n| n % 3 == 1 && n % 11 == 10),
                "{context}"
            );
            let to_another = EntryFilter {
                forwarded_to: Some("spiffe://region-c.credit.test/node/credit".into()),
                ..Default::default()
            };
            assert!(all(to_another).await.is_empty(), "{context}");
            let denied_in_time = EntryFilter {
                outcome: Some(OutcomeKind::Denied),
                from_ms: Some(T0 + 8),
                until_ms: Some(T0 + 20),
                purpose: Some("licensing".into()),
                ..Default::default()
            };
            assert_eq!(all(denied_in_time).await, vec![8, 12, 16], "{context}");
            // A caller within a time range: pages of the lookup's part, then of the log's.
            let by_caller_in_time = EntryFilter {
                caller: Some("spiffe://region-a.credit.test/dept/d1".into()),
                from_ms: Some(T0 + 5),
                until_ms: Some(T0 + 44),
                purpose: Some("licensing".into()),
                ..Default::default()
            };
            assert_eq!(
                all(by_caller_in_time).await,
                expect(&|n| n % 3 == 1 && (5..44).contains(&n)),
                "{context}"
            );
            if phase == "nothing indexed" {
                assert_eq!(lookup::catch_up(&store).await.unwrap(), 30, "{engine}");
                assert_eq!(
                    lookup::catch_up(&store).await.unwrap(),
                    0,
                    "{engine}: caught up"
                );
            }
        }
    }
}

/// A listing on behalf of a caller reads the entries its other conditions select in rounds
/// until its page is full: pages end where they should however sparse the matches are, and a
/// page whose rounds run out ends short, saying where to go on.
#[tokio::test]
async fn a_listing_on_behalf_of_a_caller_pages_through_sparse_matches() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 10_000).await;
        // Relayed entries at a few places, far apart: before, between and after the reading
        // rounds' bounds.
        let relayed = [5_u64, 1023, 1024, 2100, 2999, 19_000];
        for chunk in (0..19_500_u64).collect::<Vec<_>>().chunks(1000) {
            let appends = chunk.iter().map(|&n| {
                let mut e = entry(0);
                e.time_ms = T0 + n as i64;
                e.on_behalf_of = relayed.contains(&n).then(|| ACTED_FOR.to_owned());
                ledger.append(e)
            });
            for done in futures_util::future::join_all(appends).await {
                done.unwrap();
            }
        }
        let filter = EntryFilter {
            on_behalf_of: Some(ACTED_FOR.into()),
            ..Default::default()
        };
        let mut page = Page {
            after: None,
            limit: 2,
        };
        let mut pages = Vec::new();
        loop {
            let got = ledger.entries(&filter, page).await.unwrap();
            let times: Vec<i64> = got.entries.iter().map(|e| e.entry.time_ms - T0).collect();
            pages.push(times);
            match got.next_after {
                Some(after) => page.after = Some(after),
                None => break,
            }
        }
        // The appends of one chunk may commit in any order: what identifies an entry is its
        // time here, not its sequence number.
        let mut found: Vec<i64> = pages.concat();
        found.sort_unstable();
        assert_eq!(found, vec![5, 1023, 1024, 2100, 2999, 19_000], "{engine}");
        // The third page reads on from 2100 and finds 2999, then nothing more within its 16
        // rounds of 1024 entries: it ends short, and the fourth finds 19,000.
        assert_eq!(
            pages.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1, 1],
            "{engine}"
        );
        ledger.shutdown().await;
        store.close().await;
    }
}

/// What a database administrator might change in a copy of entry 7's fields to hide it from a
/// listing or show it as someone else's, and the column each change concerns. Entry 7 of
/// [`entry`] is d1's, about subject ...0002X, granted, at T0 + 7.
fn column_changes(engine: Engine) -> Vec<(&'static str, Column)> {
    let mut changes = vec![
        (
            "UPDATE ledger_entries SET caller = 'spiffe://region-a.credit.test/dept/d2' \
             WHERE seq = 7",
            Column::Caller,
        ),
        (
            "UPDATE ledger_entries SET subject = '91110000100009999X' WHERE seq = 7",
            Column::Subject,
        ),
        (
            "UPDATE ledger_entries SET purpose = 'tax-audit' WHERE seq = 7",
            Column::Purpose,
        ),
        (
            "UPDATE ledger_entries SET outcome = 'alert' WHERE seq = 7",
            Column::Outcome,
        ),
        (
            "UPDATE ledger_entries SET time_ms = time_ms + 86400000 WHERE seq = 7",
            Column::TimeMs,
        ),
        // Two columns changed: the first of them in the order caller, subject, purpose,
        // outcome, time_ms is named.
        (
            "UPDATE ledger_entries SET purpose = 'tax-audit', time_ms = time_ms + 86400000 \
             WHERE seq = 7",
            Column::Purpose,
        ),
    ];
    if engine == Engine::Sqlite {
        // The same bytes as another type: `caller = $1` no longer matches it on SQLite.
        changes.push((
            "UPDATE ledger_entries SET caller = CAST(caller AS BLOB) WHERE seq = 7",
            Column::Caller,
        ));
        changes.push((
            "UPDATE ledger_entries SET time_ms = CAST(CAST(time_ms AS TEXT) AS BLOB) \
             WHERE seq = 7",
            Column::TimeMs,
        ));
    }
    changes
}

/// Puts entry 7's columns back as the writer wrote them.
async fn restore_columns(store: &Store) {
    let e = entry(7);
    sqlx::query::<Any>(
        "UPDATE ledger_entries SET caller = $1, subject = $2, purpose = $3, outcome = $4, \
         time_ms = $5 WHERE seq = 7",
    )
    .bind(e.caller)
    .bind(e.subject)
    .bind(e.purpose)
    .bind("granted")
    .bind(e.time_ms)
    .execute(store.pool())
    .await
    .unwrap();
}

/// A listing or export that reads an entry whose stored copies were changed refuses, naming
/// the entry and the column; it never shows the entry misattributed. Put back, all is listed.
#[tokio::test]
async fn a_listing_refuses_an_entry_whose_copies_were_changed() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        signed_log(&store).await;
        assert_eq!(lookup::catch_up(&store).await.unwrap(), 20, "{engine}");
        let page = Page {
            after: None,
            limit: 100,
        };
        let list = |filter: EntryFilter| {
            let store = store.clone();
            async move { ledger_store::entries(&store, &filter, page).await }
        };
        let refused = |got: Result<ledger_store::EntryPage, LedgerError>, want, copy| match got {
            Err(LedgerError::Misattributed {
                seq,
                column,
                copy: c,
            }) => {
                assert_eq!((seq, column, c), (7, want, copy));
            }
            other => panic!(
                "{engine}: {want}: not refused: {:?}",
                other.map(|p| p.entries.len())
            ),
        };
        for (sql, column) in column_changes(store.engine()) {
            exec(&store, sql).await;
            refused(list(EntryFilter::default()).await, column, Copied::Column);
            // The filter that selects by the changed column's new value reads it too.
            // (A filter by caller or subject reads the lookup, not the column: see below.)
            let by_new_value = match column {
                Column::Outcome => EntryFilter {
                    outcome: Some(OutcomeKind::Alert),
                    ..Default::default()
                },
                Column::Purpose => EntryFilter {
                    purpose: Some("tax-audit".into()),
                    ..Default::default()
                },
                _ => EntryFilter {
                    from_ms: Some(T0 + 5),
                    ..Default::default()
                },
            };
            refused(list(by_new_value).await, column, Copied::Column);
            let mut out = Vec::new();
            let exported = audit::export(&store, &EntryFilter::default(), &mut out).await;
            assert!(
                matches!(exported, Err(LedgerError::Misattributed { seq: 7, .. })),
                "{engine}: {sql}: {exported:?}"
            );
            restore_columns(&store).await;
        }
        // A lookup row moved to another caller: listing that caller reads entry 7 through it.
        exec(
            &store,
            "UPDATE ledger_lookup SET value = 'spiffe://region-a.credit.test/dept/d2' \
             WHERE field = 'caller' AND seq = 7",
        )
        .await;
        let d2 = EntryFilter {
            caller: Some("spiffe://region-a.credit.test/dept/d2".into()),
            ..Default::default()
        };
        refused(list(d2).await, Column::Caller, Copied::Lookup);
        exec(
            &store,
            "UPDATE ledger_lookup SET value = 'spiffe://region-a.credit.test/dept/d1' \
             WHERE field = 'caller' AND seq = 7",
        )
        .await;
        let all = list(EntryFilter::default()).await.unwrap();
        assert_eq!(all.entries.len(), 20, "{engine}");
        assert!(verify(&store).await.is_ok(), "{engine}");
    }
}

/// `ledger verify` holds every entry's columns to the entry: a change to any of them (or, on
/// SQLite, the same bytes as another type) fails the audit, naming the entry and the column.
#[tokio::test]
async fn verify_names_the_entry_and_column_of_a_changed_copy() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        signed_log(&store).await;
        assert_eq!(lookup::catch_up(&store).await.unwrap(), 20, "{engine}");
        assert!(verify(&store).await.is_ok(), "{engine}: untouched");
        for (sql, column) in column_changes(store.engine()) {
            exec(&store, sql).await;
            let err = verify(&store).await.expect_err(&format!("{engine}: {sql}"));
            assert!(
                matches!(err, AuditError::ColumnMismatch { seq: 7, column: c } if c == column),
                "{engine}: {sql}: {err}"
            );
            assert_eq!(err.first_bad_seq(), Some(7), "{engine}: {sql}");
            // In ranges of one entry each too.
            let err = audit::verify_store_within(&store, &public(1), 1, |_| {})
                .await
                .unwrap_err();
            assert!(
                matches!(err, AuditError::ColumnMismatch { seq: 7, column: c } if c == column),
                "{engine}: {sql}: {err}"
            );
            restore_columns(&store).await;
            assert!(verify(&store).await.is_ok(), "{engine}: {sql} put back");
        }
    }
}

/// The lookup audit sums rows per bucket of 16,384 sequence numbers and then searches the
/// differing bucket for the entry: a changed row on either side of a bucket boundary, and deep
/// in the second bucket, is named exactly. On both engines: the search is the same code, but the
/// lookup is read differently (in sorted chunks on SQLite, in one unordered COPY on
/// PostgreSQL), and 17,000 entries is what it takes to reach a second bucket.
#[tokio::test]
async fn verify_names_the_entry_of_a_changed_lookup_row_past_the_first_bucket() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        lookup_past_the_first_bucket(engine, store).await;
    }
}

async fn lookup_past_the_first_bucket(engine: &str, store: Store) {
    const N: u64 = 17_000;
    let ledger = Ledger::open(
        store.clone(),
        key(1),
        settings(10_000, 1024),
        TestClock::new().f(),
    )
    .await
    .unwrap();
    let writers: Vec<_> = (0..64)
        .map(|t| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for n in (t..N).step_by(64) {
                    ledger.append(entry(n)).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    ledger.shutdown().await;
    assert_eq!(lookup::catch_up(&store).await.unwrap(), N, "{engine}");
    assert_eq!(verify(&store).await.unwrap().entries, N, "{engine}");
    let other = "spiffe://region-a.credit.test/dept/elsewhere";
    for seq in [16_383_u64, 16_384, 16_999] {
        let caller: String = sqlx::query_scalar::<Any, String>(
            "SELECT value FROM ledger_lookup WHERE field = 'caller' AND seq = $1",
        )
        .bind(i64::try_from(seq).unwrap())
        .fetch_one(store.pool())
        .await
        .unwrap();
        let set = |value: &str| {
            format!(
                "UPDATE ledger_lookup SET value = '{value}' WHERE field = 'caller' AND seq = {seq}"
            )
        };
        exec(&store, &set(other)).await;
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(err, AuditError::LookupMismatch { seq: s } if s == seq),
            "{engine}: {seq}: {err}"
        );
        exec(&store, &set(&caller)).await;
    }
    assert!(verify(&store).await.is_ok(), "{engine}: every row put back");
    // The log found bad past the first bucket, a lookup row changed before it: the row is
    // named, through the first bucket's sums (whole below 16,385 and 16,999), or read again
    // (the first bucket below 16,384; the second up to where the log's check stopped).
    // A lookup row changed after the log's bad entry leaves the log's finding named.
    for (log_at, lookup_at) in [
        (16_999, 16_383),
        (16_999, 16_384),
        (16_385, 16_383),
        (16_384, 16_383),
        (16_384, 16_999),
    ] {
        spoil_log(&store, Spoil::Bytes, log_at, false).await;
        spoil_lookup(&store, lookup_at, false).await;
        let err = verify(&store).await.unwrap_err();
        let case = format!("{engine}: entry {log_at}, lookup {lookup_at}");
        if lookup_at < log_at {
            assert!(
                matches!(err, AuditError::LookupMismatch { seq } if seq == lookup_at),
                "{case}: {err}"
            );
        } else {
            assert!(log_finding(&err, Spoil::Bytes, log_at), "{case}: {err}");
        }
        spoil_log(&store, Spoil::Bytes, log_at, true).await;
        spoil_lookup(&store, lookup_at, true).await;
    }
    assert!(verify(&store).await.is_ok(), "{engine}: all put back");
    store.close().await;
}

/// `ledger verify` holds `ledger_lookup` to the entries: a row deleted, changed, moved to
/// another entry or added fails the audit naming the entry; a row or a head beyond the log
/// fails it as ahead. Rows put back, the ledger verifies again.
#[tokio::test]
async fn verify_finds_a_lookup_row_deleted_changed_or_ahead() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        signed_log(&store).await;
        assert_eq!(lookup::catch_up(&store).await.unwrap(), 20, "{engine}");
        let d1 = "spiffe://region-a.credit.test/dept/d1";
        let subject7 = entry(7).subject;
        let mut changes = vec![
            (
                "DELETE FROM ledger_lookup WHERE field = 'caller' AND seq = 7".to_owned(),
                format!(
                    "INSERT INTO ledger_lookup (field, value, seq) VALUES ('caller', '{d1}', 7)"
                ),
                7,
            ),
            (
                "UPDATE ledger_lookup SET value = 'spiffe://region-a.credit.test/dept/d2' \
                 WHERE field = 'caller' AND seq = 7"
                    .to_owned(),
                format!(
                    "UPDATE ledger_lookup SET value = '{d1}' WHERE field = 'caller' AND seq = 7"
                ),
                7,
            ),
            (
                "UPDATE ledger_lookup SET seq = 13 WHERE field = 'subject' AND seq = 7".to_owned(),
                format!(
                    "UPDATE ledger_lookup SET seq = 7 WHERE field = 'subject' AND seq = 13 \
                     AND value = '{subject7}'"
                ),
                7,
            ),
            (
                "INSERT INTO ledger_lookup (field, value, seq) VALUES \
                 ('caller', 'spiffe://region-a.credit.test/dept/d2', 9)"
                    .to_owned(),
                "DELETE FROM ledger_lookup WHERE field = 'caller' AND seq = 9 \
                 AND value = 'spiffe://region-a.credit.test/dept/d2'"
                    .to_owned(),
                9,
            ),
            (
                "INSERT INTO ledger_lookup (field, value, seq) VALUES ('purpose', 'licensing', 3)"
                    .to_owned(),
                "DELETE FROM ledger_lookup WHERE field = 'purpose'".to_owned(),
                3,
            ),
        ];
        if store.engine() == Engine::Sqlite {
            changes.push((
                "UPDATE ledger_lookup SET value = CAST(value AS BLOB) \
                 WHERE field = 'caller' AND seq = 7"
                    .to_owned(),
                "UPDATE ledger_lookup SET value = CAST(value AS TEXT) \
                 WHERE field = 'caller' AND seq = 7"
                    .to_owned(),
                7,
            ));
        }
        for (change, undo, seq) in &changes {
            exec(&store, change).await;
            let err = verify(&store).await.unwrap_err();
            assert!(
                matches!(err, AuditError::LookupMismatch { seq: s } if s == *seq),
                "{engine}: {change}: {err}"
            );
            assert_eq!(err.first_bad_seq(), Some(*seq));
            exec(&store, undo).await;
            assert!(verify(&store).await.is_ok(), "{engine}: {change} undone");
        }
        // A row of an entry the log does not have.
        exec(
            &store,
            &format!("INSERT INTO ledger_lookup (field, value, seq) VALUES ('caller', '{d1}', 25)"),
        )
        .await;
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(err, AuditError::LookupAhead { seq: 25, size: 20 }),
            "{engine}: {err}"
        );
        exec(&store, "DELETE FROM ledger_lookup WHERE seq = 25").await;
        // A head claiming more than the log: listings would skip the log's own tail.
        exec(
            &store,
            "UPDATE ledger_lookup_head SET indexed = 30 WHERE id = 0",
        )
        .await;
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(err, AuditError::LookupAhead { seq: 20, .. }),
            "{engine}: {err}"
        );
        exec(
            &store,
            "UPDATE ledger_lookup_head SET indexed = 20 WHERE id = 0",
        )
        .await;
        assert!(verify(&store).await.is_ok(), "{engine}");
    }
}

/// How a test spoils the log at one entry, for [`spoil_log`].
#[derive(Clone, Copy, Debug)]
enum Spoil {
    /// One byte of the entry flipped: the verifier finds it modified.
    Bytes,
    /// Its `purpose` column changed: the audit finds the column differs.
    Column,
}

/// Spoils entry `seq` of the log as `how` says, or puts it back (`undo`).
async fn spoil_log(store: &Store, how: Spoil, seq: u64, undo: bool) {
    let seq = i64::try_from(seq).unwrap();
    match how {
        Spoil::Bytes => {
            let (mut bytes, hash) = stored_entry(store, seq).await;
            bytes[0] ^= 1;
            set_entry(store, seq, bytes, hash).await;
        }
        Spoil::Column => {
            let purpose = if undo { "licensing" } else { "tax-audit" };
            exec(
                store,
                &format!("UPDATE ledger_entries SET purpose = '{purpose}' WHERE seq = {seq}"),
            )
            .await;
        }
    }
}

/// Whether `err` is the log's own finding `how` at entry `seq`.
fn log_finding(err: &AuditError, how: Spoil, seq: u64) -> bool {
    match how {
        Spoil::Bytes => matches!(
            err,
            AuditError::Tampered(VerifyError::ModifiedEntry { seq: s }) if *s == seq
        ),
        Spoil::Column => matches!(
            err,
            AuditError::ColumnMismatch { seq: s, column: Column::Purpose } if *s == seq
        ),
    }
}

/// Moves entry `seq`'s caller row in the lookup to another caller, or back (`undo`).
async fn spoil_lookup(store: &Store, seq: u64, undo: bool) {
    let (from, to) = (
        "spiffe://region-a.credit.test/dept/",
        "spiffe://elsewhere/dept/",
    );
    let (from, to) = if undo { (to, from) } else { (from, to) };
    exec(
        store,
        &format!(
            "UPDATE ledger_lookup SET value = replace(value, '{from}', '{to}') \
             WHERE field = 'caller' AND seq = {seq}"
        ),
    )
    .await;
}

/// `ledger verify` names the first bad sequence number whether the log or the lookup holds it
/// (issue 5): a lookup row changed before an entry the log finds bad is named, and so is an
/// entry the log finds bad before a changed lookup row; entries cut off the tail too.
#[tokio::test]
async fn verify_names_the_first_bad_entry_of_the_log_and_the_lookup() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        signed_log(&store).await;
        assert_eq!(lookup::catch_up(&store).await.unwrap(), 20, "{engine}");
        for how in [Spoil::Bytes, Spoil::Column] {
            for (log_at, lookup_at) in [(16, 4), (4, 16), (9, 9)] {
                spoil_log(&store, how, log_at, false).await;
                spoil_lookup(&store, lookup_at, false).await;
                let err = verify(&store).await.unwrap_err();
                let case = format!("{engine}: {how:?} at {log_at}, lookup at {lookup_at}");
                if lookup_at < log_at {
                    assert!(
                        matches!(err, AuditError::LookupMismatch { seq } if seq == lookup_at),
                        "{case}: {err}"
                    );
                } else {
                    // On a tie too: the log's own finding says more.
                    assert!(log_finding(&err, how, log_at), "{case}: {err}");
                }
                assert_eq!(err.first_bad_seq(), Some(lookup_at.min(log_at)), "{case}");
                spoil_log(&store, how, log_at, true).await;
                spoil_lookup(&store, lookup_at, true).await;
                assert!(verify(&store).await.is_ok(), "{case}: put back");
            }
        }
        // Entries cut off the tail: a lookup row changed before the cut is named, one after it
        // (a row of an entry the log no longer has) is not.
        exec(&store, "DELETE FROM ledger_entries WHERE seq >= 17").await;
        spoil_lookup(&store, 4, false).await;
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(err, AuditError::LookupMismatch { seq: 4 }),
            "{engine}: {err}"
        );
        spoil_lookup(&store, 4, true).await;
        spoil_lookup(&store, 18, false).await;
        let err = verify(&store).await.unwrap_err();
        assert!(
            matches!(
                err,
                AuditError::Tampered(VerifyError::Truncated { have: 17, .. })
            ),
            "{engine}: {err}"
        );
    }
}

/// A page says more entries follow only when a matching one does: a page that ends exactly at
/// the last match is the last page, read from the lookup or from the log.
#[tokio::test]
async fn a_page_says_more_only_when_a_matching_entry_follows() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 100).await;
        append_sequentially(&ledger, 8).await;
        let d1 = EntryFilter {
            caller: Some("spiffe://region-a.credit.test/dept/d1".into()),
            ..Default::default()
        };
        for phase in ["nothing indexed", "all indexed"] {
            if phase == "all indexed" {
                assert_eq!(lookup::catch_up(&store).await.unwrap(), 8, "{engine}");
            }
            let page = |filter: EntryFilter, after, limit| {
                let ledger = ledger.clone();
                async move {
                    let got = ledger
                        .entries(&filter, Page { after, limit })
                        .await
                        .unwrap();
                    let seqs: Vec<u64> = got.entries.iter().map(|e| e.seq).collect();
                    (seqs, got.next_after)
                }
            };
            let context = format!("{engine}, {phase}");
            assert_eq!(
                page(EntryFilter::default(), None, 8).await,
                ((0..8).collect(), None),
                "{context}"
            );
            assert_eq!(
                page(EntryFilter::default(), Some(3), 4).await,
                ((4..8).collect(), None),
                "{context}"
            );
            assert_eq!(
                page(EntryFilter::default(), None, 7).await,
                ((0..7).collect(), Some(6)),
                "{context}"
            );
            // Entries 1, 4 and 7 are d1's.
            assert_eq!(
                page(d1.clone(), None, 3).await,
                (vec![1, 4, 7], None),
                "{context}"
            );
            assert_eq!(
                page(d1.clone(), None, 2).await,
                (vec![1, 4], Some(4)),
                "{context}"
            );
            assert_eq!(
                page(d1.clone(), Some(4), 1).await,
                (vec![7], None),
                "{context}"
            );
        }
        ledger.shutdown().await;
    }
}

#[tokio::test]
async fn an_export_verifies_offline_and_a_tampered_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (engine, store) in common::test_stores(dir.path()).await {
        let ledger = open(&store, 8).await;
        append_sequentially(&ledger, 21).await;
        ledger.sign_now().await.unwrap();
        ledger.append(entry(100)).await.unwrap(); // unsigned: not exported
        let mut out = Vec::new();
        let summary = audit::export(&store, &EntryFilter::default(), &mut out)
            .await
            .unwrap();
        assert_eq!((summary.entries, summary.tree_size), (21, 21), "{engine}");
        let report = verify_export(out.as_slice(), &public(1)).unwrap();
        assert!(
            report.complete() && report.entries == 21,
            "{engine}: {report:?}"
        );

        // A selection: one subject's entries.
        let mut one = Vec::new();
        let filter = EntryFilter {
            subject: Some(entry(3).subject),
            ..Default::default()
        };
        audit::export(&store, &filter, &mut one).await.unwrap();
        let report = verify_export(one.as_slice(), &public(1)).unwrap();
        assert_eq!((report.entries, report.complete()), (4, false), "{engine}");

        // Another key, and one changed hex digit of an entry: refused.
        assert!(matches!(
            verify_export(out.as_slice(), &public(2)),
            Err(ExportError::Sth(_))
        ));
        let text = String::from_utf8(out).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let at = lines[6].find("\"entry\":\"").unwrap() + 40;
        let flipped = if &lines[6][at..=at] == "0" { "1" } else { "0" };
        lines[6].replace_range(at..=at, flipped);
        let tampered = lines.join("\n");
        let err = verify_export(tampered.as_bytes(), &public(1)).unwrap_err();
        assert!(
            matches!(err, ExportError::LeafMismatch { seq: 5 }),
            "{engine}: {err}"
        );
    }
}

/// SQLite: another process's ingest holds the records file's write lock until its file is
/// written; the node's ledger lives in the activity file and keeps committing meanwhile.
#[tokio::test]
async fn sqlite_ledger_commits_while_an_ingest_holds_the_records_file() {
    use credit_node::{catalog::Catalog, gen_data};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("node.db").display());
    let node = Store::open(&url).await.unwrap();
    // A pool of its own, as the `ingest` command in another process has.
    let cli = Store::open(&url).await.unwrap();
    let catalog = Catalog::parse("demo.toml", credit_node::catalog::DEMO.as_bytes()).unwrap();
    let today = time::macros::date!(2026 - 11 - 27);
    let records: Vec<_> = gen_data::generate(&catalog, "samr", 50, 3, today).collect();
    let mut ingest = cli.begin_ingest(catalog.subject_types(), T0).await.unwrap();
    ingest.write(&records).await.unwrap();

    let ledger = open(&node, 8).await;
    append_sequentially(&ledger, 3).await;
    let outcome = ingest.commit().await.unwrap();
    assert!(outcome.inserted > 0, "{outcome:?}");
    ledger.sign_now().await.unwrap();
    assert_eq!(verify(&node).await.unwrap().entries, 3);
}

/// A SQLite store in `dir` whose ledger holds `n` entries (a tree head every 4), and its URL.
async fn sqlite_ledger_of(dir: &std::path::Path, n: u64) -> (String, Store) {
    let url = format!("sqlite://{}", dir.join("node.db").display());
    let store = Store::open(&url).await.unwrap();
    let ledger = open(&store, 4).await;
    append_sequentially(&ledger, n).await;
    ledger.shutdown().await;
    (url, store)
}

/// Four nodes or commands started on one store at the same moment, as after an upgrade.
async fn four_starts_at_once(url: &str) -> [Store; 4] {
    let (a, b, c, d) = tokio::join!(
        Store::open(url),
        Store::open(url),
        Store::open(url),
        Store::open(url)
    );
    [a, b, c, d].map(|s| s.unwrap_or_else(|e| panic!("a start failed: {e}")))
}

/// A SQLite store from before the activity file (every table in the records file) is split on
/// its next start, also when several processes start on it at once (the node and a CLI
/// command, say): one moves the tables, the others wait for it and find nothing left to move,
/// every start succeeds and no entry is lost.
#[tokio::test]
async fn a_store_from_before_the_split_is_split_by_concurrent_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (url, store) = sqlite_ledger_of(dir.path(), 10).await;
    // Back to one file: the activity file's tables, with their indexes and rows, into the
    // records file (SQLite keeps their statements unqualified: they create in `main`).
    let schema = sqlx::query::<Any>(
        "SELECT type, name, sql FROM activity.sqlite_master WHERE sql IS NOT NULL \
         ORDER BY type = 'index'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    for row in &schema {
        exec(&store, row.get::<&str, _>(2)).await;
        if row.get::<&str, _>(0) == "table" {
            let name = row.get::<&str, _>(1);
            exec(
                &store,
                &format!("INSERT INTO main.{name} SELECT * FROM activity.{name}"),
            )
            .await;
        }
    }
    for row in schema.iter().filter(|r| r.get::<&str, _>(0) == "table") {
        exec(
            &store,
            &format!("DROP TABLE activity.{}", row.get::<&str, _>(1)),
        )
        .await;
    }
    store.close().await;

    let stores = four_starts_at_once(&url).await;
    let in_main = sqlx::query::<Any>(
        "SELECT COUNT(*) FROM main.sqlite_master WHERE name LIKE 'ledger%' OR name LIKE 'quota%'",
    )
    .fetch_one(stores[0].pool())
    .await
    .unwrap()
    .get::<i64, _>(0);
    assert_eq!(in_main, 0, "tables left in the records file");
    assert_eq!(verify(&stores[3]).await.unwrap().entries, 10);
    for store in stores {
        store.close().await;
    }
}

/// A SQLite ledger whose entries were keyed as migration 2 declares them (`seq BIGINT PRIMARY
/// KEY`: an index of its own beside the rowid) is rebuilt with `seq` as the rowid on the next
/// start, by whichever of several concurrent starts gets there first: the same entries, the
/// same root, the time index kept, and the ledger goes on appending.
#[tokio::test]
async fn an_older_sqlite_ledger_is_keyed_by_its_sequence_number_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let (url, store) = sqlite_ledger_of(dir.path(), 10).await;
    let before = verify(&store).await.unwrap();
    // Back to the table of migration 2.
    let mut conn = store.pool().acquire().await.unwrap();
    for sql in [
        "CREATE TABLE activity.ledger_entries_old (seq BIGINT PRIMARY KEY, entry BLOB NOT NULL, \
         leaf_hash BLOB NOT NULL, time_ms BIGINT NOT NULL, caller TEXT NOT NULL, \
         subject TEXT NOT NULL, purpose TEXT NOT NULL, outcome TEXT NOT NULL)",
        "INSERT INTO activity.ledger_entries_old SELECT seq, entry, leaf_hash, time_ms, caller, \
         subject, purpose, outcome FROM activity.ledger_entries",
        "DROP TABLE activity.ledger_entries",
        "ALTER TABLE activity.ledger_entries_old RENAME TO ledger_entries",
        "CREATE INDEX activity.ledger_entries_by_time ON ledger_entries (time_ms)",
    ] {
        // On one connection: another of the pool may still read the schema it had.
        sqlx::query::<Any>(sql).execute(&mut *conn).await.unwrap();
    }
    drop(conn);
    let indexes = |store: Store| async move {
        sqlx::query::<Any>(
            "SELECT name FROM activity.sqlite_master WHERE type = 'index' \
             AND tbl_name = 'ledger_entries' ORDER BY name",
        )
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect::<Vec<_>>()
    };
    assert_eq!(
        indexes(store.clone()).await,
        [
            "ledger_entries_by_time",
            "sqlite_autoindex_ledger_entries_1"
        ],
        "the test must start from the older table"
    );
    store.close().await;

    let stores = four_starts_at_once(&url).await;
    assert_eq!(indexes(stores[0].clone()).await, ["ledger_entries_by_time"]);
    let after = verify(&stores[1]).await.unwrap();
    assert_eq!((after.entries, after.root), (before.entries, before.root));
    let ledger = open(&stores[2], 4).await;
    ledger.append(entry(10)).await.unwrap();
    ledger.shutdown().await;
    assert_eq!(verify(&stores[3]).await.unwrap().entries, 11);
    for store in stores {
        store.close().await;
    }
}

/// A SQLite ledger from before the lookup (indexes by caller and subject on the entries) is
/// migrated on the next start: the indexes are gone, the lookup tables sit in the activity
/// file, and listings are complete before and after the lookup has caught up.
#[tokio::test]
async fn an_older_sqlite_ledger_gets_its_lookup_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("node.db").display());
    let store = Store::open(&url).await.unwrap();
    let ledger = open(&store, 100).await;
    for n in 0..10 {
        ledger.append(entry(n)).await.unwrap();
    }
    ledger.shutdown().await;
    // Back to the schema of migration 3.
    for sql in [
        "DROP TABLE activity.ledger_lookup",
        "DROP TABLE activity.ledger_lookup_head",
        "CREATE INDEX activity.ledger_entries_by_caller ON ledger_entries (caller, seq)",
        "CREATE INDEX activity.ledger_entries_by_subject ON ledger_entries (subject, seq)",
        "DELETE FROM _sqlx_migrations WHERE version = 4",
    ] {
        exec(&store, sql).await;
    }
    store.close().await;

    let store = Store::open(&url).await.unwrap();
    let names = |schema: &'static str| {
        let store = store.clone();
        async move {
            sqlx::query::<Any>(&format!(
                "SELECT name FROM {schema}.sqlite_master WHERE name LIKE 'ledger%' ORDER BY name"
            ))
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect::<Vec<_>>()
        }
    };
    assert!(names("main").await.is_empty(), "{:?}", names("main").await);
    let activity = names("activity").await;
    for table in ["ledger_lookup", "ledger_lookup_head"] {
        assert!(activity.iter().any(|n| n == table), "{activity:?}");
    }
    assert!(
        !activity
            .iter()
            .any(|n| n.contains("by_caller") || n.contains("by_subject")),
        "{activity:?}"
    );
    let ledger = open(&store, 100).await;
    let by_subject = EntryFilter {
        subject: Some(entry(2).subject),
        ..Default::default()
    };
    let page = Page {
        after: None,
        limit: 100,
    };
    let seqs =
        |page: ledger_store::EntryPage| page.entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(ledger.entries(&by_subject, page).await.unwrap()),
        vec![2, 7]
    );
    // An indexing interrupted after writing rows but before moving `indexed` past them: the
    // entry is in the lookup and in the scanned tail, and is listed once.
    exec(
        &store,
        &format!(
            "INSERT INTO ledger_lookup (field, value, seq) VALUES ('subject', '{}', 7)",
            entry(2).subject
        ),
    )
    .await;
    assert_eq!(
        seqs(ledger.entries(&by_subject, page).await.unwrap()),
        vec![2, 7]
    );
    assert_eq!(lookup::catch_up(&store).await.unwrap(), 10);
    assert_eq!(
        seqs(ledger.entries(&by_subject, page).await.unwrap()),
        vec![2, 7]
    );
    assert!(verify(&store).await.is_ok());
}
