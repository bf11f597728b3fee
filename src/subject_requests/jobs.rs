//! Background jobs every replica runs beside the RPCs. Each is one write
//! transaction per round and idempotent, so several replicas running the same
//! job at once do no harm.

use std::sync::Arc;
use std::time::Duration;

use crate::audit::model::AuditEntry;
use crate::db::Store;
use crate::instructions::repo as instructions;
use crate::periodic::{CancellationToken, every};
use crate::secrets::KeyRing;
use crate::secrets::SubjectSecrets;
use crate::secrets::reseal;
use crate::subject_requests::repo as subject_requests;

/// How often expired export bundles are deleted.
pub const EXPORT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often terminated tenants are checked for a due erasure.
pub const CONTRACT_END_INTERVAL: Duration = Duration::from_secs(1);
/// How often leases that ran out are looked for. The backoff after an
/// expiry counts from the lease's end, so this only bounds how late a task
/// whose system died is seen to need attention.
pub const LEASE_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Rows of each kind sealed per transaction by [`seal_clear_rows`].
const SEAL_CLEAR_BATCH: i64 = 200;

/// Deletes export bundles older than `retention` after first download.
pub async fn sweep_exports(store: Store, retention: chrono::Duration, stop: CancellationToken) {
    let clock = store.clock().clone();
    every("export_sweep", EXPORT_SWEEP_INTERVAL, &clock, &stop, || {
        store.write("subject_request.sweep_exports", move |c, clock| {
            subject_requests::sweep_exports(c, clock.now(), retention)
        })
    })
    .await;
}

/// Records leases that ran out as failed attempts (backoff, then
/// NEEDS_ATTENTION under `policy`), so a task whose system died holding it
/// is not left leased to nobody, and is not offered forever either.
pub async fn expire_leases(
    store: Store,
    secrets: Arc<SubjectSecrets>,
    policy: crate::subject_requests::model::TaskPolicy,
    stop: CancellationToken,
) {
    let clock = store.clock().clone();
    every("lease_expiry", LEASE_SWEEP_INTERVAL, &clock, &stop, || {
        expire_leases_round(store.clone(), secrets.clone(), policy)
    })
    .await;
}

/// One round of [`expire_leases`]: a read, and a write transaction only
/// when some lease ran out (an idle server does not write every round).
pub async fn expire_leases_round(
    store: Store,
    secrets: Arc<SubjectSecrets>,
    policy: crate::subject_requests::model::TaskPolicy,
) -> crate::error::Result<usize> {
    let any = store
        .read("subject_request.expired_leases", |c, clock| {
            subject_requests::expired_leases(c, clock.now(), None, 1)
        })
        .await?;
    if any.is_empty() {
        return Ok(0);
    }
    crate::subject_requests::service::expire_leases(&store, secrets, policy).await
}

/// Opens the contract-end erasure request (all categories, every system) of
/// each terminated tenant whose grace period has passed.
pub async fn contract_end_erasures(store: Store, secrets: Arc<SubjectSecrets>, stop: CancellationToken) {
    let clock = store.clock().clone();
    every(
        "contract_end_erasure",
        CONTRACT_END_INTERVAL,
        &clock,
        &stop,
        || contract_end_round(store.clone(), secrets.clone()),
    )
    .await;
}

/// One round of the contract-end sweep: each due tenant in a transaction of
/// its own, so one tenant whose erasure cannot be opened never holds back
/// another's. Returns how many were opened; a failure is logged with the
/// tenant and retried next round.
pub async fn contract_end_round(store: Store, secrets: Arc<SubjectSecrets>) -> crate::error::Result<usize> {
    let due = store
        .read("tenant.erasures_due", |c, clock| {
            instructions::erasures_due(c, clock.now())
        })
        .await?;
    let mut opened = 0;
    for tenant in due {
        let done =
            crate::subject_requests::service::contract_end_erasure(&store, secrets.clone(), tenant.clone())
                .await;
        match done {
            Ok(_) => opened += 1,
            Err(e) => tracing::warn!(
                job = "contract_end_erasure",
                tenant.id = %tenant,
                error = %e,
                "contract-end erasure not opened; retrying next round"
            ),
        }
    }
    Ok(opened)
}

/// The key ring of the server's secrets, lent to [`reseal::run`].
#[derive(Clone)]
struct RingOf(Arc<SubjectSecrets>);

impl std::borrow::Borrow<KeyRing> for RingOf {
    fn borrow(&self) -> &KeyRing {
        &self.0.ring
    }
}

/// Seals, at start and then every `interval`, the rows that still hold
/// personal data in the clear: those written before their field was
/// sealed (a migration has no key to seal them with) and those written by
/// a replica of the previous version during a rolling upgrade. Only clear
/// rows are touched (rows under an older key are `proctor keys reseal`'s),
/// in batches of one transaction and one `keys.seal_clear` audit event of
/// counts each. A row that does not open is logged by kind and id and left.
pub async fn seal_clear_rows(
    store: Store,
    secrets: Arc<SubjectSecrets>,
    interval: Duration,
    stop: CancellationToken,
) {
    let clock = store.clock().clone();
    every("seal_clear_rows", interval, &clock, &stop, || {
        let (store, ring) = (store.clone(), RingOf(secrets.clone()));
        async move {
            let actor = AuditEntry {
                actor: "proctor".into(),
                role: "service".into(),
                tenant_id: None,
                action: String::new(),
                target: String::new(),
                outcome: "ok".into(),
                trace_id: String::new(),
                detail: String::new(),
            };
            let run = reseal::run(&store, ring, actor, reseal::Scope::ClearOnly, SEAL_CLEAR_BATCH).await?;
            for f in &run.failed {
                tracing::warn!(kind = f.kind.as_str(), id = %f.id, reason = %f.reason, "a clear row could not be sealed");
            }
            Ok(usize::try_from(run.resealed.total()).unwrap_or(usize::MAX))
        }
    })
    .await;
}
