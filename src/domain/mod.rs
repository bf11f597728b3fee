//! Pure rules, no I/O: what the service decides, separate from how it is
//! stored or called. Everything here is unit-tested without a database.

pub mod audit;
pub mod breaches;
pub mod inbox;
pub mod instructions;
pub mod page;
#[cfg(test)]
mod proptests;
pub mod rate_limit;
pub mod refusals;
pub mod screening;
pub mod server_keys;
pub mod subject_requests;
pub mod subprocessors;
pub mod validate;
