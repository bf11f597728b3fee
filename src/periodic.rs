//! The one way a background loop runs: [`every`] runs a round, then waits
//! a period on a [`Clock`] until the server's [`CancellationToken`] is
//! cancelled. Jobs whose period is a business rule (deadlines, sweeps,
//! sealing, the refusal window, the JWKS reread) wait on the injected
//! clock, so a test moves a manual clock to run them and
//! [`crate::clock::ManualClock::advance_settled`] to know a round is over;
//! pollers that pick up other replicas' writes wait on the wall clock
//! ([`wall`]), since that is what they bound.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

use crate::clock::{SharedClock, SystemClock};

/// The wall clock, for pollers whose period is real time in tests too.
pub fn wall() -> SharedClock {
    Arc::new(SystemClock)
}

/// Runs `round` at once and then every `period` on `clock` until `stop` is
/// cancelled, logging what a round did and a failure (a failed round is
/// retried at the next one). A round is never interrupted by `stop`; the
/// wait between rounds is.
pub async fn every<F, Fut>(
    name: &'static str,
    period: Duration,
    clock: &SharedClock,
    stop: &CancellationToken,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::error::Result<usize>>,
{
    let period = chrono::Duration::from_std(period).unwrap_or(chrono::Duration::MAX);
    loop {
        let started = clock.now();
        match round().await {
            Ok(n) if n > 0 => tracing::info!(job = name, items = n, "background job did work"),
            Ok(_) => {}
            Err(e) => tracing::warn!(job = name, error = %e, "background job failed; retrying"),
        }
        let next = started
            .checked_add_signed(period)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        tokio::select! {
            _ = clock.sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Like [`every`], for a job that also knows when its next work is due and
/// can be woken: `round` returns what it did and the earliest time it has
/// work again (if any); the wait ends at that time or after `period`,
/// whichever comes first, or when `wake` fires (a write on this replica
/// the job follows), so new work starts at once instead of at the next
/// poll. The period bounds how late work written by other replicas is seen.
pub async fn every_or_sooner<F, Fut>(
    name: &'static str,
    period: Duration,
    clock: &SharedClock,
    stop: &CancellationToken,
    wake: &mut crate::db::notify::Follower,
    mut round: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::error::Result<(usize, Option<chrono::DateTime<chrono::Utc>>)>>,
{
    let period = chrono::Duration::from_std(period).unwrap_or(chrono::Duration::MAX);
    loop {
        let started = clock.now();
        let started_wall = std::time::Instant::now();
        let (did, due) = match round().await {
            Ok((n, due)) => {
                if n > 0 {
                    tracing::info!(job = name, items = n, "background job did work");
                }
                (n, due)
            }
            Err(e) => {
                tracing::warn!(job = name, error = %e, "background job failed; retrying");
                (0, None)
            }
        };
        let polled = started
            .checked_add_signed(period)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        // Work still due after a round that did some (it stops after a
        // bounded amount) goes on at once; after a round that did none it
        // waits for the next wake-up or poll rather than spinning (another
        // replica holds it, or it failed and was logged).
        // Compared as the clocks store time (microseconds), so work due
        // within the current microsecond counts as due, not as later.
        let now_us = clock.now().timestamp_micros();
        let next = match due {
            Some(d) if d.timestamp_micros() > now_us => d.min(polled),
            Some(_) if did > 0 => continue,
            _ => polled,
        };
        tokio::select! {
            _ = clock.sleep_until(next) => {}
            _ = wake.changed() => {
                // The spacing is also a sleep on the job's clock: a job
                // waiting out its spacing counts as asleep, as it did while
                // it waited for the wake-up (a test's manual clock settles
                // on the sleeps it sees).
                let left = MIN_WAKE_SPACING.saturating_sub(started_wall.elapsed());
                let until = clock.now() + chrono::Duration::from_std(left).unwrap_or_default();
                tokio::select! {
                    _ = clock.sleep_until(until) => {}
                    _ = spaced(started_wall, stop) => {}
                }
                if stop.is_cancelled() {
                    return;
                }
            }
            _ = stop.cancelled() => return,
        }
    }
}

/// Least time between the starts of two rounds that wake-ups run (on the
/// wall clock): how much later than at once woken work may start, and what
/// bounds a woken job to a few dozen rounds a second under any write rate.
pub const MIN_WAKE_SPACING: Duration = Duration::from_millis(25);

/// Waits, after a wake-up, until [`MIN_WAKE_SPACING`] has passed since the
/// last round `started`; false when `stop` fired meanwhile. Wake-ups that
/// come faster share one round: under a write burst every commit wakes the
/// job (each envelope to a tenant wakes webhook delivery, each audited
/// write the sequencer), and a round per wake kept them querying flat out
/// beside the writes, where a round every 25 ms does the same work in
/// larger batches.
pub async fn spaced(started: std::time::Instant, stop: &CancellationToken) -> bool {
    let since = started.elapsed();
    if since >= MIN_WAKE_SPACING {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(MIN_WAKE_SPACING - since) => true,
        _ = stop.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn rounds_follow_the_clock_and_stop_with_the_token() {
        let clock = ManualClock::new(chrono::Utc::now());
        let shared: SharedClock = clock.clone();
        let stop = CancellationToken::new();
        let rounds = Arc::new(AtomicUsize::new(0));
        let (r, s) = (rounds.clone(), stop.clone());
        let job = tokio::spawn(async move {
            every("test", Duration::from_secs(60), &shared, &s, || {
                let r = r.clone();
                async move { Ok(r.fetch_add(1, Ordering::SeqCst)) }
            })
            .await
        });
        clock.settle(1).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1, "the first round runs at start");
        clock.advance_settled(chrono::Duration::seconds(59)).await;
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            1,
            "no round before the period is over"
        );
        clock.advance_settled(chrono::Duration::seconds(1)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
        stop.cancel();
        job.await.unwrap();
        assert_eq!(clock.sleeping(), 0);
    }

    #[tokio::test]
    async fn a_sooner_job_runs_when_due_when_woken_and_at_its_period() {
        use crate::db::notify::{Hub, Topic};
        // Nanoseconds beyond the clock's microseconds must not matter.
        let start = chrono::Utc::now();
        let clock = ManualClock::new(start);
        let shared: SharedClock = clock.clone();
        let stop = CancellationToken::new();
        let hub = Arc::new(Hub::default());
        let mut wake = hub.follow(Topic::Webhooks);
        let rounds = Arc::new(AtomicUsize::new(0));
        let (r, s) = (rounds.clone(), stop.clone());
        let job = tokio::spawn(async move {
            every_or_sooner("test", Duration::from_secs(60), &shared, &s, &mut wake, || {
                let r = r.clone();
                async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    // Work due 10 s after the start, whenever asked.
                    Ok((0, Some(start + chrono::Duration::seconds(10))))
                }
            })
            .await
        });
        clock.settle(1).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1, "the first round runs at start");
        clock.advance_settled(chrono::Duration::seconds(9)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1, "not before the work is due");
        clock.advance_settled(chrono::Duration::seconds(1)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 2, "when the work is due");
        // Work due in the past waits for the period, not a spin.
        clock.advance_settled(chrono::Duration::seconds(59)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 2);
        clock.advance_settled(chrono::Duration::seconds(1)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 3, "at the period");
        hub.notify(&[Topic::Webhooks]);
        for _ in 0..500 {
            if rounds.load(Ordering::SeqCst) == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(rounds.load(Ordering::SeqCst), 4, "a wake-up runs a round at once");
        stop.cancel();
        job.await.unwrap();
    }
}
