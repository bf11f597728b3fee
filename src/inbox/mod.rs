//! Inboxes: the durable outbox every notice between the platform and a
//! tenant travels through (envelopes, leases, cursors per recipient).
//! [`kinds`] names every envelope kind, [`model`] the recipients and lease rules, [`repo`] the
//! rows, [`grpc`] the `InboxService` handlers.

pub mod grpc;
pub mod kinds;
pub mod model;
pub mod repo;
pub mod service;
