//! The server's own bound on how long a call may take to answer
//! (`--request-timeout-seconds`), applied to every RPC except those whose
//! request is a stream of the caller's data (`UploadArtifact`): a file of
//! any size arrives at the speed of the caller's link, so a fixed bound on
//! the whole call would refuse large recordings on slow links. Those
//! streams are bounded per message instead (the handler gives up when the
//! next message is that late). A deadline the client sends (`grpc-timeout`)
//! still applies to every call: tonic enforces it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tonic::Status;
use tower::{Layer, Service};

/// RPCs whose request streams the caller's data: bounded per message, not
/// per call.
pub const STREAMED_UPLOADS: &[&str] = &["/proctor.v1.SubjectRequestService/UploadArtifact"];

/// Applies the call deadline (see the module comment).
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    timeout: Duration,
}

impl DeadlineLayer {
    /// Every call but a streamed upload answers within `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service [`DeadlineLayer`] makes.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    timeout: Duration,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Deadline<S>
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
        if STREAMED_UPLOADS.contains(&req.uri().path()) {
            return Box::pin(self.inner.call(req));
        }
        let timeout = self.timeout;
        let call = self.inner.call(req);
        Box::pin(async move {
            match tokio::time::timeout(timeout, call).await {
                Ok(answer) => answer,
                // What tonic's own server timeout answered, unchanged for
                // clients that look for it.
                Err(_) => Ok(Status::cancelled("Timeout expired").into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// A handler that takes `delay` to answer OK.
    fn slow(
        delay: Duration,
    ) -> impl Service<Request<()>, Response = Response<String>, Error = std::convert::Infallible, Future: Send>
    + Clone {
        tower::service_fn(move |_req: Request<()>| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, std::convert::Infallible>(Response::new("answered".to_owned()))
        })
    }

    fn call_to(path: &str) -> Request<()> {
        Request::builder().uri(path).body(()).unwrap()
    }

    #[tokio::test]
    async fn a_late_answer_is_cancelled_and_an_upload_is_not() {
        let layer = DeadlineLayer::new(Duration::from_millis(100));
        let svc = layer.layer(slow(Duration::from_millis(400)));
        let r = svc
            .clone()
            .oneshot(call_to("/proctor.v1.InstructionService/CheckProcessing"))
            .await
            .unwrap();
        let status = Status::from_header_map(r.headers()).expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::Cancelled);
        assert_eq!(status.message(), "Timeout expired");
        let r = svc.oneshot(call_to(STREAMED_UPLOADS[0])).await.unwrap();
        assert_eq!(r.body(), "answered");
        let quick = layer.layer(slow(Duration::from_millis(5)));
        let r = quick
            .oneshot(call_to("/grpc.health.v1.Health/Check"))
            .await
            .unwrap();
        assert_eq!(r.body(), "answered");
    }
}
