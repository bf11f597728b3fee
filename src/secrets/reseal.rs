//! Re-encrypts what is sealed with the identifier key ring under its active
//! key, so an old key can leave the ring. Without it a key could never be
//! retired: rows sealed under it (a request's identifiers and reasons,
//! export chunks, task errors, case answers and notes, screened parties,
//! breach texts) would stop opening the day it was removed.
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
use crate::db::schema::breaches::dsl as br;
use crate::db::schema::screening_case_answers::dsl as ca;
use crate::db::schema::screening_cases::dsl as sc;
use crate::db::schema::screening_parties::dsl as pa;
use crate::db::schema::subject_export_chunks::dsl as x;
use crate::db::schema::subject_requests::dsl as r;
use crate::db::schema::subject_tasks::dsl as t;
use crate::db::{DbConnection, chain_lock};
use crate::error::Result;
use crate::screening::case_answers::{open_text, seal_text};
use crate::screening::repo::StoredNote;
use crate::screening::repo::StoredParty;
use crate::secrets::KeyRing;
use crate::secrets::sealed::{Field, StoredText};
use crate::subject_requests::repo::StoredReasons;
use crate::subject_requests::repo::{Sealed, open_chunk, seal_chunk};

/// Export chunks per batch, whatever the batch size: a chunk can be several
/// MiB, and a batch holds the audit chain's lock until it commits.
const CHUNKS_PER_BATCH: i64 = 8;

/// The kinds of sealed rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A subject request's identifiers and message.
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
}

impl Counts {
    /// Every kind with its count, in output order.
    pub fn by_kind(&self) -> [(Kind, u64); 8] {
        [
            (Kind::SubjectIdentifiers, self.subject_identifiers),
            (Kind::ExportChunk, self.export_chunks),
            (Kind::CaseAnswer, self.case_answers),
            (Kind::CaseNote, self.case_notes),
            (Kind::RequestReasons, self.request_reasons),
            (Kind::TaskError, self.task_errors),
            (Kind::ScreenedParty, self.screened_parties),
            (Kind::BreachText, self.breach_texts),
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
    add(
        Kind::SubjectIdentifiers,
        r::subject_requests
            .filter(r::subject_sealed.is_not_null())
            .group_by(r::subject_key_id)
            .select((r::subject_key_id, diesel::dsl::count_star()))
            .load(conn)?,
    );
    add(
        Kind::ExportChunk,
        x::subject_export_chunks
            .group_by(x::key_id)
            .select((x::key_id, diesel::dsl::count_star()))
            .load(conn)?,
    );
    let answers: Vec<(String, i64)> = ca::screening_case_answers
        .group_by(ca::key_id)
        .select((ca::key_id, diesel::dsl::count_star()))
        .load(conn)?;
    add(
        Kind::CaseAnswer,
        answers.into_iter().map(|(k, n)| (Some(k), n)).collect(),
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
    answer: (String, i64),
    case_seq: i64,
    reasons_seq: i64,
    task_seq: i64,
    party_ref: String,
    nature_seq: i64,
    contact_seq: i64,
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
    /// Its id (request, task/chunk, case/answer, case).
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
    // Writers that append to the audit chain take its lock first; taking it
    // last, after row locks, could deadlock with one of them on PostgreSQL.
    chain_lock(conn)?;
    let mut out = Batch {
        cursor: cursor.clone(),
        ..Batch::default()
    };
    if scope == Scope::All {
        // Identifiers and answers were sealed from the start.
        reseal_identifiers(conn, ring, limit, &mut out)?;
        reseal_answers(conn, ring, limit, &mut out)?;
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
