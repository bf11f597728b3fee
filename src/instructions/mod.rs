//! Controller instructions and the decisions made from them: versioned
//! instruction sets per tenant, the taxonomy, tenant contract state, and
//! the compiled per-tenant decision snapshots ([`snapshots`]) that answer
//! `CheckProcessing` without touching the database; legal holds, which keep
//! data an erasure or a retention period would otherwise remove.

pub mod decision_log;
pub mod grpc;
pub mod jobs;
pub mod model;
pub mod repo;
pub mod service;
pub mod snapshots;
