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

fn load_everything(conn: &mut DbConnection) -> Result<(Taxonomy, PolicyMap, i64)> {
    let (_, newest) = st::change_bounds(conn)?;
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
    Ok((taxonomy, map, newest.unwrap_or(0)))
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
        let (taxonomy, map, newest) = self
            .store
            .read("decisions.load", |c, _| load_everything(c))
            .await?;
        tracing::info!(tenants = map.len(), "decision snapshots loaded");
        self.taxonomy.store(Arc::new(taxonomy));
        self.policies.store(Arc::new(map));
        self.seen.store(newest, Ordering::Release);
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
        let (changes, oldest) = self
            .store
            .read("decisions.follow", move |c, _| {
                Ok((st::changes_after(c, seen, 1000)?, st::change_bounds(c)?.0))
            })
            .await?;
        if oldest.is_some_and(|o| o > seen + 1) && seen > 0 {
            // Fell behind the pruned log: start over.
            self.reload_all().await?;
            return Ok(self.policies.load().len());
        }
        let Some(last) = changes.last().map(|(s, _)| *s) else {
            return Ok(0);
        };
        let mut tenants: Vec<String> = changes.into_iter().map(|(_, t)| t).collect();
        tenants.sort();
        tenants.dedup();
        let n = tenants.len();
        self.refresh_many(tenants).await?;
        self.seen.fetch_max(last, Ordering::AcqRel);
        Ok(n)
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
