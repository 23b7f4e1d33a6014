//! How the client commands (`whoami`, `ledger review`, `suspensions`, `lift`, `withdrawals`) reach a
//! running node: with the caller's own certificate, so the node records what they do under
//! that identity, exactly as a client in another language would.

use std::path::{Path, PathBuf};

use tonic::transport::Channel;

use super::{CliError, whoami::describe_status};
use crate::{client, identity::SpiffeId};

/// The node, our identity, and what the node's certificate must chain to.
#[derive(clap::Args, Debug)]
pub struct Connect {
    /// The node, e.g. https://127.0.0.1:7443
    #[arg(long)]
    pub endpoint: String,
    /// Our certificate (PEM): its URI SAN is who the node serves and records.
    #[arg(long)]
    pub cert: PathBuf,
    /// Our private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// CA bundle(s) the node's certificate must chain to; repeat for several regions.
    #[arg(long, required = true)]
    pub ca: Vec<PathBuf>,
    /// CRL(s) to check the node's certificate chain against (PEM; repeat for each CA): a
    /// revoked node is not talked to. Without any, revocation is not checked.
    #[arg(long)]
    pub crl: Vec<PathBuf>,
    /// The node's own SPIFFE ID, e.g. spiffe://region-a.credit.test/dept/samr: its certificate
    /// must name it, or nothing is sent. Without it, any certificate of the CA bundle that
    /// names the endpoint's host is taken for the node.
    #[arg(long)]
    pub node: Option<String>,
}

impl Connect {
    /// A mutual-TLS channel to the node; nothing is sent before its chain is checked.
    pub async fn channel(&self) -> Result<Channel, CliError> {
        let cas: Vec<&Path> = self.ca.iter().map(PathBuf::as_path).collect();
        let crls: Vec<&Path> = self.crl.iter().map(PathBuf::as_path).collect();
        let node = match &self.node {
            Some(node) => Some(
                SpiffeId::parse(node)
                    .map_err(|e| CliError::Input(format!("--node {node:?}: {e}")))?,
            ),
            None => None,
        };
        let tls = client::tls_config_checking_crls(&self.cert, &self.key, &cas, &crls)?;
        Ok(match &node {
            Some(node) => client::connect_to_node(&self.endpoint, tls, node).await?,
            None => client::connect(&self.endpoint, tls).await?,
        })
    }
}

/// A refusal by the node: its own argument checks are bad input (2), the rest runtime (1).
pub fn refused(status: tonic::Status) -> CliError {
    let text = describe_status(&status);
    match status.code() {
        tonic::Code::InvalidArgument => CliError::Input(text),
        _ => CliError::Runtime(text),
    }
}
