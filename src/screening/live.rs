//! The indexes a replica screens against, and screening as other
//! capabilities use it.
//!
//! Each replica keeps one index per source ([`LiveIndex`]) and polls the
//! database for newer list versions every second, so an import through any
//! replica or the CLI reaches every replica within seconds; the replica that
//! imports swaps its index before answering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::auth::Caller;
use crate::db::Store;
use crate::error::Error;
use crate::rpc::streams::caller_key;
use crate::screening::index::{Hit, Index, IndexSet, ListFilter, Query};
use crate::screening::match_pool::MatchPool;
use crate::screening::matcher::Params;
use crate::screening::repo as st;

/// How often a replica looks for list versions imported elsewhere.
pub const INDEX_POLL: Duration = Duration::from_secs(1);

/// The indexes this replica screens against, refreshed from the database.
#[derive(Debug)]
pub struct LiveIndex {
    store: Store,
    set: RwLock<Arc<IndexSet>>,
    loaded: Mutex<HashMap<String, i64>>,
    refreshing: tokio::sync::Mutex<()>,
    /// Whether one refresh has read the database: until then an empty set
    /// means "not loaded yet", after it "no list was ever imported".
    refreshed: std::sync::atomic::AtomicBool,
}

impl LiveIndex {
    /// An empty index over `store`; call [`LiveIndex::refresh`] to load.
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(Self {
            store,
            set: RwLock::new(Arc::new(IndexSet::default())),
            loaded: Mutex::new(HashMap::new()),
            refreshing: tokio::sync::Mutex::new(()),
            refreshed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The indexes as of now (cheap; a screening holds them to the end).
    pub fn current(&self) -> Arc<IndexSet> {
        self.set.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Loads every source whose latest version is newer than the one held,
    /// building its index off the async runtime, and swaps it in whole.
    pub async fn refresh(&self) -> Result<usize, Error> {
        let _one = self.refreshing.lock().await;
        let latest = self
            .store
            .read("screening.latest_versions", |c, _| st::latest_versions(c))
            .await?;
        let stale: Vec<(String, i64)> = {
            let loaded = self
                .loaded
                .lock()
                .map_err(|_| Error::Unexpected("index lock poisoned".into()))?;
            latest
                .into_iter()
                .filter(|(s, seq)| loaded.get(s) != Some(seq))
                .collect()
        };
        let n = stale.len();
        for (source, seq) in stale {
            let span = tracing::info_span!("screening.index_build", screening.source = %source, screening.version_seq = seq);
            let (info, entries) = self
                .store
                .read("screening.load_version", move |c, _| {
                    Ok((st::version(c, seq)?, st::entries(c, seq)?))
                })
                .await?;
            let src = source.clone();
            let idx = tokio::task::spawn_blocking(move || {
                let _e = span.enter();
                Index::build(&src, info.version, entries).with_sha256(&info.sha256)
            })
            .await
            .map_err(|e| Error::Unexpected(format!("index build failed: {e}")))?;
            tracing::info!(source = %source, version = idx.version(), entries = idx.entries(), names = idx.names(), "screening index loaded");
            {
                let mut set = self
                    .set
                    .write()
                    .map_err(|_| Error::Unexpected("index lock poisoned".into()))?;
                let mut next = (**set).clone();
                next.by_source.insert(source.clone(), Arc::new(idx));
                *set = Arc::new(next);
            }
            self.loaded
                .lock()
                .map_err(|_| Error::Unexpected("index lock poisoned".into()))?
                .insert(source, seq);
        }
        self.refreshed.store(true, std::sync::atomic::Ordering::Release);
        Ok(n)
    }

    /// The indexes to screen with, or why there are none: a screening
    /// against no list would call everyone clear.
    pub fn usable(&self) -> Result<Arc<IndexSet>, Error> {
        let set = self.current();
        if !set.by_source.is_empty() {
            Ok(set)
        } else if self.refreshed.load(std::sync::atomic::Ordering::Acquire) {
            Err(Error::WrongState(
                "no sanctions list has been imported yet (ImportList); nothing can be screened clear".into(),
            ))
        } else {
            Err(Error::NotReady(
                "this replica has not loaded the sanctions lists yet; retry".into(),
            ))
        }
    }

    /// Polls for new versions until the server stops.
    pub fn spawn_poller(self: &Arc<Self>, stop: crate::periodic::CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            // Lists imported through another replica arrive in real time.
            let wall = crate::periodic::wall();
            crate::periodic::every("screening_index_refresh", INDEX_POLL, &wall, &stop, || async {
                me.refresh().await.map(|_| 0)
            })
            .await;
        });
    }
}

/// Screening as other capabilities use it: the sub-processor registry
/// screens a legal name at registration with the same indexes, scorer and
/// review threshold as `Screen`.
#[derive(Debug, Clone)]
pub struct NameScreener {
    live: Arc<LiveIndex>,
    params: Params,
    threshold: f64,
    pool: Arc<MatchPool>,
}

impl NameScreener {
    /// A screener over `live` alerting at `threshold`, matching on `pool`.
    pub fn new(live: Arc<LiveIndex>, threshold: f64, pool: Arc<MatchPool>) -> Self {
        Self {
            live,
            params: Params::default(),
            threshold,
            pool,
        }
    }

    /// The review threshold.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// The live indexes, swapped in place by each list import.
    pub fn live(&self) -> &Arc<LiveIndex> {
        &self.live
    }

    /// The scorer's parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The hits of `q` at or above the threshold for `who`, or None while
    /// this replica has no list loaded (nothing can be called clear then).
    pub async fn hits(&self, who: &Caller, q: Query) -> Result<Option<Vec<Hit>>, Error> {
        match self.search(who, q, self.threshold, 20).await {
            Ok(hits) => Ok(Some(hits)),
            Err(Error::WrongState(_) | Error::NotReady(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The best `limit` (at least 20) hits of `q` scoring `min_score` or
    /// more, or why there are no lists to search ([`LiveIndex::usable`]).
    /// Matching runs on the matching pool, within `who`'s share of it.
    pub async fn search(
        &self,
        who: &Caller,
        q: Query,
        min_score: f64,
        limit: usize,
    ) -> Result<Vec<Hit>, Error> {
        self.search_in(who, q, ListFilter::default(), min_score, limit)
            .await
            .map(|(hits, _)| hits)
    }

    /// [`NameScreener::search`] within the sources and programmes of
    /// `filter`, with the indexes it searched. A source named that has no
    /// list loaded is FAILED_PRECONDITION: a screening against a list that
    /// is not there would call the party clear of it.
    pub async fn search_in(
        &self,
        who: &Caller,
        q: Query,
        filter: ListFilter,
        min_score: f64,
        limit: usize,
    ) -> Result<(Vec<Hit>, Arc<IndexSet>), Error> {
        let set = self.live.usable()?;
        let missing: Vec<&str> = filter
            .sources
            .iter()
            .filter(|s| !set.by_source.contains_key(s.as_str()))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(Error::WrongState(format!(
                "no version of {} has been imported (ImportList); nothing can be screened clear of it",
                missing.join(", ")
            )));
        }
        let span = tracing::info_span!("screening.match", screening.lists = set.by_source.len());
        let params = self.params;
        let searched = set.clone();
        let hits = self
            .pool
            .run(&caller_key(who), move || {
                let _s = span.enter();
                set.search_in(&q, &params, min_score, limit.max(20), &filter)
            })
            .await?;
        Ok((hits, searched))
    }
}
