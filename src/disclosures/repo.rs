//! Requests from public authorities in the database: the requests, the
//! tenants each names, and paging in recording order. Every free-text
//! field may name people (a suspect, an officer), so they are sealed
//! together with the identifier key ring, bound to the request, and opened
//! only when a request is read.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::{authority_request_tenants as at, authority_requests as ar};
use crate::db::{DbConnection, from_json_list, from_us, to_json_list, to_us};
use crate::disclosures::model::{AuthorityRequest, AuthorityResponse, Outcome, Texts};
use crate::error::{Error, Result};
use crate::secrets::KeyRing;
use crate::secrets::sealed::{Field, StoredText};

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::authority_requests)]
struct Row {
    seq: i64,
    id: String,
    authority: String,
    country: String,
    received_at_us: i64,
    categories: String,
    status: String,
    notice_prohibited_until_us: Option<i64>,
    notified_at_us: Option<i64>,
    outcome: Option<String>,
    disclosed_categories: String,
    challenged: bool,
    responded_at_us: Option<i64>,
    texts: String,
    texts_sealed: Option<String>,
    texts_key_id: Option<String>,
    created_at_us: i64,
    updated_at_us: i64,
}

fn seal(ring: &KeyRing, r: &AuthorityRequest) -> Result<StoredText> {
    let doc = serde_json::to_string(&r.texts()).map_err(|e| Error::Unexpected(e.to_string()))?;
    StoredText::seal(ring, Field::AuthorityRequestTexts, &r.id, &doc)
}

fn from_row(ring: &KeyRing, r: Row, tenant_ids: Vec<String>) -> Result<AuthorityRequest> {
    let stored = StoredText::from_columns(Some(r.texts), r.texts_key_id, r.texts_sealed);
    let doc = stored.open(ring, Field::AuthorityRequestTexts, &r.id)?;
    let texts: Texts = if doc.is_empty() {
        Texts::default()
    } else {
        serde_json::from_str(&doc)
            .map_err(|_| Error::Unexpected(format!("authority request {} texts unreadable", r.id)))?
    };
    let response = match (r.outcome.as_deref().and_then(Outcome::parse), r.responded_at_us) {
        (Some(outcome), Some(at)) => Some(AuthorityResponse {
            outcome,
            disclosed_categories: from_json_list(&r.disclosed_categories),
            challenged: r.challenged,
            challenge_outcome: texts.challenge_outcome,
            note: texts.note,
            responded_at: from_us(at),
        }),
        _ => None,
    };
    Ok(AuthorityRequest {
        id: r.id,
        authority: r.authority,
        country: r.country,
        legal_basis: texts.legal_basis,
        received_at: from_us(r.received_at_us),
        tenant_ids,
        categories: from_json_list(&r.categories),
        subject_refs: texts.subject_refs,
        reference: texts.reference,
        notice_prohibited_until: r.notice_prohibited_until_us.map(from_us),
        notified_at: r.notified_at_us.map(from_us),
        response,
        created_at: from_us(r.created_at_us),
        updated_at: from_us(r.updated_at_us),
    })
}

fn tenants_of(conn: &mut DbConnection, id: &str) -> Result<Vec<String>> {
    Ok(at::table
        .filter(at::request_id.eq(id))
        .select(at::tenant_id)
        .order(at::tenant_id.asc())
        .load(conn)?)
}

/// Records a request with its tenants, its free text sealed with `ring`.
pub fn insert(conn: &mut DbConnection, ring: &KeyRing, r: &AuthorityRequest) -> Result<()> {
    let texts = seal(ring, r)?;
    diesel::insert_into(ar::table)
        .values(Row {
            seq: crate::db::next_seq(conn, crate::db::Numbered::AuthorityRequests)?,
            id: r.id.clone(),
            authority: r.authority.clone(),
            country: r.country.clone(),
            received_at_us: to_us(r.received_at),
            categories: to_json_list(&r.categories),
            status: r.status().as_str().to_owned(),
            notice_prohibited_until_us: r.notice_prohibited_until.map(to_us),
            notified_at_us: r.notified_at.map(to_us),
            outcome: None,
            disclosed_categories: "[]".into(),
            challenged: false,
            responded_at_us: None,
            texts: String::new(),
            texts_sealed: texts.sealed,
            texts_key_id: texts.key_id,
            created_at_us: to_us(r.created_at),
            updated_at_us: to_us(r.updated_at),
        })
        .execute(conn)?;
    for t in &r.tenant_ids {
        diesel::insert_into(at::table)
            .values((at::request_id.eq(&r.id), at::tenant_id.eq(t)))
            .execute(conn)?;
    }
    Ok(())
}

/// One request, opened with `ring`, or NOT_FOUND.
pub fn get(conn: &mut DbConnection, ring: &KeyRing, id: &str) -> Result<AuthorityRequest> {
    find(conn, ring, id)?.ok_or_else(|| Error::not_found("authority request", id.to_string()))
}

/// One request, opened with `ring`, if it exists.
pub fn find(conn: &mut DbConnection, ring: &KeyRing, id: &str) -> Result<Option<AuthorityRequest>> {
    let Some(row) = ar::table.filter(ar::id.eq(id)).first::<Row>(conn).optional()? else {
        return Ok(None);
    };
    let tenants = tenants_of(conn, id)?;
    from_row(ring, row, tenants).map(Some)
}

/// Saves the response of `r` (its free text sealed anew with `ring`), only
/// if none was saved before: false when another command answered first.
pub fn save_response(conn: &mut DbConnection, ring: &KeyRing, r: &AuthorityRequest) -> Result<bool> {
    let Some(resp) = &r.response else {
        return Ok(false);
    };
    let texts = seal(ring, r)?;
    let n = diesel::update(
        ar::table
            .filter(ar::id.eq(&r.id))
            .filter(ar::responded_at_us.is_null()),
    )
    .set((
        ar::status.eq(r.status().as_str()),
        ar::outcome.eq(resp.outcome.as_str()),
        ar::disclosed_categories.eq(to_json_list(&resp.disclosed_categories)),
        ar::challenged.eq(resp.challenged),
        ar::responded_at_us.eq(to_us(resp.responded_at)),
        ar::texts_sealed.eq(texts.sealed),
        ar::texts_key_id.eq(texts.key_id),
        ar::updated_at_us.eq(to_us(r.updated_at)),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Marks the notice of request `id` delivered at `now`, only if it still
/// waited: false when it was already delivered (by another replica's job,
/// or a lift), so the notices go out exactly once.
pub fn mark_notified(conn: &mut DbConnection, id: &str, now: DateTime<Utc>) -> Result<bool> {
    let n = diesel::update(
        ar::table
            .filter(ar::id.eq(id))
            .filter(ar::notified_at_us.is_null()),
    )
    .set((
        ar::notified_at_us.eq(to_us(now)),
        ar::updated_at_us.eq(to_us(now)),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Ids of the requests whose notice waits although its prohibition has
/// ended by `now`, oldest first, at most `limit`.
pub fn notices_due(conn: &mut DbConnection, now: DateTime<Utc>, limit: i64) -> Result<Vec<String>> {
    Ok(ar::table
        .filter(ar::notified_at_us.is_null())
        .filter(ar::notice_prohibited_until_us.le(to_us(now)))
        .order(ar::seq.asc())
        .select(ar::id)
        .limit(limit)
        .load(conn)?)
}

/// Which requests a query returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only those naming this tenant; `None`: every request.
    pub tenant: Option<String>,
    /// Only those whose notice was delivered: what a tenant may see (it
    /// never learns of a request still gagged).
    pub delivered_only: bool,
    /// Only those received at or after.
    pub received_from: Option<DateTime<Utc>>,
    /// Only those received before.
    pub received_before: Option<DateTime<Utc>>,
}

/// A page of the requests `filter` selects, in recording order, after key
/// `after` (and the page's last key), opened with `ring`.
pub fn list(
    conn: &mut DbConnection,
    ring: &KeyRing,
    filter: &Filter,
    after: i64,
    limit: i64,
) -> Result<(Vec<AuthorityRequest>, Option<i64>)> {
    let mut q = ar::table
        .filter(ar::seq.gt(after))
        .order(ar::seq.asc())
        .limit(limit)
        .into_boxed();
    if let Some(t) = &filter.tenant {
        q = q.filter(
            ar::id.eq_any(
                at::table
                    .filter(at::tenant_id.eq(t.clone()))
                    .select(at::request_id),
            ),
        );
    }
    if filter.delivered_only {
        q = q.filter(ar::notified_at_us.is_not_null());
    }
    if let Some(f) = filter.received_from {
        q = q.filter(ar::received_at_us.ge(to_us(f)));
    }
    if let Some(b) = filter.received_before {
        q = q.filter(ar::received_at_us.lt(to_us(b)));
    }
    let rows: Vec<Row> = q.load(conn)?;
    let last = rows.last().map(|r| r.seq);
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let t = tenants_of(conn, &r.id)?;
        out.push(from_row(ring, r, t)?);
    }
    Ok((out, last))
}
