//! gRPC load generator: starts a real proctor server in-process on loopback
//! (SQLite, HS256 development tokens), loads tenants over gRPC, then drives a
//! fixed number of calls with a fixed concurrency and reports throughput and
//! latency percentiles, each scenario beside a baseline measured in the same
//! run: the empty unary RPC `grpc.health.v1.Health/Check`.
//!
//! `cargo bench --bench grpc_load -- [--requests N] [--concurrency C] [--tenants T]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use proctor::app::Application;
use proctor::auth::jwt::Claims;
use proctor::clock::SystemClock;
use proctor::config::Config;
use proctor::proto::v1::instruction_service_client::InstructionServiceClient;
use proctor::proto::v1::{
    BatchCheckProcessingRequest, CategoryRule, CheckProcessingRequest, InstructionSet, PutInstructionsRequest,
};
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const CATEGORIES: [&str; 7] = [
    "contact",
    "agent",
    "interaction_metadata",
    "recording",
    "transcript",
    "attachment",
    "screen_capture",
];
const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret!!";

struct Args {
    requests: usize,
    concurrency: usize,
    tenants: usize,
    batches: usize,
}

fn args() -> Args {
    let mut a = Args {
        requests: 100_000,
        concurrency: 32,
        tenants: 1_000,
        batches: 200,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let val = || argv.get(i + 1).and_then(|v| v.parse().ok());
        match argv[i].as_str() {
            "--requests" => a.requests = val().expect("--requests N"),
            "--concurrency" => a.concurrency = val().expect("--concurrency C"),
            "--tenants" => a.tenants = val().expect("--tenants T"),
            "--batches" => a.batches = val().expect("--batches B"),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn token(roles: &[&str], tenant: Option<&str>) -> String {
    let claims = Claims {
        sub: "bench".into(),
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

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    r
}

/// Latency percentiles and throughput of one phase.
struct Report {
    name: String,
    calls: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
}

impl Report {
    fn pct(&self, p: f64) -> Duration {
        let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
        self.lat[i]
    }
    fn rps(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `total` calls of `op` with `conc` workers over `channels`.
async fn phase<F, Fut>(name: &str, channels: &[Channel], total: usize, conc: usize, op: F) -> Report
where
    F: Fn(Channel, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..conc {
        let ch = channels[w % channels.len()].clone();
        let (op, next) = (op.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    return lat;
                }
                let t = Instant::now();
                op(ch.clone(), i).await;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut lat = Vec::with_capacity(total);
    for w in workers {
        lat.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    lat.sort();
    Report {
        name: name.into(),
        calls: total,
        elapsed,
        lat,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
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
    let set = InstructionSet {
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
    };
    let load = phase("load", &channels, a.tenants, 8, move |ch, i| {
        let set = set.clone();
        async move {
            let tenant = format!("tenant-{i}");
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
    eprintln!("loaded in {:?}", load.elapsed);

    let platform = Arc::new(token(&["platform"], None));
    let tenants = a.tenants;
    let check_for = move |i: usize| CheckProcessingRequest {
        tenant_id: format!("tenant-{}", i % tenants),
        category: CATEGORIES[i % CATEGORIES.len()].into(),
        purpose: if i.is_multiple_of(3) { "billing" } else { "support" }.into(),
        region: if i.is_multiple_of(5) { "US" } else { "DE" }.into(),
        ..Default::default()
    };

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
    println!("| phase | calls/s | p50 ms | p99 ms | p999 ms | throughput vs baseline |");
    println!("|---|---|---|---|---|---|");
    for r in [&base, &checks, &batches] {
        println!(
            "| {} | {:.0} | {} | {} | {} | {:.2} |",
            r.name,
            r.rps(),
            ms(r.pct(0.50)),
            ms(r.pct(0.99)),
            ms(r.pct(0.999)),
            r.rps() / base.rps()
        );
    }
}
