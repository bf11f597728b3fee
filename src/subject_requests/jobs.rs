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
        let secrets = secrets.clone();
        let t = tenant.clone();
        let done = store
            .write("tenant.contract_end_erasure", move |c, clock| {
                let now = clock.now();
                let entry = AuditEntry {
                    actor: "proctor".into(),
                    role: "service".into(),
                    tenant_id: Some(t.clone()),
                    action: "subject_request.contract_end".into(),
                    target: format!("tenant/{t}"),
                    outcome: "ok".into(),
                    trace_id: String::new(),
                    detail: String::new(),
                };
                subject_requests::contract_end_erasure(c, now, &t, &secrets.receipt, entry)?;
                instructions::mark_erasure_requested(c, now, &t)
            })
            .await;
        match done {
            Ok(()) => opened += 1,
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
