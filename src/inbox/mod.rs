//! Inboxes: the durable outbox every notice between the platform and a
//! tenant travels through (envelopes, leases, cursors per recipient).
//! [`model`] names every envelope kind and the lease rules, [`repo`] the
//! rows, [`grpc`] the `InboxService` handlers.

pub mod grpc;
pub mod model;
pub mod repo;
pub mod service;
