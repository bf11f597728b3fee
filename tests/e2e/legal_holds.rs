//! Legal holds end to end: placing, listing and releasing (the tenant for
//! its own, compliance for any), erasure requests already open when a hold
//! is placed and opened while it holds, holds that end by `until` on the
//! injected clock, the release that issues the withheld erasure, retention
//! cutoffs marked held, contract-end erasure waiting, and texts sealed at
//! rest.

use chrono::Duration;
use proctor::proto::v1::{self as pb, compute_subject_ref_request::Identifier};
use tonic::Code;
use tonic_types::StatusExt;

use crate::on_both_backends;
use crate::subject_requests::{client as requests, complete, pull, register, submit};
use crate::support::{Backend, TestApp, authed, spawn_app};

const REASON: &str = "Litigation hold: Lovelace v. Example Ltd";

fn ts(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

async fn subject_ref(app: &TestApp, tenant: &str) -> String {
    requests(app)
        .compute_subject_ref(authed(
            pb::ComputeSubjectRefRequest {
                identifier: Some(Identifier::Email("ada.lovelace@example.org".into())),
                tenant_id: tenant.into(),
            },
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap()
        .into_inner()
        .subject_ref
}

fn rule(cat: &str, days: u32) -> pb::CategoryRule {
    pb::CategoryRule {
        category: cat.into(),
        retention_days: days,
        purposes: vec!["service_delivery".into()],
        ..Default::default()
    }
}

async fn instructions(app: &TestApp, tenant: &str, grace: u32) {
    let set = pb::InstructionSet {
        rules: vec![rule("contact", 30), rule("recording", 90), rule("transcript", 90)],
        termination_grace_days: grace,
        ..Default::default()
    };
    crate::instructions::put(app, tenant, 0, set).await;
}

fn hold(
    tenant: &str,
    sref: &str,
    cats: &[&str],
    until: Option<prost_types::Timestamp>,
) -> pb::PlaceLegalHoldRequest {
    pb::PlaceLegalHoldRequest {
        tenant_id: tenant.into(),
        subject_ref: sref.into(),
        categories: cats.iter().map(|c| c.to_string()).collect(),
        reason: REASON.into(),
        reference: "case 4711".into(),
        until,
    }
}

async fn place(
    app: &TestApp,
    r: pb::PlaceLegalHoldRequest,
    token: &str,
) -> Result<pb::LegalHold, tonic::Status> {
    app.instructions()
        .place_legal_hold(authed(r, token))
        .await
        .map(|r| r.into_inner())
}

async fn release(app: &TestApp, id: &str, token: &str) -> Result<pb::LegalHold, tonic::Status> {
    app.instructions()
        .release_legal_hold(authed(
            pb::ReleaseLegalHoldRequest {
                id: id.into(),
                reason: "Settled out of court".into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

async fn list(
    app: &TestApp,
    tenant: &str,
    active_only: bool,
    token: &str,
) -> Result<Vec<pb::LegalHold>, tonic::Status> {
    app.instructions()
        .list_legal_holds(authed(
            pb::ListLegalHoldsRequest {
                tenant_id: tenant.into(),
                active_only,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().holds)
}

async fn request(app: &TestApp, tenant: &str, id: &str) -> pb::SubjectRequest {
    requests(app)
        .get_subject_request(authed(
            pb::GetSubjectRequestRequest { id: id.into() },
            &app.keys.tenant(tenant),
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn erasure(app: &TestApp, tenant: &str, key: &str) -> pb::SubjectRequest {
    requests(app)
        .submit_subject_request(authed(
            submit(pb::RequestType::Erasure, key, &[]),
            &app.keys.tenant(tenant),
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The categories of `r`'s tasks still to do, per system, sorted.
fn open_tasks(r: &pb::SubjectRequest) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<_> = r
        .tasks
        .iter()
        .filter(|t| t.status == pb::TaskStatus::Pending as i32 || t.status == pb::TaskStatus::Leased as i32)
        .map(|t| (t.system.clone(), t.categories.clone()))
        .collect();
    v.sort();
    v
}

fn pair(system: &str, cats: &[&str]) -> (String, Vec<String>) {
    (system.into(), cats.iter().map(|c| c.to_string()).collect())
}

fn fields(e: &tonic::Status) -> Vec<String> {
    e.get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|f| f.field).collect())
        .unwrap_or_default()
}

async fn cutoffs(app: &TestApp, tenant: &str) -> Vec<pb::RetentionCutoff> {
    app.instructions()
        .get_retention_cutoffs(authed(
            pb::GetRetentionCutoffsRequest {
                tenant_id: tenant.into(),
                as_of: None,
            },
            &app.keys.platform("recorder"),
        ))
        .await
        .unwrap()
        .into_inner()
        .cutoffs
}

async fn holds_withhold_erasure(b: Backend) {
    let app = spawn_app(b).await;
    register(&app, "crm", &["contact"]).await;
    register(&app, "recorder", &["recording", "transcript"]).await;
    instructions(&app, "t1", 30).await;
    let sref = subject_ref(&app, "t1").await;
    let tenant = app.keys.tenant("t1");
    let compliance = app.keys.compliance();

    // An erasure already open when the hold is placed.
    let before = erasure(&app, "t1", "before").await;
    assert_eq!(
        open_tasks(&before),
        [
            pair("crm", &["contact"]),
            pair("recorder", &["recording", "transcript"])
        ]
    );
    let leased = pull(&app, "recorder", 300).await;
    assert_eq!(leased.len(), 1, "the recorder holds its task when the hold comes");

    let on_subject = place(&app, hold("", &sref, &["recording"], None), &tenant)
        .await
        .unwrap();
    assert_eq!(on_subject.tenant_id, "t1");
    assert_eq!(on_subject.subject_ref, sref);
    assert_eq!(on_subject.categories, ["recording"]);
    assert_eq!(on_subject.reason, REASON);
    assert_eq!(on_subject.reference, "case 4711");
    assert!(on_subject.active && on_subject.placed_at.is_some() && on_subject.released_at.is_none());
    assert!(!on_subject.placed_by.is_empty());

    // The open request: the recorder's task is withdrawn (its completion is
    // refused) and reissued for transcripts only; recordings are withheld.
    let r = request(&app, "t1", &before.id).await;
    assert_eq!(r.withheld_categories, ["recording"]);
    assert_eq!(
        open_tasks(&r),
        [pair("crm", &["contact"]), pair("recorder", &["transcript"])]
    );
    let e = complete(&app, "recorder", &leased[0].id, b"", false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "the withdrawn task");

    // A whole-tenant hold of transcripts for two days (compliance).
    let until = proctor::clock::Clock::now(&*app.clock) + Duration::days(2);
    let on_tenant = place(
        &app,
        hold("t1", "", &["transcript"], Some(ts(until))),
        &compliance,
    )
    .await
    .unwrap();
    assert!(on_tenant.subject_ref.is_empty() && on_tenant.until.is_some());
    let r = request(&app, "t1", &before.id).await;
    assert_eq!(r.withheld_categories, ["recording", "transcript"]);
    assert_eq!(open_tasks(&r), [pair("crm", &["contact"])]);

    // An erasure opened while both hold: only contacts are issued.
    let during = erasure(&app, "t1", "during").await;
    assert_eq!(during.withheld_categories, ["recording", "transcript"]);
    assert_eq!(open_tasks(&during), [pair("crm", &["contact"])]);

    // Retention cutoffs: held categories have none.
    let c = cutoffs(&app, "t1").await;
    let by = |cat: &str| c.iter().find(|x| x.category == cat).unwrap().clone();
    assert!(by("recording").held && by("recording").cutoff.is_none());
    assert!(by("transcript").held && by("transcript").cutoff.is_none());
    assert!(!by("contact").held && by("contact").cutoff.is_some());

    // Both requests complete for the rest, still listing what is withheld.
    for t in pull(&app, "crm", 300).await {
        complete(&app, "crm", &t.id, b"", false).await.unwrap();
    }
    for id in [&before.id, &during.id] {
        let r = request(&app, "t1", id).await;
        assert_eq!(r.status, pb::Status::Completed as i32, "completes for the rest");
        assert_eq!(r.withheld_categories, ["recording", "transcript"]);
    }
    assert!(
        pull(&app, "recorder", 300).await.is_empty(),
        "nothing held is issued"
    );

    // The tenant-wide hold ends by its `until`: the job issues transcripts.
    app.clock.advance_settled(Duration::days(2)).await;
    let mut issued = pull(&app, "recorder", 300).await;
    issued.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    let mut want = vec![before.id.clone(), during.id.clone()];
    want.sort();
    assert_eq!(
        issued.iter().map(|t| t.request_id.clone()).collect::<Vec<_>>(),
        want
    );
    assert!(issued.iter().all(|t| t.categories == ["transcript"]));
    assert!(
        issued.iter().all(|t| t.subject_ref == sref),
        "found by the subject ref"
    );
    assert_eq!(
        request(&app, "t1", &before.id).await.withheld_categories,
        ["recording"]
    );
    let active = list(&app, "t1", true, &tenant).await.unwrap();
    assert_eq!(
        active.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        [on_subject.id.as_str()]
    );
    for t in issued {
        complete(&app, "recorder", &t.id, b"", false).await.unwrap();
    }

    // Another tenant neither sees nor releases t1's holds.
    let t2 = app.keys.tenant("t2");
    assert_eq!(
        release(&app, &on_subject.id, &t2).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        list(&app, "t1", false, &t2).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert!(list(&app, "", false, &t2).await.unwrap().is_empty());

    // Release: the withheld recordings are issued.
    let released = release(&app, &on_subject.id, &tenant).await.unwrap();
    assert!(!released.active && released.released_at.is_some());
    assert_eq!(released.release_reason, "Settled out of court");
    let issued = pull(&app, "recorder", 300).await;
    assert_eq!(issued.len(), 2);
    assert!(issued.iter().all(|t| t.categories == ["recording"]));
    for id in [&before.id, &during.id] {
        assert!(request(&app, "t1", id).await.withheld_categories.is_empty());
    }
    assert_eq!(
        release(&app, &on_subject.id, &compliance)
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    let all = list(&app, "", false, &compliance).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(list(&app, "t1", true, &compliance).await.unwrap().is_empty());

    // Bad input names the field.
    let mut bad = hold(
        "t1",
        "",
        &["recording", "nonsense"],
        Some(ts(proctor::clock::Clock::now(&*app.clock))),
    );
    bad.reason = String::new();
    let e = place(&app, bad, &tenant).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(fields(&e), ["reason", "until"]);
    let e = place(&app, hold("t1", "", &["nonsense"], None), &tenant)
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["categories[0]"]);
    let e = place(&app, hold("", "", &[], None), &compliance)
        .await
        .unwrap_err();
    assert_eq!(fields(&e), ["tenant_id"]);
    let e = place(&app, hold("t1", "", &[], None), &app.keys.platform("crm"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Sealed at rest: neither the subject ref nor the reasons in clear.
    let rows = app
        .store
        .read("test.holds", |c, _| {
            proctor::instructions::repo::holds(c, None, None)
        })
        .await
        .unwrap();
    for r in &rows {
        let sealed = r.texts_sealed.clone().unwrap();
        assert!(!sealed.contains("Lovelace") && !sealed.contains(&sref));
        assert_ne!(r.subject_hash, sref);
    }

    // Audited, without the texts.
    let events = app
        .audit()
        .list_audit_events(authed(pb::ListAuditEventsRequest::default(), &compliance))
        .await
        .unwrap()
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for a in ["legal_hold.place", "legal_hold.expired", "legal_hold.release"] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    assert!(
        events
            .iter()
            .all(|e| !e.detail.contains("Lovelace") && !e.detail.contains(&sref))
    );
    app.stop().await;
}
on_both_backends!(legal_holds_withhold_and_release_erasure, holds_withhold_erasure);

/// A terminated tenant's contract-end erasure waits while a hold holds and
/// opens on the first round after it is released.
async fn contract_end_waits(b: Backend) {
    let app = spawn_app(b).await;
    register(&app, "crm", &["contact"]).await;
    instructions(&app, "t1", 1).await;
    let h = place(&app, hold("t1", "", &["contact"], None), &app.keys.compliance())
        .await
        .unwrap();
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
    let opened = || async {
        requests(&app)
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
            .len()
    };
    app.clock.advance_settled(Duration::days(2)).await;
    assert_eq!(opened().await, 0, "held back while the hold holds");
    release(&app, &h.id, &app.keys.compliance()).await.unwrap();
    app.clock.advance_settled(Duration::seconds(1)).await;
    assert_eq!(opened().await, 1, "opens once released");
    app.stop().await;
}
on_both_backends!(contract_end_erasure_waits_for_legal_holds, contract_end_waits);
