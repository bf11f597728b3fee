//! `BreachService`: the compliance team records breaches and their phases;
//! affected tenants get a notice in their inbox in the same transaction and
//! read the breaches that concern them; SRE sees deadlines without content.

use tonic::{Request, Response, Status};

use crate::audit::repo as audit;
use crate::auth::{Caller, Role};
use crate::breaches::model::{
    AuthorityDecision, Breach, BreachFacts, BreachStatus, MAX_TEXT, authority_deadline,
    check_authority_decision, render_markdown,
};
use crate::breaches::repo as st;
use crate::db::DbConnection;
use crate::error::Error;
use crate::inbox::model::Recipient;
use crate::inbox::repo as inbox;
use crate::instructions::repo as instructions;
use crate::proto::v1 as pb;
use crate::proto::v1::breach_service_server::BreachService;
use crate::rpc::convert::{from_ts, ts};
use crate::rpc::page::Page;
use crate::rpc::{AppState, audit_entry, caller};
use crate::validate::Violations;

/// Inbox envelope kind of a breach notice.
pub const NOTICE_KIND: &str = "breach.notice";
/// Most tenants named on one breach.
const MAX_TENANTS: usize = 10_000;

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

/// Who reads a breach, which decides how much of it they see.
enum Audience {
    /// Compliance (and the writers): everything.
    Full,
    /// `sre`: deadlines and status, no free text and no tenants.
    Redacted,
    /// A tenant: everything about the breach, but of the affected tenants
    /// only itself; the others are other controllers' business.
    Tenant(String),
}

impl Audience {
    fn of(who: &Caller) -> Self {
        match (who.role, &who.tenant_id) {
            (Role::Tenant, Some(t)) => Audience::Tenant(t.clone()),
            (Role::Tenant, None) => Audience::Tenant(String::new()),
            (Role::Sre, _) => Audience::Redacted,
            _ => Audience::Full,
        }
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

fn check_lists(v: &mut Violations, categories: &[String], tenants: &[String]) {
    v.check(
        tenants.len() > MAX_TENANTS,
        "tenant_ids",
        format!("at most {MAX_TENANTS}"),
    );
    for (i, t) in tenants.iter().enumerate().take(MAX_TENANTS) {
        v.check(
            t.is_empty() || t.len() > 128,
            format!("tenant_ids[{i}]"),
            "1 to 128 characters",
        );
    }
    for (i, c) in categories.iter().enumerate() {
        v.check(c.is_empty(), format!("categories[{i}]"), "is empty");
    }
}

/// Tenants a breach concerns when none are named: those whose current
/// instructions cover one of its categories.
fn derive_tenants(conn: &mut DbConnection, categories: &[String]) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for t in instructions::known_tenants(conn)? {
        if let Some(v) = instructions::current(conn, &t)?
            && v.set.rules.iter().any(|r| categories.contains(&r.category))
        {
            out.push(t);
        }
    }
    Ok(out)
}

/// Puts a notice in each tenant's inbox and its audit trail.
fn notify_tenants(
    conn: &mut DbConnection,
    now: chrono::DateTime<chrono::Utc>,
    who: &Caller,
    b: &Breach,
    tenants: &[String],
) -> Result<(), Error> {
    for t in tenants {
        let payload = serde_json::json!({
            "breach_id": b.id,
            "became_aware_at": b.became_aware_at.to_rfc3339(),
            "categories": b.facts.categories,
        });
        inbox::enqueue(conn, now, &Recipient::Tenant(t.clone()), NOTICE_KIND, &payload)?;
        audit::append(
            conn,
            now,
            audit_entry(who, Some(t), "breach.notice", &format!("breach/{}", b.id), "ok"),
        )?;
    }
    Ok(())
}

impl Breaches {
    /// Loads a breach the caller may see: tenants only their own (others
    /// are NOT_FOUND, so existence does not leak).
    async fn visible(&self, who: &Caller, id: String) -> Result<Breach, Status> {
        let secrets = self.state.secrets.clone();
        let b = self
            .state
            .store
            .read("breach.get", move |c, _| st::get(c, &secrets.ring, &id))
            .await?;
        if who.role == Role::Tenant && !who.tenant_id.as_ref().is_some_and(|t| b.tenant_ids.contains(t)) {
            return Err(Error::NotFound(format!("breach {}", b.id)).into());
        }
        Ok(b)
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
        let facts = BreachFacts {
            nature: r.nature,
            categories: r.categories,
            approx_subjects: r.approx_subjects,
            approx_records: r.approx_records,
            likely_consequences: r.likely_consequences,
            measures: r.measures,
            contact_point: r.contact_point,
            systems: r.systems,
        };
        let mut v = Violations::new();
        v.required_text("nature", &facts.nature, MAX_TEXT);
        facts.validate(&mut v);
        check_lists(&mut v, &facts.categories, &r.tenant_ids);
        let aware = from_ts(r.became_aware_at.as_ref(), "became_aware_at")?;
        v.check(aware.is_none(), "became_aware_at", "is required");
        v.finish()?;
        let aware = aware.ok_or_else(|| Error::invalid("became_aware_at", "is required"))?;
        let named = r.tenant_ids;
        let secrets = self.state.secrets.clone();
        let b = self
            .state
            .store
            .write("breach.report", move |c, clock| {
                let now = clock.now();
                if aware > now {
                    return Err(Error::invalid("became_aware_at", "lies in the future"));
                }
                instructions::check_known_categories(c, "categories", &facts.categories)?;
                let mut tenants = if named.is_empty() {
                    derive_tenants(c, &facts.categories)?
                } else {
                    named
                };
                tenants.sort();
                tenants.dedup();
                let b = Breach {
                    id: uuid::Uuid::new_v4().to_string(),
                    facts,
                    became_aware_at: aware,
                    authority_deadline: authority_deadline(aware),
                    tenant_ids: tenants.clone(),
                    status: BreachStatus::Open,
                    notified_at: None,
                    reference: String::new(),
                    not_required_justification: String::new(),
                    delay_reasons: String::new(),
                    created_at: now,
                    updated_at: now,
                };
                st::insert(c, &secrets.ring, &b)?;
                let mut e = audit_entry(&who, None, "breach.report", &format!("breach/{}", b.id), "ok");
                e.detail = serde_json::json!({ "tenants": tenants.len() }).to_string();
                audit::append(c, now, e)?;
                notify_tenants(c, now, &who, &b, &tenants)?;
                Ok(b)
            })
            .await?;
        Ok(Response::new(to_pb(b, &Audience::Full)))
    }

    async fn update_breach(
        &self,
        req: Request<pb::UpdateBreachRequest>,
    ) -> Result<Response<pb::Breach>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("id", &r.id, 64);
        let patch = BreachFacts {
            nature: r.nature,
            categories: r.categories,
            approx_subjects: r.approx_subjects,
            approx_records: r.approx_records,
            likely_consequences: r.likely_consequences,
            measures: r.measures,
            contact_point: r.contact_point,
            systems: Vec::new(),
        };
        patch.validate(&mut v);
        check_lists(&mut v, &patch.categories, &r.tenant_ids);
        v.finish()?;
        let (id, add) = (r.id, r.tenant_ids);
        let secrets = self.state.secrets.clone();
        let b = self
            .state
            .store
            .write("breach.update", move |c, clock| {
                let now = clock.now();
                let mut b = st::get(c, &secrets.ring, &id)?;
                instructions::check_known_categories(c, "categories", &patch.categories)?;
                let mut changed = Vec::new();
                let f = &mut b.facts;
                let mut set_text = |name: &'static str, new: String, old: &mut String| {
                    if !new.is_empty() && new != *old {
                        *old = new;
                        changed.push(name);
                    }
                };
                set_text("nature", patch.nature, &mut f.nature);
                set_text(
                    "likely_consequences",
                    patch.likely_consequences,
                    &mut f.likely_consequences,
                );
                set_text("measures", patch.measures, &mut f.measures);
                set_text("contact_point", patch.contact_point, &mut f.contact_point);
                if !patch.categories.is_empty() && patch.categories != f.categories {
                    f.categories = patch.categories;
                    changed.push("categories");
                }
                if patch.approx_subjects != 0 && patch.approx_subjects != f.approx_subjects {
                    f.approx_subjects = patch.approx_subjects;
                    changed.push("approx_subjects");
                }
                if patch.approx_records != 0 && patch.approx_records != f.approx_records {
                    f.approx_records = patch.approx_records;
                    changed.push("approx_records");
                }
                let added = st::add_tenants(c, &b.id, &add)?;
                if !added.is_empty() {
                    changed.push("tenant_ids");
                    b.tenant_ids.extend(added.iter().cloned());
                    b.tenant_ids.sort();
                }
                if changed.is_empty() {
                    return Ok(b);
                }
                b.updated_at = now;
                st::save(c, &secrets.ring, &b)?;
                let mut e = audit_entry(&who, None, "breach.update", &format!("breach/{}", b.id), "ok");
                e.detail = serde_json::json!({ "changed": changed }).to_string();
                audit::append(c, now, e)?;
                notify_tenants(c, now, &who, &b, &added)?;
                Ok(b)
            })
            .await?;
        Ok(Response::new(to_pb(b, &Audience::Full)))
    }

    async fn get_breach(&self, req: Request<pb::GetBreachRequest>) -> Result<Response<pb::Breach>, Status> {
        let who = caller(&req)?;
        let id = req.into_inner().id;
        if id.is_empty() || id.len() > 64 {
            return Err(Error::invalid("id", "is required").into());
        }
        let b = self.visible(&who, id).await?;
        Ok(Response::new(to_pb(b, &Audience::of(&who))))
    }

    async fn list_breaches(
        &self,
        req: Request<pb::ListBreachesRequest>,
    ) -> Result<Response<pb::ListBreachesResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let tenant = match who.role {
            Role::Tenant => who.tenant_id.clone(),
            _ => None,
        };
        let audience = Audience::of(&who);
        let (after, size, overdue_only) = (page.after, page.size, r.overdue_only);
        let secrets = self.state.secrets.clone();
        let (breaches, last, near) = self
            .state
            .store
            .read("breach.list", move |c, clock| {
                let now = clock.now();
                let (b, last) = st::list(
                    c,
                    &secrets.ring,
                    tenant.as_deref(),
                    overdue_only.then_some(now),
                    after,
                    size,
                )?;
                let near = st::count_near_or_past(c, tenant.as_deref(), now)?;
                Ok((b, last, near))
            })
            .await?;
        let next = page.next_token(breaches.len(), last);
        Ok(Response::new(pb::ListBreachesResponse {
            breaches: breaches.into_iter().map(|b| to_pb(b, &audience)).collect(),
            next_page_token: next,
            near_or_past_deadline: near,
        }))
    }

    async fn notify_authority(
        &self,
        req: Request<pb::NotifyAuthorityRequest>,
    ) -> Result<Response<pb::Breach>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("id", &r.id, 64);
        v.max_len("reference", &r.reference, 500);
        v.max_len("justification", &r.justification, MAX_TEXT);
        v.max_len("delay_reasons", &r.delay_reasons, MAX_TEXT);
        let notified_at = from_ts(r.notified_at.as_ref(), "notified_at")?;
        v.finish()?;
        let secrets = self.state.secrets.clone();
        let b = self
            .state
            .store
            .write("breach.notify_authority", move |c, clock| {
                let now = clock.now();
                let mut b = st::get(c, &secrets.ring, &r.id)?;
                let decision = if r.not_required {
                    AuthorityDecision::NotRequired {
                        justification: r.justification.clone(),
                    }
                } else {
                    let at = notified_at.unwrap_or(now);
                    if at > now {
                        return Err(Error::invalid("notified_at", "lies in the future"));
                    }
                    AuthorityDecision::Notified {
                        at,
                        reference: r.reference.clone(),
                        delay_reasons: r.delay_reasons.clone(),
                    }
                };
                check_authority_decision(&b, &decision)?;
                let action = match decision {
                    AuthorityDecision::NotRequired { justification } => {
                        b.status = BreachStatus::NotificationNotRequired;
                        b.not_required_justification = justification;
                        "breach.notification_not_required"
                    }
                    AuthorityDecision::Notified {
                        at,
                        reference,
                        delay_reasons,
                    } => {
                        b.status = BreachStatus::AuthorityNotified;
                        b.notified_at = Some(at);
                        b.reference = reference;
                        b.delay_reasons = delay_reasons;
                        if at > b.authority_deadline {
                            "breach.authority_notified_late"
                        } else {
                            "breach.authority_notified"
                        }
                    }
                };
                b.updated_at = now;
                st::save(c, &secrets.ring, &b)?;
                audit::append(
                    c,
                    now,
                    audit_entry(&who, None, action, &format!("breach/{}", b.id), "ok"),
                )?;
                Ok(b)
            })
            .await?;
        Ok(Response::new(to_pb(b, &Audience::Full)))
    }

    async fn render_notification(
        &self,
        req: Request<pb::RenderNotificationRequest>,
    ) -> Result<Response<pb::RenderNotificationResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let json = match r.format.as_str() {
            "" | "markdown" => false,
            "json" => true,
            _ => return Err(Error::invalid("format", "must be \"markdown\" or \"json\"").into()),
        };
        let b = self.visible(&who, r.id).await?;
        let now = self.state.store.clock().now();
        let (content_type, data) = if json {
            let doc = serde_json::json!({
                "breach": b,
                "missing_for_notification": b.facts.missing_for_notification(),
                "overdue": b.overdue(now),
            });
            (
                "application/json",
                serde_json::to_vec_pretty(&doc).map_err(|e| Error::Internal(e.to_string()))?,
            )
        } else {
            (
                "text/markdown; charset=utf-8",
                render_markdown(&b, now).into_bytes(),
            )
        };
        Ok(Response::new(pb::RenderNotificationResponse {
            content_type: content_type.into(),
            data,
        }))
    }
}
