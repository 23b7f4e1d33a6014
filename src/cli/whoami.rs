//! `credit-node whoami`: the identity a node established for us, as JSON.

use std::path::PathBuf;

use serde::Serialize;

use super::CliError;
use crate::{client, proto};

#[derive(clap::Args)]
pub struct Args {
    /// The node, e.g. https://127.0.0.1:7443
    #[arg(long)]
    pub endpoint: String,
    /// Our certificate (PEM).
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
}

/// The JSON printed: the identity fields of `credit.v1.Identity`, plus the node that answered.
#[derive(Debug, Serialize)]
pub struct WhoAmIOutput {
    pub spiffe_id: String,
    pub trust_domain: String,
    pub kind: String,
    pub id: String,
    pub certificate_serial: String,
    pub certificate_not_after: String,
    pub certificate_sha256: String,
    pub node: String,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let cas: Vec<&std::path::Path> = args.ca.iter().map(PathBuf::as_path).collect();
    let crls: Vec<&std::path::Path> = args.crl.iter().map(PathBuf::as_path).collect();
    let tls = client::tls_config_checking_crls(&args.cert, &args.key, &cas, &crls)?;
    let output = whoami(&args.endpoint, tls).await?;
    let json =
        serde_json::to_string_pretty(&output).map_err(|e| CliError::Runtime(e.to_string()))?;
    crate::outln!("{json}")?;
    Ok(())
}

pub async fn whoami(
    endpoint: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<WhoAmIOutput, CliError> {
    let channel = client::connect(endpoint, tls).await?;
    let mut api = proto::credit_query_client::CreditQueryClient::new(channel);
    let response = api
        .who_am_i(proto::WhoAmIRequest {})
        .await
        .map_err(|status| CliError::Runtime(describe_status(&status)))?
        .into_inner();
    let identity = response
        .identity
        .ok_or_else(|| CliError::Runtime("node answered without an identity".into()))?;
    let kind = match identity.kind() {
        proto::PrincipalKind::Dept => "dept",
        proto::PrincipalKind::Officer => "officer",
        proto::PrincipalKind::Operator => "operator",
        proto::PrincipalKind::Unspecified => "unspecified",
    };
    Ok(WhoAmIOutput {
        spiffe_id: identity.spiffe_id,
        trust_domain: identity.trust_domain,
        kind: kind.into(),
        id: identity.id,
        certificate_serial: identity.certificate_serial,
        certificate_not_after: identity.certificate_not_after,
        certificate_sha256: identity.certificate_sha256,
        node: response.node_spiffe_id,
    })
}

/// A status as gRPC names it (`PERMISSION_DENIED: …`), with its transport cause when it has one.
/// The CLI's calls are made with [`client::LIMITS`], so a call it gave up on is said to have
/// waited that long.
pub fn describe_status(status: &tonic::Status) -> String {
    use std::error::Error;
    if client::timed_out(status) {
        return format!(
            "CANCELLED: the node did not answer within {} s; the call was given up",
            client::LIMITS.call.as_secs()
        );
    }
    let code = client::camel_words(&format!("{:?}", status.code()), "_").to_uppercase();
    let mut text = format!("{code}: {}", status.message());
    if let Some(source) = status.source() {
        let chain = client::error_chain(source);
        if !text.contains(&chain) {
            text.push_str(" (");
            text.push_str(&chain);
            text.push(')');
        }
    }
    text
}
