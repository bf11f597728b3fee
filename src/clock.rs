//! Time as a dependency: the server reads "now" through a [`Clock`] so tests
//! can move time forward (lease expiry, deadlines) without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeZone, Utc};

/// Source of the current instant.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// Shared handle to a clock, as the application state holds it.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock; what `serve` uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; tests share it with the server they
/// start so deadlines and leases can be crossed deterministically.
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            micros: AtomicI64::new(start.timestamp_micros()),
        })
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        let us = by.num_microseconds().unwrap_or(i64::MAX);
        self.micros.fetch_add(us, Ordering::SeqCst);
    }

    /// Puts the clock at `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.micros.store(at.timestamp_micros(), Ordering::SeqCst);
    }
}

impl ManualClock {
    /// The current instant as a protobuf timestamp, for building requests.
    pub fn now_ts(&self) -> prost_types::Timestamp {
        let now = self.now();
        prost_types::Timestamp {
            seconds: now.timestamp(),
            nanos: now.timestamp_subsec_nanos() as i32,
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.micros.load(Ordering::SeqCst))
            .single()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap();
        let c = ManualClock::new(start);
        assert_eq!(c.now(), start);
        c.advance(chrono::Duration::hours(72));
        assert_eq!(c.now(), start + chrono::Duration::hours(72));
        c.set(start);
        assert_eq!(c.now(), start);
    }
}
