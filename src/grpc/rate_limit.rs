//! The tower layer that rate-limits each caller, after authentication so it
//! knows who is calling: tenant tokens share one bucket per tenant, every
//! other caller has one per token subject (a platform system, an officer).
//! Over the limit, the call is refused RESOURCE_EXHAUSTED with
//! `google.rpc.RetryInfo` before any handler runs; other callers are not
//! affected. Unauthenticated paths (health, reflection) are not limited.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use crate::auth::{Caller, Role};
use crate::clock::SharedClock;
use crate::domain::rate_limit::{Bucket, RateLimit};
use crate::error::Error;

/// Buckets kept before idle (full) ones are forgotten.
const PRUNE_ABOVE: usize = 10_000;

/// Shared state of every clone of the layer.
#[derive(Debug)]
struct Limiter {
    limit: RateLimit,
    clock: SharedClock,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Limiter {
    fn take(&self, key: &str) -> Result<(), std::time::Duration> {
        let now = crate::store::to_us(self.clock.now());
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            let limit = self.limit;
            buckets.retain(|_, b| !b.is_full_at(&limit, now));
        }
        buckets
            .entry(key.to_owned())
            .or_insert_with(|| Bucket::full(&self.limit, now))
            .take(&self.limit, now)
    }
}

/// Limits each caller to a [`RateLimit`]; a no-op when `limit` is `None`.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: Option<Arc<Limiter>>,
}

impl RateLimitLayer {
    /// A layer applying `limit` per caller, reading time from `clock`.
    pub fn new(limit: Option<RateLimit>, clock: SharedClock) -> Self {
        Self {
            limiter: limit.map(|limit| {
                Arc::new(Limiter {
                    limit,
                    clock,
                    buckets: Mutex::new(HashMap::new()),
                })
            }),
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
    limiter: Option<Arc<Limiter>>,
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
        match limiter.take(&bucket_key(caller)) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(retry_after) => {
                tracing::info!(
                    rpc = %req.uri().path(),
                    role = caller.role.as_str(),
                    retry_ms = retry_after.as_millis() as u64,
                    "call refused: rate limit"
                );
                let status: Status = Error::ResourceExhausted {
                    message: format!(
                        "rate limit of {} calls per second (burst {}) exceeded; retry later",
                        limiter.limit.rate, limiter.limit.burst
                    ),
                    retry_after,
                }
                .into();
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
}
