//! Screening's commands and reads. Each command is one transaction through
//! the pipeline ([`crate::db::pipeline`]) that writes the rows, the audit
//! events and the envelopes together: a list version with the cases its
//! re-screening opened, a screened party with its case and clarification
//! request, a resolution with what it does to a sub-processor or tenant.
//! The steps other capabilities run inside their own transactions (a
//! registration settling its screening gate, an inbox reply answering a
//! case) are here too, as functions of a [`Tx`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};

use crate::db::pipeline::{Actor, Tx};
use crate::db::{Store, key_lock, to_us};
use crate::error::{Error, Result};
use crate::inbox::kinds::EnvelopeKind;
use crate::inbox::model::Recipient;
use crate::rpc::AppState;
use crate::rpc::page::Page;
use crate::screening::cases::{
    COMPLIANCE_QUEUE, CaseStatus, Outcome, clarification_recipient, outcome, party_tenant,
};
use crate::screening::effects;
use crate::screening::evidence::{Evidence, ReceiptDocument};
use crate::screening::index::{Hit, Index};
use crate::screening::lists::{Budget, CANCELLED, ListFile, SOURCES, parse_within};
use crate::screening::matcher::Params;
use crate::screening::repo::{self as st, Case, PartyRow, StoredNote, VersionInfo};
use crate::screening::{case_answers, repo};
use crate::secrets::{KeyRing, ReceiptSigner, SubjectSecrets};

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

/// How re-screening scores the registered parties: the same parameters and
/// review threshold as `Screen`, so an import and a screening agree.
#[derive(Debug, Clone, Copy)]
pub struct Scoring {
    /// Scorer parameters.
    pub params: Params,
    /// Score from which a hit is a possible match.
    pub threshold: f64,
}

/// A list import as received: which source, and its files.
#[derive(Debug, Clone)]
pub struct ImportList {
    /// One of [`SOURCES`].
    pub source: String,
    /// The files, each whole.
    pub files: Vec<ListFile>,
}

/// Parses and stores an import as one command; shared by `ImportList` and
/// the CLI. A parse error is INVALID_ARGUMENT naming file and line, and
/// nothing is stored. `secrets` open the registered parties re-screened
/// against the new entries. `budget` caps the rows, and once its flag is set
/// (the call ended) the parse stops and the transaction rolls back, so an
/// abandoned import neither burns CPU to the end nor writes a version.
pub async fn import_list(
    store: &Store,
    secrets: Arc<SubjectSecrets>,
    actor: Actor,
    cmd: ImportList,
    scoring: Scoring,
    budget: Budget,
) -> Result<VersionInfo> {
    let ImportList { source, files } = cmd;
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
    let done = store
        .command("screening.import", actor, move |tx| {
            let info = import_in(tx, &secrets.ring, &source, &sha, entries, scoring)?;
            // The last moment to give up: after this the version commits.
            if cancelled.load(Ordering::Relaxed) {
                return Err(Error::Conflict(CANCELLED.into()));
            }
            Ok(info)
        })
        .await?;
    Ok(done.value)
}

/// Stores a parsed import of `source` as its next version (unless its bytes
/// equal the latest version's, which is returned as it is), audits it, and
/// re-screens every registered party against the added and changed entries,
/// opening cases for new possible matches; sub-processors still waiting for
/// their first screening are screened against the whole new list.
fn import_in(
    tx: &mut Tx<'_>,
    ring: &KeyRing,
    source: &str,
    sha256: &str,
    list: Vec<crate::screening::model::ListEntry>,
    scoring: Scoring,
) -> Result<VersionInfo> {
    // One source's versions are numbered in turn.
    key_lock(tx.conn(), "screening.list", source)?;
    if let Some(same) = st::latest_with_digest(tx.conn(), source, sha256)? {
        return Ok(VersionInfo {
            unchanged: true,
            ..same
        });
    }
    let by = tx.actor().sub.clone();
    let now = tx.now();
    let stored = st::store_version(tx.conn(), now, &by, source, sha256, &list)?;
    let mut info = stored.info;
    let detail = serde_json::json!({
        "sha256": sha256, "entries": info.entries, "added": info.added, "removed": info.removed, "changed": info.changed,
    });
    tx.audit(
        "screening.import",
        &format!("{source}/v{}", info.version),
        None,
        &detail.to_string(),
    )?;
    let parties = if stored.delta.is_empty() {
        Vec::new()
    } else {
        st::parties(tx.conn(), ring)?
    };
    let pending = effects::pending_sub_processors(tx.conn())?;
    if parties.is_empty() && pending.is_empty() {
        return Ok(info);
    }
    let idx = Index::build(source, info.version, list).with_sha256(sha256);
    for party in parties {
        info.rescreened += 1;
        lock_party(tx, &party.party_ref)?;
        if st::has_open_or_confirmed(tx.conn(), &party.party_ref)? {
            continue;
        }
        let party = effects::registry_party(tx.conn(), party)?;
        let hits: Vec<Hit> = idx
            .search(&party.query(), &scoring.params, scoring.threshold, 20)
            .into_iter()
            .filter(|h| stored.delta.contains(&h.entry_id))
            .collect();
        let alerting = st::not_cleared(tx.conn(), &party.party_ref, hits)?;
        if !alerting.is_empty() {
            let case_id = open_case(tx, &party, &alerting, "rescreen")?;
            info.cases_opened += 1;
            // The re-screening's evidence: this version, against the
            // entries it added or changed.
            let evidence = Evidence::new(vec![idx.version_ref()], scoring.threshold, tx.now());
            let rec = Recorded {
                outcome: Outcome::PossibleMatch,
                case_id: Some(case_id),
                cleared: HashMap::new(),
                evidence: None,
                receipt: None,
            };
            let id = uuid::Uuid::new_v4().to_string();
            let row = result_row(id, &party.party_ref, "rescreen", &rec, &evidence, &alerting, None);
            st::insert_result(tx.conn(), &row)?;
        }
    }
    for sp in pending {
        let hits = idx.search(&sp.query(), &scoring.params, scoring.threshold, 20);
        if effects::settle_sub_processor(tx, ring, &sp, Some(&hits), scoring.threshold)?.opened_case {
            info.cases_opened += 1;
        }
    }
    Ok(info)
}

/// Takes `party_ref`'s lock: screenings, re-screenings, answers and
/// resolutions of one party run in turn (so it never gets two open cases),
/// those of different parties in parallel.
fn lock_party(tx: &mut Tx<'_>, party_ref: &str) -> Result<()> {
    key_lock(tx.conn(), "screening.party", party_ref)
}

/// Opens a case of `party` for `hits` and asks the party's side for
/// clarification; `why` (`screen`, `rescreen`) goes in the audit event.
fn open_case(tx: &mut Tx<'_>, party: &PartyRow, hits: &[Hit], why: &str) -> Result<String> {
    let (now, by) = (tx.now(), tx.actor().sub.clone());
    let id = st::insert_case(tx.conn(), now, &by, party, hits)?;
    tx.envelope(
        &clarification_recipient(&party.party_ref),
        EnvelopeKind::ScreeningClarification,
        &serde_json::json!({ "id": id, "case_id": id, "party_ref": party.party_ref, "hits": hits.len() }),
    )?;
    let detail = serde_json::json!({
        "party_ref": party.party_ref,
        "why": why,
        "entries": hits.iter().map(|h| format!("{}/{}", h.source, h.entry_id)).collect::<Vec<_>>(),
    });
    tx.audit(
        "screening.case.open",
        &format!("case/{id}"),
        party.tenant_id.as_deref(),
        &detail.to_string(),
    )?;
    Ok(id)
}

/// What a screening under a `party_ref` concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// Outcome.
    pub outcome: Outcome,
    /// The case opened now, or already open, or confirmed.
    pub case_id: Option<String>,
    /// Hits a cleared case suppresses, by `(source, entry_id)`: the case.
    pub cleared: HashMap<(String, String), String>,
    /// The evidence as stored (its time the command's), when recorded.
    pub evidence: Option<Evidence>,
    /// The signed receipt of a clear result.
    pub receipt: Option<SignedReceipt>,
}

/// A receipt: a JSON document ([`ReceiptDocument`]) and its Ed25519
/// signature by the receipt key, checkable offline with `GetReceiptKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceipt {
    /// The exact text signed.
    pub document: String,
    /// Ed25519 signature of the document's bytes.
    pub signature: Vec<u8>,
    /// The receipt key's id.
    pub key_id: String,
}

/// What a recorded screening rests on and how it is proven: the evidence
/// stored with the result, and the key that signs a clear result's receipt.
pub(crate) struct Proof<'a> {
    /// The evidence (its time is replaced by the command's).
    pub evidence: Evidence,
    /// Signs receipts.
    pub signer: &'a ReceiptSigner,
}

/// A screening to record under its `party_ref`: the party as screened, the
/// hits the live indexes found, and the threshold they were judged at.
#[derive(Debug, Clone)]
pub struct RecordScreening {
    /// The party; its `party_ref` names it.
    pub party: PartyRow,
    /// Hits found, best first.
    pub hits: Vec<Hit>,
    /// The review threshold.
    pub threshold: f64,
    /// The list versions searched, the threshold and the matcher version.
    pub evidence: Evidence,
}

/// Records a screening that names a `party_ref` as one command (see
/// [`record_in`]), with its evidence, and signs a receipt when it is clear.
pub async fn record_screening(state: &AppState, actor: Actor, cmd: RecordScreening) -> Result<Recorded> {
    let secrets = state.secrets.clone();
    state
        .command("screening.record", actor, move |tx| {
            let proof = Proof {
                evidence: cmd.evidence,
                signer: &secrets.receipt,
            };
            record_with(
                tx,
                &secrets.ring,
                cmd.party,
                &cmd.hits,
                cmd.threshold,
                Some(proof),
            )
        })
        .await
}

/// Registers (or updates) the party, its identity sealed with `ring`, and
/// on a possible match opens a case and asks for clarification. Entries
/// cleared for this party in their present form do not alert again; a
/// party with a confirmed case is a confirmed match; an open case is reused.
pub(crate) fn record_in(
    tx: &mut Tx<'_>,
    ring: &KeyRing,
    party: PartyRow,
    hits: &[Hit],
    threshold: f64,
) -> Result<Recorded> {
    record_with(tx, ring, party, hits, threshold, None)
}

/// [`record_in`], also storing the result with its evidence when `proof`
/// is given, and signing a receipt for a clear one.
pub(crate) fn record_with(
    tx: &mut Tx<'_>,
    ring: &KeyRing,
    party: PartyRow,
    hits: &[Hit],
    threshold: f64,
    proof: Option<Proof<'_>>,
) -> Result<Recorded> {
    let (outcome, case_id, cleared) = conclude(tx, ring, party.clone(), hits, threshold)?;
    let mut rec = Recorded {
        outcome,
        case_id,
        cleared,
        evidence: None,
        receipt: None,
    };
    if let Some(Proof { mut evidence, signer }) = proof {
        evidence.screened_at = tx.now();
        let id = uuid::Uuid::new_v4().to_string();
        let receipt = (outcome == Outcome::Clear).then(|| {
            let document = ReceiptDocument::clear(&id, &party.party_ref, &evidence).to_text();
            SignedReceipt {
                signature: signer.sign(document.as_bytes()),
                key_id: signer.key_id().to_owned(),
                document,
            }
        });
        let row = result_row(
            id,
            &party.party_ref,
            "screen",
            &rec,
            &evidence,
            hits,
            receipt.as_ref().map(|r| r.key_id.clone()),
        );
        st::insert_result(tx.conn(), &row)?;
        rec.evidence = Some(evidence);
        rec.receipt = receipt;
    }
    Ok(rec)
}

/// The stored form of a result of `party_ref`: hits by source, entry id and
/// score, with the case that cleared each suppressed one.
fn result_row(
    id: String,
    party_ref: &str,
    why: &str,
    rec: &Recorded,
    evidence: &Evidence,
    hits: &[Hit],
    receipt_key_id: Option<String>,
) -> st::ResultRow {
    let hits: Vec<serde_json::Value> = hits
        .iter()
        .map(|h| {
            serde_json::json!({
                "source": h.source,
                "entry_id": h.entry_id,
                "score": h.score,
                "cleared_by_case": rec.cleared.get(&(h.source.clone(), h.entry_id.clone())),
            })
        })
        .collect();
    st::ResultRow {
        id,
        party_ref: party_ref.to_owned(),
        tenant_id: party_tenant(party_ref).map(str::to_owned),
        screened_at_us: to_us(evidence.screened_at),
        why: why.to_owned(),
        outcome: rec.outcome.as_str().to_owned(),
        case_id: rec.case_id.clone(),
        evidence: serde_json::to_string(evidence).unwrap_or_default(),
        hits: serde_json::Value::Array(hits).to_string(),
        receipt_key_id,
    }
}

/// Hits a cleared case suppresses, by `(source, entry_id)`: the case.
type Cleared = HashMap<(String, String), String>;

/// Registers the party and decides the outcome (see [`record_in`]):
/// `(outcome, case, cleared hits with their cases)`.
fn conclude(
    tx: &mut Tx<'_>,
    ring: &KeyRing,
    mut party: PartyRow,
    hits: &[Hit],
    threshold: f64,
) -> Result<(Outcome, Option<String>, Cleared)> {
    lock_party(tx, &party.party_ref)?;
    party.tenant_id = party_tenant(&party.party_ref).map(str::to_owned);
    party.updated_at_us = to_us(tx.now());
    if st::upsert_party(tx.conn(), ring, &party)? {
        tx.audit(
            "screening.party.register",
            &party.party_ref,
            party.tenant_id.as_deref(),
            "",
        )?;
    }
    let cleared = st::clearing_cases(tx.conn(), &party.party_ref, hits)?;
    if let Some(id) = st::confirmed_case(tx.conn(), &party.party_ref)? {
        return Ok((Outcome::ConfirmedMatch, Some(id), cleared));
    }
    let alerting: Vec<Hit> = hits
        .iter()
        .filter(|h| h.score >= threshold)
        .filter(|h| !cleared.contains_key(&(h.source.clone(), h.entry_id.clone())))
        .cloned()
        .collect();
    let out = outcome(alerting.first().map(|h| h.score), threshold, false);
    if out == Outcome::Clear {
        return Ok((out, None, cleared));
    }
    let id = match st::pending_case(tx.conn(), &party.party_ref)? {
        Some(id) => id,
        None => open_case(tx, &party, &alerting, "screen")?,
    };
    Ok((out, Some(id), cleared))
}

/// A case as its readers see it: the resolver's note and the answers to
/// its clarification request opened.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseView {
    /// The case.
    pub case: Case,
    /// The resolver's note, in the clear.
    pub note: String,
    /// The answers, oldest first, in the clear.
    pub answers: Vec<case_answers::CaseAnswer>,
}

/// Opens a case's sealed texts with `ring`.
fn open_view(ring: &KeyRing, case: Case) -> Result<CaseView> {
    let note = case.note.open(ring, &case.id)?;
    let answers = case
        .answers
        .iter()
        .map(|a| a.open(ring, &case.id))
        .collect::<Result<_>>()?;
    Ok(CaseView { case, note, answers })
}

/// A case resolution as the compliance team gives it.
#[derive(Debug, Clone)]
pub struct ResolveCase {
    /// The case.
    pub case_id: String,
    /// CLEARED or CONFIRMED.
    pub to: CaseStatus,
    /// The analyst's reason (sealed at rest).
    pub note: String,
}

/// Resolves a pending case: cleared (each hit's entry is remembered in its
/// present form for this party) or confirmed (the party is blocked), and
/// applies what that means to a sub-processor or tenant party, with its
/// audit event, in one command. Returns the case as it now is.
pub async fn resolve_case(state: &AppState, actor: Actor, cmd: ResolveCase) -> Result<CaseView> {
    let secrets = state.secrets.clone();
    state
        .command("screening.resolve_case", actor, move |tx| {
            let ResolveCase { case_id, to, note } = cmd;
            let party_ref = st::get_case(tx.conn(), &case_id, None)?.party_ref;
            lock_party(tx, &party_ref)?;
            let case = st::get_case(tx.conn(), &case_id, None)?;
            let new = case.status.resolve(to)?;
            let sealed = StoredNote::seal(&secrets.ring, &case_id, &note)?;
            let (now, by) = (tx.now(), tx.actor().sub.clone());
            st::store_resolution(tx.conn(), now, &by, &case, new, &sealed)?;
            effects::apply_resolution(tx, &case.party_ref, new)?;
            // The note is the resolver's reason, kept sealed with the case;
            // the audit event records its length only.
            let detail =
                serde_json::json!({ "party_ref": case.party_ref, "note_chars": note.chars().count() });
            tx.audit(
                &format!("screening.case.{}", new.as_str()),
                &format!("case/{case_id}"),
                case.tenant_id.as_deref(),
                &detail.to_string(),
            )?;
            open_view(&secrets.ring, st::get_case(tx.conn(), &case_id, None)?)
        })
        .await
}

/// Records `text` as an answer to case `case_id` inside the caller's
/// transaction (an inbox reply): the case moves to ANSWERED (a resolved case
/// takes no answer: FAILED_PRECONDITION), the compliance queue is told, and
/// the audit log records the answer's length only. `tenant` limits the
/// cases the caller may answer (None: platform parties' cases only).
pub(crate) fn answer_case(
    tx: &mut Tx<'_>,
    ring: &KeyRing,
    case_id: &str,
    tenant: Option<&str>,
    text: &str,
) -> Result<()> {
    let missing = || Error::not_found("case", case_id.to_string());
    let (_, party_ref) = case_answers::answerable(tx.conn(), case_id, tenant)?.ok_or_else(missing)?;
    lock_party(tx, &party_ref)?;
    let (status, party_ref) = case_answers::answerable(tx.conn(), case_id, tenant)?.ok_or_else(missing)?;
    let next = status.answer()?;
    repo::set_case_status(tx.conn(), case_id, next)?;
    let (now, by) = (tx.now(), tx.actor().sub.clone());
    let seq = case_answers::insert(tx.conn(), now, &by, ring, case_id, text)?;
    tx.envelope(
        &Recipient::System(COMPLIANCE_QUEUE.to_owned()),
        EnvelopeKind::ScreeningClarificationAnswered,
        &serde_json::json!({ "id": case_id, "case_id": case_id, "answer": seq }),
    )?;
    let detail = serde_json::json!({
        "party_ref": party_ref,
        "answer": seq,
        "chars": text.chars().count(),
    });
    tx.audit(
        "screening.case.answer",
        &format!("case/{case_id}"),
        tenant,
        &detail.to_string(),
    )
}

/// A page of the cases `tenant` may see (None: every case), optionally of
/// one status.
pub async fn list_cases(
    state: &AppState,
    tenant: Option<String>,
    status: Option<CaseStatus>,
    page: Page,
) -> Result<Vec<CaseView>> {
    let secrets = state.secrets.clone();
    state
        .store
        .read("screening.list_cases", move |c, _| {
            st::list_cases(c, tenant.as_deref(), status, page.after, page.size)?
                .into_iter()
                .map(|case| open_view(&secrets.ring, case))
                .collect()
        })
        .await
}

/// One case, if `tenant` may see it (None: any case); NOT_FOUND otherwise,
/// so a tenant cannot learn that another tenant's case exists.
pub async fn get_case(state: &AppState, case_id: String, tenant: Option<String>) -> Result<CaseView> {
    let secrets = state.secrets.clone();
    state
        .store
        .read("screening.get_case", move |c, _| {
            open_view(&secrets.ring, st::get_case(c, &case_id, tenant.as_deref())?)
        })
        .await
}

/// A list entry as `GetListEntry` answers it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListEntryView {
    /// Its source.
    pub source: String,
    /// The entry as the latest version holding it has it.
    pub entry: crate::screening::model::ListEntry,
    /// The first version of the source holding it.
    pub first_version: u64,
    /// The latest version of the source holding it.
    pub last_version: u64,
}

/// Entry `entry_id` of `source` with the versions it appeared in; NOT_FOUND
/// naming both when no version of the source held it. List entries are
/// published data, the same for every caller.
pub async fn get_list_entry(state: &AppState, source: String, entry_id: String) -> Result<ListEntryView> {
    state
        .store
        .read("screening.get_list_entry", move |c, _| {
            let (entry, first_version, last_version) = st::entry_versions(c, &source, &entry_id)?
                .ok_or_else(|| Error::Missing(format!("list entry {source}/{entry_id}")))?;
            Ok(ListEntryView {
                source,
                entry,
                first_version,
                last_version,
            })
        })
        .await
}

/// Takes the refresh lease of `source` for `holder` for `lease` (one
/// replica at a time downloads and imports a source), returning the
/// validators of its last download; `None` while another replica holds it.
pub async fn take_refresh_lease(
    store: &Store,
    source: &str,
    holder: &str,
    lease: chrono::Duration,
) -> Result<Option<crate::screening::refresh::Validators>> {
    let (source, holder) = (source.to_owned(), holder.to_owned());
    let taken = store
        .command("screening.refresh_lease", Actor::service(), move |tx| {
            key_lock(tx.conn(), "screening.refresh", &source)?;
            let now = tx.now();
            let until = now.checked_add_signed(lease).unwrap_or(now);
            st::take_fetch_lease(tx.conn(), &source, &holder, to_us(now), to_us(until))
        })
        .await?
        .value;
    Ok(taken.map(|v| serde_json::from_str(&v).unwrap_or_default()))
}

/// Ends `holder`'s refresh lease of `source` with its `outcome`, storing
/// `validators` when the files they describe were imported (or found
/// unchanged).
pub async fn end_refresh_lease(
    store: &Store,
    source: &str,
    holder: &str,
    validators: Option<crate::screening::refresh::Validators>,
    outcome: String,
) -> Result<()> {
    let (source, holder) = (source.to_owned(), holder.to_owned());
    let validators = validators.map(|v| serde_json::to_string(&v).unwrap_or_else(|_| "{}".into()));
    store
        .command("screening.refresh_done", Actor::service(), move |tx| {
            let now = to_us(tx.now());
            st::end_fetch_lease(tx.conn(), &source, &holder, now, validators.as_deref(), &outcome)
        })
        .await?;
    Ok(())
}
