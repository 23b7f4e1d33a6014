//! Disclosure periods (credit restoration measures in force since 2026-04-01).
//!
//! Promise 8 of design.md is enforced at query time by comparing today's date (from the caller's
//! injected clock) with [`disclosure_end`]; this module has no clock.

use serde::Serialize;

/// Severity class of an untrustworthy record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Normally not disclosed; 3 months at most where needed.
    Minor,
    /// 3 months to 1 year.
    Ordinary,
    /// 1 to 3 years.
    Serious,
}

impl Severity {
    /// The legal range of the disclosure period in months.
    pub fn legal_months(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Severity::Minor => 0..=3,
            Severity::Ordinary => 3..=12,
            Severity::Serious => 12..=36,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Minor => "minor",
            Severity::Ordinary => "ordinary",
            Severity::Serious => "serious",
        }
    }
}

/// Disclosure period in months per class an item has; `None` for a class the item does not
/// have, `Some(0)` for "not disclosed".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DisclosurePeriods {
    pub minor: Option<u8>,
    pub ordinary: Option<u8>,
    pub serious: Option<u8>,
}

impl DisclosurePeriods {
    pub fn months(&self, class: Severity) -> Option<u8> {
        match class {
            Severity::Minor => self.minor,
            Severity::Ordinary => self.ordinary,
            Severity::Serious => self.serious,
        }
    }
}

/// The first day on which a record decided on `decision` is no longer disclosed: the decision
/// date plus the class's period in calendar months (a day missing from the target month, such as
/// 31 February, becomes the month's last day). `None` when the class is not disclosed (period 0
/// or a class the item does not have): fail closed.
pub fn disclosure_end(
    decision: time::Date,
    class: Severity,
    periods: &DisclosurePeriods,
) -> Option<time::Date> {
    let months = periods.months(class).filter(|m| *m > 0)?;
    let total =
        decision.year() * 12 + i32::from(u8::from(decision.month())) - 1 + i32::from(months);
    let year = total.div_euclid(12);
    let month = time::Month::try_from(u8::try_from(total.rem_euclid(12) + 1).ok()?).ok()?;
    let day = decision.day().min(month.length(year));
    time::Date::from_calendar_date(year, month, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn periods() -> DisclosurePeriods {
        DisclosurePeriods {
            minor: Some(0),
            ordinary: Some(12),
            serious: Some(36),
        }
    }

    #[test]
    fn ends() {
        let p = periods();
        assert_eq!(
            disclosure_end(date!(2026 - 04 - 01), Severity::Ordinary, &p),
            Some(date!(2027 - 04 - 01))
        );
        assert_eq!(
            disclosure_end(date!(2026 - 04 - 01), Severity::Serious, &p),
            Some(date!(2029 - 04 - 01))
        );
        assert_eq!(
            disclosure_end(date!(2026 - 04 - 01), Severity::Minor, &p),
            None
        );
        let q = DisclosurePeriods {
            ordinary: Some(3),
            ..p
        };
        assert_eq!(
            disclosure_end(date!(2026 - 11 - 30), Severity::Ordinary, &q),
            Some(date!(2027 - 02 - 28))
        );
        assert_eq!(
            disclosure_end(date!(2027 - 11 - 30), Severity::Ordinary, &q),
            Some(date!(2028 - 02 - 29))
        );
        let none = DisclosurePeriods::default();
        assert_eq!(
            disclosure_end(date!(2026 - 04 - 01), Severity::Serious, &none),
            None
        );
    }
}
