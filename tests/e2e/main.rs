//! End-to-end tests: the real server on an ephemeral port, called over real
//! gRPC with real JWTs, on SQLite always and on PostgreSQL whenever it is
//! reachable (always under `CI=true`). One test binary, so the crate links
//! once.

mod audit;
mod audit_log;
mod auth;
mod authz_matrix;
mod breaches;
mod cli;
mod connect;
mod decision_log;
mod disclosures;
mod faults;
mod fuzz;
mod health;
mod healthcheck;
mod inbox;
mod instructions;
mod legal_holds;
// The load generator of the benchmarks; its short form runs here.
mod list_imports;
mod list_refresh;
#[path = "../../benches/load/mod.rs"]
mod load;
mod load_short;
mod metrics_otlp;
mod otlp;
mod rate_limit;
mod read_your_writes;
mod reseal;
mod review;
mod sanctions_effects;
mod screening;
mod screening_evidence;
mod screening_filters;
mod screening_identifiers;
mod screening_pool;
mod sealing;
mod server_keys;
mod streams;
mod subject_requests;
mod subject_rights;
mod subprocessors;
mod support;
mod tls;
mod token_attacks;
mod tracing_otlp;
mod transfers;
mod webhooks;
mod write_path;
