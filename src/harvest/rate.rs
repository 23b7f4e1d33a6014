//! Requests per second per caller, with `governor` (GCRA: one atomic word per caller, no lock
//! on the hot path). Runs before any database work, so a flood costs the node almost nothing.

use std::{collections::HashMap, num::NonZeroU32, time::Duration};

use governor::{
    DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};

use super::settings::CallerLimits;
use crate::identity::SpiffeId;

/// Why the limiter refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateRefusal {
    /// Over the rate: the earliest moment the same request could pass.
    Wait(Duration),
    /// More cells than the caller's burst: this request can never pass as it is.
    TooLarge { burst: u32 },
}

pub struct RateLimits {
    /// Every caller without limits of its own shares these parameters, each with its own state.
    default: DefaultKeyedRateLimiter<SpiffeId>,
    /// Named callers, each with its own parameters; fixed at start, so read without a lock.
    named: HashMap<SpiffeId, DefaultDirectRateLimiter>,
    clock: DefaultClock,
}

fn quota(limits: CallerLimits) -> Quota {
    let rate = NonZeroU32::new(limits.requests_per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

impl RateLimits {
    pub fn new(default: CallerLimits, named: &HashMap<SpiffeId, CallerLimits>) -> Self {
        let clock = DefaultClock::default();
        Self {
            default: RateLimiter::dashmap_with_clock(quota(default), clock.clone()),
            named: named
                .iter()
                .map(|(id, l)| {
                    (
                        id.clone(),
                        RateLimiter::direct_with_clock(quota(*l), clock.clone()),
                    )
                })
                .collect(),
            clock,
        }
    }

    /// Takes `cells` (one per subject asked about) from `caller`'s allowance, or says how long
    /// to wait. A refused request takes nothing.
    pub fn check(&self, caller: &SpiffeId, cells: u32) -> Result<(), RateRefusal> {
        let n = NonZeroU32::new(cells).unwrap_or(NonZeroU32::MIN);
        let outcome = match self.named.get(caller) {
            Some(limiter) => limiter.check_n(n),
            None => self.default.check_key_n(caller, n),
        };
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(RateRefusal::Wait(
                not_until.wait_time_from(self.clock.now()),
            )),
            Err(insufficient) => Err(RateRefusal::TooLarge {
                burst: insufficient.0,
            }),
        }
    }

    /// Forgets callers whose allowance is full again, so memory follows the active callers.
    pub fn forget_idle(&self) {
        self.default.retain_recent();
        self.default.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpiffeId {
        SpiffeId::parse(&format!("spiffe://region-a.credit.test/dept/{s}")).unwrap()
    }

    #[test]
    fn burst_passes_then_refuses_with_a_wait() {
        let limits = CallerLimits {
            requests_per_second: 1,
            burst: 3,
            distinct_subjects: 1,
        };
        let rate = RateLimits::new(limits, &HashMap::new());
        for _ in 0..3 {
            assert_eq!(rate.check(&id("tax"), 1), Ok(()));
        }
        match rate.check(&id("tax"), 1) {
            Err(RateRefusal::Wait(d)) => assert!(d > Duration::ZERO && d <= Duration::from_secs(1)),
            other => panic!("expected a wait, got {other:?}"),
        }
        // Another caller has its own allowance.
        assert_eq!(rate.check(&id("court"), 1), Ok(()));
        assert_eq!(
            rate.check(&id("court"), 4),
            Err(RateRefusal::TooLarge { burst: 3 })
        );
    }

    #[test]
    fn named_callers_get_their_own_parameters() {
        let small = CallerLimits {
            requests_per_second: 1,
            burst: 1,
            distinct_subjects: 1,
        };
        let big = CallerLimits { burst: 10, ..small };
        let named = HashMap::from([(id("tax"), big)]);
        let rate = RateLimits::new(small, &named);
        assert_eq!(rate.check(&id("tax"), 10), Ok(()));
        assert_eq!(
            rate.check(&id("court"), 2),
            Err(RateRefusal::TooLarge { burst: 1 })
        );
    }
}
