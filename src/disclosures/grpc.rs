//! `DisclosureService`: the compliance team records requests from public
//! authorities and their responses, lifts notice prohibitions and exports
//! the record; tenants read their own delivered requests and transparency
//! report. Thin handlers: scope, parse, service, convert.

use tonic::{Request, Response, Status};

use crate::auth::Role;
use crate::db::pipeline::Actor;
use crate::disclosures::model::{
    Audience, AuthorityRequest, AuthorityResponse, Outcome, RecordRequest, RecordResponse, ReportRow,
    RequestStatus, parse_id,
};
use crate::disclosures::service;
use crate::proto::v1 as pb;
use crate::proto::v1::disclosure_service_server::DisclosureService;
use crate::rpc::convert::{from_ts, ts};
use crate::rpc::page::Page;
use crate::rpc::{AppState, Scope};
use crate::subprocessors::model::ExportFormat;

/// The disclosure service.
#[derive(Debug, Clone)]
pub struct Disclosures {
    state: AppState,
}

impl Disclosures {
    /// A service over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// Who reads, from the scope: a tenant its own requests, anyone else the
/// policy table lets through (compliance) every request.
fn audience(scope: &Scope) -> Audience {
    match (scope.caller.role, &scope.tenant) {
        (Role::Tenant, Some(t)) => Audience::Tenant(t.clone()),
        (Role::Tenant, None) => Audience::Tenant(String::new()),
        _ => Audience::Compliance,
    }
}

fn outcome_to_pb(o: Option<Outcome>) -> i32 {
    (match o {
        None => pb::DisclosureOutcome::Unspecified,
        Some(Outcome::Disclosed) => pb::DisclosureOutcome::Disclosed,
        Some(Outcome::PartiallyDisclosed) => pb::DisclosureOutcome::PartiallyDisclosed,
        Some(Outcome::Challenged) => pb::DisclosureOutcome::Challenged,
        Some(Outcome::Refused) => pb::DisclosureOutcome::Refused,
    }) as i32
}

fn outcome_from_pb(v: i32) -> Option<Outcome> {
    match pb::DisclosureOutcome::try_from(v).ok()? {
        pb::DisclosureOutcome::Unspecified => None,
        pb::DisclosureOutcome::Disclosed => Some(Outcome::Disclosed),
        pb::DisclosureOutcome::PartiallyDisclosed => Some(Outcome::PartiallyDisclosed),
        pb::DisclosureOutcome::Challenged => Some(Outcome::Challenged),
        pb::DisclosureOutcome::Refused => Some(Outcome::Refused),
    }
}

fn response_to_pb(r: AuthorityResponse) -> pb::AuthorityResponse {
    pb::AuthorityResponse {
        outcome: outcome_to_pb(Some(r.outcome)),
        disclosed_categories: r.disclosed_categories,
        challenged: r.challenged,
        challenge_outcome: r.challenge_outcome,
        note: r.note,
        responded_at: Some(ts(r.responded_at)),
    }
}

fn to_pb(r: AuthorityRequest) -> pb::AuthorityRequest {
    let status = match r.status() {
        RequestStatus::Open => pb::AuthorityRequestStatus::Open,
        RequestStatus::Responded => pb::AuthorityRequestStatus::Responded,
    };
    pb::AuthorityRequest {
        id: r.id,
        authority: r.authority,
        country: r.country,
        legal_basis: r.legal_basis,
        received_at: Some(ts(r.received_at)),
        tenant_ids: r.tenant_ids,
        categories: r.categories,
        reference: r.reference,
        status: status as i32,
        notice_prohibited_until: r.notice_prohibited_until.map(ts),
        notified_at: r.notified_at.map(ts),
        response: r.response.map(response_to_pb),
    }
}

fn row_to_pb(r: ReportRow) -> pb::ReportRow {
    pb::ReportRow {
        authority: r.authority,
        country: r.country,
        category: r.category,
        outcome: outcome_to_pb(r.outcome),
        challenged: r.challenged,
        count: r.count,
    }
}

#[tonic::async_trait]
impl DisclosureService for Disclosures {
    async fn record_authority_request(
        &self,
        req: Request<pb::RecordAuthorityRequestRequest>,
    ) -> Result<Response<pb::AuthorityRequest>, Status> {
        let Scope { caller, .. } = self.state.scope(&req, "").await?;
        let r = req.into_inner();
        let received_at = from_ts(r.received_at.as_ref(), "received_at")?;
        let until = from_ts(r.notice_prohibited_until.as_ref(), "notice_prohibited_until")?;
        let cmd = RecordRequest::parse(
            r.authority,
            r.country,
            r.legal_basis,
            received_at,
            r.tenant_ids,
            r.categories,
            r.subject_refs,
            r.reference,
            until,
        )?;
        let found = service::record_request(&self.state, Actor::of(&caller), cmd).await?;
        Ok(Response::new(to_pb(found)))
    }

    async fn record_authority_response(
        &self,
        req: Request<pb::RecordAuthorityResponseRequest>,
    ) -> Result<Response<pb::AuthorityRequest>, Status> {
        let Scope { caller, .. } = self.state.scope(&req, "").await?;
        let r = req.into_inner();
        let cmd = RecordResponse::parse(
            r.id,
            outcome_from_pb(r.outcome),
            r.disclosed_categories,
            r.challenged,
            r.challenge_outcome,
            r.note,
        )?;
        let found = service::record_response(&self.state, Actor::of(&caller), cmd).await?;
        Ok(Response::new(to_pb(found)))
    }

    async fn lift_notice_prohibition(
        &self,
        req: Request<pb::LiftNoticeProhibitionRequest>,
    ) -> Result<Response<pb::AuthorityRequest>, Status> {
        let Scope { caller, .. } = self.state.scope(&req, "").await?;
        let id = parse_id(req.into_inner().id)?;
        let found = service::lift_notice_prohibition(&self.state, Actor::of(&caller), id).await?;
        Ok(Response::new(to_pb(found)))
    }

    async fn get_authority_request(
        &self,
        req: Request<pb::GetAuthorityRequestRequest>,
    ) -> Result<Response<pb::AuthorityRequest>, Status> {
        let scope = self.state.scope(&req, "").await?;
        let id = parse_id(req.into_inner().id)?;
        let found = service::get_request(&self.state, &audience(&scope), id).await?;
        Ok(Response::new(to_pb(found)))
    }

    async fn list_authority_requests(
        &self,
        req: Request<pb::ListAuthorityRequestsRequest>,
    ) -> Result<Response<pb::ListAuthorityRequestsResponse>, Status> {
        let scope = self.state.scope(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let (found, last) =
            service::list_requests(&self.state, &audience(&scope), scope.tenant.clone(), &page).await?;
        Ok(Response::new(pb::ListAuthorityRequestsResponse {
            next_page_token: page.next_token(found.len(), last),
            authority_requests: found.into_iter().map(to_pb).collect(),
        }))
    }

    async fn get_transparency_report(
        &self,
        req: Request<pb::GetTransparencyReportRequest>,
    ) -> Result<Response<pb::GetTransparencyReportResponse>, Status> {
        let scope = self.state.scope(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let from = from_ts(r.from.as_ref(), "from")?;
        let to = from_ts(r.to.as_ref(), "to")?;
        let report =
            service::transparency_report(&self.state, &audience(&scope), scope.tenant.clone(), from, to)
                .await?;
        Ok(Response::new(pb::GetTransparencyReportResponse {
            total: report.total,
            rows: report.rows.into_iter().map(row_to_pb).collect(),
        }))
    }

    async fn export_authority_requests(
        &self,
        req: Request<pb::ExportAuthorityRequestsRequest>,
    ) -> Result<Response<pb::ExportAuthorityRequestsResponse>, Status> {
        self.state.scope(&req, "").await?;
        let format = ExportFormat::from_i32(req.into_inner().format)?;
        let doc = service::export_requests(&self.state, format).await?;
        Ok(Response::new(pb::ExportAuthorityRequestsResponse {
            content_type: doc.content_type.into(),
            data: doc.data,
        }))
    }
}
