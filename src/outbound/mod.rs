//! The one way proctor calls out over HTTP: tenants' webhooks (POST) and
//! the sanctions lists it downloads (GET). Both aim at URLs someone typed
//! in, so both go through the same fences: the address policy
//! ([`policy`]), checked on every address a host resolves to and on every
//! redirect hop ([`connect`]), certificates verified against the system's
//! CAs and the operator's `--outbound-ca-file` ([`trust`]), one deadline
//! per call and a cap on what an answer may make proctor read
//! ([`exchange`], [`client`]).

pub mod client;
pub mod connect;
pub mod exchange;
pub mod policy;
pub mod trust;

pub use client::Client;
