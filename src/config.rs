//! Layered configuration: built-in defaults < TOML file (`--config`) <
//! environment (`PROCTOR_*`) < command-line flags. Every key has a flag and
//! an environment variable of the same name (`--database-url` =
//! `PROCTOR_DATABASE_URL`); the TOML file uses the snake_case key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::telemetry::LogFormat;

/// Default listen address: loopback only, so a development server is not
/// reachable from the network by accident.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// File name of the embedded database in the data folder, used when no
/// database URL is configured.
pub const DEFAULT_DATABASE_FILE: &str = "proctor.db";
/// Default data folder (SQLite file, development keys).
pub const DEFAULT_DATA_DIR: &str = "./proctor-data";
/// Connections per replica on PostgreSQL when none is configured: writers
/// run side by side there, and replicas share the server's
/// `max_connections` (see docs/OPERATIONS.md, sizing).
pub const DEFAULT_POOL_SIZE_POSTGRES: u32 = 16;
/// Connections on SQLite when none is configured. SQLite admits one writer
/// at a time, so more connections only queue writers on its lock (through
/// the busy timeout) instead of in the pool, and each keeps its own page
/// cache: the mixed-load benchmark ran faster, with shorter write tails and
/// less memory growth, with few connections (docs/BENCHMARKS.md).
pub const DEFAULT_POOL_SIZE_SQLITE: u32 = 4;

/// The service's settings once every layer is merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://...`; empty until loaded means SQLite
    /// in the data folder, so moving the data folder moves the database too.
    pub database_url: String,
    /// Folder for the embedded database and development keys.
    pub data_dir: PathBuf,
    /// JSON Web Key Set of accepted public keys.
    pub jwt_jwks: Option<PathBuf>,
    /// Required `iss`, when set.
    pub jwt_issuer: Option<String>,
    /// Required `aud`, when set.
    pub jwt_audience: Option<String>,
    /// HS256 secret file: development only.
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// Clock skew tolerated on `exp`/`nbf`, capped at 30 s.
    pub jwt_leeway_seconds: u64,
    /// Longest token lifetime accepted (`exp - iat`, or `exp - now`); 0 = no limit.
    pub jwt_max_lifetime_seconds: u64,
    /// How often the JWKS file is reread, so keys rotate without a restart; 0 = never.
    pub jwt_jwks_refresh_seconds: u64,
    /// Skip applying migrations on start (a migration job runs them).
    pub no_migrate: bool,
    /// Largest request or response message, bytes.
    pub max_message_bytes: usize,
    /// How long a call may take to answer, seconds; a streamed upload is
    /// bounded per message by it instead (`rpc::deadline`).
    pub request_timeout_seconds: u64,
    /// Most database connections per replica; 0 = the backend's default
    /// (see [`Config::pool_size`]).
    pub db_pool_size: u32,
    /// Most write transactions one replica runs at once on PostgreSQL; 0 =
    /// the default (see [`Config::write_concurrency`]).
    pub db_write_concurrency: u32,
    /// Wait for a database connection before failing UNAVAILABLE, seconds.
    pub db_timeout_seconds: u64,
    /// Time in-flight calls get to finish after SIGTERM, seconds.
    pub shutdown_grace_seconds: u64,
    /// `text` or `json` log lines.
    pub log_format: LogFormat,
    /// Key ring encrypting subject identifiers at rest (one 32-byte key per
    /// line, base64 or hex; the first encrypts).
    pub identifier_encryption_key_file: Option<PathBuf>,
    /// Key of the keyed hash `subject_ref` (>= 32 bytes, base64 or hex).
    pub identifier_hash_key_file: Option<PathBuf>,
    /// Ed25519 PKCS#8 PEM key that signs subject-request receipts.
    pub receipt_signing_key_file: Option<PathBuf>,
    /// Ed25519 PKCS#8 PEM key that signs audit checkpoints.
    pub audit_signing_key_file: Option<PathBuf>,
    /// Allow development keys in the data folder on PostgreSQL (one
    /// replica only); SQLite always allows them.
    pub dev_keys: bool,
    /// Hours an export bundle is kept after its first download.
    pub export_retention_hours: u64,
    /// Screening score at or above which a hit is a possible match (0..1).
    pub screening_review_threshold: f64,
    /// PEM certificate chain served over TLS; with `tls_key`, gRPC is served
    /// over TLS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: when set, every client must present a certificate it
    /// signed (mTLS for platform services).
    pub tls_client_ca: Option<PathBuf>,
    /// Calls per second each caller (a tenant, or a token subject) may make
    /// on average; 0 turns the limit off.
    pub rate_limit_per_second: f64,
    /// Calls a rested caller may make at once above the rate.
    pub rate_limit_burst: f64,
    /// Failed authentications per second one peer address may cause; a
    /// peer over it is refused before its token is read until the budget
    /// refills. 0 turns the limit off.
    pub peer_rate_limit_per_second: f64,
    /// Failed authentications a rested peer address may cause at once.
    pub peer_rate_limit_burst: f64,
    /// Seconds over which refused calls are counted into one audit event
    /// per caller class.
    pub refusal_audit_interval_seconds: u64,
    /// Longest an audit event waits for its leaf index after its command
    /// committed: the sequencer integrates at least this often.
    pub audit_max_merge_delay_ms: u64,
    /// Longest a check carrying a consistency token waits for this replica
    /// to apply the write it names, before it is ABORTED (retryable).
    pub consistency_wait_ms: u64,
    /// Share of ALLOW decisions the decision log records (0.0-1.0); every
    /// DENY is recorded.
    pub decision_log_allow_sample: f64,
    /// Days a logged decision is kept before the sweep deletes it.
    pub decision_log_retention_days: u32,
    /// The origin line of the audit log's checkpoints: names the log, so a
    /// checkpoint of one deployment is never taken for another's.
    pub audit_log_origin: String,
    /// Seconds between the passes that seal rows still holding personal
    /// data in the clear (from before sealing, or from a previous version's
    /// replica); the first runs at start. 0 = never (`proctor keys reseal`
    /// then does it).
    pub seal_clear_interval_seconds: u64,
    /// Server streams one caller (a tenant, or a token subject in its role)
    /// holds open at once; 0 = no cap.
    pub max_streams_per_caller: usize,
    /// Threads of the name-matching pool; 0 = one per core.
    pub screening_threads: usize,
    /// Screenings of one caller matching or queued at once; 0 = one per
    /// matching thread.
    pub screening_jobs_per_caller: usize,
    /// Most rows (CSV records, XML entries) one list import may hold.
    pub max_import_rows: u64,
    /// Sanctions lists proctor downloads itself, each `SOURCE=URL[,URL...]`
    /// (see docs/screening.md); empty = lists are only imported by hand.
    pub list_url: Vec<String>,
    /// Seconds between downloads of the `list_url` lists.
    pub list_refresh_seconds: u64,
    /// Lets a list server redirect a download to an `http://` address;
    /// off, a redirect must stay on `https://`. (The configured `list_url`
    /// itself may be `http://`: it is the operator's choice.)
    pub list_allow_insecure: bool,
    /// Lets a list server redirect a download to a private, loopback,
    /// link-local or other non-public address; off, such a hop is refused
    /// before it is connected to. (The configured `list_url` itself may be
    /// anywhere.)
    pub list_allow_private: bool,
    /// PEM file of CA certificates every outbound call (webhooks, list
    /// downloads) trusts besides the system's: a proxy that inspects TLS,
    /// a mirror with an internal CA.
    pub outbound_ca_file: Option<PathBuf>,
    /// Lets webhooks use `http://` URLs (tests, a receiver inside the
    /// cluster); off, only `https://` is accepted.
    pub webhook_allow_insecure: bool,
    /// Lets webhooks reach private, loopback, link-local and other
    /// non-public addresses (tests); off, such URLs are refused at
    /// `SetWebhook` and such resolved addresses at delivery.
    pub webhook_allow_private: bool,
    /// Seconds before the first retry of a failed delivery (doubling with
    /// each attempt, capped at an hour).
    pub webhook_retry_initial_seconds: u64,
    /// Hours after its envelope was created that a delivery is retried;
    /// then it is FAILED and the envelope waits for `Pull`.
    pub webhook_max_age_hours: u64,
    /// Longest one delivery attempt may take (connect, TLS, request and
    /// response), milliseconds.
    pub webhook_timeout_ms: u64,
    /// Seconds between the delivery job's polls for envelopes other
    /// replicas enqueued (this replica's own wake the job at once).
    pub webhook_poll_seconds: u64,
    /// Seconds before a failed subject-request task is offered again the
    /// first time; each further failure doubles the wait.
    pub task_retry_initial_seconds: u64,
    /// Attempts a subject-request task gets before it needs attention
    /// (no longer offered; the compliance queue is told).
    pub task_max_attempts: u32,
    /// Largest file a platform system may attach to an export task, bytes.
    pub max_artifact_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            database_url: String::new(),
            data_dir: DEFAULT_DATA_DIR.into(),
            jwt_jwks: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_hs256_secret_file: None,
            jwt_leeway_seconds: 30,
            jwt_max_lifetime_seconds: 86_400,
            jwt_jwks_refresh_seconds: 300,
            no_migrate: false,
            max_message_bytes: 4 * 1024 * 1024,
            request_timeout_seconds: 30,
            db_pool_size: 0,
            db_write_concurrency: 0,
            db_timeout_seconds: 3,
            shutdown_grace_seconds: 20,
            log_format: LogFormat::Text,
            identifier_encryption_key_file: None,
            identifier_hash_key_file: None,
            receipt_signing_key_file: None,
            audit_signing_key_file: None,
            dev_keys: false,
            export_retention_hours: 168,
            screening_review_threshold: crate::screening::cases::DEFAULT_REVIEW_THRESHOLD,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            rate_limit_per_second: 0.0,
            rate_limit_burst: 100.0,
            peer_rate_limit_per_second: 20.0,
            peer_rate_limit_burst: 200.0,
            refusal_audit_interval_seconds: 60,
            audit_max_merge_delay_ms: 1000,
            consistency_wait_ms: 1000,
            decision_log_allow_sample: 0.01,
            decision_log_retention_days: 400,
            audit_log_origin: "proctor/audit".into(),
            seal_clear_interval_seconds: 300,
            max_streams_per_caller: 16,
            screening_threads: 0,
            screening_jobs_per_caller: 0,
            max_import_rows: 1_000_000,
            list_url: Vec::new(),
            list_refresh_seconds: 43_200,
            list_allow_insecure: false,
            list_allow_private: false,
            outbound_ca_file: None,
            webhook_allow_insecure: false,
            webhook_allow_private: false,
            webhook_retry_initial_seconds: 5,
            webhook_max_age_hours: 72,
            webhook_timeout_ms: 10_000,
            webhook_poll_seconds: 5,
            task_retry_initial_seconds: 30,
            task_max_attempts: 5,
            max_artifact_bytes: 1 << 30,
        }
    }
}

// Flags are grouped by what they configure; each command flattens only the
// groups it reads, so its `--help` lists its own settings. Each flag is also
// read from its `PROCTOR_*` variable, and unset ones leave the lower layers
// (file, defaults) alone. A new setting goes into the group of the commands
// that read it.

/// Settings every command reads: the configuration file, the data folder
/// (embedded database, development keys) and the log format.
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
#[command(next_help_heading = "Configuration")]
pub struct BaseArgs {
    /// TOML file with the same keys as the flags (snake_case).
    #[arg(long, env = "PROCTOR_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Folder for the embedded database and development keys [default: ./proctor-data].
    #[arg(long, env = "PROCTOR_DATA_DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Log format: text or json [default: text].
    #[arg(long, env = "PROCTOR_LOG_FORMAT", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// Where the database is and how it is connected to.
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
#[command(next_help_heading = "Database")]
pub struct DatabaseArgs {
    /// Database URL [default: sqlite://DATA_DIR/proctor.db].
    #[arg(long, env = "PROCTOR_DATABASE_URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Database connections per replica [default: 4 on SQLite, 16 on PostgreSQL].
    #[arg(long, env = "PROCTOR_DB_POOL_SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_pool_size: Option<u32>,
    /// Seconds to wait for a database connection [default: 3].
    #[arg(long, env = "PROCTOR_DB_TIMEOUT_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_timeout_seconds: Option<u64>,
}

/// The server secrets that seal, hash and sign subject data.
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
#[command(next_help_heading = "Secrets")]
pub struct SecretArgs {
    /// Key ring for subject identifiers at rest: one 32-byte key per line
    /// (base64 or hex), the first encrypts [default: development key in the data folder].
    #[arg(long, env = "PROCTOR_IDENTIFIER_ENCRYPTION_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier_encryption_key_file: Option<PathBuf>,
    /// Key of the keyed hash subject_ref, >= 32 bytes base64 or hex [default: development key in the data folder].
    #[arg(long, env = "PROCTOR_IDENTIFIER_HASH_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier_hash_key_file: Option<PathBuf>,
    /// Ed25519 PKCS#8 PEM key signing receipts [default: development key in the data folder].
    #[arg(long, env = "PROCTOR_RECEIPT_SIGNING_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_signing_key_file: Option<PathBuf>,
    /// Ed25519 PKCS#8 PEM key signing audit checkpoints [required on PostgreSQL, unless dev keys are allowed; else a development key in the data folder].
    #[arg(long, env = "PROCTOR_AUDIT_SIGNING_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_signing_key_file: Option<PathBuf>,
    /// Allow development keys in the data folder on PostgreSQL, for ONE replica only
    /// (without it, serve on PostgreSQL needs every key file).
    #[arg(long, env = "PROCTOR_DEV_KEYS")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dev_keys: bool,
}

/// What tokens are minted for and checked against: issuer, audience and
/// the development HS256 secret (`token mint` and `serve`).
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
#[command(next_help_heading = "Tokens")]
pub struct TokenArgs {
    /// Required token issuer (`iss`).
    #[arg(long, env = "PROCTOR_JWT_ISSUER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_issuer: Option<String>,
    /// Required token audience (`aud`).
    #[arg(long, env = "PROCTOR_JWT_AUDIENCE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_audience: Option<String>,
    /// File with an HS256 secret (>= 32 bytes), for development only.
    #[arg(long, env = "PROCTOR_JWT_HS256_SECRET_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_hs256_secret_file: Option<PathBuf>,
}

/// How the server verifies tokens: the trusted keys and the time rules.
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
#[command(next_help_heading = "Token verification")]
pub struct JwtArgs {
    /// JSON Web Key Set file of accepted public keys (RS256, ES256, EdDSA).
    #[arg(long, env = "PROCTOR_JWT_JWKS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_jwks: Option<PathBuf>,
    /// Clock skew tolerated on exp/nbf, seconds (at most 30) [default: 30].
    #[arg(long, env = "PROCTOR_JWT_LEEWAY_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_leeway_seconds: Option<u64>,
    /// Longest token lifetime accepted, exp - iat (or exp - now without iat), seconds; 0 = no limit [default: 86400].
    #[arg(long, env = "PROCTOR_JWT_MAX_LIFETIME_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_max_lifetime_seconds: Option<u64>,
    /// Seconds between rereads of the JWKS file, so keys rotate without a restart; 0 = never [default: 300].
    #[arg(long, env = "PROCTOR_JWT_JWKS_REFRESH_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_jwks_refresh_seconds: Option<u64>,
}

/// Screening settings shared by the server and `lists import`.
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
#[command(next_help_heading = "Screening")]
pub struct ScreeningArgs {
    /// Screening review threshold, 0..1 [default: 0.8; see docs/screening.md].
    #[arg(long, env = "PROCTOR_SCREENING_REVIEW_THRESHOLD")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screening_review_threshold: Option<f64>,
    /// Most rows (CSV records, XML entries) of one list import [default: 1000000].
    #[arg(long, env = "PROCTOR_MAX_IMPORT_ROWS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_import_rows: Option<u64>,
}

/// The server's own settings: listening, limits, TLS, retention.
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
#[command(next_help_heading = "Server")]
pub struct ServerArgs {
    /// A sanctions list to download and import itself, SOURCE=URL (a multi-file source: SOURCE=URL,URL,...); repeatable [default: none].
    #[arg(long = "list-url", env = "PROCTOR_LIST_URL", value_name = "SOURCE=URL")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub list_url: Vec<String>,
    /// Seconds between downloads of the --list-url lists [default: 43200].
    #[arg(long, env = "PROCTOR_LIST_REFRESH_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list_refresh_seconds: Option<u64>,
    /// Let a list server redirect a download to an http:// address; otherwise redirects must stay on https:// (the --list-url itself may be http://).
    #[arg(long, env = "PROCTOR_LIST_ALLOW_INSECURE")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub list_allow_insecure: bool,
    /// Let a list server redirect a download to a private, loopback or other non-public address (the --list-url itself may be anywhere).
    #[arg(long, env = "PROCTOR_LIST_ALLOW_PRIVATE")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub list_allow_private: bool,
    /// PEM file of extra CA certificates that webhooks and list downloads trust besides the system's (a TLS-inspecting proxy, an internal CA) [default: none].
    #[arg(long, env = "PROCTOR_OUTBOUND_CA_FILE", value_name = "PEM")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outbound_ca_file: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long, env = "PROCTOR_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Largest gRPC message, bytes [default: 4194304].
    #[arg(long, env = "PROCTOR_MAX_MESSAGE_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<usize>,
    /// Request timeout, seconds [default: 30].
    #[arg(long, env = "PROCTOR_REQUEST_TIMEOUT_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_seconds: Option<u64>,
    /// Most write transactions at once on PostgreSQL; the others wait in
    /// proctor [default: twice the cores, at most the pool size].
    #[arg(long, env = "PROCTOR_DB_WRITE_CONCURRENCY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_write_concurrency: Option<u32>,
    /// Seconds in-flight calls get after SIGTERM [default: 20].
    #[arg(long, env = "PROCTOR_SHUTDOWN_GRACE_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_seconds: Option<u64>,
    /// Hours an export bundle is kept after its first download [default: 168].
    #[arg(long, env = "PROCTOR_EXPORT_RETENTION_HOURS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_retention_hours: Option<u64>,
    /// PEM certificate chain; with --tls-key, serve gRPC over TLS only.
    #[arg(long, env = "PROCTOR_TLS_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "PROCTOR_TLS_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle; when set, clients must present a certificate it signed (mTLS).
    #[arg(long, env = "PROCTOR_TLS_CLIENT_CA")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
    /// Calls per second per tenant (or per token subject), 0 = unlimited [default: 0].
    #[arg(long, env = "PROCTOR_RATE_LIMIT_PER_SECOND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<f64>,
    /// Calls a rested caller may burst above the rate [default: 100].
    #[arg(long, env = "PROCTOR_RATE_LIMIT_BURST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_burst: Option<f64>,
    /// Failed authentications per second per peer address; over it, the peer is refused before authentication, 0 = unlimited [default: 20].
    #[arg(long, env = "PROCTOR_PEER_RATE_LIMIT_PER_SECOND")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_rate_limit_per_second: Option<f64>,
    /// Failed authentications a rested peer address may burst above its rate [default: 200].
    #[arg(long, env = "PROCTOR_PEER_RATE_LIMIT_BURST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_rate_limit_burst: Option<f64>,
    /// Seconds over which refused calls are counted into one audit event per caller class [default: 60].
    #[arg(long, env = "PROCTOR_REFUSAL_AUDIT_INTERVAL_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal_audit_interval_seconds: Option<u64>,
    /// Longest an audit event waits after its commit for its leaf in the log's Merkle tree, in milliseconds [default: 1000].
    #[arg(long, env = "PROCTOR_AUDIT_MAX_MERGE_DELAY_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_max_merge_delay_ms: Option<u64>,
    /// Longest a check with a consistency token waits for this replica to apply its write, in milliseconds [default: 1000].
    #[arg(long, env = "PROCTOR_CONSISTENCY_WAIT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_wait_ms: Option<u64>,
    /// Share of ALLOW decisions recorded in the decision log, 0.0-1.0; every DENY is [default: 0.01].
    #[arg(long, env = "PROCTOR_DECISION_LOG_ALLOW_SAMPLE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_log_allow_sample: Option<f64>,
    /// Days a logged decision is kept [default: 400].
    #[arg(long, env = "PROCTOR_DECISION_LOG_RETENTION_DAYS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_log_retention_days: Option<u32>,
    /// Origin line of the audit log's signed checkpoints (names this log) [default: proctor/audit].
    #[arg(long, env = "PROCTOR_AUDIT_LOG_ORIGIN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_log_origin: Option<String>,
    /// Seconds between passes sealing rows still in the clear, first at start; 0 = never [default: 300].
    #[arg(long, env = "PROCTOR_SEAL_CLEAR_INTERVAL_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal_clear_interval_seconds: Option<u64>,
    /// Server streams one caller holds open at once, 0 = no cap [default: 16].
    #[arg(long, env = "PROCTOR_MAX_STREAMS_PER_CALLER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_streams_per_caller: Option<usize>,
    /// Threads matching names, apart from the request threads, 0 = one per core [default: 0].
    #[arg(long, env = "PROCTOR_SCREENING_THREADS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screening_threads: Option<usize>,
    /// Screenings one caller has matching or queued at once, 0 = one per screening thread [default: 0].
    #[arg(long, env = "PROCTOR_SCREENING_JOBS_PER_CALLER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screening_jobs_per_caller: Option<usize>,
    /// Seconds before a failed subject-request task is offered again, doubling with each further failure [default: 30].
    #[arg(long, env = "PROCTOR_TASK_RETRY_INITIAL_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_retry_initial_seconds: Option<u64>,
    /// Attempts a subject-request task gets before it needs attention [default: 5].
    #[arg(long, env = "PROCTOR_TASK_MAX_ATTEMPTS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_max_attempts: Option<u32>,
    /// Largest file attached to an export task, bytes [default: 1073741824].
    #[arg(long, env = "PROCTOR_MAX_ARTIFACT_BYTES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_artifact_bytes: Option<u64>,
}

/// Push delivery to tenants' webhooks (docs/webhooks.md).
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
#[command(next_help_heading = "Webhooks")]
pub struct WebhookArgs {
    /// Accept http:// webhook URLs (tests; a receiver inside the cluster); otherwise https:// only.
    #[arg(long, env = "PROCTOR_WEBHOOK_ALLOW_INSECURE")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub webhook_allow_insecure: bool,
    /// Let webhooks reach private, loopback, link-local and other non-public addresses (tests).
    #[arg(long, env = "PROCTOR_WEBHOOK_ALLOW_PRIVATE")]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub webhook_allow_private: bool,
    /// Seconds before the first retry of a failed delivery, doubling, capped at 1 h [default: 5].
    #[arg(long, env = "PROCTOR_WEBHOOK_RETRY_INITIAL_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_retry_initial_seconds: Option<u64>,
    /// Hours after an envelope's creation its delivery is retried, then FAILED (the envelope stays for Pull) [default: 72].
    #[arg(long, env = "PROCTOR_WEBHOOK_MAX_AGE_HOURS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_max_age_hours: Option<u64>,
    /// Longest one delivery attempt may take, milliseconds [default: 10000].
    #[arg(long, env = "PROCTOR_WEBHOOK_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_timeout_ms: Option<u64>,
    /// Seconds between polls for envelopes other replicas enqueued [default: 5].
    #[arg(long, env = "PROCTOR_WEBHOOK_POLL_SECONDS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_poll_seconds: Option<u64>,
}

/// Every setting `serve` reads: all the groups.
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub base: BaseArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub secrets: SecretArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub tokens: TokenArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub jwt: JwtArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub screening: ScreeningArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub webhooks: WebhookArgs,
}

/// A group of flags as the settings it overrides, so a command can merge
/// the groups it has without one struct per command.
pub trait FlagGroup {
    /// The flags given, by setting name.
    fn settings(&self) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError>;
}

impl<T: Serialize> FlagGroup for T {
    fn settings(&self) -> Result<serde_json::Map<String, serde_json::Value>, ConfigError> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            Ok(_) => Ok(serde_json::Map::new()),
            Err(e) => Err(ConfigError(e.to_string())),
        }
    }
}

/// The configuration is unusable.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

/// Whether a database URL names PostgreSQL (by its scheme); the one test
/// of it, shared by the store and the pool default so they cannot disagree.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The address a probe on the same host (the image's HEALTHCHECK, an exec
/// probe) calls to reach a server listening on `listen`: the same address,
/// except that a server listening on every interface is called on loopback,
/// which every network namespace has. Derived rather than configured so that
/// moving the port cannot leave the probe behind.
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

impl Config {
    /// The `list_url` sources, parsed (checked when the configuration
    /// loaded).
    pub fn list_urls(&self) -> Vec<crate::screening::refresh::ListUrl> {
        self.list_url
            .iter()
            .filter_map(|l| crate::screening::refresh::ListUrl::parse(l).ok())
            .collect()
    }

    /// Where a list download may be redirected (`list_allow_*`), kept
    /// apart from the webhooks' policy: a tenant chooses a webhook's URL,
    /// the operator a list's, and a list server where it redirects.
    pub fn list_policy(&self) -> crate::outbound::policy::UrlPolicy {
        crate::outbound::policy::UrlPolicy {
            allow_insecure: self.list_allow_insecure,
            allow_private: self.list_allow_private,
        }
    }

    /// The connection pool's size: the configured one, or the default of
    /// the backend the database URL names.
    pub fn pool_size(&self) -> u32 {
        match self.db_pool_size {
            0 if is_postgres_url(&self.database_url) => DEFAULT_POOL_SIZE_POSTGRES,
            0 => DEFAULT_POOL_SIZE_SQLITE,
            n => n,
        }
    }

    /// How many write transactions run at once on PostgreSQL: the
    /// configured number, else twice the cores this replica has, and never
    /// more than the pool. Past the point where the database's cores are
    /// busy, more concurrent transactions only queue inside PostgreSQL,
    /// where each waiting one is a backend process taking turns on the
    /// cores with everything else (decision reads included); waiting in
    /// proctor costs nothing, and the commits still group.
    pub fn write_concurrency(&self) -> u32 {
        let pool = self.pool_size().max(1);
        match self.db_write_concurrency {
            0 => {
                let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
                (2 * cores).max(2).min(pool)
            }
            n => n.min(pool),
        }
    }

    /// Merges defaults < `file` < `overrides`.
    pub fn load(file: Option<&Path>, overrides: &impl Serialize) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError(format!("config file {} does not exist", f.display())));
            }
            fig = fig.merge(Toml::file_exact(f));
        }
        let mut cfg: Config = fig
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        if cfg.database_url.trim().is_empty() {
            cfg.database_url = format!("sqlite://{}", cfg.data_dir.join(DEFAULT_DATABASE_FILE).display());
        }
        cfg.check()?;
        Ok(cfg)
    }

    /// Loads from parsed flags (their env variables included).
    pub fn from_args(args: &ConfigArgs) -> Result<Self, ConfigError> {
        Self::load(args.base.config.as_deref(), args)
    }

    /// Loads from the flag groups a command has (see [`BaseArgs`]): the
    /// others keep their file or default values.
    pub fn from_groups(base: &BaseArgs, groups: &[&dyn FlagGroup]) -> Result<Self, ConfigError> {
        let mut all = serde_json::Map::new();
        for g in std::iter::once(base as &dyn FlagGroup).chain(groups.iter().copied()) {
            all.extend(g.settings()?);
        }
        Self::load(base.config.as_deref(), &all)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.max_message_bytes < 1024 {
            return Err(ConfigError("max_message_bytes must be at least 1024".into()));
        }
        if self.request_timeout_seconds == 0 {
            return Err(ConfigError("request_timeout_seconds must be positive".into()));
        }
        if !(self.screening_review_threshold > 0.0 && self.screening_review_threshold <= 1.0) {
            return Err(ConfigError("screening_review_threshold must be in (0, 1]".into()));
        }
        if !(self.rate_limit_per_second >= 0.0 && self.rate_limit_per_second.is_finite()) {
            return Err(ConfigError(
                "rate_limit_per_second must be 0 (off) or positive".into(),
            ));
        }
        if !(self.rate_limit_burst >= 1.0 && self.rate_limit_burst.is_finite()) {
            return Err(ConfigError("rate_limit_burst must be at least 1".into()));
        }
        if !(self.peer_rate_limit_per_second >= 0.0 && self.peer_rate_limit_per_second.is_finite()) {
            return Err(ConfigError(
                "peer_rate_limit_per_second must be 0 (off) or positive".into(),
            ));
        }
        if !(self.peer_rate_limit_burst >= 1.0 && self.peer_rate_limit_burst.is_finite()) {
            return Err(ConfigError("peer_rate_limit_burst must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.decision_log_allow_sample) {
            return Err(ConfigError(
                "decision_log_allow_sample must be between 0.0 and 1.0".into(),
            ));
        }
        if self.decision_log_retention_days == 0 || self.decision_log_retention_days > 36_500 {
            return Err(ConfigError(
                "decision_log_retention_days must be between 1 and 36500".into(),
            ));
        }
        if self.consistency_wait_ms > 60_000 {
            return Err(ConfigError("consistency_wait_ms must be at most 60000".into()));
        }
        if self.audit_max_merge_delay_ms == 0 || self.audit_max_merge_delay_ms > 60_000 {
            return Err(ConfigError(
                "audit_max_merge_delay_ms must be between 1 and 60000".into(),
            ));
        }
        if !signed_note::is_key_name_valid(&self.audit_log_origin) {
            return Err(ConfigError(
                "audit_log_origin must be non-empty, without spaces or '+'".into(),
            ));
        }
        if self.refusal_audit_interval_seconds == 0 {
            return Err(ConfigError(
                "refusal_audit_interval_seconds must be positive".into(),
            ));
        }
        if self.webhook_retry_initial_seconds == 0 || self.webhook_retry_initial_seconds > 3600 {
            return Err(ConfigError(
                "webhook_retry_initial_seconds must be between 1 and 3600".into(),
            ));
        }
        if self.webhook_max_age_hours == 0 || self.webhook_max_age_hours > 24 * 30 {
            return Err(ConfigError(
                "webhook_max_age_hours must be between 1 and 720".into(),
            ));
        }
        if self.webhook_timeout_ms < 100 || self.webhook_timeout_ms > 120_000 {
            return Err(ConfigError(
                "webhook_timeout_ms must be between 100 and 120000".into(),
            ));
        }
        if self.webhook_poll_seconds == 0 {
            return Err(ConfigError("webhook_poll_seconds must be positive".into()));
        }
        if self.task_retry_initial_seconds == 0 {
            return Err(ConfigError("task_retry_initial_seconds must be positive".into()));
        }
        if self.task_max_attempts == 0 {
            return Err(ConfigError("task_max_attempts must be at least 1".into()));
        }
        if self.max_artifact_bytes == 0 {
            return Err(ConfigError("max_artifact_bytes must be positive".into()));
        }
        if self.max_import_rows == 0 {
            return Err(ConfigError("max_import_rows must be at least 1".into()));
        }
        if self.list_refresh_seconds == 0 {
            return Err(ConfigError("list_refresh_seconds must be positive".into()));
        }
        let mut sources = Vec::new();
        for l in &self.list_url {
            let parsed = crate::screening::refresh::ListUrl::parse(l).map_err(ConfigError)?;
            if sources.contains(&parsed.source) {
                return Err(ConfigError(format!("--list-url names {} twice", parsed.source)));
            }
            sources.push(parsed.source);
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError("tls_cert and tls_key must be given together".into()));
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(ConfigError("tls_client_ca needs tls_cert and tls_key".into()));
        }
        if self.jwt_leeway_seconds > crate::auth::jwt::MAX_LEEWAY_SECONDS {
            return Err(ConfigError("jwt_leeway_seconds must be at most 30".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pool_size_follows_the_backend_unless_configured() {
        let with = |url: &str, n: u32| {
            super::Config {
                database_url: url.into(),
                db_pool_size: n,
                ..super::Config::default()
            }
            .pool_size()
        };
        assert_eq!(with("sqlite://p.db", 0), super::DEFAULT_POOL_SIZE_SQLITE);
        assert_eq!(with("postgres://h/db", 0), super::DEFAULT_POOL_SIZE_POSTGRES);
        assert_eq!(with("postgresql://h/db", 0), super::DEFAULT_POOL_SIZE_POSTGRES);
        assert_eq!(with("sqlite://p.db", 9), 9);
        assert_eq!(with("postgres://h/db", 2), 2);
    }
    #[test]
    fn write_concurrency_is_bounded_by_the_pool() {
        let with = |pool: u32, n: u32| {
            super::Config {
                database_url: "postgres://h/db".into(),
                db_pool_size: pool,
                db_write_concurrency: n,
                ..super::Config::default()
            }
            .write_concurrency()
        };
        assert_eq!(with(16, 3), 3);
        assert_eq!(with(4, 9), 4, "never more than the pool");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get() as u32);
        assert_eq!(with(64, 0), (2 * cores).max(2));
        assert_eq!(with(1, 0), 1);
    }

    #[test]
    fn probes_call_loopback_when_listening_everywhere() {
        let probe = |l: &str| super::probe_addr(l.parse().unwrap()).to_string();
        assert_eq!(probe("0.0.0.0:7000"), "127.0.0.1:7000");
        assert_eq!(probe("[::]:7000"), "[::1]:7000");
        assert_eq!(probe("10.1.2.3:50051"), "10.1.2.3:50051");
        assert_eq!(probe(super::DEFAULT_LISTEN), super::DEFAULT_LISTEN);
    }

    use super::*;

    #[test]
    fn the_embedded_database_follows_the_data_folder() {
        let none = ConfigArgs::default();
        assert_eq!(
            Config::load(None, &none).unwrap().database_url,
            "sqlite://./proctor-data/proctor.db"
        );
        let moved = ConfigArgs {
            base: BaseArgs {
                data_dir: Some("/var/lib/proctor".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            Config::load(None, &moved).unwrap().database_url,
            "sqlite:///var/lib/proctor/proctor.db"
        );
        let both = ConfigArgs {
            base: BaseArgs {
                data_dir: Some("/var/lib/proctor".into()),
                ..Default::default()
            },
            database: DatabaseArgs {
                database_url: Some("postgres://db/proctor".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            Config::load(None, &both).unwrap().database_url,
            "postgres://db/proctor"
        );
    }

    #[test]
    fn layers_merge_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(
            &file,
            "database_url = \"sqlite://from-file.db\"\ndb_pool_size = 3\n",
        )
        .unwrap();
        let args = ConfigArgs {
            database: DatabaseArgs {
                db_pool_size: Some(9),
                ..Default::default()
            },
            ..Default::default()
        };
        let c = Config::load(Some(&file), &args).unwrap();
        assert_eq!(c.database_url, "sqlite://from-file.db");
        assert_eq!(c.db_pool_size, 9);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn unknown_key_and_missing_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, "databse_url = \"x\"\n").unwrap();
        assert!(Config::load(Some(&file), &ConfigArgs::default()).is_err());
        assert!(Config::load(Some(&dir.path().join("none.toml")), &ConfigArgs::default()).is_err());
    }

    #[test]
    fn tls_files_come_together() {
        let server = |s: ServerArgs| ConfigArgs {
            server: s,
            ..Default::default()
        };
        let only_cert = server(ServerArgs {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        });
        assert!(Config::from_args(&only_cert).is_err());
        let ca_alone = server(ServerArgs {
            tls_client_ca: Some("ca.pem".into()),
            ..Default::default()
        });
        assert!(Config::from_args(&ca_alone).is_err());
        let full = server(ServerArgs {
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            tls_client_ca: Some("ca.pem".into()),
            ..Default::default()
        });
        assert!(Config::from_args(&full).is_ok());
    }

    #[test]
    fn leeway_is_capped() {
        let args = ConfigArgs {
            jwt: JwtArgs {
                jwt_leeway_seconds: Some(31),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(Config::from_args(&args).is_err());
    }

    #[test]
    fn groups_override_only_their_own_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.toml");
        std::fs::write(&file, "db_pool_size = 3\nlisten = \"127.0.0.1:7000\"\n").unwrap();
        let base = BaseArgs {
            config: Some(file),
            ..Default::default()
        };
        let db = DatabaseArgs {
            db_pool_size: Some(5),
            ..Default::default()
        };
        let c = Config::from_groups(&base, &[&db, &SecretArgs::default()]).unwrap();
        assert_eq!(c.db_pool_size, 5);
        assert_eq!(c.listen.to_string(), "127.0.0.1:7000", "the file still applies");
    }

    #[test]
    fn list_urls_are_operator_configuration() {
        let with = |urls: &[&str], s: ServerArgs| {
            Config::from_args(&ConfigArgs {
                server: ServerArgs {
                    list_url: urls.iter().map(|u| (*u).to_owned()).collect(),
                    ..s
                },
                ..Default::default()
            })
        };
        let c = with(&["eu_fsf=https://lists.example/fsf.xml"], ServerArgs::default()).unwrap();
        assert!(!c.list_allow_insecure && !c.list_allow_private);
        assert_eq!(c.list_urls().len(), 1);
        let loopback = ["eu_fsf=http://127.0.0.1:8080/fsf.xml"];
        assert_eq!(
            with(&loopback, ServerArgs::default()).unwrap().list_urls().len(),
            1,
            "API.md: http:// and any address are allowed"
        );
        let twice = [
            "eu_fsf=https://a.example/fsf.xml",
            "eu_fsf=https://b.example/fsf.xml",
        ];
        assert!(with(&twice, ServerArgs::default()).is_err());
    }

    #[test]
    fn webhook_settings_default_as_documented_and_are_bounded() {
        let c = Config::from_args(&ConfigArgs::default()).unwrap();
        assert!(!c.webhook_allow_insecure && !c.webhook_allow_private);
        assert_eq!(
            (
                c.webhook_retry_initial_seconds,
                c.webhook_max_age_hours,
                c.webhook_timeout_ms
            ),
            (5, 72, 10_000)
        );
        let with = |w: WebhookArgs| {
            Config::from_args(&ConfigArgs {
                webhooks: w,
                ..Default::default()
            })
        };
        let on = with(WebhookArgs {
            webhook_allow_insecure: true,
            webhook_allow_private: true,
            webhook_max_age_hours: Some(1),
            ..Default::default()
        })
        .unwrap();
        assert!(on.webhook_allow_insecure && on.webhook_allow_private);
        assert_eq!(on.webhook_max_age_hours, 1);
        for bad in [
            WebhookArgs {
                webhook_retry_initial_seconds: Some(0),
                ..Default::default()
            },
            WebhookArgs {
                webhook_max_age_hours: Some(0),
                ..Default::default()
            },
            WebhookArgs {
                webhook_timeout_ms: Some(10),
                ..Default::default()
            },
            WebhookArgs {
                webhook_poll_seconds: Some(0),
                ..Default::default()
            },
        ] {
            assert!(with(bad.clone()).is_err(), "{bad:?} accepted");
        }
    }
}
