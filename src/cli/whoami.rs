//! `credit-node whoami`: the identity a node established for us, as JSON.

use serde::Serialize;

use super::{CliError, connect::Connect};
use crate::{client, proto};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub connect: Connect,
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
    let output = who_am_i(args.connect.channel().await?).await?;
    let json =
        serde_json::to_string_pretty(&output).map_err(|e| CliError::Runtime(e.to_string()))?;
    crate::outln!("{json}")?;
    Ok(())
}

pub async fn whoami(
    endpoint: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<WhoAmIOutput, CliError> {
    who_am_i(client::connect(endpoint, tls).await?).await
}

async fn who_am_i(channel: tonic::transport::Channel) -> Result<WhoAmIOutput, CliError> {
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
    if client::timed_out(status) {
        return format!(
            "CANCELLED: the node did not answer within {} s; the call was given up",
            client::LIMITS.call.as_secs()
        );
    }
    client::status_text(status)
}
