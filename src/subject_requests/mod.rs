//! Data-subject requests: forwarded to the controller, or submitted by it and
//! fanned out as tasks to the platform systems holding the data, tracked to
//! their legal deadline, with receipts, exports and the subject flags that
//! `CheckProcessing` reads; [`jobs`] runs the export sweep and the
//! contract-end erasure.

pub mod export;
pub mod grpc;
pub mod jobs;
pub mod model;
pub mod repo;
pub mod service;
pub mod settings_hints;
