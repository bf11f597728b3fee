//! `InstructionService`: tenants write versioned instructions; platform
//! services ask for decisions, answered from the in-memory snapshots of
//! [`crate::instructions::snapshots`] without a database round trip.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::service;
use crate::db::pipeline::Actor;
use crate::error::Error;
use crate::instructions::model::decide;
use crate::instructions::model::decide::{Check, DenyReason};
use crate::instructions::model::{
    CategoryRule, InstructionSet, MAX_REASON, Taxonomy, TaxonomyKind, valid_region, valid_taxonomy_key,
};
use crate::instructions::repo::StoredVersion;
use crate::instructions::snapshots::Decisions;
use crate::proto::v1 as pb;
use crate::proto::v1::instruction_service_server::InstructionService;
use crate::rpc::convert::{from_ts, ts};
use crate::rpc::page::Page;
use crate::rpc::{AppState, caller};
use crate::subprocessors::model::TransferMechanism;
use crate::validate::Violations;

/// Most checks in one `BatchCheckProcessing`.
pub const MAX_BATCH: usize = 10_000;

/// The instruction service.
#[derive(Debug, Clone)]
pub struct Instructions {
    state: AppState,
    /// The state's decision snapshots, held directly for the hot path.
    decisions: Arc<Decisions>,
}

impl Instructions {
    /// A service over `state`, answering checks from its decision snapshots.
    pub fn new(state: AppState) -> Self {
        let decisions = state.decisions.clone();
        Self { state, decisions }
    }
}

/// The domain set of a request's set; a transfer mechanism the enum does
/// not know (or UNSPECIFIED) is INVALID_ARGUMENT naming its index.
fn set_from_pb(s: pb::InstructionSet) -> Result<InstructionSet, Error> {
    let mut v = Violations::new();
    let mut permitted = Vec::with_capacity(s.permitted_transfer_mechanisms.len());
    for (i, m) in s.permitted_transfer_mechanisms.iter().enumerate() {
        match TransferMechanism::from_i32(*m) {
            Some(m) => permitted.push(m),
            None => v.add(
                format!("instructions.permitted_transfer_mechanisms[{i}]"),
                "not a transfer mechanism",
            ),
        }
    }
    v.finish()?;
    Ok(InstructionSet {
        rules: s
            .rules
            .into_iter()
            .map(|r| CategoryRule {
                category: r.category,
                retention_days: r.retention_days,
                purposes: r.purposes,
                regions: r.regions,
                restricted: r.restricted,
                allow_anonymized_analytics: r.allow_anonymized_analytics,
            })
            .collect(),
        termination_grace_days: s.termination_grace_days,
        permitted_transfer_mechanisms: permitted,
    })
}

fn set_to_pb(s: InstructionSet) -> pb::InstructionSet {
    pb::InstructionSet {
        rules: s
            .rules
            .into_iter()
            .map(|r| pb::CategoryRule {
                category: r.category,
                retention_days: r.retention_days,
                purposes: r.purposes,
                regions: r.regions,
                restricted: r.restricted,
                allow_anonymized_analytics: r.allow_anonymized_analytics,
            })
            .collect(),
        termination_grace_days: s.termination_grace_days,
        permitted_transfer_mechanisms: s
            .permitted_transfer_mechanisms
            .iter()
            .map(|m| *m as i32)
            .collect(),
    }
}

fn version_to_pb(v: StoredVersion) -> pb::InstructionsVersion {
    pb::InstructionsVersion {
        tenant_id: v.tenant_id,
        version: v.version,
        created_at: Some(ts(v.created_at)),
        author: v.author,
        reason: v.reason,
        instructions: Some(set_to_pb(v.set)),
    }
}

fn hold_to_pb(h: service::HoldView) -> pb::LegalHold {
    pb::LegalHold {
        id: h.id,
        tenant_id: h.tenant_id,
        subject_ref: h.subject_ref,
        categories: h.categories,
        reason: h.reason,
        reference: h.reference,
        placed_by: h.placed_by,
        placed_at: Some(ts(h.placed_at)),
        until: h.until.map(ts),
        released_at: h.released_at.map(ts),
        release_reason: h.release_reason,
        active: h.active,
    }
}

fn reason_to_pb(r: DenyReason) -> i32 {
    r as i32
}

/// The change a request's consistency token names (`None`: no token).
fn consistency_seq(field: &str, token: &str) -> Result<Option<i64>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    crate::rpc::consistency::decode(field, token).map(Some)
}

/// Validates one check; field paths are prefixed (`checks[3].` in a batch).
fn validate_check(c: &pb::CheckProcessingRequest, tax: &Taxonomy, prefix: &str, v: &mut Violations) {
    let f = |n: &str| format!("{prefix}{n}");
    if c.tenant_id.is_empty() || c.tenant_id.len() > 128 {
        v.add(f("tenant_id"), "is required (at most 128 characters)");
    }
    if c.category.is_empty() {
        v.add(f("category"), "is required");
    } else if !tax.knows(TaxonomyKind::Category, &c.category) {
        v.add(f("category"), "unknown category");
    }
    if c.purpose.is_empty() {
        v.add(f("purpose"), "is required");
    } else if !tax.knows(TaxonomyKind::Purpose, &c.purpose) {
        v.add(f("purpose"), "unknown purpose");
    }
    if !c.region.is_empty() && !valid_region(&c.region) {
        v.add(f("region"), "not an ISO 3166-1 alpha-2 code");
    }
    v.check(
        c.sub_processor_id.len() > 128,
        f("sub_processor_id"),
        "at most 128 characters",
    );
    v.check(
        c.subject_ref.len() > 256,
        f("subject_ref"),
        "at most 256 characters",
    );
}

/// Who asked and in which trace, for the decision log; the trace id is
/// read once per call, and only when a record is kept.
struct Asker<'a> {
    caller: &'a str,
    trace_id: std::cell::OnceCell<String>,
}

impl Asker<'_> {
    fn trace_id(&self) -> String {
        self.trace_id
            .get_or_init(crate::telemetry::current_trace_id)
            .clone()
    }
}

fn logged_to_pb(d: crate::instructions::decision_log::LoggedDecision) -> pb::DecisionRecord {
    pb::DecisionRecord {
        verdict: if d.reasons.is_empty() {
            pb::Verdict::Allow as i32
        } else {
            pb::Verdict::Deny as i32
        },
        reasons: d.reasons.iter().map(reason_to_pb).collect(),
        decision_id: d.decision_id,
        at: Some(ts(d.at)),
        tenant_id: d.tenant_id,
        category: d.category,
        purpose: d.purpose,
        region: d.region,
        sub_processor_id: d.sub_processor_id,
        subject_ref: d.subject_ref,
        instruction_version: d.instruction_version,
        caller: d.caller,
        trace_id: d.trace_id,
    }
}

impl Instructions {
    fn decide_one(
        &self,
        c: &pb::CheckProcessingRequest,
        now: chrono::DateTime<chrono::Utc>,
        asker: &Asker<'_>,
    ) -> pb::Decision {
        let check = Check {
            category: &c.category,
            purpose: &c.purpose,
            region: &c.region,
            sub_processor_id: &c.sub_processor_id,
            subject_ref: &c.subject_ref,
        };
        let d = self
            .decisions
            .with_policy(&c.tenant_id, |p| decide::decide(p, &check, now));
        let log = &self.state.decision_log;
        let decision_id = log.next_id();
        if log.wants(d.allowed()) {
            log.offer(crate::instructions::decision_log::LoggedDecision {
                decision_id: decision_id.clone(),
                at: now,
                tenant_id: c.tenant_id.clone(),
                category: c.category.clone(),
                purpose: c.purpose.clone(),
                region: c.region.clone(),
                sub_processor_id: c.sub_processor_id.clone(),
                subject_ref: c.subject_ref.clone(),
                reasons: d.reasons,
                instruction_version: d.instruction_version,
                caller: asker.caller.to_owned(),
                trace_id: asker.trace_id(),
            });
        }
        pb::Decision {
            verdict: if d.allowed() {
                pb::Verdict::Allow as i32
            } else {
                pb::Verdict::Deny as i32
            },
            reasons: d.reasons.iter().map(reason_to_pb).collect(),
            instruction_version: d.instruction_version,
            decision_id,
            retain_until: (d.allowed() && d.retention_days > 0)
                .then(|| ts(now + chrono::Duration::days(i64::from(d.retention_days)))),
        }
    }
}

#[tonic::async_trait]
impl InstructionService for Instructions {
    async fn put_instructions(
        &self,
        req: Request<pb::PutInstructionsRequest>,
    ) -> Result<Response<pb::InstructionsVersion>, Status> {
        let (who, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let req = service::PutRequest {
            tenant_id: tenant,
            expected_version: r.expected_version,
            set: r.instructions.map(set_from_pb).transpose()?,
            reason: r.reason,
        };
        let stored = service::put(&self.state, Actor::of(&who), req).await?;
        Ok(Response::new(version_to_pb(stored)))
    }

    async fn get_instructions(
        &self,
        req: Request<pb::GetInstructionsRequest>,
    ) -> Result<Response<pb::InstructionsVersion>, Status> {
        let (_, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let v = service::get(&self.state, tenant, r.version).await?;
        Ok(Response::new(version_to_pb(v)))
    }

    async fn list_instruction_versions(
        &self,
        req: Request<pb::ListInstructionVersionsRequest>,
    ) -> Result<Response<pb::ListInstructionVersionsResponse>, Status> {
        let (_, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let (after, size) = (page.after, page.size);
        let versions = service::versions(&self.state, tenant, after, size).await?;
        let next = page.next_token(versions.len(), versions.last().map(|v| v.version as i64));
        Ok(Response::new(pb::ListInstructionVersionsResponse {
            versions: versions.into_iter().map(version_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn check_processing(
        &self,
        req: Request<pb::CheckProcessingRequest>,
    ) -> Result<Response<pb::Decision>, Status> {
        let who = caller(&req)?;
        let c = req.into_inner();
        let token = consistency_seq("consistency_token", &c.consistency_token)?;
        let mut v = Violations::new();
        validate_check(&c, &self.decisions.taxonomy(), "", &mut v);
        v.finish()?;
        if let Some(seq) = token {
            self.decisions.await_applied(seq).await?;
        }
        tracing::Span::current().record("tenant.id", c.tenant_id.as_str());
        let now = self.state.store.clock().now();
        let asker = Asker {
            caller: &who.sub,
            trace_id: std::cell::OnceCell::new(),
        };
        Ok(Response::new(self.decide_one(&c, now, &asker)))
    }

    async fn batch_check_processing(
        &self,
        req: Request<pb::BatchCheckProcessingRequest>,
    ) -> Result<Response<pb::BatchCheckProcessingResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let token = consistency_seq("consistency_token", &r.consistency_token)?;
        let checks = r.checks;
        let mut v = Violations::new();
        v.check(
            checks.len() > MAX_BATCH,
            "checks",
            format!("at most {MAX_BATCH} checks per batch"),
        );
        let tax = self.decisions.taxonomy();
        for (i, c) in checks.iter().enumerate().take(MAX_BATCH) {
            validate_check(c, &tax, &format!("checks[{i}]."), &mut v);
        }
        v.finish()?;
        if let Some(seq) = token {
            self.decisions.await_applied(seq).await?;
        }
        let now = self.state.store.clock().now();
        let asker = Asker {
            caller: &who.sub,
            trace_id: std::cell::OnceCell::new(),
        };
        Ok(Response::new(pb::BatchCheckProcessingResponse {
            decisions: checks.iter().map(|c| self.decide_one(c, now, &asker)).collect(),
        }))
    }

    async fn get_retention_cutoffs(
        &self,
        req: Request<pb::GetRetentionCutoffsRequest>,
    ) -> Result<Response<pb::GetRetentionCutoffsResponse>, Status> {
        let (_, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let as_of = from_ts(r.as_of.as_ref(), "as_of")?;
        let (cutoffs, version) = service::retention_cutoffs(&self.state, tenant, as_of).await?;
        Ok(Response::new(pb::GetRetentionCutoffsResponse {
            cutoffs: cutoffs
                .into_iter()
                .map(|c| pb::RetentionCutoff {
                    category: c.category,
                    cutoff: c.cutoff.map(ts),
                    held: c.held,
                })
                .collect(),
            instruction_version: version,
        }))
    }

    async fn terminate_tenant(
        &self,
        req: Request<pb::TerminateTenantRequest>,
    ) -> Result<Response<pb::TerminateTenantResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("tenant_id", &r.tenant_id, 128);
        v.required_text("reason", &r.reason, MAX_REASON);
        let effective = from_ts(r.effective_at.as_ref(), "effective_at")?;
        v.finish()?;
        tracing::Span::current().record("tenant.id", r.tenant_id.as_str());
        let cmd = service::Terminate {
            tenant_id: r.tenant_id,
            effective_at: effective,
            reason: r.reason,
        };
        let state = service::terminate(&self.state, Actor::of(&who), cmd).await?;
        Ok(Response::new(pb::TerminateTenantResponse {
            tenant_id: state.tenant_id,
            effective_at: state.terminated_at.map(ts),
            erasure_due_at: state.erasure_due_at.map(ts),
        }))
    }

    async fn add_taxonomy_key(
        &self,
        req: Request<pb::AddTaxonomyKeyRequest>,
    ) -> Result<Response<pb::TaxonomyKey>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        let kind = match pb::TaxonomyKind::try_from(r.kind) {
            Ok(pb::TaxonomyKind::Category) => Some(TaxonomyKind::Category),
            Ok(pb::TaxonomyKind::Purpose) => Some(TaxonomyKind::Purpose),
            _ => {
                v.add("kind", "must be TAXONOMY_KIND_CATEGORY or TAXONOMY_KIND_PURPOSE");
                None
            }
        };
        v.check(
            !valid_taxonomy_key(&r.key),
            "key",
            "lower-case letters, digits, '_' and '.', starting with a letter, at most 64",
        );
        v.required_text("description", &r.description, 500);
        v.finish()?;
        let kind = kind.ok_or_else(|| Error::invalid("kind", "is required"))?;
        let cmd = service::AddTaxonomyKey {
            kind,
            key: r.key.clone(),
            description: r.description.clone(),
        };
        service::add_taxonomy_key(&self.state, Actor::of(&who), cmd).await?;
        Ok(Response::new(pb::TaxonomyKey {
            kind: r.kind,
            key: r.key,
            description: r.description,
        }))
    }

    async fn place_legal_hold(
        &self,
        req: Request<pb::PlaceLegalHoldRequest>,
    ) -> Result<Response<pb::LegalHold>, Status> {
        let (who, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let until = from_ts(r.until.as_ref(), "until")?;
        let cmd = service::PlaceHoldRequest {
            tenant_id: tenant,
            subject_ref: r.subject_ref,
            categories: r.categories,
            reason: r.reason,
            reference: r.reference,
            until,
        };
        let hold = service::place_hold(&self.state, Actor::of(&who), cmd).await?;
        Ok(Response::new(hold_to_pb(hold)))
    }

    async fn release_legal_hold(
        &self,
        req: Request<pb::ReleaseLegalHoldRequest>,
    ) -> Result<Response<pb::LegalHold>, Status> {
        // Named by id: a tenant reaches only its own holds.
        let scope = self.state.scope(&req, "").await?;
        let r = req.into_inner();
        let hold = service::release_hold(
            &self.state,
            Actor::of(&scope.caller),
            scope.tenant,
            r.id,
            r.reason,
        )
        .await?;
        Ok(Response::new(hold_to_pb(hold)))
    }

    async fn list_legal_holds(
        &self,
        req: Request<pb::ListLegalHoldsRequest>,
    ) -> Result<Response<pb::ListLegalHoldsResponse>, Status> {
        let scope = self.state.scope(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let holds = service::list_holds(&self.state, scope.tenant, r.active_only).await?;
        Ok(Response::new(pb::ListLegalHoldsResponse {
            holds: holds.into_iter().map(hold_to_pb).collect(),
        }))
    }

    async fn list_decisions(
        &self,
        req: Request<pb::ListDecisionsRequest>,
    ) -> Result<Response<pb::ListDecisionsResponse>, Status> {
        let scope = self.state.scope(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let allowed = match pb::Verdict::try_from(r.verdict) {
            Ok(pb::Verdict::Unspecified) => None,
            Ok(pb::Verdict::Allow) => Some(true),
            Ok(pb::Verdict::Deny) => Some(false),
            Err(_) => return Err(Error::invalid("verdict", "not a verdict").into()),
        };
        let filter = crate::instructions::repo::DecisionFilter {
            tenant: scope.tenant,
            allowed,
            from: from_ts(r.from.as_ref(), "from")?,
            to: from_ts(r.to.as_ref(), "to")?,
        };
        if let (Some(f), Some(t)) = (filter.from, filter.to)
            && f > t
        {
            return Err(Error::invalid("to", "must not lie before from").into());
        }
        let rows = service::list_decisions(&self.state, filter, page.after, page.size).await?;
        let next = page.next_token(rows.len(), rows.last().map(|(s, _)| *s));
        Ok(Response::new(pb::ListDecisionsResponse {
            decisions: rows.into_iter().map(|(_, d)| logged_to_pb(d)).collect(),
            next_page_token: next,
        }))
    }

    async fn list_taxonomy(
        &self,
        _req: Request<pb::ListTaxonomyRequest>,
    ) -> Result<Response<pb::ListTaxonomyResponse>, Status> {
        let entries = service::taxonomy(&self.state).await?;
        Ok(Response::new(pb::ListTaxonomyResponse {
            keys: entries
                .into_iter()
                .map(|(k, key, description)| pb::TaxonomyKey {
                    kind: match k {
                        TaxonomyKind::Category => pb::TaxonomyKind::Category as i32,
                        TaxonomyKind::Purpose => pb::TaxonomyKind::Purpose as i32,
                    },
                    key,
                    description,
                })
                .collect(),
        }))
    }
}
