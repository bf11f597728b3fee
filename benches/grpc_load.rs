//! gRPC load generator: starts a real proctor server in-process on loopback
//! (SQLite, HS256 development tokens), loads tenants over gRPC, then drives a
//! fixed number of calls with a fixed concurrency and reports throughput and
//! latency percentiles, each scenario beside a baseline measured in the same
//! run: the empty unary RPC `grpc.health.v1.Health/Check`.
//!
//! `cargo bench --bench grpc_load -- [--requests N] [--concurrency C] [--tenants T]
//! [--decision-log-allow-sample S] [--ab-rounds R]`
//!
//! With `--ab-rounds R` it instead compares the decision log on and off:
//! two servers in this one process, one recording no ALLOWs (sample 0) and
//! one recording the sample `S`, take turns (off-on, then on-off, R
//! rounds of `--requests` checks each), so that whatever else the machine
//! does falls on both alike; it prints each round's ratio and the ratio of
//! the totals.

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
    /// Share of ALLOWs the decision log records (1.0: every check).
    allow_sample: f64,
    /// Alternating rounds of the decision-log comparison; 0 runs the
    /// usual phases instead.
    ab_rounds: usize,
}

fn args() -> Args {
    Args {
        requests: load::arg("--requests", 100_000),
        concurrency: load::arg("--concurrency", 32),
        tenants: load::arg("--tenants", 1_000),
        batches: load::arg("--batches", 200),
        allow_sample: load::arg("--decision-log-allow-sample", 0.01),
        ab_rounds: load::arg("--ab-rounds", 0),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let a = args();
    if a.ab_rounds > 0 {
        return compare_decision_log(&a).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let channels = start(dir.path(), a.allow_sample).await;
    load_tenants(&channels, a.tenants).await;

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
    let checks = checks("CheckProcessing", &channels, &a).await;
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
                            ..Default::default()
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

/// Starts a server on SQLite in `dir` whose decision log records
/// `allow_sample` of the ALLOWs, and returns four channels to it once it is
/// SERVING.
async fn start(dir: &std::path::Path, allow_sample: f64) -> Vec<Channel> {
    let secret = dir.join("hs256");
    std::fs::write(&secret, SECRET).unwrap();
    let cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.join("bench.db").display()),
        data_dir: dir.join("data"),
        jwt_hs256_secret_file: Some(secret),
        decision_log_allow_sample: allow_sample,
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
    channels
}

/// Gives `tenants` tenants the bench's instruction set.
async fn load_tenants(channels: &[Channel], tenants: usize) {
    eprintln!("loading {} tenants x {} categories", tenants, CATEGORIES.len());
    let set = instruction_set();
    let loaded = phase("load", channels, tenants, 8, move |ch, i| {
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
}

/// `requests` CheckProcessing calls (every one an ALLOW) at `concurrency`.
async fn checks(name: &str, channels: &[Channel], a: &Args) -> load::report::Report {
    let platform = Arc::new(token(&["platform"], None));
    let tenants = a.tenants;
    phase(name, channels, a.requests, a.concurrency, move |ch, i| {
        let p = platform.clone();
        async move {
            InstructionServiceClient::new(ch)
                .check_processing(authed(check_for(i, tenants), &p))
                .await
                .unwrap();
        }
    })
    .await
}

/// The decision log on against off, in alternating rounds (see the module
/// comment).
async fn compare_decision_log(a: &Args) {
    let (off_dir, on_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let off = start(off_dir.path(), 0.0).await;
    let on = start(on_dir.path(), a.allow_sample).await;
    load_tenants(&off, a.tenants).await;
    load_tenants(&on, a.tenants).await;
    checks("warmup off", &off, a).await;
    checks("warmup on", &on, a).await;
    let (mut calls, mut secs) = ([0usize; 2], [0f64; 2]);
    let mut ratios = Vec::new();
    println!(
        "| round | log off calls/s | log on (sample {}) calls/s | on / off |",
        a.allow_sample
    );
    println!("|---|---|---|---|");
    for r in 0..a.ab_rounds {
        let mut rps = [0f64; 2];
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let rep = checks("round", if which == 0 { &off } else { &on }, a).await;
            calls[which] += rep.calls;
            secs[which] += rep.elapsed.as_secs_f64();
            rps[which] = rep.rps();
        }
        ratios.push(rps[1] / rps[0]);
        println!(
            "| {} | {:.0} | {:.0} | {:.3} |",
            r + 1,
            rps[0],
            rps[1],
            rps[1] / rps[0]
        );
    }
    ratios.sort_by(f64::total_cmp);
    let (off_rps, on_rps) = (calls[0] as f64 / secs[0], calls[1] as f64 / secs[1]);
    println!(
        "requests per round and server: {}, concurrency: {}, tenants: {} x {} categories",
        a.requests,
        a.concurrency,
        a.tenants,
        CATEGORIES.len()
    );
    println!(
        "totals: log off {off_rps:.0} calls/s, log on {on_rps:.0} calls/s, on / off {:.3}; \
         median round {:.3}, min {:.3}, max {:.3}",
        on_rps / off_rps,
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
}
