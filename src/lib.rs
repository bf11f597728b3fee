//! proctor: the processor-compliance service of a cloud contact-center
//! platform.
//!
//! # Layout
//! - [`grpc`]: tonic service implementations, thin: check the caller's scope,
//!   convert wire types to domain types, delegate, convert back.
//! - [`auth`]: JWT verification, the RPC -> roles table, tenant scoping, and the
//!   tower layer that applies them to every call.
//! - [`telemetry`]: tracing subscriber, OTLP export, the per-RPC span layer.
//! - [`domain`]: pure rules (audit chain, inbox leases, validation) with no
//!   I/O, knowing nothing of tonic or diesel.
//! - [`store`]: diesel on PostgreSQL or SQLite through one code path; every
//!   command is one transaction run on the blocking pool.
//! - [`secrets`]: keys protecting data subjects (identifier encryption,
//!   the `subject_ref` hash key, receipt signing).
//! - [`private_fs`]: the data folder and database file, private to the
//!   service's user.
//! - [`app`]: wires the parts into a server that `main` and the tests both run.
//!
//! Dependencies point grpc -> domain <- store.

pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod decisions;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod jobs;
pub mod private_fs;
pub mod proto;
pub mod screening;
pub mod secrets;
pub mod store;
pub mod telemetry;
