//! Subject identifiers: the Unified Social Credit Code of a legal person (GB 32100-2015) and the
//! resident identity number of a natural person (GB 11643-1999).
//!
//! Promise 9 of design.md: a malformed identifier gets a precise error (which position, which
//! character, which check character was expected) before any database work, so a typo is told
//! apart from a miss and cannot be used to probe the store.
//!
//! Errors never echo the whole identifier: it is personal data and error messages end up in logs.
//!
//! Case: a USCC is upper case by definition and lower case is refused, because a code is also a
//! key and two spellings of one subject must not count as two subjects (harvest quotas). The final
//! `X` of a resident identity number is the Roman numeral ten and is very often typed as `x`:
//! it is accepted and normalised to `X`, so the canonical form is still unique.
//!
//! Architecture invariant: pure (no I/O, no clock, no randomness source of its own).

use std::fmt;
use std::str::FromStr;

/// The 31 characters of a USCC, in value order (no I, O, S, V, Z).
pub const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// `3^(i-1) mod 31`.
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const RID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const RID_CHECK: &[u8; 11] = b"10X98765432";
/// Birth years outside this range are refused: no resident alive was born earlier, and the
/// module has no clock to say what "the future" is (see [`ResidentId::parse_as_of`]).
const BIRTH_YEARS: std::ops::RangeInclusive<i32> = 1850..=2100;

/// Which identifier an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Uscc,
    ResidentId,
    /// A subject identifier whose kind could not be told from its shape.
    Subject,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Uscc => "unified social credit code",
            IdKind::ResidentId => "resident identity number",
            IdKind::Subject => "subject identifier",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("{kind}: wrong length (expected 18, got {got})")]
    WrongLength { kind: IdKind, got: usize },
    /// `position` counts characters from 1.
    #[error("{kind}: invalid character {ch:?} at position {position}")]
    InvalidChar {
        kind: IdKind,
        ch: char,
        position: usize,
    },
    #[error("{kind}: check character expected {expected:?} found {found:?}")]
    CheckMismatch {
        kind: IdKind,
        expected: char,
        found: char,
    },
    // The two birth-date errors name the characters, never their digits: the message goes back
    // to the caller and into ingest reports and client logs, and a birth date is personal.
    #[error("resident identity number: characters 7-14 are not a real birth date (YYYYMMDD)")]
    InvalidBirthDate,
    #[error("resident identity number: its birth date (characters 7-14) is after {0}")]
    BirthDateInFuture(String),
    #[error(
        "subject identifier is valid both as a unified social credit code and as a resident \
         identity number; state the subject type"
    )]
    Ambiguous,
}

/// Common first steps: length in characters, then per-character alphabet check.
fn shape(
    s: &str,
    kind: IdKind,
    ok: impl Fn(usize, u8) -> bool,
) -> Result<[u8; 18], IdentifierError> {
    let got = s.chars().count();
    if got != 18 {
        return Err(IdentifierError::WrongLength { kind, got });
    }
    let mut out = [0u8; 18];
    for (i, ch) in s.chars().enumerate() {
        let byte = u8::try_from(ch).ok().filter(|b| b.is_ascii() && ok(i, *b));
        match byte {
            Some(b) => out[i] = b,
            None => {
                return Err(IdentifierError::InvalidChar {
                    kind,
                    ch,
                    position: i + 1,
                });
            }
        }
    }
    Ok(out)
}

fn uscc_value(b: u8) -> Option<u32> {
    USCC_ALPHABET.iter().position(|&c| c == b).map(|v| v as u32)
}

fn uscc_check(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .zip(USCC_WEIGHTS)
        .map(|(&b, w)| uscc_value(b).unwrap_or(0) * w)
        .sum();
    USCC_ALPHABET[((31 - sum % 31) % 31) as usize]
}

fn rid_check(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .zip(RID_WEIGHTS)
        .map(|(&b, w)| u32::from(b - b'0') * w)
        .sum();
    RID_CHECK[(sum % 11) as usize]
}

/// A Unified Social Credit Code whose check character is correct.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uscc([u8; 18]);

impl Uscc {
    pub fn parse(s: &str) -> Result<Self, IdentifierError> {
        let kind = IdKind::Uscc;
        let b = shape(s, kind, |_, b| uscc_value(b).is_some())?;
        let expected = uscc_check(&b[..17]);
        if expected != b[17] {
            return Err(IdentifierError::CheckMismatch {
                kind,
                expected: char::from(expected),
                found: char::from(b[17]),
            });
        }
        Ok(Self(b))
    }

    /// The code whose first 17 characters are `body`, with its check character appended:
    /// what a client holding a code without its check character (or a test) needs.
    pub fn complete(body: &str) -> Result<Self, IdentifierError> {
        let check = char::from(uscc_check(body.as_bytes()));
        Self::parse(&format!("{body}{check}"))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The administrative division code (GB/T 2260) of positions 3–8.
    pub fn division_code(&self) -> &str {
        &self.as_str()[2..8]
    }

    /// A valid, realistic-looking code drawn from `next_u64`, for synthetic data.
    ///
    /// Positions 9–17 carry a correct GB 11714 organisation code check character, so the codes
    /// survive stricter validators than ours (ShardingSphere's random replacers do not).
    pub fn generate(next_u64: &mut impl FnMut() -> u64) -> Self {
        const REG: &[u8] = b"1259Y";
        const CAT: &[u8] = b"1239";
        let mut b = [b'0'; 18];
        b[0] = REG[(next_u64() % REG.len() as u64) as usize];
        b[1] = CAT[(next_u64() % CAT.len() as u64) as usize];
        let div = DIVISIONS[(next_u64() % DIVISIONS.len() as u64) as usize];
        b[2..8].copy_from_slice(div.as_bytes());
        let mut org = next_u64();
        let mut sum = 0u32;
        for (i, w) in [3u32, 7, 9, 10, 5, 8, 4, 2].into_iter().enumerate() {
            let d = (org % 10) as u8;
            org /= 10;
            b[8 + i] = b'0' + d;
            sum += u32::from(d) * w;
        }
        b[16] = match 11 - sum % 11 {
            10 => b'X',
            11 => b'0',
            c => b'0' + c as u8,
        };
        b[17] = uscc_check(&b[..17]);
        Self(b)
    }

    /// [`Uscc::generate`] from a seed: the same seed always gives the same code.
    pub fn from_seed(seed: u64) -> Self {
        Self::generate(&mut splitmix64(seed))
    }
}

/// A resident identity number with a real birth date and a correct check character.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResidentId([u8; 18]);

impl ResidentId {
    /// Accepts a trailing lower-case `x` and stores it as `X` (see the module documentation).
    pub fn parse(s: &str) -> Result<Self, IdentifierError> {
        let kind = IdKind::ResidentId;
        let mut b = shape(s, kind, |i, b| {
            b.is_ascii_digit() || (i == 17 && (b == b'X' || b == b'x'))
        })?;
        b[17] = b[17].to_ascii_uppercase();
        let date = &b[6..14];
        let (y, m, d) = (num(&date[..4]), num(&date[4..6]), num(&date[6..8]));
        let valid = BIRTH_YEARS.contains(&(y as i32))
            && u8::try_from(m)
                .ok()
                .and_then(|m| time::Month::try_from(m).ok())
                .and_then(|m| time::Date::from_calendar_date(y as i32, m, d as u8).ok())
                .is_some();
        if !valid {
            return Err(IdentifierError::InvalidBirthDate);
        }
        let expected = rid_check(&b[..17]);
        if expected != b[17] {
            return Err(IdentifierError::CheckMismatch {
                kind,
                expected: char::from(expected),
                found: char::from(b[17]),
            });
        }
        Ok(Self(b))
    }

    /// The number whose first 17 digits are `body`, with its check character appended.
    pub fn complete(body: &str) -> Result<Self, IdentifierError> {
        if !(body.len() == 17 && body.bytes().all(|b| b.is_ascii_digit())) {
            return Err(IdentifierError::WrongLength {
                kind: IdKind::ResidentId,
                got: body.chars().count() + 1,
            });
        }
        let check = char::from(rid_check(body.as_bytes()));
        Self::parse(&format!("{body}{check}"))
    }

    /// [`ResidentId::parse`], also refusing a birth date after `today` (which the caller's clock
    /// supplies: this module has none).
    pub fn parse_as_of(s: &str, today: time::Date) -> Result<Self, IdentifierError> {
        let id = Self::parse(s)?;
        let birth = id.birth_date();
        if birth > today {
            return Err(IdentifierError::BirthDateInFuture(today.to_string()));
        }
        Ok(id)
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn birth_date(&self) -> time::Date {
        let b = &self.0[6..14];
        time::Month::try_from(num(&b[4..6]) as u8)
            .ok()
            .and_then(|m| {
                time::Date::from_calendar_date(num(&b[..4]) as i32, m, num(&b[6..8]) as u8).ok()
            })
            // parse() proved the date valid; MIN is never reached.
            .unwrap_or(time::Date::MIN)
    }

    /// A valid number drawn from `next_u64`: a real address code, a birth date between
    /// 1940-01-01 and 2005-12-31, any sequence number, the right check character.
    pub fn generate(next_u64: &mut impl FnMut() -> u64) -> Self {
        let mut b = [b'0'; 18];
        let div = DIVISIONS[(next_u64() % DIVISIONS.len() as u64) as usize];
        b[..6].copy_from_slice(div.as_bytes());
        const FIRST: i32 = time::macros::date!(1940 - 01 - 01).to_julian_day();
        const LAST: i32 = time::macros::date!(2005 - 12 - 31).to_julian_day();
        let day = FIRST + (next_u64() % (LAST - FIRST + 1) as u64) as i32;
        let date = time::Date::from_julian_day(day).unwrap_or(time::Date::MIN);
        let text = format!(
            "{:04}{:02}{:02}{:03}",
            date.year(),
            u8::from(date.month()),
            date.day(),
            next_u64() % 1000
        );
        b[6..17].copy_from_slice(text.as_bytes());
        b[17] = rid_check(&b[..17]);
        Self(b)
    }

    /// [`ResidentId::generate`] from a seed: the same seed always gives the same number.
    pub fn from_seed(seed: u64) -> Self {
        Self::generate(&mut splitmix64(seed))
    }
}

fn num(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |acc, &d| acc * 10 + u32::from(d.wrapping_sub(b'0')))
}

/// A small deterministic generator, so that synthetic data is reproducible without a rand crate.
pub fn splitmix64(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Real GB/T 2260 county-level codes, so generated identifiers look like real ones.
const DIVISIONS: &[&str] = &[
    "110105", "110108", "120101", "310104", "310115", "320102", "330106", "340104", "370202",
    "420106", "440106", "440305", "500103", "510104", "610113", "650102",
];

/// Who a record is about: a legal person by USCC or a natural person by resident number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    LegalPerson(Uscc),
    NaturalPerson(ResidentId),
}

impl Subject {
    /// Tells the kind by shape. Both are 18 characters, and an all-digit string can be valid as
    /// both (about one in 31 valid resident numbers is also a valid USCC): then it is refused as
    /// [`IdentifierError::Ambiguous`] rather than guessed, and the caller must say which.
    pub fn parse(s: &str) -> Result<Self, IdentifierError> {
        match (ResidentId::parse(s), Uscc::parse(s)) {
            (Ok(_), Ok(_)) => Err(IdentifierError::Ambiguous),
            (Ok(r), Err(_)) => Ok(Subject::NaturalPerson(r)),
            (Err(_), Ok(u)) => Ok(Subject::LegalPerson(u)),
            (Err(r), Err(u)) => {
                let looks_personal = s.chars().count() == 18
                    && s.chars()
                        .enumerate()
                        .all(|(i, c)| c.is_ascii_digit() || (i == 17 && matches!(c, 'X' | 'x')));
                Err(if looks_personal { r } else { u })
            }
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Subject::LegalPerson(u) => u.as_str(),
            Subject::NaturalPerson(r) => r.as_str(),
        }
    }
}

macro_rules! text_impls {
    ($t:ty) => {
        impl FromStr for $t {
            type Err = IdentifierError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        /// Debug does not print the identifier: it is personal data and Debug output reaches logs.
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(..{})", stringify!($t), &self.as_str()[14..])
            }
        }
    };
}
text_impls!(Uscc);
text_impls!(ResidentId);

impl FromStr for Subject {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests;
