//! The node's metrics for its operators, in the OpenMetrics text format that Prometheus
//! scrapes, served on `[metrics] listen` (plain HTTP, `GET /metrics`); off unless configured.
//!
//! Why read at scrape time: the counts live where the work is done (the ledger's writer, the
//! guard, the accept loop) as relaxed atomics, and a scrape reads them, with a few values of the
//! store. Nothing on the query path takes a lock or looks up a label for them.
//!
//! What they never carry: subjects, callers' identities, field values. A scrape endpoint is read
//! by more people than the ledger and guarded less than the gRPC port, so it counts by outcome
//! and nothing finer; who asked for what stays in the ledger, for the officers.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    time::Duration,
};

use hyper::{Method, Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::{
    net::TcpListener,
    sync::{Semaphore, watch},
};

use crate::{ledger, state::NodeState};

/// What happened to the connections the node accepted, counted by its accept loop.
#[derive(Debug, Default)]
pub struct ConnCounts {
    pub(crate) accepted: AtomicU64,
    pub(crate) over_limit: AtomicU64,
    pub(crate) handshakes_refused: AtomicU64,
    pub(crate) handshakes_timed_out: AtomicU64,
}

impl ConnCounts {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where a scrape reads from.
#[derive(Clone)]
pub(crate) struct Sources {
    pub state: Arc<NodeState>,
    pub conns: Arc<ConnCounts>,
    /// The accept loop's connection slots: open connections are the ones taken.
    pub slots: Arc<Semaphore>,
    pub max_connections: usize,
    /// Expiry of the node's certificate (Unix seconds), updated by a TLS reload.
    pub cert_not_after: Arc<AtomicI64>,
}

/// The text of one scrape.
pub(crate) async fn render(sources: &Sources) -> String {
    let mut registry = Registry::with_prefix("credit_node");
    let state = &sources.state;
    let info = Family::<[(&'static str, String); 1], Gauge>::default();
    info.get_or_create(&[("version", env!("CARGO_PKG_VERSION").to_owned())])
        .set(1);
    registry.register("build_info", "The running credit-node version", info);

    let catalog = state.catalog();
    let catalog_info = Family::<[(&'static str, String); 2], Gauge>::default();
    catalog_info
        .get_or_create(&[
            ("version", catalog.catalog().version.clone()),
            ("sha256", catalog.digest_hex()),
        ])
        .set(1);
    registry.register(
        "catalog_info",
        "The signed catalog this node decides under (changes with a reload)",
        catalog_info,
    );
    registry.register(
        "certificate_not_after_seconds",
        "When the node's certificate expires (Unix time): renew and reload before then",
        gauge(sources.cert_not_after.load(Ordering::Relaxed)),
    );

    let tally = state.ledger().tally();
    let entries = Family::<[(&'static str, &'static str); 1], Counter>::default();
    for (kind, count) in &tally.entries {
        entries
            .get_or_create(&[("outcome", kind.as_str())])
            .inc_by(*count);
    }
    registry.register(
        "ledger_entries",
        "Ledger entries this process committed, by outcome (rate-limit refusals are folded)",
        entries,
    );
    registry.register(
        "ledger_batches",
        "Group commits of the ledger by this process",
        counter(tally.batches),
    );
    registry.register(
        "ledger_failed_batches",
        "Ledger batches whose commit failed; each of their queries was answered UNAVAILABLE",
        counter(tally.failed_batches),
    );
    registry.register(
        "ledger_one_statement_batches",
        "Group commits made in one round trip (PostgreSQL: one statement; SQLite: one \
         script), conditional on the head as this writer last saw it, without locking it first",
        counter(tally.one_statement),
    );
    registry.register(
        "ledger_head_moved",
        "One-trip tries that found the head moved by another replica or process and went \
         on in the locking transaction; a rate near ledger_batches means they contend for \
         the ledger",
        counter(tally.head_moved),
    );
    let waits = state.ledger().append_waits();
    registry.register(
        "ledger_appends",
        "Ledger appends committed by this process",
        counter(waits.committed),
    );
    registry.register(
        "ledger_append_wait_seconds",
        "Time those appends waited for their durable commit, summed: divide by \
         ledger_appends for the mean a query waits for the ledger",
        seconds_counter(waits.durable),
    );

    // The store's view, which other replicas share: unreadable, only `store_up` says so.
    let store = state.store();
    let read = async {
        let size = ledger::store::committed_size(store).await?;
        let signed = ledger::store::latest_sth(store).await?;
        let indexed = ledger::lookup::indexed(store).await?;
        Ok::<_, ledger::store::LedgerError>((size, signed, indexed))
    };
    let read = tokio::time::timeout(STORE_WAIT, read).await;
    let up = matches!(read, Ok(Ok(_)));
    registry.register(
        "store_up",
        "1 when this scrape could read the ledger's head from the store, else 0",
        gauge(i64::from(up)),
    );
    if let Ok(Ok((size, signed, indexed))) = read {
        registry.register(
            "ledger_size",
            "Entries in the ledger (all replicas)",
            gauge(to_i64(size)),
        );
        let (signed_size, signed_ms) =
            signed.map_or((0, 0), |s| (to_i64(s.head.tree_size), s.head.timestamp_ms));
        registry.register(
            "ledger_signed_size",
            "Entries covered by the latest signed tree head",
            gauge(signed_size),
        );
        registry.register(
            "ledger_signed_timestamp_seconds",
            "When the latest signed tree head was signed (Unix time; 0: none yet)",
            gauge(signed_ms / 1000),
        );
        registry.register(
            "ledger_lookup_behind",
            "Entries the lookup by caller and subject has not indexed yet (listings scan them)",
            gauge(to_i64(size.saturating_sub(indexed))),
        );
    }
    if let Ok(Ok(suspended)) = tokio::time::timeout(STORE_WAIT, state.guard().suspensions()).await {
        registry.register(
            "suspended_callers",
            "Callers suspended after an enumeration alert, until an officer lifts it",
            gauge(to_i64(suspended.len() as u64)),
        );
    }
    registry.register(
        "rate_limited",
        "Requests the per-caller rate limit refused",
        counter(state.guard().rate_limited()),
    );

    let conns = &sources.conns;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let open = sources
        .max_connections
        .saturating_sub(sources.slots.available_permits());
    registry.register(
        "connections_open",
        "Open connections, handshaking or served",
        gauge(to_i64(open as u64)),
    );
    registry.register(
        "connections_accepted",
        "TCP connections accepted",
        counter(load(&conns.accepted)),
    );
    registry.register(
        "connections_over_limit",
        "Connections closed at once: limits.max_connections were open",
        counter(load(&conns.over_limit)),
    );
    let handshakes = Family::<[(&'static str, &'static str); 1], Counter>::default();
    handshakes
        .get_or_create(&[("reason", "refused")])
        .inc_by(load(&conns.handshakes_refused));
    handshakes
        .get_or_create(&[("reason", "timed_out")])
        .inc_by(load(&conns.handshakes_timed_out));
    registry.register(
        "handshake_failures",
        "TLS handshakes that failed: refused (unknown CA, revoked, expired, no certificate \
         ...; the log says which) or timed out",
        handshakes,
    );

    let crossed = state.interconnect().counts();
    let forwarded = Family::<[(&'static str, &'static str); 1], Counter>::default();
    for (result, count) in [
        ("answered", &crossed.forwarded_answered),
        ("refused", &crossed.forwarded_refused),
        ("unanswered", &crossed.forwarded_unanswered),
    ] {
        forwarded
            .get_or_create(&[("result", result)])
            .inc_by(load(count));
    }
    registry.register(
        "forwarded",
        "Queries forwarded to another region's node ([[interconnect.route]]): answered, refused \
         by that node, or unanswered (unreachable, timed out, another identity, malformed)",
        forwarded,
    );
    registry.register(
        "relayed",
        "Queries taken from another region's node on behalf of its callers (interconnect.relays)",
        counter(load(&crossed.relayed)),
    );
    registry.register(
        "relays_refused",
        "Relay calls refused before any query: not a listed relay, suspended, or acting for a \
         caller it may not speak for",
        counter(load(&crossed.relays_refused)),
    );

    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// How long a scrape waits for the store before it reports `store_up 0`.
const STORE_WAIT: Duration = Duration::from_secs(2);

fn counter(value: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(value);
    c
}

fn seconds_counter(value: Duration) -> Counter<f64, AtomicU64> {
    let c = Counter::<f64, AtomicU64>::default();
    c.inc_by(value.as_secs_f64());
    c
}

fn gauge(value: i64) -> Gauge {
    let g = Gauge::default();
    g.set(value);
    g
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Scrapes served at once, at most: the endpoint is for a monitoring system, not a crowd.
const MAX_SCRAPES: usize = 8;
/// How long one connection may take, request and answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    sources: Sources,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
    while let Some((stream, remote)) =
        crate::server::next_connection(&listener, &mut shutdown).await
    {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%remote, "metrics: too many scrapes at once; closing");
            continue;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let sources = sources.clone();
                async move { Ok::<_, Infallible>(answer(&request, &sources).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if tokio::time::timeout(SCRAPE_TIMEOUT, connection)
                .await
                .is_err()
            {
                tracing::debug!(%remote, "metrics: connection timed out");
            }
            drop(permit);
        });
    }
}

async fn answer(request: &Request<Incoming>, sources: &Sources) -> Response<String> {
    let reply = |status: StatusCode, body: String, kind: &'static str| {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        if let Ok(kind) = kind.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, kind);
        }
        response
    };
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            render(sources).await,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        (_, "/metrics") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET only\n".into(),
            "text/plain; charset=utf-8",
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "the metrics are at /metrics\n".into(),
            "text/plain; charset=utf-8",
        ),
    }
}

/// Binds the metrics listener; the node's start fails on a bad address, as on its own.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
