//! Read-your-writes: a write that changes decisions answers with
//! `x-proctor-consistency-token`; a check carrying it is answered only once
//! the replica has applied that write. Two replicas on one PostgreSQL: an
//! objection on A, then a check with the token on B is never ALLOW.

use std::time::{Duration, Instant};

use proctor::proto::v1::{self as pb, compute_subject_ref_request::Identifier};
use tonic::Code;
use tonic_types::StatusExt;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, TestDb, TestKeys, authed, spawn_app, spawn_with, test_config};

const HEADER: &str = "x-proctor-consistency-token";

fn token_of<T>(r: &tonic::Response<T>) -> Option<String> {
    r.metadata().get(HEADER).map(|v| v.to_str().unwrap().to_owned())
}

fn set() -> pb::InstructionSet {
    pb::InstructionSet {
        rules: vec![pb::CategoryRule {
            category: "contact".into(),
            purposes: vec!["service_delivery".into()],
            ..Default::default()
        }],
        termination_grace_days: 30,
        ..Default::default()
    }
}

/// `PutInstructions` of `tenant` on `app`: the version and its token.
async fn put(app: &TestApp, tenant: &str, expected: u64) -> (u64, String) {
    let r = app
        .instructions()
        .put_instructions(authed(
            pb::PutInstructionsRequest {
                tenant_id: tenant.into(),
                expected_version: expected,
                instructions: Some(set()),
                reason: "DPA".into(),
            },
            &app.keys.tenant(tenant),
        ))
        .await
        .unwrap();
    let t = token_of(&r).expect("a write that changes decisions carries a token");
    (r.into_inner().version, t)
}

fn chk(tenant: &str, subject_ref: &str, token: &str) -> pb::CheckProcessingRequest {
    pb::CheckProcessingRequest {
        tenant_id: tenant.into(),
        category: "contact".into(),
        purpose: "service_delivery".into(),
        subject_ref: subject_ref.into(),
        consistency_token: token.into(),
        ..Default::default()
    }
}

async fn check(app: &TestApp, c: pb::CheckProcessingRequest) -> Result<pb::Decision, tonic::Status> {
    app.instructions()
        .check_processing(authed(c, &app.keys.platform("recorder")))
        .await
        .map(|r| r.into_inner())
}

async fn one_replica(b: Backend) {
    let app = spawn_app(b).await;
    let (v, token) = put(&app, "t1", 0).await;
    let d = check(&app, chk("t1", "", &token)).await.unwrap();
    assert_eq!((d.verdict, d.instruction_version), (pb::Verdict::Allow as i32, v));
    // A batch carries one token for all its checks.
    let batch = app
        .instructions()
        .batch_check_processing(authed(
            pb::BatchCheckProcessingRequest {
                checks: vec![chk("t1", "", ""), chk("t2", "", "")],
                consistency_token: token.clone(),
            },
            &app.keys.platform("recorder"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.decisions.len(), 2);
    // Reads and writes that change no decision carry none.
    let read = app
        .instructions()
        .get_instructions(authed(
            pb::GetInstructionsRequest {
                tenant_id: "t1".into(),
                version: 0,
            },
            &app.keys.tenant("t1"),
        ))
        .await
        .unwrap();
    assert!(token_of(&read).is_none());
    let reg = app
        .subject_requests()
        .register_system(authed(
            pb::RegisterSystemRequest {
                name: "crm".into(),
                categories: vec!["contact".into()],
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap();
    assert!(token_of(&reg).is_none());
    // A token this service did not issue names the field.
    for bad in ["nonsense", "djE"] {
        let e = check(&app, chk("t1", "", bad)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(
            e.get_details_bad_request().unwrap().field_violations[0].field,
            "consistency_token"
        );
    }
    app.stop().await;
}
on_both_backends!(consistency_tokens_on_one_replica, one_replica);

async fn subject_ref(app: &TestApp, tenant: &str, email: &str) -> String {
    app.subject_requests()
        .compute_subject_ref(authed(
            pb::ComputeSubjectRefRequest {
                identifier: Some(Identifier::Email(email.into())),
                tenant_id: tenant.into(),
            },
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap()
        .into_inner()
        .subject_ref
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_replica_is_seen_with_its_token_on_another() {
    if !crate::support::postgres_available() {
        return;
    }
    let a = spawn_app(Backend::Postgres).await;
    let keys = TestKeys::new();
    let db = TestDb::shared_with(&a.db);
    let mut cfg = test_config(&db, &keys);
    cfg.consistency_wait_ms = 300;
    let b = spawn_with(db, keys, cfg).await;
    crate::subject_requests::register(&a, "crm", &["contact"]).await;

    for i in 0..5 {
        let tenant = format!("t{i}");
        // Instructions written on A are in force on B with A's token.
        let (v, token) = put(&a, &tenant, 0).await;
        let d = check(&b, chk(&tenant, "", &token)).await.unwrap();
        assert_eq!(d.instruction_version, v, "B applied A's write before answering");
        assert_eq!(d.verdict, pb::Verdict::Allow as i32);

        // An objection on A: with its token, B never answers ALLOW.
        let email = format!("person{i}@example.org");
        let sref = subject_ref(&a, &tenant, &email).await;
        let r = a
            .subject_requests()
            .submit_subject_request(authed(
                pb::SubmitSubjectRequestRequest {
                    request_type: pb::RequestType::Objection as i32,
                    subject: Some(pb::Subject {
                        email,
                        ..Default::default()
                    }),
                    regime: pb::Regime::Gdpr as i32,
                    idempotency_key: format!("objection-{i}"),
                    ..Default::default()
                },
                &a.keys.tenant(&tenant),
            ))
            .await
            .unwrap();
        let token = token_of(&r).expect("the objection changes decisions");
        let d = check(&b, chk(&tenant, &sref, &token)).await.unwrap();
        assert_eq!(
            d.verdict,
            pb::Verdict::Deny as i32,
            "never ALLOW after the objection"
        );
        assert!(d.reasons.contains(&(pb::DenyReason::SubjectObjected as i32)));
    }

    // A token B cannot apply (no such write) is ABORTED after the wait.
    let (_, token) = put(&a, "later", 0).await;
    let forged = {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&token)
            .unwrap();
        let mut raw = raw;
        raw[2..].copy_from_slice(&(i64::MAX / 2).to_be_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    };
    let started = Instant::now();
    let e = check(&b, chk("later", "", &forged)).await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    assert!(started.elapsed() >= Duration::from_millis(300), "waited first");
    a.stop().await;
    b.stop().await;
}
