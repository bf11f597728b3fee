//! The sub-processor registry's commands and reads, one function each.
//!
//! Every command is one transaction through the pipeline
//! ([`crate::db::pipeline`]): the rows, the audit events, the change
//! notices' envelopes and the decision change-log entries commit together
//! or not at all. A command that can move a tenant's authorisation logs a
//! decision change, and the caller's replica has applied it to its decision
//! snapshots before the function returns, so the next `CheckProcessing` on
//! this replica already sees it (other replicas follow the log).

use chrono::{DateTime, Utc};

use super::model::{
    self as dom, AnswerNotice, ChangeKind, Notice, ProposeChange, RegistrationRequest, Registry, Scope,
    SetMode, SubProcessor, SubProcessorView, TenantAnswers, TenantEntry,
};
use super::repo;
use crate::auth::Caller;
use crate::db::DbConnection;
use crate::db::pipeline::{Actor, Tx};
use crate::error::{Error, Result};
use crate::inbox::kinds::EnvelopeKind;
use crate::inbox::model::Recipient;
use crate::instructions::repo as instructions;
use crate::rpc::AppState;
use crate::screening::effects::{self as screening_effects, SubProcessorParty};
use crate::screening::index::Hit;
use crate::screening::live::NameScreener;
use crate::validate::Violations;

/// A registration whose legal name was already screened in memory (on this
/// replica's live indexes, outside any transaction): the outcome is
/// recorded in the registration's transaction.
#[derive(Debug, Clone)]
pub struct Register {
    /// What the request asks to register.
    pub request: RegistrationRequest,
    /// The party screened: the new sub-processor's id, name and country.
    pub party: SubProcessorParty,
    /// The hits at or above the threshold; None while no list is loaded
    /// (nothing can be called clear then).
    pub hits: Option<Vec<Hit>>,
    /// The score a hit needed.
    pub threshold: f64,
}

impl Register {
    /// Screens the requested legal name for `who` (within its share of the
    /// matching pool) under a fresh sub-processor id.
    pub async fn screen(screener: &NameScreener, who: &Caller, request: RegistrationRequest) -> Result<Self> {
        let party = SubProcessorParty {
            id: uuid::Uuid::new_v4().to_string(),
            legal_name: request.legal_name.clone(),
            country: request.country.clone(),
        };
        let hits = screener.hits(who, party.query()).await?;
        Ok(Self {
            request,
            party,
            hits,
            threshold: screener.threshold(),
        })
    }
}

/// Registers a sub-processor: the request is checked against the taxonomy
/// and its parent as committed, the screening gate settled (the party, any
/// review case and their audit events), the row inserted and the
/// registration audited with the gate's state, all in one transaction. A
/// new sub-processor has no notice yet, so no decision changes.
pub async fn register(state: &AppState, actor: Actor, cmd: Register) -> Result<SubProcessorView> {
    let secrets = state.secrets.clone();
    let committed = state
        .store
        .command("sub_processor.register", actor, move |tx| {
            let now = tx.now();
            let tax = instructions::taxonomy(tx.conn())?;
            let reg = cmd.request.parse(&tax, now)?;
            if let Some(p) = &reg.parent_id {
                let parent = repo::registry(tx.conn())?
                    .declared_scope(p)
                    .ok_or_else(|| Error::not_found("sub-processor", p.to_string()))?;
                reg.check_parent(&parent)?;
            }
            let target = format!("sub_processor/{}", cmd.party.id);
            let gate = screening_effects::settle_sub_processor(
                tx,
                &secrets.ring,
                &cmd.party,
                cmd.hits.as_deref(),
                cmd.threshold,
            )?;
            let s = SubProcessor {
                id: cmd.party.id,
                legal_name: reg.legal_name,
                country: reg.country,
                processing_locations: reg.processing_locations,
                services: reg.services,
                scope: reg.scope,
                transfer_mechanism: reg.transfer_mechanism,
                parent_id: reg.parent_id,
                dpa_signed_at: reg.dpa_signed_at,
                nda_signed_at: reg.nda_signed_at,
                created_at: now,
                screening: gate.screening,
                screened_at: cmd.hits.is_some().then_some(now),
            };
            repo::insert(tx.conn(), &s)?;
            let detail = serde_json::json!({ "screening": gate.screening.as_str() }).to_string();
            tx.audit("sub_processor.register", &target, None, &detail)?;
            let registry = Registry {
                sub_processors: vec![s.clone()],
                notices: Vec::new(),
            };
            Ok(registry.view(&s, now))
        })
        .await?;
    Ok(committed.value)
}

/// A change notice as stored, with the tenants it reached.
#[derive(Debug, Clone)]
pub struct NoticeSent {
    /// The notice.
    pub notice: Notice,
    /// The tenants it was sent to.
    pub tenants: Vec<String>,
}

/// Proposes a change to a sub-processor: the notice is checked against the
/// registry (dates, the sequence of notices, the screening gate, the scope
/// within the parent's), stored, and sent to every active tenant whose
/// instructions cover a category it processes now or will after the change
/// (an envelope, a notified mark and an audit event each), in one
/// transaction. A registry change can move any tenant's authorisation, so
/// every tenant's decisions are recompiled.
pub async fn propose_change(state: &AppState, actor: Actor, cmd: ProposeChange) -> Result<NoticeSent> {
    let author = actor.sub.clone();
    state
        .command("sub_processor.propose", actor, move |tx| {
            let now = tx.now();
            let registry = repo::registry(tx.conn())?;
            let id = &cmd.sub_processor_id;
            let s = registry
                .get(id)
                .ok_or_else(|| Error::not_found("sub-processor", id.to_string()))?;
            let (effective_at, deadline) = dom::notice_dates(now, cmd.effective_at, cmd.objection_deadline)?;
            dom::check_sequence(cmd.kind, &registry.notices_of(id), effective_at, s.screening)?;
            let declared = registry.declared_scope(id).unwrap_or_default();
            let scope = match cmd.kind {
                ChangeKind::Add => declared.clone(),
                ChangeKind::Remove => Scope::default(),
                ChangeKind::ScopeChange => new_scope(tx.conn(), &registry, s, cmd.scope)?,
            };
            let mut n = Notice {
                id: uuid::Uuid::new_v4().to_string(),
                seq: 0,
                sub_processor_id: id.clone(),
                kind: cmd.kind,
                scope,
                effective_at,
                objection_deadline: deadline,
                created_at: now,
            };
            n.seq = repo::insert_notice(tx.conn(), &n, &author)?;
            let mut cats = declared.categories;
            cats.extend(n.scope.categories.iter().cloned());
            let tenants = repo::affected_tenants(tx.conn(), now, &cats)?;
            send_notice(tx, &n, &tenants)?;
            let detail = serde_json::json!({
                "sub_processor_id": n.sub_processor_id,
                "kind": n.kind.as_str(),
                "tenants": tenants.len(),
            })
            .to_string();
            tx.audit(
                "sub_processor.propose",
                &format!("change_notice/{}", n.id),
                None,
                &detail,
            )?;
            repo::record_change_all(tx.conn(), now)?;
            tx.note_all_decisions_changed();
            Ok(NoticeSent { notice: n, tenants })
        })
        .await
}

/// A SCOPE_CHANGE's new scope, checked against the taxonomy as committed
/// and against the parent's declared scope.
fn new_scope(conn: &mut DbConnection, registry: &Registry, s: &SubProcessor, scope: Scope) -> Result<Scope> {
    let tax = instructions::taxonomy(conn)?;
    let mut v = Violations::new();
    scope.validate(&tax, "", &mut v);
    v.finish()?;
    if let Some(p) = &s.parent_id {
        let parent = registry.declared_scope(p).unwrap_or_default();
        dom::check_within_parent(&scope, &parent, "")?;
    }
    Ok(scope)
}

/// Puts notice `n` in each of `tenants`' inboxes, marks it sent to them and
/// audits each sending, in the command's transaction.
fn send_notice(tx: &mut Tx<'_>, n: &Notice, tenants: &[String]) -> Result<()> {
    let target = format!("change_notice/{}", n.id);
    for t in tenants {
        let payload = serde_json::json!({
            "notice_id": n.id,
            "sub_processor_id": n.sub_processor_id,
            "kind": n.kind.as_str(),
            "effective_at": n.effective_at.to_rfc3339(),
            "objection_deadline": n.objection_deadline.to_rfc3339(),
        });
        tx.envelope(
            &Recipient::Tenant(t.clone()),
            EnvelopeKind::SubProcessorChangeNotice,
            &payload,
        )?;
        repo::mark_notified(tx.conn(), &n.id, t)?;
        tx.audit("sub_processor.notice", &target, Some(t), "")?;
    }
    Ok(())
}

/// Sets a tenant's authorisation mode from now on (the history is kept, so
/// a past decision can be explained), audited with the mode; the tenant's
/// decisions are recompiled.
pub async fn set_authorization_mode(state: &AppState, actor: Actor, cmd: SetMode) -> Result<SetMode> {
    state
        .command("sub_processor.set_mode", actor, move |tx| {
            let now = tx.now();
            let t = &cmd.tenant_id;
            repo::set_mode(tx.conn(), now, t, cmd.mode)?;
            let detail = serde_json::json!({ "mode": cmd.mode.as_str() }).to_string();
            tx.audit("sub_processor.set_mode", &format!("tenant/{t}"), Some(t), &detail)?;
            tx.decisions_changed(t)?;
            Ok(cmd)
        })
        .await
}

/// A tenant's answer to a notice as it now stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeAnswer {
    /// The notice answered.
    pub notice_id: String,
    /// The tenant that answered.
    pub tenant_id: String,
    /// It approved (and has not objected since).
    pub approved: bool,
    /// It objected.
    pub objected: bool,
    /// When the answer standing now was given.
    pub answered_at: DateTime<Utc>,
}

/// `ApproveChange` and `ObjectToChange`: a tenant answers a notice it was
/// sent, for itself; an objection only before the deadline, an approval
/// never after an objection. The answer is audited (the reason is free
/// text: kept in the row, never in the audit) and the tenant's decisions
/// are recompiled.
pub async fn answer(state: &AppState, actor: Actor, cmd: AnswerNotice) -> Result<NoticeAnswer> {
    state
        .command("sub_processor.answer", actor, move |tx| {
            let now = tx.now();
            let t = &cmd.tenant_id;
            let n = repo::notice(tx.conn(), &cmd.notice_id)?;
            if cmd.reply == dom::Reply::Object {
                dom::check_objection(&n, now)?;
            }
            let a = repo::answer(tx.conn(), now, &n.id, t, cmd.reply, &cmd.reason)?;
            tx.audit(
                cmd.reply.action(),
                &format!("change_notice/{}", n.id),
                Some(t),
                "",
            )?;
            tx.decisions_changed(t)?;
            Ok(NoticeAnswer {
                notice_id: n.id,
                tenant_id: cmd.tenant_id,
                approved: a.approved_at.is_some(),
                objected: a.objected_at.is_some(),
                answered_at: a.objected_at.or(a.approved_at).unwrap_or(now),
            })
        })
        .await
}

/// One sub-processor as the registry has it now, or NOT_FOUND.
pub async fn get(state: &AppState, id: String) -> Result<SubProcessorView> {
    state
        .store
        .read("sub_processor.get", move |c, clock| {
            let r = repo::registry(c)?;
            let s = r
                .get(&id)
                .ok_or_else(|| Error::not_found("sub-processor", id.to_string()))?;
            Ok(r.view(s, clock.now()))
        })
        .await
}

/// A notice of a page, with the tenants it reached and, for a tenant's
/// page, that tenant's answer.
#[derive(Debug, Clone)]
pub struct ListedNotice {
    /// The notice.
    pub notice: Notice,
    /// The tenants it reached (only the tenant asking, for a tenant's page).
    pub tenants: Vec<String>,
    /// The tenant approved it.
    pub approved: bool,
    /// The tenant objected to it.
    pub objected: bool,
}

/// A page of notices in registry order after `after`: those sent to
/// `tenant` (with its answers), or every notice when None.
pub async fn list_change_notices(
    state: &AppState,
    tenant: Option<String>,
    after: i64,
    size: i64,
) -> Result<Vec<ListedNotice>> {
    let (rows, answers) = state
        .store
        .read("sub_processor.list_notices", move |c, _| {
            let rows = repo::notices_page(c, tenant.as_deref(), after, size)?;
            let answers = tenant
                .as_deref()
                .map(|t| repo::tenant_answers(c, t))
                .transpose()?;
            Ok((rows, answers))
        })
        .await?;
    Ok(rows
        .into_iter()
        .map(|(notice, tenants)| {
            let a = answers
                .as_ref()
                .and_then(|a| a.answers.get(&notice.id).cloned())
                .unwrap_or_default();
            ListedNotice {
                notice,
                tenants,
                approved: a.approved_at.is_some(),
                objected: a.objected_at.is_some(),
            }
        })
        .collect())
}

/// One entry of a tenant's list: the sub-processor now, and where the
/// tenant stands with it.
#[derive(Debug, Clone)]
pub struct ListedSubProcessor {
    /// The sub-processor now.
    pub view: SubProcessorView,
    /// The tenant's standing with it (authorised, objected, pending, chain).
    pub entry: TenantEntry,
}

/// A page of the sub-processors that apply to `tenant`, in registry order
/// after `after` (a registry `seq`), with the last `seq` on the page.
pub async fn list_sub_processors(
    state: &AppState,
    tenant: String,
    after: i64,
    size: i64,
) -> Result<(Vec<ListedSubProcessor>, Option<i64>)> {
    state
        .store
        .read("sub_processor.list", move |c, clock| {
            let now = clock.now();
            let (reg, _, view) = load_view(c, &tenant, now)?;
            let seqs = repo::seqs(c)?;
            let mut out = Vec::new();
            let mut last = None;
            for e in view {
                let seq = seqs.get(&e.id).copied().unwrap_or(0);
                if seq <= after {
                    continue;
                }
                if out.len() as i64 >= size {
                    break;
                }
                let Some(s) = reg.get(&e.id) else { continue };
                last = Some(seq);
                out.push(ListedSubProcessor {
                    view: reg.view(s, now),
                    entry: e,
                });
            }
            Ok((out, last))
        })
        .await
}

/// Everything an export of `tenant`'s list is made of: the registry, the
/// tenant's entries and the instant they were computed at.
#[derive(Debug, Clone)]
pub struct TenantList {
    /// The whole registry (for names along chains).
    pub registry: Registry,
    /// The tenant's entries, in registry order.
    pub entries: Vec<TenantEntry>,
    /// When the list was read.
    pub at: DateTime<Utc>,
}

/// The whole list that applies to `tenant` now, for export.
pub async fn tenant_list(state: &AppState, tenant: String) -> Result<TenantList> {
    state
        .store
        .read("sub_processor.export", move |c, clock| {
            let at = clock.now();
            let (registry, _, entries) = load_view(c, &tenant, at)?;
            Ok(TenantList {
                registry,
                entries,
                at,
            })
        })
        .await
}

/// Reads the registry and one tenant's view of it.
fn load_view(
    c: &mut DbConnection,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<(Registry, TenantAnswers, Vec<TenantEntry>)> {
    let r = repo::registry(c)?;
    let a = repo::tenant_answers(c, tenant)?;
    let covered: Vec<String> = instructions::current(c, tenant)?
        .map(|v| v.set.rules.into_iter().map(|r| r.category).collect())
        .unwrap_or_default();
    let v = r.tenant_view(&a, &covered, now);
    Ok((r, a, v))
}
