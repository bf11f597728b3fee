//! The audit capability's reads: pages of the trail (a tenant's own, or
//! everything), signed checkpoints, inclusion and consistency proofs, and
//! the log's verification. The log is written only through the command
//! pipeline ([`crate::db::pipeline::Tx::audit`]) and the refusal counts
//! ([`super::refusals`]), and placed in the tree by [`super::sequencer`],
//! never from here.

use std::collections::HashMap;

use tlog_tiles::Hash;

use super::checkpoint::{self, CheckpointSigner, Signed};
use super::model::AuditEvent;
use super::{repo, tree};
use crate::db::{DbConnection, Store};
use crate::error::{Error, Result};

/// A page of the log (see [`repo::list`]): up to `size` events in tree
/// order from leaf cursor `after`, of `tenant` only when given, and the
/// cursor after the page's last leaf.
pub async fn events(
    store: &Store,
    tenant: Option<String>,
    after: i64,
    size: i64,
) -> Result<(Vec<AuditEvent>, Option<i64>)> {
    store
        .read("audit.list", move |c, _| {
            repo::list(c, tenant.as_deref(), after, size)
        })
        .await
}

/// The log as a replica serves it: its checkpoint signer, and what the last
/// verification established, so the next one starts from there.
#[derive(Debug)]
pub struct AuditLog {
    signer: CheckpointSigner,
    verified: tokio::sync::Mutex<Verified>,
}

/// What earlier verifications on this replica established.
#[derive(Debug, Clone, Copy)]
struct Verified {
    /// Leaves verified, and the root they had (`EMPTY_HASH` at 0).
    size: u64,
    root: Hash,
    /// Where the re-check of already verified leaves' content resumes.
    scrub: u64,
}

/// Leaves whose content an incremental verification re-checks besides the
/// new ones, so a rewrite of an old event's text shows within
/// `size / SCRUB_LEAVES` verifications even when its stored hash was left.
const SCRUB_LEAVES: u64 = 20_000;
/// Leaves read per query while verifying.
const VERIFY_BATCH: u64 = 2_000;

/// A signed checkpoint as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointView {
    /// The signed note.
    pub text: String,
    /// Leaves in the tree.
    pub size: u64,
    /// Root hash.
    pub root: Vec<u8>,
}

/// An inclusion proof as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    /// The event's leaf.
    pub leaf_index: u64,
    /// The tree it is proved in.
    pub tree_size: u64,
    /// The leaf's hash.
    pub leaf_hash: Vec<u8>,
    /// The audit path, leaf to root.
    pub hashes: Vec<Vec<u8>>,
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Every check passed.
    pub ok: bool,
    /// Events whose content was recomputed by this call.
    pub events_checked: u64,
    /// The first event that does not match the tree, when one was found.
    pub first_bad_event_id: Option<String>,
    /// Size of the tree verified (the latest checkpoint's).
    pub tree_size: u64,
    /// Whether the tree extends the trusted checkpoint given (true when
    /// none was given).
    pub consistent_with_trusted: bool,
    /// Why it is not ok, in words (never event content).
    pub problem: Option<String>,
}

impl Report {
    fn bad(mut self, problem: impl Into<String>) -> Self {
        self.ok = false;
        self.problem.get_or_insert_with(|| problem.into());
        self
    }
}

fn hash_of(raw: &[u8]) -> Option<Hash> {
    <[u8; 32]>::try_from(raw).ok().map(Hash)
}

impl AuditLog {
    /// The log served with `signer`'s key and origin.
    pub fn new(signer: CheckpointSigner) -> Self {
        Self {
            signer,
            verified: tokio::sync::Mutex::new(Verified {
                size: 0,
                root: tlog_tiles::EMPTY_HASH,
                scrub: 0,
            }),
        }
    }

    /// The checkpoint signer (what the sequencer signs with).
    pub fn signer(&self) -> &CheckpointSigner {
        &self.signer
    }

    /// The verifier key of this log's checkpoints.
    pub fn verifier_key(&self) -> Result<String> {
        self.signer.verifier_key()
    }

    /// The latest signed checkpoint; before the first event, the signed
    /// empty tree.
    pub async fn checkpoint(&self, store: &Store) -> Result<CheckpointView> {
        let latest = store
            .read("audit.checkpoint", |c, _| repo::latest_checkpoint(c))
            .await?;
        match latest {
            Some(cp) => Ok(CheckpointView {
                text: cp.note,
                size: cp.size,
                root: cp.root,
            }),
            None => Ok(CheckpointView {
                text: self.signer.sign(0, tlog_tiles::EMPTY_HASH)?,
                size: 0,
                root: tlog_tiles::EMPTY_HASH.0.to_vec(),
            }),
        }
    }

    /// The proof that event `event_id` (one of `tenant`'s when given) is in
    /// the tree of `tree_size` leaves (0: the latest checkpoint's).
    pub async fn inclusion(
        &self,
        store: &Store,
        event_id: String,
        tenant: Option<String>,
        tree_size: u64,
    ) -> Result<Inclusion> {
        store
            .read("audit.inclusion_proof", move |c, _| {
                let ev = repo::by_id(c, &event_id, tenant.as_deref())?;
                let latest = repo::latest_checkpoint(c)?.map_or(0, |cp| cp.size);
                let size = checked_size(tree_size, latest, "tree_size")?;
                let Some(n) = ev.leaf_index.map(|i| i as u64) else {
                    return Err(Error::WrongState(
                        "the event is not sequenced into the tree yet; retry shortly".into(),
                    ));
                };
                if n >= size {
                    return Err(Error::WrongState(format!(
                        "the event is leaf {n}, not in a tree of {size} leaves"
                    )));
                }
                let leaf = tree::leaf_hash(c, n)?
                    .ok_or_else(|| Error::Unexpected(format!("audit tree has no hash for leaf {n}")))?;
                let proof = tree::inclusion(c, size, n)?;
                Ok(Inclusion {
                    leaf_index: n,
                    tree_size: size,
                    leaf_hash: leaf.0.to_vec(),
                    hashes: proof.into_iter().map(|h| h.0.to_vec()).collect(),
                })
            })
            .await
    }

    /// The proof that the tree of `to` leaves (0: the latest) extends the
    /// tree of `from`.
    pub async fn consistency(&self, store: &Store, from: u64, to: u64) -> Result<Vec<Vec<u8>>> {
        store
            .read("audit.consistency_proof", move |c, _| {
                let latest = repo::latest_checkpoint(c)?.map_or(0, |cp| cp.size);
                let to = checked_size(to, latest, "to_size")?;
                if from == 0 || from > to {
                    return Err(Error::invalid("from_size", format!("must be between 1 and {to}")));
                }
                Ok(tree::consistency(c, from, to)?
                    .into_iter()
                    .map(|h| h.0.to_vec())
                    .collect())
            })
            .await
    }

    /// Verifies the log: the latest checkpoint's signature; every leaf
    /// added since the last verification on this replica (its content
    /// against its stored hash, the stored tree against the signed root);
    /// that the tree extends what was verified before; a rolling window of
    /// older leaves' content; and, given `trusted` (a checkpoint text signed
    /// earlier), that the log still extends it. One verification at a time.
    pub async fn verify(&self, store: &Store, trusted: Option<String>) -> Result<Report> {
        let vkey = self.verifier_key()?;
        let trusted = match trusted.filter(|t| !t.trim().is_empty()) {
            None => None,
            Some(t) => Some(
                checkpoint::open(&t, &vkey, self.signer.origin())
                    .map_err(|why| Error::invalid("trusted_checkpoint", why))?,
            ),
        };
        let mut state = self.verified.lock().await;
        let from = *state;
        let origin = self.signer.origin().to_owned();
        let (report, next) = store
            .read("audit.verify", move |c, _| {
                verify_in(c, from, &vkey, &origin, trusted)
            })
            .await?;
        if let Some(bad) = &report.first_bad_event_id {
            tracing::error!(event.id = %bad, "audit log does not match its tree");
        } else if let Some(p) = &report.problem {
            tracing::error!(problem = %p, "audit log verification failed");
        }
        if let Some(next) = next {
            *state = next;
        }
        Ok(report)
    }
}

/// `requested` if it names a tree the log has signed (0: `latest`).
fn checked_size(requested: u64, latest: u64, field: &str) -> Result<u64> {
    match requested {
        0 if latest == 0 => Err(Error::WrongState("the audit tree is still empty".into())),
        0 => Ok(latest),
        n if n > latest => Err(Error::invalid(
            field,
            format!("the latest signed tree has {latest} leaves"),
        )),
        n => Ok(n),
    }
}

/// Checks leaves `from..to` against the stored tree, a batch per query:
/// each event's content against its stored leaf hash and, with `rebuild`,
/// the interior hashes those leaves complete as recomputed from them.
/// Returns how many events were checked, the first that does not match,
/// or the first missing leaf.
fn check_leaves(
    conn: &mut DbConnection,
    from: u64,
    to: u64,
    rebuild: bool,
) -> Result<(u64, Option<String>, Option<u64>)> {
    let mut checked = 0;
    let mut n = from;
    while n < to {
        let end = (n + VERIFY_BATCH).min(to);
        let events = repo::by_leaf(conn, n, end)?;
        if let Some((gap, after)) = (n..end)
            .zip(&events)
            .find(|(i, e)| e.leaf_index != Some(*i as i64))
        {
            // The event found where the missing one should be is named.
            return Ok((checked, Some(after.id.clone()), Some(gap)));
        }
        if (events.len() as u64) < end - n {
            return Ok((checked, None, Some(n + events.len() as u64)));
        }
        let leaves: Vec<Hash> = events
            .iter()
            .map(|e| tlog_tiles::record_hash(&e.leaf_data()))
            .collect();
        let idx: Vec<u64> = (n..end).map(|i| tlog_tiles::stored_hash_index(0, i)).collect();
        let none = HashMap::new();
        let stored = tlog_tiles::HashReader::read_hashes(&tree::DbHashes::new(conn, &none), &idx).ok();
        for (k, e) in events.iter().enumerate() {
            checked += 1;
            if stored.as_ref().and_then(|s| s.get(k)) != Some(&leaves[k]) {
                return Ok((checked, Some(e.id.clone()), None));
            }
        }
        if rebuild {
            let recomputed = tree::append(conn, n, &leaves, &tree::Frontier::default())?.hashes;
            let mut at: Vec<u64> = recomputed.keys().copied().collect();
            at.sort_unstable();
            let stored = tlog_tiles::HashReader::read_hashes(&tree::DbHashes::new(conn, &none), &at).ok();
            for (k, i) in at.iter().enumerate() {
                if stored.as_ref().and_then(|s| s.get(k)) != recomputed.get(i) {
                    // The leaf that completed the subtree whose hash differs.
                    let (level, j) = tlog_tiles::split_stored_hash_index(*i);
                    let last = ((j + 1) << level) - 1;
                    let e = &events[(last.clamp(n, end - 1) - n) as usize];
                    return Ok((checked, Some(e.id.clone()), None));
                }
            }
        }
        n = end;
    }
    Ok((checked, None, None))
}

fn verify_in(
    conn: &mut DbConnection,
    from: Verified,
    vkey: &str,
    origin: &str,
    trusted: Option<Signed>,
) -> Result<(Report, Option<Verified>)> {
    let mut report = Report {
        ok: true,
        consistent_with_trusted: true,
        ..Report::default()
    };
    let Some(latest) = repo::latest_checkpoint(conn)? else {
        if from.size > 0 || trusted.is_some_and(|t| t.size > 0) {
            report.consistent_with_trusted = trusted.is_none_or(|t| t.size == 0);
            return Ok((report.bad("the log's checkpoints are gone"), None));
        }
        return Ok((report, None));
    };
    let signed = match checkpoint::open(&latest.note, vkey, origin) {
        Ok(s) if s.size == latest.size && Some(s.root) == hash_of(&latest.root) => s,
        Ok(_) => {
            return Ok((
                report.bad("the latest checkpoint's columns differ from its signed note"),
                None,
            ));
        }
        Err(why) => {
            return Ok((
                report.bad(format!("the latest checkpoint does not verify: {why}")),
                None,
            ));
        }
    };
    let size = signed.size;
    report.tree_size = size;
    if size < from.size {
        return Ok((
            report.bad(format!("the tree shrank from {} to {size} leaves", from.size)),
            None,
        ));
    }
    // Leaves held against the signed size: none may be missing.
    let held = repo::sequenced_count(conn)?;
    if held < size {
        report = report.bad(format!("{} of {size} signed leaves are missing", size - held));
    }
    let (checked, bad, missing) = check_leaves(conn, from.size, size, true)?;
    report.events_checked = checked;
    report.first_bad_event_id = bad;
    if let Some(n) = missing {
        return Ok((report.bad(format!("leaf {n} is missing")), None));
    }
    if report.first_bad_event_id.is_some() {
        return Ok((report.bad("an event does not match its leaf"), None));
    }
    let root = tree::root(conn, size)?;
    if root != signed.root {
        return Ok((
            report.bad("the stored tree's root differs from the signed checkpoint"),
            None,
        ));
    }
    if from.size > 0 && from.size < size {
        let proof = tree::consistency(conn, from.size, size)?;
        if tlog_tiles::check_tree(&proof, size, root, from.size, from.root).is_err() {
            return Ok((
                report.bad("the tree does not extend the one verified before"),
                None,
            ));
        }
    } else if from.size == size && from.size > 0 && from.root != root {
        return Ok((report.bad("the tree's root changed at the same size"), None));
    }
    if let Some(t) = trusted {
        let consistent = if t.size > size {
            false
        } else if t.size == size {
            t.root == root
        } else if t.size == 0 {
            t.root == tlog_tiles::EMPTY_HASH
        } else {
            let proof = tree::consistency(conn, t.size, size)?;
            tlog_tiles::check_tree(&proof, size, root, t.size, t.root).is_ok()
        };
        report.consistent_with_trusted = consistent;
        if !consistent {
            report = report.bad("the log does not extend the trusted checkpoint");
        }
    }
    // Re-check a window of leaves verified earlier, resuming where the last
    // window stopped, so their content is re-read over time.
    let mut scrub = from.scrub;
    if from.size > 0 {
        let start = if scrub >= from.size { 0 } else { scrub };
        let end = (start + SCRUB_LEAVES).min(from.size);
        let (n, bad, missing) = check_leaves(conn, start, end, false)?;
        report.events_checked += n;
        report.first_bad_event_id = bad;
        if let Some(n) = missing {
            return Ok((report.bad(format!("leaf {n} is missing")), None));
        }
        if report.first_bad_event_id.is_some() {
            return Ok((
                report.bad("an event verified before no longer matches its leaf"),
                None,
            ));
        }
        scrub = end;
    }
    let next = report.ok.then_some(Verified { size, root, scrub });
    Ok((report, next))
}

/// Verifies the whole log against a checkpoint saved earlier, offline (the
/// `proctor audit verify` command): the checkpoint's signature with
/// `verifier_key`, every event against the stored tree, and that the tree
/// extends the saved checkpoint.
pub async fn verify_offline(store: &Store, checkpoint_text: String, verifier_key: String) -> Result<Report> {
    store
        .read("audit.verify_offline", move |c, _| {
            let origin = checkpoint_origin(&checkpoint_text)?;
            let trusted = checkpoint::open(&checkpoint_text, &verifier_key, &origin)
                .map_err(|why| Error::invalid("checkpoint", why))?;
            let start = Verified {
                size: 0,
                root: tlog_tiles::EMPTY_HASH,
                scrub: 0,
            };
            verify_in(c, start, &verifier_key, &origin, Some(trusted)).map(|(r, _)| r)
        })
        .await
}

/// The origin line of a checkpoint text.
fn checkpoint_origin(text: &str) -> Result<String> {
    text.lines()
        .next()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Error::invalid("checkpoint", "has no origin line"))
}
