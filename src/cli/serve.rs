//! `credit-node serve --config FILE`: run a node until SIGTERM or Ctrl-C; reload on SIGHUP.

use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};

use super::CliError;
use crate::{
    clock::Clock,
    config::LoadedConfig,
    ledger::store::{Ledger, LedgerSettings},
    logging,
    server::{NodeSettings, RunningNode},
    store::Store,
};

pub async fn run(config_path: &Path) -> Result<(), CliError> {
    let loaded = LoadedConfig::load(config_path)?;
    logging::init(loaded.config.log.format, &loaded.config.log.level);
    // Handlers first: a SIGHUP arriving right after "listening" must reload, not kill.
    let mut hangup = signal(SignalKind::hangup()).map_err(|e| CliError::Runtime(e.to_string()))?;
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| CliError::Runtime(e.to_string()))?;
    let node = start(&loaded).await?;
    loop {
        tokio::select! {
            _ = hangup.recv() => hangup_reload(&loaded, config_path, &node),
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}

pub async fn start(loaded: &LoadedConfig) -> Result<RunningNode, CliError> {
    start_with_clock(loaded, Clock::system()).await
}

/// [`start`] with the clock injected: tests set the date instead of waiting for it.
pub async fn start_with_clock(
    loaded: &LoadedConfig,
    clock: Clock,
) -> Result<RunningNode, CliError> {
    let catalog = loaded.catalog()?;
    tracing::info!(
        version = %catalog.catalog().version,
        sha256 = %catalog.digest_hex(),
        "catalog loaded"
    );
    let tls = loaded.tls_material()?;
    // The node's identity is checked again, with its own error, when it starts; here it only
    // places the access lists, whose errors point into the config file.
    let (access, interconnect) = match tls.chain.first().map(crate::tls::spiffe_id_of) {
        Some(Ok(node)) => (loaded.access(&node)?, loaded.interconnect(&node, &tls)?),
        _ => (
            crate::access::Access::default(),
            crate::interconnect::Interconnect::none(),
        ),
    };
    let pseudonym_key = loaded.pseudonym_key()?;
    let ledger_key = loaded.ledger_key()?;
    let store = Store::open_with(&loaded.database_url()?, (&loaded.config.store).into())
        .await
        .map_err(|e| CliError::Runtime(format!("store.database_url: {e}")))?;
    let ledger_clock = clock.clone();
    let section = &loaded.config.ledger;
    let ledger = Ledger::open(
        store.clone(),
        ledger_key,
        LedgerSettings::from(section),
        move || ledger_clock.now_ms(),
    )
    .await
    .map_err(|e| CliError::Runtime(format!("ledger: {e}")))?;
    let settings = NodeSettings {
        listen: loaded.config.node.listen,
        tls,
        limits: loaded.config.limits.clone(),
        catalog,
        pseudonym_key,
        store,
        ledger,
        clock,
        harvest: loaded.config.harvest.clone(),
        access,
        interconnect,
        metrics: loaded.config.metrics.as_ref().map(|m| m.listen),
    };
    RunningNode::start(settings)
        .await
        .map_err(|e| CliError::Runtime(format!("{}: {e}", loaded.path.display())))
}

/// What SIGHUP does: [`reload`], and a warning naming the settings the file now changes that
/// only a restart applies (against `started`, the config the node started from).
fn hangup_reload(started: &LoadedConfig, config_path: &Path, node: &RunningNode) {
    let Some(loaded) = load_for_reload(config_path) else {
        return;
    };
    let fixed = loaded.restart_only_changes(started);
    if !fixed.is_empty() {
        tracing::warn!(
            keys = %fixed.join(", "),
            "these settings change only with a restart; the running ones stay"
        );
    }
    apply(&loaded, node);
}

/// Re-reads the config file and swaps in new TLS material, access lists, per-caller harvest
/// limits and a new catalog, each on its own: a part that fails to load changes nothing of it
/// (the node keeps serving with what it had, and the log says why), while the other parts may
/// still be renewed.
pub fn reload(config_path: &Path, node: &RunningNode) {
    if let Some(loaded) = load_for_reload(config_path) {
        apply(&loaded, node);
    }
}

fn load_for_reload(config_path: &Path) -> Option<LoadedConfig> {
    LoadedConfig::load(config_path)
        .inspect_err(|error| {
            tracing::error!(%error, "reload refused; keeping the running TLS material, access lists, harvest limits and catalog");
        })
        .ok()
}

fn apply(loaded: &LoadedConfig, node: &RunningNode) {
    let config_path = &loaded.path;
    let tls = loaded
        .tls_material()
        .map_err(|e| e.to_string())
        .and_then(|material| {
            // The routes first, all or nothing; installed only if the server side takes the
            // material too, so that both sides of the node always use the same.
            let interconnect = node.state().interconnect();
            let routes = interconnect.renewal(&material)?;
            node.tls().reload(material).map_err(|e| e.to_string())?;
            interconnect.install(routes);
            Ok(())
        });
    match tls {
        Ok(()) => tracing::info!(config = %config_path.display(), "reloaded TLS material"),
        Err(error) => tracing::error!(
            config = %config_path.display(),
            %error,
            "reload refused; keeping the running TLS material"
        ),
    }
    match loaded.access(node.state().node_id()) {
        Ok(access) => {
            tracing::info!(
                operators = access.operators().len(),
                officers = access.officers().len(),
                "reloaded access lists"
            );
            node.state().replace_access(access);
        }
        Err(error) => tracing::error!(
            %error,
            "access reload refused; keeping the running access lists"
        ),
    }
    let (limits, fixed) = node.state().guard().replace_limits(&loaded.config.harvest);
    if limits == crate::harvest::LimitsReload::Replaced {
        tracing::info!("reloaded harvest limits (changed limits start with a full allowance)");
    }
    if let Err(fixed) = fixed {
        tracing::warn!(
            keys = %fixed.join(", "),
            "these [harvest] settings change only with a restart; the running ones stay"
        );
    }
    let catalog = loaded
        .catalog()
        .map_err(|e| e.to_string())
        .and_then(|catalog| {
            let (version, sha256) = (catalog.catalog().version.clone(), catalog.digest_hex());
            node.state()
                .replace_catalog(catalog)
                .map(|()| (version, sha256))
                .map_err(|e| e.to_string())
        });
    match catalog {
        Ok((version, sha256)) => tracing::info!(%version, %sha256, "reloaded catalog"),
        Err(error) => tracing::error!(
            %error,
            "catalog reload refused; keeping the running catalog"
        ),
    }
}
