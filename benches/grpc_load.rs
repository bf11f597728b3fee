//! gRPC load generator: starts a real proctor server in-process on loopback
//! (SQLite, HS256 development tokens), loads tenants over gRPC, then drives a
//! fixed number of calls with a fixed concurrency and reports throughput and
//! latency percentiles, each scenario beside a baseline measured in the same
//! run: the empty unary RPC `grpc.health.v1.Health/Check`.
//!
//! `cargo bench --bench grpc_load -- [--requests N] [--concurrency C] [--tenants T]`

mod load;

use std::sync::Arc;
use std::time::Duration;

use load::report::{phase, print_table};
use load::{CATEGORIES, SECRET, authed, check_for, instruction_set, tenant, token};
use proctor::app::Application;
use proctor::clock::SystemClock;
use proctor::config::Config;
use proctor::proto::v1::instruction_service_client::InstructionServiceClient;
use proctor::proto::v1::{BatchCheckProcessingRequest, CheckProcessingRequest, PutInstructionsRequest};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

struct Args {
    requests: usize,
    concurrency: usize,
    tenants: usize,
    batches: usize,
}

fn args() -> Args {
    Args {
        requests: load::arg("--requests", 100_000),
        concurrency: load::arg("--concurrency", 32),
        tenants: load::arg("--tenants", 1_000),
        batches: load::arg("--batches", 200),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hs256");
    std::fs::write(&secret, SECRET).unwrap();
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.path().join("bench.db").display()),
        data_dir: dir.path().join("data"),
        jwt_hs256_secret_file: Some(secret),
        ..Config::default()
    };
    let app = Application::build(cfg, Arc::new(SystemClock)).await.unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run_until(std::future::pending()));
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .unwrap(),
        );
    }
    // Wait for SERVING.
    let mut h = HealthClient::new(channels[0].clone());
    while h
        .check(HealthCheckRequest::default())
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(0)
        != 1
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    eprintln!("loading {} tenants x {} categories", a.tenants, CATEGORIES.len());
    let set = instruction_set();
    let loaded = phase("load", &channels, a.tenants, 8, move |ch, i| {
        let set = set.clone();
        async move {
            let tenant = tenant(i);
            InstructionServiceClient::new(ch)
                .put_instructions(authed(
                    PutInstructionsRequest {
                        tenant_id: tenant.clone(),
                        expected_version: 0,
                        instructions: Some(set),
                        reason: "bench".into(),
                    },
                    &token(&["tenant"], Some(&tenant)),
                ))
                .await
                .unwrap();
        }
    })
    .await;
    eprintln!("loaded in {:?}", loaded.elapsed);

    let platform = Arc::new(token(&["platform"], None));
    let tenants = a.tenants;
    let check_for = move |i: usize| check_for(i, tenants);

    // Warm up both paths, then measure baseline and checks back to back.
    let warm = a.requests / 10;
    phase("warmup", &channels, warm, a.concurrency, |ch, _| async move {
        HealthClient::new(ch)
            .check(HealthCheckRequest::default())
            .await
            .unwrap();
    })
    .await;
    let base = phase(
        "empty unary RPC (Health/Check)",
        &channels,
        a.requests,
        a.concurrency,
        |ch, _| async move {
            HealthClient::new(ch)
                .check(HealthCheckRequest::default())
                .await
                .unwrap();
        },
    )
    .await;
    let p = platform.clone();
    let checks = phase(
        "CheckProcessing",
        &channels,
        a.requests,
        a.concurrency,
        move |ch, i| {
            let p = p.clone();
            async move {
                InstructionServiceClient::new(ch)
                    .check_processing(authed(check_for(i), &p))
                    .await
                    .unwrap();
            }
        },
    )
    .await;
    let p = platform.clone();
    let batch: Arc<Vec<CheckProcessingRequest>> = Arc::new((0..1000).map(check_for).collect());
    let batches = phase(
        "BatchCheckProcessing x1000",
        &channels,
        a.batches,
        1,
        move |ch, _| {
            let (p, batch) = (p.clone(), batch.clone());
            async move {
                let r = InstructionServiceClient::new(ch)
                    .batch_check_processing(authed(
                        BatchCheckProcessingRequest {
                            checks: batch.to_vec(),
                        },
                        &p,
                    ))
                    .await
                    .unwrap();
                assert_eq!(r.into_inner().decisions.len(), 1000);
            }
        },
    )
    .await;

    println!(
        "requests per phase: {}, concurrency: {}, tenants: {} x {} categories",
        a.requests,
        a.concurrency,
        a.tenants,
        CATEGORIES.len()
    );
    print_table(&[&base, &checks, &batches], &base);
}
