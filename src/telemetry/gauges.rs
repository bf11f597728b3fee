//! The gauges SRE watches besides the RPC metrics: database pool use, read
//! from the pool itself at each export, and the backlog and deadline counts
//! (inbox, subject requests, breaches, screening cases), read from the
//! database by a background sampler once per export interval, never per
//! RPC. When a sample fails (the database is down) the service carries on,
//! `proctor.gauges.sample_failures` counts the failure, and the gauges keep
//! their last reading while `proctor.gauges.sample.age` shows how old it is
//! (the SDK repeats an observable gauge's last value under cumulative
//! temporality, so withholding it would not reach the backend). No gauge
//! has a tenant or personal label.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter, ObservableGauge};

use crate::db::Store;
use crate::db::gauges::Sample;

/// Registers the pool gauges on `meter`. They cost nothing between exports.
pub fn register_pool(meter: &Meter, store: &Store) -> Vec<ObservableGauge<u64>> {
    let pool = |attrs: &[KeyValue]| {
        let mut a = vec![
            KeyValue::new("db.client.connection.pool.name", "proctor"),
            KeyValue::new("db.system.name", store.backend()),
        ];
        a.extend_from_slice(attrs);
        a
    };
    let used = pool(&[KeyValue::new("db.client.connection.state", "used")]);
    let idle = pool(&[KeyValue::new("db.client.connection.state", "idle")]);
    let base = pool(&[]);
    let (s1, s2) = (store.clone(), store.clone());
    vec![
        meter
            .u64_observable_gauge("db.client.connection.count")
            .with_unit("{connection}")
            .with_description("Database connections of this replica's pool, by state (used, idle)")
            .with_callback(move |o| {
                let s = s1.pool_status();
                o.observe(u64::from(s.in_use), &used);
                o.observe(u64::from(s.idle), &idle);
            })
            .build(),
        meter
            .u64_observable_gauge("db.client.connection.max")
            .with_unit("{connection}")
            .with_description("Most connections this replica's pool opens (--db-pool-size)")
            .with_callback(move |o| o.observe(u64::from(s2.pool_status().max), &base))
            .build(),
    ]
}

/// Registers the group-commit counters on `meter`: on SQLite the groups its
/// writer committed and the commands in them, on PostgreSQL the batched
/// statements ([`crate::db::batch`]) and the commands they carried. Their
/// ratio shows whether writes are shared under load or committed one
/// command at a time.
pub fn register_write_groups(
    meter: &Meter,
    store: &Store,
) -> Vec<opentelemetry::metrics::ObservableCounter<u64>> {
    let (groups, commands, group_text, command_text): (&str, &str, &str, &str) = if store
        .write_groups()
        .is_some()
    {
        (
            "proctor.db.write_groups",
            "proctor.db.grouped_commands",
            "Groups SQLite's writer committed (one COMMIT, one fsync each)",
            "Commands run inside those groups, each in its savepoint, failed ones included",
        )
    } else if store.batched_writes().is_some() {
        (
            "proctor.db.batched_statements",
            "proctor.db.batched_commands",
            "Statements on PostgreSQL that carried commands waiting for a write turn together (one commit each)",
            "Commands carried by those statements, alone or several",
        )
    } else {
        return Vec::new();
    };
    let read = |s: &Store| s.write_groups().or_else(|| s.batched_writes());
    let (s1, s2) = (store.clone(), store.clone());
    vec![
        meter
            .u64_observable_counter(groups)
            .with_unit("{group}")
            .with_description(group_text)
            .with_callback(move |o| {
                if let Some(g) = read(&s1) {
                    o.observe(g.groups, &[]);
                }
            })
            .build(),
        meter
            .u64_observable_counter(commands)
            .with_unit("{command}")
            .with_description(command_text)
            .with_callback(move |o| {
                if let Some(g) = read(&s2) {
                    o.observe(g.commands, &[]);
                }
            })
            .build(),
    ]
}

/// One sampled gauge: its name, unit, meaning, fixed attributes and how to
/// read it from a [`Sample`].
struct Sampled {
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    attrs: &'static [(&'static str, &'static str)],
    read: fn(&Sample) -> f64,
}

const SAMPLED: &[Sampled] = &[
    Sampled {
        name: "proctor.inbox.unacked",
        unit: "{envelope}",
        description: "Envelopes not yet acknowledged, by kind of recipient (tenant, system)",
        attrs: &[("proctor.inbox.recipient_kind", "tenant")],
        read: |s| s.inbox_unacked_tenant as f64,
    },
    Sampled {
        name: "proctor.inbox.unacked",
        unit: "{envelope}",
        description: "Envelopes not yet acknowledged, by kind of recipient (tenant, system)",
        attrs: &[("proctor.inbox.recipient_kind", "system")],
        read: |s| s.inbox_unacked_system as f64,
    },
    Sampled {
        name: "proctor.inbox.oldest_unacked.age",
        unit: "s",
        description: "Age of the oldest envelope not yet acknowledged (0 when none)",
        attrs: &[],
        read: |s| s.inbox_oldest_unacked_seconds,
    },
    Sampled {
        name: "proctor.subject_requests.open",
        unit: "{request}",
        description: "Data-subject requests received and not yet completed, rejected or cancelled",
        attrs: &[],
        read: |s| s.subject_requests_open as f64,
    },
    Sampled {
        name: "proctor.subject_requests.overdue",
        unit: "{request}",
        description: "Open data-subject requests past their legal deadline",
        attrs: &[],
        read: |s| s.subject_requests_overdue as f64,
    },
    Sampled {
        name: "proctor.subject_tasks.unfinished",
        unit: "{task}",
        description: "Subject-request tasks platform systems have not completed",
        attrs: &[],
        read: |s| s.subject_tasks_unfinished as f64,
    },
    Sampled {
        name: "proctor.subject_tasks.needing_attention",
        unit: "{task}",
        description: "Subject-request tasks that failed every attempt and are no longer offered",
        attrs: &[],
        read: |s| s.subject_tasks_needing_attention as f64,
    },
    Sampled {
        name: "proctor.breaches.past_deadline",
        unit: "{breach}",
        description: "Open breaches past the 72-hour authority deadline",
        attrs: &[],
        read: |s| s.breaches_past_deadline as f64,
    },
    Sampled {
        name: "proctor.breaches.near_deadline",
        unit: "{breach}",
        description: "Open breaches within 12 hours of the authority deadline, not yet past it",
        attrs: &[],
        read: |s| s.breaches_near_deadline as f64,
    },
    Sampled {
        name: "proctor.screening.cases.open",
        unit: "{case}",
        description: "Screening cases awaiting a decision (open or answered)",
        attrs: &[],
        read: |s| s.screening_cases_open as f64,
    },
    Sampled {
        name: "proctor.audit.sequencing_delay",
        unit: "s",
        description: "Age of the oldest audit event not yet sequenced into the Merkle tree (0 when none)",
        attrs: &[],
        read: |s| s.audit_unsequenced_oldest_seconds,
    },
];

/// The latest successful sample and when it was taken, shared between the
/// sampler and the export callbacks.
type Latest = Arc<ArcSwapOption<(Sample, Instant)>>;

fn register_sampled(meter: &Meter, latest: &Latest) -> Vec<ObservableGauge<f64>> {
    let mut names: Vec<&str> = SAMPLED.iter().map(|g| g.name).collect();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let series: Vec<(&Sampled, Vec<KeyValue>)> = SAMPLED
                .iter()
                .filter(|g| g.name == name)
                .map(|g| (g, g.attrs.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect()))
                .collect();
            let (unit, description) = (series[0].0.unit, series[0].0.description);
            let latest = latest.clone();
            meter
                .f64_observable_gauge(name)
                .with_unit(unit)
                .with_description(description)
                .with_callback(move |o| {
                    if let Some((s, _)) = latest.load().as_deref() {
                        for (g, attrs) in &series {
                            o.observe((g.read)(s), attrs);
                        }
                    }
                })
                .build()
        })
        .chain(std::iter::once({
            let latest = latest.clone();
            meter
                .f64_observable_gauge("proctor.gauges.sample.age")
                .with_unit("s")
                .with_description(
                    "Age of the reading the proctor.* gauges report; grows while the database cannot be read",
                )
                .with_callback(move |o| {
                    if let Some((_, taken)) = latest.load().as_deref() {
                        o.observe(taken.elapsed().as_secs_f64(), &[]);
                    }
                })
                .build()
        }))
        .collect()
}

/// Registers the sampled gauges on `meter` and samples the database every
/// `interval` until `stop` is cancelled.
pub fn spawn_sampler(
    meter: &Meter,
    store: Store,
    interval: Duration,
    stop: crate::periodic::CancellationToken,
) {
    let latest: Latest = Arc::default();
    let gauges = register_sampled(meter, &latest);
    let failures: Counter<u64> = meter
        .u64_counter("proctor.gauges.sample_failures")
        .with_description("Samples of the backlog gauges that could not read the database")
        .build();
    tokio::spawn(async move {
        // The instruments stay registered while the sampler runs.
        let _gauges = gauges;
        let failing = std::sync::atomic::AtomicBool::new(false);
        // The export interval is real time, in tests too.
        let wall = crate::periodic::wall();
        crate::periodic::every("metrics_sample", interval, &wall, &stop, || async {
            let read = store
                .read("metrics.sample", |c, clock| {
                    crate::db::gauges::sample(c, clock.now())
                })
                .await;
            // Logged when the state changes, not every round.
            match read {
                Ok(s) => {
                    if failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("metric gauges read the database again");
                    }
                    latest.store(Some(Arc::new((s, Instant::now()))));
                }
                Err(e) => {
                    if !failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, "metric gauges cannot read the database; they keep their last reading");
                    }
                    failures.add(1, &[]);
                }
            }
            Ok(0)
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sampled_field_is_exported_once_and_names_stay_together() {
        let s = Sample {
            inbox_unacked_tenant: 1,
            inbox_unacked_system: 2,
            inbox_oldest_unacked_seconds: 3.0,
            subject_requests_open: 4,
            subject_requests_overdue: 5,
            subject_tasks_unfinished: 6,
            breaches_past_deadline: 7,
            breaches_near_deadline: 8,
            screening_cases_open: 9,
            audit_unsequenced_oldest_seconds: 10.0,
            subject_tasks_needing_attention: 11,
        };
        let mut read: Vec<f64> = SAMPLED.iter().map(|g| (g.read)(&s)).collect();
        read.sort_by(f64::total_cmp);
        assert_eq!(read, (1..=11).map(f64::from).collect::<Vec<_>>());
        // Series of one gauge are adjacent, so each name is built once.
        let mut names: Vec<&str> = SAMPLED.iter().map(|g| g.name).collect();
        names.dedup();
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(names.len(), unique.len());
    }
}
