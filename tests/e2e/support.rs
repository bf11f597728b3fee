//! The test harness: `spawn_app` starts a server on port 0 over a fresh
//! database (a SQLite file in a temp folder, or a fresh PostgreSQL schema),
//! with signing keys generated for the test and a manual clock. Each
//! database comes with its deployment's server secrets (key files every
//! replica on it is configured with), as production configures them.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{TimeZone, Utc};
use diesel::{Connection, RunQueryDsl, pg::PgConnection};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proctor::app::Application;
use proctor::auth::jwt::Claims;
use proctor::clock::{Clock, ManualClock};
use proctor::config::Config;
use proctor::db::Store;
use proctor::proto::v1::audit_service_client::AuditServiceClient;
use proctor::proto::v1::breach_service_client::BreachServiceClient;
use proctor::proto::v1::disclosure_service_client::DisclosureServiceClient;
use proctor::proto::v1::inbox_service_client::InboxServiceClient;
use proctor::proto::v1::instruction_service_client::InstructionServiceClient;
use proctor::proto::v1::screening_service_client::ScreeningServiceClient;
use proctor::proto::v1::sub_processor_service_client::SubProcessorServiceClient;
use proctor::proto::v1::subject_request_service_client::SubjectRequestServiceClient;
use proctor::proto::v1::webhook_service_client::WebhookServiceClient;
use tokio::sync::oneshot;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Base URL of the test PostgreSQL.
pub fn pg_base_url() -> String {
    std::env::var("PROCTOR_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether PostgreSQL tests run. PostgreSQL must answer: an unreachable
/// server fails the test, so a run without it can never pass as green.
/// Only `PROCTOR_TEST_SKIP_POSTGRES=1` (never under `CI=true`) skips the
/// PostgreSQL half, and says so loudly on every test it skips.
pub fn postgres_available() -> bool {
    let skip = std::env::var("PROCTOR_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    match PgConnection::establish(&pg_base_url()) {
        Ok(_) => true,
        Err(e) if skip && !ci => {
            eprintln!(
                "SKIPPED (PROCTOR_TEST_SKIP_POSTGRES=1): PostgreSQL at {} is unreachable ({e}); this test's PostgreSQL half did not run",
                pg_base_url()
            );
            false
        }
        Err(e) => panic!(
            "PostgreSQL at {} is unreachable: {e}. Start it, point PROCTOR_TEST_POSTGRES_URL at one, or set PROCTOR_TEST_SKIP_POSTGRES=1 (outside CI) to skip the PostgreSQL half",
            pg_base_url()
        ),
    }
}

/// Generates `#[tokio::test]`s `sqlite` and `postgres` in a module named
/// after the scenario, each calling `$body(Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::support::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::support::postgres_available() {
                    super::$body($crate::support::Backend::Postgres).await;
                }
            }
        }
    };
}

/// A deployment's server secrets: the four key files, generated for the
/// test, that every replica on one database is configured with.
pub struct ServerSecrets {
    _dir: tempfile::TempDir,
    pub encryption: PathBuf,
    pub hash: PathBuf,
    pub receipt: PathBuf,
    pub audit: PathBuf,
}

/// A fresh Ed25519 key as PKCS#8 PEM.
pub fn ed25519_pem() -> String {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
        .to_pkcs8_pem(LineEnding::LF)
        .unwrap()
        .to_string()
}

impl ServerSecrets {
    /// New random keys in their own folder.
    pub fn new() -> Self {
        use base64::engine::general_purpose::STANDARD;
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let encryption = file(
            "encryption.keys",
            format!("{}\n", STANDARD.encode(rand::random::<[u8; 32]>())),
        );
        let hash = file(
            "hash.key",
            format!("{}\n", STANDARD.encode(rand::random::<[u8; 32]>())),
        );
        let receipt = file("receipt.pem", ed25519_pem());
        let audit = file("audit.pem", ed25519_pem());
        Self {
            _dir: dir,
            encryption,
            hash,
            receipt,
            audit,
        }
    }

    /// Sets the four key files in `cfg`.
    pub fn configure(&self, cfg: &mut Config) {
        cfg.identifier_encryption_key_file = Some(self.encryption.clone());
        cfg.identifier_hash_key_file = Some(self.hash.clone());
        cfg.receipt_signing_key_file = Some(self.receipt.clone());
        cfg.audit_signing_key_file = Some(self.audit.clone());
    }

    /// The same as `proctor` flags.
    pub fn args(&self) -> Vec<String> {
        [
            ("--identifier-encryption-key-file", &self.encryption),
            ("--identifier-hash-key-file", &self.hash),
            ("--receipt-signing-key-file", &self.receipt),
            ("--audit-signing-key-file", &self.audit),
        ]
        .into_iter()
        .flat_map(|(flag, p)| [flag.to_owned(), p.display().to_string()])
        .collect()
    }
}

/// A fresh database of `backend`: its URL, its deployment's secrets, and
/// what removes it afterwards.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    pub secrets: Arc<ServerSecrets>,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("proctor.db").display());
                Self {
                    url,
                    backend,
                    secrets: Arc::new(ServerSecrets::new()),
                    schema: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
                let mut c = PgConnection::establish(&pg_base_url()).unwrap();
                diesel::sql_query(format!("CREATE SCHEMA {schema}"))
                    .execute(&mut c)
                    .unwrap();
                let sep = if pg_base_url().contains('?') { '&' } else { '?' };
                let url = format!("{}{sep}options=-csearch_path%3D{schema}", pg_base_url());
                Self {
                    url,
                    backend,
                    secrets: Arc::new(ServerSecrets::new()),
                    schema: Some(schema),
                    _dir: None,
                }
            }
        }
    }

    /// The same database and secrets, for a second server; dropping it
    /// removes nothing.
    pub fn shared_with(other: &TestDb) -> Self {
        Self {
            url: other.url.clone(),
            backend: other.backend,
            secrets: other.secrets.clone(),
            schema: None,
            _dir: None,
        }
    }

    /// Runs raw SQL against this database (to tamper with rows, say).
    pub fn execute(&self, sql: &str) {
        match self.backend {
            Backend::Postgres => {
                let mut c = PgConnection::establish(&self.url).unwrap();
                diesel::sql_query(sql).execute(&mut c).unwrap();
            }
            Backend::Sqlite => {
                let path = self.url.trim_start_matches("sqlite://");
                let mut c = diesel::sqlite::SqliteConnection::establish(path).unwrap();
                // The server's writer may be committing a group right now:
                // wait for it as the server's own connections do.
                diesel::sql_query("PRAGMA busy_timeout = 10000")
                    .execute(&mut c)
                    .unwrap();
                diesel::sql_query(sql).execute(&mut c).unwrap();
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let (Some(s), Ok(mut c)) = (&self.schema, PgConnection::establish(&pg_base_url())) {
            let _ = diesel::sql_query(format!("DROP SCHEMA {s} CASCADE")).execute(&mut c);
        }
    }
}

/// Keys the test signs tokens with; the server trusts their JWKS.
pub struct TestKeys {
    pub dir: tempfile::TempDir,
    pub jwks_path: PathBuf,
    ed: EncodingKey,
    /// The clock of the server these keys sign for (it starts at [`t0`]):
    /// tokens are minted on it, as the server verifies them on it.
    pub clock: Arc<ManualClock>,
    /// Mint on the wall clock instead: for a server started as a process,
    /// which runs on the wall clock.
    wall: bool,
    /// How long a minted token lives, in seconds.
    lifetime: i64,
}

impl TestKeys {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let pem = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
        let jwks = serde_json::json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "test-ed", "alg": "EdDSA"}]});
        let jwks_path = dir.path().join("jwks.json");
        std::fs::write(&jwks_path, jwks.to_string()).unwrap();
        Self {
            dir,
            jwks_path,
            ed: EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
            clock: ManualClock::new(t0()),
            wall: false,
            lifetime: 10 * 366 * 86_400,
        }
    }

    /// Keys whose server clock starts at `start` instead of [`t0`]: for
    /// tests whose peers check times against the wall clock (a webhook
    /// receiver refuses signatures more than five minutes old).
    pub fn at(start: chrono::DateTime<Utc>) -> Self {
        Self {
            clock: ManualClock::new(start),
            ..Self::new()
        }
    }

    /// Keys whose tokens live an hour on the test clock: for a server that
    /// keeps the lifetime cap.
    pub fn short_lived() -> Self {
        Self {
            lifetime: 3600,
            ..Self::new()
        }
    }

    /// Keys for a server started as a process (on the wall clock): its
    /// tokens live an hour from now, within the default lifetime cap.
    pub fn for_process() -> Self {
        Self {
            wall: true,
            lifetime: 3600,
            ..Self::new()
        }
    }

    /// Signs arbitrary claims with the trusted key.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some("test-ed".into());
        jsonwebtoken::encode(&h, claims, &self.ed).unwrap()
    }

    /// A valid token for `sub` with `roles` (and `tenant`), living the
    /// keys' lifetime from now on their clock. [`TestKeys::new`] tokens live
    /// ten years, so a test may hold one while it moves the clock by days
    /// (test servers run without the lifetime cap, see [`test_config`]).
    pub fn token(&self, sub: &str, roles: &[&str], tenant: Option<&str>) -> String {
        let now = if self.wall {
            Utc::now().timestamp()
        } else {
            self.clock.now().timestamp()
        };
        let exp = now + self.lifetime;
        let claims = Claims {
            sub: sub.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            tenant_id: tenant.map(Into::into),
            exp,
            nbf: None,
            iat: None,
            iss: Some("https://issuer.test".into()),
            aud: Some("proctor".into()),
        };
        self.sign(&serde_json::to_value(claims).unwrap())
    }

    pub fn tenant(&self, t: &str) -> String {
        self.token(&format!("user-of-{t}"), &["tenant"], Some(t))
    }
    pub fn platform(&self, system: &str) -> String {
        self.token(system, &["platform"], None)
    }
    pub fn compliance(&self) -> String {
        self.token("compliance-officer", &["compliance"], None)
    }
    pub fn sre(&self) -> String {
        self.token("oncall", &["sre"], None)
    }
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub channel: Channel,
    pub clock: Arc<ManualClock>,
    pub keys: TestKeys,
    pub store: Store,
    pub db: TestDb,
    /// What the server was built with (its key files, say).
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

/// The instant every test clock starts at.
pub fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap()
}

/// Base configuration of a test server on `db`, with `db`'s secrets.
pub fn test_config(db: &TestDb, keys: &TestKeys) -> Config {
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url.clone(),
        data_dir: keys.dir.path().join("data"),
        jwt_jwks: Some(keys.jwks_path.clone()),
        jwt_issuer: Some("https://issuer.test".into()),
        jwt_audience: Some("proctor".into()),
        db_pool_size: 8,
        shutdown_grace_seconds: 5,
        // Test tokens outlive the clock moves of a test (see
        // `TestKeys::token`); the cap has tests of its own.
        jwt_max_lifetime_seconds: 0,
        ..Config::default()
    };
    db.secrets.configure(&mut cfg);
    cfg
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let db = TestDb::new(backend);
    let keys = TestKeys::new();
    let cfg = test_config(&db, &keys);
    spawn_with(db, keys, cfg).await
}

pub async fn spawn_with(db: TestDb, keys: TestKeys, cfg: Config) -> TestApp {
    let clock = keys.clock.clone();
    let config = cfg.clone();
    let app = Application::build(cfg, clock.clone())
        .await
        .expect("server builds");
    let addr = app.local_addr();
    let store = app.store().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let app = TestApp {
        addr,
        channel,
        clock,
        keys,
        store,
        db,
        config,
        stop: Some(tx),
        handle: Some(handle),
    };
    app.wait_serving().await;
    app
}

/// A typed client of each service on the app's channel, so a test says
/// which service it calls and not how a client is built.
impl TestApp {
    pub fn inbox(&self) -> InboxServiceClient<Channel> {
        InboxServiceClient::new(self.channel.clone())
    }

    pub fn instructions(&self) -> InstructionServiceClient<Channel> {
        InstructionServiceClient::new(self.channel.clone())
    }

    pub fn audit(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.channel.clone())
    }

    pub fn breaches(&self) -> BreachServiceClient<Channel> {
        BreachServiceClient::new(self.channel.clone())
    }

    pub fn disclosures(&self) -> DisclosureServiceClient<Channel> {
        DisclosureServiceClient::new(self.channel.clone())
    }

    pub fn subject_requests(&self) -> SubjectRequestServiceClient<Channel> {
        SubjectRequestServiceClient::new(self.channel.clone())
    }

    pub fn subprocessors(&self) -> SubProcessorServiceClient<Channel> {
        SubProcessorServiceClient::new(self.channel.clone())
    }

    pub fn screening(&self) -> ScreeningServiceClient<Channel> {
        ScreeningServiceClient::new(self.channel.clone())
    }

    pub fn webhooks(&self) -> WebhookServiceClient<Channel> {
        WebhookServiceClient::new(self.channel.clone())
    }

    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }
}

impl TestApp {
    /// Waits until the sequencer has placed every audit event written so
    /// far in the Merkle tree (it runs right after each commit).
    pub async fn audit_settled(&self) {
        for _ in 0..500 {
            let waiting = self
                .store
                .read("test.audit_settled", |c, _| {
                    proctor::audit::repo::oldest_unsequenced(c)
                })
                .await
                .expect("the audit log reads");
            if waiting.is_none() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("audit events were not sequenced within 10 s");
    }
}

impl TestApp {
    /// Waits until health says SERVING (migrations applied, database up).
    pub async fn wait_serving(&self) {
        use tonic_health::pb::HealthCheckRequest;
        let mut h = self.health();
        for _ in 0..100 {
            let status = h
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|r| r.into_inner().status);
            if status.is_ok_and(|s| s == 1) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("server never became SERVING");
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap();
        }
    }
}

/// The audit log as compliance reads it (the first 1,000 events): what
/// tests check for who did what, and for personal data that must not be
/// there.
/// Leases (up to 100 of) what waits in the inbox of `token`'s owner, for
/// `lease_seconds`; nothing is acknowledged.
pub async fn pull_inbox(app: &TestApp, token: &str, lease_seconds: u32) -> Vec<proctor::proto::v1::Envelope> {
    app.inbox()
        .pull(authed(
            proctor::proto::v1::PullRequest {
                max: 100,
                lease_seconds,
            },
            token,
        ))
        .await
        .expect("the inbox answers")
        .into_inner()
        .envelopes
}

pub async fn audit_events(app: &TestApp) -> Vec<proctor::proto::v1::AuditEvent> {
    app.audit()
        .list_audit_events(authed(
            proctor::proto::v1::ListAuditEventsRequest {
                page_size: 1000,
                ..Default::default()
            },
            &app.keys.compliance(),
        ))
        .await
        .expect("compliance reads the audit log")
        .into_inner()
        .events
}

/// The fields an INVALID_ARGUMENT names in its `BadRequest` details, in
/// order: what clients show next to each input.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .expect("INVALID_ARGUMENT carries BadRequest details")
        .field_violations
        .into_iter()
        .map(|f| f.field)
        .collect()
}

/// Wraps `msg` with a bearer token.
pub fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    r
}

/// Moves the clock past the refusal interval (60 s by default) and waits
/// for the flusher to write the counted refusals: the `auth.refused`
/// events, one per caller class. The log lists an event once the sequencer
/// has given it a leaf, which happens after the flusher's commit, so this
/// waits (real time, bounded) for them to appear.
pub async fn flushed_refusals(app: &TestApp) -> Vec<proctor::proto::v1::AuditEvent> {
    // One round of the flusher after the window is due writes it.
    app.clock.advance_settled(chrono::Duration::seconds(61)).await;
    let refused = || async {
        audit_events(app)
            .await
            .into_iter()
            .filter(|e| e.action == "auth.refused")
            .collect::<Vec<_>>()
    };
    for _ in 0..500 {
        if !refused().await.is_empty() {
            // The flusher writes every class in one transaction; a moment
            // more lets the sequencer place all of its events.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            return refused().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the refused calls were never written to the audit log");
}

/// The JSON detail of a counted-refusals event.
pub fn refusal_detail(e: &proctor::proto::v1::AuditEvent) -> serde_json::Value {
    serde_json::from_str(&e.detail).expect("auth.refused detail is JSON")
}

/// How many refusals of class `outcome` the events count together.
pub fn refused_count(events: &[proctor::proto::v1::AuditEvent], outcome: &str) -> u64 {
    events
        .iter()
        .map(|e| refusal_detail(e)["outcomes"][outcome].as_u64().unwrap_or(0))
        .sum()
}
