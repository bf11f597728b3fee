//! The server as a library: [`Application::build`] connects, migrates, loads
//! keys and binds; [`Application::run_until`] serves until a shutdown signal.
//! `main` and the end-to-end tests both use it (tests bind port 0 and pass a
//! manual clock).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::jwt::Verifier;
use crate::auth::keys;
use crate::auth::layer::{AuditHook, AuthLayer};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::db::{Store, StoreOptions};
use crate::instructions::snapshots::Decisions;
use crate::periodic::CancellationToken;
use crate::proto::v1::audit_service_server::AuditServiceServer;
use crate::proto::v1::breach_service_server::BreachServiceServer;
use crate::proto::v1::disclosure_service_server::DisclosureServiceServer;
use crate::proto::v1::inbox_service_server::InboxServiceServer;
use crate::proto::v1::instruction_service_server::InstructionServiceServer;
use crate::proto::v1::screening_service_server::ScreeningServiceServer;
use crate::proto::v1::sub_processor_service_server::SubProcessorServiceServer;
use crate::proto::v1::subject_request_service_server::SubjectRequestServiceServer;
use crate::proto::v1::webhook_service_server::WebhookServiceServer;
use crate::rpc::AppState;
use crate::rpc::bucket::RateLimit;
use crate::secrets::SubjectSecrets;
use crate::telemetry::layer::GrpcTraceLayer;
use crate::telemetry::rpc_metrics::RpcMetrics;

/// Health name that reports the process alone: SERVING from start until
/// exit, whatever the database does. Liveness probes use it, so a database
/// outage makes replicas unready (`""`) without restarting them all.
pub const LIVENESS_SERVICE: &str = "liveness";

/// How often health re-checks the database.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Names reported by the health service besides the overall `""`.
const SERVED: &[&str] = &[
    "proctor.v1.InboxService",
    "proctor.v1.AuditService",
    "proctor.v1.InstructionService",
    "proctor.v1.BreachService",
    "proctor.v1.DisclosureService",
    "proctor.v1.SubjectRequestService",
    "proctor.v1.ScreeningService",
    "proctor.v1.SubProcessorService",
    "proctor.v1.WebhookService",
];

/// The server could not start or stopped on an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration (keys, files).
    #[error("{0}")]
    Config(String),
    /// The database could not be reached or migrated.
    #[error("database: {0}")]
    Database(#[from] crate::error::Error),
    /// Listening failed.
    #[error("listen: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A built server, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    config: Config,
    store: Store,
    verifier: Arc<Verifier>,
    jwks_path: Option<std::path::PathBuf>,
    subject_secrets: Arc<SubjectSecrets>,
    /// Whether the keys were checked against the database's records at
    /// build; if not (schema behind with `no_migrate`), health checks them
    /// once the migrations are in, and a refusal stops the server.
    keys_checked: bool,
    tls: Option<ServerTlsConfig>,
}

/// Checks the secrets' key ids against the ones the database recorded, and
/// records them on a first start ([`crate::secrets::server_keys_repo`]): a
/// replica whose keys differ gets a configuration error naming each key.
pub async fn check_server_keys(store: &Store, secrets: &SubjectSecrets) -> Result<(), StartError> {
    let ids = secrets.key_ids();
    store
        .write("server_keys.verify", move |c, clock| {
            crate::secrets::server_keys_repo::verify_and_record(c, clock.now(), &ids)
        })
        .await
        .map_err(|e| match e {
            crate::error::Error::WrongState(m) => StartError::Config(m),
            e => StartError::Database(e),
        })
}

/// Reads the TLS files named in the configuration: `None` when TLS is off;
/// with a client CA, every client must present a certificate it signed.
pub fn load_tls(config: &Config) -> Result<Option<ServerTlsConfig>, StartError> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| StartError::Config(format!("cannot read {}: {e}", p.display())))
    };
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(tls))
}

/// Reads and parses a JWKS file.
fn read_jwks(path: &std::path::Path) -> Result<jsonwebtoken::jwk::JwkSet, String> {
    let raw =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read JWKS {}: {e}", path.display()))?;
    serde_json::from_str(&raw).map_err(|e| format!("bad JWKS {}: {e}", path.display()))
}

/// The verifier's rules from the configuration.
fn token_rules(config: &Config) -> crate::auth::jwt::Rules {
    crate::auth::jwt::Rules {
        issuer: config.jwt_issuer.clone(),
        audience: config.jwt_audience.clone(),
        leeway_seconds: config.jwt_leeway_seconds,
        max_lifetime_seconds: config.jwt_max_lifetime_seconds,
    }
}

/// Builds the token verifier from the configuration, with the JWKS file it
/// read (to be reread for rotation); with no key configured, creates (or
/// reuses) the development key in the data folder.
pub fn load_verifier(
    config: &Config,
    clock: SharedClock,
) -> Result<(Verifier, Option<std::path::PathBuf>), StartError> {
    let hs = match &config.jwt_hs256_secret_file {
        Some(p) => Some(
            std::fs::read(p)
                .map(|b| b.trim_ascii().to_vec())
                .map_err(|e| StartError::Config(format!("cannot read {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let jwks_path = match (&config.jwt_jwks, &hs) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(_)) => None,
        (None, None) => {
            let (paths, created) = keys::ensure_dev_key(&config.data_dir)
                .map_err(|e| StartError::Config(format!("cannot create development key: {e}")))?;
            tracing::warn!(
                jwks = %paths.jwks.display(),
                created,
                "NO JWT KEY CONFIGURED: using the DEVELOPMENT key in the data folder; \
                 mint tokens with `proctor token mint`. Never run like this in production."
            );
            Some(paths.jwks)
        }
    };
    let jwks = match &jwks_path {
        Some(p) => Some(read_jwks(p).map_err(StartError::Config)?),
        None => None,
    };
    let verifier = Verifier::new(jwks.as_ref(), hs.as_deref(), token_rules(config))
        .map_err(|e| StartError::Config(e.to_string()))?
        .with_clock(clock);
    Ok((verifier, jwks_path))
}

/// Rereads the JWKS file every `every` (on `clock`), so a key added to or
/// removed from it takes effect without a restart. A file that cannot be
/// read or used is logged and the last good keys stay.
async fn refresh_jwks(
    verifier: Arc<Verifier>,
    path: std::path::PathBuf,
    every: Duration,
    clock: SharedClock,
    stop: CancellationToken,
) {
    let last_text = std::sync::Mutex::new(std::fs::read_to_string(&path).ok());
    let mut first = true;
    crate::periodic::every("jwks_reread", every, &clock, &stop, || {
        // The file was read at start; the first reread is one period later.
        let skip = std::mem::take(&mut first);
        let (verifier, path, last_text) = (&verifier, &path, &last_text);
        async move {
            if !skip {
                reread_jwks(verifier, path, last_text);
            }
            Ok(0)
        }
    })
    .await;
}

/// One reread of the JWKS file: replaces the keys when the text changed
/// and is usable; otherwise logs and keeps the last good keys.
fn reread_jwks(verifier: &Verifier, path: &std::path::Path, last_text: &std::sync::Mutex<Option<String>>) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(jwks = %path.display(), error = %e, "cannot reread the JWKS; keeping the last good keys");
            return;
        }
    };
    let mut last = last_text.lock().unwrap_or_else(|p| p.into_inner());
    if last.as_deref() == Some(text.as_str()) {
        return;
    }
    let replaced = serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(&text)
        .map_err(|e| e.to_string())
        .and_then(|set| verifier.replace_jwks(&set).map_err(|e| e.to_string()));
    match replaced {
        Ok(n) => {
            tracing::info!(jwks = %path.display(), keys = n, "JWKS reloaded");
            *last = Some(text);
        }
        Err(e) => {
            tracing::warn!(jwks = %path.display(), error = %e, "unusable JWKS; keeping the last good keys")
        }
    }
}

/// Connects to the configured database.
pub fn connect_store(config: &Config, clock: SharedClock) -> Result<Store, StartError> {
    let opts = StoreOptions {
        pool_size: config.pool_size(),
        write_concurrency: config.write_concurrency(),
        connect_timeout: Duration::from_secs(config.db_timeout_seconds.max(1)),
    };
    Ok(Store::connect(&config.database_url, &opts, clock)?)
}

impl Application {
    /// Connects, migrates (unless `no_migrate`), loads keys and binds.
    pub async fn build(config: Config, clock: SharedClock) -> Result<Self, StartError> {
        let store = connect_store(&config, clock)?;
        if !config.no_migrate {
            let applied = store.migrate().await?;
            if !applied.is_empty() {
                tracing::info!(count = applied.len(), "applied migrations");
            }
        }
        let (verifier, jwks_path) = load_verifier(&config, store.clock().clone())?;
        let verifier = Arc::new(verifier);
        let subject_secrets = Arc::new(SubjectSecrets::load(&config).map_err(StartError::Config)?);
        let keys_checked = store.migrations_current().await?;
        if keys_checked {
            check_server_keys(&store, &subject_secrets).await?;
        }
        let tls = load_tls(&config)?;
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Self {
            listener,
            config,
            store,
            verifier,
            jwks_path,
            subject_secrets,
            keys_checked,
            tls,
        })
    }

    /// The bound address (the real port when the config asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// The database handle, for tests that inspect or prepare state.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` resolves, then stops accepting calls and
    /// gives in-flight ones `shutdown_grace_seconds` to finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        let Self {
            listener,
            config,
            store,
            verifier,
            jwks_path,
            subject_secrets,
            keys_checked,
            tls,
        } = self;
        let stop = CancellationToken::new();
        // Every way out of here (a refusal, an error) stops the jobs too.
        let _stop_on_exit = stop.clone().drop_guard();
        let decisions = Decisions::start(store.clone()).await;
        decisions.set_consistency_wait(Duration::from_millis(config.consistency_wait_ms));
        decisions.clone().follow(stop.clone());
        let refusals = crate::audit::refusals::Refusals::new(
            store.clone(),
            Duration::from_secs(config.refusal_audit_interval_seconds),
        );
        tokio::spawn(refusals.clone().run(stop.clone()));
        if let (Some(path), true) = (jwks_path, config.jwt_jwks_refresh_seconds > 0) {
            let every = Duration::from_secs(config.jwt_jwks_refresh_seconds);
            tokio::spawn(refresh_jwks(
                verifier.clone(),
                path,
                every,
                store.clock().clone(),
                stop.clone(),
            ));
        }
        let signer = crate::audit::checkpoint::CheckpointSigner::new(
            &config.audit_log_origin,
            subject_secrets.clone(),
        );
        crate::audit::sequencer::spawn(
            store.clone(),
            signer.clone(),
            Duration::from_millis(config.audit_max_merge_delay_ms),
            stop.clone(),
        );
        let audit_log = std::sync::Arc::new(crate::audit::service::AuditLog::new(signer));
        let (decision_log, decision_rx) = crate::instructions::decision_log::DecisionLog::new(
            config.decision_log_allow_sample,
            crate::instructions::decision_log::QUEUE_CAPACITY,
        );
        tokio::spawn(crate::instructions::decision_log::run_writer(
            store.clone(),
            subject_secrets.clone(),
            decision_rx,
            stop.clone(),
        ));
        tokio::spawn(crate::instructions::jobs::sweep_decision_log(
            store.clone(),
            chrono::Duration::days(i64::from(config.decision_log_retention_days)),
            stop.clone(),
        ));
        let state = AppState {
            decision_log,
            audit_log,
            store: store.clone(),
            stopping: stop.clone(),
            decisions: decisions.clone(),
            secrets: subject_secrets.clone(),
            refusals: refusals.clone(),
            streams: crate::rpc::streams::StreamSlots::new(config.max_streams_per_caller),
            settings_hints: Default::default(),
            forwards: Default::default(),
        };

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_service_status("", ServingStatus::NotServing).await;
        health
            .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
            .await;
        let (refuse_tx, refuse_rx) = oneshot::channel();
        let key_gate = (!keys_checked).then(|| (subject_secrets.clone(), refuse_tx));
        tokio::spawn(watch_health(
            health,
            store.clone(),
            decisions.clone(),
            key_gate,
            stop.clone(),
        ));
        let refused = async move {
            match refuse_rx.await {
                Ok(msg) => msg,
                Err(_) => std::future::pending().await,
            }
        };
        let export_retention = chrono::Duration::hours(
            i64::try_from(config.export_retention_hours).unwrap_or(i64::MAX / 3_600_000_000),
        );
        tokio::spawn(crate::subject_requests::jobs::sweep_exports(
            store.clone(),
            export_retention,
            stop.clone(),
        ));
        tokio::spawn(crate::subject_requests::jobs::contract_end_erasures(
            store.clone(),
            subject_secrets.clone(),
            stop.clone(),
        ));
        tokio::spawn(crate::subject_requests::jobs::expire_leases(
            store.clone(),
            subject_secrets.clone(),
            crate::subject_requests::model::TaskPolicy {
                retry_initial_seconds: config.task_retry_initial_seconds,
                max_attempts: config.task_max_attempts,
            },
            stop.clone(),
        ));
        tokio::spawn(crate::instructions::jobs::end_run_out_holds(
            store.clone(),
            stop.clone(),
        ));
        tokio::spawn(crate::disclosures::jobs::release_notices(
            store.clone(),
            subject_secrets.clone(),
            stop.clone(),
        ));
        // One trust store for every outbound call, so a bad CA file stops
        // the start rather than failing each delivery and download.
        let trust = crate::outbound::trust::Trust::load(config.outbound_ca_file.as_deref())
            .map_err(StartError::Config)?;
        let webhook_policy = crate::outbound::policy::UrlPolicy {
            allow_insecure: config.webhook_allow_insecure,
            allow_private: config.webhook_allow_private,
        };
        let webhook_retry = crate::webhooks::model::RetryPolicy {
            initial: chrono::Duration::seconds(
                i64::try_from(config.webhook_retry_initial_seconds).unwrap_or(3600),
            ),
            max_age: chrono::Duration::hours(i64::try_from(config.webhook_max_age_hours).unwrap_or(720)),
        };
        let webhook_timeout = Duration::from_millis(config.webhook_timeout_ms);
        tokio::spawn(crate::webhooks::jobs::deliver(
            store.clone(),
            subject_secrets.clone(),
            crate::webhooks::jobs::Settings {
                retry: webhook_retry,
                outbound: crate::outbound::Client::new(
                    trust.clone(),
                    webhook_policy,
                    webhook_timeout,
                    crate::webhooks::jobs::USER_AGENT,
                ),
                timeout: webhook_timeout,
                poll: Duration::from_secs(config.webhook_poll_seconds),
            },
            stop.clone(),
        ));
        if config.seal_clear_interval_seconds > 0 {
            tokio::spawn(crate::subject_requests::jobs::seal_clear_rows(
                store.clone(),
                subject_secrets.clone(),
                Duration::from_secs(config.seal_clear_interval_seconds),
                stop.clone(),
            ));
        }

        // A no-op meter unless telemetry::init turned metric export on.
        let meter = opentelemetry::global::meter("proctor");
        let _pool_gauges = crate::telemetry::gauges::register_pool(&meter, &store);
        let _write_groups = crate::telemetry::gauges::register_write_groups(&meter, &store);
        if let Some(every) = crate::telemetry::metrics_sample_interval() {
            crate::telemetry::gauges::spawn_sampler(&meter, store.clone(), every, stop.clone());
        }

        // One descriptor set, complete with the google.rpc error details and
        // their imports, for both reflection versions (old grpcurl, Postman
        // and Python's grpcio-reflection speak v1alpha) and for Connect.
        let schema = Arc::new(crate::rpc::connect::Schema::load().map_err(StartError::Config)?);
        let descriptors = schema.encoded();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(&descriptors)
            .build_v1()
            .map_err(|e| StartError::Config(format!("reflection: {e}")))?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(&descriptors)
            .build_v1alpha()
            .map_err(|e| StartError::Config(format!("reflection: {e}")))?;

        let counter = refusals.clone();
        let hook: AuditHook = Arc::new(move |entry| counter.record(&entry));

        let live = crate::screening::live::LiveIndex::new(store.clone());
        if let Err(e) = live.refresh().await {
            tracing::warn!(error = %e, "screening indexes not loaded at start; the poller retries");
        }
        live.spawn_poller(stop.clone());
        let pool = crate::screening::match_pool::MatchPool::new(
            config.screening_threads,
            config.screening_jobs_per_caller,
        )
        .map_err(StartError::Config)?;
        let screener =
            crate::screening::live::NameScreener::new(live, config.screening_review_threshold, pool);
        let lists = config.list_urls();
        if !lists.is_empty() {
            tokio::spawn(crate::screening::jobs::refresh_lists(
                crate::screening::jobs::ListRefresh::new(
                    state.clone(),
                    screener.clone(),
                    lists,
                    config.max_import_rows,
                    crate::screening::jobs::download_client(trust, config.list_policy()),
                ),
                Duration::from_secs(config.list_refresh_seconds),
                stop.clone(),
            ));
        }

        let max = config.max_message_bytes;
        let tls_on = tls.is_some();
        let mut server = Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls)?;
        }
        let router = server
            // curl speaks HTTP/1.1 unless told otherwise; gRPC keeps HTTP/2.
            .accept_http1(true)
            .layer(crate::rpc::connect::ConnectLayer::new(schema, max))
            .layer(GrpcTraceLayer::new(RpcMetrics::new(&meter)))
            .layer(crate::rpc::limits::MessageLimitLayer)
            .layer(crate::rpc::rate_limit::PeerRateLimitLayer::new(
                RateLimit::new(config.peer_rate_limit_per_second, config.peer_rate_limit_burst),
                store.clock().clone(),
                hook.clone(),
            ))
            .layer(AuthLayer::new(verifier, hook))
            .layer(crate::rpc::consistency::ConsistencyLayer)
            .layer(crate::rpc::rate_limit::RateLimitLayer::new(
                RateLimit::new(config.rate_limit_per_second, config.rate_limit_burst),
                store.clock().clone(),
            ))
            // Innermost, where tonic's own server timeout sat: it bounds the
            // handler, and the layers above see (and trace) its answer.
            .layer(crate::rpc::deadline::DeadlineLayer::new(Duration::from_secs(
                config.request_timeout_seconds,
            )))
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(
                InboxServiceServer::new(crate::inbox::grpc::Inbox::new(state.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                InstructionServiceServer::new(crate::instructions::grpc::Instructions::new(state.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                BreachServiceServer::new(crate::breaches::grpc::Breaches::new(state.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                DisclosureServiceServer::new(crate::disclosures::grpc::Disclosures::new(state.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                AuditServiceServer::new(crate::audit::grpc::Audit::new(state.clone()))
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                SubjectRequestServiceServer::new(
                    crate::subject_requests::grpc::SubjectRequests::new(state.clone(), export_retention)
                        .with_limits(crate::subject_requests::model::Limits {
                            tasks: crate::subject_requests::model::TaskPolicy {
                                retry_initial_seconds: config.task_retry_initial_seconds,
                                max_attempts: config.task_max_attempts,
                            },
                            max_artifact_bytes: config.max_artifact_bytes,
                            upload_idle: Duration::from_secs(config.request_timeout_seconds),
                        }),
                )
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            )
            .add_service(
                ScreeningServiceServer::new(crate::screening::grpc::Screening::new(
                    state.clone(),
                    screener.clone(),
                    config.max_import_rows,
                ))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            )
            .add_service(
                SubProcessorServiceServer::new(crate::subprocessors::grpc::SubProcessors::new(
                    state.clone(),
                    screener,
                ))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            )
            .add_service(
                WebhookServiceServer::new(crate::webhooks::grpc::Webhooks::new(
                    state.clone(),
                    webhook_policy,
                    webhook_retry,
                ))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            );

        let stopped = stop.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight calls");
            stop.cancel();
        };
        let grace = Duration::from_secs(config.shutdown_grace_seconds);
        tracing::info!(listen = %listener.local_addr()?, backend = store.backend(), tls = tls_on, "proctor serving");
        // Accepted sockets get TCP_NODELAY: tonic only sets it on listeners it
        // binds itself, and without it a response split over two writes waits
        // for the peer's delayed ACK (40 ms on Linux).
        let incoming = TcpListenerStream::new(listener).map(|s| {
            s.and_then(|s| {
                s.set_nodelay(true)?;
                Ok(s)
            })
        });
        let serve = router.serve_with_incoming_shutdown(incoming, signal);
        tokio::select! {
            res = serve => res?,
            msg = refused => {
                tracing::error!("stopping: {msg}");
                return Err(StartError::Config(msg));
            }
            _ = async {
                stopped.cancelled().await;
                tokio::time::sleep(grace).await;
            } => tracing::warn!("grace period over; dropping remaining calls"),
        }
        // Refusals counted while the last calls finished.
        refusals.flush(true).await;
        Ok(())
    }
}

/// Reports SERVING only while migrations are applied, the decision
/// snapshots are loaded and the database answers; NOT_SERVING otherwise, so load balancers route around a replica
/// that lost its database. With a `key_gate`, the keys are checked once
/// the migrations are in; a refusal is sent on it and ends the watch.
async fn watch_health(
    health: HealthReporter,
    store: Store,
    decisions: Arc<Decisions>,
    key_gate: Option<(Arc<SubjectSecrets>, oneshot::Sender<String>)>,
    stopping: CancellationToken,
) {
    let state = tokio::sync::Mutex::new(HealthState {
        migrated: false,
        key_gate,
        refused: false,
    });
    let (health, store, decisions, state) = (&health, &store, &decisions, &state);
    // Health is probed in real time, in tests too.
    let wall = crate::periodic::wall();
    crate::periodic::every("health", HEALTH_INTERVAL, &wall, &stopping, move || async move {
        let mut state = state.lock().await;
        if state.check(store, decisions).await {
            report_health(health, ServingStatus::Serving).await;
        } else if !state.refused {
            report_health(health, ServingStatus::NotServing).await;
        }
        Ok(0)
    })
    .await;
    if !state.lock().await.refused {
        report_health(health, ServingStatus::NotServing).await;
    }
}

/// What the health watch remembers between rounds.
struct HealthState {
    migrated: bool,
    key_gate: Option<(Arc<SubjectSecrets>, oneshot::Sender<String>)>,
    /// The keys were refused: the server is stopping, nothing more is reported.
    refused: bool,
}

impl HealthState {
    /// One health round: whether this replica can serve now.
    async fn check(&mut self, store: &Store, decisions: &Decisions) -> bool {
        if self.refused {
            return false;
        }
        if !self.migrated {
            self.migrated = store.migrations_current().await.unwrap_or(false);
            if let (true, Some((secrets, _))) = (self.migrated, &self.key_gate) {
                match check_server_keys(store, secrets).await {
                    Ok(()) => self.key_gate = None,
                    Err(StartError::Config(msg)) => {
                        if let Some((_, refuse)) = self.key_gate.take() {
                            let _ = refuse.send(msg);
                        }
                        self.refused = true;
                        return false;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "server keys not checked yet; retrying");
                        self.migrated = false;
                    }
                }
            }
        }
        self.migrated && decisions.ready() && store.ping().await.is_ok()
    }
}

/// Sets `status` on the overall service and every served one.
async fn report_health(health: &HealthReporter, status: ServingStatus) {
    for name in std::iter::once("").chain(SERVED.iter().copied()) {
        health.set_service_status(name, status).await;
    }
}
