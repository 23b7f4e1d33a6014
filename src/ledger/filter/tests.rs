//! The filter's re-check and the packing the audit compares stored columns with.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::ledger::entry::tests::sample;

fn fields(entry: &Entry) -> FilterFields<'_> {
    FilterFields::of(entry)
}

#[test]
fn a_packing_checks_against_its_own_fields_and_names_the_first_column_that_differs() {
    let entry = sample(7);
    let mine = fields(&entry);
    let mut packed = Vec::new();
    mine.pack_into(&mut packed);
    let tail = b"next entry";
    packed.extend_from_slice(tail);
    assert_eq!(mine.check_packed(&packed), Ok(packed.len() - tail.len()));

    let check = |changed: FilterFields<'_>, column: Column| {
        let mut packed = Vec::new();
        changed.pack_into(&mut packed);
        assert_eq!(mine.check_packed(&packed), Err(column), "{changed:?}");
        assert_eq!(mine.first_difference(&changed.into()), Some(column));
    };
    check(
        FilterFields {
            caller: "spiffe://gd.gov.cn/dept/court",
            ..mine
        },
        Column::Caller,
    );
    check(
        FilterFields {
            subject: "91350100M000100Y4",
            ..mine
        },
        Column::Subject,
    );
    check(
        FilterFields {
            purpose: "",
            ..mine
        },
        Column::Purpose,
    );
    check(
        FilterFields {
            outcome: OutcomeKind::Denied,
            ..mine
        },
        Column::Outcome,
    );
    check(
        FilterFields {
            time_ms: mine.time_ms + 1,
            ..mine
        },
        Column::TimeMs,
    );
    assert_eq!(mine.first_difference(&mine.into()), None);
}

#[test]
fn stored_columns_name_the_first_that_differs_and_an_unreadable_one_differs() {
    let entry = sample(7);
    let mine = fields(&entry);
    let stored = StoredColumns::from(mine);
    // Two columns changed: the first in the order caller, subject, purpose, outcome, time_ms.
    let two = StoredColumns {
        purpose: Some("tax-audit"),
        time_ms: Some(mine.time_ms + 1),
        ..stored
    };
    assert_eq!(mine.first_difference(&two), Some(Column::Purpose));
    let two = StoredColumns {
        caller: Some("spiffe://gd.gov.cn/dept/court"),
        outcome: Some(OutcomeKind::Alert),
        ..stored
    };
    assert_eq!(mine.first_difference(&two), Some(Column::Caller));
    // A column that could not be read as its type (None) differs, whatever its neighbours.
    for (unreadable, column) in [
        (
            StoredColumns {
                caller: None,
                ..stored
            },
            Column::Caller,
        ),
        (
            StoredColumns {
                subject: None,
                ..stored
            },
            Column::Subject,
        ),
        (
            StoredColumns {
                purpose: None,
                ..stored
            },
            Column::Purpose,
        ),
        (
            StoredColumns {
                outcome: None,
                ..stored
            },
            Column::Outcome,
        ),
        (
            StoredColumns {
                time_ms: None,
                ..stored
            },
            Column::TimeMs,
        ),
    ] {
        assert_eq!(mine.first_difference(&unreadable), Some(column));
    }
    assert_eq!(
        mine.first_difference(&StoredColumns::default()),
        Some(Column::Caller)
    );
}

#[test]
fn a_separator_inside_a_column_never_lines_up() {
    let entry = sample(7);
    let mine = fields(&entry);
    // The caller stretched over the subject's place: the byte strings of the other columns
    // are all there, but not where the entry's caller ends.
    let mut packed = Vec::new();
    packed.extend_from_slice(mine.caller.as_bytes());
    packed.extend_from_slice(&[PACK_SEPARATOR, b'x', PACK_SEPARATOR]);
    assert_eq!(mine.check_packed(&packed), Err(Column::Subject));
    assert_eq!(mine.check_packed(&[]), Err(Column::Caller));
    let mut cut = Vec::new();
    mine.pack_into(&mut cut);
    cut.pop();
    assert_eq!(mine.check_packed(&cut), Err(Column::TimeMs));
}

#[test]
fn times_are_packed_in_decimal_as_the_engines_cast_them() {
    for (ms, text) in [
        (0, "0"),
        (7, "7"),
        (-7, "-7"),
        (1_790_000_000_000, "1790000000000"),
        (i64::MAX, "9223372036854775807"),
        (i64::MIN, "-9223372036854775808"),
    ] {
        assert_eq!(Decimal::of(ms).as_bytes(), text.as_bytes());
    }
}

#[test]
fn the_filter_names_the_condition_an_entry_does_not_meet() {
    let entry = sample(7);
    let mine = fields(&entry);
    let check = |filter: EntryFilter, unmet: Option<Column>| {
        assert_eq!(filter.first_unmet(&mine), unmet, "{filter:?}");
        assert_eq!(filter.matches(&mine), unmet.is_none());
    };
    check(EntryFilter::default(), None);
    let all = EntryFilter {
        caller: Some(entry.caller.clone()),
        on_behalf_of: None,
        forwarded_to: None,
        subject: Some(entry.subject.clone()),
        purpose: Some(entry.purpose.clone()),
        outcome: Some(mine.outcome),
        from_ms: Some(entry.time_ms),
        until_ms: Some(entry.time_ms + 1),
    };
    check(all.clone(), None);
    check(
        EntryFilter {
            caller: Some("spiffe://gd.gov.cn/dept/court".into()),
            ..all.clone()
        },
        Some(Column::Caller),
    );
    check(
        EntryFilter {
            subject: Some("x".into()),
            ..all.clone()
        },
        Some(Column::Subject),
    );
    check(
        EntryFilter {
            purpose: Some("x".into()),
            ..all.clone()
        },
        Some(Column::Purpose),
    );
    check(
        EntryFilter {
            outcome: Some(OutcomeKind::Alert),
            ..all.clone()
        },
        Some(Column::Outcome),
    );
    // `from_ms` inclusive, `until_ms` exclusive, as the listing's SQL has them.
    check(
        EntryFilter {
            from_ms: Some(entry.time_ms + 1),
            ..all.clone()
        },
        Some(Column::TimeMs),
    );
    check(
        EntryFilter {
            until_ms: Some(entry.time_ms),
            ..all
        },
        Some(Column::TimeMs),
    );
}

#[test]
fn the_conditions_no_column_copies_are_met_on_the_entry() {
    let relayed = Entry {
        on_behalf_of: Some("spiffe://gd.gov.cn/dept/court".into()),
        ..sample(1)
    };
    let forwarded = crate::ledger::entry::tests::forwarded_sample(2);
    let node = "spiffe://bj.gov.cn/node/credit";
    assert!(!EntryFilter::default().has_uncopied());
    let by_department = EntryFilter {
        on_behalf_of: Some("spiffe://gd.gov.cn/dept/court".into()),
        ..Default::default()
    };
    assert!(by_department.has_uncopied());
    assert!(by_department.meets_uncopied(&relayed));
    assert!(!by_department.meets_uncopied(&forwarded));
    let by_node = EntryFilter {
        forwarded_to: Some(node.into()),
        ..Default::default()
    };
    assert!(by_node.has_uncopied());
    assert!(by_node.meets_uncopied(&forwarded));
    assert!(!by_node.meets_uncopied(&relayed));
    let elsewhere = EntryFilter {
        forwarded_to: Some("spiffe://sh.gov.cn/node/credit".into()),
        ..Default::default()
    };
    assert!(!elsewhere.meets_uncopied(&forwarded));
    // Both set: both must hold.
    let both = EntryFilter {
        forwarded_to: Some(node.into()),
        ..by_department
    };
    assert!(!both.meets_uncopied(&forwarded));
    assert!(!both.meets_uncopied(&relayed));
}

#[test]
fn every_outcome_kind_indexes_its_place_in_all() {
    for (i, kind) in OutcomeKind::ALL.into_iter().enumerate() {
        assert_eq!(kind.index(), i, "{kind:?}");
    }
}
