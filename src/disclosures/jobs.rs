//! The notice-release job: delivers the notices of requests whose notice
//! prohibition has ended (Clause 15.1(b): notify as soon as allowed),
//! each request in a transaction of its own, so one that fails never holds
//! back another and a replica running the same round at once does no harm.

use std::sync::Arc;
use std::time::Duration;

use crate::db::Store;
use crate::disclosures::service;
use crate::periodic::{CancellationToken, every};
use crate::secrets::SubjectSecrets;

/// How often waiting notices are checked against their prohibition's end.
pub const NOTICE_RELEASE_INTERVAL: Duration = Duration::from_secs(60);

/// Runs [`release_round`] every [`NOTICE_RELEASE_INTERVAL`] on the store's
/// clock until `stop`.
pub async fn release_notices(store: Store, secrets: Arc<SubjectSecrets>, stop: CancellationToken) {
    let clock = store.clock().clone();
    every(
        "authority_notice_release",
        NOTICE_RELEASE_INTERVAL,
        &clock,
        &stop,
        || release_round(store.clone(), secrets.clone()),
    )
    .await;
}

/// One round: every notice due is delivered; returns how many. A failure
/// is logged with the request's id (no personal data) and retried next
/// round.
pub async fn release_round(store: Store, secrets: Arc<SubjectSecrets>) -> crate::error::Result<usize> {
    let mut released = 0;
    for id in service::notices_due(&store).await? {
        match service::release_expired_notice(&store, secrets.clone(), id.clone()).await {
            Ok(true) => released += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(
                job = "authority_notice_release",
                authority_request.id = %id,
                error = %e,
                "authority request notice not released; retrying next round"
            ),
        }
    }
    Ok(released)
}
