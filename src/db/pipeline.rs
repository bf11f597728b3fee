//! The command pipeline: every state change runs as one transaction that
//! writes its rows, its audit event, its envelopes and its decision
//! change-log entries together, through the helpers on [`Tx`].
//!
//! A capability's `service.rs` calls [`Store::command`] once per command;
//! the closure gets a [`Tx`] that knows the time, the actor and the
//! connection, so a service never builds an audit entry by hand, and a repo
//! function (rows and queries only) never writes an audit event or an
//! envelope. What a command changed for decisions is collected on the
//! [`Tx`] and returned with the value, so the caller can bring its replica's
//! decision snapshots up to date before it answers.

use chrono::{DateTime, Utc};

use super::{DbConnection, Store};
use crate::auth::{Caller, Role};
use crate::error::Result;
use crate::inbox::kinds::EnvelopeKind;
use crate::inbox::model::Recipient;

/// Who runs a command: what its audit events name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Token subject (a person, or a platform system's name), or `proctor`.
    pub sub: String,
    /// The role acted under (`tenant`, `platform`, `compliance`, `sre`,
    /// `service` for proctor's own jobs).
    pub role: String,
    /// The acting tenant of a tenant token.
    pub tenant_id: Option<String>,
    /// The trace the command ran in, so an auditor can find its spans.
    pub trace_id: String,
}

impl Actor {
    /// The caller of an RPC, in the current trace.
    pub fn of(caller: &Caller) -> Self {
        Self {
            sub: caller.sub.clone(),
            role: caller.role.as_str().to_owned(),
            tenant_id: (caller.role == Role::Tenant)
                .then(|| caller.tenant_id.clone())
                .flatten(),
            trace_id: crate::telemetry::current_trace_id(),
        }
    }

    /// proctor itself (background jobs): no token, no trace of a caller.
    pub fn service() -> Self {
        Self {
            sub: "proctor".into(),
            role: "service".into(),
            tenant_id: None,
            trace_id: crate::telemetry::current_trace_id(),
        }
    }
}

/// What a committed command changed for decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionChanges {
    /// Tenants whose decisions changed.
    pub tenants: Vec<String>,
    /// True when every tenant's decisions changed (the registry, the taxonomy).
    pub all: bool,
    /// The highest change-log seq the command wrote (0: none), for the
    /// caller's consistency token.
    pub seq: i64,
}

impl DecisionChanges {
    /// True when nothing changed for decisions.
    pub fn is_empty(&self) -> bool {
        !self.all && self.tenants.is_empty()
    }
}

/// A command's value once committed, with what it changed for decisions.
#[derive(Debug)]
pub struct Committed<T> {
    /// What the command returned.
    pub value: T,
    /// What the caller's replica must catch up on before it answers.
    pub changes: DecisionChanges,
}

/// One command's transaction: the connection, the command's time and
/// actor, and the shared writes every command makes.
pub struct Tx<'c> {
    conn: &'c mut DbConnection,
    now: DateTime<Utc>,
    actor: &'c Actor,
    changes: DecisionChanges,
    /// Audit events and envelopes, written when the command is done
    /// ([`super::flush`]).
    pending: super::flush::Pending,
}

impl<'c> Tx<'c> {
    /// The transaction's connection, for the capability's repo.
    pub fn conn(&mut self) -> &mut DbConnection {
        self.conn
    }

    /// The command's time: one instant for every row it writes.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Who runs the command.
    pub fn actor(&self) -> &Actor {
        self.actor
    }

    /// Appends the command's audit event: `action` on `target`, about
    /// `tenant` (None: the actor's own tenant, if any), with `detail` (JSON
    /// text; never personal data, only ids, counts and lengths).
    pub fn audit(&mut self, action: &str, target: &str, tenant: Option<&str>, detail: &str) -> Result<()> {
        self.audit_outcome(action, target, tenant, "ok", detail)
    }

    /// [`Tx::audit`] with an outcome other than `ok`.
    pub fn audit_outcome(
        &mut self,
        action: &str,
        target: &str,
        tenant: Option<&str>,
        outcome: &str,
        detail: &str,
    ) -> Result<()> {
        self.pending
            .audit(self.now, self.actor, action, target, tenant, outcome, detail);
        Ok(())
    }

    /// Puts an envelope of `kind` in `to`'s inbox, committed with the change
    /// that caused it (inserted when the command is done, as its audit
    /// events are).
    pub fn envelope(
        &mut self,
        to: &Recipient,
        kind: EnvelopeKind,
        payload: &serde_json::Value,
    ) -> Result<()> {
        self.pending.envelope(self.now, to, kind, payload);
        Ok(())
    }

    /// Logs that `tenant`'s decisions changed, so every replica recompiles
    /// its snapshot (and this one before it answers).
    pub fn decisions_changed(&mut self, tenant: &str) -> Result<()> {
        crate::instructions::repo::record_change(self.conn, self.now, tenant)?;
        if !self.changes.tenants.iter().any(|t| t == tenant) {
            self.changes.tenants.push(tenant.to_owned());
        }
        Ok(())
    }

    /// Notes that every tenant's decisions changed (a registry change):
    /// the change-log entries are the registry repo's to write.
    pub fn note_all_decisions_changed(&mut self) {
        self.changes.all = true;
    }

    /// Notes, without a change-log entry, that `tenant`'s decisions changed:
    /// for repo functions that already wrote the entry themselves.
    pub fn note_decisions_changed(&mut self, tenant: &str) {
        if !self.changes.tenants.iter().any(|t| t == tenant) {
            self.changes.tenants.push(tenant.to_owned());
        }
    }
}

impl Store {
    /// Runs command `op` for `actor` as one write transaction: all of it
    /// commits or none of it does. The value comes back with what the
    /// command changed for decisions.
    pub async fn command<T, F>(&self, op: &'static str, actor: Actor, f: F) -> Result<Committed<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        self.write(op, move |conn, clock| {
            let mut tx = Tx {
                conn,
                now: clock.now(),
                actor: &actor,
                changes: DecisionChanges::default(),
                pending: Default::default(),
            };
            let (value, seq) = crate::instructions::repo::collect_written(|| f(&mut tx));
            let value = value?;
            std::mem::take(&mut tx.pending).write(tx.conn, tx.now)?;
            let mut changes = tx.changes;
            changes.seq = seq;
            Ok(Committed { value, changes })
        })
        .await
        .inspect(|done| note_written(done.changes.seq))
    }
}

tokio::task_local! {
    /// The highest change-log seq the RPC running in this task committed
    /// (0: none); set inside [`with_written`].
    static RPC_WRITTEN: std::cell::Cell<i64>;
}

/// Remembers, for the RPC running in this task, that it committed change
/// `seq`; outside an RPC (a job) it does nothing.
fn note_written(seq: i64) {
    if seq > 0 {
        let _ = RPC_WRITTEN.try_with(|w| w.set(w.get().max(seq)));
    }
}

/// Runs one RPC's future and returns, beside its output, the highest
/// change-log seq its commands committed (0: none): what its response's
/// consistency token names.
pub async fn with_written<F: std::future::Future>(f: F) -> (F::Output, i64) {
    RPC_WRITTEN
        .scope(std::cell::Cell::new(0), async move {
            let out = f.await;
            (out, RPC_WRITTEN.with(|w| w.get()))
        })
        .await
}
