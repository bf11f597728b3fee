//! Instruction versions, tenant contract state, the taxonomy, and the
//! decision change log replicas follow.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::{decision_changes as dc, instruction_versions as iv, taxonomy as tx, tenants as tn};
use crate::db::{DbConnection, chain_lock, from_us, to_us};
use crate::error::{Error, Result};
use crate::instructions::model::{InstructionSet, Taxonomy, TaxonomyKind};

/// Change-log entry that means "the taxonomy changed" rather than a tenant.
pub const TAXONOMY_CHANGE: &str = "";

/// One stored, immutable instruction version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    /// Tenant.
    pub tenant_id: String,
    /// 1, 2, ...
    pub version: u64,
    /// When it was written.
    pub created_at: DateTime<Utc>,
    /// Token subject of the writer.
    pub author: String,
    /// Why it was written.
    pub reason: String,
    /// The instructions.
    pub set: InstructionSet,
}

/// A tenant's contract state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantState {
    /// Tenant.
    pub tenant_id: String,
    /// When the contract ends (ended), if terminated.
    pub terminated_at: Option<DateTime<Utc>>,
    /// When erasure of all the tenant's data is due.
    pub erasure_due_at: Option<DateTime<Utc>>,
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::instruction_versions)]
struct VersionRow {
    tenant_id: String,
    version: i64,
    created_at_us: i64,
    author: String,
    reason: String,
    body: String,
}

impl TryFrom<VersionRow> for StoredVersion {
    type Error = Error;

    fn try_from(r: VersionRow) -> Result<Self> {
        Ok(StoredVersion {
            set: serde_json::from_str(&r.body)
                .map_err(|e| Error::Unexpected(format!("stored instructions unreadable: {e}")))?,
            tenant_id: r.tenant_id,
            version: u64::try_from(r.version).unwrap_or(0),
            created_at: from_us(r.created_at_us),
            author: r.author,
            reason: r.reason,
        })
    }
}

/// The known categories and purposes.
pub fn taxonomy(conn: &mut DbConnection) -> Result<Taxonomy> {
    let rows: Vec<(String, String)> = tx::table.select((tx::kind, tx::key)).load(conn)?;
    let mut t = Taxonomy::default();
    for (kind, key) in rows {
        match TaxonomyKind::parse(&kind) {
            Some(TaxonomyKind::Category) => t.categories.insert(key),
            Some(TaxonomyKind::Purpose) => t.purposes.insert(key),
            None => false,
        };
    }
    Ok(t)
}

/// Refuses categories the taxonomy does not know, naming each by its index
/// in `field`. Checked against the taxonomy as committed (inside the
/// command's transaction), so a key added a moment ago is accepted.
pub fn check_known_categories(conn: &mut DbConnection, field: &str, categories: &[String]) -> Result<()> {
    let tax = taxonomy(conn)?;
    let mut v = crate::validate::Violations::new();
    for (i, c) in categories.iter().enumerate() {
        v.check(
            !tax.knows(TaxonomyKind::Category, c),
            format!("{field}[{i}]"),
            format!("unknown category {c:?} (not a taxonomy key)"),
        );
    }
    v.finish()
}

/// Every taxonomy entry with its description, ordered.
pub fn taxonomy_entries(conn: &mut DbConnection) -> Result<Vec<(TaxonomyKind, String, String)>> {
    let rows: Vec<(String, String, String)> = tx::table
        .select((tx::kind, tx::key, tx::description))
        .order((tx::kind.asc(), tx::key.asc()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, key, d)| TaxonomyKind::parse(&k).map(|k| (k, key, d)))
        .collect())
}

/// Adds a taxonomy key; an existing one is ALREADY_EXISTS.
pub fn add_taxonomy_key(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    kind: TaxonomyKind,
    key: &str,
    description: &str,
) -> Result<()> {
    let exists: i64 = tx::table
        .filter(tx::kind.eq(kind.as_str()))
        .filter(tx::key.eq(key))
        .count()
        .get_result(conn)?;
    if exists > 0 {
        return Err(Error::Duplicate(format!("{} {key:?}", kind.as_str())));
    }
    diesel::insert_into(tx::table)
        .values((
            tx::kind.eq(kind.as_str()),
            tx::key.eq(key),
            tx::description.eq(description),
            tx::created_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    record_change(conn, now, TAXONOMY_CHANGE)
}

/// The current version of a tenant, if any.
pub fn current(conn: &mut DbConnection, tenant: &str) -> Result<Option<StoredVersion>> {
    let row: Option<VersionRow> = iv::table
        .filter(iv::tenant_id.eq(tenant))
        .order(iv::version.desc())
        .first(conn)
        .optional()?;
    row.map(TryInto::try_into).transpose()
}

/// One version of a tenant.
pub fn version(conn: &mut DbConnection, tenant: &str, version: u64) -> Result<StoredVersion> {
    let v = i64::try_from(version).map_err(|_| Error::invalid("version", "is out of range"))?;
    let row: Option<VersionRow> = iv::table
        .filter(iv::tenant_id.eq(tenant))
        .filter(iv::version.eq(v))
        .first(conn)
        .optional()?;
    row.map(TryInto::try_into)
        .transpose()?
        .ok_or_else(|| Error::Missing(format!("instructions version {version} of tenant {tenant}")))
}

/// A page of a tenant's versions, oldest first.
pub fn versions(conn: &mut DbConnection, tenant: &str, after: i64, limit: i64) -> Result<Vec<StoredVersion>> {
    let rows: Vec<VersionRow> = iv::table
        .filter(iv::tenant_id.eq(tenant))
        .filter(iv::version.gt(after))
        .order(iv::version.asc())
        .limit(limit)
        .load(conn)?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// Writes version `expected + 1`. Serialised with every other decision
/// write, so of two writers expecting the same version exactly one wins and
/// the other is FAILED_PRECONDITION.
pub fn put(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    tenant: &str,
    expected: u64,
    author: &str,
    reason: &str,
    set: &InstructionSet,
) -> Result<StoredVersion> {
    chain_lock(conn)?;
    if tenant_state(conn, tenant)?
        .and_then(|s| s.terminated_at)
        .is_some_and(|t| t <= now)
    {
        return Err(Error::WrongState(format!(
            "tenant {tenant} is terminated; its instructions are frozen"
        )));
    }
    let current: Option<i64> = iv::table
        .filter(iv::tenant_id.eq(tenant))
        .select(diesel::dsl::max(iv::version))
        .first(conn)?;
    let current = u64::try_from(current.unwrap_or(0)).unwrap_or(0);
    if current != expected {
        return Err(Error::WrongState(format!(
            "expected_version is {expected} but the current version is {current}"
        )));
    }
    let row = VersionRow {
        tenant_id: tenant.to_owned(),
        version: i64::try_from(current + 1).map_err(|_| Error::Unexpected("version overflow".into()))?,
        created_at_us: to_us(now),
        author: author.to_owned(),
        reason: reason.to_owned(),
        body: serde_json::to_string(set).map_err(|e| Error::Unexpected(e.to_string()))?,
    };
    diesel::insert_into(iv::table)
        .values(&row)
        .execute(conn)
        .map_err(|e| match Error::from(e) {
            Error::Duplicate(_) => Error::Conflict("a concurrent writer created this version".into()),
            other => other,
        })?;
    record_change(conn, now, tenant)?;
    row.try_into()
}

/// A tenant's contract state, if it has one.
pub fn tenant_state(conn: &mut DbConnection, tenant: &str) -> Result<Option<TenantState>> {
    let row: Option<(String, Option<i64>, Option<i64>)> = tn::table
        .filter(tn::tenant_id.eq(tenant))
        .select((tn::tenant_id, tn::terminated_at_us, tn::erasure_due_at_us))
        .first(conn)
        .optional()?;
    Ok(row.map(|(tenant_id, t, e)| TenantState {
        tenant_id,
        terminated_at: t.map(from_us),
        erasure_due_at: e.map(from_us),
    }))
}

/// Ends a tenant's contract at `effective_at` (never before `now`) and
/// records when erasure of all its data is due.
pub fn terminate(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    tenant: &str,
    effective_at: DateTime<Utc>,
    reason: &str,
) -> Result<TenantState> {
    chain_lock(conn)?;
    if tenant_state(conn, tenant)?.is_some_and(|s| s.terminated_at.is_some()) {
        return Err(Error::WrongState(format!(
            "tenant {tenant} is already terminated"
        )));
    }
    let grace = current(conn, tenant)?.map_or(0, |v| v.set.termination_grace_days);
    let due = effective_at + chrono::Duration::days(i64::from(grace));
    let n = diesel::update(tn::table.filter(tn::tenant_id.eq(tenant)))
        .set((
            tn::terminated_at_us.eq(to_us(effective_at)),
            tn::termination_reason.eq(reason),
            tn::erasure_due_at_us.eq(to_us(due)),
            tn::updated_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(tn::table)
            .values((
                tn::tenant_id.eq(tenant),
                tn::terminated_at_us.eq(to_us(effective_at)),
                tn::termination_reason.eq(reason),
                tn::erasure_due_at_us.eq(to_us(due)),
                tn::updated_at_us.eq(to_us(now)),
            ))
            .execute(conn)?;
    }
    record_change(conn, now, tenant)?;
    Ok(TenantState {
        tenant_id: tenant.to_owned(),
        terminated_at: Some(effective_at),
        erasure_due_at: Some(due),
    })
}

/// Appends to the change log that replicas follow to refresh their decision
/// snapshots. Call inside the transaction of any write that changes what a
/// tenant's decisions depend on.
pub fn record_change(conn: &mut DbConnection, now: DateTime<Utc>, tenant: &str) -> Result<()> {
    chain_lock(conn)?;
    let last: Option<i64> = dc::table.select(diesel::dsl::max(dc::seq)).first(conn)?;
    diesel::insert_into(dc::table)
        .values((
            dc::seq.eq(last.unwrap_or(0) + 1),
            dc::tenant_id.eq(tenant),
            dc::at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Changes after `seq`, oldest first, at most `limit`.
pub fn changes_after(conn: &mut DbConnection, seq: i64, limit: i64) -> Result<Vec<(i64, String)>> {
    Ok(dc::table
        .filter(dc::seq.gt(seq))
        .order(dc::seq.asc())
        .limit(limit)
        .select((dc::seq, dc::tenant_id))
        .load(conn)?)
}

/// (oldest, newest) seq still in the change log.
pub fn change_bounds(conn: &mut DbConnection) -> Result<(Option<i64>, Option<i64>)> {
    Ok(dc::table
        .select((diesel::dsl::min(dc::seq), diesel::dsl::max(dc::seq)))
        .first(conn)?)
}

/// Latest change seq concerning `tenant` (0 if none).
pub fn tenant_change_seq(conn: &mut DbConnection, tenant: &str) -> Result<i64> {
    let s: Option<i64> = dc::table
        .filter(dc::tenant_id.eq(tenant))
        .select(diesel::dsl::max(dc::seq))
        .first(conn)?;
    Ok(s.unwrap_or(0))
}

/// Drops change-log entries older than `before`, keeping the newest so the
/// sequence never restarts.
pub fn prune_changes(conn: &mut DbConnection, before: DateTime<Utc>) -> Result<usize> {
    let (_, newest) = change_bounds(conn)?;
    let Some(newest) = newest else { return Ok(0) };
    Ok(diesel::delete(
        dc::table
            .filter(dc::at_us.lt(to_us(before)))
            .filter(dc::seq.lt(newest)),
    )
    .execute(conn)?)
}

/// Every tenant with instructions or a contract state.
pub fn known_tenants(conn: &mut DbConnection) -> Result<Vec<String>> {
    let mut a: Vec<String> = iv::table.select(iv::tenant_id).distinct().load(conn)?;
    let b: Vec<String> = tn::table.select(tn::tenant_id).load(conn)?;
    a.extend(b);
    a.sort();
    a.dedup();
    Ok(a)
}

/// Terminated tenants whose erasure is due at `now` and has not been
/// requested yet.
pub fn erasures_due(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<Vec<String>> {
    Ok(tn::table
        .filter(tn::erasure_due_at_us.le(to_us(now)))
        .filter(tn::erasure_requested_at_us.is_null())
        .select(tn::tenant_id)
        .order(tn::tenant_id.asc())
        .load(conn)?)
}

/// Records that the contract-end erasure of `tenant` was requested.
pub fn mark_erasure_requested(conn: &mut DbConnection, now: DateTime<Utc>, tenant: &str) -> Result<()> {
    diesel::update(tn::table.filter(tn::tenant_id.eq(tenant)))
        .set((
            tn::erasure_requested_at_us.eq(to_us(now)),
            tn::updated_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    Ok(())
}
