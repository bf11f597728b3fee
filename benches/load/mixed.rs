//! The mixed workload: of every 40 calls, 37 `CheckProcessing`, one
//! `ForwardToController` (a new subject request, with its own idempotency
//! key), one `Screen` against a small OFAC list, and one inbox `Pull` of a
//! tenant followed by an `Ack` of what it got. The empty unary RPC
//! `grpc.health.v1.Health/Check` is the baseline, measured in the same run
//! with the same concurrency. The server's memory is read after a tenth of
//! the calls and after all of them: a leak shows as growth between the two.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proctor::proto::v1::inbox_service_client::InboxServiceClient;
use proctor::proto::v1::instruction_service_client::InstructionServiceClient;
use proctor::proto::v1::screening_service_client::ScreeningServiceClient;
use proctor::proto::v1::subject_request_service_client::SubjectRequestServiceClient;
use proctor::proto::v1::{
    AckRequest, ForwardToControllerRequest, ImportListChunk, ListVersion, Party, PartyType, PullRequest,
    PutInstructionsRequest, RequestType, ScreenRequest, Subject,
};
use tonic::Status;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::report::{Report, Timed, drive, phase};
use super::server::{Memory, ServerProcess};
use super::{authed, check_for, instruction_set, tenant, token};

/// The kinds of call, by index into [`KINDS`].
pub const CHECK: usize = 0;
pub const SUBMIT: usize = 1;
pub const SCREEN: usize = 2;
pub const PULL: usize = 3;
/// Report names of the kinds.
pub const KINDS: [&str; 4] = [
    "CheckProcessing",
    "ForwardToController (new request)",
    "Screen (OFAC excerpt)",
    "inbox Pull + Ack",
];
/// Calls per round of the mix.
const ROUND: usize = 40;

/// The kind of call number `i`.
pub fn kind_of(i: usize) -> usize {
    match i % ROUND {
        0 => SUBMIT,
        1 => SCREEN,
        2 => PULL,
        _ => CHECK,
    }
}

/// Checks among calls `0..n`.
pub fn checks_in(n: usize) -> usize {
    (0..n.min(ROUND)).filter(|i| kind_of(*i) == CHECK).count() * (n / ROUND)
        + (0..n % ROUND).filter(|i| kind_of(*i) == CHECK).count()
}

/// Names screened in turn: one listed party (a possible match), the rest clear.
const NAMES: [(&str, PartyType); 4] = [
    ("Dmitry Khoroshev", PartyType::Individual),
    ("Maria Gonzalez", PartyType::Individual),
    ("Nordlicht Logistik GmbH", PartyType::Organization),
    ("Jean-Pierre Dupont", PartyType::Individual),
];

/// Size of a run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Mixed calls in all.
    pub requests: usize,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Tenants with instructions (and inboxes).
    pub tenants: usize,
    /// HTTP/2 connections the calls are spread over.
    pub connections: usize,
}

/// What a run measured.
pub struct Outcome {
    pub baseline: Report,
    /// Every mixed call.
    pub all: Report,
    /// The calls of each kind, in [`KINDS`] order.
    pub kinds: Vec<Report>,
    /// Memory once set up, before the mixed calls.
    pub start: Memory,
    /// Checks done and memory after each tenth of the calls.
    pub tenths: Vec<(usize, Memory)>,
    /// A few of the errors, for the report.
    pub first_errors: Vec<String>,
}

impl Outcome {
    /// Calls that failed, all kinds.
    pub fn errors(&self) -> usize {
        self.kinds.iter().map(|r| r.errors).sum()
    }

    /// Checks done and memory after the first tenth of the calls.
    pub fn tenth(&self) -> (usize, Memory) {
        self.tenths[0]
    }

    /// Checks done and memory after all calls.
    pub fn end(&self) -> (usize, Memory) {
        self.tenths[self.tenths.len() - 1]
    }

    /// Resident memory after all calls over resident memory after a tenth.
    pub fn growth(&self) -> f64 {
        self.end().1.rss_kib as f64 / self.tenth().1.rss_kib as f64
    }

    /// Prints the tables docs/BENCHMARKS.md records.
    pub fn print(&self, o: &Options) {
        println!(
            "mixed calls: {}, concurrency: {}, tenants: {}, connections: {}",
            o.requests, o.concurrency, o.tenants, o.connections
        );
        let mut all: Vec<&Report> = vec![&self.baseline, &self.all];
        all.extend(self.kinds.iter());
        super::report::print_table(&all, &self.baseline);
        let mib = |k: u64| k as f64 / 1024.0;
        println!("| server memory | checks done | VmRSS MiB | VmHWM MiB |");
        println!("|---|---|---|---|");
        println!(
            "| set up | 0 | {:.1} | {:.1} |",
            mib(self.start.rss_kib),
            mib(self.start.peak_kib)
        );
        for (i, (checks, m)) in self.tenths.iter().enumerate() {
            println!(
                "| after {}/10 of the calls | {checks} | {:.1} | {:.1} |",
                i + 1,
                mib(m.rss_kib),
                mib(m.peak_kib)
            );
        }
        println!(
            "RSS after all / RSS after a tenth: {:.3} ({:+.1}%)",
            self.growth(),
            (self.growth() - 1.0) * 100.0
        );
        for e in &self.first_errors {
            println!("error: {e}");
        }
    }
}

/// Streams the OFAC excerpt in `tests/fixtures/sanctions/ofac/fixture_small`
/// as list `ofac_sdn` (compliance `token`).
pub async fn import_small_ofac(ch: Channel, token: &str) -> Result<ListVersion, Status> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sanctions/ofac/fixture_small");
    let mut chunks = Vec::new();
    for name in ["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv"] {
        let data = std::fs::read(dir.join(name)).unwrap();
        for part in data.chunks(64 * 1024) {
            chunks.push(ImportListChunk {
                source: "ofac_sdn".into(),
                format: String::new(),
                file_name: name.into(),
                data: part.to_vec(),
            });
        }
    }
    ScreeningServiceClient::new(ch)
        .import_list(authed(tokio_stream::iter(chunks), token))
        .await
        .map(|r| r.into_inner())
}

/// Loads instructions for every tenant and the OFAC excerpt.
async fn set_up(channels: &[Channel], tenants: usize) {
    put_instructions(channels, tenants).await;
    import_small_ofac(channels[0].clone(), &token(&["compliance"], None))
        .await
        .unwrap();
}

/// Gives tenants `0..tenants` [`instruction_set`]: checks decide against it,
/// and subject requests are forwarded only to tenants that have one.
pub async fn put_instructions(channels: &[Channel], tenants: usize) {
    phase("set up", channels, tenants, 8, move |ch, i| async move {
        let t = tenant(i);
        InstructionServiceClient::new(ch)
            .put_instructions(authed(
                PutInstructionsRequest {
                    tenant_id: t.clone(),
                    expected_version: 0,
                    instructions: Some(instruction_set()),
                    reason: "load".into(),
                },
                &token(&["tenant"], Some(&t)),
            ))
            .await
            .unwrap();
    })
    .await;
}

/// New subject request number `i` for `tenant_id`, as the platform forwards
/// it: an access request with its own subject and idempotency key
/// (`{key_prefix}{i}`), so every call is a new write, not a replay.
pub fn new_subject_request(i: usize, tenant_id: String, key_prefix: &str) -> ForwardToControllerRequest {
    ForwardToControllerRequest {
        tenant_id,
        request_type: RequestType::Access as i32,
        subject: Some(Subject {
            email: format!("person-{i}@example.test"),
            name: format!("Person {i}"),
            ..Default::default()
        }),
        channel: "email".into(),
        received_at: None,
        message: "Please send me a copy of my data".into(),
        idempotency_key: format!("{key_prefix}{i}"),
    }
}

/// Tokens the calls use, minted once.
struct Tokens {
    platform: String,
    tenants: Vec<String>,
}

/// Makes mixed call `i`; its kind and success.
async fn call(ch: Channel, i: usize, tenants: usize, tok: &Tokens) -> (usize, Result<(), Status>) {
    let kind = kind_of(i);
    // Submissions and pulls walk the tenants in the same order, so the
    // pulls find what the submissions sent.
    let round_tenant = (i / ROUND) % tenants;
    let res = match kind {
        SUBMIT => SubjectRequestServiceClient::new(ch)
            .forward_to_controller(authed(
                new_subject_request(i, tenant(round_tenant), "load-"),
                &tok.platform,
            ))
            .await
            .map(drop),
        SCREEN => {
            let (name, t) = NAMES[(i / ROUND) % NAMES.len()];
            ScreeningServiceClient::new(ch)
                .screen(authed(
                    ScreenRequest {
                        party: Some(Party {
                            name: name.into(),
                            r#type: t as i32,
                            ..Default::default()
                        }),
                        party_ref: String::new(),
                        min_score: 0.0,
                        limit: 5,
                        ..Default::default()
                    },
                    &tok.platform,
                ))
                .await
                .map(drop)
        }
        PULL => {
            let mut inbox = InboxServiceClient::new(ch);
            let t = &tok.tenants[round_tenant];
            match inbox
                .pull(authed(
                    PullRequest {
                        max: 10,
                        lease_seconds: 30,
                    },
                    t,
                ))
                .await
            {
                Ok(r) => {
                    let ids: Vec<String> = r.into_inner().envelopes.into_iter().map(|e| e.id).collect();
                    if ids.is_empty() {
                        Ok(())
                    } else {
                        inbox.ack(authed(AckRequest { ids }, t)).await.map(drop)
                    }
                }
                Err(e) => Err(e),
            }
        }
        _ => InstructionServiceClient::new(ch)
            .check_processing(authed(check_for(i, tenants), &tok.platform))
            .await
            .map(drop),
    };
    (kind, res)
}

/// Runs calls `range` of the mix; errors are counted, a few kept.
async fn mixed(
    channels: &[Channel],
    range: std::ops::Range<usize>,
    o: &Options,
    tok: &Arc<Tokens>,
    errors: &Arc<Mutex<Vec<String>>>,
) -> (Vec<Timed>, Duration) {
    let (tok, errors, tenants) = (tok.clone(), errors.clone(), o.tenants);
    drive(channels, range, None, o.concurrency, move |ch, i| {
        let (tok, errors) = (tok.clone(), errors.clone());
        async move {
            let (kind, res) = call(ch, i, tenants, &tok).await;
            if let Err(e) = &res {
                let mut kept = errors.lock().unwrap();
                if kept.len() < 5 {
                    kept.push(format!("{}: {:?} {}", KINDS[kind], e.code(), e.message()));
                }
            }
            (kind, res.is_ok())
        }
    })
    .await
}

/// Sets the server up, measures the baseline, then runs the mix.
pub async fn run(server: &ServerProcess, o: &Options) -> Outcome {
    let channels = server.channels(o.connections).await;
    set_up(&channels, o.tenants).await;
    let base_calls = (o.requests / 10).max(1_000);
    let warm = |ch: Channel, _| async move {
        HealthClient::new(ch)
            .check(HealthCheckRequest::default())
            .await
            .unwrap();
    };
    phase("warm-up", &channels, base_calls / 10, o.concurrency, warm).await;
    let baseline = phase(
        "baseline: empty unary RPC (Health/Check)",
        &channels,
        base_calls,
        o.concurrency,
        warm,
    )
    .await;

    let tok = Arc::new(Tokens {
        platform: token(&["platform"], None),
        tenants: (0..o.tenants)
            .map(|t| token(&["tenant"], Some(&tenant(t))))
            .collect(),
    });
    let errors = Arc::new(Mutex::new(Vec::new()));
    let start = server.memory();
    let mut timed = Vec::with_capacity(o.requests);
    let mut elapsed = Duration::ZERO;
    let mut tenths = Vec::new();
    for part in 1..=10 {
        let range = o.requests * (part - 1) / 10..o.requests * part / 10;
        let end = range.end;
        let (t, e) = mixed(&channels, range, o, &tok, &errors).await;
        timed.extend(t);
        elapsed += e;
        tenths.push((checks_in(end), server.memory()));
    }
    let kinds = KINDS
        .iter()
        .enumerate()
        .map(|(k, name)| Report::of(name, Some(k), &timed, elapsed))
        .collect();
    let all = Report::of("all mixed calls", None, &timed, elapsed);
    let first_errors = errors.lock().unwrap().clone();
    Outcome {
        baseline,
        all,
        kinds,
        start,
        tenths,
        first_errors,
    }
}
