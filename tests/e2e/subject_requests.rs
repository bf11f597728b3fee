//! Data-subject requests end to end: forwarding to the controller, idempotent
//! submission, fan-out to two systems, leases, cancellation, exports,
//! deadlines on the tenant's calendar, flags for CheckProcessing, and
//! identifiers that never sit in the database in clear.

use chrono::{Duration, TimeZone, Utc};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use proctor::proto::v1::subject_request_service_client::SubjectRequestServiceClient as Client;
use proctor::proto::v1::{self as pb, compute_subject_ref_request::Identifier};
use proctor::subject_requests::model::receipt_message;
use proctor::subject_requests::repo as store;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, authed, spawn_app};

const EMAIL: &str = "ada.lovelace@example.org";

pub(crate) fn client(app: &TestApp) -> Client<Channel> {
    app.subject_requests()
}

fn ts(t: chrono::DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

fn from_pb(t: &Option<prost_types::Timestamp>) -> chrono::DateTime<Utc> {
    let t = t.as_ref().unwrap();
    Utc.timestamp_opt(t.seconds, t.nanos as u32).unwrap()
}

pub(crate) fn submit(ty: pb::RequestType, key: &str, cats: &[&str]) -> pb::SubmitSubjectRequestRequest {
    pb::SubmitSubjectRequestRequest {
        tenant_id: String::new(),
        request_type: ty as i32,
        subject: Some(pb::Subject {
            email: EMAIL.to_uppercase(),
            name: "Ada Lovelace".into(),
            ..Default::default()
        }),
        categories: cats.iter().map(|c| c.to_string()).collect(),
        regime: pb::Regime::Gdpr as i32,
        received_at: None,
        idempotency_key: key.into(),
        corrections: Vec::new(),
    }
}

/// First instructions of `tenant`: contacts for service delivery only.
pub(crate) async fn contact_for_service_delivery(app: &TestApp, tenant: &str, termination_grace_days: u32) {
    let rule = pb::CategoryRule {
        category: "contact".into(),
        purposes: vec!["service_delivery".into()],
        ..Default::default()
    };
    let set = pb::InstructionSet {
        rules: vec![rule],
        termination_grace_days,
        ..Default::default()
    };
    crate::instructions::put(app, tenant, 0, set).await;
}

pub(crate) async fn register(app: &TestApp, name: &str, cats: &[&str]) {
    client(app)
        .register_system(authed(
            pb::RegisterSystemRequest {
                name: name.into(),
                categories: cats.iter().map(|c| c.to_string()).collect(),
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap();
}

pub(crate) async fn pull(app: &TestApp, system: &str, lease: u32) -> Vec<pb::Task> {
    client(app)
        .pull_tasks(authed(
            pb::PullTasksRequest {
                system: String::new(),
                max: 10,
                lease_seconds: lease,
            },
            &app.keys.platform(system),
        ))
        .await
        .unwrap()
        .into_inner()
        .tasks
}

pub(crate) async fn complete(
    app: &TestApp,
    system: &str,
    task: &str,
    data: &[u8],
    more: bool,
) -> Result<pb::Task, tonic::Status> {
    client(app)
        .complete_task(authed(
            pb::CompleteTaskRequest {
                task_id: task.into(),
                records_affected: 2,
                export_data: data.to_vec(),
                more,
                ..Default::default()
            },
            &app.keys.platform(system),
        ))
        .await
        .map(|r| r.into_inner())
}

async fn subject_ref(app: &TestApp, tenant: &str) -> String {
    client(app)
        .compute_subject_ref(authed(
            pb::ComputeSubjectRefRequest {
                identifier: Some(Identifier::Email(format!("  {EMAIL} "))),
                tenant_id: tenant.into(),
            },
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap()
        .into_inner()
        .subject_ref
}

async fn flags(app: &TestApp, tenant: &str, sref: &str) -> proctor::subject_requests::model::SubjectFlags {
    let (t, s) = (tenant.to_owned(), sref.to_owned());
    app.store
        .read("test.flags", move |c, _| store::subject_flags(c, &t, &s))
        .await
        .unwrap()
}

async fn erasure_with_two_systems(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app);
    let t1 = app.keys.tenant("t1");
    register(&app, "crm", &["contact", "recording"]).await;
    register(&app, "dialer", &["recording"]).await;
    register(&app, "chat", &["transcript"]).await;
    // Registering a system is compliance's: a platform token may not, not
    // even for itself (it would then receive every tenant's identifiers).
    for who in ["dialer", "crm"] {
        let denied = c
            .register_system(authed(
                pb::RegisterSystemRequest {
                    name: "crm".into(),
                    categories: vec!["contact".into()],
                },
                &app.keys.platform(who),
            ))
            .await
            .unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
    }

    let sref = subject_ref(&app, "t1").await;
    assert!(!flags(&app, "t1", &sref).await.erased);

    let r = c
        .submit_subject_request(authed(
            submit(pb::RequestType::Erasure, "k1", &["recording", "contact"]),
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, pb::Status::InProgress as i32);
    assert_eq!(
        r.tasks.len(),
        2,
        "crm and dialer hold categories in scope, chat does not"
    );
    assert_eq!(r.subject_ref, sref, "normalised email, keyed hash");
    assert_eq!(
        r.subject.as_ref().unwrap().email,
        EMAIL,
        "the controller sees its subject"
    );
    // Received 2 March 09:00 UTC: GDPR due at the end of 2 April; SLA 10 days.
    assert_eq!(
        from_pb(&r.due_at),
        Utc.with_ymd_and_hms(2026, 4, 2, 23, 59, 59).unwrap()
    );
    assert_eq!(
        from_pb(&r.sla_due_at),
        Utc.with_ymd_and_hms(2026, 3, 12, 23, 59, 59).unwrap()
    );
    // Erasure reaches the decision flags at once.
    assert!(flags(&app, "t1", &sref).await.erased);
    let other_ref = subject_ref(&app, "t2").await;
    assert!(!flags(&app, "t2", &other_ref).await.any(), "per tenant");

    // The receipt verifies offline with the published key.
    let key = c
        .get_receipt_key(authed(pb::GetReceiptKeyRequest {}, &t1))
        .await
        .unwrap()
        .into_inner();
    let receipt = r.receipt.clone().unwrap();
    assert_eq!(receipt.key_id, key.key_id);
    let vk = VerifyingKey::from_bytes(&key.public_key.clone().try_into().unwrap()).unwrap();
    let msg = receipt_message("t1", &receipt.digest, from_pb(&receipt.issued_at));
    vk.verify(&msg, &Signature::from_slice(&receipt.signature).unwrap())
        .expect("receipt signature verifies");
    let forged = receipt_message("t2", &receipt.digest, from_pb(&receipt.issued_at));
    assert!(
        vk.verify(&forged, &Signature::from_slice(&receipt.signature).unwrap())
            .is_err()
    );

    // Tenant isolation: another tenant's id is NOT_FOUND; compliance reads it
    // without identifiers.
    let nf = c
        .get_subject_request(authed(
            pb::GetSubjectRequestRequest { id: r.id.clone() },
            &app.keys.tenant("t2"),
        ))
        .await
        .unwrap_err();
    assert_eq!(nf.code(), Code::NotFound);
    let seen = c
        .get_subject_request(authed(
            pb::GetSubjectRequestRequest { id: r.id.clone() },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(seen.subject.is_none());

    let mut watch = c
        .watch_subject_request(authed(pb::WatchSubjectRequestRequest { id: r.id.clone() }, &t1))
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status, pb::Status::InProgress as i32);

    // Each system sees only its own task, with the identifiers it needs.
    let crm = pull(&app, "crm", 60).await;
    assert_eq!(crm.len(), 1);
    assert_eq!(crm[0].categories, ["contact", "recording"]);
    assert_eq!(crm[0].subject.as_ref().unwrap().email, EMAIL);
    let dialer = pull(&app, "dialer", 60).await;
    assert_eq!(dialer.len(), 1);
    assert_eq!(dialer[0].categories, ["recording"]);
    // A system cannot complete another system's task.
    let e = complete(&app, "dialer", &crm[0].id, b"", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Erasure tasks send no export data.
    let e = complete(&app, "crm", &crm[0].id, b"[1]", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    complete(&app, "crm", &crm[0].id, b"", false).await.unwrap();
    let mid = watch.next().await.unwrap().unwrap();
    assert_eq!(mid.status, pb::Status::InProgress as i32);
    complete(&app, "dialer", &dialer[0].id, b"", false).await.unwrap();
    let mut last = mid;
    while let Some(m) = watch.next().await {
        last = m.unwrap();
    }
    assert_eq!(
        last.status,
        pb::Status::Completed as i32,
        "the watch ends on completion"
    );

    let done = c
        .get_subject_request(authed(pb::GetSubjectRequestRequest { id: r.id.clone() }, &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.status, pb::Status::Completed as i32);
    assert!(done.subject.is_none(), "identifiers dropped on close");
    assert_eq!(done.subject_ref, sref, "the keyed hash remains");
    assert!(
        flags(&app, "t1", &sref).await.erased,
        "a completed erasure still denies"
    );
    // Completing again is refused; the controller heard about completion.
    let e = complete(&app, "crm", &crm[0].id, b"", false).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let env = app
        .inbox()
        .pull(authed(pb::PullRequest::default(), &t1))
        .await
        .unwrap()
        .into_inner()
        .envelopes;
    assert!(env.iter().any(|e| e.kind == "subject_request.completed"));
    // Systems got their tasks announced in their inboxes too.
    let sys_env = app
        .inbox()
        .pull(authed(pb::PullRequest::default(), &app.keys.platform("crm")))
        .await
        .unwrap()
        .into_inner()
        .envelopes;
    assert_eq!(sys_env.len(), 1);
    assert_eq!(sys_env[0].kind, "subject_request.task");

    // Operators see counts only.
    let counts = c
        .count_subject_requests(authed(
            pb::CountSubjectRequestsRequest::default(),
            &app.keys.sre(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((counts.open, counts.overdue, counts.open_tasks), (0, 0, 0));
    let e = c
        .list_subject_requests(authed(pb::ListSubjectRequestsRequest::default(), &app.keys.sre()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    app.stop().await;
}
on_both_backends!(erasure_with_two_systems, erasure_with_two_systems);

async fn access_export(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app);
    let t1 = app.keys.tenant("t1");
    register(&app, "crm", &["contact"]).await;
    register(&app, "dialer", &["recording"]).await;
    let r = c
        .submit_subject_request(authed(submit(pb::RequestType::Access, "a1", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.tasks.len(), 2);
    // Not ready before completion.
    let mut early = c
        .get_export(authed(
            pb::GetExportRequest {
                id: r.id.clone(),
                ..Default::default()
            },
            &t1,
        ))
        .await;
    if let Ok(s) = &mut early {
        let first = s.get_mut().next().await.unwrap();
        assert_eq!(first.unwrap_err().code(), Code::FailedPrecondition);
    } else {
        assert_eq!(early.unwrap_err().code(), Code::FailedPrecondition);
    }
    let crm = pull(&app, "crm", 60).await;
    complete(&app, "crm", &crm[0].id, br#"[{"contact":1},{"contact":2}]"#, true)
        .await
        .unwrap();
    complete(&app, "crm", &crm[0].id, br#"[{"contact":3}]"#, false)
        .await
        .unwrap();
    let e = complete(&app, "crm", &crm[0].id, b"not json", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "done already");
    let dialer = pull(&app, "dialer", 60).await;
    let e = complete(&app, "dialer", &dialer[0].id, b"{\"a\":1}", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "a chunk is a JSON array");
    complete(&app, "dialer", &dialer[0].id, br#"[{"recording":"r-9"}]"#, false)
        .await
        .unwrap();
    // At rest the records are sealed with the identifier key ring: no stored
    // chunk holds them in the clear, each names its key.
    let raw: Vec<(Vec<u8>, Option<String>)> = app
        .store
        .read("test.raw_chunks", |c, _| {
            use diesel::prelude::*;
            use proctor::db::schema::subject_export_chunks::dsl as x;
            Ok(x::subject_export_chunks.select((x::data, x::key_id)).load(c)?)
        })
        .await
        .unwrap();
    assert_eq!(raw.len(), 3);
    for (data, key) in &raw {
        assert!(key.is_some());
        let text = String::from_utf8_lossy(data);
        assert!(!text.contains("contact") && !text.contains("r-9"), "{text}");
    }

    let mut stream = c
        .get_export(authed(
            pb::GetExportRequest {
                id: r.id.clone(),
                ..Default::default()
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut bytes = Vec::new();
    let mut chunks = 0;
    while let Some(ch) = stream.next().await {
        bytes.extend(ch.unwrap().data);
        chunks += 1;
    }
    assert!(chunks > 3, "streamed in pieces, not one blob");
    let bundle: serde_json::Value = serde_json::from_slice(&bytes).expect("one JSON bundle");
    assert_eq!(bundle["request"]["id"], r.id);
    let docs = bundle["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 2);
    let crm_doc = docs.iter().find(|d| d["system"] == "crm").unwrap();
    assert_eq!(crm_doc["records"].as_array().unwrap().len(), 3);
    assert_eq!(crm_doc["records_affected"], 4);
    let dialer_doc = docs.iter().find(|d| d["system"] == "dialer").unwrap();
    assert_eq!(dialer_doc["records"][0]["recording"], "r-9");
    assert!(!String::from_utf8_lossy(&bytes).contains(EMAIL));

    // Another tenant cannot; after the retention since first download the
    // bundle is gone.
    let e = c
        .get_export(authed(
            pb::GetExportRequest {
                id: r.id.clone(),
                ..Default::default()
            },
            &app.keys.tenant("t2"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    app.clock.advance(Duration::hours(167));
    assert!(
        c.get_export(authed(
            pb::GetExportRequest {
                id: r.id.clone(),
                ..Default::default()
            },
            &t1
        ))
        .await
        .is_ok()
    );
    app.clock.advance(Duration::hours(2));
    let e = c
        .get_export(authed(
            pb::GetExportRequest {
                id: r.id.clone(),
                ..Default::default()
            },
            &t1,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    app.stop().await;
}
on_both_backends!(access_export, access_export);

async fn leases_failures_and_cancel(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app);
    let t1 = app.keys.tenant("t1");
    register(&app, "crm", &["contact"]).await;
    let sref = subject_ref(&app, "t1").await;
    let r = c
        .submit_subject_request(authed(submit(pb::RequestType::Restriction, "r1", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    assert!(
        flags(&app, "t1", &sref).await.restricted,
        "an open restriction denies at once"
    );

    let first = pull(&app, "crm", 30).await;
    assert_eq!(first.len(), 1);
    assert!(pull(&app, "crm", 30).await.is_empty(), "leased");
    // An expired lease is a failed attempt: offered again after the first
    // retry's 30 s, counted from the lease's end.
    app.clock.advance(Duration::seconds(31));
    assert!(
        pull(&app, "crm", 30).await.is_empty(),
        "backing off after the expiry"
    );
    app.clock.advance(Duration::seconds(29));
    let again = pull(&app, "crm", 30).await;
    assert_eq!(again.len(), 1, "an expired lease makes the task available again");
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].error, "lease expired");

    // A failure is visible and offered again.
    let failed = c
        .fail_task(authed(
            pb::FailTaskRequest {
                task_id: again[0].id.clone(),
                error: "backend timeout".into(),
            },
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.status, pb::TaskStatus::Failed as i32);
    // The second attempt failed: it waits twice the first retry's 30 s.
    assert!(pull(&app, "crm", 30).await.is_empty(), "backing off");
    app.clock.advance(Duration::seconds(59));
    assert!(pull(&app, "crm", 30).await.is_empty(), "backing off");
    app.clock.advance(Duration::seconds(1));
    assert_eq!(pull(&app, "crm", 30).await.len(), 1);

    // Someone else's system name is refused.
    let e = c
        .pull_tasks(authed(
            pb::PullTasksRequest {
                system: "dialer".into(),
                ..Default::default()
            },
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Another tenant cannot cancel it; the owner can, once.
    let e = c
        .cancel_subject_request(authed(
            pb::CancelSubjectRequestRequest {
                id: r.id.clone(),
                reason: String::new(),
            },
            &app.keys.tenant("t2"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let cancelled = c
        .cancel_subject_request(authed(
            pb::CancelSubjectRequestRequest {
                id: r.id.clone(),
                reason: "withdrawn by the person".into(),
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, pb::Status::Cancelled as i32);
    assert_eq!(cancelled.tasks[0].status, pb::TaskStatus::Cancelled as i32);
    assert!(cancelled.subject.is_none());
    let e = c
        .cancel_subject_request(authed(
            pb::CancelSubjectRequestRequest {
                id: r.id.clone(),
                reason: String::new(),
            },
            &t1,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = complete(&app, "crm", &again[0].id, b"", false).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "completion after cancellation"
    );
    assert!(pull(&app, "crm", 30).await.is_empty());
    assert!(
        !flags(&app, "t1", &sref).await.restricted,
        "a cancelled restriction no longer denies"
    );
    let changes = app
        .store
        .read("test.changes", |c, _| store::flags_changed_since(c, 0, 100))
        .await
        .unwrap();
    assert_eq!(changes.len(), 1, "one row per subject, latest state");
    assert!(!changes[0].flags.any());
    app.stop().await;
}
on_both_backends!(leases_failures_and_cancel, leases_failures_and_cancel);

async fn rejection_on_a_legal_ground(b: Backend) {
    let app = spawn_app(b).await;
    register(&app, "crm", &["contact"]).await;
    let mut c = client(&app);
    let t1 = app.keys.tenant("t1");
    let r = c
        .submit_subject_request(authed(submit(pb::RequestType::Erasure, "rej", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, pb::Status::InProgress as i32);
    let reject = |ground: pb::RejectionGround, reason: &str| pb::RejectSubjectRequestRequest {
        id: r.id.clone(),
        ground: ground as i32,
        reason: reason.into(),
    };

    // A ground and the reasons given are required.
    let e = c
        .reject_subject_request(authed(reject(pb::RejectionGround::Unspecified, ""), &t1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields = crate::support::violated_fields(&e);
    assert_eq!(fields, ["reason", "ground"]);
    // Another tenant's request is not there for it; the platform may not.
    let why = "third identical request this month";
    let e = c
        .reject_subject_request(authed(
            reject(pb::RejectionGround::Excessive, why),
            &app.keys.tenant("t2"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .reject_subject_request(authed(
            reject(pb::RejectionGround::Excessive, why),
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    let rejected = c
        .reject_subject_request(authed(reject(pb::RejectionGround::Excessive, why), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rejected.status, pb::Status::Rejected as i32);
    assert_eq!(rejected.rejection_ground, pb::RejectionGround::Excessive as i32);
    assert_eq!(rejected.close_reason, why);
    assert!(rejected.closed_at.is_some());
    assert!(rejected.subject.is_none(), "identifiers dropped on close");
    assert_eq!(rejected.tasks[0].status, pb::TaskStatus::Cancelled as i32);
    assert!(pull(&app, "crm", 30).await.is_empty());
    // Final: neither a second rejection nor a cancellation.
    let e = c
        .reject_subject_request(authed(reject(pb::RejectionGround::Excessive, why), &t1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let got = c
        .get_subject_request(authed(pb::GetSubjectRequestRequest { id: r.id.clone() }, &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.rejection_ground, pb::RejectionGround::Excessive as i32);
    assert_eq!(got.close_reason, why);
    // The audit log names the ground, not the reasons' text.
    let events = crate::support::audit_events(&app).await;
    let ev = events
        .iter()
        .find(|e| e.action == "subject_request.reject")
        .expect("audited");
    assert!(ev.detail.contains("excessive") && !ev.detail.contains(why));
    app.stop().await;
}
on_both_backends!(rejection_on_a_legal_ground, rejection_on_a_legal_ground);

async fn idempotent_submission(b: Backend) {
    let app = spawn_app(b).await;
    register(&app, "crm", &["contact"]).await;
    let t1 = app.keys.tenant("t1");
    let mut calls = Vec::new();
    for _ in 0..50 {
        let mut c = client(&app);
        let t = t1.clone();
        calls.push(tokio::spawn(async move {
            c.submit_subject_request(authed(submit(pb::RequestType::Erasure, "same", &[]), &t))
                .await
                .map(|r| r.into_inner().id)
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for h in calls {
        ids.insert(h.await.unwrap().expect("every retry succeeds"));
    }
    assert_eq!(ids.len(), 1, "one request for 50 identical submissions");
    let list = client(&app)
        .list_subject_requests(authed(pb::ListSubjectRequestsRequest::default(), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.requests.len(), 1);
    assert_eq!(list.requests[0].tasks.len(), 1, "fanned out once");
    let e = client(&app)
        .submit_subject_request(authed(submit(pb::RequestType::Access, "same", &[]), &t1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    // The same key at another tenant is another request.
    let other = client(&app)
        .submit_subject_request(authed(
            submit(pb::RequestType::Erasure, "same", &[]),
            &app.keys.tenant("t2"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!ids.contains(&other.id));
    // Bad input names every field.
    let e = client(&app)
        .submit_subject_request(authed(
            pb::SubmitSubjectRequestRequest {
                subject: Some(pb::Subject {
                    email: "nope".into(),
                    ..Default::default()
                }),
                categories: vec!["Bad Cat".into()],
                ..Default::default()
            },
            &t1,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    use tonic_types::StatusExt;
    let fields: Vec<String> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    for f in [
        "request_type",
        "subject.email",
        "categories[0]",
        "idempotency_key",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} in {fields:?}");
    }
    // A tenant cannot submit for another tenant.
    let mut req = submit(pb::RequestType::Erasure, "x", &[]);
    req.tenant_id = "t2".into();
    let e = client(&app)
        .submit_subject_request(authed(req, &t1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    app.stop().await;
}
on_both_backends!(idempotent_submission, idempotent_submission);

async fn deadlines_and_overdue(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app);
    let t1 = app.keys.tenant("t1");
    register(&app, "crm", &["contact"]).await;
    let at = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
    let sub = |key: &str, regime: pb::Regime, received: chrono::DateTime<Utc>| {
        let mut r = submit(pb::RequestType::Access, key, &[]);
        r.regime = regime as i32;
        r.received_at = Some(ts(received));
        r
    };
    // 31 January + one month = 28 February (2026) and 29 February (2028).
    app.clock.set(at(2026, 2, 1, 9));
    let r1 = c
        .submit_subject_request(authed(sub("d1", pb::Regime::Gdpr, at(2026, 1, 31, 12)), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        from_pb(&r1.due_at),
        Utc.with_ymd_and_hms(2026, 2, 28, 23, 59, 59).unwrap()
    );
    app.clock.set(at(2028, 2, 1, 9));
    let r2 = c
        .submit_subject_request(authed(sub("d2", pb::Regime::Gdpr, at(2028, 1, 31, 12)), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        from_pb(&r2.due_at),
        Utc.with_ymd_and_hms(2028, 2, 29, 23, 59, 59).unwrap()
    );

    // The tenant's time zone: 23:30 UTC on 30 January is 31 January in
    // Berlin, so the deadline is the end of 29 February there.
    c.set_subject_request_settings(authed(
        pb::SetSubjectRequestSettingsRequest {
            tenant_id: String::new(),
            time_zone: "Europe/Berlin".into(),
            sla_days: 5,
        },
        &t1,
    ))
    .await
    .unwrap();
    let bad = c
        .set_subject_request_settings(authed(
            pb::SetSubjectRequestSettingsRequest {
                time_zone: "Mars/Olympus".into(),
                ..Default::default()
            },
            &t1,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let r3 = c
        .submit_subject_request(authed(
            sub(
                "d3",
                pb::Regime::Gdpr,
                Utc.with_ymd_and_hms(2028, 1, 30, 23, 30, 0).unwrap(),
            ),
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        from_pb(&r3.due_at),
        Utc.with_ymd_and_hms(2028, 2, 29, 22, 59, 59).unwrap()
    );
    assert_eq!(
        from_pb(&r3.sla_due_at),
        Utc.with_ymd_and_hms(2028, 2, 5, 22, 59, 59).unwrap()
    );
    let lgpd = c
        .submit_subject_request(authed(sub("d4", pb::Regime::Lgpd, at(2028, 2, 1, 8)), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        from_pb(&lgpd.due_at),
        Utc.with_ymd_and_hms(2028, 2, 16, 22, 59, 59).unwrap()
    );

    // Extension: once, with a reason, before the deadline, not under LGPD.
    let ext = |id: &str, reason: &str| {
        authed(
            pb::ExtendDeadlineRequest {
                id: id.into(),
                reason: reason.into(),
            },
            &t1,
        )
    };
    assert_eq!(
        c.extend_deadline(ext(&r3.id, "")).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let x = c
        .extend_deadline(ext(&r3.id, "complex request across many systems"))
        .await
        .unwrap()
        .into_inner();
    assert!(x.extended);
    assert_eq!(
        from_pb(&x.due_at),
        Utc.with_ymd_and_hms(2028, 4, 30, 21, 59, 59).unwrap()
    );
    assert_eq!(
        c.extend_deadline(ext(&r3.id, "again")).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        c.extend_deadline(ext(&lgpd.id, "why")).await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    // r1 (due 28 Feb 2026) is long overdue now; lgpd falls due within 20 days.
    let list = |overdue_only: bool, due_within: Option<i64>| {
        authed(
            pb::ListSubjectRequestsRequest {
                overdue_only,
                due_within: due_within.map(|s| prost_types::Duration { seconds: s, nanos: 0 }),
                ..Default::default()
            },
            &t1,
        )
    };
    let overdue = c
        .list_subject_requests(list(true, None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        overdue.requests.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
        vec![r1.id.clone()]
    );
    assert_eq!(overdue.overdue_count, 1);
    let soon = c
        .list_subject_requests(list(false, Some(20 * 86_400)))
        .await
        .unwrap()
        .into_inner();
    let soon: Vec<String> = soon.requests.into_iter().map(|r| r.id).collect();
    assert!(soon.contains(&lgpd.id) && soon.contains(&r1.id) && !soon.contains(&r3.id));
    app.clock.set(at(2028, 3, 1, 0));
    let counts = c
        .count_subject_requests(authed(
            pb::CountSubjectRequestsRequest::default(),
            &app.keys.sre(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((counts.open, counts.overdue), (4, 3));
    // An extension after the deadline is refused.
    assert_eq!(
        c.extend_deadline(ext(&r2.id, "late")).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    app.stop().await;
}
on_both_backends!(deadlines_and_overdue, deadlines_and_overdue);

#[derive(diesel::QueryableByName)]
struct Dump {
    #[diesel(sql_type = diesel::sql_types::Text)]
    everything: String,
}

async fn forwarded_and_encrypted(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app);
    let fwd = c
        .forward_to_controller(authed(
            pb::ForwardToControllerRequest {
                tenant_id: "t1".into(),
                request_type: pb::RequestType::Access as i32,
                subject: Some(pb::Subject {
                    email: EMAIL.into(),
                    phone: "+44 20 7946 0958".into(),
                    name: "Ada Lovelace".into(),
                    external_id: String::new(),
                }),
                channel: "email".into(),
                received_at: None,
                message: "Please send me everything you hold about me".into(),
                idempotency_key: "mail-1".into(),
            },
            &app.keys.platform("support-desk"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fwd.status, pb::Status::Forwarded as i32);
    assert!(
        fwd.subject.is_none(),
        "the platform does not get identifiers back"
    );
    // The controller finds it in its inbox, reads it with identifiers, acks.
    let mut inbox = app.inbox();
    let t1 = app.keys.tenant("t1");
    let envs = inbox
        .pull(authed(pb::PullRequest::default(), &t1))
        .await
        .unwrap()
        .into_inner()
        .envelopes;
    assert_eq!(envs.len(), 1);
    assert_eq!(envs[0].kind, "subject_request.forwarded");
    let payload: serde_json::Value = serde_json::from_str(&envs[0].payload).unwrap();
    assert_eq!(payload["id"], fwd.id);
    let got = c
        .get_subject_request(authed(pb::GetSubjectRequestRequest { id: fwd.id.clone() }, &t1))
        .await
        .unwrap()
        .into_inner();
    let s = got.subject.unwrap();
    assert_eq!((s.email.as_str(), s.phone.as_str()), (EMAIL, "+442079460958"));
    assert!(got.message.contains("everything"));
    inbox
        .ack(authed(
            pb::AckRequest {
                ids: vec![envs[0].id.clone()],
            },
            &t1,
        ))
        .await
        .unwrap();
    assert!(
        inbox
            .pull(authed(pb::PullRequest::default(), &app.keys.tenant("t2")))
            .await
            .unwrap()
            .into_inner()
            .envelopes
            .is_empty()
    );

    // Nothing identifying is readable in the database.
    let everything = match b {
        Backend::Postgres => {
            use diesel::{Connection, RunQueryDsl};
            let mut conn = diesel::pg::PgConnection::establish(&app.db.url).unwrap();
            diesel::sql_query("SELECT string_agg(t::text, '|') AS everything FROM subject_requests t")
                .get_result::<Dump>(&mut conn)
                .unwrap()
                .everything
        }
        Backend::Sqlite => {
            let path = app.db.url.trim_start_matches("sqlite://").to_owned();
            let mut all = Vec::new();
            for f in [path.clone(), format!("{path}-wal")] {
                if let Ok(b) = std::fs::read(&f) {
                    all.extend(b);
                }
            }
            String::from_utf8_lossy(&all).into_owned()
        }
    };
    assert!(everything.contains(&fwd.id), "the dump does cover the rows");
    for secret in [
        EMAIL,
        "ada.lovelace",
        "Lovelace",
        "442079460958",
        "everything you hold",
    ] {
        assert!(!everything.contains(secret), "{secret} is stored in clear");
    }
    app.stop().await;
}
on_both_backends!(forwarded_and_encrypted, forwarded_and_encrypted);

async fn contract_end_fans_out(b: Backend) {
    let app = spawn_app(b).await;
    register(&app, "crm", &["contact"]).await;
    register(&app, "dialer", &["recording"]).await;
    let signer = std::sync::Arc::new(proctor::secrets::SubjectSecrets::load(&app.config).unwrap());
    let run = |signer: std::sync::Arc<proctor::secrets::SubjectSecrets>| {
        proctor::subject_requests::service::contract_end_erasure(&app.store, signer, "t1".into())
    };
    let (first, created) = run(signer.clone()).await.unwrap();
    assert!(created);
    let (again, created) = run(signer).await.unwrap();
    assert!(!created, "once per tenant");
    assert_eq!(first.id, again.id);
    let got = client(&app)
        .get_subject_request(authed(
            pb::GetSubjectRequestRequest { id: first.id.clone() },
            &app.keys.tenant("t1"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.request_type, pb::RequestType::Erasure as i32);
    assert_eq!(got.tasks.len(), 2, "every system, all categories");
    app.stop().await;
}
on_both_backends!(contract_end_fans_out, contract_end_fans_out);

/// Restrictions, objections and erasures reach `CheckProcessing` on the very
/// next call, for that subject only, and lifting them lifts the denial.
async fn decisions_follow_subject_requests(b: Backend) {
    use crate::instructions::check;
    use pb::DenyReason as R;
    let app = spawn_app(b).await;
    contact_for_service_delivery(&app, "t1", 0).await;
    // A system holds the data, so the requests stay in progress (cancellable).
    register(&app, "crm", &["contact"]).await;
    let sref = subject_ref(&app, "t1").await;
    let probe = |s: &str| pb::CheckProcessingRequest {
        tenant_id: "t1".into(),
        category: "contact".into(),
        purpose: "service_delivery".into(),
        subject_ref: s.into(),
        ..Default::default()
    };
    assert!(check(&app, probe(&sref)).await.0);
    let t1 = app.keys.tenant("t1");
    let mut c = client(&app);
    let restriction = c
        .submit_subject_request(authed(submit(pb::RequestType::Restriction, "d1", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(check(&app, probe(&sref)).await.1, [R::SubjectRestricted]);
    assert!(check(&app, probe("someone-else")).await.0, "only that subject");
    c.submit_subject_request(authed(submit(pb::RequestType::Objection, "d2", &[]), &t1))
        .await
        .unwrap();
    c.submit_subject_request(authed(submit(pb::RequestType::Erasure, "d3", &[]), &t1))
        .await
        .unwrap();
    assert_eq!(
        check(&app, probe(&sref)).await.1,
        [R::SubjectRestricted, R::SubjectObjected, R::SubjectErased]
    );
    c.cancel_subject_request(authed(
        pb::CancelSubjectRequestRequest {
            id: restriction.id,
            reason: "withdrawn by the subject".into(),
        },
        &t1,
    ))
    .await
    .unwrap();
    assert_eq!(
        check(&app, probe(&sref)).await.1,
        [R::SubjectObjected, R::SubjectErased]
    );
    app.stop().await;
}
on_both_backends!(
    decisions_follow_subject_requests,
    decisions_follow_subject_requests
);

/// After a tenant's termination grace period the service itself opens the
/// erasure of everything, through the same fan-out, exactly once.
async fn contract_end_runs_by_itself(b: Backend) {
    let app = spawn_app(b).await;
    register(&app, "crm", &["contact"]).await;
    contact_for_service_delivery(&app, "t1", 10).await;
    app.instructions()
        .terminate_tenant(authed(
            pb::TerminateTenantRequest {
                tenant_id: "t1".into(),
                effective_at: None,
                reason: "contract end".into(),
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap();
    let list = || async {
        client(&app)
            .list_subject_requests(authed(
                pb::ListSubjectRequestsRequest {
                    tenant_id: "t1".into(),
                    ..Default::default()
                },
                &app.keys.compliance(),
            ))
            .await
            .unwrap()
            .into_inner()
            .requests
    };
    // Within the grace period a round runs and opens nothing.
    app.clock.advance_settled(Duration::days(9)).await;
    assert!(list().await.is_empty(), "no erasure before the grace period ends");
    app.clock.advance_settled(Duration::days(1)).await;
    let requests = list().await;
    assert_eq!(
        requests.len(),
        1,
        "the round after the grace period opens the erasure"
    );
    assert_eq!(requests[0].request_type, pb::RequestType::Erasure as i32);
    assert_eq!(requests[0].tasks.len(), 1, "fanned out to the registered system");
    // Later rounds find the tenant already erased.
    app.clock.advance_settled(Duration::seconds(1)).await;
    app.clock.advance_settled(Duration::seconds(1)).await;
    assert_eq!(list().await.len(), 1, "opened once");
    app.stop().await;
}
on_both_backends!(contract_end_runs_by_itself, contract_end_runs_by_itself);

/// NUL in a text field is the caller's mistake on both backends, with the
/// field named (PostgreSQL cannot store it; SQLite could, so it is refused
/// before the database in both).
async fn nul_in_text_is_refused_with_the_field(b: Backend) {
    let app = spawn_app(b).await;
    let t1 = app.keys.tenant("t1");
    let e = client(&app)
        .get_subject_request(authed(pb::GetSubjectRequestRequest { id: "a\0b".into() }, &t1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(crate::support::violated_fields(&e), ["id"]);
    let e = client(&app)
        .submit_subject_request(authed(submit(pb::RequestType::Access, "k\0", &[]), &t1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(crate::support::violated_fields(&e), ["idempotency_key"]);
    app.stop().await;
}
on_both_backends!(
    nul_in_text_is_refused_with_the_field,
    nul_in_text_is_refused_with_the_field
);

/// A forward naming a tenant id longer than any tenant's is refused with
/// the field named, before anything is written.
async fn forward_bounds_the_tenant_id(b: Backend) {
    let app = spawn_app(b).await;
    let e = client(&app)
        .forward_to_controller(authed(
            pb::ForwardToControllerRequest {
                tenant_id: "t".repeat(129),
                request_type: pb::RequestType::Access as i32,
                subject: Some(pb::Subject {
                    email: "ada@example.com".into(),
                    ..Default::default()
                }),
                idempotency_key: "long-tenant".into(),
                ..Default::default()
            },
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(crate::support::violated_fields(&e), ["tenant_id"]);
    app.stop().await;
}
on_both_backends!(forward_bounds_the_tenant_id, forward_bounds_the_tenant_id);

/// A replica remembers each tenant's deadline settings so that recording a
/// request need not read them first; settings changed behind its back (by
/// another replica, here straight in the database) still govern the next
/// request, and so do settings changed through it.
async fn settings_changed_elsewhere_govern_the_next_request(b: Backend) {
    let app = spawn_app(b).await;
    let crm = app.keys.platform("crm");
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 6, 10, 12, 0, 0).unwrap());
    let forwarded = |key: &str, ty: pb::RequestType| pb::ForwardToControllerRequest {
        tenant_id: "t1".into(),
        request_type: ty as i32,
        subject: Some(pb::Subject {
            email: EMAIL.into(),
            ..Default::default()
        }),
        idempotency_key: key.into(),
        ..Default::default()
    };
    let forward = async |key: &str| {
        client(&app)
            .forward_to_controller(authed(forwarded(key, pb::RequestType::Access), &crm))
            .await
            .unwrap()
            .into_inner()
    };
    // The defaults (UTC, 10 days), now remembered.
    let first = forward("f1").await;
    assert_eq!(
        from_pb(&first.sla_due_at),
        Utc.with_ymd_and_hms(2026, 6, 20, 23, 59, 59).unwrap()
    );
    // Set where this replica does not see it: Tokyo (UTC+9), 3 days.
    app.db.execute(
        "INSERT INTO subject_tenant_settings (tenant_id, time_zone, sla_days, updated_at_us) \
         VALUES ('t1', 'Asia/Tokyo', 3, 0)",
    );
    let second = forward("f2").await;
    assert_eq!(
        from_pb(&second.sla_due_at),
        Utc.with_ymd_and_hms(2026, 6, 13, 14, 59, 59).unwrap(),
        "the end of 13 June in Tokyo"
    );
    assert_eq!(
        from_pb(&second.due_at),
        Utc.with_ymd_and_hms(2026, 7, 10, 14, 59, 59).unwrap(),
        "one month, ending in Tokyo"
    );
    // Changed again, an update this time.
    app.db
        .execute("UPDATE subject_tenant_settings SET sla_days = 7 WHERE tenant_id = 't1'");
    let third = forward("f3").await;
    assert_eq!(
        from_pb(&third.sla_due_at),
        Utc.with_ymd_and_hms(2026, 6, 17, 14, 59, 59).unwrap()
    );
    // A retry of the second, after all that, is still the second.
    assert_eq!(forward("f2").await.id, second.id);
    // Through this replica.
    client(&app)
        .set_subject_request_settings(authed(
            pb::SetSubjectRequestSettingsRequest {
                tenant_id: String::new(),
                time_zone: "UTC".into(),
                sla_days: 2,
            },
            &app.keys.tenant("t1"),
        ))
        .await
        .unwrap();
    let fourth = forward("f4").await;
    assert_eq!(
        from_pb(&fourth.sla_due_at),
        Utc.with_ymd_and_hms(2026, 6, 12, 23, 59, 59).unwrap()
    );
    // That one, with settings that still held, was one statement on
    // PostgreSQL...
    if matches!(b, Backend::Postgres) {
        assert_eq!(app.store.statements_of("subject_request.submit"), Some(1));
    }
    // ...its retries are answered as any other's...
    assert_eq!(forward("f4").await.id, fourth.id);
    let other_body = client(&app)
        .forward_to_controller(authed(forwarded("f4", pb::RequestType::Erasure), &crm))
        .await
        .unwrap_err();
    assert_eq!(other_body.code(), Code::AlreadyExists);
    // ...and its envelope and audit event were written with it, once.
    let envs = crate::support::pull_inbox(&app, &app.keys.tenant("t1"), 60).await;
    let told: Vec<serde_json::Value> = envs
        .iter()
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .filter(|p: &serde_json::Value| p["id"] == fourth.id)
        .collect();
    assert_eq!(told.len(), 1, "{envs:?}");
    let events = app
        .audit()
        .list_audit_events(authed(
            pb::ListAuditEventsRequest::default(),
            &app.keys.tenant("t1"),
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let forwards: Vec<_> = events
        .iter()
        .filter(|e| e.action == "subject_request.forward")
        .map(|e| e.target.clone())
        .collect();
    assert_eq!(
        forwards.iter().filter(|t| **t == fourth.id).count(),
        1,
        "{forwards:?}"
    );
    assert_eq!(forwards.len(), 4, "one event per request: {forwards:?}");
    app.stop().await;
}
on_both_backends!(
    settings_changed_elsewhere_govern_the_next_request,
    settings_changed_elsewhere_govern_the_next_request
);
