//! Generated protobuf and gRPC code for `proctor.v1`, and the descriptor set
//! that server reflection serves (so grpcurl needs no proto files).

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// The `proctor.v1` package.
pub mod v1 {
    tonic::include_proto!("proctor.v1");
}

/// Encoded `FileDescriptorSet` of every proctor proto, for reflection and for
/// tests that enumerate the RPCs the server exposes.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("proctor_descriptor");
