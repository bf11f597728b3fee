//! Every message proctor speaks, as descriptors read at run time from the
//! descriptor set the build writes: the Connect layer turns JSON into the
//! protobuf bytes tonic expects and back with them, with no code per RPC,
//! and reflection serves the same set (with the `google.rpc` error details
//! and the well-known types they import, so clients can decode
//! `BadRequest` and friends).

use base64::Engine as _;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MethodDescriptor, SerializeOptions};
use prost_types::{FileDescriptorProto, FileDescriptorSet};

/// The descriptors of proctor's services and of the types their errors carry.
#[derive(Debug, Clone)]
pub struct Schema {
    pool: DescriptorPool,
}

/// What kind of call a method is, as the Connect layer serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStream,
    /// A stream of requests: gRPC only.
    ClientStream,
}

impl Schema {
    /// proctor's own descriptor set, completed with `google.rpc`'s error
    /// details and every file they import.
    pub fn load() -> Result<Self, String> {
        let mut files = decode_set(crate::proto::FILE_DESCRIPTOR_SET)?;
        files.extend(decode_set(tonic_health::pb::FILE_DESCRIPTOR_SET)?);
        files.extend(decode_set(tonic_types::pb::FILE_DESCRIPTOR_SET)?);
        let mut seen = std::collections::HashSet::new();
        files.retain(|f| seen.insert(f.name().to_owned()));
        // Imports none of the sets carries (google/protobuf/duration.proto
        // for RetryInfo, any.proto for Status) come from the well-known
        // types prost-reflect ships.
        let global = DescriptorPool::global();
        loop {
            let missing: Vec<String> = files
                .iter()
                .flat_map(|f| f.dependency.iter())
                .filter(|d| !seen.contains(d.as_str()))
                .cloned()
                .collect();
            if missing.is_empty() {
                break;
            }
            for name in missing {
                let file = global
                    .get_file_by_name(&name)
                    .ok_or_else(|| format!("descriptor set: import {name} is nowhere"))?;
                seen.insert(name);
                files.push(file.file_descriptor_proto().clone());
            }
        }
        let pool = DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: files })
            .map_err(|e| format!("descriptor set: {e}"))?;
        Ok(Self { pool })
    }

    /// The whole set, encoded, for the reflection services.
    pub fn encoded(&self) -> Vec<u8> {
        FileDescriptorSet {
            file: self
                .pool
                .files()
                .map(|f| f.file_descriptor_proto().clone())
                .collect(),
        }
        .encode_to_vec()
    }

    /// The method a request path (`/proctor.v1.InboxService/Pull`) names.
    pub fn method(&self, path: &str) -> Option<MethodDescriptor> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    }

    /// How `m` is called.
    pub fn shape(m: &MethodDescriptor) -> Shape {
        match (m.is_client_streaming(), m.is_server_streaming()) {
            (false, false) => Shape::Unary,
            (false, true) => Shape::ServerStream,
            (true, _) => Shape::ClientStream,
        }
    }

    /// A request in proto3's JSON mapping as protobuf bytes. Unknown fields
    /// are ignored, as protobuf itself ignores them, so a client built
    /// against a newer contract still works against an older server.
    pub fn request_to_proto(m: &MethodDescriptor, json: &[u8]) -> Result<Vec<u8>, String> {
        let json = if json.iter().all(u8::is_ascii_whitespace) {
            b"{}".as_slice()
        } else {
            json
        };
        let mut de = serde_json::Deserializer::from_slice(json);
        let msg = DynamicMessage::deserialize_with_options(
            m.input(),
            &mut de,
            &DeserializeOptions::new().deny_unknown_fields(false),
        )
        .map_err(|e| e.to_string())?;
        de.end().map_err(|e| e.to_string())?;
        Ok(msg.encode_to_vec())
    }

    /// A response's protobuf bytes in proto3's JSON mapping (lowerCamelCase
    /// names, default values left out, 64-bit integers as strings).
    pub fn response_to_json(m: &MethodDescriptor, proto: &[u8]) -> Result<Vec<u8>, String> {
        let msg = DynamicMessage::decode(m.output(), proto).map_err(|e| e.to_string())?;
        to_json(&msg)
    }

    /// The `details` of a Connect error from a gRPC status's
    /// `grpc-status-details-bin` (a `google.rpc.Status`): each detail's type,
    /// its bytes in base64, and, for types in the set, `debug` with the same
    /// detail as JSON, so curl users read it without decoding.
    pub fn error_details(&self, status_bin: &[u8]) -> Vec<serde_json::Value> {
        let Ok(status) = tonic_types::pb::Status::decode(status_bin) else {
            return Vec::new();
        };
        status
            .details
            .iter()
            .map(|any| {
                let type_name = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
                let mut detail = serde_json::json!({
                    "type": type_name,
                    "value": base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value),
                });
                let debug = self
                    .pool
                    .get_message_by_name(type_name)
                    .and_then(|d| DynamicMessage::decode(d, any.value.as_slice()).ok())
                    .and_then(|msg| to_json(&msg).ok())
                    .and_then(|j| serde_json::from_slice::<serde_json::Value>(&j).ok());
                if let Some(debug) = debug {
                    detail["debug"] = debug;
                }
                detail
            })
            .collect()
    }
}

fn to_json(msg: &DynamicMessage) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    msg.serialize_with_options(&mut ser, &SerializeOptions::new())
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn decode_set(bytes: &[u8]) -> Result<Vec<FileDescriptorProto>, String> {
    FileDescriptorSet::decode(bytes)
        .map(|s| s.file)
        .map_err(|e| format!("descriptor set: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::load().unwrap()
    }

    #[test]
    fn every_service_method_and_error_detail_type_resolves() {
        let s = schema();
        let pull = s.method("/proctor.v1.InboxService/Pull").unwrap();
        assert_eq!(Schema::shape(&pull), Shape::Unary);
        let sub = s.method("/proctor.v1.InboxService/Subscribe").unwrap();
        assert_eq!(Schema::shape(&sub), Shape::ServerStream);
        assert!(s.method("/proctor.v1.InboxService/Nope").is_none());
        assert!(s.method("no-slash").is_none());
        for t in [
            "google.rpc.Status",
            "google.rpc.BadRequest",
            "google.rpc.PreconditionFailure",
            "google.rpc.ResourceInfo",
            "google.rpc.ErrorInfo",
            "google.protobuf.Duration",
        ] {
            assert!(s.pool.get_message_by_name(t).is_some(), "{t}");
        }
        // The encoded set is complete: it builds a pool on its own.
        DescriptorPool::decode(s.encoded().as_slice()).unwrap();
    }

    #[test]
    fn json_requests_become_the_protobuf_tonic_decodes() {
        let s = schema();
        let pull = s.method("/proctor.v1.InboxService/Pull").unwrap();
        let bytes =
            Schema::request_to_proto(&pull, br#"{"max": 10, "leaseSeconds": 5, "future": 1}"#).unwrap();
        let req = crate::proto::v1::PullRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!((req.max, req.lease_seconds), (10, 5));
        // proto field names are accepted too, and an empty body is `{}`.
        let bytes = Schema::request_to_proto(&pull, br#"{"lease_seconds": 7}"#).unwrap();
        assert_eq!(
            crate::proto::v1::PullRequest::decode(bytes.as_slice())
                .unwrap()
                .lease_seconds,
            7
        );
        assert!(Schema::request_to_proto(&pull, b"  ").unwrap().is_empty());
        let err = Schema::request_to_proto(&pull, br#"{"max": "many"}"#).unwrap_err();
        assert!(!err.is_empty());
        assert!(Schema::request_to_proto(&pull, br#"{"max": 1} trailing"#).is_err());
    }

    #[test]
    fn responses_use_the_proto3_json_mapping() {
        let s = schema();
        let pull = s.method("/proctor.v1.InboxService/Pull").unwrap();
        let resp = crate::proto::v1::PullResponse {
            envelopes: vec![crate::proto::v1::Envelope {
                id: "e1".into(),
                cursor: 42,
                kind: "breach.notice".into(),
                payload: r#"{"breach_id":"b1"}"#.into(),
                delivery_count: 1,
                ..Default::default()
            }],
        };
        let json = Schema::response_to_json(&pull, &resp.encode_to_vec()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let e = &v["envelopes"][0];
        assert_eq!(e["cursor"], "42", "64-bit integers are strings");
        assert_eq!(e["deliveryCount"], 1);
        // The payload is JSON text, not base64.
        assert_eq!(e["payload"], r#"{"breach_id":"b1"}"#);
        assert!(e.get("leaseExpiresAt").is_none(), "unset fields are left out");
    }

    #[test]
    fn error_details_carry_their_type_bytes_and_a_readable_form() {
        use tonic_types::{ErrorDetails, StatusExt};
        let s = schema();
        let mut d = ErrorDetails::new();
        d.add_bad_request_violation("tenant_id", "required");
        let status = tonic::Status::with_error_details(tonic::Code::InvalidArgument, "bad", d);
        let details = s.error_details(status.details());
        assert_eq!(details.len(), 1);
        assert_eq!(details[0]["type"], "google.rpc.BadRequest");
        assert!(!details[0]["value"].as_str().unwrap().is_empty());
        assert_eq!(details[0]["debug"]["fieldViolations"][0]["field"], "tenant_id");
        assert!(s.error_details(b"\xff\xff").is_empty());
    }
}
