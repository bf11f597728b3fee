//! The audit log: every state change and every counted refusal, as an
//! event (actor, role, tenant, action, target, trace id, time) chained to the
//! one before it so that a rewrite shows. [`model`] holds the pure chain
//! rules, [`repo`] the rows, [`grpc`] the `AuditService` handlers.

pub mod grpc;
pub mod model;
pub mod refusals;
pub mod refusals_model;
pub mod repo;
pub mod service;
