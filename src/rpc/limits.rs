//! Message refusals as the gRPC spec names them. tonic reports a request
//! over `max_decoding_message_size` as OUT_OF_RANGE; clients (and the gRPC
//! status-code guide) expect RESOURCE_EXHAUSTED. tonic reports a request it
//! cannot decode as INTERNAL; it is the caller's malformed input, so
//! INVALID_ARGUMENT. This layer rewrites those two statuses, wherever they
//! travel: in the headers of a trailers-only response, or in the trailers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

/// The text tonic puts in `grpc-message` for an oversized message.
const TOO_LARGE: &str = "message length too large";
/// How tonic's `grpc-message` for an undecodable request begins.
const UNDECODABLE: &str = "failed to decode Protobuf message";

/// Rewrites tonic's oversized-message OUT_OF_RANGE to RESOURCE_EXHAUSTED.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageLimitLayer;

impl<S> Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;

    fn layer(&self, inner: S) -> MessageLimit<S> {
        MessageLimit { inner }
    }
}

/// The service [`MessageLimitLayer`] wraps.
#[derive(Debug, Clone)]
pub struct MessageLimit<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for MessageLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<LimitBody<ResBody>>;
    type Error = S::Error;
    type Future = LimitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        LimitFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`MessageLimit`].
    pub struct LimitFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> Future for LimitFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<LimitBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let res = ready!(self.project().inner.poll(cx));
        Poll::Ready(res.map(|mut resp| {
            rewrite(resp.headers_mut());
            resp.map(|inner| LimitBody { inner })
        }))
    }
}

pin_project_lite::pin_project! {
    /// Response body of [`MessageLimit`]: rewrites the status in trailers.
    pub struct LimitBody<B> {
        #[pin]
        inner: B,
    }
}

impl<B: Body> Body for LimitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut frame = ready!(self.project().inner.poll_frame(cx));
        if let Some(t) = frame
            .as_mut()
            .and_then(|f| f.as_mut().ok())
            .and_then(Frame::trailers_mut)
        {
            rewrite(t);
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

fn rewrite(h: &mut http::HeaderMap) {
    let Some(status) = h.get("grpc-status").cloned() else {
        return;
    };
    // grpc-message is percent-encoded
    let message = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| m.replace("%20", " "))
        .unwrap_or_default();
    if status == "11" && message.contains(TOO_LARGE) {
        h.insert("grpc-status", HeaderValue::from_static("8"));
    } else if status == "13" && message.starts_with(UNDECODABLE) {
        h.insert("grpc-status", HeaderValue::from_static("3"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_the_size_refusal() {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("11"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static("Error,%20decoded%20message%20length%20too%20large:%20found%209"),
        );
        rewrite(&mut h);
        assert_eq!(h["grpc-status"], "8");

        let mut other = http::HeaderMap::new();
        other.insert("grpc-status", HeaderValue::from_static("11"));
        other.insert("grpc-message", HeaderValue::from_static("page out of range"));
        rewrite(&mut other);
        assert_eq!(other["grpc-status"], "11");

        let mut undecodable = http::HeaderMap::new();
        undecodable.insert("grpc-status", HeaderValue::from_static("13"));
        undecodable.insert(
            "grpc-message",
            HeaderValue::from_static("failed%20to%20decode%20Protobuf%20message:%20buffer%20underflow"),
        );
        rewrite(&mut undecodable);
        assert_eq!(undecodable["grpc-status"], "3");

        let mut internal = http::HeaderMap::new();
        internal.insert("grpc-status", HeaderValue::from_static("13"));
        internal.insert("grpc-message", HeaderValue::from_static("internal%20error"));
        rewrite(&mut internal);
        assert_eq!(internal["grpc-status"], "13");
    }
}
