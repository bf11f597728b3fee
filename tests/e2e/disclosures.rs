//! Requests from public authorities end to end: notices at once or after a
//! prohibition (lifted, or ended by the clock), exactly once; responses
//! that disclose no more than was requested; tenant isolation, gagged
//! requests invisible; the transparency report's figures; the export for a
//! supervisory authority; bad input refused with the field named; free
//! text sealed at rest.

use std::collections::HashSet;

use chrono::Duration;
use diesel::prelude::*;
use proctor::clock::Clock;
use proctor::db::schema::authority_requests::dsl as ar;
use proctor::proto::v1::disclosure_service_client::DisclosureServiceClient;
use proctor::proto::v1::*;
use tonic::Code;
use tonic::transport::Channel;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, audit_events, authed, spawn_app, violated_fields};

/// In every free text written, so one search finds it in the clear.
const MARK: &str = "Quaxley";

fn client(app: &TestApp) -> DisclosureServiceClient<Channel> {
    app.disclosures()
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// Makes `tenants` known to proctor, as their first instructions do.
async fn onboard(app: &TestApp, tenants: &[&str]) {
    let rule = |c: &str| CategoryRule {
        category: c.into(),
        retention_days: 30,
        purposes: vec!["service_delivery".into()],
        regions: vec![],
        restricted: false,
        allow_anonymized_analytics: false,
    };
    for t in tenants {
        let set = InstructionSet {
            rules: vec![rule("recording"), rule("contact")],
            termination_grace_days: 30,
            ..Default::default()
        };
        crate::instructions::put(app, t, 0, set).await;
    }
}

/// A valid request from the BKA for `tenants`' recordings and contacts.
fn request(app: &TestApp, tenants: &[&str]) -> RecordAuthorityRequestRequest {
    RecordAuthorityRequestRequest {
        authority: "Bundeskriminalamt".into(),
        country: "DE".into(),
        legal_basis: format!("StPO § 100a, suspect {MARK}"),
        received_at: Some(ts(app.clock.now() - Duration::hours(3))),
        tenant_ids: tenants.iter().map(|s| s.to_string()).collect(),
        categories: vec!["recording".into(), "contact".into()],
        subject_refs: vec![format!("{MARK}-subject")],
        reference: format!("BKA-4711-{MARK}"),
        notice_prohibited_until: None,
    }
}

async fn record(app: &TestApp, r: RecordAuthorityRequestRequest) -> Result<AuthorityRequest, tonic::Status> {
    client(app)
        .record_authority_request(authed(r, &app.keys.compliance()))
        .await
        .map(|r| r.into_inner())
}

async fn respond(
    app: &TestApp,
    r: RecordAuthorityResponseRequest,
) -> Result<AuthorityRequest, tonic::Status> {
    client(app)
        .record_authority_response(authed(r, &app.keys.compliance()))
        .await
        .map(|r| r.into_inner())
}

async fn get(app: &TestApp, id: &str, token: &str) -> Result<AuthorityRequest, tonic::Status> {
    client(app)
        .get_authority_request(authed(GetAuthorityRequestRequest { id: id.into() }, token))
        .await
        .map(|r| r.into_inner())
}

async fn list(app: &TestApp, tenant: &str, token: &str) -> Result<Vec<AuthorityRequest>, tonic::Status> {
    client(app)
        .list_authority_requests(authed(
            ListAuthorityRequestsRequest {
                tenant_id: tenant.into(),
                page_size: 100,
                page_token: String::new(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().authority_requests)
}

async fn report(
    app: &TestApp,
    tenant: &str,
    token: &str,
    from: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<GetTransparencyReportResponse, tonic::Status> {
    client(app)
        .get_transparency_report(authed(
            GetTransparencyReportRequest {
                tenant_id: tenant.into(),
                from: from.map(ts),
                to: None,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// The authority-request notices `tenant` has been handed (each envelope
/// once, however often its lease expired), as (request id, event).
async fn notices(app: &TestApp, tenant: &str, seen: &mut HashSet<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in crate::support::pull_inbox(app, &app.keys.tenant(tenant), 1).await {
        if e.kind != "authority_request.notice" || !seen.insert(e.id.clone()) {
            continue;
        }
        let p: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
        out.push((
            p["authority_request_id"].as_str().unwrap().to_owned(),
            p["event"].as_str().unwrap().to_owned(),
        ));
    }
    out
}

/// The stored texts of request `id`: (clear, key, sealed).
async fn raw_texts(app: &TestApp, id: &str) -> (String, Option<String>, Option<String>) {
    let id = id.to_owned();
    app.store
        .read("test.raw_authority_request", move |c, _| {
            Ok(ar::authority_requests
                .filter(ar::id.eq(&id))
                .select((ar::texts, ar::texts_key_id, ar::texts_sealed))
                .first(c)?)
        })
        .await
        .unwrap()
}

async fn notice_at_once(b: Backend) {
    let app = spawn_app(b).await;
    onboard(&app, &["acme", "globex", "initech"]).await;
    let r = record(&app, request(&app, &["globex", "acme"])).await.unwrap();
    assert_eq!(r.tenant_ids, ["acme", "globex"]);
    assert_eq!(r.status, AuthorityRequestStatus::Open as i32);
    assert!(r.notified_at.is_some() && r.notice_prohibited_until.is_none());

    // Each tenant named has exactly one notice naming the request; the
    // payload carries no free text.
    for t in ["acme", "globex"] {
        let mut seen = HashSet::new();
        assert_eq!(
            notices(&app, t, &mut seen).await,
            [(r.id.clone(), "recorded".into())],
            "{t}"
        );
    }
    for e in crate::support::pull_inbox(&app, &app.keys.tenant("acme"), 1).await {
        assert!(!e.payload.contains(MARK));
    }
    assert!(notices(&app, "initech", &mut HashSet::new()).await.is_empty());

    // The tenant reads it, seeing itself alone among the tenants.
    let seen = get(&app, &r.id, &app.keys.tenant("acme")).await.unwrap();
    assert_eq!(seen.tenant_ids, ["acme"]);
    assert!(seen.legal_basis.contains(MARK));
    assert!(seen.reference.contains(MARK));

    // Sealed at rest, opened on read; the audit log has no free text.
    let (clear, key, sealed) = raw_texts(&app, &r.id).await;
    assert!(clear.is_empty() && key.is_some());
    assert!(!sealed.unwrap().contains(MARK));
    // The key that sealed them stays in use, so it cannot leave the ring
    // before a reseal moves them.
    let uses = app
        .store
        .read("test.keys_in_use", |c, _| {
            proctor::secrets::reseal::keys_in_use(c)
        })
        .await
        .unwrap();
    let under = |k: &Option<String>| uses.get(k).map_or(0, |c| c.authority_request_texts);
    assert_eq!((under(&key), under(&None)), (1, 0));
    let events = audit_events(&app).await;
    let ours: Vec<_> = events
        .iter()
        .filter(|e| e.target == format!("authority_request/{}", r.id))
        .collect();
    let actions: Vec<(&str, &str)> = ours
        .iter()
        .map(|e| (e.action.as_str(), e.tenant_id.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("authority_request.record", ""),
            ("authority_request.notice", "acme"),
            ("authority_request.notice", "globex"),
        ]
    );
    assert!(ours.iter().all(|e| !e.detail.contains(MARK)));
    app.stop().await;
}
on_both_backends!(record_notifies_every_tenant_at_once, notice_at_once);

async fn gagged(b: Backend) {
    let app = spawn_app(b).await;
    onboard(&app, &["acme", "globex"]).await;
    let acme = app.keys.tenant("acme");
    let now = app.clock.now();
    let mut gag = request(&app, &["acme"]);
    gag.notice_prohibited_until = Some(ts(now + Duration::days(10)));
    let lifted = record(&app, gag.clone()).await.unwrap();
    gag.notice_prohibited_until = Some(ts(now + Duration::days(2)));
    let expiring = record(&app, gag).await.unwrap();
    assert!(lifted.notified_at.is_none());

    // Nothing reaches the tenant, which cannot learn the requests exist.
    let mut seen = HashSet::new();
    assert!(notices(&app, "acme", &mut seen).await.is_empty());
    assert!(list(&app, "", &acme).await.unwrap().is_empty());
    for id in [&lifted.id, &expiring.id] {
        assert_eq!(get(&app, id, &acme).await.unwrap_err().code(), Code::NotFound);
    }
    assert_eq!(report(&app, "", &acme, None).await.unwrap().total, 0);
    // Compliance sees both, still waiting.
    let all = list(&app, "", &app.keys.compliance()).await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|r| r.notified_at.is_none()));
    assert_eq!(
        report(&app, "", &app.keys.compliance(), None)
            .await
            .unwrap()
            .total,
        2
    );
    // A response recorded meanwhile is not told either.
    respond(
        &app,
        RecordAuthorityResponseRequest {
            id: expiring.id.clone(),
            outcome: DisclosureOutcome::Refused as i32,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(notices(&app, "acme", &mut seen).await.is_empty());

    // Lifting delivers the notice, once.
    let c = app.keys.compliance();
    let lift = |id: &str| LiftNoticeProhibitionRequest { id: id.into() };
    let after = client(&app)
        .lift_notice_prohibition(authed(lift(&lifted.id), &c))
        .await
        .unwrap()
        .into_inner();
    assert!(after.notified_at.is_some());
    assert_eq!(
        notices(&app, "acme", &mut seen).await,
        [(lifted.id.clone(), "recorded".into())]
    );
    let again = client(&app)
        .lift_notice_prohibition(authed(lift(&lifted.id), &c))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(get(&app, &lifted.id, &acme).await.unwrap().id, lifted.id);
    assert!(get(&app, &expiring.id, &acme).await.is_err());

    // The other waits for its date; the job releases it once it passes,
    // once however many rounds follow.
    app.clock.advance_settled(Duration::days(1)).await;
    assert!(notices(&app, "acme", &mut seen).await.is_empty());
    app.clock
        .advance_settled(Duration::days(1) + Duration::minutes(2))
        .await;
    assert_eq!(
        notices(&app, "acme", &mut seen).await,
        [(expiring.id.clone(), "recorded".into())]
    );
    app.clock.advance_settled(Duration::minutes(2)).await;
    app.clock.advance_settled(Duration::minutes(2)).await;
    assert!(notices(&app, "acme", &mut seen).await.is_empty());
    let r = get(&app, &expiring.id, &acme).await.unwrap();
    assert_eq!(r.status, AuthorityRequestStatus::Responded as i32);
    assert_eq!(
        r.response.unwrap().outcome,
        DisclosureOutcome::Refused as i32,
        "the released request shows its response"
    );
    assert_eq!(list(&app, "", &acme).await.unwrap().len(), 2);

    let actions: Vec<String> = audit_events(&app)
        .await
        .into_iter()
        .map(|e| e.action)
        .filter(|a| a.starts_with("authority_request."))
        .collect();
    let count = |a: &str| actions.iter().filter(|x| *x == a).count();
    assert_eq!(count("authority_request.prohibition_lifted"), 1);
    assert_eq!(count("authority_request.prohibition_expired"), 1);
    assert_eq!(count("authority_request.notice"), 2);
    app.stop().await;
}
on_both_backends!(gagged_requests_wait_for_lift_or_date, gagged);

async fn responses(b: Backend) {
    let app = spawn_app(b).await;
    onboard(&app, &["acme"]).await;
    let r = record(&app, request(&app, &["acme"])).await.unwrap();
    let mut seen = HashSet::new();
    notices(&app, "acme", &mut seen).await;
    let answer = |outcome: DisclosureOutcome, disclosed: &[&str]| RecordAuthorityResponseRequest {
        id: r.id.clone(),
        outcome: outcome as i32,
        disclosed_categories: disclosed.iter().map(|s| s.to_string()).collect(),
        challenged: false,
        challenge_outcome: String::new(),
        note: format!("{MARK} note"),
    };

    // More than was requested is refused, naming the category.
    let e = respond(
        &app,
        answer(
            DisclosureOutcome::PartiallyDisclosed,
            &["recording", "transcript"],
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), ["disclosed_categories[1]"]);
    let e = respond(&app, answer(DisclosureOutcome::Unspecified, &[]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["outcome"]);
    // A response to no recorded request.
    let mut unknown = answer(DisclosureOutcome::Refused, &[]);
    unknown.id = "no-such-request".into();
    let e = respond(&app, unknown).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&e), ["id"]);

    let done = respond(
        &app,
        answer(DisclosureOutcome::PartiallyDisclosed, &["recording"]),
    )
    .await
    .unwrap();
    assert_eq!(done.status, AuthorityRequestStatus::Responded as i32);
    let resp = done.response.unwrap();
    assert_eq!(resp.disclosed_categories, ["recording"]);
    assert!(resp.note.contains(MARK));
    let (_, _, sealed) = raw_texts(&app, &r.id).await;
    assert!(!sealed.unwrap().contains(MARK));
    // The tenant is told of the response.
    assert_eq!(
        notices(&app, "acme", &mut seen).await,
        [(r.id.clone(), "responded".into())]
    );
    // Once only.
    let e = respond(&app, answer(DisclosureOutcome::Refused, &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(notices(&app, "acme", &mut seen).await.is_empty());
    app.stop().await;
}
on_both_backends!(responses_disclose_no_more_than_requested, responses);

async fn isolation_and_report(b: Backend) {
    let app = spawn_app(b).await;
    onboard(&app, &["acme", "globex"]).await;
    let (acme, globex, c) = (
        app.keys.tenant("acme"),
        app.keys.tenant("globex"),
        app.keys.compliance(),
    );
    let start = app.clock.now() - Duration::days(1);
    let both = record(&app, request(&app, &["acme", "globex"])).await.unwrap();
    let mut fbi = request(&app, &["globex"]);
    fbi.authority = "FBI".into();
    fbi.country = "US".into();
    fbi.categories = vec!["contact".into()];
    let fbi = record(&app, fbi).await.unwrap();
    let mut old = request(&app, &["acme"]);
    old.received_at = Some(ts(start - Duration::days(30)));
    let old = record(&app, old).await.unwrap();
    respond(
        &app,
        RecordAuthorityResponseRequest {
            id: both.id.clone(),
            outcome: DisclosureOutcome::Challenged as i32,
            challenged: true,
            challenge_outcome: "quashed by the court".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // A tenant sees its own requests only, and nothing by naming another.
    let ids = |v: Vec<AuthorityRequest>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(list(&app, "", &acme).await.unwrap()),
        [both.id.clone(), old.id.clone()]
    );
    assert_eq!(
        ids(list(&app, "globex", &globex).await.unwrap()),
        [both.id.clone(), fbi.id.clone()]
    );
    assert_eq!(
        get(&app, &fbi.id, &acme).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        list(&app, "globex", &acme).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        report(&app, "globex", &acme, None).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // Recorded now, so in the period from `start`.
    record(&app, request(&app, &["acme"])).await.unwrap();
    let as_tenant = client(&app)
        .record_authority_request(authed(request(&app, &["acme"]), &acme))
        .await
        .unwrap_err();
    assert_eq!(as_tenant.code(), Code::PermissionDenied);
    let export = |format: ExportFormat, token: &str| {
        let mut cl = client(&app);
        let req = authed(
            ExportAuthorityRequestsRequest {
                format: format as i32,
            },
            token,
        );
        async move { cl.export_authority_requests(req).await.map(|r| r.into_inner()) }
    };
    assert_eq!(
        export(ExportFormat::Json, &acme).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // Compliance lists one tenant's, or all.
    assert_eq!(list(&app, "globex", &c).await.unwrap().len(), 2);
    assert_eq!(list(&app, "", &c).await.unwrap().len(), 4);

    // The figures: the platform's since `start`, the old request left out.
    let platform = report(&app, "", &c, Some(start)).await.unwrap();
    assert_eq!(platform.total, 3);
    let rows: Vec<(String, String, String, i32, bool, u64)> = platform
        .rows
        .into_iter()
        .map(|r| {
            (
                r.authority,
                r.country,
                r.category,
                r.outcome,
                r.challenged,
                r.count,
            )
        })
        .collect();
    let bka = |cat: &str, o: DisclosureOutcome, ch: bool, n: u64| {
        (
            "Bundeskriminalamt".into(),
            "DE".into(),
            cat.into(),
            o as i32,
            ch,
            n,
        )
    };
    assert_eq!(
        rows,
        [
            bka("contact", DisclosureOutcome::Unspecified, false, 1),
            bka("contact", DisclosureOutcome::Challenged, true, 1),
            bka("recording", DisclosureOutcome::Unspecified, false, 1),
            bka("recording", DisclosureOutcome::Challenged, true, 1),
            (
                "FBI".into(),
                "US".into(),
                "contact".into(),
                DisclosureOutcome::Unspecified as i32,
                false,
                1
            ),
        ]
    );
    // A tenant's own: acme since `start` has two (the challenged one and
    // the one recorded just now); the whole history three.
    assert_eq!(report(&app, "", &acme, Some(start)).await.unwrap().total, 2);
    assert_eq!(report(&app, "acme", &acme, None).await.unwrap().total, 3);
    assert_eq!(report(&app, "globex", &c, None).await.unwrap().total, 2);

    // The export holds everything, subject references included.
    let json = export(ExportFormat::Json, &c).await.unwrap();
    assert_eq!(json.content_type, "application/json");
    let doc: serde_json::Value = serde_json::from_slice(&json.data).unwrap();
    let all = doc["authority_requests"].as_array().unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0]["id"], both.id);
    assert_eq!(all[0]["response"]["outcome"], "challenged");
    assert_eq!(all[0]["subject_refs"][0], format!("{MARK}-subject"));
    let csv_doc = export(ExportFormat::Csv, &c).await.unwrap();
    assert_eq!(csv_doc.content_type, "text/csv; charset=utf-8");
    let mut rd = csv::Reader::from_reader(csv_doc.data.as_slice());
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let recs: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(recs.len(), 4);
    assert_eq!(&recs[1][col("authority")], "FBI");
    assert_eq!(&recs[0][col("tenant_ids")], "acme;globex");
    assert_eq!(&recs[0][col("challenged")], "true");
    let e = export(ExportFormat::Unspecified, &c).await.unwrap_err();
    assert_eq!(violated_fields(&e), ["format"]);
    app.stop().await;
}
on_both_backends!(tenants_see_their_own_and_the_figures_add_up, isolation_and_report);

async fn bad_input(b: Backend) {
    let app = spawn_app(b).await;
    onboard(&app, &["acme"]).await;
    let now = app.clock.now();
    let refused = |r: RecordAuthorityRequestRequest| {
        let app = &app;
        async move {
            let e = record(app, r).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
            violated_fields(&e)
        }
    };
    assert_eq!(
        refused(RecordAuthorityRequestRequest::default()).await,
        [
            "authority",
            "country",
            "legal_basis",
            "received_at",
            "tenant_ids",
            "categories"
        ]
    );
    let mut r = request(&app, &["acme"]);
    r.categories = vec!["recording".into(), "horoscope".into()];
    assert_eq!(refused(r).await, ["categories[1]"]);
    let r = request(&app, &["acme", "nobody"]);
    assert_eq!(refused(r).await, ["tenant_ids[1]"]);
    let mut r = request(&app, &["acme"]);
    r.received_at = Some(ts(now + Duration::hours(1)));
    assert_eq!(refused(r).await, ["received_at"]);
    let mut r = request(&app, &["acme"]);
    r.notice_prohibited_until = Some(ts(now - Duration::hours(1)));
    assert_eq!(refused(r).await, ["notice_prohibited_until"]);
    let mut r = request(&app, &["acme"]);
    r.country = "XX".into();
    assert_eq!(refused(r).await, ["country"]);
    // Nothing refused was written, nor told.
    assert!(list(&app, "", &app.keys.compliance()).await.unwrap().is_empty());
    assert!(notices(&app, "acme", &mut HashSet::new()).await.is_empty());
    let e = get(&app, "", &app.keys.compliance()).await.unwrap_err();
    assert_eq!(violated_fields(&e), ["id"]);
    let e = client(&app)
        .lift_notice_prohibition(authed(
            LiftNoticeProhibitionRequest { id: "nope".into() },
            &app.keys.compliance(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = client(&app)
        .get_transparency_report(authed(
            GetTransparencyReportRequest {
                tenant_id: String::new(),
                from: Some(ts(now)),
                to: Some(ts(now - Duration::days(1))),
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&e), ["to"]);
    app.stop().await;
}
on_both_backends!(bad_input_names_its_field, bad_input);
