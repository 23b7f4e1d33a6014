//! Validation of single rows against the demo catalog.

use serde_json::{Value, json};
use time::macros::date;

use super::jsonl::parse_line;
use super::{RowError, validate};
use crate::catalog::{Catalog, DEMO, Severity};
use crate::records::Record;

pub(super) const TODAY: time::Date = date!(2026 - 11 - 23);
const USCC: &str = "91330100716105852F";
const RID: &str = "11010519491231002X";

pub(super) fn demo() -> Catalog {
    Catalog::parse("demo.toml", DEMO.as_bytes()).unwrap()
}

/// A valid admin-penalty row of `samr`.
fn penalty() -> Value {
    json!({
        "subject": USCC,
        "item": "admin-penalty",
        "fields": {
            "decision_no": "浙市监罚〔2026〕12号",
            "uscc": USCC,
            "severity": "ordinary",
            "penalty_type": "罚款",
            "amount": "5000.00",
            "decision_date": "2026-05-01",
            "facts": "经营超过保质期的食品。",
            "legal_rep_id": RID,
        },
        "basis": {"kind": "行政处罚决定书", "number": "浙市监罚〔2026〕12号", "date": "2026-05-01", "issuer": "samr"},
        "severity": "ordinary",
        "decision_date": "2026-05-01",
    })
}

/// A valid serious-untrustworthy (list) row of `samr`.
fn listed() -> Value {
    json!({
        "subject": USCC,
        "item": "serious-untrustworthy",
        "fields": {
            "uscc": USCC, "name": "杭州星河科技有限公司", "list_reason": "拒不履行生效法律文书。",
            "listed_date": "2025-03-01", "listing_authority": "杭州市市场监督管理局",
        },
        "basis": {"kind": "列入严重失信主体名单决定书", "number": "浙失信列〔2025〕3号", "date": "2025-03-01", "issuer": "samr"},
        "severity": "serious",
        "decision_date": "2025-03-01",
        "designation": {"designated_on": "2025-03-01", "removal_conditions": "履行义务并作出信用承诺", "removed_on": null, "removal_basis": null},
    })
}

fn run(dept: &str, v: &Value) -> Result<Record, Vec<RowError>> {
    let raw = parse_line(7, v.to_string().as_bytes()).unwrap();
    validate(&demo(), dept, TODAY, &raw)
}

/// Asserts the row is refused with exactly these (field, reason fragment) problems, all on
/// line 7, and that no reason echoes a personal value.
fn refused(dept: &str, v: &Value, expected: &[(&str, &str)]) {
    let errors = run(dept, v).expect_err("row accepted");
    let got: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.field.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(errors.len(), expected.len(), "{got:?}");
    for ((field, reason), e) in expected.iter().zip(&errors) {
        assert_eq!(e.line, 7);
        assert_eq!(&e.field, field, "{got:?}");
        assert!(e.reason.contains(reason), "{:?} lacks {reason:?}", e.reason);
        for secret in [USCC, RID, "13812345678", "11010519491231002"] {
            assert!(
                !e.to_string().contains(secret),
                "{e} echoes a personal value"
            );
        }
    }
}

/// Sets the value at `path`, or removes the key when `x` is null.
fn set(mut v: Value, path: &[&str], x: Value) -> Value {
    let (last, parents) = path.split_last().unwrap();
    let mut at = &mut v;
    for p in parents {
        at = &mut at[*p];
    }
    match (x, at) {
        (Value::Null, Value::Object(m)) => {
            m.remove(*last);
        }
        (x, at) => at[*last] = x,
    }
    v
}

#[test]
fn a_valid_row_becomes_a_record_with_its_disclosure_end() {
    let r = run("samr", &penalty()).unwrap();
    assert_eq!(r.subject, USCC);
    assert_eq!(r.severity, Some(Severity::Ordinary));
    assert_eq!(r.disclosure_end, Some(date!(2027 - 05 - 01)));
    assert_eq!(r.fields.len(), 8);
    assert_eq!(r.basis.issuer, "samr");
    let l = run("samr", &listed()).unwrap();
    assert_eq!(l.disclosure_end, Some(date!(2028 - 03 - 01)));
    assert!(l.designation.is_some());
}

#[test]
fn a_record_without_basis_is_refused() {
    let v = set(penalty(), &["basis"], Value::Null);
    refused("samr", &v, &[("basis", "legally effective document")]);
    let v = set(
        penalty(),
        &["basis"],
        json!({"kind": "", "date": "2026-05-01", "issuer": "SAMR"}),
    );
    refused(
        "samr",
        &v,
        &[
            ("basis.kind", "missing"),
            ("basis.number", "missing"),
            ("basis.issuer", "department code"),
        ],
    );
    let v = set(penalty(), &["basis", "kind"], json!("  "));
    refused("samr", &v, &[("basis.kind", "empty")]);
}

#[test]
fn every_problem_of_a_row_is_reported() {
    let mut v = penalty();
    v["subject"] = json!("913301007161058523");
    v["fields"]["amount"] = json!("12.345");
    v["fields"]["colour"] = json!("red");
    v["fields"]["legal_rep_id"] = json!("110105194912310023");
    v["severity"] = Value::Null;
    v["extra"] = json!(1);
    refused(
        "samr",
        &v,
        &[
            ("extra", "unknown key"),
            ("subject", "check character expected 'F' found '3'"),
            ("severity", "missing"),
            ("fields.amount", "more than 2 decimals"),
            (
                "fields.legal_rep_id",
                "check character expected 'X' found '3'",
            ),
            ("fields.colour", "not a field of item \"admin-penalty\""),
        ],
    );
}

#[test]
fn identifier_errors_are_precise_and_by_subject_type() {
    let mut v = penalty();
    v["subject"] = json!("9133I100716105852F");
    refused(
        "samr",
        &v,
        &[("subject", "invalid character 'I' at position 5")],
    );
    v["subject"] = json!(RID);
    refused(
        "samr",
        &v,
        &[(
            "subject",
            "unified social credit code: check character expected",
        )],
    );
    // A natural-person item wants a resident identity number.
    let debtor = json!({
        "subject": USCC, "item": "dishonest-debtor",
        "fields": {"case_no": "（2025）京0105执123号", "debtor_name": "欧阳娜", "debtor_id": USCC,
            "birth_date": "1949-12-31", "address": "北京市朝阳区建国路88号", "court": "北京市朝阳区人民法院",
            "obligation": "给付货款", "filed_date": "2025-06-01"},
        "basis": {"kind": "失信决定书", "number": "（2025）京0105执123号", "date": "2025-06-01", "issuer": "court"},
        "severity": "serious", "decision_date": "2025-06-01",
    });
    refused(
        "court",
        &debtor,
        &[
            (
                "subject",
                "resident identity number: invalid character 'F' at position 18",
            ),
            (
                "fields.debtor_id",
                "resident identity number: invalid character 'F' at position 18",
            ),
        ],
    );
    let mut ok = debtor.clone();
    ok["subject"] = json!("11010519491231002x");
    ok["fields"]["debtor_id"] = json!(RID);
    assert_eq!(
        run("court", &ok).unwrap().subject,
        RID,
        "canonical upper-case X"
    );
}

#[test]
fn items_are_those_of_the_nodes_department() {
    refused(
        "tax",
        &penalty(),
        &[(
            "item",
            "recorded by department \"samr\", not by this node's \"tax\"",
        )],
    );
    let v = set(penalty(), &["item"], json!("no-such-item"));
    refused("samr", &v, &[("item", "unknown item \"no-such-item\"")]);
    let notes = json!({
        "subject": USCC, "item": "inspection-notes",
        "fields": {"uscc": USCC, "inspector": "王伟", "notes": "现场检查无异常"},
        "basis": {"kind": "检查记录", "number": "杭检〔2026〕1号", "date": "2026-01-05", "issuer": "samr"},
        "decision_date": "2026-01-05",
    });
    let r = run("samr", &notes).expect("records of unshared items are still held");
    assert_eq!((r.severity, r.disclosure_end), (None, None));
}

#[test]
fn severity_is_given_exactly_when_the_item_has_periods() {
    let v = set(penalty(), &["severity"], json!("grave"));
    refused("samr", &v, &[("severity", "unknown class \"grave\"")]);
    let mut minor = penalty();
    minor["severity"] = json!("minor");
    minor["fields"]["severity"] = json!("minor");
    let r = run("samr", &minor).unwrap();
    assert_eq!(
        r.disclosure_end,
        Some(r.decision_date),
        "held, never disclosed"
    );
    assert!(r.disclosable(r.decision_date).is_err());
    let mut wrong_class = listed();
    wrong_class["severity"] = json!("ordinary");
    refused(
        "samr",
        &wrong_class,
        &[("severity", "has no class ordinary")],
    );
    let notes = json!({
        "subject": USCC, "item": "inspection-notes", "severity": "minor",
        "fields": {"uscc": USCC, "inspector": "王伟", "notes": "无"},
        "basis": {"kind": "检查记录", "number": "1", "date": "2026-01-05", "issuer": "samr"},
        "decision_date": "2026-01-05",
    });
    refused("samr", &notes, &[("severity", "has no disclosure periods")]);
}

#[test]
fn dates_are_sane() {
    let mut v = penalty();
    v["decision_date"] = json!("2026-11-24");
    v["fields"]["decision_date"] = json!("2026-11-24");
    v["basis"]["date"] = json!("1949-09-30");
    refused(
        "samr",
        &v,
        &[
            ("decision_date", "after today (2026-11-23)"),
            ("basis.date", "before 1949-10-01"),
        ],
    );
    let v = set(penalty(), &["decision_date"], json!("2026-5-1"));
    refused("samr", &v, &[("decision_date", "YYYY-MM-DD")]);
    let v = set(
        penalty(),
        &["restoration"],
        json!({"on": "2026-04-30", "basis": "修复决定"}),
    );
    refused("samr", &v, &[("restoration.on", "before 2026-05-01")]);
    let v = set(
        penalty(),
        &["restoration"],
        json!({"on": "2026-08-01", "basis": "修复决定"}),
    );
    assert!(run("samr", &v).unwrap().restoration.is_some());
    let mut l = listed();
    l["designation"]["removed_on"] = json!("2025-02-01");
    refused(
        "samr",
        &l,
        &[
            ("designation.removed_on", "before 2025-03-01"),
            ("designation.removal_basis", "missing"),
        ],
    );
    l["designation"]["removed_on"] = json!("2026-02-01");
    l["designation"]["removal_basis"] = json!("移出决定书");
    assert!(
        run("samr", &l)
            .unwrap()
            .designation
            .unwrap()
            .removed_on
            .is_some()
    );
}

#[test]
fn restoration_and_designation_only_where_the_catalog_allows() {
    let licence = json!({
        "subject": USCC, "item": "admin-licence",
        "fields": {"licence_no": "JY1", "uscc": USCC, "licence_type": "食品经营许可证",
            "valid_from": "2026-01-01", "valid_to": "2031-01-01", "issuing_authority": "杭州市市场监督管理局"},
        "basis": {"kind": "行政许可决定书", "number": "浙市监许〔2026〕1号", "date": "2026-01-01", "issuer": "samr"},
        "decision_date": "2026-01-01",
        "restoration": {"on": "2026-06-01", "basis": "修复"},
        "designation": {"designated_on": "2026-01-01", "removal_conditions": "无"},
    });
    refused(
        "samr",
        &licence,
        &[
            ("restoration", "\"admin-licence\" is not restorable"),
            ("designation", "\"admin-licence\" is not a list"),
        ],
    );
    let v = set(listed(), &["designation"], Value::Null);
    refused(
        "samr",
        &v,
        &[(
            "designation",
            "missing: item \"serious-untrustworthy\" is a list",
        )],
    );
}

#[test]
fn unknown_keys_and_wrong_types_are_refused() {
    let mut v = penalty();
    v["basis"]["seal"] = json!("x");
    v["restoration"] = json!({"on": "2026-08-01", "basis": "修复", "by": "me"});
    v["fields"]["amount"] = json!(5000);
    refused(
        "samr",
        &v,
        &[
            ("basis.seal", "unknown key"),
            ("fields.amount", "expected a string, found a number"),
            ("restoration.by", "unknown key"),
            ("fields.amount", "missing"),
        ],
    );
    for bad in ["[1]", "{", "\"x\""] {
        assert!(parse_line(3, bad.as_bytes()).is_err_and(|e| e.line == 3 && e.field == "(row)"));
    }
}

#[test]
fn fields_repeating_record_facts_must_agree() {
    let mut v = penalty();
    v["fields"]["uscc"] = json!("91110000100000000R");
    v["fields"]["severity"] = json!("serious");
    refused(
        "samr",
        &v,
        &[
            ("fields.uscc", "differs from the subject"),
            ("fields.severity", "differs from the record's severity"),
        ],
    );
}
