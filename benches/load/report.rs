//! Fixed-concurrency driving and latency reports: a phase hands out call
//! numbers to `concurrency` workers spread over the channels, each call is
//! timed, and the report sorts the latencies for exact percentiles.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tonic::transport::Channel;

/// One timed call: what kind it was, how long it took, whether it worked.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub kind: usize,
    pub latency: Duration,
    pub ok: bool,
}

/// Runs calls numbered `calls` with `concurrency` workers over `channels`;
/// `op` makes call `i` and says its kind and success. With a `deadline`, no
/// call starts after it: throughput at different concurrencies is only
/// comparable over the same time, and a slow write path would make a fixed
/// number of calls take minutes. Returns every call's timing and the wall
/// time (including the calls still in flight at the deadline).
pub async fn drive<F, Fut>(
    channels: &[Channel],
    calls: Range<usize>,
    deadline: Option<Instant>,
    concurrency: usize,
    op: F,
) -> (Vec<Timed>, Duration)
where
    F: Fn(Channel, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (usize, bool)> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(calls.start));
    let end = calls.end;
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency.max(1) {
        let ch = channels[w % channels.len()].clone();
        let (op, next) = (op.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end || deadline.is_some_and(|d| Instant::now() >= d) {
                    return out;
                }
                let t = Instant::now();
                let (kind, ok) = op(ch.clone(), i).await;
                out.push(Timed {
                    kind,
                    latency: t.elapsed(),
                    ok,
                });
            }
        }));
    }
    let mut all = Vec::with_capacity(if deadline.is_some() { 0 } else { calls.len() });
    for w in workers {
        all.extend(w.await.unwrap());
    }
    (all, started.elapsed())
}

/// Latency percentiles and throughput of one kind of call.
pub struct Report {
    pub name: String,
    pub calls: usize,
    pub errors: usize,
    pub elapsed: Duration,
    lat: Vec<Duration>,
}

impl Report {
    /// The calls of `kind` (all calls for `None`) among `timed`, over
    /// `elapsed` wall time.
    pub fn of(name: &str, kind: Option<usize>, timed: &[Timed], elapsed: Duration) -> Self {
        let mine: Vec<&Timed> = timed
            .iter()
            .filter(|t| kind.is_none_or(|k| t.kind == k))
            .collect();
        let mut lat: Vec<Duration> = mine.iter().map(|t| t.latency).collect();
        lat.sort();
        Self {
            name: name.into(),
            calls: mine.len(),
            errors: mine.iter().filter(|t| !t.ok).count(),
            elapsed,
            lat,
        }
    }

    /// The `p` quantile (0..=1) of the latencies.
    pub fn pct(&self, p: f64) -> Duration {
        if self.lat.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
        self.lat[i]
    }

    /// Calls per second over the phase's wall time.
    pub fn rps(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `total` calls of one kind that must succeed (`op` panics otherwise).
pub async fn phase<F, Fut>(name: &str, channels: &[Channel], total: usize, conc: usize, op: F) -> Report
where
    F: Fn(Channel, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let (timed, elapsed) = drive(channels, 0..total, None, conc, move |ch, i| {
        let op = op.clone();
        async move {
            op(ch, i).await;
            (0, true)
        }
    })
    .await;
    Report::of(name, None, &timed, elapsed)
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// Prints `reports` as a Markdown table, throughput as a ratio to `base`.
pub fn print_table(reports: &[&Report], base: &Report) {
    println!("| phase | calls | errors | calls/s | p50 ms | p99 ms | p999 ms | throughput vs baseline |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in reports {
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {:.2} |",
            r.name,
            r.calls,
            r.errors,
            r.rps(),
            ms(r.pct(0.50)),
            ms(r.pct(0.99)),
            ms(r.pct(0.999)),
            r.rps() / base.rps()
        );
    }
}
