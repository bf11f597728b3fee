//! The inbox's commands and reads. Each command is one transaction: a
//! `Pull` leases what it hands out, an `Ack` acknowledges all its ids or
//! none (with its audit event), and a `Reply` records the answer where the
//! envelope's question lives and acknowledges the envelope together.

use crate::audit::model::AuditEntry;
use crate::db::Store;
use crate::db::pipeline::{Actor, Tx};
use crate::error::Result;
use crate::inbox::model::{AckIds, PullSpec, Recipient, Reply, ReplyTarget, reply_target};
use crate::inbox::repo::{self as inbox, Envelope};
use crate::rpc::AppState;
use crate::screening::case_answers;

/// Leases up to `spec.max` available envelopes of `to`'s inbox, oldest
/// first; one consumer at a time holds each until its lease ends.
pub async fn pull(state: &AppState, actor: Actor, to: Recipient, spec: PullSpec) -> Result<Vec<Envelope>> {
    state
        .store
        .command("inbox.pull", actor, move |tx| {
            let now = tx.now();
            inbox::pull(tx.conn(), now, &to, spec)
        })
        .await
        .map(|done| done.value)
}

/// Acknowledges envelopes of `to`'s inbox and audits which: all or nothing,
/// an id not in this inbox is NOT_FOUND. Returns how many were newly
/// acknowledged.
pub async fn ack(state: &AppState, actor: Actor, to: Recipient, ids: AckIds) -> Result<usize> {
    state
        .store
        .command("inbox.ack", actor, move |tx| {
            let (now, ids) = (tx.now(), ids.ids());
            let n = inbox::ack(tx.conn(), now, &to, ids)?;
            let target = format!("{} envelopes", ids.len());
            let detail = serde_json::json!({ "ids": ids }).to_string();
            tx.audit("inbox.ack", &target, to.tenant(), &detail)?;
            Ok(n)
        })
        .await
        .map(|done| done.value)
}

/// The audit entry a screening answer starts from: the actor, the inbox's
/// tenant and the envelope answered (the answer names its case itself).
fn reply_entry(tx: &Tx<'_>, to: &Recipient, envelope_id: &str) -> AuditEntry {
    let actor = tx.actor();
    AuditEntry {
        actor: actor.sub.clone(),
        role: actor.role.clone(),
        tenant_id: to.tenant().map(str::to_owned),
        action: "inbox.reply".into(),
        target: envelope_id.to_owned(),
        outcome: "ok".into(),
        trace_id: actor.trace_id.clone(),
        detail: String::new(),
    }
}

/// Answers the question an envelope of `to`'s inbox asks and acknowledges
/// the envelope, in one transaction. Returns what was answered (e.g.
/// `case/<id>`); an envelope that asks nothing is FAILED_PRECONDITION.
pub async fn reply(state: &AppState, actor: Actor, to: Recipient, cmd: Reply) -> Result<String> {
    let secrets = state.secrets.clone();
    state
        .store
        .command("inbox.reply", actor, move |tx| {
            let now = tx.now();
            let envelope = inbox::get(tx.conn(), &to, &cmd.id)?;
            let target = match reply_target(&envelope.kind, &envelope.payload)? {
                ReplyTarget::ScreeningCase(case) => {
                    let entry = reply_entry(tx, &to, &cmd.id);
                    case_answers::answer(
                        tx.conn(),
                        now,
                        entry,
                        &secrets.ring,
                        &case,
                        to.tenant(),
                        &cmd.text,
                    )?;
                    format!("case/{case}")
                }
            };
            inbox::ack(tx.conn(), now, &to, std::slice::from_ref(&cmd.id))?;
            Ok(target)
        })
        .await
        .map(|done| done.value)
}

/// Unacknowledged envelopes of `to`'s inbox after `cursor`, at most
/// `limit`: one batch of a subscription stream.
pub async fn after(store: &Store, to: &Recipient, cursor: i64, limit: i64) -> Result<Vec<Envelope>> {
    let to = to.clone();
    store
        .read("inbox.subscribe", move |c, _| inbox::after(c, &to, cursor, limit))
        .await
}
