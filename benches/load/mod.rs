//! The gRPC load generator the benchmarks and the end-to-end suite share:
//! driving calls with fixed concurrency and reporting percentiles
//! ([`report`]), a `proctor serve` process and its memory ([`server`]), and
//! the mixed workload of checks, subject-request submissions, screenings and
//! inbox pulls ([`mixed`]), and scratch PostgreSQL databases ([`scratch`]).
//!
//! Compiled into `benches/grpc_load.rs`, `benches/mixed_load.rs`,
//! `benches/write_load.rs` and the e2e test binary (`#[path]`); each uses a
//! different part of it.

#![allow(dead_code)]

pub mod mixed;
pub mod report;
pub mod scratch;
pub mod server;

use proctor::auth::jwt::Claims;
use proctor::proto::v1::{CategoryRule, CheckProcessingRequest, InstructionSet};
use tonic::Request;
use tonic::metadata::MetadataValue;

/// The development HS256 secret the load servers trust.
pub const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";

/// The data categories every load tenant has rules for.
pub const CATEGORIES: [&str; 7] = [
    "contact",
    "agent",
    "interaction_metadata",
    "recording",
    "transcript",
    "attachment",
    "screen_capture",
];

/// A token for `roles` (and `tenant`) signed with [`SECRET`], valid an hour.
pub fn token(roles: &[&str], tenant: Option<&str>) -> String {
    token_as("bench", roles, tenant)
}

/// A token like [`token`] for subject `sub`: a platform system is named by
/// its token's subject, so its calls need its own.
pub fn token_as(sub: &str, roles: &[&str], tenant: Option<&str>) -> String {
    let claims = Claims {
        sub: sub.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        tenant_id: tenant.map(Into::into),
        exp: chrono::Utc::now().timestamp() + 3600,
        nbf: None,
        iat: None,
        iss: None,
        aud: None,
    };
    proctor::auth::keys::mint_with_secret(SECRET, &claims).unwrap()
}

/// `msg` with a bearer token.
pub fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    r
}

/// Name of load tenant `i`.
pub fn tenant(i: usize) -> String {
    format!("tenant-{i}")
}

/// The instructions every load tenant gets: all categories, three purposes,
/// three regions.
pub fn instruction_set() -> InstructionSet {
    InstructionSet {
        rules: CATEGORIES
            .iter()
            .map(|c| CategoryRule {
                category: (*c).into(),
                retention_days: 90,
                purposes: vec![
                    "service_delivery".into(),
                    "support".into(),
                    "quality_assurance".into(),
                ],
                regions: vec!["DE".into(), "FR".into(), "IE".into()],
                restricted: false,
                allow_anonymized_analytics: true,
            })
            .collect(),
        termination_grace_days: 30,
        ..Default::default()
    }
}

/// Check number `i` over `tenants` tenants: categories, purposes and
/// regions vary so some checks allow and some deny.
pub fn check_for(i: usize, tenants: usize) -> CheckProcessingRequest {
    CheckProcessingRequest {
        tenant_id: tenant(i % tenants),
        category: CATEGORIES[i % CATEGORIES.len()].into(),
        purpose: if i.is_multiple_of(3) { "billing" } else { "support" }.into(),
        region: if i.is_multiple_of(5) { "US" } else { "DE" }.into(),
        ..Default::default()
    }
}

/// `--name value` from the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let argv: Vec<String> = std::env::args().collect();
    match argv.iter().position(|a| a == name) {
        Some(i) => argv
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} needs a value")),
        None => default,
    }
}
