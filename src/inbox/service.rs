//! The inbox's commands and reads. Each command is one transaction: a
//! `Pull` leases what it hands out, an `Ack` acknowledges all its ids or
//! none (with its audit event), and a `Reply` records the answer where the
//! envelope's question lives and acknowledges the envelope together.

use crate::db::pipeline::{Actor, Tx};
use crate::db::{DbConnection, Store};
use crate::error::Result;
use crate::inbox::model::{AckIds, PullSpec, Recipient, Reply, ReplyTarget, reply_target};
use crate::inbox::repo::{self as inbox, Envelope};
use crate::rpc::AppState;

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
        .command("inbox.ack", actor, move |tx| ack_in(tx, &to, ids.ids()))
        .await
        .map(|done| done.value)
}

/// The ack path inside another command's transaction (a webhook delivery
/// acknowledged by its receiver): the same all-or-nothing acknowledgement
/// and the same audit event as `Ack`.
pub fn ack_in(tx: &mut Tx<'_>, to: &Recipient, ids: &[String]) -> Result<usize> {
    let now = tx.now();
    let n = inbox::ack(tx.conn(), now, to, ids)?;
    let target = format!("{} envelopes", ids.len());
    let detail = serde_json::json!({ "ids": ids }).to_string();
    tx.audit("inbox.ack", &target, to.tenant(), &detail)?;
    Ok(n)
}

/// Unacknowledged envelopes of `to`'s inbox after `cursor`, at most
/// `limit`, read inside another capability's transaction (what push
/// delivery turns into deliveries).
pub fn unacked_after_in(
    conn: &mut DbConnection,
    to: &Recipient,
    cursor: i64,
    limit: i64,
) -> Result<Vec<Envelope>> {
    inbox::after(conn, to, cursor, limit)
}

/// The cursor of the newest envelope of `to`'s inbox (0 when empty): where
/// push delivery registered now starts.
pub fn last_cursor_in(conn: &mut DbConnection, to: &Recipient) -> Result<i64> {
    inbox::last_cursor(conn, to)
}

/// One envelope of `to`'s inbox, read inside another capability's
/// transaction; another recipient's is NOT_FOUND.
pub fn get_in(conn: &mut DbConnection, to: &Recipient, id: &str) -> Result<Envelope> {
    inbox::get(conn, to, id)
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
                    crate::screening::service::answer_case(tx, &secrets.ring, &case, to.tenant(), &cmd.text)?;
                    format!("case/{case}")
                }
                ReplyTarget::SubjectRequestQuestion(q) => {
                    crate::subject_requests::service::answer_question(
                        tx,
                        &secrets.ring,
                        &q,
                        to.tenant(),
                        &cmd.text,
                    )?;
                    format!("question/{q}")
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
