//! `credit-node demo`: the newcomer's first command. Makes a development PKI and two regional
//! nodes on 127.0.0.1, shows who is let in and who is refused, then keeps serving until Ctrl-C.
//! Every claim it prints is checked: if a refusal it announces does not happen, it fails.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use super::{CliError, whoami};
use crate::{
    client,
    config::{LoadedConfig, LogFormat},
    identity::Kind,
    logging,
    pki::{self, Layout, REGION_A, REGION_B},
    server::RunningNode,
};

#[derive(clap::Args)]
pub struct Args {
    /// Folder for the PKI and node configs (created; existing files are overwritten).
    #[arg(long, default_value = "demo-work")]
    pub work: PathBuf,
    /// Port of region A's node (0 picks a free one).
    #[arg(long, default_value_t = 7443)]
    pub port_a: u16,
    /// Port of region B's node (0 picks a free one).
    #[arg(long, default_value_t = 7444)]
    pub port_b: u16,
    /// Run the tour and exit instead of serving until Ctrl-C.
    #[arg(long)]
    pub no_wait: bool,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    // Quiet logs: the tour's own lines are the output (refusals included). RUST_LOG overrides.
    logging::init(LogFormat::Text, "error");
    let runtime = |e: &dyn std::fmt::Display| CliError::Runtime(e.to_string());
    std::fs::create_dir_all(&args.work)
        .map_err(|e| runtime(&format!("{}: {e}", args.work.display())))?;
    let work = std::fs::canonicalize(&args.work).map_err(|e| runtime(&e))?;
    let layout = pki::generate(&work.join("pki")).map_err(|e| runtime(&e))?;
    pki::write_signed_demo_catalog(&layout).map_err(|e| runtime(&e))?;

    println!("credit-node demo: work folder {}\n", work.display());
    println!("  development PKI   {}", layout.root().display());
    println!(
        "  signed catalog    {} (signed with the development catalog-authority key)",
        layout.demo_catalog().display()
    );
    let node_a = start_node(&layout, &work, REGION_A, args.port_a).await?;
    let node_b = start_node(&layout, &work, REGION_B, args.port_b).await?;
    let a = format!("https://127.0.0.1:{}", node_a.local_addr().port());
    let b = format!("https://127.0.0.1:{}", node_b.local_addr().port());
    println!("  region A node     {a}  {}", node_a.node_id());
    println!("  region B node     {b}  {}", node_b.node_id());

    println!("\nWho is calling? WhoAmI on region A's node, identity from the client certificate:");
    let cas = [layout.ca_cert(REGION_A), layout.ca_cert(REGION_B)];
    for (region, kind, id) in [
        (REGION_A, Kind::Dept, "tax"),
        (REGION_A, Kind::Officer, "auditor"),
        (REGION_A, Kind::Operator, "admin"),
        (REGION_B, Kind::Dept, "tax"),
    ] {
        let (cert, key) = layout.identity(region, kind, id);
        let label = format!("{} {kind} {id}", region_label(region));
        match call(&a, &cert, &key, &cas).await {
            Ok(who) => println!("  ✓ {label:<28} identified as {}", who.spiffe_id),
            Err(e) => return Err(runtime(&format!("{label} should be accepted: {e}"))),
        }
    }
    for (name, why) in pki::NEGATIVE_FIXTURES {
        let (cert, key) = layout.negative(name);
        match call(&a, &cert, &key, &cas).await {
            Ok(who) => {
                return Err(runtime(&format!(
                    "{name} ({why}) was accepted as {}: refusing to continue",
                    who.spiffe_id
                )));
            }
            Err(e) => println!(
                "  ✗ {name:<28} refused ({why}): {}",
                short_reason(&e.to_string())
            ),
        }
    }

    show_grants(&node_a, &layout).await?;

    let (cert, key) = layout.identity(REGION_A, Kind::Dept, "tax");
    let ca = layout.ca_cert(REGION_A);
    println!("\nCall the nodes by hand:");
    println!(
        "  credit-node whoami --endpoint {a} --cert {} --key {} --ca {}",
        cert.display(),
        key.display(),
        ca.display()
    );
    println!(
        "  grpcurl -cacert {} -cert {} -key {} 127.0.0.1:{} credit.v1.CreditQuery/WhoAmI",
        ca.display(),
        cert.display(),
        key.display(),
        node_a.local_addr().port()
    );
    println!(
        "  grpcurl -cacert {} -cert {} -key {} 127.0.0.1:{} list",
        ca.display(),
        cert.display(),
        key.display(),
        node_a.local_addr().port()
    );
    println!(
        "  node configs: {}  {}",
        work.join("region-a.toml").display(),
        work.join("region-b.toml").display()
    );

    if !args.no_wait {
        println!("\nServing until Ctrl-C.");
        let _ = tokio::signal::ctrl_c().await;
    }
    node_a.shutdown().await;
    node_b.shutdown().await;
    Ok(())
}

fn region_label(region: &str) -> &'static str {
    if region == REGION_A {
        "region A"
    } else {
        "region B"
    }
}

async fn start_node(
    layout: &Layout,
    work: &Path,
    region: &str,
    port: u16,
) -> Result<RunningNode, CliError> {
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let path = work.join(if region == REGION_A {
        "region-a.toml"
    } else {
        "region-b.toml"
    });
    std::fs::write(&path, pki::node_config_toml(layout, region, listen))
        .map_err(|e| CliError::Runtime(format!("{}: {e}", path.display())))?;
    let loaded = LoadedConfig::load(&path)?;
    super::serve::start(&loaded).await
}

async fn call(
    endpoint: &str,
    cert: &Path,
    key: &Path,
    cas: &[PathBuf],
) -> Result<whoami::WhoAmIOutput, CliError> {
    let cas: Vec<&Path> = cas.iter().map(PathBuf::as_path).collect();
    let tls = client::tls_config_from_files(cert, key, &cas)?;
    whoami::whoami(endpoint, tls).await
}

/// The TLS alert is the part of a refusal a newcomer can act on.
fn short_reason(error: &str) -> String {
    match error.find("received fatal alert: ") {
        Some(i) => format!(
            "TLS alert {}",
            &error[i + "received fatal alert: ".len()..]
                .split([')', ':'])
                .next()
                .unwrap_or("")
                .trim()
        ),
        None => error.to_owned(),
    }
}

/// Default deny, field by field: the same registration item seen by two tax bureaus of two
/// regions, and what each may ask for, through the node's own DescribeGrants.
async fn show_grants(node: &RunningNode, layout: &Layout) -> Result<(), CliError> {
    let purpose = "tax-administration";
    let catalog = node.state().catalog();
    println!(
        "\nWhat may leave? The signed catalog {} decides, field by field (purpose {purpose}):",
        catalog.catalog().version
    );
    for region in [REGION_A, REGION_B] {
        let caller = crate::identity::SpiffeId::new(
            crate::identity::TrustDomain::parse(region)
                .map_err(|e| CliError::Runtime(e.to_string()))?,
            Kind::Dept,
            "tax",
        )
        .map_err(|e| CliError::Runtime(e.to_string()))?;
        let explanation = crate::catalog::explain(&catalog, &caller, purpose);
        println!("\n  {caller}   (credit-node catalog explain)");
        for row in explanation.rows.iter().filter(|r| r.item == "registration") {
            let what = match (&row.form, row.reason) {
                (Some(form), _) => format!("granted as {form}"),
                (None, Some(reason)) => format!("withheld: {reason}"),
                (None, None) => "withheld".to_owned(),
            };
            println!("    registration.{:<20} {what}", row.field);
        }
    }

    let (cert, key) = layout.identity(REGION_B, Kind::Dept, "tax");
    let cas = [layout.ca_cert(REGION_A), layout.ca_cert(REGION_B)];
    let cas: Vec<&Path> = cas.iter().map(PathBuf::as_path).collect();
    let tls = client::tls_config_from_files(&cert, &key, &cas)?;
    let channel = client::connect(
        &format!("https://127.0.0.1:{}", node.local_addr().port()),
        tls,
    )
    .await?;
    let grants = crate::proto::credit_query_client::CreditQueryClient::new(channel)
        .describe_grants(crate::proto::DescribeGrantsRequest {})
        .await
        .map_err(|s| CliError::Runtime(whoami::describe_status(&s)))?
        .into_inner();
    let fields: usize = grants
        .purposes
        .iter()
        .flat_map(|p| &p.items)
        .map(|i| i.fields.len())
        .sum();
    println!(
        "\n  DescribeGrants over mTLS as spiffe://region-b.credit.test/dept/tax: {} purposes, {} granted (item, field) pairs in all",
        grants.purposes.len(),
        fields
    );
    Ok(())
}
