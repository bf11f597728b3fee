//! Commands of one kind gathered into one statement on PostgreSQL.
//!
//! On full cores a command of one statement costs PostgreSQL more around
//! the statement than in it: the backend's wake-up, the protocol, the
//! executor's start for a statement of many parts, and the commit. While
//! commands wait for a write turn (`--db-write-concurrency`), those of the
//! same kind that queued behind one another can share all of that: the
//! command that gets a turn takes every command of its kind waiting at that
//! moment (at most [`MAX_BATCH`]) and runs them as one statement, which
//! commits them together. Nobody waits for a batch to fill: a command alone
//! runs alone, at once, as before, so batching adds no latency at low load
//! and gathers more the longer the queue is.
//!
//! Each command stays its own: the capability's `run` answers each one, and
//! when the shared statement fails it runs them one by one, so one command's
//! error never becomes its neighbours'. A command answers only once the
//! statement that carries it has committed, and a caller waits for
//! whichever comes first, that answer or a turn of its own. A caller that
//! gives up before its command was taken takes it out of the queue, so a
//! command nobody waits for is not written later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

use super::{DbConnection, Store, notify};
use crate::error::{Error, Result};

/// Commands one statement carries at most: bounds the statement's size and
/// how long the commands it carries hold their neighbours' locks.
pub const MAX_BATCH: usize = 32;

/// What runs a batch: one answer per command, in their order, each the
/// command's own result. Runs on a blocking thread, on a connection in
/// autocommit (each statement commits as it completes).
pub type RunBatch<I, O> = fn(&mut diesel::PgConnection, Vec<I>) -> Vec<Result<O>>;

/// The commands of one kind waiting for a write turn.
pub struct Batch<I, O> {
    waiting: Mutex<Vec<Waiting<I, O>>>,
    next_id: AtomicU64,
}

impl<I, O> Default for Batch<I, O> {
    fn default() -> Self {
        Self {
            waiting: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        }
    }
}

impl<I, O> std::fmt::Debug for Batch<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("waiting", &self.lock().len())
            .finish()
    }
}

/// Batches run on a replica and the commands they carried, whatever their
/// kind: their ratio is the mean batch size (the `proctor.db.batched_*`
/// counters).
#[derive(Debug, Default)]
pub struct BatchCounts {
    statements: AtomicU64,
    commands: AtomicU64,
}

impl BatchCounts {
    /// Batches run and the commands in them.
    pub fn read(&self) -> super::WriteGroups {
        super::WriteGroups {
            groups: self.statements.load(Ordering::Relaxed),
            commands: self.commands.load(Ordering::Relaxed),
        }
    }
}

struct Waiting<I, O> {
    id: u64,
    item: I,
    /// The command's own span, so its trace shows the statement it rode in.
    span: tracing::Span,
    answer: oneshot::Sender<Result<O>>,
}

impl<I, O> Batch<I, O> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiting<I, O>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes up to [`MAX_BATCH`] waiting commands, the oldest first.
    fn take(&self) -> Vec<Waiting<I, O>> {
        let mut waiting = self.lock();
        let n = waiting.len().min(MAX_BATCH);
        waiting.drain(..n).collect()
    }
}

/// Takes a command that was never taken out of its queue when its caller
/// stops waiting for it.
struct Unqueue<'a, I, O> {
    batch: &'a Batch<I, O>,
    id: u64,
}

impl<I, O> Drop for Unqueue<'_, I, O> {
    fn drop(&mut self) {
        self.batch.lock().retain(|w| w.id != self.id);
    }
}

impl Store {
    /// Runs `item`, a command of `op`, in `batch`'s next statement on
    /// PostgreSQL: with the commands of its kind waiting beside it when a
    /// write turn comes (see the module). `run` answers each; its answer
    /// to `item` is returned once committed. On SQLite, whose writer
    /// commits in groups of its own, there is no batch: the caller's other
    /// path must be taken (returns None without running anything).
    pub async fn batched<I, O>(
        &self,
        op: &'static str,
        batch: &Batch<I, O>,
        item: I,
        run: RunBatch<I, O>,
    ) -> Result<Option<O>>
    where
        I: Send + 'static,
        O: Send + 'static,
    {
        if self.writer.is_some() {
            return Ok(None);
        }
        let (answer, mut answered) = oneshot::channel();
        let id = batch.next_id.fetch_add(1, Ordering::Relaxed);
        batch.lock().push(Waiting {
            id,
            item,
            span: tracing::Span::current(),
            answer,
        });
        let unqueue = Unqueue { batch, id };
        // Another turn may take ours and answer it while we still wait for
        // a turn: then the answer is all we wait for (waiting on for the
        // turn would hold every answer behind every turn queued before it).
        let turn = tokio::select! {
            biased;
            out = &mut answered => return answer_of(out),
            turn = self.write_turn() => turn?,
        };
        // Ours, if nobody took it yet, and whatever queued behind it; or
        // nothing, when another turn took them all.
        let taken = batch.take();
        drop(unqueue);
        if taken.is_empty() {
            // Ours rides in another turn's statement: this turn is not needed.
            drop(turn);
        } else {
            self.batch_counts
                .commands
                .fetch_add(taken.len() as u64, Ordering::Relaxed);
            self.batch_counts.statements.fetch_add(1, Ordering::Relaxed);
            let (pool, counts, hub) = (self.pool.clone(), self.statements.clone(), self.hub.clone());
            let span = tracing::info_span!(
                "db.query",
                db.system = self.backend(),
                db.operation = op,
                db.batch_size = taken.len(),
                db.statements = tracing::field::Empty
            );
            // Not awaited here: it answers every command it carries itself
            // (ours among them, or ours is in another's), even if this
            // caller stops waiting, and holds the turn until it is done.
            tokio::task::spawn_blocking(move || {
                let _turn = turn;
                run_taken(&pool, &counts, &hub, op, &span, taken, run);
            });
        }
        answer_of(answered.await)
    }
}

/// A command's answer as its caller gets it.
fn answer_of<O>(out: std::result::Result<Result<O>, oneshot::error::RecvError>) -> Result<Option<O>> {
    out.map_err(|_| Error::Unexpected("a batched command was dropped unanswered".into()))?
        .map(Some)
}

/// Runs the commands `taken` with `run` on a pooled connection and answers
/// each; what they committed wakes this replica's followers first.
fn run_taken<I, O>(
    pool: &diesel::r2d2::Pool<super::DbManager>,
    counts: &std::sync::Mutex<std::collections::HashMap<&'static str, u64>>,
    hub: &notify::Hub,
    op: &'static str,
    span: &tracing::Span,
    taken: Vec<Waiting<I, O>>,
    run: RunBatch<I, O>,
) {
    let mut answers = Vec::with_capacity(taken.len());
    let mut items = Vec::with_capacity(taken.len());
    // Each command's trace gets a span for the statement it rode in.
    let mut spans = Vec::with_capacity(taken.len());
    for w in taken {
        spans.push(tracing::info_span!(
            parent: &w.span,
            "db.query",
            db.operation = op,
            db.batch_size = tracing::field::Empty
        ));
        answers.push(w.answer);
        items.push(w.item);
    }
    let n = items.len();
    for s in &spans {
        s.record("db.batch_size", n);
    }
    let ran = super::on_pooled(pool, counts, op, span, |conn| {
        let DbConnection::Pg(c) = conn else {
            return Err(Error::Unexpected(
                "batched commands run on PostgreSQL only".into(),
            ));
        };
        let (outs, topics) = notify::collect(|| run(c, items));
        Ok((outs, topics))
    });
    drop(spans);
    match ran {
        Ok((outs, topics)) => {
            hub.notify(&topics);
            if outs.len() != answers.len() {
                let e = format!(
                    "a batch of {} commands gave {} answers",
                    answers.len(),
                    outs.len()
                );
                for a in answers {
                    let _ = a.send(Err(Error::Unexpected(e.clone())));
                }
                return;
            }
            for (a, out) in answers.into_iter().zip(outs) {
                let _ = a.send(out);
            }
        }
        // No connection: the same refusal for each.
        Err(e) => {
            let again = |e: &Error| match e {
                Error::NotReady(m) => Error::NotReady(m.clone()),
                other => Error::Unexpected(other.to_string()),
            };
            for a in answers {
                let _ = a.send(Err(again(&e)));
            }
        }
    }
}
