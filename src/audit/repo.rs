//! The audit chain in the database: append under the chain lock, page
//! through per tenant, verify in batches.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::audit::model::{AuditEntry, AuditEvent, ChainVerifier};
use crate::db::schema::audit_events::dsl as a;
use crate::db::{DbConnection, chain_lock, from_us, to_us};
use crate::error::Result;

/// Events read per query while verifying.
const VERIFY_BATCH: i64 = 1000;

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::audit_events)]
struct Row {
    seq: i64,
    id: String,
    at_us: i64,
    actor: String,
    role: String,
    tenant_id: Option<String>,
    action: String,
    target: String,
    outcome: String,
    trace_id: String,
    detail: String,
    prev_digest: String,
    digest: String,
}

impl From<Row> for AuditEvent {
    fn from(r: Row) -> Self {
        AuditEvent {
            id: r.id,
            seq: r.seq,
            at: from_us(r.at_us),
            entry: AuditEntry {
                actor: r.actor,
                role: r.role,
                tenant_id: r.tenant_id,
                action: r.action,
                target: r.target,
                outcome: r.outcome,
                trace_id: r.trace_id,
                detail: r.detail,
            },
            prev_digest: r.prev_digest,
            digest: r.digest,
        }
    }
}

impl From<&AuditEvent> for Row {
    fn from(e: &AuditEvent) -> Self {
        Row {
            seq: e.seq,
            id: e.id.clone(),
            at_us: to_us(e.at),
            actor: e.entry.actor.clone(),
            role: e.entry.role.clone(),
            tenant_id: e.entry.tenant_id.clone(),
            action: e.entry.action.clone(),
            target: e.entry.target.clone(),
            outcome: e.entry.outcome.clone(),
            trace_id: e.entry.trace_id.clone(),
            detail: e.entry.detail.clone(),
            prev_digest: e.prev_digest.clone(),
            digest: e.digest.clone(),
        }
    }
}

/// Appends `entry` to the chain inside the caller's transaction, so the event
/// commits exactly when the change it records does.
pub fn append(conn: &mut DbConnection, at: DateTime<Utc>, entry: AuditEntry) -> Result<AuditEvent> {
    chain_lock(conn)?;
    let last: Option<(i64, String)> = a::audit_events
        .select((a::seq, a::digest))
        .order(a::seq.desc())
        .first(conn)
        .optional()?;
    let ev = AuditEvent::chain(
        uuid::Uuid::new_v4().to_string(),
        at,
        entry,
        last.as_ref().map(|(s, d)| (*s, d.as_str())),
    );
    diesel::insert_into(a::audit_events)
        .values(Row::from(&ev))
        .execute(conn)?;
    Ok(ev)
}

/// One page of events in chain order, optionally for one tenant only.
pub fn list(
    conn: &mut DbConnection,
    tenant: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<Vec<AuditEvent>> {
    let mut q = a::audit_events
        .filter(a::seq.gt(after))
        .order(a::seq.asc())
        .limit(limit)
        .into_boxed();
    if let Some(t) = tenant {
        q = q.filter(a::tenant_id.eq(t));
    }
    Ok(q.load::<Row>(conn)?.into_iter().map(Into::into).collect())
}

/// Recomputes the whole chain; returns (events checked, first bad event id).
pub fn verify(conn: &mut DbConnection) -> Result<(u64, Option<String>)> {
    let mut v = ChainVerifier::new();
    loop {
        let batch: Vec<Row> = a::audit_events
            .filter(a::seq.gt(v.last_seq()))
            .order(a::seq.asc())
            .limit(VERIFY_BATCH)
            .load(conn)?;
        let n = batch.len();
        for r in batch {
            if !v.feed(&r.into()) {
                return Ok(v.finish());
            }
        }
        if (n as i64) < VERIFY_BATCH {
            return Ok(v.finish());
        }
    }
}
