//! Controller instructions and the decisions made from them: versioned
//! instruction sets per tenant, the taxonomy, tenant contract state, and
//! the compiled per-tenant decision snapshots ([`snapshots`]) that answer
//! `CheckProcessing` without touching the database.

pub mod grpc;
pub mod model;
pub mod repo;
pub mod service;
pub mod snapshots;
