//! The delivery job: every round, for each webhook whose lease this
//! replica gets, turns the tenant's new envelopes into deliveries and
//! POSTs the due ones, one at a time, lowest inbox cursor first. It runs
//! on the injected clock (retries come due as it moves), wakes at once
//! when this replica enqueues an envelope for a tenant or a delivery is
//! made due again, and polls for what other replicas wrote.
//!
//! Order and delivery promise (docs/webhooks.md): at least once; first
//! attempts go out in inbox order per tenant, one at a time; a failed
//! delivery is retried later without holding back the envelopes after it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::db::Store;
use crate::db::notify::Topic;
use crate::outbound::Client;
use crate::periodic::{CancellationToken, every_or_sooner};
use crate::secrets::SubjectSecrets;
use crate::webhooks::model::{Attempt, MAX_RESPONSE_BYTES, RetryPolicy};
use crate::webhooks::repo::Webhook;
use crate::webhooks::service::{self, Step};

/// The user agent of every delivery, so a receiver can tell them from
/// proctor's other calls.
pub const USER_AGENT: &str = concat!("proctor-webhooks/", env!("CARGO_PKG_VERSION"));

/// Webhooks worked at once by one replica.
const CONCURRENT_WEBHOOKS: usize = 16;
/// Deliveries one webhook gets per round, so one busy tenant cannot hold
/// its lease forever; the job goes on at once when more are due.
const SENDS_PER_ROUND: usize = 50;
/// Times one round takes a webhook's lease again for envelopes that came
/// in while it held it; what is left after that makes the next round start
/// at once, so other webhooks get their turn in between.
const LEASE_TURNS: usize = 4;

/// What the job needs besides the store.
#[derive(Debug, Clone)]
pub struct Settings {
    /// When to retry and give up.
    pub retry: RetryPolicy,
    /// The outbound client (the webhooks' address policy, the attempt
    /// timeout).
    pub outbound: Client,
    /// The attempt timeout, which bounds how long a lease must last.
    pub timeout: Duration,
    /// How often other replicas' envelopes are looked for.
    pub poll: Duration,
}

impl Settings {
    /// How long a lease lasts: longer than one attempt with room to
    /// record it; a replica that dies loses it this long after its last
    /// renewal (before each attempt).
    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.timeout * 2).unwrap_or(chrono::Duration::MAX)
            + chrono::Duration::seconds(30)
    }
}

/// Runs the delivery rounds until `stop`.
pub async fn deliver(
    store: Store,
    secrets: Arc<SubjectSecrets>,
    settings: Settings,
    stop: CancellationToken,
) {
    let clock = store.clock().clone();
    let owner = uuid::Uuid::new_v4().to_string();
    let mut wake = store.follow(Topic::Webhooks);
    let (store, secrets, settings, owner) = (&store, &secrets, &settings, &owner);
    every_or_sooner(
        "webhook_delivery",
        settings.poll,
        &clock,
        &stop,
        &mut wake,
        || round(store, secrets, settings, owner),
    )
    .await;
}

/// One round over every webhook; returns the deliveries attempted (or
/// given up) and when the next one is due.
pub async fn round(
    store: &Store,
    secrets: &Arc<SubjectSecrets>,
    settings: &Settings,
    owner: &str,
) -> crate::error::Result<(usize, Option<chrono::DateTime<chrono::Utc>>)> {
    let hooks = service::webhooks(store).await?;
    if hooks.is_empty() {
        // Nothing to deliver to, and no delivery outlives its webhook.
        return Ok((0, None));
    }
    let done: Vec<(usize, bool)> = futures::stream::iter(hooks)
        .map(|w| async move {
            match work(store, secrets, settings, owner, &w).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(
                        job = "webhook_delivery",
                        webhook.id = %w.id,
                        error = %e,
                        "webhook round failed; retrying next round"
                    );
                    (0, false)
                }
            }
        })
        .buffer_unordered(CONCURRENT_WEBHOOKS)
        .collect()
        .await;
    let due = service::earliest_due(store).await?;
    // Envelopes still waiting for a delivery (they came in faster than the
    // turns took them) are due now: no other replica will be told of them.
    let due = if done.iter().any(|(_, more)| *more) {
        Some(store.clock().now())
    } else {
        due
    };
    Ok((done.iter().map(|(n, _)| n).sum(), due))
}

/// Works one webhook under its lease: new envelopes become deliveries, then
/// the due ones go out, one at a time. After the lease is released it looks
/// for envelopes enqueued meanwhile (by a replica this lease turned away,
/// which will not look again until its poll) and works them too, up to
/// [`LEASE_TURNS`] times. Returns the deliveries worked and whether such
/// envelopes are still waiting.
async fn work(
    store: &Store,
    secrets: &Arc<SubjectSecrets>,
    settings: &Settings,
    owner: &str,
    w: &Webhook,
) -> crate::error::Result<(usize, bool)> {
    let mut total = 0;
    for _ in 0..LEASE_TURNS {
        if !service::take_lease(store, &w.id, owner, settings.lease()).await? {
            // The holder looks again after it releases.
            return Ok((total, false));
        }
        let worked = work_leased(store, secrets, settings, owner, w).await;
        if let Err(e) = service::release_lease(store, &w.id, owner).await {
            tracing::warn!(job = "webhook_delivery", webhook.id = %w.id, error = %e, "lease not released; it expires");
        }
        total += worked?;
        if !service::has_new_envelopes(store, &w.id).await? {
            return Ok((total, false));
        }
    }
    Ok((total, true))
}

async fn work_leased(
    store: &Store,
    secrets: &Arc<SubjectSecrets>,
    settings: &Settings,
    owner: &str,
    w: &Webhook,
) -> crate::error::Result<usize> {
    service::enqueue_new(store, &w.id, settings.retry).await?;
    let mut sent = 0;
    while sent < SENDS_PER_ROUND {
        let Some(d) = service::next_due(store, &w.id).await? else {
            break;
        };
        // Renewed before every attempt, so a lease outlives the attempt.
        if !service::take_lease(store, &w.id, owner, settings.lease()).await? {
            break;
        }
        sent += 1;
        let prepared = match service::prepare(store, secrets.clone(), &d).await? {
            Step::Send(p) => p,
            Step::GaveUp => continue,
        };
        let attempt = post(
            &settings.outbound,
            &prepared.url,
            &prepared.headers,
            prepared.body,
        )
        .await;
        let status =
            service::record_attempt(store, &d, attempt.clone(), settings.retry, rand::random()).await?;
        tracing::info!(
            job = "webhook_delivery",
            webhook.id = %w.id,
            delivery.id = %d.id,
            http.status = attempt.status.unwrap_or(0),
            status = status.as_str(),
            "webhook attempt"
        );
    }
    Ok(sent)
}

/// One attempt: the envelope POSTed as JSON, never redirected, and what it
/// came to. The answer's body is read (at most [`MAX_RESPONSE_BYTES`], so
/// an endless one cannot hold the job) only to let the receiver finish;
/// its status alone decides.
async fn post(client: &Client, url: &str, headers: &[(&'static str, String)], body: Vec<u8>) -> Attempt {
    // Checked again: the flags may have changed since SetWebhook.
    if let Err(e) = crate::webhooks::model::parse_url(url, client.policy()) {
        return Attempt::no_answer(&format!("refused URL: {e}"));
    }
    match client
        .post(url, headers, "application/json", body, MAX_RESPONSE_BYTES)
        .await
    {
        Ok(answer) => Attempt::answered(answer.status.as_u16()),
        Err(why) => Attempt::no_answer(&why),
    }
}
