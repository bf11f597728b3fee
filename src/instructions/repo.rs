//! Instruction versions, tenant contract state, the taxonomy, and the
//! decision change log replicas follow.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::{
    decision_changes as dc, instruction_versions as iv, legal_hold_withheld as wh, legal_holds as lh,
    taxonomy as tx, tenants as tn,
};
use crate::db::{DbConnection, from_us, to_us};
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
    check_known_categories_named(conn, categories, |i| format!("{field}[{i}]"))
}

/// [`check_known_categories`] with each refused category's field named by
/// `field_of(index)` (`corrections[2].category`, say).
pub fn check_known_categories_named(
    conn: &mut DbConnection,
    categories: &[String],
    field_of: impl Fn(usize) -> String,
) -> Result<()> {
    if categories.is_empty() {
        return Ok(());
    }
    // Only the keys named, not the whole taxonomy: this runs in commands on
    // the write path (every forwarded or submitted request).
    let known: std::collections::HashSet<String> = tx::table
        .select(tx::key)
        .filter(tx::kind.eq(TaxonomyKind::Category.as_str()))
        .filter(tx::key.eq_any(categories))
        .load(conn)?
        .into_iter()
        .collect();
    let mut v = crate::validate::Violations::new();
    for (i, c) in categories.iter().enumerate() {
        v.check(
            !known.contains(c),
            field_of(i),
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
        .ok_or_else(|| Error::not_found("instructions", format!("tenants/{tenant}/versions/{version}")))
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
    // One tenant's versions are checked and written in turn.
    crate::db::key_lock(conn, "tenant", tenant)?;
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
        return Err(Error::Unmet {
            reason: "VERSION_CONFLICT",
            message: format!("expected_version is {expected} but the current version is {current}"),
            conditions: vec![crate::error::Unmet {
                kind: "VERSION",
                subject: format!("tenants/{tenant}/instructions"),
                description: format!("the current version is {current}; put with expected_version {current}"),
            }],
        });
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
    crate::db::key_lock(conn, "tenant", tenant)?;
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
/// tenant's decisions depend on. The entry has no place in the log's order
/// yet: the sequencer gives it one after commit ([`order_changes`]), and
/// followers read it before that too ([`unordered_changes`]).
pub fn record_change(conn: &mut DbConnection, now: DateTime<Utc>, tenant: &str) -> Result<()> {
    let seq = crate::db::next_seq(conn, crate::db::Numbered::DecisionChanges)?;
    WRITTEN.with(|w| {
        if let Some(max) = w.borrow_mut().as_mut() {
            *max = (*max).max(seq);
        }
    });
    diesel::insert_into(dc::table)
        .values((
            dc::seq.eq(seq),
            dc::tenant_id.eq(tenant),
            dc::at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    crate::db::notify::changed(crate::db::notify::Topic::AuditLog);
    Ok(())
}

thread_local! {
    /// The highest change seq the command running on this thread wrote;
    /// `None` outside [`collect_written`].
    static WRITTEN: std::cell::RefCell<Option<i64>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (one command's body) and returns, beside its result, the
/// highest decision change-log seq it wrote (0: none): the position a
/// consistency token names.
pub fn collect_written<T>(f: impl FnOnce() -> T) -> (T, i64) {
    WRITTEN.with(|w| *w.borrow_mut() = Some(0));
    let out = f();
    let max = WRITTEN.with(|w| w.borrow_mut().take()).unwrap_or(0);
    (out, max)
}

/// Ordered changes after place `ord`, oldest first, at most `limit`:
/// `(ord, seq, tenant)`.
pub fn changes_after(conn: &mut DbConnection, ord: i64, limit: i64) -> Result<Vec<(i64, i64, String)>> {
    let rows: Vec<(Option<i64>, i64, String)> = dc::table
        .filter(dc::ord.gt(ord))
        .order(dc::ord.asc())
        .limit(limit)
        .select((dc::ord, dc::seq, dc::tenant_id))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(o, s, t)| o.map(|o| (o, s, t)))
        .collect())
}

/// Changes committed but not ordered yet (at most `limit`), as `(seq,
/// tenant)`: a follower refreshes them at once, and again when they are
/// ordered.
pub fn unordered_changes(conn: &mut DbConnection, limit: i64) -> Result<Vec<(i64, String)>> {
    Ok(dc::table
        .filter(dc::ord.is_null())
        .order(dc::seq.asc())
        .limit(limit)
        .select((dc::seq, dc::tenant_id))
        .load(conn)?)
}

/// Every seq still in the change log (what a full reload has applied).
pub fn change_seqs(conn: &mut DbConnection) -> Result<Vec<i64>> {
    Ok(dc::table.select(dc::seq).load(conn)?)
}

/// Gives the committed changes without a place the next places in the
/// log's order, in the order they were written; run by the sequencer only
/// (one at a time), so a follower reading `ord > last` never misses one.
/// Returns how many were ordered.
pub fn order_changes(conn: &mut DbConnection, limit: i64) -> Result<usize> {
    match conn {
        // One statement on PostgreSQL, where each would be a round trip in
        // every one of the sequencer's rounds.
        DbConnection::Pg(c) => Ok(crate::db::prepared::Prepared::new(
            "WITH w AS (SELECT seq, row_number() OVER (ORDER BY seq) AS rank \
                        FROM (SELECT seq FROM decision_changes WHERE ord IS NULL ORDER BY seq LIMIT ?) AS x), \
             top AS (SELECT coalesce(max(ord), 0) AS t FROM decision_changes) \
             UPDATE decision_changes AS d SET ord = top.t + w.rank FROM w, top WHERE d.seq = w.seq",
        )
        .bind::<diesel::sql_types::BigInt, _>(limit)
        .execute(c)?),
        DbConnection::Sqlite(_) => {
            let waiting: Vec<i64> = dc::table
                .filter(dc::ord.is_null())
                .order(dc::seq.asc())
                .limit(limit)
                .select(dc::seq)
                .load(conn)?;
            if waiting.is_empty() {
                return Ok(0);
            }
            let top: Option<i64> = dc::table.select(diesel::dsl::max(dc::ord)).first(conn)?;
            let after = top.unwrap_or(0);
            for (i, seq) in waiting.iter().enumerate() {
                diesel::update(dc::table.filter(dc::seq.eq(seq)))
                    .set(dc::ord.eq(Some(after + 1 + i as i64)))
                    .execute(conn)?;
            }
            Ok(waiting.len())
        }
    }
}

/// (oldest, newest) place still in the change log's order.
pub fn change_bounds(conn: &mut DbConnection) -> Result<(Option<i64>, Option<i64>)> {
    Ok(dc::table
        .select((diesel::dsl::min(dc::ord), diesel::dsl::max(dc::ord)))
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
            .filter(dc::ord.lt(newest)),
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

/// Terminated tenants whose erasure is due at `now`, has not been
/// requested yet and is not held back by a legal hold.
pub fn erasures_due(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<Vec<String>> {
    let due: Vec<String> = tn::table
        .filter(tn::erasure_due_at_us.le(to_us(now)))
        .filter(tn::erasure_requested_at_us.is_null())
        .select(tn::tenant_id)
        .order(tn::tenant_id.asc())
        .load(conn)?;
    if due.is_empty() {
        return Ok(due);
    }
    // A tenant with an active legal hold keeps everything until it ends:
    // its contract-end erasure waits (and opens on a later round).
    let held = tenants_on_hold(conn, now)?;
    Ok(due.into_iter().filter(|t| !held.contains(t)).collect())
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

/// One legal hold as stored: its texts (subject ref, reasons) still sealed.
#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::legal_holds)]
pub struct HoldRow {
    /// UUID.
    pub id: String,
    /// Tenant whose data is held.
    pub tenant_id: String,
    /// Hash of tenant and subject ref; empty = the whole tenant.
    pub subject_hash: String,
    /// JSON list of categories; `[]` = all.
    pub categories: String,
    /// Matter or case number.
    pub reference: String,
    /// Token subject of whoever placed it.
    pub placed_by: String,
    /// When.
    pub placed_at_us: i64,
    /// When it ends by itself.
    pub until_us: Option<i64>,
    /// When it was released.
    pub released_at_us: Option<i64>,
    /// Who released it.
    pub released_by: Option<String>,
    /// When it stopped holding and its withheld erasure was issued.
    pub ended_at_us: Option<i64>,
    /// Base64 of the sealed texts.
    pub texts_sealed: Option<String>,
    /// Key that sealed them.
    pub texts_key_id: Option<String>,
}

impl HoldRow {
    /// What the hold rules need of it.
    pub fn scope(&self) -> crate::instructions::model::holds::HoldScope {
        crate::instructions::model::holds::HoldScope {
            subject_hash: self.subject_hash.clone(),
            categories: crate::db::from_json_list(&self.categories),
            until: self.until_us.map(from_us),
            ended_at: self.ended_at_us.or(self.released_at_us).map(from_us),
        }
    }
}

/// Stores a new hold.
pub fn insert_hold(conn: &mut DbConnection, row: &HoldRow) -> Result<()> {
    diesel::insert_into(lh::table).values(row).execute(conn)?;
    Ok(())
}

/// One hold; `tenant` = `Some` restricts to that tenant (another tenant's
/// hold is NOT_FOUND like one that does not exist).
pub fn hold(conn: &mut DbConnection, tenant: Option<&str>, id: &str) -> Result<HoldRow> {
    let mut q = lh::table.filter(lh::id.eq(id)).into_boxed();
    if let Some(t) = tenant {
        q = q.filter(lh::tenant_id.eq(t));
    }
    q.first(conn)
        .optional()?
        .ok_or_else(|| Error::Missing(format!("legal hold {id}")))
}

/// The holds of `tenant` (None: every tenant), oldest first; with
/// `active_at`, only those active then.
pub fn holds(
    conn: &mut DbConnection,
    tenant: Option<&str>,
    active_at: Option<DateTime<Utc>>,
) -> Result<Vec<HoldRow>> {
    let mut q = lh::table
        .order((lh::placed_at_us.asc(), lh::id.asc()))
        .into_boxed();
    if let Some(t) = tenant {
        q = q.filter(lh::tenant_id.eq(t));
    }
    if let Some(now) = active_at {
        q = q
            .filter(lh::ended_at_us.is_null())
            .filter(lh::released_at_us.is_null())
            .filter(lh::until_us.is_null().or(lh::until_us.gt(to_us(now))));
    }
    Ok(q.load(conn)?)
}

/// Records a release (the hold stops holding at once).
pub fn release_hold(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    id: &str,
    by: &str,
    texts: &crate::secrets::sealed::StoredText,
) -> Result<()> {
    let n = diesel::update(
        lh::table
            .filter(lh::id.eq(id))
            .filter(lh::released_at_us.is_null()),
    )
    .set((
        lh::released_at_us.eq(Some(to_us(now))),
        lh::released_by.eq(Some(by)),
        lh::ended_at_us.eq(Some(to_us(now))),
        lh::texts_sealed.eq(texts.sealed.clone()),
        lh::texts_key_id.eq(texts.key_id.clone()),
    ))
    .execute(conn)?;
    if n != 1 {
        return Err(Error::WrongState(format!("legal hold {id} is already released")));
    }
    Ok(())
}

/// Holds whose `until` has passed but that were not ended yet: the
/// withheld erasure they held back is still to be issued.
pub fn holds_run_out(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<Vec<(String, String)>> {
    Ok(lh::table
        .filter(lh::ended_at_us.is_null())
        .filter(lh::until_us.le(to_us(now)))
        .select((lh::id, lh::tenant_id))
        .order(lh::id.asc())
        .load(conn)?)
}

/// Marks a hold whose `until` passed as ended; false when another replica
/// ended it first.
pub fn end_hold(conn: &mut DbConnection, now: DateTime<Utc>, id: &str) -> Result<bool> {
    Ok(
        diesel::update(lh::table.filter(lh::id.eq(id)).filter(lh::ended_at_us.is_null()))
            .set(lh::ended_at_us.eq(Some(to_us(now))))
            .execute(conn)?
            == 1,
    )
}

/// The tenants with a hold active at `now`.
pub fn tenants_on_hold(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<Vec<String>> {
    let mut t: Vec<String> = holds(conn, None, Some(now))?
        .into_iter()
        .map(|h| h.tenant_id)
        .collect();
    t.sort();
    t.dedup();
    Ok(t)
}

/// One withheld part of an erasure, not issued yet.
#[derive(Debug, Clone, Queryable)]
pub struct WithheldRow {
    /// UUID.
    pub id: String,
    /// The erasure request.
    pub request_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The system that holds the data.
    pub system: String,
    /// JSON list of the categories withheld.
    pub categories: String,
    /// When it was withheld.
    pub created_at_us: i64,
    /// When it was issued (always `None` from [`withheld_pending`]).
    pub issued_at_us: Option<i64>,
}

/// Records that `categories` of `system` were withheld from request
/// `request_id`; a second part for the same request and system merges into
/// the pending one.
pub fn insert_withheld(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    request_id: &str,
    tenant: &str,
    system: &str,
    categories: &[String],
) -> Result<()> {
    let pending: Option<WithheldRow> = wh::table
        .filter(wh::request_id.eq(request_id))
        .filter(wh::system.eq(system))
        .filter(wh::issued_at_us.is_null())
        .first(conn)
        .optional()?;
    if let Some(p) = pending {
        let mut cats = crate::db::from_json_list(&p.categories);
        cats.extend(categories.iter().cloned());
        cats.sort();
        cats.dedup();
        diesel::update(wh::table.filter(wh::id.eq(&p.id)))
            .set(wh::categories.eq(crate::db::to_json_list(&cats)))
            .execute(conn)?;
        return Ok(());
    }
    let mut cats = categories.to_vec();
    cats.sort();
    diesel::insert_into(wh::table)
        .values((
            wh::id.eq(uuid::Uuid::new_v4().to_string()),
            wh::request_id.eq(request_id),
            wh::tenant_id.eq(tenant),
            wh::system.eq(system),
            wh::categories.eq(crate::db::to_json_list(&cats)),
            wh::created_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The parts of `tenant`'s erasures still withheld, oldest first.
pub fn withheld_pending(conn: &mut DbConnection, tenant: &str) -> Result<Vec<WithheldRow>> {
    Ok(wh::table
        .filter(wh::tenant_id.eq(tenant))
        .filter(wh::issued_at_us.is_null())
        .order((wh::created_at_us.asc(), wh::id.asc()))
        .load(conn)?)
}

/// `(request_id, categories)` still withheld of the given requests.
pub fn withheld_of(conn: &mut DbConnection, request_ids: &[String]) -> Result<Vec<(String, String)>> {
    Ok(wh::table
        .filter(wh::request_id.eq_any(request_ids))
        .filter(wh::issued_at_us.is_null())
        .select((wh::request_id, wh::categories))
        .load(conn)?)
}

/// Narrows a withheld part to what is still held, or marks it issued when
/// nothing is (`still` empty).
pub fn update_withheld(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    id: &str,
    still: &[String],
) -> Result<()> {
    let q = wh::table.filter(wh::id.eq(id));
    if still.is_empty() {
        diesel::update(q)
            .set(wh::issued_at_us.eq(Some(to_us(now))))
            .execute(conn)?;
    } else {
        diesel::update(q)
            .set(wh::categories.eq(crate::db::to_json_list(still)))
            .execute(conn)?;
    }
    Ok(())
}

/// Stores logged decisions, each subject ref sealed (bound to its
/// decision id).
pub fn insert_decisions(
    conn: &mut DbConnection,
    ring: &crate::secrets::KeyRing,
    batch: &[crate::instructions::decision_log::LoggedDecision],
) -> Result<()> {
    use crate::db::schema::decision_log as dl;
    use crate::secrets::sealed::{Field, StoredText};
    for d in batch {
        let subject = StoredText::seal(ring, Field::DecisionSubject, &d.decision_id, &d.subject_ref)?;
        let reasons: Vec<u8> = d.reasons.iter().map(|r| r as u8).collect();
        diesel::insert_into(dl::table)
            .values((
                dl::decision_id.eq(&d.decision_id),
                dl::at_us.eq(to_us(d.at)),
                dl::tenant_id.eq(&d.tenant_id),
                dl::category.eq(&d.category),
                dl::purpose.eq(&d.purpose),
                dl::region.eq(&d.region),
                dl::sub_processor_id.eq(&d.sub_processor_id),
                dl::subject_sealed.eq(subject.sealed),
                dl::subject_key_id.eq(subject.key_id),
                dl::allowed.eq(d.reasons.is_empty()),
                dl::reasons.eq(serde_json::to_string(&reasons).unwrap_or_else(|_| "[]".into())),
                dl::instruction_version.eq(i64::try_from(d.instruction_version).unwrap_or(i64::MAX)),
                dl::caller.eq(&d.caller),
                dl::trace_id.eq(&d.trace_id),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Which logged decisions a listing asks for.
#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    /// One tenant, or every tenant.
    pub tenant: Option<String>,
    /// Only ALLOWs (`Some(true)`) or DENYs (`Some(false)`).
    pub allowed: Option<bool>,
    /// Decided at or after.
    pub from: Option<DateTime<Utc>>,
    /// Decided before.
    pub to: Option<DateTime<Utc>>,
}

/// A page of logged decisions under `f`, in the order they were stored,
/// after row `after`: `(seq, record)` with the subject ref opened.
pub fn list_decisions(
    conn: &mut DbConnection,
    ring: &crate::secrets::KeyRing,
    f: &DecisionFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, crate::instructions::decision_log::LoggedDecision)>> {
    use crate::db::schema::decision_log as dl;
    use crate::secrets::sealed::{Field, StoredText};
    type Row = (
        i64,
        String,
        i64,
        String,
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        bool,
        String,
        i64,
        String,
        String,
    );
    let mut q = dl::table
        .filter(dl::seq.gt(after))
        .order(dl::seq.asc())
        .limit(limit)
        .into_boxed();
    if let Some(t) = &f.tenant {
        q = q.filter(dl::tenant_id.eq(t));
    }
    if let Some(a) = f.allowed {
        q = q.filter(dl::allowed.eq(a));
    }
    if let Some(from) = f.from {
        q = q.filter(dl::at_us.ge(to_us(from)));
    }
    if let Some(to) = f.to {
        q = q.filter(dl::at_us.lt(to_us(to)));
    }
    let rows: Vec<Row> = q.load(conn)?;
    rows.into_iter()
        .map(|r| {
            let subject =
                StoredText::from_columns(None, r.9, r.8).open(ring, Field::DecisionSubject, &r.1)?;
            let wire: Vec<u8> = serde_json::from_str(&r.11).unwrap_or_default();
            Ok((
                r.0,
                crate::instructions::decision_log::LoggedDecision {
                    decision_id: r.1,
                    at: from_us(r.2),
                    tenant_id: r.3,
                    category: r.4,
                    purpose: r.5,
                    region: r.6,
                    sub_processor_id: r.7,
                    subject_ref: subject,
                    reasons: crate::instructions::model::decide::Reasons::from_wire(&wire),
                    instruction_version: u64::try_from(r.12).unwrap_or(0),
                    caller: r.13,
                    trace_id: r.14,
                },
            ))
        })
        .collect()
}

/// Deletes logged decisions made before `before`; returns how many.
pub fn sweep_decisions(conn: &mut DbConnection, before: DateTime<Utc>) -> Result<usize> {
    use crate::db::schema::decision_log as dl;
    Ok(diesel::delete(dl::table.filter(dl::at_us.lt(to_us(before)))).execute(conn)?)
}
