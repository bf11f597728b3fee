//! Answers to screening cases' clarification requests. A tenant (or the
//! compliance queue, for platform parties) answers through its inbox; each
//! answer is kept in order with who gave it and when, so the analyst who
//! resolves the case sees the whole exchange. The text may name people: it
//! is stored sealed with the identifier key ring (bound to its case), and
//! the audit log records only that an answer arrived and its length.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::screening_case_answers::dsl as ca;
use crate::db::schema::screening_cases::dsl as c;
use crate::db::{DbConnection, from_us, to_us};
use crate::error::{Error, Result};
use crate::screening::cases::CaseStatus;
use crate::secrets::KeyRing;

/// One answer, as shown on the case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseAnswer {
    /// The answering caller's token subject.
    pub answered_by: String,
    /// When it was recorded.
    pub answered_at: DateTime<Utc>,
    /// The answer as given.
    pub text: String,
}

/// An answer as stored: sealed, opened only to show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedAnswer {
    /// The answering caller's token subject.
    pub answered_by: String,
    /// When it was recorded.
    pub answered_at: DateTime<Utc>,
    /// Id of the key that sealed it.
    pub key_id: String,
    /// Base64 of nonce and ciphertext.
    pub sealed: String,
}

impl SealedAnswer {
    /// The answer in the clear; `case_id` must be the case it belongs to.
    pub fn open(&self, ring: &KeyRing, case_id: &str) -> Result<CaseAnswer> {
        Ok(CaseAnswer {
            answered_by: self.answered_by.clone(),
            answered_at: self.answered_at,
            text: open_text(ring, case_id, &self.key_id, &self.sealed)?,
        })
    }
}

/// Seals an answer's text for the case `case_id`: (key id, ciphertext).
pub fn seal_text(ring: &KeyRing, case_id: &str, text: &str) -> Result<(String, String)> {
    ring.seal(text.as_bytes(), case_id.as_bytes())
}

/// An answer's text in the clear.
pub fn open_text(ring: &KeyRing, case_id: &str, key_id: &str, sealed: &str) -> Result<String> {
    String::from_utf8(ring.open(key_id, sealed, case_id.as_bytes())?)
        .map_err(|_| Error::Unexpected("case answer is not UTF-8".into()))
}

/// The answers of each of `ids`, oldest first (cases without any are
/// absent).
pub fn of_cases(conn: &mut DbConnection, ids: &[String]) -> Result<HashMap<String, Vec<SealedAnswer>>> {
    let mut out: HashMap<String, Vec<SealedAnswer>> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let rows: Vec<(String, i64, String, String, String)> = ca::screening_case_answers
        .filter(ca::case_id.eq_any(ids))
        .order((ca::case_id.asc(), ca::seq.asc()))
        .select((
            ca::case_id,
            ca::answered_at_us,
            ca::answered_by,
            ca::key_id,
            ca::text,
        ))
        .load(conn)?;
    for (case, at, by, key_id, sealed) in rows {
        out.entry(case).or_default().push(SealedAnswer {
            answered_by: by,
            answered_at: from_us(at),
            key_id,
            sealed,
        });
    }
    Ok(out)
}

/// The status and party of case `case_id` if `tenant` may answer it
/// (None: platform parties' cases only); None otherwise.
pub fn answerable(
    conn: &mut DbConnection,
    case_id: &str,
    tenant: Option<&str>,
) -> Result<Option<(CaseStatus, String)>> {
    let row: Option<(String, Option<String>, String)> = c::screening_cases
        .filter(c::id.eq(case_id))
        .select((c::status, c::tenant_id, c::party_ref))
        .first(conn)
        .optional()?;
    let Some((status, _, party_ref)) = row.filter(|(_, t, _)| t.as_deref() == tenant) else {
        return Ok(None);
    };
    let status =
        CaseStatus::parse(&status).ok_or_else(|| Error::Unexpected(format!("bad case status {status}")))?;
    Ok(Some((status, party_ref)))
}

/// Stores `text`, sealed with `ring`, as the next answer to case
/// `case_id` from `by`; returns its number (1, 2, ...).
pub fn insert(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    by: &str,
    ring: &KeyRing,
    case_id: &str,
    text: &str,
) -> Result<i64> {
    let last: Option<i64> = ca::screening_case_answers
        .filter(ca::case_id.eq(case_id))
        .select(diesel::dsl::max(ca::seq))
        .first(conn)?;
    let seq = last.unwrap_or(0) + 1;
    let (key_id, sealed) = seal_text(ring, case_id, text)?;
    diesel::insert_into(ca::screening_case_answers)
        .values((
            ca::case_id.eq(case_id),
            ca::seq.eq(seq),
            ca::answered_at_us.eq(to_us(now)),
            ca::answered_by.eq(by),
            ca::text.eq(sealed),
            ca::key_id.eq(key_id),
        ))
        .execute(conn)?;
    Ok(seq)
}
