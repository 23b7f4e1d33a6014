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

/// Municipalities directly under the central government, often written without their 市: the
/// only city part recognised without a city marker.
const MUNICIPALITIES: [&str; 4] = ["北京", "上海", "天津", "重庆"];

/// Longest district name kept, in characters before its 区/县/旗 (`鄂温克族自治旗` has 6).
/// A longer one is masked whole.
const MAX_DISTRICT_NAME: usize = 7;

/// Characters that, just before a 区, make a place that is no district: one below it (小区,
/// 社区, 园区, 校区, 厂区, 景区, 街区, 片区, 营区, 院区, 库区, 矿区, 港区, 学区, 宿舍区) or a zone
/// beside the administrative divisions (开发区, 工业区, 商业区, 保税区, 自贸区, 示范区, 试验区,
/// 合作区, 旅游区, 度假区, 服务区, 生活区, 办公区, 住宅区, 居住区, 功能区, 集聚区, 聚集区, 军区).
/// Such a 区 ends no district, and the value is masked whole. The few real districts written
/// this way (阳泉市矿区) are masked whole too: the safe side.
const NOT_DISTRICT_BEFORE_QU: &[char] = &[
    '小', '社', '园', '校', '厂', '景', '街', '片', '营', '院', '库', '矿', '港', '学', '舍', '发',
    '业', '税', '贸', '范', '验', '作', '游', '假', '务', '活', '公', '宅', '住', '能', '聚', '集',
    '军',
];

impl Rule {
    /// Whether `value` has the shape of what this rule gives: what a node checks of a value
    /// another node says it gave in this form before passing it on, so that a value sent in
    /// clear under a form's name does not leave in clear. Shapes, not provenance: a pseudonym
    /// is checked to look like one, not recomputed (it is keyed by the other node's secret).
    pub fn could_have_given(&self, value: &str, key: &RecipientKey) -> bool {
        let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        match *self {
            // Masks keep what they keep and mask the rest: applied again to what they gave,
            // they change nothing, while a value in clear would be masked.
            Rule::Mask { .. } | Rule::ResidentId | Rule::ChineseName | Rule::Address => {
                matches!(self.apply(value, key), Ok(Applied::Value(v)) if v == value)
            }
            // `138****1234` is no mobile number itself: masked again it would be masked whole.
            Rule::Mobile => {
                let chars: Vec<char> = value.chars().collect();
                let masked =
                    |range: std::ops::Range<usize>| chars[range].iter().all(|&c| c == MASK);
                !chars.is_empty()
                    && (masked(0..chars.len())
                        || (chars.len() == 11
                            && masked(3..7)
                            && chars[..3]
                                .iter()
                                .chain(&chars[7..])
                                .all(char::is_ascii_digit)))
            }
            Rule::Pseudonym => value.strip_prefix("p_").is_some_and(|h| {
                h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }),
            Rule::Generalise(Generalise::Year) => value.len() == 4 && digits(value),
            Rule::Generalise(Generalise::Month) => value
                .split_once('-')
                .is_some_and(|(y, m)| y.len() == 4 && digits(y) && m.len() == 2 && digits(m)),
            Rule::Generalise(Generalise::Province) => {
                value.len() == 6 && digits(value) && value.ends_with("0000")
            }
            Rule::Generalise(Generalise::City) => {
                value.len() == 6 && digits(value) && value.ends_with("00")
            }
            Rule::Generalise(Generalise::Amount { width }) => value
                .split_once('-')
                .and_then(|(low, high)| Some((low.parse::<u64>().ok()?, high.parse::<u64>().ok()?)))
                .is_some_and(|(low, high)| {
                    width > 0 && low % width == 0 && high.checked_sub(low) == Some(width)
                }),
            Rule::Suppress => false,
        }
    }

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

/// The address down to its district: an optional province (省, 自治区, 特别行政区), a city
/// (市, 州, 地区, 盟, or one of the [`MUNICIPALITIES`] without its 市), then a district name
/// ending in 区/县/旗 ([`district_end`]), all Chinese characters. `None` when the value does not
/// have that shape: the caller then masks the whole value. The rule fails closed: a value is
/// kept in part only when its district is recognised, never cut at a guess, since a cut in the
/// wrong place leaks the residential compound or street that follows.
pub(crate) fn address_prefix(value: &str) -> Option<&str> {
    let province = segment_end(value, &["省", "自治区", "特别行政区"], 10).unwrap_or(0);
    let city = match segment_end(&value[province..], &["市", "州", "地区", "盟"], 10) {
        Some(end) => province + end,
        None if province == 0 => MUNICIPALITIES.iter().find(|m| value.starts_with(*m))?.len(),
        None => return None,
    };
    let prefix = &value[..city + district_end(&value[city..])?];
    prefix.chars().all(is_cjk).then_some(prefix)
}

/// The end (byte offset) of the district name `s` starts with: 1 to [`MAX_DISTRICT_NAME`]
/// characters, no street-level character, then the first 区, 县 or 旗. That marker must end a
/// district name: not 小区, 社区, 开发区 … ([`NOT_DISTRICT_BEFORE_QU`], and 高新区), not the
/// start of 区域, not the 旗 of 红旗. Anything else is `None`, not a search for a later marker.
fn district_end(s: &str) -> Option<usize> {
    let mut before = None;
    for (n, (i, c)) in s.char_indices().enumerate() {
        if n > MAX_DISTRICT_NAME || STREET.contains(&c) {
            return None;
        }
        if n >= 1 && matches!(c, '区' | '县' | '旗') {
            let end = i + c.len_utf8();
            let not_district = match c {
                '区' => {
                    before.is_some_and(|b| NOT_DISTRICT_BEFORE_QU.contains(&b))
                        || s[..i].ends_with("高新")
                        || s[end..].starts_with('域')
                }
                '旗' => before == Some('红'),
                _ => false,
            };
            return (!not_district).then_some(end);
        }
        before = Some(c);
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
