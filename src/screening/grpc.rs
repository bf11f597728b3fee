//! `ScreeningService`: list imports (client stream of file chunks), single
//! and streamed screenings against the in-memory indexes, review cases, and
//! the pairwise scorer for analysts.
//!
//! Each replica keeps one index per source ([`LiveIndex`]) and polls the
//! database for newer list versions every second, so an import through any
//! replica or the CLI reaches every replica within seconds; the replica that
//! imports swaps its index before answering.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Caller;
use crate::db::pipeline::Actor;
use crate::error::Error;
use crate::proto::v1 as pb;
use crate::proto::v1::screening_service_server::ScreeningService;
use crate::rpc::convert::ts;
use crate::rpc::page::Page;
use crate::rpc::{AppState, caller};
use crate::screening::cases::{CaseStatus, DEFAULT_LIMIT, MAX_LIMIT, Outcome};
use crate::screening::evidence::Evidence;
use crate::screening::identifiers::{IdentifierType, TypedIdentifier, normalize};
use crate::screening::index::{Hit, ListFilter, Query};
use crate::screening::lists::{Budget, ListFile, SOURCES};
use crate::screening::live::NameScreener;
use crate::screening::matcher::{PreparedName, Uniform, compare};
use crate::screening::model::EntityKind;
use crate::screening::repo::{PartyRow, VersionInfo};
use crate::screening::service::{self, CaseView, ImportList, RecordScreening, ResolveCase, Scoring};
use crate::validate::Violations;

/// Hits below this are not returned when the request leaves `min_score` 0.
pub const DEFAULT_MIN_SCORE: f64 = 0.5;
/// Largest list import, all files together.
pub const MAX_IMPORT_BYTES: usize = 512 * 1024 * 1024;
/// Longest name or alias accepted.
const MAX_NAME_CHARS: usize = 500;
/// Most aliases per party.
const MAX_ALIASES: usize = 50;

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

/// Most programme codes one screening may name.
const MAX_PROGRAMS: usize = 50;

/// A screening request checked and folded: its query and the lists it
/// is restricted to.
#[derive(Debug, Clone)]
struct Checked {
    query: Query,
    filter: ListFilter,
}

/// Most identifiers per party.
const MAX_IDENTIFIERS: usize = 20;

/// The model's identifier type of a wire one; `None` for UNSPECIFIED or a
/// number the enum does not have.
fn identifier_type(t: i32) -> Option<IdentifierType> {
    Some(match pb::IdentifierType::try_from(t).ok()? {
        pb::IdentifierType::Unspecified => return None,
        pb::IdentifierType::Imo => IdentifierType::Imo,
        pb::IdentifierType::Mmsi => IdentifierType::Mmsi,
        pb::IdentifierType::Lei => IdentifierType::Lei,
        pb::IdentifierType::Bic => IdentifierType::Bic,
        pb::IdentifierType::Passport => IdentifierType::Passport,
        pb::IdentifierType::NationalId => IdentifierType::NationalId,
        pb::IdentifierType::TaxId => IdentifierType::TaxId,
        pb::IdentifierType::AircraftRegistration => IdentifierType::AircraftRegistration,
        pb::IdentifierType::Other => IdentifierType::Other,
    })
}

/// The wire form of an identifier.
pub(crate) fn identifier_pb(i: &TypedIdentifier) -> pb::Identifier {
    let t = match i.id_type {
        IdentifierType::Imo => pb::IdentifierType::Imo,
        IdentifierType::Mmsi => pb::IdentifierType::Mmsi,
        IdentifierType::Lei => pb::IdentifierType::Lei,
        IdentifierType::Bic => pb::IdentifierType::Bic,
        IdentifierType::Passport => pb::IdentifierType::Passport,
        IdentifierType::NationalId => pb::IdentifierType::NationalId,
        IdentifierType::TaxId => pb::IdentifierType::TaxId,
        IdentifierType::AircraftRegistration => pb::IdentifierType::AircraftRegistration,
        IdentifierType::Other => pb::IdentifierType::Other,
    };
    pb::Identifier {
        r#type: t as i32,
        value: i.value.clone(),
        country: i.country.clone(),
    }
}

/// Checks and normalises a party's identifiers, recording what is wrong
/// with each under its field name.
fn parse_identifiers(ids: &[pb::Identifier], v: &mut Violations) -> Vec<TypedIdentifier> {
    v.check(
        ids.len() > MAX_IDENTIFIERS,
        "party.identifiers",
        format!("at most {MAX_IDENTIFIERS}"),
    );
    let mut out: Vec<TypedIdentifier> = Vec::new();
    for (i, id) in ids.iter().enumerate().take(MAX_IDENTIFIERS) {
        let Some(t) = identifier_type(id.r#type) else {
            v.add(
                format!("party.identifiers[{i}].type"),
                "must be an IdentifierType other than UNSPECIFIED",
            );
            continue;
        };
        v.max_len(&format!("party.identifiers[{i}].country"), &id.country, 100);
        if id.value.chars().count() > 64 {
            v.add(format!("party.identifiers[{i}].value"), "at most 64 characters");
            continue;
        }
        match normalize(t, &id.value) {
            Ok(value) => {
                let typed = TypedIdentifier {
                    id_type: t,
                    value,
                    country: id.country.trim().to_owned(),
                };
                if !out.iter().any(|o| o.key() == typed.key()) {
                    out.push(typed);
                }
            }
            Err(why) => v.add(format!("party.identifiers[{i}].value"), why),
        }
    }
    out
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
        matched_identifiers: h.matched_identifiers.iter().map(identifier_pb).collect(),
        cleared_by_case: String::new(),
    }
}

/// The wire form of screening evidence.
fn evidence_pb(e: &Evidence) -> pb::ScreeningEvidence {
    pb::ScreeningEvidence {
        lists: e
            .lists
            .iter()
            .map(|l| pb::ListVersionRef {
                source: l.source.clone(),
                version: l.version,
                sha256: l.sha256.clone(),
            })
            .collect(),
        threshold: e.threshold,
        matcher_version: e.matcher_version.clone(),
        screened_at: Some(ts(e.screened_at)),
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

/// The wire form of a list entry.
fn list_entry_pb(v: service::ListEntryView) -> pb::ListEntry {
    let e = v.entry;
    let kind = match e.kind {
        EntityKind::Individual => pb::PartyType::Individual,
        EntityKind::Organization => pb::PartyType::Organization,
        EntityKind::Vessel => pb::PartyType::Vessel,
        EntityKind::Aircraft => pb::PartyType::Aircraft,
        EntityKind::Unknown => pb::PartyType::Unspecified,
    };
    pb::ListEntry {
        source: v.source,
        entry_id: e.id.clone(),
        kind: kind as i32,
        names: e.names().map(|(n, _)| n.to_owned()).collect(),
        identifiers: e.typed_identifiers().iter().map(identifier_pb).collect(),
        programs: e.programs,
        dates_of_birth: e.dates_of_birth,
        countries: e.countries,
        first_version: v.first_version,
        last_version: v.last_version,
    }
}

/// The wire form of an opened case.
fn case_pb(v: CaseView) -> pb::Case {
    let CaseView {
        case: c,
        note,
        answers,
    } = v;
    pb::Case {
        id: c.id,
        party_ref: c.party_ref,
        status: match c.status {
            CaseStatus::Open => pb::CaseStatus::Open,
            CaseStatus::Answered => pb::CaseStatus::Answered,
            CaseStatus::Cleared => pb::CaseStatus::Cleared,
            CaseStatus::Confirmed => pb::CaseStatus::Confirmed,
        } as i32,
        hits: c.hits.iter().map(hit_pb).collect(),
        opened_at: Some(ts(c.opened_at)),
        resolved_at: c.resolved_at.map(ts),
        note,
        tenant_id: c.tenant_id.unwrap_or_default(),
        resolved_by: c.resolved_by.unwrap_or_default(),
        answers: answers
            .into_iter()
            .map(|a| pb::CaseAnswer {
                answered_by: a.answered_by,
                answered_at: Some(ts(a.answered_at)),
                text: a.text,
            })
            .collect(),
    }
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
    fn prepare(who: &Caller, req: &pb::ScreenRequest) -> Result<Checked, Error> {
        crate::screening::cases::may_record_under(&req.party_ref, who.role)?;
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
        let identifiers = parse_identifiers(&party.identifiers, &mut v);
        v.check(
            req.sources.len() > SOURCES.len(),
            "sources",
            format!("at most {}", SOURCES.len()),
        );
        for (i, s) in req.sources.iter().enumerate() {
            v.check(
                !SOURCES.contains(&s.trim()),
                format!("sources[{i}]"),
                format!("must be one of {}", SOURCES.join(", ")),
            );
        }
        v.check(
            req.programs.len() > MAX_PROGRAMS,
            "programs",
            format!("at most {MAX_PROGRAMS}"),
        );
        for (i, p) in req.programs.iter().enumerate().take(MAX_PROGRAMS) {
            v.required_text(&format!("programs[{i}]"), p, 100);
        }
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
        )
        .with_identifiers(identifiers);
        if q.names.is_empty() {
            return Err(Error::invalid(
                "party.name",
                "has nothing to match on after folding",
            ));
        }
        Ok(Checked {
            query: q,
            filter: ListFilter::new(&req.sources, &req.programs),
        })
    }

    /// Screens a request [`prepare`](Self::prepare)d into `q`, recording
    /// the party (and any case) when it names a `party_ref`.
    async fn screen_one(
        &self,
        who: &Caller,
        req: pb::ScreenRequest,
        checked: Checked,
    ) -> Result<pb::ScreenResponse, Error> {
        let Checked { query: q, filter } = checked;
        let party = req.party.unwrap_or_default();
        let kind = party_kind(party.r#type);
        let min_score = if req.min_score == 0.0 {
            DEFAULT_MIN_SCORE
        } else {
            req.min_score
        };
        let limit = if req.limit == 0 { DEFAULT_LIMIT } else { req.limit } as usize;
        let q_identifiers = q.identifiers.clone();
        let (hits, searched) = self
            .screener
            .search_in(
                who,
                q,
                filter.clone(),
                min_score.min(self.screener.threshold()),
                limit,
            )
            .await?;
        let mut evidence = Evidence::new(
            searched.versions(&filter),
            self.screener.threshold(),
            self.state.store.clock().now(),
        );
        let mut shown: Vec<pb::Hit> = hits
            .iter()
            .filter(|h| h.score >= min_score)
            .take(limit)
            .map(hit_pb)
            .collect();
        let best = hits.first().map(|h| h.score);
        let mut receipt = None;
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
                identifiers: q_identifiers,
                updated_at_us: 0,
            };
            let cmd = RecordScreening {
                party: row,
                hits,
                threshold: self.screener.threshold(),
                evidence: evidence.clone(),
            };
            let rec = service::record_screening(&self.state, Actor::of(who), cmd).await?;
            for h in &mut shown {
                if let Some(case) = rec.cleared.get(&(h.source.clone(), h.entry_id.clone())) {
                    h.cleared_by_case.clone_from(case);
                }
            }
            if let Some(e) = rec.evidence {
                evidence = e;
            }
            receipt = rec.receipt.map(|r| pb::ScreeningReceipt {
                document: r.document,
                signature: r.signature,
                key_id: r.key_id,
            });
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
            evidence: Some(evidence_pb(&evidence)),
            receipt,
        })
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
        // Dropped with this call, whether it returns, its client goes away
        // or its deadline passes: then the import's work stops.
        let on_end = CancelOnDrop(Arc::new(AtomicBool::new(false)));
        let budget = Budget {
            max_rows: self.max_import_rows,
            cancelled: on_end.0.clone(),
        };
        let info = service::import_list(
            &self.state.store,
            self.state.secrets.clone(),
            Actor::of(&who),
            ImportList { source, files },
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
                let res =
                    joined.unwrap_or_else(|_| Err(Error::Unexpected("screening task failed".into()).into()));
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
        let tenant = self.state.scope(&req, "").await?.tenant;
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
        let cases = service::list_cases(&self.state, tenant, status, page.clone()).await?;
        let next = page.next_token(cases.len(), cases.last().map(|c| c.case.seq));
        Ok(Response::new(pb::ListCasesResponse {
            cases: cases.into_iter().map(case_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn get_case(&self, req: Request<pb::GetCaseRequest>) -> Result<Response<pb::Case>, Status> {
        let tenant = self.state.scope(&req, "").await?.tenant;
        let id = req.into_inner().case_id;
        let mut v = Violations::new();
        v.required_text("case_id", &id, 64);
        v.finish()?;
        let case = service::get_case(&self.state, id, tenant).await?;
        Ok(Response::new(case_pb(case)))
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
        let cmd = ResolveCase {
            case_id: r.case_id,
            to,
            note: r.note,
        };
        let case = service::resolve_case(&self.state, Actor::of(&who), cmd).await?;
        Ok(Response::new(case_pb(case)))
    }

    async fn get_list_entry(
        &self,
        req: Request<pb::GetListEntryRequest>,
    ) -> Result<Response<pb::ListEntry>, Status> {
        let r = req.into_inner();
        let mut v = Violations::new();
        v.check(
            !SOURCES.contains(&r.source.as_str()),
            "source",
            format!("must be one of {}", SOURCES.join(", ")),
        );
        v.required_text("entry_id", &r.entry_id, 200);
        v.finish()?;
        let view = service::get_list_entry(&self.state, r.source, r.entry_id).await?;
        Ok(Response::new(list_entry_pb(view)))
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
