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
    assert!(puts <= 10, "PutInstructions made {puts} statements");
    // PostgreSQL: the first reads the tenant's settings in a transaction
    // (BEGIN, settings, the request with its wait and refs, the envelope
    // with the audit event, COMMIT); the others are one statement that
    // commits on its own (the request, wait, refs, envelope and audit event,
    // with the check that the settings are still those remembered). SQLite
    // (in the writer's group, its BEGIN and COMMIT shared): settings,
    // request, wait, refs, envelope, audit event.
    let (first, then) = match b {
        Backend::Postgres => (5, 1),
        Backend::Sqlite => (6, 6),
    };
    assert!(
        forwards[0] <= first && forwards[1..].iter().all(|&n| n <= then),
        "ForwardToController made {forwards:?}, more than {first} then {then}"
    );
    app.stop().await;
}
crate::on_both_backends!(commands_make_few_round_trips, statements_per_command);

/// Retries of one ForwardToController sent at the same moment (a client
/// that timed out and retried on several connections) record one request:
/// every retry with the same body gets it, one with another body under
/// the same key is ALREADY_EXISTS, and nothing waits on a lock of its own
/// (the unique key orders them).
async fn simultaneous_retries(b: Backend) {
    use proctor::proto::v1 as pb;
    let app = spawn_app(b).await;
    put(&app, "t1", 0, standard()).await;
    let forward = |email: &str| pb::ForwardToControllerRequest {
        tenant_id: "t1".into(),
        request_type: pb::RequestType::Access as i32,
        subject: Some(pb::Subject {
            email: email.into(),
            ..Default::default()
        }),
        idempotency_key: "same-key".into(),
        ..Default::default()
    };
    let mut calls = Vec::new();
    for i in 0..12 {
        let mut client = app.subject_requests();
        // Every fourth call changes the body: a different request, same key.
        let body = if i % 4 == 3 {
            forward("someone-else@example.com")
        } else {
            forward("person@example.com")
        };
        let token = app.keys.platform("crm");
        calls.push(tokio::spawn(async move {
            let same = body.subject.as_ref().unwrap().email == "person@example.com";
            (
                same,
                client
                    .forward_to_controller(crate::support::authed(body, &token))
                    .await,
            )
        }));
    }
    let (mut ids, mut refused, mut other_body_ids) = (Vec::new(), 0, Vec::new());
    for c in calls {
        match c.await.unwrap() {
            (true, Ok(r)) => ids.push(r.into_inner().id),
            (false, Ok(r)) => other_body_ids.push(r.into_inner().id),
            (_, Err(s)) if s.code() == tonic::Code::AlreadyExists => refused += 1,
            (same, Err(s)) => panic!("same body {same}: {s:?}"),
        }
    }
    // Whichever body committed first owns the key; the other is refused.
    let (winners, losers) = if other_body_ids.is_empty() {
        (ids, 3)
    } else {
        (other_body_ids, 9)
    };
    assert!(winners.windows(2).all(|w| w[0] == w[1]), "{winners:?}");
    assert_eq!(refused, losers, "retries with the other body");
    let listed = app
        .subject_requests()
        .list_subject_requests(crate::support::authed(
            pb::ListSubjectRequestsRequest {
                tenant_id: "t1".into(),
                ..Default::default()
            },
            &app.keys.tenant("t1"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.requests.len(), 1, "one request recorded");
    assert_eq!(listed.requests[0].id, winners[0]);
    app.stop().await;
}
crate::on_both_backends!(simultaneous_retries_record_one_request, simultaneous_retries);

/// A store on `db` with eight pooled connections and one write turn, so
/// that commands sent together queue for it.
fn one_turn_store(db: &TestDb) -> proctor::db::Store {
    let opts = proctor::db::StoreOptions {
        pool_size: 8,
        write_concurrency: 1,
        ..Default::default()
    };
    proctor::db::Store::connect(&db.url, &opts, std::sync::Arc::new(proctor::clock::SystemClock)).unwrap()
}

/// `--db-write-concurrency` bounds the write transactions a replica runs at
/// once on PostgreSQL: with one turn, four commands sent together run one
/// after the other, although the pool has connections for all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn write_turns_bound_concurrent_transactions() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    if !crate::support::postgres_available() {
        return;
    }
    let db = TestDb::new(Backend::Postgres);
    let store = one_turn_store(&db);
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut writes = Vec::new();
    for _ in 0..4 {
        let (store, running, most) = (store.clone(), running.clone(), most.clone());
        writes.push(tokio::spawn(async move {
            store
                .write("test.turns", move |_, _| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(())
                })
                .await
                .unwrap();
        }));
    }
    for w in writes {
        w.await.unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "writes ran side by side");
}

/// The sequencer's batches: a few statements whatever their size (six on
/// PostgreSQL once it knows the tree's frontier, one more to read it when
/// it does not), and a tree that stays right when another replica's
/// sequencer has grown it since (the frontier one remembers is then
/// stale, and the hashes it lacks are read).
async fn sequencer_statements(b: Backend) {
    use std::sync::Arc;

    use proctor::audit::sequencer::Sequencer;
    if b == Backend::Postgres && !crate::support::postgres_available() {
        return;
    }
    let (db, keys) = (TestDb::new(b), TestKeys::new());
    let cfg = test_config(&db, &keys);
    let store = proctor::db::Store::connect(
        &db.url,
        &proctor::db::StoreOptions::default(),
        Arc::new(proctor::clock::SystemClock),
    )
    .unwrap();
    store.migrate().await.unwrap();
    let secrets = Arc::new(proctor::secrets::SubjectSecrets::load(&cfg).unwrap());
    let signer = proctor::audit::checkpoint::CheckpointSigner::new("proctor/audit", secrets);
    let append = |from: usize| {
        let store = store.clone();
        async move {
            for i in from..from + 30 {
                let e = crate::audit::entry(Some("t1"), &format!("test.{i}"));
                store
                    .write("test.audit", move |c, clock| {
                        proctor::audit::repo::append(c, clock.now(), e)
                    })
                    .await
                    .unwrap();
            }
        }
    };
    let (one, other) = (Sequencer::new(signer.clone()), Sequencer::new(signer.clone()));
    let mut counts = Vec::new();
    for (from, by) in [(0, &one), (30, &one), (60, &other), (90, &one)] {
        append(from).await;
        // The tests' schemas share one database, and with it the sequencing
        // try-lock: a round may find another test's sequencer holding it
        // and skip, as a replica does while another sequences.
        let mut integrated = 0;
        for _ in 0..500 {
            integrated = by.round(&store).await.unwrap();
            if integrated != 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(integrated, 30, "a round integrates what waits");
        counts.push(store.statements_of("audit.sequence").expect("counted"));
    }
    println!("{b:?}: sequencer batches of 30 events made {counts:?} statements");
    let report = proctor::audit::service::AuditLog::new(signer)
        .verify(&store, None)
        .await
        .unwrap();
    assert!(report.ok, "{report:?}");
    assert_eq!(report.tree_size, 120);
    // PostgreSQL: BEGIN, lock, change log order, waiting events with the
    // size, leaves with hashes and checkpoint, COMMIT; a frontier not known
    // (the second sequencer's first batch, the first's after the second's)
    // one read more. SQLite (in the writer's group): the change log, the
    // waiting events, the size, the hashes, a leaf per event, the
    // checkpoint, and the frontier's read when not known.
    let (warm, cold) = match b {
        Backend::Postgres => (6, 7),
        Backend::Sqlite => (35, 36),
    };
    assert!(
        counts[1] <= warm && [counts[0], counts[2], counts[3]].iter().all(|&n| n <= cold),
        "sequencer batches made {counts:?} statements, more than {warm} (frontier known) or {cold}"
    );
}
crate::on_both_backends!(sequencer_batches_make_few_round_trips, sequencer_statements);

/// On PostgreSQL, forwarded requests that wait for a write turn are
/// recorded together, several in one statement ([`proctor::db::batch`]),
/// and each stays its own: recorded once, with its own envelope in its own
/// tenant's inbox (cursors in order) and its own audit event; retries
/// sent in the same burst answered with the request they repeat, and a
/// different body under a key already taken refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwards_waiting_for_a_turn_share_a_statement_and_stay_their_own() {
    use proctor::proto::v1 as pb;
    if !crate::support::postgres_available() {
        return;
    }
    let db = TestDb::new(Backend::Postgres);
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    // One turn: the burst below queues behind it.
    cfg.db_write_concurrency = 1;
    let app = spawn_with(db, keys, cfg).await;
    const TENANTS: [&str; 3] = ["t1", "t2", "t3"];
    const PER_TENANT: usize = 15;
    const RETRIES: usize = 5;
    for t in TENANTS {
        put(&app, t, 0, standard()).await;
    }
    let forward = |t: &str, key: &str, email: &str| pb::ForwardToControllerRequest {
        tenant_id: t.into(),
        request_type: pb::RequestType::Access as i32,
        subject: Some(pb::Subject {
            email: email.into(),
            ..Default::default()
        }),
        idempotency_key: key.into(),
        ..Default::default()
    };
    let crm = app.keys.platform("crm");
    // The first of each tenant reads its settings (a transaction), which
    // the replica then remembers: the later ones are one statement each.
    for t in TENANTS {
        app.subject_requests()
            .forward_to_controller(crate::support::authed(
                forward(t, "first", "first@example.com"),
                &crm,
            ))
            .await
            .unwrap();
    }
    let before = app.store.batched_writes().expect("PostgreSQL batches");
    // (tenant, key, body, kind of call): new, a retry of a new one in the
    // same burst, or another body under the taken key `first`.
    let mut calls = Vec::new();
    for t in TENANTS {
        for i in 0..PER_TENANT {
            calls.push((t, format!("k{i}"), format!("p{i}@{t}.example.com"), "new"));
        }
        for i in 0..RETRIES {
            calls.push((t, format!("k{i}"), format!("p{i}@{t}.example.com"), "retry"));
        }
        calls.push((
            t,
            "first".to_owned(),
            "someone-else@example.com".to_owned(),
            "other",
        ));
    }
    let mut running = Vec::new();
    for (t, key, email, kind) in calls {
        let mut client = app.subject_requests();
        let body = forward(t, &key, &email);
        let token = crm.clone();
        running.push(tokio::spawn(async move {
            let out = client
                .forward_to_controller(crate::support::authed(body, &token))
                .await;
            (t, key, kind, out)
        }));
    }
    let mut ids: std::collections::HashMap<(&str, String), String> = Default::default();
    let mut repeats = Vec::new();
    for r in running {
        let (t, key, kind, out) = r.await.unwrap();
        match (kind, out) {
            ("other", Err(s)) => assert_eq!(s.code(), tonic::Code::AlreadyExists, "{s:?}"),
            ("other", Ok(r)) => panic!(
                "another body under a taken key was recorded: {:?}",
                r.into_inner().id
            ),
            (_, Err(s)) => panic!("{t} {key} {kind}: {s:?}"),
            ("retry", Ok(r)) => repeats.push(((t, key), r.into_inner().id)),
            (_, Ok(r)) => {
                let id = r.into_inner().id;
                if let Some(seen) = ids.insert((t, key.clone()), id.clone()) {
                    // A retry can be the one that recorded it.
                    assert_eq!(seen, id, "{t} {key}");
                }
            }
        }
    }
    for (k, id) in repeats {
        match ids.get(&k) {
            Some(first) => assert_eq!(first, &id, "retry of {k:?}"),
            None => {
                ids.insert(k, id);
            }
        }
    }
    assert_eq!(ids.len(), TENANTS.len() * PER_TENANT);
    let after = app.store.batched_writes().unwrap();
    let (statements, commands) = (after.groups - before.groups, after.commands - before.commands);
    println!("{commands} forwarded requests in {statements} statements");
    assert!(
        commands >= (TENANTS.len() * PER_TENANT) as u64,
        "{commands} batched"
    );
    assert!(
        statements < commands,
        "no two shared a statement: {statements} for {commands}"
    );

    app.audit_settled().await;
    let events = crate::support::audit_events(&app).await;
    for t in TENANTS {
        let listed = app
            .subject_requests()
            .list_subject_requests(crate::support::authed(
                pb::ListSubjectRequestsRequest {
                    tenant_id: t.into(),
                    page_size: 100,
                    ..Default::default()
                },
                &app.keys.tenant(t),
            ))
            .await
            .unwrap()
            .into_inner()
            .requests;
        assert_eq!(listed.len(), PER_TENANT + 1, "{t}: each request once");
        let mut expected: Vec<&str> = ids
            .iter()
            .filter(|((tt, _), _)| *tt == t)
            .map(|(_, id)| id.as_str())
            .collect();
        let first = listed
            .iter()
            .find(|r| !expected.contains(&r.id.as_str()))
            .expect("the first request")
            .id
            .clone();
        expected.push(&first);
        expected.sort_unstable();
        let mut stored: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
        stored.sort_unstable();
        assert_eq!(stored, expected, "{t}");
        // One envelope each, in this tenant's inbox only, cursors rising.
        let envs = crate::support::pull_inbox(&app, &app.keys.tenant(t), 60).await;
        assert!(
            envs.windows(2).all(|w| w[0].cursor < w[1].cursor),
            "{t}: cursors in order"
        );
        let mut about: Vec<String> = envs
            .iter()
            .filter(|e| e.kind == "subject_request.forwarded")
            .map(|e| {
                let v: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
                v["id"].as_str().unwrap().to_owned()
            })
            .collect();
        about.sort_unstable();
        assert_eq!(about, expected, "{t}: one envelope per request");
        // One audit event each.
        let mut audited: Vec<&str> = events
            .iter()
            .filter(|e| e.action == "subject_request.forward" && e.tenant_id == t)
            .map(|e| e.target.as_str())
            .collect();
        audited.sort_unstable();
        assert_eq!(audited, expected, "{t}: one audit event per request");
    }
    app.stop().await;
}

/// When the statement a batch shares fails, each of its commands is
/// recorded on its own, so the one that cannot be stays the only one to
/// fail, and it writes nothing: here the second request's envelope reuses
/// the first one's id, which the shared statement refuses as a whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_request_in_a_batch_fails_alone_and_writes_nothing() {
    use proctor::subject_requests::model::{Origin, Regime, RequestType};
    use proctor::subject_requests::repo::{
        Deadlines, ForwardedAtOnce, NewRequest, Receipt, TenantSettings, insert_forwarded_batch,
    };
    if !crate::support::postgres_available() {
        return;
    }
    let db = TestDb::new(Backend::Postgres);
    let store = proctor::db::Store::connect(
        &db.url,
        &Default::default(),
        std::sync::Arc::new(proctor::clock::SystemClock),
    )
    .unwrap();
    store.migrate().await.unwrap();
    let now = chrono::Utc::now();
    let item = |key: &str| {
        let id = uuid::Uuid::new_v4().to_string();
        let mut pending = proctor::db::flush::Pending::default();
        pending.envelopes.push(proctor::inbox::repo::NewEnvelope::new(
            now,
            &proctor::inbox::model::Recipient::Tenant("t1".into()),
            "subject_request.forwarded",
            &serde_json::json!({ "id": id }),
        ));
        pending.events.push(proctor::audit::repo::new_event(
            now,
            proctor::audit::model::AuditEntry {
                actor: "crm".into(),
                role: "platform".into(),
                tenant_id: Some("t1".into()),
                action: "subject_request.forward".into(),
                target: id.clone(),
                outcome: "ok".into(),
                trace_id: String::new(),
                detail: "{}".into(),
            },
        ));
        ForwardedAtOnce {
            new: NewRequest {
                id,
                tenant_id: "t1".into(),
                origin: Origin::Forwarded,
                request_type: RequestType::Access,
                regime: Regime::Gdpr,
                channel: String::new(),
                idempotency_key: key.into(),
                body_digest: format!("digest-{key}"),
                subject_refs: vec![format!("ref-{key}")],
                sealed: None,
                categories: Vec::new(),
                received_at: None,
                forwarded_by: Some("crm".into()),
            },
            at: Deadlines {
                received: now,
                due: now + chrono::Duration::days(30),
                sla: now + chrono::Duration::days(20),
            },
            receipt: Receipt {
                issued_at: now,
                signature: vec![7; 64],
                key_id: "k".into(),
            },
            assumed: TenantSettings::default(),
            pending,
        }
    };
    let first = item("a");
    let mut second = item("b");
    second.pending.envelopes[0].id = first.pending.envelopes[0].id.clone();
    let (first_id, second_id) = (first.new.id.clone(), second.new.id.clone());
    let mut c = PgConnection::establish(&db.url).unwrap();
    let answers = insert_forwarded_batch(&mut c, vec![first, second]);
    assert_eq!(answers.len(), 2);
    let stored = answers[0]
        .as_ref()
        .expect("the first is recorded")
        .as_ref()
        .expect("inserted");
    assert_eq!(stored.id, first_id);
    assert!(
        answers[1].is_err(),
        "{:?}",
        answers[1].as_ref().map(|r| r.as_ref().map(|r| &r.id))
    );
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count = |c: &mut PgConnection, sql: &str, id: &str| -> i64 {
        diesel::sql_query(sql)
            .bind::<diesel::sql_types::Text, _>(id)
            .get_result::<N>(c)
            .unwrap()
            .n
    };
    for (id, n) in [(&first_id, 1), (&second_id, 0)] {
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) AS n FROM subject_requests WHERE id = $1",
                id
            ),
            n
        );
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) AS n FROM subject_request_refs WHERE request_id = $1",
                id
            ),
            n
        );
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) AS n FROM subject_request_waits WHERE request_id = $1",
                id
            ),
            n
        );
        assert_eq!(
            count(
                &mut c,
                "SELECT count(*) AS n FROM audit_events WHERE target = $1",
                id
            ),
            n
        );
    }
    assert_eq!(
        count(
            &mut c,
            "SELECT count(*) AS n FROM envelopes WHERE kind = $1",
            "subject_request.forwarded"
        ),
        1
    );
}

/// A command that another turn took into its statement answers as soon as
/// that statement commits, not when its own turn comes: here it would come
/// only after a long transaction queued for a turn between the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batched_command_answers_without_waiting_for_its_own_turn() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;
    static LARGEST: AtomicUsize = AtomicUsize::new(0);
    fn run(_: &mut PgConnection, items: Vec<u32>) -> Vec<proctor::error::Result<u32>> {
        LARGEST.fetch_max(items.len(), Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        items.into_iter().map(|i| Ok(i * 10)).collect()
    }
    if !crate::support::postgres_available() {
        return;
    }
    let db = TestDb::new(Backend::Postgres);
    let store = one_turn_store(&db);
    let batch: Arc<proctor::db::batch::Batch<u32, u32>> = Arc::default();
    let start = Instant::now();
    let hold = |ms: u64| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .write("test.hold", move |_, _| {
                    std::thread::sleep(Duration::from_millis(ms));
                    Ok(())
                })
                .await
                .unwrap();
            start.elapsed()
        })
    };
    let batched = |i: u32| {
        let (store, batch) = (store.clone(), batch.clone());
        tokio::spawn(async move {
            let out = store.batched("test.batched", &batch, i, run).await.unwrap();
            (out, start.elapsed())
        })
    };
    let gap = || tokio::time::sleep(Duration::from_millis(50));
    // The turn is held; then, in the turn's queue: the first command, a
    // long transaction, the second command (whose value is queued by now).
    let first_hold = hold(300);
    gap().await;
    let first = batched(1);
    gap().await;
    let long = hold(1_000);
    gap().await;
    let second = batched(2);
    first_hold.await.unwrap();
    let (a, a_at) = first.await.unwrap();
    let (b, b_at) = second.await.unwrap();
    let long_done = long.await.unwrap();
    assert_eq!((a, b), (Some(10), Some(20)));
    assert_eq!(LARGEST.load(Ordering::SeqCst), 2, "the first turn took both");
    assert!(
        b_at < long_done,
        "the second waited for its own turn: answered at {b_at:?}, the long transaction ended at {long_done:?} (first at {a_at:?})"
    );
}
