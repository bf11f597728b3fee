//! Time as a dependency: the server reads "now" through a [`Clock`] so tests
//! can move time forward (lease expiry, deadlines) without sleeping. The
//! background jobs wait on the same clock ([`Clock::sleep_until`]), so a
//! test that moves a [`ManualClock`] also decides when they run.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use tokio::sync::watch;

/// A wait on a clock, owned so a spawned job can hold it.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Source of the current instant.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once this clock reads `at` or later: on the wall clock a
    /// timer, on a [`ManualClock`] when a test moves it there.
    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep;
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

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to; tests share it with the server they
/// start so deadlines and leases can be crossed deterministically.
#[derive(Debug)]
pub struct ManualClock {
    /// Microseconds since the epoch; sleepers watch it.
    micros: watch::Sender<i64>,
    /// The deadline of every sleep not yet over, by sleep id: what
    /// [`ManualClock::settle`] waits on.
    sleepers: Arc<Mutex<BTreeMap<u64, i64>>>,
    next_sleeper: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: DateTime<Utc>) -> Arc<Self> {
        Arc::new(Self {
            micros: watch::Sender::new(start.timestamp_micros()),
            sleepers: Arc::default(),
            next_sleeper: AtomicU64::new(0),
        })
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: chrono::Duration) {
        let us = by.num_microseconds().unwrap_or(i64::MAX);
        self.micros.send_modify(|m| *m = m.saturating_add(us));
    }

    /// Puts the clock at `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        self.micros.send_replace(at.timestamp_micros());
    }

    /// Moves the clock by `by` and waits until every job that was asleep
    /// has run the rounds that came due and is asleep again, so a test can
    /// assert on what a round did (or did not do) without sleeping.
    pub async fn advance_settled(&self, by: chrono::Duration) {
        let asleep = self.sleeping();
        self.advance(by);
        self.settle(asleep).await;
    }

    /// Waits until at least `asleep` sleeps are pending and none of them is
    /// already due: the jobs woken by a move have finished their round.
    pub async fn settle(&self, asleep: usize) {
        loop {
            let now = *self.micros.borrow();
            let idle = {
                let s = self.sleepers.lock().unwrap_or_else(|p| p.into_inner());
                s.len() >= asleep && s.values().all(|d| *d > now)
            };
            if idle {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// How many sleeps are pending.
    pub fn sleeping(&self) -> usize {
        self.sleepers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Removes a sleep from the pending ones when it ends or is dropped (a job
/// cancelled mid-sleep).
struct Pending {
    sleepers: Arc<Mutex<BTreeMap<u64, i64>>>,
    id: u64,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.sleepers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
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
        Utc.timestamp_micros(*self.micros.borrow())
            .single()
            .unwrap_or_default()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Sleep {
        let deadline = at.timestamp_micros();
        let id = self.next_sleeper.fetch_add(1, Ordering::Relaxed);
        self.sleepers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, deadline);
        let pending = Pending {
            sleepers: self.sleepers.clone(),
            id,
        };
        let mut micros = self.micros.subscribe();
        Box::pin(async move {
            let _pending = pending;
            // The sender lives as long as the clock; if it is gone, so is
            // the test, and the sleep never ends.
            if micros.wait_for(|m| *m >= deadline).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
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

    #[tokio::test]
    async fn a_manual_sleep_ends_only_when_the_clock_gets_there() {
        let start = Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap();
        let c = ManualClock::new(start);
        let mut sleep = c.sleep_until(start + chrono::Duration::seconds(10));
        assert_eq!(c.sleeping(), 1);
        c.advance(chrono::Duration::seconds(9));
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), &mut sleep).await;
        assert!(early.is_err(), "woke before its deadline");
        c.advance(chrono::Duration::seconds(1));
        sleep.await;
        assert_eq!(c.sleeping(), 0);
    }

    #[tokio::test]
    async fn a_due_sleep_is_over_at_once() {
        let start = Utc.with_ymd_and_hms(2026, 1, 31, 12, 0, 0).unwrap();
        let c = ManualClock::new(start);
        c.sleep_until(start).await;
        SystemClock
            .sleep_until(Utc::now() - chrono::Duration::seconds(1))
            .await;
    }
}
