//! The catalog spelling of forms: `raw`, `mask(n,m)`, `pseudonym`, `suppress`,
//! `generalise(year|month|province|city)`, `generalise(amount,<width>)`, and the presets
//! `resident_id`, `chinese_name`, `mobile`, `address`. `Display` prints exactly what `FromStr`
//! reads, so explanations show the catalog's own words.

use std::fmt;
use std::str::FromStr;

use super::{Form, FormSyntaxError, Generalise, Rule};

impl FromStr for Form {
    type Err = FormSyntaxError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "raw" {
            Ok(Form::Raw)
        } else {
            text.parse().map(Form::Rule)
        }
    }
}

impl FromStr for Rule {
    type Err = FormSyntaxError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| FormSyntaxError {
            text: text.to_owned(),
            reason,
        };
        let (name, args) = match text.split_once('(') {
            Some((name, rest)) => {
                let args = rest
                    .strip_suffix(')')
                    .ok_or_else(|| fail("missing closing parenthesis"))?;
                (
                    name,
                    Some(args.split(',').map(str::trim).collect::<Vec<_>>()),
                )
            }
            None => (text, None),
        };
        let number = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| fail("parameter is not a number"))
        };
        let rule = match (name, args.as_deref()) {
            ("mask", Some([first, last])) => Rule::Mask {
                keep_first: u16::try_from(number(first)?).map_err(|_| fail("too large"))?,
                keep_last: u16::try_from(number(last)?).map_err(|_| fail("too large"))?,
            },
            ("mask", _) => return Err(fail("expected mask(<keep first>,<keep last>)")),
            ("pseudonym", None) => Rule::Pseudonym,
            ("suppress", None) => Rule::Suppress,
            ("resident_id", None) => Rule::ResidentId,
            ("chinese_name", None) => Rule::ChineseName,
            ("mobile", None) => Rule::Mobile,
            ("address", None) => Rule::Address,
            ("generalise", Some(["year"])) => Rule::Generalise(Generalise::Year),
            ("generalise", Some(["month"])) => Rule::Generalise(Generalise::Month),
            ("generalise", Some(["province"])) => Rule::Generalise(Generalise::Province),
            ("generalise", Some(["city"])) => Rule::Generalise(Generalise::City),
            ("generalise", Some(["amount", width])) => match number(width)? {
                0 => return Err(fail("bucket width must be positive")),
                width => Rule::Generalise(Generalise::Amount { width }),
            },
            ("generalise", _) => {
                return Err(fail(
                    "expected generalise(year|month|province|city) or generalise(amount,<width>)",
                ));
            }
            (
                "pseudonym" | "suppress" | "resident_id" | "chinese_name" | "mobile" | "address",
                _,
            ) => {
                return Err(fail("this rule takes no parameters"));
            }
            _ => {
                return Err(fail(
                    "expected raw, mask(n,m), pseudonym, generalise(...), suppress, resident_id, \
                     chinese_name, mobile or address",
                ));
            }
        };
        Ok(rule)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Mask {
                keep_first,
                keep_last,
            } => write!(f, "mask({keep_first},{keep_last})"),
            Rule::Pseudonym => f.write_str("pseudonym"),
            Rule::Suppress => f.write_str("suppress"),
            Rule::ResidentId => f.write_str("resident_id"),
            Rule::ChineseName => f.write_str("chinese_name"),
            Rule::Mobile => f.write_str("mobile"),
            Rule::Address => f.write_str("address"),
            Rule::Generalise(g) => match g {
                Generalise::Year => f.write_str("generalise(year)"),
                Generalise::Month => f.write_str("generalise(month)"),
                Generalise::Province => f.write_str("generalise(province)"),
                Generalise::City => f.write_str("generalise(city)"),
                Generalise::Amount { width } => write!(f, "generalise(amount,{width})"),
            },
        }
    }
}

impl fmt::Display for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Form::Raw => f.write_str("raw"),
            Form::Rule(rule) => rule.fmt(f),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Form {
    // A string keeps the TOML span of the value, so a bad form is reported at its line.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Form {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
