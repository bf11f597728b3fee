//! `BreachService`: the compliance team records breaches and their phases;
//! affected tenants get a notice in their inbox in the same transaction and
//! read the breaches that concern them; SRE sees deadlines without content.

use tonic::{Request, Response, Status};

use crate::auth::{Caller, Role};
use crate::breaches::model::{
    Audience, Breach, BreachFacts, BreachStatus, NotifyAuthority, RenderFormat, ReportBreach, UpdateBreach,
    parse_id,
};
use crate::breaches::service;
use crate::db::pipeline::Actor;
use crate::proto::v1 as pb;
use crate::proto::v1::breach_service_server::BreachService;
use crate::rpc::convert::{from_ts, ts};
use crate::rpc::page::Page;
use crate::rpc::{AppState, caller};

/// The breach service.
#[derive(Debug, Clone)]
pub struct Breaches {
    state: AppState,
}

impl Breaches {
    /// A service over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn status_to_pb(s: BreachStatus) -> i32 {
    match s {
        BreachStatus::Open => pb::BreachStatus::Open as i32,
        BreachStatus::AuthorityNotified => pb::BreachStatus::AuthorityNotified as i32,
        BreachStatus::NotificationNotRequired => pb::BreachStatus::NotificationNotRequired as i32,
    }
}

/// The wire form as `audience` may see it.
fn to_pb(mut b: Breach, audience: &Audience) -> pb::Breach {
    if let Audience::Tenant(t) = audience {
        b.tenant_ids.retain(|x| x == t);
    }
    let redacted = matches!(audience, Audience::Redacted);
    let mut out = pb::Breach {
        id: b.id,
        nature: b.facts.nature,
        categories: b.facts.categories,
        approx_subjects: b.facts.approx_subjects,
        approx_records: b.facts.approx_records,
        likely_consequences: b.facts.likely_consequences,
        measures: b.facts.measures,
        contact_point: b.facts.contact_point,
        became_aware_at: Some(ts(b.became_aware_at)),
        tenant_ids: b.tenant_ids,
        authority_deadline: Some(ts(b.authority_deadline)),
        status: status_to_pb(b.status),
        notified_at: b.notified_at.map(ts),
        reference: b.reference,
        not_required_justification: b.not_required_justification,
        delay_reasons: b.delay_reasons,
        created_at: Some(ts(b.created_at)),
        updated_at: Some(ts(b.updated_at)),
        systems: b.facts.systems,
    };
    if redacted {
        out = pb::Breach {
            id: out.id,
            categories: out.categories,
            became_aware_at: out.became_aware_at,
            authority_deadline: out.authority_deadline,
            status: out.status,
            notified_at: out.notified_at,
            created_at: out.created_at,
            updated_at: out.updated_at,
            ..Default::default()
        };
    }
    out
}

/// How much of a breach `who` may see.
fn audience(who: &Caller) -> Audience {
    match (who.role, &who.tenant_id) {
        (Role::Tenant, Some(t)) => Audience::Tenant(t.clone()),
        (Role::Tenant, None) => Audience::Tenant(String::new()),
        (Role::Sre, _) => Audience::Redacted,
        _ => Audience::Full,
    }
}

/// The facts of a request, as the model checks them.
#[allow(clippy::too_many_arguments)]
fn facts(
    nature: String,
    categories: Vec<String>,
    approx_subjects: u64,
    approx_records: u64,
    likely_consequences: String,
    measures: String,
    contact_point: String,
    systems: Vec<String>,
) -> BreachFacts {
    BreachFacts {
        nature,
        categories,
        approx_subjects,
        approx_records,
        likely_consequences,
        measures,
        contact_point,
        systems,
    }
}

#[tonic::async_trait]
impl BreachService for Breaches {
    async fn report_breach(
        &self,
        req: Request<pb::ReportBreachRequest>,
    ) -> Result<Response<pb::Breach>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let aware = from_ts(r.became_aware_at.as_ref(), "became_aware_at")?;
        let f = facts(
            r.nature,
            r.categories,
            r.approx_subjects,
            r.approx_records,
            r.likely_consequences,
            r.measures,
            r.contact_point,
            r.systems,
        );
        let cmd = ReportBreach::parse(f, r.tenant_ids, aware)?;
        let b = service::report_breach(&self.state, Actor::of(&who), cmd).await?;
        Ok(Response::new(to_pb(b, &Audience::Full)))
    }

    async fn update_breach(
        &self,
        req: Request<pb::UpdateBreachRequest>,
    ) -> Result<Response<pb::Breach>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let patch = facts(
            r.nature,
            r.categories,
            r.approx_subjects,
            r.approx_records,
            r.likely_consequences,
            r.measures,
            r.contact_point,
            Vec::new(),
        );
        let cmd = UpdateBreach::parse(r.id, patch, r.tenant_ids)?;
        let b = service::update_breach(&self.state, Actor::of(&who), cmd).await?;
        Ok(Response::new(to_pb(b, &Audience::Full)))
    }

    async fn get_breach(&self, req: Request<pb::GetBreachRequest>) -> Result<Response<pb::Breach>, Status> {
        let who = caller(&req)?;
        let id = parse_id(req.into_inner().id)?;
        let audience = audience(&who);
        let b = service::get_breach(&self.state, &audience, id).await?;
        Ok(Response::new(to_pb(b, &audience)))
    }

    async fn list_breaches(
        &self,
        req: Request<pb::ListBreachesRequest>,
    ) -> Result<Response<pb::ListBreachesResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let audience = audience(&who);
        let found = service::list_breaches(&self.state, &audience, &page, r.overdue_only).await?;
        Ok(Response::new(pb::ListBreachesResponse {
            next_page_token: page.next_token(found.breaches.len(), found.last),
            breaches: found.breaches.into_iter().map(|b| to_pb(b, &audience)).collect(),
            near_or_past_deadline: found.near_or_past_deadline,
        }))
    }

    async fn notify_authority(
        &self,
        req: Request<pb::NotifyAuthorityRequest>,
    ) -> Result<Response<pb::Breach>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let notified_at = from_ts(r.notified_at.as_ref(), "notified_at")?;
        let cmd = NotifyAuthority::parse(
            r.id,
            r.not_required,
            r.justification,
            r.reference,
            r.delay_reasons,
            notified_at,
        )?;
        let b = service::notify_authority(&self.state, Actor::of(&who), cmd).await?;
        Ok(Response::new(to_pb(b, &Audience::Full)))
    }

    async fn render_notification(
        &self,
        req: Request<pb::RenderNotificationRequest>,
    ) -> Result<Response<pb::RenderNotificationResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let format = RenderFormat::parse(&r.format)?;
        let doc = service::render_notification(&self.state, &audience(&who), r.id, format).await?;
        Ok(Response::new(pb::RenderNotificationResponse {
            content_type: doc.content_type.into(),
            data: doc.data,
        }))
    }
}
