//! `SubProcessorService`: compliance registers sub-processors and proposes
//! changes; each affected tenant gets a notice in its inbox in the same
//! transaction, sets its authorisation mode, approves or objects; tenants,
//! compliance and platform read the list that applies to a tenant. Every
//! write that can move a tenant's authorisation logs a decision change, so
//! `CheckProcessing` follows on every replica.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tonic::{Request, Response, Status};

use crate::audit::repo as audit;
use crate::error::Error;
use crate::inbox::model::Recipient;
use crate::inbox::repo as inbox;
use crate::instructions::repo as instructions;
use crate::proto::v1 as pb;
use crate::proto::v1::sub_processor_service_server::SubProcessorService;
use crate::rpc::convert::{from_ts, ts};
use crate::rpc::page::Page;
use crate::rpc::{AppState, audit_entry, caller};
use crate::screening::effects as screening_effects;
use crate::screening::effects::SubProcessorParty;
use crate::screening::grpc::NameScreener;
use crate::subprocessors::model as dom;
use crate::subprocessors::model::{
    AuthorizationMode, ChangeKind, MAX_REASON, Notice, Registration, Registry, Scope, Status as SpStatus,
    SubProcessor, TenantAnswers, TenantEntry, TransferMechanism,
};
use crate::subprocessors::repo as st;
use crate::subprocessors::repo::Reply;
use crate::validate::Violations;

/// Inbox envelope kind of a change notice.
pub const NOTICE_KIND: &str = "sub_processor.change_notice";
/// Longest id accepted in a request.
const MAX_ID: usize = 64;

/// The sub-processor service.
#[derive(Debug, Clone)]
pub struct SubProcessors {
    state: AppState,
    screener: NameScreener,
}

impl SubProcessors {
    /// A service over `state` (whose decisions it refreshes after each
    /// write) that screens legal names with `screener` at registration.
    pub fn new(state: AppState, screener: NameScreener) -> Self {
        Self { state, screener }
    }
}

fn status_to_pb(s: SpStatus) -> i32 {
    s as i32
}

fn status_name(s: SpStatus) -> &'static str {
    match s {
        SpStatus::Proposed => "PROPOSED",
        SpStatus::Active => "ACTIVE",
        SpStatus::Retired => "RETIRED",
        SpStatus::Blocked => "BLOCKED",
    }
}

fn mechanism_name(m: TransferMechanism) -> &'static str {
    match m {
        TransferMechanism::Eea => "EEA",
        TransferMechanism::Adequacy => "ADEQUACY",
        TransferMechanism::Scc => "SCC",
        TransferMechanism::Dpf => "DPF",
        TransferMechanism::Bcr => "BCR",
    }
}

/// The wire form at `now`: computed status and the scope in effect.
fn sp_to_pb(r: &Registry, s: &SubProcessor, now: DateTime<Utc>) -> pb::SubProcessor {
    let scope = r.scope_at(&s.id, now).unwrap_or_else(|| s.scope.clone());
    pb::SubProcessor {
        id: s.id.clone(),
        status: status_to_pb(r.status(&s.id, now).unwrap_or(SpStatus::Proposed)),
        legal_name: s.legal_name.clone(),
        country: s.country.clone(),
        services: s.services.clone(),
        categories: scope.categories,
        purposes: scope.purposes,
        transfer_mechanism: s.transfer_mechanism as i32,
        parent_id: s.parent_id.clone().unwrap_or_default(),
        dpa_signed_at: s.dpa_signed_at.map(ts),
        nda_signed_at: s.nda_signed_at.map(ts),
        created_at: Some(ts(s.created_at)),
        screening: s.screening.as_str().to_owned(),
    }
}

fn notice_to_pb(n: Notice, tenant_ids: Vec<String>) -> pb::ChangeNotice {
    pb::ChangeNotice {
        id: n.id,
        sub_processor_id: n.sub_processor_id,
        kind: n.kind as i32,
        effective_at: Some(ts(n.effective_at)),
        objection_deadline: Some(ts(n.objection_deadline)),
        created_at: Some(ts(n.created_at)),
        tenant_ids,
        categories: n.scope.categories,
        purposes: n.scope.purposes,
        approved: false,
        objected: false,
    }
}

fn required_id(v: &mut Violations, field: &str, value: &str) {
    v.required_text(field, value, MAX_ID);
}

/// One row of the customer-facing list, as JSON and CSV export it.
#[derive(Debug, Serialize)]
struct ExportRow {
    id: String,
    legal_name: String,
    country: String,
    transfer_mechanism: &'static str,
    status: &'static str,
    services: String,
    categories: String,
    purposes: String,
    parent_id: String,
    /// Legal names of its parents, top first, joined by " > ".
    chain: String,
    authorized: bool,
    objected: bool,
    pending_notice: bool,
    dpa_signed_at: String,
    nda_signed_at: String,
}

fn export_rows(r: &Registry, entries: &[TenantEntry], now: DateTime<Utc>) -> Vec<ExportRow> {
    let name = |id: &str| r.get(id).map(|s| s.legal_name.clone()).unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| {
            let s = r.get(&e.id)?;
            let scope = r.scope_at(&s.id, now).unwrap_or_else(|| s.scope.clone());
            Some(ExportRow {
                id: s.id.clone(),
                legal_name: s.legal_name.clone(),
                country: s.country.clone(),
                transfer_mechanism: mechanism_name(s.transfer_mechanism),
                status: status_name(r.status(&s.id, now).unwrap_or(SpStatus::Proposed)),
                services: s.services.clone(),
                categories: scope.categories.join(";"),
                purposes: scope.purposes.join(";"),
                parent_id: s.parent_id.clone().unwrap_or_default(),
                chain: e.chain.iter().map(|p| name(p)).collect::<Vec<_>>().join(" > "),
                authorized: e.authorized,
                objected: e.objected,
                pending_notice: e.pending_notice,
                dpa_signed_at: s.dpa_signed_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
                nda_signed_at: s.nda_signed_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            })
        })
        .collect()
}

/// CSV with a header row, quoted per RFC 4180 by the `csv` crate.
fn to_csv(rows: &[ExportRow]) -> Result<Vec<u8>, Error> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    if rows.is_empty() {
        // serde writes the header with the first row; an empty list still
        // gets one.
        w.write_record([
            "id",
            "legal_name",
            "country",
            "transfer_mechanism",
            "status",
            "services",
            "categories",
            "purposes",
            "parent_id",
            "chain",
            "authorized",
            "objected",
            "pending_notice",
            "dpa_signed_at",
            "nda_signed_at",
        ])
        .map_err(|e| Error::Internal(e.to_string()))?;
    }
    for r in rows {
        w.serialize(r).map_err(|e| Error::Internal(e.to_string()))?;
    }
    w.into_inner().map_err(|e| Error::Internal(e.to_string()))
}

/// Reads the registry and one tenant's view of it.
fn load_view(
    c: &mut crate::db::DbConnection,
    tenant: &str,
    now: DateTime<Utc>,
) -> Result<(Registry, TenantAnswers, Vec<TenantEntry>), Error> {
    let r = st::registry(c)?;
    let a = st::tenant_answers(c, tenant)?;
    let covered: Vec<String> = instructions::current(c, tenant)?
        .map(|v| v.set.rules.into_iter().map(|r| r.category).collect())
        .unwrap_or_default();
    let v = r.tenant_view(&a, &covered, now);
    Ok((r, a, v))
}

#[tonic::async_trait]
impl SubProcessorService for SubProcessors {
    async fn register_sub_processor(
        &self,
        req: Request<pb::RegisterSubProcessorRequest>,
    ) -> Result<Response<pb::SubProcessor>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        let mechanism = TransferMechanism::from_i32(r.transfer_mechanism);
        v.check(mechanism.is_none(), "transfer_mechanism", "is required");
        let dpa = from_ts(r.dpa_signed_at.as_ref(), "dpa_signed_at")?;
        let nda = from_ts(r.nda_signed_at.as_ref(), "nda_signed_at")?;
        let reg = Registration {
            legal_name: r.legal_name.trim().to_owned(),
            country: r.country.trim().to_owned(),
            services: r.services.trim().to_owned(),
            scope: Scope {
                categories: r.categories,
                purposes: r.purposes,
            },
            transfer_mechanism: mechanism.unwrap_or(TransferMechanism::Eea),
            parent_id: (!r.parent_id.is_empty()).then_some(r.parent_id),
            dpa_signed_at: dpa,
            nda_signed_at: nda,
        };
        // The legal name is screened before the transaction (in memory) and
        // the outcome recorded in it: the gate, any case, and the party.
        let party = SubProcessorParty {
            id: uuid::Uuid::new_v4().to_string(),
            legal_name: reg.legal_name.clone(),
            country: reg.country.clone(),
        };
        let hits = self.screener.hits(&who, party.query()).await?;
        let threshold = self.screener.threshold();
        let secrets = self.state.secrets.clone();
        let out = self
            .state
            .store
            .write("sub_processor.register", move |c, clock| {
                let now = clock.now();
                let tax = instructions::taxonomy(c)?;
                if let Err(Error::InvalidArgument(more)) = reg.validate(&tax, now) {
                    for f in more {
                        v.add(f.field, f.description);
                    }
                }
                v.finish()?;
                let registry = st::registry(c)?;
                if let Some(p) = &reg.parent_id {
                    let parent = registry
                        .declared_scope(p)
                        .ok_or_else(|| Error::NotFound(format!("parent sub-processor {p}")))?;
                    reg.check_parent(&parent)?;
                }
                let actor = audit_entry(
                    &who,
                    None,
                    "sub_processor.register",
                    &format!("sub_processor/{}", party.id),
                    "ok",
                );
                let gate = screening_effects::settle_sub_processor(
                    c,
                    now,
                    &actor,
                    &secrets.ring,
                    &party,
                    hits.as_deref(),
                    threshold,
                )?;
                let s = SubProcessor {
                    id: party.id.clone(),
                    legal_name: reg.legal_name,
                    country: reg.country,
                    services: reg.services,
                    scope: reg.scope,
                    transfer_mechanism: reg.transfer_mechanism,
                    parent_id: reg.parent_id,
                    dpa_signed_at: reg.dpa_signed_at,
                    nda_signed_at: reg.nda_signed_at,
                    created_at: now,
                    screening: gate.screening,
                    screened_at: hits.is_some().then_some(now),
                };
                st::insert(c, &s)?;
                let mut entry = actor;
                entry.detail = serde_json::json!({ "screening": gate.screening.as_str() }).to_string();
                audit::append(c, now, entry)?;
                let registry = Registry {
                    sub_processors: vec![s.clone()],
                    notices: Vec::new(),
                };
                Ok(sp_to_pb(&registry, &s, now))
            })
            .await?;
        Ok(Response::new(out))
    }

    async fn get_sub_processor(
        &self,
        req: Request<pb::GetSubProcessorRequest>,
    ) -> Result<Response<pb::SubProcessor>, Status> {
        let id = req.into_inner().id;
        let mut v = Violations::new();
        required_id(&mut v, "id", &id);
        v.finish()?;
        let out = self
            .state
            .store
            .read("sub_processor.get", move |c, clock| {
                let r = st::registry(c)?;
                let s = r
                    .get(&id)
                    .ok_or_else(|| Error::NotFound(format!("sub-processor {id}")))?;
                Ok(sp_to_pb(&r, s, clock.now()))
            })
            .await?;
        Ok(Response::new(out))
    }

    async fn propose_change(
        &self,
        req: Request<pb::ProposeChangeRequest>,
    ) -> Result<Response<pb::ChangeNotice>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        required_id(&mut v, "sub_processor_id", &r.sub_processor_id);
        let kind = ChangeKind::from_i32(r.kind);
        v.check(kind.is_none(), "kind", "is required");
        let effective_at = from_ts(r.effective_at.as_ref(), "effective_at")?;
        let deadline = from_ts(r.objection_deadline.as_ref(), "objection_deadline")?;
        let new_scope = Scope {
            categories: r.categories,
            purposes: r.purposes,
        };
        if kind != Some(ChangeKind::ScopeChange) {
            v.check(
                !new_scope.categories.is_empty(),
                "categories",
                "only a SCOPE_CHANGE carries a scope",
            );
            v.check(
                !new_scope.purposes.is_empty(),
                "purposes",
                "only a SCOPE_CHANGE carries a scope",
            );
        }
        v.finish()?;
        let kind = kind.ok_or_else(|| Error::invalid("kind", "is required"))?;
        let id = r.sub_processor_id;
        let author = who.sub.clone();
        let out = self
            .state
            .store
            .write("sub_processor.propose", move |c, clock| {
                let now = clock.now();
                let registry = st::registry(c)?;
                let s = registry
                    .get(&id)
                    .ok_or_else(|| Error::NotFound(format!("sub-processor {id}")))?;
                let (effective_at, deadline) = dom::notice_dates(now, effective_at, deadline)?;
                let existing = registry.notices_of(&id);
                dom::check_sequence(kind, &existing, effective_at, s.screening)?;
                let declared = registry.declared_scope(&id).unwrap_or_default();
                let scope = match kind {
                    ChangeKind::Add => declared.clone(),
                    ChangeKind::Remove => Scope::default(),
                    ChangeKind::ScopeChange => {
                        let tax = instructions::taxonomy(c)?;
                        let mut v = Violations::new();
                        new_scope.validate(&tax, "", &mut v);
                        v.finish()?;
                        if let Some(p) = &s.parent_id {
                            let parent = registry.declared_scope(p).unwrap_or_default();
                            dom::check_within_parent(&new_scope, &parent, "")?;
                        }
                        new_scope
                    }
                };
                let mut n = Notice {
                    id: uuid::Uuid::new_v4().to_string(),
                    seq: 0,
                    sub_processor_id: id.clone(),
                    kind,
                    scope,
                    effective_at,
                    objection_deadline: deadline,
                    created_at: now,
                };
                n.seq = st::insert_notice(c, &n, &author)?;
                // Affected: active tenants whose instructions cover a
                // category it processes now or will after the change.
                let mut cats = declared.categories;
                cats.extend(n.scope.categories.iter().cloned());
                let tenants = st::affected_tenants(c, now, &cats)?;
                let target = format!("change_notice/{}", n.id);
                for t in &tenants {
                    let payload = serde_json::json!({
                        "notice_id": n.id,
                        "sub_processor_id": n.sub_processor_id,
                        "kind": n.kind.as_str(),
                        "effective_at": n.effective_at.to_rfc3339(),
                        "objection_deadline": n.objection_deadline.to_rfc3339(),
                    });
                    inbox::enqueue(c, now, &Recipient::Tenant(t.clone()), NOTICE_KIND, &payload)?;
                    st::mark_notified(c, &n.id, t)?;
                    audit::append(
                        c,
                        now,
                        audit_entry(&who, Some(t), "sub_processor.notice", &target, "ok"),
                    )?;
                }
                let mut e = audit_entry(&who, None, "sub_processor.propose", &target, "ok");
                e.detail = serde_json::json!({
                    "sub_processor_id": n.sub_processor_id,
                    "kind": n.kind.as_str(),
                    "tenants": tenants.len(),
                })
                .to_string();
                audit::append(c, now, e)?;
                st::record_change_all(c, now)?;
                Ok(notice_to_pb(n, tenants))
            })
            .await?;
        self.state.follow_decisions().await;
        Ok(Response::new(out))
    }

    async fn set_authorization_mode(
        &self,
        req: Request<pb::SetAuthorizationModeRequest>,
    ) -> Result<Response<pb::SetAuthorizationModeResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let tenant = self
            .state
            .require_tenant(&who, &r.tenant_id, "SubProcessorService/SetAuthorizationMode")
            .await?;
        let mode =
            AuthorizationMode::from_i32(r.mode).ok_or_else(|| Error::invalid("mode", "is required"))?;
        let t = tenant.clone();
        self.state
            .store
            .write("sub_processor.set_mode", move |c, clock| {
                let now = clock.now();
                st::set_mode(c, now, &t, mode)?;
                let mut e = audit_entry(
                    &who,
                    Some(&t),
                    "sub_processor.set_mode",
                    &format!("tenant/{t}"),
                    "ok",
                );
                e.detail = serde_json::json!({ "mode": mode.as_str() }).to_string();
                audit::append(c, now, e)?;
                instructions::record_change(c, now, &t)
            })
            .await?;
        self.state.decisions.refresh(&tenant).await?;
        Ok(Response::new(pb::SetAuthorizationModeResponse {
            tenant_id: tenant,
            mode: mode as i32,
        }))
    }

    async fn approve_change(
        &self,
        req: Request<pb::ApproveChangeRequest>,
    ) -> Result<Response<pb::ChangeNoticeAnswer>, Status> {
        self.reply(
            req.map(|r| (r.notice_id, r.tenant_id, String::new())),
            Reply::Approve,
        )
        .await
    }

    async fn object_to_change(
        &self,
        req: Request<pb::ObjectToChangeRequest>,
    ) -> Result<Response<pb::ChangeNoticeAnswer>, Status> {
        self.reply(req.map(|r| (r.notice_id, r.tenant_id, r.reason)), Reply::Object)
            .await
    }

    async fn list_change_notices(
        &self,
        req: Request<pb::ListChangeNoticesRequest>,
    ) -> Result<Response<pb::ListChangeNoticesResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let tenant = self
            .state
            .scope_tenant(&who, &r.tenant_id, "SubProcessorService/ListChangeNotices")
            .await?;
        let page = Page::parse(r.page_size, &r.page_token)?;
        let (after, size) = (page.after, page.size);
        let (rows, answers) = self
            .state
            .store
            .read("sub_processor.list_notices", move |c, _| {
                let rows = st::notices_page(c, tenant.as_deref(), after, size)?;
                let answers = tenant.as_deref().map(|t| st::tenant_answers(c, t)).transpose()?;
                Ok((rows, answers))
            })
            .await?;
        let next = page.next_token(rows.len(), rows.last().map(|(n, _)| n.seq));
        let notices = rows
            .into_iter()
            .map(|(n, to)| {
                let a = answers
                    .as_ref()
                    .and_then(|a| a.answers.get(&n.id).cloned())
                    .unwrap_or_default();
                let mut p = notice_to_pb(n, to);
                p.approved = a.approved_at.is_some();
                p.objected = a.objected_at.is_some();
                p
            })
            .collect();
        Ok(Response::new(pb::ListChangeNoticesResponse {
            notices,
            next_page_token: next,
        }))
    }

    async fn list_sub_processors(
        &self,
        req: Request<pb::ListSubProcessorsRequest>,
    ) -> Result<Response<pb::ListSubProcessorsResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let tenant = self
            .state
            .require_tenant(&who, &r.tenant_id, "SubProcessorService/ListSubProcessors")
            .await?;
        let page = Page::parse(r.page_size, &r.page_token)?;
        let (after, size) = (page.after, page.size);
        let (entries, last) = self
            .state
            .store
            .read("sub_processor.list", move |c, clock| {
                let now = clock.now();
                let (reg, _, view) = load_view(c, &tenant, now)?;
                let seqs = st::seqs(c)?;
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
                    out.push(pb::SubProcessorEntry {
                        sub_processor: Some(sp_to_pb(&reg, s, now)),
                        authorized: e.authorized,
                        objected: e.objected,
                        pending_notice: e.pending_notice,
                        chain: e.chain,
                    });
                }
                Ok((out, last))
            })
            .await?;
        let next = page.next_token(entries.len(), last);
        Ok(Response::new(pb::ListSubProcessorsResponse {
            entries,
            next_page_token: next,
        }))
    }

    async fn export_sub_processors(
        &self,
        req: Request<pb::ExportSubProcessorsRequest>,
    ) -> Result<Response<pb::ExportSubProcessorsResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let tenant = self
            .state
            .require_tenant(&who, &r.tenant_id, "SubProcessorService/ExportSubProcessors")
            .await?;
        let csv = match pb::ExportFormat::try_from(r.format) {
            Ok(pb::ExportFormat::Json) => false,
            Ok(pb::ExportFormat::Csv) => true,
            _ => {
                return Err(
                    Error::invalid("format", "must be EXPORT_FORMAT_JSON or EXPORT_FORMAT_CSV").into(),
                );
            }
        };
        let t = tenant.clone();
        let (rows, now) = self
            .state
            .store
            .read("sub_processor.export", move |c, clock| {
                let now = clock.now();
                let (reg, _, view) = load_view(c, &t, now)?;
                Ok((export_rows(&reg, &view, now), now))
            })
            .await?;
        let (content_type, data) = if csv {
            ("text/csv; charset=utf-8", to_csv(&rows)?)
        } else {
            let doc = serde_json::json!({
                "tenant_id": tenant,
                "generated_at": now.to_rfc3339(),
                "sub_processors": rows,
            });
            (
                "application/json",
                serde_json::to_vec_pretty(&doc).map_err(|e| Error::Internal(e.to_string()))?,
            )
        };
        Ok(Response::new(pb::ExportSubProcessorsResponse {
            content_type: content_type.into(),
            data,
        }))
    }
}

impl SubProcessors {
    /// `ApproveChange` and `ObjectToChange`: a tenant answers a notice for
    /// itself; objections only before the deadline.
    async fn reply(
        &self,
        req: Request<(String, String, String)>,
        reply: Reply,
    ) -> Result<Response<pb::ChangeNoticeAnswer>, Status> {
        let who = caller(&req)?;
        let (notice_id, tenant_id, reason) = req.into_inner();
        let rpc = match reply {
            Reply::Approve => "SubProcessorService/ApproveChange",
            Reply::Object => "SubProcessorService/ObjectToChange",
        };
        let tenant = self.state.require_tenant(&who, &tenant_id, rpc).await?;
        let mut v = Violations::new();
        required_id(&mut v, "notice_id", &notice_id);
        v.max_len("reason", &reason, MAX_REASON);
        v.finish()?;
        let t = tenant.clone();
        let (answer, at) = self
            .state
            .store
            .write("sub_processor.answer", move |c, clock| {
                let now = clock.now();
                let n = st::notice(c, &notice_id)?;
                if reply == Reply::Object {
                    dom::check_objection(&n, now)?;
                }
                let a = st::answer(c, now, &n.id, &t, reply, &reason)?;
                let action = match reply {
                    Reply::Approve => "sub_processor.approve",
                    Reply::Object => "sub_processor.object",
                };
                // The reason is free text: kept in the row, not the audit.
                audit::append(
                    c,
                    now,
                    audit_entry(&who, Some(&t), action, &format!("change_notice/{}", n.id), "ok"),
                )?;
                instructions::record_change(c, now, &t)?;
                Ok(((n.id, a), now))
            })
            .await?;
        self.state.decisions.refresh(&tenant).await?;
        let (notice_id, a) = answer;
        Ok(Response::new(pb::ChangeNoticeAnswer {
            notice_id,
            tenant_id: tenant,
            approved: a.approved_at.is_some(),
            objected: a.objected_at.is_some(),
            answered_at: Some(ts(a.objected_at.or(a.approved_at).unwrap_or(at))),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_per_rfc_4180_and_always_has_a_header() {
        let empty = String::from_utf8(to_csv(&[]).unwrap()).unwrap();
        assert!(empty.starts_with("id,legal_name,country,"), "{empty}");
        let row = ExportRow {
            id: "x".into(),
            legal_name: "Acme \"Cloud\", Inc.".into(),
            country: "US".into(),
            transfer_mechanism: "SCC",
            status: "ACTIVE",
            services: "line one\nline two".into(),
            categories: "recording;transcript".into(),
            purposes: "transcription".into(),
            parent_id: String::new(),
            chain: String::new(),
            authorized: true,
            objected: false,
            pending_notice: false,
            dpa_signed_at: String::new(),
            nda_signed_at: String::new(),
        };
        let out = String::from_utf8(to_csv(&[row]).unwrap()).unwrap();
        assert!(out.contains("\"Acme \"\"Cloud\"\", Inc.\""), "{out}");
        assert!(out.contains("\"line one\nline two\""), "{out}");
        assert!(out.contains("\r\n"));
    }

    #[test]
    fn wire_enums_match() {
        assert_eq!(
            status_to_pb(SpStatus::Blocked),
            pb::SubProcessorStatus::Blocked as i32
        );
        assert_eq!(ChangeKind::ScopeChange as i32, pb::ChangeKind::ScopeChange as i32);
        assert_eq!(TransferMechanism::Bcr as i32, pb::TransferMechanism::Bcr as i32);
        assert_eq!(
            AuthorizationMode::Specific as i32,
            pb::AuthorizationMode::Specific as i32
        );
    }
}
