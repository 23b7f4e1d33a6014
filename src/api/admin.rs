//! `credit.v1.Administration`: the department's own operators ingest, restore and remove.
//! Everyone else — other departments, officers, operators of other regions — is refused
//! before anything is read.
//!
//! On record first: each change is appended to the ledger, and made only once its entry is
//! durable, so what the node shares never changes without a trace. A change that then fails
//! leaves its entry (the attempt stands on record) and the operator an error.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::caller;
use crate::{
    catalog::SignedCatalog,
    identity::Caller,
    ingest::{self, Format, Rows},
    ledger::{
        Receipt,
        entry::{self, AdminAction, Outcome},
        hex,
    },
    proto::{self, administration_server::Administration},
    records::RecordId,
    state::NodeState,
    store::records::Unrestored,
};

pub struct AdministrationApi {
    state: Arc<NodeState>,
}

impl AdministrationApi {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }

    /// Only the operators the department names (`access.operators`): an operator of another
    /// department in the same region is refused like anyone else.
    /// A refused caller's attempt is recorded (`rpc` names the call).
    async fn operator<'r, T>(
        &self,
        request: &'r Request<T>,
        rpc: &str,
    ) -> Result<&'r Caller, Status> {
        let caller = caller(&self.state, request)?;
        let id = &caller.spiffe_id;
        if !self.state.access().is_operator(id) {
            tracing::warn!(caller = %id, rpc, "administration refused: not an operator of this department");
            let refusal =
                Status::permission_denied("administration is for this department's operators only");
            return Err(super::refuse_on_record(&self.state, caller, rpc, refusal).await);
        }
        Ok(caller)
    }

    /// Appends the entry of one change and returns its receipt once it is durable.
    async fn record(
        &self,
        operator: &Caller,
        action: AdminAction,
        subject: &str,
        basis: &str,
        detail: String,
    ) -> Result<Receipt, Status> {
        let outcome = Outcome::Administration(entry::Administration { action, detail });
        let mut entry = super::action_entry(&self.state, operator, outcome);
        entry.subject = subject.to_owned();
        entry.basis = basis.to_owned();
        self.state.ledger().append(entry).await.map_err(|e| {
            tracing::error!(error = %e, action = action.as_str(), "administration could not be recorded");
            Status::unavailable(
                "the change could not be recorded in the ledger; nothing was changed",
            )
        })
    }
}

/// The administration's failure after its entry is durable: the entry stands, the change not.
fn unrecorded_change(receipt: &Receipt, e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, seq = receipt.seq, "administration recorded but not made");
    Status::unavailable(format!(
        "the node's store is unavailable: the change is recorded as ledger entry {} but was \
         not made; try again",
        receipt.seq
    ))
}

fn date(field: &str, value: &str) -> Result<time::Date, Status> {
    time::Date::parse(value, &time::format_description::well_known::Iso8601::DATE)
        .map_err(|_| Status::invalid_argument(format!("{field}: expected a date YYYY-MM-DD")))
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 200 {
        return Err(Status::invalid_argument(format!(
            "{field}: required, at most 200 characters"
        )));
    }
    Ok(value)
}

/// The checks ingest makes of a row's restoration, made of a stored record: a restoration the
/// catalog or the record's own dates do not allow is refused like a bad request, before
/// anything is recorded or changed (a record restored that should not be would vanish from
/// every answer). `today` is the node's clock's, as ingest's is: a restoration dated after it
/// has not taken effect, and recorded now it would mark the record restored (so the real
/// restoration could no longer be recorded) and withdraw it later on that date's word alone.
fn restoration_allowed(
    catalog: &SignedCatalog,
    record: &Unrestored,
    on: time::Date,
    today: time::Date,
) -> Result<(), Status> {
    // An item the catalog in force no longer declares has no `restorable` to allow it.
    let item = catalog.catalog().item(&record.item).ok_or_else(|| {
        Status::invalid_argument(format!(
            "record_id: item {:?} of the record is not in the catalog in force",
            record.item
        ))
    })?;
    ingest::check_restorable(item)
        .map_err(|e| Status::invalid_argument(format!("record_id: {e}")))?;
    ingest::check_restored_on(record.decision_date, on, today)
        .map_err(|e| Status::invalid_argument(format!("restored_on: {e}")))
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "store error during administration");
    Status::unavailable("the node's store is unavailable; nothing was changed")
}

#[tonic::async_trait]
impl Administration for AdministrationApi {
    async fn ingest_records(
        &self,
        request: Request<proto::IngestRecordsRequest>,
    ) -> Result<Response<proto::IngestRecordsResponse>, Status> {
        let caller = self
            .operator(&request, "credit.v1.Administration/IngestRecords")
            .await?;
        let lines = request.get_ref().json_lines.join("\n");
        let catalog = self.state.catalog();
        let rows = Rows::from_reader(Format::JsonLines, lines.as_bytes());
        let mut records = Vec::new();
        let validated = ingest::validate_into(
            catalog.catalog(),
            self.state.department(),
            self.state.clock().today(),
            rows,
            u64::MAX,
            |_| {},
            |r| records.push(r),
        );
        if let Err(report) = validated {
            return Err(Status::invalid_argument(format!(
                "nothing written: {report}"
            )));
        }
        // One entry per subject, so that an officer listing a subject's entries finds the
        // ingest that put its records here; each names the whole batch by its digest.
        let digest = ring::digest::digest(&ring::digest::SHA256, lines.as_bytes());
        let batch = format!(
            "a batch of {} records in {} rows of JSON Lines (SHA-256 of the rows joined by \
             newlines: {})",
            records.len(),
            request.get_ref().json_lines.len(),
            hex::encode(digest.as_ref())
        );
        let mut subjects = ingest::BySubject::default();
        subjects.add(&records);
        let subjects = subjects.into_counts();
        let recorded = subjects.iter().map(|(subject, n)| {
            let detail = format!("{n} records of this subject in {batch}");
            self.record(caller, AdminAction::IngestRecords, subject, "", detail)
        });
        let receipts = futures_util::future::join_all(recorded)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let outcome = self
            .state
            .store()
            .insert_records(
                &records,
                catalog.catalog().subject_types(),
                self.state.clock().now_ms(),
            )
            .await
            .map_err(|e| match receipts.first() {
                Some(receipt) => unrecorded_change(receipt, e),
                None => unavailable(e),
            })?;
        tracing::info!(operator = %caller.spiffe_id, inserted = outcome.inserted,
            subjects = receipts.len(), "records ingested");
        Ok(Response::new(proto::IngestRecordsResponse {
            inserted: outcome.inserted,
            already_present: outcome.already_present,
            receipts: receipts
                .iter()
                .map(super::convert::ledger_receipt)
                .collect(),
        }))
    }

    async fn restore_record(
        &self,
        request: Request<proto::RestoreRecordRequest>,
    ) -> Result<Response<proto::RestoreRecordResponse>, Status> {
        let caller = self
            .operator(&request, "credit.v1.Administration/RestoreRecord")
            .await?;
        let req = request.get_ref();
        let id = RecordId::parse(&req.record_id).ok_or_else(|| {
            Status::invalid_argument(
                "record_id: expected 32 hexadecimal digits, as a query's record_id gives",
            )
        })?;
        let on = date("restored_on", &req.restored_on)?;
        let basis = required("basis", &req.basis)?;
        let not_found =
            || Status::not_found("record_id: no such record, or it is already restored");
        let record = self
            .state
            .store()
            .unrestored(&self.state.record_ids().key_prefix(&id))
            .await
            .map_err(unavailable)?
            .ok_or_else(not_found)?;
        let today = self.state.clock().today();
        restoration_allowed(&self.state.catalog(), &record, on, today)?;
        let detail = format!("record {id} restored from {on}");
        let receipt = self
            .record(
                caller,
                AdminAction::RestoreRecord,
                &record.subject,
                basis,
                detail,
            )
            .await?;
        let done = self
            .state
            .store()
            .restore_record(&record.key, on, basis, self.state.clock().now_ms())
            .await
            .map_err(|e| unrecorded_change(&receipt, e))?;
        if !done {
            // Restored by another operator between the read and the write: the entry stands
            // for an attempt, and the record is restored either way.
            return Err(not_found());
        }
        tracing::info!(operator = %caller.spiffe_id, record = %req.record_id, seq = receipt.seq, "record restored");
        Ok(Response::new(proto::RestoreRecordResponse {
            receipt: Some(super::convert::ledger_receipt(&receipt)),
        }))
    }

    async fn remove_from_list(
        &self,
        request: Request<proto::RemoveFromListRequest>,
    ) -> Result<Response<proto::RemoveFromListResponse>, Status> {
        let caller = self
            .operator(&request, "credit.v1.Administration/RemoveFromList")
            .await?;
        let req = request.get_ref();
        let subject = super::convert::subject(
            "subject",
            &req.subject,
            proto::SubjectType::Unspecified,
            self.state.clock().today(),
        )?;
        let catalog = self.state.catalog();
        let item = catalog
            .catalog()
            .item(&req.item)
            .filter(|i| ingest::is_list_item(i))
            .ok_or_else(|| Status::invalid_argument("item: not a list item of the catalog"))?;
        let on = date("removed_on", &req.removed_on)?;
        // As ingest refuses a row's removal dated ahead: a removal decided in the future is
        // not a decision yet, and entered now it would end the listing on that day unreviewed.
        ingest::check_not_after_today(on, self.state.clock().today())
            .map_err(|e| Status::invalid_argument(format!("removed_on: {e}")))?;
        let basis = required("basis", &req.basis)?;
        let detail = format!("removed from the list {} from {on}", item.id);
        let receipt = self
            .record(caller, AdminAction::RemoveFromList, &subject, basis, detail)
            .await?;
        let removed = self
            .state
            .store()
            .remove_from_list(&subject, &item.id, on, basis, self.state.clock().now_ms())
            .await
            .map_err(|e| unrecorded_change(&receipt, e))?;
        tracing::info!(operator = %caller.spiffe_id, item = %item.id, removed, seq = receipt.seq, "list designation removed");
        Ok(Response::new(proto::RemoveFromListResponse {
            removed,
            receipt: Some(super::convert::ledger_receipt(&receipt)),
        }))
    }
}
