//! Field-type checks: one function per catalog [`FieldType`], each returning the canonical text
//! to store or a reason that never quotes the value (it may be personal).

use time::Date;

use crate::catalog::{Field, FieldType};
use crate::identifier::{ResidentId, Uscc};

/// Longest `string` value, in characters.
pub const MAX_STRING_CHARS: usize = 200;
/// Longest `address` value, in characters.
pub const MAX_ADDRESS_CHARS: usize = 200;
/// Longest `text` value, in characters.
pub const MAX_TEXT_CHARS: usize = 4000;
/// Digits before the decimal point of an amount: enough for any real sum, small enough that
/// every consumer can hold it exactly.
const MAX_AMOUNT_DIGITS: usize = 15;

/// Province-level prefixes of GB/T 2260 division codes.
const PROVINCES: [&str; 34] = [
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
    "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71",
    "81", "82",
];

/// Checks `value` against `field`'s type; `today` bounds resident identity birth dates.
/// Returns the canonical form to store (identifiers upper case; otherwise the value itself).
pub fn check_field(field: &Field, value: &str, today: Date) -> Result<String, String> {
    match field.ty {
        FieldType::String => text(value, MAX_STRING_CHARS, false),
        FieldType::Address => text(value, MAX_ADDRESS_CHARS, false),
        FieldType::Text => text(value, MAX_TEXT_CHARS, true),
        FieldType::Date => date(value).map(|_| value.to_owned()),
        FieldType::Amount => amount(value),
        FieldType::Integer => integer(value),
        FieldType::Boolean => match value {
            "true" | "false" => Ok(value.to_owned()),
            _ => Err("expected true or false".into()),
        },
        FieldType::Enum => {
            if field.values.iter().any(|v| v == value) {
                Ok(value.to_owned())
            } else {
                Err(format!("not one of {}", field.values.join(", ")))
            }
        }
        FieldType::DivisionCode => division(value),
        FieldType::Uscc => Uscc::parse(value)
            .map(|u| u.to_string())
            .map_err(|e| e.to_string()),
        FieldType::ResidentId => ResidentId::parse_as_of(value, today)
            .map(|r| r.to_string())
            .map_err(|e| e.to_string()),
        FieldType::Mobile => mobile(value),
    }
}

/// Non-blank, bounded, no control characters (a `text` may hold line breaks and tabs).
fn text(value: &str, max: usize, multiline: bool) -> Result<String, String> {
    if value.trim().is_empty() {
        return Err("empty".into());
    }
    let count = value.chars().count();
    if count > max {
        return Err(format!("too long ({count} characters, at most {max})"));
    }
    let bad = value
        .chars()
        .position(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')));
    if let Some(i) = bad {
        return Err(format!("control character at position {}", i + 1));
    }
    Ok(value.to_owned())
}

/// Strictly `YYYY-MM-DD` with a real calendar date.
pub(super) fn date(value: &str) -> Result<Date, String> {
    let b = value.as_bytes();
    let shape = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape {
        return Err("expected a date as YYYY-MM-DD".into());
    }
    let n = |r: std::ops::Range<usize>| {
        b[r].iter()
            .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
    };
    let month = u8::try_from(n(5..7))
        .ok()
        .and_then(|m| time::Month::try_from(m).ok());
    month
        .and_then(|m| Date::from_calendar_date(n(0..4) as i32, m, n(8..10) as u8).ok())
        .ok_or_else(|| "not a calendar date".to_owned())
}

/// Non-negative decimal with at most 2 decimals and no leading zeros, e.g. `0.5`, `12000.00`.
fn amount(value: &str) -> Result<String, String> {
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    if value.starts_with('-') {
        return Err("negative amount".into());
    }
    if int.is_empty() || !int.bytes().all(|c| c.is_ascii_digit()) {
        return Err("expected a decimal number such as 1200.50".into());
    }
    if value.contains('.') && (frac.is_empty() || !frac.bytes().all(|c| c.is_ascii_digit())) {
        return Err("expected digits after the decimal point".into());
    }
    if frac.len() > 2 {
        return Err("more than 2 decimals".into());
    }
    if int.len() > 1 && int.starts_with('0') {
        return Err("leading zero".into());
    }
    if int.len() > MAX_AMOUNT_DIGITS {
        return Err(format!(
            "more than {MAX_AMOUNT_DIGITS} digits before the decimal point"
        ));
    }
    Ok(value.to_owned())
}

/// A decimal integer that fits in i64, without `+` or leading zeros.
fn integer(value: &str) -> Result<String, String> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err("expected an integer".into());
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err("leading zero".into());
    }
    if value == "-0" {
        return Err("expected an integer".into());
    }
    value
        .parse::<i64>()
        .map(|_| value.to_owned())
        .map_err(|_| "integer out of range".to_owned())
}

/// Six digits whose first two name a province (GB/T 2260).
fn division(value: &str) -> Result<String, String> {
    if value.len() != 6 || !value.bytes().all(|c| c.is_ascii_digit()) {
        return Err("expected a 6-digit division code".into());
    }
    if !PROVINCES.contains(&&value[..2]) {
        return Err("first two digits are not a province code".into());
    }
    Ok(value.to_owned())
}

/// `1[3-9]` followed by 9 digits.
fn mobile(value: &str) -> Result<String, String> {
    let b = value.as_bytes();
    if b.len() != 11 || !b.iter().all(u8::is_ascii_digit) {
        return Err("expected 11 digits".into());
    }
    if b[0] != b'1' || !(b'3'..=b'9').contains(&b[1]) {
        return Err("expected a mobile number starting 13 to 19".into());
    }
    Ok(value.to_owned())
}
