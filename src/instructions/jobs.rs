//! The instructions capability's background jobs, on the store's (injected)
//! clock: legal holds whose `until` has passed are ended and the erasure
//! they withheld is issued, each hold in a command of its own; logged
//! decisions past their retention are swept.

use std::time::Duration;

use crate::db::Store;
use crate::periodic::{CancellationToken, every};

/// How often holds are checked against their `until`.
pub const HOLD_EXPIRY_INTERVAL: Duration = Duration::from_secs(10);

/// Runs [`crate::instructions::service::end_run_out_holds`] every
/// [`HOLD_EXPIRY_INTERVAL`] on the store's clock until `stop`.
pub async fn end_run_out_holds(store: Store, stop: CancellationToken) {
    let clock = store.clock().clone();
    every("legal_hold_expiry", HOLD_EXPIRY_INTERVAL, &clock, &stop, || {
        let store = store.clone();
        async move { crate::instructions::service::end_run_out_holds(&store).await }
    })
    .await;
}

/// How often the decision log is swept.
pub const DECISION_SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// Deletes logged decisions older than `retention` every
/// [`DECISION_SWEEP_INTERVAL`] until `stop`.
pub async fn sweep_decision_log(store: Store, retention: chrono::Duration, stop: CancellationToken) {
    let clock = store.clock().clone();
    every(
        "decision_log_sweep",
        DECISION_SWEEP_INTERVAL,
        &clock,
        &stop,
        || {
            let store = store.clone();
            async move {
                store
                    .write("decision_log.sweep", move |c, clock| {
                        crate::instructions::repo::sweep_decisions(c, clock.now() - retention)
                    })
                    .await
            }
        },
    )
    .await;
}
