//! `credit.v1.Administration`: the department's own operators ingest, restore and remove.
//! Everyone else — other departments, officers, operators of other regions — is refused
//! before anything is read.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::caller;
use crate::{
    identity::{Caller, Kind},
    ingest::{self, Format, Rows},
    proto::{self, administration_server::Administration},
    state::NodeState,
};

pub struct AdministrationApi {
    state: Arc<NodeState>,
}

impl AdministrationApi {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }

    /// Only `operator` identities of this node's own trust domain.
    fn operator<'r, T>(&self, request: &'r Request<T>) -> Result<&'r Caller, Status> {
        let caller = caller(request)?;
        let id = &caller.spiffe_id;
        if id.kind() != Kind::Operator || id.trust_domain() != self.state.node_id().trust_domain() {
            tracing::warn!(caller = %id, "administration refused: not an operator of this department");
            return Err(Status::permission_denied(
                "administration is for this department's operators only",
            ));
        }
        Ok(caller)
    }
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
        let caller = self.operator(&request)?;
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
        let outcome = self
            .state
            .store()
            .insert_records(&records, self.state.clock().now_ms())
            .await
            .map_err(unavailable)?;
        tracing::info!(operator = %caller.spiffe_id, inserted = outcome.inserted, "records ingested");
        Ok(Response::new(proto::IngestRecordsResponse {
            inserted: outcome.inserted,
            already_present: outcome.already_present,
        }))
    }

    async fn restore_record(
        &self,
        request: Request<proto::RestoreRecordRequest>,
    ) -> Result<Response<proto::RestoreRecordResponse>, Status> {
        let caller = self.operator(&request)?;
        let req = request.get_ref();
        let key = crate::ledger::hex::decode_array::<32>(&req.record_id)
            .ok_or_else(|| Status::invalid_argument("record_id: expected 64 hexadecimal digits"))?;
        let on = date("restored_on", &req.restored_on)?;
        let basis = required("basis", &req.basis)?;
        let done = self
            .state
            .store()
            .restore_record(&key, on, basis)
            .await
            .map_err(unavailable)?;
        if !done {
            return Err(Status::not_found(
                "record_id: no such record, or it is already restored",
            ));
        }
        tracing::info!(operator = %caller.spiffe_id, record = %req.record_id, "record restored");
        Ok(Response::new(proto::RestoreRecordResponse {}))
    }

    async fn remove_from_list(
        &self,
        request: Request<proto::RemoveFromListRequest>,
    ) -> Result<Response<proto::RemoveFromListResponse>, Status> {
        let caller = self.operator(&request)?;
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
        let basis = required("basis", &req.basis)?;
        let removed = self
            .state
            .store()
            .remove_from_list(&subject, &item.id, on, basis)
            .await
            .map_err(unavailable)?;
        tracing::info!(operator = %caller.spiffe_id, item = %item.id, removed, "list designation removed");
        Ok(Response::new(proto::RemoveFromListResponse { removed }))
    }
}
