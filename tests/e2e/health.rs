//! Health needs no token and turns SERVING once migrations ran; reflection
//! lists every proctor service; oversized messages are refused.

use proctor::proto::v1::{AckRequest, PullRequest};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;

use crate::on_both_backends;
use crate::support::{Backend, authed, spawn_app};

async fn health_and_reflection(b: Backend) {
    let app = spawn_app(b).await;
    let mut h = app.health();
    for service in ["", "proctor.v1.InboxService", "proctor.v1.AuditService"] {
        let r = h
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, 1, "{service} SERVING");
    }

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut refl = ServerReflectionClient::new(app.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for s in [
        "proctor.v1.InstructionService",
        "proctor.v1.SubProcessorService",
        "proctor.v1.ScreeningService",
        "proctor.v1.SubjectRequestService",
        "proctor.v1.InboxService",
        "proctor.v1.BreachService",
        "proctor.v1.DisclosureService",
        "proctor.v1.AuditService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&s), "reflection lists {s}: {names:?}");
    }
    app.stop().await;
}
on_both_backends!(health_and_reflection_work_without_token, health_and_reflection);

#[tokio::test]
async fn oversized_message_is_resource_exhausted() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut inbox = app.inbox().max_encoding_message_size(64 << 20);
    let ids: Vec<String> = (0..200_000).map(|i| format!("{i:040}")).collect();
    let err = inbox
        .ack(authed(AckRequest { ids }, &app.keys.tenant("t1")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // The server is still fine afterwards.
    inbox
        .pull(authed(PullRequest::default(), &app.keys.tenant("t1")))
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_ends_streams_and_returns() {
    use proctor::proto::v1::SubscribeRequest;
    let app = spawn_app(Backend::Sqlite).await;
    let mut inbox = app.inbox();
    let mut stream = inbox
        .subscribe(authed(
            SubscribeRequest { after_cursor: 0 },
            &app.keys.tenant("t1"),
        ))
        .await
        .unwrap()
        .into_inner();
    let stopping = tokio::spawn(app.stop());
    // The open subscription ends instead of holding the shutdown forever.
    let end = tokio::time::timeout(std::time::Duration::from_secs(4), stream.message()).await;
    assert!(end.is_ok(), "stream ended within the grace period");
    tokio::time::timeout(std::time::Duration::from_secs(10), stopping)
        .await
        .expect("server stopped")
        .unwrap();
}

/// What old grpcurl, Postman, Evans and Python's grpcio-reflection do: list
/// over v1alpha, then fetch the file of a symbol and every file it imports
/// by name. The google.rpc error details resolve, so they decode
/// `BadRequest` instead of printing bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_v1alpha_resolves_services_and_error_details() {
    use prost::Message as _;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    let app = spawn_app(Backend::Sqlite).await;
    let refl = ServerReflectionClient::new(app.channel.clone());
    let ask = |m: MessageRequest| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let answers = |reqs: Vec<ServerReflectionRequest>| {
        let mut refl = refl.clone();
        async move {
            let mut stream = refl
                .server_reflection_info(tokio_stream::iter(reqs))
                .await
                .unwrap()
                .into_inner();
            let mut out = Vec::new();
            while let Some(r) = stream.message().await.unwrap() {
                out.push(r.message_response.unwrap());
            }
            out
        }
    };
    let list = answers(vec![ask(MessageRequest::ListServices(String::new()))]).await;
    let MessageResponse::ListServicesResponse(list) = &list[0] else {
        panic!("unexpected reflection answer: {list:?}");
    };
    assert!(list.service.iter().any(|s| s.name == "proctor.v1.InboxService"));

    // Resolve each symbol, then every import by file name, as clients do.
    for symbol in [
        "proctor.v1.InboxService",
        "google.rpc.BadRequest",
        "google.rpc.PreconditionFailure",
        "google.rpc.ResourceInfo",
        "google.rpc.ErrorInfo",
        "google.rpc.Status",
    ] {
        let got = answers(vec![ask(MessageRequest::FileContainingSymbol(symbol.into()))]).await;
        let MessageResponse::FileDescriptorResponse(files) = &got[0] else {
            panic!("{symbol} does not resolve: {got:?}");
        };
        let mut pending: Vec<String> = files
            .file_descriptor_proto
            .iter()
            .flat_map(|b| {
                prost_types::FileDescriptorProto::decode(b.as_slice())
                    .unwrap()
                    .dependency
            })
            .collect();
        while let Some(name) = pending.pop() {
            let got = answers(vec![ask(MessageRequest::FileByFilename(name.clone()))]).await;
            let MessageResponse::FileDescriptorResponse(f) = &got[0] else {
                panic!("import {name} of {symbol} does not resolve: {got:?}");
            };
            for b in &f.file_descriptor_proto {
                pending.extend(
                    prost_types::FileDescriptorProto::decode(b.as_slice())
                        .unwrap()
                        .dependency,
                );
            }
        }
    }
    drop(refl);
    app.stop().await;
}
