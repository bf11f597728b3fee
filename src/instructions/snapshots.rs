//! The in-memory read model the decision hot path answers from: one
//! immutable [`TenantPolicy`] per tenant behind an atomic pointer swap, so a
//! check never touches the database or takes a lock.
//!
//! Freshness: a write on this replica reloads the tenant it changed before
//! the write RPC returns (so the next check here sees it); every replica also
//! follows the store's decision change log every [`FOLLOW_INTERVAL`], so a
//! write on another replica is seen within a second.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::db::{DbConnection, Store};
use crate::error::Result;
use crate::instructions::model::Taxonomy;
use crate::instructions::model::decide::TenantPolicy;
use crate::instructions::repo as st;
use crate::periodic::CancellationToken;

/// How often each replica looks for changes made elsewhere.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);
/// Change-log entries older than this are pruned (a replica that falls
/// further behind reloads everything).
const CHANGE_LOG_RETENTION: chrono::Duration = chrono::Duration::hours(1);
/// Follow rounds between two prunes (about ten minutes).
const PRUNE_EVERY: u32 = 3000;

type PolicyMap = HashMap<String, Arc<TenantPolicy>>;

/// Most applied seqs remembered one by one; older ones fold into the floor.
const APPLIED_KEPT: usize = 200_000;

/// Which change-log entries this replica has applied, by seq: the ones it
/// read and refreshed, one by one, and every seq at or below `floor`
/// (entries pruned from the log, or folded in when the set grew large).
/// Seqs are not in commit order, so a watermark alone could not say it.
#[derive(Debug, Default)]
struct Applied {
    seqs: std::collections::BTreeSet<i64>,
    floor: i64,
}

impl Applied {
    fn contains(&self, seq: i64) -> bool {
        seq <= self.floor || self.seqs.contains(&seq)
    }

    fn extend(&mut self, seqs: impl IntoIterator<Item = i64>) {
        self.seqs.extend(seqs);
        while self.seqs.len() > APPLIED_KEPT {
            if let Some(s) = self.seqs.pop_first() {
                self.floor = self.floor.max(s);
            }
        }
    }
}

/// Per-tenant decision snapshots and the taxonomy, kept fresh.
pub struct Decisions {
    store: Store,
    policies: ArcSwap<PolicyMap>,
    taxonomy: ArcSwap<Taxonomy>,
    /// Last change-log seq this replica has applied.
    seen: AtomicI64,
    /// False until the first full load succeeded (the database may not be
    /// migrated yet when the server starts with `--no-migrate`).
    loaded: AtomicBool,
    /// The change-log entries applied here, for consistency tokens.
    applied: std::sync::Mutex<Applied>,
    /// One catch-up at a time for the checks that wait on a token.
    catching_up: tokio::sync::Mutex<()>,
    /// Longest a check waits for a token's change (`--consistency-wait-ms`).
    consistency_wait_ms: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Decisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decisions")
            .field("tenants", &self.policies.load().len())
            .field("seen", &self.seen.load(Ordering::Relaxed))
            .finish()
    }
}

/// Loads the snapshots of `tenants` in one read: the sub-processor registry
/// and the sanctioned tenants are read once for all of them.
fn load_policies(conn: &mut DbConnection, tenants: &[String]) -> Result<Vec<(String, TenantPolicy)>> {
    let sanctioned = sanctioned_tenants(conn)?;
    load_with(conn, tenants, &sanctioned)
}

fn sanctioned_tenants(conn: &mut DbConnection) -> Result<HashSet<String>> {
    Ok(crate::screening::repo::blocked_tenants(conn)?
        .into_iter()
        .collect())
}

/// [`load_policies`] with the sanctioned tenants already read.
fn load_with(
    conn: &mut DbConnection,
    tenants: &[String],
    sanctioned: &HashSet<String>,
) -> Result<Vec<(String, TenantPolicy)>> {
    let registry = crate::subprocessors::repo::registry(conn)?;
    let mut out = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        let seq = st::tenant_change_seq(conn, tenant)?;
        let current = st::current(conn, tenant)?;
        let state = st::tenant_state(conn, tenant)?;
        let flags = crate::subject_requests::repo::tenant_flags(conn, tenant)?;
        let policy = TenantPolicy::compile(
            current.as_ref().map_or(0, |v| v.version),
            current.as_ref().map(|v| &v.set),
            state.and_then(|s| s.terminated_at),
            seq,
        )
        .with_subjects(flags.iter().map(|f| {
            (
                f.subject_ref.as_str(),
                f.flags.restricted,
                f.flags.objected || f.flags.consent_withdrawn,
                f.flags.erased,
            )
        }))
        .with_sub_processors(crate::subprocessors::repo::tenant_grants(
            conn, &registry, tenant,
        )?)
        .with_sanctioned(sanctioned.contains(tenant));
        out.push((tenant.clone(), policy));
    }
    Ok(out)
}

fn load_everything(conn: &mut DbConnection) -> Result<(Taxonomy, PolicyMap, i64, Vec<i64>)> {
    let (_, newest) = st::change_bounds(conn)?;
    // Read before the snapshots: every seq listed is then reflected in them.
    let seqs = st::change_seqs(conn)?;
    let taxonomy = st::taxonomy(conn)?;
    let mut tenants = st::known_tenants(conn)?;
    // A sanctioned tenant that never wrote instructions still needs a
    // snapshot, so its denials name the sanction.
    let sanctioned = sanctioned_tenants(conn)?;
    tenants.extend(sanctioned.iter().cloned());
    tenants.sort();
    tenants.dedup();
    let map = load_with(conn, &tenants, &sanctioned)?
        .into_iter()
        .map(|(t, p)| (t, Arc::new(p)))
        .collect();
    Ok((taxonomy, map, newest.unwrap_or(0), seqs))
}

impl Decisions {
    /// Snapshots over `store`, loaded now if the database is ready, else by
    /// the follower as soon as it is (see [`Decisions::ready`]).
    pub async fn start(store: Store) -> Arc<Self> {
        let d = Arc::new(Self {
            store,
            policies: ArcSwap::from_pointee(PolicyMap::new()),
            taxonomy: ArcSwap::from_pointee(Taxonomy::default()),
            seen: AtomicI64::new(0),
            loaded: AtomicBool::new(false),
            applied: std::sync::Mutex::new(Applied::default()),
            catching_up: tokio::sync::Mutex::new(()),
            consistency_wait_ms: std::sync::atomic::AtomicU64::new(1000),
        });
        if let Err(e) = d.reload_all().await {
            tracing::warn!(error = %e, "decision snapshots not loaded yet; will retry");
        }
        d
    }

    /// True once every snapshot has been loaded; health reports NOT_SERVING
    /// until then, so no check is answered from an empty cache.
    pub fn ready(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    async fn reload_all(&self) -> Result<()> {
        let (taxonomy, map, newest, seqs) = self
            .store
            .read("decisions.load", |c, _| load_everything(c))
            .await?;
        tracing::info!(tenants = map.len(), "decision snapshots loaded");
        self.taxonomy.store(Arc::new(taxonomy));
        self.policies.store(Arc::new(map));
        self.seen.store(newest, Ordering::Release);
        {
            let mut a = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            // Entries pruned before this load are older than anything a
            // snapshot could still miss.
            let oldest = seqs.iter().min().copied().unwrap_or(i64::MAX);
            a.floor = a.floor.max(
                oldest
                    .saturating_sub(1)
                    .min(seqs.iter().max().copied().unwrap_or(0)),
            );
            a.extend(seqs);
        }
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    /// Runs `f` on the tenant's snapshot (`None` when proctor knows nothing
    /// of the tenant) without cloning or locking.
    pub fn with_policy<R>(&self, tenant: &str, f: impl FnOnce(Option<&TenantPolicy>) -> R) -> R {
        let map = self.policies.load();
        f(map.get(tenant).map(|p| &**p))
    }

    /// The current taxonomy snapshot.
    pub fn taxonomy(&self) -> Arc<Taxonomy> {
        self.taxonomy.load_full()
    }

    /// Reloads one tenant (or the taxonomy, for [`st::TAXONOMY_CHANGE`]);
    /// called after a local write commits, before its RPC returns.
    pub async fn refresh(&self, tenant: &str) -> Result<()> {
        self.refresh_many(vec![tenant.to_owned()]).await
    }

    /// Reloads the snapshots of `tenants` (in one read; the taxonomy marker
    /// among them reloads the taxonomy).
    async fn refresh_many(&self, mut tenants: Vec<String>) -> Result<()> {
        if let Some(i) = tenants.iter().position(|t| t == st::TAXONOMY_CHANGE) {
            tenants.swap_remove(i);
            let t = self
                .store
                .read("decisions.taxonomy", |c, _| st::taxonomy(c))
                .await?;
            self.taxonomy.store(Arc::new(t));
        }
        if tenants.is_empty() {
            return Ok(());
        }
        let loaded = self
            .store
            .read("decisions.refresh", move |c, _| load_policies(c, &tenants))
            .await?;
        for (tenant, p) in loaded {
            self.install(&tenant, p);
        }
        Ok(())
    }

    /// Swaps in `p` unless a snapshot of a later change is already there.
    fn install(&self, tenant: &str, p: TenantPolicy) {
        let p = Arc::new(p);
        self.policies.rcu(|old| {
            let mut m = PolicyMap::clone(old);
            if m.get(tenant).is_none_or(|o| o.change_seq <= p.change_seq) {
                m.insert(tenant.to_owned(), p.clone());
            }
            m
        });
    }

    /// Applies every change logged since the last call; returns how many
    /// tenants were reloaded. Writers whose changed tenants are only known to
    /// the store (subject flags) call it after committing, so the next check
    /// on this replica sees the change.
    pub async fn catch_up(&self) -> Result<usize> {
        if !self.ready() {
            self.reload_all().await?;
            return Ok(self.policies.load().len());
        }
        let seen = self.seen.load(Ordering::Acquire);
        let (changes, oldest, unordered) = self
            .store
            .read("decisions.follow", move |c, _| {
                // Unordered first: an entry the sequencer orders between the
                // two reads is then in the second, never in neither.
                let unordered = st::unordered_changes(c, 1000)?;
                let ordered = st::changes_after(c, seen, 1000)?;
                Ok((ordered, st::change_bounds(c)?.0, unordered))
            })
            .await?;
        if oldest.is_some_and(|o| o > seen + 1) && seen > 0 {
            // Fell behind the pruned log: start over.
            self.reload_all().await?;
            return Ok(self.policies.load().len());
        }
        // Changes committed but not ordered yet are applied now (so a
        // writer's next check here sees its write) and again once ordered;
        // a refresh is idempotent.
        // Only ordered changes count: a caller loops until none are left,
        // and unordered ones stay until the sequencer orders them.
        let last = changes.last().map(|(o, _, _)| *o);
        let n = changes.len();
        let seqs: Vec<i64> = changes
            .iter()
            .map(|(_, s, _)| *s)
            .chain(unordered.iter().map(|(s, _)| *s))
            .collect();
        let mut tenants: Vec<String> = changes
            .into_iter()
            .map(|(_, _, t)| t)
            .chain(unordered.into_iter().map(|(_, t)| t))
            .collect();
        if tenants.is_empty() {
            return Ok(0);
        }
        tenants.sort();
        tenants.dedup();
        self.refresh_many(tenants).await?;
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(seqs);
        if let Some(last) = last {
            self.seen.fetch_max(last, Ordering::AcqRel);
        }
        Ok(n)
    }

    /// Sets how long [`Decisions::await_applied`] waits
    /// (`--consistency-wait-ms`).
    pub fn set_consistency_wait(&self, wait: Duration) {
        self.consistency_wait_ms.store(
            u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Whether this replica has applied change-log entry `seq` (what a
    /// consistency token names).
    pub fn applied(&self, seq: i64) -> bool {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(seq)
    }

    /// Returns once this replica has applied change `seq`, catching up on
    /// the change log itself meanwhile (one catch-up at a time however many
    /// checks wait); after the configured wait it is ABORTED, which the
    /// caller may retry.
    pub async fn await_applied(&self, seq: i64) -> Result<()> {
        if self.applied(seq) {
            return Ok(());
        }
        let wait = Duration::from_millis(self.consistency_wait_ms.load(Ordering::Relaxed));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Ok(_guard) = tokio::time::timeout_at(deadline, self.catching_up.lock()).await {
                if self.applied(seq) {
                    return Ok(());
                }
                if let Err(e) = tokio::time::timeout_at(deadline, self.catch_up())
                    .await
                    .unwrap_or(Ok(0))
                {
                    tracing::warn!(error = %e, "catching up for a consistency token failed");
                }
            }
            if self.applied(seq) {
                return Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(crate::error::Error::Conflict(
                    "this replica has not applied the write the consistency token names yet; retry".into(),
                ));
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(10))).await;
        }
    }

    /// Follows the change log until shutdown.
    pub fn follow(self: Arc<Self>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut rounds = 0u32;
            // Other replicas' writes arrive in real time, in tests too.
            let wall = crate::periodic::wall();
            crate::periodic::every("decision_follow", FOLLOW_INTERVAL, &wall, &stop, || {
                rounds = rounds.wrapping_add(1);
                let prune = rounds.is_multiple_of(PRUNE_EVERY);
                let me = self.clone();
                async move { me.follow_round(prune).await }
            })
            .await;
        })
    }

    /// One round of [`Decisions::follow`]: catch up, and every
    /// [`PRUNE_EVERY`] rounds prune the change log. A failed prune is only
    /// logged; the round reports the catch-up.
    async fn follow_round(&self, prune: bool) -> Result<usize> {
        let caught = self.catch_up().await;
        if prune {
            let res = self
                .store
                .write("decisions.prune", |c, clock| {
                    st::prune_changes(c, clock.now() - CHANGE_LOG_RETENTION)
                })
                .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "pruning the decision change log failed");
            }
        }
        caught
    }
}
