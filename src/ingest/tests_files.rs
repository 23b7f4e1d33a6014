//! Whole files: CSV and JSON Lines, one bad row among thousands, duplicates, and never
//! panicking on arbitrary input.

use std::io::Write;

use proptest::prelude::*;

use super::tests::{TODAY, demo};
use super::*;
use crate::gen_data::generate;
use crate::records::Record;

fn jsonl(records: &[Record]) -> String {
    records.iter().map(|r| to_json_line(r) + "\n").collect()
}

fn csv_text(records: &[Record]) -> String {
    let mut out = Vec::new();
    write_csv(records, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn all(dept: &str, format: Format, text: &str) -> Result<Vec<Record>, IngestReport> {
    let rows = Rows::from_reader(format, text.as_bytes());
    validate_all(&demo(), dept, TODAY, rows, 0, |_| {})
}

#[test]
fn one_bad_row_among_thousands_is_reported_with_its_line_and_field_only() {
    let catalog = demo();
    let mut records: Vec<Record> = generate(&catalog, "samr", 2500, 11, TODAY).collect();
    assert!(records.len() > 4000);
    let bad = 3000
        + records[3000..]
            .iter()
            .position(|r| r.item == "admin-penalty")
            .unwrap();
    records[bad]
        .fields
        .insert("amount".into(), "1200.555".into());
    // Each file's problem is named as that file names it: a JSON path, a CSV column.
    for (format, text, line, field) in [
        (
            Format::JsonLines,
            jsonl(&records),
            bad as u64 + 1,
            "fields.amount",
        ),
        (Format::Csv, csv_text(&records), bad as u64 + 2, "amount"),
    ] {
        let mut calls = Vec::new();
        let rows = Rows::from_reader(format, text.as_bytes());
        let report = validate_all(&catalog, "samr", TODAY, rows, 1000, |c| calls.push(*c))
            .expect_err("bad file accepted");
        assert_eq!(
            report.errors,
            vec![RowError::new(line, field, "more than 2 decimals")],
            "{format:?}"
        );
        assert_eq!(report.counts.bad_rows, 1);
        assert_eq!(report.counts.rows, records.len() as u64);
        assert_eq!(
            calls.len(),
            records.len() / 1000,
            "progress every 1000 rows"
        );
        let shown = report.clone().with_file("penalties.jsonl").to_string();
        assert!(
            shown.contains(&format!("penalties.jsonl:line {line}, {field}")),
            "{shown}"
        );
        assert!(shown.contains("nothing was written"));
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["errors"][0]["field"], field);
    }
}

#[test]
fn csv_and_json_lines_give_the_same_records() {
    let catalog = demo();
    for dept in ["samr", "hrss", "tax", "court"] {
        let records: Vec<Record> = generate(&catalog, dept, 300, 5, TODAY).collect();
        let from_csv = all(dept, Format::Csv, &csv_text(&records)).unwrap();
        let from_json = all(dept, Format::JsonLines, &jsonl(&records)).unwrap();
        assert_eq!(from_csv, records, "{dept}");
        assert_eq!(from_json, records, "{dept}");
    }
}

#[test]
fn parse_file_streams_by_extension() {
    let catalog = demo();
    let records: Vec<Record> = generate(&catalog, "hrss", 50, 1, TODAY).collect();
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [("a.csv", csv_text(&records)), ("a.jsonl", jsonl(&records))] {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let rows = parse_file(&path).unwrap();
        assert_eq!(
            validate_all(&catalog, "hrss", TODAY, rows, 0, |_| {}).unwrap(),
            records
        );
    }
    assert!(matches!(
        parse_file(&dir.path().join("a.txt")),
        Err(OpenError::UnknownFormat { .. })
    ));
    assert!(matches!(
        parse_file(&dir.path().join("none.csv")),
        Err(OpenError::Io { .. })
    ));
}

#[test]
fn csv_cells_outside_the_items_fields_and_header_problems() {
    let catalog = demo();
    let mut records: Vec<Record> = generate(&catalog, "tax", 3, 1, TODAY).collect();
    records.extend(generate(&catalog, "hrss", 3, 1, TODAY).map(|mut r| {
        // Pretend the tax node were given an hrss row: refused by item, not by column.
        r.item = "tax-credit-rating".into();
        r
    }));
    let text = csv_text(&records);
    let report = all("tax", Format::Csv, &text).unwrap_err();
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.field == "arrears_amount" && e.reason.contains("not a field")),
        "{report}"
    );
    let header_only = "subject,item,basis_kind\n";
    let report = all("tax", Format::Csv, header_only).unwrap_err();
    let missing: Vec<&str> = report.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        missing,
        [
            "(header).basis_number",
            "(header).basis_date",
            "(header).basis_issuer",
            "(header).severity",
            "(header).decision_date"
        ]
    );
    assert!(report.errors.iter().all(|e| e.line == 1));
    assert_eq!((report.counts.rows, report.counts.bad_rows), (0, 0));
    assert!(
        report
            .to_string()
            .starts_with("refused: the header is bad, no row was read"),
        "{report}"
    );
    let short_row = format!("{}x,y\n", text.lines().next().unwrap().to_owned() + "\n");
    let report = all("tax", Format::Csv, &short_row).unwrap_err();
    assert_eq!(report.errors[0].line, 2);
    assert!(report.errors[0].reason.contains("columns"), "{report}");
    assert!(all("tax", Format::Csv, "").is_err());
}

#[test]
fn identical_rows_collapse_and_conflicting_rows_are_refused() {
    let catalog = demo();
    let records: Vec<Record> = generate(&catalog, "tax", 5, 2, TODAY).collect();
    let mut text = jsonl(&records);
    text.push_str(&to_json_line(&records[0]));
    text.push_str("\n\n   \n");
    let mut seen = Vec::new();
    let rows = Rows::from_reader(Format::JsonLines, text.as_bytes());
    let summary = validate_into(&catalog, "tax", TODAY, rows, 0, |_| {}, |r| seen.push(r)).unwrap();
    assert_eq!(seen, records);
    assert_eq!(summary.counts.duplicates, 1);
    assert_eq!(summary.records, records.len() as u64);

    let mut changed = records[0].clone();
    changed.fields.insert(
        "rating".into(),
        if changed.fields["rating"] == "A" {
            "B"
        } else {
            "A"
        }
        .into(),
    );
    let text = jsonl(&records) + &to_json_line(&changed);
    let report = all("tax", Format::JsonLines, &text).unwrap_err();
    assert_eq!(report.errors.len(), 1);
    assert_eq!(report.errors[0].line, records.len() as u64 + 1);
    assert!(
        report.errors[0]
            .reason
            .contains("as line 1 but different content")
    );
}

#[test]
fn over_long_and_broken_json_lines_are_rows_in_error() {
    let catalog = demo();
    let records: Vec<Record> = generate(&catalog, "tax", 2, 2, TODAY).collect();
    let long = format!("{{\"subject\": \"{}\"}}\n", "x".repeat(MAX_LINE_BYTES + 10));
    let text = format!(
        "{}{long}{{not json\n{}",
        jsonl(&records[..1]),
        jsonl(&records[1..])
    );
    let report = all("tax", Format::JsonLines, &text).unwrap_err();
    let got: Vec<(u64, &str)> = report
        .errors
        .iter()
        .map(|e| (e.line, e.field.as_str()))
        .collect();
    assert_eq!(got, [(2, "(row)"), (3, "(row)")]);
    assert!(report.errors[0].reason.contains("longer than"));
    // One line number, ours: serde_json's "line 1" of the line itself is left out.
    assert_eq!(
        report.errors[1].reason,
        "not valid JSON at column 2: key must be a string"
    );
    assert_eq!(report.counts.rows, records.len() as u64 + 2);
}

fn arb_text() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        ".{0,24}".prop_map(Some),
        "[0-9X-]{0,20}".prop_map(Some),
        Just(Some("91330100716105852F".to_owned())),
        Just(Some("2026-05-01".to_owned())),
        Just(Some("admin-penalty".to_owned())),
        Just(Some("serious-untrustworthy".to_owned())),
        Just(Some("serious".to_owned())),
    ]
}

fn arb_row() -> impl Strategy<Value = RawRow> {
    let fields = proptest::collection::btree_map(
        prop_oneof![Just("uscc".to_owned()), Just("amount".to_owned()), ".{0,8}"],
        ".{1,24}",
        0..6,
    );
    (
        (arb_text(), arb_text(), arb_text(), arb_text()),
        (arb_text(), arb_text(), arb_text(), arb_text()),
        (arb_text(), arb_text(), arb_text(), arb_text(), arb_text()),
        fields,
    )
        .prop_map(
            |((subject, item, severity, decision_date), b, d, fields)| RawRow {
                line: 1,
                subject,
                item,
                fields,
                severity,
                decision_date,
                basis: Some(RawBasis {
                    kind: b.0,
                    number: b.1,
                    date: b.2,
                    issuer: b.3,
                }),
                restoration: d.0.clone().map(|on| RawRestoration {
                    on: Some(on),
                    basis: d.1.clone(),
                }),
                designation: d.2.map(|on| RawDesignation {
                    designated_on: Some(on),
                    removal_conditions: d.1,
                    removed_on: d.3,
                    removal_basis: d.4,
                }),
                problems: Vec::new(),
                naming: Naming::JsonPaths,
            },
        )
}

proptest! {
    #[test]
    fn validation_never_panics(row in arb_row(), dept in prop_oneof![Just("samr"), Just("court"), Just("x")]) {
        let catalog = demo();
        match validate(&catalog, dept, TODAY, &row) {
            Ok(r) => prop_assert_eq!(r.basis.issuer.is_empty(), false),
            Err(errors) => prop_assert!(!errors.is_empty()),
        }
    }

    #[test]
    fn readers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        for format in [Format::Csv, Format::JsonLines] {
            for raw in Rows::from_reader(format, bytes.as_slice()).take(100).flatten() {
                let _ = validate(&demo(), "samr", TODAY, &raw);
            }
        }
    }
}

#[test]
fn csv_with_byte_order_mark_and_crlf_line_ends() {
    let catalog = demo();
    let records: Vec<Record> = generate(&catalog, "court", 20, 9, TODAY).collect();
    let text = format!("\u{feff}{}", csv_text(&records).replace('\n', "\r\n"));
    assert_eq!(all("court", Format::Csv, &text).unwrap(), records);
}

#[test]
fn a_report_keeps_the_first_problems_and_counts_the_rest() {
    let text = "{not json\n".repeat(MAX_REPORTED_ERRORS + 10);
    let report = all("samr", Format::JsonLines, &text).unwrap_err();
    assert_eq!(report.errors.len(), MAX_REPORTED_ERRORS);
    assert_eq!(report.omitted, 10);
    assert_eq!(report.counts.bad_rows, MAX_REPORTED_ERRORS as u64 + 10);
    assert!(report.to_string().ends_with("  ... and 10 more problems\n"));
}

#[test]
fn a_report_reads_well() {
    let text = "{\"item\": \"admin-penalty\", \"colour\": \"red\"}\n";
    let report = all("samr", Format::JsonLines, text)
        .unwrap_err()
        .with_file("in.jsonl");
    let shown = report.to_string();
    let first = shown.lines().next().unwrap();
    assert_eq!(
        first,
        "in.jsonl: refused: 1 of 1 rows bad; nothing was written"
    );
    assert!(
        shown.contains("  in.jsonl:line 1, colour: unknown key\n"),
        "{shown}"
    );
    assert!(
        shown.contains("  in.jsonl:line 1, basis: missing: a record must rest on"),
        "{shown}"
    );
}

/// The header is line 1, so the first row is line 2, whatever the line ends: files saved on
/// Windows (CRLF) or by old Mac programs (CR) must not shift or merge the reported lines.
#[test]
fn csv_lines_count_from_the_header_whatever_the_line_ends() {
    let catalog = demo();
    let mut records: Vec<Record> = generate(&catalog, "samr", 20, 5, TODAY)
        .filter(|r| r.item == "admin-penalty")
        .collect();
    assert!(records.len() >= 2);
    let last = records.len() - 1;
    for i in [0, last] {
        records[i].fields.insert("amount".into(), "1.555".into());
    }
    for end in ["\n", "\r\n", "\r"] {
        let text = csv_text(&records).replace('\n', end);
        let report = all("samr", Format::Csv, &text).unwrap_err();
        let lines: Vec<u64> = report.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines.first(), Some(&2), "{end:?}: {report}");
        assert_eq!(lines.last(), Some(&(last as u64 + 2)), "{end:?}: {report}");
        // A blank line after the header moves every row down one line.
        let (header, rows) = text.split_once(end).unwrap();
        let spaced = format!("{header}{end}{end}{rows}");
        let report = all("samr", Format::Csv, &spaced).unwrap_err();
        assert_eq!(report.errors[0].line, 3, "{end:?}: {report}");
        // An unclosed quote swallows the rest of the file, line ends and all: the row still
        // starts on its own line.
        let unclosed = format!("{text}x,\"abc{end}rest{end}");
        let report = all("samr", Format::Csv, &unclosed).unwrap_err();
        let line = report.errors.last().map(|e| e.line);
        assert_eq!(line, Some(last as u64 + 3), "{end:?}: {report}");
    }
}

#[test]
fn a_json_line_cut_short_is_placed_on_its_own_line() {
    let report = all("samr", Format::JsonLines, "{\"subject\": \"x\"\n").unwrap_err();
    assert_eq!(
        report.errors[0].reason,
        "not valid JSON at column 15: EOF while parsing an object"
    );
}

/// A row that is not UTF-8 is reported at the line it starts on, even when a quoted value
/// carries it over several lines.
#[test]
fn a_row_that_is_not_utf8_is_reported_where_it_starts() {
    let catalog = demo();
    let records: Vec<Record> = generate(&catalog, "samr", 1, 5, TODAY).take(1).collect();
    let text = csv_text(&records);
    let columns = text.lines().next().unwrap().split(',').count();
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"\"first line\nsecond \xff\"");
    bytes.extend(std::iter::repeat_n(b',', columns - 1));
    bytes.push(b'\n');
    let rows = Rows::from_reader(Format::Csv, bytes.as_slice());
    let report = validate_all(&catalog, "samr", TODAY, rows, 0, |_| {}).unwrap_err();
    assert_eq!(
        report.errors,
        vec![RowError::new(3, "(row)", "column 1: not valid UTF-8")]
    );
}
