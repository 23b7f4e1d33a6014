//! Enumeration detection: a caller working through identifiers rather than cases. Two signs,
//! each judged per caller and quota window: many misses (subjects the node holds nothing
//! about: a harvester guessing identifiers), and runs of sequential identifiers (a harvester
//! counting). Each raises at most one alert per caller and window: one that is stored. An alert
//! whose entry or suspension could not be stored is raised again by the next sign.
//!
//! State is a few words per active caller, kept in memory on each replica: detection is a
//! signal for officers, while the hard bound on what a caller can obtain is the quota, which
//! lives in the shared store.

use dashmap::DashMap;

use crate::identity::SpiffeId;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetectSettings {
    pub min_queries: u32,
    pub miss_share: f64,
    pub sequential_run: u32,
}

impl DetectSettings {
    pub fn of(settings: &super::HarvestSettings) -> Self {
        Self {
            min_queries: settings.enumeration_min_queries,
            miss_share: settings.enumeration_miss_share,
            sequential_run: settings.enumeration_sequential_run,
        }
    }
}

/// Two identifiers are sequential when their bodies differ by at least 1 and at most this.
const MAX_STEP: u128 = 16;

#[derive(Default)]
struct Track {
    window: i64,
    queries: u32,
    misses: u32,
    last: Option<u128>,
    run: u32,
    alerted: Alerted,
}

/// Whether a caller's window has had its alert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Alerted {
    #[default]
    No,
    /// Raised and being stored ([`AlertClaim`]): concurrent queries raise no second one.
    Pending,
    Yes,
}

/// An alert raised and not yet stored. Only [`AlertClaim::recorded`] makes it count as the
/// window's alert; dropped without it (the alert's ledger entry or the suspension failed, or
/// the query was cancelled meanwhile), the window is not alerted, so the next sign raises the
/// alert again instead of the detector staying silent for the rest of the window.
#[must_use = "an alert counts only once recorded"]
pub struct AlertClaim<'d> {
    detector: &'d Detector,
    caller: SpiffeId,
    window: i64,
    recorded: bool,
}

impl AlertClaim<'_> {
    /// The alert is stored (and the suspension, if one was due).
    pub fn recorded(mut self) {
        self.recorded = true;
    }
}

impl Drop for AlertClaim<'_> {
    fn drop(&mut self) {
        self.detector
            .settle(&self.caller, self.window, self.recorded);
    }
}

impl std::fmt::Debug for AlertClaim<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertClaim")
            .field("caller", &self.caller)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

pub struct Detector {
    settings: DetectSettings,
    callers: DashMap<SpiffeId, Track>,
}

impl Detector {
    pub fn new(settings: DetectSettings) -> Self {
        Self {
            settings,
            callers: DashMap::new(),
        }
    }

    /// Whether it detects by these settings.
    pub fn has(&self, settings: &DetectSettings) -> bool {
        self.settings == *settings
    }

    /// Notes one answered query about `subject` (a canonical identifier); `miss` when the node
    /// holds no record of it. Returns the alert's reason when a sign shows in a window that has
    /// no alert yet, with the claim to mark once the alert is stored.
    pub fn observe(
        &self,
        caller: &SpiffeId,
        window: i64,
        subject: &str,
        miss: bool,
    ) -> Option<(String, AlertClaim<'_>)> {
        // Look up before inserting: the caller's id is cloned once, not on every query.
        let mut track = match self.callers.get_mut(caller) {
            Some(track) => track,
            None => self.callers.entry(caller.clone()).or_default(),
        };
        if track.window != window {
            *track = Track {
                window,
                ..Track::default()
            };
        }
        track.queries += 1;
        track.misses += u32::from(miss);
        let body = body_value(subject);
        track.run = match (track.last, body) {
            (Some(last), Some(now)) if (1..=MAX_STEP).contains(&last.abs_diff(now)) => {
                track.run.max(1) + 1
            }
            _ => 1,
        };
        track.last = body;
        if track.alerted != Alerted::No {
            return None;
        }
        let s = &self.settings;
        let reason = if track.run >= s.sequential_run {
            format!(
                "enumeration suspected: {} sequential identifiers in a row",
                track.run
            )
        } else if track.queries >= s.min_queries
            && f64::from(track.misses) >= s.miss_share * f64::from(track.queries)
        {
            format!(
                "enumeration suspected: {} of {} subjects asked about in this window are unknown",
                track.misses, track.queries
            )
        } else {
            return None;
        };
        track.alerted = Alerted::Pending;
        let claim = AlertClaim {
            detector: self,
            caller: caller.clone(),
            window,
            recorded: false,
        };
        Some((reason, claim))
    }

    /// Ends a pending alert of `caller`'s `window`: the window's alert if it was `recorded`,
    /// otherwise as if never raised.
    fn settle(&self, caller: &SpiffeId, window: i64, recorded: bool) {
        if let Some(mut track) = self.callers.get_mut(caller)
            && track.window == window
            && track.alerted == Alerted::Pending
        {
            track.alerted = if recorded { Alerted::Yes } else { Alerted::No };
        }
    }

    /// Drops callers not seen in the current window.
    pub fn forget_before(&self, window: i64) {
        self.callers.retain(|_, t| t.window >= window);
    }
}

/// The identifier without its check character(s), as a number: resident identity numbers by
/// their 17 digits, USCCs by their first 16 characters in base 31 (the 17th is the
/// organisation code's own check character, the 18th the overall one).
fn body_value(subject: &str) -> Option<u128> {
    const USCC: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    let bytes = subject.as_bytes();
    if bytes.len() != 18 {
        return None;
    }
    if bytes[..17].iter().all(u8::is_ascii_digit) {
        return subject[..17].parse().ok();
    }
    bytes[..16].iter().try_fold(0u128, |acc, &b| {
        let digit = USCC.bytes().position(|c| c == b)?;
        Some(acc * 31 + digit as u128)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifier::{ResidentId, Uscc};

    fn detector() -> Detector {
        Detector::new(DetectSettings {
            min_queries: 10,
            miss_share: 0.5,
            sequential_run: 5,
        })
    }

    /// Observes, and records any alert raised.
    fn observe(
        d: &Detector,
        caller: &SpiffeId,
        window: i64,
        subject: &str,
        miss: bool,
    ) -> Option<String> {
        let (reason, claim) = d.observe(caller, window, subject, miss)?;
        claim.recorded();
        Some(reason)
    }

    fn caller() -> SpiffeId {
        SpiffeId::parse("spiffe://region-a.credit.test/dept/tax").unwrap()
    }

    #[test]
    fn sequential_resident_ids_raise_one_alert() {
        let d = detector();
        let mut alerts = Vec::new();
        for seq in 1..=12u32 {
            let body = format!("11010519491231{seq:03}");
            let id = ResidentId::complete(&body).unwrap();
            alerts.extend(observe(&d, &caller(), 7, id.as_str(), false));
        }
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert!(alerts[0].contains("5 sequential"), "{}", alerts[0]);
    }

    #[test]
    fn sequential_organisation_codes_are_sequential() {
        // The 17th character (the organisation code's own check) changes too, and is ignored.
        let a = Uscc::complete("91110108MA01A2B37").unwrap();
        let b = Uscc::complete("91110108MA01A2B4X").unwrap();
        let (x, y) = (
            body_value(a.as_str()).unwrap(),
            body_value(b.as_str()).unwrap(),
        );
        assert_eq!(x.abs_diff(y), 1);
    }

    #[test]
    fn misses_alert_only_after_enough_queries() {
        let d = detector();
        // Birth dates months apart: no two of them are sequential.
        let spaced = |i: u32| {
            ResidentId::complete(&format!("1101051949{:02}{:02}{:03}", 1 + i, 10 + i, i)).unwrap()
        };
        for i in 0..9 {
            assert_eq!(observe(&d, &caller(), 1, spaced(i).as_str(), true), None);
        }
        let alert = observe(&d, &caller(), 1, spaced(9).as_str(), true).unwrap();
        assert!(alert.contains("10 of 10"), "{alert}");
        // A new window starts clean.
        assert_eq!(observe(&d, &caller(), 2, spaced(10).as_str(), true), None);
    }

    #[test]
    fn ordinary_work_raises_nothing() {
        let d = detector();
        for i in 0..100u32 {
            let id = ResidentId::complete(&format!(
                "11010519{:02}{:02}{:02}{:03}",
                50 + i % 40,
                1 + (i * 7) % 12,
                1 + (i * 13) % 28,
                (i * 389) % 997
            ))
            .unwrap();
            assert_eq!(observe(&d, &caller(), 1, id.as_str(), i % 5 == 0), None);
        }
    }

    #[test]
    fn an_alert_not_recorded_is_raised_again_and_a_pending_one_is_not_raised_twice() {
        let d = detector();
        let id = |seq: u32| ResidentId::complete(&format!("11010519491231{seq:03}")).unwrap();
        for seq in 1..=4 {
            assert!(d.observe(&caller(), 7, id(seq).as_str(), false).is_none());
        }
        let (_, claim) = d.observe(&caller(), 7, id(5).as_str(), false).unwrap();
        // While it is being stored, another query's sign raises nothing.
        assert!(d.observe(&caller(), 7, id(6).as_str(), false).is_none());
        // Its entry or suspension failed: the window has no alert yet.
        drop(claim);
        let (reason, claim) = d.observe(&caller(), 7, id(7).as_str(), false).unwrap();
        assert!(reason.contains("7 sequential"), "{reason}");
        claim.recorded();
        assert!(d.observe(&caller(), 7, id(8).as_str(), false).is_none());
    }
}
