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

use diesel::prelude::*;

use super::schema::screening_case_answers::dsl as ca;
use super::schema::screening_cases::dsl as sc;
use super::schema::subject_export_chunks::dsl as x;
use super::schema::subject_requests::dsl as r;
use super::{DbConnection, audit};
use crate::domain::audit::AuditEntry;
use crate::error::{Error, Result};
use crate::secrets::KeyRing;

/// How many rows of each kind one batch rewrote, or (from [`pending`]) how
/// many still wait.
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
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Self) {
        self.subject_identifiers += o.subject_identifiers;
        self.export_chunks += o.export_chunks;
        self.case_answers += o.case_answers;
        self.case_notes += o.case_notes;
    }
}

/// How many sealed rows are not under `ring`'s active key (or not sealed).
pub fn pending(conn: &mut DbConnection, ring: &KeyRing) -> Result<Counts> {
    let active = ring.active_id();
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(Counts {
        subject_identifiers: count(
            r::subject_requests
                .filter(r::subject_sealed.is_not_null())
                .filter(r::subject_key_id.ne(active))
                .count()
                .get_result(conn)?,
        ),
        export_chunks: count(
            x::subject_export_chunks
                .filter(x::key_id.ne(active).or(x::key_id.is_null()))
                .count()
                .get_result(conn)?,
        ),
        case_answers: count(
            ca::screening_case_answers
                .filter(ca::key_id.ne(active))
                .count()
                .get_result(conn)?,
        ),
        case_notes: count(
            sc::screening_cases
                .filter(sc::note.ne(""))
                .filter(sc::note_key_id.ne(active).or(sc::note_key_id.is_null()))
                .count()
                .get_result(conn)?,
        ),
    })
}

/// Rewrites up to `limit` rows of each kind under the active key, in one
/// transaction (the caller's), and audits what it did when it did anything.
pub fn batch(
    conn: &mut DbConnection,
    now: chrono::DateTime<chrono::Utc>,
    actor: AuditEntry,
    ring: &KeyRing,
    limit: i64,
) -> Result<Counts> {
    // Writers that append to the audit chain take its lock first; taking it
    // last, after row locks, could deadlock with one of them on PostgreSQL.
    super::chain_lock(conn)?;
    let active = ring.active_id().to_owned();
    let mut done = Counts::default();

    let rows: Vec<(String, String, String)> = r::subject_requests
        .filter(r::subject_sealed.is_not_null())
        .filter(r::subject_key_id.ne(&active))
        .select((
            r::id,
            r::subject_key_id.assume_not_null(),
            r::subject_sealed.assume_not_null(),
        ))
        .order(r::seq.asc())
        .limit(limit)
        .load(conn)?;
    for (id, old, sealed) in rows {
        let plain = ring.open(&old, &sealed, id.as_bytes())?;
        let (key, resealed) = ring.seal(&plain, id.as_bytes())?;
        done.subject_identifiers += diesel::update(
            r::subject_requests
                .filter(r::id.eq(&id))
                .filter(r::subject_key_id.eq(&old)),
        )
        .set((r::subject_key_id.eq(&key), r::subject_sealed.eq(&resealed)))
        .execute(conn)? as u64;
    }

    let rows: Vec<(i64, String, Vec<u8>, Option<String>)> = x::subject_export_chunks
        .filter(x::key_id.ne(&active).or(x::key_id.is_null()))
        .select((x::seq, x::task_id, x::data, x::key_id))
        .order(x::seq.asc())
        .limit(limit)
        .load(conn)?;
    for (seq, task, data, old) in rows {
        let plain = match &old {
            None => data,
            Some(k) => {
                let sealed = String::from_utf8(data)
                    .map_err(|_| Error::Internal(format!("export chunk {seq} is corrupt")))?;
                ring.open(k, &sealed, task.as_bytes())?
            }
        };
        let (key, resealed) = ring.seal(&plain, task.as_bytes())?;
        let target = x::subject_export_chunks.filter(x::seq.eq(seq));
        let set = (x::key_id.eq(Some(&key)), x::data.eq(resealed.as_bytes()));
        done.export_chunks += match &old {
            None => diesel::update(target.filter(x::key_id.is_null()))
                .set(set)
                .execute(conn)?,
            Some(k) => diesel::update(target.filter(x::key_id.eq(k)))
                .set(set)
                .execute(conn)?,
        } as u64;
    }

    let rows: Vec<(String, i64, String, String)> = ca::screening_case_answers
        .filter(ca::key_id.ne(&active))
        .select((ca::case_id, ca::seq, ca::key_id, ca::text))
        .order((ca::case_id.asc(), ca::seq.asc()))
        .limit(limit)
        .load(conn)?;
    for (case, seq, old, sealed) in rows {
        let plain = ring.open(&old, &sealed, case.as_bytes())?;
        let (key, resealed) = ring.seal(&plain, case.as_bytes())?;
        done.case_answers += diesel::update(
            ca::screening_case_answers
                .filter(ca::case_id.eq(&case))
                .filter(ca::seq.eq(seq))
                .filter(ca::key_id.eq(&old)),
        )
        .set((ca::key_id.eq(&key), ca::text.eq(&resealed)))
        .execute(conn)? as u64;
    }

    let rows: Vec<(String, String, Option<String>)> = sc::screening_cases
        .filter(sc::note.ne(""))
        .filter(sc::note_key_id.ne(&active).or(sc::note_key_id.is_null()))
        .select((sc::id, sc::note, sc::note_key_id))
        .order(sc::seq.asc())
        .limit(limit)
        .load(conn)?;
    for (case, note, old) in rows {
        let plain = match &old {
            None => note.into_bytes(),
            Some(k) => ring.open(k, &note, case.as_bytes())?,
        };
        let (key, resealed) = ring.seal(&plain, case.as_bytes())?;
        let target = sc::screening_cases.filter(sc::id.eq(&case));
        let set = (sc::note_key_id.eq(Some(&key)), sc::note.eq(&resealed));
        done.case_notes += match &old {
            None => diesel::update(target.filter(sc::note_key_id.is_null()))
                .set(set)
                .execute(conn)?,
            Some(k) => diesel::update(target.filter(sc::note_key_id.eq(k)))
                .set(set)
                .execute(conn)?,
        } as u64;
    }

    if done.total() > 0 {
        let mut entry = actor;
        entry.action = "keys.reseal".into();
        entry.target = format!("key/{active}");
        entry.detail = serde_json::json!({
            "subject_identifiers": done.subject_identifiers,
            "export_chunks": done.export_chunks,
            "case_answers": done.case_answers,
            "case_notes": done.case_notes,
        })
        .to_string();
        audit::append(conn, now, entry)?;
    }
    Ok(done)
}

/// Reseals batch after batch (each its own transaction) until one finds
/// nothing left; returns what was rewritten in all. Rows a concurrent
/// change took away are skipped, so check [`pending`] afterwards.
pub async fn run(
    store: &super::Store,
    ring: std::sync::Arc<KeyRing>,
    actor: AuditEntry,
    limit: i64,
) -> Result<Counts> {
    let mut total = Counts::default();
    loop {
        let (ring, actor) = (ring.clone(), actor.clone());
        let done = store
            .write("keys.reseal", move |c, clock| {
                batch(c, clock.now(), actor, &ring, limit)
            })
            .await?;
        if done.total() == 0 {
            return Ok(total);
        }
        total += done;
    }
}
