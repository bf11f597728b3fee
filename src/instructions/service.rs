//! The instructions capability's commands and reads, one function each.
//!
//! Every command is one transaction through the pipeline
//! ([`crate::db::pipeline`]): the rows, the audit event and the decision
//! change-log entry commit together, and the caller's replica has applied
//! the change to its decision snapshots before the function returns, so the
//! next `CheckProcessing` on this replica already sees it. The checks
//! themselves never reach this module: they are answered from the snapshots
//! ([`super::snapshots`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::model::holds::{Held, MAX_HOLD_REASON, PlaceHold, subject_hash};
use super::model::{InstructionSet, PutInstructions, TaxonomyKind, retention};
use super::repo::{self, StoredVersion, TAXONOMY_CHANGE, TenantState};
use crate::db::DbConnection;
use crate::db::pipeline::{Actor, Tx};
use crate::error::{Error, Result};
use crate::rpc::AppState;
use crate::secrets::sealed::{Field, StoredText};

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
                .ok_or_else(|| Error::not_found("instructions", format!("tenants/{tenant}"))),
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
/// (None: now), with the version they come from; categories under an
/// active legal hold are marked held, without a cutoff.
pub async fn retention_cutoffs(
    state: &AppState,
    tenant: String,
    as_of: Option<DateTime<Utc>>,
) -> Result<(Vec<retention::Cutoff>, u64)> {
    let (current, holds, now) = state
        .store
        .read("instructions.retention", move |c, clock| {
            let now = clock.now();
            Ok((
                repo::current(c, &tenant)?,
                repo::holds(c, Some(&tenant), Some(now))?,
                now,
            ))
        })
        .await?;
    let current = current.ok_or_else(|| Error::WrongState("the tenant has no instructions".into()))?;
    let mut cutoffs = retention::cutoffs(&current.set, as_of.unwrap_or(now));
    // Any active hold keeps its categories whole: a cutoff applies to all
    // of a category's data, so a hold of one subject holds it too.
    let scopes: Vec<_> = holds.iter().map(repo::HoldRow::scope).collect();
    retention::mark_held(&mut cutoffs, &Held::of_any_subject(&scopes, now));
    Ok((cutoffs, current.version))
}

/// Every taxonomy key with its description.
pub async fn taxonomy(state: &AppState) -> Result<Vec<(TaxonomyKind, String, String)>> {
    state
        .store
        .read("taxonomy.list", |c, _| repo::taxonomy_entries(c))
        .await
}

/// A page of the decision log under `filter` after row `after`: `(seq,
/// record)`, subject refs opened for the reader.
pub async fn list_decisions(
    state: &AppState,
    filter: repo::DecisionFilter,
    after: i64,
    size: i64,
) -> Result<Vec<(i64, crate::instructions::decision_log::LoggedDecision)>> {
    let secrets = state.secrets.clone();
    state
        .store
        .read("decision_log.list", move |c, _| {
            repo::list_decisions(c, &secrets.ring, &filter, after, size)
        })
        .await
}

/// A legal hold's sealed texts (one JSON document): the subject ref names a
/// person, and reasons may too.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct HoldTexts {
    #[serde(default)]
    subject_ref: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    release_reason: String,
}

/// A legal hold as its reader sees it: texts opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldView {
    /// UUID.
    pub id: String,
    /// Tenant whose data is held.
    pub tenant_id: String,
    /// The data subject; empty = the whole tenant.
    pub subject_ref: String,
    /// Categories held; empty = all.
    pub categories: Vec<String>,
    /// Why it was placed.
    pub reason: String,
    /// Matter or case number.
    pub reference: String,
    /// Who placed it.
    pub placed_by: String,
    /// When.
    pub placed_at: DateTime<Utc>,
    /// When it ends by itself.
    pub until: Option<DateTime<Utc>>,
    /// When it was released.
    pub released_at: Option<DateTime<Utc>>,
    /// Why it was released.
    pub release_reason: String,
    /// It holds now.
    pub active: bool,
}

fn open_texts(ring: &crate::secrets::KeyRing, row: &repo::HoldRow) -> Result<HoldTexts> {
    let stored = StoredText::from_columns(None, row.texts_key_id.clone(), row.texts_sealed.clone());
    let doc = stored.open(ring, Field::LegalHoldTexts, &row.id)?;
    if doc.is_empty() {
        return Ok(HoldTexts::default());
    }
    serde_json::from_str(&doc)
        .map_err(|_| Error::Unexpected(format!("legal hold {} texts unreadable", row.id)))
}

fn seal_texts(ring: &crate::secrets::KeyRing, id: &str, t: &HoldTexts) -> Result<StoredText> {
    let doc = serde_json::to_string(t).map_err(|e| Error::Unexpected(e.to_string()))?;
    StoredText::seal(ring, Field::LegalHoldTexts, id, &doc)
}

fn hold_view(ring: &crate::secrets::KeyRing, row: &repo::HoldRow, now: DateTime<Utc>) -> Result<HoldView> {
    let texts = open_texts(ring, row)?;
    Ok(HoldView {
        id: row.id.clone(),
        tenant_id: row.tenant_id.clone(),
        subject_ref: texts.subject_ref,
        categories: crate::db::from_json_list(&row.categories),
        reason: texts.reason,
        reference: row.reference.clone(),
        placed_by: row.placed_by.clone(),
        placed_at: crate::db::from_us(row.placed_at_us),
        until: row.until_us.map(crate::db::from_us),
        released_at: row.released_at_us.map(crate::db::from_us),
        release_reason: texts.release_reason,
        active: row.scope().active(now),
    })
}

/// A hold as the caller asked for it (tenant already scoped; checked in the
/// command, against the taxonomy as committed).
#[derive(Debug, Clone)]
pub struct PlaceHoldRequest {
    /// Tenant whose data is held.
    pub tenant_id: String,
    /// The data subject; empty = the whole tenant.
    pub subject_ref: String,
    /// Categories; empty = all.
    pub categories: Vec<String>,
    /// Why.
    pub reason: String,
    /// Matter or case number.
    pub reference: String,
    /// When it ends by itself.
    pub until: Option<DateTime<Utc>>,
}

/// Places a legal hold: stored with its texts sealed, audited, and applied
/// at once to the tenant's open erasure requests (tasks over held data are
/// withdrawn and recorded as withheld), all in one transaction.
pub async fn place_hold(state: &AppState, actor: Actor, req: PlaceHoldRequest) -> Result<HoldView> {
    let secrets = state.secrets.clone();
    state
        .command("legal_hold.place", actor, move |tx| {
            let now = tx.now();
            let cmd = PlaceHold::parse(
                req.tenant_id,
                req.subject_ref,
                req.categories,
                req.reason,
                req.reference,
                req.until,
                now,
            )?;
            repo::check_known_categories(tx.conn(), "categories", &cmd.categories)?;
            // Holds of one tenant and its erasures are placed and applied in turn.
            crate::db::key_lock(tx.conn(), "legal_hold", &cmd.tenant_id)?;
            let id = uuid::Uuid::new_v4().to_string();
            let texts = seal_texts(
                &secrets.ring,
                &id,
                &HoldTexts {
                    subject_ref: cmd.subject_ref.clone(),
                    reason: cmd.reason.clone(),
                    release_reason: String::new(),
                },
            )?;
            let row = repo::HoldRow {
                id: id.clone(),
                tenant_id: cmd.tenant_id.clone(),
                subject_hash: subject_hash(&cmd.tenant_id, &cmd.subject_ref),
                categories: crate::db::to_json_list(&cmd.categories),
                reference: cmd.reference.clone(),
                placed_by: tx.actor().sub.clone(),
                placed_at_us: crate::db::to_us(now),
                until_us: cmd.until.map(crate::db::to_us),
                released_at_us: None,
                released_by: None,
                ended_at_us: None,
                texts_sealed: texts.sealed,
                texts_key_id: texts.key_id,
            };
            repo::insert_hold(tx.conn(), &row)?;
            let withheld = crate::subject_requests::service::withhold_open_erasures(tx, &cmd.tenant_id)?;
            let detail = serde_json::json!({
                "whole_tenant": cmd.subject_ref.is_empty(),
                "categories": cmd.categories,
                "until": cmd.until.map(|u| u.to_rfc3339()),
                "withheld_tasks": withheld,
            });
            tx.audit(
                "legal_hold.place",
                &format!("legal_hold/{id}"),
                Some(&cmd.tenant_id),
                &detail.to_string(),
            )?;
            hold_view(&secrets.ring, &row, now)
        })
        .await
}

/// Releases a hold (`tenant` = `Some`: only one of that tenant; another
/// tenant's is NOT_FOUND): it stops holding at once, and the erasure it
/// withheld is issued where no other hold still covers it. A second release
/// is FAILED_PRECONDITION.
pub async fn release_hold(
    state: &AppState,
    actor: Actor,
    tenant: Option<String>,
    id: String,
    reason: String,
) -> Result<HoldView> {
    let secrets = state.secrets.clone();
    state
        .command("legal_hold.release", actor, move |tx| {
            let now = tx.now();
            let mut v = crate::validate::Violations::new();
            v.required_text("id", &id, 64);
            v.required_text("reason", &reason, MAX_HOLD_REASON);
            v.finish()?;
            let row = repo::hold(tx.conn(), tenant.as_deref(), &id)?;
            crate::db::key_lock(tx.conn(), "legal_hold", &row.tenant_id)?;
            if row.released_at_us.is_some() {
                return Err(Error::WrongState(format!("legal hold {id} is already released")));
            }
            let mut texts = open_texts(&secrets.ring, &row)?;
            texts.release_reason = reason;
            let sealed = seal_texts(&secrets.ring, &id, &texts)?;
            let by = tx.actor().sub.clone();
            repo::release_hold(tx.conn(), now, &id, &by, &sealed)?;
            let issued = issue_released(tx, &row.tenant_id)?;
            let detail = serde_json::json!({ "issued_tasks": issued });
            tx.audit(
                "legal_hold.release",
                &format!("legal_hold/{id}"),
                Some(&row.tenant_id),
                &detail.to_string(),
            )?;
            let row = repo::hold(tx.conn(), None, &id)?;
            hold_view(&secrets.ring, &row, now)
        })
        .await
}

/// The holds of `tenant` (None: every tenant), oldest first; only those
/// active now with `active_only`.
pub async fn list_holds(
    state: &AppState,
    tenant: Option<String>,
    active_only: bool,
) -> Result<Vec<HoldView>> {
    let secrets = state.secrets.clone();
    state
        .store
        .read("legal_hold.list", move |c, clock| {
            let now = clock.now();
            repo::holds(c, tenant.as_deref(), active_only.then_some(now))?
                .iter()
                .map(|r| hold_view(&secrets.ring, r, now))
                .collect()
        })
        .await
}

/// Which categories of `tenant` the legal holds active at `now` cover for
/// a data subject with `subject_refs` (empty: only holds over the whole
/// tenant). What the subject-request capability asks before it issues an
/// erasure task, inside its own transaction.
pub fn held_now(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    tenant: &str,
    subject_refs: &[String],
) -> Result<Held> {
    let holds = repo::holds(conn, Some(tenant), Some(now))?;
    if holds.is_empty() {
        return Ok(Held::default());
    }
    let hashes: Vec<String> = subject_refs.iter().map(|r| subject_hash(tenant, r)).collect();
    let scopes: Vec<_> = holds.iter().map(repo::HoldRow::scope).collect();
    Ok(Held::of(&scopes, &hashes, now))
}

/// Records that a legal hold withheld `categories` of `system` from
/// erasure request `request_id` (issued once no hold covers them).
pub fn record_withheld(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    request_id: &str,
    tenant: &str,
    system: &str,
    categories: &[String],
) -> Result<()> {
    repo::insert_withheld(conn, now, request_id, tenant, system, categories)
}

/// Per request of `request_ids`, the erasure categories still withheld
/// (sorted, each once); requests with none are absent.
pub fn withheld_categories(
    conn: &mut DbConnection,
    request_ids: &[String],
) -> Result<HashMap<String, Vec<String>>> {
    if request_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (id, cats) in repo::withheld_of(conn, request_ids)? {
        out.entry(id)
            .or_default()
            .extend(crate::db::from_json_list(&cats));
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup();
    }
    Ok(out)
}

/// Issues every withheld part of `tenant`'s erasures that no active hold
/// covers any more (what still is stays withheld); returns how many tasks
/// were issued.
fn issue_released(tx: &mut Tx<'_>, tenant: &str) -> Result<usize> {
    let now = tx.now();
    let mut issued = 0;
    for w in repo::withheld_pending(tx.conn(), tenant)? {
        let refs = crate::subject_requests::service::request_refs(tx.conn(), &w.request_id)?;
        let held = held_now(tx.conn(), now, tenant, &refs)?;
        let (free, still) = held.split(&crate::db::from_json_list(&w.categories));
        if free.is_empty() {
            continue;
        }
        if crate::subject_requests::service::issue_withheld_erasure(tx, &w.request_id, &w.system, &free)?
            .is_some()
        {
            issued += 1;
        }
        repo::update_withheld(tx.conn(), now, &w.id, &still)?;
    }
    Ok(issued)
}

/// One round of the job that ends holds whose `until` passed: each is
/// ended in a command of its own (audited as `legal_hold.expired`), and
/// the erasure it withheld is issued. Returns how many ended.
pub async fn end_run_out_holds(store: &crate::db::Store) -> Result<usize> {
    let due = store
        .read("legal_hold.run_out", |c, clock| {
            repo::holds_run_out(c, clock.now())
        })
        .await?;
    let mut n = 0;
    for (id, tenant) in due {
        let res = store
            .command("legal_hold.expire", Actor::service(), move |tx| {
                let now = tx.now();
                crate::db::key_lock(tx.conn(), "legal_hold", &tenant)?;
                if !repo::end_hold(tx.conn(), now, &id)? {
                    return Ok(false);
                }
                let issued = issue_released(tx, &tenant)?;
                let detail = serde_json::json!({ "issued_tasks": issued });
                tx.audit(
                    "legal_hold.expired",
                    &format!("legal_hold/{id}"),
                    Some(&tenant),
                    &detail.to_string(),
                )?;
                Ok(true)
            })
            .await;
        match res {
            Ok(done) if done.value => n += 1,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, job = "legal_hold_expiry", "ending a legal hold failed; retrying next round")
            }
        }
    }
    Ok(n)
}
