//! Re-encrypts what is sealed with the identifier key ring under its active
//! key, so an old key can leave the ring. Without it a key could never be
//! retired: rows sealed under it (a request's identifiers, export chunks,
//! case answers and notes) would stop opening the day it was removed.
//!
//! Works in batches, each one transaction with its own audit event, so it
//! runs beside live servers: a row is rewritten only if it still carries
//! the key it was read under, so a concurrent close (which deletes the
//! ciphertext) or a second reseal is never overwritten. Rows stored in the
//! clear before sealing existed (export chunks, case notes) are sealed too.
//! A run walks each kind once in key order (a cursor per kind), so a row
//! that does not open is reported and passed over, not retried forever.

use std::collections::BTreeMap;

use diesel::prelude::*;

use super::case_answers::{open_text, seal_text};
use super::schema::screening_case_answers::dsl as ca;
use super::schema::screening_cases::dsl as sc;
use super::schema::subject_export_chunks::dsl as x;
use super::schema::subject_requests::dsl as r;
use super::screening::StoredNote;
use super::subject_requests::{Sealed, open_chunk, seal_chunk};
use super::{DbConnection, audit, chain_lock};
use crate::domain::audit::AuditEntry;
use crate::error::Result;
use crate::secrets::KeyRing;

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
}

impl Kind {
    /// Name used in output and audit details.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::SubjectIdentifiers => "subject identifiers",
            Kind::ExportChunk => "export chunks",
            Kind::CaseAnswer => "case answers",
            Kind::CaseNote => "case notes",
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
}

impl Counts {
    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.subject_identifiers + self.export_chunks + self.case_answers + self.case_notes
    }

    fn bump(&mut self, kind: Kind, n: u64) {
        match kind {
            Kind::SubjectIdentifiers => self.subject_identifiers += n,
            Kind::ExportChunk => self.export_chunks += n,
            Kind::CaseAnswer => self.case_answers += n,
            Kind::CaseNote => self.case_notes += n,
        }
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        self.subject_identifiers += o.subject_identifiers;
        self.export_chunks += o.export_chunks;
        self.case_answers += o.case_answers;
        self.case_notes += o.case_notes;
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

/// Rewrites, after `cursor`, up to `limit` rows of each kind not under the
/// active key (export chunks: at most [`CHUNKS_PER_BATCH`]), in one
/// transaction (the caller's), and audits what it did when it did anything.
pub fn batch(
    conn: &mut DbConnection,
    now: chrono::DateTime<chrono::Utc>,
    actor: AuditEntry,
    ring: &KeyRing,
    limit: i64,
    cursor: &Cursor,
) -> Result<Batch> {
    // Writers that append to the audit chain take its lock first; taking it
    // last, after row locks, could deadlock with one of them on PostgreSQL.
    chain_lock(conn)?;
    let active = ring.active_id().to_owned();
    let mut out = Batch {
        cursor: cursor.clone(),
        ..Batch::default()
    };
    let fail = |out: &mut Batch, kind: Kind, id: String, key: Option<&str>, e: crate::error::Error| {
        out.failed.push(Unopenable {
            kind,
            id,
            key_id: key.map(str::to_owned),
            reason: e.to_string(),
        });
    };

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
                fail(&mut out, Kind::SubjectIdentifiers, id, Some(&sealed.key_id), e);
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

    // Chunks are selected by seq only, then read one at a time.
    let seqs: Vec<i64> = x::subject_export_chunks
        .filter(x::seq.gt(cursor.chunk_seq))
        .filter(x::key_id.ne(&active).or(x::key_id.is_null()))
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
                fail(
                    &mut out,
                    Kind::ExportChunk,
                    format!("{task}/{seq}"),
                    old.as_deref(),
                    e,
                );
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

    let (after_case, after_seq) = cursor.answer.clone();
    let rows: Vec<(String, i64, String, String)> = ca::screening_case_answers
        .filter(
            ca::case_id
                .gt(&after_case)
                .or(ca::case_id.eq(&after_case).and(ca::seq.gt(after_seq))),
        )
        .filter(ca::key_id.ne(&active))
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
                fail(&mut out, Kind::CaseAnswer, format!("{case}/{seq}"), Some(&old), e);
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

    let rows: Vec<(i64, String, String, Option<String>)> = sc::screening_cases
        .filter(sc::seq.gt(cursor.case_seq))
        .filter(sc::note.ne(""))
        .filter(sc::note_key_id.ne(&active).or(sc::note_key_id.is_null()))
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
                fail(&mut out, Kind::CaseNote, case, stored.key_id.as_deref(), e);
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

    if out.resealed.total() > 0 || !out.failed.is_empty() {
        let mut entry = actor;
        entry.action = "keys.reseal".into();
        entry.target = format!("key/{active}");
        entry.detail = serde_json::json!({
            "subject_identifiers": out.resealed.subject_identifiers,
            "export_chunks": out.resealed.export_chunks,
            "case_answers": out.resealed.case_answers,
            "case_notes": out.resealed.case_notes,
            "failed": out.failed.len(),
        })
        .to_string();
        audit::append(conn, now, entry)?;
    }
    Ok(out)
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
/// so check [`pending`] afterwards.
pub async fn run(
    store: &super::Store,
    ring: std::sync::Arc<KeyRing>,
    actor: AuditEntry,
    limit: i64,
) -> Result<Run> {
    let mut total = Run::default();
    let mut cursor = Cursor::default();
    loop {
        let (ring, actor, at) = (ring.clone(), actor.clone(), cursor.clone());
        let b = store
            .write("keys.reseal", move |c, clock| {
                batch(c, clock.now(), actor, &ring, limit, &at)
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
