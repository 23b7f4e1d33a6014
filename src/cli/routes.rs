//! `credit-node routes --config NODE.toml`: checks, from the node's own machine and with its
//! own certificate, every route of `[[interconnect.route]]`, as a forwarded query would use it.
//!
//! Why: routes connect on the first forwarded query, so a wrong address, a peer certificate of
//! another identity, or a peer that does not trust this node's CA shows only as a department's
//! UNAVAILABLE. An operator deploying an interconnection checks each route before that.

use std::{path::PathBuf, time::Instant};

use serde::Serialize;

use super::CliError;
use crate::{config::LoadedConfig, identity::SpiffeId, interconnect::Route};

#[derive(clap::Args)]
pub struct Args {
    /// The node's config file (TOML); its certificate, trust domains and routes are used.
    #[arg(long)]
    pub config: PathBuf,
    /// Also ask each route's node whether it takes relays from this node (`interconnect.relays`
    /// there): an empty Relay call, which that node refuses and records like any relay call.
    #[arg(long)]
    pub relay: bool,
    /// One JSON object on standard output instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One route's check, as printed.
#[derive(Debug, Serialize)]
struct Checked {
    node: String,
    address: String,
    ok: bool,
    /// The identity the route's node established for this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    seen_as: Option<String>,
    /// Milliseconds until `WhoAmI` was answered, connecting included.
    #[serde(skip_serializing_if = "Option::is_none")]
    ms: Option<u64>,
    /// `accepted`, or the other node's refusal (with `--relay`).
    #[serde(skip_serializing_if = "Option::is_none")]
    relay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub async fn run(args: Args) -> Result<(), CliError> {
    let loaded = LoadedConfig::load(&args.config)?;
    let tls = loaded.tls_material()?;
    let node = match tls.chain.first().map(crate::tls::spiffe_id_of) {
        Some(Ok(node)) => node,
        Some(Err(e)) => {
            let path = args.config.display();
            return Err(CliError::Input(format!("{path}: node.cert: {e}")));
        }
        None => {
            let path = args.config.display();
            return Err(CliError::Input(format!(
                "{path}: node.cert holds no certificate"
            )));
        }
    };
    let interconnect = loaded.interconnect(&node, &tls)?;
    let routes = interconnect.routes();
    let checks =
        futures_util::future::join_all(routes.iter().map(|r| check(r, &node, args.relay))).await;
    let failed = checks.iter().filter(|c| !c.ok).count();
    if args.json {
        let json = serde_json::json!({ "node": node.to_string(), "routes": checks });
        crate::outln!("{json}")?;
    } else if checks.is_empty() {
        crate::outln!("{node} has no [[interconnect.route]]: it forwards nothing")?;
    } else {
        print_table(&checks)?;
    }
    match failed {
        0 => Ok(()),
        n => Err(CliError::Runtime(format!(
            "{n} of {} routes failed their check",
            checks.len()
        ))),
    }
}

async fn check(route: &Route, this_node: &SpiffeId, relay: bool) -> Checked {
    let started = Instant::now();
    let mut checked = Checked {
        node: route.node().to_string(),
        address: route.address().to_owned(),
        ok: false,
        seen_as: None,
        ms: None,
        relay: None,
        error: None,
    };
    match route.who_am_i().await {
        Ok(answer) => {
            checked.ms = Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
            checked.seen_as = answer.identity.map(|i| i.spiffe_id);
            checked.ok = true;
        }
        Err(e) => {
            checked.error = Some(e);
            return checked;
        }
    }
    if relay {
        match route.takes_relays_from(this_node).await {
            Ok(()) => checked.relay = Some("accepted".into()),
            Err(e) => {
                checked.relay = Some(e);
                checked.ok = false;
            }
        }
    }
    checked
}

fn print_table(checks: &[Checked]) -> Result<(), CliError> {
    let node_width = checks
        .iter()
        .map(|c| c.node.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let address_width = checks
        .iter()
        .map(|c| c.address.len())
        .max()
        .unwrap_or(7)
        .max(7);
    crate::outln!(
        "{:<node_width$}  {:<address_width$}  RESULT",
        "NODE",
        "ADDRESS"
    )?;
    for c in checks {
        let result = match (&c.error, c.ms, &c.seen_as) {
            (Some(e), ..) => format!("failed: {e}"),
            (None, Some(ms), Some(seen_as)) => {
                format!("ok in {ms} ms, sees this node as {seen_as}")
            }
            _ => "ok".to_owned(),
        };
        let relay = match c.relay.as_deref() {
            None => String::new(),
            Some("accepted") => "; takes relays from this node".to_owned(),
            Some(refusal) => format!("; refuses relays from this node: {refusal}"),
        };
        crate::outln!(
            "{:<node_width$}  {:<address_width$}  {result}{relay}",
            c.node,
            c.address
        )?;
    }
    Ok(())
}
