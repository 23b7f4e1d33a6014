//! Time, injected. Disclosure periods, tree-head intervals and quotas all read the clock
//! through this type, so tests set the date instead of sleeping (style.md item 10).

use std::sync::Arc;

use time::{Date, OffsetDateTime};

#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> OffsetDateTime + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Self(Arc::new(OffsetDateTime::now_utc))
    }

    /// A clock that always reads `at`: for tests and for replaying a day.
    pub fn fixed(at: OffsetDateTime) -> Self {
        Self(Arc::new(move || at))
    }

    /// A clock read from `f`: for tests that move time forward (a new quota window, a new day).
    pub fn from_fn(f: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub fn now(&self) -> OffsetDateTime {
        (self.0)()
    }

    /// Today's date in UTC+8 (Beijing time), the day the law's periods are counted in.
    pub fn today(&self) -> Date {
        self.now().to_offset(time::macros::offset!(+8)).date()
    }

    pub fn now_ms(&self) -> i64 {
        let now = self.now();
        now.unix_timestamp() * 1000 + i64::from(now.millisecond())
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}
