//! Requests from public authorities for tenants' personal data (EU SCC
//! 2021/914, Clause 15): the record the compliance team keeps, the notices
//! to every controller concerned (held back while the law prohibits them,
//! released when the prohibition is lifted or ends), the response that
//! discloses no more than was requested, and the transparency report and
//! export a controller and a supervisory authority are owed.

pub mod grpc;
pub mod jobs;
pub mod model;
pub mod repo;
pub mod service;
