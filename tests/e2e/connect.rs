//! JSON over plain HTTP on the gRPC port (the Connect protocol), as curl and
//! a tenant's privacy tool call it: unary and server-streaming RPCs over
//! HTTP/1.1 and HTTP/2, the same roles, tenant scoping and audit as gRPC,
//! and errors as Connect JSON errors with their HTTP status and decodable
//! details.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use proctor::inbox::model::Recipient;
use serde_json::{Value, json};

use crate::inbox::put;
use crate::on_both_backends;
use crate::support::{Backend, TestApp, audit_events, spawn_app};

/// What came back over HTTP.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Which HTTP the client speaks.
#[derive(Clone, Copy)]
pub enum Http {
    One,
    Two,
}

/// POSTs `body` to `path` on a fresh plain-HTTP connection and returns the
/// response as it starts (its body still streaming).
pub async fn send(
    addr: SocketAddr,
    http: Http,
    path: &str,
    content_type: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Vec<u8>,
) -> http::Response<hyper::body::Incoming> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = TokioIo::new(tcp);
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", content_type);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    match http {
        Http::One => {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        }
        Http::Two => {
            let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
            tokio::spawn(conn);
            send.send_request(req).await.unwrap()
        }
    }
}

/// POSTs `body` to `path` on a fresh plain-HTTP connection and reads the
/// whole answer.
pub async fn post(
    addr: SocketAddr,
    http: Http,
    path: &str,
    content_type: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let resp = send(addr, http, path, content_type, token, extra, body).await;
    let (parts, body) = resp.into_parts();
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// A message in a Connect stream envelope (flags 0).
pub fn enveloped(msg: &[u8]) -> Vec<u8> {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(msg.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(msg);
    framed
}

/// The gRPC code a Connect error names (`permission_denied`, ...).
pub fn code_of(name: &str) -> tonic::Code {
    use tonic::Code as C;
    match name {
        "canceled" => C::Cancelled,
        "invalid_argument" => C::InvalidArgument,
        "deadline_exceeded" => C::DeadlineExceeded,
        "not_found" => C::NotFound,
        "already_exists" => C::AlreadyExists,
        "permission_denied" => C::PermissionDenied,
        "resource_exhausted" => C::ResourceExhausted,
        "failed_precondition" => C::FailedPrecondition,
        "aborted" => C::Aborted,
        "out_of_range" => C::OutOfRange,
        "unimplemented" => C::Unimplemented,
        "internal" => C::Internal,
        "unavailable" => C::Unavailable,
        "data_loss" => C::DataLoss,
        "unauthenticated" => C::Unauthenticated,
        _ => C::Unknown,
    }
}

/// A unary Connect call with a JSON body over HTTP/1.1.
pub async fn unary(app: &TestApp, path: &str, token: Option<&str>, body: Value) -> Reply {
    let r = post(
        app.addr,
        Http::One,
        path,
        "application/json",
        token,
        &[("connect-protocol-version", "1")],
        body.to_string().into_bytes(),
    )
    .await;
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{path}"
    );
    r
}

/// A server-streaming Connect call: its messages and its end-of-stream
/// message, after checking the framing.
pub async fn stream(app: &TestApp, path: &str, token: &str, body: Value) -> (Vec<Value>, Value) {
    let framed = enveloped(body.to_string().as_bytes());
    let r = post(
        app.addr,
        Http::One,
        path,
        "application/connect+json",
        Some(token),
        &[],
        framed,
    )
    .await;
    assert_eq!(
        r.status, 200,
        "stream responses are 200, errors travel at the end"
    );
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/connect+json")
    );
    let mut rest = &r.body[..];
    let mut messages = Vec::new();
    loop {
        assert!(rest.len() >= 5, "the stream ends with an end-of-stream message");
        let flags = rest[0];
        let len = u32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
        let json: Value = serde_json::from_slice(&rest[5..5 + len]).unwrap();
        rest = &rest[5 + len..];
        if flags & 0x02 != 0 {
            assert!(rest.is_empty(), "nothing after the end of the stream");
            return (messages, json);
        }
        messages.push(json);
    }
}

async fn unary_calls_over_plain_http(b: Backend) {
    let app = spawn_app(b).await;
    let t1 = app.keys.tenant("t1");
    const PULL: &str = "/proctor.v1.InboxService/Pull";

    // The README's first call: an empty inbox is an empty JSON object.
    let r = unary(&app, PULL, Some(&t1), json!({"max": 10})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({}));

    let ids = put(&app.store, Recipient::Tenant("t1".into()), "breach.notice", 2).await;
    put(&app.store, Recipient::Tenant("t2".into()), "breach.notice", 1).await;
    let r = unary(&app, PULL, Some(&t1), json!({"max": 10, "leaseSeconds": 30})).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let envs = v["envelopes"].as_array().unwrap();
    assert_eq!(envs.len(), 2, "only t1's own envelopes: {v}");
    assert_eq!(envs[0]["id"], ids[0].as_str());
    assert_eq!(envs[0]["kind"], "breach.notice");
    assert!(envs[0]["cursor"].is_string(), "uint64 as a JSON string");
    assert!(
        envs[0]["createdAt"].as_str().unwrap().ends_with('Z'),
        "RFC 3339 timestamps"
    );
    // The payload is JSON text a client parses, not base64.
    let payload: Value = serde_json::from_str(envs[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["id"], "thing-0");

    // Ack by JSON over HTTP/2 as well; proto field names are accepted.
    let r = post(
        app.addr,
        Http::Two,
        "/proctor.v1.InboxService/Ack",
        "application/json",
        Some(&t1),
        &[],
        json!({"ids": ids}).to_string().into_bytes(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"acknowledged": 2}));
    let r = unary(&app, PULL, Some(&t1), json!({"lease_seconds": 30})).await;
    assert_eq!(r.json(), json!({}), "acknowledged envelopes are gone");

    // A write through Connect is the same command: audited with its actor.
    let put_body = json!({
        "tenantId": "t1",
        "expectedVersion": "0",
        "instructions": {"rules": [{"category": "transcript", "retentionDays": 30, "purposes": ["transcription"]}]},
        "reason": "onboarding",
    });
    let r = unary(
        &app,
        "/proctor.v1.InstructionService/PutInstructions",
        Some(&t1),
        put_body.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["version"], "1");
    let events = audit_events(&app).await;
    assert!(
        events
            .iter()
            .any(|e| e.tenant_id == "t1" && e.role == "tenant" && e.action.starts_with("instructions.")),
        "the Connect write is audited like a gRPC one"
    );
    let crm = app.keys.platform("crm");
    let check = |purpose: &str| json!({"tenantId": "t1", "category": "transcript", "purpose": purpose, "region": "DE"});
    let r = unary(
        &app,
        "/proctor.v1.InstructionService/CheckProcessing",
        Some(&crm),
        check("transcription"),
    )
    .await;
    assert_eq!(r.json()["verdict"], "VERDICT_ALLOW", "enums by name");
    let r = unary(
        &app,
        "/proctor.v1.InstructionService/CheckProcessing",
        Some(&crm),
        check("billing"),
    )
    .await;
    assert_eq!(r.json()["verdict"], "VERDICT_DENY", "{}", r.json());

    // A stale version is FAILED_PRECONDITION naming the current version.
    let r = unary(
        &app,
        "/proctor.v1.InstructionService/PutInstructions",
        Some(&t1),
        put_body,
    )
    .await;
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["code"], "failed_precondition");
    let details = e["details"].as_array().unwrap();
    let pf = details
        .iter()
        .find(|d| d["type"] == "google.rpc.PreconditionFailure")
        .expect("a PreconditionFailure detail");
    assert_eq!(pf["debug"]["violations"][0]["type"], "VERSION");
    assert!(
        pf["debug"]["violations"][0]["description"]
            .as_str()
            .unwrap()
            .contains("current version is 1")
    );
    assert!(
        details
            .iter()
            .any(|d| d["type"] == "google.rpc.ErrorInfo" && d["debug"]["reason"] == "VERSION_CONFLICT")
    );
    app.stop().await;
}
on_both_backends!(unary_calls_over_plain_http_work, unary_calls_over_plain_http);

async fn errors_are_connect_errors(b: Backend) {
    let app = spawn_app(b).await;
    let t1 = app.keys.tenant("t1");
    let crm = app.keys.platform("crm");

    // No token: 401, and no parser detail.
    let r = unary(&app, "/proctor.v1.InboxService/Pull", None, json!({})).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], "unauthenticated");
    let r = unary(
        &app,
        "/proctor.v1.InboxService/Pull",
        Some("not-a-jwt"),
        json!({}),
    )
    .await;
    assert_eq!(r.status, 401);

    // Wrong role, other tenant: 403.
    let r = unary(
        &app,
        "/proctor.v1.AuditService/VerifyAuditLog",
        Some(&t1),
        json!({}),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], "permission_denied");
    let r = unary(
        &app,
        "/proctor.v1.AuditService/ListAuditEvents",
        Some(&t1),
        json!({"tenantId": "t2"}),
    )
    .await;
    assert_eq!(r.status, 403, "a tenant reaches only its own");

    // Bad fields: 400 with BadRequest in base64 and readable.
    let r = unary(
        &app,
        "/proctor.v1.InstructionService/CheckProcessing",
        Some(&crm),
        json!({}),
    )
    .await;
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["code"], "invalid_argument");
    let br = &e["details"][0];
    assert_eq!(br["type"], "google.rpc.BadRequest");
    assert!(!br["value"].as_str().unwrap().is_empty());
    let fields: Vec<&str> = br["debug"]["fieldViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"tenant_id") && fields.contains(&"category"),
        "{fields:?}"
    );

    // NOT_FOUND names the resource type.
    let r = unary(
        &app,
        "/proctor.v1.InboxService/Ack",
        Some(&crm),
        json!({"ids": ["nope"]}),
    )
    .await;
    assert_eq!(r.status, 404);
    let e = r.json();
    assert_eq!(e["code"], "not_found");
    let info = e["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["type"] == "google.rpc.ResourceInfo")
        .expect("ResourceInfo");
    assert_eq!(info["debug"]["resourceType"], "envelope");
    assert_eq!(info["debug"]["resourceName"], "nope");

    // A body that is not the request message: 400 naming the type.
    let r = unary(
        &app,
        "/proctor.v1.InboxService/Pull",
        Some(&t1),
        json!({"max": "lots"}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("proctor.v1.PullRequest")
    );
    let r = post(
        app.addr,
        Http::One,
        "/proctor.v1.InboxService/Pull",
        "application/json",
        Some(&t1),
        &[],
        b"{".to_vec(),
    )
    .await;
    assert_eq!(r.status, 400);

    // Unknown RPC, client-streaming RPC: unimplemented.
    let r = unary(&app, "/proctor.v1.InboxService/Nope", Some(&t1), json!({})).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (501, Some("unimplemented"))
    );
    let r = unary(
        &app,
        "/proctor.v1.ScreeningService/ImportList",
        Some(&app.keys.compliance()),
        json!({}),
    )
    .await;
    assert_eq!(r.status, 501);
    assert!(r.json()["message"].as_str().unwrap().contains("gRPC only"));

    // Neither gRPC nor Connect JSON (curl's default form encoding): 415.
    let r = post(
        app.addr,
        Http::One,
        "/proctor.v1.InboxService/Pull",
        "application/x-www-form-urlencoded",
        Some(&t1),
        &[],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.status, 415);
    // A server-streaming RPC called as unary: 415 too.
    let r = unary(
        &app,
        "/proctor.v1.AuditService/ExportAuditLog",
        Some(&app.keys.compliance()),
        json!({}),
    )
    .await;
    assert_eq!(r.status, 415);
    // Compressed bodies are refused, not misread.
    let r = post(
        app.addr,
        Http::One,
        "/proctor.v1.InboxService/Pull",
        "application/json",
        Some(&t1),
        &[("content-encoding", "gzip")],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(r.status, 501);
    app.stop().await;
}
on_both_backends!(
    errors_are_connect_errors_with_http_statuses,
    errors_are_connect_errors
);

async fn server_streams_over_plain_http(b: Backend) {
    let app = spawn_app(b).await;
    let compliance = app.keys.compliance();
    let t1 = app.keys.tenant("t1");
    let r = unary(
        &app,
        "/proctor.v1.InstructionService/PutInstructions",
        Some(&t1),
        json!({"tenantId": "t1", "instructions": {"rules": [{"category": "transcript", "purposes": ["transcription"]}]}, "reason": "r"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    app.audit_settled().await;

    let (events, end) = stream(
        &app,
        "/proctor.v1.AuditService/ExportAuditLog",
        &compliance,
        json!({"tenantId": "t1"}),
    )
    .await;
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["tenantId"] == "t1"));
    assert!(end.get("error").is_none(), "a clean end: {end}");

    // An error in a stream travels in the end-of-stream message.
    let (events, end) = stream(
        &app,
        "/proctor.v1.AuditService/ExportAuditLog",
        &t1,
        json!({"tenantId": "t2"}),
    )
    .await;
    assert!(events.is_empty());
    assert_eq!(end["error"]["code"], "permission_denied", "{end}");
    app.stop().await;
}
on_both_backends!(
    server_streams_over_plain_http_work,
    server_streams_over_plain_http
);
