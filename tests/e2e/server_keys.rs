//! Server secrets across replicas: on PostgreSQL `serve` refuses to start
//! without every key configured (unless `--dev-keys`), the database records
//! the key ids the first server ran with, and a replica with other keys
//! refuses to start, naming the key, instead of answering INTERNAL or
//! computing other subject refs. The embedded SQLite default keeps its
//! development keys.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proctor::app::{Application, StartError};
use proctor::config::Config;
use proctor::proto::v1::{self as pb, compute_subject_ref_request::Identifier};

use crate::cli::{BIN, Server};
use crate::on_both_backends;
use crate::support::{Backend, TestApp, TestDb, TestKeys, authed, ed25519_pem, spawn_with, t0, test_config};

/// Runs `proctor serve ARGS` on a free port and waits for it to exit
/// (killing it after 30 s): its success and stderr, or None if it kept
/// running (it started).
fn serve_exit(cwd: &Path, args: &[&str]) -> Option<(bool, String)> {
    let mut child = Command::new(BIN)
        .current_dir(cwd)
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{}", crate::cli::free_port())])
        .args(args)
        .env_remove("PROCTOR_DATABASE_URL")
        .env_remove("PROCTOR_DEV_KEYS")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("proctor starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return Some((
                status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn jwt_args(keys: &TestKeys) -> Vec<String> {
    ["--jwt-jwks", &keys.jwks_path.display().to_string()]
        .map(str::to_owned)
        .to_vec()
}

#[test]
fn serve_on_postgres_without_secrets_exits_naming_each_setting() {
    if !crate::support::postgres_available() {
        return;
    }
    let db = TestDb::new(Backend::Postgres);
    let keys = TestKeys::new();
    let data = keys.dir.path().join("data");
    let mut args = vec!["--database-url".to_owned(), db.url.clone()];
    args.extend(["--data-dir".to_owned(), data.display().to_string()]);
    args.extend(jwt_args(&keys));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stderr) = serve_exit(keys.dir.path(), &argv).expect("serve exits instead of serving");
    assert!(!ok, "non-zero exit");
    for setting in [
        "--identifier-encryption-key-file",
        "--identifier-hash-key-file",
        "--receipt-signing-key-file",
        "--audit-signing-key-file",
        "PROCTOR_AUDIT_SIGNING_KEY_FILE",
        "--dev-keys",
    ] {
        assert!(stderr.contains(setting), "{setting} not named: {stderr}");
    }
    assert!(
        !data.join("dev-identifier-hash.key").exists(),
        "no development key made"
    );

    // Three of four configured: the message names the one left.
    let secrets = db.secrets.args();
    let without_audit: Vec<&str> = argv
        .iter()
        .copied()
        .chain(secrets[..6].iter().map(String::as_str))
        .collect();
    let (ok, stderr) = serve_exit(keys.dir.path(), &without_audit).expect("serve exits");
    assert!(!ok);
    assert!(stderr.contains("missing: --audit-signing-key-file"), "{stderr}");
    assert!(!stderr.contains("--identifier-hash-key-file ("), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_keys_let_one_replica_serve_on_postgres() {
    if !crate::support::postgres_available() {
        return;
    }
    let db = TestDb::new(Backend::Postgres);
    let keys = TestKeys::new();
    let data = keys.dir.path().join("data");
    let mut args = vec![
        "--database-url".to_owned(),
        db.url.clone(),
        "--data-dir".to_owned(),
    ];
    args.push(data.display().to_string());
    args.extend(jwt_args(&keys));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(keys.dir.path(), &argv, &[("PROCTOR_DEV_KEYS", "true".into())]);
    assert!(
        server.wait_health(1, Duration::from_secs(30)).await,
        "SERVING with --dev-keys"
    );
    for f in [
        "dev-identifier-encryption.keys",
        "dev-identifier-hash.key",
        "dev-receipt-signing-key.pem",
        "dev-audit-signing-key.pem",
    ] {
        assert!(data.join(f).exists(), "{f} created");
    }
    server.terminate().assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_default_makes_its_keys_and_refuses_once_they_are_lost() {
    let cwd = tempfile::tempdir().unwrap();
    let server = Server::start(cwd.path(), &[], &[]);
    assert!(
        server.wait_health(1, Duration::from_secs(30)).await,
        "SERVING on defaults"
    );
    assert!(cwd.path().join("proctor-data/dev-audit-signing-key.pem").exists());
    server.terminate().assert_clean();
    // The same database with its hash key gone: refs would no longer match.
    std::fs::remove_file(cwd.path().join("proctor-data/dev-identifier-hash.key")).unwrap();
    let (ok, stderr) = serve_exit(cwd.path(), &[]).expect("serve exits");
    assert!(!ok);
    assert!(
        stderr.contains("--identifier-hash-key-file: key ") && stderr.contains("not the one this database"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("--identifier-encryption-key-file"),
        "only the hash key differs: {stderr}"
    );
}

async fn subject_ref(app: &TestApp) -> String {
    app.subject_requests()
        .compute_subject_ref(authed(
            pb::ComputeSubjectRefRequest {
                identifier: Some(Identifier::Email("ada@example.org".into())),
                tenant_id: "t1".into(),
            },
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap()
        .into_inner()
        .subject_ref
}

/// A second replica's configuration on `a`'s database, its key files
/// changed by `change`.
fn replica_config(a: &TestApp, keys: &TestKeys, change: impl FnOnce(&mut Config)) -> (TestDb, Config) {
    let db = TestDb::shared_with(&a.db);
    let mut cfg = test_config(&db, keys);
    change(&mut cfg);
    (db, cfg)
}

/// Builds a server with `cfg`; the refusal's message, if it refused.
async fn refusal(cfg: Config) -> Option<String> {
    match Application::build(cfg, proctor::clock::ManualClock::new(t0())).await {
        Ok(_) => None,
        Err(StartError::Config(m)) => Some(m),
        Err(e) => panic!("not a configuration refusal: {e}"),
    }
}

fn write(dir: &Path, name: &str, text: String) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn key_line() -> String {
    format!("{}\n", STANDARD.encode(rand::random::<[u8; 32]>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_the_same_keys_agree_and_others_refuse_to_start() {
    if !crate::support::postgres_available() {
        return;
    }
    let a = crate::support::spawn_app(Backend::Postgres).await;
    let keys = TestKeys::new();
    let (db, cfg) = replica_config(&a, &keys, |_| {});
    let b = spawn_with(db, keys, cfg).await;
    crate::subject_requests::register(&a, "crm", &["contact"]).await;
    let t1 = a.keys.tenant("t1");
    let submitted = a
        .subject_requests()
        .submit_subject_request(authed(
            crate::subject_requests::submit(pb::RequestType::Access, "k1", &[]),
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    let read_on_b = b
        .subject_requests()
        .get_subject_request(authed(
            pb::GetSubjectRequestRequest {
                id: submitted.id.clone(),
            },
            &b.keys.tenant("t1"),
        ))
        .await
        .expect("the other replica opens what this one sealed")
        .into_inner();
    assert_eq!(read_on_b.subject, submitted.subject);
    assert_eq!(subject_ref(&a).await, subject_ref(&b).await);

    let dir = tempfile::tempdir().unwrap();
    let other_hash = write(dir.path(), "hash.key", key_line());
    let keys = TestKeys::new();
    let (_db, cfg) = replica_config(&a, &keys, |c| c.identifier_hash_key_file = Some(other_hash));
    let msg = refusal(cfg).await.expect("another hash key refuses to start");
    assert!(msg.contains("--identifier-hash-key-file: key "), "{msg}");
    assert!(!msg.contains("encryption"), "{msg}");

    let other_ring = write(dir.path(), "ring.keys", key_line());
    let (_db, cfg) = replica_config(&a, &keys, |c| c.identifier_encryption_key_file = Some(other_ring));
    let msg = refusal(cfg)
        .await
        .expect("another encryption key refuses to start");
    assert!(
        msg.contains("--identifier-encryption-key-file: the ring lacks key"),
        "{msg}"
    );

    let other_audit = write(dir.path(), "audit.pem", ed25519_pem());
    let (_db, cfg) = replica_config(&a, &keys, |c| c.audit_signing_key_file = Some(other_audit));
    let msg = refusal(cfg).await.expect("another audit key refuses to start");
    assert!(
        msg.contains("--audit-signing-key-file") && msg.contains("keys adopt"),
        "{msg}"
    );

    // Refusals recorded nothing: b still restarts with the shared keys.
    let keys = TestKeys::new();
    let (db, cfg) = replica_config(&a, &keys, |_| {});
    spawn_with(db, keys, cfg).await.stop().await;
    b.stop().await;
    a.stop().await;
}

/// The key rotation runbook through restarts: the new key second, then
/// first, then alone; a skipped step and a return to a retired key refuse.
async fn the_ring_rotates_through_restarts(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (key_line(), key_line());
    let ring = dir.path().join("ring.keys");
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    cfg.identifier_encryption_key_file = Some(ring.clone());
    let start = |text: String| {
        std::fs::write(&ring, text).unwrap();
        refusal(cfg.clone())
    };
    assert_eq!(start(k1.clone()).await, None);
    // Skipping step 1: k2 first before any ring had it.
    let msg = start(format!("{k2}{k1}")).await.expect("a new first key refuses");
    assert!(msg.contains("is new to this database"), "{msg}");
    assert_eq!(start(format!("{k1}{k2}")).await, None, "step 1");
    assert_eq!(start(k1.clone()).await, None, "a replica not rolled yet");
    assert_eq!(start(format!("{k2}{k1}")).await, None, "step 2");
    assert_eq!(start(format!("{k1}{k2}")).await, None, "a step-1 pod restarting");
    assert_eq!(start(k2.clone()).await, None, "step 4");
    let msg = start(k1.clone()).await.expect("the retired key alone refuses");
    assert!(msg.contains("the ring lacks key"), "{msg}");
}
on_both_backends!(ring_rotates_through_restarts, the_ring_rotates_through_restarts);

/// A signing key rotates only through `proctor keys adopt`.
async fn signing_keys_rotate_by_adopting(b: Backend) {
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let cfg = test_config(&db, &keys);
    assert_eq!(refusal(cfg.clone()).await, None);
    let dir = tempfile::tempdir().unwrap();
    let new_receipt = write(dir.path(), "receipt.pem", ed25519_pem());
    let mut rotated = cfg.clone();
    rotated.receipt_signing_key_file = Some(new_receipt.clone());
    let msg = refusal(rotated.clone())
        .await
        .expect("an unadopted receipt key refuses");
    assert!(msg.contains("--receipt-signing-key-file"), "{msg}");

    let mut adopt = Command::new(BIN);
    adopt
        .args(["keys", "adopt", "--database-url", &db.url])
        .args(["--data-dir", &keys.dir.path().join("data").display().to_string()])
        .env("PROCTOR_IDENTIFIER_ENCRYPTION_KEY_FILE", &db.secrets.encryption)
        .env("PROCTOR_IDENTIFIER_HASH_KEY_FILE", &db.secrets.hash)
        .env("PROCTOR_AUDIT_SIGNING_KEY_FILE", &db.secrets.audit)
        .env("PROCTOR_RECEIPT_SIGNING_KEY_FILE", &new_receipt)
        .env_remove("PROCTOR_DATABASE_URL");
    let out = adopt.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("receipt_signing key ") && stdout.contains(": now current"),
        "{stdout}"
    );
    assert!(
        stdout.contains("audit_signing key ") && stdout.contains(": already current"),
        "{stdout}"
    );

    assert_eq!(refusal(rotated).await, None, "the adopted key starts");
    let msg = refusal(cfg).await.expect("the retired receipt key refuses");
    assert!(msg.contains("--receipt-signing-key-file"), "{msg}");
}
on_both_backends!(signing_key_rotation, signing_keys_rotate_by_adopting);

/// One health call to the server on `port`: SERVING or not (a server that
/// is gone is not).
async fn serving_now(port: u16) -> bool {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let Ok(ch) = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await
    else {
        return false;
    };
    HealthClient::new(ch)
        .check(HealthCheckRequest::default())
        .await
        .is_ok_and(|r| r.into_inner().status == 1)
}

/// With `--no-migrate` on a database without the schema, the keys are
/// checked once the migrations are in: of two replicas with other keys,
/// one serves and the other stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_once_a_late_migration_lands() {
    let cwd = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", cwd.path().join("db/p.db").display());
    let start = |data: &str| {
        Server::start(
            cwd.path(),
            &["--no-migrate", "--data-dir", data],
            &[("PROCTOR_DATABASE_URL", url.clone())],
        )
    };
    // One after the other: SQLite files are created by one process at a time.
    let mut one = start("one");
    assert!(
        one.wait_health(2, Duration::from_secs(20)).await,
        "NOT_SERVING before migrations"
    );
    let mut two = start("two");
    assert!(
        two.wait_health(2, Duration::from_secs(20)).await,
        "NOT_SERVING before migrations"
    );
    let out = Command::new(BIN)
        .current_dir(cwd.path())
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut serving, mut stopped) = (0, 0);
    while Instant::now() < deadline {
        let exits = [&mut one, &mut two].map(|s| s.child.try_wait().unwrap());
        stopped = exits.iter().filter(|e| e.is_some_and(|s| !s.success())).count();
        serving = 0;
        for (s, exit) in [&one, &two].into_iter().zip(exits) {
            if exit.is_none() && serving_now(s.port).await {
                serving += 1;
            }
        }
        if stopped == 1 && serving == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (serving, stopped),
        (1, 1),
        "one serves, the other refuses its keys"
    );
}
