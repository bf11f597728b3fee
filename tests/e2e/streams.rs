//! Server streams: at most `--max-streams-per-caller` open per caller (the
//! next is RESOURCE_EXHAUSTED, a closed stream gives its slot back, other
//! callers are unaffected), and a write wakes only the streams it concerns.

use std::time::Duration;

use proctor::db::notify::Topic;
use proctor::inbox::model::Recipient;
use proctor::proto::v1 as pb;
use tonic::Code;
use tonic::codec::Streaming;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, authed, spawn_app};

async fn subscribe(app: &TestApp, token: &str) -> Result<Streaming<pb::Envelope>, tonic::Status> {
    app.inbox()
        .subscribe(authed(pb::SubscribeRequest { after_cursor: 0 }, token))
        .await
        .map(tonic::Response::into_inner)
}

async fn the_cap_is_per_caller(b: Backend) {
    let app = spawn_app(b).await;
    let t1 = app.keys.tenant("t1");
    // Two users of one tenant share its slots.
    let other_user = app.keys.token("bob", &["tenant"], Some("t1"));
    let mut open = Vec::new();
    for i in 0..16 {
        let token = if i % 2 == 0 { &t1 } else { &other_user };
        open.push(subscribe(&app, token).await.expect("within the cap"));
    }
    let refused = subscribe(&app, &t1).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("max-streams-per-caller"),
        "{refused:?}"
    );
    // Streams of the other kinds count against the same cap.
    let watch = crate::subject_requests::client(&app)
        .watch_subject_request(authed(pb::WatchSubjectRequestRequest { id: "r1".into() }, &t1))
        .await
        .unwrap_err();
    assert_eq!(watch.code(), Code::ResourceExhausted, "{watch:?}");

    // Other callers are unaffected: another tenant, a platform system, and
    // the compliance team's audit export.
    let _t2 = subscribe(&app, &app.keys.tenant("t2"))
        .await
        .expect("t2 has its own slots");
    let _crm = subscribe(&app, &app.keys.platform("crm"))
        .await
        .expect("crm has its own");
    let mut export = app
        .audit()
        .export_audit_log(authed(
            pb::ExportAuditLogRequest::default(),
            &app.keys.compliance(),
        ))
        .await
        .expect("compliance has its own slots")
        .into_inner();
    while export.message().await.unwrap().is_some() {}

    // Closing one stream gives its slot back (once the server sees the
    // reset, which takes a moment).
    drop(open.pop());
    let reopened = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match subscribe(&app, &t1).await {
                Ok(s) => return s,
                Err(e) => {
                    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    })
    .await
    .expect("the closed stream's slot is released");
    open.push(reopened);
    // ...and exactly one: the cap holds again.
    assert_eq!(
        subscribe(&app, &t1).await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    drop(open);
    app.stop().await;
}
on_both_backends!(streams_are_capped_per_caller, the_cap_is_per_caller);

async fn writes_wake_only_their_streams(b: Backend) {
    let app = spawn_app(b).await;
    let (a, bb) = (Recipient::Tenant("ta".into()), Recipient::Tenant("tb".into()));
    let mut sa = subscribe(&app, &app.keys.tenant("ta")).await.unwrap();
    let _sb = subscribe(&app, &app.keys.tenant("tb")).await.unwrap();
    let hub = app.store.hub().clone();
    let (topic_a, topic_b) = (Topic::Inbox(a.clone()), Topic::Inbox(bb.clone()));
    assert_eq!((hub.signals(&topic_a), hub.signals(&topic_b)), (0, 0));

    // Writes to tenant A and to nobody's inbox.
    let ids = crate::inbox::put(&app.store, a.clone(), "breach.notice", 1).await;
    app.store.write("test.other", |_, _| Ok(())).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sa.message())
        .await
        .expect("A's stream gets its envelope")
        .unwrap()
        .unwrap();
    assert_eq!(got.id, ids[0]);
    assert_eq!(hub.signals(&topic_a), 1, "A's write woke A's stream once");
    assert_eq!(hub.signals(&topic_b), 0, "A's write did not wake B's stream");

    // A subject request's watchers wake for that request only.
    let r1 = Topic::SubjectRequest("r1".into());
    let r2 = Topic::SubjectRequest("r2".into());
    let (_w1, _w2) = (app.store.follow(r1.clone()), app.store.follow(r2.clone()));
    crate::inbox::put(&app.store, bb, "breach.notice", 1).await;
    assert_eq!(hub.signals(&topic_b), 1);
    assert_eq!(
        (hub.signals(&r1), hub.signals(&r2), hub.signals(&topic_a)),
        (0, 0, 1)
    );
    app.stop().await;
}
on_both_backends!(a_write_wakes_only_its_streams, writes_wake_only_their_streams);

async fn watch_wakes_on_its_request(b: Backend) {
    use crate::subject_requests::{client, register, submit};
    let app = spawn_app(b).await;
    let t1 = app.keys.tenant("t1");
    register(&app, "crm", &["contact"]).await;
    let mut c = client(&app);
    let mut ids = Vec::new();
    for key in ["k1", "k2"] {
        let r = c
            .submit_subject_request(authed(submit(pb::RequestType::Access, key, &["contact"]), &t1))
            .await
            .unwrap()
            .into_inner();
        ids.push(r.id);
    }
    let mut w1 = c
        .watch_subject_request(authed(pb::WatchSubjectRequestRequest { id: ids[0].clone() }, &t1))
        .await
        .unwrap()
        .into_inner();
    let _w2 = c
        .watch_subject_request(authed(pb::WatchSubjectRequestRequest { id: ids[1].clone() }, &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        w1.message().await.unwrap().unwrap().status,
        pb::Status::InProgress as i32
    );
    // Held here so the topic's count outlives w1's stream, which ends (and
    // drops its own follower) as soon as it sees the cancellation.
    let hub = app.store.hub().clone();
    let _held = hub.follow(Topic::SubjectRequest(ids[0].clone()));
    c.cancel_subject_request(authed(
        pb::CancelSubjectRequestRequest {
            id: ids[0].clone(),
            reason: String::new(),
        },
        &t1,
    ))
    .await
    .unwrap();
    assert_eq!(hub.signals(&Topic::SubjectRequest(ids[0].clone())), 1);
    assert_eq!(
        hub.signals(&Topic::SubjectRequest(ids[1].clone())),
        0,
        "cancelling one request does not wake the other's watch"
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), w1.message())
        .await
        .expect("the watch sees the cancellation")
        .unwrap()
        .unwrap();
    assert_eq!(closed.status, pb::Status::Cancelled as i32);
    app.stop().await;
}
on_both_backends!(a_watch_wakes_on_its_request_only, watch_wakes_on_its_request);
