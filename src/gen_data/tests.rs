use std::collections::BTreeSet;

use time::macros::date;

use super::*;
use crate::catalog::DEMO;
use crate::ingest::{JsonlRows, validate_all};
use crate::records::NotDisclosable;

const TODAY: Date = date!(2026 - 11 - 23);
const DEPARTMENTS: [&str; 4] = ["samr", "hrss", "tax", "court"];

fn demo() -> Catalog {
    Catalog::parse("demo.toml", DEMO.as_bytes()).unwrap()
}

#[test]
fn generated_records_round_trip_through_json_lines_for_every_department() {
    let catalog = demo();
    for dept in DEPARTMENTS {
        for seed in [0, 1, 42, u64::MAX] {
            let records: Vec<Record> = generate(&catalog, dept, 200, seed, TODAY).collect();
            assert!(records.len() >= 200, "{dept}: {}", records.len());
            let text: String = records.iter().map(|r| to_json_line(r) + "\n").collect();
            let back = validate_all(
                &catalog,
                dept,
                TODAY,
                JsonlRows::new(text.as_bytes()),
                0,
                |_| {},
            )
            .unwrap_or_else(|report| panic!("{dept}/{seed}: {report}"));
            assert_eq!(back, records, "{dept}/{seed}");
        }
    }
}

#[test]
fn generation_is_deterministic_and_seeded() {
    let catalog = demo();
    let a: Vec<Record> = generate(&catalog, "samr", 50, 7, TODAY).collect();
    let b: Vec<Record> = generate(&catalog, "samr", 50, 7, TODAY).collect();
    let c: Vec<Record> = generate(&catalog, "samr", 50, 8, TODAY).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(generate(&catalog, "nobody", 50, 7, TODAY).count(), 0);
}

#[test]
fn generated_data_is_varied_and_realistic() {
    let catalog = demo();
    let records: Vec<Record> = generate(&catalog, "samr", 2000, 3, TODAY).collect();
    let items: BTreeSet<&str> = records.iter().map(|r| r.item.as_str()).collect();
    assert_eq!(items.len(), 5, "a spread over samr's items: {items:?}");
    let why: Vec<_> = records.iter().map(|r| r.disclosable(TODAY)).collect();
    for outcome in [
        Ok(()),
        Err(NotDisclosable::Expired),
        Err(NotDisclosable::Restored),
        Err(NotDisclosable::RemovedFromList),
    ] {
        assert!(why.contains(&outcome), "no record is {outcome:?}");
    }
    let names: Vec<&str> = records
        .iter()
        .filter_map(|r| r.fields.get("legal_rep_name").map(String::as_str))
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n.chars().any(|c| u32::from(c) > 0xFFFF)),
        "non-BMP names"
    );
    assert!(names.iter().any(|n| {
        ["欧阳", "司马", "诸葛", "上官"]
            .iter()
            .any(|s| n.starts_with(s))
    }));
    // A restoration's or removal's decision number carries the year it was decided in.
    for r in &records {
        let decided = r
            .restoration
            .as_ref()
            .map(|x| (x.on, x.basis.as_str()))
            .into_iter()
            .chain(
                r.designation
                    .as_ref()
                    .and_then(|d| d.removed_on.zip(d.removal_basis.as_deref())),
            );
        for (on, number) in decided {
            assert!(
                number.contains(&format!("〔{}〕", on.year())),
                "{on} {number}"
            );
        }
    }
    for r in records.iter().filter(|r| r.item == "registration") {
        let division = &r.fields["division"];
        let name = &r.fields["name"];
        assert!(name.ends_with("公司"), "{name}");
        assert_eq!(&r.subject[2..8], division, "division matches the code");
        let mobile = &r.fields["legal_rep_mobile"];
        assert!(mobile.len() == 11 && mobile.starts_with('1'));
    }
    let debtors: Vec<Record> = generate(&catalog, "court", 100, 3, TODAY).collect();
    for r in &debtors {
        let place = names::PLACES
            .iter()
            .find(|p| p.0 == &r.subject[..6])
            .unwrap();
        assert!(
            r.fields["address"].starts_with(place.1),
            "address matches the id's region"
        );
        assert_eq!(r.fields["debtor_id"], r.subject);
    }
}

#[test]
fn extreme_dates_do_not_panic() {
    let catalog = demo();
    for today in [Date::MIN, Date::MAX] {
        for dept in DEPARTMENTS {
            assert!(generate(&catalog, dept, 20, 1, today).count() >= 20);
        }
    }
}

/// `--subjects N` gives N subjects: identifiers drawn at random collide (about one in 200,000
/// resident IDs did), and a collision would merge two synthetic subjects' records.
#[test]
fn every_synthetic_subject_has_identifiers_of_its_own() {
    let catalog = demo();
    let mut owner = std::collections::HashMap::new();
    for (n, record) in generate_numbered(&catalog, "samr", 200_000, 1, TODAY) {
        let first = *owner.entry(record.subject.clone()).or_insert(n);
        assert_eq!(first, n, "{} is subjects {first} and {n}", record.subject);
    }
}
