//! `ScreeningService`: list imports (client stream of file chunks), single
//! and streamed screenings against the in-memory indexes, review cases, and
//! the pairwise scorer for analysts.
//!
//! Each replica keeps one index per source ([`LiveIndex`]) and polls the
//! database for newer list versions every second, so an import through any
//! replica or the CLI reaches every replica within seconds; the replica that
//! imports swaps its index before answering.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Caller, Role};
use crate::db::Store;
use crate::error::Error;
use crate::proto::v1 as pb;
use crate::proto::v1::screening_service_server::ScreeningService;
use crate::rpc::convert::ts;
use crate::rpc::page::Page;
use crate::rpc::streams::caller_key;
use crate::rpc::{AppState, audit_entry, caller};
use crate::screening::cases::{CaseStatus, DEFAULT_LIMIT, MAX_LIMIT, Outcome};
use crate::screening::index::{Hit, Index, IndexSet, Query};
use crate::screening::lists::{Budget, CANCELLED, ListFile, SOURCES, parse_within};
use crate::screening::match_pool::MatchPool;
use crate::screening::matcher::{Params, PreparedName, Uniform, compare};
use crate::screening::model::EntityKind;
use crate::screening::repo as st;
use crate::screening::repo::{PartyRow, VersionInfo};
use crate::validate::Violations;

/// How often a replica looks for list versions imported elsewhere.
pub const INDEX_POLL: Duration = Duration::from_secs(1);
/// Hits below this are not returned when the request leaves `min_score` 0.
pub const DEFAULT_MIN_SCORE: f64 = 0.5;
/// Largest list import, all files together.
pub const MAX_IMPORT_BYTES: usize = 512 * 1024 * 1024;
/// Longest name or alias accepted.
const MAX_NAME_CHARS: usize = 500;
/// Most aliases per party.
const MAX_ALIASES: usize = 50;

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
                Index::build(&src, info.version, entries)
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
        let set = self.live.usable()?;
        let span = tracing::info_span!("screening.match", screening.lists = set.by_source.len());
        let params = self.params;
        self.pool
            .run(&caller_key(who), move || {
                let _s = span.enter();
                set.search(&q, &params, min_score, limit.max(20))
            })
            .await
    }
}

/// The screening service.
#[derive(Debug, Clone)]
pub struct Screening {
    state: AppState,
    /// The same screener the sub-processor registry uses, so `Screen` and a
    /// registration can never disagree on indexes, scorer or threshold.
    screener: NameScreener,
    /// Most rows one `ImportList` takes (`--max-import-rows`).
    max_import_rows: u64,
}

impl Screening {
    /// A service over `state` screening with `screener`, taking imports of
    /// at most `max_import_rows` rows.
    pub fn new(state: AppState, screener: NameScreener, max_import_rows: u64) -> Self {
        Self {
            state,
            screener,
            max_import_rows,
        }
    }
}

/// Sets its flag when dropped: tells work running on other threads that
/// the call it serves has ended.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn party_kind(t: i32) -> EntityKind {
    match pb::PartyType::try_from(t).unwrap_or(pb::PartyType::Unspecified) {
        pb::PartyType::Individual => EntityKind::Individual,
        pb::PartyType::Organization => EntityKind::Organization,
        pb::PartyType::Vessel => EntityKind::Vessel,
        pb::PartyType::Aircraft => EntityKind::Aircraft,
        pb::PartyType::Unspecified => EntityKind::Unknown,
    }
}

fn hit_pb(h: &Hit) -> pb::Hit {
    pb::Hit {
        source: h.source.clone(),
        entry_id: h.entry_id.clone(),
        primary_name: h.primary_name.clone(),
        matched_name: h.matched_name.clone(),
        score: h.score,
        explanation: h.explanation.clone(),
        programs: h.programs.clone(),
    }
}

fn version_pb(v: &VersionInfo) -> pb::ListVersion {
    pb::ListVersion {
        source: v.source.clone(),
        version: v.version,
        sha256: v.sha256.clone(),
        entries: v.entries,
        added: v.added,
        removed: v.removed,
        changed: v.changed,
        imported_at: Some(ts(v.imported_at)),
        rescreened_parties: v.rescreened,
        cases_opened: v.cases_opened,
    }
}

/// The wire form of a case, its answers unsealed with `ring`.
fn case_pb(c: &st::Case, ring: &crate::secrets::KeyRing) -> Result<pb::Case, Error> {
    let answers = c
        .answers
        .iter()
        .map(|a| {
            let a = a.open(ring, &c.id)?;
            Ok(pb::CaseAnswer {
                answered_by: a.answered_by,
                answered_at: Some(ts(a.answered_at)),
                text: a.text,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(pb::Case {
        id: c.id.clone(),
        party_ref: c.party_ref.clone(),
        status: match c.status {
            CaseStatus::Open => pb::CaseStatus::Open,
            CaseStatus::Answered => pb::CaseStatus::Answered,
            CaseStatus::Cleared => pb::CaseStatus::Cleared,
            CaseStatus::Confirmed => pb::CaseStatus::Confirmed,
        } as i32,
        hits: c.hits.iter().map(hit_pb).collect(),
        opened_at: Some(ts(c.opened_at)),
        resolved_at: c.resolved_at.map(ts),
        note: c.note.open(ring, &c.id)?,
        tenant_id: c.tenant_id.clone().unwrap_or_default(),
        resolved_by: c.resolved_by.clone().unwrap_or_default(),
        answers,
    })
}

/// The sha256 of an import: over every file's name and bytes, in name order,
/// so the same files sent in another order are the same import.
pub fn import_digest(files: &[ListFile]) -> String {
    let mut sorted: Vec<&ListFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut h = Sha256::new();
    for f in sorted {
        h.update((f.name.len() as u64).to_be_bytes());
        h.update(f.name.as_bytes());
        h.update((f.data.len() as u64).to_be_bytes());
        h.update(&f.data);
    }
    hex::encode(h.finalize())
}

/// How an import's re-screening scores the registered parties.
#[derive(Debug, Clone, Copy)]
pub struct Scoring {
    /// Scorer parameters.
    pub params: crate::screening::matcher::Params,
    /// Score from which a hit is a possible match.
    pub threshold: f64,
}

/// Parses and stores an import as one transaction; shared by `ImportList`
/// and the CLI. A parse error is INVALID_ARGUMENT naming file and line, and
/// nothing is stored. `secrets` open the registered parties re-screened
/// against the new entries. `budget` caps the rows, and once its flag is set
/// (the call ended) the parse stops and the transaction rolls back, so an
/// abandoned import neither burns CPU to the end nor writes a version.
pub async fn import_files(
    store: &Store,
    secrets: std::sync::Arc<crate::secrets::SubjectSecrets>,
    actor: crate::audit::model::AuditEntry,
    source: String,
    files: Vec<ListFile>,
    scoring: Scoring,
    budget: Budget,
) -> Result<VersionInfo, Error> {
    if !SOURCES.contains(&source.as_str()) {
        return Err(Error::invalid(
            "source",
            format!("must be one of {}", SOURCES.join(", ")),
        ));
    }
    let sha = import_digest(&files);
    let src = source.clone();
    let span = tracing::info_span!("screening.parse", screening.source = %source);
    let cancelled = budget.cancelled.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        let _e = span.enter();
        parse_within(&src, &files, &budget)
    })
    .await
    .map_err(|e| Error::Unexpected(format!("parser failed: {e}")))?;
    let entries = match parsed {
        Ok(entries) => entries,
        Err(e) if e.message == CANCELLED => return Err(Error::Conflict(CANCELLED.into())),
        Err(e) => return Err(Error::invalid("data", e.to_string())),
    };
    store
        .write("screening.import", move |c, clock| {
            let review = st::Review {
                params: scoring.params,
                threshold: scoring.threshold,
                ring: &secrets.ring,
            };
            let info = st::import(c, clock.now(), actor, &source, &sha, entries, review)?;
            // The last moment to give up: after this the version commits.
            if cancelled.load(Ordering::Relaxed) {
                return Err(Error::Conflict(CANCELLED.into()));
            }
            Ok(info)
        })
        .await
}

/// How many screenings of one `BatchScreen` stream run at once: one per
/// core keeps every core matching, and one more covers the database write
/// of a screening with a `party_ref` while the others match.
fn batch_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get) + 1
}

type ScreenStream = Pin<Box<dyn Stream<Item = Result<pb::ScreenResponse, Status>> + Send>>;

impl Screening {
    /// Validates a screening request and folds it into its query, before
    /// anything is screened or written (so a stream can stop at a bad
    /// request without having started the ones after it).
    fn prepare(who: &Caller, req: &pb::ScreenRequest) -> Result<Query, Error> {
        crate::screening::cases::may_record_under(&req.party_ref, who.role == Role::Compliance)?;
        let mut v = Violations::new();
        let default = pb::Party::default();
        let party = req.party.as_ref().unwrap_or(&default);
        v.required_text("party.name", &party.name, MAX_NAME_CHARS);
        v.check(
            party.aliases.len() > MAX_ALIASES,
            "party.aliases",
            format!("at most {MAX_ALIASES}"),
        );
        for (i, a) in party.aliases.iter().enumerate() {
            v.max_len(&format!("party.aliases[{i}]"), a, MAX_NAME_CHARS);
        }
        v.max_len("party.date_of_birth", &party.date_of_birth, 32);
        v.max_len("party.country", &party.country, 100);
        v.max_len("party_ref", &req.party_ref, 200);
        v.check(
            !(0.0..=1.0).contains(&req.min_score) || req.min_score.is_nan(),
            "min_score",
            "must be between 0 and 1",
        );
        v.check(
            req.limit > MAX_LIMIT,
            "limit",
            format!("must be at most {MAX_LIMIT}"),
        );
        v.check(
            pb::PartyType::try_from(party.r#type).is_err(),
            "party.type",
            "is not a PartyType",
        );
        v.finish()?;
        let kind = party_kind(party.r#type);
        let q = Query::new(
            &party.name,
            &party.aliases,
            kind,
            &party.date_of_birth,
            &party.country,
        );
        if q.names.is_empty() {
            return Err(Error::invalid(
                "party.name",
                "has nothing to match on after folding",
            ));
        }
        Ok(q)
    }

    /// Screens a request [`prepare`](Self::prepare)d into `q`, recording
    /// the party (and any case) when it names a `party_ref`.
    async fn screen_one(
        &self,
        who: &Caller,
        req: pb::ScreenRequest,
        q: Query,
    ) -> Result<pb::ScreenResponse, Error> {
        let party = req.party.unwrap_or_default();
        let kind = party_kind(party.r#type);
        let min_score = if req.min_score == 0.0 {
            DEFAULT_MIN_SCORE
        } else {
            req.min_score
        };
        let limit = if req.limit == 0 { DEFAULT_LIMIT } else { req.limit } as usize;
        let hits = self
            .screener
            .search(who, q, min_score.min(self.screener.threshold()), limit)
            .await?;
        let shown: Vec<pb::Hit> = hits
            .iter()
            .filter(|h| h.score >= min_score)
            .take(limit)
            .map(hit_pb)
            .collect();
        let best = hits.first().map(|h| h.score);
        let (out, case_id) = if req.party_ref.is_empty() {
            (
                crate::screening::cases::outcome(best, self.screener.threshold(), false),
                String::new(),
            )
        } else {
            let row = PartyRow {
                party_ref: req.party_ref.clone(),
                tenant_id: None,
                name: party.name.clone(),
                party_type: kind.as_str().to_owned(),
                date_of_birth: party.date_of_birth.clone(),
                country: party.country.clone(),
                aliases: serde_json::to_string(&party.aliases).unwrap_or_else(|_| "[]".into()),
                updated_at_us: 0,
            };
            let actor = audit_entry(who, None, "screening.screen", &req.party_ref, "ok");
            let thr = self.screener.threshold();
            let secrets = self.state.secrets.clone();
            let rec = self
                .state
                .store
                .write("screening.record", move |c, clock| {
                    st::record_screening(c, clock.now(), actor, &secrets.ring, row, &hits, thr)
                })
                .await?;
            (rec.outcome, rec.case_id.unwrap_or_default())
        };
        Ok(pb::ScreenResponse {
            outcome: match out {
                Outcome::Clear => pb::Outcome::Clear,
                Outcome::PossibleMatch => pb::Outcome::PossibleMatch,
                Outcome::ConfirmedMatch => pb::Outcome::ConfirmedMatch,
            } as i32,
            hits: shown,
            case_id,
            party_ref: req.party_ref,
        })
    }

    fn tenant_scope(who: &Caller) -> Option<&str> {
        match who.role {
            Role::Tenant => who.tenant_id.as_deref(),
            _ => None,
        }
    }
}

#[tonic::async_trait]
impl ScreeningService for Screening {
    type BatchScreenStream = ScreenStream;

    async fn import_list(
        &self,
        req: Request<Streaming<pb::ImportListChunk>>,
    ) -> Result<Response<pb::ListVersion>, Status> {
        let who = caller(&req)?;
        let mut stream = req.into_inner();
        let mut source = String::new();
        let mut files: Vec<ListFile> = Vec::new();
        let mut total = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if source.is_empty() {
                source = chunk.source.clone();
            } else if !chunk.source.is_empty() && chunk.source != source {
                return Err(
                    Error::invalid("source", "every chunk of one import names the same source").into(),
                );
            }
            total += chunk.data.len();
            if total > MAX_IMPORT_BYTES {
                return Err(
                    Error::invalid("data", format!("an import is at most {MAX_IMPORT_BYTES} bytes")).into(),
                );
            }
            let name = if chunk.file_name.is_empty() {
                "list".to_owned()
            } else {
                chunk.file_name
            };
            match files.iter_mut().find(|f| f.name == name) {
                Some(f) => f.data.extend_from_slice(&chunk.data),
                None => files.push(ListFile {
                    name,
                    data: chunk.data,
                }),
            }
        }
        let mut v = Violations::new();
        v.check(source.is_empty(), "source", "is required");
        v.check(
            files.iter().all(|f| f.data.is_empty()),
            "data",
            "no file content was sent",
        );
        v.finish()?;
        let actor = audit_entry(&who, None, "screening.import", &source, "ok");
        // Dropped with this call, whether it returns, its client goes away
        // or its deadline passes: then the import's work stops.
        let on_end = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let budget = Budget {
            max_rows: self.max_import_rows,
            cancelled: on_end.0.clone(),
        };
        let info = import_files(
            &self.state.store,
            self.state.secrets.clone(),
            actor,
            source,
            files,
            Scoring {
                params: *self.screener.params(),
                threshold: self.screener.threshold(),
            },
            budget,
        )
        .await?;
        drop(on_end);
        self.screener.live().refresh().await?;
        // Sub-processors screened clear by this version may now be active.
        self.state.follow_decisions().await;
        Ok(Response::new(version_pb(&info)))
    }

    async fn screen(&self, req: Request<pb::ScreenRequest>) -> Result<Response<pb::ScreenResponse>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        let q = Self::prepare(&who, &req)?;
        Ok(Response::new(self.screen_one(&who, req, q).await?))
    }

    async fn batch_screen(
        &self,
        req: Request<Streaming<pb::ScreenRequest>>,
    ) -> Result<Response<Self::BatchScreenStream>, Status> {
        let who = Arc::new(caller(&req)?);
        let slot = self.state.streams.open(&who)?;
        let input = req.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let me = Arc::new(self.clone());
        tokio::spawn(async move {
            // Each screening is its own task, so one stream uses every
            // runtime thread; `buffered` bounds how many run at once and
            // answers in request order, which clients rely on. Requests are
            // validated in order as they are read, and reading stops at the
            // first bad one, so nothing after it is screened or recorded.
            let mut results = input
                .scan(false, |stopped, item| {
                    if *stopped {
                        return futures::future::ready(None);
                    }
                    let checked = item.and_then(|r| match Self::prepare(&who, &r) {
                        Ok(q) => Ok((r, q)),
                        Err(e) => Err(Status::from(e)),
                    });
                    *stopped = checked.is_err();
                    futures::future::ready(Some(checked))
                })
                .map(|checked| {
                    let (me, who) = (me.clone(), who.clone());
                    tokio::spawn(async move {
                        let (r, q) = checked?;
                        me.screen_one(&who, r, q).await.map_err(Status::from)
                    })
                })
                .buffered(batch_concurrency());
            while let Some(joined) = results.next().await {
                let res = joined.unwrap_or_else(|_| Err(Status::internal("screening task failed")));
                let stop = res.is_err();
                if tx.send(res).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(crate::rpc::streams::hold(
            slot,
            ReceiverStream::new(rx),
        )))
    }

    async fn list_cases(
        &self,
        req: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let status = match pb::CaseStatus::try_from(r.status) {
            Ok(pb::CaseStatus::Unspecified) => None,
            Ok(pb::CaseStatus::Open) => Some(CaseStatus::Open),
            Ok(pb::CaseStatus::Answered) => Some(CaseStatus::Answered),
            Ok(pb::CaseStatus::Cleared) => Some(CaseStatus::Cleared),
            Ok(pb::CaseStatus::Confirmed) => Some(CaseStatus::Confirmed),
            Err(_) => return Err(Error::invalid("status", "is not a CaseStatus").into()),
        };
        let tenant = Self::tenant_scope(&who).map(str::to_owned);
        if who.role == Role::Tenant && tenant.is_none() {
            return Err(Status::permission_denied("tenant token without tenant"));
        }
        let p = page.clone();
        let cases = self
            .state
            .store
            .read("screening.list_cases", move |c, _| {
                st::list_cases(c, tenant.as_deref(), status, p.after, p.size)
            })
            .await?;
        let next = page.next_token(cases.len(), cases.last().map(|c| c.seq));
        Ok(Response::new(pb::ListCasesResponse {
            cases: cases
                .iter()
                .map(|c| case_pb(c, &self.state.secrets.ring))
                .collect::<Result<_, _>>()?,
            next_page_token: next,
        }))
    }

    async fn get_case(&self, req: Request<pb::GetCaseRequest>) -> Result<Response<pb::Case>, Status> {
        let who = caller(&req)?;
        let id = req.into_inner().case_id;
        let mut v = Violations::new();
        v.required_text("case_id", &id, 64);
        v.finish()?;
        let tenant = Self::tenant_scope(&who).map(str::to_owned);
        if who.role == Role::Tenant && tenant.is_none() {
            return Err(Status::permission_denied("tenant token without tenant"));
        }
        let case = self
            .state
            .store
            .read("screening.get_case", move |c, _| {
                st::get_case(c, &id, tenant.as_deref())
            })
            .await?;
        Ok(Response::new(case_pb(&case, &self.state.secrets.ring)?))
    }

    async fn resolve_case(&self, req: Request<pb::ResolveCaseRequest>) -> Result<Response<pb::Case>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("case_id", &r.case_id, 64);
        v.required_text("note", &r.note, 2000);
        let to = match pb::Resolution::try_from(r.resolution) {
            Ok(pb::Resolution::Cleared) => Some(CaseStatus::Cleared),
            Ok(pb::Resolution::Confirmed) => Some(CaseStatus::Confirmed),
            _ => {
                v.add("resolution", "must be RESOLUTION_CLEARED or RESOLUTION_CONFIRMED");
                None
            }
        };
        v.finish()?;
        let to = to.ok_or_else(|| Error::invalid("resolution", "is required"))?;
        let actor = audit_entry(&who, None, "screening.case.resolve", &r.case_id, "ok");
        let secrets = self.state.secrets.clone();
        let case = self
            .state
            .store
            .write("screening.resolve_case", move |c, clock| {
                st::resolve_case(c, clock.now(), actor, &secrets.ring, &r.case_id, to, &r.note)
            })
            .await?;
        // A confirmed tenant or a sub-processor's gate changes decisions.
        self.state.follow_decisions().await;
        Ok(Response::new(case_pb(&case, &self.state.secrets.ring)?))
    }

    async fn score_names(
        &self,
        req: Request<pb::ScoreNamesRequest>,
    ) -> Result<Response<pb::ScoreNamesResponse>, Status> {
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("left", &r.left, MAX_NAME_CHARS);
        v.required_text("right", &r.right, MAX_NAME_CHARS);
        v.check(
            pb::PartyType::try_from(r.r#type).is_err(),
            "type",
            "is not a PartyType",
        );
        v.finish()?;
        let (a, b) = (PreparedName::new(&r.left), PreparedName::new(&r.right));
        // Weigh tokens by rarity on the largest loaded list, as screening
        // does; with no list loaded every token weighs the same.
        let set = self.screener.live().current();
        let biggest = set.by_source.values().max_by_key(|i| i.names()).cloned();
        let c = match &biggest {
            Some(idx) => compare(&a, &b, idx.as_ref(), self.screener.params()),
            None => compare(&a, &b, &Uniform, self.screener.params()),
        };
        let weights = biggest.map_or_else(
            || "uniform token weights".to_owned(),
            |i| format!("token weights of {}", i.source()),
        );
        Ok(Response::new(pb::ScoreNamesResponse {
            score: (c.score * 1000.0).round() / 1000.0,
            explanation: format!("{} ({weights})", c.explain()),
        }))
    }
}
