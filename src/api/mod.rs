//! The gRPC surface. Handlers only wire the parts together; prost types stop here (style.md,
//! "convert at the edge"): everything below this module works on our own domain types.

mod admin;
mod convert;
mod forward;
mod query;
mod relay;
mod review;
mod withdrawals;

pub use admin::AdministrationApi;
pub use query::record_throttled;
pub use relay::InterconnectApi;
pub use review::LedgerReviewApi;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    identity::{Caller, SpiffeId},
    ledger::entry::{Entry, Outcome},
    policy,
    proto::{self, credit_query_server::CreditQuery},
    server::PeerInfo,
    state::NodeState,
};

/// The caller proven by the TLS handshake, while its certificate is still valid. Identity is
/// never read from a request field.
///
/// The handshake checked the certificate's validity when the connection opened, but an HTTP/2
/// connection can outlive the certificate: every call checks its notAfter again, and those of
/// the intermediate CAs it was sent with, by the node's clock, and a call on an expired
/// certificate or chain gets nothing.
pub fn caller<'r, T>(state: &NodeState, request: &'r Request<T>) -> Result<&'r Caller, Status> {
    let caller = request
        .extensions()
        .get::<PeerInfo>()
        .map(|info| info.caller.as_ref())
        // Unreachable with our acceptor, which attaches a caller to every connection; refuse
        // rather than guess if a future transport forgets to.
        .ok_or_else(|| Status::unauthenticated("no verified client certificate"))?;
    if state.clock().now().unix_timestamp() > caller.valid_until_unix {
        return Err(Status::unauthenticated(format!(
            "the client certificate (serial {}) or a CA certificate of its chain has expired \
             since this connection was opened; reconnect with a valid one",
            caller.serial
        )));
    }
    Ok(caller)
}

/// The entry of an action that answers no query (a review, an administration): by `caller`,
/// now, with `outcome`; no fields decided, nothing sent. Its `seq` is assigned by the writer.
pub(crate) fn action_entry(state: &NodeState, caller: &Caller, outcome: Outcome) -> Entry {
    unanswered_entry(state, &caller.spiffe_id, caller.fingerprint, outcome)
}

/// An entry that answers no query, by the caller `spiffe_id` presenting the certificate of
/// `fingerprint`: an action ([`action_entry`]) or a window of refused requests.
pub(crate) fn unanswered_entry(
    state: &NodeState,
    spiffe_id: &SpiffeId,
    fingerprint: [u8; 32],
    outcome: Outcome,
) -> Entry {
    Entry::unanswered(
        spiffe_id.to_string(),
        fingerprint,
        state.clock().now_ms(),
        outcome,
    )
}

/// Refuses, on record, a call the caller's identity does not allow: an operator of another
/// department trying to restore records, a department reading the query log, are what a
/// reviewing officer most needs to see. The refusal first draws on the caller's rate limit, so
/// a flood of refused calls is folded like any other flood instead of writing one entry each.
pub(crate) async fn refuse_on_record(
    state: &NodeState,
    caller: &Caller,
    rpc: &str,
    status: Status,
) -> Status {
    if let Err(throttled) = query::admit(state, caller, 1).await {
        return throttled;
    }
    record_refusal(state, caller, rpc, status).await
}

/// Records a refusal by `rpc` as a `denied` entry and returns it; UNAVAILABLE instead if the
/// ledger cannot be written (the call is refused either way, so nothing is served unrecorded).
pub(crate) async fn record_refusal(
    state: &NodeState,
    caller: &Caller,
    rpc: &str,
    status: Status,
) -> Status {
    let reason = format!("{rpc}: {}", status.message())
        .chars()
        .take(200)
        .collect();
    let entry = action_entry(state, caller, Outcome::Denied { reason });
    match state.ledger().append(entry).await {
        Ok(_) => status,
        Err(e) => {
            tracing::error!(error = %e, rpc, "a refusal could not be recorded; answering UNAVAILABLE");
            Status::unavailable(
                "the refusal could not be recorded in the ledger; nothing was served",
            )
        }
    }
}

pub struct CreditQueryApi {
    state: Arc<NodeState>,
}

impl CreditQueryApi {
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl CreditQuery for CreditQueryApi {
    async fn who_am_i(
        &self,
        request: Request<proto::WhoAmIRequest>,
    ) -> Result<Response<proto::WhoAmIResponse>, Status> {
        let caller = caller(&self.state, &request)?;
        Ok(Response::new(proto::WhoAmIResponse {
            identity: Some(convert::identity(caller)),
            node_spiffe_id: self.state.node_id().to_string(),
        }))
    }

    async fn describe_grants(
        &self,
        request: Request<proto::DescribeGrantsRequest>,
    ) -> Result<Response<proto::DescribeGrantsResponse>, Status> {
        let caller = caller(&self.state, &request)?;
        let catalog = self.state.catalog();
        let grants = policy::effective_grants(&catalog, &caller.spiffe_id);
        Ok(Response::new(convert::grants(&catalog, grants)))
    }

    async fn query(
        &self,
        request: Request<proto::QueryRequest>,
    ) -> Result<Response<proto::QueryResponse>, Status> {
        let caller = caller(&self.state, &request)?;
        query::admit(&self.state, caller, 1).await?;
        let asker = query::Asker::direct(caller);
        query_as(&self.state, asker, request.get_ref(), Hops::MayForward)
            .await
            .map(Response::new)
    }

    async fn batch_query(
        &self,
        request: Request<proto::BatchQueryRequest>,
    ) -> Result<Response<proto::BatchQueryResponse>, Status> {
        let caller = caller(&self.state, &request)?;
        let req = request.get_ref();
        let state = &self.state;
        // The rate limit first, at one cell per subject: a flood of oversized or malformed
        // batches is folded like any other flood instead of writing one entry each.
        query::admit(state, caller, batch_cells(req)).await?;
        let asker = query::Asker::direct(caller);
        let answers = batch_as(state, asker, req, Hops::MayForward).await?;
        Ok(Response::new(proto::BatchQueryResponse { answers }))
    }

    async fn list_withdrawals(
        &self,
        request: Request<proto::ListWithdrawalsRequest>,
    ) -> Result<Response<proto::ListWithdrawalsResponse>, Status> {
        let caller = caller(&self.state, &request)?;
        let state = &self.state;
        query::admit(state, caller, 1).await?;
        let asker = query::Asker::direct(caller);
        withdrawals_as(state, asker, request.get_ref(), None, Hops::MayForward)
            .await
            .map(Response::new)
    }
}

/// `ListWithdrawals` for `asker`, already admitted by the rate limit: validated (a malformed
/// request is recorded and refused), then answered from this node's withdrawals (of `only`
/// these items, when a relay names them) or forwarded to the node it names, on a task of its
/// own as a forwarded query is.
async fn withdrawals_as(
    state: &Arc<NodeState>,
    asker: query::Asker<'_>,
    req: &proto::ListWithdrawalsRequest,
    only: Option<&[String]>,
    hops: Hops,
) -> Result<proto::ListWithdrawalsResponse, Status> {
    let refuse = async |status: Status| {
        let purpose = withdrawals::PURPOSE;
        query::refuse_invalid(state, asker, "", purpose, "", status).await
    };
    let node = match forwardable(state, &req.node, hops) {
        Ok(node) => node,
        Err(status) => return Err(refuse(status).await),
    };
    let Some(node) = node else {
        return match withdrawals::validate(state, req, only) {
            Ok(asked) => withdrawals::answer(state, asker, &asked).await,
            Err(status) => Err(refuse(status).await),
        };
    };
    // The page token is the other node's to read; the page's size is checked here too.
    let limit = match withdrawals::page_limit(req) {
        Ok(limit) => limit,
        Err(status) => return Err(refuse(status).await),
    };
    let state = Arc::clone(state);
    let caller = asker.caller.clone();
    let req = req.clone();
    on_own_task(async move {
        let route = forward::route(&state, &node)?;
        withdrawals::forward(&state, &caller, route, req, limit).await
    })
    .await
}

/// `BatchQuery` for `asker`, already admitted by the rate limit (one cell per subject):
/// validated (a malformed batch is recorded and refused whole), then answered from this node's
/// records or forwarded to the node it names.
async fn batch_as(
    state: &Arc<NodeState>,
    asker: query::Asker<'_>,
    req: &proto::BatchQueryRequest,
    hops: Hops,
) -> Result<Vec<proto::QueryResponse>, Status> {
    let max = state.limits().max_batch_subjects;
    let first = req.subjects.first().map(String::as_str).unwrap_or_default();
    let checked = if req.subjects.is_empty() || req.subjects.len() > max {
        Err(Status::invalid_argument(format!(
            "subjects: between 1 and {max} subjects per batch, got {}",
            req.subjects.len()
        )))
    } else {
        forwardable(state, &req.node, hops)
    };
    let refuse = async |subject: &str, status: Status| {
        let (purpose, basis) = (&req.purpose, &req.basis_reference);
        query::refuse_invalid(state, asker, subject, purpose, basis, status).await
    };
    let node = match checked {
        Ok(node) => node,
        Err(status) => return Err(refuse(first, status).await),
    };
    let mut asked = Vec::with_capacity(req.subjects.len());
    for (i, subject) in req.subjects.iter().enumerate() {
        let checked = validate(
            state,
            subject,
            req.subject_type,
            &req.items,
            &req.purpose,
            &req.basis_reference,
            &format!("subjects[{i}]"),
        );
        match checked {
            Ok(a) => asked.push(a),
            Err(status) => return Err(refuse(subject, status).await),
        }
    }
    match node {
        None => query::answer_all(state, asker, &asked).await,
        Some(node) => forwarded(state, asker.caller, node, asked, req.subject_type).await,
    }
}

/// The rate-limit cells of a batch: one per subject (at least one, for an empty batch).
fn batch_cells(req: &proto::BatchQueryRequest) -> u32 {
    u32::try_from(req.subjects.len().max(1)).unwrap_or(u32::MAX)
}

/// Whether a query may be forwarded to another node: a relayed query may not (one hop).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hops {
    MayForward,
    Relayed,
}

/// `Query` for `asker`, already admitted by the rate limit: validated (a malformed request is
/// recorded and refused), then answered from this node's records or forwarded to the node it
/// names.
async fn query_as(
    state: &Arc<NodeState>,
    asker: query::Asker<'_>,
    req: &proto::QueryRequest,
    hops: Hops,
) -> Result<proto::QueryResponse, Status> {
    let checked = validate(
        state,
        &req.subject,
        req.subject_type,
        &req.items,
        &req.purpose,
        &req.basis_reference,
        "subject",
    )
    .and_then(|asked| Ok((asked, forwardable(state, &req.node, hops)?)));
    let (asked, node) = match checked {
        Ok(checked) => checked,
        Err(status) => {
            return Err(query::refuse_invalid(
                state,
                asker,
                &req.subject,
                &req.purpose,
                &req.basis_reference,
                status,
            )
            .await);
        }
    };
    let mut answers = match node {
        Some(node) => forwarded(state, asker.caller, node, vec![asked], req.subject_type).await?,
        None => query::answer_all(state, asker, std::slice::from_ref(&asked)).await?,
    };
    answers.pop().ok_or_else(|| Status::internal("no answer"))
}

/// The other node a request's `node` names, which this node has a route to; `None` for this
/// node (or none named). INVALID_ARGUMENT naming `node` otherwise, and for a relayed query
/// naming another node (one hop only).
fn forwardable(state: &NodeState, node: &str, hops: Hops) -> Result<Option<SpiffeId>, Status> {
    match (forward::target(state, node)?, hops) {
        (None, _) => Ok(None),
        (Some(_), Hops::Relayed) => Err(Status::invalid_argument(format!(
            "node: a relayed query is answered by the node it was relayed to ({}), not \
             forwarded again",
            state.node_id()
        ))),
        (Some(node), Hops::MayForward) => {
            forward::route(state, &node)?;
            Ok(Some(node))
        }
    }
}

/// `asked` forwarded to `node` for `caller`, on a task of its own ([`on_own_task`]).
async fn forwarded(
    state: &Arc<NodeState>,
    caller: &Caller,
    node: SpiffeId,
    asked: Vec<query::Asked>,
    subject_type: i32,
) -> Result<Vec<proto::QueryResponse>, Status> {
    let state = Arc::clone(state);
    let caller = caller.clone();
    on_own_task(async move {
        let route = forward::route(&state, &node)?;
        forward::forward_all(&state, &caller, &asked, subject_type, route).await
    })
    .await
}

/// `forwarding` on a task of its own: once a request is sent on, it is recorded here even if
/// its call is dropped meanwhile (a caller's shorter `grpc-timeout`), as the other node has
/// recorded it already.
async fn on_own_task<T: Send + 'static>(
    forwarding: impl Future<Output = Result<T, Status>> + Send + 'static,
) -> Result<T, Status> {
    tokio::spawn(forwarding).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a forwarded request's task failed");
        Err(Status::internal(
            "the forwarded request failed; nothing was disclosed",
        ))
    })
}

/// Request fields to a validated query; errors name the field.
fn validate(
    state: &NodeState,
    subject: &str,
    kind: i32,
    items: &[proto::ItemSelection],
    purpose: &str,
    basis: &str,
    subject_field: &str,
) -> Result<query::Asked, Status> {
    let kind = convert::subject_type(kind)?;
    let subject = convert::subject(subject_field, subject, kind, state.clock().today())?;
    let (items, purpose, basis) = convert::selection(&state.catalog(), items, purpose, basis)?;
    Ok(query::Asked {
        subject,
        items,
        purpose,
        basis,
    })
}
