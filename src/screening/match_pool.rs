//! Name matching on threads of its own. A screening is pure CPU work that
//! can take long for long names; run on the async worker threads, four
//! `BatchScreen` streams of long queries took `CheckProcessing` to p50
//! 982 ms and made health checks fail, because nothing else could run
//! until a worker finished its match. Here matching runs on a fixed rayon
//! pool, in arrival order, so the request threads stay free for decisions
//! and health, and:
//! - each caller has at most `per_caller` screenings matching or queued;
//!   more wait for one of its own to finish (back-pressure on its stream),
//!   so one caller cannot queue ahead of everyone else;
//! - the whole queue is bounded: past it a screening is RESOURCE_EXHAUSTED.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::error::Error;

/// Screenings queued per matching thread before the pool refuses more.
const QUEUE_PER_THREAD: usize = 64;

/// The matching pool of one server.
pub struct MatchPool {
    pool: rayon::ThreadPool,
    threads: usize,
    per_caller: usize,
    queue: Arc<Semaphore>,
    callers: Mutex<HashMap<String, Weak<Semaphore>>>,
}

impl std::fmt::Debug for MatchPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchPool")
            .field("threads", &self.threads)
            .field("per_caller", &self.per_caller)
            .finish_non_exhaustive()
    }
}

impl MatchPool {
    /// A pool of `threads` threads (0 = one per core) taking at most
    /// `per_caller` screenings of one caller at once (0 = one per thread).
    pub fn new(threads: usize, per_caller: usize) -> Result<Arc<Self>, String> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
        } else {
            threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("proctor-match-{i}"))
            .start_handler(|_| crate::priority::lower_this_thread("name matching"))
            // A panicking match fails its own call (its reply is dropped)
            // instead of aborting the process, rayon's default.
            .panic_handler(|_| tracing::error!("a screening panicked; its call fails"))
            .build()
            .map_err(|e| format!("cannot start the matching pool: {e}"))?;
        Ok(Arc::new(Self {
            pool,
            threads,
            per_caller: if per_caller == 0 { threads } else { per_caller },
            queue: Arc::new(Semaphore::new(threads * QUEUE_PER_THREAD)),
            callers: Mutex::new(HashMap::new()),
        }))
    }

    /// Matching threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` on the pool for `caller`, waiting first while the caller
    /// has `per_caller` screenings in the pool.
    pub async fn run<T, F>(&self, caller: &str, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let own: OwnedSemaphorePermit = self
            .caller(caller)
            .acquire_owned()
            .await
            .map_err(|_| Error::Unexpected("matching pool closed".into()))?;
        let queued = self
            .queue
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::OverLimit {
                message: "screening is saturated; retry shortly".into(),
                retry_after: Duration::from_secs(1),
            })?;
        let (tx, rx) = oneshot::channel();
        self.pool.spawn_fifo(move || {
            let _held = (own, queued);
            // A call that ended while queued is not matched for nobody.
            if !tx.is_closed() {
                let _ = tx.send(f());
            }
        });
        rx.await.map_err(|_| Error::Unexpected("screening failed".into()))
    }

    /// The semaphore of `caller`'s slots, shared by its calls while any
    /// holds or waits for one.
    fn caller(&self, caller: &str) -> Arc<Semaphore> {
        let mut map = self
            .callers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = map.get(caller).and_then(Weak::upgrade) {
            return s;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let s = Arc::new(Semaphore::new(self.per_caller));
        map.insert(caller.to_owned(), Arc::downgrade(&s));
        s
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn matches_off_the_async_threads() {
        let pool = MatchPool::new(2, 0).unwrap();
        let name = pool
            .run("c", || std::thread::current().name().map(str::to_owned))
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("proctor-match-"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_caller_holds_at_most_its_share() {
        let pool = MatchPool::new(4, 2).unwrap();
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let jobs = (0..12).map(|_| {
            let (pool, running, peak) = (pool.clone(), running.clone(), peak.clone());
            tokio::spawn(async move {
                pool.run("greedy", move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            })
        });
        for j in jobs.collect::<Vec<_>>() {
            j.await.unwrap().unwrap();
        }
        assert_eq!(
            peak.load(Ordering::SeqCst),
            2,
            "never more than the caller's share"
        );
    }

    #[tokio::test]
    async fn a_full_queue_is_resource_exhausted() {
        let pool = MatchPool::new(1, 1000).unwrap();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let mut waiting = Vec::new();
        for _ in 0..QUEUE_PER_THREAD {
            let (pool, gate) = (pool.clone(), gate.clone());
            waiting.push(tokio::spawn(async move {
                pool.run("c", move || gate.lock().unwrap().recv().unwrap()).await
            }));
        }
        // Wait until every job holds its queue slot.
        while pool.queue.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let refused = pool.run("other", || ()).await.unwrap_err();
        assert!(matches!(refused, Error::OverLimit { .. }), "{refused:?}");
        for _ in 0..QUEUE_PER_THREAD {
            release.send(()).unwrap();
        }
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        pool.run("other", || ()).await.unwrap();
    }

    #[tokio::test]
    async fn a_panic_fails_only_its_call() {
        let pool = MatchPool::new(1, 0).unwrap();
        let failed = pool.run("c", || -> u8 { panic!("boom") }).await;
        assert!(matches!(failed, Err(Error::Unexpected(_))));
        assert_eq!(pool.run("c", || 7).await.unwrap(), 7);
    }
}
