//! Bad input end to end: random but well-formed protobuf requests, built
//! from the descriptor of each RPC's input type (every field, nested
//! messages, timestamps at the extremes, long, empty and odd strings), sent
//! to every RPC as a caller allowed to call it. The server must never fail
//! INTERNAL/UNKNOWN (a panic or an unmapped error) and every
//! INVALID_ARGUMENT must name the offending fields (`google.rpc.BadRequest`).
//! Undecodable bytes are INVALID_ARGUMENT too, and the server keeps serving.
//!
//! The run is seeded; set `PROCTOR_FUZZ_SEED` to replay a failure and
//! `PROCTOR_FUZZ_CASES` for a longer run (default 25 per RPC).

use std::time::Duration;

use proctor::auth::{Role, policy};
use prost_types::DescriptorProto;
use prost_types::field_descriptor_proto::{Label, Type};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;
use tonic_types::StatusExt;

use crate::authz_matrix::{call_status, put_len, put_varint, rpcs, token_for};
use crate::on_both_backends;
use crate::support::{Backend, spawn_app};

/// Strings that tend to break validators.
const ODD: &[&str] = &[
    "",
    " ",
    "t1",
    "t2",
    "recording",
    "contacts",
    "crm",
    "ada@example.com",
    "+4930123456",
    "Ada Lovelace",
    "\u{0}",
    "\n\t",
    "../../etc/passwd",
    "'; DROP TABLE audit_events; --",
    "ǅemoji 🦀 ünïcödé",
    "\u{202e}rtl",
    "9223372036854775807",
    "-1",
    "k:-5",
    "azotNQ",
];

fn random_string(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0..=4 => ODD[rng.random_range(0..ODD.len())].to_owned(),
        5 => "x".repeat(rng.random_range(200..5000)),
        _ => {
            let n = rng.random_range(0..40);
            (0..n)
                .map(|_| {
                    if rng.random_bool(0.8) {
                        rng.random_range(' '..='~')
                    } else {
                        rng.random::<char>()
                    }
                })
                .collect()
        }
    }
}

fn random_i64(rng: &mut StdRng) -> i64 {
    match rng.random_range(0..6) {
        0 => 0,
        1 => i64::MAX,
        2 => i64::MIN,
        3 => -1,
        4 => rng.random_range(-1000..1000),
        _ => rng.random(),
    }
}

/// Encodes a random instance of `type_name`.
fn random_message(
    rng: &mut StdRng,
    type_name: &str,
    messages: &[(String, DescriptorProto)],
    depth: u8,
) -> Vec<u8> {
    let mut out = Vec::new();
    let Some((_, msg)) = messages.iter().find(|(n, _)| n == type_name) else {
        // Well-known types: Timestamp and Duration are (seconds, nanos).
        if type_name.ends_with("Timestamp") || type_name.ends_with("Duration") {
            let seconds = match rng.random_range(0..4) {
                0 => rng.random_range(1_500_000_000..2_000_000_000),
                1 => rng.random_range(-100_000_000_000..300_000_000_000),
                _ => random_i64(rng),
            };
            put_varint(&mut out, 1 << 3);
            put_varint(&mut out, seconds as u64);
            put_varint(&mut out, 2 << 3);
            put_varint(&mut out, random_i64(rng) as i32 as i64 as u64);
        }
        return out;
    };
    for f in &msg.field {
        if rng.random_bool(0.25) {
            continue; // leave some fields unset
        }
        let times = if f.label() == Label::Repeated {
            rng.random_range(0..4)
        } else {
            1
        };
        for _ in 0..times {
            let n = f.number() as u64;
            match f.r#type() {
                Type::String => {
                    let s = if f.name().starts_with("tenant_id") && rng.random_bool(0.7) {
                        "t1".to_owned()
                    } else {
                        random_string(rng)
                    };
                    put_len(&mut out, f.number(), s.as_bytes());
                }
                Type::Bytes => {
                    let len = rng.random_range(0..64);
                    let b: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                    put_len(&mut out, f.number(), &b);
                }
                Type::Message if depth > 0 => {
                    let sub = random_message(rng, f.type_name().trim_start_matches('.'), messages, depth - 1);
                    put_len(&mut out, f.number(), &sub);
                }
                Type::Message | Type::Group => {}
                Type::Bool => {
                    put_varint(&mut out, n << 3);
                    put_varint(&mut out, rng.random_range(0..2));
                }
                Type::Enum => {
                    put_varint(&mut out, n << 3);
                    put_varint(&mut out, rng.random_range(-1i64..12) as u64);
                }
                Type::Int32 | Type::Uint32 => {
                    put_varint(&mut out, n << 3);
                    put_varint(&mut out, random_i64(rng) as i32 as i64 as u64);
                }
                Type::Int64 | Type::Uint64 => {
                    put_varint(&mut out, n << 3);
                    put_varint(&mut out, random_i64(rng) as u64);
                }
                Type::Sint32 | Type::Sint64 => {
                    let v = random_i64(rng);
                    put_varint(&mut out, n << 3);
                    put_varint(&mut out, ((v << 1) ^ (v >> 63)) as u64);
                }
                Type::Fixed32 | Type::Sfixed32 | Type::Float => {
                    put_varint(&mut out, (n << 3) | 5);
                    out.extend_from_slice(&rng.random::<u32>().to_le_bytes());
                }
                Type::Fixed64 | Type::Sfixed64 | Type::Double => {
                    put_varint(&mut out, (n << 3) | 1);
                    out.extend_from_slice(&rng.random::<u64>().to_le_bytes());
                }
            }
        }
    }
    out
}

/// The broadest role allowed to call `path` (so the call reaches a handler).
fn caller_role(path: &str) -> Role {
    let allowed = policy::allowed(path).unwrap();
    [Role::Compliance, Role::Platform, Role::Tenant, Role::Sre]
        .into_iter()
        .find(|r| allowed.contains(r))
        .unwrap()
}

async fn fuzz(b: Backend) {
    let seed: u64 = std::env::var("PROCTOR_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let cases: usize = std::env::var("PROCTOR_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let mut rng = StdRng::seed_from_u64(seed);
    let app = spawn_app(b).await;
    let (rpcs, messages) = rpcs();
    let mut failures = Vec::new();
    for rpc in &rpcs {
        let role = caller_role(&rpc.path);
        let token = token_for(&app, role);
        // Streams that may stay open get fewer cases; a short wait suffices.
        let n = if rpc.path.ends_with("/Subscribe") {
            3
        } else {
            cases
        };
        for case in 0..n {
            let body = if case == 0 {
                // Undecodable: a length-delimited field running past the end.
                vec![0x0a, 0xff, 0x01, 0x41]
            } else {
                random_message(&mut rng, &rpc.input, &messages, 3)
            };
            let res = call_status(
                &app,
                &rpc.path,
                body.clone(),
                Some(&token),
                Duration::from_millis(300),
            )
            .await;
            let Err(s) = res else { continue };
            let bad = match s.code() {
                Code::Internal | Code::Unknown | Code::DataLoss | Code::Unauthenticated => true,
                // Undecodable bytes: tonic's message names the field.
                Code::InvalidArgument if s.message().starts_with("failed to decode Protobuf message") => {
                    false
                }
                Code::InvalidArgument => s
                    .get_details_bad_request()
                    .is_none_or(|br| br.field_violations.is_empty()),
                _ => false,
            };
            if bad {
                failures.push(format!(
                    "{} as {role} case {case}: {:?} {:?} (body {})",
                    rpc.path,
                    s.code(),
                    s.message(),
                    hex::encode(&body)
                ));
            }
        }
    }
    app.wait_serving().await;
    assert!(
        failures.is_empty(),
        "seed {seed}: {} bad answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    app.stop().await;
}
on_both_backends!(random_requests_to_every_rpc_are_clean_rejections, fuzz);
