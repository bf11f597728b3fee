//! The commands and reads of push delivery. The RPCs' commands each write
//! the webhook and their audit event in one transaction. The delivery
//! job's steps are commands of proctor itself: turning new envelopes into
//! deliveries and advancing the cursor together, taking a webhook's lease,
//! and recording an attempt, where a 2xx also acknowledges the envelope
//! through the inbox's own ack path, in the same transaction.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use crate::db::Store;
use crate::db::notify::{Topic, changed};
use crate::db::pipeline::{Actor, Tx};
use crate::error::{Error, Result};
use crate::inbox::model::Recipient;
use crate::inbox::service as inbox;
use crate::rpc::AppState;
use crate::rpc::page::Page;
use crate::secrets::SubjectSecrets;
use crate::webhooks::model::{
    Attempt, DeliveryStatus, ROTATION_OVERLAP, RetryPolicy, Secret, SetWebhook, body, signature_header,
};
use crate::webhooks::repo::{self as st, Delivery, NewDelivery, Outcome, Webhook};

/// Envelopes turned into deliveries per transaction.
const ENQUEUE_BATCH: i64 = 200;

fn target(w: &Webhook) -> String {
    format!("webhook/{}", w.id)
}

fn missing(tenant: &str) -> Error {
    Error::Missing(format!("webhook of tenant {tenant}"))
}

/// Registers `tenant`'s webhook with a new secret, or replaces the URL and
/// description of the one it has (the secret stays). The secret comes back
/// only when this call created the webhook.
pub async fn set_webhook(
    state: &AppState,
    actor: Actor,
    tenant: String,
    cmd: SetWebhook,
) -> Result<(Webhook, Option<Secret>)> {
    let secrets = state.secrets.clone();
    state
        .command("webhook.set", actor, move |tx| {
            let now = tx.now();
            let out = match st::find(tx.conn(), &tenant)? {
                Some(w) => {
                    st::update_target(tx.conn(), &w.id, &cmd.url, &cmd.description, now)?;
                    let w = st::find(tx.conn(), &tenant)?.ok_or_else(|| missing(&tenant))?;
                    (w, None)
                }
                None => {
                    // Deliveries start after the newest envelope: the lock
                    // on the inbox makes that cursor final (no envelope of
                    // this tenant below it commits later).
                    let to = Recipient::Tenant(tenant.clone());
                    crate::db::key_lock(tx.conn(), "inbox", &to.to_string())?;
                    let cursor = inbox::last_cursor_in(tx.conn(), &to)?;
                    let secret = Secret::generate();
                    let id = uuid::Uuid::new_v4().to_string();
                    let w = st::insert(
                        tx.conn(),
                        &secrets.ring,
                        &id,
                        &tenant,
                        &cmd.url,
                        &cmd.description,
                        &secret,
                        cursor,
                        now,
                    )?;
                    (w, Some(secret))
                }
            };
            let detail = serde_json::json!({ "created": out.1.is_some() }).to_string();
            tx.audit("webhook.set", &target(&out.0), Some(&tenant), &detail)?;
            changed(Topic::Webhooks);
            Ok(out)
        })
        .await
}

/// `tenant`'s webhook; NOT_FOUND when it has none.
pub async fn get_webhook(store: &Store, tenant: String) -> Result<Webhook> {
    store
        .read("webhook.get", move |c, _| {
            st::find(c, &tenant)?.ok_or_else(|| missing(&tenant))
        })
        .await
}

/// Removes `tenant`'s webhook and its delivery records; the envelopes stay
/// in the inbox for `Pull`. NOT_FOUND when it has none.
pub async fn delete_webhook(state: &AppState, actor: Actor, tenant: String) -> Result<()> {
    state
        .command("webhook.delete", actor, move |tx| {
            let w = st::find(tx.conn(), &tenant)?.ok_or_else(|| missing(&tenant))?;
            st::delete(tx.conn(), &w.id)?;
            tx.audit("webhook.delete", &target(&w), Some(&tenant), "{}")?;
            Ok(())
        })
        .await
}

/// Gives `tenant`'s webhook a new secret; the current one keeps signing
/// beside it for [`ROTATION_OVERLAP`]. NOT_FOUND when it has none.
pub async fn rotate_secret(state: &AppState, actor: Actor, tenant: String) -> Result<(Webhook, Secret)> {
    let secrets = state.secrets.clone();
    state
        .command("webhook.rotate_secret", actor, move |tx| {
            let now = tx.now();
            let w = st::find(tx.conn(), &tenant)?.ok_or_else(|| missing(&tenant))?;
            let secret = Secret::generate();
            let until = now + ROTATION_OVERLAP;
            st::rotate(tx.conn(), &secrets.ring, &w.id, &secret, until, now)?;
            let detail = serde_json::json!({ "previous_signs_until": until.to_rfc3339() }).to_string();
            tx.audit("webhook.rotate_secret", &target(&w), Some(&tenant), &detail)?;
            let w = st::find(tx.conn(), &tenant)?.ok_or_else(|| missing(&tenant))?;
            Ok((w, secret))
        })
        .await
}

/// A page of `tenant`'s deliveries, oldest first, with the listing key of
/// the last one.
pub async fn list_deliveries(
    store: &Store,
    tenant: String,
    status: Option<DeliveryStatus>,
    page: &Page,
) -> Result<(Vec<Delivery>, Option<i64>)> {
    let (after, size) = (page.after, page.size);
    store
        .read("webhook.list_deliveries", move |c, _| {
            let found = st::list_deliveries(c, &tenant, status, after, size)?;
            let last = found.last().map(|d| d.seq);
            Ok((found, last))
        })
        .await
}

/// Makes a delivery due again now (a FAILED or DELIVERED one alike), with
/// a fresh maximum age. `tenant` is the caller's own tenant for a tenant
/// token: another tenant's delivery is NOT_FOUND, as if it did not exist.
pub async fn redeliver(
    state: &AppState,
    actor: Actor,
    tenant: Option<String>,
    id: String,
    retry: RetryPolicy,
) -> Result<Delivery> {
    state
        .command("webhook.redeliver", actor, move |tx| {
            let now = tx.now();
            let d = st::get_delivery(tx.conn(), &id)?
                .filter(|d| tenant.as_ref().is_none_or(|t| *t == d.tenant_id))
                .ok_or_else(|| Error::Missing(format!("webhook delivery {id}")))?;
            st::make_due(tx.conn(), &d.id, now, retry.expires_at(now))?;
            let detail = serde_json::json!({
                "envelope_id": d.envelope_id,
                "was": d.status.as_str(),
            })
            .to_string();
            tx.audit(
                "webhook.redeliver",
                &format!("webhook_delivery/{}", d.id),
                Some(&d.tenant_id),
                &detail,
            )?;
            changed(Topic::Webhooks);
            st::get_delivery(tx.conn(), &d.id)?
                .ok_or_else(|| Error::Missing(format!("webhook delivery {id}")))
        })
        .await
}

/// Every webhook, for the delivery job's round.
pub async fn webhooks(store: &Store) -> Result<Vec<Webhook>> {
    store.read("webhook.all", |c, _| st::all(c)).await
}

/// When the next pending delivery of any webhook is due.
pub async fn earliest_due(store: &Store) -> Result<Option<DateTime<Utc>>> {
    store
        .read("webhook.earliest_due", |c, _| st::earliest_due(c))
        .await
}

/// Takes or renews `owner`'s lease on webhook `id` for `length`; false when
/// another replica holds it.
pub async fn take_lease(store: &Store, id: &str, owner: &str, length: Duration) -> Result<bool> {
    let (id, owner) = (id.to_owned(), owner.to_owned());
    store
        .command("webhook.lease", Actor::service(), move |tx| {
            let now = tx.now();
            st::take_lease(tx.conn(), &id, &owner, now, now + length)
        })
        .await
        .map(|done| done.value)
}

/// Gives up `owner`'s lease on webhook `id`.
pub async fn release_lease(store: &Store, id: &str, owner: &str) -> Result<()> {
    let (id, owner) = (id.to_owned(), owner.to_owned());
    store
        .command("webhook.release", Actor::service(), move |tx| {
            st::release_lease(tx.conn(), &id, &owner)
        })
        .await
        .map(|done| done.value)
}

/// Whether the tenant has envelopes webhook `id` has not yet turned into
/// deliveries. Asked after a lease is released: a replica that enqueued an
/// envelope while another held the lease was refused the lease and will
/// not look again until its poll, so the holder looks once more.
pub async fn has_new_envelopes(store: &Store, id: &str) -> Result<bool> {
    let id = id.to_owned();
    store
        .read("webhook.has_new", move |c, _| {
            let Some(w) = st::find_by_id(c, &id)? else {
                return Ok(false);
            };
            let last = inbox::last_cursor_in(c, &Recipient::Tenant(w.tenant_id.clone()))?;
            Ok(last > w.next_cursor)
        })
        .await
}

/// Turns the tenant's envelopes after the webhook's cursor into deliveries
/// due now and advances the cursor, in one transaction per batch, so an
/// envelope gets exactly one delivery however the job is interrupted.
/// Envelopes already acknowledged (pulled and acked) are skipped. Returns
/// how many deliveries were created.
pub async fn enqueue_new(store: &Store, webhook_id: &str, retry: RetryPolicy) -> Result<usize> {
    let mut total = 0;
    loop {
        let id = webhook_id.to_owned();
        let (n, full) = store
            .command("webhook.enqueue", Actor::service(), move |tx| {
                let now = tx.now();
                let Some(w) = st::find_by_id(tx.conn(), &id)? else {
                    return Ok((0, false));
                };
                let to = Recipient::Tenant(w.tenant_id.clone());
                // The newest cursor first: under READ COMMITTED each
                // statement sees what committed before it, and an envelope
                // committed between the two reads must not move the cursor
                // past it unseen (cursors commit in order per recipient, so
                // everything up to `last` is visible to the second read).
                let last = inbox::last_cursor_in(tx.conn(), &to)?;
                let found = inbox::unacked_after_in(tx.conn(), &to, w.next_cursor, ENQUEUE_BATCH)?;
                for e in &found {
                    st::insert_delivery(
                        tx.conn(),
                        now,
                        NewDelivery {
                            webhook: &w,
                            envelope_id: &e.id,
                            envelope_cursor: e.cursor,
                            kind: &e.kind,
                            expires_at: retry.expires_at(e.created_at),
                        },
                    )?;
                }
                let full = found.len() as i64 == ENQUEUE_BATCH;
                // A full batch moves to its last envelope; otherwise every
                // envelope up to the newest was seen (the acked ones too).
                let cursor = match (full, found.last()) {
                    (true, Some(e)) => e.cursor,
                    (false, Some(e)) => last.max(e.cursor).max(w.next_cursor),
                    _ => last.max(w.next_cursor),
                };
                st::advance_cursor(tx.conn(), &w.id, cursor)?;
                Ok((found.len(), full))
            })
            .await?
            .value;
        total += n;
        if !full {
            return Ok(total);
        }
    }
}

/// The next delivery of webhook `id` due now, lowest cursor first.
pub async fn next_due(store: &Store, id: &str) -> Result<Option<Delivery>> {
    let id = id.to_owned();
    store
        .read("webhook.next_due", move |c, clock| {
            st::next_due(c, &id, clock.now())
        })
        .await
}

/// A delivery ready to POST: where, the signed headers and the body.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The webhook's URL now.
    pub url: String,
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// What to do with a due delivery.
#[derive(Debug)]
pub enum Step {
    /// POST it.
    Send(Prepared),
    /// It was given up without an attempt (recorded): its envelope is
    /// gone or it is past its maximum age.
    GaveUp,
}

/// Builds delivery `d`'s request, signed now with the webhook's secrets
/// (the previous one too during its overlap); gives it up instead when it
/// is past its maximum age or its envelope is gone.
pub async fn prepare(store: &Store, secrets: Arc<SubjectSecrets>, d: &Delivery) -> Result<Step> {
    let d2 = d.clone();
    let read = store
        .read("webhook.prepare", move |c, clock| {
            let now = clock.now();
            if now > d2.expires_at {
                return Ok(Err("maximum age reached".to_owned()));
            }
            let Some(w) = st::find_by_id(c, &d2.webhook_id)? else {
                return Ok(Err("the webhook was deleted".to_owned()));
            };
            let to = Recipient::Tenant(d2.tenant_id.clone());
            let envelope = match inbox::get_in(c, &to, &d2.envelope_id) {
                Ok(e) => e,
                Err(Error::Missing(_)) => return Ok(Err("the envelope is gone".to_owned())),
                Err(e) => return Err(e),
            };
            let (current, previous) = st::secrets(c, &secrets.ring, &w.id, now)?;
            let body = body(&envelope.kind, envelope.created_at, &envelope.payload);
            let ts = now.timestamp();
            let signature = signature_header(&current, previous.as_ref(), &envelope.id, ts, &body);
            Ok(Ok(Prepared {
                url: w.url,
                headers: vec![
                    ("webhook-id", envelope.id),
                    ("webhook-timestamp", ts.to_string()),
                    ("webhook-signature", signature),
                ],
                body,
            }))
        })
        .await?;
    match read {
        Ok(p) => Ok(Step::Send(p)),
        Err(why) => {
            give_up(store, d, &why).await?;
            Ok(Step::GaveUp)
        }
    }
}

/// Marks `d` FAILED without an attempt, audited.
async fn give_up(store: &Store, d: &Delivery, why: &str) -> Result<()> {
    let (d, why) = (d.clone(), why.to_owned());
    store
        .command("webhook.attempt", Actor::service(), move |tx| {
            let o = Outcome {
                status: DeliveryStatus::Failed,
                attempts: d.attempts,
                last_status_code: d.last_status_code,
                last_error: why,
                next_attempt_at: None,
                delivered_at: None,
            };
            let now = tx.now();
            if st::record(tx.conn(), &d.id, &o, now)? {
                audit_failed(tx, &d, &o)?;
            }
            Ok(())
        })
        .await
        .map(|done| done.value)
}

fn audit_failed(tx: &mut Tx<'_>, d: &Delivery, o: &Outcome) -> Result<()> {
    let detail = serde_json::json!({
        "envelope_id": d.envelope_id,
        "attempts": o.attempts,
        "last_status_code": o.last_status_code,
    })
    .to_string();
    tx.audit(
        "webhook.delivery_failed",
        &format!("webhook_delivery/{}", d.id),
        Some(&d.tenant_id),
        &detail,
    )
}

/// Records an attempt at `d`: a 2xx marks it DELIVERED and acknowledges the
/// envelope in the inbox (the same ack, and audit event, as `Ack`), in one
/// transaction; a failure schedules the next attempt with backoff and
/// `jitter` (0..1), or gives the delivery up (FAILED, audited) when that
/// would fall after its maximum age. Returns the status it is left in.
pub async fn record_attempt(
    store: &Store,
    d: &Delivery,
    attempt: Attempt,
    retry: RetryPolicy,
    jitter: f64,
) -> Result<DeliveryStatus> {
    let d = d.clone();
    store
        .command("webhook.attempt", Actor::service(), move |tx| {
            let now = tx.now();
            let attempts = d.attempts.saturating_add(1);
            let code = attempt.status.map(i32::from);
            let o = match &attempt.error {
                None => Outcome {
                    status: DeliveryStatus::Delivered,
                    attempts,
                    last_status_code: code,
                    last_error: String::new(),
                    next_attempt_at: None,
                    delivered_at: Some(now),
                },
                Some(why) => {
                    let failures = u32::try_from(attempts).unwrap_or(u32::MAX);
                    let next = retry.next_attempt(now, failures, d.expires_at, jitter);
                    Outcome {
                        status: if next.is_some() {
                            DeliveryStatus::Pending
                        } else {
                            DeliveryStatus::Failed
                        },
                        attempts,
                        last_status_code: code,
                        last_error: why.clone(),
                        next_attempt_at: next,
                        delivered_at: None,
                    }
                }
            };
            if !st::record(tx.conn(), &d.id, &o, now)? {
                return Ok(o.status);
            }
            match o.status {
                DeliveryStatus::Delivered => {
                    let to = Recipient::Tenant(d.tenant_id.clone());
                    match inbox::ack_in(tx, &to, std::slice::from_ref(&d.envelope_id)) {
                        Ok(_) | Err(Error::Missing(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                DeliveryStatus::Failed => audit_failed(tx, &d, &o)?,
                DeliveryStatus::Pending => {}
            }
            Ok(o.status)
        })
        .await
        .map(|done| done.value)
}
