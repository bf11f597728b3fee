//! The audit log: chained, tamper-evident, per-tenant export, and state
//! changes recorded in the same transaction.

use proctor::audit::model::AuditEntry;
use proctor::audit::repo as audit;
use proctor::inbox::model::Recipient;
use proctor::proto::v1::{
    AckRequest, ExportAuditLogRequest, ListAuditEventsRequest, PullRequest, VerifyAuditLogRequest,
};
use tonic::Code;

use crate::inbox::put;
use crate::on_both_backends;
use crate::support::{Backend, authed, spawn_app};

/// An entry of `action` about `tenant`, for tests that write the log directly.
pub(crate) fn entry(tenant: Option<&str>, action: &str) -> AuditEntry {
    AuditEntry {
        actor: "test".into(),
        role: "compliance".into(),
        tenant_id: tenant.map(Into::into),
        action: action.into(),
        target: "x".into(),
        outcome: "ok".into(),
        trace_id: String::new(),
        detail: String::new(),
    }
}

async fn tamper_is_named(b: Backend) {
    let app = spawn_app(b).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let e = entry(Some(if i % 2 == 0 { "t1" } else { "t2" }), &format!("test.{i}"));
        let ev = app
            .store
            .write("test.audit", move |c, clock| audit::append(c, clock.now(), e))
            .await
            .unwrap();
        ids.push((ev.seq, ev.id));
    }
    app.audit_settled().await;
    let mut a = app.audit();
    let ok = a
        .verify_audit_log(authed(VerifyAuditLogRequest::default(), &app.keys.compliance()))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.ok);
    assert_eq!(ok.events_checked, 5);

    // An insider edits one stored row.
    app.db.execute(&format!(
        "UPDATE audit_events SET outcome = 'denied' WHERE seq = {}",
        ids[2].0
    ));
    let bad = a
        .verify_audit_log(authed(VerifyAuditLogRequest::default(), &app.keys.compliance()))
        .await
        .unwrap()
        .into_inner();
    assert!(!bad.ok);
    assert_eq!(bad.first_bad_event_id, ids[2].1);
    app.stop().await;
}
on_both_backends!(verify_names_the_tampered_event, tamper_is_named);

async fn deleted_row_is_found(b: Backend) {
    let app = spawn_app(b).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let e = entry(None, &format!("test.{i}"));
        let ev = app
            .store
            .write("test.audit", move |c, clock| audit::append(c, clock.now(), e))
            .await
            .unwrap();
        ids.push((ev.seq, ev.id));
    }
    app.audit_settled().await;
    app.db
        .execute(&format!("DELETE FROM audit_events WHERE seq = {}", ids[1].0));
    let bad = app
        .audit()
        .verify_audit_log(authed(VerifyAuditLogRequest::default(), &app.keys.sre()))
        .await
        .unwrap()
        .into_inner();
    assert!(!bad.ok);
    assert_eq!(
        bad.first_bad_event_id, ids[2].1,
        "the event after the gap is named"
    );
    app.stop().await;
}
on_both_backends!(verify_finds_a_deleted_event, deleted_row_is_found);

async fn tenant_trails(b: Backend) {
    let app = spawn_app(b).await;
    // A real state change: t1 acknowledges its envelopes.
    let ids = put(&app.store, Recipient::Tenant("t1".into()), "breach.notice", 2).await;
    let t1 = app.keys.tenant("t1");
    let mut inbox = app.inbox();
    inbox.pull(authed(PullRequest::default(), &t1)).await.unwrap();
    inbox
        .ack(authed(AckRequest { ids: ids.clone() }, &t1))
        .await
        .unwrap();
    for i in 0..3 {
        let e = entry(Some("t2"), &format!("test.{i}"));
        app.store
            .write("test.audit", move |c, clock| audit::append(c, clock.now(), e))
            .await
            .unwrap();
    }
    let mut a = app.audit();

    // t1 sees only its own trail, with the ack in it.
    let mine = a
        .list_audit_events(authed(ListAuditEventsRequest::default(), &t1))
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].action, "inbox.ack");
    assert_eq!(mine[0].actor, "user-of-t1");
    assert!(mine[0].detail.contains(&ids[0]));
    let mut export = a
        .export_audit_log(authed(ExportAuditLogRequest::default(), &t1))
        .await
        .unwrap()
        .into_inner();
    let mut exported = Vec::new();
    while let Some(ev) = export.message().await.unwrap() {
        exported.push(ev);
    }
    assert_eq!(exported.len(), 1);
    assert!(exported.iter().all(|e| e.tenant_id == "t1"));
    let e = a
        .export_audit_log(authed(
            ExportAuditLogRequest {
                tenant_id: "t2".into(),
            },
            &t1,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Compliance pages through everyone's events, once they have their
    // leaves (only a page of sequenced events has a next page).
    app.audit_settled().await;
    let c = app.keys.compliance();
    let p1 = a
        .list_audit_events(authed(
            ListAuditEventsRequest {
                page_size: 3,
                ..Default::default()
            },
            &c,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p1.events.len(), 3);
    assert!(!p1.next_page_token.is_empty());
    let p2 = a
        .list_audit_events(authed(
            ListAuditEventsRequest {
                page_size: 3,
                page_token: p1.next_page_token.clone(),
                ..Default::default()
            },
            &c,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(p2.events[0].seq > p1.events[2].seq);
    let e = a
        .list_audit_events(authed(
            ListAuditEventsRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            &c,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    app.stop().await;
}
on_both_backends!(tenants_read_and_export_only_their_trail, tenant_trails);
