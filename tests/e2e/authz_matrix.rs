//! The authorisation matrix: every RPC the server declares (read from the
//! compiled descriptor set, so a new RPC without a rule in
//! `src/auth/policy.rs` fails here) × every role × own and other tenant,
//! called over real gRPC, and again as Connect JSON over plain HTTP/1.1
//! (all but the client-streaming RPCs), with real tokens and an empty or
//! minimal request.
//!
//! Expectations, per call:
//!
//! | caller                                   | expected status                                   |
//! |------------------------------------------|---------------------------------------------------|
//! | no token                                 | UNAUTHENTICATED                                   |
//! | role not in the RPC's rule               | PERMISSION_DENIED                                 |
//! | allowed role, own tenant / no tenant     | anything but PERMISSION_DENIED or UNAUTHENTICATED |
//! |                                          | (INVALID_ARGUMENT, NOT_FOUND, UNIMPLEMENTED... for |
//! |                                          | an empty request are fine)                        |
//! | tenant token naming another tenant       | PERMISSION_DENIED or NOT_FOUND, never data        |
//! |                                          | (UNIMPLEMENTED if the service has not landed)     |
//!
//! Requests are raw protobuf bytes sent on the descriptor's path with a
//! pass-through codec, so unary and streaming RPCs are called the same way
//! and RPCs of services that have not landed yet are covered too (they
//! answer UNIMPLEMENTED after auth for allowed roles).

use std::time::Duration;

use bytes::{Buf, BufMut};
use proctor::auth::{Role, policy};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

use crate::on_both_backends;
use crate::support::{Backend, TestApp, authed, spawn_app};

/// Passes already-encoded protobuf bytes through unchanged.
#[derive(Clone, Copy, Default)]
pub struct RawCodec;

pub struct RawEnc;
pub struct RawDec;

impl Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDec {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEnc;
    type Decoder = RawDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RawDec {
        RawDec
    }
}

/// One RPC from the descriptors.
pub struct Rpc {
    /// `/package.Service/Method`.
    pub path: String,
    /// Fully qualified input type, without the leading dot.
    pub input: String,
    /// Whether it takes a stream of requests (gRPC only).
    pub client_streaming: bool,
    /// Whether it answers with a stream.
    pub server_streaming: bool,
}

/// Every RPC of every service in the descriptor set, and its messages.
pub fn rpcs() -> (Vec<Rpc>, Vec<(String, DescriptorProto)>) {
    let set = FileDescriptorSet::decode(proctor::proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = Vec::new();
    let mut messages = Vec::new();
    for file in &set.file {
        let pkg = file.package();
        for m in &file.message_type {
            push_message(&mut messages, pkg, m);
        }
        for svc in &file.service {
            for m in &svc.method {
                rpcs.push(Rpc {
                    path: format!("/{pkg}.{}/{}", svc.name(), m.name()),
                    input: m.input_type().trim_start_matches('.').to_owned(),
                    client_streaming: m.client_streaming(),
                    server_streaming: m.server_streaming(),
                });
            }
        }
    }
    (rpcs, messages)
}

/// Adds `m` and its nested types (map entries included) by full name.
fn push_message(out: &mut Vec<(String, DescriptorProto)>, scope: &str, m: &DescriptorProto) {
    let name = format!("{scope}.{}", m.name());
    for n in &m.nested_type {
        push_message(out, &name, n);
    }
    out.push((name, m.clone()));
}

pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub fn put_len(buf: &mut Vec<u8>, field: i32, bytes: &[u8]) {
    put_varint(buf, ((field as u64) << 3) | 2);
    put_varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}

/// Encodes `type_name` with every `tenant_id` string (and `tenant_ids`
/// list), at the top level or in a singular sub-message, set to `tenant`.
/// `None` when the message names no tenant.
fn with_tenant(
    type_name: &str,
    messages: &[(String, DescriptorProto)],
    tenant: &str,
    depth: u8,
) -> Option<Vec<u8>> {
    let (_, msg) = messages.iter().find(|(n, _)| n == type_name)?;
    let mut out = Vec::new();
    let mut named = false;
    for f in &msg.field {
        let is_tenant = f.r#type() == Type::String && (f.name() == "tenant_id" || f.name() == "tenant_ids");
        if is_tenant {
            put_len(&mut out, f.number(), tenant.as_bytes());
            named = true;
        } else if f.r#type() == Type::Message && f.label() != Label::Repeated && depth > 0 {
            let sub = f.type_name().trim_start_matches('.');
            if let Some(bytes) = with_tenant(sub, messages, tenant, depth - 1) {
                put_len(&mut out, f.number(), &bytes);
                named = true;
            }
        }
    }
    named.then_some(out)
}

/// How the matrix reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// gRPC over HTTP/2.
    Grpc,
    /// Connect JSON over plain HTTP/1.1 (client-streaming RPCs stay gRPC).
    Connect,
}

/// Calls `rpc` with `body` and returns the status the caller sees: the
/// error, or OK once a first message (or an open stream) came back.
async fn call(app: &TestApp, via: Transport, rpc: &Rpc, body: Vec<u8>, token: Option<&str>) -> Code {
    match via {
        Transport::Grpc => match call_status(app, &rpc.path, body, token, Duration::from_secs(2)).await {
            Ok(()) => Code::Ok,
            Err(s) => s.code(),
        },
        Transport::Connect => connect_call(app, rpc, &body, token).await,
    }
}

/// The same call as Connect JSON: the protobuf body turned into its JSON
/// form, the answer's code read from the Connect error.
async fn connect_call(app: &TestApp, rpc: &Rpc, body: &[u8], token: Option<&str>) -> Code {
    use http_body_util::BodyExt;
    static POOL: std::sync::OnceLock<prost_reflect::DescriptorPool> = std::sync::OnceLock::new();
    let pool = POOL
        .get_or_init(|| prost_reflect::DescriptorPool::decode(proctor::proto::FILE_DESCRIPTOR_SET).unwrap());
    let input = pool.get_message_by_name(&rpc.input).unwrap();
    let msg = prost_reflect::DynamicMessage::decode(input, body).unwrap();
    let json = serde_json::to_vec(&msg).unwrap();
    let (content_type, payload) = if rpc.server_streaming {
        ("application/connect+json", crate::connect::enveloped(&json))
    } else {
        ("application/json", json)
    };
    let resp = crate::connect::send(
        app.addr,
        crate::connect::Http::One,
        &rpc.path,
        content_type,
        token,
        &[],
        payload,
    )
    .await;
    let status = resp.status();
    let mut body = resp.into_body();
    if !rpc.server_streaming {
        let bytes = body.collect().await.unwrap().to_bytes();
        if status.is_success() {
            return Code::Ok;
        }
        let e: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        return crate::connect::code_of(e["code"].as_str().unwrap_or(""));
    }
    // A stream: its first envelope says it all; one that stays open
    // without a message (a subscription) is an answer too.
    let mut buf = Vec::new();
    let first = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                buf.extend_from_slice(&data);
            }
            if buf.len() >= 5 {
                let len = u32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
                if buf.len() >= 5 + len {
                    return Some((buf[0], buf[5..5 + len].to_vec()));
                }
            }
        }
        None
    })
    .await;
    match first {
        Err(_) => Code::Ok,
        Ok(None) => Code::Unknown,
        Ok(Some((flags, _))) if flags & 0x02 == 0 => Code::Ok,
        Ok(Some((_, end))) => {
            let end: serde_json::Value = serde_json::from_slice(&end).unwrap();
            end["error"]["code"]
                .as_str()
                .map_or(Code::Ok, crate::connect::code_of)
        }
    }
}

/// Like [`call`], with the whole status; a stream that sends nothing within
/// `wait` counts as OK.
pub async fn call_status(
    app: &TestApp,
    path: &str,
    body: Vec<u8>,
    token: Option<&str>,
    wait: Duration,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let stream = tokio_stream::once(body);
    let req = match token {
        Some(t) => authed(stream, t),
        None => tonic::Request::new(stream),
    };
    let res = grpc.streaming(req, path.parse().unwrap(), RawCodec).await;
    let mut stream = res?.into_inner();
    // A subscription may stay open without a message: that is an answer too.
    match tokio::time::timeout(wait, stream.message()).await {
        Ok(Ok(_)) | Err(_) => Ok(()),
        Ok(Err(s)) => Err(s),
    }
}

pub fn token_for(app: &TestApp, role: Role) -> String {
    match role {
        Role::Tenant => app.keys.tenant("t1"),
        Role::Platform => app.keys.platform("crm"),
        Role::Compliance => app.keys.compliance(),
        Role::Sre => app.keys.sre(),
    }
}

async fn matrix(b: Backend) {
    let (rpcs, messages) = rpcs();
    assert!(
        rpcs.len() >= 50,
        "only {} RPCs found in the descriptors",
        rpcs.len()
    );

    // Every declared RPC has a rule, and every rule names a declared RPC.
    let missing: Vec<_> = rpcs
        .iter()
        .filter(|r| policy::allowed(&r.path).is_none())
        .map(|r| r.path.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "RPCs without a rule in src/auth/policy.rs: {missing:?}"
    );
    for path in policy::RULES.iter().map(|r| r.path) {
        assert!(rpcs.iter().any(|r| r.path == path), "stale rule {path}");
    }

    let app = spawn_app(b).await;
    let mut failures = Vec::new();
    let mut calls = 0;
    let routes = rpcs.iter().flat_map(|r| {
        let connect = (!r.client_streaming).then_some((Transport::Connect, r));
        std::iter::once((Transport::Grpc, r)).chain(connect)
    });
    for (via, rpc) in routes {
        let allowed = policy::allowed(&rpc.path).unwrap();
        calls += 1;
        let got = call(&app, via, rpc, Vec::new(), None).await;
        if got != Code::Unauthenticated {
            failures.push(format!("{} via {via:?} without token: {got:?}", rpc.path));
        }
        for role in Role::ALL {
            let token = token_for(&app, role);
            calls += 1;
            let got = call(&app, via, rpc, Vec::new(), Some(&token)).await;
            let ok = if allowed.contains(&role) {
                !matches!(got, Code::PermissionDenied | Code::Unauthenticated)
            } else {
                got == Code::PermissionDenied
            };
            // A service that has not landed answers UNIMPLEMENTED to
            // everyone it lets through; it serves no data to anyone.
            let not_served = allowed.contains(&role) && got == Code::Unimplemented;
            if !ok {
                failures.push(format!(
                    "{} via {via:?} as {role} (allowed {allowed:?}): {got:?}",
                    rpc.path
                ));
            }
            if !allowed.contains(&role) {
                continue;
            }
            // Own tenant named explicitly: still allowed.
            if let Some(own) = with_tenant(&rpc.input, &messages, "t1", 1) {
                calls += 1;
                let got = call(&app, via, rpc, own, Some(&token)).await;
                if matches!(got, Code::PermissionDenied | Code::Unauthenticated) {
                    failures.push(format!("{} via {via:?} as {role} naming t1: {got:?}", rpc.path));
                }
            }
            // A tenant token naming another tenant learns nothing.
            if role == Role::Tenant
                && let Some(other) = with_tenant(&rpc.input, &messages, "t2", 1)
            {
                calls += 1;
                let got = call(&app, via, rpc, other, Some(&token)).await;
                let refused = matches!(got, Code::PermissionDenied | Code::NotFound)
                    || (not_served && got == Code::Unimplemented);
                if !refused {
                    failures.push(format!(
                        "{} via {via:?} as tenant t1 naming t2: {got:?}",
                        rpc.path
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} calls broke the matrix:\n{}",
        failures.len(),
        failures.join("\n")
    );
    app.stop().await;
}
on_both_backends!(every_rpc_every_role_every_tenant, matrix);
