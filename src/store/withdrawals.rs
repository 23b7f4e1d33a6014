//! Reading withdrawals: records this node had been sharing and shares no more, for the
//! recipients who must stop using them (`CreditQuery/ListWithdrawals`).
//!
//! They are written by [`Store::restore_record`] and [`Store::remove_from_list`], in the very
//! statement that ends the sharing, so a record is never withdrawn without its notice.

use sqlx::{Any, Row, any::AnyRow};

use super::{Store, StoreError, records::parse_date};
use crate::records::{Withdrawal, WithdrawalReason};

/// Where a page of withdrawals ended: the last withdrawal's time and the first half of its key
/// (what a [`crate::records::RecordId`] gives back). Pages go by (time, key), which no later
/// withdrawal reorders, so paging is stable while withdrawals are added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct After {
    pub withdrawn_ms: i64,
    pub key_prefix: [u8; 16],
}

impl Store {
    /// Up to `limit` withdrawals of records of `items`, withdrawn at or after `since_ms` and
    /// after `after`, oldest first (by time, then key). Only the items asked for are read: a
    /// caller is told only of records it could have received.
    pub async fn withdrawals(
        &self,
        items: &[&str],
        since_ms: i64,
        after: Option<After>,
        limit: u32,
    ) -> Result<Vec<Withdrawal>, StoreError> {
        if items.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut p = self.engine.placeholders();
        let mut sql = format!(
            "SELECT record_key, item_id, withdrawn_ms, withdrawn_by, restored_on, removed_on \
             FROM records WHERE withdrawn_ms IS NOT NULL AND withdrawn_ms >= {}",
            p.next()
        );
        let lower = after.map_or(since_ms, |a| a.withdrawn_ms.max(since_ms));
        // Past the cursor: a later time, or its time and a key above every key of its prefix.
        if after.is_some() {
            sql.push_str(&format!(
                " AND (withdrawn_ms > {} OR record_key > {})",
                p.next(),
                p.next()
            ));
        }
        sql.push_str(" AND item_id IN (");
        p.list(&mut sql, items.len());
        sql.push_str(&format!(
            ") ORDER BY withdrawn_ms, record_key LIMIT {}",
            p.next()
        ));
        let query = || {
            let mut q = sqlx::query::<Any>(&sql).bind(lower);
            if let Some(a) = after {
                let mut high = [0xffu8; 32];
                high[..16].copy_from_slice(&a.key_prefix);
                q = q.bind(a.withdrawn_ms).bind(high.to_vec());
            }
            for item in items {
                q = q.bind(*item);
            }
            q.bind(i64::from(limit))
        };
        let mut reader = self.reader().await?;
        let rows = loop {
            let rows = self.deadline.run(query().fetch_all(reader.conn())).await;
            if let Some(rows) = reader.settle(rows).await? {
                break rows;
            }
        };
        rows.iter().map(withdrawal_from_row).collect()
    }
}

fn withdrawal_from_row(row: &AnyRow) -> Result<Withdrawal, StoreError> {
    let key: Vec<u8> = row.try_get("record_key")?;
    let key = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("record_key: not 32 bytes".into()))?;
    let by: Option<String> = row.try_get("withdrawn_by")?;
    let reason = by
        .as_deref()
        .and_then(WithdrawalReason::parse)
        .ok_or_else(|| StoreError::Corrupt(format!("withdrawn_by {by:?}")))?;
    let column = match reason {
        WithdrawalReason::Restored => "restored_on",
        WithdrawalReason::RemovedFromList => "removed_on",
    };
    let on: Option<String> = row.try_get(column)?;
    let on = on.ok_or_else(|| StoreError::Corrupt(format!("{column}: missing on a withdrawal")))?;
    Ok(Withdrawal {
        key,
        item: row.try_get("item_id")?,
        withdrawn_ms: row.try_get("withdrawn_ms")?,
        reason,
        on: parse_date(&on, column)?,
    })
}
