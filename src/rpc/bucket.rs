//! Rate limits, so one caller (a tenant, a platform system, or one peer
//! address before it has even shown a token) cannot starve the others. The
//! arithmetic is the `governor` crate's GCRA, keyed per caller; time comes
//! from the injected clock so tests cross refill points without sleeping.
//! The tower layers in `grpc::rate_limit` choose the keys and turn a
//! refusal into RESOURCE_EXHAUSTED with retry info.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::SharedClock;

/// How fast callers may call: `rate` requests per second on average, up to
/// `burst` at once. A rate of zero turns limiting off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Sustained requests per second per caller.
    pub rate: f64,
    /// Most requests a rested caller may send at once.
    pub burst: f64,
}

impl RateLimit {
    /// The limit, or `None` when it is off (`rate` zero or not finite).
    /// A burst below one is raised to one so a limited caller can still call.
    pub fn new(rate: f64, burst: f64) -> Option<Self> {
        (rate.is_finite() && rate > 0.0).then(|| Self {
            rate,
            burst: if burst.is_finite() { burst.max(1.0) } else { 1.0 },
        })
    }

    /// The governor quota: one call per `1 / rate` (rounded up to the
    /// nanosecond, so the limit is never looser than configured), bursts of
    /// the whole calls in `burst`.
    fn quota(&self) -> Quota {
        let period_ns = (1e9 / self.rate).ceil().clamp(1.0, u64::MAX as f64) as u64;
        let burst =
            NonZeroU32::new(self.burst.clamp(1.0, f64::from(u32::MAX)) as u32).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(Duration::from_nanos(period_ns))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst)
    }
}

/// The injected clock as governor reads time: nanoseconds since the epoch.
/// An instant before the limiter's start counts as its start, so a clock
/// moving backwards grants nothing.
#[derive(Debug, Clone)]
struct InjectedClock(SharedClock);

impl governor::clock::Clock for InjectedClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        let ns = self.0.now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        Nanos::new(u64::try_from(ns).unwrap_or(0))
    }
}

/// Keys kept before ones that are back at a full burst are forgotten.
const PRUNE_ABOVE: usize = 10_000;
/// Calls between checks of whether pruning is due.
const PRUNE_EVERY: u64 = 1_024;

/// A rate limit per key (a tenant, a subject, a peer address).
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limit: RateLimit,
    clock: InjectedClock,
    limiter: RateLimiter<K, HashMapStateStore<K>, InjectedClock, NoOpMiddleware<Nanos>>,
    calls: AtomicU64,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for KeyedLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("limit", &self.limit)
            .field("keys", &self.limiter.len())
            .finish()
    }
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// A limiter applying `limit` to each key, reading time from `clock`.
    pub fn new(limit: RateLimit, clock: SharedClock) -> Self {
        let clock = InjectedClock(clock);
        Self {
            limit,
            limiter: RateLimiter::new(limit.quota(), HashMapStateStore::default(), clock.clone()),
            clock,
            calls: AtomicU64::new(0),
        }
    }

    /// The limit applied.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Admits one call of `key`, or says how long until one would be.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if self
            .calls
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(PRUNE_EVERY)
            && self.limiter.len() > PRUNE_ABOVE
        {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key).map_err(|not_until| {
            not_until
                .wait_time_from(self.clock.now())
                .clamp(Duration::from_millis(1), Duration::from_secs(3600))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;

    fn at(s: i64) -> std::sync::Arc<ManualClock> {
        ManualClock::new(chrono::Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap())
    }

    #[test]
    fn burst_then_steady_rate() {
        let clock = at(0);
        let l = KeyedLimiter::new(RateLimit::new(2.0, 3.0).unwrap(), clock.clone());
        for _ in 0..3 {
            assert!(l.check(&"a").is_ok());
        }
        assert_eq!(l.check(&"a").unwrap_err(), Duration::from_millis(500));
        assert!(l.check(&"b").is_ok(), "keys are limited apart");
        clock.advance(chrono::Duration::milliseconds(500));
        assert!(l.check(&"a").is_ok(), "half a second refills one at 2/s");
        assert!(l.check(&"a").is_err());
    }

    #[test]
    fn refill_is_capped_at_the_burst() {
        let clock = at(0);
        let l = KeyedLimiter::new(RateLimit::new(100.0, 2.0).unwrap(), clock.clone());
        l.check(&1).unwrap();
        l.check(&1).unwrap();
        // An hour idle gives back the burst, not 360 000 calls.
        clock.advance(chrono::Duration::hours(1));
        for _ in 0..2 {
            l.check(&1).unwrap();
        }
        assert!(l.check(&1).is_err());
    }

    #[test]
    fn clock_going_backwards_grants_nothing() {
        let clock = at(10);
        let l = KeyedLimiter::new(RateLimit::new(1.0, 1.0).unwrap(), clock.clone());
        l.check(&1).unwrap();
        clock.advance(chrono::Duration::seconds(-10));
        assert!(l.check(&1).is_err());
        clock.advance(chrono::Duration::seconds(10));
        assert!(
            l.check(&1).is_err(),
            "the earlier instant did not reset the refill point"
        );
        clock.advance(chrono::Duration::seconds(1));
        assert!(l.check(&1).is_ok());
    }

    #[test]
    fn zero_or_nonsense_rates_mean_off() {
        assert!(RateLimit::new(0.0, 5.0).is_none());
        assert!(RateLimit::new(f64::NAN, 5.0).is_none());
        assert!(RateLimit::new(-1.0, 5.0).is_none());
        assert_eq!(RateLimit::new(1.0, 0.0).unwrap().burst, 1.0);
    }
}
