//! The audit log: every state change and every counted refusal, as an
//! event (actor, role, tenant, action, target, trace id, time) and a leaf of
//! an RFC 6962 Merkle tree with signed checkpoints, so that a rewrite, a
//! deletion or a truncation shows to anyone holding an earlier checkpoint.
//! [`model`] holds the events and their leaf encoding, [`repo`] the rows,
//! [`tree`] the stored tree, [`checkpoint`] the signed notes,
//! [`sequencer`] the job that places committed events in the tree,
//! [`service`] the reads, proofs and verification, [`grpc`] the handlers.

pub mod checkpoint;
pub mod grpc;
pub mod model;
pub mod refusals;
pub mod refusals_model;
pub mod repo;
pub mod sequencer;
pub mod service;
pub mod tree;
