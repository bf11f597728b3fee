//! The tower layers that rate-limit calls. Two of them:
//! - [`PeerRateLimitLayer`], before authentication: every call from one peer
//!   address draws from that address's budget before its token is even
//!   parsed, so a flood of garbage tokens costs the server one counter
//!   update per call, not a signature check.
//! - [`RateLimitLayer`], after authentication so it knows who is calling:
//!   tenant tokens share one bucket per tenant, every other caller has one
//!   per token subject (a platform system, an officer).
//!
//! Over a limit, the call is refused RESOURCE_EXHAUSTED with
//! `google.rpc.RetryInfo` before any handler runs; other callers are not
//! affected. Unauthenticated paths (health, reflection) are not limited, so
//! probes keep working under a flood.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::auth::layer::AuditHook;
use crate::auth::{Caller, Role, policy};
use crate::clock::SharedClock;
use crate::domain::audit::AuditEntry;
use crate::domain::rate_limit::{KeyedLimiter, RateLimit};
use crate::error::Error;

/// The refusal sent when `limit` is exceeded, with its retry delay.
fn exhausted(limit: RateLimit, what: &str, retry_after: std::time::Duration) -> Status {
    Error::ResourceExhausted {
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

/// Limits each peer address before authentication; a no-op when `limit`
/// is `None`. Refusals are counted with the other refused calls.
#[derive(Clone)]
pub struct PeerRateLimitLayer {
    limiter: Option<Arc<KeyedLimiter<IpAddr>>>,
    refused: AuditHook,
}

impl PeerRateLimitLayer {
    /// A layer applying `limit` per peer address, reading time from
    /// `clock`, reporting refusals to `refused`.
    pub fn new(limit: Option<RateLimit>, clock: SharedClock, refused: AuditHook) -> Self {
        Self {
            limiter: limit.map(|limit| Arc::new(KeyedLimiter::new(limit, clock))),
            refused,
        }
    }
}

impl<S> Layer<S> for PeerRateLimitLayer {
    type Service = PeerRateLimited<S>;

    fn layer(&self, inner: S) -> PeerRateLimited<S> {
        PeerRateLimited {
            inner,
            limiter: self.limiter.clone(),
            refused: self.refused.clone(),
        }
    }
}

/// The service [`PeerRateLimitLayer`] wraps.
#[derive(Clone)]
pub struct PeerRateLimited<S> {
    inner: S,
    limiter: Option<Arc<KeyedLimiter<IpAddr>>>,
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
        let peer = peer_ip(&req);
        let (Some(limiter), Some(peer)) = (&self.limiter, peer) else {
            return Box::pin(self.inner.call(req));
        };
        if policy::is_public(path) {
            return Box::pin(self.inner.call(req));
        }
        match limiter.check(&peer) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(retry_after) => {
                tracing::debug!(rpc = %path, retry_ms = retry_after.as_millis() as u64, "call refused: peer rate limit");
                (self.refused)(AuditEntry {
                    actor: crate::domain::refusals::ANONYMOUS.into(),
                    role: String::new(),
                    tenant_id: None,
                    action: "auth.denied".into(),
                    target: path.to_owned(),
                    outcome: "peer_rate_limited".into(),
                    trace_id: String::new(),
                    detail: String::new(),
                });
                let status = exhausted(limiter.limit(), "per peer address", retry_after);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
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
