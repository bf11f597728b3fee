//! The write path takes no lock shared by the cluster: commands on
//! different keys commit while another key is held, and replicas following
//! the decision change log miss no change, however commits interleave.

use std::time::Duration;

use diesel::prelude::*;
use diesel::{Connection, PgConnection};

use crate::instructions::{check, chk, put, standard};
use crate::support::{Backend, TestDb, TestKeys, spawn_app, spawn_with, test_config};

/// While a transaction holds tenant t1's lock, t2's instructions commit,
/// and t1's wait for it: per-key, not global.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_key_stops_only_its_own_commands() {
    let app = spawn_app(Backend::Postgres).await;
    let url = app.db.url.clone();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut c = PgConnection::establish(&url).unwrap();
        c.transaction::<_, diesel::result::Error, _>(|c| {
            let id = proctor::db::key_lock_id("tenant", "t1");
            diesel::sql_query(format!("SELECT pg_advisory_xact_lock({id})")).execute(c)?;
            held_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            Ok(())
        })
        .unwrap();
    });
    held_rx.recv().unwrap();
    let blocked = {
        let (channel, keys) = (app.channel.clone(), app.keys.tenant("t1"));
        tokio::spawn(async move {
            let mut c =
                proctor::proto::v1::instruction_service_client::InstructionServiceClient::new(channel);
            c.put_instructions(crate::support::authed(
                proctor::proto::v1::PutInstructionsRequest {
                    tenant_id: "t1".into(),
                    expected_version: 0,
                    instructions: Some(standard()),
                    reason: "DPA annex 2".into(),
                },
                &keys,
            ))
            .await
        })
    };
    // Wait until t1's command waits for the lock inside its transaction.
    let url = app.db.url.clone();
    let waiting = tokio::task::spawn_blocking(move || {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut c = PgConnection::establish(&url).unwrap();
        for _ in 0..200 {
            let w: N = diesel::sql_query(
                "SELECT count(*)::bigint AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            )
            .get_result(&mut c)
            .unwrap();
            if w.n > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    })
    .await
    .unwrap();
    assert!(waiting, "t1's command never waited for t1's lock");
    // Another tenant's command commits meanwhile.
    let other = tokio::time::timeout(Duration::from_secs(10), put(&app, "t2", 0, standard())).await;
    assert!(other.is_ok(), "t2 waited on t1's lock");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!blocked.is_finished(), "t1's command did not wait for t1's lock");
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    let done = tokio::time::timeout(Duration::from_secs(10), blocked).await;
    assert!(
        done.unwrap().unwrap().is_ok(),
        "t1's command completes once the lock is free"
    );
    app.stop().await;
}

/// Twenty tenants' instructions written at once through one replica reach
/// another replica's decisions, every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_misses_no_change_committed_out_of_order() {
    let a = spawn_app(Backend::Postgres).await;
    let keys = TestKeys::new();
    let db = TestDb::shared_with(&a.db);
    let cfg = test_config(&db, &keys);
    let b = spawn_with(db, keys, cfg).await;
    let tenants: Vec<String> = (0..20).map(|i| format!("w{i}")).collect();
    let mut writes = Vec::new();
    for t in &tenants {
        let (channel, token, t) = (a.channel.clone(), a.keys.tenant(t), t.clone());
        writes.push(tokio::spawn(async move {
            let mut c =
                proctor::proto::v1::instruction_service_client::InstructionServiceClient::new(channel);
            c.put_instructions(crate::support::authed(
                proctor::proto::v1::PutInstructionsRequest {
                    tenant_id: t,
                    expected_version: 0,
                    instructions: Some(standard()),
                    reason: "DPA annex 2".into(),
                },
                &token,
            ))
            .await
            .unwrap();
        }));
    }
    for w in writes {
        w.await.unwrap();
    }
    // The writer sees its own writes at once.
    for t in &tenants {
        assert!(
            check(&a, chk(t, "contact", "billing", "")).await.0,
            "{t} on the writer"
        );
    }
    // The follower, within a few of its polls.
    let mut missing = tenants.clone();
    for _ in 0..100 {
        let mut still = Vec::new();
        for t in &missing {
            if !check(&b, chk(t, "contact", "billing", "")).await.0 {
                still.push(t.clone());
            }
        }
        missing = still;
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(missing.is_empty(), "the follower never saw {missing:?}");
    b.stop().await;
    a.stop().await;
}

/// Statements (round trips, transaction control included) the main
/// commands make, printed for docs/BENCHMARKS.md and held to a ceiling so a
/// change that adds round trips is seen.
async fn statements_per_command(b: Backend) {
    use proctor::proto::v1 as pb;
    let app = spawn_app(b).await;
    put(&app, "t1", 0, standard()).await;
    let puts = app.store.statements_of("instructions.put").expect("counted");
    let mut forwards = Vec::new();
    for i in 0..3 {
        app.subject_requests()
            .forward_to_controller(crate::support::authed(
                pb::ForwardToControllerRequest {
                    tenant_id: "t1".into(),
                    request_type: pb::RequestType::Access as i32,
                    subject: Some(pb::Subject {
                        email: format!("person{i}@example.com"),
                        ..Default::default()
                    }),
                    idempotency_key: format!("k{i}"),
                    ..Default::default()
                },
                &app.keys.platform("crm"),
            ))
            .await
            .unwrap();
        forwards.push(
            app.store
                .statements_of("subject_request.submit")
                .expect("counted"),
        );
    }
    println!("{b:?}: PutInstructions {puts} statements, ForwardToController {forwards:?}");
    assert!(puts <= 12, "PutInstructions made {puts} statements");
    assert!(
        forwards.iter().all(|&n| n <= 16),
        "ForwardToController made {forwards:?}"
    );
    app.stop().await;
}
crate::on_both_backends!(commands_make_few_round_trips, statements_per_command);
