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
    // A demo already serving from this folder would lose its PKI and databases below: it holds
    // the folder's lock until it exits (the kernel releases it however the process ends).
    let lock_path = work.join("demo.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| runtime(&format!("{}: {e}", lock_path.display())))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(runtime(&format!(
                "another demo is running from {}: stop it, or pass another --work; the folder \
                 was left as it is",
                work.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(runtime(&format!(
                "{}: cannot lock the work folder ({e}); it was left as it is",
                lock_path.display()
            )));
        }
    }
    // Another program may hold our ports, and this demo would fail to bind after wiping the
    // folder: find out first, while nothing is deleted yet.
    for (flag, port) in [("--port-a", args.port_a), ("--port-b", args.port_b)] {
        if let Err(e) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return Err(runtime(&format!(
                "127.0.0.1:{port} is not free ({e}): is a demo already running? Stop it, or \
                 pick another port with {flag}; {} was left as it is",
                work.display()
            )));
        }
    }
    // A fresh PKI makes fresh ledger keys: start the databases afresh too.
    let _ = std::fs::remove_dir_all(work.join("pki"));
    let layout = pki::generate(&work.join("pki")).map_err(|e| runtime(&e))?;
    pki::write_signed_demo_catalog(&layout).map_err(|e| runtime(&e))?;

    crate::outln!("credit-node demo: work folder {}\n", work.display())?;
    crate::outln!("  development PKI   {}", layout.root().display())?;
    crate::outln!(
        "  signed catalog    {} (signed with the development catalog-authority key)",
        layout.demo_catalog().display()
    )?;
    // Region B's node forwards to region A's, which answers it for region B's departments.
    let relays = format!("\n[interconnect]\nrelays = [\"spiffe://{REGION_B}/dept/hrss\"]\n");
    let node_a = start_node(&layout, &work, REGION_A, args.port_a, &relays).await?;
    let route = format!(
        "\n[[interconnect.route]]\nnode = \"{}\"\naddress = \"127.0.0.1:{}\"\n",
        node_a.node_id(),
        node_a.local_addr().port()
    );
    let node_b = start_node(&layout, &work, REGION_B, args.port_b, &route).await?;
    let a = format!("https://127.0.0.1:{}", node_a.local_addr().port());
    let b = format!("https://127.0.0.1:{}", node_b.local_addr().port());
    crate::outln!("  region A node     {a}  {}", node_a.node_id())?;
    crate::outln!("  region B node     {b}  {}", node_b.node_id())?;

    crate::outln!(
        "\nWho is calling? WhoAmI on region A's node, identity from the client certificate:"
    )?;
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
            Ok(who) => crate::outln!("  ✓ {label:<28} identified as {}", who.spiffe_id)?,
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
            Err(e) => crate::outln!(
                "  ✗ {name:<28} refused ({why}): {}",
                short_reason(&e.to_string())
            )?,
        }
    }

    show_grants(&node_a, &layout).await?;
    let (subject, organisations) = load_synthetic_data(&node_a, &layout, &a).await?;
    let logged = || crate::ledger::store::committed_size(node_a.state().store());
    let before_tour = logged().await.map_err(|e| runtime(&e))?;
    show_one_subject(&layout, &a, &subject).await?;
    show_across_regions(&layout, &b, node_a.node_id(), &subject).await?;
    let tour = before_tour..logged().await.map_err(|e| runtime(&e))?;
    show_harvesters_stopped(&node_a, &layout, &a, organisations).await?;
    show_withdrawal(&node_a, &layout, &a, &subject).await?;
    show_ledger(&node_a, tour).await?;

    let (cert, key) = layout.identity(REGION_A, Kind::Dept, "tax");
    let ca = layout.ca_cert(REGION_A);
    // The binary as it was started: after `cargo run` it is not on PATH as `credit-node`.
    let bin = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "credit-node".into());
    if args.no_wait {
        // The nodes stop with the demo: only what works on their files is offered.
        crate::outln!(
            "\nLook again (the nodes have stopped; run without --no-wait to call them):"
        )?;
    } else {
        crate::outln!("\nCall the nodes by hand:")?;
        print_calls(&bin, &a, &cert, &key, &ca, node_a.local_addr().port())?;
    }
    crate::outln!(
        "  {bin} ledger verify --config {}   (and: ledger list, ledger export)",
        work.join("region-a.toml").display()
    )?;
    crate::outln!(
        "  node configs: {}  {}",
        work.join("region-a.toml").display(),
        work.join("region-b.toml").display()
    )?;

    if !args.no_wait {
        crate::outln!("\nServing until Ctrl-C.")?;
        let _ = tokio::signal::ctrl_c().await;
    }
    node_a.shutdown().await;
    node_b.shutdown().await;
    // Held until both nodes have stopped writing to the folder.
    drop(lock);
    Ok(())
}

/// The calls a person can make to the running demo node at `endpoint`, as region A's tax bureau.
fn print_calls(
    bin: &str,
    endpoint: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
    ca: &std::path::Path,
    port: u16,
) -> Result<(), CliError> {
    crate::outln!(
        "  {bin} whoami --endpoint {endpoint} --cert {} --key {} --ca {}",
        cert.display(),
        key.display(),
        ca.display()
    )?;
    crate::outln!(
        "  grpcurl -cacert {} -cert {} -key {} 127.0.0.1:{port} credit.v1.CreditQuery/WhoAmI",
        ca.display(),
        cert.display(),
        key.display(),
    )?;
    crate::outln!(
        "  grpcurl -cacert {} -cert {} -key {} 127.0.0.1:{port} list",
        ca.display(),
        cert.display(),
        key.display(),
    )
}

fn region_label(region: &str) -> &'static str {
    if region == REGION_A {
        "region A"
    } else {
        "region B"
    }
}

/// Starts `region`'s development node on `port`, its config followed by `interconnect`.
async fn start_node(
    layout: &Layout,
    work: &Path,
    region: &str,
    port: u16,
    interconnect: &str,
) -> Result<RunningNode, CliError> {
    let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let path = work.join(if region == REGION_A {
        "region-a.toml"
    } else {
        "region-b.toml"
    });
    let config = pki::node_config_toml(layout, region, listen) + interconnect;
    std::fs::write(&path, config)
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
    match error.find("alert \"") {
        Some(i) => format!("TLS {}", &error[i..]),
        None => error.to_owned(),
    }
}

/// Default deny, field by field: the same registration item seen by two tax bureaus of two
/// regions, and what each may ask for, through the node's own DescribeGrants.
async fn show_grants(node: &RunningNode, layout: &Layout) -> Result<(), CliError> {
    let purpose = "tax-administration";
    let catalog = node.state().catalog();
    crate::outln!(
        "\nWhat may leave? The signed catalog {} decides, field by field (purpose {purpose}):",
        catalog.catalog().version
    )?;
    for region in [REGION_A, REGION_B] {
        let caller = crate::identity::SpiffeId::new(
            crate::identity::TrustDomain::parse(region)
                .map_err(|e| CliError::Runtime(e.to_string()))?,
            Kind::Dept,
            "tax",
        )
        .map_err(|e| CliError::Runtime(e.to_string()))?;
        let explanation = crate::catalog::explain(&catalog, &caller, purpose);
        crate::outln!("\n  {caller}   (credit-node catalog explain)")?;
        for row in explanation.rows.iter().filter(|r| r.item == "registration") {
            let what = match (&row.form, row.reason) {
                (Some(form), _) => format!("granted as {form}"),
                (None, Some(reason)) => format!("withheld: {reason}"),
                (None, None) => "withheld".to_owned(),
            };
            crate::outln!("    registration.{:<20} {what}", row.field)?;
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
    crate::outln!(
        "\n  DescribeGrants over mTLS as spiffe://region-b.credit.test/dept/tax: {} purposes, {} granted (item, field) pairs in all",
        grants.purposes.len(),
        fields
    )?;
    Ok(())
}

/// Generates realistic records for region A's market regulator and ingests them through the
/// Administration service, as its operator would. Returns a subject worth asking about (one
/// with a registration and a penalty still disclosed today) and every organisation's code.
async fn load_synthetic_data(
    node: &RunningNode,
    layout: &Layout,
    endpoint: &str,
) -> Result<(String, Vec<String>), CliError> {
    use crate::proto::administration_client::AdministrationClient;
    const SUBJECTS: u64 = 2_000;
    let catalog = node.state().catalog();
    let today = node.state().clock().today();
    let mut records: Vec<_> = crate::gen_data::generate(
        catalog.catalog(),
        node.state().department(),
        SUBJECTS,
        2026,
        today,
    )
    .collect();
    let (cert, key) = layout.identity(REGION_A, Kind::Operator, "admin");
    let cas = [layout.ca_cert(REGION_A)];
    let cas: Vec<&Path> = cas.iter().map(PathBuf::as_path).collect();
    let channel =
        client::connect(endpoint, client::tls_config_from_files(&cert, &key, &cas)?).await?;
    let mut admin = AdministrationClient::new(channel);
    let mut inserted = 0;
    // Batches of about a thousand records that never split a subject: each batch puts every
    // subject in it on record once, so the ledger shows one entry per subject. (A generated
    // organisation's records may name it and its legal representative: two subjects.)
    records.sort_by(|a, b| a.subject.cmp(&b.subject));
    let (mut subjects, mut batches, mut start, mut end) = (0, Vec::new(), 0, 0);
    for subject in records.chunk_by(|a, b| a.subject == b.subject) {
        subjects += 1;
        end += subject.len();
        if end - start >= 1_000 || end == records.len() {
            batches.push(&records[start..end]);
            start = end;
        }
    }
    for chunk in batches {
        let json_lines = chunk.iter().map(crate::gen_data::to_json_line).collect();
        inserted += admin
            .ingest_records(crate::proto::IngestRecordsRequest { json_lines })
            .await
            .map_err(|s| CliError::Runtime(whoami::describe_status(&s)))?
            .into_inner()
            .inserted;
    }
    crate::outln!(
        "\nRecords: {inserted} synthetic records of {subjects} subjects ingested by spiffe://{REGION_A}/operator/admin \
         (credit-node gen-data / ingest; some expired, some restored)."
    )?;
    let subject = records
        .iter()
        .filter(|r| r.item == "admin-penalty" && r.disclosable(today).is_ok())
        .map(|r| r.subject.clone())
        .find(|s| {
            records
                .iter()
                .any(|r| &r.subject == s && r.item == "registration")
        })
        .ok_or_else(|| {
            CliError::Runtime("synthetic data has no subject with a current penalty".into())
        })?;
    let mut organisations: Vec<String> = records
        .iter()
        .filter(|r| r.item == "registration")
        .map(|r| r.subject.clone())
        .collect();
    organisations.dedup();
    Ok((subject, organisations))
}

/// One subject asked about by two departments: what each sees, in which form, and what is
/// withheld and why.
async fn show_one_subject(layout: &Layout, endpoint: &str, subject: &str) -> Result<(), CliError> {
    use crate::proto::{
        ItemSelection, QueryRequest, SubjectType, credit_query_client::CreditQueryClient,
    };
    let cas = [layout.ca_cert(REGION_A), layout.ca_cert(REGION_B)];
    let cas: Vec<&Path> = cas.iter().map(PathBuf::as_path).collect();
    for (region, dept, purpose) in [
        (REGION_A, "tax", "tax-administration"),
        (REGION_B, "tax", "tax-administration"),
        (REGION_A, "court", "enforcement"),
    ] {
        let (cert, key) = layout.identity(region, Kind::Dept, dept);
        let channel =
            client::connect(endpoint, client::tls_config_from_files(&cert, &key, &cas)?).await?;
        let response = CreditQueryClient::new(channel)
            .query(QueryRequest {
                subject: subject.to_owned(),
                subject_type: SubjectType::LegalPerson.into(),
                items: vec![
                    ItemSelection {
                        item: "registration".into(),
                        fields: vec![],
                    },
                    ItemSelection {
                        item: "admin-penalty".into(),
                        fields: vec![],
                    },
                ],
                purpose: purpose.into(),
                basis_reference: "（2026）演示第1号".into(),
                node: String::new(),
            })
            .await
            .map_err(|s| CliError::Runtime(whoami::describe_status(&s)))?
            .into_inner();
        let result = response.result.unwrap_or_default();
        let receipt = response.receipt.unwrap_or_default();
        crate::outln!(
            "\n  Query {subject} as spiffe://{region}/dept/{dept}, purpose {purpose}  (ledger entry #{}):",
            receipt.sequence
        )?;
        for record in &result.records {
            for f in &record.fields {
                if matches!(
                    f.field.as_str(),
                    "legal_rep_name"
                        | "legal_rep_id"
                        | "legal_rep_mobile"
                        | "amount"
                        | "decision_no"
                        | "name"
                ) {
                    let note = if f.form == "raw" {
                        "   (raw: the catalog grants it unmasked for this purpose)".to_owned()
                    } else {
                        format!("   ({})", f.form)
                    };
                    crate::outln!("    {:<14} {:<18} {}{note}", record.item, f.field, f.value)?;
                }
            }
        }
        for w in result
            .withheld
            .iter()
            .filter(|w| w.item == "registration" || w.item == "admin-penalty")
        {
            crate::outln!(
                "    {:<14} {:<18} withheld: {}",
                w.item,
                if w.field.is_empty() { "*" } else { &w.field },
                w.reason
            )?;
        }
    }
    Ok(())
}

/// Regions interconnected: region B's tax bureau asks its own node about the subject region A's
/// node holds. Region B's node forwards what its catalog grants, region A's node answers for the
/// tax bureau and records it on its behalf, and region B's node records it too.
async fn show_across_regions(
    layout: &Layout,
    endpoint_b: &str,
    node_a: &crate::identity::SpiffeId,
    subject: &str,
) -> Result<(), CliError> {
    use crate::proto::{
        ItemSelection, QueryRequest, SubjectType, credit_query_client::CreditQueryClient,
    };
    let cas = [layout.ca_cert(REGION_B)];
    let cas: Vec<&Path> = cas.iter().map(PathBuf::as_path).collect();
    let (cert, key) = layout.identity(REGION_B, Kind::Dept, "tax");
    let channel = client::connect(
        endpoint_b,
        client::tls_config_from_files(&cert, &key, &cas)?,
    )
    .await?;
    let response = CreditQueryClient::new(channel)
        .query(QueryRequest {
            subject: subject.to_owned(),
            subject_type: SubjectType::LegalPerson.into(),
            items: vec![ItemSelection {
                item: "registration".into(),
                fields: vec![],
            }],
            purpose: "tax-administration".into(),
            basis_reference: "（2026）演示第2号".into(),
            node: node_a.to_string(),
        })
        .await
        .map_err(|s| CliError::Runtime(whoami::describe_status(&s)))?
        .into_inner();
    let ours = response.receipt.unwrap_or_default();
    let theirs = response
        .upstream
        .and_then(|u| u.receipt)
        .unwrap_or_default();
    crate::outln!(
        "\n  Across regions: spiffe://{REGION_B}/dept/tax asks its own node (region B), naming region A's node \
         (QueryRequest.node); region A's node answers on its behalf (its ledger entry #{}), region B's \
         node records it too (#{} there) and passes on what both catalogs grant:",
        theirs.sequence,
        ours.sequence
    )?;
    let result = response.result.unwrap_or_default();
    for record in &result.records {
        for f in record
            .fields
            .iter()
            .filter(|f| matches!(f.field.as_str(), "name" | "legal_rep_name" | "legal_rep_id"))
        {
            crate::outln!(
                "    {:<14} {:<18} {}   ({})",
                record.item,
                f.field,
                f.value,
                f.form
            )?;
        }
    }
    Ok(())
}

/// Credit restoration and what a recipient learns of it: the court receives the subject's
/// penalty, the operator restores it, the court's next query no longer holds it, and its
/// `ListWithdrawals` names the record it received.
async fn show_withdrawal(
    node: &RunningNode,
    layout: &Layout,
    endpoint: &str,
    subject: &str,
) -> Result<(), CliError> {
    use crate::proto::{
        ItemSelection, ListWithdrawalsRequest, QueryRequest, RestoreRecordRequest, SubjectType,
        WithdrawalReason, administration_client::AdministrationClient,
        credit_query_client::CreditQueryClient,
    };
    let status = |s: tonic::Status| CliError::Runtime(whoami::describe_status(&s));
    let cas = [layout.ca_cert(REGION_A)];
    let cas: Vec<&Path> = cas.iter().map(PathBuf::as_path).collect();
    let connect = async |kind: Kind, id: &str| {
        let (cert, key) = layout.identity(REGION_A, kind, id);
        client::connect(endpoint, client::tls_config_from_files(&cert, &key, &cas)?).await
    };
    let mut court = CreditQueryClient::new(connect(Kind::Dept, "court").await?);
    let penalties = async |court: &mut CreditQueryClient<tonic::transport::Channel>| {
        let response = court
            .query(QueryRequest {
                subject: subject.to_owned(),
                subject_type: SubjectType::LegalPerson.into(),
                items: vec![ItemSelection {
                    item: "admin-penalty".into(),
                    fields: vec![],
                }],
                purpose: "enforcement".into(),
                basis_reference: "（2026）演示执字第1号".into(),
                node: String::new(),
            })
            .await
            .map_err(status)?;
        Ok::<_, CliError>(response.into_inner().result.unwrap_or_default().records)
    };
    let before = penalties(&mut court).await?;
    let Some(penalty) = before.first() else {
        return Err(CliError::Runtime(format!(
            "the court receives no penalty of {subject}"
        )));
    };
    let today = node.state().clock().today().to_string();
    let basis = "信用修复决定书（2026）演示第1号";
    let receipt = AdministrationClient::new(connect(Kind::Operator, "admin").await?)
        .restore_record(RestoreRecordRequest {
            record_id: penalty.record_id.clone(),
            restored_on: today.clone(),
            basis: basis.into(),
        })
        .await
        .map_err(status)?
        .into_inner()
        .receipt
        .unwrap_or_default();
    crate::outln!(
        "\nCredit restoration: spiffe://{REGION_A}/operator/admin restores penalty {} of {subject} \
         from {today} ({basis}; ledger entry #{}).",
        penalty.record_id,
        receipt.seq
    )?;
    let after = penalties(&mut court).await?;
    crate::outln!(
        "  Query as spiffe://{REGION_A}/dept/court again: {} current penalties, was {}: a restored \
         record is shared no more.",
        after.len(),
        before.len()
    )?;
    let listed = court
        .list_withdrawals(ListWithdrawalsRequest::default())
        .await
        .map_err(status)?
        .into_inner();
    for w in &listed.withdrawals {
        let reason = match w.reason() {
            WithdrawalReason::Restored => "restored",
            WithdrawalReason::RemovedFromList => "removed from its list",
            WithdrawalReason::Unspecified => "withdrawn",
        };
        crate::outln!(
            "  ListWithdrawals as the court (ledger entry #{}): {} {} {reason} on {}",
            listed.receipt.as_ref().map_or(0, |r| r.sequence),
            w.item,
            w.record_id,
            w.on
        )?;
    }
    Ok(())
}

/// The tour ends where a security officer would: a tree head signed, the whole stored ledger
/// verified from its entry bytes, then the entries of the tour's own queries (sequence numbers
/// `tour`) as `ledger list` shows them.
async fn show_ledger(node: &RunningNode, tour: std::ops::Range<u64>) -> Result<(), CliError> {
    use crate::ledger::{
        audit,
        store::{EntryFilter, Page},
    };
    let runtime = |e: &dyn std::fmt::Display| CliError::Runtime(e.to_string());
    let ledger = node.state().ledger();
    let head = ledger.sign_now().await.map_err(|e| runtime(&e))?;
    let report = audit::verify_store(node.state().store(), ledger.public_key(), |_| {})
        .await
        .map_err(|e| runtime(&e))?;
    crate::outln!(
        "\nThe ledger: region A's node recorded the operator's ingests and restoration before making them, every query \
         before answering it (the harvesters' refused ones too) and its alerts. Verified from the stored entries: {} entries, root {}, signed tree head of size {} (credit-node ledger verify).",
        report.entries,
        &crate::tls::hex(&report.root)[..16],
        head.head.tree_size
    )?;
    // The operator's ingests first (one entry per subject: summed up here), then the tour's
    // queries, each as `credit-node ledger list` shows it.
    let administration = ledger
        .entries(
            &EntryFilter {
                outcome: Some(crate::ledger::store::OutcomeKind::Administration),
                ..Default::default()
            },
            Page {
                after: None,
                limit: 10_000,
            },
        )
        .await
        .map_err(|e| runtime(&e))?
        .entries;
    let administration: Vec<_> = administration
        .into_iter()
        .filter(|e| {
            matches!(&e.entry.outcome, crate::ledger::entry::Outcome::Administration(a)
                if a.action == crate::ledger::entry::AdminAction::IngestRecords)
        })
        .collect();
    if let (Some(first), Some(last)) = (administration.first(), administration.last()) {
        crate::outln!(
            "  #{}–#{} {} ingest_records: {} entries, one per subject ingested",
            first.seq,
            last.seq,
            first.entry.caller,
            administration.len()
        )?;
    }
    let page = ledger
        .entries(
            &EntryFilter::default(),
            Page {
                after: tour.start.checked_sub(1),
                limit: u32::try_from(tour.end - tour.start).unwrap_or(u32::MAX),
            },
        )
        .await
        .map_err(|e| runtime(&e))?;
    for e in &page.entries {
        let on_behalf_of = e
            .entry
            .on_behalf_of
            .as_ref()
            .map(|id| format!("  on behalf of {id}"))
            .unwrap_or_default();
        crate::outln!(
            "  #{:<5} {:<45} {:<20} {:<20} {}{on_behalf_of}",
            e.seq,
            e.entry.caller,
            super::ledger::mask(&e.entry.subject),
            e.entry.purpose,
            crate::ledger::store::OutcomeKind::of(&e.entry.outcome).as_str()
        )?;
    }
    Ok(())
}

/// Promise 7 in action: region B's tax bureau tries to copy every organisation region A holds,
/// and its economy bureau counts through the code space. Both are stopped; then what the
/// officer sees: the alert in the ledger and the suspension to review.
async fn show_harvesters_stopped(
    node: &RunningNode,
    layout: &Layout,
    endpoint: &str,
    organisations: Vec<String>,
) -> Result<(), CliError> {
    use crate::{
        harvest_sim,
        ledger::store::{EntryFilter, OutcomeKind, Page},
        proto::credit_query_client::CreditQueryClient,
    };
    let runtime = |e: &dyn std::fmt::Display| CliError::Runtime(e.to_string());
    let cas = [layout.ca_cert(REGION_A), layout.ca_cert(REGION_B)];
    let cas: Vec<&Path> = cas.iter().map(PathBuf::as_path).collect();
    let connect = |id: &str| {
        let (cert, key) = layout.identity(REGION_B, Kind::Dept, id);
        let tls = client::tls_config_from_files(&cert, &key, &cas);
        async move {
            Ok::<_, CliError>(CreditQueryClient::new(
                client::connect(endpoint, tls?).await?,
            ))
        }
    };
    let tax = crate::identity::SpiffeId::parse(&format!("spiffe://{REGION_B}/dept/tax"))
        .map_err(|e| runtime(&e))?;
    let quota = node.state().guard().limits(&tax).distinct_subjects;
    crate::outln!(
        "\nHarvesting is stopped: every department may obtain records about {quota} distinct subjects a day."
    )?;
    let total = organisations.len();
    let list = harvest_sim::run_harvester(
        connect("tax").await?,
        organisations,
        1,
        format!("spiffe://{REGION_B}/dept/tax"),
    )
    .await;
    if list.subjects_obtained > quota || list.stopped_by != "quota" {
        return Err(runtime(&format!(
            "the list harvester was not stopped by its quota: {list:?}"
        )));
    }
    crate::outln!(
        "  ✗ region B tax, asking for all {total} organisations as fast as allowed: obtained {}, \
         then RESOURCE_EXHAUSTED (quota) after {} ms",
        list.subjects_obtained,
        list.ended_after_ms
    )?;
    let counting = harvest_sim::run_harvester(
        connect("eco").await?,
        harvest_sim::counting_from("91330106MA2B3C4D5E", 1_000),
        1,
        format!("spiffe://{REGION_B}/dept/eco"),
    )
    .await;
    if counting.stopped_by != "suspended" {
        return Err(runtime(&format!(
            "the counting harvester was not suspended: {counting:?}"
        )));
    }
    crate::outln!(
        "  ✗ region B eco, counting through organisation codes: suspended after {} queries \
         (PERMISSION_DENIED until an officer lifts it)",
        counting.queries - counting.suspended_refused
    )?;
    let alerts = node
        .state()
        .ledger()
        .entries(
            &EntryFilter {
                outcome: Some(OutcomeKind::Alert),
                ..EntryFilter::default()
            },
            Page {
                after: None,
                limit: 10,
            },
        )
        .await
        .map_err(|e| runtime(&e))?;
    crate::outln!("\nWhat the security officer sees (credit-node ledger list --outcome alert):")?;
    for e in &alerts.entries {
        if let crate::ledger::entry::Outcome::Alert { reason } = &e.entry.outcome {
            crate::outln!("  #{:<5} {:<45} {reason}", e.seq, e.entry.caller)?;
        }
    }
    for s in node
        .state()
        .guard()
        .suspensions()
        .await
        .map_err(|e| runtime(&e))?
    {
        crate::outln!(
            "  suspended: {} since alert #{} — lifted only by an officer through LedgerReview",
            s.caller,
            s.alert_seq
        )?;
    }
    Ok(())
}
