//! The inbox backbone: at-least-once, in order per recipient, leased,
//! redelivered after lease expiry, isolated per recipient, and never leased
//! twice by two servers on one PostgreSQL.

use std::collections::HashSet;

use chrono::Duration;
use proctor::db::Store;
use proctor::error::Error;
use proctor::inbox::model::Recipient;
use proctor::inbox::repo as inbox;
use proctor::proto::v1::inbox_service_client::InboxServiceClient;
use proctor::proto::v1::{AckRequest, PullRequest, SubscribeRequest};
use tonic::Code;
use tonic_types::StatusExt;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, authed, spawn_app, spawn_with, test_config};

/// Enqueues as a capability would: inside a write transaction.
pub async fn put(store: &Store, to: Recipient, kind: &str, n: usize) -> Vec<String> {
    let kind = kind.to_owned();
    store
        .write("test.enqueue", move |c, clock| {
            (0..n)
                .map(|i| {
                    inbox::enqueue(
                        c,
                        clock.now(),
                        &to,
                        &kind,
                        &serde_json::json!({"id": format!("thing-{i}")}),
                    )
                    .map(|e| e.id)
                })
                .collect()
        })
        .await
        .unwrap()
}

fn client(app: &TestApp) -> InboxServiceClient<tonic::transport::Channel> {
    app.inbox()
}

async fn leases_and_acks(b: Backend) {
    let app = spawn_app(b).await;
    let t1 = app.keys.tenant("t1");
    let crm = app.keys.platform("crm");
    let ids = put(&app.store, Recipient::Tenant("t1".into()), "breach.notice", 3).await;
    put(&app.store, Recipient::Tenant("t2".into()), "breach.notice", 2).await;
    put(
        &app.store,
        Recipient::System("crm".into()),
        "subject_request.task",
        1,
    )
    .await;
    let mut c = client(&app);

    // In order, only the caller's own envelopes.
    let got = c
        .pull(authed(
            PullRequest {
                max: 10,
                lease_seconds: 30,
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner()
        .envelopes;
    assert_eq!(got.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids);
    assert!(got.windows(2).all(|w| w[0].cursor < w[1].cursor));
    assert!(
        got.iter()
            .all(|e| e.delivery_count == 1 && e.kind == "breach.notice")
    );
    let payload: serde_json::Value = serde_json::from_str(&got[0].payload).unwrap();
    assert_eq!(payload["id"], "thing-0");

    // Leased: nobody else gets them until the lease runs out.
    let again = c
        .pull(authed(PullRequest::default(), &t1))
        .await
        .unwrap()
        .into_inner()
        .envelopes;
    assert!(again.is_empty());
    let sys = c
        .pull(authed(PullRequest::default(), &crm))
        .await
        .unwrap()
        .into_inner()
        .envelopes;
    assert_eq!(sys.len(), 1, "the platform system sees only its own inbox");

    // Ack one; after the lease expires the other two come back, once more.
    c.ack(authed(
        AckRequest {
            ids: vec![ids[0].clone()],
        },
        &t1,
    ))
    .await
    .unwrap();
    app.clock.advance(Duration::seconds(31));
    let redelivered = c
        .pull(authed(PullRequest::default(), &t1))
        .await
        .unwrap()
        .into_inner()
        .envelopes;
    assert_eq!(
        redelivered.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        ids[1..].to_vec()
    );
    assert!(redelivered.iter().all(|e| e.delivery_count == 2));

    // Acking twice is harmless; acking someone else's envelope is NOT_FOUND
    // and acknowledges nothing.
    let n = c
        .ack(authed(AckRequest { ids: ids.clone() }, &t1))
        .await
        .unwrap()
        .into_inner()
        .acknowledged;
    assert_eq!(n, 2);
    let e = c
        .ack(authed(
            AckRequest {
                ids: vec![sys[0].id.clone()],
            },
            &t1,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    app.clock.advance(Duration::seconds(31));
    assert_eq!(
        c.pull(authed(PullRequest::default(), &crm))
            .await
            .unwrap()
            .into_inner()
            .envelopes
            .len(),
        1,
        "the refused ack left the system's envelope alone"
    );
    assert!(
        c.pull(authed(PullRequest::default(), &t1))
            .await
            .unwrap()
            .into_inner()
            .envelopes
            .is_empty()
    );

    // Bad input is INVALID_ARGUMENT naming the field.
    let e = c
        .pull(authed(
            PullRequest {
                max: 501,
                lease_seconds: 0,
            },
            &t1,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.get_details_bad_request().unwrap().field_violations[0].field,
        "max"
    );
    let e = c.ack(authed(AckRequest { ids: vec![] }, &t1)).await.unwrap_err();
    assert_eq!(
        e.get_details_bad_request().unwrap().field_violations[0].field,
        "ids"
    );
    app.stop().await;
}
on_both_backends!(pull_lease_redeliver_ack, leases_and_acks);

async fn enqueue_is_transactional(b: Backend) {
    let app = spawn_app(b).await;
    let res: Result<(), Error> = app
        .store
        .write("test.fail", |c, clock| {
            inbox::enqueue(
                c,
                clock.now(),
                &Recipient::Tenant("t1".into()),
                "x",
                &serde_json::json!({}),
            )?;
            Err(Error::WrongState("the change itself failed".into()))
        })
        .await;
    assert!(res.is_err());
    let got = client(&app)
        .pull(authed(PullRequest::default(), &app.keys.tenant("t1")))
        .await
        .unwrap()
        .into_inner()
        .envelopes;
    assert!(
        got.is_empty(),
        "an envelope of a rolled-back change was delivered"
    );
    app.stop().await;
}
on_both_backends!(envelope_rolls_back_with_its_change, enqueue_is_transactional);

async fn subscribe_streams_live(b: Backend) {
    let app = spawn_app(b).await;
    let t1 = app.keys.tenant("t1");
    let first = put(&app.store, Recipient::Tenant("t1".into()), "a", 2).await;
    let mut stream = client(&app)
        .subscribe(authed(SubscribeRequest { after_cursor: 0 }, &t1))
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(stream.message().await.unwrap().unwrap());
    }
    assert_eq!(seen.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), first);
    // Written after the stream opened: arrives without polling delay.
    put(&app.store, Recipient::Tenant("t2".into()), "a", 1).await;
    let later = put(&app.store, Recipient::Tenant("t1".into()), "b", 1).await;
    let next = tokio::time::timeout(std::time::Duration::from_secs(3), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.id, later[0]);
    assert_eq!(next.kind, "b");
    // Resuming after a cursor skips what came before it.
    let mut resumed = client(&app)
        .subscribe(authed(
            SubscribeRequest {
                after_cursor: seen[0].cursor,
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.message().await.unwrap().unwrap().id, first[1]);
    app.stop().await;
}
on_both_backends!(subscribe_streams_in_order, subscribe_streams_live);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_never_lease_one_envelope_twice() {
    if !crate::support::postgres_available() {
        return;
    }
    let a = spawn_app(Backend::Postgres).await;
    // A second server process on the same PostgreSQL schema.
    let keys = crate::support::TestKeys::new();
    let db = crate::support::TestDb::shared_with(&a.db);
    let cfg = test_config(&db, &keys);
    let b = spawn_with(db, keys, cfg).await;
    let ids = put(&a.store, Recipient::System("crm".into()), "task", 300).await;

    let mut handles = Vec::new();
    for (i, app) in [&a, &b, &a, &b].into_iter().enumerate() {
        let channel = app.channel.clone();
        let token = app.keys.platform("crm");
        handles.push(tokio::spawn(async move {
            let mut c = InboxServiceClient::new(channel);
            let mut got = Vec::new();
            loop {
                let batch = c
                    .pull(authed(
                        PullRequest {
                            max: 7 + i as u32,
                            lease_seconds: 600,
                        },
                        &token,
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .envelopes;
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|e| e.id));
            }
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "an envelope was leased twice");
    assert_eq!(unique.len(), ids.len(), "every envelope was leased");
    b.stop().await;
    a.stop().await;
}
