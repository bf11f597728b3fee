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

/// A `proctor serve` child process, killed if the test panics.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    pub fn start(cwd: &Path, args: &[&str], env: &[(&str, String)]) -> Self {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.current_dir(cwd)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env_remove("PROCTOR_DATABASE_URL")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("proctor starts"),
            port,
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

    /// SIGTERM, then the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
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

    let status = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
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
    // Every capability adds its migration; any number but zero will do.
    assert!(
        out.contains("applied ") && !out.contains("applied 0 migration"),
        "{out}"
    );
    assert!(
        server.wait_health(1, Duration::from_secs(10)).await,
        "SERVING after migrate"
    );
    let again = run(cwd.path(), &["migrate", "--database-url", &url]);
    assert!(again.contains("applied 0 migration"), "{again}");
    server.terminate();
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
