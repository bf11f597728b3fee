//! The breach register in the database: breaches, the tenants each concerns,
//! and paging in registration order. A breach's nature and contact point
//! may name people (the victim of a misdirected export, the DPO): they are
//! sealed with the identifier key ring, bound to the breach and the field,
//! and opened only when a breach is read.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::breaches::model::{Breach, BreachFacts, BreachStatus, NEAR_DEADLINE};
use crate::db::schema::{breach_tenants as bt, breaches as br};
use crate::db::{DbConnection, from_json_list, from_us, to_json_list, to_us};
use crate::error::{Error, Result};
use crate::secrets::KeyRing;
use crate::secrets::sealed::{Field, StoredText};

// Every field is written on save: a text that became empty must also drop
// its old ciphertext.
#[derive(Queryable, Insertable, AsChangeset)]
#[diesel(table_name = crate::db::schema::breaches, treat_none_as_null = true)]
struct Row {
    seq: i64,
    id: String,
    nature: String,
    categories: String,
    approx_subjects: i64,
    approx_records: i64,
    likely_consequences: String,
    measures: String,
    contact_point: String,
    systems: String,
    became_aware_at_us: i64,
    authority_deadline_us: i64,
    status: String,
    notified_at_us: Option<i64>,
    reference: String,
    not_required_justification: String,
    delay_reasons: String,
    created_at_us: i64,
    updated_at_us: i64,
    nature_sealed: Option<String>,
    nature_key_id: Option<String>,
    contact_point_sealed: Option<String>,
    contact_point_key_id: Option<String>,
}

fn to_row(ring: &KeyRing, seq: i64, b: &Breach) -> Result<Row> {
    let nature = StoredText::seal(ring, Field::BreachNature, &b.id, &b.facts.nature)?;
    let contact = StoredText::seal(ring, Field::BreachContactPoint, &b.id, &b.facts.contact_point)?;
    Ok(Row {
        seq,
        id: b.id.clone(),
        nature: String::new(),
        categories: to_json_list(&b.facts.categories),
        approx_subjects: i64::try_from(b.facts.approx_subjects).unwrap_or(i64::MAX),
        approx_records: i64::try_from(b.facts.approx_records).unwrap_or(i64::MAX),
        likely_consequences: b.facts.likely_consequences.clone(),
        measures: b.facts.measures.clone(),
        contact_point: String::new(),
        systems: to_json_list(&b.facts.systems),
        became_aware_at_us: to_us(b.became_aware_at),
        authority_deadline_us: to_us(b.authority_deadline),
        status: b.status.as_str().to_owned(),
        notified_at_us: b.notified_at.map(to_us),
        reference: b.reference.clone(),
        not_required_justification: b.not_required_justification.clone(),
        delay_reasons: b.delay_reasons.clone(),
        created_at_us: to_us(b.created_at),
        updated_at_us: to_us(b.updated_at),
        nature_sealed: nature.sealed,
        nature_key_id: nature.key_id,
        contact_point_sealed: contact.sealed,
        contact_point_key_id: contact.key_id,
    })
}

fn from_row(ring: &KeyRing, r: Row, tenant_ids: Vec<String>) -> Result<Breach> {
    let nature = StoredText::from_columns(Some(r.nature), r.nature_key_id, r.nature_sealed);
    let contact = StoredText::from_columns(
        Some(r.contact_point),
        r.contact_point_key_id,
        r.contact_point_sealed,
    );
    Ok(Breach {
        facts: BreachFacts {
            nature: nature.open(ring, Field::BreachNature, &r.id)?,
            categories: from_json_list(&r.categories),
            approx_subjects: u64::try_from(r.approx_subjects).unwrap_or(0),
            approx_records: u64::try_from(r.approx_records).unwrap_or(0),
            likely_consequences: r.likely_consequences,
            measures: r.measures,
            contact_point: contact.open(ring, Field::BreachContactPoint, &r.id)?,
            systems: from_json_list(&r.systems),
        },
        id: r.id,
        became_aware_at: from_us(r.became_aware_at_us),
        authority_deadline: from_us(r.authority_deadline_us),
        tenant_ids,
        status: BreachStatus::parse(&r.status).unwrap_or(BreachStatus::Open),
        notified_at: r.notified_at_us.map(from_us),
        reference: r.reference,
        not_required_justification: r.not_required_justification,
        delay_reasons: r.delay_reasons,
        created_at: from_us(r.created_at_us),
        updated_at: from_us(r.updated_at_us),
    })
}

fn tenants_of(conn: &mut DbConnection, id: &str) -> Result<Vec<String>> {
    Ok(bt::table
        .filter(bt::breach_id.eq(id))
        .select(bt::tenant_id)
        .order(bt::tenant_id.asc())
        .load(conn)?)
}

/// Registers a breach with its affected tenants, its free text sealed with
/// `ring`.
pub fn insert(conn: &mut DbConnection, ring: &KeyRing, b: &Breach) -> Result<()> {
    let seq = crate::db::next_seq(conn, crate::db::Numbered::Breaches)?;
    diesel::insert_into(br::table)
        .values(to_row(ring, seq, b)?)
        .execute(conn)?;
    add_tenants(conn, &b.id, &b.tenant_ids)?;
    Ok(())
}

/// Adds affected tenants; returns those that were not there before.
pub fn add_tenants(conn: &mut DbConnection, id: &str, tenants: &[String]) -> Result<Vec<String>> {
    let have = tenants_of(conn, id)?;
    let mut added = Vec::new();
    for t in tenants {
        if !have.contains(t) && !added.contains(t) {
            diesel::insert_into(bt::table)
                .values((bt::breach_id.eq(id), bt::tenant_id.eq(t)))
                .execute(conn)?;
            added.push(t.clone());
        }
    }
    Ok(added)
}

/// One breach, opened with `ring`, or NOT_FOUND.
pub fn get(conn: &mut DbConnection, ring: &KeyRing, id: &str) -> Result<Breach> {
    let row: Row = br::table
        .filter(br::id.eq(id))
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::not_found("breach", id.to_string()))?;
    let tenants = tenants_of(conn, id)?;
    from_row(ring, row, tenants)
}

/// Saves every field of `b` except its identity and tenants (the free text
/// sealed anew with `ring`).
pub fn save(conn: &mut DbConnection, ring: &KeyRing, b: &Breach) -> Result<()> {
    let seq: i64 = br::table.filter(br::id.eq(&b.id)).select(br::seq).first(conn)?;
    diesel::update(br::table.filter(br::id.eq(&b.id)))
        .set(&to_row(ring, seq, b)?)
        .execute(conn)?;
    Ok(())
}

/// A page of breaches in registration order (and its last key), for one
/// tenant or all, optionally only the overdue ones, opened with `ring`.
pub fn list(
    conn: &mut DbConnection,
    ring: &KeyRing,
    tenant: Option<&str>,
    overdue_at: Option<DateTime<Utc>>,
    after: i64,
    limit: i64,
) -> Result<(Vec<Breach>, Option<i64>)> {
    let mut q = br::table
        .filter(br::seq.gt(after))
        .order(br::seq.asc())
        .limit(limit)
        .into_boxed();
    if let Some(t) = tenant {
        q = q.filter(
            br::id.eq_any(
                bt::table
                    .filter(bt::tenant_id.eq(t.to_owned()))
                    .select(bt::breach_id),
            ),
        );
    }
    if let Some(now) = overdue_at {
        q = q
            .filter(br::status.eq(BreachStatus::Open.as_str()))
            .filter(br::authority_deadline_us.lt(to_us(now)));
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

/// Open breaches past their deadline or within 12 hours of it (for one
/// tenant or all): what SRE dashboards watch.
pub fn count_near_or_past(conn: &mut DbConnection, tenant: Option<&str>, now: DateTime<Utc>) -> Result<u64> {
    count_open_due_by(conn, tenant, now + NEAR_DEADLINE)
}

/// Open breaches of all tenants past their deadline at `now`: the ones
/// already late, apart from those merely near.
pub fn count_past(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<u64> {
    count_open_due_by(conn, None, now - chrono::Duration::microseconds(1))
}

/// Open breaches whose authority deadline is at or before `by`.
fn count_open_due_by(conn: &mut DbConnection, tenant: Option<&str>, by: DateTime<Utc>) -> Result<u64> {
    let mut q = br::table
        .filter(br::status.eq(BreachStatus::Open.as_str()))
        .filter(br::authority_deadline_us.le(to_us(by)))
        .into_boxed();
    if let Some(t) = tenant {
        q = q.filter(
            br::id.eq_any(
                bt::table
                    .filter(bt::tenant_id.eq(t.to_owned()))
                    .select(bt::breach_id),
            ),
        );
    }
    let n: i64 = q.count().get_result(conn)?;
    Ok(u64::try_from(n).unwrap_or(0))
}
