//! Push delivery of tenants' inboxes: a tenant registers one HTTPS
//! endpoint and every envelope for it is POSTed there, signed as Standard
//! Webhooks prescribe, retried with backoff until acknowledged or too old,
//! and left in the inbox for `Pull` when it could not be delivered. The
//! delivery state lives in the database, so deliveries survive restarts
//! and replicas share the work through a lease per webhook
//! (docs/webhooks.md). Tenants' URLs are called through the shared
//! [`crate::outbound`] client, whose address checks keep them off private
//! networks.

pub mod grpc;
pub mod jobs;
pub mod model;
pub mod repo;
pub mod service;
