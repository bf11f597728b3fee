//! `SubProcessorService`: compliance registers sub-processors and proposes
//! changes; each affected tenant gets a notice in its inbox in the same
//! transaction, sets its authorisation mode, approves or objects; tenants,
//! compliance and platform read the list that applies to a tenant. Every
//! write that can move a tenant's authorisation logs a decision change, so
//! `CheckProcessing` follows on every replica.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::service::{
    self, ListedNotice, ListedSubProcessor, NoticeAnswer, NoticeSent, Register, TenantList,
};
use crate::db::pipeline::Actor;
use crate::error::Error;
use crate::proto::v1 as pb;
use crate::proto::v1::sub_processor_service_server::SubProcessorService;
use crate::rpc::convert::{from_ts, ts};
use crate::rpc::page::Page;
use crate::rpc::{AppState, caller};
use crate::screening::live::NameScreener;
use crate::subprocessors::model::{
    AnswerNotice, ExportFormat, Notice, ProposeChange, RegistrationRequest, Registry, Reply, Scope, SetMode,
    Status as SpStatus, SubProcessorView, TenantEntry, TransferMechanism, required_id,
};

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
        TransferMechanism::Derogation => "DEROGATION",
    }
}

/// The wire form of a sub-processor as of its view's instant.
fn sp_to_pb(v: SubProcessorView) -> pb::SubProcessor {
    let s = v.sub_processor;
    let processing_locations = s.locations().into_owned();
    pb::SubProcessor {
        id: s.id,
        status: status_to_pb(v.status),
        legal_name: s.legal_name,
        country: s.country,
        services: s.services,
        categories: v.scope.categories,
        purposes: v.scope.purposes,
        transfer_mechanism: s.transfer_mechanism as i32,
        parent_id: s.parent_id.unwrap_or_default(),
        dpa_signed_at: s.dpa_signed_at.map(ts),
        nda_signed_at: s.nda_signed_at.map(ts),
        created_at: Some(ts(s.created_at)),
        screening: s.screening.as_str().to_owned(),
        processing_locations,
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

fn listed_notice_to_pb(n: ListedNotice) -> pb::ChangeNotice {
    pb::ChangeNotice {
        approved: n.approved,
        objected: n.objected,
        ..notice_to_pb(n.notice, n.tenants)
    }
}

fn entry_to_pb(e: ListedSubProcessor) -> pb::SubProcessorEntry {
    pb::SubProcessorEntry {
        sub_processor: Some(sp_to_pb(e.view)),
        authorized: e.entry.authorized,
        objected: e.entry.objected,
        pending_notice: e.entry.pending_notice,
        chain: e.entry.chain,
    }
}

fn answer_to_pb(a: NoticeAnswer) -> pb::ChangeNoticeAnswer {
    pb::ChangeNoticeAnswer {
        notice_id: a.notice_id,
        tenant_id: a.tenant_id,
        approved: a.approved,
        objected: a.objected,
        answered_at: Some(ts(a.answered_at)),
    }
}

/// The registration a request asks for, texts trimmed; checked against
/// the taxonomy in the registration's transaction.
fn registration_from_pb(r: pb::RegisterSubProcessorRequest) -> Result<RegistrationRequest, Error> {
    Ok(RegistrationRequest {
        dpa_signed_at: from_ts(r.dpa_signed_at.as_ref(), "dpa_signed_at")?,
        nda_signed_at: from_ts(r.nda_signed_at.as_ref(), "nda_signed_at")?,
        legal_name: r.legal_name.trim().to_owned(),
        country: r.country.trim().to_owned(),
        processing_locations: r
            .processing_locations
            .iter()
            .map(|l| l.trim().to_owned())
            .collect(),
        services: r.services.trim().to_owned(),
        scope: Scope {
            categories: r.categories,
            purposes: r.purposes,
        },
        transfer_mechanism: TransferMechanism::from_i32(r.transfer_mechanism),
        parent_id: (!r.parent_id.is_empty()).then_some(r.parent_id),
    })
}

/// The proposal a request makes (its dates converted first, as before).
fn proposal_from_pb(r: pb::ProposeChangeRequest) -> Result<ProposeChange, Error> {
    let effective_at = from_ts(r.effective_at.as_ref(), "effective_at")?;
    let deadline = from_ts(r.objection_deadline.as_ref(), "objection_deadline")?;
    let scope = Scope {
        categories: r.categories,
        purposes: r.purposes,
    };
    ProposeChange::parse(r.sub_processor_id, r.kind, scope, effective_at, deadline)
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
    /// Every country where it processes, joined by ";" (last, so the
    /// columns clients already read keep their places).
    processing_locations: String,
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
                processing_locations: s.locations().join(";"),
            })
        })
        .collect()
}

/// CSV with a header row, quoted per RFC 4180 by the `csv` crate.
fn to_csv(rows: &[ExportRow]) -> Result<String, Error> {
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
            "processing_locations",
        ])
        .map_err(|e| Error::Unexpected(e.to_string()))?;
    }
    for r in rows {
        w.serialize(r).map_err(|e| Error::Unexpected(e.to_string()))?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Unexpected(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| Error::Unexpected(e.to_string()))
}

#[tonic::async_trait]
impl SubProcessorService for SubProcessors {
    async fn register_sub_processor(
        &self,
        req: Request<pb::RegisterSubProcessorRequest>,
    ) -> Result<Response<pb::SubProcessor>, Status> {
        let who = caller(&req)?;
        let request = registration_from_pb(req.into_inner())?;
        // Screened in memory before the transaction; the outcome is
        // recorded in it (the gate, any case, the party).
        let cmd = Register::screen(&self.screener, &who, request).await?;
        let view = service::register(&self.state, Actor::of(&who), cmd).await?;
        Ok(Response::new(sp_to_pb(view)))
    }

    async fn get_sub_processor(
        &self,
        req: Request<pb::GetSubProcessorRequest>,
    ) -> Result<Response<pb::SubProcessor>, Status> {
        let id = required_id("id", req.into_inner().id)?;
        let view = service::get(&self.state, id).await?;
        Ok(Response::new(sp_to_pb(view)))
    }

    async fn propose_change(
        &self,
        req: Request<pb::ProposeChangeRequest>,
    ) -> Result<Response<pb::ChangeNotice>, Status> {
        let who = caller(&req)?;
        let cmd = proposal_from_pb(req.into_inner())?;
        let NoticeSent { notice, tenants } =
            service::propose_change(&self.state, Actor::of(&who), cmd).await?;
        Ok(Response::new(notice_to_pb(notice, tenants)))
    }

    async fn set_authorization_mode(
        &self,
        req: Request<pb::SetAuthorizationModeRequest>,
    ) -> Result<Response<pb::SetAuthorizationModeResponse>, Status> {
        let (who, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let cmd = SetMode::parse(tenant, r.mode)?;
        let set = service::set_authorization_mode(&self.state, Actor::of(&who), cmd).await?;
        Ok(Response::new(pb::SetAuthorizationModeResponse {
            tenant_id: set.tenant_id,
            mode: set.mode as i32,
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
        let crate::rpc::Scope { tenant, .. } = self.state.scope(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let rows = service::list_change_notices(&self.state, tenant, page.after, page.size).await?;
        let next = page.next_token(rows.len(), rows.last().map(|n| n.notice.seq));
        Ok(Response::new(pb::ListChangeNoticesResponse {
            notices: rows.into_iter().map(listed_notice_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn list_sub_processors(
        &self,
        req: Request<pb::ListSubProcessorsRequest>,
    ) -> Result<Response<pb::ListSubProcessorsResponse>, Status> {
        let (_, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let (entries, last) =
            service::list_sub_processors(&self.state, tenant, page.after, page.size).await?;
        let next = page.next_token(entries.len(), last);
        Ok(Response::new(pb::ListSubProcessorsResponse {
            entries: entries.into_iter().map(entry_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn export_sub_processors(
        &self,
        req: Request<pb::ExportSubProcessorsRequest>,
    ) -> Result<Response<pb::ExportSubProcessorsResponse>, Status> {
        let (_, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let format = ExportFormat::from_i32(r.format)?;
        let list = service::tenant_list(&self.state, tenant.clone()).await?;
        let (content_type, data) = render_export(&tenant, &list, format)?;
        Ok(Response::new(pb::ExportSubProcessorsResponse {
            content_type: content_type.into(),
            data,
        }))
    }
}

/// The export document of `tenant`'s list in `format`, with its content type.
fn render_export(
    tenant: &str,
    list: &TenantList,
    format: ExportFormat,
) -> Result<(&'static str, String), Error> {
    let rows = export_rows(&list.registry, &list.entries, list.at);
    match format {
        ExportFormat::Csv => Ok(("text/csv; charset=utf-8", to_csv(&rows)?)),
        ExportFormat::Json => {
            let doc = serde_json::json!({
                "tenant_id": tenant,
                "generated_at": list.at.to_rfc3339(),
                "sub_processors": rows,
            });
            let data = serde_json::to_string_pretty(&doc).map_err(|e| Error::Unexpected(e.to_string()))?;
            Ok(("application/json", data))
        }
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
        let (who, tenant) = self.state.scope(&req, &req.get_ref().1).await?.one()?;
        let (notice_id, _, reason) = req.into_inner();
        let cmd = AnswerNotice::parse(notice_id, tenant, reply, reason)?;
        let answer = service::answer(&self.state, Actor::of(&who), cmd).await?;
        Ok(Response::new(answer_to_pb(answer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subprocessors::model::{AuthorizationMode, ChangeKind};

    #[test]
    fn csv_quotes_per_rfc_4180_and_always_has_a_header() {
        let empty = to_csv(&[]).unwrap();
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
            processing_locations: "US;DE".into(),
        };
        let out = to_csv(&[row]).unwrap();
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
            TransferMechanism::Derogation as i32,
            pb::TransferMechanism::Derogation as i32
        );
        assert_eq!(
            AuthorizationMode::Specific as i32,
            pb::AuthorizationMode::Specific as i32
        );
        assert_eq!(ExportFormat::Json as i32, pb::ExportFormat::Json as i32);
        assert_eq!(ExportFormat::Csv as i32, pb::ExportFormat::Csv as i32);
    }
}
