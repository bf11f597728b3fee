//! The tower layer in front of every gRPC service: a Connect request (JSON
//! over HTTP/1.1 or HTTP/2) becomes the same gRPC call a gRPC client would
//! make, sent through the same stack (spans and metrics, message limits,
//! rate limits, authentication, policy, handlers, audit), and the gRPC answer
//! becomes the Connect one. gRPC requests pass through untouched.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::TryFutureExt;
use futures::future::{BoxFuture, Either as EitherFuture, MapOk};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::Frame;
use http_body_util::{BodyExt, Either, Full, Limited, StreamBody};
use prost_reflect::MethodDescriptor;
use tonic::Code;
use tonic::body::Body;
use tower::{Layer, Service};

use super::protocol::{self, Deframer, FLAG_COMPRESSED, FLAG_END_STREAM, Framing};
use super::schema::{Schema, Shape};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Marks the gRPC request the layer made from a Connect one, so the span
/// and metrics layers record `rpc.system = connect_rpc` for it.
#[derive(Debug, Clone, Copy)]
pub struct ConnectCall;

/// Serves the Connect protocol in front of the gRPC services.
#[derive(Debug, Clone)]
pub struct ConnectLayer {
    schema: Arc<Schema>,
    max_message_bytes: usize,
}

impl ConnectLayer {
    /// A layer that reads request bodies of up to `max_message_bytes`, the
    /// same limit gRPC requests have.
    pub fn new(schema: Arc<Schema>, max_message_bytes: usize) -> Self {
        Self {
            schema,
            max_message_bytes,
        }
    }
}

impl<S> Layer<S> for ConnectLayer {
    type Service = Connect<S>;

    fn layer(&self, inner: S) -> Connect<S> {
        Connect {
            inner,
            schema: self.schema.clone(),
            max: self.max_message_bytes,
        }
    }
}

/// The service [`ConnectLayer`] wraps around the gRPC stack.
#[derive(Debug, Clone)]
pub struct Connect<S> {
    inner: S,
    schema: Arc<Schema>,
    max: usize,
}

/// The body of a gRPC answer passed through, or of a Connect one.
pub type ConnectBody<B> = Either<B, Body>;

type Passthrough<B> = fn(Response<B>) -> Response<ConnectBody<B>>;

fn passthrough<B>(r: Response<B>) -> Response<ConnectBody<B>> {
    r.map(Either::Left)
}

impl<S, B> Service<Request<Body>> for Connect<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ConnectBody<B>>;
    type Error = S::Error;
    type Future =
        EitherFuture<MapOk<S::Future, Passthrough<B>>, BoxFuture<'static, Result<Self::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let framing = protocol::framing(req.headers());
        let grpc = is_grpc(req.headers());
        if framing.is_none() && grpc {
            return EitherFuture::Left(self.inner.call(req).map_ok(passthrough as Passthrough<B>));
        }
        // The service that was made ready goes into the call; a fresh clone
        // stays for the next one.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let schema = self.schema.clone();
        let max = self.max;
        EitherFuture::Right(Box::pin(async move {
            let Some(framing) = framing.filter(|_| req.method() == Method::POST) else {
                return Ok(unsupported_media_type().map(Either::Right));
            };
            serve(inner, &schema, max, framing, req)
                .await
                .map(|r| r.map(Either::Right))
        }))
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// One Connect call: checked and transcoded, sent down the gRPC stack, and
/// its answer transcoded back.
async fn serve<S, B>(
    mut inner: S,
    schema: &Arc<Schema>,
    max: usize,
    framing: Framing,
    req: Request<Body>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<Body>, Response = Response<B>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let path = req.uri().path().to_owned();
    let Some(method) = schema.method(&path) else {
        return Ok(error_response(
            framing,
            Code::Unimplemented,
            &format!("no RPC {path}"),
            None,
            schema,
        ));
    };
    match (Schema::shape(&method), framing) {
        (Shape::ClientStream, _) => {
            return Ok(error_response(
                framing,
                Code::Unimplemented,
                "client-streaming RPCs are served over gRPC only",
                None,
                schema,
            ));
        }
        (Shape::ServerStream, Framing::Unary) => return Ok(unsupported_media_type()),
        (Shape::Unary, Framing::Stream) => return Ok(unsupported_media_type()),
        _ => {}
    }
    if compressed(req.headers()) {
        return Ok(error_response(
            framing,
            Code::Unimplemented,
            "compressed requests are not accepted; send identity",
            None,
            schema,
        ));
    }
    let (parts, body) = req.into_parts();
    let json = match read_request(body, framing, max).await {
        Ok(j) => j,
        Err((code, msg)) => return Ok(error_response(framing, code, &msg, None, schema)),
    };
    let proto = match Schema::request_to_proto(&method, &json) {
        Ok(p) => p,
        Err(e) => {
            return Ok(error_response(
                framing,
                Code::InvalidArgument,
                &format!("request body is not a valid {}: {e}", method.input().full_name()),
                None,
                schema,
            ));
        }
    };
    let resp = inner.call(grpc_request(parts, proto)).await?;
    Ok(match framing {
        Framing::Unary => unary_response(resp, &method, schema).await,
        Framing::Stream => stream_response(resp, method, schema.clone()),
    })
}

/// Whether the request says its body is compressed.
fn compressed(headers: &HeaderMap) -> bool {
    ["content-encoding", "connect-content-encoding"].iter().any(|h| {
        headers
            .get(*h)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.eq_ignore_ascii_case("identity"))
    })
}

/// The request's JSON message: the whole body for unary calls, the one
/// envelope of a stream call.
async fn read_request(body: Body, framing: Framing, max: usize) -> Result<Bytes, (Code, String)> {
    let limit = max.saturating_add(5);
    let raw = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                (
                    Code::ResourceExhausted,
                    format!("request body exceeds {max} bytes"),
                )
            } else {
                (Code::InvalidArgument, format!("request body not read: {e}"))
            }
        })?
        .to_bytes();
    match framing {
        Framing::Unary => Ok(raw),
        Framing::Stream => {
            let bad = |m: String| (Code::InvalidArgument, m);
            let mut d = Deframer::new(max);
            d.push(&raw);
            let (flags, msg) = d
                .next_frame()
                .map_err(|e| bad(e.to_string()))?
                .ok_or_else(|| bad("a stream request carries one enveloped message".into()))?;
            if flags & FLAG_COMPRESSED != 0 {
                return Err((Code::Unimplemented, "compressed messages are not accepted".into()));
            }
            if d.next_frame().map_err(|e| bad(e.to_string()))?.is_some() || d.finish().is_err() {
                return Err(bad(
                    "a server-streaming request carries exactly one message".into()
                ));
            }
            Ok(msg)
        }
    }
}

/// Headers that belong to the HTTP hop or to Connect itself, not to the
/// call's metadata.
fn is_transport_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "content-type"
            | "content-length"
            | "content-encoding"
            | "accept-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "host"
            | "trailer"
    ) || n.starts_with("connect-")
        || n.starts_with("grpc-")
}

/// The gRPC request a gRPC client would have sent: same path, metadata
/// (the bearer token, trace context), connection facts (peer address, TLS
/// certificates) and deadline.
fn grpc_request(parts: http::request::Parts, proto: Vec<u8>) -> Request<Body> {
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 3);
    for (k, v) in &parts.headers {
        if !is_transport_header(k) {
            headers.append(k.clone(), v.clone());
        }
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    if let Some(t) = protocol::grpc_timeout(&parts.headers).and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert("grpc-timeout", t);
    }
    let mut req = Request::new(Body::new(Full::new(protocol::envelope(0, &proto))));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = parts.uri;
    *req.version_mut() = Version::HTTP_2;
    *req.headers_mut() = headers;
    *req.extensions_mut() = parts.extensions;
    req.extensions_mut().insert(ConnectCall);
    req
}

/// The status a gRPC answer ended with: from its trailers, or from its
/// headers when it had no body (trailers-only).
fn status_of(map: &HeaderMap) -> Option<tonic::Status> {
    tonic::Status::from_header_map(map)
}

/// Call metadata for the Connect response: what the handler set, without
/// gRPC's own headers.
fn metadata(headers: &HeaderMap, prefix: &str, into: &mut HeaderMap) {
    for (k, v) in headers {
        if is_transport_header(k) {
            continue;
        }
        let name = if prefix.is_empty() {
            Some(k.clone())
        } else {
            HeaderName::from_bytes(format!("{prefix}{k}").as_bytes()).ok()
        };
        if let Some(n) = name {
            into.append(n, v.clone());
        }
    }
}

async fn unary_response<B>(resp: Response<B>, method: &MethodDescriptor, schema: &Schema) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = resp.into_parts();
    let mut headers = HeaderMap::new();
    metadata(&parts.headers, "", &mut headers);
    let (status, data) = match status_of(&parts.headers) {
        Some(s) => (Some(s), Bytes::new()),
        None => match body.collect().await {
            Ok(c) => {
                let status = c.trailers().and_then(status_of);
                if let Some(t) = c.trailers() {
                    metadata(t, "trailer-", &mut headers);
                }
                (status, c.to_bytes())
            }
            Err(e) => {
                let e: BoxError = e.into();
                (
                    Some(tonic::Status::internal(format!("response not read: {e}"))),
                    Bytes::new(),
                )
            }
        },
    };
    let status = status.unwrap_or_else(|| tonic::Status::internal("the call ended without a status"));
    if status.code() != Code::Ok {
        let mut r = error_response(
            Framing::Unary,
            status.code(),
            status.message(),
            Some(status.details()),
            schema,
        );
        for (k, v) in &headers {
            r.headers_mut().append(k.clone(), v.clone());
        }
        return r;
    }
    let mut d = Deframer::new(usize::MAX);
    d.push(&data);
    let json = match d.next_frame() {
        Ok(Some((_, msg))) => Schema::response_to_json(method, &msg),
        _ => Err("the call answered no message".to_owned()),
    };
    match json {
        Ok(json) => {
            let mut r = Response::new(Body::new(Full::new(Bytes::from(json))));
            *r.headers_mut() = headers;
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(protocol::UNARY_JSON));
            r
        }
        Err(e) => error_response(Framing::Unary, Code::Internal, &e, None, schema),
    }
}

/// The end-of-stream message: the error, if any, and the trailers.
fn end_stream(status: &tonic::Status, trailers: Option<&HeaderMap>, schema: &Schema) -> Bytes {
    let mut end = serde_json::Map::new();
    if status.code() != Code::Ok {
        end.insert(
            "error".into(),
            error_json(status.code(), status.message(), Some(status.details()), schema),
        );
    }
    if let Some(t) = trailers {
        let mut md = serde_json::Map::new();
        let mut m = HeaderMap::new();
        metadata(t, "", &mut m);
        for k in m.keys() {
            let values: Vec<serde_json::Value> = m
                .get_all(k)
                .iter()
                .filter_map(|v| v.to_str().ok().map(|s| serde_json::Value::String(s.into())))
                .collect();
            md.insert(k.as_str().into(), values.into());
        }
        if !md.is_empty() {
            end.insert("metadata".into(), md.into());
        }
    }
    let json = serde_json::to_vec(&serde_json::Value::Object(end)).unwrap_or_else(|_| b"{}".to_vec());
    protocol::envelope(FLAG_END_STREAM, &json)
}

/// What the stream transcoder reads next.
struct StreamState<B> {
    body: Option<Pin<Box<B>>>,
    deframer: Deframer,
    method: MethodDescriptor,
    schema: Arc<Schema>,
}

fn stream_response<B>(resp: Response<B>, method: MethodDescriptor, schema: Arc<Schema>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = resp.into_parts();
    let mut headers = HeaderMap::new();
    metadata(&parts.headers, "", &mut headers);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(protocol::STREAM_JSON));
    let trailers_only = status_of(&parts.headers);
    let state = StreamState {
        body: trailers_only.is_none().then(|| Box::pin(body)),
        deframer: Deframer::new(usize::MAX),
        method,
        schema,
    };
    let first = trailers_only.map(|s| end_stream(&s, None, &state.schema));
    let stream = futures::stream::unfold((state, first), |(mut st, pending)| async move {
        if let Some(end) = pending {
            return Some((Ok::<_, BoxError>(Frame::data(end)), (st, None)));
        }
        let mut body = st.body.take()?;
        // Messages converted so far, then (once the stream is over) its
        // end-of-stream message with the status it ended with.
        let mut out = BytesMut::new();
        let (status, trailers) = loop {
            match body.frame().await {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        st.deframer.push(&data);
                        let mut failed = None;
                        while let Ok(Some((_, msg))) = st.deframer.next_frame() {
                            match Schema::response_to_json(&st.method, &msg) {
                                Ok(json) => out.extend_from_slice(&protocol::envelope(0, &json)),
                                Err(e) => {
                                    failed = Some(tonic::Status::internal(e));
                                    break;
                                }
                            }
                        }
                        if let Some(s) = failed {
                            break (s, None);
                        }
                        if !out.is_empty() {
                            st.body = Some(body);
                            return Some((Ok(Frame::data(out.freeze())), (st, None)));
                        }
                    }
                    Err(frame) => {
                        let trailers = frame.into_trailers().ok();
                        let status = trailers.as_ref().and_then(status_of);
                        break (status.unwrap_or_else(ended_without_status), trailers);
                    }
                },
                Some(Err(e)) => {
                    let e: BoxError = e.into();
                    break (tonic::Status::internal(e.to_string()), None);
                }
                None => break (ended_without_status(), None),
            }
        };
        out.extend_from_slice(&end_stream(&status, trailers.as_ref(), &st.schema));
        Some((Ok(Frame::data(out.freeze())), (st, None)))
    });
    let mut r = Response::new(Body::new(StreamBody::new(stream)));
    *r.headers_mut() = headers;
    r
}

/// The status of a gRPC stream that ended with no `grpc-status`.
fn ended_without_status() -> tonic::Status {
    tonic::Status::internal("the stream ended without a status")
}

/// A Connect error as JSON: `{"code", "message", "details"}`.
fn error_json(code: Code, message: &str, details: Option<&[u8]>, schema: &Schema) -> serde_json::Value {
    let mut e = serde_json::json!({ "code": protocol::code_name(code) });
    if !message.is_empty() {
        e["message"] = message.into();
    }
    let details = details
        .filter(|d| !d.is_empty())
        .map(|d| schema.error_details(d))
        .unwrap_or_default();
    if !details.is_empty() {
        e["details"] = details.into();
    }
    e
}

/// An error before or instead of the call: an HTTP error status with the
/// JSON error for unary calls; HTTP 200 with an end-of-stream message for
/// stream calls, as the protocol has it.
fn error_response(
    framing: Framing,
    code: Code,
    message: &str,
    details: Option<&[u8]>,
    schema: &Schema,
) -> Response<Body> {
    let (status, content_type, body) = match framing {
        Framing::Unary => {
            let json = serde_json::to_vec(&error_json(code, message, details, schema)).unwrap_or_default();
            (
                protocol::http_status(code),
                protocol::UNARY_JSON,
                Bytes::from(json),
            )
        }
        Framing::Stream => {
            let s = tonic::Status::with_details(
                code,
                message.to_owned(),
                Bytes::copy_from_slice(details.unwrap_or_default()),
            );
            (
                StatusCode::OK,
                protocol::STREAM_JSON,
                end_stream(&s, None, schema),
            )
        }
    };
    let mut r = Response::new(Body::new(Full::new(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// What a request that is neither gRPC nor Connect JSON gets (curl's
/// default form encoding, a GET, a streaming RPC called as unary).
fn unsupported_media_type() -> Response<Body> {
    let json = serde_json::json!({
        "code": "unimplemented",
        "message": "send gRPC, or Connect JSON: POST with Content-Type application/json (unary RPCs) or application/connect+json (server-streaming RPCs)",
    });
    let mut r = Response::new(Body::new(Full::new(Bytes::from(
        serde_json::to_vec(&json).unwrap_or_default(),
    ))));
    *r.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(protocol::UNARY_JSON));
    r
}
