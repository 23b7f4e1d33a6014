//! A running node: the TCP listener, our own TLS termination, and the tonic router.
//!
//! TLS is terminated here rather than inside tonic so that (1) the client-certificate verifier is
//! ours ([`crate::tls::SpiffeClientVerifier`]), (2) the server config can be swapped on SIGHUP
//! without dropping the listener or open connections, and (3) the caller's identity is parsed
//! once per connection and typed before any request is read.

mod conn;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use tokio::{
    net::TcpListener,
    sync::{Semaphore, mpsc, watch},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

pub use conn::PeerInfo;
use conn::TlsConnection;

use crate::{
    access::Access,
    api::{AdministrationApi, CreditQueryApi, InterconnectApi, LedgerReviewApi},
    catalog::SignedCatalog,
    clock::Clock,
    config::Limits,
    desensitize::PseudonymKey,
    harvest::{Folded, Guard, HarvestSettings},
    identity::SpiffeId,
    ledger::store::Ledger,
    metrics::ConnCounts,
    proto::{
        administration_server::AdministrationServer, credit_query_server::CreditQueryServer,
        interconnect_server::InterconnectServer, ledger_review_server::LedgerReviewServer,
    },
    state::{NodeParts, NodeState},
    store::Store,
    tls::{self, ServerMaterial, ServerTls, TlsError},
};

/// What a node needs to start; built from a config file by `serve`, or directly by tests.
pub struct NodeSettings {
    pub listen: SocketAddr,
    pub tls: ServerMaterial,
    pub limits: Limits,
    pub catalog: SignedCatalog,
    pub pseudonym_key: PseudonymKey,
    pub store: Store,
    pub ledger: Ledger,
    pub clock: Clock,
    pub harvest: HarvestSettings,
    /// The department's operators and officers.
    pub access: Access,
    /// Routes to other regions' nodes, and the relays this node answers.
    pub interconnect: crate::interconnect::Interconnect,
    /// Where to serve the Prometheus metrics ([`crate::metrics`]); `None`: not at all.
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("node certificate: {0}")]
    NodeIdentity(String),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("cannot serve metrics on {addr}: {source}")]
    MetricsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The swappable TLS server side. Read once per accepted connection, written on reload. New
/// connections are accepted with the new config; open ones are told of it and check their
/// client's certificate against its verifier before they read another byte
/// ([`conn::TlsConnection`]), so a certificate revoked by the reload is cut off there too.
#[derive(Clone)]
pub struct TlsReloader {
    current: Arc<watch::Sender<ServerTls>>,
    node_id: SpiffeId,
    /// When the node's certificate in use expires (Unix seconds), for the metrics.
    not_after: Arc<AtomicI64>,
}

impl TlsReloader {
    fn new(tls: ServerTls, node_id: SpiffeId, not_after: i64) -> Self {
        Self {
            current: Arc::new(watch::Sender::new(tls)),
            node_id,
            not_after: Arc::new(AtomicI64::new(not_after)),
        }
    }

    /// An acceptor for the next connection, and how that connection hears of reloads. Subscribed
    /// first: a reload between the two is then seen by the connection, never missed.
    fn acceptor(&self) -> (TlsAcceptor, watch::Receiver<ServerTls>) {
        let trust = self.current.subscribe();
        let config = self.current.borrow().config.clone();
        (TlsAcceptor::from(config), trust)
    }

    /// Builds a new server config from fresh material and swaps it in. On any error the
    /// running config stays, and the error says why.
    pub fn reload(&self, material: ServerMaterial) -> Result<(), TlsError> {
        let leaf = material
            .chain
            .first()
            .ok_or(rustls::Error::NoCertificatesPresented)?;
        let offered = tls::caller_from_cert(leaf)?;
        let (offered, not_after) = (offered.spiffe_id, offered.not_after_unix);
        if offered != self.node_id {
            return Err(TlsError::OtherNode {
                running: self.node_id.to_string(),
                offered: offered.to_string(),
            });
        }
        self.current.send_replace(tls::server_tls(material)?);
        self.not_after.store(not_after, Ordering::Relaxed);
        Ok(())
    }
}

pub struct RunningNode {
    local_addr: SocketAddr,
    state: Arc<NodeState>,
    tls: TlsReloader,
    shutdown: watch::Sender<bool>,
    accept_task: JoinHandle<()>,
    housekeeping_task: JoinHandle<()>,
    serve_task: JoinHandle<Result<(), tonic::transport::Error>>,
    metrics_addr: Option<SocketAddr>,
    metrics_task: Option<JoinHandle<()>>,
}

impl RunningNode {
    /// Binds the listener and starts serving. Returns once the node accepts connections.
    pub async fn start(settings: NodeSettings) -> Result<Self, StartError> {
        let node_cert = settings
            .tls
            .chain
            .first()
            .ok_or_else(|| StartError::NodeIdentity("empty certificate chain".into()))?;
        let node_id = tls::caller_from_cert(node_cert)
            .map_err(|e| StartError::NodeIdentity(e.to_string()))?;
        let (node_id, expires) = (node_id.spiffe_id, node_id.not_after_unix);
        let tls = TlsReloader::new(tls::server_tls(settings.tls)?, node_id.clone(), expires);
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: settings.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;

        let metrics = match settings.metrics {
            Some(addr) => Some(
                crate::metrics::bind(addr)
                    .await
                    .map_err(|source| StartError::MetricsBind { addr, source })?,
            ),
            None => None,
        };

        let (shutdown, shutdown_rx) = watch::channel(false);
        let (conn_tx, conn_rx) = mpsc::channel::<Result<TlsConnection, std::io::Error>>(64);
        let slots = Arc::new(Semaphore::new(settings.limits.max_connections));
        let counts = Arc::new(ConnCounts::default());
        let accept_task = tokio::spawn(accept_loop(
            listener,
            tls.clone(),
            (settings.limits.clone(), slots.clone(), counts.clone()),
            conn_tx,
            shutdown_rx.clone(),
        ));

        let guard = Guard::start(&settings.harvest, settings.store.clone());
        let state = Arc::new(NodeState::new(NodeParts {
            node_id,
            catalog: settings.catalog,
            pseudonym_key: settings.pseudonym_key,
            store: settings.store,
            ledger: settings.ledger,
            clock: settings.clock,
            limits: settings.limits.clone(),
            guard,
            access: settings.access,
            interconnect: settings.interconnect,
        }));
        let housekeeping_task = tokio::spawn(housekeeping(state.clone(), shutdown_rx.clone()));
        let (metrics_addr, metrics_task) = match metrics {
            Some((listener, addr)) => {
                let sources = crate::metrics::Sources {
                    state: state.clone(),
                    conns: counts,
                    slots,
                    max_connections: settings.limits.max_connections,
                    cert_not_after: tls.not_after.clone(),
                };
                let task = tokio::spawn(crate::metrics::serve(
                    listener,
                    sources,
                    shutdown_rx.clone(),
                ));
                tracing::info!(addr = %addr, "serving metrics at /metrics");
                (Some(addr), Some(task))
            }
            None => (None, None),
        };
        let router = build_router(&settings.limits, state.clone()).await;
        let mut stop = shutdown_rx;
        let serve_task = tokio::spawn(router.serve_with_incoming_shutdown(
            ReceiverStream::new(conn_rx),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ));
        tracing::info!(addr = %local_addr, node = %state.node_id(), "listening");
        Ok(Self {
            local_addr,
            state,
            tls,
            shutdown,
            accept_task,
            housekeeping_task,
            serve_task,
            metrics_addr,
            metrics_task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the metrics are served, when they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn node_id(&self) -> &SpiffeId {
        self.state.node_id()
    }

    /// The node's shared state: the place a reload installs a new catalog.
    pub fn state(&self) -> &NodeState {
        &self.state
    }

    pub fn tls(&self) -> &TlsReloader {
        &self.tls
    }

    /// Stops accepting, lets in-flight requests finish, drains the ledger, and closes the
    /// store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.accept_task.await;
        match self.serve_task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "server ended with an error"),
            Err(e) => tracing::warn!(error = %e, "server task failed"),
        }
        let _ = self.housekeeping_task.await;
        if let Some(task) = self.metrics_task {
            let _ = task.await;
        }
        // Refusals still folded in memory are recorded before the ledger closes.
        let now = self.state.clock().now_ms();
        record_folds(&self.state, self.state.guard().housekeeping(now, true)).await;
        self.state.ledger().shutdown().await;
        self.state.store().close().await;
    }
}

/// Records closed windows of rate-limit refusals and lets the guard forget idle callers.
async fn housekeeping(state: Arc<NodeState>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(state.guard().housekeeping_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let folds = state.guard().housekeeping(state.clock().now_ms(), false);
        record_folds(&state, folds).await;
        if let Err(e) = state.guard().refresh().await {
            tracing::warn!(error = %e, "could not refresh suspensions from the store");
        }
    }
}

async fn record_folds(state: &NodeState, folds: Vec<Folded>) {
    for folded in folds {
        crate::api::record_throttled(state, &folded).await;
    }
}

async fn build_router(limits: &Limits, state: Arc<NodeState>) -> tonic::transport::server::Router {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // Both reflection versions: grpcurl and most tools ask v1alpha first, newer ones v1.
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha();
    let query = CreditQueryServer::new(CreditQueryApi::new(state.clone()))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    let admin = AdministrationServer::new(AdministrationApi::new(state.clone()))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);

    let interconnect = InterconnectServer::new(InterconnectApi::new(state.clone()))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);
    let review = LedgerReviewServer::new(LedgerReviewApi::new(state))
        .max_decoding_message_size(limits.max_message_bytes)
        .max_encoding_message_size(limits.max_message_bytes);

    let mut builder = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .timeout(Duration::from_millis(limits.request_timeout_ms));
    let router = builder.add_service(health);
    let router = match (reflection_v1, reflection_v1alpha) {
        (Ok(v1), Ok(v1alpha)) => router.add_service(v1).add_service(v1alpha),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "server reflection unavailable");
            router
        }
    };
    // Serving from the first request on: the listener is bound before anyone can ask.
    health_reporter
        .set_serving::<CreditQueryServer<CreditQueryApi>>()
        .await;
    router
        .add_service(query)
        .add_service(admin)
        .add_service(interconnect)
        .add_service(review)
}

async fn accept_loop(
    listener: TcpListener,
    tls: TlsReloader,
    (limits, slots, counts): (Limits, Arc<Semaphore>, Arc<ConnCounts>),
    conns: mpsc::Sender<Result<TlsConnection, std::io::Error>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let handshake_timeout = Duration::from_millis(limits.handshake_timeout_ms);
    while let Some((stream, remote)) = next_connection(&listener, &mut shutdown).await {
        ConnCounts::add(&counts.accepted);
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            ConnCounts::add(&counts.over_limit);
            tracing::warn!(%remote, limit = limits.max_connections, "connection limit reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (acceptor, trust) = tls.acceptor();
        let conns = conns.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            let handshake = acceptor.accept(stream).into_fallible();
            let tls_stream = match tokio::time::timeout(handshake_timeout, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err((e, stream))) => {
                    ConnCounts::add(&counts.handshakes_refused);
                    tracing::info!(%remote, error = %e, "TLS handshake refused");
                    linger_close(stream).await;
                    return;
                }
                Err(_) => {
                    ConnCounts::add(&counts.handshakes_timed_out);
                    tracing::info!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let caller = match tls_stream.get_ref().1.peer_certificates() {
                Some(chain) => tls::caller_from_chain(chain),
                None => Err(crate::identity::IdentityError::NoSpiffeId),
            };
            // The verifier already accepted this certificate, so this only fails if the two
            // parsers disagree: refuse rather than serve an unidentified caller.
            let caller = match caller {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(%remote, error = %e, "verified certificate without identity");
                    return;
                }
            };
            tracing::debug!(%remote, caller = %caller.spiffe_id, "connection accepted");
            let info = PeerInfo {
                caller: Arc::new(caller),
                remote,
            };
            let _ = conns
                .send(Ok(TlsConnection::new(tls_stream, info, permit, trust)))
                .await;
        });
    }
}

/// The next connection `listener` accepts; `None` once `shutdown` is set.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|s| *s) => return None,
        };
        match accepted {
            Ok(pair) => return Some(pair),
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Closes a refused connection so that the client reads our TLS alert. In TLS 1.3 a client
/// may already have sent its first request when its certificate is refused; closing a socket
/// with unread data makes the kernel send a reset, which can destroy the alert in flight and
/// leave the client with a bare "connection reset" instead of "certificate revoked". So: send
/// FIN, then drain what the client sent, bounded in bytes and time.
async fn linger_close(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const MAX_DRAIN: usize = 64 * 1024;
    let _ = stream.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < MAX_DRAIN {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}
