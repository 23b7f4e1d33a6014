//! The gRPC surface. Handlers only wire the parts together; prost types stop here (style.md,
//! "convert at the edge"): everything below this module works on our own domain types.

mod convert;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    identity::Caller,
    policy,
    proto::{self, credit_query_server::CreditQuery},
    server::PeerInfo,
    state::NodeState,
};

/// The caller proven by the TLS handshake. Identity is never read from a request field.
pub fn caller<T>(request: &Request<T>) -> Result<&Caller, Status> {
    request
        .extensions()
        .get::<PeerInfo>()
        .map(|info| info.caller.as_ref())
        // Unreachable with our acceptor, which attaches a caller to every connection; refuse
        // rather than guess if a future transport forgets to.
        .ok_or_else(|| Status::unauthenticated("no verified client certificate"))
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
        let caller = caller(&request)?;
        Ok(Response::new(proto::WhoAmIResponse {
            identity: Some(convert::identity(caller)),
            node_spiffe_id: self.state.node_id().to_string(),
        }))
    }

    async fn describe_grants(
        &self,
        request: Request<proto::DescribeGrantsRequest>,
    ) -> Result<Response<proto::DescribeGrantsResponse>, Status> {
        let caller = caller(&request)?;
        let catalog = self.state.catalog();
        let grants = policy::effective_grants(&catalog, &caller.spiffe_id);
        Ok(Response::new(convert::grants(&catalog, grants)))
    }
}
