//! proctor: the processor-compliance service of a cloud contact-center
//! platform.
//!
//! # Layout
//! One folder per capability, each with the same rooms: `model` (pure rules
//! and types, no tonic, no diesel), `repo` (rows and queries), `grpc.rs`
//! (the service's handlers) and, where it has any, `jobs`. The map a
//! newcomer reads first is `docs/ARCHITECTURE.md`.
//! - Capabilities: [`instructions`] (with the decision snapshots),
//!   [`subprocessors`], [`screening`] (list engine, live index, cases,
//!   effects), [`subject_requests`], [`breaches`], [`disclosures`] (requests from
//!   public authorities), and the backbone they
//!   share: [`audit`] (the log and the refusal counts) and [`inbox`] (every
//!   envelope kind named in one place).
//! - Shared: [`rpc`] (the handlers' state, caller, limits, rate limits,
//!   stream slots, the one error-to-status conversion), [`db`] (the store,
//!   the schema, targeted wake-ups), [`auth`] (JWT, the RPC -> roles table,
//!   the tower layer), [`secrets`] (keys protecting data subjects, their
//!   recorded ids, sealing and resealing), [`outbound`] (the HTTP client
//!   of webhooks and list downloads, with its address policy),
//!   [`telemetry`], [`validate`].
//! - [`app`]: wires the parts into a server that `main` and the tests both run.
//!
//! Dependencies point inward: grpc -> repo/model, repo -> db; a model
//! imports neither tonic nor diesel.

pub mod app;
pub mod audit;
pub mod auth;
pub mod breaches;
pub mod clock;
pub mod config;
pub mod db;
pub mod disclosures;
pub mod error;
pub mod inbox;
pub mod instructions;
pub mod outbound;
pub mod periodic;
pub mod priority;
pub mod private_fs;
#[cfg(test)]
mod proptests;
pub mod proto;
pub mod rpc;
pub mod screening;
pub mod secrets;
pub mod subject_requests;
pub mod subprocessors;
pub mod telemetry;
pub mod validate;
pub mod webhooks;
