use super::*;
use crate::catalog::testing::demo;
use crate::desensitize::{Generalise, RecipientKey, Rule};
use crate::identity::SpiffeId;

const A: &str = "spiffe://region-a.credit.test";
const B: &str = "spiffe://region-b.credit.test";

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn form(s: &str) -> Outcome {
    Outcome::Granted(s.parse().unwrap_or_else(|e| panic!("{e}")))
}

const fn no(reason: Withheld) -> Outcome {
    Outcome::Withheld(reason)
}

/// One row of a decision table: caller, purpose, item, field -> outcome.
fn check(caller: &str, purpose: &str, item: &str, field: &str, expected: Outcome) {
    let catalog = demo();
    let req = [ItemRequest::fields(item, &[field])];
    let d = decide(&catalog, &id(caller), purpose, &req);
    let got = d.items()[0].fields()[0].outcome();
    assert_eq!(got, expected, "{caller} {purpose} {item}.{field}");
}

#[test]
fn decision_table() {
    use Withheld::*;
    let a_tax = &format!("{A}/dept/tax");
    let b_tax = &format!("{B}/dept/tax");
    let a_court = &format!("{A}/dept/court");
    let b_eco = &format!("{B}/dept/eco");
    let b_hrss = &format!("{B}/dept/hrss");
    let a_samr = &format!("{A}/dept/samr");
    let rows: &[(&str, &str, &str, &str, Outcome)] = &[
        // The legal representative's id: masked for A's tax, pseudonym for B's, raw for A's court.
        (
            a_tax,
            "tax-administration",
            "registration",
            "legal_rep_id",
            form("resident_id"),
        ),
        (
            b_tax,
            "tax-administration",
            "registration",
            "legal_rep_id",
            form("pseudonym"),
        ),
        (
            a_court,
            "enforcement",
            "registration",
            "legal_rep_id",
            form("raw"),
        ),
        (
            a_tax,
            "tax-administration",
            "registration",
            "legal_rep_name",
            form("chinese_name"),
        ),
        (
            a_tax,
            "tax-administration",
            "registration",
            "legal_rep_mobile",
            no(FieldNotGranted),
        ),
        (
            a_tax,
            "tax-administration",
            "registration",
            "uscc",
            form("raw"),
        ),
        (
            b_eco,
            "environmental-supervision",
            "registration",
            "name",
            form("raw"),
        ),
        (
            b_eco,
            "environmental-supervision",
            "registration",
            "legal_rep_id",
            no(FieldNotGranted),
        ),
        // Purposes.
        (
            a_tax,
            "enforcement",
            "registration",
            "legal_rep_id",
            no(FieldNotGranted),
        ),
        (
            a_court,
            "tax-administration",
            "dishonest-debtor",
            "debtor_id",
            no(PurposeNotGranted),
        ),
        (
            a_tax,
            "curiosity",
            "registration",
            "uscc",
            no(UnknownPurpose),
        ),
        (a_tax, "", "admin-licence", "uscc", no(UnknownPurpose)),
        // Sharing attributes.
        (
            b_eco,
            "market-supervision",
            "admin-licence",
            "licence_no",
            form("raw"),
        ),
        (
            a_samr,
            "market-supervision",
            "inspection-notes",
            "notes",
            no(NotShared),
        ),
        (
            b_eco,
            "tax-administration",
            "tax-credit-rating",
            "rating",
            no(CallerNotGranted),
        ),
        (
            b_hrss,
            "social-insurance",
            "tax-credit-rating",
            "rating",
            form("raw"),
        ),
        // Generalised amounts.
        (
            b_eco,
            "public-procurement",
            "admin-penalty",
            "amount",
            form("generalise(amount,10000)"),
        ),
        (
            a_court,
            "enforcement",
            "admin-penalty",
            "amount",
            form("raw"),
        ),
        (
            a_court,
            "enforcement",
            "admin-penalty",
            "legal_rep_id",
            form("raw"),
        ),
        (
            b_eco,
            "public-procurement",
            "admin-penalty",
            "legal_rep_id",
            no(FieldNotGranted),
        ),
        // Unknown things.
        (
            a_tax,
            "tax-administration",
            "no-such-item",
            "x",
            no(NotInCatalog),
        ),
        (
            a_tax,
            "tax-administration",
            "registration",
            "phone",
            no(NotInCatalog),
        ),
        (
            a_samr,
            "market-supervision",
            "inspection-notes",
            "phone",
            no(NotInCatalog),
        ),
        // Non-department kinds get nothing, even for unconditional items.
        (
            &format!("{A}/officer/auditor"),
            "market-supervision",
            "admin-licence",
            "uscc",
            no(CallerNotDepartment),
        ),
        (
            &format!("{B}/operator/admin"),
            "market-supervision",
            "admin-licence",
            "uscc",
            no(CallerNotDepartment),
        ),
        // Cross-region: grants name departments of one trust domain only.
        (
            &format!("{B}/dept/court"),
            "enforcement",
            "dishonest-debtor",
            "debtor_id",
            no(CallerNotGranted),
        ),
        (
            &format!("{B}/dept/samr"),
            "public-procurement",
            "social-insurance-arrears",
            "arrears_amount",
            no(CallerNotGranted),
        ),
        (
            &format!("{A}/dept/hrss"),
            "social-insurance",
            "dishonest-debtor",
            "debtor_id",
            no(PurposeNotGranted),
        ),
        (
            b_hrss,
            "social-insurance",
            "dishonest-debtor",
            "debtor_id",
            form("pseudonym"),
        ),
        // A department of a region the catalog does not know.
        (
            "spiffe://region-c.credit.test/dept/tax",
            "tax-administration",
            "registration",
            "uscc",
            no(CallerNotGranted),
        ),
    ];
    for (caller, purpose, item, field, expected) in rows {
        check(caller, purpose, item, field, *expected);
    }
}

#[test]
fn item_without_fields_means_all_fields_and_duplicates_collapse() {
    let catalog = demo();
    let caller = id(&format!("{A}/dept/tax"));
    let req = [
        ItemRequest::all("registration"),
        ItemRequest::fields("registration", &["uscc", "uscc", "phone"]),
        ItemRequest::all("nope"),
        ItemRequest::all("inspection-notes"),
    ];
    let d = decide(&catalog, &caller, "tax-administration", &req);
    let reg = catalog
        .catalog()
        .item("registration")
        .map_or(0, |i| i.fields.len());
    assert_eq!(d.items()[0].fields().len(), reg);
    assert_eq!(d.items()[0].refused(), None);
    assert_eq!(d.items()[1].fields().len(), 2);
    assert_eq!(d.items()[2].refused(), Some(Withheld::NotInCatalog));
    assert!(d.items()[2].fields().is_empty());
    assert_eq!(d.items()[3].refused(), Some(Withheld::NotShared));
    assert!(
        d.items()[3]
            .fields()
            .iter()
            .all(|f| f.outcome() == Outcome::Withheld(Withheld::NotShared))
    );
    assert!(d.granted_items().next().is_some());
}

fn record() -> Vec<(&'static str, &'static str)> {
    vec![
        ("uscc", "91330100716105852F"),
        ("name", "杭州某某科技有限公司"),
        ("status", "存续"),
        ("established", "2009-03-17"),
        ("registered_capital", "1500000.00"),
        ("division", "330106"),
        ("legal_rep_name", "欧阳娜娜"),
        ("legal_rep_id", "11010519491231002X"),
        ("legal_rep_mobile", "13812341234"),
        ("not_requested", "secret"),
    ]
}

#[test]
fn disclose_applies_the_decided_forms() {
    let catalog = demo();
    let master = [9u8; 32];
    let a_tax = id(&format!("{A}/dept/tax"));
    let d = decide(
        &catalog,
        &a_tax,
        "tax-administration",
        &[ItemRequest::all("registration")],
    );
    let key = RecipientKey::derive(&master, &a_tax);
    let out = d
        .disclose("registration", record().as_slice(), &key)
        .unwrap_or_default();
    let get = |n: &str| {
        out.fields
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("uscc"), Some("91330100716105852F"));
    assert_eq!(get("legal_rep_id"), Some("1****************X"));
    assert_eq!(get("legal_rep_name"), Some("欧阳**"));
    assert_eq!(get("legal_rep_mobile"), None);
    assert_eq!(get("not_requested"), None);
    assert_eq!(
        out.withheld,
        vec![("legal_rep_mobile", Withheld::FieldNotGranted)]
    );

    let b_tax = id(&format!("{B}/dept/tax"));
    let d = decide(
        &catalog,
        &b_tax,
        "tax-administration",
        &[ItemRequest::all("registration")],
    );
    let key_b = RecipientKey::derive(&master, &b_tax);
    let out = d
        .disclose("registration", record().as_slice(), &key_b)
        .unwrap_or_default();
    let pid = out
        .fields
        .iter()
        .find(|(k, _)| *k == "legal_rep_id")
        .map(|(_, v)| v.clone());
    assert!(pid.is_some_and(|p| p.starts_with("p_") && p.len() == 34));

    // The key must be the decision's caller's.
    assert_eq!(
        d.disclose("registration", record().as_slice(), &key),
        Err(DiscloseError::WrongRecipient)
    );
    assert!(matches!(
        d.disclose("admin-licence", record().as_slice(), &key_b),
        Err(DiscloseError::NotDecided(_))
    ));
}

#[test]
fn values_that_do_not_fit_their_rule_are_withheld_not_sent() {
    let catalog = demo();
    let caller = id(&format!("{B}/dept/eco"));
    let d = decide(
        &catalog,
        &caller,
        "public-procurement",
        &[ItemRequest::fields("admin-penalty", &["amount", "uscc"])],
    );
    assert_eq!(
        d.items()[0].fields()[0].outcome(),
        Outcome::Granted(crate::desensitize::Form::Rule(Rule::Generalise(
            Generalise::Amount { width: 10000 }
        )))
    );
    let key = RecipientKey::derive(&[1; 32], &caller);
    let out = d
        .disclose(
            "admin-penalty",
            &[
                ("amount", "about 5000 yuan"),
                ("uscc", "91330100716105852F"),
            ][..],
            &key,
        )
        .unwrap_or_default();
    assert_eq!(out.withheld, vec![("amount", Withheld::NotDesensitizable)]);
    assert_eq!(out.fields, vec![("uscc", "91330100716105852F".to_owned())]);
}

/// A field granted in form `suppress` is withheld from every record alike: whether a record
/// holds a value for it is itself what the form keeps back.
#[test]
fn a_suppressed_field_tells_nothing_of_whether_the_record_has_it() {
    let text = crate::catalog::testing::DEMO.replacen(
        "departments = [\"tax\"]\npurposes = [\"tax-administration\"]\nfields = [\"legal_rep_name\", \"legal_rep_id\"]\n",
        "departments = [\"tax\"]\npurposes = [\"tax-administration\"]\nfields = [\"legal_rep_name\", \"legal_rep_id\", \"legal_rep_mobile\"]\nforms = { legal_rep_mobile = \"suppress\" }\n",
        1,
    );
    assert_ne!(
        text,
        crate::catalog::testing::DEMO,
        "region A's tax grant is edited"
    );
    let catalog = crate::catalog::testing::signed("suppress.toml", &text);
    let caller = id(&format!("{A}/dept/tax"));
    let d = decide(
        &catalog,
        &caller,
        "tax-administration",
        &[ItemRequest::fields(
            "registration",
            &["uscc", "legal_rep_mobile"],
        )],
    );
    assert_eq!(d.items()[0].fields()[1].outcome(), form("suppress"));
    let key = RecipientKey::derive(&[3; 32], &caller);
    let with_mobile = d
        .disclose(
            "registration",
            &[
                ("uscc", "91330100716105852F"),
                ("legal_rep_mobile", "13812341234"),
            ][..],
            &key,
        )
        .unwrap_or_default();
    let without = d
        .disclose("registration", &[("uscc", "91330100716105852F")][..], &key)
        .unwrap_or_default();
    assert_eq!(with_mobile, without);
    assert_eq!(
        without.withheld,
        vec![("legal_rep_mobile", Withheld::Suppressed)]
    );
}

#[test]
fn effective_grants_match_decisions() {
    let catalog = demo();
    let b_eco = id(&format!("{B}/dept/eco"));
    let grants = effective_grants(&catalog, &b_eco);
    assert!(
        grants
            .iter()
            .all(|p| p.items.iter().all(|i| i.item != "tax-credit-rating"))
    );
    let env = grants
        .iter()
        .find(|p| p.purpose == "environmental-supervision");
    assert!(env.is_some_and(|p| p.items.iter().any(|i| i.item == "registration")));
    let officer = id(&format!("{A}/officer/auditor"));
    assert!(effective_grants(&catalog, &officer).is_empty());
    let b_tax = id(&format!("{B}/dept/tax"));
    let json = serde_json::to_string(&effective_grants(&catalog, &b_tax)).unwrap_or_default();
    assert!(
        json.contains(r#"{"field":"legal_rep_id","form":"pseudonym"}"#),
        "{json}"
    );
}
