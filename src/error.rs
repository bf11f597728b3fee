//! The one error type commands return, from the domain rules up through the
//! store to the gRPC edge.
//!
//! Error policy (after crates.io's): each variant says what the *caller* can
//! do about it, so the edge can map it to exactly one gRPC status without
//! guessing. Variants are named for what went wrong in the domain, not for
//! the status they become: the one conversion to `tonic::Status` lives in
//! `rpc::status`, so this module stays free of transport types; database
//! errors are converted in `db`. The messages (`Display`) keep the words
//! clients have always seen, and never contain personal data: they name
//! fields and ids.

use std::time::Duration;

/// A field of a request that failed validation, as `google.rpc.BadRequest`
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field, e.g. `instructions.rules[2].category`.
    pub field: String,
    /// What is wrong with it, in words a client developer can act on.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// One condition a command needed and did not find, as
/// `google.rpc.PreconditionFailure` reports it, so a client can act on each
/// without parsing prose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    /// What kind of condition: `VERSION`, `MISSING_CONTENT`, ...
    pub kind: &'static str,
    /// What it is about: `tenants/t1/instructions`, a field name, ...
    pub subject: String,
    /// What is wrong, in words a client developer can act on.
    pub description: String,
}

/// Why a command did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; nothing was written.
    #[error("invalid argument: {}", describe(.0))]
    Invalid(Vec<FieldViolation>),
    /// The named thing does not exist (or is not visible to the caller).
    #[error("not found: {0}")]
    Missing(String),
    /// The named thing does not exist (or is not visible to the caller),
    /// with its type, which the status names in `google.rpc.ResourceInfo`.
    #[error("not found: {resource_type} {name}")]
    NotFound {
        /// What kind of thing: `breach`, `sub-processor`, ...
        resource_type: &'static str,
        /// Its id as the caller gave it.
        name: String,
    },
    /// The system is not in the state this command needs, with each unmet
    /// condition listed (`google.rpc.PreconditionFailure`) and a reason
    /// code (`google.rpc.ErrorInfo`).
    #[error("failed precondition: {message}")]
    Unmet {
        /// A stable, machine-readable reason: `VERSION_CONFLICT`, ...
        reason: &'static str,
        /// The message clients have always seen.
        message: String,
        /// Each unmet condition.
        conditions: Vec<Unmet>,
    },
    /// A create collided with something that exists.
    #[error("already exists: {0}")]
    Duplicate(String),
    /// The system is not in the state this command needs.
    #[error("failed precondition: {0}")]
    WrongState(String),
    /// A concurrent writer won; retrying with fresh state may succeed.
    #[error("aborted: {0}")]
    Conflict(String),
    /// The caller may not do this (role or tenant scope).
    #[error("permission denied: {0}")]
    Forbidden(String),
    /// A limit was hit; retry after the given delay.
    #[error("resource exhausted: {message}")]
    OverLimit {
        /// Which limit.
        message: String,
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// The database cannot be reached right now; retry later.
    #[error("unavailable: {0}")]
    NotReady(String),
    /// A bug or an unexpected state; logged with its cause chain.
    #[error("internal error: {0}")]
    Unexpected(String),
}

fn describe(v: &[FieldViolation]) -> String {
    v.iter()
        .map(|f| format!("{}: {}", f.field, f.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// NOT_FOUND for the `resource_type` called `name`.
    pub fn not_found(resource_type: &'static str, name: impl Into<String>) -> Self {
        Self::NotFound {
            resource_type,
            name: name.into(),
        }
    }

    /// A single-field INVALID_ARGUMENT.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

/// Result of a command.
pub type Result<T, E = Error> = std::result::Result<T, E>;
