//! The sub-processor registry end to end: registration rules, change
//! notices delivered once to each affected tenant, GENERAL and SPECIFIC
//! authorisation across objection deadlines and effective dates (the clock
//! is moved, nothing sleeps for a deadline), chains, scope narrowing, the
//! screening hook, and the customer-facing exports parsed back.

use chrono::Duration;
use proctor::clock::Clock;
use proctor::proto::v1::sub_processor_service_client::SubProcessorServiceClient;
use proctor::proto::v1::*;
use proctor::subprocessors::model::Screening;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use crate::instructions::{check, put};
use crate::on_both_backends;
use crate::support::{Backend, TestApp, authed, spawn_app};

pub(crate) fn client(app: &TestApp) -> SubProcessorServiceClient<Channel> {
    app.subprocessors()
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn rule(cat: &str, purposes: &[&str]) -> CategoryRule {
    CategoryRule {
        category: cat.into(),
        retention_days: 30,
        purposes: strings(purposes),
        regions: vec![],
        restricted: false,
        allow_anonymized_analytics: false,
    }
}

/// Instructions covering recordings and transcripts (affected by a
/// speech-to-text sub-processor).
pub(crate) fn media() -> InstructionSet {
    InstructionSet {
        rules: vec![
            rule("recording", &["service_delivery", "transcription"]),
            rule("transcript", &["transcription", "support"]),
            rule("contact", &["service_delivery"]),
        ],
        termination_grace_days: 30,
        ..Default::default()
    }
}

/// Instructions covering contacts only (not affected).
fn contacts_only() -> InstructionSet {
    InstructionSet {
        rules: vec![rule("contact", &["service_delivery"])],
        termination_grace_days: 30,
        ..Default::default()
    }
}

pub(crate) fn registration(
    name: &str,
    country: &str,
    mech: TransferMechanism,
    cats: &[&str],
    purposes: &[&str],
) -> RegisterSubProcessorRequest {
    RegisterSubProcessorRequest {
        legal_name: name.into(),
        country: country.into(),
        services: "Speech-to-text of call recordings".into(),
        categories: strings(cats),
        purposes: strings(purposes),
        transfer_mechanism: mech as i32,
        ..Default::default()
    }
}

pub(crate) async fn register(app: &TestApp, r: RegisterSubProcessorRequest) -> SubProcessor {
    client(app)
        .register_sub_processor(authed(r, &app.keys.compliance()))
        .await
        .unwrap()
        .into_inner()
}

/// What the screening capability will do: settle the legal name's screening.
pub(crate) async fn screen(app: &TestApp, id: &str, outcome: Screening) {
    let id = id.to_owned();
    app.store
        .write("test.screen", move |c, clock| {
            proctor::subprocessors::repo::record_screening(c, clock.now(), &id, outcome)
        })
        .await
        .unwrap();
}

pub(crate) async fn propose(
    app: &TestApp,
    id: &str,
    kind: ChangeKind,
    effective_in: Duration,
    deadline_in: Option<Duration>,
    scope: Option<(&[&str], &[&str])>,
) -> Result<ChangeNotice, tonic::Status> {
    let now = app.clock.now();
    client(app)
        .propose_change(authed(
            ProposeChangeRequest {
                sub_processor_id: id.into(),
                kind: kind as i32,
                effective_at: Some(ts(now + effective_in)),
                objection_deadline: deadline_in.map(|d| ts(now + d)),
                categories: scope.map(|s| strings(s.0)).unwrap_or_default(),
                purposes: scope.map(|s| strings(s.1)).unwrap_or_default(),
            },
            &app.keys.compliance(),
        ))
        .await
        .map(|r| r.into_inner())
}

pub(crate) async fn sp_check(
    app: &TestApp,
    tenant: &str,
    cat: &str,
    purpose: &str,
    sp: &str,
) -> (bool, Vec<DenyReason>) {
    let (ok, reasons, _) = check(
        app,
        CheckProcessingRequest {
            tenant_id: tenant.into(),
            category: cat.into(),
            purpose: purpose.into(),
            sub_processor_id: sp.into(),
            ..Default::default()
        },
    )
    .await;
    (ok, reasons)
}

async fn authorized(app: &TestApp, tenant: &str, sp: &str) -> bool {
    sp_check(app, tenant, "transcript", "transcription", sp).await.0
}

async fn answer(
    app: &TestApp,
    tenant: &str,
    notice: &str,
    object: bool,
) -> Result<ChangeNoticeAnswer, tonic::Status> {
    let tok = app.keys.tenant(tenant);
    let mut c = client(app);
    let r = if object {
        c.object_to_change(authed(
            ObjectToChangeRequest {
                notice_id: notice.into(),
                tenant_id: tenant.into(),
                reason: "Our works council has not agreed".into(),
            },
            &tok,
        ))
        .await
    } else {
        c.approve_change(authed(
            ApproveChangeRequest {
                notice_id: notice.into(),
                tenant_id: tenant.into(),
            },
            &tok,
        ))
        .await
    };
    r.map(|r| r.into_inner())
}

async fn set_mode(app: &TestApp, tenant: &str, mode: AuthorizationMode) {
    client(app)
        .set_authorization_mode(authed(
            SetAuthorizationModeRequest {
                tenant_id: tenant.into(),
                mode: mode as i32,
            },
            &app.keys.tenant(tenant),
        ))
        .await
        .unwrap();
}

/// Pulls and acknowledges everything in `tenant`'s inbox, so a later pull
/// shows only what arrived since (delivery is at-least-once until acked).
async fn inbox(app: &TestApp, tenant: &str) -> Vec<serde_json::Value> {
    let mut ib = app.inbox();
    let tok = app.keys.tenant(tenant);
    let envelopes = crate::support::pull_inbox(app, &tok, 60).await;
    let ids: Vec<String> = envelopes.iter().map(|e| e.id.clone()).collect();
    if !ids.is_empty() {
        ib.ack(authed(AckRequest { ids }, &tok)).await.unwrap();
    }
    envelopes
        .into_iter()
        .map(|e| {
            assert_eq!(e.kind, "sub_processor.change_notice");
            serde_json::from_str(&e.payload).unwrap()
        })
        .collect()
}

async fn list(app: &TestApp, tenant: &str) -> Vec<SubProcessorEntry> {
    client(app)
        .list_sub_processors(authed(
            ListSubProcessorsRequest {
                tenant_id: tenant.into(),
                ..Default::default()
            },
            &app.keys.tenant(tenant),
        ))
        .await
        .unwrap()
        .into_inner()
        .entries
}

pub(crate) async fn status(app: &TestApp, id: &str) -> SubProcessorStatus {
    let s = client(app)
        .get_sub_processor(authed(
            GetSubProcessorRequest { id: id.into() },
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap()
        .into_inner();
    SubProcessorStatus::try_from(s.status).unwrap()
}

async fn general_and_specific(b: Backend) {
    let app = spawn_app(b).await;
    for t in ["acme", "globex"] {
        put(&app, t, 0, media()).await;
    }
    put(&app, "initech", 0, contacts_only()).await;
    set_mode(&app, "globex", AuthorizationMode::Specific).await;

    // Only compliance registers.
    let r = registration(
        "Speechly GmbH",
        "DE",
        TransferMechanism::Eea,
        &["recording", "transcript"],
        &["transcription"],
    );
    let e = client(&app)
        .register_sub_processor(authed(r.clone(), &app.keys.tenant("acme")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let sp = register(&app, r.clone()).await;
    assert_eq!(sp.status, SubProcessorStatus::Proposed as i32);
    assert_eq!(sp.screening, "pending");
    let dup = client(&app)
        .register_sub_processor(authed(r, &app.keys.compliance()))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    screen(&app, &sp.id, Screening::Clear).await;

    // Bad dates: effective in the past; deadline after effective; the
    // default 30-day deadline after an effective date 10 days out.
    for (eff, dl) in [
        (Duration::days(-1), None),
        (Duration::days(40), Some(Duration::days(41))),
        (Duration::days(10), None),
        (Duration::days(40), Some(Duration::seconds(-5))),
    ] {
        let e = propose(&app, &sp.id, ChangeKind::Add, eff, dl, None)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{eff} {dl:?}");
        assert!(e.get_details_bad_request().is_some());
    }
    let e = propose(&app, &sp.id, ChangeKind::Remove, Duration::days(40), None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "remove before add");

    let t0 = app.clock.now();
    let n = propose(&app, &sp.id, ChangeKind::Add, Duration::days(40), None, None)
        .await
        .unwrap();
    assert_eq!(
        n.objection_deadline.unwrap().seconds,
        (t0 + Duration::days(30)).timestamp()
    );
    assert_eq!(
        n.tenant_ids,
        ["acme", "globex"],
        "initech covers no category of it"
    );
    // Each affected tenant's inbox holds exactly this notice, once.
    for t in ["acme", "globex"] {
        let got = inbox(&app, t).await;
        assert_eq!(got.len(), 1, "{t}");
        assert_eq!(got[0]["notice_id"], n.id);
    }
    assert!(inbox(&app, "initech").await.is_empty());

    // Nobody is authorised before effective_at.
    assert!(!authorized(&app, "acme", &sp.id).await);
    assert_eq!(
        sp_check(&app, "acme", "transcript", "transcription", &sp.id)
            .await
            .1,
        [DenyReason::SubProcessorNotAuthorized]
    );
    // Past the deadline an objection is refused.
    app.clock.advance(Duration::days(30));
    let e = answer(&app, "acme", &n.id, true).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        !authorized(&app, "acme", &sp.id).await,
        "deadline passed, not yet effective"
    );
    assert_eq!(status(&app, &sp.id).await, SubProcessorStatus::Proposed);

    // At effective_at: GENERAL is bound, SPECIFIC is not until it approves.
    app.clock.advance(Duration::days(10));
    assert!(authorized(&app, "acme", &sp.id).await);
    assert_eq!(status(&app, &sp.id).await, SubProcessorStatus::Active);
    assert!(!authorized(&app, "globex", &sp.id).await);
    let entry = &list(&app, "globex").await[0];
    assert!(!entry.authorized && entry.pending_notice);
    let a = answer(&app, "globex", &n.id, false).await.unwrap();
    assert!(a.approved && !a.objected);
    assert!(authorized(&app, "globex", &sp.id).await);
    let entry = &list(&app, "globex").await[0];
    assert!(entry.authorized && !entry.pending_notice && !entry.objected);

    // Scope: another category or purpose is denied for the sub-processor
    // alone; an empty id involves none; an unknown id is not authorised.
    assert_eq!(
        sp_check(&app, "acme", "contact", "service_delivery", &sp.id)
            .await
            .1,
        [DenyReason::SubProcessorNotAuthorized]
    );
    assert_eq!(
        sp_check(&app, "acme", "recording", "service_delivery", &sp.id)
            .await
            .1,
        [DenyReason::SubProcessorNotAuthorized]
    );
    assert!(
        sp_check(&app, "acme", "recording", "service_delivery", "")
            .await
            .0
    );
    assert_eq!(
        sp_check(&app, "acme", "transcript", "transcription", "no-such-id")
            .await
            .1,
        [DenyReason::SubProcessorNotAuthorized]
    );
    // initech's instructions cover none of its categories: not notified,
    // not listed.
    assert!(list(&app, "initech").await.is_empty());

    // A second notice (removal) reaches each tenant once more, and retires
    // it at its effective date for everyone.
    let rm = propose(&app, &sp.id, ChangeKind::Remove, Duration::days(31), None, None)
        .await
        .unwrap();
    for t in ["acme", "globex"] {
        let got = inbox(&app, t).await;
        assert_eq!(got.len(), 1, "only the new notice is new for {t}");
        assert_eq!(got[0]["notice_id"], rm.id);
        assert_eq!(got[0]["kind"], "remove");
    }
    let e = answer(&app, "acme", &rm.id, true).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "a removal cannot be objected to"
    );
    app.clock.advance(Duration::days(31));
    assert!(!authorized(&app, "acme", &sp.id).await);
    assert!(!authorized(&app, "globex", &sp.id).await);
    assert_eq!(status(&app, &sp.id).await, SubProcessorStatus::Retired);

    // The notices as each tenant sees them: its own answers, no other
    // tenant named.
    let mine = client(&app)
        .list_change_notices(authed(
            ListChangeNoticesRequest::default(),
            &app.keys.tenant("globex"),
        ))
        .await
        .unwrap()
        .into_inner()
        .notices;
    assert_eq!(mine.len(), 2);
    assert!(mine[0].approved && mine[0].tenant_ids == ["globex"]);
    let all = client(&app)
        .list_change_notices(authed(
            ListChangeNoticesRequest::default(),
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner()
        .notices;
    assert_eq!(all[0].tenant_ids, ["acme", "globex"]);
    app.stop().await;
}
on_both_backends!(general_and_specific_flows, general_and_specific);

async fn objections(b: Backend) {
    let app = spawn_app(b).await;
    for t in ["acme", "globex"] {
        put(&app, t, 0, media()).await;
    }
    let sp = register(
        &app,
        registration(
            "Transcribe Inc.",
            "US",
            TransferMechanism::Dpf,
            &["transcript"],
            &["transcription"],
        ),
    )
    .await;
    screen(&app, &sp.id, Screening::Clear).await;
    let n = propose(
        &app,
        &sp.id,
        ChangeKind::Add,
        Duration::days(20),
        Some(Duration::days(14)),
        None,
    )
    .await
    .unwrap();

    // A tenant answers for itself only.
    let e = client(&app)
        .object_to_change(authed(
            ObjectToChangeRequest {
                notice_id: n.id.clone(),
                tenant_id: "globex".into(),
                reason: String::new(),
            },
            &app.keys.tenant("acme"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = answer(&app, "acme", "no-such-notice", true).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Before the deadline: the objection withdraws it for acme alone.
    app.clock.advance(Duration::days(13));
    let a = answer(&app, "acme", &n.id, true).await.unwrap();
    assert!(a.objected && !a.approved);
    let e = answer(&app, "acme", &n.id, false).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "approve after objecting");
    app.clock.advance(Duration::days(7));
    assert!(!authorized(&app, "acme", &sp.id).await);
    assert!(authorized(&app, "globex", &sp.id).await);
    let entry = &list(&app, "acme").await[0];
    assert!(entry.objected && !entry.authorized && !entry.pending_notice);
    // The denial is the sub-processor's alone.
    assert_eq!(
        sp_check(&app, "acme", "transcript", "transcription", &sp.id)
            .await
            .1,
        [DenyReason::SubProcessorNotAuthorized]
    );
    app.stop().await;
}
on_both_backends!(objection_before_and_after_deadline, objections);

async fn chains(b: Backend) {
    let app = spawn_app(b).await;
    put(&app, "acme", 0, media()).await;
    let c = app.keys.compliance();

    // Outside the EEA a transfer mechanism is required.
    let e = client(&app)
        .register_sub_processor(authed(
            registration(
                "Cloudy LLC",
                "US",
                TransferMechanism::Eea,
                &["recording"],
                &["transcription"],
            ),
            &c,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<_> = e
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|f| f.field)
        .collect();
    assert_eq!(fields, ["transfer_mechanism"]);

    let parent = register(
        &app,
        registration(
            "Cloudy LLC",
            "US",
            TransferMechanism::Scc,
            &["recording", "transcript"],
            &["transcription", "service_delivery"],
        ),
    )
    .await;
    // A child may not be wider than its parent; an unknown parent is NOT_FOUND.
    let mut wide = registration(
        "Speech AB",
        "SE",
        TransferMechanism::Eea,
        &["recording", "contact"],
        &["transcription"],
    );
    wide.parent_id = parent.id.clone();
    let e = client(&app)
        .register_sub_processor(authed(wide, &c))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.get_details_bad_request().unwrap().field_violations[0].field,
        "categories[1]"
    );
    let mut orphan = registration(
        "Speech AB",
        "SE",
        TransferMechanism::Eea,
        &["recording"],
        &["transcription"],
    );
    orphan.parent_id = "no-such-parent".into();
    let e = client(&app)
        .register_sub_processor(authed(orphan, &c))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let mut mid = registration(
        "Speech AB",
        "SE",
        TransferMechanism::Eea,
        &["recording", "transcript"],
        &["transcription"],
    );
    mid.parent_id = parent.id.clone();
    let mid = register(&app, mid).await;
    let mut leaf = registration(
        "GPU Rentals Oy",
        "FI",
        TransferMechanism::Eea,
        &["recording", "transcript"],
        &["transcription"],
    );
    leaf.parent_id = mid.id.clone();
    let leaf = register(&app, leaf).await;
    for s in [&parent, &mid, &leaf] {
        screen(&app, &s.id, Screening::Clear).await;
    }
    // Only the leaf and mid are added at first: the chain is not authorised.
    let mut notices = Vec::new();
    for s in [&mid, &leaf] {
        notices.push(
            propose(&app, &s.id, ChangeKind::Add, Duration::days(31), None, None)
                .await
                .unwrap(),
        );
    }
    app.clock.advance(Duration::days(31));
    assert!(!authorized(&app, "acme", &leaf.id).await, "parent not added");
    propose(&app, &parent.id, ChangeKind::Add, Duration::days(31), None, None)
        .await
        .unwrap();
    app.clock.advance(Duration::days(31));
    assert!(authorized(&app, "acme", &leaf.id).await);
    assert!(
        sp_check(&app, "acme", "recording", "transcription", &leaf.id)
            .await
            .0
    );
    let entries = list(&app, "acme").await;
    assert_eq!(entries.len(), 3);
    let l = entries
        .iter()
        .find(|e| e.sub_processor.as_ref().unwrap().id == leaf.id)
        .unwrap();
    assert_eq!(l.chain, [parent.id.clone(), mid.id.clone()]);

    // Scope: a child's change may not widen past its parent; narrowing the
    // parent narrows the whole chain from its effective date.
    let e = propose(
        &app,
        &mid.id,
        ChangeKind::ScopeChange,
        Duration::days(31),
        None,
        Some((&["recording", "contact"], &["transcription"])),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let narrowed = propose(
        &app,
        &parent.id,
        ChangeKind::ScopeChange,
        Duration::days(31),
        None,
        Some((&["transcript"], &["transcription"])),
    )
    .await
    .unwrap();
    assert_eq!(narrowed.categories, ["transcript"]);
    app.clock.advance(Duration::days(30));
    assert!(
        sp_check(&app, "acme", "recording", "transcription", &leaf.id)
            .await
            .0,
        "not yet effective"
    );
    app.clock.advance(Duration::days(1));
    assert!(
        !sp_check(&app, "acme", "recording", "transcription", &leaf.id)
            .await
            .0
    );
    assert!(
        authorized(&app, "acme", &leaf.id).await,
        "transcripts still in scope"
    );

    // A confirmed sanctions match blocks the middle link: the leaf follows.
    screen(&app, &mid.id, Screening::Confirmed).await;
    assert_eq!(status(&app, &mid.id).await, SubProcessorStatus::Blocked);
    let mut blocked = false;
    for _ in 0..100 {
        // Replicas follow the change log; wait for this one to apply it.
        if !authorized(&app, "acme", &leaf.id).await {
            blocked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(blocked, "blocked link withdraws the chain");
    let e = propose(&app, &mid.id, ChangeKind::Remove, Duration::days(31), None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    app.stop().await;
}
on_both_backends!(chain_authorisation_and_scope_narrowing, chains);

async fn exports(b: Backend) {
    let app = spawn_app(b).await;
    put(&app, "acme", 0, media()).await;
    let tricky = "Acme \"Cloud\", Inc.";
    let sp = register(
        &app,
        registration(
            tricky,
            "US",
            TransferMechanism::Scc,
            &["recording", "transcript"],
            &["transcription"],
        ),
    )
    .await;
    let other = register(
        &app,
        registration(
            "Speech AB",
            "SE",
            TransferMechanism::Eea,
            &["transcript"],
            &["transcription"],
        ),
    )
    .await;
    for s in [&sp, &other] {
        screen(&app, &s.id, Screening::Clear).await;
    }
    let n = propose(&app, &sp.id, ChangeKind::Add, Duration::days(31), None, None)
        .await
        .unwrap();
    propose(&app, &other.id, ChangeKind::Add, Duration::days(31), None, None)
        .await
        .unwrap();
    answer(&app, "acme", &n.id, true).await.unwrap();
    app.clock.advance(Duration::days(31));

    let export = |format: ExportFormat, token: String| {
        let mut c = client(&app);
        async move {
            c.export_sub_processors(authed(
                ExportSubProcessorsRequest {
                    tenant_id: "acme".into(),
                    format: format as i32,
                },
                &token,
            ))
            .await
        }
    };
    let e = export(ExportFormat::Unspecified, app.keys.tenant("acme"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = export(ExportFormat::Json, app.keys.tenant("globex"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "another tenant's list");

    let csv_out = export(ExportFormat::Csv, app.keys.tenant("acme"))
        .await
        .unwrap()
        .into_inner();
    assert!(csv_out.content_type.starts_with("text/csv"));
    let mut rd = csv::Reader::from_reader(csv_out.data.as_bytes());
    let header: Vec<String> = rd.headers().unwrap().iter().map(str::to_owned).collect();
    for col in [
        "id",
        "legal_name",
        "country",
        "transfer_mechanism",
        "chain",
        "categories",
        "authorized",
        "objected",
        "pending_notice",
    ] {
        assert!(header.contains(&col.to_string()), "{col} in {header:?}");
    }
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let row = rows.iter().find(|r| r[col("id")] == sp.id).unwrap();
    assert_eq!(&row[col("legal_name")], tricky, "RFC 4180 quoting round-trips");
    assert_eq!(&row[col("country")], "US");
    assert_eq!(&row[col("transfer_mechanism")], "SCC");
    assert_eq!(&row[col("categories")], "recording;transcript");
    assert_eq!(&row[col("authorized")], "false");
    assert_eq!(&row[col("objected")], "true");
    let row = rows.iter().find(|r| r[col("id")] == other.id).unwrap();
    assert_eq!(&row[col("authorized")], "true");

    let json = export(ExportFormat::Json, app.keys.platform("crm"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json.content_type, "application/json");
    let doc: serde_json::Value = serde_json::from_str(&json.data).unwrap();
    assert_eq!(doc["tenant_id"], "acme");
    let list = doc["sub_processors"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let e = list.iter().find(|e| e["id"] == sp.id.as_str()).unwrap();
    assert_eq!(e["legal_name"], tricky);
    assert_eq!(e["authorized"], false);
    assert_eq!(e["objected"], true);
    assert_eq!(e["status"], "ACTIVE");
    app.stop().await;
}
on_both_backends!(csv_and_json_exports_parse, exports);
