//! Folding rate-limit refusals: one ledger entry per caller and fold window, carrying the count,
//! so that a flood of refused requests costs the ledger one entry per window, not one each.

use dashmap::DashMap;

use crate::identity::{Caller, SpiffeId};

/// A closed window of refusals, ready to become a `throttled` ledger entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folded {
    pub caller: SpiffeId,
    /// The certificate of the window's first refused request.
    pub fingerprint: [u8; 32],
    pub window_start_ms: i64,
    pub count: u64,
}

struct Open {
    fingerprint: [u8; 32],
    start_ms: i64,
    count: u64,
}

pub struct ThrottleFold {
    fold_ms: i64,
    open: DashMap<SpiffeId, Open>,
}

impl ThrottleFold {
    pub fn new(fold_ms: u64) -> Self {
        Self {
            fold_ms: i64::try_from(fold_ms).unwrap_or(i64::MAX),
            open: DashMap::new(),
        }
    }

    /// Whether it folds by windows of `fold_ms`.
    pub fn has(&self, fold_ms: u64) -> bool {
        self.fold_ms == i64::try_from(fold_ms).unwrap_or(i64::MAX)
    }

    /// Counts one refusal. When it falls after the caller's open window, that window is closed
    /// and returned, and a new one starts.
    pub fn refused(&self, caller: &Caller, now_ms: i64) -> Option<Folded> {
        let fresh = || Open {
            fingerprint: caller.fingerprint,
            start_ms: now_ms,
            count: 1,
        };
        let mut open = self
            .open
            .entry(caller.spiffe_id.clone())
            .or_insert_with(|| Open {
                count: 0,
                ..fresh()
            });
        if open.count > 0 && now_ms - open.start_ms >= self.fold_ms {
            let closed = std::mem::replace(&mut *open, fresh());
            return Some(Folded {
                caller: caller.spiffe_id.clone(),
                fingerprint: closed.fingerprint,
                window_start_ms: closed.start_ms,
                count: closed.count,
            });
        }
        open.count += 1;
        None
    }

    /// Closes and returns every window older than the fold length (all of them with
    /// `everything`, at shutdown).
    pub fn take_due(&self, now_ms: i64, everything: bool) -> Vec<Folded> {
        let mut due = Vec::new();
        self.open.retain(|caller, open| {
            if everything || now_ms - open.start_ms >= self.fold_ms {
                due.push(Folded {
                    caller: caller.clone(),
                    fingerprint: open.fingerprint,
                    window_start_ms: open.start_ms,
                    count: open.count,
                });
                false
            } else {
                true
            }
        });
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(id: &str) -> Caller {
        Caller {
            spiffe_id: SpiffeId::parse(&format!("spiffe://region-a.credit.test/dept/{id}"))
                .unwrap(),
            serial: "01".into(),
            not_after_unix: 0,
            valid_until_unix: 0,
            fingerprint: [7; 32],
        }
    }

    #[test]
    fn a_flood_folds_into_one_count_per_window() {
        let fold = ThrottleFold::new(1000);
        let tax = caller("tax");
        for ms in 0..500 {
            assert_eq!(fold.refused(&tax, 10_000 + ms), None);
        }
        let closed = fold.refused(&tax, 11_000).unwrap();
        assert_eq!((closed.window_start_ms, closed.count), (10_000, 500));
        assert!(fold.take_due(11_500, false).is_empty());
        let rest = fold.take_due(12_000, false);
        assert_eq!((rest[0].window_start_ms, rest[0].count), (11_000, 1));
        assert!(fold.take_due(20_000, true).is_empty());
    }

    #[test]
    fn shutdown_takes_open_windows_of_every_caller() {
        let fold = ThrottleFold::new(1000);
        fold.refused(&caller("tax"), 5);
        fold.refused(&caller("court"), 6);
        fold.refused(&caller("court"), 7);
        let mut all = fold.take_due(8, true);
        all.sort_by_key(|f| f.count);
        assert_eq!(all.iter().map(|f| f.count).collect::<Vec<_>>(), [1, 2]);
    }
}
