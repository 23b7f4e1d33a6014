//! `Interconnect/Relay`, `RelayBatch` and `RelayWithdrawals`: a query (a batch, a listing of
//! withdrawals) another region's node forwards for one of its callers.
//!
//! The relay is authenticated by its certificate like any caller and must be listed in this
//! node's `[interconnect] relays`; whom it acts for is its word, which this node takes only
//! for callers of the relay's own trust domain. From there on the query is answered as that
//! caller's own `Query` would be, and recorded with both names: the relay as the caller (its
//! certificate is the proof) and the caller it acts for as `on_behalf_of`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{Hops, batch_as, caller, query, query_as, refuse_on_record, withdrawals_as};
use crate::{
    harvest::Refusal,
    identity::{Kind, SpiffeId},
    interconnect::Counts,
    proto::{self, interconnect_server::Interconnect},
    state::NodeState,
};

/// How refusals of these RPCs are named in the ledger (the full method names, as for the others).
const RELAY: &str = "credit.v1.Interconnect/Relay";
const RELAY_BATCH: &str = "credit.v1.Interconnect/RelayBatch";
const RELAY_WITHDRAWALS: &str = "credit.v1.Interconnect/RelayWithdrawals";

pub struct InterconnectApi {
    state: Arc<NodeState>,
}

impl InterconnectApi {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl Interconnect for InterconnectApi {
    async fn relay(
        &self,
        request: Request<proto::RelayRequest>,
    ) -> Result<Response<proto::QueryResponse>, Status> {
        let state = &self.state;
        let caller = caller(state, &request)?;
        let req = request.get_ref();
        let on_behalf_of = admitted(state, caller, &req.on_behalf_of, RELAY, 1).await?;
        let Some(query) = &req.query else {
            let status = Status::invalid_argument("query: missing");
            return Err(super::record_refusal(state, caller, RELAY, status).await);
        };
        Counts::add(&state.interconnect().counts().relayed);
        let asker = query::Asker {
            caller,
            on_behalf_of: Some(&on_behalf_of),
        };
        query_as(state, asker, query, Hops::Relayed)
            .await
            .map(Response::new)
    }

    async fn relay_batch(
        &self,
        request: Request<proto::RelayBatchRequest>,
    ) -> Result<Response<proto::BatchQueryResponse>, Status> {
        let state = &self.state;
        let caller = caller(state, &request)?;
        let req = request.get_ref();
        let cells = req.batch.as_ref().map_or(1, super::batch_cells);
        let on_behalf_of = admitted(state, caller, &req.on_behalf_of, RELAY_BATCH, cells).await?;
        let Some(batch) = &req.batch else {
            let status = Status::invalid_argument("batch: missing");
            return Err(super::record_refusal(state, caller, RELAY_BATCH, status).await);
        };
        let subjects = u64::try_from(batch.subjects.len()).unwrap_or(u64::MAX);
        Counts::add_n(&state.interconnect().counts().relayed, subjects);
        let asker = query::Asker {
            caller,
            on_behalf_of: Some(&on_behalf_of),
        };
        let answers = batch_as(state, asker, batch, Hops::Relayed).await?;
        Ok(Response::new(proto::BatchQueryResponse { answers }))
    }

    async fn relay_withdrawals(
        &self,
        request: Request<proto::RelayWithdrawalsRequest>,
    ) -> Result<Response<proto::ListWithdrawalsResponse>, Status> {
        let state = &self.state;
        let caller = caller(state, &request)?;
        let req = request.get_ref();
        let on_behalf_of = admitted(state, caller, &req.on_behalf_of, RELAY_WITHDRAWALS, 1).await?;
        let Some(listing) = &req.request else {
            let status = Status::invalid_argument("request: missing");
            return Err(super::record_refusal(state, caller, RELAY_WITHDRAWALS, status).await);
        };
        Counts::add(&state.interconnect().counts().relayed);
        let asker = query::Asker {
            caller,
            on_behalf_of: Some(&on_behalf_of),
        };
        withdrawals_as(state, asker, listing, Some(&req.items), Hops::Relayed)
            .await
            .map(Response::new)
    }
}

/// Whom a relay call of `rpc` acts for, once the relay is admitted: listed as a relay, within
/// its rate limit (`cells`), not suspended, and acting for a department of its own trust
/// domain. Each refusal is counted and recorded.
async fn admitted(
    state: &NodeState,
    caller: &crate::identity::Caller,
    on_behalf_of: &str,
    rpc: &str,
    cells: u32,
) -> Result<SpiffeId, Status> {
    if !state.interconnect().is_relay(&caller.spiffe_id) {
        let status = Status::permission_denied(format!(
            "{} is not a relay of this node ([interconnect] relays)",
            caller.spiffe_id
        ));
        Counts::add(&state.interconnect().counts().relays_refused);
        return Err(refuse_on_record(state, caller, rpc, status).await);
    }
    // The relay's rate limit, named as the relay's: its refusal reaches the caller it acts for,
    // through the relay, who would otherwise read "this caller" as itself.
    query::admit(state, caller, cells)
        .await
        .map_err(|refused| of_the_relay(refused, &caller.spiffe_id))?;
    // Counted, recorded (already admitted: no second draw on the rate limit), returned.
    let refuse = async |status: Status| {
        Counts::add(&state.interconnect().counts().relays_refused);
        super::record_refusal(state, caller, rpc, status).await
    };
    // A relay suspended after an enumeration alert (raised by what it relayed, say) is
    // refused whomever it acts for, until an officer lifts it.
    if let Some(Refusal::Suspended { since_ms, .. }) = state.guard().suspended(&caller.spiffe_id) {
        let refusal = Refusal::Suspended {
            since_ms,
            relay: Some(caller.spiffe_id.to_string()),
        };
        return Err(refuse(query::refusal_status(state, &refusal)).await);
    }
    match acting_for(&caller.spiffe_id, on_behalf_of) {
        Ok(id) => Ok(id),
        Err(status) => Err(refuse(status).await),
    }
}

/// A refusal of the relay's rate limit, its message saying it is the relay's.
fn of_the_relay(refused: Status, relay: &SpiffeId) -> Status {
    let mut status = Status::new(
        refused.code(),
        format!("the relay {relay}'s limit: {}", refused.message()),
    );
    for key in ["retry-after", "grpc-retry-pushback-ms"] {
        if let Some(value) = refused.metadata().get(key) {
            status.metadata_mut().insert(key, value.clone());
        }
    }
    status
}

/// The caller `relay` acts for: a department of the relay's own trust domain (its own among
/// them: a node's department asks through its own node).
fn acting_for(relay: &SpiffeId, on_behalf_of: &str) -> Result<SpiffeId, Status> {
    let id = SpiffeId::parse(on_behalf_of)
        .map_err(|e| Status::invalid_argument(format!("on_behalf_of: {e}")))?;
    if id.trust_domain() != relay.trust_domain() {
        return Err(Status::permission_denied(format!(
            "on_behalf_of: {id} is not of the relay's trust domain {}; a relay speaks only for \
             callers of its own region",
            relay.trust_domain()
        )));
    }
    if id.kind() != Kind::Dept {
        return Err(Status::invalid_argument(format!(
            "on_behalf_of: {id} is not a department (`spiffe://<trust domain>/dept/<id>`)"
        )));
    }
    Ok(id)
}
