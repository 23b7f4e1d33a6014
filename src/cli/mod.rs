//! The subcommands of the `credit-node` binary. Each returns a [`CliError`] whose exit code tells
//! scripts what kind of failure it was: 2 for bad input (config, arguments, files), 1 for the
//! rest (network, refusals, runtime).

pub mod catalog;
pub mod connect;
pub mod demo;
pub mod gen_data;
pub mod harvest_sim;
pub mod ingest;
pub mod ledger;
pub mod output;
pub mod progress;
pub mod review;
pub mod routes;
pub mod serve;
pub mod whoami;
pub mod withdrawals;

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Runtime(String),
    /// Standard output was closed by its reader (`… | head -1`): the command ends quietly,
    /// exit 0, as Unix tools do ([`output`]).
    #[error("standard output closed")]
    OutputClosed,
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Input(_) => 2,
            CliError::Runtime(_) => 1,
            CliError::OutputClosed => 0,
        }
    }
}

impl From<crate::client::ClientError> for CliError {
    fn from(e: crate::client::ClientError) -> Self {
        match e {
            crate::client::ClientError::Connect { .. }
            | crate::client::ClientError::Refused { .. } => CliError::Runtime(e.to_string()),
            _ => CliError::Input(e.to_string()),
        }
    }
}

/// `credit-node dev-pki --out DIR`.
pub fn dev_pki(out: &Path) -> Result<(), CliError> {
    let layout = crate::pki::generate(out).map_err(|e| CliError::Runtime(e.to_string()))?;
    crate::outln!(
        "development PKI written to {} (see certs/README.md for the layout; development only)",
        layout.root().display()
    )
}
