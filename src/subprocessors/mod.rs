//! The sub-processor registry: registrations and chains, change notices with
//! their objection windows, each tenant's authorisation mode and answers,
//! and the screening gate a new sub-processor passes before it is ACTIVE.

pub mod grpc;
pub mod model;
pub mod repo;
pub mod service;
