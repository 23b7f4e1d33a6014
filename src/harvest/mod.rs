//! Anti-harvesting (design.md promise 7): an authorised caller must not be able to copy the
//! node's database one lawful-looking query at a time.
//!
//! Four bounds, checked in this order on every query:
//! 1. [`rate`]: requests per second per caller (in memory, before any database work);
//! 2. suspension: a caller suspended after an enumeration alert gets nothing until an officer
//!    lifts it;
//! 3. [`quota`]: distinct subjects per caller and window (in the store, shared by replicas);
//! 4. [`detect`]: misses and sequential identifiers raise an alert, and by configuration a
//!    suspension.
//!
//! The [`Guard`] only decides; the query path records every refusal in the ledger.

mod detect;
mod fold;
pub mod quota;
mod rate;
pub mod settings;

use std::{collections::HashMap, time::Duration};

use arc_swap::ArcSwap;

pub use fold::Folded;
pub use quota::{Charge, QuotaCharge, QuotaError, Suspension};
pub use settings::HarvestSettings;

use self::{
    detect::{AlertClaim, DetectSettings, Detector},
    fold::ThrottleFold,
    quota::{Check, QuotaStore},
    rate::{RateLimits, RateRefusal},
    settings::{CallerLimits, OnEnumeration, QuotaWindow},
};
use crate::{
    identity::{Caller, SpiffeId},
    store::Store,
};

/// Why a query is refused before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Over the rate limit; the request may be sent again after this long.
    Throttled { retry_after: Duration },
    /// A batch larger than the caller's burst can never pass.
    BatchOverBurst { subjects: u32, burst: u32 },
    /// The distinct-subject quota of the window is used up; it is fresh at `resets_at_ms`.
    /// `relay` names the relay when the quota used up is the one it shares among every caller
    /// it acts for, not the caller's own.
    QuotaExhausted {
        quota: u64,
        resets_at_ms: i64,
        relay: Option<String>,
    },
    /// Suspended after an enumeration alert, until an officer lifts it. `relay` names the
    /// relay when it is the relay that is suspended, not the caller it acts for.
    Suspended {
        since_ms: i64,
        relay: Option<String>,
    },
}

/// What the guard asks of a query that passed the rate limit, before any record is read.
#[derive(Debug)]
pub enum Admission {
    /// Nothing to charge: the guard is off, or every subject is already counted.
    Free,
    /// Refused: record the refusal, disclose nothing.
    Refused(Refusal),
    /// New subjects: the query may disclose only if every one of these charges (the caller's
    /// own, and a relay's) commits with its entries.
    Charge(Vec<PendingCharge>),
}

/// A charge to make with a query's entries, and the refusal to give if it does not fit.
#[derive(Debug, Clone)]
pub struct PendingCharge {
    pub charge: QuotaCharge,
    pub if_exhausted: Refusal,
}

impl PendingCharge {
    /// The relay the charge is of, when it is a relay's (not the caller's own).
    pub fn relay(&self) -> Option<&str> {
        match &self.if_exhausted {
            Refusal::QuotaExhausted { relay, .. } => relay.as_deref(),
            _ => None,
        }
    }
}

/// The refusal that the outcomes of `pending`'s charges (in order) stand for: the first charge
/// that did not go through decides. `None` when all went through.
pub fn refusal_of(pending: &[PendingCharge], outcomes: &[Charge]) -> Option<Refusal> {
    pending
        .iter()
        .zip(outcomes)
        .find_map(|(p, outcome)| match *outcome {
            Charge::Within => None,
            Charge::Exhausted { .. } => Some(p.if_exhausted.clone()),
            Charge::Suspended { since_ms } => Some(Refusal::Suspended {
                since_ms,
                relay: p.relay().map(str::to_owned),
            }),
        })
}

/// An enumeration alert to record; with `suspend`, the caller is suspended once it is. It is
/// the window's alert only once [`Alert::recorded`]: until then no other is raised, and if it
/// is dropped unrecorded (its entry or suspension could not be stored), the next sign raises
/// it again.
#[derive(Debug)]
pub struct Alert<'g> {
    pub reason: String,
    pub suspend: bool,
    claim: AlertClaim<'g>,
}

impl Alert<'_> {
    /// The alert's entry is in the ledger, and its suspension (if `suspend`) in the store.
    pub fn recorded(self) {
        self.claim.recorded();
    }
}

pub struct Guard {
    enabled: bool,
    window: QuotaWindow,
    on_enumeration: OnEnumeration,
    /// Swapped whole on SIGHUP ([`Guard::replace_limits`]): read lock-free on every query.
    limits: ArcSwap<Limits>,
    fold: ThrottleFold,
    detector: Detector,
    quota: QuotaStore,
    /// Requests the rate limit refused, for the metrics: the ledger folds them per caller and
    /// window, so its entries do not count them.
    rate_limited: std::sync::atomic::AtomicU64,
}

/// The per-caller numbers of `[harvest]`, and the rate limiter built from them.
struct Limits {
    default: CallerLimits,
    named: HashMap<SpiffeId, CallerLimits>,
    rate: RateLimits,
}

impl Limits {
    fn of(settings: &HarvestSettings) -> Self {
        Self::new(settings.default, named_limits(settings))
    }

    fn new(default: CallerLimits, named: HashMap<SpiffeId, CallerLimits>) -> Self {
        Self {
            default,
            rate: RateLimits::new(default, &named),
            named,
        }
    }
}

/// The `[[harvest.caller]]` limits by identity (ids were checked with the config).
fn named_limits(settings: &HarvestSettings) -> HashMap<SpiffeId, CallerLimits> {
    settings
        .callers
        .iter()
        .filter_map(|c| Some((SpiffeId::parse(&c.id).ok()?, c.limits())))
        .collect()
}

/// What a reload of `[harvest]` did.
#[derive(Debug, PartialEq, Eq)]
pub enum LimitsReload {
    /// The per-caller limits were replaced.
    Replaced,
    /// The per-caller limits are the running ones: nothing changed, allowances kept.
    Unchanged,
}

impl Guard {
    /// Builds the guard over a migrated store; `settings` must have passed
    /// [`HarvestSettings::check`] (unparsable caller ids are skipped here).
    pub fn start(settings: &HarvestSettings, store: Store) -> Self {
        if !settings.enabled {
            tracing::warn!(
                "harvest.enabled = false: rate limits, quotas and enumeration detection are off"
            );
        }
        Self {
            enabled: settings.enabled,
            window: settings.window,
            on_enumeration: settings.on_enumeration,
            limits: ArcSwap::from_pointee(Limits::of(settings)),
            fold: ThrottleFold::new(settings.throttle_fold_ms),
            detector: Detector::new(DetectSettings::of(settings)),
            quota: QuotaStore::new(store),
            rate_limited: Default::default(),
        }
    }

    /// Requests the rate limit has refused since the node started.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The limits `caller` is held to (its own, or the default).
    pub fn limits(&self, caller: &SpiffeId) -> CallerLimits {
        let limits = self.limits.load();
        limits.named.get(caller).copied().unwrap_or(limits.default)
    }

    /// Takes in the per-caller limits of a reloaded `[harvest]` (already checked): an operator
    /// throttling a misbehaving department, or granting one more, must not wait for a restart.
    /// Changed limits start every caller with a full allowance (a limiter's state belongs to
    /// its parameters); unchanged ones keep the running state, so a reload gives no one a
    /// fresh burst. The other keys of `[harvest]` (on/off, window, detection) shape state the
    /// node holds and change only with a restart: the `Err` names those that differ.
    pub fn replace_limits(
        &self,
        settings: &HarvestSettings,
    ) -> (LimitsReload, Result<(), Vec<&'static str>>) {
        let named = named_limits(settings);
        let running = self.limits.load();
        let reload = if settings.default == running.default && named == running.named {
            LimitsReload::Unchanged
        } else {
            let fresh = Limits::new(settings.default, named);
            self.limits.store(std::sync::Arc::new(fresh));
            LimitsReload::Replaced
        };
        let mut fixed = Vec::new();
        if settings.enabled != self.enabled {
            fixed.push("harvest.enabled");
        }
        if settings.window != self.window {
            fixed.push("harvest.window");
        }
        if settings.on_enumeration != self.on_enumeration {
            fixed.push("harvest.on_enumeration");
        }
        if !self.detector.has(&DetectSettings::of(settings)) {
            fixed.push("harvest.enumeration_*");
        }
        if !self.fold.has(settings.throttle_fold_ms) {
            fixed.push("harvest.throttle_fold_ms");
        }
        (reload, if fixed.is_empty() { Ok(()) } else { Err(fixed) })
    }

    /// The rate limit: `subjects` cells from the caller's allowance. A refusal is counted into
    /// the caller's fold window; when that closes a window, the closed one is returned beside
    /// the refusal, to be recorded (boxed: it is rare, and keeps the refusal small).
    pub fn admit(
        &self,
        caller: &Caller,
        subjects: u32,
        now_ms: i64,
    ) -> Result<(), (Refusal, Option<Box<Folded>>)> {
        if !self.enabled {
            return Ok(());
        }
        let refusal = match self.limits.load().rate.check(&caller.spiffe_id, subjects) {
            Ok(()) => return Ok(()),
            Err(RateRefusal::Wait(retry_after)) => Refusal::Throttled { retry_after },
            Err(RateRefusal::TooLarge { burst }) => Refusal::BatchOverBurst { subjects, burst },
        };
        self.rate_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err((refusal, self.fold.refused(caller, now_ms).map(Box::new)))
    }

    /// The suspension and quota check, before any record is read, from memory: subjects not
    /// known counted come back as [`PendingCharge`]s for the ledger's writer to charge with
    /// the query's entries (see [`quota`]).
    ///
    /// A query a relay forwards for `principal` is charged twice: to the principal's own quota,
    /// and to the relay's, which it shares with every caller it acts for. The relay's word on
    /// whom it acts for cannot widen what it obtains: whatever names it gives, this node hands
    /// it no more distinct subjects than its own quota (promise 7), as its rate limit already
    /// counts all its requests together.
    pub fn check(
        &self,
        principal: &SpiffeId,
        relay: Option<&SpiffeId>,
        subjects: &[&str],
        now_ms: i64,
    ) -> Admission {
        if !self.enabled {
            return Admission::Free;
        }
        let window = self.window.id(now_ms);
        let mut pending = Vec::new();
        // A node's own department asking through it is charged once.
        let relay = relay.filter(|r| *r != principal);
        let charged = std::iter::once((principal, false)).chain(relay.map(|r| (r, true)));
        for (id, is_relay) in charged {
            let quota = self.limits(id).distinct_subjects;
            match self.quota.check(&id.to_string(), window, subjects, quota) {
                Check::Counted => {}
                Check::Suspended { since_ms } => {
                    let relay = is_relay.then(|| id.to_string());
                    return Admission::Refused(Refusal::Suspended { since_ms, relay });
                }
                Check::New(charge) => pending.push(PendingCharge {
                    charge,
                    if_exhausted: Refusal::QuotaExhausted {
                        quota,
                        resets_at_ms: self.window.end_ms(window),
                        relay: is_relay.then(|| id.to_string()),
                    },
                }),
            }
        }
        if pending.is_empty() {
            Admission::Free
        } else {
            Admission::Charge(pending)
        }
    }

    /// The suspension alone, for calls that disclose no subject's records yet must not serve a
    /// suspended caller (a withdrawal listing, a relay's call): no quota is looked at.
    pub fn suspended(&self, caller: &SpiffeId) -> Option<Refusal> {
        if !self.enabled {
            return None;
        }
        self.quota
            .suspended_since(&caller.to_string())
            .map(|since_ms| Refusal::Suspended {
                since_ms,
                relay: None,
            })
    }

    /// Notes a charge as committed, so repeats of its subjects are answered from memory.
    pub fn charged(&self, charge: &QuotaCharge) {
        self.quota.remember(charge);
    }

    /// Notes an answered query; returns an alert when enumeration shows in a window without a
    /// recorded one.
    pub fn observe(
        &self,
        caller: &SpiffeId,
        subject: &str,
        miss: bool,
        now_ms: i64,
    ) -> Option<Alert<'_>> {
        if !self.enabled {
            return None;
        }
        let (reason, claim) =
            self.detector
                .observe(caller, self.window.id(now_ms), subject, miss)?;
        Some(Alert {
            reason,
            suspend: self.on_enumeration == OnEnumeration::Suspend,
            claim,
        })
    }

    /// Suspends the caller; `false` if it was already suspended (see [`QuotaStore::suspend`]).
    pub async fn suspend(&self, suspension: &Suspension) -> Result<bool, QuotaError> {
        self.quota.suspend(suspension).await
    }

    /// Lifts the caller's suspension of the alert at `alert_seq`; `false` if that one is gone
    /// (see [`QuotaStore::lift`]).
    pub async fn lift(&self, caller: &str, alert_seq: u64) -> Result<bool, QuotaError> {
        self.quota.lift(caller, alert_seq).await
    }

    pub async fn suspension(&self, caller: &str) -> Result<Option<Suspension>, QuotaError> {
        self.quota.suspension(caller).await
    }

    pub async fn suspensions(&self) -> Result<Vec<Suspension>, QuotaError> {
        self.quota.suspensions().await
    }

    /// Fold windows ready to be recorded (all of them at shutdown), and memory of idle callers
    /// released.
    pub fn housekeeping(&self, now_ms: i64, shutting_down: bool) -> Vec<Folded> {
        self.limits.load().rate.forget_idle();
        self.detector.forget_before(self.window.id(now_ms));
        self.quota.forget_before(self.window.id(now_ms));
        self.fold.take_due(now_ms, shutting_down)
    }

    /// Takes in suspensions and lifts made by other replicas (see [`quota`]).
    pub async fn refresh(&self) -> Result<(), QuotaError> {
        if !self.enabled {
            return Ok(());
        }
        self.quota.refresh_suspensions().await
    }

    /// How often [`Guard::housekeeping`] should run.
    pub fn housekeeping_every(&self) -> Duration {
        Duration::from_millis(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(relay: Option<&str>) -> PendingCharge {
        PendingCharge {
            charge: QuotaCharge {
                caller: relay
                    .unwrap_or("spiffe://region-a.credit.test/dept/court")
                    .into(),
                window: 1,
                subjects: vec!["a".into()],
                limit: 5,
                raised_suspension: false,
            },
            if_exhausted: Refusal::QuotaExhausted {
                quota: 5,
                resets_at_ms: 10,
                relay: relay.map(str::to_owned),
            },
        }
    }

    #[test]
    fn the_first_charge_that_did_not_go_through_names_whose_it_was() {
        let relay = "spiffe://region-a.credit.test/dept/samr";
        let both = [pending(None), pending(Some(relay))];
        assert_eq!(refusal_of(&both, &[Charge::Within, Charge::Within]), None);
        // The caller's own quota: the relay's charge was not made.
        assert_eq!(
            refusal_of(&both, &[Charge::Exhausted { used: 5 }]),
            Some(both[0].if_exhausted.clone())
        );
        // The relay's quota, or the relay suspended (found in the store, by another replica's
        // alert): the refusal says it is the relay's, not the caller's.
        assert_eq!(
            refusal_of(&both, &[Charge::Within, Charge::Exhausted { used: 5 }]),
            Some(both[1].if_exhausted.clone())
        );
        assert_eq!(
            refusal_of(&both, &[Charge::Within, Charge::Suspended { since_ms: 3 }]),
            Some(Refusal::Suspended {
                since_ms: 3,
                relay: Some(relay.into())
            })
        );
        assert_eq!(
            refusal_of(&both, &[Charge::Suspended { since_ms: 3 }]),
            Some(Refusal::Suspended {
                since_ms: 3,
                relay: None
            })
        );
    }
}
