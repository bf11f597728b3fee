//! JSON over HTTP on the gRPC port: every unary and server-streaming RPC
//! also speaks the Connect protocol (connectrpc.com/docs/protocol) with its
//! JSON codec, over HTTP/1.1 (curl's default) and HTTP/2. One layer driven
//! by the descriptor set serves them all ([`layer`]): it turns a Connect
//! call into the gRPC call tonic serves, so roles, scoping, limits, audit,
//! spans and metrics are the gRPC ones, and turns the answer back.

pub mod layer;
pub mod protocol;
pub mod schema;

pub use layer::{ConnectCall, ConnectLayer};
pub use schema::Schema;
