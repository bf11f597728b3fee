//! The rows every command writes besides its own: its audit events and its
//! envelopes, kept on the [`crate::db::pipeline::Tx`] while the command
//! runs and written when it is done, just before commit.
//!
//! On PostgreSQL they go in one statement: an event and an envelope were
//! two of a write's eight round trips, and each round trip is a wake-up of
//! the database's backend and of the command's thread. Written last, the
//! recipients' inbox locks are also held for the shortest time (from the
//! cursor drawn to commit, which is what they order) and taken in one
//! order (by lock id), so two commands writing to the same two inboxes
//! cannot deadlock on them. On SQLite, where a statement is a function
//! call, they are inserted one by one.

use chrono::{DateTime, Utc};
use diesel::RunQueryDsl;

use super::DbConnection;
use super::prepared::Prepared;
use crate::audit::model::{AuditEntry, AuditEvent};
use crate::error::Result;
use crate::inbox::repo::NewEnvelope;

/// What a command has written through its `Tx` and not yet inserted.
#[derive(Debug, Default)]
pub struct Pending {
    /// Audit events, in the order the command wrote them.
    pub events: Vec<AuditEvent>,
    /// Envelopes, in the order the command wrote them (a recipient's
    /// cursors follow that order).
    pub envelopes: Vec<NewEnvelope>,
}

impl Pending {
    /// Adds `actor`'s audit event: `action` on `target`, about `tenant`
    /// (None: the actor's own tenant, if any), with `outcome` and `detail`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn audit(
        &mut self,
        now: DateTime<Utc>,
        actor: &super::pipeline::Actor,
        action: &str,
        target: &str,
        tenant: Option<&str>,
        outcome: &str,
        detail: &str,
    ) {
        let entry = AuditEntry {
            actor: actor.sub.clone(),
            role: actor.role.clone(),
            tenant_id: tenant.map(str::to_owned).or_else(|| actor.tenant_id.clone()),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
            trace_id: actor.trace_id.clone(),
            detail: detail.to_owned(),
        };
        self.events.push(crate::audit::repo::new_event(now, entry));
    }

    /// Adds an envelope of `kind` for `to`.
    pub(crate) fn envelope(
        &mut self,
        now: DateTime<Utc>,
        to: &crate::inbox::model::Recipient,
        kind: crate::inbox::kinds::EnvelopeKind,
        payload: &serde_json::Value,
    ) {
        self.envelopes
            .push(NewEnvelope::new(now, to, kind.as_str(), payload));
    }

    /// Inserts everything pending, in one statement on PostgreSQL.
    pub fn write(self, conn: &mut DbConnection, now: DateTime<Utc>) -> Result<()> {
        if self.events.is_empty() && self.envelopes.is_empty() {
            return Ok(());
        }
        match conn {
            DbConnection::Pg(c) => self.write_pg(c, now),
            DbConnection::Sqlite(_) => {
                for ev in &self.events {
                    crate::audit::repo::insert(conn, ev)?;
                }
                for env in &self.envelopes {
                    crate::inbox::repo::insert(conn, env)?;
                }
                Ok(())
            }
        }
    }

    fn write_pg(self, c: &mut diesel::PgConnection, now: DateTime<Utc>) -> Result<()> {
        let written: Written = self.bind(Prepared::new(FLUSH_SQL), now).get_result(c)?;
        self.check(written.envelopes, written.events)?;
        self.written();
        Ok(())
    }

    /// Binds `q`'s placeholders for [`FLUSH_SQL`], in their order.
    fn bind<'a>(&'a self, q: Prepared<'a>, now: DateTime<Utc>) -> Prepared<'a> {
        use diesel::sql_types::{Array, BigInt, Text};
        let mut locks: Vec<i64> = self.envelopes.iter().map(NewEnvelope::lock_id).collect();
        locks.sort_unstable();
        locks.dedup();
        let col = |f: fn(&NewEnvelope) -> &str| -> Vec<&str> { self.envelopes.iter().map(f).collect() };
        let recipients: Vec<String> = self.envelopes.iter().map(|e| e.to.to_string()).collect();
        let q = q
            .bind::<Array<BigInt>, _>(locks)
            .bind::<BigInt, _>(super::to_us(now))
            .bind::<Array<Text>, _>(col(|e| &e.id))
            .bind::<Array<Text>, _>(recipients)
            .bind::<Array<Text>, _>(col(|e| &e.kind))
            .bind::<Array<Text>, _>(col(|e| &e.payload));
        bind_events(q, &self.events.iter().collect::<Vec<_>>())
    }

    /// Refuses a statement that wrote other than everything pending.
    fn check(&self, envelopes: i64, events: i64) -> Result<()> {
        if envelopes != self.envelopes.len() as i64 || events != self.events.len() as i64 {
            return Err(crate::error::Error::Unexpected(format!(
                "wrote {envelopes} of {} envelopes and {events} of {} audit events",
                self.envelopes.len(),
                self.events.len()
            )));
        }
        Ok(())
    }

    /// Wakes, once committed, what waits for these envelopes and events.
    pub(crate) fn written(&self) {
        for env in &self.envelopes {
            env.written();
        }
        if !self.events.is_empty() {
            crate::audit::repo::written();
        }
    }
}

/// Binds the columns of `events`, one array each, in the order of the
/// `ev` part of [`FLUSH_SQL`] (id, time, actor, role, tenant, action,
/// target, outcome, trace, detail, digest): for every statement that
/// inserts audit events from arrays.
pub(crate) fn bind_events<'a>(q: Prepared<'a>, events: &[&'a AuditEvent]) -> Prepared<'a> {
    use diesel::sql_types::{Array, BigInt, Nullable, Text};
    let ev = |f: fn(&AuditEvent) -> &str| -> Vec<&'a str> { events.iter().map(|e| f(e)).collect() };
    let at_us: Vec<i64> = events.iter().map(|e| super::to_us(e.at)).collect();
    let tenants: Vec<Option<&str>> = events.iter().map(|e| e.entry.tenant_id.as_deref()).collect();
    q.bind::<Array<Text>, _>(ev(|e| &e.id))
        .bind::<Array<BigInt>, _>(at_us)
        .bind::<Array<Text>, _>(ev(|e| &e.entry.actor))
        .bind::<Array<Text>, _>(ev(|e| &e.entry.role))
        .bind::<Array<Nullable<Text>>, _>(tenants)
        .bind::<Array<Text>, _>(ev(|e| &e.entry.action))
        .bind::<Array<Text>, _>(ev(|e| &e.entry.target))
        .bind::<Array<Text>, _>(ev(|e| &e.entry.outcome))
        .bind::<Array<Text>, _>(ev(|e| &e.entry.trace_id))
        .bind::<Array<Text>, _>(ev(|e| &e.entry.detail))
        .bind::<Array<Text>, _>(ev(|e| &e.digest))
}

/// A command's envelopes and events on their own, just before commit. The
/// recipients' locks are all taken (`locked` is an aggregate over them)
/// before the first envelope's cursor, its column default, is drawn, and
/// the envelopes are inserted in the command's order (`ORDER BY n`), so a
/// recipient's cursors follow it. Bound by [`Pending::bind`].
const FLUSH_SQL: &str = "WITH locked AS (
    SELECT count(*) AS n FROM (SELECT pg_advisory_xact_lock(k) FROM unnest(?::bigint[]) AS k) AS taken
), env AS (
    INSERT INTO envelopes (id, recipient, kind, payload, created_at_us, delivery_count)
    SELECT u.id, u.recipient, u.kind, u.payload, ?, 0
    FROM locked, unnest(?::text[], ?::text[], ?::text[], ?::text[]) WITH ORDINALITY AS u(id, recipient, kind, payload, n)
    ORDER BY u.n
    RETURNING 1
), ev AS (
    INSERT INTO audit_events (id, at_us, actor, role, tenant_id, action, target, outcome, trace_id, detail, prev_digest, digest)
    SELECT u.id, u.at_us, u.actor, u.role, u.tenant_id, u.action, u.target, u.outcome, u.trace_id, u.detail, '', u.digest
    FROM locked, unnest(?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[])
        WITH ORDINALITY AS u(id, at_us, actor, role, tenant_id, action, target, outcome, trace_id, detail, digest, n)
    ORDER BY u.n
    RETURNING 1
)
SELECT (SELECT count(*) FROM env) AS envelopes, (SELECT count(*) FROM ev) AS events";

#[derive(diesel::QueryableByName)]
struct Written {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    envelopes: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    events: i64,
}
