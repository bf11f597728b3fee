//! `proctor healthcheck`, the probe the container image and exec probes run
//! (no shell, no grpcurl): exit 0 only when the health service says SERVING,
//! non-zero when it says anything else, when nobody answers, and when TLS
//! verification fails.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::cli::{BIN, Server as ProctorServer, free_port};
use crate::on_both_backends;
use crate::support::{Backend, spawn_app};

/// Runs `proctor healthcheck ARGS` off the async runtime (the servers under
/// test share it).
async fn healthcheck(args: Vec<String>) -> Output {
    healthcheck_with_listen(args, None).await
}

/// `proctor healthcheck ARGS` with PROCTOR_LISTEN set as a container sets it
/// (or unset).
async fn healthcheck_with_listen(args: Vec<String>, listen: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        match listen {
            Some(l) => cmd.env("PROCTOR_LISTEN", l),
            None => cmd.env_remove("PROCTOR_LISTEN"),
        };
        cmd.arg("healthcheck")
            .args(&args)
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .output()
            .expect("proctor runs")
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

async fn serving_server_passes(b: Backend) {
    let app = spawn_app(b).await;
    let addr = app.addr.to_string();

    let out = healthcheck(vec!["--addr".into(), addr.clone()]).await;
    assert!(out.status.success(), "SERVING passes: {}", stderr(&out));
    assert_eq!(stdout(&out), "SERVING");

    let out = healthcheck(vec![
        "--addr".into(),
        addr.clone(),
        "--service".into(),
        "proctor.v1.InboxService".into(),
    ])
    .await;
    assert!(out.status.success(), "a served service passes: {}", stderr(&out));

    // The health service answers NOT_FOUND for a name it does not serve.
    let out = healthcheck(vec![
        "--addr".into(),
        addr,
        "--service".into(),
        "proctor.v1.NoSuchService".into(),
    ])
    .await;
    assert!(!out.status.success(), "an unknown service fails");

    // Without --addr the probe follows the server's PROCTOR_LISTEN, on
    // loopback when it listens everywhere: the image's HEALTHCHECK relies on
    // it, so moving the port does not break the probe.
    let everywhere = format!("0.0.0.0:{}", app.addr.port());
    let out = healthcheck_with_listen(vec![], Some(everywhere)).await;
    assert!(out.status.success(), "probe on the listen port: {}", stderr(&out));
    let out = healthcheck_with_listen(vec![], Some("0.0.0.0:1".into())).await;
    assert!(!out.status.success(), "another port is not this server");
    app.stop().await;
}
on_both_backends!(healthcheck_passes_on_a_serving_server, serving_server_passes);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_fails_until_migrations_are_applied() {
    let cwd = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", cwd.path().join("p.db").display());
    let server = ProctorServer::start(
        cwd.path(),
        &["--no-migrate"],
        &[("PROCTOR_DATABASE_URL", url.clone())],
    );
    assert!(
        server.wait_health(2, Duration::from_secs(20)).await,
        "NOT_SERVING"
    );
    let addr = format!("127.0.0.1:{}", server.port);

    let out = healthcheck(vec!["--addr".into(), addr.clone()]).await;
    assert!(!out.status.success(), "NOT_SERVING fails");
    assert_eq!(stdout(&out), "NOT_SERVING");

    // Liveness ignores the database: the process is alive, do not restart it.
    let out = healthcheck(vec![
        "--addr".into(),
        addr.clone(),
        "--service".into(),
        proctor::app::LIVENESS_SERVICE.into(),
    ])
    .await;
    assert!(out.status.success(), "liveness passes: {}", stderr(&out));

    let migrated = Command::new(BIN)
        .current_dir(cwd.path())
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(server.wait_health(1, Duration::from_secs(10)).await, "SERVING");

    let out = healthcheck(vec!["--addr".into(), addr]).await;
    assert!(out.status.success(), "SERVING after migrate: {}", stderr(&out));
    server.terminate().assert_clean();
}

#[tokio::test]
async fn healthcheck_fails_fast_when_nobody_listens() {
    let started = Instant::now();
    let out = healthcheck(vec![
        "--addr".into(),
        format!("127.0.0.1:{}", free_port()),
        "--timeout-seconds".into(),
        "2".into(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty(), "no status printed: {}", stdout(&out));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "bounded by the timeout"
    );

    let out = healthcheck(vec!["--addr".into(), "not an address".into()]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("HOST:PORT"), "{}", stderr(&out));
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
        .display()
        .to_string()
}

/// A TLS gRPC server with only the health service, reporting `status`.
async fn tls_health_server(status: ServingStatus) -> (String, oneshot::Sender<()>) {
    let cert = std::fs::read(fixture("server.pem")).unwrap();
    let key = std::fs::read(fixture("server.key")).unwrap();
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("", status).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let router = Server::builder()
        .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
        .unwrap()
        .add_service(service);
    tokio::spawn(async move {
        let _keep = reporter;
        router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (addr.to_string(), stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_speaks_tls_and_verifies_the_server() {
    let (addr, stop) = tls_health_server(ServingStatus::Serving).await;
    let tls = |ca: &str, domain: &str| {
        vec![
            "--addr".to_string(),
            addr.clone(),
            "--tls-ca".into(),
            fixture(ca),
            "--tls-domain".into(),
            domain.into(),
            "--timeout-seconds".into(),
            "3".into(),
        ]
    };

    let out = healthcheck(tls("ca.pem", "localhost")).await;
    assert!(out.status.success(), "trusted CA passes: {}", stderr(&out));
    assert_eq!(stdout(&out), "SERVING");

    let out = healthcheck(tls("other-ca.pem", "localhost")).await;
    assert!(!out.status.success(), "an untrusted CA fails");

    let out = healthcheck(tls("ca.pem", "proctor.elsewhere.example")).await;
    assert!(!out.status.success(), "a name the certificate lacks fails");

    let out = healthcheck(vec![
        "--addr".into(),
        addr.clone(),
        "--timeout-seconds".into(),
        "3".into(),
    ])
    .await;
    assert!(!out.status.success(), "plaintext against TLS fails");
    let _ = stop.send(());

    let (addr, stop) = tls_health_server(ServingStatus::NotServing).await;
    let out = healthcheck(vec![
        "--addr".into(),
        addr,
        "--tls-ca".into(),
        fixture("ca.pem"),
        "--tls-domain".into(),
        "localhost".into(),
    ])
    .await;
    assert!(!out.status.success(), "NOT_SERVING over TLS fails");
    assert_eq!(stdout(&out), "NOT_SERVING");
    let _ = stop.send(());
}
