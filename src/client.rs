//! Connecting to a node as a mutual-TLS client: the CLI commands, `demo`, the tests and (later)
//! node-to-node routing all come through here, with the TLS built by [`crate::tls`].

use std::{path::Path, sync::Arc, time::Duration};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::tls::{self, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// The node ended the handshake with a TLS alert: its reason for refusing us.
    #[error("{endpoint} refused the TLS handshake: alert \"{alert}\"")]
    Refused { endpoint: String, alert: String },
}

/// A client's TLS config from PEM files: its certificate chain, key, and the CA bundles of the
/// regions it calls.
pub fn tls_config_from_files(
    cert: &Path,
    key: &Path,
    cas: &[&Path],
) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let chain = tls::load_certs(cert)?;
    let key = tls::load_key(key)?;
    let mut roots = Vec::new();
    for ca in cas {
        roots.extend(tls::load_certs(ca)?);
    }
    Ok(tls::client_config(chain, key, &roots)?)
}

/// How long a connection may take, from TCP to the node's first bytes: a node that accepts and
/// then never answers must not hold a command forever.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a gRPC channel over mutual TLS. `endpoint` is `https://host:port` or `host:port`; the
/// host is what the server certificate must name (a DNS name or an IP address).
pub async fn connect(
    endpoint: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Channel, ClientError> {
    connect_within(endpoint, config, CONNECT_TIMEOUT).await
}

/// [`connect`], with the time a connection may take.
pub async fn connect_within(
    endpoint: &str,
    config: Arc<rustls::ClientConfig>,
    limit: Duration,
) -> Result<Channel, ClientError> {
    let bad = |reason: &str| ClientError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let with_scheme = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    };
    let uri: Uri = with_scheme.parse().map_err(|_| bad("not a valid URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad(
            "only https:// is supported: nodes speak mutual TLS only",
        ));
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().ok_or_else(|| bad("no port"))?;
    let server_name = ServerName::try_from(host.clone()).map_err(|_| bad("invalid host name"))?;

    // tonic sees plain http: the TLS below is ours, so tonic must not add its own.
    let inner = Endpoint::from_shared(format!("http://{}:{port}", uri.host().unwrap_or(&host)))
        .map_err(|e| bad(&e.to_string()))?;
    let connector = TlsConnector::from(config);
    let target = (host, port);
    let channel = inner
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let target = target.clone();
            let connection = async move {
                let tcp = TcpStream::connect((target.0.as_str(), target.1)).await?;
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(server_name, tcp).await?;
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
        }))
        .await
        .map_err(|e| match alert_in(&e) {
            Some(alert) => ClientError::Refused {
                endpoint: endpoint.to_owned(),
                alert,
            },
            None => ClientError::Connect {
                endpoint: endpoint.to_owned(),
                reason: error_chain(&e),
            },
        })?;
    Ok(channel)
}

/// The TLS alert a peer sent, somewhere in an error's chain, spelled as in RFC 8446 with spaces
/// ("certificate expired"), which is how the README documents the node's refusals.
fn alert_in(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        // `io::Error::source` skips the error it wraps, so look inside it explicitly.
        let tls = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().and_then(|inner| inner.downcast_ref()),
            None => e.downcast_ref::<rustls::Error>(),
        };
        if let Some(rustls::Error::AlertReceived(alert)) = tls {
            return Some(camel_words(&format!("{alert:?}"), " ").to_lowercase());
        }
        next = e.source();
    }
    None
}

/// `UnknownCA` -> `Unknown CA`, `PermissionDenied` -> `Permission_Denied` with `_`: the
/// protocol names behind the Rust spellings rustls and tonic print.
pub fn camel_words(name: &str, separator: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut previous_lower = false;
    for c in name.chars() {
        if c.is_uppercase() && previous_lower {
            out.push_str(separator);
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        out.push(c);
    }
    out
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
