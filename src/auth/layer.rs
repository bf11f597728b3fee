//! The tower layer that authenticates and authorises every call before any
//! handler runs: token -> identity -> role allowed by [`super::policy`].
//! Refusals never reach a handler; each is counted for the audit log (class
//! of failure, never the token: see [`crate::audit::refusals_model`]) and the
//! status goes back at once, without waiting for any write.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use super::jwt::{TokenError, Verifier};
use super::{Caller, policy};
use crate::audit::model::AuditEntry;

/// Counts a refused call, described as an audit entry; given by the
/// application so this layer needs no storage of its own. It must not
/// block: it runs on the request path of every refused call.
pub type AuditHook = Arc<dyn Fn(AuditEntry) + Send + Sync>;

/// Marks a response refused because the call was not authenticated (no,
/// bad or unusable token), so the per-peer limit in front of this layer
/// can charge the peer without reading statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthRefused;

/// Applies authentication and the RPC -> roles table.
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Arc<Verifier>,
    audit: AuditHook,
}

impl AuthLayer {
    /// A layer checking tokens with `verifier`, reporting refusals to `audit`.
    pub fn new(verifier: Arc<Verifier>, audit: AuditHook) -> Self {
        Self { verifier, audit }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            verifier: self.verifier.clone(),
            audit: self.audit.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the router.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    verifier: Arc<Verifier>,
    audit: AuditHook,
}

struct Refusal {
    status: Box<Status>,
    audit: Option<AuditEntry>,
    /// Whether the caller was not authenticated (as opposed to a valid
    /// token without the role).
    unauthenticated: bool,
}

fn bearer(headers: &HeaderMap) -> Result<&str, TokenError> {
    let v = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(TokenError::Missing)?;
    let s = v.to_str().map_err(|_| TokenError::Malformed)?;
    let token = s
        .strip_prefix("Bearer ")
        .or_else(|| s.strip_prefix("bearer "))
        .ok_or(TokenError::Malformed)?;
    Ok(token.trim())
}

fn refusal(
    path: &str,
    actor: &str,
    role: &str,
    tenant: Option<String>,
    outcome: &str,
    status: Status,
) -> Refusal {
    Refusal {
        status: Box::new(status),
        audit: Some(AuditEntry {
            actor: actor.to_owned(),
            role: role.to_owned(),
            tenant_id: tenant,
            action: "auth.denied".into(),
            target: path.to_owned(),
            outcome: outcome.to_owned(),
            trace_id: crate::telemetry::current_trace_id(),
            detail: String::new(),
        }),
        unauthenticated: false,
    }
}

impl<S> Auth<S> {
    fn authorize(&self, path: &str, headers: &HeaderMap) -> Result<Caller, Box<Refusal>> {
        let Some(allowed) = policy::allowed(path) else {
            return Err(Box::new(Refusal {
                status: Box::new(Status::unimplemented(format!("unknown method {path}"))),
                audit: None,
                unauthenticated: false,
            }));
        };
        let identity = bearer(headers)
            .and_then(|t| self.verifier.verify(t))
            .map_err(|e| {
                // The reason is a fixed word (never token content), for the
                // operator only; the caller learns nothing it could use to
                // fix a forgery.
                tracing::debug!(rpc = %path, reason = %e, "token refused");
                Box::new(Refusal {
                    unauthenticated: true,
                    ..refusal(
                        path,
                        crate::audit::refusals_model::ANONYMOUS,
                        "",
                        None,
                        e.label(),
                        Status::unauthenticated(super::jwt::UNAUTHENTICATED_MESSAGE),
                    )
                })
            })?;
        let Some(role) = policy::acting_role(allowed, &identity.roles) else {
            let held = identity
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(",");
            return Err(Box::new(refusal(
                path,
                &identity.sub,
                &held,
                identity.tenant_id.clone(),
                "role_not_allowed",
                Status::permission_denied(format!(
                    "roles [{held}] may not call {path}; allowed: {}",
                    allowed.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
                )),
            )));
        };
        Ok(Caller {
            sub: identity.sub,
            role,
            tenant_id: identity.tenant_id,
        })
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let path = req.uri().path().to_owned();
        if policy::is_public(&path) {
            return Box::pin(self.inner.call(req));
        }
        let span = tracing::Span::current();
        match self.authorize(&path, req.headers()) {
            Ok(caller) => {
                span.record("enduser.role", caller.role.as_str());
                if let Some(t) = caller
                    .tenant_id
                    .as_deref()
                    .filter(|_| caller.role == super::Role::Tenant)
                {
                    span.record("tenant.id", t);
                }
                req.extensions_mut().insert(caller);
                if let Some(rule) = policy::rule_of(&path) {
                    req.extensions_mut().insert(rule);
                }
                Box::pin(self.inner.call(req))
            }
            Err(refused) => {
                if let Some(a) = &refused.audit {
                    if !a.role.is_empty() {
                        span.record("enduser.role", a.role.as_str());
                    }
                    tracing::debug!(rpc = %path, outcome = %a.outcome, "call refused");
                }
                if let Some(entry) = refused.audit {
                    (self.audit)(entry);
                }
                let mut response = refused.status.into_http();
                if refused.unauthenticated {
                    response.extensions_mut().insert(AuthRefused);
                }
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
