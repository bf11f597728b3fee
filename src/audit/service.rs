//! The audit capability's reads: pages of the trail (a tenant's own, or
//! everything), and the chain's verification. The log is written only
//! through the command pipeline ([`crate::db::pipeline::Tx::audit`]) and
//! the refusal counts ([`super::refusals`]), never from here.

use super::model::AuditEvent;
use super::repo;
use crate::db::Store;
use crate::error::Result;

/// Up to `size` events after sequence number `after`, in chain order, of
/// `tenant` only when given.
pub async fn events(store: &Store, tenant: Option<String>, after: i64, size: i64) -> Result<Vec<AuditEvent>> {
    store
        .read("audit.list", move |c, _| {
            repo::list(c, tenant.as_deref(), after, size)
        })
        .await
}

/// Recomputes the chain: how many events were checked, and the first one
/// whose digest does not follow from its predecessor. A broken chain is
/// logged as an error with that event's id (never its content).
pub async fn verify(store: &Store) -> Result<(u64, Option<String>)> {
    let (checked, bad) = store.read("audit.verify", |c, _| repo::verify(c)).await?;
    if let Some(id) = &bad {
        tracing::error!(event.id = %id, "audit chain broken");
    }
    Ok((checked, bad))
}
