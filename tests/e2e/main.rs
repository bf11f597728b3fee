//! End-to-end tests: the real server on an ephemeral port, called over real
//! gRPC with real JWTs, on SQLite always and on PostgreSQL whenever it is
//! reachable (always under `CI=true`). One test binary, so the crate links
//! once.

mod audit;
mod auth;
mod authz_matrix;
mod breaches;
mod cli;
mod faults;
mod fuzz;
mod health;
mod healthcheck;
mod inbox;
mod instructions;
mod rate_limit;
mod sanctions_effects;
mod screening;
mod subject_requests;
mod subprocessors;
mod support;
mod tls;
mod token_attacks;
mod tracing_otlp;
