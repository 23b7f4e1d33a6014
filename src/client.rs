//! Connecting to a node as a mutual-TLS client: the CLI commands, `demo`, the tests and (later)
//! node-to-node routing all come through here, with the TLS built by [`crate::tls`].

use std::{path::Path, sync::Arc};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
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

/// Opens a gRPC channel over mutual TLS. `endpoint` is `https://host:port` or `host:port`; the
/// host is what the server certificate must name (a DNS name or an IP address).
pub async fn connect(
    endpoint: &str,
    config: Arc<rustls::ClientConfig>,
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
            async move {
                let tcp = TcpStream::connect((target.0.as_str(), target.1)).await?;
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| ClientError::Connect {
            endpoint: endpoint.to_owned(),
            reason: error_chain(&e),
        })?;
    Ok(channel)
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
