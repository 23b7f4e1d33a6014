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
    // Quiet logs: the tour's own lines are the output. RUST_LOG still overrides.
    logging::init(LogFormat::Text, "warn");
    let runtime = |e: &dyn std::fmt::Display| CliError::Runtime(e.to_string());
    std::fs::create_dir_all(&args.work)
        .map_err(|e| runtime(&format!("{}: {e}", args.work.display())))?;
    let work = std::fs::canonicalize(&args.work).map_err(|e| runtime(&e))?;
    let layout = pki::generate(&work.join("pki")).map_err(|e| runtime(&e))?;

    println!("credit-node demo: work folder {}\n", work.display());
    println!("  development PKI   {}", layout.root().display());
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
