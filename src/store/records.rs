//! Persisting and reading credit records.
//!
//! An ingest batch is one transaction: all rows or none (promise 9). Rows are keyed by
//! [`Record::key`], so re-ingesting a file inserts nothing twice.

use std::collections::BTreeMap;

use sqlx::{Any, Row, any::AnyRow, query::Query};
use time::Date;

use super::{Engine, Store, StoreError};
use crate::{
    catalog::{Severity, SubjectType, SubjectTypes},
    records::{Basis, Designation, Record, Restoration},
};

pub(super) const COLUMNS: &str = "record_key, subject_id, item_id, fields, basis_kind, basis_number, \
    basis_date, basis_issuer, severity, decision_date, disclosure_end, restored_on, \
    restoration_basis, designated_on, removal_conditions, removed_on, removal_basis, ingested_ms";
const NCOLS: usize = 18;
/// Rows per INSERT statement: 1,000 × 18 parameters stays below both engines' limits (32,766 and
/// 65,535), and multi-row statements are what make a fast ingest possible on SQLite.
const CHUNK: usize = 1000;
/// The PostgreSQL advisory lock an ingest holds until its transaction ends, one value for every
/// replica and `credit-node ingest` of a node (see [`Store::begin_ingest`]).
const INGEST_LOCK: i64 = 0x696e_6765_7374_6c6b; // "ingestlk"

/// What an ingest batch changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InsertOutcome {
    pub inserted: u64,
    pub already_present: u64,
}

/// A stored record not yet restored, as far as its restoration needs: the subject its ledger
/// entry names, and the item and decision date it is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unrestored {
    /// The record's full key ([`Record::key`]), to restore exactly it.
    pub key: [u8; 32],
    pub subject: String,
    pub item: String,
    pub decision_date: Date,
}

/// Subject kind as stored, for review: from the item's subject type.
fn subject_kind(ty: SubjectType) -> &'static str {
    match ty {
        SubjectType::LegalPerson => "legal_person",
        SubjectType::NaturalPerson => "natural_person",
    }
}

fn date_text(d: Date) -> String {
    d.to_string()
}

fn opt_date(d: Option<Date>) -> Option<String> {
    d.map(date_text)
}

/// One ingest batch in progress: a transaction that takes records a part at a time and writes
/// them only on [`Ingest::commit`]. Dropped uncommitted, it leaves the store as it was, so a
/// file can be written while it is still being validated and still be all or nothing.
pub struct Ingest {
    tx: sqlx::Transaction<'static, Any>,
    /// Declared after `tx`: released only once the transaction has ended.
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    engine: Engine,
    now_ms: i64,
    subject_types: SubjectTypes,
    outcome: InsertOutcome,
}

/// One multi-row INSERT of `chunk` with its parameters bound, and its row count.
fn records_statement<'r>(
    sql: &'r str,
    chunk: &'r [(&Record, [u8; 32])],
    now_ms: i64,
) -> Result<(usize, Query<'r, Any, sqlx::any::AnyArguments<'r>>), StoreError> {
    let mut q = sqlx::query::<Any>(sql);
    for (r, key) in chunk {
        q = bind_record(q, r, key, now_ms)?;
    }
    Ok((chunk.len(), q))
}

impl Ingest {
    /// Writes `records` into the batch. Records already stored, or written earlier in this
    /// batch (same key), are left as they are and counted as `already_present`.
    pub async fn write(&mut self, records: &[Record]) -> Result<(), StoreError> {
        let mut subjects = Vec::with_capacity(records.len());
        for r in records {
            let ty = self
                .subject_types
                .get(&r.item)
                .ok_or_else(|| StoreError::UnknownItem(r.item.clone()))?;
            subjects.push((r.subject.as_str(), subject_kind(*ty)));
        }
        subjects.sort_unstable();
        subjects.dedup_by(|a, b| a.0 == b.0);
        for chunk in subjects.chunks(CHUNK) {
            let mut sql = String::from("INSERT INTO subjects (id, kind, created_ms) VALUES ");
            self.engine.placeholders().tuples(&mut sql, chunk.len(), 3);
            sql.push_str(" ON CONFLICT (id) DO NOTHING");
            let mut q = sqlx::query::<Any>(&sql);
            for (subject, kind) in chunk {
                q = q.bind(*subject).bind(*kind).bind(self.now_ms);
            }
            q.execute(&mut *self.tx).await?;
        }
        // In key order: the primary key is the table's clustered B-tree, and sorted inserts
        // touch each page once instead of at random.
        let mut ordered: Vec<(&Record, [u8; 32])> = records.iter().map(|r| (r, r.key())).collect();
        ordered.sort_unstable_by_key(|(_, key)| *key);
        // SQLite runs one statement while this task binds the next (serialising fields,
        // formatting dates): the two cores overlap instead of taking turns.
        let sql_of = |rows: usize| {
            let mut sql = format!("INSERT INTO records ({COLUMNS}) VALUES ");
            self.engine.placeholders().tuples(&mut sql, rows, NCOLS);
            sql.push_str(" ON CONFLICT (record_key) DO NOTHING");
            sql
        };
        let full = sql_of(CHUNK);
        let last = sql_of(ordered.len() % CHUNK);
        let now_ms = self.now_ms;
        let sql = |rows: usize| {
            if rows == CHUNK {
                full.as_str()
            } else {
                last.as_str()
            }
        };
        let mut chunks = ordered.chunks(CHUNK);
        let mut next = chunks
            .next()
            .map(|c| records_statement(sql(c.len()), c, now_ms))
            .transpose()?;
        while let Some((rows, query)) = next {
            let (done, following) =
                futures_util::future::join(query.execute(&mut *self.tx), async {
                    chunks
                        .next()
                        .map(|c| records_statement(sql(c.len()), c, now_ms))
                        .transpose()
                })
                .await;
            let inserted = done?.rows_affected();
            self.outcome.inserted += inserted;
            self.outcome.already_present += rows as u64 - inserted;
            next = following?;
        }
        Ok(())
    }

    /// Makes everything written durable, at once.
    pub async fn commit(self) -> Result<InsertOutcome, StoreError> {
        self.tx.commit().await?;
        Ok(self.outcome)
    }
}

impl Store {
    /// Inserts every record in one transaction. Records already stored (same key) are left as
    /// they are and counted as `already_present`.
    pub async fn insert_records(
        &self,
        records: &[Record],
        subject_types: SubjectTypes,
        now_ms: i64,
    ) -> Result<InsertOutcome, StoreError> {
        let mut ingest = self.begin_ingest(subject_types, now_ms).await?;
        ingest.write(records).await?;
        ingest.commit().await
    }

    /// Opens one ingest batch, to be written a part at a time as its records are validated.
    /// `subject_types` (the catalog's) tell the kind of each new subject.
    ///
    /// Ingests take turns, one batch at a time per database. SQLite lets one writer in anyway;
    /// on PostgreSQL the turn is an advisory lock held until the batch's transaction ends
    /// (transaction-scoped, so a batch dropped uncommitted cannot keep it), shared by every
    /// replica and `credit-node ingest` of the node. Without it, two batches with records in
    /// common wait on each other's uncommitted rows, and can deadlock (SQLSTATE 40P01, one of
    /// them refused): a file is written in parts as it is validated, each part in key order but
    /// the parts in the file's order, so two files holding the same records in other orders
    /// take their rows in other orders. One key order for the whole batch would need every
    /// record of a file in memory before the first is written; taking turns costs only the
    /// parallelism of ingests, which are an operator's occasional work.
    ///
    /// The wait for the turn is exempt from `lock_timeout` ([`super::StoreSettings`]), put back
    /// for the batch's own statements: a turn lasts as long as a file takes to write, far longer
    /// than any lock of the query path, and a holder that stalls is ended by
    /// `idle_in_transaction_session_timeout`, which ends its turn.
    pub async fn begin_ingest(
        &self,
        subject_types: SubjectTypes,
        now_ms: i64,
    ) -> Result<Ingest, StoreError> {
        let turn = self.write_turn(super::File::Records).await;
        let mut tx = self.pool.begin().await?;
        if self.engine == Engine::Postgres {
            // Numbers only: nothing of the config reaches the SQL as text.
            let take_turn = format!(
                "SET LOCAL lock_timeout = 0; SELECT pg_advisory_xact_lock({INGEST_LOCK}); \
                 SET LOCAL lock_timeout = {};",
                self.settings.lock_timeout_ms
            );
            sqlx::Executor::execute(&mut *tx, take_turn.as_str()).await?;
        }
        Ok(Ingest {
            tx,
            _turn: turn,
            engine: self.engine,
            now_ms,
            subject_types,
            outcome: InsertOutcome::default(),
        })
    }

    /// The stored records of a subject for `items`, disclosable or not; the query path
    /// filters with [`Record::disclosable`] so that promise 8 has one implementation. Only the
    /// items asked for are read: a subject may have many records of other items. Reads that
    /// arrive together go to the database together ([`super::grouped_reads`]).
    pub async fn records_of(
        &self,
        subject: &str,
        items: &[&str],
    ) -> Result<Vec<Record>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.grouped_reads.records_of(subject, items).await
    }

    /// Whether the subject is known at all (for enumeration detection and "not found").
    pub async fn subject_exists(&self, subject: &str) -> Result<bool, StoreError> {
        let mut reader = self.reader().await?;
        let row = loop {
            let count = sqlx::query::<Any>("SELECT COUNT(*) FROM subjects WHERE id = $1")
                .bind(subject)
                .fetch_one(reader.conn());
            let row = self.deadline.run(count).await;
            if let Some(row) = reader.settle(row).await? {
                break row;
            }
        };
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// The stored record not yet restored whose key begins with `prefix` (as a
    /// [`crate::records::RecordId`] names it), with what its restoration is checked against
    /// and recorded under; read before the restoration is made. `None` when there is no such
    /// record, or (never seen: 128 bits of SHA-256) when two share the prefix.
    pub async fn unrestored(&self, prefix: &[u8; 16]) -> Result<Option<Unrestored>, StoreError> {
        // A range on the primary key: both engines order keys byte by byte.
        let (mut low, mut high) = ([0u8; 32], [0xffu8; 32]);
        low[..16].copy_from_slice(prefix);
        high[..16].copy_from_slice(prefix);
        let rows = sqlx::query::<Any>(
            "SELECT record_key, subject_id, item_id, decision_date FROM records \
             WHERE record_key >= $1 AND record_key <= $2 AND restored_on IS NULL LIMIT 2",
        )
        .bind(low.to_vec())
        .bind(high.to_vec())
        .fetch_all(&self.pool);
        let rows = self.deadline.run(rows).await?;
        let [r] = rows.as_slice() else {
            return Ok(None);
        };
        let key: Vec<u8> = r.try_get("record_key")?;
        let key = key
            .try_into()
            .map_err(|_| StoreError::Corrupt("record_key: not 32 bytes".into()))?;
        Ok(Some(Unrestored {
            key,
            subject: r.try_get("subject_id")?,
            item: r.try_get("item_id")?,
            decision_date: parse_date(&r.try_get::<String, _>("decision_date")?, "decision_date")?,
        }))
    }

    /// Records credit restoration of one record. Returns false when no such record exists.
    ///
    /// The same statement marks the record withdrawn at `now_ms` (the node's clock), so its
    /// recipients learn of it ([`Store::withdrawals`]) exactly when it stops being shared;
    /// unless a removal from its list withdrew it already, which stays the withdrawal.
    pub async fn restore_record(
        &self,
        key: &[u8; 32],
        on: Date,
        basis: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn(super::File::Records).await;
        let done = sqlx::query::<Any>(
            "UPDATE records SET restored_on = $1, restoration_basis = $2, \
             withdrawn_ms = CASE WHEN removed_on IS NULL THEN $3 ELSE withdrawn_ms END, \
             withdrawn_by = CASE WHEN removed_on IS NULL THEN 'restored' ELSE withdrawn_by END \
             WHERE record_key = $4 AND restored_on IS NULL",
        )
        .bind(date_text(on))
        .bind(basis)
        .bind(now_ms)
        .bind(key.to_vec())
        .execute(&self.pool);
        let done = self.deadline.run(done).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes a subject from a list (every current designation of that list item), marking
    /// each designation withdrawn at `now_ms` as [`Store::restore_record`] does, unless a
    /// restoration withdrew it already.
    pub async fn remove_from_list(
        &self,
        subject: &str,
        item: &str,
        on: Date,
        basis: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let _turn = self.write_turn(super::File::Records).await;
        let done = sqlx::query::<Any>(
            "UPDATE records SET removed_on = $1, removal_basis = $2, \
             withdrawn_ms = CASE WHEN restored_on IS NULL THEN $3 ELSE withdrawn_ms END, \
             withdrawn_by = CASE WHEN restored_on IS NULL THEN 'removed_from_list' \
                                 ELSE withdrawn_by END \
             WHERE subject_id = $4 AND item_id = $5 AND designated_on IS NOT NULL AND removed_on IS NULL",
        )
        .bind(date_text(on))
        .bind(basis)
        .bind(now_ms)
        .bind(subject)
        .bind(item)
        .execute(&self.pool);
        let done = self.deadline.run(done).await?;
        Ok(done.rows_affected())
    }
}

fn bind_record<'q>(
    q: Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    r: &'q Record,
    key: &[u8; 32],
    now_ms: i64,
) -> Result<Query<'q, Any, sqlx::any::AnyArguments<'q>>, StoreError> {
    let fields =
        serde_json::to_string(&r.fields).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let designation = r.designation.as_ref();
    Ok(q.bind(key.to_vec())
        .bind(r.subject.as_str())
        .bind(r.item.as_str())
        .bind(fields)
        .bind(r.basis.kind.as_str())
        .bind(r.basis.number.as_str())
        .bind(date_text(r.basis.date))
        .bind(r.basis.issuer.as_str())
        .bind(r.severity.map(|s| s.as_str()))
        .bind(date_text(r.decision_date))
        .bind(opt_date(r.disclosure_end))
        .bind(opt_date(r.restoration.as_ref().map(|x| x.on)))
        .bind(r.restoration.as_ref().map(|x| x.basis.as_str()))
        .bind(opt_date(designation.map(|d| d.designated_on)))
        .bind(designation.map(|d| d.removal_conditions.as_str()))
        .bind(opt_date(designation.and_then(|d| d.removed_on)))
        .bind(designation.and_then(|d| d.removal_basis.as_deref()))
        .bind(now_ms))
}

pub(super) fn parse_date(text: &str, column: &str) -> Result<Date, StoreError> {
    Date::parse(text, &time::format_description::well_known::Iso8601::DATE)
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn opt(row: &AnyRow, column: &str) -> Result<Option<String>, StoreError> {
    Ok(row.try_get::<Option<String>, _>(column)?)
}

fn opt_date_col(row: &AnyRow, column: &str) -> Result<Option<Date>, StoreError> {
    opt(row, column)?
        .map(|t| parse_date(&t, column))
        .transpose()
}

pub(super) fn record_from_row(row: &AnyRow) -> Result<Record, StoreError> {
    let get = |c: &str| -> Result<String, StoreError> { Ok(row.try_get::<String, _>(c)?) };
    let fields: BTreeMap<String, String> = serde_json::from_str(&get("fields")?)
        .map_err(|e| StoreError::Corrupt(format!("fields: {e}")))?;
    let severity = match opt(row, "severity")?.as_deref() {
        None => None,
        Some("minor") => Some(Severity::Minor),
        Some("ordinary") => Some(Severity::Ordinary),
        Some("serious") => Some(Severity::Serious),
        Some(other) => return Err(StoreError::Corrupt(format!("severity {other:?}"))),
    };
    let restoration = match (
        opt_date_col(row, "restored_on")?,
        opt(row, "restoration_basis")?,
    ) {
        (Some(on), Some(basis)) => Some(Restoration { on, basis }),
        _ => None,
    };
    let designation = match opt_date_col(row, "designated_on")? {
        Some(designated_on) => Some(Designation {
            designated_on,
            removal_conditions: opt(row, "removal_conditions")?.unwrap_or_default(),
            removed_on: opt_date_col(row, "removed_on")?,
            removal_basis: opt(row, "removal_basis")?,
        }),
        None => None,
    };
    Ok(Record {
        subject: get("subject_id")?,
        item: get("item_id")?,
        fields,
        basis: Basis {
            kind: get("basis_kind")?,
            number: get("basis_number")?,
            date: parse_date(&get("basis_date")?, "basis_date")?,
            issuer: get("basis_issuer")?,
        },
        severity,
        decision_date: parse_date(&get("decision_date")?, "decision_date")?,
        disclosure_end: opt_date_col(row, "disclosure_end")?,
        restoration,
        designation,
    })
}
