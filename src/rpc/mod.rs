//! gRPC services: one file per proto service, each handler thin: read the
//! caller, resolve its tenant scope, validate into domain types, run one store
//! command, convert back. Services of capabilities that have not landed are
//! not registered, so their RPCs answer UNIMPLEMENTED (after auth).

pub mod bucket;
pub mod connect;
pub mod consistency;
pub mod convert;
pub mod deadline;
pub mod limits;
pub mod page;
pub mod rate_limit;
pub mod status;
pub mod streams;

use tonic::{Request, Status};

use crate::audit::model::AuditEntry;
use crate::auth::{Caller, Role};
use crate::db::Store;

/// What every service handler shares.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// Cancelled when the server begins shutting down, so long-lived
    /// streams end and let the graceful shutdown finish.
    pub stopping: crate::periodic::CancellationToken,
    /// Decision snapshots; writes that change what decisions depend on
    /// refresh them before replying, so the next check here sees the change.
    pub decisions: std::sync::Arc<crate::instructions::snapshots::Decisions>,
    /// Seals personal data at rest (identifiers, exports, case answers).
    pub secrets: std::sync::Arc<crate::secrets::SubjectSecrets>,
    /// Refused calls, counted into one audit event per caller class and
    /// interval instead of one row per call.
    pub refusals: std::sync::Arc<crate::audit::refusals::Refusals>,
    /// Server streams each caller holds open (`--max-streams-per-caller`).
    pub streams: std::sync::Arc<streams::StreamSlots>,
    /// The audit log's checkpoint signer and verification state.
    pub audit_log: std::sync::Arc<crate::audit::service::AuditLog>,
    /// The decision log's queue (checks offer their records to it).
    pub decision_log: std::sync::Arc<crate::instructions::decision_log::DecisionLog>,
    /// The tenants' deadline settings as last seen here, so that recording
    /// a request need not read them first (checked by its insert).
    pub settings_hints: std::sync::Arc<crate::subject_requests::settings_hints::SettingsHints>,
    /// New forwarded requests waiting for a write turn, recorded together
    /// on PostgreSQL ([`crate::db::batch`]).
    pub forwards: std::sync::Arc<crate::subject_requests::service::ForwardBatch>,
}

/// The caller of an RPC and the tenant it acts on, as its rule in the
/// policy table says ([`crate::auth::policy::TenantFrom`]).
#[derive(Debug, Clone)]
pub struct Scope {
    /// Who calls.
    pub caller: Caller,
    /// The tenant acted on; `None` only where the rule lets a non-tenant
    /// caller name none (every tenant).
    pub tenant: Option<String>,
    /// The RPC, as the policy table names it (`Service/Method`), for the
    /// refused-call audit.
    pub rpc: &'static str,
}

impl Scope {
    /// The one tenant of an RPC whose rule is `Named`.
    pub fn one(self) -> Result<(Caller, String), Status> {
        match self.tenant {
            Some(t) => Ok((self.caller, t)),
            None => Err(crate::error::Error::invalid("tenant_id", "is required").into()),
        }
    }
}

impl AppState {
    /// The one scoping idiom: the caller and the tenant `req` acts on,
    /// `requested` being the request's `tenant_id`, resolved as the RPC's
    /// rule in the policy table says. A tenant token naming another tenant
    /// is PERMISSION_DENIED and counted with the refused calls; a `Named`
    /// rule naming none (for other roles) is INVALID_ARGUMENT.
    pub async fn scope<T>(&self, req: &Request<T>, requested: &str) -> Result<Scope, Status> {
        use crate::auth::policy::{Rule, TenantFrom};
        let who = caller(req)?;
        let rule = req
            .extensions()
            .get::<&'static Rule>()
            .copied()
            .ok_or_else(|| Status::internal("no policy rule attached to the call"))?;
        let rpc = rule.path.trim_start_matches("/proctor.v1.");
        let tenant = self.scope_tenant(&who, requested, rpc).await?;
        if rule.tenant == TenantFrom::Named && tenant.is_none() {
            return Err(crate::error::Error::invalid("tenant_id", "is required").into());
        }
        Ok(Scope {
            caller: who,
            tenant,
            rpc,
        })
    }

    /// Refuses a call the policy table let through but the request itself
    /// oversteps (naming another system's tasks, say): PERMISSION_DENIED
    /// with `message`, counted with the refused calls under `outcome`.
    pub async fn refuse(&self, scope: &Scope, outcome: &str, message: &str) -> Status {
        let entry = audit_entry(
            &scope.caller,
            scope.caller.tenant_id.as_deref(),
            "auth.denied",
            scope.rpc,
            outcome,
        );
        self.record_denial(entry).await;
        Status::permission_denied(message.to_owned())
    }

    /// Runs a command through the pipeline ([`crate::db::pipeline`]): one
    /// transaction, then, when it changed decisions, this replica's
    /// snapshots catch up before the caller hears back, so its next check
    /// here already sees the write.
    pub async fn command<T, F>(
        &self,
        op: &'static str,
        actor: crate::db::pipeline::Actor,
        f: F,
    ) -> crate::error::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut crate::db::pipeline::Tx<'_>) -> crate::error::Result<T> + Send + 'static,
    {
        let done = self.store.command(op, actor, f).await?;
        if !done.changes.is_empty() {
            self.follow_decisions().await;
        }
        Ok(done.value)
    }

    /// Applies logged decision changes before an RPC returns, so the next
    /// check on this replica already sees its write (other replicas follow
    /// the log on their own). The write has committed by then, so a failure
    /// only delays freshness: it is logged, never returned.
    pub async fn follow_decisions(&self) {
        for _ in 0..100 {
            match self.decisions.catch_up().await {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "refreshing decision snapshots failed");
                    return;
                }
            }
        }
    }
}

/// The authenticated caller the auth layer attached to the request.
pub fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller"))
}

/// An audit entry for `caller` doing `action` on `target`, stamped with the
/// current trace id.
pub fn audit_entry(
    caller: &Caller,
    tenant: Option<&str>,
    action: &str,
    target: &str,
    outcome: &str,
) -> AuditEntry {
    AuditEntry {
        actor: caller.sub.clone(),
        role: caller.role.as_str().to_owned(),
        tenant_id: tenant.map(str::to_owned),
        action: action.to_owned(),
        target: target.to_owned(),
        outcome: outcome.to_owned(),
        trace_id: crate::telemetry::current_trace_id(),
        detail: String::new(),
    }
}

impl AppState {
    /// Resolves the tenant a request acts on (see [`Caller::scope_tenant`]);
    /// a tenant token naming another tenant is PERMISSION_DENIED and counted
    /// with the refused calls.
    async fn scope_tenant(
        &self,
        caller: &Caller,
        requested: &str,
        rpc: &str,
    ) -> Result<Option<String>, Status> {
        match caller.scope_tenant(requested) {
            Ok(t) => {
                if let Some(t) = t.as_deref().filter(|_| caller.role != Role::Tenant) {
                    tracing::Span::current().record("tenant.id", t);
                }
                Ok(t)
            }
            Err(e) => {
                let entry = audit_entry(
                    caller,
                    caller.tenant_id.as_deref(),
                    "auth.denied",
                    rpc,
                    "other_tenant",
                );
                self.record_denial(entry).await;
                Err(Status::permission_denied(e.to_string()))
            }
        }
    }

    /// Counts a refusal for the audit log (see [`crate::audit::refusals`]): one event per
    /// caller class and interval, so refused calls cannot flood the chain.
    pub async fn record_denial(&self, entry: AuditEntry) {
        self.refusals.record(&entry);
    }
}
