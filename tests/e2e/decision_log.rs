//! The decision log end to end: every DENY and the sampled ALLOWs are
//! recorded off the request path and listed with `ListDecisions` (the
//! tenant its own, compliance any), `Decision.decision_id` cites them,
//! `Decision.retain_until` follows the category's retention, the subject
//! ref is sealed at rest, and the sweep enforces the retention.

use std::time::Duration;

use chrono::Duration as Days;
use proctor::clock::Clock;
use proctor::proto::v1 as pb;
use tonic::Code;

use crate::on_both_backends;
use crate::support::{Backend, TestApp, TestDb, TestKeys, authed, spawn_with, test_config};

async fn app_sampling(b: Backend, sample: f64) -> TestApp {
    let db = TestDb::new(b);
    let keys = TestKeys::new();
    let mut cfg = test_config(&db, &keys);
    cfg.decision_log_allow_sample = sample;
    spawn_with(db, keys, cfg).await
}

fn rule(cat: &str, days: u32) -> pb::CategoryRule {
    pb::CategoryRule {
        category: cat.into(),
        retention_days: days,
        purposes: vec!["support".into()],
        ..Default::default()
    }
}

async fn setup(app: &TestApp) {
    let set = pb::InstructionSet {
        rules: vec![rule("contact", 30), rule("recording", 0)],
        termination_grace_days: 30,
        ..Default::default()
    };
    crate::instructions::put(app, "t1", 0, set).await;
}

fn chk(cat: &str, purpose: &str, subject: &str) -> pb::CheckProcessingRequest {
    pb::CheckProcessingRequest {
        tenant_id: "t1".into(),
        category: cat.into(),
        purpose: purpose.into(),
        subject_ref: subject.into(),
        ..Default::default()
    }
}

async fn decide(app: &TestApp, c: pb::CheckProcessingRequest) -> pb::Decision {
    app.instructions()
        .check_processing(authed(c, &app.keys.platform("recorder")))
        .await
        .unwrap()
        .into_inner()
}

async fn list(
    app: &TestApp,
    r: pb::ListDecisionsRequest,
    token: &str,
) -> Result<pb::ListDecisionsResponse, tonic::Status> {
    app.instructions()
        .list_decisions(authed(r, token))
        .await
        .map(|r| r.into_inner())
}

/// Waits until the writer stored `n` records of t1 (it runs off the
/// request path), and returns them.
async fn logged(app: &TestApp, n: usize) -> Vec<pb::DecisionRecord> {
    for _ in 0..200 {
        let got = list(
            app,
            pb::ListDecisionsRequest {
                tenant_id: "t1".into(),
                ..Default::default()
            },
            &app.keys.compliance(),
        )
        .await
        .unwrap()
        .decisions;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the decision log never held {n} records");
}

async fn decision_log(b: Backend) {
    let app = app_sampling(b, 1.0).await;
    setup(&app).await;
    let now = app.clock.now();

    let kept = decide(&app, chk("contact", "support", "ref-ada")).await;
    assert_eq!(kept.verdict, pb::Verdict::Allow as i32);
    assert_eq!(
        kept.retain_until.unwrap().seconds,
        (now + Days::days(30)).timestamp(),
        "now + the category's retention"
    );
    let until_end = decide(&app, chk("recording", "support", "")).await;
    assert_eq!(until_end.verdict, pb::Verdict::Allow as i32);
    assert!(until_end.retain_until.is_none(), "kept until contract end");
    let denied = decide(&app, chk("contact", "billing", "ref-ada")).await;
    assert_eq!(denied.verdict, pb::Verdict::Deny as i32);
    assert!(denied.retain_until.is_none(), "none on DENY");
    let ids = [&kept.decision_id, &until_end.decision_id, &denied.decision_id];
    assert!(ids.iter().all(|i| !i.is_empty()));
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2], "unique");

    let records = logged(&app, 3).await;
    assert_eq!(records.len(), 3);
    let d = records.iter().find(|r| &r.decision_id == ids[2]).unwrap();
    assert_eq!(d.verdict, pb::Verdict::Deny as i32);
    assert_eq!(d.reasons, [pb::DenyReason::PurposeNotPermitted as i32]);
    assert_eq!(
        (d.tenant_id.as_str(), d.category.as_str(), d.purpose.as_str()),
        ("t1", "contact", "billing")
    );
    assert_eq!(d.subject_ref, "ref-ada");
    assert_eq!(d.caller, "recorder");
    assert_eq!(d.instruction_version, 1);
    assert_eq!(d.at.as_ref().unwrap().seconds, now.timestamp());

    // Filters and paging.
    let t1 = app.keys.tenant("t1");
    let deny_only = list(
        &app,
        pb::ListDecisionsRequest {
            verdict: pb::Verdict::Deny as i32,
            ..Default::default()
        },
        &t1,
    )
    .await
    .unwrap();
    assert_eq!(deny_only.decisions.len(), 1);
    let page = list(
        &app,
        pb::ListDecisionsRequest {
            page_size: 2,
            ..Default::default()
        },
        &t1,
    )
    .await
    .unwrap();
    assert_eq!(page.decisions.len(), 2);
    let rest = list(
        &app,
        pb::ListDecisionsRequest {
            page_size: 2,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        },
        &t1,
    )
    .await
    .unwrap();
    assert_eq!(rest.decisions.len(), 1);
    let later = list(
        &app,
        pb::ListDecisionsRequest {
            from: Some(prost_types::Timestamp {
                seconds: (now + Days::seconds(1)).timestamp(),
                nanos: 0,
            }),
            ..Default::default()
        },
        &t1,
    )
    .await
    .unwrap();
    assert!(later.decisions.is_empty());

    // Tenants see their own only; platform systems none.
    let t2 = app.keys.tenant("t2");
    assert!(
        list(&app, Default::default(), &t2)
            .await
            .unwrap()
            .decisions
            .is_empty()
    );
    let e = list(
        &app,
        pb::ListDecisionsRequest {
            tenant_id: "t1".into(),
            ..Default::default()
        },
        &t2,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = list(&app, Default::default(), &app.keys.platform("recorder"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // The subject ref is sealed at rest.
    let sealed = app
        .store
        .read("test.log", |c, _| {
            use diesel::prelude::*;
            use proctor::db::schema::decision_log as dl;
            Ok(dl::table.select(dl::subject_sealed).load::<Option<String>>(c)?)
        })
        .await
        .unwrap();
    assert!(sealed.iter().flatten().all(|s| !s.contains("ref-ada")));
    assert_eq!(sealed.iter().flatten().count(), 2, "two records name a subject");

    // Retention: swept after 400 days.
    app.clock.advance_settled(Days::days(401)).await;
    let left = list(&app, Default::default(), &app.keys.compliance())
        .await
        .unwrap();
    assert!(left.decisions.is_empty(), "swept past the retention");
    app.stop().await;

    // Sampling 0: ALLOWs are not recorded, DENYs always are.
    let app = app_sampling(b, 0.0).await;
    setup(&app).await;
    decide(&app, chk("contact", "support", "")).await;
    let denied = decide(&app, chk("contact", "billing", "")).await;
    let records = logged(&app, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let records2 = logged(&app, 1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records2.len(), 1);
    assert_eq!(records[0].decision_id, denied.decision_id);
    app.stop().await;
}
on_both_backends!(decision_log_records_denies_and_sampled_allows, decision_log);
