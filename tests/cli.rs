//! The `credit-node` binary as operators use it: bad config files, SIGHUP reload, the demo, and
//! the development PKI seen through another TLS stack (OpenSSL).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use common::{TestPki, whoami_as};
use credit_node::{
    identity::Kind,
    pki::{self, REGION_A, REGION_A_IDENTITIES, REGION_B, REGION_B_IDENTITIES},
};

const BIN: &str = env!("CARGO_BIN_EXE_credit-node");
/// Upper bound on waiting for a log line; a guard against hanging, never a synchronisation.
const PATIENCE: Duration = Duration::from_secs(30);

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run credit-node")
}

/// Runs a command that must succeed and print JSON, and returns the JSON.
fn run_json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn bad_config_files_stop_startup_with_file_line_and_key() {
    let pki = TestPki::new();
    let good = std::fs::read_to_string(pki.write_config(REGION_A)).expect("config");
    let dir = pki.dir.path();
    let limits_line = good
        .lines()
        .position(|l| l == "[limits]")
        .expect("[limits]")
        + 2;
    for (name, text, expected) in [
        (
            "unknown-key.toml",
            good.replace("[limits]\n", "[limits]\nmax_streams = 4\n"),
            format!(":{limits_line}:1: limits.max_streams: unknown field `max_streams`"),
        ),
        (
            "bad-listen.toml",
            good.replace("127.0.0.1:0", "127.0.0.1"),
            ":3:10: node.listen: invalid socket address syntax".into(),
        ),
        (
            "missing-cert.toml",
            good.replace("dept-samr.crt", "dept-nobody.crt"),
            ":4:8: node.cert: ".into(),
        ),
        (
            "bad-trust-domain.toml",
            good.replacen("name = \"region-a.credit.test\"", "name = \"Region A\"", 1),
            ":8:8: trust_domain[0].name: malformed trust domain \"Region A\"".into(),
        ),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        let out = run(&["serve", "--config", path.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        let wanted = format!("{}{expected}", path.display());
        assert!(
            stderr.contains(&wanted),
            "{name}: expected {wanted:?} in:\n{stderr}"
        );
    }
}

/// A `serve` child process with its JSON log lines readable one event at a time.
struct NodeProcess {
    child: Child,
    events: mpsc::Receiver<serde_json::Value>,
    addr: String,
}

impl NodeProcess {
    fn start(config: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--config", config.to_str().expect("utf-8")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && tx.send(event).is_err()
                {
                    break;
                }
            }
        });
        let mut node = Self {
            child,
            events,
            addr: String::new(),
        };
        let listening = node.wait_for("listening");
        node.addr = listening["addr"].as_str().expect("addr").to_owned();
        node
    }

    fn wait_for(&mut self, message: &str) -> serde_json::Value {
        loop {
            let event = self
                .events
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("no {message:?} log event"));
            if event["message"] == message {
                return event;
            }
        }
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal");
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn sighup_reloads_a_new_crl_and_a_failed_reload_keeps_serving() {
    let pki = TestPki::new();
    let config = pki.write_config(REGION_A);
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("\n[log]\nformat = \"json\"\nlevel = \"info\"\n");
    std::fs::write(&config, text).expect("config");
    let mut node = NodeProcess::start(&config);
    let endpoint = format!("https://{}", node.addr);
    let call = |kind, id| {
        let (cert, key) = pki.identity(REGION_A, kind, id);
        let tls = pki.client_tls(&cert, &key);
        let endpoint = endpoint.clone();
        async move { credit_node::cli::whoami::whoami(&endpoint, tls).await }
    };

    call(Kind::Dept, "court")
        .await
        .expect("court accepted before revocation");
    let (court_cert, _) = pki.identity(REGION_A, Kind::Dept, "court");
    pki::revoke(&pki.layout, REGION_A, &court_cert).expect("revoke");
    node.signal(nix::sys::signal::Signal::SIGHUP);
    node.wait_for("reloaded TLS material");
    let err = call(Kind::Dept, "court")
        .await
        .expect_err("court refused after reload");
    assert!(
        err.to_string().contains("alert \"certificate revoked\""),
        "{err}"
    );

    // Settings read only at start-up are named, not silently ignored, and the reload of the
    // rest goes on.
    let text = std::fs::read_to_string(&config).expect("config");
    let edited = text
        .replace(
            "max_concurrent_streams = 256",
            "max_concurrent_streams = 128",
        )
        .replace("[ledger]\n", "[ledger]\nsth_interval_ms = 250\n");
    assert!(
        edited.contains("max_concurrent_streams = 128") && edited.contains("sth_interval_ms = 250"),
        "both keys edited: {edited}"
    );
    std::fs::write(&config, edited).expect("config");
    node.signal(nix::sys::signal::Signal::SIGHUP);
    let fixed = node.wait_for("these settings change only with a restart; the running ones stay");
    assert_eq!(
        fixed["keys"], "ledger.sth_interval_ms, limits.max_concurrent_streams",
        "{fixed}"
    );
    node.wait_for("reloaded TLS material");

    std::fs::write(pki.layout.crl(REGION_A), "garbage").expect("break CRL");
    node.signal(nix::sys::signal::Signal::SIGHUP);
    let refused = node.wait_for("reload refused; keeping the running TLS material");
    assert!(
        refused["error"].as_str().unwrap_or("").contains("crls[0]"),
        "the refusal names the bad key: {refused}"
    );
    call(Kind::Dept, "tax")
        .await
        .expect("still serving with the old material");
    let err = call(Kind::Dept, "court")
        .await
        .expect_err("old CRL still in force");
    assert!(
        err.to_string().contains("alert \"certificate revoked\""),
        "{err}"
    );
}

#[test]
fn whoami_command_prints_the_identity_as_json() {
    let pki = TestPki::new();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let node = runtime.block_on(pki.start_node(REGION_B));
    let (cert, key) = pki.identity(REGION_B, Kind::Officer, "auditor");
    let endpoint = common::endpoint(&node);
    let json = run_json(&[
        "whoami",
        "--endpoint",
        &endpoint,
        "--cert",
        cert.to_str().expect("utf-8"),
        "--key",
        key.to_str().expect("utf-8"),
        "--ca",
        pki.layout.ca_cert(REGION_B).to_str().expect("utf-8"),
    ]);
    assert_eq!(
        json["spiffe_id"],
        "spiffe://region-b.credit.test/officer/auditor"
    );
    assert_eq!(json["kind"], "officer");
    assert_eq!(json["node"], "spiffe://region-b.credit.test/dept/hrss");

    let (rogue_cert, rogue_key) = pki.layout.negative("rogue");
    let out = run(&[
        "whoami",
        "--endpoint",
        &endpoint,
        "--cert",
        rogue_cert.to_str().expect("utf-8"),
        "--key",
        rogue_key.to_str().expect("utf-8"),
        "--ca",
        pki.layout.ca_cert(REGION_B).to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "nothing printed for a refused caller"
    );

    // Wrong files of one's own: each error says which file and what is wrong with it.
    let (other_cert, _) = pki.identity(REGION_B, Kind::Dept, "tax");
    let whoami_with = |cert: &Path, key: &Path, ca: &Path, more: &[&str]| {
        let mut args = vec![
            "whoami",
            "--endpoint",
            &endpoint,
            "--cert",
            cert.to_str().expect("utf-8"),
            "--key",
            key.to_str().expect("utf-8"),
            "--ca",
            ca.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(more);
        run(&args)
    };
    let whoami = |cert: &Path, key: &Path, ca: &Path| {
        let out = whoami_with(cert, key, ca, &[]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ca_b = pki.layout.ca_cert(REGION_B);
    let (code, stderr) = whoami(&other_cert, &key, &ca_b);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} is not the private key of the certificate {}",
            key.display(),
            other_cert.display()
        )),
        "{stderr}"
    );
    let (code, stderr) = whoami(&cert, &cert, &ca_b);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: no PRIVATE KEY found", cert.display())),
        "{stderr}"
    );
    let (code, stderr) = whoami(&cert, &key, &pki.layout.ca_cert(REGION_A));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr
            .contains("the node's certificate is not issued by any CA of the bundle given (--ca)"),
        "{stderr}"
    );

    // With --crl the node's certificate is checked for revocation: a node its CA has revoked
    // (its key stolen, say) is not talked to.
    let with_crl =
        |crl: &Path| whoami_with(&cert, &key, &ca_b, &["--crl", crl.to_str().expect("utf-8")]);
    let crl_b = pki.layout.crl(REGION_B);
    let out = with_crl(&crl_b);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // With --node the node's certificate must name that node: another identity its CA vouches
    // for is not talked to, and a --node that is not a SPIFFE ID is bad input.
    let hrss = "spiffe://region-b.credit.test/dept/hrss";
    let out = whoami_with(&cert, &key, &ca_b, &["--node", hrss]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tax = "spiffe://region-b.credit.test/dept/tax";
    let out = whoami_with(&cert, &key, &ca_b, &["--node", tax]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the node's certificate names {hrss}, not {tax} (--node): nothing was sent"
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing printed");
    let out = whoami_with(&cert, &key, &ca_b, &["--node", "hrss"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--node \"hrss\""), "{stderr}");
    let (node_kind, node_id) = REGION_B_IDENTITIES[0];
    let (node_cert, _) = pki.identity(REGION_B, node_kind, node_id);
    pki::revoke(&pki.layout, REGION_B, &node_cert).expect("revoke the node's certificate");
    let out = with_crl(&crl_b);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the node's certificate is revoked: a CRL given (--crl) lists it"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing printed of the node's answer"
    );
    // A CRL of another CA says nothing of the node's: refused, not assumed good.
    let out = with_crl(&pki.layout.crl(REGION_A));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the node's certificate cannot be checked for revocation"),
        "{stderr}"
    );
    let out = with_crl(&cert);
    assert_eq!(out.status.code(), Some(2), "not a CRL");
    runtime.block_on(node.shutdown());
}

#[test]
fn dev_pki_writes_private_keys_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let out = run(&["dev-pki", "--out", dir.path().to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layout = pki::Layout::new(dir.path());
    let mut keys = vec![
        layout.ca_key(REGION_A),
        layout.ca_key(REGION_B),
        layout.catalog_authority_key(),
    ];
    for (region, ids) in [
        (REGION_A, REGION_A_IDENTITIES),
        (REGION_B, REGION_B_IDENTITIES),
    ] {
        keys.extend(ids.iter().map(|&(k, id)| layout.identity(region, k, id).1));
        keys.push(layout.ledger_key(region));
        keys.push(layout.pseudonym_key(region));
    }
    keys.extend(
        pki::NEGATIVE_FIXTURES
            .iter()
            .map(|(n, _)| layout.negative(n).1),
    );
    for key in keys {
        let mode = std::fs::metadata(&key)
            .expect("key exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
}

#[test]
fn demo_tour_runs_and_exits_with_no_wait() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = demo(dir.path(), "0");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("identified as spiffe://region-b.credit.test/dept/tax"),
        "{stdout}"
    );
    for (name, _) in pki::NEGATIVE_FIXTURES {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("✗ {name} ")))
            .unwrap_or_else(|| panic!("{name} refusal shown:\n{stdout}"));
        // The node's reason, not a broken connection: the TLS alert it sent.
        assert!(line.contains("TLS alert \""), "{line}");
    }
    // With --no-wait the nodes stop with the demo: no calls to them are offered, only what
    // works on their files.
    assert!(
        !stdout.contains("grpcurl") && !stdout.contains(" whoami "),
        "{stdout}"
    );
    assert!(stdout.contains(" ledger verify --config "), "{stdout}");
    assert!(stdout.contains("granted as pseudonym"), "{stdout}");
    assert!(
        stdout.contains("p_"),
        "a pseudonymized identifier is shown: {stdout}"
    );
    // A restoration: the court's next query no longer holds the record, and its withdrawal
    // notices name the record it received.
    let restored = stdout
        .split(" restores penalty ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("a restoration shown: {stdout}"));
    let (now, was) = stdout
        .split_once(" current penalties, was ")
        .and_then(|(head, tail)| {
            let now: u64 = head.rsplit(' ').next()?.parse().ok()?;
            let was: u64 = tail.split(':').next()?.parse().ok()?;
            Some((now, was))
        })
        .unwrap_or_else(|| panic!("the court's penalties before and after: {stdout}"));
    assert_eq!(now + 1, was, "exactly the restored one is gone: {stdout}");
    assert!(
        stdout.contains(&format!("admin-penalty {restored} restored on ")),
        "{stdout}"
    );
    // The operator's ingests (one entry per subject) and then the tour's queries.
    // The number printed right after `label`.
    let number_after = |label: &str| -> u64 {
        stdout
            .split(label)
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("a number after {label:?}: {stdout}"))
    };
    let ingests = number_after(" ingest_records: ");
    let subjects = number_after(" synthetic records of ");
    assert!(subjects >= 2000, "{stdout}");
    assert_eq!(ingests, subjects, "one entry per subject: {stdout}");
    // The tour ends with the verified ledger: the ingests, the tour's queries and the
    // harvesters', then the tour's four queries listed (one relayed from region B).
    let (_, end) = stdout
        .split_once("Verified from the stored entries: ")
        .unwrap_or_else(|| panic!("the ledger verified: {stdout}"));
    let verified: u64 = end
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the verified count: {stdout}"));
    assert!(verified > ingests + 3 + 100, "{verified}: {stdout}");
    let listed: Vec<&str> = end
        .lines()
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(listed.len(), 4, "{stdout}");
    assert!(
        listed.iter().all(|l| l.contains("/dept/")),
        "the tour's queries: {stdout}"
    );
    // The last, region B's tax bureau asking through region B's node: recorded by region A's
    // node with the relay as the caller and the tax bureau beside it.
    assert!(
        listed[3].contains("spiffe://region-b.credit.test/dept/hrss")
            && listed[3].ends_with("on behalf of spiffe://region-b.credit.test/dept/tax"),
        "{stdout}"
    );
    assert!(stdout.contains("  Across regions: "), "{stdout}");
    assert!(
        !end.contains("Harvesting is stopped"),
        "the ledger comes last: {stdout}"
    );
}

/// Runs `demo --no-wait` on `dir` with region A's node on `port_a` (region B's on any port).
fn demo(dir: &Path, port_a: &str) -> std::process::Output {
    let work = dir.to_str().expect("utf-8");
    run(&[
        "demo",
        "--work",
        work,
        "--port-a",
        port_a,
        "--port-b",
        "0",
        "--no-wait",
    ])
}

/// A demo that cannot start must say why, exit 1, and leave the work folder's files alone.
fn refused_before_touching_the_folder(dir: &Path, port_a: &str, why: &[&str]) {
    let kept = dir.join("pki").join("kept");
    std::fs::create_dir_all(kept.parent().expect("parent")).expect("mkdir");
    std::fs::write(&kept, "a running demo's files").expect("write");
    let out = demo(dir, port_a);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(why.iter().all(|w| stderr.contains(w)), "{why:?}: {stderr}");
    assert!(kept.exists(), "the work folder was left as it was");
}

#[test]
fn demo_on_a_busy_port_refuses_before_touching_the_work_folder() {
    let dir = tempfile::tempdir().expect("tmp");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    let why = format!("127.0.0.1:{port} is not free");
    refused_before_touching_the_folder(dir.path(), &port, &[&why, "--port-a"]);
}

#[test]
fn a_second_demo_on_the_same_folder_refuses_before_touching_it() {
    let dir = tempfile::tempdir().expect("tmp");
    // What a running demo holds: the folder's lock.
    let lock = std::fs::File::create(dir.path().join("demo.lock")).expect("lock file");
    lock.lock().expect("lock");
    refused_before_touching_the_folder(dir.path(), "0", &["another demo is running from"]);
}

#[test]
fn gen_data_is_the_same_for_the_same_seed_and_day() {
    let generate = |day: &str| {
        let out = run(&[
            "gen-data",
            "--subjects",
            "50",
            "--seed",
            "3",
            "--as-of",
            day,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let first = generate("2026-01-15");
    assert!(!first.is_empty());
    assert_eq!(first, generate("2026-01-15"));
    assert_ne!(
        first,
        generate("2026-06-15"),
        "records are made for their day"
    );
    let out = run(&["gen-data", "--subjects", "5", "--as-of", "2026-13-01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--as-of"));
    // A day to come: every record would be refused by ingest until then.
    let out = run(&["gen-data", "--subjects", "5", "--as-of", "9999-01-01"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--as-of: 9999-01-01 is after today"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing generated");
}

/// `gen-data --out` on a terminal shows its progress on standard error, by the rule of every
/// long command (100,000 subjects and more), and ends with a summary.
#[test]
fn gen_data_into_a_file_shows_progress_on_a_terminal_and_sums_up() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("big.jsonl");
    let command = format!(
        "{BIN} gen-data --subjects 100000 --seed 5 --as-of 2026-06-01 --out {}",
        file.display()
    );
    // `script` gives the command a terminal and passes on what it drew there.
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) installed");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains("generating ") && screen.contains("/100000 subjects"),
        "a bar on the terminal: {screen}"
    );
    let records = std::fs::read_to_string(&file)
        .expect("records")
        .lines()
        .count();
    assert!(
        screen.contains(&format!(
            "wrote {records} records of 100000 subjects to {}",
            file.display()
        )),
        "{screen}"
    );
    assert!(
        screen.contains(" admin-penalty"),
        "what it wrote, by item: {screen}"
    );

    // Into a pipe: the summary alone (never a bar: `cli::progress` tests the rule).
    let small = dir.path().join("small.jsonl");
    let out = run(&[
        "gen-data",
        "--subjects",
        "1000",
        "--out",
        small.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success());
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = std::fs::read_to_string(&small)
        .expect("records")
        .lines()
        .count();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("wrote {records} records of 1000 subjects")),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

/// One file is one transaction, however many statements it takes: a bad row far past the
/// first batches sent to the store still leaves nothing written, and the report names it. A
/// good file is put on record in the ledger first (one entry per subject), and when the ledger
/// cannot be written nothing is.
#[test]
fn ingest_is_all_or_nothing_and_on_record_before_it_is_made() {
    let pki = TestPki::new();
    let config = pki.write_config(REGION_A);
    let config = config.to_str().expect("utf-8");
    let dir = pki.dir.path();
    let generated = dir.join("generated.jsonl");
    let out = run(&[
        "gen-data",
        "--subjects",
        "6000",
        "--seed",
        "7",
        "--out",
        generated.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let good = std::fs::read_to_string(&generated).expect("generated records");
    let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
    assert!(
        lines.len() > 10_000,
        "{} rows: past two batches of the store",
        lines.len()
    );

    // Near the end, a record without its basis document.
    let bad_line = lines.len() - 3;
    let mut row: serde_json::Value = serde_json::from_str(&lines[bad_line - 1]).expect("JSON");
    row.as_object_mut().expect("an object").remove("basis");
    lines[bad_line - 1] = row.to_string();
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, lines.join("\n") + "\n").expect("bad file");

    let out = run(&[
        "ingest",
        "--config",
        config,
        "--json",
        bad.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{report}");
    assert_eq!(errors[0]["line"], bad_line, "{report}");
    assert_eq!(errors[0]["field"], "basis", "{report}");
    assert_eq!(report["counts"]["rows"], lines.len(), "{report}");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let url = format!(
        "sqlite://{}",
        pki.layout.root().join(format!("{REGION_A}.db")).display()
    );
    // The first column of the first row `sql` returns, on the node's store opened as it opens it.
    let sql = |sql: &str| -> Option<i64> {
        runtime.block_on(async {
            let store = credit_node::store::Store::open(&url).await.expect("store");
            let first = sqlx::query_scalar(sql)
                .fetch_optional(store.pool())
                .await
                .expect("sql");
            store.close().await;
            first
        })
    };
    let count = |table: &str| sql(&format!("SELECT COUNT(*) FROM {table}")).unwrap_or(-1);
    assert_eq!(
        (count("records"), count("subjects"), count("ledger_entries")),
        (0, 0, 0),
        "nothing written, nothing changed to put on record"
    );

    // The ledger cannot be written (a full disk, say): the change is not made either.
    sql(
        "CREATE TRIGGER activity.fail_ledger BEFORE INSERT ON ledger_entries \
         BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    );
    let generated = generated.to_str().expect("utf-8");
    let out = run(&["ingest", "--config", config, generated]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nothing written") && stderr.contains("ledger"),
        "{stderr}"
    );
    assert_eq!((count("records"), count("subjects")), (0, 0), "{stderr}");
    sql("DROP TRIGGER activity.fail_ledger");

    // The good file goes in whole, and a second time adds nothing.
    let first = run_json(&["ingest", "--config", config, "--json", generated]);
    let records = count("records");
    assert_eq!(first["inserted"], records, "{first}");
    assert_eq!(first["records"], records, "{first}");
    assert_eq!(count("subjects"), 6000);
    // On record first, one entry per subject, by the node at its console, naming the file.
    assert_eq!(
        (
            &first["ledger_entries"],
            &first["first_seq"],
            &first["last_seq"]
        ),
        (&6000.into(), &0.into(), &5999.into()),
        "{first}"
    );
    let subject = serde_json::from_str::<serde_json::Value>(&lines[0]).expect("JSON")["subject"]
        .as_str()
        .expect("a subject")
        .to_owned();
    let out = run(&[
        "ledger",
        "list",
        "--config",
        config,
        "--jsonl",
        "--subject",
        &subject,
    ]);
    let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0]["caller"],
        "spiffe://region-a.credit.test/dept/samr"
    );
    assert_eq!(listed[0]["outcome_detail"]["action"], "ingest_records");
    let detail = listed[0]["outcome_detail"]["detail"]
        .as_str()
        .expect("detail");
    let sha = first["file_sha256"].as_str().expect("file digest");
    let bytes = std::fs::read(generated).expect("the file");
    let expected = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let expected: String = expected
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha, expected, "the digest of the bytes ingested");
    // The console user by the process's user id, which the environment cannot change.
    let uid = format!("uid {}", nix::unistd::getuid());
    assert!(
        detail.contains(sha) && detail.contains("console") && detail.contains(&uid),
        "{detail}"
    );
    let verified = run_json(&["ledger", "verify", "--config", config, "--json"]);
    assert_eq!(
        (&verified["entries"], &verified["unsigned_tail"]),
        (&6000.into(), &0.into()),
        "{verified}"
    );
    let again = run_json(&["ingest", "--config", config, "--json", generated]);
    assert_eq!(
        (&again["inserted"], &again["already_present"]),
        (&0.into(), &records.into()),
        "{again}"
    );
    assert_eq!(count("records"), records, "no duplicates");
    assert_eq!(again["ledger_entries"], 6000, "the repeat is on record too");
}

/// Runs the binary with its standard output a pipe whose reader has already gone, as
/// `credit-node … | head -1` leaves it once `head` has its line.
fn run_into_a_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    Command::new(BIN)
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run credit-node")
}

/// A reader that has gone away ends a command quietly with exit 0, as Unix tools do: no
/// panic, no error.
#[test]
fn a_closed_standard_output_ends_commands_quietly() {
    let pki = TestPki::new();
    let config = pki.write_config(REGION_A);
    let catalog = pki.layout.demo_catalog();
    let key = pki.layout.catalog_authority_pub();
    let commands: [&[&str]; 4] = [
        &["gen-data", "--subjects", "2000"],
        &[
            "catalog",
            "explain",
            "--config",
            config.to_str().expect("utf-8"),
            "--caller",
            "spiffe://region-b.credit.test/dept/tax",
            "--purpose",
            "tax-administration",
        ],
        &[
            "catalog",
            "verify",
            "--key",
            key.to_str().expect("utf-8"),
            catalog.to_str().expect("utf-8"),
        ],
        &["--help"],
    ];
    for args in commands {
        let out = run_into_a_closed_pipe(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// A node's first start creates its SQLite store's folder (`sqlite://data/node.db`, as the
/// README has it), `serve` and `ingest` alike; a path that cannot be made is named.
#[test]
fn the_first_start_creates_the_store_folder_and_names_a_path_it_cannot_open() {
    let pki = TestPki::new();
    let dir = pki.dir.path();
    let good = std::fs::read_to_string(pki.write_config(REGION_A)).expect("config");
    let db = pki.layout.root().join(format!("{REGION_A}.db"));
    let with_db = |name: &str, url: &str| {
        let path = dir.join(name);
        let text = good.replace(&db.display().to_string(), url)
            + "\n[log]\nformat = \"json\"\nlevel = \"info\"\n";
        std::fs::write(&path, text).expect("config");
        path
    };

    let served = with_db("served.toml", "served/node.db");
    drop(NodeProcess::start(&served));
    assert!(dir.join("served/node.db").exists());
    assert!(dir.join("served/node.activity.db").exists());

    let data = dir.join("records.jsonl");
    let out = run(&[
        "gen-data",
        "--subjects",
        "3",
        "--out",
        data.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ingested = with_db("ingested.toml", "data/deeper/node.db");
    let out = run(&[
        "ingest",
        "--config",
        ingested.to_str().expect("utf-8"),
        data.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("data/deeper/node.db").exists());

    // A file where the folder should be: both say which path they cannot use.
    std::fs::write(dir.join("blocked"), "not a folder").expect("file");
    let blocked = with_db("blocked.toml", "blocked/node.db");
    let wanted = dir.join("blocked/node.db").display().to_string();
    for args in [
        vec!["serve", "--config", blocked.to_str().expect("utf-8")],
        vec![
            "ingest",
            "--config",
            blocked.to_str().expect("utf-8"),
            data.to_str().expect("utf-8"),
        ],
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&wanted) && stderr.contains("store.database_url"),
            "{args:?}: {stderr}"
        );
    }
}

fn openssl() -> Command {
    Command::new("openssl")
}

/// Inter-agency clients in other languages use OpenSSL or BoringSSL: every leaf must verify
/// against its CA there too.
#[test]
fn openssl_verifies_every_leaf_against_its_ca() {
    let pki = TestPki::new();
    for (region, ids) in [
        (REGION_A, REGION_A_IDENTITIES),
        (REGION_B, REGION_B_IDENTITIES),
    ] {
        let ca = pki.layout.ca_cert(region);
        for &(kind, id) in ids {
            let (cert, _) = pki.identity(region, kind, id);
            let out = openssl()
                .args(["verify", "-purpose", "sslclient", "-CAfile"])
                .arg(&ca)
                .arg(&cert)
                .output()
                .expect("openssl installed (.ci/run installs it)");
            assert!(
                out.status.success(),
                "{region} {kind} {id}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            let out = openssl()
                .args(["verify", "-purpose", "sslserver", "-CAfile"])
                .arg(&ca)
                .arg(&cert)
                .output()
                .expect("openssl");
            assert!(out.status.success(), "{region} {kind} {id} as server");
        }
    }
    // And OpenSSL refuses the revoked fixture when given the CRL.
    let (revoked, _) = pki.layout.negative("revoked");
    let out = openssl()
        .args(["verify", "-crl_check", "-CAfile"])
        .arg(pki.layout.ca_cert(REGION_A))
        .arg("-CRLfile")
        .arg(pki.layout.crl(REGION_A))
        .arg(&revoked)
        .output()
        .expect("openssl");
    assert!(
        !out.status.success(),
        "OpenSSL must refuse the revoked certificate"
    );
}

/// An OpenSSL client with a department certificate completes the mutual-TLS handshake: the
/// node's HTTP/2 SETTINGS frame, sent only after the handshake, reaches it. A rogue
/// certificate gets nothing.
#[tokio::test]
async fn openssl_client_completes_the_mutual_tls_handshake() {
    let pki = TestPki::new();
    let node = pki.start_node(REGION_A).await;
    let port = node.local_addr().port();
    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "tax");
    let ca = pki.layout.ca_cert(REGION_A);
    let (rogue_cert, rogue_key) = pki.layout.negative("rogue");

    let good = tokio::task::spawn_blocking({
        let (cert, key, ca) = (cert.clone(), key.clone(), ca.clone());
        move || openssl_first_bytes(port, &cert, &key, &ca)
    })
    .await
    .expect("join");
    assert!(good.len() >= 9, "no HTTP/2 data after the handshake");
    assert_eq!(good[3], 0x04, "first frame is SETTINGS: {good:02x?}");

    let rogue = tokio::task::spawn_blocking(move || {
        openssl_first_bytes(port, &rogue_cert, &rogue_key, &ca)
    })
    .await
    .expect("join");
    assert!(
        rogue.is_empty(),
        "rogue certificate received data: {rogue:02x?}"
    );

    let (cert, key) = pki.identity(REGION_A, Kind::Dept, "tax");
    whoami_as(&pki, &node, &cert, &key)
        .await
        .expect("node still serving");
    node.shutdown().await;
}

/// Runs `openssl s_client`, sends the HTTP/2 client preface, and returns the first bytes the
/// server sends back (empty if the server closed the connection).
fn openssl_first_bytes(port: u16, cert: &Path, key: &Path, ca: &Path) -> Vec<u8> {
    let mut child = openssl()
        .args([
            "s_client",
            "-quiet",
            "-tls1_3",
            "-alpn",
            "h2",
            "-verify_return_error",
        ])
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .arg("-CAfile")
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl installed (.ci/run installs it)");
    let mut stdin = child.stdin.take().expect("stdin");
    // Client preface and an empty SETTINGS frame.
    let _ =
        stdin.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00");
    let _ = stdin.flush();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 9];
    let mut got = 0;
    while got < buf.len() {
        match stdout.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf.truncate(got);
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    buf
}
