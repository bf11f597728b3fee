//! Webhooks and their deliveries in the database. A webhook's secrets are
//! sealed with the identifier key ring, bound to the webhook (the previous
//! one to `<id>/previous`), and opened only to sign. The lease columns are
//! a plain row update, so one replica at a time works a webhook on either
//! backend.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::{webhook_deliveries as d, webhooks as w};
use crate::db::{DbConnection, from_us, to_us};
use crate::error::{Error, Result};
use crate::secrets::KeyRing;
use crate::secrets::sealed::Field;
use crate::webhooks::model::{DeliveryStatus, Secret};

/// A webhook as the service sees it (secrets opened only by [`secrets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Its id.
    pub id: String,
    /// The tenant it delivers for.
    pub tenant_id: String,
    /// Where envelopes are POSTed.
    pub url: String,
    /// What the tenant calls it.
    pub description: String,
    /// The last envelope cursor turned into deliveries.
    pub next_cursor: i64,
    /// Until when the previous secret signs.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

#[derive(Queryable, Insertable, AsChangeset)]
#[diesel(table_name = crate::db::schema::webhooks)]
#[diesel(treat_none_as_null = true)]
struct Row {
    id: String,
    tenant_id: String,
    url: String,
    description: String,
    secret_key_id: String,
    secret_sealed: String,
    previous_secret_key_id: Option<String>,
    previous_secret_sealed: Option<String>,
    previous_secret_until_us: Option<i64>,
    next_cursor: i64,
    lease_owner: Option<String>,
    lease_until_us: Option<i64>,
    created_at_us: i64,
    updated_at_us: i64,
}

impl From<&Row> for Webhook {
    fn from(r: &Row) -> Self {
        Webhook {
            id: r.id.clone(),
            tenant_id: r.tenant_id.clone(),
            url: r.url.clone(),
            description: r.description.clone(),
            next_cursor: r.next_cursor,
            previous_secret_until: r.previous_secret_until_us.map(from_us),
            created_at: from_us(r.created_at_us),
            updated_at: from_us(r.updated_at_us),
        }
    }
}

/// What webhook `id`'s previous secret is bound to (its AAD row id), so
/// it cannot pass for the current one; public for `keys reseal`.
pub fn previous_id(id: &str) -> String {
    format!("{id}/previous")
}

fn seal(ring: &KeyRing, row_id: &str, s: &Secret) -> Result<(String, String)> {
    ring.seal(s.expose().as_bytes(), &Field::WebhookSecret.aad(row_id))
}

fn open(ring: &KeyRing, row_id: &str, key_id: &str, sealed: &str) -> Result<Secret> {
    let raw = ring.open(key_id, sealed, &Field::WebhookSecret.aad(row_id))?;
    std::str::from_utf8(&raw)
        .ok()
        .and_then(Secret::parse)
        .ok_or_else(|| Error::Unexpected("webhook secret unreadable".into()))
}

/// The tenant's webhook, if it has one.
pub fn find(conn: &mut DbConnection, tenant: &str) -> Result<Option<Webhook>> {
    let row: Option<Row> = w::table.filter(w::tenant_id.eq(tenant)).first(conn).optional()?;
    Ok(row.as_ref().map(Into::into))
}

/// Webhook `id`, if it still exists.
pub fn find_by_id(conn: &mut DbConnection, id: &str) -> Result<Option<Webhook>> {
    let row: Option<Row> = w::table.filter(w::id.eq(id)).first(conn).optional()?;
    Ok(row.as_ref().map(Into::into))
}

/// Every webhook (the delivery job's round).
pub fn all(conn: &mut DbConnection) -> Result<Vec<Webhook>> {
    let rows: Vec<Row> = w::table.order(w::id.asc()).load(conn)?;
    Ok(rows.iter().map(Into::into).collect())
}

/// Registers a webhook with its secret sealed; its deliveries start after
/// `cursor`.
#[allow(clippy::too_many_arguments)]
pub fn insert(
    conn: &mut DbConnection,
    ring: &KeyRing,
    id: &str,
    tenant: &str,
    url: &str,
    description: &str,
    secret: &Secret,
    cursor: i64,
    now: DateTime<Utc>,
) -> Result<Webhook> {
    let (key_id, sealed) = seal(ring, id, secret)?;
    let row = Row {
        id: id.to_owned(),
        tenant_id: tenant.to_owned(),
        url: url.to_owned(),
        description: description.to_owned(),
        secret_key_id: key_id,
        secret_sealed: sealed,
        previous_secret_key_id: None,
        previous_secret_sealed: None,
        previous_secret_until_us: None,
        next_cursor: cursor,
        lease_owner: None,
        lease_until_us: None,
        created_at_us: to_us(now),
        updated_at_us: to_us(now),
    };
    diesel::insert_into(w::table).values(&row).execute(conn)?;
    Ok((&row).into())
}

/// Replaces the URL and description of webhook `id`.
pub fn update_target(
    conn: &mut DbConnection,
    id: &str,
    url: &str,
    description: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    diesel::update(w::table.filter(w::id.eq(id)))
        .set((
            w::url.eq(url),
            w::description.eq(description),
            w::updated_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Makes `new` the secret of webhook `id`; the current one becomes the
/// previous one, signing until `until`.
pub fn rotate(
    conn: &mut DbConnection,
    ring: &KeyRing,
    id: &str,
    new: &Secret,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<()> {
    let (current, _) = secrets(conn, ring, id, now)?;
    let (key_id, sealed) = seal(ring, id, new)?;
    let (prev_key, prev_sealed) = seal(ring, &previous_id(id), &current)?;
    diesel::update(w::table.filter(w::id.eq(id)))
        .set((
            w::secret_key_id.eq(key_id),
            w::secret_sealed.eq(sealed),
            w::previous_secret_key_id.eq(Some(prev_key)),
            w::previous_secret_sealed.eq(Some(prev_sealed)),
            w::previous_secret_until_us.eq(Some(to_us(until))),
            w::updated_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The secrets of webhook `id`: the current one and the previous one,
/// if it is still within its overlap at `now`.
pub fn secrets(
    conn: &mut DbConnection,
    ring: &KeyRing,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(Secret, Option<Secret>)> {
    let row: Row = w::table
        .filter(w::id.eq(id))
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::Missing(format!("webhook {id}")))?;
    let current = open(ring, id, &row.secret_key_id, &row.secret_sealed)?;
    let previous = match (&row.previous_secret_key_id, &row.previous_secret_sealed) {
        (Some(k), Some(s)) if row.previous_secret_until_us.is_some_and(|u| to_us(now) < u) => {
            Some(open(ring, &previous_id(id), k, s)?)
        }
        _ => None,
    };
    Ok((current, previous))
}

/// Removes webhook `id` and its deliveries; false when there was none.
pub fn delete(conn: &mut DbConnection, id: &str) -> Result<bool> {
    diesel::delete(d::table.filter(d::webhook_id.eq(id))).execute(conn)?;
    Ok(diesel::delete(w::table.filter(w::id.eq(id))).execute(conn)? > 0)
}

/// Takes (or renews) the lease on webhook `id` for `owner` until `until`,
/// unless another owner holds an unexpired one: one conditional row update,
/// so two replicas racing for it cannot both win. True when `owner` holds
/// it now.
pub fn take_lease(
    conn: &mut DbConnection,
    id: &str,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool> {
    let n = diesel::update(
        w::table.filter(w::id.eq(id)).filter(
            w::lease_owner
                .is_null()
                .or(w::lease_owner.eq(owner))
                .or(w::lease_until_us.le(to_us(now))),
        ),
    )
    .set((
        w::lease_owner.eq(Some(owner)),
        w::lease_until_us.eq(Some(to_us(until))),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Gives up `owner`'s lease on webhook `id` (nothing if another holds it).
pub fn release_lease(conn: &mut DbConnection, id: &str, owner: &str) -> Result<()> {
    diesel::update(w::table.filter(w::id.eq(id)).filter(w::lease_owner.eq(owner)))
        .set((
            w::lease_owner.eq(None::<String>),
            w::lease_until_us.eq(None::<i64>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Moves webhook `id`'s cursor to `cursor` (never back).
pub fn advance_cursor(conn: &mut DbConnection, id: &str, cursor: i64) -> Result<()> {
    diesel::update(w::table.filter(w::id.eq(id)).filter(w::next_cursor.lt(cursor)))
        .set(w::next_cursor.eq(cursor))
        .execute(conn)?;
    Ok(())
}

/// A delivery as the service sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Listing order.
    pub seq: i64,
    /// Its id.
    pub id: String,
    /// The webhook it belongs to.
    pub webhook_id: String,
    /// The tenant.
    pub tenant_id: String,
    /// The envelope delivered.
    pub envelope_id: String,
    /// The envelope's place in the tenant's inbox.
    pub envelope_cursor: i64,
    /// The envelope's kind.
    pub kind: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: i32,
    /// HTTP status of the last attempt.
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: String,
    /// When the next attempt is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it is given up.
    pub expires_at: DateTime<Utc>,
    /// When a 2xx acknowledged it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::webhook_deliveries)]
struct DeliveryRow {
    seq: i64,
    id: String,
    webhook_id: String,
    tenant_id: String,
    envelope_id: String,
    envelope_cursor: i64,
    kind: String,
    status: String,
    attempts: i32,
    last_status_code: Option<i32>,
    last_error: String,
    next_attempt_at_us: Option<i64>,
    expires_at_us: i64,
    delivered_at_us: Option<i64>,
    created_at_us: i64,
    updated_at_us: i64,
}

impl From<DeliveryRow> for Delivery {
    fn from(r: DeliveryRow) -> Self {
        Delivery {
            seq: r.seq,
            id: r.id,
            webhook_id: r.webhook_id,
            tenant_id: r.tenant_id,
            envelope_id: r.envelope_id,
            envelope_cursor: r.envelope_cursor,
            kind: r.kind,
            status: DeliveryStatus::parse(&r.status).unwrap_or(DeliveryStatus::Failed),
            attempts: r.attempts,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            next_attempt_at: r.next_attempt_at_us.map(from_us),
            expires_at: from_us(r.expires_at_us),
            delivered_at: r.delivered_at_us.map(from_us),
            created_at: from_us(r.created_at_us),
        }
    }
}

/// What a new delivery is for.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    /// The webhook.
    pub webhook: &'a Webhook,
    /// The envelope's id.
    pub envelope_id: &'a str,
    /// Its cursor.
    pub envelope_cursor: i64,
    /// Its kind.
    pub kind: &'a str,
    /// When it is given up.
    pub expires_at: DateTime<Utc>,
}

/// Records a delivery due at once (a second one for the same envelope and
/// webhook is ignored).
pub fn insert_delivery(conn: &mut DbConnection, now: DateTime<Utc>, n: NewDelivery<'_>) -> Result<()> {
    let exists: i64 = d::table
        .filter(d::webhook_id.eq(&n.webhook.id))
        .filter(d::envelope_id.eq(n.envelope_id))
        .count()
        .get_result(conn)?;
    if exists > 0 {
        return Ok(());
    }
    let row = DeliveryRow {
        seq: crate::db::next_seq(conn, crate::db::Numbered::WebhookDeliveries)?,
        id: uuid::Uuid::new_v4().to_string(),
        webhook_id: n.webhook.id.clone(),
        tenant_id: n.webhook.tenant_id.clone(),
        envelope_id: n.envelope_id.to_owned(),
        envelope_cursor: n.envelope_cursor,
        kind: n.kind.to_owned(),
        status: DeliveryStatus::Pending.as_str().into(),
        attempts: 0,
        last_status_code: None,
        last_error: String::new(),
        next_attempt_at_us: Some(to_us(now)),
        expires_at_us: to_us(n.expires_at),
        delivered_at_us: None,
        created_at_us: to_us(now),
        updated_at_us: to_us(now),
    };
    diesel::insert_into(d::table).values(&row).execute(conn)?;
    Ok(())
}

/// The next delivery of webhook `id` due at `now`: the lowest cursor first,
/// so first attempts go out in inbox order.
pub fn next_due(conn: &mut DbConnection, id: &str, now: DateTime<Utc>) -> Result<Option<Delivery>> {
    let row: Option<DeliveryRow> = d::table
        .filter(d::webhook_id.eq(id))
        .filter(d::status.eq(DeliveryStatus::Pending.as_str()))
        .filter(d::next_attempt_at_us.le(to_us(now)))
        .order((d::envelope_cursor.asc(), d::seq.asc()))
        .first(conn)
        .optional()?;
    Ok(row.map(Into::into))
}

/// The earliest time any pending delivery is due (the job's next wake-up).
pub fn earliest_due(conn: &mut DbConnection) -> Result<Option<DateTime<Utc>>> {
    let at: Option<i64> = d::table
        .filter(d::status.eq(DeliveryStatus::Pending.as_str()))
        .select(diesel::dsl::min(d::next_attempt_at_us))
        .first(conn)?;
    Ok(at.map(from_us))
}

/// One delivery by id.
pub fn get_delivery(conn: &mut DbConnection, id: &str) -> Result<Option<Delivery>> {
    let row: Option<DeliveryRow> = d::table.filter(d::id.eq(id)).first(conn).optional()?;
    Ok(row.map(Into::into))
}

/// A page of `tenant`'s deliveries after listing key `after`, oldest
/// envelope first, optionally of one status.
pub fn list_deliveries(
    conn: &mut DbConnection,
    tenant: &str,
    status: Option<DeliveryStatus>,
    after: i64,
    limit: i64,
) -> Result<Vec<Delivery>> {
    let mut q = d::table
        .filter(d::tenant_id.eq(tenant))
        .filter(d::seq.gt(after))
        .into_boxed();
    if let Some(s) = status {
        q = q.filter(d::status.eq(s.as_str()));
    }
    let rows: Vec<DeliveryRow> = q.order(d::seq.asc()).limit(limit).load(conn)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// What an attempt (or the decision not to make one) changes on a delivery.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The new status.
    pub status: DeliveryStatus,
    /// Attempts made, this one included.
    pub attempts: i32,
    /// The HTTP status, if the receiver answered.
    pub last_status_code: Option<i32>,
    /// Why it failed (empty once delivered).
    pub last_error: String,
    /// The next attempt, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Records `o` on delivery `id`, only while it is still pending (a
/// delivery deleted or redelivered meanwhile is left alone). True when
/// it was recorded.
pub fn record(conn: &mut DbConnection, id: &str, o: &Outcome, now: DateTime<Utc>) -> Result<bool> {
    let n = diesel::update(
        d::table
            .filter(d::id.eq(id))
            .filter(d::status.eq(DeliveryStatus::Pending.as_str())),
    )
    .set((
        d::status.eq(o.status.as_str()),
        d::attempts.eq(o.attempts),
        d::last_status_code.eq(o.last_status_code),
        d::last_error.eq(&o.last_error),
        d::next_attempt_at_us.eq(o.next_attempt_at.map(to_us)),
        d::delivered_at_us.eq(o.delivered_at.map(to_us)),
        d::updated_at_us.eq(to_us(now)),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Makes delivery `id` due at `now` again, retried until `expires_at`.
pub fn make_due(
    conn: &mut DbConnection,
    id: &str,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Result<()> {
    diesel::update(d::table.filter(d::id.eq(id)))
        .set((
            d::status.eq(DeliveryStatus::Pending.as_str()),
            d::next_attempt_at_us.eq(Some(to_us(now))),
            d::expires_at_us.eq(to_us(expires_at)),
            d::delivered_at_us.eq(None::<i64>),
            d::updated_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    Ok(())
}
