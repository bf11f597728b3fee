//! What a screening does beyond its case, end to end over gRPC: the
//! sub-processor gate (a legal name is screened at registration and on each
//! new list version; ACTIVE only once clear or cleared, BLOCKED once
//! confirmed), a confirmed tenant denied in `CheckProcessing`, and the
//! party's side answering a clarification request through its inbox.

use chrono::Duration;
use proctor::inbox::model::Recipient;
use proctor::inbox::repo as inbox;
use proctor::proto::v1::*;
use tonic::Code;
use tonic_types::StatusExt;

use crate::instructions::{check, put};
use crate::on_both_backends;
use crate::screening::{client as screening, import, ofac_set, screen};
use crate::subprocessors::{media, propose, register, registration, sp_check, status};
use crate::support::{Backend, TestApp, TestDb, TestKeys, authed, spawn_app, spawn_with, test_config};

fn resolve(case_id: &str, to: Resolution) -> ResolveCaseRequest {
    ResolveCaseRequest {
        case_id: case_id.into(),
        resolution: to as i32,
        note: "checked against the company register".into(),
    }
}

/// The compliance queue's clarification requests, oldest first.
async fn compliance_queue(app: &TestApp) -> Vec<serde_json::Value> {
    app.store
        .read("test.queue", |c, _| {
            inbox::after(c, &Recipient::System("compliance-queue".into()), 0, 100)
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "screening.clarification")
        .map(|e| serde_json::from_str(&e.payload).unwrap())
        .collect()
}

async fn case_of(app: &TestApp, party_ref: &str) -> Case {
    let all = screening(app)
        .list_cases(authed(
            ListCasesRequest {
                page_size: 100,
                ..Default::default()
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner()
        .cases;
    all.into_iter()
        .rev()
        .find(|c| c.party_ref == party_ref)
        .unwrap_or_else(|| panic!("no case for {party_ref}"))
}

/// Registers a speech-to-text sub-processor (transcripts, transcription).
async fn transcriber(app: &TestApp, name: &str, country: &str, mech: TransferMechanism) -> SubProcessor {
    register(
        app,
        registration(name, country, mech, &["transcript"], &["transcription"]),
    )
    .await
}

/// Leases what is in the inbox of `token`'s owner.
async fn pull(app: &TestApp, token: &str) -> Vec<Envelope> {
    crate::support::pull_inbox(app, token, 30).await
}

async fn screening_state(app: &TestApp, id: &str) -> String {
    crate::subprocessors::client(app)
        .get_sub_processor(authed(
            GetSubProcessorRequest { id: id.into() },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner()
        .screening
}

async fn sub_processor_gate(b: Backend) {
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    put(&app, "acme", 0, media()).await;

    // Registered before any list is loaded: nothing can call it clear yet.
    let early = transcriber(&app, "Nimbus Speech GmbH", "DE", TransferMechanism::Eea).await;
    assert_eq!(early.screening, "pending");
    propose(&app, &early.id, ChangeKind::Add, Duration::days(31), None, None)
        .await
        .unwrap();
    app.clock.advance(Duration::days(32));
    assert_eq!(status(&app, &early.id).await, SubProcessorStatus::Proposed);

    // The first list version screens it in full: clear, so ACTIVE, and the
    // tenant (GENERAL mode, no objection) is bound by the notice.
    import(&app, "ofac_sdn", ofac_set("fixture_small", true), &comp)
        .await
        .unwrap();
    assert_eq!(screening_state(&app, &early.id).await, "clear");
    assert_eq!(status(&app, &early.id).await, SubProcessorStatus::Active);
    let (ok, reasons) = sp_check(&app, "acme", "transcript", "transcription", &early.id).await;
    assert!(ok, "{reasons:?}");

    // A sanctioned legal name: a case in the compliance queue, the gate
    // stays shut past the effective date.
    let listed = transcriber(
        &app,
        "Iran Aircraft Manufacturing Industrial Company",
        "IR",
        TransferMechanism::Scc,
    )
    .await;
    assert_eq!(listed.screening, "pending");
    let party_ref = format!("subprocessors/{}", listed.id);
    let case = case_of(&app, &party_ref).await;
    assert_eq!(case.status, CaseStatus::Open as i32);
    assert_eq!(case.hits[0].entry_id, "11195");
    assert!(
        compliance_queue(&app)
            .await
            .iter()
            .any(|p| p["case_id"] == case.id.as_str())
    );
    propose(&app, &listed.id, ChangeKind::Add, Duration::days(31), None, None)
        .await
        .unwrap();
    app.clock.advance(Duration::days(32));
    assert_eq!(status(&app, &listed.id).await, SubProcessorStatus::Proposed);
    let (ok, reasons) = sp_check(&app, "acme", "transcript", "transcription", &listed.id).await;
    assert!(!ok);
    assert_eq!(reasons, [DenyReason::SubProcessorNotAuthorized]);

    // Confirmed: BLOCKED, and still denied.
    screening(&app)
        .resolve_case(authed(resolve(&case.id, Resolution::Confirmed), &comp))
        .await
        .unwrap();
    assert_eq!(screening_state(&app, &listed.id).await, "confirmed");
    assert_eq!(status(&app, &listed.id).await, SubProcessorStatus::Blocked);
    let (ok, _) = sp_check(&app, "acme", "transcript", "transcription", &listed.id).await;
    assert!(!ok);

    // A look-alike whose case is cleared becomes ACTIVE on the spot.
    let lookalike = transcriber(
        &app,
        "Aircraft Avionics Parts and Support Ltd",
        "GB",
        TransferMechanism::Adequacy,
    )
    .await;
    assert_eq!(lookalike.screening, "pending");
    propose(
        &app,
        &lookalike.id,
        ChangeKind::Add,
        Duration::days(31),
        None,
        None,
    )
    .await
    .unwrap();
    app.clock.advance(Duration::days(32));
    assert_eq!(status(&app, &lookalike.id).await, SubProcessorStatus::Proposed);
    let case = case_of(&app, &format!("subprocessors/{}", lookalike.id)).await;
    screening(&app)
        .resolve_case(authed(resolve(&case.id, Resolution::Cleared), &comp))
        .await
        .unwrap();
    assert_eq!(status(&app, &lookalike.id).await, SubProcessorStatus::Active);
    let (ok, reasons) = sp_check(&app, "acme", "transcript", "transcription", &lookalike.id).await;
    assert!(ok, "{reasons:?}");

    // A clean name registered once lists are loaded is clear at once.
    let clean = transcriber(&app, "Nordlicht Transkription AG", "DE", TransferMechanism::Eea).await;
    assert_eq!(clean.screening, "clear");

    // Every gate move is audited.
    let events = crate::support::audit_events(&app).await;
    let moves: Vec<&str> = events
        .iter()
        .filter(|e| e.action == "sub_processor.screening")
        .map(|e| e.target.as_str())
        .collect();
    for id in [&early.id, &listed.id, &lookalike.id] {
        assert!(
            moves.contains(&format!("sub_processor/{id}").as_str()),
            "{id}: {moves:?}"
        );
    }
    app.stop().await;
}
on_both_backends!(sub_processor_gate, sub_processor_gate);

async fn sanctioned_tenant_is_denied(b: Backend) {
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    let crm = app.keys.platform("crm");
    import(&app, "ofac_sdn", ofac_set("fixture_small", true), &comp)
        .await
        .unwrap();
    put(&app, "t1", 0, media()).await;
    let req = |tenant: &str| CheckProcessingRequest {
        tenant_id: tenant.into(),
        category: "contact".into(),
        purpose: "service_delivery".into(),
        ..Default::default()
    };
    assert!(check(&app, req("t1")).await.0);

    // A possible match alone changes nothing: a case is not a verdict.
    let r = screen(
        &app,
        "Gaddafi International Charity and Development Foundation",
        PartyType::Organization,
        "tenants/t1",
        &comp,
    )
    .await
    .unwrap();
    assert_eq!(r.outcome, Outcome::PossibleMatch as i32);
    assert!(check(&app, req("t1")).await.0);

    // Confirmed: every check for the tenant is denied, with the reason.
    screening(&app)
        .resolve_case(authed(resolve(&r.case_id, Resolution::Confirmed), &comp))
        .await
        .unwrap();
    let (ok, reasons, _) = check(&app, req("t1")).await;
    assert!(!ok);
    assert_eq!(reasons, [DenyReason::SanctionedParty]);

    // A tenant's own customer confirmed does not block the tenant.
    let r = screen(
        &app,
        "Elvis Angus Logan Morey",
        PartyType::Individual,
        "tenants/t2/customers/7",
        &crm,
    )
    .await
    .unwrap();
    put(&app, "t2", 0, media()).await;
    screening(&app)
        .resolve_case(authed(resolve(&r.case_id, Resolution::Confirmed), &comp))
        .await
        .unwrap();
    assert!(check(&app, req("t2")).await.0);

    // A sanctioned tenant that never wrote instructions names both reasons,
    // also on a replica that starts now and loads every snapshot whole.
    let r = screen(
        &app,
        "Aircraft, Avionics, Parts & Support Ltd.",
        PartyType::Organization,
        "tenants/t9",
        &comp,
    )
    .await
    .unwrap();
    screening(&app)
        .resolve_case(authed(resolve(&r.case_id, Resolution::Confirmed), &comp))
        .await
        .unwrap();
    let (_, reasons, _) = check(&app, req("t9")).await;
    assert_eq!(reasons, [DenyReason::NoInstructions, DenyReason::SanctionedParty]);
    let keys = TestKeys::new();
    let db = TestDb::shared_with(&app.db);
    let cfg = test_config(&db, &keys);
    let fresh = spawn_with(db, keys, cfg).await;
    let (_, reasons, _) = check(&fresh, req("t9")).await;
    assert_eq!(reasons, [DenyReason::NoInstructions, DenyReason::SanctionedParty]);
    let (_, reasons, _) = check(&fresh, req("t1")).await;
    assert_eq!(reasons, [DenyReason::SanctionedParty]);
    fresh.stop().await;
    app.stop().await;
}
on_both_backends!(sanctioned_tenant_is_denied, sanctioned_tenant_is_denied);

async fn clarification_answered_through_the_inbox(b: Backend) {
    let app = spawn_app(b).await;
    let comp = app.keys.compliance();
    let crm = app.keys.platform("crm");
    let t1 = app.keys.tenant("t1");
    let t2 = app.keys.tenant("t2");
    import(&app, "ofac_sdn", ofac_set("fixture_small", true), &comp)
        .await
        .unwrap();
    let r = screen(
        &app,
        "Daniel Moreno",
        PartyType::Individual,
        "tenants/t1/contacts/42",
        &crm,
    )
    .await
    .unwrap();
    assert_eq!(r.outcome, Outcome::PossibleMatch as i32);
    let mut ib = app.inbox();
    let envs = pull(&app, &t1).await;
    assert_eq!(envs.len(), 1);
    let question = envs[0].id.clone();
    let reply = |id: &str, text: &str| ReplyRequest {
        id: id.into(),
        text: text.into(),
    };

    // Bad input, someone else's envelope: refused, nothing recorded.
    let err = ib.reply(authed(reply(&question, "  "), &t1)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request().unwrap().field_violations[0].field,
        "text"
    );
    let err = ib
        .reply(authed(reply(&question, "not ours"), &t2))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = ib
        .reply(authed(reply(&question, "x".repeat(10_001).as_str()), &t1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // The tenant answers: the case is ANSWERED, carries the text, the
    // question is acknowledged, compliance is told.
    let answer = "Our contact was born in 1985 in Madrid; copy of the ID card on file.";
    let out = ib
        .reply(authed(reply(&question, answer), &t1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.target, format!("case/{}", r.case_id));
    let case = screening(&app)
        .get_case(authed(
            GetCaseRequest {
                case_id: r.case_id.clone(),
            },
            &t1,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(case.status, CaseStatus::Answered as i32);
    assert_eq!(case.answers.len(), 1);
    assert_eq!(case.answers[0].text, answer);
    assert_eq!(case.answers[0].answered_by, "user-of-t1");
    // At rest the answer is sealed: the stored row does not hold the text.
    let stored: Vec<(String, String)> = app
        .store
        .read("test.raw_answers", |c, _| {
            use diesel::prelude::*;
            use proctor::db::schema::screening_case_answers::dsl as ca;
            Ok(ca::screening_case_answers
                .select((ca::text, ca::key_id))
                .load(c)?)
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].0.contains("Madrid") && !stored[0].1.is_empty());
    assert!(case.answers[0].answered_at.is_some());
    let again = pull(&app, &t1).await;
    assert!(again.is_empty(), "the answered question is acknowledged");
    let told = app
        .store
        .read("test.queue", |c, _| {
            inbox::after(c, &Recipient::System("compliance-queue".into()), 0, 100)
        })
        .await
        .unwrap();
    assert!(
        told.iter()
            .any(|e| e.kind == "screening.clarification.answered" && e.payload.contains(&r.case_id))
    );
    let answered = screening(&app)
        .list_cases(authed(
            ListCasesRequest {
                status: CaseStatus::Answered as i32,
                ..Default::default()
            },
            &comp,
        ))
        .await
        .unwrap()
        .into_inner()
        .cases;
    assert_eq!(answered.len(), 1);

    // More information is welcome until the case is resolved, never after.
    ib.reply(authed(reply(&question, "Passport number on request."), &t1))
        .await
        .unwrap();
    screening(&app)
        .resolve_case(authed(resolve(&r.case_id, Resolution::Cleared), &comp))
        .await
        .unwrap();
    let err = ib
        .reply(authed(reply(&question, "one more thing"), &t1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let case = screening(&app)
        .get_case(authed(
            GetCaseRequest {
                case_id: r.case_id.clone(),
            },
            &comp,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(case.status, CaseStatus::Cleared as i32);
    assert_eq!(case.answers.len(), 2);
    // The analyst's note reads back as written, and is sealed at rest too.
    assert_eq!(case.note, "checked against the company register");
    let stored: (String, Option<String>) = app
        .store
        .read("test.raw_note", move |c, _| {
            use diesel::prelude::*;
            use proctor::db::schema::screening_cases::dsl as sc;
            Ok(sc::screening_cases
                .filter(sc::id.eq(&case.id))
                .select((sc::note, sc::note_key_id))
                .first(c)?)
        })
        .await
        .unwrap();
    assert!(!stored.0.contains("register") && stored.1.is_some());

    // An envelope that asks nothing takes no reply.
    let notice = app
        .store
        .write("test.notice", |c, clock| {
            inbox::enqueue(
                c,
                clock.now(),
                &Recipient::Tenant("t1".into()),
                "breach.notice",
                &serde_json::json!({ "id": "b-1" }),
            )
        })
        .await
        .unwrap();
    let err = ib
        .reply(authed(reply(&notice.id, "thanks"), &t1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // The audit log records the answers without their text.
    let events = crate::support::audit_events(&app).await;
    let answers: Vec<_> = events
        .iter()
        .filter(|e| e.action == "screening.case.answer")
        .collect();
    assert_eq!(answers.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| !e.detail.contains("Madrid") && !e.detail.contains("Passport"))
    );
    app.stop().await;
}
on_both_backends!(
    clarification_answered_through_the_inbox,
    clarification_answered_through_the_inbox
);
