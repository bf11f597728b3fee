//! The breach register end to end: the 72-hour clock, inbox notices per
//! tenant, refusal of incomplete notifications, isolation, overdue listing.

use chrono::Duration;
use proctor::clock::Clock;
use proctor::proto::v1::breach_service_client::BreachServiceClient;
use proctor::proto::v1::*;
use tonic::Code;
use tonic::transport::Channel;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, authed, spawn_app};

fn client(app: &TestApp) -> BreachServiceClient<Channel> {
    app.breaches()
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

async fn report(app: &TestApp, tenants: &[&str], categories: &[&str]) -> Breach {
    client(app)
        .report_breach(authed(
            ReportBreachRequest {
                nature: "Call recordings readable through a misconfigured bucket".into(),
                categories: categories.iter().map(|s| s.to_string()).collect(),
                became_aware_at: Some(ts(app.clock.now() - Duration::hours(2))),
                tenant_ids: tenants.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn notices(app: &TestApp, tenant: &str) -> Vec<Envelope> {
    crate::support::pull_inbox(app, &app.keys.tenant(tenant), 1).await
}

async fn lifecycle(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.keys.compliance();
    let mut bc = client(&app);

    // Only nature and awareness are required at first.
    let e = bc
        .report_breach(authed(ReportBreachRequest::default(), &c))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let br = report(&app, &["acme", "globex"], &["recording"]).await;
    let aware = br.became_aware_at.unwrap().seconds;
    assert_eq!(br.authority_deadline.unwrap().seconds, aware + 72 * 3600);
    assert_eq!(br.tenant_ids, ["acme", "globex"]);

    // Each affected tenant has exactly one notice naming the breach.
    for t in ["acme", "globex"] {
        let n = notices(&app, t).await;
        assert_eq!(n.len(), 1, "{t}");
        assert_eq!(n[0].kind, "breach.notice");
        let p: serde_json::Value = serde_json::from_str(&n[0].payload).unwrap();
        assert_eq!(p["breach_id"], br.id);
    }
    assert!(notices(&app, "initech").await.is_empty());

    // Notification is refused until the required contents are complete.
    let notify = |reference: &str, delay: &str| NotifyAuthorityRequest {
        id: br.id.clone(),
        reference: reference.into(),
        delay_reasons: delay.into(),
        ..Default::default()
    };
    let e = bc
        .notify_authority(authed(notify("DPA-2026-17", ""), &c))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    for missing in [
        "approx_subjects",
        "approx_records",
        "likely_consequences",
        "measures",
        "contact_point",
    ] {
        assert!(e.message().contains(missing), "{missing} in {}", e.message());
    }
    // The facts arrive in phases; adding a tenant notifies only that tenant.
    let updated = bc
        .update_breach(authed(
            UpdateBreachRequest {
                id: br.id.clone(),
                approx_subjects: 1200,
                approx_records: 4800,
                likely_consequences: "Exposure of call audio".into(),
                measures: "Bucket closed; access logs reviewed".into(),
                contact_point: "Data protection officer".into(),
                tenant_ids: vec!["globex".into(), "initech".into()],
                ..Default::default()
            },
            &c,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.tenant_ids, ["acme", "globex", "initech"]);
    assert_eq!(notices(&app, "initech").await.len(), 1);
    app.clock.advance(Duration::seconds(2));
    assert!(
        notices(&app, "globex").await.len() == 1,
        "globex's first notice redelivered, no second one"
    );

    // The rendered document carries the required contents.
    let doc = bc
        .render_notification(authed(
            RenderNotificationRequest {
                id: br.id.clone(),
                format: String::new(),
            },
            &c,
        ))
        .await
        .unwrap()
        .into_inner();
    let md = doc.data;
    assert!(
        md.contains("approximately 1200") && md.contains("Exposure of call audio"),
        "{md}"
    );
    let json = bc
        .render_notification(authed(
            RenderNotificationRequest {
                id: br.id.clone(),
                format: "json".into(),
            },
            &c,
        ))
        .await
        .unwrap()
        .into_inner();
    let v: serde_json::Value = serde_json::from_str(&json.data).unwrap();
    assert_eq!(v["breach"]["approx_records"], 4800);
    assert_eq!(v["missing_for_notification"], serde_json::json!([]));

    // Past the deadline: late notification needs its reasons.
    app.clock.advance(Duration::hours(71));
    let e = bc
        .notify_authority(authed(notify("DPA-2026-17", ""), &c))
        .await
        .unwrap_err();
    assert!(e.message().contains("delay_reasons"), "{}", e.message());
    let done = bc
        .notify_authority(authed(
            notify("DPA-2026-17", "Forensic scope unclear until day 4"),
            &c,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.status, BreachStatus::AuthorityNotified as i32);
    let e = bc
        .notify_authority(authed(notify("again", "x"), &c))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // Every change is in the audit log with who and what.
    let events = crate::support::audit_events(&app).await;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"breach.report"));
    assert!(actions.contains(&"breach.authority_notified_late"));
    let upd = events.iter().find(|e| e.action == "breach.update").unwrap();
    assert!(upd.detail.contains("approx_subjects") && upd.actor == "compliance-officer");
    app.stop().await;
}
on_both_backends!(breach_lifecycle_with_notices_and_72h_clock, lifecycle);

async fn isolation_and_overdue(b: Backend) {
    let app = spawn_app(b).await;
    let a = report(&app, &["acme"], &[]).await;
    app.clock.advance(Duration::hours(60));
    let g = report(&app, &["globex"], &[]).await;
    let mut bc = client(&app);

    // Tenants read only breaches that concern them; others are NOT_FOUND.
    let mine = bc
        .list_breaches(authed(ListBreachesRequest::default(), &app.keys.tenant("acme")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        mine.breaches.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        [a.id.as_str()]
    );
    bc.get_breach(authed(
        GetBreachRequest { id: a.id.clone() },
        &app.keys.tenant("acme"),
    ))
    .await
    .unwrap();
    let e = bc
        .get_breach(authed(
            GetBreachRequest { id: g.id.clone() },
            &app.keys.tenant("acme"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = bc
        .report_breach(authed(ReportBreachRequest::default(), &app.keys.tenant("acme")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // a is 62 h old (near its deadline), g 2 h. Then a passes its deadline.
    let sre = app.keys.sre();
    let l = bc
        .list_breaches(authed(ListBreachesRequest::default(), &sre))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((l.breaches.len(), l.near_or_past_deadline), (2, 1));
    assert!(
        l.breaches
            .iter()
            .all(|b| b.nature.is_empty() && b.tenant_ids.is_empty()),
        "sre sees no content"
    );
    app.clock.advance(Duration::hours(11));
    let overdue = bc
        .list_breaches(authed(
            ListBreachesRequest {
                overdue_only: true,
                ..Default::default()
            },
            &sre,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        overdue.breaches.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        [a.id.as_str()]
    );
    assert_eq!(overdue.near_or_past_deadline, 1);

    // Deciding notification is not required needs a justification, and
    // takes the breach off the overdue list.
    let c = app.keys.compliance();
    let e = bc
        .notify_authority(authed(
            NotifyAuthorityRequest {
                id: a.id.clone(),
                not_required: true,
                ..Default::default()
            },
            &c,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    bc.notify_authority(authed(
        NotifyAuthorityRequest {
            id: a.id.clone(),
            not_required: true,
            justification: "Recordings were encrypted; key not exposed".into(),
            ..Default::default()
        },
        &c,
    ))
    .await
    .unwrap();
    let overdue = bc
        .list_breaches(authed(
            ListBreachesRequest {
                overdue_only: true,
                ..Default::default()
            },
            &c,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(overdue.breaches.is_empty());
    app.stop().await;
}
on_both_backends!(tenant_isolation_and_overdue_listing, isolation_and_overdue);

async fn derived_tenants(b: Backend) {
    let app = spawn_app(b).await;
    use crate::instructions::put;
    let rule = |c: &str| CategoryRule {
        category: c.into(),
        purposes: vec!["service_delivery".into()],
        ..Default::default()
    };
    put(
        &app,
        "acme",
        0,
        InstructionSet {
            rules: vec![rule("recording")],
            termination_grace_days: 0,
            ..Default::default()
        },
    )
    .await;
    put(
        &app,
        "globex",
        0,
        InstructionSet {
            rules: vec![rule("contact")],
            termination_grace_days: 0,
            ..Default::default()
        },
    )
    .await;
    let br = report(&app, &[], &["recording", "transcript"]).await;
    assert_eq!(
        br.tenant_ids,
        ["acme"],
        "derived from the categories in the tenants' instructions"
    );
    assert_eq!(notices(&app, "acme").await.len(), 1);
    assert!(notices(&app, "globex").await.is_empty());
    let e = client(&app)
        .report_breach(authed(
            ReportBreachRequest {
                nature: "x".into(),
                categories: vec!["dna".into()],
                became_aware_at: Some(ts(app.clock.now())),
                ..Default::default()
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    app.stop().await;
}
on_both_backends!(affected_tenants_derived_from_categories, derived_tenants);
