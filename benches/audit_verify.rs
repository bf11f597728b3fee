//! VerifyAuditLog on a large log (issue "The write path", point 5): a log
//! of `--events` events (default 1,000,000), sequenced into the Merkle tree;
//! then the first verification (the whole log) and, after `--new` more
//! events (default 1,000), the next one, which starts from the checkpoint
//! the first verified and recomputes only the new leaves and a rolling
//! window of older ones. The second one must answer in under a second; the
//! ratio to the first says how much of the log it no longer reads.
//!
//! Runs the library directly on an embedded SQLite file (or
//! `--database-url postgres://...`, a fresh database it creates and drops),
//! with no server: the verification is a database read in proctor's own
//! process, as `VerifyAuditLog` runs it.
//!
//! `cargo bench --bench audit_verify -- [--events N] [--new N] [--database-url URL]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use proctor::audit::checkpoint::CheckpointSigner;
use proctor::audit::model::AuditEntry;
use proctor::audit::service::AuditLog;
use proctor::audit::{repo, sequencer};
use proctor::clock::SystemClock;
use proctor::config::Config;
use proctor::db::{Store, StoreOptions};
use proctor::secrets::SubjectSecrets;

/// Events written per transaction while the log is filled.
const FILL_BATCH: u64 = 10_000;

fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args();
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
    }
    None
}

fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        actor: format!("system-{}", i % 7),
        role: "platform".into(),
        tenant_id: Some(format!("t{}", i % 50)),
        action: "subject_request.forward".into(),
        target: format!("subject_request/{i:012}"),
        outcome: "ok".into(),
        trace_id: format!("{i:032x}"),
        detail: String::new(),
    }
}

async fn append(store: &Store, from: u64, n: u64) {
    let mut i = from;
    while i < from + n {
        let end = (i + FILL_BATCH).min(from + n);
        store
            .write("bench.fill", move |c, clock| {
                for k in i..end {
                    repo::append(c, clock.now(), entry(k))?;
                }
                Ok(())
            })
            .await
            .expect("append");
        i = end;
    }
}

fn main() {
    let events: u64 = arg("--events").map_or(1_000_000, |v| v.parse().expect("--events N"));
    let new: u64 = arg("--new").map_or(1_000, |v| v.parse().expect("--new N"));
    let dir = tempfile::tempdir().unwrap();
    let (url, scratch) = match arg("--database-url") {
        Some(base) => {
            use diesel::{Connection, RunQueryDsl};
            let name = format!("proctor_verify_{}", std::process::id());
            let mut admin = diesel::PgConnection::establish(&format!("{base}/postgres")).expect("PostgreSQL");
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut admin)
                .unwrap();
            (format!("{base}/{name}"), Some((base, name)))
        }
        None => (
            format!("sqlite://{}", dir.path().join("verify.db").display()),
            None,
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cfg = Config {
            database_url: url.clone(),
            data_dir: dir.path().join("data"),
            dev_keys: true,
            ..Config::default()
        };
        let store = Store::connect(&url, &StoreOptions::default(), Arc::new(SystemClock)).expect("store");
        store.migrate().await.expect("migrations");
        let secrets = Arc::new(SubjectSecrets::load(&cfg).expect("keys"));
        let signer = CheckpointSigner::new("proctor/audit", secrets);

        let t = Instant::now();
        append(&store, 0, events).await;
        let filled = t.elapsed();
        let sequencer = sequencer::Sequencer::new(signer.clone());
        let t = Instant::now();
        let placed = sequencer.round(&store).await.expect("sequencing");
        let sequenced = t.elapsed();
        assert_eq!(placed as u64, events, "every event placed");

        let log = AuditLog::new(signer.clone());
        let trusted = log.checkpoint(&store).await.expect("checkpoint").text;
        let t = Instant::now();
        let first = log.verify(&store, None).await.expect("verify");
        let full = t.elapsed();
        assert!(first.ok, "{first:?}");

        append(&store, events, new).await;
        sequencer.round(&store).await.expect("sequencing");
        let t = Instant::now();
        let next = log.verify(&store, Some(trusted)).await.expect("verify");
        let incremental = t.elapsed();
        assert!(next.ok && next.consistent_with_trusted, "{next:?}");
        assert_eq!(next.tree_size, events + new);

        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!("backend: {}", store.backend());
        println!(
            "filled {events} events in {:.1} s, sequenced in {:.1} s",
            filled.as_secs_f64(),
            sequenced.as_secs_f64()
        );
        println!("| verification | events recomputed | time ms | vs the first |");
        println!("|---|---|---|---|");
        println!(
            "| first (whole log) | {} | {:.0} | 1.00 |",
            first.events_checked,
            ms(full)
        );
        println!(
            "| next, after {new} more, against the checkpoint signed before them | {} | {:.0} | {:.3} |",
            next.events_checked,
            ms(incremental),
            incremental.as_secs_f64() / full.as_secs_f64()
        );
        assert!(
            incremental < Duration::from_secs(1),
            "the next verification took {incremental:?}, over a second"
        );
        drop(store);
    });
    if let Some((base, name)) = scratch {
        use diesel::{Connection, RunQueryDsl};
        let mut admin = diesel::PgConnection::establish(&format!("{base}/postgres")).unwrap();
        let _ = diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)")).execute(&mut admin);
    }
}
