//! Audited writes against the release server, each number a ratio to
//! something measured in the same run (issue "The write path", point 5):
//!
//! 1. pgbench's TPC-B-like transactions (`-c 32 -j 2 -M prepared`, scale 10)
//!    on the PostgreSQL server the proctor run then uses, in a scratch
//!    database dropped afterwards: what that database server can commit on
//!    this machine right now.
//! 2. `proctor serve` (a separate process, [`load::server`]) on a fresh
//!    PostgreSQL database and then on a fresh SQLite file, driving
//!    `ForwardToController` (one audited write with one inbox envelope, a
//!    new idempotency key per call, spread over the tenants) for the same
//!    time at 1, 8 and 32 calls in flight.
//! 3. `CheckProcessing` from a separate, paced client (a few calls in
//!    flight on their own connection), alone and then in a phase of its
//!    own while 32 writers run: reads must not wait behind writes. The
//!    write levels above run without it, as pgbench runs alone, so the
//!    ratio to pgbench counts only the writes' own work; the writes beside
//!    the checks are reported too.
//! 4. On PostgreSQL, writes paced at the target rate ([`PACED_SHARE`]
//!    of pgbench's tps) with the checks beside: the checks' tail beside the
//!    load the issue asks for, not only beside all the server can take.
//!
//! It prints the per-level tables and a summary against the targets.
//! pgbench is required: without it there is no ratio, so the bench fails
//! rather than report absolute rates that mean nothing on shared cores.
//!
//! `cargo bench --bench write_load -- [--seconds N] [--database-url postgres://user@host:port]`

mod load;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proctor::proto::v1::instruction_service_client::InstructionServiceClient;
use proctor::proto::v1::subject_request_service_client::SubjectRequestServiceClient;
use tokio::time::MissedTickBehavior;
use tonic::transport::Channel;

use load::mixed::{new_subject_request, put_instructions};
use load::report::{Report, Timed, drive, print_table};
use load::scratch::{ScratchDb, server_of};
use load::server::ServerProcess;
use load::{authed, check_for, tenant, token};

/// Tenants the writes are spread over: commands of different tenants are
/// what the write path must commit in parallel.
const TENANTS: usize = 64;
/// Writes in flight, in the order measured.
const LEVELS: [usize; 3] = [1, 8, 32];
/// HTTP/2 connections the writers share.
const CONNECTIONS: usize = 4;
/// Checks in flight in the separate client.
const CHECKERS: usize = 4;
/// Each checker starts one call per period (400 checks/s in all): a fixed
/// offered load, so its latency can be compared with and without writes
/// and it takes little of the cores the writers are measured on.
const CHECK_PERIOD: Duration = Duration::from_millis(10);
/// The share of pgbench's tps the paced writes offer: the target
/// rate for PostgreSQL, so that phase asks whether checks keep their p99
/// beside the write load the issue asks for, where the unpaced phases ask
/// beside all the writes the server can take.
const PACED_SHARE: f64 = 0.6;
/// Callers the paced writes are spread over.
const PACED_WRITERS: usize = 32;
/// The TPC-B-like scale pgbench initialises (1,000,000 accounts).
const PGBENCH_SCALE: &str = "10";
/// Scratch databases, dropped (and dropped first if a run was interrupted).
const PGBENCH_DB: &str = "proctor_writebench_pgbench";
const PROCTOR_DB: &str = "proctor_writebench_proctor";
/// Within this factor of its p99 alone, CheckProcessing's p99 during the
/// writes counts as unchanged: a few thousand paced calls on shared cores
/// do not give a p99 steadier than that, while reads queueing behind a
/// write lock show as many times.
const CHECK_P99_TOLERANCE: f64 = 1.5;

/// pgbench on `PATH`, else the newest in the Debian/Ubuntu layout
/// (`/usr/lib/postgresql/<version>/bin`), where the server package puts it
/// without linking it onto `PATH`.
fn pgbench() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("pgbench"))
        .find(|p| p.is_file());
    on_path
        .or_else(|| {
            let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let version = e.file_name().to_string_lossy().split('.').next()?.parse().ok()?;
                    let bin = e.path().join("bin/pgbench");
                    bin.is_file().then_some((version, bin))
                })
                .collect();
            found.sort();
            found.pop().map(|(_, bin)| bin)
        })
        .unwrap_or_else(|| {
            panic!(
                "pgbench not found on PATH nor in /usr/lib/postgresql/*/bin: install the \
                 PostgreSQL client tools; the write bench reports ratios to it"
            )
        })
}

/// What pgbench measured.
struct Pgbench {
    /// Transactions per second, without the initial connection time.
    tps: f64,
    /// Mean transaction latency, ms.
    latency_ms: f64,
}

/// Runs `cmd` to success and returns its standard output; panics with its
/// error output otherwise.
fn output_of(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number after `prefix` on the line of `report` that starts with it.
fn number_after(report: &str, prefix: &str) -> f64 {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}` in pgbench's report:\n{report}"))
}

/// Initialises and runs pgbench's TPC-B-like script in its own database.
fn run_pgbench(server: &str, seconds: u64) -> Pgbench {
    let bin = pgbench();
    let db = ScratchDb::create(server, PGBENCH_DB);
    output_of(
        Command::new(&bin)
            .args(["-i", "-q", "-s", PGBENCH_SCALE])
            .arg(&db.url),
    );
    let report = output_of(
        Command::new(&bin)
            .args(["-c", "32", "-j", "2", "-M", "prepared"])
            .args(["-T", &seconds.to_string()])
            .arg(&db.url),
    );
    assert_eq!(
        number_after(&report, "number of failed transactions:"),
        0.0,
        "pgbench transactions failed:\n{report}"
    );
    Pgbench {
        tps: number_after(&report, "tps ="),
        latency_ms: number_after(&report, "latency average ="),
    }
}

/// What one backend measured.
struct Backend {
    name: &'static str,
    /// `ForwardToController` at each of [`LEVELS`], then at the last level
    /// again with the checks beside.
    writes: Vec<Report>,
    checks_alone: Report,
    /// Checks during the last phase of writes.
    checks_during: Report,
    /// Writes paced at the target rate, and the checks beside them.
    paced: Option<(Report, Report)>,
    /// A few of the errors, for the report.
    first_errors: Vec<String>,
}

impl Backend {
    fn at(&self, level: usize) -> &Report {
        &self.writes[LEVELS.iter().position(|l| *l == level).unwrap()]
    }

    /// The writes that ran beside the checks.
    fn beside_checks(&self) -> &Report {
        self.writes.last().unwrap()
    }

    fn errors(&self) -> usize {
        self.writes.iter().map(|r| r.errors).sum::<usize>()
            + self.checks_alone.errors
            + self.checks_during.errors
            + self.paced.as_ref().map_or(0, |(w, c)| w.errors + c.errors)
    }

    fn print(&self) {
        println!("\n### {}\n", self.name);
        println!("ForwardToController; throughput vs baseline = vs 1 in flight:\n");
        let writes: Vec<&Report> = self.writes.iter().collect();
        print_table(&writes, &self.writes[0]);
        println!(
            "\nCheckProcessing, separate client ({CHECKERS} in flight, one call each per {} ms):\n",
            CHECK_PERIOD.as_millis()
        );
        print_table(&[&self.checks_alone, &self.checks_during], &self.checks_alone);
        if let Some((w, c)) = &self.paced {
            println!(
                "\nForwardToController paced at {PACED_SHARE} of pgbench's tps, and the checks beside:\n"
            );
            print_table(&[w], w);
            println!();
            print_table(&[&self.checks_alone, c], &self.checks_alone);
        }
        for e in &self.first_errors {
            println!("error: {e}");
        }
    }
}

/// Forwards request number `i` (its tenant by the number) and keeps the
/// first few errors for the report: whether it succeeded.
async fn forward(ch: Channel, i: usize, platform: &str, errors: &Mutex<Vec<String>>) -> bool {
    let res = SubjectRequestServiceClient::new(ch)
        .forward_to_controller(authed(
            new_subject_request(i, tenant(i % TENANTS), "write-"),
            platform,
        ))
        .await;
    if let Err(e) = &res {
        let mut kept = errors.lock().unwrap();
        if kept.len() < 5 {
            kept.push(format!("ForwardToController: {:?} {}", e.code(), e.message()));
        }
    }
    res.is_ok()
}

/// Writes for `duration` with `level` in flight, call numbers from `first`
/// (so idempotency keys never repeat within a database).
async fn writes(
    channels: &[Channel],
    first: usize,
    duration: Duration,
    level: usize,
    errors: &Arc<Mutex<Vec<String>>>,
) -> Report {
    let platform = Arc::new(token(&["platform"], None));
    let errors = errors.clone();
    let deadline = Some(Instant::now() + duration);
    let (timed, elapsed) = drive(channels, first..usize::MAX, deadline, level, move |ch, i| {
        let (platform, errors) = (platform.clone(), errors.clone());
        async move { (0, forward(ch, i, &platform, &errors).await) }
    })
    .await;
    Report::of(&format!("{level} in flight"), None, &timed, elapsed)
}

/// Writes at `rate` a second for `duration` from [`PACED_WRITERS`] callers,
/// each starting one call per period (fewer when the server falls behind):
/// an offered load, unlike [`writes`], which takes all it can.
async fn paced_writes(
    channels: &[Channel],
    first: usize,
    duration: Duration,
    rate: f64,
    errors: &Arc<Mutex<Vec<String>>>,
) -> Report {
    let platform = Arc::new(token(&["platform"], None));
    let period = Duration::from_secs_f64(PACED_WRITERS as f64 / rate.max(1.0));
    let (channels, errors) = (channels.to_vec(), errors.clone());
    // The callers' starts spread over one period.
    let stagger = period / PACED_WRITERS as u32;
    let (timed, elapsed) = paced(PACED_WRITERS, period, stagger, duration, move |w, i| {
        let (ch, platform, errors) = (
            channels[w % channels.len()].clone(),
            platform.clone(),
            errors.clone(),
        );
        async move { forward(ch, first + i, &platform, &errors).await }
    })
    .await;
    Report::of(&format!("paced at {rate:.0}/s"), None, &timed, elapsed)
}

/// `callers` callers, each starting one call per `period` for `duration`
/// (fewer when its calls take longer), caller `w` the first after `w`
/// times `stagger` and making calls `w`, `w + callers`, ... with `op(w, i)`
/// (true: it succeeded); their timings and the time taken.
async fn paced<F, Fut>(
    callers: usize,
    period: Duration,
    stagger: Duration,
    duration: Duration,
    op: F,
) -> (Vec<Timed>, Duration)
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..callers)
        .map(|w| {
            let op = op.clone();
            tokio::spawn(async move {
                if !stagger.is_zero() {
                    tokio::time::sleep(stagger * w as u32).await;
                }
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let (mut out, mut i) = (Vec::new(), w);
                loop {
                    tick.tick().await;
                    if Instant::now() >= deadline {
                        return out;
                    }
                    let t = Instant::now();
                    let ok = op(w, i).await;
                    out.push(Timed {
                        kind: 0,
                        latency: t.elapsed(),
                        ok,
                    });
                    i += callers;
                }
            })
        })
        .collect();
    let mut timed = Vec::new();
    for w in workers {
        timed.extend(w.await.unwrap());
    }
    (timed, started.elapsed())
}

/// The paced check client on its own connection for `duration`. Paced, not
/// closed-loop: a closed loop would measure how much of the cores checks can
/// take from the writers, not whether a check waits for them.
async fn checks(channel: Channel, duration: Duration, name: &str) -> Report {
    let platform = Arc::new(token(&["platform"], None));
    let (timed, elapsed) = paced(CHECKERS, CHECK_PERIOD, Duration::ZERO, duration, move |_, i| {
        let (ch, platform) = (channel.clone(), platform.clone());
        async move {
            InstructionServiceClient::new(ch)
                .check_processing(authed(check_for(i, TENANTS), &platform))
                .await
                .is_ok()
        }
    })
    .await;
    Report::of(name, None, &timed, elapsed)
}

/// The paced check client on a thread and a runtime of its own, with its
/// own connection. On the bench's runtime, beside 32 writers, a check's
/// response waited for the writers' client-side work (encoding, decoding,
/// their HTTP/2 connections) before it was polled, so its latency was
/// partly the load generator's; here only the server and the cores are
/// shared.
struct Checker {
    jobs: std::sync::mpsc::Sender<(Duration, String, tokio::sync::oneshot::Sender<Report>)>,
}

impl Checker {
    /// Connects to the server on `port` from a new thread.
    fn start(port: u16) -> Self {
        let (jobs, next) =
            std::sync::mpsc::channel::<(Duration, String, tokio::sync::oneshot::Sender<Report>)>();
        std::thread::Builder::new()
            .name("checker".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
                        .unwrap()
                        .connect()
                        .await
                        .expect("the checker connects");
                    // Idle between phases: nothing else runs on this runtime.
                    while let Ok((duration, name, answer)) = next.recv() {
                        let _ = answer.send(checks(channel.clone(), duration, &name).await);
                    }
                });
            })
            .unwrap();
        Self { jobs }
    }

    /// Runs the paced checks for `duration` on the checker's thread.
    async fn run(&self, duration: Duration, name: &str) -> Report {
        let (answer, report) = tokio::sync::oneshot::channel();
        self.jobs.send((duration, name.to_owned(), answer)).unwrap();
        report.await.expect("the checker thread answers")
    }
}

/// Sets `server` up and runs the checks alone, the writes at every level,
/// then the last level again with the checks beside.
async fn measure(
    name: &'static str,
    server: &ServerProcess,
    duration: Duration,
    paced_rate: Option<f64>,
) -> Backend {
    let channels = server.channels(CONNECTIONS).await;
    let checker = Checker::start(server.port);
    put_instructions(&channels, TENANTS).await;
    let errors = Arc::new(Mutex::new(Vec::new()));
    // Warm connections, pools, statement and token caches before measuring.
    writes(&channels, 0, Duration::from_secs(1), 8, &errors).await;
    checker.run(Duration::from_secs(1), "warm-up").await;

    let checks_alone = checker.run(duration, "alone").await;
    let mut reports = Vec::new();
    for (n, level) in LEVELS.iter().enumerate() {
        let first = (n + 1) * 100_000_000;
        reports.push(writes(&channels, first, duration, *level, &errors).await);
    }
    let top = *LEVELS.last().unwrap();
    let first = (LEVELS.len() + 1) * 100_000_000;
    let during = format!("during writes at {top} in flight");
    let (mut beside, checks_during) = tokio::join!(
        writes(&channels, first, duration, top, &errors),
        checker.run(duration, &during),
    );
    beside.name = format!("{top} in flight, checks beside");
    reports.push(beside);
    let paced = match paced_rate {
        Some(rate) => {
            let first = (LEVELS.len() + 2) * 100_000_000;
            let during = format!("during writes paced at {rate:.0}/s");
            Some(tokio::join!(
                paced_writes(&channels, first, duration, rate, &errors),
                checker.run(duration, &during),
            ))
        }
        None => None,
    };
    let first_errors = errors.lock().unwrap().clone();
    Backend {
        name,
        writes: reports,
        checks_alone,
        checks_during,
        paced,
        first_errors,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(met: bool) -> &'static str {
    if met { "yes" } else { "**no**" }
}

/// The summary table: each of the targets, as measured in this run.
fn print_summary(pgbench: &Pgbench, pg: &Backend, sqlite: &Backend) {
    let top = *LEVELS.last().unwrap();
    let (pg1, pg8, pg32) = (pg.at(1), pg.at(8), pg.at(top));
    let ratio = pg32.rps() / pgbench.tps;
    let spread = pg32.pct(0.99).as_secs_f64() / pg32.pct(0.50).as_secs_f64();
    let scaling = pg32.rps() / pg1.rps();
    println!("\n### Against the targets\n");
    println!("| measure | this run | target | met |");
    println!("|---|---|---|---|");
    println!(
        "| PostgreSQL: writes/s at {top} in flight / pgbench tps | {ratio:.2} ({:.0} / {:.0}; {:.2} with the checks beside) | at least 0.6 | {} |",
        pg32.rps(),
        pgbench.tps,
        pg.beside_checks().rps() / pgbench.tps,
        verdict(ratio >= 0.6)
    );
    println!(
        "| PostgreSQL: p99 / p50 at {top} in flight | {spread:.1} ({:.1} / {:.1} ms) | at most 3 | {} |",
        ms(pg32.pct(0.99)),
        ms(pg32.pct(0.50)),
        verdict(spread <= 3.0)
    );
    println!(
        "| PostgreSQL: p99 at 8 in flight | {:.1} ms | under 50 ms | {} |",
        ms(pg8.pct(0.99)),
        verdict(pg8.pct(0.99) < Duration::from_millis(50))
    );
    println!(
        "| PostgreSQL: writes/s at {top} / at 1 in flight | {scaling:.2} ({:.0} / {:.0}) | at least 1 (does not fall) | {} |",
        pg32.rps(),
        pg1.rps(),
        verdict(scaling >= 1.0)
    );
    let (sq1, sq32) = (sqlite.at(1), sqlite.at(top));
    println!(
        "| SQLite: writes/s at {top} in flight | {:.0} ({:.2} of 1 in flight) | at least 1,000 | {} |",
        sq32.rps(),
        sq32.rps() / sq1.rps(),
        verdict(sq32.rps() >= 1000.0)
    );
    for b in [pg, sqlite] {
        if let Some((w, c)) = &b.paced {
            let (alone, during) = (b.checks_alone.pct(0.99), c.pct(0.99));
            let r = during.as_secs_f64() / alone.as_secs_f64();
            println!(
                "| {}: CheckProcessing p99 during writes paced at {PACED_SHARE} of pgbench ({:.0}/s offered, {:.0}/s done) / alone | {r:.2} ({:.2} / {:.2} ms) | (beside the target's write rate; the row below is the verdict's) | - |",
                b.name,
                PACED_SHARE * pgbench.tps,
                w.rps(),
                ms(during),
                ms(alone),
            );
        }
        let (alone, during) = (b.checks_alone.pct(0.99), b.checks_during.pct(0.99));
        let r = during.as_secs_f64() / alone.as_secs_f64();
        println!(
            "| {}: CheckProcessing p99 during writes / alone | {r:.2} ({:.2} / {:.2} ms) | unchanged (at most {CHECK_P99_TOLERANCE}) | {} |",
            b.name,
            ms(during),
            ms(alone),
            verdict(r <= CHECK_P99_TOLERANCE)
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let seconds: u64 = load::arg("--seconds", 20);
    let base: String = load::arg("--database-url", "postgres://postgres@127.0.0.1:5432".to_owned());
    let server = server_of(&base);
    let duration = Duration::from_secs(seconds);
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_proctor"));
    println!("write path: {seconds} s per phase, {TENANTS} tenants, writers over {CONNECTIONS} connections");

    let pgbench = run_pgbench(&server, seconds);
    println!(
        "\npgbench TPC-B-like (scale {PGBENCH_SCALE}, -c 32 -j 2 -M prepared -T {seconds}): \
         {:.0} tps without initial connection time, latency average {:.3} ms",
        pgbench.tps, pgbench.latency_ms
    );

    let pg = {
        let db = ScratchDb::create(&server, PROCTOR_DB);
        let proc = ServerProcess::start(bin, Some(&db.url), &[]);
        let b = measure("PostgreSQL", &proc, duration, Some(PACED_SHARE * pgbench.tps)).await;
        b.print();
        assert_eq!(b.errors(), 0, "calls failed; server log:\n{}", proc.log());
        b
    };
    let sqlite = {
        let proc = ServerProcess::start(bin, None, &[]);
        let b = measure("SQLite", &proc, duration, None).await;
        b.print();
        assert_eq!(b.errors(), 0, "calls failed; server log:\n{}", proc.log());
        b
    };
    print_summary(&pgbench, &pg, &sqlite);
}
