//! Criterion benchmark of the decision function, the hot path's pure core,
//! against a baseline measured in the same run: the bare hash lookup of the
//! category the decision has to do anyway.
//!
//! The sub-processor cases walk a chain of three; the transfer case also
//! checks every link's processing locations against the rule's regions and
//! the root's transfer mechanism against the tenant's permitted ones.
//!
//! `cargo bench --bench decide`

use std::collections::HashMap;
use std::hint::black_box;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use proctor::instructions::model::decide::{Check, TenantPolicy, decide};
use proctor::instructions::model::{CategoryRule, InstructionSet};
use proctor::subprocessors::model::{
    AuthorizationMode, ChangeKind, Notice, Registry, Scope, Screening, SubProcessor, TenantAnswers,
    TransferMechanism,
};

fn policy() -> TenantPolicy {
    policy_with(&["DE", "FR", "NL", "IE"], &[])
}

/// Rules over `regions`, the tenant permitting `mechanisms` outside the EEA.
fn policy_with(regions: &[&str], mechanisms: &[TransferMechanism]) -> TenantPolicy {
    let cats = [
        "contact",
        "agent",
        "interaction_metadata",
        "recording",
        "transcript",
        "attachment",
        "screen_capture",
    ];
    let rules = cats
        .iter()
        .map(|c| CategoryRule {
            category: (*c).into(),
            retention_days: 90,
            purposes: vec![
                "service_delivery".into(),
                "support".into(),
                "quality_assurance".into(),
            ],
            regions: regions.iter().map(|r| (*r).into()).collect(),
            restricted: false,
            allow_anonymized_analytics: true,
        })
        .collect();
    TenantPolicy::compile(
        7,
        Some(&InstructionSet {
            rules,
            termination_grace_days: 30,
            permitted_transfer_mechanisms: mechanisms.to_vec(),
        }),
        None,
        0,
    )
}

/// A registry of 50 sub-processors, the last three a chain (root > mid >
/// leaf), each with an ADD and a SCOPE_CHANGE in effect: the check walks
/// three links and two steps each.
fn with_sub_processors(p: TenantPolicy) -> TenantPolicy {
    with_chain_root_in(p, &["DE"], TransferMechanism::Eea)
}

/// As [`with_sub_processors`], the chain's root processing in `locations`
/// on `mechanism`.
fn with_chain_root_in(p: TenantPolicy, locations: &[&str], mechanism: TransferMechanism) -> TenantPolicy {
    let t0 = Utc::now() - chrono::Duration::days(400);
    let scope = Scope {
        categories: vec!["recording".into(), "transcript".into(), "contact".into()],
        purposes: vec!["transcription".into(), "quality_assurance".into()],
    };
    let mut reg = Registry::default();
    for i in 0..50 {
        let id = format!("sp-{i}");
        reg.sub_processors.push(SubProcessor {
            id: id.clone(),
            legal_name: format!("Vendor {i}"),
            country: "DE".into(),
            processing_locations: if i == 47 {
                locations.iter().map(|l| (*l).into()).collect()
            } else {
                vec!["DE".into()]
            },
            services: "x".into(),
            scope: scope.clone(),
            transfer_mechanism: if i == 47 {
                mechanism
            } else {
                TransferMechanism::Eea
            },
            parent_id: (i >= 48).then(|| format!("sp-{}", i - 1)),
            dpa_signed_at: None,
            nda_signed_at: None,
            created_at: t0,
            screening: Screening::Clear,
            screened_at: Some(t0),
        });
        for (k, kind) in [ChangeKind::Add, ChangeKind::ScopeChange].into_iter().enumerate() {
            let at = t0 + chrono::Duration::days(40 * (k as i64 + 1));
            reg.notices.push(Notice {
                id: format!("{id}-{k}"),
                seq: (i * 2 + k) as i64,
                sub_processor_id: id.clone(),
                kind,
                scope: scope.clone(),
                effective_at: at,
                objection_deadline: at - chrono::Duration::days(10),
                created_at: t0,
            });
        }
    }
    let answers = TenantAnswers {
        modes: vec![(t0, AuthorizationMode::General)],
        answers: Default::default(),
    };
    p.with_sub_processors(reg.grants(&answers))
}

fn bench(c: &mut Criterion) {
    let p = policy();
    let sp = with_sub_processors(policy());
    // The chain's root also processes in Switzerland on SCCs, which the
    // tenant's rules and mechanisms permit: every link's locations and the
    // root's mechanism are checked, and the answer is still ALLOW.
    let transfer = with_chain_root_in(
        policy_with(
            &["DE", "FR", "NL", "IE", "CH"],
            &[TransferMechanism::Scc, TransferMechanism::Bcr],
        ),
        &["DE", "CH"],
        TransferMechanism::Scc,
    );
    let via_chain = Check {
        category: "transcript",
        purpose: "quality_assurance",
        region: "IE",
        sub_processor_id: "sp-49",
        subject_ref: "",
    };
    let now = Utc::now();
    let allow = Check {
        category: "transcript",
        purpose: "quality_assurance",
        region: "IE",
        sub_processor_id: "",
        subject_ref: "",
    };
    let deny = Check {
        category: "recording",
        purpose: "billing",
        region: "US",
        sub_processor_id: "",
        subject_ref: "",
    };
    let baseline: HashMap<Box<str>, u64> = ["contact", "agent", "recording", "transcript"]
        .iter()
        .enumerate()
        .map(|(i, c)| ((*c).into(), i as u64))
        .collect();
    assert!(
        decide(Some(&sp), &via_chain, now).allowed(),
        "the chain case must measure an ALLOW"
    );
    assert!(
        decide(Some(&transfer), &via_chain, now).allowed(),
        "the transfer case must measure an ALLOW"
    );
    let mut g = c.benchmark_group("decision");
    g.bench_function("baseline_category_lookup", |b| {
        b.iter(|| black_box(baseline.get(black_box("transcript"))))
    });
    g.bench_function("decide_allow", |b| {
        b.iter(|| decide(Some(black_box(&p)), black_box(&allow), now))
    });
    g.bench_function("decide_deny_two_reasons", |b| {
        b.iter(|| decide(Some(black_box(&p)), black_box(&deny), now))
    });
    g.bench_function("decide_allow_sub_processor_chain_of_3", |b| {
        b.iter(|| decide(Some(black_box(&sp)), black_box(&via_chain), now))
    });
    g.bench_function("decide_allow_chain_of_3_with_transfer", |b| {
        b.iter(|| decide(Some(black_box(&transfer)), black_box(&via_chain), now))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
