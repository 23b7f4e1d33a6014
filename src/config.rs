//! The node's one TOML configuration file: every path and limit, documented in the README.
//!
//! Promise 9 of design.md: a bad file stops start-up with the file, line and key in the message.
//! Relative paths are resolved against the folder of the config file, so a config and its
//! certificates can move together.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::{
    access::Access,
    catalog::{CatalogError, SignedCatalog},
    desensitize::PseudonymKey,
    identity::{Kind, SpiffeId, TrustDomain},
    tls::{self, ServerMaterial, TrustDomainMaterial},
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    /// One entry per trust domain (region) whose callers this node accepts.
    #[serde(rename = "trust_domain", default)]
    pub trust_domains: Vec<TrustDomainSection>,
    pub catalog: CatalogSection,
    pub privacy: PrivacySection,
    pub store: StoreSection,
    pub ledger: LedgerSection,
    /// Who operates and reviews this node (default: nobody).
    #[serde(default)]
    pub access: AccessSection,
    #[serde(default)]
    pub limits: Limits,
    /// Rate limits, distinct-subject quotas and enumeration detection (promise 7).
    #[serde(default)]
    pub harvest: crate::harvest::HarvestSettings,
    #[serde(default)]
    pub log: LogSection,
    /// Prometheus metrics over plain HTTP; absent: not served.
    pub metrics: Option<MetricsSection>,
    /// Routes to the nodes of other regions, and who may relay to this one (default: none).
    #[serde(default)]
    pub interconnect: InterconnectSection,
}

/// Cross-region queries ([`crate::interconnect`]): the nodes this node forwards its callers'
/// queries to, and the nodes it answers relayed queries from. Both default to none: a node
/// neither forwards nor answers for another region's callers through a relay until its
/// department says so.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InterconnectSection {
    /// Nodes (`spiffe://<trust domain>/dept/<id>`) of a configured trust domain that may call
    /// `Interconnect/Relay` for callers of their own trust domain.
    pub relays: Vec<Spanned<String>>,
    /// The nodes this node forwards queries to (`QueryRequest.node`).
    #[serde(rename = "route")]
    pub routes: Vec<RouteSection>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    /// The node's SPIFFE ID, of a configured trust domain: its certificate must name exactly
    /// this, issued under that trust domain's CA (and not revoked by its CRLs).
    pub node: Spanned<String>,
    /// `host:port` of the node; the host is what its certificate must name (DNS name or IP).
    pub address: Spanned<String>,
    /// How long a forwarded query may take, connection included, before the caller gets
    /// UNAVAILABLE (recorded). Less than `limits.request_timeout_ms`, so that the refusal is
    /// recorded and sent before the caller's own call ends.
    #[serde(default = "default_route_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_route_timeout_ms() -> u64 {
    5_000
}

/// What a forwarded query needs beyond its route's timeout within `limits.request_timeout_ms`:
/// its admission before, and the durable commit of its entry after.
const ROUTE_MARGIN_MS: u64 = 1_000;

/// Where the node serves its metrics ([`crate::metrics`]): plain HTTP, so a loopback or
/// monitoring-network address; they carry counts only, never a subject or a caller.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// e.g. `127.0.0.1:9464`; port 0 picks a free port.
    pub listen: SocketAddr,
}

/// The signed catalog this node shares under (promise 3: only a catalog signed by the
/// authority key named here is loaded).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSection {
    /// The catalog TOML file.
    pub path: Spanned<PathBuf>,
    /// Its detached signature; defaults to `<path>.sig`.
    pub signature: Option<Spanned<PathBuf>>,
    /// The catalog authority's Ed25519 public key (SPKI PEM).
    pub authority_key: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySection {
    /// The node's secret for keyed pseudonyms: 32 random bytes as 64 hex digits, readable by
    /// the node's user only. Per-recipient keys are derived from it, so rotating it changes
    /// every pseudonym the node has given out.
    pub pseudonym_key: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Address to listen on, e.g. `127.0.0.1:7443`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// PEM certificate chain of this node (leaf first). Reloaded with the TLS material, so
    /// not among the settings a reload names as needing a restart.
    #[serde(skip_serializing)]
    pub cert: Spanned<PathBuf>,
    /// PEM private key of this node (reloaded like `cert`).
    #[serde(skip_serializing)]
    pub key: Spanned<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustDomainSection {
    /// The trust domain, e.g. `region-a.credit.test`.
    pub name: Spanned<String>,
    /// PEM bundle of the trust domain's root CA certificates.
    pub ca: Spanned<PathBuf>,
    /// PEM CRLs issued by those roots and the intermediates under them; when present, every
    /// certificate of a client's chain is checked, and one of unknown status is refused.
    #[serde(default)]
    pub crls: Vec<Spanned<PathBuf>>,
}

/// The department's own operators and officers, by SPIFFE ID ([`crate::access`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSection {
    /// `spiffe://<this node's trust domain>/operator/<id>`: may ingest, restore, remove from lists.
    pub operators: Vec<Spanned<String>>,
    /// `spiffe://<this node's trust domain>/officer/<id>`: may review the ledger.
    pub officers: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `sqlite://PATH` (relative paths are resolved against the config file's folder) or
    /// `postgres://user@host:port/database`.
    pub database_url: Spanned<String>,
    /// PostgreSQL: a statement waiting this long for a lock fails instead (the query answers
    /// UNAVAILABLE). 0: wait forever.
    #[serde(default = "default_lock_timeout_ms")]
    pub lock_timeout_ms: u64,
    /// PostgreSQL: a session left this long inside a transaction without a statement is ended
    /// by the server, releasing its locks. 0: never.
    #[serde(default = "default_idle_in_transaction_timeout_ms")]
    pub idle_in_transaction_timeout_ms: u64,
    /// PostgreSQL: a round trip to the database unanswered this long is given up and its
    /// connection treated as lost (the query answers UNAVAILABLE, the next gets a fresh
    /// connection). sqlx has no TCP keepalive for PostgreSQL, so without it a silent server
    /// holds every connection for as long as TCP retransmits, about a quarter of an hour.
    /// Not 0, and longer than `lock_timeout_ms`, so a wait for a lock is not taken for a
    /// lost connection.
    #[serde(default = "default_round_trip_timeout_ms")]
    pub round_trip_timeout_ms: u64,
}

fn default_lock_timeout_ms() -> u64 {
    crate::store::StoreSettings::default().lock_timeout_ms
}
fn default_idle_in_transaction_timeout_ms() -> u64 {
    crate::store::StoreSettings::default().idle_in_transaction_timeout_ms
}
fn default_round_trip_timeout_ms() -> u64 {
    crate::store::StoreSettings::default().round_trip_timeout_ms
}

impl From<&StoreSection> for crate::store::StoreSettings {
    fn from(s: &StoreSection) -> Self {
        Self {
            lock_timeout_ms: s.lock_timeout_ms,
            idle_in_transaction_timeout_ms: s.idle_in_transaction_timeout_ms,
            round_trip_timeout_ms: s.round_trip_timeout_ms,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// The node's own Ed25519 ledger key (PKCS#8 PEM, mode 0600): signs tree heads.
    pub signing_key: Spanned<PathBuf>,
    /// A signed tree head at least every this many entries ...
    #[serde(default = "default_sth_every_entries")]
    pub sth_every_entries: u64,
    /// ... and no entry left unsigned longer than this many milliseconds: a quiet node signs
    /// its tail on a timer.
    #[serde(default = "default_sth_interval_ms")]
    pub sth_interval_ms: u64,
    /// Most entries committed in one group-commit transaction.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// How often the lookup by caller and subject catches up with the log (`ledger::lookup`).
    /// 0: never in the background; listings by caller or subject stay complete but scan every
    /// entry since the last catch-up, which on a busy node soon means most of the ledger.
    #[serde(default = "default_lookup_every_ms")]
    pub lookup_every_ms: u64,
}

fn default_sth_every_entries() -> u64 {
    1000
}
fn default_sth_interval_ms() -> u64 {
    1000
}
fn default_max_batch() -> usize {
    1024
}
fn default_lookup_every_ms() -> u64 {
    5000
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request or response message, in bytes.
    pub max_message_bytes: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Open connections; further ones are closed before the handshake.
    pub max_connections: usize,
    /// Time a client has to finish the TLS handshake.
    pub handshake_timeout_ms: u64,
    /// Longest a call may run. Without it a call whose client set no deadline waits as long
    /// as whatever it waits on (a PostgreSQL server gone silent, say), holding its stream; a
    /// client's own shorter `grpc-timeout` applies as well.
    pub request_timeout_ms: u64,
    /// Subjects in one BatchQuery.
    pub max_batch_subjects: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            max_concurrent_streams: 256,
            max_connections: 4096,
            handshake_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_batch_subjects: 100,
        }
    }
}

#[derive(Debug, Deserialize, Serialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `credit_node=debug`.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// A config error that says where: `file:line:column: key: message`.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// One identity of an access list, with where it is written.
struct Listed {
    key: String,
    id: SpiffeId,
    span: std::ops::Range<usize>,
}

/// A parsed config and the text it came from, so later checks can still point at lines.
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: Config,
    text: String,
}

impl LoadedConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, text)
    }

    pub fn parse(path: &Path, text: String) -> Result<Self, ConfigError> {
        let config = parse_toml::<Config>(path, &text)?;
        let loaded = Self {
            path: path.to_owned(),
            config,
            text,
        };
        loaded.validate()?;
        Ok(loaded)
    }

    /// The settings of `self` that differ from `running`'s among those a node reads only at
    /// start-up (`[node] listen`, `[privacy]`, `[store]`, `[ledger]`, `[limits]`, `[log]`,
    /// `[metrics]`, `[interconnect]`), as
    /// `section.key`, defaults included. A reload cannot apply them; it names them so that an
    /// operator who edited one is not left believing it took effect. Names only: a value may
    /// hold a secret (a database URL's password).
    pub fn restart_only_changes(&self, running: &LoadedConfig) -> Vec<String> {
        // Serializing a plain struct of paths, numbers and strings cannot fail; one that
        // somehow did would read as Null on both sides, never as a change.
        fn json(v: &impl Serialize) -> serde_json::Value {
            serde_json::to_value(v).unwrap_or_default()
        }
        fn sections(c: &Config) -> [(&'static str, serde_json::Value); 8] {
            [
                ("interconnect", json(&c.interconnect)),
                ("node", json(&c.node)),
                ("privacy", json(&c.privacy)),
                ("store", json(&c.store)),
                ("ledger", json(&c.ledger)),
                ("limits", json(&c.limits)),
                ("log", json(&c.log)),
                ("metrics", json(&c.metrics)),
            ]
        }
        let mut changed = Vec::new();
        for ((section, now), (_, then)) in sections(&self.config)
            .into_iter()
            .zip(sections(&running.config))
        {
            let (serde_json::Value::Object(now), serde_json::Value::Object(then)) = (&now, &then)
            else {
                // A section added or removed (`[metrics]`).
                if now != then {
                    changed.push(format!("[{section}]"));
                }
                continue;
            };
            let keys: std::collections::BTreeSet<&String> = now.keys().chain(then.keys()).collect();
            changed.extend(
                keys.into_iter()
                    .filter(|key| now.get(*key) != then.get(*key))
                    .map(|key| format!("{section}.{key}")),
            );
        }
        changed
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = Vec::new();
        for (i, td) in self.config.trust_domains.iter().enumerate() {
            let parsed = TrustDomain::parse(td.name.get_ref()).map_err(|e| {
                self.error_at(td.name.span(), &format!("trust_domain[{i}].name"), e)
            })?;
            if seen.contains(&parsed) {
                return Err(self.error_at(
                    td.name.span(),
                    &format!("trust_domain[{i}].name"),
                    format!("trust domain {parsed} is listed twice"),
                ));
            }
            seen.push(parsed);
        }
        if self.config.trust_domains.is_empty() {
            return Err(self.error_at(
                0..0,
                "trust_domain",
                "at least one [[trust_domain]] is required",
            ));
        }
        let limits = &self.config.limits;
        for (key, zero) in [
            ("limits.max_message_bytes", limits.max_message_bytes == 0),
            (
                "limits.max_concurrent_streams",
                limits.max_concurrent_streams == 0,
            ),
            ("limits.max_connections", limits.max_connections == 0),
            (
                "limits.handshake_timeout_ms",
                limits.handshake_timeout_ms == 0,
            ),
            ("limits.request_timeout_ms", limits.request_timeout_ms == 0),
            // No limit would be the silent database's quarter of an hour again.
            (
                "store.round_trip_timeout_ms",
                self.config.store.round_trip_timeout_ms == 0,
            ),
        ] {
            if zero {
                return Err(self.error_at(self.span_of(key), key, "must be greater than 0"));
            }
        }
        let store = &self.config.store;
        if store.lock_timeout_ms > 0 && store.round_trip_timeout_ms <= store.lock_timeout_ms {
            // Named where the file sets it: the other may be the default.
            let why = "a statement waiting for a lock would be taken for a lost connection";
            let round_trip = "store.round_trip_timeout_ms";
            let span = self.span_of(round_trip);
            return Err(if span != (0..0) {
                let must = format!(
                    "must be greater than store.lock_timeout_ms ({}): {why}",
                    store.lock_timeout_ms
                );
                self.error_at(span, round_trip, must)
            } else {
                let key = "store.lock_timeout_ms";
                let must = format!(
                    "must be less than store.round_trip_timeout_ms ({}): {why}",
                    store.round_trip_timeout_ms
                );
                self.error_at(self.span_of(key), key, must)
            });
        }
        if let Err((key, message)) = self.config.harvest.check() {
            return Err(self.error_at(self.span_of(&key), &key, message));
        }
        self.access_ids()?;
        self.interconnect_ids()?;
        crate::logging::check_level(&self.config.log.level)
            .map_err(|e| self.error_at(self.span_of("log.level"), "log.level", e))?;
        Ok(())
    }

    /// The access lists parsed, each ID of the kind its list is for.
    fn access_ids(&self) -> Result<Vec<Listed>, ConfigError> {
        let access = &self.config.access;
        let mut ids = Vec::new();
        for (list, kind, entries) in [
            ("operators", Kind::Operator, &access.operators),
            ("officers", Kind::Officer, &access.officers),
        ] {
            for (i, entry) in entries.iter().enumerate() {
                let key = format!("access.{list}[{i}]");
                let id = SpiffeId::parse(entry.get_ref())
                    .map_err(|e| self.error_at(entry.span(), &key, e))?;
                if id.kind() != kind {
                    return Err(self.error_at(
                        entry.span(),
                        &key,
                        format!(
                            "{id} is not an {kind} identity (`spiffe://<trust domain>/{kind}/<id>`)"
                        ),
                    ));
                }
                ids.push(Listed {
                    key,
                    id,
                    span: entry.span(),
                });
            }
        }
        Ok(ids)
    }

    /// Who may administer and review the node whose identity is `node`. Only identities of the
    /// node's own trust domain can be named: another region's staff work on their own nodes.
    pub fn access(&self, node: &SpiffeId) -> Result<Access, ConfigError> {
        let (mut operators, mut officers) = (Vec::new(), Vec::new());
        for Listed { key, id, span } in self.access_ids()? {
            if id.trust_domain() != node.trust_domain() {
                return Err(self.error_at(
                    span,
                    &key,
                    format!(
                        "{id} is not of this node's trust domain {}",
                        node.trust_domain()
                    ),
                ));
            }
            match id.kind() {
                Kind::Operator => operators.push(id),
                _ => officers.push(id),
            }
        }
        Ok(Access::new(operators, officers))
    }

    /// The relays and routes parsed: department nodes of configured trust domains, each
    /// named once, with a usable address and timeout.
    fn interconnect_ids(&self) -> Result<(Vec<Listed>, Vec<Listed>), ConfigError> {
        let section = &self.config.interconnect;
        let domains: Vec<&str> = self
            .config
            .trust_domains
            .iter()
            .map(|td| td.name.get_ref().as_str())
            .collect();
        let node_id = |key: &str, entry: &Spanned<String>| -> Result<Listed, ConfigError> {
            let id = SpiffeId::parse(entry.get_ref())
                .map_err(|e| self.error_at(entry.span(), key, e))?;
            let why = if id.kind() != Kind::Dept {
                Some(format!(
                    "{id} is not a department node (`spiffe://<trust domain>/dept/<id>`)"
                ))
            } else if !domains.contains(&id.trust_domain().as_str()) {
                Some(format!(
                    "{id} is not of a trust domain this node loads ([[trust_domain]])"
                ))
            } else {
                None
            };
            match why {
                Some(why) => Err(self.error_at(entry.span(), key, why)),
                None => Ok(Listed {
                    key: key.to_owned(),
                    id,
                    span: entry.span(),
                }),
            }
        };
        let twice = |listed: &[Listed], next: &Listed| {
            listed.iter().any(|l| l.id == next.id).then(|| {
                self.error_at(
                    next.span.clone(),
                    &next.key,
                    format!("{} is listed twice", next.id),
                )
            })
        };
        let mut relays: Vec<Listed> = Vec::new();
        for (i, entry) in section.relays.iter().enumerate() {
            let listed = node_id(&format!("interconnect.relays[{i}]"), entry)?;
            if let Some(e) = twice(&relays, &listed) {
                return Err(e);
            }
            relays.push(listed);
        }
        let mut routes: Vec<Listed> = Vec::new();
        for (i, route) in section.routes.iter().enumerate() {
            let listed = node_id(&format!("interconnect.route[{i}].node"), &route.node)?;
            if let Some(e) = twice(&routes, &listed) {
                return Err(e);
            }
            let key = format!("interconnect.route[{i}].address");
            crate::client::check_endpoint(route.address.get_ref())
                .map_err(|e| self.error_at(route.address.span(), &key, e))?;
            let key = format!("interconnect.route[{i}].timeout_ms");
            let ceiling = self.config.limits.request_timeout_ms;
            if route.timeout_ms == 0 || route.timeout_ms + ROUTE_MARGIN_MS > ceiling {
                let message = format!(
                    "must be greater than 0 and at least {ROUTE_MARGIN_MS} less than \
                     limits.request_timeout_ms ({ceiling}), so that a forwarded query that fails \
                     is still recorded and answered"
                );
                return Err(self.error_at(self.span_of(&key), &key, message));
            }
            routes.push(listed);
        }
        Ok((relays, routes))
    }

    /// The interconnect of the node whose identity is `node`, its routes' TLS built from the
    /// node's own certificate (`material`) and each route's trust domain alone: region A's CA
    /// cannot vouch for a node of region B. Channels connect on first use, and again after a
    /// connection is lost.
    pub fn interconnect(
        &self,
        node: &SpiffeId,
        material: &ServerMaterial,
    ) -> Result<crate::interconnect::Interconnect, ConfigError> {
        let (relays, routes) = self.interconnect_ids()?;
        let mut built = Vec::with_capacity(routes.len());
        for (listed, section) in routes.into_iter().zip(&self.config.interconnect.routes) {
            if listed.id == *node {
                return Err(self.error_at(listed.span, &listed.key, "is this node itself"));
            }
            let tls = crate::interconnect::route_tls(material, &listed.id)
                .map_err(|e| self.error_at(listed.span.clone(), &listed.key, e))?;
            let timeout = std::time::Duration::from_millis(section.timeout_ms);
            let route = crate::interconnect::Route::new(
                listed.id,
                section.address.get_ref(),
                tls,
                timeout,
                self.config.limits.max_message_bytes,
            )
            .map_err(|e| self.error_at(section.address.span(), &listed.key, e))?;
            built.push(route);
        }
        let mut relay_ids = Vec::with_capacity(relays.len());
        for Listed { key, id, span } in relays {
            // A relay speaks for the departments of its own trust domain: one of this node's
            // would speak for this region's departments, which call this node themselves.
            if id.trust_domain() == node.trust_domain() {
                return Err(self.error_at(
                    span,
                    &key,
                    format!(
                        "{id} is of this node's own trust domain; relays are other regions' nodes"
                    ),
                ));
            }
            relay_ids.push(id);
        }
        Ok(crate::interconnect::Interconnect::new(built, relay_ids))
    }

    /// A path from the config, resolved against the config file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_owned(),
        }
    }

    /// Reads the certificate, key, trust bundles and CRLs the config names. Called at start-up
    /// and on every SIGHUP; any failure names the key that pointed at the bad file.
    pub fn tls_material(&self) -> Result<ServerMaterial, ConfigError> {
        let node = &self.config.node;
        let at = |spanned: &Spanned<PathBuf>, key: &str| {
            let path = self.resolve(spanned.get_ref());
            (path, spanned.span(), key.to_owned())
        };
        let (cert_path, span, key) = at(&node.cert, "node.cert");
        let chain = tls::load_certs(&cert_path).map_err(|e| self.error_at(span, &key, e))?;
        let (key_path, span, key) = at(&node.key, "node.key");
        let private = tls::load_key(&key_path).map_err(|e| self.error_at(span, &key, e))?;
        let mut trust = Vec::new();
        for (i, td) in self.config.trust_domains.iter().enumerate() {
            let domain = TrustDomain::parse(td.name.get_ref()).map_err(|e| {
                self.error_at(td.name.span(), &format!("trust_domain[{i}].name"), e)
            })?;
            let (ca_path, span, key) = at(&td.ca, &format!("trust_domain[{i}].ca"));
            let roots = tls::load_roots(&ca_path).map_err(|e| self.error_at(span, &key, e))?;
            let mut crls = Vec::new();
            for (j, crl) in td.crls.iter().enumerate() {
                let (crl_path, span, key) = at(crl, &format!("trust_domain[{i}].crls[{j}]"));
                crls.extend(tls::load_crls(&crl_path).map_err(|e| self.error_at(span, &key, e))?);
            }
            trust.push(TrustDomainMaterial {
                domain,
                roots,
                crls,
            });
        }
        Ok(ServerMaterial {
            chain,
            key: private,
            trust,
        })
    }

    /// Loads and verifies the catalog the config names. Any failure names the key at fault.
    pub fn catalog(&self) -> Result<SignedCatalog, ConfigError> {
        let section = &self.config.catalog;
        let path = self.resolve(section.path.get_ref());
        let (signature, sig_span, sig_key) = match &section.signature {
            Some(sig) => (self.resolve(sig.get_ref()), sig.span(), "catalog.signature"),
            None => {
                let mut with_sig = path.clone().into_os_string();
                with_sig.push(".sig");
                (PathBuf::from(with_sig), section.path.span(), "catalog.path")
            }
        };
        let key = self.resolve(section.authority_key.get_ref());
        SignedCatalog::load(&path, &signature, &key).map_err(|e| {
            let (span, key_name) = match &e {
                CatalogError::Key { .. } => (section.authority_key.span(), "catalog.authority_key"),
                CatalogError::Io { file, .. } if Path::new(file) == signature => {
                    (sig_span.clone(), sig_key)
                }
                CatalogError::Io { file, .. } if Path::new(file) == key => {
                    (section.authority_key.span(), "catalog.authority_key")
                }
                _ => (section.path.span(), "catalog.path"),
            };
            self.error_at(span, key_name, e)
        })
    }

    /// The database URL with a relative SQLite path resolved against the config's folder.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        let spanned = &self.config.store.database_url;
        let url = spanned.get_ref();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(self.error_at(
                    spanned.span(),
                    "store.database_url",
                    "sqlite:// needs a file path",
                ));
            }
            return Ok(format!(
                "sqlite://{}",
                self.resolve(Path::new(path)).display()
            ));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(url.clone());
        }
        Err(self.error_at(
            spanned.span(),
            "store.database_url",
            "expected sqlite://PATH or postgres://...",
        ))
    }

    /// An error about the store `store.database_url` names (a database that is not there),
    /// located at that key.
    pub fn database_url_error(&self, message: impl fmt::Display) -> ConfigError {
        self.error_at(
            self.config.store.database_url.span(),
            "store.database_url",
            message,
        )
    }

    /// The ledger signing key's path, resolved.
    pub fn ledger_key_path(&self) -> PathBuf {
        self.resolve(self.config.ledger.signing_key.get_ref())
    }

    /// Reads the ledger's Ed25519 signing key (PKCS#8 PEM; refused if group or others may
    /// read it).
    pub fn ledger_key(&self) -> Result<ring::signature::Ed25519KeyPair, ConfigError> {
        crate::ledger::key::read_signing_key(&self.ledger_key_path()).map_err(|e| {
            self.error_at(
                self.config.ledger.signing_key.span(),
                "ledger.signing_key",
                e,
            )
        })
    }

    /// Reads the pseudonym key. Refused when group or others may read it: a leaked key lets
    /// anyone reverse pseudonyms of low-entropy identifiers by enumeration.
    pub fn pseudonym_key(&self) -> Result<PseudonymKey, ConfigError> {
        let spanned = &self.config.privacy.pseudonym_key;
        let path = self.resolve(spanned.get_ref());
        let err = |message: String| self.error_at(spanned.span(), "privacy.pseudonym_key", message);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .map_err(|e| err(format!("{}: {e}", path.display())))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "{}: readable by group or others (mode {:o}); chmod 600 it",
                    path.display(),
                    mode & 0o777
                )));
            }
        }
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(&path).map_err(|e| err(format!("{}: {e}", path.display())))?,
        );
        PseudonymKey::from_hex(text.trim()).ok_or_else(|| {
            err(format!(
                "{}: expected 64 hexadecimal digits (32 bytes)",
                path.display()
            ))
        })
    }

    /// Where the value of `key` (dotted, `[i]` for an element of an array of tables, as our
    /// error keys are written) is in the file; `0..0` (no line) when it is not written there,
    /// i.e. a default is at fault.
    fn span_of(&self, key: &str) -> std::ops::Range<usize> {
        use toml::de::{DeTable, DeValue};
        let Ok(root) = DeTable::parse(&self.text) else {
            return 0..0;
        };
        let mut table = root.get_ref();
        let mut span = 0..0;
        for part in key.split('.') {
            let (name, index) = match part.split_once('[') {
                Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            let Some((_, value)) = table.iter().find(|(k, _)| k.get_ref() == name) else {
                return 0..0;
            };
            let value = match (value.get_ref(), index) {
                (DeValue::Array(items), Some(i)) => match items.get(i) {
                    Some(item) => item,
                    None => return 0..0,
                },
                _ => value,
            };
            span = value.span();
            if let DeValue::Table(inner) = value.get_ref() {
                table = inner;
            }
        }
        span
    }

    fn error_at(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl fmt::Display,
    ) -> ConfigError {
        let (line, column) = if span == (0..0) {
            (0, 0)
        } else {
            line_col(&self.text, span.start)
        };
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            key: key.to_owned(),
            message: message.to_string(),
        }
    }
}

/// Deserializes TOML with the failing key's dotted path and its line in the error.
pub fn parse_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    let error = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
        let (line, column) = span.map_or((0, 0), |s| line_col(text, s.start));
        ConfigError {
            file: path.to_owned(),
            line,
            column,
            key,
            message,
        }
    };
    let de = toml::Deserializer::parse(text)
        .map_err(|e| error(e.span(), String::new(), e.message().trim().to_owned()))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        error(inner.span(), key, inner.message().trim().to_owned())
    })
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
listen = "127.0.0.1:0"
cert = "node.crt"
key = "node.key"

[[trust_domain]]
name = "region-a.credit.test"
ca = "a/ca.crt"
crls = ["a/crl.pem"]

[limits]
max_message_bytes = 1048576

[catalog]
path = "catalog.toml"
authority_key = "authority.pub"

[privacy]
pseudonym_key = "pseudonym.key"

[store]
database_url = "sqlite://data/node.db"

[ledger]
signing_key = "ledger.key"
"#;

    fn parse(text: &str) -> Result<LoadedConfig, ConfigError> {
        LoadedConfig::parse(Path::new("/etc/credit/node.toml"), text.to_owned())
    }

    #[test]
    fn good_config_resolves_relative_paths_next_to_the_file() {
        let cfg = parse(GOOD).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.resolve(cfg.config.node.cert.get_ref()),
            PathBuf::from("/etc/credit/node.crt")
        );
        assert_eq!(cfg.config.limits.max_message_bytes, 1_048_576);
        assert_eq!(
            cfg.config.limits.max_concurrent_streams, 256,
            "defaults fill the rest"
        );
    }

    fn check_error(text: &str, expected: &str) {
        match parse(text) {
            Ok(_) => panic!("config should be refused:\n{text}"),
            Err(e) => assert_eq!(e.to_string(), expected),
        }
    }

    #[test]
    fn errors_name_file_line_and_key() {
        check_error(
            &GOOD.replace("max_message_bytes", "max_mesage_bytes"),
            "/etc/credit/node.toml:13:1: limits.max_mesage_bytes: unknown field `max_mesage_bytes`, expected one of `max_message_bytes`, `max_concurrent_streams`, `max_connections`, `handshake_timeout_ms`, `request_timeout_ms`, `max_batch_subjects`",
        );
        check_error(
            &GOOD.replace("\"127.0.0.1:0\"", "\"localhost\""),
            "/etc/credit/node.toml:3:10: node.listen: invalid socket address syntax",
        );
        check_error(
            &GOOD.replace("1048576", "\"big\""),
            "/etc/credit/node.toml:13:21: limits.max_message_bytes: invalid type: string \"big\", expected usize",
        );
        check_error(
            &GOOD.replace("region-a.credit.test", "Region A"),
            "/etc/credit/node.toml:8:8: trust_domain[0].name: malformed trust domain \"Region A\"",
        );
        check_error(
            &GOOD.replace("1048576", "0"),
            "/etc/credit/node.toml:13:21: limits.max_message_bytes: must be greater than 0",
        );
        // A call without a deadline could wait forever on a silent database.
        check_error(
            &GOOD.replace("1048576", "1048576\nrequest_timeout_ms = 0"),
            "/etc/credit/node.toml:14:22: limits.request_timeout_ms: must be greater than 0",
        );
        // A round trip without a limit would wait on a silent database for as long as TCP.
        let store = "[store]\ndatabase_url = \"sqlite://data/node.db\"";
        check_error(
            &GOOD.replace(store, &format!("{store}\nround_trip_timeout_ms = 0")),
            "/etc/credit/node.toml:24:25: store.round_trip_timeout_ms: must be greater than 0",
        );
        check_error(
            &GOOD.replace(store, &format!("{store}\nround_trip_timeout_ms = 5000")),
            "/etc/credit/node.toml:24:25: store.round_trip_timeout_ms: must be greater than \
             store.lock_timeout_ms (5000): a statement waiting for a lock would be taken for a \
             lost connection",
        );
        check_error(
            &GOOD.replace(store, &format!("{store}\nlock_timeout_ms = 20000")),
            "/etc/credit/node.toml:24:19: store.lock_timeout_ms: must be less than \
             store.round_trip_timeout_ms (10000): a statement waiting for a lock would be taken \
             for a lost connection",
        );
        let relaxed = format!("{store}\nlock_timeout_ms = 0\nround_trip_timeout_ms = 300");
        let cfg = parse(&GOOD.replace(store, &relaxed)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            crate::store::StoreSettings::from(&cfg.config.store).round_trip_timeout_ms,
            300,
            "a lock wait without end is cut by the round trip's limit"
        );
        let harvest = "\n[harvest]\non_enumeration = \"flag\"\n\n[harvest.default]\nburst = 0\n";
        check_error(
            &format!("{GOOD}{harvest}"),
            "/etc/credit/node.toml:32:9: harvest.default.burst: must be greater than 0",
        );
        let caller = "\n[[harvest.caller]]\nid = \"spiffe://a/dept/x\"\nrequests_per_second = 1\nburst = 1\ndistinct_subjects = 1\n\n[[harvest.caller]]\nid = \"spiffe://a/tax\"\nrequests_per_second = 1\nburst = 1\ndistinct_subjects = 1\n";
        check_error(
            &format!("{GOOD}{caller}"),
            "/etc/credit/node.toml:35:6: harvest.caller[1].id: malformed SPIFFE ID \"spiffe://a/tax\": expected spiffe://<trust-domain>/<dept|officer|operator>/<id>",
        );
        check_error(
            &format!("{GOOD}\n[harvest]\nwindow = \"week\"\n"),
            "/etc/credit/node.toml:29:10: harvest.window: unknown variant `week`, expected `day` or `hour`",
        );
        check_error(
            "[node]\nlisten = \"127.0.0.1:0\"\nkey = \"k\"\n",
            "/etc/credit/node.toml:1:1: node: missing field `cert`",
        );
        // A typo in the level would silently turn every log off, errors included.
        check_error(
            &format!("{GOOD}\n[log]\nlevel = \"warning\"\n"),
            "/etc/credit/node.toml:29:9: log.level: \"warning\": \"warning\" is not a level; expected a level (trace, debug, info, warn, error, off) or comma-separated target=level directives, e.g. \"info\" or \"warn,credit_node=debug\"",
        );
        check_error(
            "[node\n",
            "/etc/credit/node.toml:1:6: unclosed table, expected `]`",
        );
    }

    #[test]
    fn access_lists_name_this_trust_domains_staff_only() {
        let staff = "\n[access]\noperators = [\"spiffe://region-a.credit.test/operator/admin\"]\nofficers = [\"spiffe://region-a.credit.test/officer/auditor\", \"spiffe://region-b.credit.test/officer/auditor\"]\n";
        let cfg = parse(&format!("{GOOD}{staff}")).unwrap_or_else(|e| panic!("{e}"));
        let node = SpiffeId::parse("spiffe://region-a.credit.test/dept/samr").unwrap();
        // Region B's officer reviews region B's nodes: naming it here is a mistake, said where.
        assert_eq!(
            cfg.access(&node).unwrap_err().to_string(),
            "/etc/credit/node.toml:30:62: access.officers[1]: spiffe://region-b.credit.test/officer/auditor is not of this node's trust domain region-a.credit.test"
        );
        let cfg = parse(&format!(
            "{GOOD}{}",
            staff.replace(", \"spiffe://region-b.credit.test/officer/auditor\"", "")
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let access = cfg.access(&node).unwrap_or_else(|e| panic!("{e}"));
        let admin = SpiffeId::parse("spiffe://region-a.credit.test/operator/admin").unwrap();
        let auditor = SpiffeId::parse("spiffe://region-a.credit.test/officer/auditor").unwrap();
        assert!(access.is_operator(&admin) && !access.is_officer(&admin));
        assert!(access.is_officer(&auditor) && !access.is_operator(&auditor));
        let other = SpiffeId::parse("spiffe://region-a.credit.test/operator/tax-ops").unwrap();
        assert!(!access.is_operator(&other));
        // Without the section nobody administers or reviews.
        let nobody = parse(GOOD).unwrap().access(&node).unwrap();
        assert!(!nobody.is_operator(&admin) && !nobody.is_officer(&auditor));

        check_error(
            &format!(
                "{GOOD}\n[access]\noperators = [\"spiffe://region-a.credit.test/dept/tax\"]\n"
            ),
            "/etc/credit/node.toml:29:14: access.operators[0]: spiffe://region-a.credit.test/dept/tax is not an operator identity (`spiffe://<trust domain>/operator/<id>`)",
        );
        check_error(
            &format!("{GOOD}\n[access]\nofficers = [\"auditor\"]\n"),
            "/etc/credit/node.toml:29:13: access.officers[0]: malformed SPIFFE ID \"auditor\": expected spiffe://<trust-domain>/<dept|officer|operator>/<id>",
        );
    }

    #[test]
    fn the_documented_example_config_parses() {
        let text = include_str!("../deploy/node.example.toml");
        let cfg = parse(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.config.trust_domains.len(), 2);
        assert_eq!(cfg.config.log.format, LogFormat::Json);
        assert_eq!(cfg.config.harvest.callers.len(), 2);
        assert_eq!(
            cfg.config.metrics.map(|m| m.listen.to_string()).as_deref(),
            Some("127.0.0.1:9464")
        );
    }

    #[test]
    fn interconnect_names_department_nodes_of_loaded_trust_domains() {
        let route = |node: &str, address: &str, timeout: &str| {
            format!(
                "{GOOD}\n[[interconnect.route]]\nnode = \"{node}\"\naddress = \"{address}\"\n{timeout}"
            )
        };
        let b = "spiffe://region-b.credit.test/dept/hrss";
        check_error(
            &route(b, "10.0.0.2:7443", ""),
            "/etc/credit/node.toml:29:8: interconnect.route[0].node: spiffe://region-b.credit.test/dept/hrss is not of a trust domain this node loads ([[trust_domain]])",
        );
        let a = "spiffe://region-a.credit.test/officer/auditor";
        check_error(
            &route(a, "10.0.0.2:7443", ""),
            "/etc/credit/node.toml:29:8: interconnect.route[0].node: spiffe://region-a.credit.test/officer/auditor is not a department node (`spiffe://<trust domain>/dept/<id>`)",
        );
        let a = "spiffe://region-a.credit.test/dept/tax";
        check_error(
            &route(a, "10.0.0.2", ""),
            "/etc/credit/node.toml:30:11: interconnect.route[0].address: no port",
        );
        check_error(
            &route(a, "10.0.0.2:7443", "timeout_ms = 29001\n"),
            "/etc/credit/node.toml:31:14: interconnect.route[0].timeout_ms: must be greater than 0 and at least 1000 less than limits.request_timeout_ms (30000), so that a forwarded query that fails is still recorded and answered",
        );
        check_error(
            &format!("{GOOD}\n[interconnect]\nrelays = [\"{a}\", \"{a}\"]\n"),
            "/etc/credit/node.toml:29:53: interconnect.relays[1]: spiffe://region-a.credit.test/dept/tax is listed twice",
        );
        assert!(parse(&route(a, "10.0.0.2:7443", "timeout_ms = 29000\n")).is_ok());
        let good = parse(&route(a, "10.0.0.2:7443", "")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(good.config.interconnect.routes[0].timeout_ms, 5_000);
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\n信用x", 9), (2, 3));
        assert_eq!(
            line_col("ab\n信用x", 8),
            (2, 2),
            "inside a character: its start"
        );
        assert_eq!(line_col("", 0), (1, 1));
    }
}
