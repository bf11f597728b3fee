//! The server's count of refused calls (see [`crate::audit::refusals_model`]):
//! the auth layer, the peer rate limit and the handlers' tenant checks
//! record into it without touching the database, and a background flusher
//! writes each due window as one audit event per caller class, in one
//! transaction. The last window is written on shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::model::AuditEntry;
use crate::audit::refusals_model::RefusalWindow;
use crate::db::Store;
use crate::periodic::CancellationToken;

/// How often (on the store's clock, so tests move it by hand) the flusher
/// looks whether the window is due; this only bounds how late after the
/// interval a window is written.
const TICK: Duration = Duration::from_millis(250);

/// Refused calls counted since the last write.
#[derive(Debug)]
pub struct Refusals {
    store: Store,
    interval: chrono::Duration,
    window: Mutex<RefusalWindow>,
    /// Held while a window is written, so the final flush on shutdown
    /// returns only once an earlier write has committed too.
    writing: tokio::sync::Mutex<()>,
}

impl Refusals {
    /// Counts into windows of `interval`, written to `store`.
    pub fn new(store: Store, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            interval: chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::MAX),
            window: Mutex::new(RefusalWindow::default()),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RefusalWindow> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one refused call; never waits for the database.
    pub fn record(&self, refused: &AuditEntry) {
        let now = self.store.clock().now();
        self.lock().record(now, refused);
    }

    /// Writes the window when it is due (or whenever it holds anything,
    /// with `force`). A failed write puts the counts back for the next try.
    pub async fn flush(&self, force: bool) {
        let _writing = self.writing.lock().await;
        let now = self.store.clock().now();
        let taken = {
            let mut w = self.lock();
            if w.is_empty() || !(force || w.is_due(now, self.interval)) {
                return;
            }
            std::mem::take(&mut *w)
        };
        let entries = taken.entries(now);
        let res = self
            .store
            .write("audit.refusals", move |conn, clock| {
                let at = clock.now();
                for e in entries {
                    crate::audit::repo::append(conn, at, e)?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "could not audit the refused calls; kept for the next try");
            self.lock().restore(taken);
        }
    }

    /// Writes due windows until `stop` is cancelled, then whatever is
    /// left, so a shutdown loses no count.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let clock = self.store.clock().clone();
        crate::periodic::every("refusal_flush", TICK, &clock, &stop, || async {
            self.flush(false).await;
            Ok(0)
        })
        .await;
        self.flush(true).await;
    }
}
