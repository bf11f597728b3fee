//! One server span per RPC, named by the RPC path, with the OpenTelemetry RPC
//! attributes (`rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`) and, filled in by auth, `enduser.role` and
//! `tenant.id`. The caller's W3C `traceparent` is continued. The span lives
//! until the response body ends, since gRPC puts the status in trailers; the
//! call's metrics ([`super::rpc_metrics`]) are recorded at the same moment.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use opentelemetry::propagation::Extractor;
use tower::{Layer, Service};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::rpc_metrics::{CallRecord, RpcMetrics};

/// Adds the per-RPC server span and call metrics.
#[derive(Debug, Clone)]
pub struct GrpcTraceLayer {
    metrics: RpcMetrics,
}

impl GrpcTraceLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: RpcMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;

    fn layer(&self, inner: S) -> GrpcTrace<S> {
        GrpcTrace {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`GrpcTraceLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct GrpcTrace<S> {
    inner: S,
    metrics: RpcMetrics,
}

/// One observed call: its span and its metrics record, ended together when
/// the status is known.
struct Call {
    span: Span,
    record: CallRecord,
}

impl Call {
    fn finish(self, code: i64) {
        record_status(&self.span, code);
        self.record.finish(code);
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span for one call of `path` (`/package.Service/Method`), arrived
/// over `system` (`grpc`, or `connect_rpc` through the Connect layer).
pub fn rpc_span(path: &str, headers: &HeaderMap, system: &'static str) -> Span {
    let full = path.trim_start_matches('/');
    let (service, method) = full.split_once('/').unwrap_or((full, ""));
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %full,
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = system,
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = Empty,
        enduser.role = Empty,
        tenant.id = Empty,
        trace_id = Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
    let tid = super::current_trace_id_of(&span);
    if !tid.is_empty() {
        span.record("trace_id", tid.as_str());
    }
    span
}

/// Records a gRPC status code on `span`; codes that signal a server-side
/// problem also mark the span as an error, as the RPC conventions ask.
fn record_status(span: &Span, code: i64) {
    span.record("rpc.grpc.status_code", code);
    // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS
    if matches!(code, 2 | 4 | 12 | 13 | 14 | 15) {
        span.record("otel.status_code", "ERROR");
    }
}

fn status_in(headers: &HeaderMap) -> Option<i64> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcTrace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = TracedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let path = req.uri().path();
        // Health probes arrive every few seconds from every kubelet: spans of
        // them would drown the calls SRE wants to see.
        if path.starts_with("/grpc.health.v1.") {
            return TracedFuture {
                inner: self.inner.call(req),
                call: None,
            };
        }
        let system = if req
            .extensions()
            .get::<crate::rpc::connect::ConnectCall>()
            .is_some()
        {
            "connect_rpc"
        } else {
            "grpc"
        };
        let span = rpc_span(path, req.headers(), system);
        let record = self.metrics.start(path, system);
        let inner = {
            let _e = span.enter();
            self.inner.call(req)
        };
        TracedFuture {
            inner,
            call: Some(Call { span, record }),
        }
    }
}

pin_project_lite::pin_project! {
    /// Polls the inner call inside the RPC span.
    pub struct TracedFuture<F> {
        #[pin]
        inner: F,
        call: Option<Call>,
    }
}

impl<F, B, E> Future for TracedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TracedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _e = this.call.as_ref().map(|c| c.span.enter());
        let res = ready!(this.inner.poll(cx));
        drop(_e);
        let call = this.call.take();
        Poll::Ready(res.map(|resp| {
            let (parts, body) = resp.into_parts();
            // A trailers-only response carries the status in its headers.
            let call = match (call, status_in(&parts.headers)) {
                (Some(c), Some(code)) => {
                    c.finish(code);
                    None
                }
                (c, _) => c,
            };
            Response::from_parts(parts, TracedBody { inner: body, call })
        }))
    }
}

pin_project_lite::pin_project! {
    /// Response body that records the status from the trailers and ends the
    /// span and the call's metrics when the body is done.
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(code) = f.trailers_ref().and_then(status_in)
                    && let Some(c) = this.call.take()
                {
                    c.finish(code);
                }
            }
            Some(Err(_)) => {
                if let Some(c) = this.call.take() {
                    // The stream broke before trailers: UNKNOWN.
                    c.finish(2);
                }
            }
            None => {
                // Ended without trailers: the span ends as it is and the
                // metrics count the call as CANCELLED.
                this.call.take();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parsed_from_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(status_in(&h), None);
        h.insert("grpc-status", "7".parse().unwrap());
        assert_eq!(status_in(&h), Some(7));
    }
}
