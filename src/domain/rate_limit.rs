//! Per-caller rate limits, so one tenant (or one platform system) cannot
//! starve the others: a token bucket per caller that refills at a steady
//! rate up to a burst. Pure arithmetic on injected instants; the tower layer
//! in `grpc::rate_limit` keys the buckets and turns a refusal into
//! RESOURCE_EXHAUSTED with retry info.

use std::time::Duration;

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
}

/// One caller's bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    /// Microseconds since the epoch of the last refill.
    at_us: i64,
}

impl Bucket {
    /// A full bucket at `now_us`.
    pub fn full(limit: &RateLimit, now_us: i64) -> Self {
        Self {
            tokens: limit.burst,
            at_us: now_us,
        }
    }

    /// Takes one token at `now_us`, or says how long until one is available.
    /// A clock that moved backwards refills nothing and takes nothing away.
    pub fn take(&mut self, limit: &RateLimit, now_us: i64) -> Result<(), Duration> {
        let elapsed = now_us.saturating_sub(self.at_us).max(0) as f64 / 1e6;
        self.tokens = (self.tokens + elapsed * limit.rate).min(limit.burst);
        self.at_us = self.at_us.max(now_us);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / limit.rate;
            Err(Duration::from_secs_f64(wait.clamp(0.001, 3600.0)))
        }
    }

    /// Whether the bucket has refilled completely by `now_us` (an idle caller
    /// whose bucket can be forgotten).
    pub fn is_full_at(&self, limit: &RateLimit, now_us: i64) -> bool {
        let elapsed = now_us.saturating_sub(self.at_us).max(0) as f64 / 1e6;
        self.tokens + elapsed * limit.rate >= limit.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn burst_then_steady_rate() {
        let l = RateLimit::new(2.0, 3.0).unwrap();
        let mut b = Bucket::full(&l, 0);
        for _ in 0..3 {
            assert!(b.take(&l, 0).is_ok());
        }
        let wait = b.take(&l, 0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(b.take(&l, S / 2).is_ok(), "half a second refills one at 2/s");
        assert!(b.take(&l, S / 2).is_err());
        assert!(b.is_full_at(&l, 10 * S));
        assert!(!b.is_full_at(&l, S));
    }

    #[test]
    fn refill_is_capped_at_the_burst() {
        let l = RateLimit::new(100.0, 2.0).unwrap();
        let mut b = Bucket::full(&l, 0);
        b.take(&l, 0).unwrap();
        b.take(&l, 0).unwrap();
        // An hour idle gives back the burst, not 360 000 calls.
        for _ in 0..2 {
            b.take(&l, 3600 * S).unwrap();
        }
        assert!(b.take(&l, 3600 * S).is_err());
    }

    #[test]
    fn clock_going_backwards_grants_nothing() {
        let l = RateLimit::new(1.0, 1.0).unwrap();
        let mut b = Bucket::full(&l, 10 * S);
        b.take(&l, 10 * S).unwrap();
        assert!(b.take(&l, 0).is_err());
        assert!(
            b.take(&l, 10 * S).is_err(),
            "the earlier instant did not reset the refill point"
        );
        assert!(b.take(&l, 11 * S).is_ok());
    }

    #[test]
    fn zero_or_nonsense_rates_mean_off() {
        assert!(RateLimit::new(0.0, 5.0).is_none());
        assert!(RateLimit::new(f64::NAN, 5.0).is_none());
        assert!(RateLimit::new(-1.0, 5.0).is_none());
        assert_eq!(RateLimit::new(1.0, 0.0).unwrap().burst, 1.0);
    }
}
