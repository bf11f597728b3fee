//! New forwarded requests recorded in one statement on PostgreSQL that
//! commits on its own, alone or several together ([`crate::db::batch`]):
//! each of its values an array of one per request, each request's wait,
//! refs, envelopes and audit events tied to it by its id.

use diesel::RunQueryDsl;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};

use super::{Deadlines, NewRequest, Receipt, RequestRecord, Row, TenantSettings};
use crate::audit::model::AuditEvent;
use crate::db::flush::Pending;
use crate::db::prepared::Prepared;
use crate::error::{Error, Result};
use crate::inbox::repo::NewEnvelope;
use crate::subject_requests::model::Status;

/// A new forwarded request ready to be recorded in one statement, as one
/// value that can wait in a batch.
#[derive(Debug)]
pub struct ForwardedAtOnce {
    /// The request.
    pub new: NewRequest,
    /// Its deadlines, computed from `assumed`.
    pub at: Deadlines,
    /// Its signed receipt (its time is the command's).
    pub receipt: Receipt,
    /// The tenant's settings the deadlines assume.
    pub assumed: TenantSettings,
    /// Its envelopes and audit events.
    pub pending: Pending,
}

/// Records `items` in one statement: one answer per item, in order, each
/// its request as stored or None when nothing was written for it (its
/// tenant's settings are no longer the assumed ones or another request
/// holds its idempotency key: the caller then records it as a
/// transaction, which tells the two apart). When the shared statement of
/// several fails (nothing of it committed), each is recorded on its own,
/// so one request's error stays its own.
pub fn insert_forwarded_batch(
    c: &mut diesel::PgConnection,
    items: Vec<ForwardedAtOnce>,
) -> Vec<Result<Option<RequestRecord>>> {
    if items.len() > 1 {
        match insert_together(c, &items) {
            Ok(answers) => return answers,
            Err(e) => tracing::warn!(
                error = %e,
                requests = items.len(),
                "forwarded requests recorded one by one after their shared statement failed"
            ),
        }
    }
    items
        .iter()
        .map(|i| {
            insert_together(c, std::slice::from_ref(i))?
                .pop()
                .unwrap_or_else(|| Err(Error::Unexpected("a forwarded request got no answer".into())))
        })
        .collect()
}

/// The statement. A request whose tenant's settings are no longer the
/// assumed ones, or whose idempotency key is taken, is not inserted, and
/// nothing of its own is (its wait, refs, envelopes and events join `req`
/// by its id). The recipients' inbox locks are all taken (`locked`, an
/// aggregate) before the first envelope's cursor is drawn, in one order,
/// as [`crate::db::flush`] takes them.
const SQL: &str = "WITH d AS (
    SELECT * FROM unnest(?::text[], ?::integer[],
        ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[],
        ?::text[], ?::text[], ?::text[], ?::text[],
        ?::bigint[], ?::bigint[], ?::bigint[], ?::boolean[], ?::text[],
        ?::bigint[], ?::text[], ?::text[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[],
        ?::bigint[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])
    WITH ORDINALITY AS d(tz, sla,
        id, tenant_id, origin, request_type, status, regime, channel, idempotency_key, body_digest,
        subject_ref, subject_sealed, subject_key_id, categories,
        received_at_us, due_at_us, sla_due_at_us, extended, extension_reason,
        receipt_issued_at_us, receipt_signature, receipt_key_id, created_at_us, updated_at_us, closed_at_us, version,
        export_downloaded_at_us, export_deleted_at_us, close_reason, rejection_ground, reasons_sealed, reasons_key_id,
        forwarded_by, n)
), ok AS (
    SELECT d.* FROM d LEFT JOIN subject_tenant_settings AS s ON s.tenant_id = d.tenant_id
    WHERE COALESCE(s.time_zone, ?) = d.tz AND COALESCE(s.sla_days, ?) = d.sla
), req AS (
    INSERT INTO subject_requests (id, tenant_id, origin, request_type, status, regime,
        channel, idempotency_key, body_digest, subject_ref, subject_sealed, subject_key_id,
        categories, received_at_us, due_at_us, sla_due_at_us, extended, extension_reason,
        receipt_issued_at_us, receipt_signature, receipt_key_id, created_at_us, updated_at_us,
        closed_at_us, version, export_downloaded_at_us, export_deleted_at_us, close_reason,
        rejection_ground, reasons_sealed, reasons_key_id)
    SELECT id, tenant_id, origin, request_type, status, regime,
        channel, idempotency_key, body_digest, subject_ref, subject_sealed, subject_key_id,
        categories, received_at_us, due_at_us, sla_due_at_us, extended, extension_reason,
        receipt_issued_at_us, receipt_signature, receipt_key_id, created_at_us, updated_at_us,
        closed_at_us, version, export_downloaded_at_us, export_deleted_at_us, close_reason,
        rejection_ground, reasons_sealed, reasons_key_id
    FROM ok ORDER BY n
    ON CONFLICT (tenant_id, origin, idempotency_key) DO NOTHING
    RETURNING seq, id, tenant_id
), waits AS (
    INSERT INTO subject_request_waits (request_id, forwarded_by)
    SELECT req.id, ok.forwarded_by FROM req JOIN ok ON ok.id = req.id
    WHERE ok.forwarded_by IS NOT NULL
    RETURNING 1
), refs AS (
    INSERT INTO subject_request_refs (request_id, tenant_id, subject_ref)
    SELECT req.id, req.tenant_id, u.r
    FROM unnest(?::text[], ?::text[]) WITH ORDINALITY AS u(request_id, r, n)
    JOIN req ON req.id = u.request_id
    ORDER BY u.n
    RETURNING 1
), locked AS (
    SELECT count(*) AS n FROM (SELECT pg_advisory_xact_lock(k) FROM unnest(?::bigint[]) AS k) AS taken
), env AS (
    INSERT INTO envelopes (id, recipient, kind, payload, created_at_us, delivery_count)
    SELECT u.id, u.recipient, u.kind, u.payload, u.created_at_us, 0
    FROM locked, unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[])
        WITH ORDINALITY AS u(request_id, id, recipient, kind, payload, created_at_us, n)
    JOIN req ON req.id = u.request_id
    ORDER BY u.n
    RETURNING 1
), ev AS (
    INSERT INTO audit_events (id, at_us, actor, role, tenant_id, action, target, outcome, trace_id, detail, prev_digest, digest)
    SELECT u.id, u.at_us, u.actor, u.role, u.tenant_id, u.action, u.target, u.outcome, u.trace_id, u.detail, '', u.digest
    FROM locked, unnest(?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[],
            ?::text[], ?::text[], ?::text[], ?::text[])
        WITH ORDINALITY AS u(request_id, id, at_us, actor, role, tenant_id, action, target, outcome, trace_id, detail, digest, n)
    JOIN req ON req.id = u.request_id
    ORDER BY u.n
    RETURNING 1
)
SELECT req.seq, req.id, (SELECT count(*) FROM env) AS envelopes, (SELECT count(*) FROM ev) AS events FROM req";

/// One request the statement inserted, with what the whole statement
/// inserted beside the requests.
#[derive(diesel::QueryableByName)]
struct Inserted {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = BigInt)]
    envelopes: i64,
    #[diesel(sql_type = BigInt)]
    events: i64,
}

/// Runs [`SQL`] for `items`. Err: the statement failed and wrote nothing.
/// Ok: per item its request as stored, None when it was not inserted (the
/// caller records it as a transaction), or an error when the statement
/// wrote other than what the inserted requests carried.
fn insert_together(
    c: &mut diesel::PgConnection,
    items: &[ForwardedAtOnce],
) -> Result<Vec<Result<Option<RequestRecord>>>> {
    let rows: Vec<Row> = items
        .iter()
        .map(|i| Row::new(&i.new, i.at, Status::Forwarded, &i.receipt))
        .collect();
    let inserted: Vec<Inserted> = bind(Prepared::new(SQL), items, &rows).load(c)?;
    let seqs: std::collections::HashMap<&str, i64> =
        inserted.iter().map(|i| (i.id.as_str(), i.seq)).collect();
    let (mut envelopes, mut events) = (0_i64, 0_i64);
    for i in items.iter().filter(|i| seqs.contains_key(i.new.id.as_str())) {
        envelopes += i.pending.envelopes.len() as i64;
        events += i.pending.events.len() as i64;
    }
    let wrote = inserted.first().map_or((0, 0), |i| (i.envelopes, i.events));
    let complete = wrote == (envelopes, events);
    Ok(items
        .iter()
        .zip(rows)
        .map(|(item, row)| {
            let Some(&seq) = seqs.get(item.new.id.as_str()) else {
                return Ok(None);
            };
            if !complete {
                return Err(Error::Unexpected(format!(
                    "a batch of forwarded requests wrote {} of {envelopes} envelopes and {} of {events} audit events",
                    wrote.0, wrote.1
                )));
            }
            item.pending.written();
            row.stored(seq, &item.new).map(Some)
        })
        .collect())
}

/// Binds [`SQL`]'s placeholders, in their order.
fn bind<'a>(q: Prepared<'a>, items: &'a [ForwardedAtOnce], rows: &'a [Row]) -> Prepared<'a> {
    let defaults = TenantSettings::default();
    let text = |f: fn(&Row) -> &str| -> Vec<&str> { rows.iter().map(f).collect() };
    let maybe = |f: fn(&Row) -> Option<&str>| -> Vec<Option<&str>> { rows.iter().map(f).collect() };
    let us = |f: fn(&Row) -> i64| -> Vec<i64> { rows.iter().map(f).collect() };
    let maybe_us = |f: fn(&Row) -> Option<i64>| -> Vec<Option<i64>> { rows.iter().map(f).collect() };
    let tz: Vec<&str> = items.iter().map(|i| i.assumed.time_zone.as_str()).collect();
    let sla: Vec<i32> = items
        .iter()
        .map(|i| i32::try_from(i.assumed.sla_days).unwrap_or(i32::MAX))
        .collect();
    let by: Vec<Option<&str>> = items.iter().map(|i| i.new.forwarded_by.as_deref()).collect();
    let (mut ref_of, mut refs) = (Vec::new(), Vec::new());
    for i in items {
        for r in &i.new.subject_refs {
            ref_of.push(i.new.id.as_str());
            refs.push(r.as_str());
        }
    }
    let envs: Vec<(&str, &NewEnvelope)> = items
        .iter()
        .flat_map(|i| i.pending.envelopes.iter().map(move |e| (i.new.id.as_str(), e)))
        .collect();
    let evs: Vec<(&str, &AuditEvent)> = items
        .iter()
        .flat_map(|i| i.pending.events.iter().map(move |e| (i.new.id.as_str(), e)))
        .collect();
    let mut locks: Vec<i64> = envs.iter().map(|(_, e)| e.lock_id()).collect();
    locks.sort_unstable();
    locks.dedup();
    let env = |f: fn(&NewEnvelope) -> &str| -> Vec<&str> { envs.iter().map(|(_, e)| f(e)).collect() };
    let q = q
        .bind::<Array<Text>, _>(tz)
        .bind::<Array<Integer>, _>(sla)
        .bind::<Array<Text>, _>(text(|r| &r.id))
        .bind::<Array<Text>, _>(text(|r| &r.tenant_id))
        .bind::<Array<Text>, _>(text(|r| &r.origin))
        .bind::<Array<Text>, _>(text(|r| &r.request_type))
        .bind::<Array<Text>, _>(text(|r| &r.status))
        .bind::<Array<Text>, _>(text(|r| &r.regime))
        .bind::<Array<Text>, _>(text(|r| &r.channel))
        .bind::<Array<Text>, _>(text(|r| &r.idempotency_key))
        .bind::<Array<Text>, _>(text(|r| &r.body_digest))
        .bind::<Array<Nullable<Text>>, _>(maybe(|r| r.subject_ref.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(maybe(|r| r.subject_sealed.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(maybe(|r| r.subject_key_id.as_deref()))
        .bind::<Array<Text>, _>(text(|r| &r.categories))
        .bind::<Array<BigInt>, _>(us(|r| r.received_at_us))
        .bind::<Array<BigInt>, _>(us(|r| r.due_at_us))
        .bind::<Array<BigInt>, _>(us(|r| r.sla_due_at_us))
        .bind::<Array<Bool>, _>(rows.iter().map(|r| r.extended).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(maybe(|r| r.extension_reason.as_deref()))
        .bind::<Array<BigInt>, _>(us(|r| r.receipt_issued_at_us))
        .bind::<Array<Text>, _>(text(|r| &r.receipt_signature))
        .bind::<Array<Text>, _>(text(|r| &r.receipt_key_id))
        .bind::<Array<BigInt>, _>(us(|r| r.created_at_us))
        .bind::<Array<BigInt>, _>(us(|r| r.updated_at_us))
        .bind::<Array<Nullable<BigInt>>, _>(maybe_us(|r| r.closed_at_us))
        .bind::<Array<BigInt>, _>(us(|r| r.version))
        .bind::<Array<Nullable<BigInt>>, _>(maybe_us(|r| r.export_downloaded_at_us))
        .bind::<Array<Nullable<BigInt>>, _>(maybe_us(|r| r.export_deleted_at_us))
        .bind::<Array<Nullable<Text>>, _>(maybe(|r| r.close_reason.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(maybe(|r| r.rejection_ground.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(maybe(|r| r.reasons_sealed.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(maybe(|r| r.reasons_key_id.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(by)
        .bind::<Text, _>(defaults.time_zone)
        .bind::<Integer, _>(i32::try_from(defaults.sla_days).unwrap_or(i32::MAX))
        .bind::<Array<Text>, _>(ref_of)
        .bind::<Array<Text>, _>(refs)
        .bind::<Array<BigInt>, _>(locks)
        .bind::<Array<Text>, _>(envs.iter().map(|(r, _)| *r).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(env(|e| &e.id))
        .bind::<Array<Text>, _>(envs.iter().map(|(_, e)| e.to.to_string()).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(env(|e| &e.kind))
        .bind::<Array<Text>, _>(env(|e| &e.payload))
        .bind::<Array<BigInt>, _>(
            envs.iter()
                .map(|(_, e)| crate::db::to_us(e.created_at))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(evs.iter().map(|(r, _)| *r).collect::<Vec<_>>());
    crate::db::flush::bind_events(q, &evs.iter().map(|(_, e)| *e).collect::<Vec<_>>())
}
