//! Regression tests for the second-round review findings (docs/SECURITY.md,
//! "Second-round review findings"): each failed before its fix. Numbers in
//! the test names are the findings' numbers there.

use chrono::{Duration, Utc};
use proctor::clock::Clock;
use proctor::proto::v1::{self as pb};
use tonic::Code;

use crate::on_both_backends;
use crate::subject_requests::{client as sr, contact_for_service_delivery, register, submit};
use crate::support::{Backend, TestApp, authed, pull_inbox, spawn_app, violated_fields};

fn ts(t: chrono::DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

async fn terminate(app: &TestApp, tenant: &str) {
    app.instructions()
        .terminate_tenant(authed(
            pb::TerminateTenantRequest {
                tenant_id: tenant.into(),
                effective_at: None,
                reason: "contract end".into(),
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap();
}

async fn requests_of(app: &TestApp, tenant: &str) -> Vec<pb::SubjectRequest> {
    sr(app)
        .list_subject_requests(authed(
            pb::ListSubjectRequestsRequest {
                tenant_id: tenant.into(),
                ..Default::default()
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner()
        .requests
}

fn forward(tenant: &str, key: &str) -> pb::ForwardToControllerRequest {
    pb::ForwardToControllerRequest {
        tenant_id: tenant.into(),
        request_type: pb::RequestType::Access as i32,
        subject: Some(pb::Subject {
            email: "ada@example.org".into(),
            ..Default::default()
        }),
        channel: "email".into(),
        message: "please send me my data".into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

/// Finding 1: A tenant that used the key proctor once used for contract-end
/// erasures (`contract-end`) and was then terminated no longer blocks
/// anyone's contract-end erasure: keys are scoped by origin, proctor's own
/// live under the reserved `proctor:` prefix, and each tenant's erasure is
/// opened in a transaction of its own.
async fn f1_contract_end_cannot_be_blocked(b: Backend) {
    let app = spawn_app(b).await;
    register(&app, "crm", &["contact"]).await;
    contact_for_service_delivery(&app, "t1", 0).await;
    contact_for_service_delivery(&app, "t2", 0).await;
    let t1 = app.keys.tenant("t1");

    // The reserved prefix is refused, with the field named.
    let e = sr(&app)
        .submit_subject_request(authed(
            submit(pb::RequestType::Access, "proctor:contract-end", &[]),
            &t1,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), ["idempotency_key"]);
    let e = sr(&app)
        .forward_to_controller(authed(forward("t1", "PROCTOR:x"), &app.keys.platform("web")))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["idempotency_key"]);

    // The key that used to be proctor's is an ordinary tenant key now.
    let mine = sr(&app)
        .submit_subject_request(authed(submit(pb::RequestType::Access, "contract-end", &[]), &t1))
        .await
        .unwrap()
        .into_inner();
    terminate(&app, "t1").await;
    terminate(&app, "t2").await;
    // One round of the contract-end job (grace 0) opens both erasures.
    app.clock.advance_settled(chrono::Duration::seconds(1)).await;
    let erasures = |rs: Vec<pb::SubjectRequest>| {
        rs.into_iter()
            .filter(|r| r.request_type == pb::RequestType::Erasure as i32)
            .count()
    };
    let (e1, e2) = (
        erasures(requests_of(&app, "t1").await),
        erasures(requests_of(&app, "t2").await),
    );
    assert_eq!((e1, e2), (1, 1), "contract-end erasures: t1 {e1}, t2 {e2}");
    let t1_requests = requests_of(&app, "t1").await;
    assert!(
        t1_requests.iter().any(|r| r.id == mine.id),
        "the tenant's own request stays"
    );
    app.stop().await;
}
on_both_backends!(
    f1_contract_end_cannot_be_blocked,
    f1_contract_end_cannot_be_blocked
);

/// Finding 1: A platform forward and a tenant's submission with the same key are
/// two requests: a forward can never take (or be answered with) a tenant's
/// request, nor the reverse.
async fn f1_idempotency_keys_are_scoped_by_origin(b: Backend) {
    let app = spawn_app(b).await;
    register(&app, "crm", &["contact"]).await;
    let fwd = sr(&app)
        .forward_to_controller(authed(forward("t1", "same-key"), &app.keys.platform("web")))
        .await
        .unwrap()
        .into_inner();
    let sub = sr(&app)
        .submit_subject_request(authed(
            submit(pb::RequestType::Erasure, "same-key", &[]),
            &app.keys.tenant("t1"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(fwd.id, sub.id);
    assert_eq!(sub.request_type, pb::RequestType::Erasure as i32);
    // Each retry still finds its own.
    let again = sr(&app)
        .forward_to_controller(authed(forward("t1", "same-key"), &app.keys.platform("web")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, fwd.id);
    app.stop().await;
}
on_both_backends!(
    f1_idempotency_keys_are_scoped_by_origin,
    f1_idempotency_keys_are_scoped_by_origin
);

/// Finding 4: A tenant reading a breach sees itself among the affected tenants,
/// never the other controllers; compliance sees them all.
async fn f4_breach_tenants_are_not_shown_to_other_tenants(b: Backend) {
    let app = spawn_app(b).await;
    let mut bc = app.breaches();
    let breach = bc
        .report_breach(authed(
            pb::ReportBreachRequest {
                nature: "misdirected export".into(),
                became_aware_at: Some(ts(app.clock.now())),
                tenant_ids: vec!["acme".into(), "globex".into(), "initech".into()],
                ..Default::default()
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner();
    let got = bc
        .get_breach(authed(
            pb::GetBreachRequest {
                id: breach.id.clone(),
            },
            &app.keys.tenant("globex"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.tenant_ids, ["globex"]);
    let listed = bc
        .list_breaches(authed(
            pb::ListBreachesRequest::default(),
            &app.keys.tenant("acme"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.breaches.len(), 1);
    assert_eq!(listed.breaches[0].tenant_ids, ["acme"]);
    let all = bc
        .get_breach(authed(
            pb::GetBreachRequest { id: breach.id },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.tenant_ids, ["acme", "globex", "initech"]);
    app.stop().await;
}
on_both_backends!(
    f4_breach_tenants_are_not_shown_to_other_tenants,
    f4_breach_tenants_are_not_shown_to_other_tenants
);

/// Finding 5: `Screen` cannot record under a sub-processor's reference (the
/// registry screens its legal name), nor under a tenant's own reference
/// unless compliance calls; a tenant's parties and free references stay
/// open to platform callers.
async fn f5_owned_party_refs_are_refused(b: Backend) {
    use crate::screening::{import, ofac_set, screen};
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    import(&app, "ofac_sdn", ofac_set("fixture_small", false), &comp)
        .await
        .unwrap();
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
    let crm = app.keys.platform("crm");
    let org = pb::PartyType::Organization;
    for (party_ref, token) in [
        (format!("subprocessors/{}", sp.id), &crm),
        (format!("subprocessors/{}", sp.id), &comp),
        ("tenants/acme".to_owned(), &crm),
    ] {
        let e = screen(&app, "Harmless Name", org, &party_ref, token)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{party_ref}");
    }
    screen(&app, "Acme Calls Ltd", org, "tenants/acme", &comp)
        .await
        .unwrap();
    screen(&app, "Some Customer Ltd", org, "tenants/acme/customers/7", &crm)
        .await
        .unwrap();
    // The registry's own screening of the legal name is what is stored.
    let stored: Vec<String> = {
        let id = sp.id.clone();
        app.store
            .read("test.party", move |c, _| {
                use diesel::prelude::*;
                use proctor::db::schema::screening_parties::dsl as pa;
                Ok(pa::screening_parties
                    .filter(pa::party_ref.eq(format!("subprocessors/{id}")))
                    .select(pa::party_ref)
                    .load::<String>(c)?)
            })
            .await
            .unwrap()
    };
    assert_eq!(stored.len(), 1, "the registration recorded the party once");
    app.stop().await;
}
on_both_backends!(f5_owned_party_refs_are_refused, f5_owned_party_refs_are_refused);

/// Findings 6 and 7: Registering a system is compliance's, with taxonomy categories
/// only; a submission names taxonomy categories only; a request no system
/// holds data for completes at once and still tells the tenant.
async fn f6_f7_systems_and_categories(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = sr(&app);
    let e = c
        .register_system(authed(
            pb::RegisterSystemRequest {
                name: "crm".into(),
                categories: vec!["contact".into()],
            },
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "a platform system may not register itself"
    );
    let e = c
        .register_system(authed(
            pb::RegisterSystemRequest {
                name: "dialer".into(),
                categories: vec!["recording".into(), "recordngs".into()],
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), ["categories[1]"]);
    register(&app, "crm", &["contact"]).await;

    let t1 = app.keys.tenant("t1");
    let e = c
        .submit_subject_request(authed(submit(pb::RequestType::Access, "a1", &["recordngs"]), &t1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), ["categories[0]"]);

    // Recordings are a taxonomy key, but no system holds them.
    let r = c
        .submit_subject_request(authed(submit(pb::RequestType::Access, "a2", &["recording"]), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status, pb::Status::Completed as i32);
    assert!(r.tasks.is_empty());
    let inbox = pull_inbox(&app, &t1, 30).await;
    let completed: Vec<_> = inbox
        .iter()
        .filter(|e| e.kind == "subject_request.completed")
        .collect();
    assert_eq!(completed.len(), 1, "{inbox:?}");
    let payload: serde_json::Value = serde_json::from_slice(completed[0].payload.as_ref()).unwrap();
    assert_eq!(payload["id"], r.id.as_str());
    app.stop().await;
}
on_both_backends!(f6_f7_systems_and_categories, f6_f7_systems_and_categories);

/// Finding 13: `received_at` may lie at most 400 days in the past.
async fn f13_received_at_is_bounded(b: Backend) {
    let app = spawn_app(b).await;
    register(&app, "crm", &["contact"]).await;
    let t1 = app.keys.tenant("t1");
    let now = app.clock.now();
    let with = |key: &str, at: chrono::DateTime<Utc>| {
        let mut r = submit(pb::RequestType::Access, key, &[]);
        r.received_at = Some(ts(at));
        r
    };
    for at in [
        now - Duration::days(401),
        chrono::DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    ] {
        let e = sr(&app)
            .submit_subject_request(authed(with(&format!("old-{}", at.timestamp()), at), &t1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&e), ["received_at"]);
    }
    let e = sr(&app)
        .forward_to_controller(authed(
            pb::ForwardToControllerRequest {
                received_at: Some(ts(now - Duration::days(500))),
                ..forward("t1", "fwd-old")
            },
            &app.keys.platform("web"),
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["received_at"]);
    sr(&app)
        .submit_subject_request(authed(with("recent", now - Duration::days(399)), &t1))
        .await
        .unwrap();
    app.stop().await;
}
on_both_backends!(f13_received_at_is_bounded, f13_received_at_is_bounded);

/// Finding 14: A tenant may answer only a change notice it was sent.
async fn f14_only_notified_tenants_answer_notices(b: Backend) {
    use crate::subprocessors::{client as spc, media, propose, register as register_sp, registration};
    let app = spawn_app(b).await;
    // t1's instructions cover recordings, so the notice reaches it; t2 has
    // none, so it is not affected and not sent the notice.
    crate::instructions::put(&app, "t1", 0, media()).await;
    let sp = register_sp(
        &app,
        registration(
            "Transcribe AB",
            "SE",
            pb::TransferMechanism::Eea,
            &["recording"],
            &["transcription"],
        ),
    )
    .await;
    let n = propose(&app, &sp.id, pb::ChangeKind::Add, Duration::days(40), None, None)
        .await
        .unwrap();
    for tenant in ["t2", "t3"] {
        let tok = app.keys.tenant(tenant);
        let e = spc(&app)
            .approve_change(authed(
                pb::ApproveChangeRequest {
                    notice_id: n.id.clone(),
                    tenant_id: tenant.into(),
                },
                &tok,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{tenant} approve");
        let e = spc(&app)
            .object_to_change(authed(
                pb::ObjectToChangeRequest {
                    notice_id: n.id.clone(),
                    tenant_id: tenant.into(),
                    reason: "no".into(),
                },
                &tok,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{tenant} object");
    }
    let ok = spc(&app)
        .approve_change(authed(
            pb::ApproveChangeRequest {
                notice_id: n.id.clone(),
                tenant_id: "t1".into(),
            },
            &app.keys.tenant("t1"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.approved);
    app.stop().await;
}
on_both_backends!(
    f14_only_notified_tenants_answer_notices,
    f14_only_notified_tenants_answer_notices
);
