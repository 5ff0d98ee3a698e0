//! Time, injected: the server reads the time through a [`Clock`], so tests pin it and move it
//! instead of sleeping. [`Timestamp`] is the one representation of an instant, in the store,
//! on the wire and in every expiry decision.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A point in time, as milliseconds since the Unix epoch (UTC).
///
/// Stored as text in the fixed-width RFC 3339 form `YYYY-MM-DDTHH:MM:SS.mmmZ`, so that text
/// order is time order and `meta.lastModified gt "..."` runs on an index in both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The stored and wire form: RFC 3339, UTC, millisecond precision.
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_millis(self.0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    /// Parses any RFC 3339 date-time into a timestamp.
    pub fn parse_rfc3339(raw: &str) -> Option<Self> {
        chrono::DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|d| Self(d.timestamp_millis()))
    }

    /// Milliseconds from `earlier` to `self` (0 when `earlier` is later: a clock that steps
    /// back never yields a negative wait).
    pub fn millis_since(self, earlier: Timestamp) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0)
    }

    /// This instant plus `ms` milliseconds.
    #[must_use]
    pub fn plus_millis(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)))
    }
}

/// A source of the current time.
pub trait Clock: std::fmt::Debug + Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(chrono::Utc::now().timestamp_millis())
    }
}

/// A clock that only moves when told to, for tests. Clones share one time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn at(t: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(t.0)))
    }

    pub fn advance_millis(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}
