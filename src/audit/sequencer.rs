//! The sequencer: integrates committed audit events into the Merkle tree,
//! and gives committed decision changes their place in the change log's
//! order (see [`crate::instructions::repo::order_changes`]).
//!
//! Commands write their events without a leaf index, so nothing on the
//! write path orders them. The sequencer, woken by this replica's commits
//! and at least every `--audit-max-merge-delay-ms` for other replicas',
//! takes the unsequenced events in the order they were written, gives them
//! the next leaf indexes, stores the tree's new hashes and signs a
//! checkpoint of the new size, all in one transaction.
//!
//! One sequencer per cluster at a time: on PostgreSQL each batch first takes
//! a transaction-level advisory try-lock, so whichever replica gets it
//! sequences, and the others skip the round. Nothing is elected that could
//! die holding the role: when a replica dies its batch rolls back and the
//! next round of any other replica takes over, within one merge delay. On
//! SQLite the write transaction itself is exclusive. The unique index on the
//! leaf index refuses a second event at the same leaf whatever happens.

use std::sync::Mutex;
use std::time::Duration;

use diesel::prelude::*;

use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::repo::{self, StoredCheckpoint};
use crate::audit::tree::{self, Frontier};
use crate::db::notify::Topic;
use crate::db::{DbConnection, Store};
use crate::error::Result;
use crate::periodic::CancellationToken;

/// Events integrated per transaction.
pub const BATCH: i64 = 1000;

/// Key of the sequencing try-lock (PostgreSQL), distinct from every other
/// advisory lock proctor takes.
const SEQUENCER_LOCK_KEY: i64 = 0x7072_6f63_7365_7131; // "procseq1"

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

/// Whether this transaction may sequence: another replica sequencing right
/// now holds the lock, and this one then skips its round.
fn may_sequence(conn: &mut DbConnection) -> Result<bool> {
    match conn {
        DbConnection::Pg(c) => {
            let r: Locked =
                crate::db::prepared::Prepared::new("SELECT pg_try_advisory_xact_lock(?) AS locked")
                    .bind::<diesel::sql_types::BigInt, _>(SEQUENCER_LOCK_KEY)
                    .get_result(c)?;
            Ok(r.locked)
        }
        DbConnection::Sqlite(_) => Ok(true),
    }
}

/// What one batch did.
#[derive(Debug, Default)]
pub struct Batch {
    /// Events given leaves.
    pub integrated: usize,
    /// Decision changes given their place in the change log's order.
    pub ordered: usize,
    /// The grown tree's frontier, once committed right for the next batch.
    pub frontier: Option<Frontier>,
}

/// Integrates up to [`BATCH`] events in the caller's transaction and signs
/// the checkpoint of the new size (0 integrated: nothing to do or another
/// replica is sequencing). `known` is a frontier an earlier batch
/// committed: the tree's hashes it holds are not read again.
///
/// On PostgreSQL a batch is six statements whatever its size: BEGIN, the
/// lock, the change log's order, the waiting events with the tree's size,
/// the batch's leaves, hashes and checkpoint, COMMIT.
pub fn sequence_batch(
    conn: &mut DbConnection,
    now: chrono::DateTime<chrono::Utc>,
    signer: &CheckpointSigner,
    known: &Frontier,
) -> Result<Batch> {
    if !may_sequence(conn)? {
        return Ok(Batch::default());
    }
    // The decision change log is ordered here too: after commit, one
    // sequencer at a time, so followers never miss an entry.
    let ordered = crate::instructions::repo::order_changes(conn, BATCH)?;
    let Some((size, events)) = repo::waiting(conn, BATCH)? else {
        return Ok(Batch {
            ordered,
            ..Batch::default()
        });
    };
    let leaves: Vec<tlog_tiles::Hash> = events
        .iter()
        .map(|e| tlog_tiles::record_hash(&e.leaf_data()))
        .collect();
    let grown = tree::append(conn, size, &leaves, known)?;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let new_size = size + events.len() as u64;
    let note = signer.sign(new_size, grown.root)?;
    repo::integrate(
        conn,
        now,
        &repo::Integration {
            seqs: &seqs,
            first: size as i64,
            hashes: &grown.hashes,
            checkpoint: &StoredCheckpoint {
                size: new_size,
                root: grown.root.0.to_vec(),
                note,
            },
        },
    )?;
    Ok(Batch {
        integrated: events.len(),
        ordered,
        frontier: Some(grown.frontier),
    })
}

/// One replica's sequencer: the checkpoint signer and the frontier of the
/// tree as its last committed batch left it.
pub struct Sequencer {
    signer: CheckpointSigner,
    frontier: Mutex<Frontier>,
}

impl Sequencer {
    /// A sequencer signing with `signer`, knowing nothing of the tree yet.
    pub fn new(signer: CheckpointSigner) -> Self {
        Self {
            signer,
            frontier: Mutex::new(Frontier::default()),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Frontier> {
        self.frontier
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sequences until nothing is left (or another replica holds the lock);
    /// returns how many events this replica integrated.
    pub async fn round(&self, store: &Store) -> Result<usize> {
        let mut total = 0;
        loop {
            let (signer, known) = (self.signer.clone(), self.known().clone());
            let done = store
                .write("audit.sequence", move |c, clock| {
                    sequence_batch(c, clock.now(), &signer, &known)
                })
                .await;
            let batch = match done {
                Ok(b) => b,
                Err(e) => {
                    // Whether it committed is unknown: nothing is assumed.
                    *self.known() = Frontier::default();
                    return Err(e);
                }
            };
            if let Some(f) = batch.frontier {
                *self.known() = f;
            }
            total += batch.integrated;
            if batch.integrated.max(batch.ordered) < BATCH as usize {
                return Ok(total);
            }
        }
    }
}

/// Runs the sequencer until `stop`: a round after each local commit that
/// wrote audit events (commits within [`crate::periodic::MIN_WAKE_SPACING`]
/// of the last round's start share the next one), and at least every
/// `max_delay` (on the wall clock:
/// the delay is a promise in real time, whatever clock the server runs on).
pub fn spawn(store: Store, signer: CheckpointSigner, max_delay: Duration, stop: CancellationToken) {
    let sequencer = Sequencer::new(signer);
    tokio::spawn(async move {
        let mut commits = store.follow(Topic::AuditLog);
        loop {
            let started = std::time::Instant::now();
            if let Err(e) = sequencer.round(&store).await {
                tracing::warn!(job = "audit_sequencer", error = %e, "audit sequencing failed; retrying");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = commits.changed() => {
                    // Commits that come faster are sequenced together.
                    if !crate::periodic::spaced(started, &stop).await {
                        return;
                    }
                }
                _ = tokio::time::sleep(max_delay) => {}
            }
        }
    });
}
