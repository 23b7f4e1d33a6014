//! Applying a rule to one value. Each rule allocates its output once, sized up front.

use super::{Applied, Generalise, RecipientKey, Rule, RuleError};

/// The mask character. One per masked character, whatever that character's width or encoding.
const MASK: char = '*';

/// Common compound surnames; a longer list only changes which names keep two characters.
const COMPOUND_SURNAMES: [&str; 16] = [
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒",
    "夏侯", "轩辕", "令狐", "司空",
];

/// Characters that belong to a street-level address; meeting one before a district marker means
/// the address has no recognisable district and is masked whole.
const STREET: &[char] = &[
    '路', '街', '道', '号', '村', '镇', '乡', '巷', '弄', '楼', '栋', '室', '组', '屯', '里',
];

impl Rule {
    /// Applies the rule. Only `generalise` can fail (see the module documentation); every other
    /// rule returns a masked value for anything it does not recognise.
    pub fn apply(&self, value: &str, key: &RecipientKey) -> Result<Applied, RuleError> {
        let out = match *self {
            Rule::Mask {
                keep_first,
                keep_last,
            } => mask(value, usize::from(keep_first), usize::from(keep_last)),
            Rule::ResidentId => mask(value, 1, 1),
            Rule::ChineseName => chinese_name(value),
            Rule::Mobile => mobile(value),
            Rule::Address => match address_prefix(value) {
                Some(prefix) => prefix.to_owned(),
                None => mask(value, 0, 0),
            },
            Rule::Pseudonym => {
                let mut out = String::with_capacity(34);
                key.pseudonym_into(value, &mut out);
                out
            }
            Rule::Suppress => return Ok(Applied::Suppressed),
            Rule::Generalise(g) => generalise(g, value).ok_or(RuleError::NotApplicable {
                rule: *self,
                expected: g.expects(),
            })?,
        };
        Ok(Applied::Value(out))
    }
}

impl Generalise {
    fn expects(self) -> &'static str {
        match self {
            Generalise::Year | Generalise::Month => "a date YYYY-MM-DD",
            Generalise::Amount { .. } => "a non-negative decimal amount",
            Generalise::Province | Generalise::City => "a 6-digit administrative division code",
        }
    }
}

/// Keeps `first` and `last` characters; masks the whole value when it has no more than
/// `first + last` characters, so a short value is never returned in clear.
pub(crate) fn mask(value: &str, first: usize, last: usize) -> String {
    let n = value.chars().count();
    let whole = n <= first + last;
    // A '*' is one byte, never longer than the character it replaces.
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        if !whole && (i < first || i >= n - last) {
            out.push(c);
        } else {
            out.push(MASK);
        }
    }
    out
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x323AF)
}

fn chinese_name(value: &str) -> String {
    if !value.chars().next().is_some_and(is_cjk) {
        return mask(value, 0, 0);
    }
    let surname = if COMPOUND_SURNAMES.iter().any(|s| value.starts_with(s)) {
        2
    } else {
        1
    };
    mask(value, surname, 0)
}

fn mobile(value: &str) -> String {
    let b = value.as_bytes();
    let is_mobile = b.len() == 11
        && b.iter().all(u8::is_ascii_digit)
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1]);
    if !is_mobile {
        return mask(value, 0, 0);
    }
    // All ASCII: byte offsets are character offsets.
    let mut out = String::with_capacity(11);
    out.push_str(&value[..3]);
    out.push_str("****");
    out.push_str(&value[7..]);
    out
}

/// The earliest end (byte offset) of any marker in `s`, if the text before it is `1..=max_chars`
/// characters long and holds no street-level character.
fn segment_end(s: &str, markers: &[&str], max_chars: usize) -> Option<usize> {
    markers
        .iter()
        .filter_map(|m| s.find(m).map(|i| (i, i + m.len())))
        .filter(|&(start, _)| {
            let head = &s[..start];
            let n = head.chars().count();
            (1..=max_chars).contains(&n) && !head.contains(STREET)
        })
        .map(|(_, end)| end)
        .min()
}

/// The address down to its district: past an optional province (省, 自治区, 特别行政区) and
/// city (市, 州, 地区, 盟) part, through the first 区/县/旗 within a few characters.
/// `None` when no district is found that way: the caller then masks the whole value.
pub(crate) fn address_prefix(value: &str) -> Option<&str> {
    let mut pos = segment_end(value, &["省", "自治区", "特别行政区"], 10).unwrap_or(0);
    pos += segment_end(&value[pos..], &["市", "州", "地区", "盟"], 10).unwrap_or(0);
    for (n, (i, c)) in value[pos..].char_indices().enumerate() {
        if n >= 8 || STREET.contains(&c) {
            return None;
        }
        if n >= 1 && matches!(c, '区' | '县' | '旗') {
            return Some(&value[..pos + i + c.len_utf8()]);
        }
    }
    None
}

fn generalise(g: Generalise, value: &str) -> Option<String> {
    match g {
        Generalise::Year | Generalise::Month => {
            let b = value.as_bytes();
            let shape = b.len() == 10
                && b[4] == b'-'
                && b[7] == b'-'
                && b.iter()
                    .enumerate()
                    .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
            if !shape {
                return None;
            }
            let year: i32 = value[..4].parse().ok()?;
            let month: u8 = value[5..7].parse().ok()?;
            let day: u8 = value[8..].parse().ok()?;
            time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
            Some(value[..if g == Generalise::Year { 4 } else { 7 }].to_owned())
        }
        Generalise::Amount { width } => {
            let (int, frac) = value.split_once('.').unwrap_or((value, "0"));
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if !digits(int) || !digits(frac) || width == 0 {
                return None;
            }
            let amount: u64 = int.parse().ok()?;
            let low = amount / width * width;
            let high = low.checked_add(width)?;
            Some(format!("{low}-{high}"))
        }
        Generalise::Province | Generalise::City => {
            let b = value.as_bytes();
            if b.len() != 6 || !b.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let keep = if g == Generalise::Province { 2 } else { 4 };
            let mut out = String::with_capacity(6);
            out.push_str(&value[..keep]);
            out.push_str(&"0000"[..6 - keep]);
            Some(out)
        }
    }
}
