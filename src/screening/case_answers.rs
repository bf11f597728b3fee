//! Answers to screening cases' clarification requests. A tenant (or the
//! compliance queue, for platform parties) answers through its inbox; each
//! answer is kept in order with who gave it and when, so the analyst who
//! resolves the case sees the whole exchange. The text may name people: it
//! is stored sealed with the identifier key ring (bound to its case), and
//! the audit log records only that an answer arrived and its length.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::audit::model::AuditEntry;
use crate::audit::repo as audit;
use crate::db::schema::screening_case_answers::dsl as ca;
use crate::db::schema::screening_cases::dsl as c;
use crate::db::{DbConnection, chain_lock, from_us, to_us};
use crate::error::{Error, Result};
use crate::inbox::model::Recipient;
use crate::inbox::repo as inbox;
use crate::screening::cases::{COMPLIANCE_QUEUE, CaseStatus};
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

/// Records `text` as an answer to case `case_id` from `actor` in the
/// caller's transaction: the case moves to ANSWERED (a resolved case takes
/// no answer: FAILED_PRECONDITION), the compliance queue is told, and the
/// audit log records the answer's length only. `tenant` limits the cases
/// the caller may answer (None: platform parties' cases only).
pub fn answer(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    actor: AuditEntry,
    ring: &KeyRing,
    case_id: &str,
    tenant: Option<&str>,
    text: &str,
) -> Result<()> {
    chain_lock(conn)?;
    let row: Option<(String, Option<String>, String)> = c::screening_cases
        .filter(c::id.eq(case_id))
        .select((c::status, c::tenant_id, c::party_ref))
        .first(conn)
        .optional()?;
    let Some((status, case_tenant, party_ref)) = row.filter(|(_, t, _)| t.as_deref() == tenant) else {
        return Err(Error::Missing(format!("case {case_id}")));
    };
    let status =
        CaseStatus::parse(&status).ok_or_else(|| Error::Unexpected(format!("bad case status {status}")))?;
    let next = status.answer()?;
    diesel::update(c::screening_cases.filter(c::id.eq(case_id)))
        .set(c::status.eq(next.as_str()))
        .execute(conn)?;
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
            ca::answered_by.eq(&actor.actor),
            ca::text.eq(sealed),
            ca::key_id.eq(key_id),
        ))
        .execute(conn)?;
    inbox::enqueue(
        conn,
        now,
        &Recipient::System(COMPLIANCE_QUEUE.to_owned()),
        "screening.clarification.answered",
        &serde_json::json!({ "id": case_id, "case_id": case_id, "answer": seq }),
    )?;
    let mut entry = actor;
    entry.tenant_id = case_tenant;
    entry.action = "screening.case.answer".into();
    entry.target = format!("case/{case_id}");
    entry.detail = serde_json::json!({
        "party_ref": party_ref,
        "answer": seq,
        "chars": text.chars().count(),
    })
    .to_string();
    audit::append(conn, now, entry)?;
    Ok(())
}
