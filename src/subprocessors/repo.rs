//! The sub-processor registry in the database: sub-processors, change
//! notices, each tenant's answers and mode history, and the screening hook.
//!
//! The registry is small (tens to hundreds of sub-processors, a few notices
//! each), so it is read whole ([`registry`]) and the rules of
//! [`crate::subprocessors::model`] run over it in memory.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::{
    sub_processor_modes as md, sub_processor_notice_tenants as nt, sub_processor_notices as sn,
    sub_processors as sp,
};
use crate::db::{DbConnection, from_json_list, from_us, to_json_list, to_us};
use crate::error::{Error, Result};
use crate::instructions::repo as instructions;
use crate::subprocessors::model::{
    Answer, AuthorizationMode, ChangeKind, Notice, Registry, Reply, Scope, Screening, SubProcessor,
    SubProcessorGrants, TenantAnswers, TransferMechanism,
};

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::sub_processors)]
struct SpRow {
    seq: i64,
    id: String,
    name_key: String,
    legal_name: String,
    country: String,
    services: String,
    categories: String,
    purposes: String,
    transfer_mechanism: String,
    parent_id: Option<String>,
    dpa_signed_at_us: Option<i64>,
    nda_signed_at_us: Option<i64>,
    created_at_us: i64,
    screening: String,
    screened_at_us: Option<i64>,
    processing_locations: String,
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::sub_processor_notices)]
struct NoticeRow {
    seq: i64,
    id: String,
    sub_processor_id: String,
    kind: String,
    categories: String,
    purposes: String,
    effective_at_us: i64,
    objection_deadline_us: i64,
    created_at_us: i64,
    author: String,
}

/// The key that makes one registration per company: legal name (trimmed,
/// case-folded, inner spaces collapsed) and country.
fn name_key(legal_name: &str, country: &str) -> String {
    let name: Vec<String> = legal_name.split_whitespace().map(str::to_lowercase).collect();
    format!("{}|{country}", name.join(" "))
}

impl TryFrom<SpRow> for SubProcessor {
    type Error = Error;

    fn try_from(r: SpRow) -> Result<Self> {
        Ok(SubProcessor {
            transfer_mechanism: TransferMechanism::parse(&r.transfer_mechanism).ok_or_else(|| {
                Error::Unexpected(format!("sub-processor {} has a bad transfer mechanism", r.id))
            })?,
            id: r.id,
            legal_name: r.legal_name,
            country: r.country,
            processing_locations: from_json_list(&r.processing_locations),
            services: r.services,
            scope: Scope {
                categories: from_json_list(&r.categories),
                purposes: from_json_list(&r.purposes),
            },
            parent_id: r.parent_id,
            dpa_signed_at: r.dpa_signed_at_us.map(from_us),
            nda_signed_at: r.nda_signed_at_us.map(from_us),
            created_at: from_us(r.created_at_us),
            screening: Screening::parse(&r.screening),
            screened_at: r.screened_at_us.map(from_us),
        })
    }
}

impl TryFrom<NoticeRow> for Notice {
    type Error = Error;

    fn try_from(r: NoticeRow) -> Result<Self> {
        Ok(Notice {
            kind: ChangeKind::parse(&r.kind)
                .ok_or_else(|| Error::Unexpected(format!("notice {} has a bad kind", r.id)))?,
            id: r.id,
            seq: r.seq,
            sub_processor_id: r.sub_processor_id,
            scope: Scope {
                categories: from_json_list(&r.categories),
                purposes: from_json_list(&r.purposes),
            },
            effective_at: from_us(r.effective_at_us),
            objection_deadline: from_us(r.objection_deadline_us),
            created_at: from_us(r.created_at_us),
        })
    }
}

/// Every sub-processor and notice.
pub fn registry(conn: &mut DbConnection) -> Result<Registry> {
    let sps: Vec<SpRow> = sp::table.order(sp::seq.asc()).load(conn)?;
    let notices: Vec<NoticeRow> = sn::table.order(sn::seq.asc()).load(conn)?;
    Ok(Registry {
        sub_processors: sps.into_iter().map(TryInto::try_into).collect::<Result<_>>()?,
        notices: notices
            .into_iter()
            .map(TryInto::try_into)
            .collect::<Result<_>>()?,
    })
}

/// One tenant's mode history and answers.
pub fn tenant_answers(conn: &mut DbConnection, tenant: &str) -> Result<TenantAnswers> {
    let modes: Vec<(i64, String)> = md::table
        .filter(md::tenant_id.eq(tenant))
        .order(md::seq.asc())
        .select((md::since_us, md::mode))
        .load(conn)?;
    let rows: Vec<(String, bool, Option<i64>, Option<i64>)> = nt::table
        .filter(nt::tenant_id.eq(tenant))
        .select((
            nt::notice_id,
            nt::notified,
            nt::approved_at_us,
            nt::objected_at_us,
        ))
        .load(conn)?;
    Ok(TenantAnswers {
        modes: modes
            .into_iter()
            .filter_map(|(at, m)| AuthorizationMode::parse(&m).map(|m| (from_us(at), m)))
            .collect(),
        answers: rows
            .into_iter()
            .map(|(id, notified, a, o)| {
                (
                    id,
                    Answer {
                        notified,
                        approved_at: a.map(from_us),
                        objected_at: o.map(from_us),
                    },
                )
            })
            .collect(),
    })
}

/// What the decision snapshot of `tenant` needs about sub-processors.
pub fn grants(conn: &mut DbConnection, tenant: &str) -> Result<SubProcessorGrants> {
    let r = registry(conn)?;
    tenant_grants(conn, &r, tenant)
}

/// `tenant`'s grants from a registry already read, so loading many tenants'
/// snapshots reads the registry once, not once per tenant.
pub fn tenant_grants(
    conn: &mut DbConnection,
    registry: &Registry,
    tenant: &str,
) -> Result<SubProcessorGrants> {
    Ok(registry.grants(&tenant_answers(conn, tenant)?))
}

/// Registers a sub-processor; the same legal name and country twice is
/// ALREADY_EXISTS.
pub fn insert(conn: &mut DbConnection, s: &SubProcessor) -> Result<()> {
    let key = name_key(&s.legal_name, &s.country);
    // Two registrations of one name and country check and insert in turn.
    crate::db::key_lock(conn, "sub_processor.name", &key)?;
    let taken: i64 = sp::table.filter(sp::name_key.eq(&key)).count().get_result(conn)?;
    if taken > 0 {
        return Err(Error::Duplicate(
            "a sub-processor with this legal name and country".into(),
        ));
    }
    diesel::insert_into(sp::table)
        .values(SpRow {
            seq: crate::db::next_seq(conn, crate::db::Numbered::SubProcessors)?,
            id: s.id.clone(),
            name_key: key,
            legal_name: s.legal_name.clone(),
            country: s.country.clone(),
            services: s.services.clone(),
            categories: to_json_list(&s.scope.categories),
            purposes: to_json_list(&s.scope.purposes),
            transfer_mechanism: s.transfer_mechanism.as_str().to_owned(),
            parent_id: s.parent_id.clone(),
            dpa_signed_at_us: s.dpa_signed_at.map(to_us),
            nda_signed_at_us: s.nda_signed_at.map(to_us),
            created_at_us: to_us(s.created_at),
            screening: s.screening.as_str().to_owned(),
            screened_at_us: s.screened_at.map(to_us),
            processing_locations: to_json_list(&s.processing_locations),
        })
        .execute(conn)?;
    Ok(())
}

/// Stores a notice (its `seq` is assigned here and returned).
pub fn insert_notice(conn: &mut DbConnection, n: &Notice, author: &str) -> Result<i64> {
    let seq = crate::db::next_seq(conn, crate::db::Numbered::SubProcessorNotices)?;
    diesel::insert_into(sn::table)
        .values(NoticeRow {
            seq,
            id: n.id.clone(),
            sub_processor_id: n.sub_processor_id.clone(),
            kind: n.kind.as_str().to_owned(),
            categories: to_json_list(&n.scope.categories),
            purposes: to_json_list(&n.scope.purposes),
            effective_at_us: to_us(n.effective_at),
            objection_deadline_us: to_us(n.objection_deadline),
            created_at_us: to_us(n.created_at),
            author: author.to_owned(),
        })
        .execute(conn)?;
    Ok(seq)
}

/// One notice, or NOT_FOUND.
pub fn notice(conn: &mut DbConnection, id: &str) -> Result<Notice> {
    let row: Option<NoticeRow> = sn::table.filter(sn::id.eq(id)).first(conn).optional()?;
    row.ok_or_else(|| Error::not_found("change notice", id.to_string()))?
        .try_into()
}

/// Records that `tenant` was sent `notice`.
pub fn mark_notified(conn: &mut DbConnection, notice: &str, tenant: &str) -> Result<()> {
    diesel::insert_into(nt::table)
        .values((
            nt::notice_id.eq(notice),
            nt::tenant_id.eq(tenant),
            nt::notified.eq(true),
        ))
        .execute(conn)?;
    Ok(())
}

/// Stores a tenant's answer (an objection replaces an earlier approval) and
/// returns the answer as it now stands.
pub fn answer(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    notice: &str,
    tenant: &str,
    reply: Reply,
    reason: &str,
) -> Result<Answer> {
    let existing: Option<(bool, Option<i64>, Option<i64>)> = nt::table
        .filter(nt::notice_id.eq(notice))
        .filter(nt::tenant_id.eq(tenant))
        .select((nt::notified, nt::approved_at_us, nt::objected_at_us))
        .first(conn)
        .optional()?;
    // Only a tenant the notice was sent to may answer it: an answer to a
    // notice it never received would bind it to a change it was not told of.
    let Some((true, mut approved, mut objected)) = existing else {
        return Err(Error::WrongState(format!(
            "notice {notice} was not sent to tenant {tenant}"
        )));
    };
    match reply {
        Reply::Approve if objected.is_some() => {
            return Err(Error::WrongState(format!(
                "tenant {tenant} objected to notice {notice}"
            )));
        }
        Reply::Approve => approved = approved.or(Some(to_us(now))),
        Reply::Object => {
            approved = None;
            objected = objected.or(Some(to_us(now)));
        }
    }
    let reason = (reply == Reply::Object && !reason.is_empty()).then(|| reason.to_owned());
    let q = nt::table
        .filter(nt::notice_id.eq(notice))
        .filter(nt::tenant_id.eq(tenant));
    diesel::update(q)
        .set((nt::approved_at_us.eq(approved), nt::objected_at_us.eq(objected)))
        .execute(conn)?;
    if reason.is_some() {
        diesel::update(q)
            .set(nt::objection_reason.eq(&reason))
            .execute(conn)?;
    }
    Ok(Answer {
        notified: true,
        approved_at: approved.map(from_us),
        objected_at: objected.map(from_us),
    })
}

/// Appends a mode change for `tenant` from `now`.
pub fn set_mode(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    tenant: &str,
    mode: AuthorizationMode,
) -> Result<()> {
    // A tenant's mode changes are a history read in order.
    crate::db::key_lock(conn, "sub_processor.mode", tenant)?;
    diesel::insert_into(md::table)
        .values((
            md::seq.eq(crate::db::next_seq(conn, crate::db::Numbered::SubProcessorModes)?),
            md::tenant_id.eq(tenant),
            md::mode.eq(mode.as_str()),
            md::since_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Every tenant whose decision snapshot may depend on the registry: those
/// with instructions or contract state, and those that answered or chose a
/// mode.
pub fn all_tenants(conn: &mut DbConnection) -> Result<Vec<String>> {
    let mut out = instructions::known_tenants(conn)?;
    let a: Vec<String> = nt::table.select(nt::tenant_id).distinct().load(conn)?;
    let b: Vec<String> = md::table.select(md::tenant_id).distinct().load(conn)?;
    out.extend(a);
    out.extend(b);
    out.sort();
    out.dedup();
    Ok(out)
}

/// Active tenants (current instructions, contract not ended at `now`) whose
/// instructions cover one of `categories`: who a notice must reach.
pub fn affected_tenants(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    categories: &[String],
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for t in instructions::known_tenants(conn)? {
        if instructions::tenant_state(conn, &t)?
            .and_then(|s| s.terminated_at)
            .is_some_and(|at| at <= now)
        {
            continue;
        }
        if let Some(v) = instructions::current(conn, &t)?
            && v.set.rules.iter().any(|r| categories.contains(&r.category))
        {
            out.push(t);
        }
    }
    Ok(out)
}

/// Logs a decision change for every tenant, so every replica recompiles
/// their snapshots (a registry change can move any tenant's authorisation).
pub fn record_change_all(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<usize> {
    let tenants = all_tenants(conn)?;
    for t in &tenants {
        instructions::record_change(conn, now, t)?;
    }
    Ok(tenants.len())
}

/// A page of notices in registry order, each with the tenants it reached
/// (only `tenant` when given), for one tenant (notices it was sent or
/// answered) or all.
pub fn notices_page(
    conn: &mut DbConnection,
    tenant: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<Vec<(Notice, Vec<String>)>> {
    let mut q = sn::table
        .filter(sn::seq.gt(after))
        .order(sn::seq.asc())
        .limit(limit)
        .into_boxed();
    if let Some(t) = tenant {
        q = q.filter(
            sn::id.eq_any(
                nt::table
                    .filter(nt::tenant_id.eq(t.to_owned()))
                    .select(nt::notice_id),
            ),
        );
    }
    let rows: Vec<NoticeRow> = q.load(conn)?;
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut recipients: HashMap<String, Vec<String>> = HashMap::new();
    let mut rq = nt::table
        .filter(nt::notice_id.eq_any(&ids))
        .filter(nt::notified.eq(true))
        .select((nt::notice_id, nt::tenant_id))
        .order((nt::notice_id.asc(), nt::tenant_id.asc()))
        .into_boxed();
    if let Some(t) = tenant {
        rq = rq.filter(nt::tenant_id.eq(t.to_owned()));
    }
    for (n, t) in rq.load::<(String, String)>(conn)? {
        recipients.entry(n).or_default().push(t);
    }
    rows.into_iter()
        .map(|r| {
            let to = recipients.remove(&r.id).unwrap_or_default();
            Ok((Notice::try_from(r)?, to))
        })
        .collect()
}

/// The screening gate's write. The screening capability
/// (`store::screening_effects`) calls this inside the transaction that
/// settles a screening of a sub-processor's legal name:
/// `Clear` when the name screened clear or its case was cleared (the
/// sub-processor may then become ACTIVE), `Confirmed` on a confirmed
/// sanctions match (BLOCKED, withdrawn for every tenant), `Pending` while a
/// possible match awaits its case. Every tenant's decisions are recompiled.
/// The caller writes the audit event.
pub fn record_screening(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    id: &str,
    outcome: Screening,
) -> Result<()> {
    let n = diesel::update(sp::table.filter(sp::id.eq(id)))
        .set((
            sp::screening.eq(outcome.as_str()),
            sp::screened_at_us.eq(Some(to_us(now))),
        ))
        .execute(conn)?;
    if n == 0 {
        return Err(Error::not_found("sub-processor", id.to_string()));
    }
    record_change_all(conn, now)?;
    Ok(())
}

/// `seq` of each sub-processor, for paging.
pub fn seqs(conn: &mut DbConnection) -> Result<HashMap<String, i64>> {
    Ok(sp::table
        .select((sp::id, sp::seq))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_key_folds_case_and_spaces() {
        assert_eq!(
            name_key("  Acme   Cloud Inc ", "US"),
            name_key("acme cloud INC", "US")
        );
        assert_ne!(name_key("Acme", "US"), name_key("Acme", "DE"));
    }
}
