//! Sanctioned-party screening, the pure part: list entries ([`model`]),
//! parsers for the official list formats ([`lists`]), the name folder
//! ([`normalize`]), the pairwise scorer ([`matcher`]) and the candidate
//! index ([`index`]). No I/O besides reading the bytes handed in, no tonic,
//! no diesel: the store persists what the parsers produce and the gRPC layer
//! asks the index.

pub mod case_answers;
pub mod cases;
pub mod effects;
pub mod evidence;
pub mod grpc;
pub mod identifiers;
pub mod index;
pub mod jobs;
pub mod lists;
pub mod live;
pub mod match_pool;
pub mod matcher;
pub mod model;
pub mod names;
pub mod normalize;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod quality;
pub mod refresh;
pub mod repo;
pub mod service;
