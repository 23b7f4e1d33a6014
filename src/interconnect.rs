//! Regions interconnected (design.md section 4): the nodes this node forwards its callers'
//! queries to, and the nodes it answers relayed queries from.
//!
//! A forwarded query crosses two nodes, and each enforces its own catalog and records the query
//! in its own ledger. The forwarding node asks only for what its catalog grants the caller; the
//! answering node decides again for that caller, whom it knows only as `on_behalf_of` of an
//! authenticated relay, and the forwarding node then withholds whatever its own decision does
//! not cover ([`crate::query::narrow`]): a hop never grants more than the original caller has.
//!
//! Trust is narrow on both sides. A route's TLS trusts only the CA of its node's trust domain
//! and must find exactly that node's SPIFFE ID in the certificate; a relay must be listed by
//! the answering node, and speaks only for callers of its own trust domain, so a region's relay
//! cannot pass itself off as the voice of another region's departments.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use tonic::{Status, transport::Channel};

use crate::{
    client::{self, ClientError},
    identity::SpiffeId,
    proto::{self, interconnect_client::InterconnectClient},
    tls::{self, ServerMaterial},
};

/// The routes and relays of one node: fixed at start-up, the routes' TLS renewed on reloads.
pub struct Interconnect {
    routes: Vec<Route>,
    relays: Vec<SpiffeId>,
    counts: Counts,
}

/// What crossed regions, for the metrics: counts by result, never a caller or a subject.
#[derive(Debug, Default)]
pub struct Counts {
    /// Forwarded queries the other node answered.
    pub forwarded_answered: AtomicU64,
    /// Forwarded queries the other node refused (its status passed on).
    pub forwarded_refused: AtomicU64,
    /// Forwarded queries that got no answer: unreachable, timed out, another identity, or a
    /// malformed answer.
    pub forwarded_unanswered: AtomicU64,
    /// Relayed queries this node took from a listed relay.
    pub relayed: AtomicU64,
    /// Relay calls refused before any query: not a listed relay, suspended, or acting for a
    /// caller it may not speak for.
    pub relays_refused: AtomicU64,
}

impl Counts {
    pub fn add(counter: &AtomicU64) {
        Self::add_n(counter, 1);
    }

    pub fn add_n(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `queries` forwarded together by how they ended: UNAVAILABLE is no answer (the
    /// route's or the other node's), any other refusal the other node's word.
    /// `refused`: why they got no answer to pass on, if they did not.
    pub fn forwarded(&self, refused: Option<&Status>, queries: u64) {
        let counter = match refused {
            None => &self.forwarded_answered,
            Some(status) if status.code() == tonic::Code::Unavailable => &self.forwarded_unanswered,
            Some(_) => &self.forwarded_refused,
        };
        Self::add_n(counter, queries);
    }
}

impl Interconnect {
    pub fn new(routes: Vec<Route>, relays: Vec<SpiffeId>) -> Self {
        Self {
            routes,
            relays,
            counts: Counts::default(),
        }
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// No routes and no relays: the node answers from its own records only.
    pub fn none() -> Self {
        Self::new(Vec::new(), Vec::new())
    }

    /// Every route, in the config's order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route to `node`, if the config names one.
    pub fn route(&self, node: &SpiffeId) -> Option<&Route> {
        self.routes.iter().find(|r| r.node == *node)
    }

    /// Whether `node` may relay its callers' queries to this node.
    pub fn is_relay(&self, node: &SpiffeId) -> bool {
        self.relays.contains(node)
    }

    /// Every route's TLS rebuilt from reloaded `material` (the node's certificate, the trust
    /// domains' CAs and CRLs), as fresh channels for [`Interconnect::install`]. An error
    /// leaves every route as it was.
    pub fn renewal(&self, material: &ServerMaterial) -> Result<Renewal, String> {
        let mut channels = Vec::with_capacity(self.routes.len());
        for route in &self.routes {
            let tls = route_tls(material, &route.node)?;
            channels.push(route.channel_over(tls).map_err(|e| e.to_string())?);
        }
        Ok(Renewal(channels))
    }

    /// Puts a [`Renewal`]'s channels in place: a CRL that now revokes a route's node, or this
    /// node's new certificate, takes effect from the next forwarded query. Connections of the
    /// channels replaced end with the calls still on them.
    pub fn install(&self, renewal: Renewal) {
        for (route, channel) in self.routes.iter().zip(renewal.0) {
            route.channel.store(Arc::new(channel));
        }
    }
}

/// Fresh channels for every route, in order ([`Interconnect::renewal`]).
pub struct Renewal(Vec<Channel>);

/// The TLS of a route to `node`: this node's certificate, and the CAs and CRLs of `node`'s
/// trust domain alone.
pub fn route_tls(
    material: &ServerMaterial,
    node: &SpiffeId,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let trust = material
        .trust
        .iter()
        .find(|t| t.domain == *node.trust_domain())
        .ok_or_else(|| format!("{node}: its trust domain's CA is not loaded"))?;
    tls::client_config(
        material.chain.clone(),
        material.key.clone_key(),
        &trust.roots,
        trust.crls.clone(),
    )
    .map_err(|e| format!("{node}: {e}"))
}

/// One node of another region and the channel to it.
pub struct Route {
    node: SpiffeId,
    address: String,
    /// Replaced whole when the TLS material is reloaded ([`Interconnect::renew`]).
    channel: ArcSwap<Channel>,
    timeout: Duration,
    /// The largest answer taken from the node: this node's own message limit, so that an
    /// answer it takes in is one it can send on.
    max_message_bytes: usize,
}

impl Route {
    /// A route to `node` at `address`, over `tls` (the node's own certificate, the trust
    /// domain of `node` alone). Connects on the first forwarded query, not here: a region's
    /// node may start before the other's.
    pub fn new(
        node: SpiffeId,
        address: &str,
        tls: Arc<rustls::ClientConfig>,
        timeout: Duration,
        max_message_bytes: usize,
    ) -> Result<Self, ClientError> {
        let channel = channel_to(&node, address, timeout, tls)?;
        Ok(Self {
            node,
            address: address.to_owned(),
            channel: ArcSwap::from_pointee(channel),
            timeout,
            max_message_bytes,
        })
    }

    /// A channel to the route's node over `tls`, connecting on first use.
    fn channel_over(&self, tls: Arc<rustls::ClientConfig>) -> Result<Channel, ClientError> {
        channel_to(&self.node, &self.address, self.timeout, tls)
    }

    pub fn node(&self) -> &SpiffeId {
        &self.node
    }

    /// Asks the node for `query` on behalf of `caller`. The error is the node's refusal, or
    /// UNAVAILABLE when it cannot be reached or does not answer within the route's timeout;
    /// its message names the node.
    pub async fn relay(
        &self,
        caller: &SpiffeId,
        query: proto::QueryRequest,
    ) -> Result<proto::QueryResponse, Status> {
        let request = proto::RelayRequest {
            on_behalf_of: caller.to_string(),
            query: Some(query),
        };
        let mut client = self.client();
        self.answer(client.relay(request)).await
    }

    /// [`Route::relay`] for a batch, which the node answers or refuses whole.
    pub async fn relay_batch(
        &self,
        caller: &SpiffeId,
        batch: proto::BatchQueryRequest,
    ) -> Result<proto::BatchQueryResponse, Status> {
        let request = proto::RelayBatchRequest {
            on_behalf_of: caller.to_string(),
            batch: Some(batch),
        };
        let mut client = self.client();
        self.answer(client.relay_batch(request)).await
    }

    /// [`Route::relay`] for a listing of withdrawals, of `items` at most.
    pub async fn relay_withdrawals(
        &self,
        caller: &SpiffeId,
        listing: proto::ListWithdrawalsRequest,
        items: Vec<String>,
    ) -> Result<proto::ListWithdrawalsResponse, Status> {
        let request = proto::RelayWithdrawalsRequest {
            on_behalf_of: caller.to_string(),
            request: Some(listing),
            items,
        };
        let mut client = self.client();
        self.answer(client.relay_withdrawals(request)).await
    }

    fn client(&self) -> InterconnectClient<Channel> {
        InterconnectClient::new(Channel::clone(&self.channel.load()))
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes)
    }

    /// The node's answer to `call` within the route's timeout, or why there is none: its
    /// refusal (code, message naming it, retry metadata) or UNAVAILABLE.
    async fn answer<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, Status> {
        let node = &self.node;
        match self.in_time(call).await {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(status)) => {
                // A status our side made up (the connection failed, or an answer larger than
                // this node takes) is not the node's word.
                let code = match status.code() {
                    tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::OutOfRange => {
                        tonic::Code::Unavailable
                    }
                    code => code,
                };
                // The other node's words, passed on and recorded: printable, and bounded.
                let message: String = status
                    .message()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(500)
                    .collect();
                if std::error::Error::source(&status).is_some() {
                    tracing::warn!(node = %node, error = %client::error_chain(&status),
                        "a forwarded query could not reach its node");
                    return Err(Status::unavailable(format!(
                        "node {node} cannot be reached; nothing was disclosed"
                    )));
                }
                let mut refusal = Status::new(code, format!("node {node}: {message}"));
                // When to retry is the other node's to say (its rate limit, its quota).
                for key in ["retry-after", "grpc-retry-pushback-ms"] {
                    if let Some(value) = status.metadata().get(key) {
                        refusal.metadata_mut().insert(key, value.clone());
                    }
                }
                Err(refusal)
            }
            None => Err(self.no_answer()),
        }
    }

    /// `call`'s outcome within the route's timeout; `None` when it was given up.
    async fn in_time<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Option<Result<T, Status>> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Err(status)) if client::timed_out(&status) => None,
            Ok(outcome) => Some(outcome.map(tonic::Response::into_inner)),
            Err(_) => None,
        }
    }

    /// Why a check of the route got no answer.
    fn no_answer_text(&self) -> String {
        format!("no answer within {} ms", self.timeout.as_millis())
    }

    /// Checks the route end to end without a query: the address answers, its certificate names
    /// exactly the route's node under that node's trust domain's CA, and that node takes this
    /// node's certificate; then `WhoAmI`, which the other node does not record. The error says
    /// what failed, with its transport cause.
    pub async fn who_am_i(&self) -> Result<proto::WhoAmIResponse, String> {
        let channel = Channel::clone(&self.channel.load());
        let mut client = proto::credit_query_client::CreditQueryClient::new(channel);
        match self.in_time(client.who_am_i(proto::WhoAmIRequest {})).await {
            Some(Ok(answer)) => Ok(answer),
            Some(Err(status)) => Err(client::status_text(&status)),
            None => Err(self.no_answer_text()),
        }
    }

    /// Whether the route's node takes relays from `this_node`: an empty `Relay` call, which a
    /// node that lists this one as a relay refuses as INVALID_ARGUMENT (`query: missing`), and
    /// any other as PERMISSION_DENIED. The other node records the call, as it records every
    /// relay call; it discloses nothing. The error is the other node's refusal.
    pub async fn takes_relays_from(&self, this_node: &SpiffeId) -> Result<(), String> {
        let mut client = self.client();
        let probe = proto::RelayRequest {
            on_behalf_of: this_node.to_string(),
            query: None,
        };
        match self.in_time(client.relay(probe)).await {
            Some(Err(status))
                if status.code() == tonic::Code::InvalidArgument
                    && status.message().starts_with("query:") =>
            {
                Ok(())
            }
            Some(Err(status)) => Err(client::status_text(&status)),
            Some(Ok(_)) => Err("answered a relay call without a query".into()),
            None => Err(self.no_answer_text()),
        }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    fn no_answer(&self) -> Status {
        Status::unavailable(format!(
            "node {} did not answer within {} ms; nothing was disclosed",
            self.node,
            self.timeout.as_millis()
        ))
    }
}

/// A channel to `node` at `address` over `tls`, connecting on first use, each connection and
/// call bounded by `timeout`.
fn channel_to(
    node: &SpiffeId,
    address: &str,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Channel, ClientError> {
    let limits = client::Limits {
        connect: timeout,
        call: timeout,
    };
    let expected = client::Expected {
        node: node.clone(),
        named_by: "[[interconnect.route]]",
    };
    client::lazy_to_node(address, tls, expected, limits)
}
