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
}
