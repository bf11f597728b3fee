//! The instructions capability's commands and reads, one function each.
//!
//! Every command is one transaction through the pipeline
//! ([`crate::db::pipeline`]): the rows, the audit event and the decision
//! change-log entry commit together, and the caller's replica has applied
//! the change to its decision snapshots before the function returns, so the
//! next `CheckProcessing` on this replica already sees it. The checks
//! themselves never reach this module: they are answered from the snapshots
//! ([`super::snapshots`]).

use chrono::{DateTime, Utc};

use super::model::{InstructionSet, PutInstructions, TaxonomyKind, retention};
use super::repo::{self, StoredVersion, TAXONOMY_CHANGE, TenantState};
use crate::db::pipeline::Actor;
use crate::error::{Error, Result};
use crate::rpc::AppState;

/// A new version of a tenant's instructions, as the caller sent it: checked
/// against the taxonomy as committed, inside the command's transaction, so
/// a key added a moment ago is accepted and one being removed is not.
#[derive(Debug, Clone)]
pub struct PutRequest {
    /// The tenant whose instructions change (already scoped to the caller).
    pub tenant_id: String,
    /// The version the writer last saw (0 = none yet).
    pub expected_version: u64,
    /// The new set; `None` is refused.
    pub set: Option<InstructionSet>,
    /// Why it changes, for the history.
    pub reason: String,
}

/// Writes version N+1 of a tenant's instructions, optimistic on
/// `expected_version` (anything but the current version is refused, so two
/// writers never silently overwrite each other).
pub async fn put(state: &AppState, actor: Actor, req: PutRequest) -> Result<StoredVersion> {
    let author = actor.sub.clone();
    state
        .command("instructions.put", actor, move |tx| {
            let tax = repo::taxonomy(tx.conn())?;
            let cmd = PutInstructions::parse(req.tenant_id, req.expected_version, req.set, req.reason, &tax)?;
            let now = tx.now();
            let v = repo::put(
                tx.conn(),
                now,
                &cmd.tenant_id,
                cmd.expected_version,
                &author,
                &cmd.reason,
                &cmd.set,
            )?;
            tx.note_decisions_changed(&v.tenant_id);
            let target = format!("instructions/{}/v{}", v.tenant_id, v.version);
            tx.audit("instructions.put", &target, Some(&v.tenant_id), "")?;
            Ok(v)
        })
        .await
}

/// A termination: from `effective_at` (None: now; never in the past) the
/// tenant's processing is denied, and after its grace period the
/// contract-end erasure opens.
#[derive(Debug, Clone)]
pub struct Terminate {
    /// The tenant ending its contract.
    pub tenant_id: String,
    /// When the contract ends; None = now.
    pub effective_at: Option<DateTime<Utc>>,
    /// Why, for the history.
    pub reason: String,
}

/// Terminates a tenant's contract (once; a second termination is refused).
pub async fn terminate(state: &AppState, actor: Actor, cmd: Terminate) -> Result<TenantState> {
    state
        .command("tenant.terminate", actor, move |tx| {
            let now = tx.now();
            let at = cmd.effective_at.unwrap_or(now);
            if at < now {
                return Err(Error::invalid(
                    "effective_at",
                    "must not lie in the past (termination is never retroactive)",
                ));
            }
            let s = repo::terminate(tx.conn(), now, &cmd.tenant_id, at, &cmd.reason)?;
            tx.note_decisions_changed(&cmd.tenant_id);
            let target = format!("tenant/{}", cmd.tenant_id);
            tx.audit("tenant.terminate", &target, Some(&cmd.tenant_id), "")?;
            Ok(s)
        })
        .await
}

/// A new taxonomy key (category or purpose) with its description.
#[derive(Debug, Clone)]
pub struct AddTaxonomyKey {
    /// Category or purpose.
    pub kind: TaxonomyKind,
    /// The key, already checked to be well formed.
    pub key: String,
    /// What it means, for the people writing instructions.
    pub description: String,
}

/// Extends the taxonomy; an existing key is refused. Every replica reloads
/// its taxonomy snapshot.
pub async fn add_taxonomy_key(state: &AppState, actor: Actor, cmd: AddTaxonomyKey) -> Result<()> {
    state
        .command("taxonomy.add", actor, move |tx| {
            let now = tx.now();
            repo::add_taxonomy_key(tx.conn(), now, cmd.kind, &cmd.key, &cmd.description)?;
            tx.note_decisions_changed(TAXONOMY_CHANGE);
            let target = format!("{}/{}", cmd.kind.as_str(), cmd.key);
            tx.audit("taxonomy.add", &target, None, "")
        })
        .await
}

/// A tenant's instructions: `version` 0 is the current one.
pub async fn get(state: &AppState, tenant: String, version: u64) -> Result<StoredVersion> {
    state
        .store
        .read("instructions.get", move |c, _| match version {
            0 => repo::current(c, &tenant)?
                .ok_or_else(|| Error::Missing(format!("tenant {tenant} has no instructions"))),
            n => repo::version(c, &tenant, n),
        })
        .await
}

/// One page of a tenant's instruction history, oldest first.
pub async fn versions(state: &AppState, tenant: String, after: i64, size: i64) -> Result<Vec<StoredVersion>> {
    state
        .store
        .read("instructions.list", move |c, _| {
            repo::versions(c, &tenant, after, size)
        })
        .await
}

/// The retention cutoffs of a tenant's current instructions at `as_of`
/// (None: now), with the version they come from.
pub async fn retention_cutoffs(
    state: &AppState,
    tenant: String,
    as_of: Option<DateTime<Utc>>,
) -> Result<(Vec<retention::Cutoff>, u64)> {
    let (current, now) = state
        .store
        .read("instructions.retention", move |c, clock| {
            Ok((repo::current(c, &tenant)?, clock.now()))
        })
        .await?;
    let current = current.ok_or_else(|| Error::WrongState("the tenant has no instructions".into()))?;
    Ok((
        retention::cutoffs(&current.set, as_of.unwrap_or(now)),
        current.version,
    ))
}

/// Every taxonomy key with its description.
pub async fn taxonomy(state: &AppState) -> Result<Vec<(TaxonomyKind, String, String)>> {
    state
        .store
        .read("taxonomy.list", |c, _| repo::taxonomy_entries(c))
        .await
}
