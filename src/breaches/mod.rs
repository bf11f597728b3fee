//! The breach register: facts that arrive in phases, the 72-hour authority
//! deadline, notices to every affected tenant, and an authority notification
//! refused until its required contents are complete.

pub mod grpc;
pub mod model;
pub mod repo;
pub mod service;
