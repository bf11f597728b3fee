//! The `proctor` command: parses the command line, loads configuration,
//! starts telemetry, and hands over to the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use proctor::app::{Application, connect_store};
use proctor::auth::jwt::Claims;
use proctor::auth::{Role, keys};
use proctor::clock::SystemClock;
use proctor::config::{BaseArgs, Config, ConfigArgs, DatabaseArgs, ScreeningArgs, SecretArgs, TokenArgs};

/// proctor: processor-compliance service (controller instructions,
/// sub-processors, screening, subject requests, breaches, audit).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server.
    Serve {
        #[command(flatten)]
        config: Box<ConfigArgs>,
        /// Do not apply migrations on start (a migration job does).
        #[arg(long, env = "PROCTOR_NO_MIGRATE")]
        no_migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        base: BaseArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Probe `grpc.health.v1.Health/Check` and exit 0 only on SERVING: the
    /// container HEALTHCHECK and exec probes run it, since the image has no
    /// shell or grpcurl.
    Healthcheck(HealthcheckArgs),
    /// Print the `subject_ref` (keyed hash) of one identifier, as
    /// `CheckProcessing` takes it, using the configured identifier hash key.
    SubjectRef {
        /// Tenant the person belongs to (refs are per tenant).
        #[arg(long)]
        tenant: String,
        /// Email address.
        #[arg(long, group = "identifier")]
        email: Option<String>,
        /// Phone number in international form (+...).
        #[arg(long, group = "identifier")]
        phone: Option<String>,
        /// The tenant's own id for the person.
        #[arg(long, group = "identifier")]
        external_id: Option<String>,
        #[command(flatten)]
        base: BaseArgs,
        #[command(flatten)]
        secrets: SecretArgs,
    },
    /// Development tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Sanctioned-party lists.
    Lists {
        #[command(subcommand)]
        command: ListsCommand,
    },
    /// The identifier key ring (identifiers, exports, case answers and notes
    /// sealed at rest).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The verifiable audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole audit log in the configured database, offline,
    /// against a checkpoint saved earlier (`GetCheckpoint`'s text): its
    /// signature under the verifier key, every event against the Merkle
    /// tree, the tree against the latest signed checkpoint, and that the
    /// log still extends the saved one. Exits non-zero unless all hold.
    Verify {
        /// File holding the saved checkpoint text.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The log's C2SP note verifier key (`GetAuditLogKey`), or a file
        /// holding it.
        #[arg(long)]
        verifier_key: String,
        #[command(flatten)]
        base: BaseArgs,
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Re-encrypt everything sealed with the identifier key ring under its
    /// first (active) key, in batches beside running servers, so older keys
    /// can then be removed from the ring. Every server must already have the
    /// new key in its ring (see docs/OPERATIONS.md, "Key rotation").
    Reseal {
        /// Rows of each kind per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(i64).range(1..=10_000))]
        batch: i64,
        /// Who is resealing, for the audit log.
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
        /// Reseal even though no row shows yet that the servers run with
        /// the active key (a fresh rotation with no writes since).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Count the sealed rows per key; fails while any row is not under the
    /// active key (keys other than the first must then stay in the ring).
    Status {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Make the configured receipt and audit signing keys the ones the
    /// database expects, to rotate a signing key: run it with the new key
    /// files, then roll the replicas out with them (a replica with another
    /// signing key refuses to start). The identifier keys never change this
    /// way: the ring rotates by its runbook, the hash key never.
    Adopt {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ListsCommand {
    /// Import list files as the next version of a source, straight into the
    /// configured database (no server needed; running servers pick the new
    /// version up within seconds).
    Import {
        /// Source: ofac_sdn, ofac_cons, un_sc, eu_fsf, uk_fcdo, ch_seco,
        /// us_csl or us_dpl.
        #[arg(long)]
        source: String,
        /// The file(s): one per source, or the OFAC CSV set
        /// (sdn.csv alt.csv add.csv sdn_comments.csv).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Who is importing, for the audit log.
        #[arg(long, env = "USER", default_value = "cli")]
        actor: String,
        #[command(flatten)]
        base: BaseArgs,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        screening: ScreeningArgs,
    },
}

/// What the `keys` commands read: the database and the secrets sealing it.
#[derive(Debug, clap::Args)]
struct StoreArgs {
    #[command(flatten)]
    base: BaseArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    secrets: SecretArgs,
}

impl StoreArgs {
    fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::from_groups(&self.base, &[&self.database, &self.secrets])?)
    }
}

/// Where and how `healthcheck` calls the health service.
#[derive(Debug, clap::Args)]
struct HealthcheckArgs {
    /// Server address, HOST:PORT [default: the --listen address, on
    /// loopback when the server listens on every interface].
    #[arg(long)]
    addr: Option<String>,
    /// The server's listen address, from this flag or PROCTOR_LISTEN (not
    /// from a config file); where the probe calls when --addr is not given,
    /// so a container whose PROCTOR_LISTEN moves the port is still probed
    /// on the right one.
    #[arg(long, env = "PROCTOR_LISTEN", default_value = proctor::config::DEFAULT_LISTEN)]
    listen: std::net::SocketAddr,
    /// Service to check; empty = the whole server.
    #[arg(long, default_value = "")]
    service: String,
    /// Give up (unhealthy) after this many seconds.
    #[arg(long, default_value_t = 5)]
    timeout_seconds: u64,
    /// Call over TLS, trusting this CA bundle (PEM).
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Name the server certificate must carry [default: the host of --addr].
    #[arg(long, requires = "tls_ca")]
    tls_domain: Option<String>,
    /// Client certificate (PEM), when the server requires one.
    #[arg(long, requires_all = ["tls_ca", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// Client key (PEM) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a JWT signed with the development key `serve` created (or the
    /// HS256 development secret, when one is configured).
    Mint {
        /// Role: platform, tenant, compliance or sre (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Tenant id (required for the tenant role).
        #[arg(long)]
        tenant: Option<String>,
        /// Subject: a system name or user id.
        #[arg(long, default_value = "dev")]
        sub: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_seconds: i64,
        #[command(flatten)]
        base: BaseArgs,
        #[command(flatten)]
        tokens: TokenArgs,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, no_migrate } => {
            let mut cfg = Config::from_args(&config)?;
            cfg.no_migrate |= no_migrate;
            let telemetry = proctor::telemetry::init(cfg.log_format)?;
            let result = serve(cfg).await;
            if let Err(e) = &result {
                tracing::error!(error = ?e, "proctor stopped on an error");
            }
            telemetry.shutdown();
            result
        }
        Command::Migrate { base, database } => {
            let cfg = Config::from_groups(&base, &[&database])?;
            let _telemetry = proctor::telemetry::init(cfg.log_format)?;
            let store = connect_store(&cfg, Arc::new(SystemClock))?;
            let applied = store.migrate().await?;
            println!(
                "applied {} migration(s) to the {} database",
                applied.len(),
                store.backend()
            );
            for m in applied {
                println!("  {m}");
            }
            Ok(())
        }
        Command::Healthcheck(args) => {
            let status = healthcheck(&args).await?;
            println!("{status}");
            anyhow::ensure!(status == "SERVING", "{} is {status}", args.target());
            Ok(())
        }
        Command::SubjectRef {
            tenant,
            email,
            phone,
            external_id,
            base,
            secrets,
        } => {
            use proctor::subject_requests::model as sr;
            let cfg = Config::from_groups(&base, &[&secrets])?;
            let secrets = proctor::secrets::SubjectSecrets::load(&cfg).map_err(anyhow::Error::msg)?;
            let (kind, value) = match (email, phone, external_id) {
                (Some(e), None, None) => (sr::IdKind::Email, sr::normalize_email(&e)),
                (None, Some(p), None) => (sr::IdKind::Phone, sr::normalize_phone(&p)),
                (None, None, Some(x)) => (sr::IdKind::ExternalId, sr::normalize_external_id(&x)),
                _ => anyhow::bail!("give exactly one of --email, --phone, --external-id"),
            };
            let value = value.context("not a valid identifier of its kind")?;
            println!("{}", sr::subject_ref(&secrets.hash_key, &tenant, kind, &value));
            Ok(())
        }
        Command::Lists {
            command:
                ListsCommand::Import {
                    source,
                    files,
                    actor,
                    base,
                    database,
                    screening,
                },
        } => {
            let cfg = Config::from_groups(&base, &[&database, &screening])?;
            let _telemetry = proctor::telemetry::init(cfg.log_format)?;
            lists_import(cfg, source, files, actor).await
        }
        Command::Keys { command } => keys(command).await,
        Command::Audit {
            command:
                AuditCommand::Verify {
                    checkpoint,
                    verifier_key,
                    base,
                    database,
                },
        } => audit_verify(&checkpoint, &verifier_key, &base, &database).await,
        Command::Token {
            command:
                TokenCommand::Mint {
                    roles,
                    tenant,
                    sub,
                    ttl_seconds,
                    base,
                    tokens,
                },
        } => {
            let cfg = Config::from_groups(&base, &[&tokens])?;
            println!("{}", mint(&cfg, roles, tenant, sub, ttl_seconds)?);
            Ok(())
        }
    }
}

/// `keys reseal` and `keys status`. Both refuse a database whose schema is
/// behind (they never migrate: `status` must not change anything), print
/// the rows each key sealed, and fail while rows still need another key
/// than the active one, so the runbook's last step can be scripted.
/// `audit verify`: the offline check of the log against a saved checkpoint.
async fn audit_verify(
    checkpoint: &std::path::Path,
    verifier_key: &str,
    base: &BaseArgs,
    database: &DatabaseArgs,
) -> anyhow::Result<()> {
    let cfg = Config::from_groups(base, &[database])?;
    let _telemetry = proctor::telemetry::init(cfg.log_format)?;
    let text = std::fs::read_to_string(checkpoint)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", checkpoint.display()))?;
    let key = match std::fs::read_to_string(verifier_key) {
        Ok(k) => k.trim().to_owned(),
        Err(_) => verifier_key.trim().to_owned(),
    };
    let store = connect_store(&cfg, Arc::new(SystemClock))?;
    anyhow::ensure!(
        store.migrations_current().await?,
        "the database schema is behind this binary: run `proctor migrate` first"
    );
    let r = proctor::audit::service::verify_offline(&store, text, key).await?;
    println!(
        "tree size {}, events checked {}, extends the saved checkpoint: {}",
        r.tree_size,
        r.events_checked,
        if r.consistent_with_trusted { "yes" } else { "NO" }
    );
    if let Some(id) = &r.first_bad_event_id {
        println!("first bad event: {id}");
    }
    anyhow::ensure!(
        r.ok,
        "the audit log does not verify: {}",
        r.problem.as_deref().unwrap_or("unknown")
    );
    println!("ok");
    Ok(())
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    use proctor::secrets::reseal;
    let (store_args, reseal_with) = match command {
        KeysCommand::Reseal {
            batch,
            actor,
            force,
            store,
        } => (store, Some((batch, actor, force))),
        KeysCommand::Status { store } => (store, None),
        KeysCommand::Adopt { store } => return adopt_signing_keys(store).await,
    };
    let cfg = store_args.load()?;
    let _telemetry = proctor::telemetry::init(cfg.log_format)?;
    let secrets = proctor::secrets::SubjectSecrets::load(&cfg).map_err(anyhow::Error::msg)?;
    let ring = Arc::new(secrets.ring);
    let active = ring.active_id().to_owned();
    let store = connect_store(&cfg, Arc::new(SystemClock))?;
    anyhow::ensure!(
        store.migrations_current().await?,
        "the database schema is behind this binary: run `proctor migrate` first"
    );
    let mut uses = store.read("keys.in_use", |c, _| reseal::keys_in_use(c)).await?;
    if let Some((batch, actor, force)) = reseal_with {
        let pending = reseal::pending(&uses, &active);
        let proven = uses.get(&Some(active.clone())).is_some_and(|c| c.total() > 0);
        anyhow::ensure!(
            force || pending.total() == 0 || proven,
            "no row is sealed under key {active} yet, so nothing shows the servers have it: \
             a server without it could not read what this reseals. Roll it out first (docs/OPERATIONS.md, \
             key rotation), or pass --force once every replica runs with it"
        );
        let entry = proctor::audit::model::AuditEntry {
            actor: format!("cli:{actor}"),
            role: "sre".into(),
            tenant_id: None,
            action: "keys.reseal".into(),
            target: String::new(),
            outcome: "ok".into(),
            trace_id: proctor::telemetry::current_trace_id(),
            detail: String::new(),
        };
        let run = reseal::run(&store, ring.clone(), entry, reseal::Scope::All, batch).await?;
        print_counts(&format!("resealed under key {active}"), &run.resealed);
        for f in &run.failed {
            eprintln!(
                "did not open: {} {} (key {}): {}",
                f.kind.as_str(),
                f.id,
                f.key_id.as_deref().unwrap_or("none"),
                f.reason
            );
        }
        anyhow::ensure!(
            run.failed.is_empty(),
            "{} row(s) did not open and were left as they were",
            run.failed.len()
        );
        // What the reseal left; `status` alone needs only the first read.
        uses = store.read("keys.in_use", |c, _| reseal::keys_in_use(c)).await?;
    }
    for (key, counts) in &uses {
        let label = match key {
            Some(k) if *k == active => format!("key {k} (active)"),
            Some(k) => format!("key {k}"),
            None => "in the clear (from before sealing)".to_owned(),
        };
        print_counts(&label, counts);
    }
    let left = reseal::pending(&uses, &active);
    anyhow::ensure!(
        left.total() == 0,
        "{} row(s) are not under the active key {active} yet: keep the other keys in the ring",
        left.total()
    );
    println!("nothing depends on other keys than {active}: they can leave the ring");
    Ok(())
}

/// `keys adopt`: records the configured signing keys as current, so
/// replicas started with them afterwards pass the key check.
async fn adopt_signing_keys(store_args: StoreArgs) -> anyhow::Result<()> {
    use proctor::secrets::server_keys::Purpose;
    let cfg = store_args.load()?;
    let _telemetry = proctor::telemetry::init(cfg.log_format)?;
    let secrets = proctor::secrets::SubjectSecrets::load(&cfg).map_err(anyhow::Error::msg)?;
    let store = connect_store(&cfg, Arc::new(SystemClock))?;
    anyhow::ensure!(
        store.migrations_current().await?,
        "the database schema is behind this binary: run `proctor migrate` first"
    );
    let keys = [
        (Purpose::ReceiptSigning, secrets.receipt.key_id().to_owned()),
        (Purpose::AuditSigning, secrets.audit.key_id().to_owned()),
    ];
    let wanted = keys.clone();
    let changed = store
        .write("server_keys.adopt", move |c, clock| {
            proctor::secrets::server_keys_repo::adopt(c, clock.now(), &wanted)
        })
        .await?;
    for (p, id) in &keys {
        let what = if changed.contains(p) {
            "now current"
        } else {
            "already current"
        };
        println!("{} key {id}: {what}", p.as_str());
    }
    Ok(())
}

fn print_counts(label: &str, c: &proctor::secrets::reseal::Counts) {
    println!("{label}: {}", c.describe());
}

/// Reads the files with a progress bar over their bytes, then parses, diffs
/// and stores them in one transaction (a spinner meanwhile).
async fn lists_import(cfg: Config, source: String, files: Vec<PathBuf>, actor: String) -> anyhow::Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    use std::io::Read;

    let total: u64 = files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .map(|m| m.len())
                .with_context(|| format!("reading {}", f.display()))
        })
        .sum::<anyhow::Result<u64>>()?;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
            .context("progress style")?
            .progress_chars("=> "),
    );
    bar.set_message("reading");
    let mut list_files = Vec::new();
    for path in &files {
        let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut data = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f
                .read(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            data.extend_from_slice(&buf[..n]);
            bar.inc(n as u64);
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        list_files.push(proctor::screening::lists::ListFile { name, data });
    }
    bar.finish_with_message("read");
    let spin = ProgressBar::new_spinner();
    spin.enable_steady_tick(std::time::Duration::from_millis(120));
    spin.set_message(format!("parsing, diffing and storing {source}"));
    let store = connect_store(&cfg, Arc::new(SystemClock))?;
    store.migrate().await?;
    let actor = proctor::db::pipeline::Actor {
        sub: format!("cli:{actor}"),
        role: "compliance".into(),
        tenant_id: None,
        trace_id: proctor::telemetry::current_trace_id(),
    };
    // Re-screening opens the registered parties' sealed identities.
    let secrets = proctor::secrets::SubjectSecrets::load(&cfg).map_err(anyhow::Error::msg)?;
    let res = proctor::screening::service::import_list(
        &store,
        Arc::new(secrets),
        actor,
        proctor::screening::service::ImportList {
            source,
            files: list_files,
        },
        proctor::screening::service::Scoring {
            params: proctor::screening::matcher::Params::default(),
            threshold: cfg.screening_review_threshold,
        },
        proctor::screening::lists::Budget {
            max_rows: cfg.max_import_rows,
            ..proctor::screening::lists::Budget::unlimited()
        },
    )
    .await;
    spin.finish_and_clear();
    let v = res?;
    if v.unchanged {
        println!(
            "{} unchanged: version {} already loaded (sha256 {}), nothing imported",
            v.source, v.version, v.sha256
        );
        return Ok(());
    }
    println!(
        "{} version {}: {} entries (+{} added, -{} removed, ~{} changed), sha256 {}",
        v.source, v.version, v.entries, v.added, v.removed, v.changed, v.sha256
    );
    println!(
        "re-screened {} registered parties against the delta; {} case(s) opened",
        v.rescreened, v.cases_opened
    );
    Ok(())
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    // The handlers are installed before anything can report SERVING: a
    // SIGTERM that arrived between health turning SERVING and the first poll
    // of a lazily installed handler killed the process with the default
    // action instead of draining it.
    let shutdown = shutdown_signal().context("installing the signal handlers")?;
    let app = Application::build(cfg, Arc::new(SystemClock)).await?;
    app.run_until(shutdown).await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are registered when this is
/// called, not when the future is first polled.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

impl HealthcheckArgs {
    /// Where the probe calls: --addr, or the listen address as seen from
    /// the same host.
    fn target(&self) -> String {
        self.addr
            .clone()
            .unwrap_or_else(|| proctor::config::probe_addr(self.listen).to_string())
    }
}

/// One `Health/Check` call within the timeout; the status name, or an error
/// when the server cannot be reached or does not answer.
async fn healthcheck(args: &HealthcheckArgs) -> anyhow::Result<&'static str> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let timeout = std::time::Duration::from_secs(args.timeout_seconds.max(1));
    let scheme = if args.tls_ca.is_some() { "https" } else { "http" };
    let addr = args.target();
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .with_context(|| format!("--addr {addr:?} is not HOST:PORT"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    if let Some(ca) = &args.tls_ca {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        if let Some(domain) = &args.tls_domain {
            tls = tls.domain_name(domain);
        }
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint.tls_config(tls).context("TLS settings")?;
    }
    let call = async {
        let channel = endpoint.connect().await.context("connecting")?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: args.service.clone(),
            })
            .await
            .context("Health/Check")?;
        anyhow::Ok(answer.into_inner().status)
    };
    let status = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {addr} within {timeout:?}"))??;
    Ok(ServingStatus::try_from(status).map_or("UNKNOWN", |s| s.as_str_name()))
}

fn mint(
    cfg: &Config,
    roles: Vec<String>,
    tenant: Option<String>,
    sub: String,
    ttl: i64,
) -> anyhow::Result<String> {
    for r in &roles {
        anyhow::ensure!(
            Role::parse(r).is_some(),
            "unknown role {r:?} (platform, tenant, compliance, sre)"
        );
    }
    anyhow::ensure!(
        !roles.iter().any(|r| r == "tenant") || tenant.is_some(),
        "--tenant is required with --role tenant"
    );
    anyhow::ensure!(ttl > 0, "--ttl-seconds must be positive");
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub,
        roles,
        tenant_id: tenant,
        exp: now + ttl,
        nbf: None,
        iat: Some(now),
        iss: cfg.jwt_issuer.clone(),
        aud: cfg.jwt_audience.clone().map(Into::into),
    };
    let token = match &cfg.jwt_hs256_secret_file {
        Some(p) => {
            let secret = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            keys::mint_with_secret(secret.trim_ascii(), &claims)
        }
        None => {
            let key: PathBuf = keys::DevKeyPaths::in_dir(&cfg.data_dir).key;
            keys::mint_with_dev_key(&key, &claims)
        }
    };
    token.map_err(anyhow::Error::msg)
}
