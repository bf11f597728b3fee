//! Transfers end to end: sub-processors' processing locations, the regions
//! of a tenant's rules and its permitted transfer mechanisms meet in
//! `CheckProcessing` (DENY_REASON_TRANSFER_NOT_PERMITTED), through the
//! whole chain of a sub-processor.

use chrono::Duration;
use proctor::proto::v1::*;
use proctor::subprocessors::model::Screening;
use tonic::Code;
use tonic_types::StatusExt;

use crate::instructions::{check, get, put, try_put};
use crate::on_both_backends;
use crate::subprocessors::{client, propose, register, registration, screen, sp_check};
use crate::support::{Backend, authed, spawn_app};

fn rule(cat: &str, regions: &[&str]) -> CategoryRule {
    CategoryRule {
        category: cat.into(),
        retention_days: 30,
        purposes: vec!["transcription".into()],
        regions: regions.iter().map(|r| r.to_string()).collect(),
        restricted: false,
        allow_anonymized_analytics: false,
    }
}

fn set(regions: &[&str], mechanisms: &[TransferMechanism]) -> InstructionSet {
    InstructionSet {
        rules: vec![rule("transcript", regions), rule("recording", &[])],
        termination_grace_days: 30,
        permitted_transfer_mechanisms: mechanisms.iter().map(|m| *m as i32).collect(),
    }
}

fn fields(e: &tonic::Status) -> Vec<String> {
    e.get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|f| f.field).collect())
        .unwrap_or_default()
}

async fn transfers(b: Backend) {
    let app = spawn_app(b).await;
    let c = app.keys.compliance();
    put(&app, "acme", 0, set(&["DE", "SE"], &[])).await;

    // Locations are ISO 3166-1 alpha-2, each once; a location outside the
    // EEA needs a mechanism even when the country is inside it.
    let mut bad = registration(
        "Cloudy GmbH",
        "DE",
        TransferMechanism::Eea,
        &["transcript"],
        &["transcription"],
    );
    bad.processing_locations = vec!["DE".into(), "usa".into(), "DE".into(), "US".into()];
    let e = client(&app)
        .register_sub_processor(authed(bad, &c))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&e),
        [
            "processing_locations[1]",
            "processing_locations[2]",
            "transfer_mechanism"
        ]
    );

    // A US-hosted parent (SCC) with an EEA child; without locations a
    // sub-processor processes in its country.
    let mut parent = registration(
        "Cloudy LLC",
        "US",
        TransferMechanism::Scc,
        &["transcript", "recording"],
        &["transcription"],
    );
    parent.processing_locations = vec!["US".into(), "IE".into()];
    let parent = register(&app, parent).await;
    assert_eq!(parent.processing_locations, ["US", "IE"]);
    let mut child = registration(
        "Speech AB",
        "SE",
        TransferMechanism::Eea,
        &["transcript", "recording"],
        &["transcription"],
    );
    child.parent_id = parent.id.clone();
    let child = register(&app, child).await;
    assert_eq!(child.processing_locations, ["SE"]);
    let lone = register(
        &app,
        registration(
            "Nordic Speech AB",
            "SE",
            TransferMechanism::Eea,
            &["transcript"],
            &["transcription"],
        ),
    )
    .await;
    let got = client(&app)
        .get_sub_processor(authed(
            GetSubProcessorRequest {
                id: parent.id.clone(),
            },
            &c,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.processing_locations, ["US", "IE"], "stored and read back");
    for s in [&parent, &child, &lone] {
        screen(&app, &s.id, Screening::Clear).await;
        propose(&app, &s.id, ChangeKind::Add, Duration::days(31), None, None)
            .await
            .unwrap();
    }
    app.clock.advance(Duration::days(31));

    // The rule names DE and SE: the child processes in SE but its parent in
    // the US, so the chain is a transfer the rule does not permit, whatever
    // region the caller names.
    let in_se = |sp: &str| CheckProcessingRequest {
        tenant_id: "acme".into(),
        category: "transcript".into(),
        purpose: "transcription".into(),
        region: "SE".into(),
        sub_processor_id: sp.into(),
        ..Default::default()
    };
    let (ok, reasons, _) = check(&app, in_se(&child.id)).await;
    assert_eq!((ok, reasons), (false, vec![DenyReason::TransferNotPermitted]));
    let (ok, reasons, _) = check(&app, in_se(&lone.id)).await;
    assert_eq!((ok, reasons), (true, vec![]));
    // A rule without regions: any location, and any mechanism while the
    // tenant permits any.
    assert_eq!(
        sp_check(&app, "acme", "recording", "transcription", &child.id).await,
        (true, vec![])
    );

    // Permitted mechanisms: BCR only refuses the SCC-based parent; SCC
    // permits it again. EEA-only chains never transfer.
    put(&app, "acme", 1, set(&[], &[TransferMechanism::Bcr])).await;
    assert_eq!(
        sp_check(&app, "acme", "recording", "transcription", &child.id).await,
        (false, vec![DenyReason::TransferNotPermitted])
    );
    assert_eq!(
        sp_check(&app, "acme", "transcript", "transcription", &lone.id).await,
        (true, vec![])
    );
    let v = put(
        &app,
        "acme",
        2,
        set(&[], &[TransferMechanism::Bcr, TransferMechanism::Scc]),
    )
    .await;
    assert_eq!(
        sp_check(&app, "acme", "recording", "transcription", &child.id).await,
        (true, vec![])
    );
    let read = get(&app, "acme", v.version, &app.keys.tenant("acme"))
        .await
        .unwrap();
    assert_eq!(
        read.instructions.unwrap().permitted_transfer_mechanisms,
        [TransferMechanism::Bcr as i32, TransferMechanism::Scc as i32]
    );

    // An unknown or repeated mechanism is refused, naming its index.
    let mut wrong = set(&[], &[TransferMechanism::Scc, TransferMechanism::Scc]);
    let e = try_put(&app, "acme", 3, wrong.clone(), "r", &app.keys.tenant("acme"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(fields(&e), ["instructions.permitted_transfer_mechanisms[1]"]);
    wrong.permitted_transfer_mechanisms = vec![0, 99];
    let e = try_put(&app, "acme", 3, wrong, "r", &app.keys.tenant("acme"))
        .await
        .unwrap_err();
    assert_eq!(
        fields(&e),
        [
            "instructions.permitted_transfer_mechanisms[0]",
            "instructions.permitted_transfer_mechanisms[1]"
        ]
    );
    app.stop().await;
}
on_both_backends!(transfers_follow_the_chain_and_the_permitted_mechanisms, transfers);
