//! `credit-node ledger ...` as an officer runs it, on a node config from the development PKI:
//! verify (exit 0, then exit 1 naming the entry after tampering), list (subjects masked in the
//! table, in full in JSON Lines), export and offline verification of the export.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use std::process::Command;

use common::TestPki;
use credit_node::{
    config::LoadedConfig,
    ledger::{
        Ledger, LedgerSettings,
        entry::{AdminAction, Administration, Entry, Outcome},
        key,
    },
    pki::REGION_A,
    store::Store,
};
use sqlx::Any;

const BIN: &str = env!("CARGO_BIN_EXE_credit-node");
const SUBJECT: &str = "91110000100000000X";

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run credit-node")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; its standard output.
fn succeeds(args: &[&str]) -> String {
    let out = run(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

fn entry(n: u64) -> Entry {
    Entry {
        seq: 0,
        time_ms: 1_790_000_000_000 + n as i64,
        query_id: [1; 16],
        caller: "spiffe://region-a.credit.test/dept/tax".into(),
        caller_cert_sha256: [2; 32],
        on_behalf_of: None,
        purpose: "licensing".into(),
        basis: "doc-1".into(),
        subject: SUBJECT.into(),
        requested_fields: vec![],
        decisions: vec![],
        outcome: Outcome::Granted,
        response_sha256: [3; 32],
        forwarded: None,
    }
}

#[tokio::test]
async fn verify_list_export_through_the_binary() {
    let pki = TestPki::new();
    let config = pki.write_config(REGION_A);
    let loaded = LoadedConfig::load(&config).unwrap();
    let store = Store::open(&loaded.database_url().unwrap()).await.unwrap();
    let ledger = Ledger::open(
        store.clone(),
        key::read_signing_key(&loaded.ledger_key_path()).unwrap(),
        LedgerSettings::from(&loaded.config.ledger),
        || 1_790_000_000_000,
    )
    .await
    .unwrap();
    for n in 0..12 {
        ledger.append(entry(n)).await.unwrap();
    }
    // An operator's change, as the administration RPCs record it.
    let mut restored = entry(12);
    restored.caller = "spiffe://region-a.credit.test/operator/admin".into();
    restored.purpose.clear();
    restored.basis = "信用修复决定〔2026〕9号".into();
    restored.outcome = Outcome::Administration(Administration {
        action: AdminAction::RestoreRecord,
        detail: "record 0a1b restored from 2026-11-01".into(),
    });
    ledger.append(restored).await.unwrap();
    ledger.shutdown().await;
    let config = config.to_str().unwrap();

    let out = run(&["ledger", "verify", "--config", config, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["entries"], 13);

    let table = run(&["ledger", "list", "--config", config]);
    assert!(table.status.success(), "{}", text(&table.stderr));
    let table = text(&table.stdout);
    assert!(table.contains("9111************0X"), "{table}");
    assert!(
        !table.contains(SUBJECT),
        "the table must not show a subject in full"
    );
    // A tidy table: every row's last column starts where its heading does, whichever caller.
    let purpose_at =
        |line: &str| line.chars().count() - line.split("  ").last().unwrap().chars().count();
    let mut rows = table.lines();
    let heading = purpose_at(rows.next().unwrap());
    for row in rows {
        assert_eq!(purpose_at(row), heading, "{table}");
    }
    let jsonl = run(&[
        "ledger", "list", "--config", config, "--jsonl", "--limit", "3",
    ]);
    assert!(
        text(&jsonl.stderr).contains("(more: --after 2)"),
        "{}",
        text(&jsonl.stderr)
    );
    let lines: Vec<serde_json::Value> = text(&jsonl.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[2]["seq"], 2);
    assert_eq!(lines[2]["subject"], SUBJECT);
    // A page that ends at the last entry is the last page: no "more" to follow.
    for args in [
        &["ledger", "list", "--config", config, "--limit", "13"][..],
        &[
            "ledger", "list", "--config", config, "--after", "9", "--limit", "3",
        ][..],
    ] {
        let table = run(args);
        assert!(table.status.success(), "{args:?}: {}", text(&table.stderr));
        let (stdout, stderr) = (text(&table.stdout), text(&table.stderr));
        assert!(
            !stdout.contains("(more") && !stderr.contains("(more"),
            "{args:?}: {stdout}{stderr}"
        );
    }
    let table = succeeds(&["ledger", "list", "--config", config, "--limit", "12"]);
    assert!(table.ends_with("(more: --after 11)\n"), "{table}");
    // A page of no entries would say nothing: refused, exit 2, naming the flag.
    let zero = run(&["ledger", "list", "--config", config, "--limit", "0"]);
    assert_eq!(zero.status.code(), Some(2), "{}", text(&zero.stderr));
    assert!(
        text(&zero.stderr).contains("--limit"),
        "{}",
        text(&zero.stderr)
    );

    // The officer's view of administration: the action in the table, the detail in JSON.
    let table = run(&[
        "ledger",
        "list",
        "--config",
        config,
        "--outcome",
        "administration",
    ]);
    let table = text(&table.stdout);
    assert!(
        table.contains("administration") && table.contains("restore_record"),
        "{table}"
    );
    assert!(
        !table.contains("licensing"),
        "only the administration entry: {table}"
    );
    // Times line up: milliseconds always written.
    let row = table.lines().nth(1).expect("one row");
    assert_eq!(
        row.split_whitespace().nth(1).map(str::len),
        Some(24),
        "{row}"
    );
    let none = succeeds(&["ledger", "list", "--config", config, "--outcome", "alert"]);
    assert!(none.ends_with("(no entries match)\n"), "{none}");
    let jsonl = run(&[
        "ledger",
        "list",
        "--config",
        config,
        "--jsonl",
        "--subject",
        SUBJECT,
    ]);
    let lines: Vec<serde_json::Value> = text(&jsonl.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 13, "every entry about the subject");
    assert_eq!(lines[12]["outcome"], "administration");
    assert_eq!(lines[12]["outcome_detail"]["action"], "restore_record");

    let export = pki.dir.path().join("export.jsonl");
    let export = export.to_str().unwrap();
    let out = run(&["ledger", "export", "--config", config, "--out", export]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = pki.layout.ledger_pub(REGION_A);
    let key = key.to_str().unwrap();
    let out = succeeds(&["ledger", "verify", "--export", export, "--key", key]);
    assert!(
        out.contains("13 entries") && out.contains("(complete)"),
        "{out}"
    );
    succeeds(&[
        "ledger",
        "verify",
        "--export",
        export,
        "--key",
        key,
        "--complete",
    ]);
    // One entry cut out of the whole export: every proof left still holds, so only the
    // auditor's --complete turns the gap into a failure; without it the output says so.
    let cut = pki.dir.path().join("cut.jsonl");
    let whole = std::fs::read_to_string(export).unwrap();
    let kept: Vec<&str> = whole
        .lines()
        .filter(|l| !l.contains("\"seq\":5,"))
        .collect();
    assert_eq!(kept.len(), whole.lines().count() - 1);
    std::fs::write(&cut, kept.join("\n") + "\n").unwrap();
    let cut = cut.to_str().unwrap();
    let out = succeeds(&["ledger", "verify", "--export", cut, "--key", key]);
    assert!(
        out.contains("a selection, not the whole log (entry 5 is the first it lacks)"),
        "{out}"
    );
    let out = run(&[
        "ledger",
        "verify",
        "--export",
        cut,
        "--key",
        key,
        "--complete",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&report["ok"], &report["first_missing"]),
        (&false.into(), &5.into())
    );
    assert!(
        text(&out.stderr).contains("entry 5 is the first missing"),
        "{}",
        text(&out.stderr)
    );

    // The export's tree head, kept by an officer, holds the stored log to it.
    let held = run(&[
        "ledger", "verify", "--config", config, "--sth", export, "--json",
    ]);
    assert!(held.status.success(), "{}", text(&held.stderr));
    let report: serde_json::Value = serde_json::from_slice(&held.stdout).unwrap();
    assert_eq!(report["kept_heads_checked"], 1, "{report}");
    // A cover-up the database cannot show: the tail cut, its tree heads and head row with it.
    for sql in [
        "DELETE FROM ledger_entries WHERE seq >= 10",
        "DELETE FROM ledger_sths WHERE tree_size > 9",
        "UPDATE ledger_head SET size = 10 WHERE id = 0",
    ] {
        sqlx::query::<Any>(sql).execute(store.pool()).await.unwrap();
    }
    let alone = run(&["ledger", "verify", "--config", config]);
    assert!(
        alone.status.success(),
        "consistent in itself: {}",
        text(&alone.stderr)
    );
    let held = run(&["ledger", "verify", "--config", config, "--sth", export]);
    assert_eq!(held.status.code(), Some(1));
    let stderr = text(&held.stderr);
    assert!(stderr.contains("FAILED at entry 10"), "{stderr}");
    // A head not signed by the node's key is refused as such, naming the file.
    let forged = pki.dir.path().join("forged.sth");
    let line = std::fs::read_to_string(export).unwrap();
    let line = line.lines().next().unwrap();
    let signature_at = line.find("\"signature\":\"").unwrap() + 13;
    let mut forged_line = line.to_owned();
    let flipped = if &line[signature_at..signature_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    forged_line.replace_range(signature_at..signature_at + 1, flipped);
    std::fs::write(&forged, forged_line).unwrap();
    let out = run(&[
        "ledger",
        "verify",
        "--config",
        config,
        "--sth",
        forged.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("forged.sth"),
        "{}",
        text(&out.stderr)
    );

    // Tamper with entry 5 in the database: verify fails, exit 1, and names entry 5.
    sqlx::query::<Any>("UPDATE ledger_entries SET entry = $1 WHERE seq = 5")
        .bind(vec![1u8, 2, 3])
        .execute(store.pool())
        .await
        .unwrap();
    let out = run(&["ledger", "verify", "--config", config, "--key", key]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("FAILED at entry 5"), "{stderr}");
    let out = run(&["ledger", "verify", "--config", config, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["ok"].clone(), report["first_bad_seq"].clone()),
        (false.into(), 5.into())
    );
}

/// A node's config and a ledger holding `entries`, appended as the node appends them.
async fn ledger_with(entries: Vec<Entry>) -> (TestPki, String) {
    let pki = TestPki::new();
    let config = pki.write_config(REGION_A);
    let loaded = LoadedConfig::load(&config).unwrap();
    let store = Store::open(&loaded.database_url().unwrap()).await.unwrap();
    let ledger = Ledger::open(
        store.clone(),
        key::read_signing_key(&loaded.ledger_key_path()).unwrap(),
        LedgerSettings::from(&loaded.config.ledger),
        || 1_790_000_000_000,
    )
    .await
    .unwrap();
    for entry in entries {
        ledger.append(entry).await.unwrap();
    }
    ledger.shutdown().await;
    store.close().await;
    (pki, config.to_str().unwrap().to_owned())
}

/// The files in `dir`, by name.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `ledger verify`, `list` and `export` read an existing node's store: one that is not there
/// (deleted, or the config's path mistyped) is refused as bad config, exit 2, naming the path,
/// and nothing is created: an empty ledger made on the spot would verify.
#[tokio::test]
async fn read_only_commands_refuse_a_store_that_is_not_there_and_create_none() {
    let pki = TestPki::new();
    let config = pki.write_config(REGION_A);
    let root = pki.layout.root().to_owned();
    let db = root.join(format!("{REGION_A}.db"));
    let export = pki.dir.path().join("export.jsonl");
    let before = files_in(&root);
    let config_text = config.to_str().unwrap();
    let export_text = export.to_str().unwrap();
    let commands: [&[&str]; 5] = [
        &["ledger", "verify", "--config", config_text],
        &["ledger", "verify", "--config", config_text, "--json"],
        &["ledger", "list", "--config", config_text],
        &["ledger", "list", "--config", config_text, "--jsonl"],
        &[
            "ledger",
            "export",
            "--config",
            config_text,
            "--out",
            export_text,
        ],
    ];
    for args in commands {
        let out = run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("no database at {}", db.display()))
                && stderr.contains("store.database_url"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
        assert_eq!(files_in(&root), before, "{args:?} created files");
        assert!(!export.exists(), "{args:?}");
    }

    // A mistyped folder is not made either.
    let mistyped = pki.dir.path().join("mistyped.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &mistyped,
        good.replace(&db.display().to_string(), "nowhere/node.db"),
    )
    .unwrap();
    let out = run(&["ledger", "list", "--config", mistyped.to_str().unwrap()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let wanted = pki.dir.path().join("nowhere/node.db");
    assert!(
        stderr.contains(&wanted.display().to_string()),
        "{wanted:?}: {stderr}"
    );
    assert!(!pki.dir.path().join("nowhere").exists());

    // The records file there, its activity file (the ledger) deleted: no empty ledger either.
    let (pki, config) = ledger_with(vec![entry(0)]).await;
    let root = pki.layout.root();
    let activity = root.join(format!("{REGION_A}.activity.db"));
    assert!(activity.exists());
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", activity.display()));
    }
    let before = files_in(root);
    let out = run(&["ledger", "verify", "--config", &config]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("no ledger at {}", activity.display())),
        "{stderr}"
    );
    assert!(!activity.exists(), "{:?}", files_in(root));
    let after: Vec<String> = files_in(root)
        .into_iter()
        .filter(|f| !f.ends_with("-shm") && !f.ends_with("-wal"))
        .collect();
    let before: Vec<String> = before
        .into_iter()
        .filter(|f| !f.ends_with("-shm") && !f.ends_with("-wal"))
        .collect();
    assert_eq!(after, before);
}

/// Runs the binary with its standard output a pipe whose reader has already gone, as
/// `credit-node … | head -1` leaves it once `head` has its line.
fn run_into_a_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(BIN)
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run credit-node")
}

/// A reader that has gone (`ledger list … | head -1`) ends the listing quietly, exit 0, in
/// either form.
#[tokio::test]
async fn a_closed_standard_output_ends_the_listing_quietly() {
    let (_pki, config) = ledger_with((0..3).map(entry).collect()).await;
    for args in [
        vec!["ledger", "list", "--config", &config],
        vec!["ledger", "list", "--config", &config, "--jsonl"],
    ] {
        let out = run_into_a_closed_pipe(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out.stderr));
    }
}

/// What the table shows of entries that are not queries: a refusal's reason, and a review's
/// range and comment, each on the row's one line.
#[tokio::test]
async fn the_table_shows_refusals_reasons_and_reviews_comments() {
    use credit_node::ledger::entry::{Review, ReviewDecision};
    let refused = "credit.v1.LedgerReview/RecordReview: ledger review is for this node's \
                   officers only";
    let mut denied = entry(0);
    denied.caller = "spiffe://region-a.credit.test/dept/court".into();
    denied.purpose.clear();
    denied.outcome = Outcome::Denied {
        reason: refused.into(),
    };
    let mut invalid = entry(1);
    invalid.outcome = Outcome::Invalid {
        reason: "basis_reference: required".into(),
    };
    let review = |n, first_seq, last_seq, comment: &str| {
        let mut e = entry(n);
        e.caller = "spiffe://region-a.credit.test/officer/auditor".into();
        e.purpose.clear();
        e.outcome = Outcome::Review(Review {
            first_seq,
            last_seq,
            decision: ReviewDecision::Accepted,
            comment: comment.into(),
        });
        e
    };
    let (_pki, config) = ledger_with(vec![
        denied,
        invalid,
        review(2, 0, 0, "checked with\nthe court"),
        review(3, 0, 1, "all in order"),
    ])
    .await;
    let table = succeeds(&["ledger", "list", "--config", &config]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 5, "{table}");
    assert!(rows[1].ends_with(&format!("  {refused}")), "{table}");
    assert!(
        rows[2].ends_with("  licensing — basis_reference: required"),
        "{table}"
    );
    assert!(
        rows[3].ends_with("  review of #0: accepted — checked with the court"),
        "{table}"
    );
    assert!(
        rows[4].ends_with("  review of #0–#1: accepted — all in order"),
        "{table}"
    );
}

/// Filters that could only ever match nothing are refused (exit 2, naming the flag); a bare
/// date is a day's first instant, UTC.
#[tokio::test]
async fn list_refuses_filters_that_cannot_match_and_takes_bare_dates() {
    // Entry times: 2026-09-21T14:13:20Z and a few milliseconds after.
    let (pki, config) = ledger_with((0..3).map(entry).collect()).await;
    let export = pki.dir.path().join("export.jsonl");
    let export = export.to_str().unwrap();
    for (flags, named) in [
        (&["--caller", "dept/court"][..], "--caller"),
        (
            &["--caller", "spiffe://region-a.credit.test/court"][..],
            "--caller",
        ),
        (
            &["--from", "2026-09-22", "--until", "2026-09-21"][..],
            "--from",
        ),
        (
            &["--from", "2026-09-21", "--until", "2026-09-21"][..],
            "--from",
        ),
        (&["--from", "21/09/2026"][..], "--from"),
    ] {
        for command in [
            vec!["ledger", "list", "--config", &config],
            vec!["ledger", "export", "--config", &config, "--out", export],
        ] {
            let args: Vec<&str> = command.iter().chain(flags).copied().collect();
            let out = run(&args);
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(stderr.contains(named), "{args:?}: {stderr}");
        }
    }
    let out = run(&[
        "ledger",
        "list",
        "--config",
        &config,
        "--from",
        "21/09/2026",
    ]);
    assert!(
        text(&out.stderr).contains("a date (2026-11-23"),
        "says what it expects: {}",
        text(&out.stderr)
    );
    let count = |flags: &[&str]| {
        let mut args = vec!["ledger", "list", "--config", &config, "--jsonl"];
        args.extend(flags);
        succeeds(&args).lines().count()
    };
    assert_eq!(count(&["--from", "2026-09-21"]), 3);
    assert_eq!(count(&["--from", "2026-09-22"]), 0);
    assert_eq!(count(&["--until", "2026-09-22"]), 3);
    assert_eq!(count(&["--until", "2026-09-21"]), 0);
    assert_eq!(
        count(&["--caller", "spiffe://region-a.credit.test/dept/tax"]),
        3
    );
}

/// An entry whose stored caller column was changed to another department's is not listed or
/// exported under it: exit 1, naming the entry and the column, and no export file is left.
#[tokio::test]
async fn list_and_export_refuse_an_entry_whose_stored_caller_was_changed() {
    let (pki, config) = ledger_with((0..3).map(entry).collect()).await;
    let loaded = LoadedConfig::load(std::path::Path::new(&config)).unwrap();
    let store = Store::open(&loaded.database_url().unwrap()).await.unwrap();
    sqlx::query::<Any>(
        "UPDATE ledger_entries SET caller = 'spiffe://region-a.credit.test/dept/court' \
         WHERE seq = 1",
    )
    .execute(store.pool())
    .await
    .unwrap();
    store.close().await;
    let export = pki.dir.path().join("export.jsonl");
    let export = export.to_str().unwrap();
    for args in [
        vec!["ledger", "list", "--config", &config],
        vec!["ledger", "list", "--config", &config, "--jsonl"],
        vec![
            "ledger",
            "list",
            "--config",
            &config,
            "--caller",
            "spiffe://region-a.credit.test/dept/court",
        ],
        vec!["ledger", "export", "--config", &config, "--out", export],
    ] {
        let out = run(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("entry 1: ") && stderr.contains("`caller`"),
            "{args:?}: {stderr}"
        );
        assert!(
            !text(&out.stdout).contains("dept/court"),
            "{args:?}: {}",
            text(&out.stdout)
        );
    }
    assert!(
        !std::path::Path::new(export).exists(),
        "no partial export left"
    );
}

/// `ledger verify` fails, exit 1, naming the entry and the column, when a column copy of an
/// entry's field or a lookup row was changed, and verifies again once it is put back.
#[tokio::test]
async fn verify_fails_on_a_changed_column_or_lookup_row() {
    let (_pki, config) = ledger_with((0..6).map(entry).collect()).await;
    let loaded = LoadedConfig::load(std::path::Path::new(&config)).unwrap();
    let store = Store::open(&loaded.database_url().unwrap()).await.unwrap();
    credit_node::ledger::lookup::catch_up(&store).await.unwrap();
    assert_eq!(
        credit_node::ledger::lookup::indexed(&store).await.unwrap(),
        6
    );
    succeeds(&["ledger", "verify", "--config", &config]);
    let exec = |sql: &'static str| {
        let store = store.clone();
        async move {
            sqlx::query::<Any>(sql).execute(store.pool()).await.unwrap();
        }
    };
    for (change, undo, named) in [
        (
            "UPDATE ledger_entries SET time_ms = time_ms - 86400000 WHERE seq = 4",
            "UPDATE ledger_entries SET time_ms = time_ms + 86400000 WHERE seq = 4",
            "`time_ms`",
        ),
        (
            "DELETE FROM ledger_lookup WHERE field = 'subject' AND seq = 4",
            "INSERT INTO ledger_lookup (field, value, seq) VALUES ('subject', '91110000100000000X', 4)",
            "ledger_lookup",
        ),
    ] {
        exec(change).await;
        let out = run(&["ledger", "verify", "--config", &config]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{change}: {stderr}");
        assert!(
            stderr.contains("FAILED at entry 4") && stderr.contains(named),
            "{change}: {stderr}"
        );
        let out = run(&["ledger", "verify", "--config", &config, "--json"]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (report["ok"].clone(), report["first_bad_seq"].clone()),
            (false.into(), 4.into()),
            "{change}"
        );
        exec(undo).await;
        succeeds(&["ledger", "verify", "--config", &config]);
    }
    store.close().await;
}
