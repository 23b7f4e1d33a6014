//! De-sensitization rules the catalog can name for a personal field.
//!
//! Promise 4 of design.md: personal fields leave the node only in the form the catalog names
//! for that caller, character-correct on Chinese text. Three habits keep that promise where the
//! anchors broke it (design.md section 7):
//!
//! - Masks count Unicode scalar values, never bytes or UTF-16 units, so a character outside the
//!   Basic Multilingual Plane is masked as one character and never split.
//! - A value too short to keep `n + m` characters in clear is masked whole; nothing is ever
//!   returned unmasked because it is short (ShardingSphere's keep-first-n-last-m does that).
//! - Pseudonyms are keyed (HMAC-SHA256) with a key derived per recipient, since an unkeyed hash of
//!   an 18-character identifier is reversed by enumeration in minutes.
//!
//! Failure is closed, in one of two documented ways:
//! - masks and presets (`mask`, `resident_id`, `chinese_name`, `mobile`, `address`) never fail:
//!   a value they do not recognise is masked whole (one `*` per character);
//! - `generalise` returns [`RuleError::NotApplicable`] for a value of the wrong shape (a date rule
//!   on a non-date); the error never contains the value, and the record-level entry point
//!   ([`crate::policy::Decision::disclose`]) turns it into a withheld field.
//!
//! Rules are written in the catalog as short strings (`"mask(3,4)"`, `"pseudonym"`,
//! `"generalise(amount,10000)"`), parsed by [`Form::from_str`] and printed back by `Display`.
//!
//! Architecture invariant: pure (no I/O, no clock); the only secret it sees is the
//! [`RecipientKey`] handed to it.

mod apply;
mod key;
mod syntax;

pub use key::{PseudonymKey, RecipientKey};

/// A de-sensitization rule with its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Keep the first `keep_first` and the last `keep_last` characters, `*` for each other one.
    Mask {
        keep_first: u16,
        keep_last: u16,
    },
    /// `p_` and 32 hex digits of HMAC-SHA256 under the recipient's key.
    Pseudonym,
    Generalise(Generalise),
    /// The value is removed entirely.
    Suppress,
    /// `mask(1,1)`: an identity number keeps its first and last character.
    ResidentId,
    /// Surname kept (compound surnames included), one `*` per other character.
    ChineseName,
    /// `138****1234`; anything that is not a mainland mobile number is masked whole.
    Mobile,
    /// Kept down to the district (province, city, then a name ending in 区/县/旗); dropped
    /// after it; masked whole unless the district is recognised (not 小区, 社区, 园区 …).
    Address,
}

/// How `generalise` coarsens a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Generalise {
    /// `YYYY-MM-DD` -> `YYYY`.
    Year,
    /// `YYYY-MM-DD` -> `YYYY-MM`.
    Month,
    /// A non-negative decimal amount -> the bucket of this width holding it, e.g. `10000-20000`.
    Amount { width: u64 },
    /// A 6-digit division code -> its province (`XX0000`).
    Province,
    /// A 6-digit division code -> its city (`XXXX00`).
    City,
}

/// The form a field is disclosed in: in clear, or through a rule.
///
/// `raw` exists only as a form, never as a [`Rule`], so code that holds a `Rule` cannot
/// disclose a value in clear by mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Form {
    Raw,
    Rule(Rule),
}

/// The result of applying a rule to one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    Value(String),
    /// The rule removes the field (`suppress`).
    Suppressed,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The value does not have the shape the rule needs. Holds the rule, never the value.
    #[error("rule {rule} cannot be applied: the value is not {expected}")]
    NotApplicable { rule: Rule, expected: &'static str },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown de-sensitization form {text:?}: {reason}")]
pub struct FormSyntaxError {
    pub text: String,
    pub reason: &'static str,
}

#[cfg(test)]
mod tests;
