//! Connecting to a node as a mutual-TLS client: the CLI commands, `demo`, the tests and
//! node-to-node routing ([`crate::interconnect`]) all come through here, with the TLS built by
//! [`crate::tls`].

use std::{future::Future, path::Path, sync::Arc, time::Duration};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{
    identity::SpiffeId,
    tls::{self, TlsError},
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Credentials(String),
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// The node ended the handshake with a TLS alert: its reason for refusing us.
    #[error("{endpoint} refused the TLS handshake: alert \"{alert}\"")]
    Refused { endpoint: String, alert: String },
}

/// A client's TLS config from PEM files: its certificate chain, key, and the CA bundles of the
/// regions it calls. The node's certificate is not checked for revocation: see
/// [`tls_config_checking_crls`].
pub fn tls_config_from_files(
    cert: &Path,
    key: &Path,
    cas: &[&Path],
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    tls_config_checking_crls(cert, key, cas, &[])
}

/// [`tls_config_from_files`], the node's certificate chain also checked against the CRLs in
/// `crls` (PEM files) when any are given.
pub fn tls_config_checking_crls(
    cert: &Path,
    key: &Path,
    cas: &[&Path],
    crls: &[&Path],
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let chain = tls::load_certs(cert)?;
    let private = tls::load_key(key)?;
    let mut roots = Vec::new();
    for ca in cas {
        // Roots only, as a node's own trust domains: an intermediate given here would be an
        // anchor, and `--crl` would never reach it.
        roots.extend(tls::load_roots(ca)?);
    }
    let mut revocations = Vec::new();
    for crl in crls {
        revocations.extend(tls::load_crls(crl)?);
    }
    tls::client_config(chain, private, &roots, revocations).map_err(|e| match e {
        // rustls says only "keys may not be consistent: KeyMismatch": name the two files.
        TlsError::Rustls(rustls::Error::InconsistentKeys(_)) => ClientError::Credentials(format!(
            "{} is not the private key of the certificate {}",
            key.display(),
            cert.display()
        )),
        e => e.into(),
    })
}

/// How long a client waits for a node: one that accepts a connection, or a call, and then never
/// answers (hung, overloaded, or not a node at all) must not hold a command forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// From TCP to the node's first bytes, on every (re)connection.
    pub connect: Duration,
    /// From a call's request to its answer. Every RPC is unary, so this bounds the whole call.
    /// It is the client's alone: it is not sent to the node as `grpc-timeout`, so the node
    /// still records a query it answers after the client has given up.
    pub call: Duration,
}

/// The limits of [`connect`]: generous beside a query's milliseconds, short beside a person
/// waiting at a terminal.
pub const LIMITS: Limits = Limits {
    connect: Duration::from_secs(10),
    call: Duration::from_secs(30),
};

/// Opens a gRPC channel over mutual TLS. `endpoint` is `https://host:port` or `host:port`; the
/// host is what the server certificate must name (a DNS name or an IP address).
pub async fn connect(
    endpoint: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Channel, ClientError> {
    connect_within(endpoint, config, LIMITS).await
}

/// [`connect`], with other [`Limits`].
pub async fn connect_within(
    endpoint: &str,
    config: Arc<rustls::ClientConfig>,
    limits: Limits,
) -> Result<Channel, ClientError> {
    open(endpoint, config, limits, None).await
}

/// [`connect`] to the node `node` only: its certificate must name that SPIFFE ID, or nothing is
/// sent. Any certificate of a CA in the bundle that names the endpoint's host would do
/// otherwise, another department's node or a client's certificate among them: the CA vouches
/// for the identity, the endpoint's host alone does not say which identity is wanted.
pub async fn connect_to_node(
    endpoint: &str,
    config: Arc<rustls::ClientConfig>,
    node: &SpiffeId,
) -> Result<Channel, ClientError> {
    let expected = Expected {
        node: node.clone(),
        named_by: "--node",
    };
    open(endpoint, config, LIMITS, Some(expected)).await
}

/// A channel to the node `node` that connects on its first call, and again on a later call
/// after its connection is lost: a node's route to another region's node must not need that
/// node to be up when it starts, nor a restart when it comes back. Calls fail with UNAVAILABLE
/// while it cannot connect.
pub fn lazy_to_node(
    endpoint: &str,
    config: Arc<rustls::ClientConfig>,
    expected: Expected,
    limits: Limits,
) -> Result<Channel, ClientError> {
    let (inner, connect) = prepare(endpoint, config, limits, Some(expected))?;
    Ok(inner.connect_with_connector_lazy(connect))
}

/// Whether `endpoint` is one [`connect`] can use: `https://host:port` or `host:port`, with a
/// host a certificate can name. Says what is wrong otherwise.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    parse_endpoint(endpoint).map(|_| ())
}

/// The endpoint's host and port, the name its certificate must carry, and the plain `http://`
/// address tonic is given (the TLS is ours: tonic must not add its own).
fn parse_endpoint(endpoint: &str) -> Result<(String, u16, ServerName<'static>, String), String> {
    let with_scheme = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    };
    let uri: Uri = with_scheme.parse().map_err(|_| "not a valid URL")?;
    if uri.scheme_str() != Some("https") {
        return Err("only https:// is supported: nodes speak mutual TLS only".into());
    }
    let bracketed = uri.host().ok_or("no host")?;
    let host = bracketed
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().ok_or("no port")?;
    let server_name = ServerName::try_from(host.clone()).map_err(|_| "invalid host name")?;
    Ok((
        host,
        port,
        server_name,
        format!("http://{bracketed}:{port}"),
    ))
}

/// What a channel's connector yields: our TLS over TCP, its first bytes already read.
type Connected = TokioIo<BufReader<tokio_rustls::client::TlsStream<TcpStream>>>;

/// The tonic endpoint of `endpoint` and the connector that opens our TLS to it, checking the
/// node's identity when `node` is given. Nothing is connected yet.
// The connector's type is unnameable (a closure's future); spelled out as `impl` bounds here,
// it stays unboxed for both the eager and the lazy channel.
#[allow(clippy::type_complexity)]
fn prepare(
    endpoint: &str,
    config: Arc<rustls::ClientConfig>,
    limits: Limits,
    node: Option<Expected>,
) -> Result<
    (
        Endpoint,
        impl tower::Service<
            Uri,
            Response = Connected,
            Error = std::io::Error,
            Future = impl Future<Output = Result<Connected, std::io::Error>> + Send,
        > + Send
        + Clone
        + 'static,
    ),
    ClientError,
> {
    let bad = |reason: &str| ClientError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let (host, port, server_name, plain) = parse_endpoint(endpoint).map_err(|e| bad(&e))?;
    let inner = Endpoint::from_shared(plain)
        .map_err(|e| bad(&e.to_string()))?
        .timeout(limits.call);
    let limit = limits.connect;
    let connector = TlsConnector::from(config);
    let target = (host, port);
    let connect = tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let target = target.clone();
        let node = node.clone();
        let connection = async move {
            let tcp = TcpStream::connect((target.0.as_str(), target.1)).await?;
            let _ = tcp.set_nodelay(true);
            let tls = connector.connect(server_name, tcp).await?;
            if let Some(node) = &node {
                let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                expect_node(leaf, node)?;
            }
            // In TLS 1.3 our side of the handshake ends before the node has checked our
            // certificate; its verdict arrives with its first bytes. Wait for them here,
            // where a refusal is read as the node's alert, not as a broken HTTP/2 write.
            // An accepting node speaks first (its HTTP/2 SETTINGS), so nothing waits long.
            let mut tls = BufReader::new(tls);
            if tls.fill_buf().await?.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the node closed the connection after the handshake",
                ));
            }
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        };
        async move {
            tokio::time::timeout(limit, connection).await.map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} ms", limit.as_millis()),
                )
            })?
        }
    });
    Ok((inner, connect))
}

async fn open(
    endpoint: &str,
    config: Arc<rustls::ClientConfig>,
    limits: Limits,
    node: Option<Expected>,
) -> Result<Channel, ClientError> {
    let (inner, connect) = prepare(endpoint, config, limits, node)?;
    let channel = inner
        .connect_with_connector(connect)
        .await
        .map_err(|e| match alert_in(&e) {
            Some(alert) => ClientError::Refused {
                endpoint: endpoint.to_owned(),
                alert,
            },
            None => ClientError::Connect {
                endpoint: endpoint.to_owned(),
                reason: node_certificate_refused(&e).unwrap_or_else(|| error_chain(&e)),
            },
        })?;
    Ok(channel)
}

/// The identity a node must present, and what asked for it (for the refusal's message).
#[derive(Clone, Debug)]
pub struct Expected {
    pub node: SpiffeId,
    /// `--node`, or the route that names it.
    pub named_by: &'static str,
}

/// Whether the node's certificate `leaf` names the expected node: refused before anything is
/// sent.
fn expect_node(
    leaf: Option<&rustls::pki_types::CertificateDer<'_>>,
    expected: &Expected,
) -> Result<(), std::io::Error> {
    let Expected { node, named_by } = expected;
    let refused =
        |reason: String| std::io::Error::new(std::io::ErrorKind::PermissionDenied, reason);
    match leaf.map(tls::spiffe_id_of) {
        Some(Ok(id)) if id == *node => Ok(()),
        Some(Ok(id)) => Err(refused(format!(
            "the node's certificate names {id}, not {node} ({named_by}): nothing was sent"
        ))),
        Some(Err(e)) => Err(refused(format!(
            "the node's certificate names no SPIFFE ID ({e}); {named_by} expects {node}: nothing \
             was sent"
        ))),
        None => Err(refused(format!(
            "the node sent no certificate; {named_by} expects {node}: nothing was sent"
        ))),
    }
}

/// Why we refused the node's certificate, said in the terms of the client's own files: rustls's
/// "invalid peer certificate: UnknownIssuer" leaves a person guessing which file is wrong.
fn node_certificate_refused(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    rustls_errors_in(error).find_map(|tls| {
        let rustls::Error::InvalidCertificate(why) = tls else {
            return None;
        };
        Some(match why {
            rustls::CertificateError::UnknownIssuer => "the node's certificate is not issued by \
                any CA of the bundle given (--ca): check that it is the node's region's CA"
                .to_owned(),
            rustls::CertificateError::Revoked => "the node's certificate is revoked: a CRL given \
                (--crl) lists it, or a CA above it"
                .to_owned(),
            rustls::CertificateError::UnknownRevocationStatus => "the node's certificate cannot \
                be checked for revocation: no CRL given (--crl) is of the CA that issued it"
                .to_owned(),
            rustls::CertificateError::ExpiredRevocationList
            | rustls::CertificateError::ExpiredRevocationListContext { .. } => "a CRL given \
                (--crl) is past its next update: fetch the current one"
                .to_owned(),
            rustls::CertificateError::NotValidForName => "the node's certificate does not name \
                the host of the endpoint (use the name or address its certificate was issued for)"
                .to_owned(),
            other => format!(
                "the node's certificate was refused: {}",
                camel_words(&format!("{other:?}"), " ").to_lowercase()
            ),
        })
    })
}

/// The TLS alert a peer sent, somewhere in an error's chain, spelled as in RFC 8446 with spaces
/// ("certificate expired"), which is how the README documents the node's refusals.
fn alert_in(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    rustls_errors_in(error).find_map(|tls| match tls {
        rustls::Error::AlertReceived(alert) => {
            Some(camel_words(&format!("{alert:?}"), " ").to_lowercase())
        }
        _ => None,
    })
}

/// The rustls errors in an error's chain, outermost first.
fn rustls_errors_in<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e rustls::Error> {
    std::iter::successors(Some(error), |e| e.source()).filter_map(|e| {
        // `io::Error::source` skips the error it wraps, so look inside it explicitly.
        match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().and_then(|inner| inner.downcast_ref()),
            None => e.downcast_ref::<rustls::Error>(),
        }
    })
}

/// Whether `status` is a call given up by the client at [`Limits::call`]: tonic reports it as
/// CANCELLED with its own wording, which says neither who gave up nor after how long.
pub fn timed_out(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Cancelled
        && status.message() == tonic::TimeoutExpired(()).to_string()
}

/// `UnknownCA` -> `Unknown CA`, `UnknownPSKIdentity` -> `Unknown PSK Identity`, and
/// `PermissionDenied` -> `Permission_Denied` with `_`: the protocol names behind the Rust
/// spellings rustls and tonic print. A word starts at a capital after a small letter or digit,
/// or at the last capital of a run that a small letter follows.
pub fn camel_words(name: &str, separator: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut chars = name.chars().peekable();
    let mut previous: Option<char> = None;
    while let Some(c) = chars.next() {
        if let Some(p) = previous
            && c.is_uppercase()
        {
            let after_small = p.is_lowercase() || p.is_ascii_digit();
            let ends_capitals =
                p.is_uppercase() && chars.peek().is_some_and(|next| next.is_lowercase());
            if after_small || ends_capitals {
                out.push_str(separator);
            }
        }
        previous = Some(c);
        out.push(c);
    }
    out
}

/// A status as gRPC names it (`PERMISSION_DENIED: …`), with its transport cause when it has one
/// (a refused connection, the TLS alert of a failed handshake).
pub fn status_text(status: &tonic::Status) -> String {
    let code = camel_words(&format!("{:?}", status.code()), "_").to_uppercase();
    let mut text = format!("{code}: {}", status.message());
    if let Some(source) = std::error::Error::source(status) {
        let chain = error_chain(source);
        if chain.contains(status.message()) {
            // The message is the chain's last words (tonic's for a refused connection): the
            // chain alone, said once.
            text = format!("{code}: {chain}");
        } else if !text.contains(&chain) {
            text.push_str(" (");
            text.push_str(&chain);
            text.push(')');
        }
    }
    text
}

/// The full `source()` chain of an error on one line: tonic's top-level transport error alone
/// says only "transport error", while the TLS alert that explains it sits two levels down.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::camel_words;

    #[test]
    fn protocol_names_are_split_into_their_words() {
        for (rust, words) in [
            ("UnknownCA", "Unknown CA"),
            ("CertificateExpired", "Certificate Expired"),
            ("UnknownPSKIdentity", "Unknown PSK Identity"),
            (
                "BadCertificateStatusResponse",
                "Bad Certificate Status Response",
            ),
            ("Unknown(42)", "Unknown(42)"),
        ] {
            assert_eq!(camel_words(rust, " "), words);
        }
        assert_eq!(camel_words("PermissionDenied", "_"), "Permission_Denied");
        assert_eq!(camel_words("Ok", "_"), "Ok");
    }
}
