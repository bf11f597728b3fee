//! Controller instructions and decisions over real gRPC.

use std::time::{Duration, Instant};

use chrono::Duration as Days;
use proctor::proto::v1::instruction_service_client::InstructionServiceClient;
use proctor::proto::v1::*;
use tonic::Code;
use tonic::transport::Channel;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, authed, spawn_app, spawn_with, test_config};

fn client(app: &TestApp) -> InstructionServiceClient<Channel> {
    app.instructions()
}

fn rule(cat: &str, purposes: &[&str], regions: &[&str]) -> CategoryRule {
    CategoryRule {
        category: cat.into(),
        retention_days: 30,
        purposes: purposes.iter().map(|s| s.to_string()).collect(),
        regions: regions.iter().map(|s| s.to_string()).collect(),
        restricted: false,
        allow_anonymized_analytics: false,
    }
}

pub(crate) fn standard() -> InstructionSet {
    let mut recording = rule(
        "recording",
        &["service_delivery", "quality_assurance"],
        &["DE", "FR"],
    );
    recording.retention_days = 90;
    let mut transcript = rule("transcript", &["transcription"], &[]);
    transcript.allow_anonymized_analytics = true;
    let mut screen = rule("screen_capture", &["support"], &[]);
    screen.restricted = true;
    let mut contact = rule("contact", &["service_delivery", "billing"], &[]);
    contact.retention_days = 0;
    InstructionSet {
        rules: vec![recording, transcript, screen, contact],
        termination_grace_days: 30,
        ..Default::default()
    }
}

pub async fn put(app: &TestApp, tenant: &str, expected: u64, set: InstructionSet) -> InstructionsVersion {
    try_put(
        app,
        tenant,
        expected,
        set,
        "DPA annex 2",
        &app.keys.tenant(tenant),
    )
    .await
    .unwrap()
}

/// `PutInstructions` for `tenant` as the caller `token`, with `reason`.
pub(crate) async fn try_put(
    app: &TestApp,
    tenant: &str,
    expected: u64,
    set: InstructionSet,
    reason: &str,
    token: &str,
) -> Result<InstructionsVersion, tonic::Status> {
    client(app)
        .put_instructions(authed(
            PutInstructionsRequest {
                tenant_id: tenant.into(),
                expected_version: expected,
                instructions: Some(set),
                reason: reason.into(),
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

/// `GetInstructions` of `tenant` at `version` (0 = current) as `token`.
pub(crate) async fn get(
    app: &TestApp,
    tenant: &str,
    version: u64,
    token: &str,
) -> Result<InstructionsVersion, tonic::Status> {
    client(app)
        .get_instructions(authed(
            GetInstructionsRequest {
                tenant_id: tenant.into(),
                version,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner())
}

pub(crate) fn chk(tenant: &str, category: &str, purpose: &str, region: &str) -> CheckProcessingRequest {
    CheckProcessingRequest {
        tenant_id: tenant.into(),
        category: category.into(),
        purpose: purpose.into(),
        region: region.into(),
        ..Default::default()
    }
}

pub async fn check(app: &TestApp, c: CheckProcessingRequest) -> (bool, Vec<DenyReason>, u64) {
    let d = client(app)
        .check_processing(authed(c, &app.keys.platform("recorder")))
        .await
        .unwrap()
        .into_inner();
    (
        d.verdict == Verdict::Allow as i32,
        d.reasons
            .iter()
            .map(|r| DenyReason::try_from(*r).unwrap())
            .collect(),
        d.instruction_version,
    )
}

async fn versions_and_validation(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app);
    let v1 = put(&app, "acme", 0, standard()).await;
    assert_eq!(
        (v1.version, v1.author.as_str(), v1.reason.as_str()),
        (1, "user-of-acme", "DPA annex 2")
    );
    let mut changed = standard();
    changed.termination_grace_days = 60;
    let v2 = put(&app, "acme", 1, changed.clone()).await;
    assert_eq!(v2.version, 2);

    // A stale writer is refused.
    let e = try_put(&app, "acme", 1, standard(), "stale", &app.keys.tenant("acme"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // History is immutable and readable; compliance and platform read too.
    let old = get(&app, "acme", 1, &app.keys.compliance()).await.unwrap();
    assert_eq!(old.instructions.unwrap(), standard());
    let cur = get(&app, "acme", 0, &app.keys.tenant("acme")).await.unwrap();
    assert_eq!((cur.version, cur.instructions.unwrap()), (2, changed));
    let list = c
        .list_instruction_versions(authed(
            ListInstructionVersionsRequest {
                tenant_id: "acme".into(),
                page_size: 1,
                ..Default::default()
            },
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.versions.len(), 1);
    let rest = c
        .list_instruction_versions(authed(
            ListInstructionVersionsRequest {
                tenant_id: "acme".into(),
                page_size: 1,
                page_token: list.next_page_token,
            },
            &app.keys.platform("crm"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.versions[0].version, 2);
    let e = get(&app, "acme", 9, &app.keys.compliance()).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Every violation is a BadRequest field violation; nothing is written.
    let mut bad = standard();
    bad.rules.push(rule("recording", &["marketing"], &["XX"]));
    bad.rules.push(rule("biometrics", &[], &[]));
    let e = try_put(&app, "acme", 2, bad, "", &app.keys.tenant("acme"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields = crate::support::violated_fields(&e);
    assert_eq!(
        fields,
        [
            "reason",
            "instructions.rules[4].category",
            "instructions.rules[4].purposes[0]",
            "instructions.rules[4].regions[0]",
            "instructions.rules[5].category",
        ]
    );
    assert_eq!(
        check(&app, chk("acme", "contact", "billing", "")).await.2,
        2,
        "still version 2"
    );

    // Scope: a tenant writes only its own; compliance does not write; sre nothing.
    let e = try_put(&app, "globex", 0, standard(), "x", &app.keys.tenant("acme"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = get(&app, "acme", 0, &app.keys.tenant("globex"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = get(&app, "acme", 0, &app.keys.sre()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    app.stop().await;
}
on_both_backends!(versioned_instructions_and_validation, versions_and_validation);

async fn decisions(b: Backend) {
    use DenyReason::*;
    let app = spawn_app(b).await;
    // Nothing written yet: default deny.
    assert_eq!(
        check(&app, chk("acme", "recording", "service_delivery", "DE")).await,
        (false, vec![NoInstructions], 0)
    );
    put(&app, "acme", 0, standard()).await;
    // Visible to the very next check on this replica.
    assert_eq!(
        check(&app, chk("acme", "recording", "service_delivery", "DE")).await,
        (true, vec![], 1)
    );
    let cases = [
        (chk("acme", "agent", "support", "DE"), vec![CategoryNotCovered]),
        (
            chk("acme", "recording", "billing", "DE"),
            vec![PurposeNotPermitted],
        ),
        (
            chk("acme", "recording", "service_delivery", "US"),
            vec![RegionNotPermitted],
        ),
        (
            chk("acme", "recording", "billing", "US"),
            vec![PurposeNotPermitted, RegionNotPermitted],
        ),
        (
            chk("acme", "screen_capture", "support", "BR"),
            vec![CategoryRestricted],
        ),
        (chk("acme", "transcript", "analytics_anonymized", ""), vec![]),
        (
            chk("acme", "contact", "analytics_anonymized", ""),
            vec![PurposeNotPermitted],
        ),
        (chk("globex", "contact", "billing", ""), vec![NoInstructions]),
    ];
    for (c, want) in cases.clone() {
        let (allow, reasons, _) = check(&app, c.clone()).await;
        assert_eq!((allow, &reasons), (want.is_empty(), &want), "{c:?}");
    }
    // A batch answers in order.
    let batch = client(&app)
        .batch_check_processing(authed(
            BatchCheckProcessingRequest {
                checks: cases.iter().map(|(c, _)| c.clone()).collect(),
                ..Default::default()
            },
            &app.keys.platform("recorder"),
        ))
        .await
        .unwrap()
        .into_inner();
    for ((_, want), d) in cases.iter().zip(&batch.decisions) {
        let got: Vec<DenyReason> = d
            .reasons
            .iter()
            .map(|r| DenyReason::try_from(*r).unwrap())
            .collect();
        assert_eq!(&got, want);
    }
    // Unknown keys and bad regions are INVALID_ARGUMENT, by field.
    let e = client(&app)
        .batch_check_processing(authed(
            BatchCheckProcessingRequest {
                checks: vec![
                    chk("acme", "contact", "billing", ""),
                    chk("acme", "dna", "billing", "usa"),
                ],
                ..Default::default()
            },
            &app.keys.platform("recorder"),
        ))
        .await
        .unwrap_err();
    let fields = crate::support::violated_fields(&e);
    assert_eq!(fields, ["checks[1].category", "checks[1].region"]);
    // Only platform services ask.
    let e = client(&app)
        .check_processing(authed(
            chk("acme", "contact", "billing", ""),
            &app.keys.tenant("acme"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    app.stop().await;
}
on_both_backends!(decisions_list_every_reason, decisions);

async fn racing_writers(b: Backend) {
    let app = spawn_app(b).await;
    let mut handles = Vec::new();
    for i in 0..8 {
        let mut c = client(&app);
        let token = app.keys.tenant("acme");
        handles.push(tokio::spawn(async move {
            c.put_instructions(authed(
                PutInstructionsRequest {
                    tenant_id: "acme".into(),
                    expected_version: 0,
                    instructions: Some(standard()),
                    reason: format!("writer {i}"),
                },
                &token,
            ))
            .await
        }));
    }
    let mut won = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(v) => {
                won += 1;
                assert_eq!(v.into_inner().version, 1);
            }
            Err(e) => assert!(
                matches!(e.code(), Code::FailedPrecondition | Code::Aborted),
                "loser got {e:?}"
            ),
        }
    }
    assert_eq!(won, 1, "exactly one writer wins");
    app.stop().await;
}
on_both_backends!(racing_writers_one_wins, racing_writers);

async fn retention_and_termination(b: Backend) {
    let app = spawn_app(b).await;
    put(&app, "acme", 0, standard()).await;
    let mut c = client(&app);
    let as_of = prost_types::Timestamp {
        seconds: crate::support::t0().timestamp(),
        nanos: 0,
    };
    let r = c
        .get_retention_cutoffs(authed(
            GetRetentionCutoffsRequest {
                tenant_id: "acme".into(),
                as_of: Some(as_of),
            },
            &app.keys.platform("purger"),
        ))
        .await
        .unwrap()
        .into_inner();
    let by: std::collections::HashMap<_, _> = r
        .cutoffs
        .iter()
        .map(|c| (c.category.as_str(), c.cutoff))
        .collect();
    assert_eq!(
        by["recording"].unwrap().seconds,
        (crate::support::t0() - Days::days(90)).timestamp()
    );
    assert_eq!(
        by["transcript"].unwrap().seconds,
        (crate::support::t0() - Days::days(30)).timestamp()
    );
    assert_eq!(by["contact"], None, "kept until contract end");
    // The tenant may ask for its own; not for another's.
    c.get_retention_cutoffs(authed(
        GetRetentionCutoffsRequest {
            tenant_id: "acme".into(),
            as_of: None,
        },
        &app.keys.tenant("acme"),
    ))
    .await
    .unwrap();
    let e = c
        .get_retention_cutoffs(authed(
            GetRetentionCutoffsRequest {
                tenant_id: "acme".into(),
                as_of: None,
            },
            &app.keys.tenant("x"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Termination: never retroactive, effective later, erasure due after grace.
    let now = app.clock.now_ts();
    let past = prost_types::Timestamp {
        seconds: now.seconds - 60,
        nanos: 0,
    };
    let e = c
        .terminate_tenant(authed(
            TerminateTenantRequest {
                tenant_id: "acme".into(),
                effective_at: Some(past),
                reason: "contract end".into(),
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .terminate_tenant(authed(
            TerminateTenantRequest {
                tenant_id: "acme".into(),
                effective_at: None,
                reason: "x".into(),
            },
            &app.keys.tenant("acme"),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let later = prost_types::Timestamp {
        seconds: now.seconds + 3600,
        nanos: 0,
    };
    let t = c
        .terminate_tenant(authed(
            TerminateTenantRequest {
                tenant_id: "acme".into(),
                effective_at: Some(later),
                reason: "contract end".into(),
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.erasure_due_at.unwrap().seconds, later.seconds + 30 * 86_400);
    let ok = chk("acme", "recording", "service_delivery", "DE");
    assert!(check(&app, ok.clone()).await.0, "allowed until the contract ends");
    app.clock.advance(Days::hours(1));
    assert_eq!(check(&app, ok).await.1, vec![DenyReason::TenantTerminated]);
    let e = c
        .terminate_tenant(authed(
            TerminateTenantRequest {
                tenant_id: "acme".into(),
                effective_at: None,
                reason: "again".into(),
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = try_put(&app, "acme", 1, standard(), "late", &app.keys.tenant("acme"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    app.stop().await;
}
on_both_backends!(retention_cutoffs_and_contract_end, retention_and_termination);

async fn taxonomy(b: Backend) {
    let app = spawn_app(b).await;
    let mut c = client(&app);
    let add = |token: String| {
        authed(
            AddTaxonomyKeyRequest {
                kind: TaxonomyKind::Category as i32,
                key: "voice_biometrics".into(),
                description: "Voiceprints used for caller authentication".into(),
            },
            &token,
        )
    };
    let e = c
        .add_taxonomy_key(add(app.keys.tenant("acme")))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    c.add_taxonomy_key(add(app.keys.compliance())).await.unwrap();
    let e = c.add_taxonomy_key(add(app.keys.compliance())).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let listed = c
        .list_taxonomy(authed(ListTaxonomyRequest {}, &app.keys.platform("crm")))
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(listed.len(), 14, "13 seeded + 1");
    // The new key is usable at once, in instructions and checks.
    let mut set = standard();
    set.rules
        .push(rule("voice_biometrics", &["service_delivery"], &[]));
    put(&app, "acme", 0, set).await;
    assert!(
        check(&app, chk("acme", "voice_biometrics", "service_delivery", ""))
            .await
            .0
    );
    let e = c
        .add_taxonomy_key(authed(
            AddTaxonomyKeyRequest {
                kind: 0,
                key: "Bad Key".into(),
                description: String::new(),
            },
            &app.keys.compliance(),
        ))
        .await
        .unwrap_err();
    let fields = crate::support::violated_fields(&e);
    assert_eq!(fields, ["kind", "key", "description"]);
    app.stop().await;
}
on_both_backends!(taxonomy_is_extensible_by_compliance, taxonomy);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_on_one_replica_reaches_the_other_within_a_second() {
    if !crate::support::postgres_available() {
        return;
    }
    let a = spawn_app(Backend::Postgres).await;
    let keys = crate::support::TestKeys::new();
    let db = crate::support::TestDb::shared_with(&a.db);
    let cfg = test_config(&db, &keys);
    let b = spawn_with(db, keys, cfg).await;
    let probe = chk("acme", "recording", "service_delivery", "DE");
    assert!(!check(&b, probe.clone()).await.0);
    put(&a, "acme", 0, standard()).await;
    let started = Instant::now();
    loop {
        if check(&b, probe.clone()).await.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "replica b still denies after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And a termination on b reaches a.
    client(&b)
        .terminate_tenant(authed(
            TerminateTenantRequest {
                tenant_id: "acme".into(),
                effective_at: None,
                reason: "end".into(),
            },
            &b.keys.compliance(),
        ))
        .await
        .unwrap();
    let started = Instant::now();
    while check(&a, probe.clone()).await.0 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "replica a still allows after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.stop().await;
    a.stop().await;
}
