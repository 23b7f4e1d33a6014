//! One positive and one negative case (at least) for every field type.

use time::macros::date;

use super::check_field;
use crate::catalog::{Field, FieldType};
use crate::desensitize::Form;

const TODAY: time::Date = date!(2026 - 11 - 23);

fn field(ty: FieldType) -> Field {
    Field {
        name: "f".into(),
        ty,
        personal: false,
        values: if ty == FieldType::Enum {
            vec!["A".into(), "B".into()]
        } else {
            Vec::new()
        },
        form: Form::Raw,
    }
}

/// `check(type, value, expected)`: `Ok(canonical)` or `Err(reason fragment)`.
fn check(ty: FieldType, value: &str, expected: Result<&str, &str>) {
    let got = check_field(&field(ty), value, TODAY);
    match (&got, expected) {
        (Ok(v), Ok(e)) => assert_eq!(v, e, "{ty:?} {value:?}"),
        (Err(r), Err(e)) => {
            assert!(r.contains(e), "{ty:?} {value:?}: {r:?} lacks {e:?}");
            assert!(
                value.len() < 6 || !r.contains(value),
                "reason echoes the value: {r}"
            );
        }
        _ => panic!("{ty:?} {value:?}: got {got:?}, expected {expected:?}"),
    }
}

#[test]
fn dates() {
    use FieldType::Date;
    check(Date, "2026-02-28", Ok("2026-02-28"));
    check(Date, "2024-02-29", Ok("2024-02-29"));
    check(Date, "2026-02-29", Err("not a calendar date"));
    check(Date, "2026-13-01", Err("not a calendar date"));
    check(Date, "2026-1-01", Err("YYYY-MM-DD"));
    check(Date, "2026/01/01", Err("YYYY-MM-DD"));
    check(Date, "+2026-01-0", Err("YYYY-MM-DD"));
}

#[test]
fn amounts() {
    use FieldType::Amount;
    for ok in ["0", "0.5", "12000", "12000.00", "999999999999999.99"] {
        check(Amount, ok, Ok(ok));
    }
    check(Amount, "-1", Err("negative"));
    check(Amount, "1.234", Err("more than 2 decimals"));
    check(Amount, "1.", Err("digits after the decimal point"));
    check(Amount, ".5", Err("decimal number"));
    check(Amount, "1e3", Err("decimal number"));
    check(Amount, "1,000", Err("decimal number"));
    check(Amount, "007", Err("leading zero"));
    check(Amount, "1000000000000000", Err("more than 15 digits"));
}

#[test]
fn integers_and_booleans() {
    use FieldType::{Boolean, Integer};
    check(Integer, "2025", Ok("2025"));
    check(Integer, "-3", Ok("-3"));
    check(Integer, "0", Ok("0"));
    check(Integer, "1.0", Err("expected an integer"));
    check(Integer, "+1", Err("expected an integer"));
    check(Integer, "-0", Err("expected an integer"));
    check(Integer, "01", Err("leading zero"));
    check(Integer, "99999999999999999999", Err("out of range"));
    check(Boolean, "true", Ok("true"));
    check(Boolean, "false", Ok("false"));
    check(Boolean, "yes", Err("true or false"));
    check(Boolean, "TRUE", Err("true or false"));
}

#[test]
fn enums_and_divisions() {
    use FieldType::{DivisionCode, Enum};
    check(Enum, "A", Ok("A"));
    check(Enum, "C", Err("not one of A, B"));
    check(Enum, "a", Err("not one of A, B"));
    check(DivisionCode, "110105", Ok("110105"));
    check(DivisionCode, "650102", Ok("650102"));
    check(DivisionCode, "11010", Err("6-digit"));
    check(DivisionCode, "11010a", Err("6-digit"));
    check(DivisionCode, "990105", Err("province"));
}

#[test]
fn identifiers_are_checked_and_canonical() {
    use FieldType::{ResidentId, Uscc};
    check(Uscc, "91330100716105852F", Ok("91330100716105852F"));
    check(
        Uscc,
        "913301007161058523",
        Err("check character expected 'F' found '3'"),
    );
    check(
        Uscc,
        "91330100716105852f",
        Err("invalid character 'f' at position 18"),
    );
    check(ResidentId, "11010519491231002x", Ok("11010519491231002X"));
    check(
        ResidentId,
        "110105194912310023",
        Err("check character expected 'X' found '3'"),
    );
    check(
        ResidentId,
        "1101051949123100",
        Err("wrong length (expected 18, got 16)"),
    );
    // Born after today, with a correct check character.
    check(
        ResidentId,
        "110105202701010016",
        Err("its birth date (characters 7-14) is after 2026-11-23"),
    );
}

#[test]
fn mobiles() {
    use FieldType::Mobile;
    check(Mobile, "13812345678", Ok("13812345678"));
    check(Mobile, "19912345678", Ok("19912345678"));
    check(Mobile, "12812345678", Err("starting 13 to 19"));
    check(Mobile, "23812345678", Err("starting 13 to 19"));
    check(Mobile, "1381234567", Err("11 digits"));
    check(Mobile, "+8613812345678", Err("11 digits"));
}

#[test]
fn texts() {
    use FieldType::{Address, String, Text};
    check(String, "北京星河科技有限公司", Ok("北京星河科技有限公司"));
    check(String, "𠮷伟", Ok("𠮷伟"));
    check(String, "   ", Err("empty"));
    check(String, "a\nb", Err("control character at position 2"));
    check(
        String,
        &"长".repeat(201),
        Err("too long (201 characters, at most 200)"),
    );
    check(String, &"𠮷".repeat(200), Ok(&"𠮷".repeat(200)));
    check(
        Address,
        "北京市朝阳区建国路88号",
        Ok("北京市朝阳区建国路88号"),
    );
    check(Address, "\t", Err("empty"));
    check(Address, &"路".repeat(201), Err("too long"));
    check(Text, "第一行\n第二行", Ok("第一行\n第二行"));
    check(Text, "bell\u{7}", Err("control character"));
    check(Text, &"字".repeat(4001), Err("too long"));
}
