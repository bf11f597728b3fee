//! Criterion benchmark of the decision function, the hot path's pure core,
//! against a baseline measured in the same run: the bare hash lookup of the
//! category the decision has to do anyway.
//!
//! `cargo bench --bench decide`

use std::collections::HashMap;
use std::hint::black_box;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use proctor::domain::instructions::decide::{Check, TenantPolicy, decide};
use proctor::domain::instructions::{CategoryRule, InstructionSet};

fn policy() -> TenantPolicy {
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
            regions: vec!["DE".into(), "FR".into(), "NL".into(), "IE".into()],
            restricted: false,
            allow_anonymized_analytics: true,
        })
        .collect();
    TenantPolicy::compile(
        7,
        Some(&InstructionSet {
            rules,
            termination_grace_days: 30,
        }),
        None,
        0,
    )
}

fn bench(c: &mut Criterion) {
    let p = policy();
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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
