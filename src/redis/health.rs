//! Whether Redis answers, and the circuit breaker that keeps a dead Redis from costing
//! requests any latency: while degraded, operations skip Redis and one probe per retry
//! interval tries again. Transitions are logged once (`warn` when it breaks, `info` when it
//! answers again), never per request. Time comes from the injected clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use crate::clock::{Clock, Timestamp};

/// When an operation started, as the breaker saw it (see [`Health::admit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Started(pub(crate) Timestamp);

pub(crate) struct Health {
    clock: Arc<dyn Clock>,
    healthy: AtomicBool,
    retry_interval: Duration,
    /// While degraded: when (ms since the epoch) the next operation may try Redis.
    next_attempt_ms: AtomicI64,
    /// When the last operation failed: older operations that succeed late do not count as
    /// a recovery.
    last_failure_ms: AtomicI64,
}

impl Health {
    pub(crate) fn new(clock: Arc<dyn Clock>, retry_interval: Duration) -> Self {
        Self {
            clock,
            healthy: AtomicBool::new(true),
            retry_interval,
            next_attempt_ms: AtomicI64::new(i64::MIN),
            last_failure_ms: AtomicI64::new(i64::MIN),
        }
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub(crate) fn retry_interval(&self) -> Duration {
        self.retry_interval
    }

    fn retry_ms(&self) -> u64 {
        u64::try_from(self.retry_interval.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether an operation may use Redis now: always when healthy; when degraded, only the
    /// one operation that claims the next probe slot. A clock that stepped back more than
    /// one interval opens the slot too, so a wall-clock correction never stalls recovery.
    pub(crate) fn admit(&self) -> Option<Started> {
        let now = self.clock.now();
        if self.healthy.load(Ordering::Acquire) {
            return Some(Started(now));
        }
        let next = self.next_attempt_ms.load(Ordering::Acquire);
        let stepped_back = now.plus_millis(self.retry_ms()).0 < next;
        let due = now.0 >= next || stepped_back;
        let claimed = due
            && self
                .next_attempt_ms
                .compare_exchange(
                    next,
                    now.plus_millis(self.retry_ms()).0,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok();
        claimed.then_some(Started(now))
    }

    /// An operation that started at `started` succeeded.
    pub(crate) fn succeeded(&self, started: Started) {
        if self.healthy.load(Ordering::Acquire) {
            return;
        }
        if started.0.0 > self.last_failure_ms.load(Ordering::Acquire)
            && !self.healthy.swap(true, Ordering::AcqRel)
        {
            tracing::info!(target: "pimgate::redis", "Redis reachable again");
        }
    }

    pub(crate) fn failed(&self, operation: &'static str, error: &dyn std::fmt::Display) {
        let now = self.clock.now();
        self.last_failure_ms.fetch_max(now.0, Ordering::AcqRel);
        self.next_attempt_ms
            .store(now.plus_millis(self.retry_ms()).0, Ordering::Release);
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                target: "pimgate::redis",
                operation,
                error = %error,
                "Redis unreachable; what uses it falls back until it answers again (claims are resolved from the store)"
            );
        }
    }
}
