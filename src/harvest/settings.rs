//! `[harvest]` in the node's config: how fast and how widely each caller may ask.

use serde::Deserialize;

use crate::identity::SpiffeId;

/// Anti-harvesting settings (design.md promise 7). Every field has a default that is safe for
/// production, so a config without `[harvest]` is protected, not open.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct HarvestSettings {
    /// Only for measuring the guard's own cost: `false` turns every check off. The node logs a
    /// warning at start when it is off.
    pub enabled: bool,
    /// The quota window: `day` (the node's calendar day, UTC+8) or `hour`.
    pub window: QuotaWindow,
    /// Limits for every caller not named in a `[[harvest.caller]]`.
    pub default: CallerLimits,
    /// Limits for named identities (a department's node, or one of its clients).
    #[serde(rename = "caller")]
    pub callers: Vec<NamedLimits>,
    /// What an enumeration alert does to the caller: `flag` (alert entry only) or `suspend`
    /// (alert entry, then every query refused until an officer lifts the suspension).
    pub on_enumeration: OnEnumeration,
    /// Misses are judged only after this many queries in the window ...
    pub enumeration_min_queries: u32,
    /// ... and alert when at least this share of them asked about unknown subjects.
    pub enumeration_miss_share: f64,
    /// Alert when this many queries in a row name sequential identifiers.
    pub enumeration_sequential_run: u32,
    /// Refusals by the rate limit are folded into one ledger entry per caller and this many
    /// milliseconds, so a flood cannot flood the ledger.
    pub throttle_fold_ms: u64,
}

impl Default for HarvestSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            window: QuotaWindow::Day,
            default: CallerLimits::default(),
            callers: Vec::new(),
            on_enumeration: OnEnumeration::Suspend,
            enumeration_min_queries: 20,
            enumeration_miss_share: 0.5,
            enumeration_sequential_run: 8,
            throttle_fold_ms: 10_000,
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CallerLimits {
    /// Sustained requests per second (a BatchQuery costs one per subject).
    pub requests_per_second: u32,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
    /// Distinct subjects the caller may obtain records about per window.
    pub distinct_subjects: u64,
}

impl Default for CallerLimits {
    fn default() -> Self {
        Self {
            requests_per_second: 20,
            burst: 40,
            distinct_subjects: 1000,
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct NamedLimits {
    /// The caller's SPIFFE ID, e.g. `spiffe://region-a.credit.test/dept/tax`.
    pub id: String,
    pub requests_per_second: u32,
    pub burst: u32,
    pub distinct_subjects: u64,
}

impl NamedLimits {
    pub fn limits(&self) -> CallerLimits {
        CallerLimits {
            requests_per_second: self.requests_per_second,
            burst: self.burst,
            distinct_subjects: self.distinct_subjects,
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QuotaWindow {
    Day,
    Hour,
}

/// The node's calendar is China Standard Time (UTC+8), as in [`crate::clock`].
const UTC_OFFSET_MS: i64 = 8 * 3_600_000;

impl QuotaWindow {
    fn length_ms(self) -> i64 {
        match self {
            QuotaWindow::Day => 86_400_000,
            QuotaWindow::Hour => 3_600_000,
        }
    }

    /// The window `now_ms` falls in: windows are numbered from the epoch, in local time.
    pub fn id(self, now_ms: i64) -> i64 {
        (now_ms + UTC_OFFSET_MS).div_euclid(self.length_ms())
    }

    /// When window `id` ends (Unix ms): the quota is fresh from then on.
    pub fn end_ms(self, id: i64) -> i64 {
        (id + 1) * self.length_ms() - UTC_OFFSET_MS
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnEnumeration {
    Flag,
    Suspend,
}

impl HarvestSettings {
    /// Semantic checks `serde` cannot make; the error names the key.
    pub fn check(&self) -> Result<(), (String, String)> {
        let limits = std::iter::once(("harvest.default".to_owned(), self.default)).chain(
            self.callers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("harvest.caller[{i}]"), c.limits())),
        );
        for (key, l) in limits {
            for (field, zero) in [
                ("requests_per_second", l.requests_per_second == 0),
                ("burst", l.burst == 0),
                ("distinct_subjects", l.distinct_subjects == 0),
            ] {
                if zero {
                    return Err((format!("{key}.{field}"), "must be greater than 0".into()));
                }
            }
        }
        let mut seen = Vec::new();
        for (i, c) in self.callers.iter().enumerate() {
            let key = format!("harvest.caller[{i}].id");
            let id = SpiffeId::parse(&c.id).map_err(|e| (key.clone(), e.to_string()))?;
            if seen.contains(&id) {
                return Err((key, format!("{id} is listed twice")));
            }
            seen.push(id);
        }
        if !(self.enumeration_miss_share > 0.0 && self.enumeration_miss_share <= 1.0) {
            return Err((
                "harvest.enumeration_miss_share".into(),
                "must be in (0, 1]".into(),
            ));
        }
        for (key, zero) in [
            (
                "harvest.enumeration_min_queries",
                self.enumeration_min_queries == 0,
            ),
            (
                "harvest.enumeration_sequential_run",
                self.enumeration_sequential_run < 2,
            ),
            ("harvest.throttle_fold_ms", self.throttle_fold_ms == 0),
        ] {
            if zero {
                return Err((key.into(), "too small".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_local_calendar() {
        // 2026-11-23T16:00:00Z is midnight of 2026-11-24 in UTC+8.
        let midnight = 1_795_449_600_000;
        let day = QuotaWindow::Day;
        assert_eq!(day.id(midnight - 1) + 1, day.id(midnight));
        assert_eq!(day.end_ms(day.id(midnight - 1)), midnight);
        assert_eq!(
            QuotaWindow::Hour.end_ms(QuotaWindow::Hour.id(midnight)),
            midnight + 3_600_000
        );
    }

    #[test]
    fn zero_limits_and_bad_ids_are_named() {
        let mut s = HarvestSettings::default();
        s.default.burst = 0;
        assert_eq!(s.check().unwrap_err().0, "harvest.default.burst");
        let mut s = HarvestSettings::default();
        s.callers.push(NamedLimits {
            id: "spiffe://x/dept".into(),
            requests_per_second: 1,
            burst: 1,
            distinct_subjects: 1,
        });
        assert_eq!(s.check().unwrap_err().0, "harvest.caller[0].id");
    }
}
