//! Every RPC becomes a server span with the OpenTelemetry RPC attributes and
//! continues the caller's trace; checked against a real OTLP/gRPC receiver
//! fed by a real `proctor serve` process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use proctor::proto::v1::audit_service_client::AuditServiceClient;
use proctor::proto::v1::inbox_service_client::InboxServiceClient;
use proctor::proto::v1::instruction_service_client::InstructionServiceClient;
use proctor::proto::v1::{
    AckRequest, CheckProcessingRequest, ListAuditEventsRequest, PullRequest, VerifyAuditLogRequest,
};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::cli::Server;
use crate::otlp::{self, text};
use crate::support::{TestKeys, authed};

/// A received span with its resource attributes.
type Received = (Span, Vec<(String, String)>);

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut out = self.spans.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let resource: Vec<(String, String)> = rs
                .resource
                .map(|r| {
                    r.attributes
                        .into_iter()
                        .map(|kv| (kv.key, text(kv.value)))
                        .collect()
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    out.push((s, resource.clone()));
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn attr(s: &Span, key: &str) -> Option<String> {
    s.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| text(kv.value.clone()))
}

fn with_parent<T>(mut r: Request<T>, trace_id: &str) -> Request<T> {
    r.metadata_mut().insert(
        "traceparent",
        MetadataValue::try_from(format!("00-{trace_id}-00f067aa0ba902b7-01")).unwrap(),
    );
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_arrives_as_a_server_span_in_the_callers_trace() {
    let receiver = Receiver::default();
    let otlp = otlp::serve(
        tonic::transport::Server::builder().add_service(TraceServiceServer::new(receiver.clone())),
    )
    .await;

    let keys = TestKeys::for_process();
    let cwd = tempfile::tempdir().unwrap();
    let server = Server::start(
        cwd.path(),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
            ("OTEL_SERVICE_NAME", "proctor-under-test".into()),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on".into()),
            ("PROCTOR_JWT_JWKS", keys.jwks_path.display().to_string()),
            ("PROCTOR_JWT_ISSUER", "https://issuer.test".into()),
            ("PROCTOR_JWT_AUDIENCE", "proctor".into()),
        ],
    );
    assert!(server.wait_health(1, Duration::from_secs(20)).await);
    let ch = server.channel().await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut inbox = InboxServiceClient::new(ch.clone());
    let mut audit = AuditServiceClient::new(ch.clone());
    let mut instr = InstructionServiceClient::new(ch.clone());

    // The scripted session: (rpc, expected status code, role, tenant).
    inbox
        .pull(with_parent(
            authed(PullRequest::default(), &keys.tenant("t1")),
            trace,
        ))
        .await
        .unwrap();
    let e = inbox
        .ack(with_parent(
            authed(
                AckRequest {
                    ids: vec!["nope".into()],
                },
                &keys.platform("crm"),
            ),
            trace,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    audit
        .list_audit_events(with_parent(
            authed(
                ListAuditEventsRequest {
                    tenant_id: "t9".into(),
                    ..Default::default()
                },
                &keys.compliance(),
            ),
            trace,
        ))
        .await
        .unwrap();
    audit
        .verify_audit_log(with_parent(
            authed(VerifyAuditLogRequest::default(), &keys.sre()),
            trace,
        ))
        .await
        .unwrap();
    inbox
        .pull(with_parent(Request::new(PullRequest::default()), trace))
        .await
        .unwrap_err();
    instr
        .check_processing(with_parent(
            authed(CheckProcessingRequest::default(), &keys.platform("crm")),
            trace,
        ))
        .await
        .unwrap_err();
    // The same RPC as JSON over plain HTTP: a span of its own, marked Connect.
    let connect = crate::connect::post(
        format!("127.0.0.1:{}", server.port).parse().unwrap(),
        crate::connect::Http::One,
        "/proctor.v1.InboxService/Pull",
        "application/json",
        Some(&keys.tenant("t1")),
        &[("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(connect.status, 200);
    server.terminate().assert_clean();

    let expected: [(&str, i64, Option<&str>, Option<&str>); 7] = [
        ("proctor.v1.InboxService/Pull", 0, Some("tenant"), Some("t1")),
        ("proctor.v1.InboxService/Pull", 0, Some("tenant"), Some("t1")),
        ("proctor.v1.InboxService/Ack", 5, Some("platform"), None),
        (
            "proctor.v1.AuditService/ListAuditEvents",
            0,
            Some("compliance"),
            Some("t9"),
        ),
        ("proctor.v1.AuditService/VerifyAuditLog", 0, Some("sre"), None),
        ("proctor.v1.InboxService/Pull", 16, None, None),
        (
            "proctor.v1.InstructionService/CheckProcessing",
            3,
            Some("platform"),
            None,
        ),
    ];
    // Shutdown flushed the batch; give the receiver a moment to record it.
    let mut spans = Vec::new();
    for _ in 0..50 {
        spans = receiver.spans.lock().unwrap().clone();
        if spans.iter().filter(|(s, _)| s.kind == 2).count() >= expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server_spans: Vec<&Received> = spans.iter().filter(|(s, _)| s.kind == 2).collect();
    assert_eq!(
        server_spans.len(),
        expected.len(),
        "one server span per RPC: {server_spans:#?}"
    );
    let connect_spans = server_spans
        .iter()
        .filter(|(s, _)| attr(s, "rpc.system").as_deref() == Some("connect_rpc"))
        .count();
    assert_eq!(connect_spans, 1, "the Connect call's span says connect_rpc");
    let mut remaining = server_spans.clone();
    for (name, code, role, tenant) in expected {
        let pos = remaining
            .iter()
            .position(|(s, _)| {
                s.name == name && attr(s, "rpc.grpc.status_code").as_deref() == Some(&code.to_string())
            })
            .unwrap_or_else(|| panic!("no span {name} with status {code}"));
        let (s, resource) = remaining.remove(pos);
        assert_eq!(hex(&s.trace_id), trace, "{name} continues the caller's trace");
        assert_eq!(hex(&s.parent_span_id), "00f067aa0ba902b7");
        assert!(matches!(
            attr(s, "rpc.system").as_deref(),
            Some("grpc" | "connect_rpc")
        ));
        let (service, method) = name.split_once('/').unwrap();
        assert_eq!(attr(s, "rpc.service").as_deref(), Some(service));
        assert_eq!(attr(s, "rpc.method").as_deref(), Some(method));
        assert_eq!(attr(s, "enduser.role").as_deref(), role, "{name} role");
        assert_eq!(attr(s, "tenant.id").as_deref(), tenant, "{name} tenant");
        assert!(resource.contains(&("service.name".into(), "proctor-under-test".into())));
    }
    // Database work shows up as child spans of the RPC spans.
    assert!(
        spans
            .iter()
            .any(|(s, _)| s.name == "db.query" && hex(&s.trace_id) == trace)
    );
    // No token or personal data in any attribute.
    for (s, _) in &spans {
        for kv in &s.attributes {
            let v = text(kv.value.clone());
            assert!(!v.contains("eyJ"), "token in span attribute {}: {v}", kv.key);
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
