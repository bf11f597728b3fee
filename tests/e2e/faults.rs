//! Faults, short forms that run in every `cargo test` (a few seconds each):
//!
//! - (a) `proctor serve` is SIGKILLed during a burst of mixed writes
//!   (idempotent subject-request submissions and instruction puts): after a
//!   restart on the same database every acknowledged write is there, none is
//!   there twice, and the audit chain verifies.
//! - (b) PostgreSQL goes away under load (the server reaches it through a TCP
//!   proxy the test cuts, so the shared database keeps running): calls fail
//!   fast with UNAVAILABLE, health turns NOT_SERVING, nothing panics, and
//!   everything recovers by itself when the proxy forwards again.
//!
//! - (c) of two replicas on one PostgreSQL, the one sequencing the audit
//!   log is SIGKILLed mid-burst: the other sequences every committed event
//!   within seconds, no leaf index twice.
//!
//! Two replicas on one PostgreSQL (leases, convergence) are tested in
//! `inbox.rs`, `instructions.rs` and `subject_requests.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proctor::proto::v1 as pb;
use proctor::proto::v1::audit_service_client::AuditServiceClient;
use proctor::proto::v1::instruction_service_client::InstructionServiceClient;
use proctor::proto::v1::subject_request_service_client::SubjectRequestServiceClient;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tonic::Code;
use tonic::transport::Channel;

use crate::cli::Server;
use crate::on_both_backends;
use crate::support::{Backend, TestApp, TestDb, TestKeys, authed, pg_base_url, spawn_with, test_config};

fn submission(key: &str) -> pb::SubmitSubjectRequestRequest {
    pb::SubmitSubjectRequestRequest {
        request_type: pb::RequestType::Erasure as i32,
        subject: Some(pb::Subject {
            external_id: format!("customer-{key}"),
            ..Default::default()
        }),
        regime: pb::Regime::Gdpr as i32,
        idempotency_key: key.into(),
        ..Default::default()
    }
}

/// A request platform system `crm` forwards to t1 under `key`.
fn forwarding(key: &str) -> pb::ForwardToControllerRequest {
    pb::ForwardToControllerRequest {
        tenant_id: "t1".into(),
        request_type: pb::RequestType::Access as i32,
        subject: Some(pb::Subject {
            external_id: format!("caller-{key}"),
            ..Default::default()
        }),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

fn instructions(n: u64) -> pb::InstructionSet {
    pb::InstructionSet {
        rules: vec![pb::CategoryRule {
            category: "recording".into(),
            retention_days: n as u32 + 1,
            purposes: vec!["service_delivery".into()],
            ..Default::default()
        }],
        termination_grace_days: 30,
        ..Default::default()
    }
}

fn start(db: &TestDb, keys: &TestKeys) -> Server {
    let data = keys.dir.path().join("data");
    let secrets = db.secrets.args();
    let mut args = vec![
        "--database-url",
        &db.url,
        "--data-dir",
        data.to_str().unwrap(),
        "--jwt-jwks",
        keys.jwks_path.to_str().unwrap(),
        "--jwt-issuer",
        "https://issuer.test",
        "--jwt-audience",
        "proctor",
    ];
    args.extend(secrets.iter().map(String::as_str));
    Server::start(keys.dir.path(), &args, &[])
}

/// What the burst saw acknowledged.
#[derive(Default)]
struct Acks {
    /// idempotency key -> request id, for every OK submission.
    submitted: HashMap<String, String>,
    /// every key a submission was attempted with.
    attempted: HashSet<String>,
    /// tenant -> highest acknowledged instructions version.
    versions: BTreeMap<String, u64>,
    /// idempotency key -> request id, for every OK forwarding (after the
    /// first of each tenant, one statement that commits on its own on
    /// PostgreSQL).
    forwarded: HashMap<String, String>,
    /// every key a forwarding was attempted with.
    forward_attempted: HashSet<String>,
}

async fn burst(channel: Channel, keys: &TestKeys, acks: Arc<Mutex<Acks>>, stop: watch::Receiver<bool>) {
    let mut tasks = Vec::new();
    for w in 0..6 {
        let (channel, token, acks, stop) = (channel.clone(), keys.tenant("t1"), acks.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = SubjectRequestServiceClient::new(channel);
            for n in 0.. {
                if *stop.borrow() {
                    return;
                }
                let key = format!("w{w}-{n}");
                acks.lock().unwrap().attempted.insert(key.clone());
                match c.submit_subject_request(authed(submission(&key), &token)).await {
                    Ok(r) => {
                        acks.lock().unwrap().submitted.insert(key, r.into_inner().id);
                    }
                    Err(_) => return, // the server died mid-call
                }
            }
        }));
    }
    for w in 0..2 {
        let (channel, token, acks, stop) =
            (channel.clone(), keys.platform("crm"), acks.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = SubjectRequestServiceClient::new(channel);
            for n in 0.. {
                if *stop.borrow() {
                    return;
                }
                let key = format!("f{w}-{n}");
                acks.lock().unwrap().forward_attempted.insert(key.clone());
                match c.forward_to_controller(authed(forwarding(&key), &token)).await {
                    Ok(r) => {
                        acks.lock().unwrap().forwarded.insert(key, r.into_inner().id);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    for tenant in ["ta", "tb"] {
        let (channel, token, acks, stop) = (channel.clone(), keys.tenant(tenant), acks.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = InstructionServiceClient::new(channel);
            for v in 0.. {
                if *stop.borrow() {
                    return;
                }
                let req = pb::PutInstructionsRequest {
                    tenant_id: tenant.into(),
                    expected_version: v,
                    instructions: Some(instructions(v)),
                    reason: "burst".into(),
                };
                match c.put_instructions(authed(req, &token)).await {
                    Ok(r) => {
                        acks.lock()
                            .unwrap()
                            .versions
                            .insert(tenant.into(), r.into_inner().version);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn sigkill_during_writes(b: Backend) {
    let db = TestDb::new(b);
    let keys = TestKeys::for_process();
    let mut server = start(&db, &keys);
    let channel = server.channel().await;
    assert!(server.wait_health(1, Duration::from_secs(30)).await);

    let acks = Arc::new(Mutex::new(Acks::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let killer = async {
        // Kill once writes of both kinds have been acknowledged, mid-burst.
        let started = Instant::now();
        loop {
            let enough = {
                let a = acks.lock().unwrap();
                a.submitted.len() >= 40
                    && a.forwarded.len() >= 20
                    && a.versions.values().filter(|v| **v >= 3).count() == 2
            };
            if enough || started.elapsed() > Duration::from_secs(30) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        let _ = stop_tx.send(true);
    };
    tokio::join!(burst(channel, &keys, acks.clone(), stop_rx), killer);
    let acks = Arc::try_unwrap(acks).ok().unwrap().into_inner().unwrap();
    assert!(
        acks.submitted.len() >= 40,
        "burst too small: {}",
        acks.submitted.len()
    );

    let server = start(&db, &keys);
    let channel = server.channel().await;
    assert!(
        server.wait_health(1, Duration::from_secs(30)).await,
        "restarted server never SERVING"
    );
    let t1 = keys.tenant("t1");
    let mut sr = SubjectRequestServiceClient::new(channel.clone());

    // Every acknowledged submission is there: a retry with its key returns
    // the same request. Unacknowledged ones are retried too, as a client would.
    for key in &acks.attempted {
        let id = sr
            .submit_subject_request(authed(submission(key), &t1))
            .await
            .unwrap()
            .into_inner()
            .id;
        if let Some(acked) = acks.submitted.get(key) {
            assert_eq!(&id, acked, "acknowledged submission {key} lost or replaced");
        }
    }
    // The same for forwarded requests.
    let crm = keys.platform("crm");
    for key in &acks.forward_attempted {
        let id = sr
            .forward_to_controller(authed(forwarding(key), &crm))
            .await
            .unwrap()
            .into_inner()
            .id;
        if let Some(acked) = acks.forwarded.get(key) {
            assert_eq!(&id, acked, "acknowledged forwarding {key} lost or replaced");
        }
    }
    // ...and none is there twice.
    let mut listed = Vec::new();
    let mut token = String::new();
    loop {
        let page = sr
            .list_subject_requests(authed(
                pb::ListSubjectRequestsRequest {
                    page_size: 1000,
                    page_token: token.clone(),
                    ..Default::default()
                },
                &t1,
            ))
            .await
            .unwrap()
            .into_inner();
        listed.extend(page.requests);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let keys_listed: HashSet<_> = listed.iter().map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(keys_listed.len(), listed.len(), "a submission was stored twice");
    let attempted: HashSet<_> = acks.attempted.union(&acks.forward_attempted).cloned().collect();
    assert_eq!(
        keys_listed, attempted,
        "stored requests differ from attempted ones"
    );

    // Instruction versions: every acknowledged one is there, numbered without
    // gaps or repeats (at most one more, committed as the process died).
    let mut ic = InstructionServiceClient::new(channel.clone());
    for (tenant, acked) in &acks.versions {
        let versions = ic
            .list_instruction_versions(authed(
                pb::ListInstructionVersionsRequest {
                    tenant_id: tenant.clone(),
                    page_size: 1000,
                    ..Default::default()
                },
                &keys.tenant(tenant),
            ))
            .await
            .unwrap()
            .into_inner()
            .versions;
        let mut numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
        numbers.sort_unstable();
        let top = *numbers.last().unwrap();
        assert!(
            top == *acked || top == acked + 1,
            "{tenant}: acked {acked}, stored up to {top}"
        );
        assert_eq!(
            numbers,
            (1..=top).collect::<Vec<_>>(),
            "{tenant}: versions not contiguous"
        );
    }

    // Every event that committed before the kill gets its leaf from the
    // restarted server's sequencer, and the tree verifies with all of them.
    let all = sequenced_events(&channel, &keys, Duration::from_secs(10)).await;
    let mut audit = AuditServiceClient::new(channel);
    let v = audit
        .verify_audit_log(authed(pb::VerifyAuditLogRequest::default(), &keys.sre()))
        .await
        .unwrap()
        .into_inner();
    assert!(v.ok, "audit log broken after SIGKILL: {v:?}");
    assert_eq!(
        v.tree_size,
        all.len() as u64,
        "every stored event is a leaf of the signed tree"
    );
    drop(server);
}
on_both_backends!(
    sigkill_during_writes_loses_nothing_acknowledged,
    sigkill_during_writes
);

/// Every audit event, as compliance lists it, once each has its leaf (or
/// what is there after `within`, for the caller's assertion to report).
async fn sequenced_events(channel: &Channel, keys: &TestKeys, within: Duration) -> Vec<pb::AuditEvent> {
    let mut audit = AuditServiceClient::new(channel.clone());
    let deadline = Instant::now() + within;
    loop {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = audit
                .list_audit_events(authed(
                    pb::ListAuditEventsRequest {
                        page_size: 1000,
                        page_token: token.clone(),
                        ..Default::default()
                    },
                    &keys.compliance(),
                ))
                .await
                .unwrap()
                .into_inner();
            all.extend(page.events);
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        if all.iter().all(|e| e.leaf_index.is_some()) || Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (c) Two replicas on one PostgreSQL; the one taking the writes, which
/// sequences most of them, is SIGKILLed mid-burst. The survivor, never
/// restarted, places every committed event in the tree within seconds;
/// no leaf index is assigned twice, and the tree verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_sequencing_replica_hands_sequencing_to_the_other() {
    if !crate::support::postgres_available() {
        return;
    }
    let db = TestDb::new(Backend::Postgres);
    let keys = TestKeys::for_process();
    let mut a = start(&db, &keys);
    let b = start(&db, &keys);
    let channel_a = a.channel().await;
    let channel_b = b.channel().await;
    assert!(a.wait_health(1, Duration::from_secs(30)).await);
    assert!(b.wait_health(1, Duration::from_secs(30)).await);

    let acks = Arc::new(Mutex::new(Acks::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let killer = async {
        let started = Instant::now();
        while acks.lock().unwrap().submitted.len() < 40 && started.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        a.child.kill().unwrap(); // SIGKILL, mid-burst
        a.child.wait().unwrap();
        let _ = stop_tx.send(true);
    };
    tokio::join!(burst(channel_a, &keys, acks.clone(), stop_rx), killer);
    let killed_at = Instant::now();
    assert!(acks.lock().unwrap().submitted.len() >= 40, "burst too small");

    let all = sequenced_events(&channel_b, &keys, Duration::from_secs(10)).await;
    assert!(
        all.iter().all(|e| e.leaf_index.is_some()),
        "the surviving replica left events unsequenced"
    );
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(10), "take-over took {took:?}");
    let mut leaves: Vec<u64> = all.iter().filter_map(|e| e.leaf_index).collect();
    leaves.sort_unstable();
    assert_eq!(
        leaves,
        (0..all.len() as u64).collect::<Vec<_>>(),
        "leaf indexes are dense and none is assigned twice"
    );
    let v = AuditServiceClient::new(channel_b)
        .verify_audit_log(authed(pb::VerifyAuditLogRequest::default(), &keys.sre()))
        .await
        .unwrap()
        .into_inner();
    assert!(v.ok, "audit log broken after the take-over: {v:?}");
    assert_eq!(v.tree_size, all.len() as u64);
    drop(b);
}

/// A TCP proxy to PostgreSQL that the test can cut (every connection
/// dropped, new ones closed at once) and restore.
pub struct Proxy {
    addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (up, _) = watch::channel(true);
        let state = up.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut up = state.subscribe();
                if !*up.borrow() {
                    continue; // dropped: the peer sees the connection close
                }
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = up.wait_for(|u| !*u) => {}
                    }
                });
            }
        });
        Self { addr, up }
    }

    /// Forwards (`true`) or cuts (`false`) every connection.
    pub fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

/// A fresh PostgreSQL schema reached through a [`Proxy`] the test can cut.
pub async fn postgres_behind_proxy() -> (Proxy, TestDb) {
    let base = pg_base_url();
    let upstream: SocketAddr = {
        let host_port = base
            .split('@')
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap()
            .to_owned();
        tokio::net::lookup_host(host_port).await.unwrap().next().unwrap()
    };
    let proxy = Proxy::start(upstream).await;
    let mut db = TestDb::new(Backend::Postgres);
    db.url = db.url.replacen(&upstream.to_string(), &proxy.addr.to_string(), 1);
    assert!(db.url.contains(&proxy.addr.to_string()), "{}", db.url);
    (proxy, db)
}

/// A server on a fresh schema reached through a [`Proxy`], with its
/// configuration changed by `change`.
async fn app_behind_proxy(change: impl FnOnce(&mut proctor::config::Config)) -> (Proxy, TestApp) {
    let (proxy, db) = postgres_behind_proxy().await;
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    change(&mut cfg);
    (proxy, spawn_with(db, keys, cfg).await)
}

async fn health(app: &TestApp) -> i32 {
    use tonic_health::pb::HealthCheckRequest;
    app.health()
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

/// Polls until health reports `want` (1 SERVING, 2 NOT_SERVING).
async fn wait_health(app: &TestApp, want: i32, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if health(app).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_fast_and_recovers_by_itself() {
    if !crate::support::postgres_available() {
        return;
    }
    let (proxy, app) = app_behind_proxy(|cfg| cfg.db_timeout_seconds = 1).await;
    let t1 = app.keys.tenant("t1");
    let mut sr = app.subject_requests();
    let list = |sr: &mut SubjectRequestServiceClient<Channel>| {
        let mut sr = sr.clone();
        let t1 = t1.clone();
        async move {
            sr.list_subject_requests(authed(pb::ListSubjectRequestsRequest::default(), &t1))
                .await
        }
    };
    sr.submit_subject_request(authed(submission("before"), &t1))
        .await
        .unwrap();

    // Load while the database is cut: every call fails fast with UNAVAILABLE.
    proxy.set(false);
    let mut calls = Vec::new();
    for i in 0..16 {
        let mut sr = sr.clone();
        let t1 = t1.clone();
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            let res = if i % 2 == 0 {
                sr.submit_subject_request(authed(submission(&format!("during-{i}")), &t1))
                    .await
                    .map(|_| ())
            } else {
                sr.list_subject_requests(authed(pb::ListSubjectRequestsRequest::default(), &t1))
                    .await
                    .map(|_| ())
            };
            (res, started.elapsed())
        }));
    }
    for c in calls {
        let (res, took) = c.await.unwrap();
        let e = res.expect_err("no call can succeed without the database");
        assert_eq!(e.code(), Code::Unavailable, "{e:?}");
        assert!(took < Duration::from_secs(5), "UNAVAILABLE took {took:?}");
    }
    assert!(
        wait_health(&app, 2, Duration::from_secs(10)).await,
        "health must turn NOT_SERVING while the database is away"
    );

    // The database returns: health and calls recover without a restart.
    proxy.set(true);
    assert!(
        wait_health(&app, 1, Duration::from_secs(15)).await,
        "health must recover by itself"
    );
    let listed = list(&mut sr)
        .await
        .expect("calls work again")
        .into_inner()
        .requests;
    assert_eq!(listed.len(), 1, "only the write before the outage exists");
    sr.submit_subject_request(authed(submission("after"), &t1))
        .await
        .unwrap();
    app.stop().await;
}

/// A connection that dies just after a command used it is handed out
/// unpinged (it is trusted for a moment), so the next command on it fails
/// UNAVAILABLE; that command's failure must drop it, not pool it again,
/// or every command after would fail on it too. One pooled connection, so
/// the dead one is the only one there is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_in_use_is_dropped_not_pooled_again() {
    if !crate::support::postgres_available() {
        return;
    }
    let (proxy, app) = app_behind_proxy(|cfg| {
        cfg.db_pool_size = 1;
        cfg.db_timeout_seconds = 2;
    })
    .await;
    let t1 = app.keys.tenant("t1");
    let sr = app.subject_requests();
    let list = || {
        let (mut sr, t1) = (sr.clone(), t1.clone());
        async move {
            sr.list_subject_requests(authed(pb::ListSubjectRequestsRequest::default(), &t1))
                .await
        }
    };
    for round in 0..3 {
        list().await.expect("the connection works");
        // Cut and restored well within the moment a used connection is
        // trusted: the pooled connection is dead, and nothing pings it.
        proxy.set(false);
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.set(true);
        let mut failed = 0;
        let mut ok = false;
        for _ in 0..3 {
            match list().await {
                Ok(_) => {
                    ok = true;
                    break;
                }
                Err(e) => {
                    assert_eq!(e.code(), Code::Unavailable, "round {round}: {e:?}");
                    failed += 1;
                }
            }
        }
        assert!(
            ok,
            "round {round}: calls fail on after the dead connection failed once"
        );
        assert!(
            failed <= 1,
            "round {round}: {failed} calls failed on one dead connection"
        );
    }
    app.stop().await;
}

/// Two replicas on one PostgreSQL pull fulfilment tasks concurrently: each
/// task is leased to exactly one puller at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_lease_each_task_once() {
    if !crate::support::postgres_available() {
        return;
    }
    let a = crate::support::spawn_app(Backend::Postgres).await;
    let keys = TestKeys::new();
    let db = TestDb::shared_with(&a.db);
    // Replicas share the server secrets (the database's), as a deployment's do.
    let cfg = test_config(&db, &keys);
    let b = spawn_with(db, keys, cfg).await;

    let mut sr = a.subject_requests();
    sr.register_system(authed(
        pb::RegisterSystemRequest {
            name: "crm".into(),
            categories: vec!["contact".into()],
        },
        &a.keys.compliance(),
    ))
    .await
    .unwrap();
    let t1 = a.keys.tenant("t1");
    const N: usize = 40;
    for i in 0..N {
        sr.submit_subject_request(authed(submission(&format!("lease-{i}")), &t1))
            .await
            .unwrap();
    }

    let mut pullers = Vec::new();
    for (i, app) in [&a, &b, &a, &b].into_iter().enumerate() {
        let mut c = app.subject_requests();
        let token = app.keys.platform("crm");
        pullers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let tasks = c
                    .pull_tasks(authed(
                        pb::PullTasksRequest {
                            system: String::new(),
                            max: 3,
                            lease_seconds: 300,
                        },
                        &token,
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("puller {i}: {e:?}"))
                    .into_inner()
                    .tasks;
                if tasks.is_empty() {
                    return got;
                }
                got.extend(tasks.into_iter().map(|t| t.id));
            }
        }));
    }
    let mut all = Vec::new();
    let mut per_replica = Vec::new();
    for p in pullers {
        let got = p.await.unwrap();
        per_replica.push(got.len());
        all.extend(got);
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(
        all.len(),
        N,
        "tasks leased {} times for {N} tasks ({per_replica:?})",
        all.len()
    );
    assert_eq!(distinct.len(), N, "a task was leased twice");
    b.stop().await;
    a.stop().await;
}
