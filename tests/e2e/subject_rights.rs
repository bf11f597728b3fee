//! The rest of the data-subject rights end to end: the small contract
//! points (taxonomy keys, requests nobody holds data for, the age of
//! `received_at`, idempotency keys per origin), stuck tasks, questions to
//! the controller, corrections, deletion certificates and artefacts.

use chrono::Duration;
use proctor::clock::Clock;
use proctor::proto::v1 as pb;
use tonic::Code;

use crate::on_both_backends;
use crate::subject_requests::{client, complete, pull, register, submit};
use crate::support::{
    Backend, TestApp, TestDb, TestKeys, authed, pull_inbox, spawn_app, spawn_with, test_config,
    violated_fields,
};

fn forward(key: &str) -> pb::ForwardToControllerRequest {
    pb::ForwardToControllerRequest {
        tenant_id: "t1".into(),
        request_type: pb::RequestType::Access as i32,
        subject: Some(pb::Subject {
            email: "ada@example.org".into(),
            ..Default::default()
        }),
        channel: "email".into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

fn at(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

async fn invalid_field(e: tonic::Status, field: &str) {
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let fields = violated_fields(&e);
    assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
}

async fn small_contract_points(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app);
    let t1 = app.keys.tenant("t1");

    // Only taxonomy keys: a well-formed but unknown key names its index.
    let e = c
        .register_system(authed(
            pb::RegisterSystemRequest {
                name: "crm".into(),
                categories: vec!["contact".into(), "recordngs".into()],
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap_err();
    invalid_field(e, "categories[1]").await;
    register(&app, "crm", &["contact"]).await;
    let e = c
        .submit_subject_request(authed(
            submit(pb::RequestType::Erasure, "k0", &["recordngs"]),
            &t1,
        ))
        .await
        .unwrap_err();
    invalid_field(e, "categories[0]").await;

    // A known category nobody holds: completed at once, zero tasks, and the
    // controller still hears of it.
    let done = c
        .submit_subject_request(authed(
            submit(pb::RequestType::Erasure, "k1", &["recording"]),
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.status, pb::Status::Completed as i32);
    assert!(done.tasks.is_empty());
    let inbox = pull_inbox(&app, &t1, 30).await;
    let completed: Vec<_> = inbox
        .iter()
        .filter(|e| e.kind == "subject_request.completed")
        .collect();
    assert_eq!(completed.len(), 1, "{inbox:?}");
    let payload: serde_json::Value = serde_json::from_str(&completed[0].payload).unwrap();
    assert_eq!(payload["id"], done.id);

    // received_at: at most 400 days in the past.
    let now = app.clock.now();
    let mut old = submit(pb::RequestType::Erasure, "k2", &[]);
    old.received_at = Some(at(now - Duration::days(401)));
    let e = c.submit_subject_request(authed(old, &t1)).await.unwrap_err();
    invalid_field(e, "received_at").await;
    let mut fine = submit(pb::RequestType::Erasure, "k2", &[]);
    fine.received_at = Some(at(now - Duration::days(399)));
    c.submit_subject_request(authed(fine, &t1)).await.unwrap();

    // Reserved keys, in any case, on both paths.
    for key in ["proctor:contract-end", "PROCTOR:mine"] {
        let e = c
            .submit_subject_request(authed(submit(pb::RequestType::Access, key, &[]), &t1))
            .await
            .unwrap_err();
        invalid_field(e, "idempotency_key").await;
        let e = c
            .forward_to_controller(authed(forward(key), &app.keys.platform("mail")))
            .await
            .unwrap_err();
        invalid_field(e, "idempotency_key").await;
    }

    // Keys are scoped by origin: a forward and a submission with the same
    // key are two requests, and a retry of each returns its own.
    let fwd = c
        .forward_to_controller(authed(forward("ticket-9"), &app.keys.platform("mail")))
        .await
        .unwrap()
        .into_inner();
    let sub = c
        .submit_subject_request(authed(submit(pb::RequestType::Erasure, "ticket-9", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(fwd.id, sub.id);
    assert_eq!(fwd.status, pb::Status::Forwarded as i32);
    let again = c
        .forward_to_controller(authed(forward("ticket-9"), &app.keys.platform("mail")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, fwd.id);
    let again = c
        .submit_subject_request(authed(submit(pb::RequestType::Erasure, "ticket-9", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, sub.id);
    app.stop().await;
}
on_both_backends!(small_contract_points, small_contract_points);

fn fail(task: &str, error: &str) -> pb::FailTaskRequest {
    pb::FailTaskRequest {
        task_id: task.into(),
        error: error.into(),
    }
}

async fn needing_attention(app: &TestApp) -> u64 {
    app.store
        .read("test.gauges", |c, clock| {
            proctor::db::gauges::sample(c, clock.now())
        })
        .await
        .unwrap()
        .subject_tasks_needing_attention
}

async fn stuck_tasks_back_off_then_need_attention(b: Backend) {
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    cfg.task_retry_initial_seconds = 10;
    cfg.task_max_attempts = 3;
    let app = spawn_with(db, keys, cfg).await;
    let mut c = client(&app);
    let t1 = app.keys.tenant("t1");
    let crm = app.keys.platform("crm");
    register(&app, "crm", &["contact"]).await;
    register(&app, "billing", &["contact"]).await;
    let r = c
        .submit_subject_request(authed(submit(pb::RequestType::Erasure, "e1", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.tasks.len(), 2);

    // Attempt 1 fails: back after 10 s, not before.
    let task = pull(&app, "crm", 300).await.remove(0);
    let failed = c
        .fail_task(authed(fail(&task.id, "timeout"), &crm))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.status, pb::TaskStatus::Failed as i32);
    let now = app.clock.now();
    assert_eq!(
        failed.next_attempt_at.as_ref().map(|t| t.seconds),
        Some((now + Duration::seconds(10)).timestamp())
    );
    assert!(pull(&app, "crm", 300).await.is_empty(), "backing off");
    app.clock.advance(Duration::seconds(9));
    assert!(pull(&app, "crm", 300).await.is_empty(), "still backing off");
    app.clock.advance(Duration::seconds(1));
    let again = pull(&app, "crm", 300).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);

    // Attempt 2 fails: the wait doubles to 20 s.
    c.fail_task(authed(fail(&task.id, "timeout"), &crm))
        .await
        .unwrap();
    app.clock.advance(Duration::seconds(19));
    assert!(pull(&app, "crm", 300).await.is_empty());
    app.clock.advance(Duration::seconds(1));
    assert_eq!(pull(&app, "crm", 300).await[0].attempts, 3);
    assert!(
        pull_inbox(&app, &app.keys.platform("compliance-queue"), 30)
            .await
            .is_empty()
    );
    assert_eq!(needing_attention(&app).await, 0);

    // Attempt 3 was the last: it needs attention, is no longer offered,
    // and the compliance queue hears of it (ids only).
    let stuck = c
        .fail_task(authed(fail(&task.id, "ada@example.org not found"), &crm))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stuck.status, pb::TaskStatus::NeedsAttention as i32);
    assert!(stuck.next_attempt_at.is_none());
    app.clock.advance(Duration::days(2));
    assert!(pull(&app, "crm", 300).await.is_empty(), "no longer offered");
    let queue = pull_inbox(&app, &app.keys.platform("compliance-queue"), 30).await;
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].kind, "subject_request.task_stuck");
    let body = queue[0].payload.clone();
    let payload: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(payload["task_id"], task.id);
    assert_eq!(payload["request_id"], r.id);
    assert_eq!(payload["system"], "crm");
    assert!(!body.contains("ada@"), "no personal data in the envelope");
    assert_eq!(needing_attention(&app).await, 1);
    let e = c
        .fail_task(authed(fail(&task.id, "again"), &crm))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let view = c
        .get_subject_request(authed(pb::GetSubjectRequestRequest { id: r.id.clone() }, &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        view.status,
        pb::Status::InProgress as i32,
        "the request stays open"
    );

    // The system may still finish it; billing holds nothing for the person,
    // which is recorded apart from 0 records.
    let done = c
        .complete_task(authed(
            pb::CompleteTaskRequest {
                task_id: task.id.clone(),
                records_affected: 0,
                ..Default::default()
            },
            &crm,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.status, pb::TaskStatus::Done as i32);
    assert!(!done.no_data_held);
    assert_eq!(needing_attention(&app).await, 0);
    let billing = app.keys.platform("billing");
    let bt = pull(&app, "billing", 300).await.remove(0);
    let e = c
        .complete_task(authed(
            pb::CompleteTaskRequest {
                task_id: bt.id.clone(),
                records_affected: 3,
                no_data_held: true,
                ..Default::default()
            },
            &billing,
        ))
        .await
        .unwrap_err();
    invalid_field(e, "no_data_held").await;
    let nothing = c
        .complete_task(authed(
            pb::CompleteTaskRequest {
                task_id: bt.id.clone(),
                no_data_held: true,
                ..Default::default()
            },
            &billing,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(nothing.no_data_held);
    let view = c
        .get_subject_request(authed(pb::GetSubjectRequestRequest { id: r.id.clone() }, &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.status, pb::Status::Completed as i32);
    let held: Vec<_> = view
        .tasks
        .iter()
        .map(|t| (t.system.as_str(), t.no_data_held))
        .collect();
    assert!(
        held.contains(&("billing", true)) && held.contains(&("crm", false)),
        "{held:?}"
    );
    let events = crate::support::audit_events(&app).await;
    let stuck_event = events
        .iter()
        .filter(|e| e.action == "subject_request.fail_task")
        .find(|e| e.detail.contains("\"needs_attention\":true"))
        .expect("the last failure is audited as needing attention");
    assert!(!stuck_event.detail.contains("ada@"));
    app.stop().await;
}
on_both_backends!(
    stuck_tasks_back_off_then_need_attention,
    stuck_tasks_back_off_then_need_attention
);

/// The request's only task, as the controller sees it.
async fn only_task(app: &TestApp, id: &str) -> pb::Task {
    let view = client(app)
        .get_subject_request(authed(
            pb::GetSubjectRequestRequest { id: id.into() },
            &app.keys.tenant("t1"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(view.tasks.len(), 1);
    view.tasks.into_iter().next().unwrap()
}

/// A system that leases its task and dies, again and again: every expired
/// lease is a failed attempt with the same backoff, and the last one, seen
/// by the lease sweep although the system never pulls again, leaves the
/// task NEEDS_ATTENTION with the compliance queue told, the gauge counting
/// it and the expiry audited, all without personal data.
async fn expired_leases_count_as_attempts(b: Backend) {
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    cfg.task_retry_initial_seconds = 10;
    cfg.task_max_attempts = 3;
    let app = spawn_with(db, keys, cfg).await;
    let t1 = app.keys.tenant("t1");
    register(&app, "crm", &["contact"]).await;
    let r = client(&app)
        .submit_subject_request(authed(submit(pb::RequestType::Erasure, "dies", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    let compliance = app.keys.platform("compliance-queue");

    for attempt in 1..=3 {
        let leased = pull(&app, "crm", 60).await;
        assert_eq!(leased.len(), 1, "attempt {attempt} is offered");
        assert_eq!(leased[0].attempts, attempt);
        let lease_end = app.clock.now() + Duration::seconds(60);
        // The system dies: nothing is reported, the lease runs out, and
        // the sweep records the attempt as failed.
        app.clock.advance_settled(Duration::seconds(60)).await;
        let task = only_task(&app, &r.id).await;
        if attempt < 3 {
            assert_eq!(task.status, pb::TaskStatus::Failed as i32, "attempt {attempt}");
            let wait = 10 << (attempt - 1);
            assert_eq!(
                task.next_attempt_at.as_ref().map(|t| t.seconds),
                Some((lease_end + Duration::seconds(wait)).timestamp()),
                "attempt {attempt} backs off {wait} s from the lease's end"
            );
            assert!(pull(&app, "crm", 60).await.is_empty(), "backing off");
            assert!(pull_inbox(&app, &compliance, 30).await.is_empty());
            assert_eq!(needing_attention(&app).await, 0);
            app.clock.advance_settled(Duration::seconds(wait)).await;
        } else {
            assert_eq!(task.status, pb::TaskStatus::NeedsAttention as i32);
            assert!(task.next_attempt_at.is_none());
        }
    }

    app.clock.advance_settled(Duration::days(2)).await;
    assert!(pull(&app, "crm", 60).await.is_empty(), "no longer offered");
    assert_eq!(
        only_task(&app, &r.id).await.status,
        pb::TaskStatus::NeedsAttention as i32
    );
    let queue = pull_inbox(&app, &compliance, 30).await;
    assert_eq!(queue.len(), 1, "one envelope, for the last expiry");
    assert_eq!(queue[0].kind, "subject_request.task_stuck");
    let payload: serde_json::Value = serde_json::from_str(&queue[0].payload).unwrap();
    assert_eq!(payload["request_id"], r.id);
    assert_eq!(payload["system"], "crm");
    assert_eq!(payload["attempts"], 3);
    assert!(!queue[0].payload.contains("ada@") && !queue[0].payload.contains("Lovelace"));
    assert_eq!(needing_attention(&app).await, 1);
    let events = crate::support::audit_events(&app).await;
    let expiries: Vec<serde_json::Value> = events
        .iter()
        .filter(|e| e.action == "subject_request.lease_expired")
        .map(|e| {
            assert!(!e.detail.contains("ada@") && !e.detail.contains("Lovelace"));
            serde_json::from_str(&e.detail).unwrap()
        })
        .collect();
    assert_eq!(expiries.len(), 3, "every expiry is audited");
    assert!(expiries.iter().all(|d| d["reason"] == "lease expired"));
    assert_eq!(
        expiries
            .iter()
            .map(|d| d["needs_attention"] == true)
            .collect::<Vec<_>>(),
        [false, false, true]
    );
    // The system may still finish it after all.
    let done = complete(&app, "crm", payload["task_id"].as_str().unwrap(), b"", false)
        .await
        .unwrap();
    assert_eq!(done.status, pb::TaskStatus::Done as i32);
    assert_eq!(needing_attention(&app).await, 0);
    app.stop().await;
}
on_both_backends!(expired_leases_count_as_attempts, expired_leases_count_as_attempts);

/// The backoff after an expired lease delays the next offer to the second,
/// counted from the lease's end, whether the sweep or the system's own
/// next pull notices the expiry; a report before the lease ends is a
/// reported failure, not an expiry.
async fn an_expired_lease_delays_the_reoffer(b: Backend) {
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    cfg.task_retry_initial_seconds = 20;
    cfg.task_max_attempts = 4;
    let app = spawn_with(db, keys, cfg).await;
    let t1 = app.keys.tenant("t1");
    register(&app, "crm", &["contact"]).await;
    let r = client(&app)
        .submit_subject_request(authed(submit(pb::RequestType::Erasure, "slow", &[]), &t1))
        .await
        .unwrap()
        .into_inner();

    // Noticed by the system's next pull, 5 s after the lease ended (no
    // settling: the sweep may or may not have run, the outcome is the same).
    let first = pull(&app, "crm", 30).await.remove(0);
    app.clock.advance(Duration::seconds(35));
    assert!(
        pull(&app, "crm", 30).await.is_empty(),
        "the expiry starts a backoff"
    );
    let task = only_task(&app, &r.id).await;
    assert_eq!(task.status, pb::TaskStatus::Failed as i32);
    assert_eq!(task.attempts, 1);
    app.clock.advance(Duration::seconds(14));
    assert!(
        pull(&app, "crm", 30).await.is_empty(),
        "49 s after the lease: still backing off"
    );
    app.clock.advance(Duration::seconds(1));
    let second = pull(&app, "crm", 30).await;
    assert_eq!(second.len(), 1, "offered 20 s after the lease ended");
    assert_eq!(second[0].id, first.id);
    assert_eq!(second[0].attempts, 2);
    assert_eq!(second[0].error, "lease expired");

    // The second expiry doubles the wait to 40 s.
    app.clock.advance_settled(Duration::seconds(30)).await;
    app.clock.advance_settled(Duration::seconds(39)).await;
    assert!(pull(&app, "crm", 30).await.is_empty(), "39 s after the lease");
    app.clock.advance(Duration::seconds(1));
    let third = pull(&app, "crm", 30).await;
    assert_eq!(third.len(), 1, "offered 40 s after the lease ended");
    assert_eq!(third[0].attempts, 3);

    // Reported within the lease: a FailTask, audited as one, no expiry.
    c_fail(&app, &third[0].id).await;
    app.clock.advance_settled(Duration::seconds(60)).await;
    let events = crate::support::audit_events(&app).await;
    let count = |action: &str| events.iter().filter(|e| e.action == action).count();
    assert_eq!(count("subject_request.lease_expired"), 2);
    assert_eq!(count("subject_request.fail_task"), 1);
    app.stop().await;
}
on_both_backends!(
    an_expired_lease_delays_the_reoffer,
    an_expired_lease_delays_the_reoffer
);

async fn c_fail(app: &TestApp, task: &str) {
    let failed = client(app)
        .fail_task(authed(fail(task, "backend timeout"), &app.keys.platform("crm")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.status, pb::TaskStatus::Failed as i32);
}

/// An access export shows which system holds nothing for the person.
async fn exports_show_no_data_held(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app);
    let t1 = app.keys.tenant("t1");
    register(&app, "crm", &["contact"]).await;
    register(&app, "billing", &["contact"]).await;
    let r = c
        .submit_subject_request(authed(submit(pb::RequestType::Access, "a1", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    let t = pull(&app, "crm", 60).await.remove(0);
    complete(&app, "crm", &t.id, br#"[{"name":"Ada"}]"#, false)
        .await
        .unwrap();
    let t = pull(&app, "billing", 60).await.remove(0);
    c.complete_task(authed(
        pb::CompleteTaskRequest {
            task_id: t.id,
            no_data_held: true,
            ..Default::default()
        },
        &app.keys.platform("billing"),
    ))
    .await
    .unwrap();
    let doc = export_json(&app, &r.id).await;
    let docs = doc["documents"].as_array().unwrap();
    let of = |s: &str| docs.iter().find(|d| d["system"] == s).unwrap().clone();
    assert_eq!(of("crm")["no_data_held"], false);
    assert_eq!(of("crm")["records"].as_array().unwrap().len(), 1);
    assert_eq!(of("billing")["no_data_held"], true);
    assert_eq!(of("billing")["records_affected"], 0);
    app.stop().await;
}
on_both_backends!(exports_show_no_data_held, exports_show_no_data_held);

/// The JSON export of request `id`, read by its tenant `t1`.
async fn export_json(app: &TestApp, id: &str) -> serde_json::Value {
    use tokio_stream::StreamExt;
    let mut s = client(app)
        .get_export(authed(
            pb::GetExportRequest {
                id: id.into(),
                format: pb::ExportFormat::Json as i32,
            },
            &app.keys.tenant("t1"),
        ))
        .await
        .unwrap()
        .into_inner();
    let mut all = Vec::new();
    while let Some(chunk) = s.next().await {
        all.extend(chunk.unwrap().data);
    }
    serde_json::from_slice(&all).unwrap()
}

fn ask(request_id: &str, question: &str) -> pb::AskControllerRequest {
    pb::AskControllerRequest {
        request_id: request_id.into(),
        question: question.into(),
    }
}

async fn get_request(app: &TestApp, id: &str) -> pb::SubjectRequest {
    client(app)
        .get_subject_request(authed(
            pb::GetSubjectRequestRequest { id: id.into() },
            &app.keys.tenant("t1"),
        ))
        .await
        .unwrap()
        .into_inner()
}

fn secs(t: &Option<prost_types::Timestamp>) -> i64 {
    t.as_ref().expect("timestamp").seconds
}

async fn questions_to_the_controller(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app);
    let t1 = app.keys.tenant("t1");
    let mail = app.keys.platform("mail");
    let question = "Which of the two Ada Lovelace accounts does the person mean?";
    let fwd = c
        .forward_to_controller(authed(forward("mail-7"), &mail))
        .await
        .unwrap()
        .into_inner();
    let (sla_before, due_before) = (secs(&fwd.sla_due_at), secs(&fwd.due_at));

    // Bad input, strangers and unknown requests.
    let e = c
        .ask_controller(authed(ask(&fwd.id, "  "), &mail))
        .await
        .unwrap_err();
    invalid_field(e, "question").await;
    let e = c
        .ask_controller(authed(ask(&fwd.id, question), &app.keys.platform("billing")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "a system with no part in the request");
    let e = c
        .ask_controller(authed(ask("nope", question), &mail))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // The forwarding system asks: the request awaits the controller, the
    // SLA is paused, the legal deadline is not.
    let q = c
        .ask_controller(authed(ask(&fwd.id, question), &mail))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(q.asked_by, "mail");
    assert_eq!(q.question, question);
    assert!(q.answer.is_empty() && q.answered_at.is_none());
    let waiting = get_request(&app, &fwd.id).await;
    assert_eq!(waiting.status, pb::Status::AwaitingController as i32);
    assert_eq!(secs(&waiting.sla_paused_since), app.clock.now().timestamp());
    assert_eq!(secs(&waiting.due_at), due_before);
    assert_eq!(waiting.questions.len(), 1);
    assert_eq!(waiting.questions[0].question, question);
    let listed = c
        .list_subject_requests(authed(
            pb::ListSubjectRequestsRequest {
                status: pb::Status::AwaitingController as i32,
                ..Default::default()
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.requests.len(), 1, "listed by its status");
    // Compliance sees that a question is open, not its text.
    let seen = c
        .get_subject_request(authed(
            pb::GetSubjectRequestRequest { id: fwd.id.clone() },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.questions.len(), 1);
    assert!(seen.questions[0].question.is_empty());

    // Sealed at rest.
    let qid = q.id.clone();
    let stored = app
        .store
        .read("test.question", move |c, _| {
            proctor::subject_requests::repo::question(c, None, &qid)
        })
        .await
        .unwrap();
    assert!(stored.question.clear.is_none());
    assert!(!stored.question.sealed.clone().unwrap().contains("Lovelace"));

    // The tenant answers two days later with Reply.
    let env = pull_inbox(&app, &t1, 30)
        .await
        .into_iter()
        .find(|e| e.kind == "subject_request.question")
        .expect("the question reaches the tenant");
    let payload: serde_json::Value = serde_json::from_str(&env.payload).unwrap();
    assert_eq!(payload["question_id"], q.id);
    assert_eq!(payload["request_id"], fwd.id);
    assert!(!env.payload.contains("Lovelace"));
    app.clock.advance(Duration::days(2));
    let target = app
        .inbox()
        .reply(authed(
            pb::ReplyRequest {
                id: env.id.clone(),
                text: "The one registered with the Marylebone address.".into(),
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner()
        .target;
    assert_eq!(target, format!("question/{}", q.id));
    let resumed = get_request(&app, &fwd.id).await;
    assert_eq!(resumed.status, pb::Status::Forwarded as i32, "back where it was");
    assert!(resumed.sla_paused_since.is_none());
    assert_eq!(
        secs(&resumed.sla_due_at),
        sla_before + 2 * 86_400,
        "the SLA paused two days"
    );
    assert_eq!(secs(&resumed.due_at), due_before, "the legal deadline did not");
    assert_eq!(
        resumed.questions[0].answer,
        "The one registered with the Marylebone address."
    );

    // The answer reaches the asker, who reads it; nobody else can.
    let answer = pull_inbox(&app, &mail, 30)
        .await
        .into_iter()
        .find(|e| e.kind == "subject_request.answer")
        .expect("the answer reaches the asker");
    let payload: serde_json::Value = serde_json::from_str(&answer.payload).unwrap();
    assert_eq!(payload["question_id"], q.id);
    let read = c
        .get_controller_question(authed(
            pb::GetControllerQuestionRequest { id: q.id.clone() },
            &mail,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.answer, "The one registered with the Marylebone address.");
    assert!(read.answered_at.is_some());
    for token in [app.keys.platform("billing"), app.keys.tenant("t2")] {
        let e = c
            .get_controller_question(authed(
                pb::GetControllerQuestionRequest { id: q.id.clone() },
                &token,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }

    // A system holding a task asks too; a closed request takes no question.
    register(&app, "crm", &["contact"]).await;
    let sub = c
        .submit_subject_request(authed(submit(pb::RequestType::Erasure, "e9", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    let crm = app.keys.platform("crm");
    c.ask_controller(authed(ask(&sub.id, "Which account?"), &crm))
        .await
        .unwrap();
    c.ask_controller(authed(ask(&sub.id, "And which phone?"), &crm))
        .await
        .unwrap();
    let two = get_request(&app, &sub.id).await;
    assert_eq!(two.status, pb::Status::AwaitingController as i32);
    assert_eq!(two.questions.len(), 2);
    c.cancel_subject_request(authed(
        pb::CancelSubjectRequestRequest {
            id: sub.id.clone(),
            reason: "duplicate".into(),
        },
        &t1,
    ))
    .await
    .unwrap();
    let e = c
        .ask_controller(authed(ask(&sub.id, "Still there?"), &crm))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // The audit log records lengths, never the texts.
    let events = crate::support::audit_events(&app).await;
    let asked = events
        .iter()
        .find(|e| e.action == "subject_request.ask")
        .expect("audited");
    assert!(asked.detail.contains("question_chars") && !asked.detail.contains("Lovelace"));
    let answered = events
        .iter()
        .find(|e| e.action == "subject_request.answer")
        .expect("audited");
    assert!(!answered.detail.contains("Marylebone"));
    app.stop().await;
}
on_both_backends!(questions_to_the_controller, questions_to_the_controller);

fn correction(category: &str, field: &str, value: &str) -> pb::Correction {
    pb::Correction {
        category: category.into(),
        field: field.into(),
        value: value.into(),
    }
}

async fn rectification_carries_corrections(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app);
    let t1 = app.keys.tenant("t1");
    register(&app, "crm", &["contact"]).await;
    register(&app, "dialer", &["recording"]).await;
    let address = correction("contact", "postal_address", "12 Marylebone Road, London");
    let note = correction("recording", "caller_name", "Ada King");

    // Refusals: another request type, an unknown category, no field.
    let mut erasure = submit(pb::RequestType::Erasure, "x1", &[]);
    erasure.corrections = vec![address.clone()];
    let e = c.submit_subject_request(authed(erasure, &t1)).await.unwrap_err();
    invalid_field(e, "corrections").await;
    let mut bad = submit(pb::RequestType::Rectification, "x2", &[]);
    bad.corrections = vec![correction("recordngs", "x", "y"), correction("contact", "", "y")];
    let e = c.submit_subject_request(authed(bad, &t1)).await.unwrap_err();
    assert_eq!(violated_fields(&e), ["corrections[1].field"], "the field first");
    let mut bad = submit(pb::RequestType::Rectification, "x2", &[]);
    bad.corrections = vec![address.clone(), correction("recordngs", "x", "y")];
    let e = c.submit_subject_request(authed(bad, &t1)).await.unwrap_err();
    invalid_field(e, "corrections[1].category").await;

    let mut fix = submit(pb::RequestType::Rectification, "fix-1", &[]);
    fix.corrections = vec![address.clone(), note.clone()];
    let r = c
        .submit_subject_request(authed(fix.clone(), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.corrections,
        [address.clone(), note.clone()],
        "the controller sees them"
    );
    // A retry with other corrections is another request body.
    let mut other = fix.clone();
    other.corrections = vec![address.clone()];
    let e = c.submit_subject_request(authed(other, &t1)).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);

    // Each system gets the corrections in its own categories only.
    let crm = pull(&app, "crm", 60).await.remove(0);
    assert_eq!(crm.corrections, std::slice::from_ref(&address));
    let dialer = pull(&app, "dialer", 60).await.remove(0);
    assert_eq!(dialer.corrections, std::slice::from_ref(&note));

    // Sealed at rest, with the identifiers.
    let id = r.id.clone();
    let stored = app
        .store
        .read("test.request", move |c, _| {
            proctor::subject_requests::repo::get(c, None, &id)
        })
        .await
        .unwrap();
    let sealed = stored.sealed.expect("sealed while open");
    assert!(!sealed.data.contains("Marylebone"));

    // Dropped when the request closes.
    complete(&app, "crm", &crm.id, b"", false).await.unwrap();
    complete(&app, "dialer", &dialer.id, b"", false).await.unwrap();
    let done = get_request(&app, &r.id).await;
    assert_eq!(done.status, pb::Status::Completed as i32);
    assert!(done.corrections.is_empty());
    let id = r.id.clone();
    let stored = app
        .store
        .read("test.request", move |c, _| {
            proctor::subject_requests::repo::get(c, None, &id)
        })
        .await
        .unwrap();
    assert!(stored.sealed.is_none(), "nothing left to open");
    let events = crate::support::audit_events(&app).await;
    assert!(events.iter().all(|e| !e.detail.contains("Marylebone")));
    app.stop().await;
}
on_both_backends!(
    rectification_carries_corrections,
    rectification_carries_corrections
);

fn certificate_of(tenant: &str) -> pb::GetDeletionCertificateRequest {
    pb::GetDeletionCertificateRequest {
        tenant_id: tenant.into(),
    }
}

async fn deletion_certificate_after_contract_end(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app);
    let compliance = app.keys.compliance();
    register(&app, "crm", &["contact"]).await;
    register(&app, "dialer", &["recording"]).await;
    let sp = crate::subprocessors::register(
        &app,
        crate::subprocessors::registration(
            "Harmless Transcripts GmbH",
            "DE",
            pb::TransferMechanism::Eea,
            &["recording"],
            &["transcription"],
        ),
    )
    .await;

    // No erasure yet: no certificate.
    let e = c
        .get_deletion_certificate(authed(certificate_of("t1"), &compliance))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let secrets = std::sync::Arc::new(proctor::secrets::SubjectSecrets::load(&app.config).unwrap());
    let (erasure, _) =
        proctor::subject_requests::service::contract_end_erasure(&app.store, secrets, "t1".into())
            .await
            .unwrap();
    let e = c
        .get_deletion_certificate(authed(certificate_of("t1"), &compliance))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "not before the erasure completed"
    );

    // Compliance records the sub-processor's confirmation; bad input and
    // unknown sub-processors are refused, other roles may not.
    let confirm = |id: &str, at: chrono::DateTime<chrono::Utc>, reference: &str| {
        pb::ConfirmSubProcessorDeletionRequest {
            tenant_id: "t1".into(),
            sub_processor_id: id.into(),
            confirmed_at: Some(self::at(at)),
            reference: reference.into(),
        }
    };
    let now = app.clock.now();
    let e = c
        .confirm_sub_processor_deletion(authed(
            pb::ConfirmSubProcessorDeletionRequest {
                tenant_id: "t1".into(),
                sub_processor_id: sp.id.clone(),
                ..Default::default()
            },
            &compliance,
        ))
        .await
        .unwrap_err();
    invalid_field(e, "confirmed_at").await;
    let e = c
        .confirm_sub_processor_deletion(authed(
            confirm(&sp.id, now + Duration::days(1), "DEL-1"),
            &compliance,
        ))
        .await
        .unwrap_err();
    invalid_field(e, "confirmed_at").await;
    let e = c
        .confirm_sub_processor_deletion(authed(confirm("nope", now, "DEL-1"), &compliance))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .confirm_sub_processor_deletion(authed(confirm(&sp.id, now, "DEL-1"), &app.keys.tenant("t1")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let recorded = c
        .confirm_sub_processor_deletion(authed(
            confirm(&sp.id, now - Duration::hours(2), "DEL-2026-117"),
            &compliance,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recorded.reference, "DEL-2026-117");

    // The systems finish the erasure: crm erased 2 records, dialer held nothing.
    let crm = pull(&app, "crm", 60).await.remove(0);
    assert_eq!(crm.request_id, erasure.id);
    complete(&app, "crm", &crm.id, b"", false).await.unwrap();
    app.clock.advance(Duration::minutes(5));
    let dialer = pull(&app, "dialer", 60).await.remove(0);
    c.complete_task(authed(
        pb::CompleteTaskRequest {
            task_id: dialer.id.clone(),
            no_data_held: true,
            ..Default::default()
        },
        &app.keys.platform("dialer"),
    ))
    .await
    .unwrap();

    // The tenant gets its certificate; another tenant cannot.
    let cert = c
        .get_deletion_certificate(authed(certificate_of(""), &app.keys.tenant("t1")))
        .await
        .unwrap()
        .into_inner();
    let e = c
        .get_deletion_certificate(authed(certificate_of("t1"), &app.keys.tenant("t2")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let doc: serde_json::Value = serde_json::from_str(&cert.document).unwrap();
    assert_eq!(doc["format"], "proctor.deletion_certificate.v1");
    assert_eq!(doc["tenant_id"], "t1");
    assert_eq!(doc["erasure_request_id"], erasure.id);
    let systems = doc["systems"].as_array().unwrap();
    assert_eq!(systems.len(), 2);
    assert_eq!(systems[0]["system"], "crm");
    assert_eq!(systems[0]["records_affected"], 2);
    assert_eq!(systems[0]["no_data_held"], false);
    assert_eq!(systems[1]["system"], "dialer");
    assert_eq!(systems[1]["no_data_held"], true);
    assert_eq!(
        systems[1]["completed_at"],
        proctor::subject_requests::model::rfc3339_us(now + Duration::minutes(5))
    );
    assert_eq!(doc["sub_processors"][0]["sub_processor_id"], sp.id);
    assert_eq!(doc["sub_processors"][0]["reference"], "DEL-2026-117");
    assert_eq!(doc["withheld_categories"], serde_json::json!([]));

    // It verifies offline against the published receipt key, with an
    // Ed25519 implementation other than the server's; a changed byte fails.
    let key = c
        .get_receipt_key(authed(pb::GetReceiptKeyRequest {}, &app.keys.tenant("t1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cert.key_id, key.key_id);
    let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &key.public_key);
    public
        .verify(cert.document.as_bytes(), &cert.signature)
        .expect("the certificate verifies");
    let forged = cert
        .document
        .replace("\"records_affected\":2", "\"records_affected\":0");
    assert!(public.verify(forged.as_bytes(), &cert.signature).is_err());
    let events = crate::support::audit_events(&app).await;
    assert!(
        events
            .iter()
            .any(|e| e.action == "subject_request.sub_processor_deletion")
    );
    app.stop().await;
}
on_both_backends!(
    deletion_certificate_after_contract_end,
    deletion_certificate_after_contract_end
);

/// The messages of one upload: the first names the task and file, every
/// message carries up to 64 KiB.
pub(crate) fn upload_messages(task: &str, name: &str, data: &[u8]) -> Vec<pb::UploadArtifactChunk> {
    let mut out: Vec<pb::UploadArtifactChunk> = data
        .chunks(64 * 1024)
        .map(|d| pb::UploadArtifactChunk {
            data: d.to_vec(),
            ..Default::default()
        })
        .collect();
    if out.is_empty() {
        out.push(pb::UploadArtifactChunk::default());
    }
    out[0].task_id = task.into();
    out[0].file_name = name.into();
    out[0].content_type = "audio/wav".into();
    out
}

async fn upload(
    app: &TestApp,
    system: &str,
    task: &str,
    name: &str,
    data: &[u8],
) -> Result<pb::Artifact, tonic::Status> {
    client(app)
        .upload_artifact(authed(
            tokio_stream::iter(upload_messages(task, name, data)),
            &app.keys.platform(system),
        ))
        .await
        .map(|r| r.into_inner())
}

async fn export_bytes(
    app: &TestApp,
    id: &str,
    format: pb::ExportFormat,
) -> Result<(Vec<u8>, usize), tonic::Status> {
    use tokio_stream::StreamExt;
    let mut s = client(app)
        .get_export(authed(
            pb::GetExportRequest {
                id: id.into(),
                format: format as i32,
            },
            &app.keys.tenant("t1"),
        ))
        .await?
        .into_inner();
    let (mut all, mut largest) = (Vec::new(), 0);
    while let Some(chunk) = s.next().await {
        let data = chunk?.data;
        largest = largest.max(data.len());
        all.extend(data);
    }
    Ok((all, largest))
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

async fn artefacts_in_a_zip_export(b: Backend) {
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    cfg.max_artifact_bytes = 5 * 1024 * 1024;
    let app = spawn_with(db, keys, cfg).await;
    let mut c = client(&app);
    let t1 = app.keys.tenant("t1");
    register(&app, "crm", &["recording", "contact"]).await;
    register(&app, "dialer", &["recording"]).await;
    let r = c
        .submit_subject_request(authed(submit(pb::RequestType::Access, "acc-1", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    let erasure = c
        .submit_subject_request(authed(submit(pb::RequestType::Erasure, "er-1", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    let crm_task = r.tasks.iter().find(|t| t.system == "crm").unwrap().id.clone();
    let recording: Vec<u8> = (0..3 * 1024 * 1024 + 123u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();

    // Not leased yet: refused.
    let e = upload(&app, "crm", &crm_task, "call.wav", b"x")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let leased = pull(&app, "crm", 300).await;
    let crm_erasure = leased
        .iter()
        .find(|t| t.request_id == erasure.id)
        .unwrap()
        .id
        .clone();
    // Another system's task, a task that exports nothing, a bad name.
    let e = upload(&app, "dialer", &crm_task, "call.wav", b"x")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = upload(&app, "crm", &crm_erasure, "call.wav", b"x")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = upload(&app, "crm", &crm_task, "../call.wav", b"x")
        .await
        .unwrap_err();
    invalid_field(e, "file_name").await;
    // Over --max-artifact-bytes: refused, and nothing is left behind.
    let huge = vec![7u8; 5 * 1024 * 1024 + 1];
    let e = upload(&app, "crm", &crm_task, "huge.bin", &huge)
        .await
        .unwrap_err();
    invalid_field(e, "data").await;
    let task = crm_task.clone();
    let left = app
        .store
        .read("test.artifacts", move |c, _| {
            proctor::subject_requests::repo::artifacts_of_task(c, &task)
        })
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");

    // A multi-megabyte recording and a small note.
    let a = upload(&app, "crm", &crm_task, "call.wav", &recording)
        .await
        .unwrap();
    assert_eq!(a.size, recording.len() as u64);
    assert_eq!(a.sha256, sha256_hex(&recording));
    assert_eq!(a.content_type, "audio/wav");
    let note = upload(&app, "crm", &crm_task, "note.txt", b"called back on Tuesday")
        .await
        .unwrap();
    let e = upload(&app, "crm", &crm_task, "note.txt", b"again")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    // Sealed at rest: no chunk holds the bytes in the clear.
    let id = note.id.clone();
    let sealed: Vec<String> = app
        .store
        .read("test.chunks", move |c, _| {
            use diesel::prelude::*;
            use proctor::db::schema::subject_artifact_chunks::dsl as ac;
            Ok(ac::subject_artifact_chunks
                .select(ac::data)
                .filter(ac::artifact_id.eq(&id))
                .load::<String>(c)?)
        })
        .await
        .unwrap();
    assert_eq!(sealed.len(), 1);
    assert!(!sealed[0].contains("Tuesday"));

    complete(&app, "crm", &crm_task, br#"[{"call":"2026-03-01"}]"#, false)
        .await
        .unwrap();
    let dt = pull(&app, "dialer", 300).await;
    let dialer_access = dt.iter().find(|t| t.request_id == r.id).unwrap().id.clone();
    c.complete_task(authed(
        pb::CompleteTaskRequest {
            task_id: dialer_access,
            no_data_held: true,
            ..Default::default()
        },
        &app.keys.platform("dialer"),
    ))
    .await
    .unwrap();
    // Done: no more files.
    let e = upload(&app, "crm", &crm_task, "late.txt", b"x")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // A bad format is named; the ZIP is streamed in bounded pieces and read
    // back with a ZIP reader.
    let e = export_bytes(&app, &r.id, pb::ExportFormat::Csv)
        .await
        .unwrap_err();
    invalid_field(e, "format").await;
    let (zip_bytes, largest) = export_bytes(&app, &r.id, pb::ExportFormat::Zip).await.unwrap();
    assert!(largest <= 64 * 1024, "pieces of at most 64 KiB, got {largest}");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(zip_bytes)).expect("a valid ZIP");
    let read = |zip: &mut zip::ZipArchive<std::io::Cursor<Vec<u8>>>, name: &str| {
        use std::io::Read;
        let mut out = Vec::new();
        zip.by_name(name)
            .unwrap_or_else(|_| panic!("{name} in the ZIP"))
            .read_to_end(&mut out)
            .unwrap();
        out
    };
    let manifest: serde_json::Value = serde_json::from_slice(&read(&mut zip, "manifest.json")).unwrap();
    assert_eq!(manifest["request_id"], r.id);
    assert_eq!(manifest["request_type"], "access");
    assert_eq!(manifest["regime"], "gdpr");
    let systems = manifest["systems"].as_array().unwrap();
    let crm = systems.iter().find(|s| s["system"] == "crm").unwrap();
    assert_eq!(crm["records"], 2);
    assert_eq!(crm["no_data_held"], false);
    let files = crm["files"].as_array().unwrap();
    let call = files.iter().find(|f| f["file_name"] == "call.wav").unwrap();
    assert_eq!(call["size"], recording.len() as u64);
    assert_eq!(call["sha256"], sha256_hex(&recording));
    assert_eq!(call["path"], "files/crm/call.wav");
    let dialer = systems.iter().find(|s| s["system"] == "dialer").unwrap();
    assert_eq!(dialer["no_data_held"], true);
    assert_eq!(read(&mut zip, "files/crm/call.wav"), recording);
    assert_eq!(read(&mut zip, "files/crm/note.txt"), b"called back on Tuesday");
    let records: serde_json::Value = serde_json::from_slice(&read(&mut zip, "records/crm.json")).unwrap();
    assert_eq!(records, serde_json::json!([{"call": "2026-03-01"}]));
    assert_eq!(read(&mut zip, "records/dialer.json"), b"[]");
    // The JSON format is still the default.
    let (json, _) = export_bytes(&app, &r.id, pb::ExportFormat::Unspecified)
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(doc["format"], "proctor.export.v1");

    // Artefacts are deleted with the export.
    app.clock.advance(Duration::hours(169));
    let e = export_bytes(&app, &r.id, pb::ExportFormat::Zip)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let id = r.id.clone();
    let gone = app
        .store
        .read("test.artifacts", move |c, _| {
            proctor::subject_requests::repo::artifacts_of_request(c, &id)
        })
        .await
        .unwrap();
    assert!(gone.is_empty());
    let id = a.id.clone();
    let chunks = app
        .store
        .read("test.chunks", move |c, _| {
            use diesel::prelude::*;
            use proctor::db::schema::subject_artifact_chunks::dsl as ac;
            Ok(ac::subject_artifact_chunks
                .filter(ac::artifact_id.eq(&id))
                .count()
                .get_result::<i64>(c)?)
        })
        .await
        .unwrap();
    assert_eq!(chunks, 0);
    let events = crate::support::audit_events(&app).await;
    assert!(
        events
            .iter()
            .any(|e| e.action == "subject_request.upload_artifact" && e.detail.contains(&a.sha256))
    );
    app.stop().await;
}
on_both_backends!(artefacts_in_a_zip_export, artefacts_in_a_zip_export);

/// A streamed upload is bounded per message, not per call: with
/// `--request-timeout-seconds 1`, an upload whose messages come 0.4 s apart
/// (2.4 s in all) is stored whole, and one that stops sending is cut off
/// with DEADLINE_EXCEEDED instead of holding the task's upload open.
async fn uploads_are_bounded_per_message_not_per_call(b: Backend) {
    use futures::StreamExt;
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    cfg.request_timeout_seconds = 1;
    let app = spawn_with(db, keys, cfg).await;
    let t1 = app.keys.tenant("t1");
    register(&app, "crm", &["recording", "contact"]).await;
    let r = client(&app)
        .submit_subject_request(authed(submit(pb::RequestType::Access, "acc-slow", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    let task = r.tasks.iter().find(|t| t.system == "crm").unwrap().id.clone();
    pull(&app, "crm", 300).await;
    let data: Vec<u8> = (0..6 * 64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let slow = futures::stream::iter(upload_messages(&task, "slow.wav", &data)).then(|m| async move {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        m
    });
    let stored = client(&app)
        .upload_artifact(authed(slow, &app.keys.platform("crm")))
        .await
        .expect("a slow upload longer than the call deadline completes")
        .into_inner();
    assert_eq!(stored.size, data.len() as u64);

    let first = upload_messages(&task, "stalled.wav", b"the first part").remove(0);
    let stalled = futures::stream::iter(vec![first]).chain(futures::stream::pending());
    let e = client(&app)
        .upload_artifact(authed(stalled, &app.keys.platform("crm")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    app.stop().await;
}
on_both_backends!(
    uploads_are_bounded_per_message_not_per_call,
    uploads_are_bounded_per_message_not_per_call
);

/// A legal hold placed while the contract-end erasure runs withholds its
/// category; the erasure completes for the rest, and the certificate says
/// what was withheld instead of certifying it gone.
async fn certificate_names_what_a_hold_withheld(b: Backend) {
    let app = spawn_app(b).await;
    let compliance = app.keys.compliance();
    register(&app, "crm", &["contact"]).await;
    register(&app, "dialer", &["recording"]).await;
    let secrets = std::sync::Arc::new(proctor::secrets::SubjectSecrets::load(&app.config).unwrap());
    let (erasure, _) =
        proctor::subject_requests::service::contract_end_erasure(&app.store, secrets, "t1".into())
            .await
            .unwrap();
    app.instructions()
        .place_legal_hold(authed(
            pb::PlaceLegalHoldRequest {
                tenant_id: "t1".into(),
                categories: vec!["recording".into()],
                reason: "litigation".into(),
                reference: "CASE-9".into(),
                ..Default::default()
            },
            &compliance,
        ))
        .await
        .unwrap();
    let crm = pull(&app, "crm", 60).await.remove(0);
    assert_eq!(crm.request_id, erasure.id);
    complete(&app, "crm", &crm.id, b"", false).await.unwrap();
    assert!(
        pull(&app, "dialer", 60).await.is_empty(),
        "the held erasure is not offered"
    );

    let cert = client(&app)
        .get_deletion_certificate(authed(certificate_of("t1"), &compliance))
        .await
        .unwrap()
        .into_inner();
    let doc: serde_json::Value = serde_json::from_str(&cert.document).unwrap();
    let systems: Vec<&str> = doc["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["system"].as_str().unwrap())
        .collect();
    assert_eq!(systems, ["crm"], "only what was erased is certified");
    assert_eq!(doc["withheld_categories"], serde_json::json!(["recording"]));
    app.stop().await;
}
on_both_backends!(
    deletion_certificate_names_withheld_categories,
    certificate_names_what_a_hold_withheld
);
