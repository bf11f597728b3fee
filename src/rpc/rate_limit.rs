//! The tower layers that rate-limit calls. Two of them:
//! - [`PeerRateLimitLayer`], before authentication: each call that fails
//!   authentication draws from its peer address's budget, and once a peer
//!   has spent it every call from that address is refused before its token
//!   is even parsed, until the budget refills. A flood of garbage tokens
//!   then costs one map lookup per call, not a token check, while callers
//!   with valid tokens (many tenants behind one proxy, a busy platform
//!   service) never spend anything from it.
//! - [`RateLimitLayer`], after authentication so it knows who is calling:
//!   tenant tokens share one bucket per tenant, every other caller has one
//!   per token subject (a platform system, an officer).
//!
//! Over a limit, the call is refused RESOURCE_EXHAUSTED with
//! `google.rpc.RetryInfo` before any handler runs; other callers are not
//! affected. Unauthenticated paths (health, reflection) are not limited, so
//! probes keep working under a flood.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use chrono::{DateTime, Utc};
use http::{Request, Response};
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::audit::model::AuditEntry;
use crate::auth::layer::{AuditHook, AuthRefused};
use crate::auth::{Caller, Role, policy};
use crate::clock::SharedClock;
use crate::error::Error;
use crate::rpc::bucket::{KeyedLimiter, RateLimit};

/// The refusal sent when `limit` is exceeded, with its retry delay.
fn exhausted(limit: RateLimit, what: &str, retry_after: std::time::Duration) -> Status {
    Error::OverLimit {
        message: format!(
            "rate limit of {} calls per second (burst {}) {what} exceeded; retry later",
            limit.rate, limit.burst
        ),
        retry_after,
    }
    .into()
}

/// Limits each caller to a [`RateLimit`]; a no-op when `limit` is `None`.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: Option<Arc<KeyedLimiter<String>>>,
}

impl RateLimitLayer {
    /// A layer applying `limit` per caller, reading time from `clock`.
    pub fn new(limit: Option<RateLimit>, clock: SharedClock) -> Self {
        Self {
            limiter: limit.map(|limit| Arc::new(KeyedLimiter::new(limit, clock))),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] wraps.
#[derive(Debug, Clone)]
pub struct RateLimited<S> {
    inner: S,
    limiter: Option<Arc<KeyedLimiter<String>>>,
}

/// The bucket a caller draws from: its tenant for tenant tokens (all users of
/// a tenant share it), its subject otherwise.
pub fn bucket_key(caller: &Caller) -> String {
    match (caller.role, &caller.tenant_id) {
        (Role::Tenant, Some(t)) => format!("tenant:{t}"),
        _ => format!("sub:{}", caller.sub),
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimited<S>
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

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (Some(limiter), Some(caller)) = (&self.limiter, req.extensions().get::<Caller>()) else {
            return Box::pin(self.inner.call(req));
        };
        match limiter.check(&bucket_key(caller)) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(retry_after) => {
                tracing::debug!(
                    rpc = %req.uri().path(),
                    role = caller.role.as_str(),
                    retry_ms = retry_after.as_millis() as u64,
                    "call refused: rate limit"
                );
                let status = exhausted(limiter.limit(), "per caller", retry_after);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// The budget a peer address draws from: the IPv4 address, or the /64
/// network of an IPv6 one (a single host usually holds a whole /64, so
/// per-address keys would let it take fresh budgets at will).
pub fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    }
}

/// The peer address of a call, as the transport recorded it.
fn peer_ip<B>(req: &Request<B>) -> Option<IpAddr> {
    let ext = req.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|t| t.get_ref().remote_addr())
        })
        .map(|a| peer_key(a.ip()))
}

/// Peers kept as blocked before those whose block has passed are dropped.
const BLOCKED_PRUNE_ABOVE: usize = 10_000;

/// The budget of failed authentications per peer, and the peers that spent
/// theirs.
#[derive(Debug)]
struct PeerGuard {
    failures: KeyedLimiter<IpAddr>,
    blocked: Mutex<HashMap<IpAddr, DateTime<Utc>>>,
    clock: SharedClock,
}

impl PeerGuard {
    /// Before authentication: refused (with the wait) while `peer` is
    /// blocked.
    fn admit(&self, peer: &IpAddr) -> Result<(), std::time::Duration> {
        let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        let Some(until) = blocked.get(peer).copied() else {
            return Ok(());
        };
        let now = self.clock.now();
        if until <= now {
            blocked.remove(peer);
            return Ok(());
        }
        Err((until - now)
            .to_std()
            .unwrap_or_default()
            .max(std::time::Duration::from_millis(1)))
    }

    /// After a call of `peer` failed authentication: spends one from its
    /// budget, blocking it once the budget is gone.
    fn charge(&self, peer: IpAddr) {
        if let Err(wait) = self.failures.check(&peer) {
            let now = self.clock.now();
            let until = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(1));
            let mut blocked = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
            if blocked.len() > BLOCKED_PRUNE_ABOVE {
                blocked.retain(|_, u| *u > now);
            }
            blocked.insert(peer, until);
        }
    }
}

/// Limits failed authentications per peer address, and refuses a peer over
/// the limit before authentication; a no-op when `limit` is `None`.
/// Refusals are counted with the other refused calls.
#[derive(Clone)]
pub struct PeerRateLimitLayer {
    guard: Option<Arc<PeerGuard>>,
    refused: AuditHook,
}

impl PeerRateLimitLayer {
    /// A layer applying `limit` to each peer address's failed
    /// authentications, reading time from `clock`, reporting refusals to
    /// `refused`.
    pub fn new(limit: Option<RateLimit>, clock: SharedClock, refused: AuditHook) -> Self {
        Self {
            guard: limit.map(|limit| {
                Arc::new(PeerGuard {
                    failures: KeyedLimiter::new(limit, clock.clone()),
                    blocked: Mutex::new(HashMap::new()),
                    clock,
                })
            }),
            refused,
        }
    }
}

impl<S> Layer<S> for PeerRateLimitLayer {
    type Service = PeerRateLimited<S>;

    fn layer(&self, inner: S) -> PeerRateLimited<S> {
        PeerRateLimited {
            inner,
            guard: self.guard.clone(),
            refused: self.refused.clone(),
        }
    }
}

/// The service [`PeerRateLimitLayer`] wraps.
#[derive(Clone)]
pub struct PeerRateLimited<S> {
    inner: S,
    guard: Option<Arc<PeerGuard>>,
    refused: AuditHook,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PeerRateLimited<S>
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

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let path = req.uri().path();
        let (Some(guard), Some(peer)) = (&self.guard, peer_ip(&req)) else {
            return Box::pin(self.inner.call(req));
        };
        if policy::is_public(path) {
            return Box::pin(self.inner.call(req));
        }
        if let Err(retry_after) = guard.admit(&peer) {
            tracing::debug!(rpc = %path, retry_ms = retry_after.as_millis() as u64, "call refused: peer rate limit");
            (self.refused)(AuditEntry {
                actor: crate::audit::refusals_model::ANONYMOUS.into(),
                role: String::new(),
                tenant_id: None,
                action: "auth.denied".into(),
                target: path.to_owned(),
                outcome: "peer_rate_limited".into(),
                trace_id: String::new(),
                detail: String::new(),
            });
            let status = exhausted(
                guard.failures.limit(),
                "of failed authentications per peer address",
                retry_after,
            );
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let guard = guard.clone();
        let call = self.inner.call(req);
        Box::pin(async move {
            let response = call.await?;
            if response.extensions().get::<AuthRefused>().is_some() {
                guard.charge(peer);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_share_a_bucket_systems_have_their_own() {
        let t = |sub: &str| Caller {
            sub: sub.into(),
            role: Role::Tenant,
            tenant_id: Some("t1".into()),
        };
        assert_eq!(bucket_key(&t("alice")), bucket_key(&t("bob")));
        let p = Caller {
            sub: "crm".into(),
            role: Role::Platform,
            tenant_id: None,
        };
        assert_eq!(bucket_key(&p), "sub:crm");
    }

    #[test]
    fn ipv6_peers_share_their_64_and_mapped_v4_is_v4() {
        let k = |s: &str| peer_key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:bbbb::9"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:10.0.0.7"), k("10.0.0.7"));
        assert_ne!(k("10.0.0.7"), k("10.0.0.8"));
    }
}
