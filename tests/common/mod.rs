//! Shared fixtures for the integration tests: a fresh development PKI per test, real nodes on
//! 127.0.0.1 port 0, and mutual-TLS clients built by the node's own TLS module.
#![allow(dead_code)]

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
};

use credit_node::{
    cli::{CliError, whoami},
    client,
    config::LoadedConfig,
    identity::Kind,
    pki::{self, Layout, REGION_A, REGION_B},
    server::RunningNode,
};
use tempfile::TempDir;

pub struct TestPki {
    pub dir: TempDir,
    pub layout: Layout,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let layout = pki::generate(&dir.path().join("pki")).expect("dev PKI");
        pki::write_signed_demo_catalog(&layout).expect("signed demo catalog");
        Self { dir, layout }
    }

    pub fn identity(&self, region: &str, kind: Kind, id: &str) -> (PathBuf, PathBuf) {
        self.layout.identity(region, kind, id)
    }

    /// A client config for a certificate/key pair that trusts both regions' CAs.
    pub fn client_tls(&self, cert: &Path, key: &Path) -> Arc<rustls::ClientConfig> {
        let a = self.layout.ca_cert(REGION_A);
        let b = self.layout.ca_cert(REGION_B);
        client::tls_config_from_files(cert, key, &[&a, &b]).expect("client TLS config")
    }

    /// Writes the development config of `region`'s node (port 0) and returns its path.
    pub fn write_config(&self, region: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{region}.toml"));
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        std::fs::write(&path, pki::node_config_toml(&self.layout, region, listen)).expect("config");
        path
    }

    /// Writes the development config of `region`'s node storing in `database_url` (a
    /// PostgreSQL database of [`postgres_url`]) instead of its SQLite file, and returns its path.
    pub fn write_config_on(&self, region: &str, database_url: &str) -> PathBuf {
        let path = self.write_config(region);
        let text = std::fs::read_to_string(&path).expect("config");
        let sqlite = format!(
            "sqlite://{}",
            self.layout.root().join(format!("{region}.db")).display()
        );
        let replaced = text.replace(&sqlite, database_url);
        assert_ne!(replaced, text, "the config names {sqlite}");
        std::fs::write(&path, replaced).expect("config");
        path
    }

    /// Writes the development config of `region`'s node with `crls` as the CRLs of trust domain
    /// `domain` instead of its root's CRL alone, and returns its path.
    pub fn write_config_with_crls(&self, region: &str, domain: &str, crls: &[PathBuf]) -> PathBuf {
        let path = self.write_config(region);
        let text = std::fs::read_to_string(&path).expect("config");
        let root_only = format!(
            "crls = [{:?}]",
            self.layout.crl(domain).display().to_string()
        );
        let listed: Vec<String> = crls
            .iter()
            .map(|crl| format!("{:?}", crl.display().to_string()))
            .collect();
        let replaced = text.replace(&root_only, &format!("crls = [{}]", listed.join(", ")));
        assert_ne!(replaced, text, "the config lists {domain}'s CRL");
        std::fs::write(&path, replaced).expect("config");
        path
    }

    /// A mutual-TLS channel to `node` as `region`'s identity `kind`/`id`.
    pub async fn channel(
        &self,
        node: &RunningNode,
        region: &str,
        kind: Kind,
        id: &str,
    ) -> tonic::transport::Channel {
        let (cert, key) = self.identity(region, kind, id);
        client::connect(&endpoint(node), self.client_tls(&cert, &key))
            .await
            .expect("connect")
    }

    pub async fn start_node(&self, region: &str) -> RunningNode {
        start_from_config(&self.write_config(region)).await
    }
}

pub fn endpoint(node: &RunningNode) -> String {
    format!("https://127.0.0.1:{}", node.local_addr().port())
}

pub async fn whoami_as(
    pki: &TestPki,
    node: &RunningNode,
    cert: &Path,
    key: &Path,
) -> Result<whoami::WhoAmIOutput, CliError> {
    whoami::whoami(&endpoint(node), pki.client_tls(cert, key)).await
}

/// Starts a node in this process from a config file, as `serve` does.
pub async fn start_from_config(path: &Path) -> RunningNode {
    let loaded = LoadedConfig::load(path).expect("config loads");
    credit_node::cli::serve::start(&loaded)
        .await
        .expect("node starts")
}

/// The same with a clock the test sets.
pub async fn start_with_clock(path: &Path, clock: credit_node::clock::Clock) -> RunningNode {
    let loaded = LoadedConfig::load(path).expect("config loads");
    credit_node::cli::serve::start_with_clock(&loaded, clock)
        .await
        .expect("node starts")
}

/// The stores a store test runs on: a fresh SQLite file always, and a fresh PostgreSQL
/// database when `DATABASE_URL` names a server (CI's). Under `CI=true` a missing PostgreSQL is
/// a failure, not a skip.
pub async fn test_stores(dir: &Path) -> Vec<(&'static str, credit_node::store::Store)> {
    let sqlite =
        credit_node::store::Store::open(&format!("sqlite://{}", dir.join("node.db").display()))
            .await
            .expect("SQLite store");
    let mut stores = vec![("sqlite", sqlite)];
    // Without a server, postgres_url says the PostgreSQL half was skipped.
    if let Some(url) = postgres_url().await {
        stores.push((
            "postgres",
            credit_node::store::Store::open(&url)
                .await
                .expect("PostgreSQL store"),
        ));
    }
    stores
}

/// Says, once per test binary, that the PostgreSQL half of the store tests did not run. Written
/// to the process's stderr directly: the test harness captures `eprintln!`, and shows it only
/// for a failing test, where a skip would go unnoticed.
fn say_postgres_skipped() {
    use std::io::Write;
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "note: PostgreSQL store tests skipped (DATABASE_URL is not set); SQLite ran"
        );
    });
}

/// Test databases older than this were left by an earlier run that has ended.
const STALE_AFTER_SECS: u64 = 6 * 3600;

/// A new, empty PostgreSQL database on the server `DATABASE_URL` names, so tests never see each
/// other's rows.
pub async fn postgres_url() -> Option<String> {
    use sqlx::{Connection, Executor};
    let Ok(base) = std::env::var("DATABASE_URL") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but DATABASE_URL is not set: PostgreSQL tests must run in CI"
        );
        say_postgres_skipped();
        return None;
    };
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&base)
        .await
        .expect("PostgreSQL reachable");
    // Databases are named after their creation time, so each test run can drop what earlier
    // runs left behind (a test cannot drop its own: its node may still be connected).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT datname::TEXT FROM pg_database WHERE datname LIKE 'credit\\_test\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list test databases");
    for old in stale {
        let created = old
            .split('_')
            .nth(2)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        if now.saturating_sub(created) > STALE_AFTER_SECS {
            // Another test run may be dropping the same one: failures here are not ours.
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS {old} WITH (FORCE)").as_str())
                .await;
        }
    }
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("random");
    let name = format!("credit_test_{now}_{}", credit_node::tls::hex(&bytes));
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create database");
    let cut = base.rfind('/').expect("database URL has a path");
    Some(format!("{}/{name}", &base[..cut]))
}

/// Reloads `node`'s TLS material from its `config` (after a revocation) and asserts that the
/// connection `api` holds is answered no more: the first call fails with the closed connection,
/// and the channel's reconnection is refused for the revocation.
pub async fn reload_and_assert_cut_off(
    node: &RunningNode,
    config: &Path,
    api: &mut credit_node::proto::credit_query_client::CreditQueryClient<tonic::transport::Channel>,
) {
    let loaded = LoadedConfig::load(config).expect("config");
    node.tls()
        .reload(loaded.tls_material().expect("material"))
        .expect("reload");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let status = api
            .who_am_i(credit_node::proto::WhoAmIRequest {})
            .await
            .expect_err("nothing answered after the reload");
        let revoked = format!("{status:?}").contains("CertificateRevoked");
        statuses.push(status);
        if revoked {
            break;
        }
    }
    assert!(
        statuses.len() > 1 && statuses.len() < 5,
        "the open connection is cut, then the revocation is the reason: {statuses:?}"
    );
}

/// Makes every ledger write of the node's SQLite store fail (as a full disk would), or undoes it.
pub async fn fail_ledger_writes(store: &credit_node::store::Store, fail: bool) {
    use sqlx::Executor;
    let sql = if fail {
        "CREATE TRIGGER activity.fail_ledger BEFORE INSERT ON ledger_entries \
         BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    } else {
        "DROP TRIGGER fail_ledger"
    };
    store.pool().execute(sql).await.expect("ledger trigger");
}

/// A clock the test sets: the node started with [`SetClock::clock`] reads the Unix seconds it
/// holds, so a test reaches a certificate's end or a new quota window without waiting.
#[derive(Clone)]
pub struct SetClock(Arc<std::sync::atomic::AtomicI64>);

impl SetClock {
    pub fn at(unix_seconds: i64) -> Self {
        Self(Arc::new(std::sync::atomic::AtomicI64::new(unix_seconds)))
    }

    /// Starting at the real time.
    pub fn now() -> Self {
        Self::at(time::OffsetDateTime::now_utc().unix_timestamp())
    }

    pub fn clock(&self) -> credit_node::clock::Clock {
        let seconds = Arc::clone(&self.0);
        credit_node::clock::Clock::from_fn(move || {
            time::OffsetDateTime::from_unix_timestamp(
                seconds.load(std::sync::atomic::Ordering::SeqCst),
            )
            .expect("a time in range")
        })
    }

    pub fn set(&self, unix_seconds: i64) {
        self.0
            .store(unix_seconds, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn advance_days(&self, days: i64) {
        self.0
            .fetch_add(days * 86_400, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A query about `subject` (a legal person) for every field of `item`, for `purpose`.
pub fn ask_for(subject: &str, item: &str, purpose: &str) -> credit_node::proto::QueryRequest {
    credit_node::proto::QueryRequest {
        subject: subject.into(),
        subject_type: credit_node::proto::SubjectType::LegalPerson.into(),
        items: vec![credit_node::proto::ItemSelection {
            item: item.into(),
            fields: vec![],
        }],
        purpose: purpose.into(),
        basis_reference: "（2026）浙0106执123号".into(),
        node: String::new(),
    }
}

/// The legal representative's identity number and mobile in [`registration_row`]: personal
/// fields, which tests look for where they must not appear.
pub const REP_ID: &str = "11010519491231002X";
pub const MOBILE: &str = "13812341234";

/// An ingest row: `subject`'s business registration, its legal representative [`REP_ID`].
pub fn registration_row(subject: &str) -> String {
    serde_json::json!({
        "subject": subject, "item": "registration",
        "fields": {
            "uscc": subject, "name": "杭州星河网络科技有限公司", "status": "存续",
            "established": "2009-03-17", "registered_capital": "1500000.00", "division": "330106",
            "legal_rep_name": "欧阳娜娜", "legal_rep_id": REP_ID, "legal_rep_mobile": MOBILE
        },
        "basis": {"kind": "营业执照", "number": format!("REG-{subject}"), "date": "2009-03-17", "issuer": "samr"},
        "decision_date": "2009-03-17"
    })
    .to_string()
}

/// An ingest row: an ordinary administrative penalty of `subject`, decided on `decided`.
pub fn penalty_row(subject: &str, number: &str, decided: &str) -> String {
    serde_json::json!({
        "subject": subject, "item": "admin-penalty",
        "fields": {
            "decision_no": number, "uscc": subject, "severity": "ordinary", "penalty_type": "罚款",
            "amount": "15000.00", "decision_date": decided, "facts": "未按规定公示年度报告",
            "legal_rep_id": "11010519491231002X"
        },
        "basis": {"kind": "行政处罚决定书", "number": number, "date": decided, "issuer": "samr"},
        "severity": "ordinary",
        "decision_date": decided
    })
    .to_string()
}

/// An ingest row: `subject` on the list of seriously untrustworthy entities since 2026-03-01.
pub fn listing_row(subject: &str) -> String {
    serde_json::json!({
        "subject": subject, "item": "serious-untrustworthy",
        "fields": {
            "uscc": subject, "name": "杭州星河网络科技有限公司",
            "list_reason": "拒不履行行政处罚决定", "listed_date": "2026-03-01",
            "listing_authority": "杭州市市场监督管理局"
        },
        "basis": {"kind": "列入决定书", "number": "列严〔2026〕5号", "date": "2026-03-01", "issuer": "samr"},
        "severity": "serious",
        "decision_date": "2026-03-01",
        "designation": {"designated_on": "2026-03-01", "removal_conditions": "履行处罚决定满一年"}
    })
    .to_string()
}

/// A stored record: an ordinary administrative penalty of `subject`, decision `number` of
/// 2026, with a basis and a disclosure period running to 2027-05-01 (the store suites' record,
/// built directly rather than ingested).
pub fn penalty_record(subject: &str, number: u32) -> credit_node::records::Record {
    use credit_node::records::{Basis, Record};
    let no = format!("京市监罚〔2026〕{number}号");
    Record {
        subject: subject.into(),
        item: "admin-penalty".into(),
        fields: std::collections::BTreeMap::from([
            ("decision_no".to_owned(), no.clone()),
            ("amount".to_owned(), "5000.00".to_owned()),
            (
                "facts".to_owned(),
                "未按规定公示年度报告；𠮷字测试".to_owned(),
            ),
        ]),
        basis: Basis {
            kind: "行政处罚决定书".into(),
            number: no,
            date: time::macros::date!(2026 - 05 - 01),
            issuer: "samr".into(),
        },
        severity: Some(credit_node::catalog::Severity::Ordinary),
        decision_date: time::macros::date!(2026 - 05 - 01),
        disclosure_end: Some(time::macros::date!(2027 - 05 - 01)),
        restoration: None,
        designation: None,
    }
}

/// The demo catalog's subject type of each item, which the store needs to file a subject.
pub fn demo_subject_types() -> credit_node::catalog::SubjectTypes {
    credit_node::catalog::Catalog::parse("demo.toml", credit_node::catalog::DEMO.as_bytes())
        .expect("the demo catalog parses")
        .subject_types()
}

/// The name of the PostgreSQL database `store` is on.
pub async fn database_name(store: &credit_node::store::Store) -> String {
    use sqlx::Row;
    sqlx::query::<sqlx::Any>("SELECT current_database()::text")
        .fetch_one(store.pool())
        .await
        .expect("database name")
        .get(0)
}

/// Takes PostgreSQL database `name` down as far as its clients can tell (it refuses new
/// connections and the open ones are ended), or brings it back.
pub async fn set_database_up(name: &str, up: bool) {
    use sqlx::{Connection, Executor};
    let mut server = sqlx::AnyConnection::connect(&std::env::var("DATABASE_URL").expect("server"))
        .await
        .expect("PostgreSQL reachable");
    server
        .execute(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {up}").as_str())
        .await
        .expect("allow connections");
    if !up {
        server
            .execute(
                format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                )
                .as_str(),
            )
            .await
            .expect("end connections");
    }
}

/// The HTTP answer to `request` (status line, headers and body).
pub async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// One scrape: the body, and each sample by its name and labels.
pub async fn scrape(node: &RunningNode) -> (String, std::collections::HashMap<String, f64>) {
    let addr = node.metrics_addr().expect("metrics are served");
    let answer = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: monitor\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(name, value)| (name.to_owned(), value.parse::<f64>().unwrap()))
        .collect();
    (body.to_owned(), samples)
}

pub fn get(samples: &std::collections::HashMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("{name} in {samples:?}"))
}

/// An operator's restoration of `record_id` from `on` (YYYY-MM-DD), on a decision of 2026.
pub async fn restore(
    admin: &mut credit_node::proto::administration_client::AdministrationClient<
        tonic::transport::Channel,
    >,
    record_id: &str,
    on: &str,
) {
    admin
        .restore_record(credit_node::proto::RestoreRecordRequest {
            record_id: record_id.into(),
            restored_on: on.into(),
            basis: "信用修复决定〔2026〕9号".into(),
        })
        .await
        .expect("operator restores");
}
