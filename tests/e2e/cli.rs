//! The `proctor` binary as a newcomer and an operator use it: `serve` on its
//! embedded defaults, `token mint`, `migrate`, health gated on migrations,
//! SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use proctor::proto::v1::PullRequest;
use proctor::proto::v1::inbox_service_client::InboxServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::support::authed;

pub const BIN: &str = env!("CARGO_BIN_EXE_proctor");

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `proctor serve` child process, killed if the test panics. Its stderr
/// goes to a file so that an unexpected exit can say why.
pub struct Server {
    pub child: Child,
    pub port: u16,
    stderr: tempfile::NamedTempFile,
}

/// How a server ended after SIGTERM, with what it printed.
pub struct Stopped {
    pub status: std::process::ExitStatus,
    pub stderr: String,
}

impl Stopped {
    /// Panics with the server's own words unless it exited cleanly.
    pub fn assert_clean(&self) {
        assert!(
            self.status.success(),
            "clean exit on SIGTERM, got {:?}:\n{}",
            self.status,
            self.stderr
        );
    }
}

impl Server {
    pub fn start(cwd: &Path, args: &[&str], env: &[(&str, String)]) -> Self {
        let port = free_port();
        let stderr = tempfile::NamedTempFile::new().expect("stderr file");
        let mut cmd = Command::new(BIN);
        cmd.current_dir(cwd)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env_remove("PROCTOR_DATABASE_URL")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(stderr.reopen().expect("stderr file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("proctor starts"),
            port,
            stderr,
        }
    }

    pub async fn channel(&self) -> Channel {
        let url = format!("http://127.0.0.1:{}", self.port);
        for _ in 0..200 {
            if let Ok(c) = Channel::from_shared(url.clone()).unwrap().connect().await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("proctor never listened on {url}");
    }

    /// Health status of the overall service (1 = SERVING).
    pub async fn health(&self) -> i32 {
        let mut h = HealthClient::new(self.channel().await);
        h.check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
    }

    pub async fn wait_health(&self, want: i32, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            if self.health().await == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// SIGTERM, then the exit status and what the server printed.
    pub fn terminate(mut self) -> Stopped {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let stderr = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
                return Stopped { status, stderr };
            }
            assert!(std::time::Instant::now() < deadline, "proctor ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cwd: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .current_dir(cwd)
        .args(args)
        .env_remove("PROCTOR_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "proctor {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn newcomer_serves_on_defaults_and_calls_with_a_minted_token() {
    let cwd = tempfile::tempdir().unwrap();
    let server = Server::start(cwd.path(), &[], &[]);
    assert!(server.wait_health(1, Duration::from_secs(20)).await, "SERVING");
    assert!(
        cwd.path().join("proctor-data/proctor.db").exists(),
        "SQLite in ./proctor-data"
    );
    assert!(
        cwd.path().join("proctor-data/dev-jwks.json").exists(),
        "dev key created"
    );

    let token = run(
        cwd.path(),
        &["token", "mint", "--role", "tenant", "--tenant", "t1"],
    );
    let mut inbox = InboxServiceClient::new(server.channel().await);
    let r = inbox
        .pull(authed(PullRequest::default(), token.trim()))
        .await
        .unwrap();
    assert!(r.into_inner().envelopes.is_empty());

    // Refused without --tenant.
    let out = Command::new(BIN)
        .current_dir(cwd.path())
        .args(["token", "mint", "--role", "tenant"])
        .output()
        .unwrap();
    assert!(!out.status.success());

    server.terminate().assert_clean();
}

#[tokio::test]
async fn health_waits_for_migrations_when_serve_does_not_migrate() {
    let cwd = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", cwd.path().join("db/p.db").display());
    let server = Server::start(
        cwd.path(),
        &["--no-migrate"],
        &[("PROCTOR_DATABASE_URL", url.clone())],
    );
    assert!(
        server.wait_health(2, Duration::from_secs(20)).await,
        "NOT_SERVING before migrations"
    );
    let out = run(cwd.path(), &["migrate", "--database-url", &url]);
    assert!(
        out.contains(" migration(s) to the sqlite database") && !out.contains("applied 0 migration"),
        "{out}"
    );
    assert!(
        server.wait_health(1, Duration::from_secs(10)).await,
        "SERVING after migrate"
    );
    let again = run(cwd.path(), &["migrate", "--database-url", &url]);
    assert!(again.contains("applied 0 migration"), "{again}");
    server.terminate().assert_clean();
}

#[tokio::test]
async fn bad_database_url_fails_fast_with_a_clear_error() {
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(cwd.path())
        .args(["migrate", "--database-url", "mysql://nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("database_url"));
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .current_dir(cwd.path())
        .args(["migrate", "--database-url", "postgres://nobody@127.0.0.1:1/none"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no pool timeout hides the error"
    );
}

/// Runs `proctor` with piped output (stderr is no terminal) and returns
/// (success, stdout, stderr).
fn run_raw(cwd: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .current_dir(cwd)
        .args(args)
        .env_remove("PROCTOR_DATABASE_URL")
        .env_remove("RUST_LOG")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn fixture(rel: &str) -> String {
    format!("{}/tests/fixtures/sanctions/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// The long flags a `--help` text lists.
fn flags_of(help: &str) -> Vec<String> {
    help.split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| {
            w.trim_end_matches([',', '.'])
                .split('=')
                .next()
                .unwrap()
                .to_owned()
        })
        .filter(|w| w != "--help" && w != "--version")
        .collect()
}

/// Each subcommand's `--help` lists the settings it reads, not all of the
/// server's.
#[test]
fn each_command_lists_only_its_own_flags() {
    let cwd = tempfile::tempdir().unwrap();
    let help = |cmd: &[&str]| {
        let mut args = cmd.to_vec();
        args.push("--help");
        flags_of(&run(cwd.path(), &args))
    };
    let serve = help(&["serve"]);
    for f in [
        "--listen",
        "--database-url",
        "--jwt-jwks",
        "--jwt-max-lifetime-seconds",
        "--jwt-jwks-refresh-seconds",
        "--peer-rate-limit-per-second",
        "--peer-rate-limit-burst",
        "--refusal-audit-interval-seconds",
        "--identifier-hash-key-file",
        "--tls-cert",
    ] {
        assert!(serve.iter().any(|s| s == f), "serve lacks {f}: {serve:?}");
    }
    assert!(serve.len() >= 26, "{serve:?}");
    let server_only = [
        "--listen",
        "--tls-cert",
        "--rate-limit-per-second",
        "--jwt-jwks",
        "--max-message-bytes",
    ];
    let cases: [(&[&str], &[&str], &[&str]); 6] = [
        (
            &["migrate"],
            &["--database-url", "--config"],
            &["--identifier-hash-key-file", "--jwt-issuer"],
        ),
        (
            &["keys", "status"],
            &["--database-url", "--identifier-encryption-key-file"],
            &["--jwt-issuer"],
        ),
        (
            &["keys", "reseal"],
            &["--batch", "--database-url", "--identifier-encryption-key-file"],
            &["--jwt-issuer"],
        ),
        (
            &["lists", "import"],
            &["--source", "--database-url", "--screening-review-threshold"],
            &["--identifier-hash-key-file", "--jwt-issuer"],
        ),
        (
            &["token", "mint"],
            &[
                "--role",
                "--jwt-issuer",
                "--jwt-audience",
                "--jwt-hs256-secret-file",
                "--data-dir",
            ],
            &["--database-url", "--identifier-hash-key-file"],
        ),
        (
            &["subject-ref"],
            &["--tenant", "--identifier-hash-key-file"],
            &["--database-url", "--jwt-issuer"],
        ),
    ];
    for (cmd, has, lacks) in cases {
        let flags = help(cmd);
        for f in has {
            assert!(flags.iter().any(|s| s == f), "{cmd:?} lacks {f}: {flags:?}");
        }
        for f in lacks.iter().chain(&server_only) {
            assert!(!flags.iter().any(|s| s == f), "{cmd:?} lists {f}: {flags:?}");
        }
        assert!(flags.len() < 15, "{cmd:?} lists {} flags: {flags:?}", flags.len());
    }
}

/// Logs go to stderr, without colour codes when stderr is no terminal;
/// stdout carries only each command's own output.
#[test]
fn logs_stay_off_stdout_and_uncoloured() {
    let cwd = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", cwd.path().join("p.db").display());
    let looks_like_a_log = |l: &str| {
        l.contains(" INFO ")
            || l.contains(" WARN ")
            || l.contains("\u{1b}[")
            || l.starts_with("20") && l.contains('Z')
    };
    let (ok, out, err) = run_raw(cwd.path(), &["migrate", "--database-url", &db]);
    assert!(ok, "{err}");
    assert!(out.lines().all(|l| !looks_like_a_log(l)), "{out}");
    // `keys status` on a fresh data folder creates the development keys and
    // warns about it: on stderr, uncoloured.
    let (ok, out, err) = run_raw(cwd.path(), &["keys", "status", "--database-url", &db]);
    assert!(ok, "{out} {err}");
    assert!(
        err.contains("WARN"),
        "the development-key warning goes to stderr: {err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no escape codes in a log that is no terminal: {err:?}"
    );
    assert!(out.lines().all(|l| !looks_like_a_log(l)), "{out}");
    assert!(out.contains("nothing depends on other keys"), "{out}");
    let dir = fixture("ofac/fixture_small");
    let files = ["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv"].map(|f| format!("{dir}/{f}"));
    let mut args = vec!["lists", "import", "--source", "ofac_sdn", "--database-url", &db];
    args.extend(files.iter().map(String::as_str));
    let (ok, out, err) = run_raw(cwd.path(), &args);
    assert!(ok, "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert_eq!(out.lines().count(), 2, "only the import's own report: {out}");
    assert!(
        out.starts_with("ofac_sdn version 1: 17 entries (+17 added"),
        "{out}"
    );
}

/// Importing the same files again says nothing changed; a file given to
/// the wrong source is named with what was expected, and none of its
/// content is printed.
#[test]
fn lists_import_explains_unchanged_and_mismatched_files() {
    let cwd = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", cwd.path().join("p.db").display());
    let dir = fixture("ofac/fixture_small");
    let files = ["sdn.csv", "alt.csv", "add.csv", "sdn_comments.csv"].map(|f| format!("{dir}/{f}"));
    let mut args = vec!["lists", "import", "--source", "ofac_sdn", "--database-url", &db];
    args.extend(files.iter().map(String::as_str));
    let (ok, first, err) = run_raw(cwd.path(), &args);
    assert!(ok, "{err}");
    let sha = first
        .split("sha256 ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let (ok, again, err) = run_raw(cwd.path(), &args);
    assert!(ok, "{err}");
    assert_eq!(
        again.trim(),
        format!("ofac_sdn unchanged: version 1 already loaded (sha256 {sha}), nothing imported")
    );

    let eu = fixture("eu/fsf_1_1_excerpt_2026-08-05.xml");
    let sdn = format!("{dir}/sdn.csv");
    let csl = fixture("us_csl/csl.csv");
    let cases = [
        (
            "ofac_sdn",
            &eu,
            "fsf_1_1_excerpt_2026-08-05.xml",
            "OFAC CSV set",
            "Saddam",
        ),
        (
            "eu_fsf",
            &sdn,
            "sdn.csv",
            "EU financial sanctions (FSF) XML",
            "LOGAN MOREY",
        ),
        (
            "un_sc",
            &csl,
            "csl.csv",
            "UN Security Council consolidated list XML",
            "Entity List",
        ),
    ];
    for (source, file, name, expected, content) in cases {
        let (ok, out, err) = run_raw(
            cwd.path(),
            &["lists", "import", "--source", source, "--database-url", &db, file],
        );
        assert!(!ok, "{source} {name} was imported: {out}");
        for want in [format!("source {source}"), name.to_owned(), expected.to_owned()] {
            assert!(err.contains(&want), "{source}/{name}: no {want:?} in {err}");
        }
        assert!(
            !err.contains(content),
            "{source}/{name}: file content printed: {err}"
        );
        // The development-key warnings are log lines; the error itself is short.
        let message = err.lines().filter(|l| !l.contains(" WARN ")).count();
        assert!(message <= 3, "{err}");
    }
}
