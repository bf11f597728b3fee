//! The decision log (OPA's decision logs are the model): every DENY and a
//! sample of ALLOWs (`--decision-log-allow-sample`), recorded off the
//! request path. A check only offers its record to a bounded queue; a full
//! queue drops the record and counts it (`proctor.decision_log.dropped`),
//! so logging never delays a check. One background writer per replica
//! stores what queued in batches, the subject ref sealed; a job sweeps
//! records older than `--decision-log-retention-days`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::db::Store;
use crate::instructions::model::decide::Reasons;
use crate::periodic::CancellationToken;
use crate::secrets::SubjectSecrets;

/// Records the queue holds before it drops.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Most records the writer stores in one transaction.
pub const BATCH: usize = 500;

/// One decision as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedDecision {
    /// The id the caller got in `Decision.decision_id`.
    pub decision_id: String,
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// The check's tenant.
    pub tenant_id: String,
    /// The check's category.
    pub category: String,
    /// The check's purpose.
    pub purpose: String,
    /// The check's region (may be empty).
    pub region: String,
    /// The sub-processor named (may be empty).
    pub sub_processor_id: String,
    /// The subject ref named (may be empty; sealed at rest).
    pub subject_ref: String,
    /// Empty = ALLOW.
    pub reasons: Reasons,
    /// The instruction version decided on.
    pub instruction_version: u64,
    /// The calling platform system.
    pub caller: String,
    /// The check's trace.
    pub trace_id: String,
}

/// The queue checks offer their records to, and the ids they cite.
#[derive(Debug)]
pub struct DecisionLog {
    tx: mpsc::Sender<LoggedDecision>,
    /// Share of ALLOWs recorded, 0.0-1.0.
    allow_sample: f64,
    /// Random per process, so ids of different replicas never collide.
    id_prefix: String,
    next: AtomicU64,
    dropped: AtomicU64,
    dropped_metric: opentelemetry::metrics::Counter<u64>,
}

impl DecisionLog {
    /// A log sampling `allow_sample` of ALLOWs, queueing up to `capacity`
    /// records; the receiver goes to [`run_writer`].
    pub fn new(allow_sample: f64, capacity: usize) -> (Arc<Self>, mpsc::Receiver<LoggedDecision>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let dropped_metric = opentelemetry::global::meter("proctor")
            .u64_counter("proctor.decision_log.dropped")
            .with_description("Decision-log records dropped because the queue was full")
            .build();
        let log = Self {
            tx,
            allow_sample: allow_sample.clamp(0.0, 1.0),
            id_prefix: hex::encode(rand::random::<[u8; 8]>()),
            next: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
            dropped_metric,
        };
        (Arc::new(log), rx)
    }

    /// A new decision id, unique across replicas and restarts (a random
    /// prefix per process and a counter), without a system call.
    pub fn next_id(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("dec_{}{n:012x}", self.id_prefix)
    }

    /// Whether a decision is recorded: every DENY, ALLOWs by the sample.
    pub fn wants(&self, allowed: bool) -> bool {
        !allowed
            || (self.allow_sample > 0.0
                && (self.allow_sample >= 1.0 || rand::random::<f64>() < self.allow_sample))
    }

    /// Offers a record without waiting: a full queue drops it and counts.
    pub fn offer(&self, rec: LoggedDecision) {
        if self.tx.try_send(rec).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_metric.add(1, &[]);
        }
    }

    /// Records dropped so far on this replica.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Stores what the checks queued, in batches of up to [`BATCH`], until
/// `stop` (then what is still queued). A batch that fails to store is
/// logged (ids and counts only) and dropped: the log never holds checks up.
pub async fn run_writer(
    store: Store,
    secrets: Arc<SubjectSecrets>,
    mut rx: mpsc::Receiver<LoggedDecision>,
    stop: CancellationToken,
) {
    let mut buf = Vec::with_capacity(BATCH);
    loop {
        let n = tokio::select! {
            n = rx.recv_many(&mut buf, BATCH) => n,
            () = stop.cancelled() => {
                while buf.len() < BATCH && let Ok(r) = rx.try_recv() {
                    buf.push(r);
                }
                write(&store, &secrets, std::mem::take(&mut buf)).await;
                return;
            }
        };
        if n == 0 {
            return;
        }
        write(&store, &secrets, std::mem::take(&mut buf)).await;
    }
}

async fn write(store: &Store, secrets: &Arc<SubjectSecrets>, batch: Vec<LoggedDecision>) {
    if batch.is_empty() {
        return;
    }
    let n = batch.len();
    let secrets = secrets.clone();
    let res = store
        .write("decision_log.write", move |c, _| {
            crate::instructions::repo::insert_decisions(c, &secrets.ring, &batch)
        })
        .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, records = n, "decision log batch not stored");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (log, _rx) = DecisionLog::new(0.0, 2);
        let rec = LoggedDecision {
            decision_id: log.next_id(),
            at: Utc::now(),
            tenant_id: "t".into(),
            category: "c".into(),
            purpose: "p".into(),
            region: String::new(),
            sub_processor_id: String::new(),
            subject_ref: String::new(),
            reasons: Reasons::default(),
            instruction_version: 1,
            caller: "s".into(),
            trace_id: String::new(),
        };
        for _ in 0..5 {
            log.offer(rec.clone());
        }
        assert_eq!(log.dropped(), 3);
    }

    #[test]
    fn ids_are_unique_and_sampling_keeps_every_deny() {
        let (log, _rx) = DecisionLog::new(0.0, 1);
        let (other, _rx2) = DecisionLog::new(1.0, 1);
        let a = log.next_id();
        assert_ne!(a, log.next_id());
        assert_ne!(a, other.next_id());
        assert!(log.wants(false) && !log.wants(true));
        assert!(other.wants(true));
    }
}
