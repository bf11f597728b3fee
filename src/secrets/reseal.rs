//! Re-encrypts what is sealed with the identifier key ring under its active
//! key, so an old key can leave the ring. Without it a key could never be
//! retired: rows sealed under it (a request's identifiers, message and
//! corrections, its reasons, export chunks, task errors, case answers and
//! notes, screened parties, breach texts, authority requests' texts, webhook
//! signing secrets, legal hold texts, logged decisions' subject refs,
//! questions to the controller and their answers, uploaded artefact chunks)
//! would stop opening the day it was removed.
//!
//! Works in batches, each one transaction with its own audit event, so it
//! runs beside live servers: a row is rewritten only if it still carries
//! the key it was read under (or, held in the clear, the text it was read
//! with), so a concurrent close (which deletes the ciphertext), a newer
//! write or a second reseal is never overwritten. Rows stored in the clear
//! before sealing existed are sealed too; [`Scope::ClearOnly`] seals only
//! those, which is what every server does at start and periodically
//! (`jobs::seal_clear_rows`), since a migration has no key to seal with. A
//! run walks each kind once in key order (a cursor per kind), so a row
//! that does not open is reported and passed over, not retried forever.

use std::collections::BTreeMap;

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::Bool;

use crate::audit::model::AuditEntry;
use crate::audit::repo as audit;
use crate::db::schema::authority_requests::dsl as ar;
use crate::db::schema::breaches::dsl as br;
use crate::db::schema::decision_log::dsl as dl;
use crate::db::schema::legal_holds::dsl as lh;
use crate::db::schema::screening_case_answers::dsl as ca;
use crate::db::schema::screening_cases::dsl as sc;
use crate::db::schema::screening_parties::dsl as pa;
use crate::db::schema::subject_artifact_chunks::dsl as ac;
use crate::db::schema::subject_export_chunks::dsl as x;
use crate::db::schema::subject_questions::dsl as sq;
use crate::db::schema::subject_requests::dsl as r;
use crate::db::schema::subject_tasks::dsl as t;
use crate::db::schema::webhooks::dsl as wh;
use crate::db::{DbConnection, chain_lock};
use crate::error::Result;
use crate::screening::case_answers::{open_text, seal_text};
use crate::screening::repo::StoredNote;
use crate::screening::repo::StoredParty;
use crate::secrets::KeyRing;
use crate::secrets::sealed::{Field, StoredText};
use crate::subject_requests::repo::StoredReasons;
use crate::subject_requests::repo::{
    Sealed, open_artifact_chunk, open_chunk, seal_artifact_chunk, seal_chunk,
};
use crate::webhooks::repo::previous_id;

/// Export and artefact chunks per batch, whatever the batch size: a chunk
/// can be several MiB (an artefact's up to one), and a batch is one
/// transaction holding the rows it rewrites until it commits.
const CHUNKS_PER_BATCH: i64 = 8;

/// The kinds of sealed rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A subject request's identifiers, message and (a rectification's)
    /// corrections: one sealed document.
    SubjectIdentifiers,
    /// A chunk of an export bundle.
    ExportChunk,
    /// An answer to a screening case's clarification request.
    CaseAnswer,
    /// An analyst's resolution note on a screening case.
    CaseNote,
    /// A subject request's close and extension reasons.
    RequestReasons,
    /// A fulfilment task's last error.
    TaskError,
    /// A screened party's identity, kept for re-screening.
    ScreenedParty,
    /// A breach's nature or contact point.
    BreachText,
    /// A public authority's request: its legal basis, reference, subject
    /// references, challenge outcome and note.
    AuthorityRequestTexts,
    /// A webhook's signing secret, current or previous.
    WebhookSecret,
    /// A legal hold's subject ref, reason and release reason.
    LegalHoldTexts,
    /// The subject ref a logged decision named.
    DecisionSubject,
    /// A platform system's question to a subject request's controller.
    SubjectQuestion,
    /// The controller's answer to such a question.
    SubjectAnswer,
    /// A chunk of a file a system uploaded for a subject request.
    ArtifactChunk,
}

impl Kind {
    /// Name used in output and audit details.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SubjectIdentifiers => "subject identifiers",
            Kind::ExportChunk => "export chunks",
            Kind::CaseAnswer => "case answers",
            Kind::CaseNote => "case notes",
            Kind::RequestReasons => "request reasons",
            Kind::TaskError => "task errors",
            Kind::ScreenedParty => "screened parties",
            Kind::BreachText => "breach texts",
            Kind::AuthorityRequestTexts => "authority request texts",
            Kind::WebhookSecret => "webhook secrets",
            Kind::LegalHoldTexts => "legal hold texts",
            Kind::DecisionSubject => "decision subjects",
            Kind::SubjectQuestion => "subject questions",
            Kind::SubjectAnswer => "subject answers",
            Kind::ArtifactChunk => "artifact chunks",
        }
    }
}

/// Rows per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Subject requests' sealed identifiers and message.
    pub subject_identifiers: u64,
    /// Chunks of export bundles.
    pub export_chunks: u64,
    /// Answers to screening cases' clarification requests.
    pub case_answers: u64,
    /// Analysts' resolution notes on screening cases.
    pub case_notes: u64,
    /// Subject requests' close and extension reasons.
    pub request_reasons: u64,
    /// Fulfilment tasks' errors.
    pub task_errors: u64,
    /// Screened parties kept for re-screening.
    pub screened_parties: u64,
    /// Breaches' natures and contact points (each counts once).
    pub breach_texts: u64,
    /// Authority requests' texts (one document each).
    pub authority_request_texts: u64,
    /// Webhooks' signing secrets (a current and a previous one count
    /// each).
    pub webhook_secrets: u64,
    /// Legal holds' texts (one document each).
    pub legal_hold_texts: u64,
    /// Logged decisions' subject refs.
    pub decision_subjects: u64,
    /// Questions to controllers.
    pub subject_questions: u64,
    /// Controllers' answers to them.
    pub subject_answers: u64,
    /// Chunks of uploaded artefacts.
    pub artifact_chunks: u64,
}

impl Counts {
    /// Every kind with its count, in output order.
    pub fn by_kind(&self) -> [(Kind, u64); 15] {
        [
            (Kind::SubjectIdentifiers, self.subject_identifiers),
            (Kind::ExportChunk, self.export_chunks),
            (Kind::CaseAnswer, self.case_answers),
            (Kind::CaseNote, self.case_notes),
            (Kind::RequestReasons, self.request_reasons),
            (Kind::TaskError, self.task_errors),
            (Kind::ScreenedParty, self.screened_parties),
            (Kind::BreachText, self.breach_texts),
            (Kind::AuthorityRequestTexts, self.authority_request_texts),
            (Kind::WebhookSecret, self.webhook_secrets),
            (Kind::LegalHoldTexts, self.legal_hold_texts),
            (Kind::DecisionSubject, self.decision_subjects),
            (Kind::SubjectQuestion, self.subject_questions),
            (Kind::SubjectAnswer, self.subject_answers),
            (Kind::ArtifactChunk, self.artifact_chunks),
        ]
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }

    fn slot(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::SubjectIdentifiers => &mut self.subject_identifiers,
            Kind::ExportChunk => &mut self.export_chunks,
            Kind::CaseAnswer => &mut self.case_answers,
            Kind::CaseNote => &mut self.case_notes,
            Kind::RequestReasons => &mut self.request_reasons,
            Kind::TaskError => &mut self.task_errors,
            Kind::ScreenedParty => &mut self.screened_parties,
            Kind::BreachText => &mut self.breach_texts,
            Kind::AuthorityRequestTexts => &mut self.authority_request_texts,
            Kind::WebhookSecret => &mut self.webhook_secrets,
            Kind::LegalHoldTexts => &mut self.legal_hold_texts,
            Kind::DecisionSubject => &mut self.decision_subjects,
            Kind::SubjectQuestion => &mut self.subject_questions,
            Kind::SubjectAnswer => &mut self.subject_answers,
            Kind::ArtifactChunk => &mut self.artifact_chunks,
        }
    }

    fn bump(&mut self, kind: Kind, n: u64) {
        *self.slot(kind) += n;
    }

    /// `"<n> <kind>, ..."` over every kind, for output.
    pub fn describe(&self) -> String {
        self.by_kind()
            .iter()
            .map(|(k, n)| format!("{n} {}", k.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The counts as an audit detail object (numbers only).
    fn detail(&self) -> serde_json::Map<String, serde_json::Value> {
        self.by_kind()
            .iter()
            .map(|(k, n)| (k.as_str().replace(' ', "_"), serde_json::json!(n)))
            .collect()
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        for (kind, n) in o.by_kind() {
            self.bump(kind, n);
        }
    }
}

/// How many rows of each kind each key sealed; `None` is rows kept in the
/// clear from before sealing.
pub type KeyUse = BTreeMap<Option<String>, Counts>;

/// Rows per key and kind, in one read.
pub fn keys_in_use(conn: &mut DbConnection) -> Result<KeyUse> {
    let mut out = KeyUse::new();
    let mut add = |kind: Kind, rows: Vec<(Option<String>, i64)>| {
        for (key, n) in rows {
            out.entry(key)
                .or_default()
                .bump(kind, u64::try_from(n).unwrap_or(0));
        }
    };
    // A column pair sealed from the start: rows holding a ciphertext, by
    // the key that sealed it.
    macro_rules! sealed_uses {
        ($($kind:expr, $table:expr, $sealed:expr, $key:expr;)+) => {$(
            add(
                $kind,
                $table
                    .filter($sealed.is_not_null())
                    .group_by($key)
                    .select(($key.nullable(), diesel::dsl::count_star()))
                    .load(conn)?,
            );
        )+};
    }
    sealed_uses!(Kind::SubjectIdentifiers, r::subject_requests, r::subject_sealed, r::subject_key_id;);
    add(
        Kind::ExportChunk,
        x::subject_export_chunks
            .group_by(x::key_id)
            .select((x::key_id, diesel::dsl::count_star()))
            .load(conn)?,
    );
    sealed_uses!(
        Kind::CaseAnswer, ca::screening_case_answers, ca::text, ca::key_id;
        Kind::WebhookSecret, wh::webhooks, wh::secret_sealed, wh::secret_key_id;
        Kind::WebhookSecret, wh::webhooks, wh::previous_secret_sealed, wh::previous_secret_key_id;
        Kind::LegalHoldTexts, lh::legal_holds, lh::texts_sealed, lh::texts_key_id;
        Kind::DecisionSubject, dl::decision_log, dl::subject_sealed, dl::subject_key_id;
        Kind::SubjectQuestion, sq::subject_questions, sq::question_sealed, sq::question_key_id;
        Kind::SubjectAnswer, sq::subject_questions, sq::answer_sealed, sq::answer_key_id;
        Kind::ArtifactChunk, ac::subject_artifact_chunks, ac::data, ac::key_id;
    );
    add(
        Kind::CaseNote,
        sc::screening_cases
            .filter(sc::note.ne(""))
            .group_by(sc::note_key_id)
            .select((sc::note_key_id, diesel::dsl::count_star()))
            .load(conn)?,
    );
    // The sealed free text: a row still clear counts as clear whatever
    // ciphertext it also holds (the clear text is the newer one).
    macro_rules! sealed_text_uses {
        ($kind:expr, $table:expr, $sealed:expr, $key:expr, $clear:literal, $blank:literal) => {
            let clear: i64 = $table
                .filter(sql::<Bool>($clear))
                .count()
                .get_result(conn)?;
            add($kind, vec![(None, clear)]);
            add(
                $kind,
                $table
                    .filter($sealed.is_not_null())
                    .filter(sql::<Bool>($blank))
                    .group_by($key)
                    .select(($key, diesel::dsl::count_star()))
                    .load(conn)?,
            );
        };
    }
    sealed_text_uses!(
        Kind::RequestReasons,
        r::subject_requests,
        r::reasons_sealed,
        r::reasons_key_id,
        "(close_reason <> '' OR extension_reason <> '')",
        "COALESCE(close_reason, '') = '' AND COALESCE(extension_reason, '') = ''"
    );
    sealed_text_uses!(
        Kind::TaskError,
        t::subject_tasks,
        t::error_sealed,
        t::error_key_id,
        "error <> ''",
        "COALESCE(error, '') = ''"
    );
    sealed_text_uses!(
        Kind::ScreenedParty,
        pa::screening_parties,
        pa::sealed,
        pa::key_id,
        "name <> ''",
        "name = ''"
    );
    sealed_text_uses!(
        Kind::BreachText,
        br::breaches,
        br::nature_sealed,
        br::nature_key_id,
        "nature <> ''",
        "nature = ''"
    );
    sealed_text_uses!(
        Kind::BreachText,
        br::breaches,
        br::contact_point_sealed,
        br::contact_point_key_id,
        "contact_point <> ''",
        "contact_point = ''"
    );
    sealed_text_uses!(
        Kind::AuthorityRequestTexts,
        ar::authority_requests,
        ar::texts_sealed,
        ar::texts_key_id,
        "texts <> ''",
        "texts = ''"
    );
    out.retain(|_, c| c.total() > 0);
    Ok(out)
}

/// Of `uses`, the rows not under `active`: what a reseal has left to do.
pub fn pending(uses: &KeyUse, active: &str) -> Counts {
    let mut left = Counts::default();
    for (key, c) in uses {
        if key.as_deref() != Some(active) {
            left += *c;
        }
    }
    left
}

/// Where a run has got to in each kind: rows at or before are done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    request_seq: i64,
    chunk_seq: i64,
    artifact_chunk: (String, i64),
    answer: (String, i64),
    case_seq: i64,
    reasons_seq: i64,
    task_seq: i64,
    party_ref: String,
    nature_seq: i64,
    contact_seq: i64,
    authority_request_seq: i64,
    webhook_id: String,
    previous_webhook_id: String,
    hold_id: String,
    decision_seq: i64,
    question_id: String,
    answer_id: String,
}

/// Which rows a batch rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every row not under the active key, clear ones included: retiring
    /// a key (`proctor keys reseal`).
    All,
    /// Only rows still held in the clear: what servers do by themselves,
    /// touching nothing another key sealed.
    ClearOnly,
}

/// A row that did not open (a key missing from the ring, or a corrupt
/// ciphertext): left as it is, for the operator to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unopenable {
    /// What kind of row.
    pub kind: Kind,
    /// Its id (request, task/chunk, case/answer, case, webhook or
    /// webhook/previous, hold, decision, question, artefact/chunk).
    pub id: String,
    /// The key it names.
    pub key_id: Option<String>,
    /// Why it did not open.
    pub reason: String,
}

/// What one batch did.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Rows rewritten under the active key.
    pub resealed: Counts,
    /// Rows that did not open.
    pub failed: Vec<Unopenable>,
    /// Rows looked at; 0 when the run is through.
    pub visited: usize,
    /// Where the next batch starts.
    pub cursor: Cursor,
}

impl Batch {
    fn fail(&mut self, kind: Kind, id: String, key: Option<&str>, e: crate::error::Error) {
        self.failed.push(Unopenable {
            kind,
            id,
            key_id: key.map(str::to_owned),
            reason: e.to_string(),
        });
    }
}

/// Rewrites, after `cursor`, up to `limit` rows of each kind in `scope`
/// (export chunks: at most [`CHUNKS_PER_BATCH`]), in one transaction (the
/// caller's), and audits what it did when it did anything.
pub fn batch(
    conn: &mut DbConnection,
    now: chrono::DateTime<chrono::Utc>,
    actor: AuditEntry,
    ring: &KeyRing,
    scope: Scope,
    limit: i64,
    cursor: &Cursor,
) -> Result<Batch> {
    // Two reseals (a CLI run and a server's clear-row sealing) take turns
    // batch by batch on PostgreSQL; commands never take this lock.
    chain_lock(conn)?;
    let mut out = Batch {
        cursor: cursor.clone(),
        ..Batch::default()
    };
    if scope == Scope::All {
        // These were sealed from the start: nothing of theirs is clear.
        reseal_identifiers(conn, ring, limit, &mut out)?;
        reseal_answers(conn, ring, limit, &mut out)?;
        reseal_always_sealed(conn, ring, limit, &mut out)?;
        reseal_artifact_chunks(conn, ring, limit, &mut out)?;
    }
    reseal_chunks(conn, ring, scope, limit, &mut out)?;
    reseal_notes(conn, ring, scope, limit, &mut out)?;
    reseal_reasons(conn, ring, scope, limit, &mut out)?;
    reseal_texts(conn, ring, scope, limit, &mut out)?;
    reseal_parties(conn, ring, scope, limit, &mut out)?;

    if out.resealed.total() > 0 || !out.failed.is_empty() {
        let mut entry = actor;
        entry.action = match scope {
            Scope::All => "keys.reseal",
            Scope::ClearOnly => "keys.seal_clear",
        }
        .into();
        entry.target = format!("key/{}", ring.active_id());
        let mut detail = out.resealed.detail();
        detail.insert("failed".into(), serde_json::json!(out.failed.len()));
        entry.detail = serde_json::Value::Object(detail).to_string();
        audit::append(conn, now, entry)?;
    }
    Ok(out)
}

fn reseal_identifiers(conn: &mut DbConnection, ring: &KeyRing, limit: i64, out: &mut Batch) -> Result<()> {
    let cursor = out.cursor.clone();
    let active = ring.active_id();
    let rows: Vec<(i64, String, String, String)> = r::subject_requests
        .filter(r::seq.gt(cursor.request_seq))
        .filter(r::subject_sealed.is_not_null())
        .filter(r::subject_key_id.ne(&active))
        .select((
            r::seq,
            r::id,
            r::subject_key_id.assume_not_null(),
            r::subject_sealed.assume_not_null(),
        ))
        .order(r::seq.asc())
        .limit(limit)
        .load(conn)?;
    for (seq, id, old, data) in rows {
        out.visited += 1;
        out.cursor.request_seq = seq;
        let sealed = Sealed { key_id: old, data };
        let resealed = match sealed.open(ring, &id).and_then(|p| Sealed::seal(ring, &id, &p)) {
            Ok(s) => s,
            Err(e) => {
                out.fail(Kind::SubjectIdentifiers, id, Some(&sealed.key_id), e);
                continue;
            }
        };
        let n = diesel::update(
            r::subject_requests
                .filter(r::id.eq(&id))
                .filter(r::subject_key_id.eq(&sealed.key_id)),
        )
        .set((
            r::subject_key_id.eq(&resealed.key_id),
            r::subject_sealed.eq(&resealed.data),
        ))
        .execute(conn)?;
        out.resealed.bump(Kind::SubjectIdentifiers, n as u64);
    }
    Ok(())
}

fn reseal_chunks(
    conn: &mut DbConnection,
    ring: &KeyRing,
    scope: Scope,
    limit: i64,
    out: &mut Batch,
) -> Result<()> {
    let active = ring.active_id();
    // Chunks are selected by seq only, then read one at a time.
    let q = x::subject_export_chunks
        .filter(x::seq.gt(out.cursor.chunk_seq))
        .into_boxed();
    let q = match scope {
        Scope::All => q.filter(x::key_id.ne(active).or(x::key_id.is_null())),
        Scope::ClearOnly => q.filter(x::key_id.is_null()),
    };
    let seqs: Vec<i64> = q
        .select(x::seq)
        .order(x::seq.asc())
        .limit(limit.min(CHUNKS_PER_BATCH))
        .load(conn)?;
    for seq in seqs {
        out.visited += 1;
        out.cursor.chunk_seq = seq;
        let Some((task, data, old)) = x::subject_export_chunks
            .filter(x::seq.eq(seq))
            .select((x::task_id, x::data, x::key_id))
            .first::<(String, Vec<u8>, Option<String>)>(conn)
            .optional()?
        else {
            continue;
        };
        let resealed =
            open_chunk(ring, &task, seq, data, old.as_deref()).and_then(|p| seal_chunk(ring, &task, &p));
        let (key, bytes) = match resealed {
            Ok(k) => k,
            Err(e) => {
                out.fail(Kind::ExportChunk, format!("{task}/{seq}"), old.as_deref(), e);
                continue;
            }
        };
        let target = x::subject_export_chunks.filter(x::seq.eq(seq));
        let set = (x::key_id.eq(Some(&key)), x::data.eq(&bytes));
        let n = match &old {
            None => diesel::update(target.filter(x::key_id.is_null()))
                .set(set)
                .execute(conn)?,
            Some(k) => diesel::update(target.filter(x::key_id.eq(k)))
                .set(set)
                .execute(conn)?,
        };
        out.resealed.bump(Kind::ExportChunk, n as u64);
    }
    Ok(())
}

fn reseal_answers(conn: &mut DbConnection, ring: &KeyRing, limit: i64, out: &mut Batch) -> Result<()> {
    let active = ring.active_id();
    let (after_case, after_seq) = out.cursor.answer.clone();
    let rows: Vec<(String, i64, String, String)> = ca::screening_case_answers
        .filter(
            ca::case_id
                .gt(&after_case)
                .or(ca::case_id.eq(&after_case).and(ca::seq.gt(after_seq))),
        )
        .filter(ca::key_id.ne(active))
        .select((ca::case_id, ca::seq, ca::key_id, ca::text))
        .order((ca::case_id.asc(), ca::seq.asc()))
        .limit(limit)
        .load(conn)?;
    for (case, seq, old, sealed) in rows {
        out.visited += 1;
        out.cursor.answer = (case.clone(), seq);
        let resealed = open_text(ring, &case, &old, &sealed).and_then(|t| seal_text(ring, &case, &t));
        let (key, text) = match resealed {
            Ok(k) => k,
            Err(e) => {
                out.fail(Kind::CaseAnswer, format!("{case}/{seq}"), Some(&old), e);
                continue;
            }
        };
        let n = diesel::update(
            ca::screening_case_answers
                .filter(ca::case_id.eq(&case))
                .filter(ca::seq.eq(seq))
                .filter(ca::key_id.eq(&old)),
        )
        .set((ca::key_id.eq(&key), ca::text.eq(&text)))
        .execute(conn)?;
        out.resealed.bump(Kind::CaseAnswer, n as u64);
    }
    Ok(())
}

fn reseal_notes(
    conn: &mut DbConnection,
    ring: &KeyRing,
    scope: Scope,
    limit: i64,
    out: &mut Batch,
) -> Result<()> {
    let active = ring.active_id();
    let q = sc::screening_cases
        .filter(sc::seq.gt(out.cursor.case_seq))
        .filter(sc::note.ne(""))
        .into_boxed();
    let q = match scope {
        Scope::All => q.filter(sc::note_key_id.ne(active).or(sc::note_key_id.is_null())),
        Scope::ClearOnly => q.filter(sc::note_key_id.is_null()),
    };
    let rows: Vec<(i64, String, String, Option<String>)> = q
        .select((sc::seq, sc::id, sc::note, sc::note_key_id))
        .order(sc::seq.asc())
        .limit(limit)
        .load(conn)?;
    for (seq, case, body, old) in rows {
        out.visited += 1;
        out.cursor.case_seq = seq;
        let stored = StoredNote { key_id: old, body };
        let resealed = match stored
            .open(ring, &case)
            .and_then(|t| StoredNote::seal(ring, &case, &t))
        {
            Ok(n) => n,
            Err(e) => {
                out.fail(Kind::CaseNote, case, stored.key_id.as_deref(), e);
                continue;
            }
        };
        let target = sc::screening_cases.filter(sc::id.eq(&case));
        let set = (sc::note_key_id.eq(&resealed.key_id), sc::note.eq(&resealed.body));
        let n = match &stored.key_id {
            None => diesel::update(target.filter(sc::note_key_id.is_null()))
                .set(set)
                .execute(conn)?,
            Some(k) => diesel::update(target.filter(sc::note_key_id.eq(k)))
                .set(set)
                .execute(conn)?,
        };
        out.resealed.bump(Kind::CaseNote, n as u64);
    }
    Ok(())
}

/// The SQL test "this request still holds a reason in the clear" (the
/// predicate of the partial index that finds such rows).
const CLEAR_REASONS: &str = "(close_reason <> '' OR extension_reason <> '')";

fn reseal_reasons(
    conn: &mut DbConnection,
    ring: &KeyRing,
    scope: Scope,
    limit: i64,
    out: &mut Batch,
) -> Result<()> {
    let active = ring.active_id();
    let q = r::subject_requests
        .filter(r::seq.gt(out.cursor.reasons_seq))
        .into_boxed();
    let q = match scope {
        Scope::ClearOnly => q.filter(sql::<Bool>(CLEAR_REASONS)),
        Scope::All => q.filter(
            sql::<Bool>(CLEAR_REASONS).or(r::reasons_sealed.is_not_null().and(r::reasons_key_id.ne(active))),
        ),
    };
    type ReasonRow = (
        i64,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<ReasonRow> = q
        .select((
            r::seq,
            r::id,
            r::close_reason,
            r::extension_reason,
            r::reasons_key_id,
            r::reasons_sealed,
        ))
        .order(r::seq.asc())
        .limit(limit)
        .load(conn)?;
    for (seq, id, close_clear, extension_clear, key_id, sealed) in rows {
        out.visited += 1;
        out.cursor.reasons_seq = seq;
        let stored = StoredReasons {
            close_clear,
            extension_clear,
            key_id,
            sealed,
        };
        let new = match stored.open(ring, &id).and_then(|t| t.seal(ring, &id)) {
            Ok(n) => n,
            Err(e) => {
                out.fail(Kind::RequestReasons, id, stored.key_id.as_deref(), e);
                continue;
            }
        };
        let mut target = diesel::update(r::subject_requests)
            .filter(r::seq.eq(seq))
            .into_boxed();
        let n = if stored.is_clear() {
            // Unless a newer write changed them since they were read.
            target = match &stored.close_clear {
                Some(v) => target.filter(r::close_reason.eq(v.clone())),
                None => target.filter(r::close_reason.is_null()),
            };
            target = match &stored.extension_clear {
                Some(v) => target.filter(r::extension_reason.eq(v.clone())),
                None => target.filter(r::extension_reason.is_null()),
            };
            target
                .set((
                    r::close_reason.eq(None::<String>),
                    r::extension_reason.eq(None::<String>),
                    r::reasons_sealed.eq(&new.sealed),
                    r::reasons_key_id.eq(&new.key_id),
                ))
                .execute(conn)?
        } else {
            target
                .filter(r::reasons_key_id.eq(stored.key_id.clone()))
                .set((
                    r::reasons_sealed.eq(&new.sealed),
                    r::reasons_key_id.eq(&new.key_id),
                ))
                .execute(conn)?
        };
        out.resealed.bump(Kind::RequestReasons, n as u64);
    }
    Ok(())
}

/// Reseals one [`StoredText`] column pair of a table with `seq` and `id`
/// columns: `$clear` is the old clear column, `$still_clear` the SQL test
/// that it holds text (the partial index's predicate), `$blank` what a
/// sealed row stores in it.
macro_rules! reseal_text {
    ($conn:expr, $ring:expr, $scope:expr, $limit:expr, $out:expr, $cursor:ident, $kind:expr, $field:expr,
     $table:expr, $seq:expr, $id:expr, $clear:expr, $sealed:expr, $key:expr, $still_clear:literal, $blank:expr) => {{
        let active = $ring.active_id();
        let q = $table.filter($seq.gt($out.cursor.$cursor)).into_boxed();
        let q = match $scope {
            Scope::ClearOnly => q.filter(sql::<Bool>($still_clear)),
            Scope::All => q.filter(sql::<Bool>($still_clear).or($sealed.is_not_null().and($key.ne(active)))),
        };
        let rows: Vec<(i64, String, Option<String>, Option<String>, Option<String>)> = q
            .select(($seq, $id, $clear.nullable(), $key, $sealed))
            .order($seq.asc())
            .limit($limit)
            .load($conn)?;
        for (seq, id, clear, key_id, sealed) in rows {
            $out.visited += 1;
            $out.cursor.$cursor = seq;
            let stored = StoredText::from_columns(clear, key_id, sealed);
            let new = match stored
                .open($ring, $field, &id)
                .and_then(|t| StoredText::seal($ring, $field, &id, &t))
            {
                Ok(n) => n,
                Err(e) => {
                    $out.fail($kind, id, stored.key_id.as_deref(), e);
                    continue;
                }
            };
            let target = diesel::update($table).filter($seq.eq(seq));
            let n = match (stored.clear_text(), &stored.key_id) {
                // Unless a newer write changed it since it was read.
                (Some(text), _) => target
                    .filter($clear.eq(text))
                    .set(($clear.eq($blank), $sealed.eq(&new.sealed), $key.eq(&new.key_id)))
                    .execute($conn)?,
                (None, Some(old)) => target
                    .filter($key.eq(old))
                    .set(($sealed.eq(&new.sealed), $key.eq(&new.key_id)))
                    .execute($conn)?,
                (None, None) => 0,
            };
            $out.resealed.bump($kind, n as u64);
        }
    }};
}

fn reseal_texts(
    conn: &mut DbConnection,
    ring: &KeyRing,
    scope: Scope,
    limit: i64,
    out: &mut Batch,
) -> Result<()> {
    reseal_text!(
        conn,
        ring,
        scope,
        limit,
        out,
        task_seq,
        Kind::TaskError,
        Field::TaskError,
        t::subject_tasks,
        t::seq,
        t::id,
        t::error,
        t::error_sealed,
        t::error_key_id,
        "error <> ''",
        None::<String>
    );
    reseal_text!(
        conn,
        ring,
        scope,
        limit,
        out,
        nature_seq,
        Kind::BreachText,
        Field::BreachNature,
        br::breaches,
        br::seq,
        br::id,
        br::nature,
        br::nature_sealed,
        br::nature_key_id,
        "nature <> ''",
        ""
    );
    reseal_text!(
        conn,
        ring,
        scope,
        limit,
        out,
        contact_seq,
        Kind::BreachText,
        Field::BreachContactPoint,
        br::breaches,
        br::seq,
        br::id,
        br::contact_point,
        br::contact_point_sealed,
        br::contact_point_key_id,
        "contact_point <> ''",
        ""
    );
    reseal_text!(
        conn,
        ring,
        scope,
        limit,
        out,
        authority_request_seq,
        Kind::AuthorityRequestTexts,
        Field::AuthorityRequestTexts,
        ar::authority_requests,
        ar::seq,
        ar::id,
        ar::texts,
        ar::texts_sealed,
        ar::texts_key_id,
        "texts <> ''",
        ""
    );
    Ok(())
}

/// Reseals column pairs sealed from the start (no clear form), one pair
/// per entry: `cursor: kind, field, bind, table, pos => pos type, id, key,
/// sealed;`. Each walks its table in `pos` order from its cursor, over rows
/// holding a ciphertext under another key than the active one. `bind` maps
/// a row's id to what its ciphertext is bound to (the AAD is
/// `field.aad(bind)`) and what a failure names. A row is rewritten only if
/// it still holds the key and the ciphertext it was read with.
macro_rules! reseal_sealed {
    ($conn:expr, $ring:expr, $limit:expr, $out:expr;
     $($cursor:ident: $kind:expr, $field:expr, $bind:expr, $table:expr,
       $pos:expr => $pos_ty:ty, $id:expr, $key:expr, $sealed:expr;)+) => {{
        let active = $ring.active_id();
        $({
            let rows: Vec<($pos_ty, String, Option<String>, Option<String>)> = $table
                .filter($pos.gt(&$out.cursor.$cursor))
                .filter($sealed.is_not_null())
                .filter($key.ne(active))
                .select(($pos, $id, $key.nullable(), $sealed.nullable()))
                .order($pos.asc())
                .limit($limit)
                .load($conn)?;
            for (pos, id, key, sealed) in rows {
                $out.visited += 1;
                $out.cursor.$cursor.clone_from(&pos);
                let (Some(old), Some(data)) = (key, sealed) else {
                    continue;
                };
                let bind: String = $bind(id.as_str());
                let aad = $field.aad(&bind);
                let (new_key, new_data) = match $ring.open(&old, &data, &aad).and_then(|p| $ring.seal(&p, &aad)) {
                    Ok(n) => n,
                    Err(e) => {
                        $out.fail($kind, bind, Some(&old), e);
                        continue;
                    }
                };
                let n = diesel::update($table)
                    .filter($pos.eq(&pos))
                    .filter($key.eq(&old))
                    .filter($sealed.eq(&data))
                    .set(($key.eq(&new_key), $sealed.eq(&new_data)))
                    .execute($conn)?;
                $out.resealed.bump($kind, n as u64);
            }
        })+
    }};
}

/// The kinds sealed from the start with a [`Field`] label: webhook
/// secrets (the previous one bound to `<id>/previous`), legal hold texts,
/// decision subjects, questions and answers.
fn reseal_always_sealed(conn: &mut DbConnection, ring: &KeyRing, limit: i64, out: &mut Batch) -> Result<()> {
    let same = str::to_owned;
    reseal_sealed!(conn, ring, limit, out;
        webhook_id: Kind::WebhookSecret, Field::WebhookSecret, same, wh::webhooks,
            wh::id => String, wh::id, wh::secret_key_id, wh::secret_sealed;
        previous_webhook_id: Kind::WebhookSecret, Field::WebhookSecret, previous_id, wh::webhooks,
            wh::id => String, wh::id, wh::previous_secret_key_id, wh::previous_secret_sealed;
        hold_id: Kind::LegalHoldTexts, Field::LegalHoldTexts, same, lh::legal_holds,
            lh::id => String, lh::id, lh::texts_key_id, lh::texts_sealed;
        decision_seq: Kind::DecisionSubject, Field::DecisionSubject, same, dl::decision_log,
            dl::seq => i64, dl::decision_id, dl::subject_key_id, dl::subject_sealed;
        question_id: Kind::SubjectQuestion, Field::SubjectQuestion, same, sq::subject_questions,
            sq::id => String, sq::id, sq::question_key_id, sq::question_sealed;
        answer_id: Kind::SubjectAnswer, Field::SubjectAnswer, same, sq::subject_questions,
            sq::id => String, sq::id, sq::answer_key_id, sq::answer_sealed;
    );
    Ok(())
}

/// Artefact chunks, like export chunks: keys selected first, then one
/// chunk read and rewritten at a time, at most [`CHUNKS_PER_BATCH`].
fn reseal_artifact_chunks(
    conn: &mut DbConnection,
    ring: &KeyRing,
    limit: i64,
    out: &mut Batch,
) -> Result<()> {
    let active = ring.active_id();
    let (after_file, after_idx) = out.cursor.artifact_chunk.clone();
    let keys: Vec<(String, i64)> = ac::subject_artifact_chunks
        .filter(
            ac::artifact_id
                .gt(&after_file)
                .or(ac::artifact_id.eq(&after_file).and(ac::idx.gt(after_idx))),
        )
        .filter(ac::key_id.ne(active))
        .select((ac::artifact_id, ac::idx))
        .order((ac::artifact_id.asc(), ac::idx.asc()))
        .limit(limit.min(CHUNKS_PER_BATCH))
        .load(conn)?;
    for (file, idx) in keys {
        out.visited += 1;
        out.cursor.artifact_chunk = (file.clone(), idx);
        let chunk = ac::subject_artifact_chunks
            .filter(ac::artifact_id.eq(&file))
            .filter(ac::idx.eq(idx));
        let Some((old, data)) = chunk
            .select((ac::key_id, ac::data))
            .first::<(String, String)>(conn)
            .optional()?
        else {
            continue;
        };
        let resealed = open_artifact_chunk(ring, &file, idx, &old, &data)
            .and_then(|p| seal_artifact_chunk(ring, &file, idx, &p));
        let (key, sealed) = match resealed {
            Ok(k) => k,
            Err(e) => {
                out.fail(Kind::ArtifactChunk, format!("{file}/{idx}"), Some(&old), e);
                continue;
            }
        };
        let n = diesel::update(chunk.filter(ac::key_id.eq(&old)))
            .set((ac::key_id.eq(&key), ac::data.eq(&sealed)))
            .execute(conn)?;
        out.resealed.bump(Kind::ArtifactChunk, n as u64);
    }
    Ok(())
}

fn reseal_parties(
    conn: &mut DbConnection,
    ring: &KeyRing,
    scope: Scope,
    limit: i64,
    out: &mut Batch,
) -> Result<()> {
    let active = ring.active_id();
    let q = pa::screening_parties
        .filter(pa::party_ref.gt(out.cursor.party_ref.clone()))
        .into_boxed();
    let q = match scope {
        Scope::ClearOnly => q.filter(sql::<Bool>("name <> ''")),
        Scope::All => {
            q.filter(sql::<Bool>("name <> ''").or(pa::sealed.is_not_null().and(pa::key_id.ne(active))))
        }
    };
    let rows: Vec<StoredParty> = q.order(pa::party_ref.asc()).limit(limit).load(conn)?;
    for stored in rows {
        out.visited += 1;
        out.cursor.party_ref.clone_from(&stored.party_ref);
        let new = match stored.open(ring).and_then(|p| p.seal(ring)) {
            Ok(n) => n,
            Err(e) => {
                out.fail(Kind::ScreenedParty, stored.party_ref, stored.key_id.as_deref(), e);
                continue;
            }
        };
        let target = diesel::update(pa::screening_parties).filter(pa::party_ref.eq(&stored.party_ref));
        let n = if stored.is_clear() {
            // Unless a newer screening rewrote it since it was read.
            target
                .filter(pa::name.eq(&stored.name))
                .filter(pa::date_of_birth.eq(&stored.date_of_birth))
                .filter(pa::country.eq(&stored.country))
                .filter(pa::aliases.eq(&stored.aliases))
                .set((
                    pa::name.eq(&new.name),
                    pa::date_of_birth.eq(&new.date_of_birth),
                    pa::country.eq(&new.country),
                    pa::aliases.eq(&new.aliases),
                    pa::sealed.eq(&new.sealed),
                    pa::key_id.eq(&new.key_id),
                ))
                .execute(conn)?
        } else {
            target
                .filter(pa::key_id.eq(stored.key_id.clone()))
                .set((pa::sealed.eq(&new.sealed), pa::key_id.eq(&new.key_id)))
                .execute(conn)?
        };
        out.resealed.bump(Kind::ScreenedParty, n as u64);
    }
    Ok(())
}

/// What a whole run did.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Rows rewritten under the active key.
    pub resealed: Counts,
    /// Rows that did not open, left as they were.
    pub failed: Vec<Unopenable>,
}

/// Reseals batch after batch (each its own transaction) until every kind
/// has been walked once. Rows a concurrent change took away are skipped,
/// so check [`pending`] afterwards. `ring` is anything that lends the key
/// ring (an `Arc<KeyRing>`, or the server's secrets).
pub async fn run<R>(
    store: &crate::db::Store,
    ring: R,
    actor: AuditEntry,
    scope: Scope,
    limit: i64,
) -> Result<Run>
where
    R: std::borrow::Borrow<KeyRing> + Clone + Send + 'static,
{
    let mut total = Run::default();
    let mut cursor = Cursor::default();
    loop {
        let (ring, actor, at) = (ring.clone(), actor.clone(), cursor.clone());
        let b = store
            .write("keys.reseal", move |c, clock| {
                batch(c, clock.now(), actor, ring.borrow(), scope, limit, &at)
            })
            .await?;
        if b.visited == 0 {
            return Ok(total);
        }
        total.resealed += b.resealed;
        total.failed.extend(b.failed);
        cursor = b.cursor;
    }
}
