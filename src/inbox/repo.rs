//! Inbox envelopes: enqueued inside the transaction of the change that
//! causes them, leased to one consumer at a time, acknowledged by id.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::envelopes::dsl as e;
use crate::db::{DbConnection, from_us, to_us};
use crate::error::{Error, Result};
use crate::inbox::model::{PullSpec, Recipient};

/// An envelope as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique id, what `Ack` takes.
    pub id: String,
    /// Position in delivery order (global, so also strictly increasing per
    /// recipient).
    pub cursor: i64,
    /// Dotted kind, e.g. `breach.notice`.
    pub kind: String,
    /// JSON naming the id of what it is about.
    pub payload: String,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// How many times it was handed out.
    pub delivery_count: i32,
    /// End of the current lease, if any.
    pub lease_until: Option<DateTime<Utc>>,
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::envelopes)]
struct Row {
    /// Drawn by the insert itself (the column's default on PostgreSQL, the
    /// row id on SQLite), under the recipient's lock.
    #[diesel(skip_insertion)]
    seq: i64,
    id: String,
    recipient: String,
    kind: String,
    payload: String,
    created_at_us: i64,
    lease_until_us: Option<i64>,
    delivery_count: i32,
    acked_at_us: Option<i64>,
}

impl From<Row> for Envelope {
    fn from(r: Row) -> Self {
        Envelope {
            id: r.id,
            cursor: r.seq,
            kind: r.kind,
            payload: r.payload,
            created_at: from_us(r.created_at_us),
            delivery_count: r.delivery_count,
            lease_until: r.lease_until_us.map(from_us),
        }
    }
}

/// Puts an envelope in `to`'s inbox as part of the caller's transaction.
pub fn enqueue(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    to: &Recipient,
    kind: &str,
    payload: &serde_json::Value,
) -> Result<Envelope> {
    // One recipient's envelopes commit in cursor order: its lock is held
    // from drawing the number to commit, so a later cursor is never visible
    // before an earlier one (what `Subscribe` relies on). SQLite's one
    // writer already orders them.
    insert(conn, &NewEnvelope::new(now, to, kind, payload))
}

/// Inserts `new` on its own (its recipient's lock first, on PostgreSQL) and
/// returns it as stored, with its cursor.
pub fn insert(conn: &mut DbConnection, new: &NewEnvelope) -> Result<Envelope> {
    let mut row = new.row();
    row.seq = match conn {
        DbConnection::Pg(c) => insert_locked(c, new.lock_id(), &row)?,
        DbConnection::Sqlite(_) => diesel::insert_into(e::envelopes)
            .values(&row)
            .returning(e::seq)
            .get_result(conn)?,
    };
    new.written();
    Ok(row.into())
}

/// An envelope before it is inserted: for writers that insert envelopes
/// together with other rows ([`crate::db::flush`]), which must take
/// [`NewEnvelope::lock_id`] before the insert draws its cursor and call
/// [`NewEnvelope::written`] after it, as [`enqueue`] does.
#[derive(Debug, Clone)]
pub struct NewEnvelope {
    /// Its id.
    pub id: String,
    /// Whose inbox.
    pub to: Recipient,
    /// Dotted kind.
    pub kind: String,
    /// JSON text.
    pub payload: String,
    /// When it is enqueued.
    pub created_at: DateTime<Utc>,
}

impl NewEnvelope {
    /// An envelope of `kind` for `to`, enqueued at `now`.
    pub fn new(now: DateTime<Utc>, to: &Recipient, kind: &str, payload: &serde_json::Value) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            to: to.clone(),
            kind: kind.to_owned(),
            payload: payload.to_string(),
            created_at: now,
        }
    }

    /// The recipient's lock on PostgreSQL, held from drawing the cursor to
    /// commit.
    pub fn lock_id(&self) -> i64 {
        crate::db::key_lock_id("inbox", &self.to.to_string())
    }

    /// Wakes, once the transaction commits, the recipient's streams (and
    /// webhook delivery, for a tenant).
    pub fn written(&self) {
        crate::db::notify::changed(crate::db::notify::Topic::Inbox(self.to.clone()));
        if matches!(self.to, Recipient::Tenant(_)) {
            crate::db::notify::changed(crate::db::notify::Topic::Webhooks);
        }
    }

    fn row(&self) -> Row {
        Row {
            seq: 0,
            id: self.id.clone(),
            recipient: self.to.to_string(),
            kind: self.kind.clone(),
            payload: self.payload.clone(),
            created_at_us: to_us(self.created_at),
            lease_until_us: None,
            delivery_count: 0,
            acked_at_us: None,
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Drawn {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
}

/// Takes the recipient's lock `lock` and inserts `row` in one statement
/// (one round trip where there were two): the row is formed from the lock
/// query's result, so its number (the column default) is drawn only once
/// the lock is held.
fn insert_locked(c: &mut diesel::PgConnection, lock: i64, row: &Row) -> Result<i64> {
    use diesel::sql_types::{BigInt, Text};
    let drawn: Drawn = diesel::sql_query(
        "INSERT INTO envelopes (id, recipient, kind, payload, created_at_us, delivery_count) \
         SELECT $2, $3, $4, $5, $6, 0 FROM (SELECT pg_advisory_xact_lock($1)) AS locked \
         RETURNING seq",
    )
    .bind::<BigInt, _>(lock)
    .bind::<Text, _>(&row.id)
    .bind::<Text, _>(&row.recipient)
    .bind::<Text, _>(&row.kind)
    .bind::<Text, _>(&row.payload)
    .bind::<BigInt, _>(row.created_at_us)
    .get_result(c)?;
    Ok(drawn.seq)
}

/// Leases up to `spec.max` available envelopes, oldest first. On PostgreSQL
/// rows another replica is leasing right now are skipped, never waited on
/// and never handed out twice.
pub fn pull(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    to: &Recipient,
    spec: PullSpec,
) -> Result<Vec<Envelope>> {
    let now_us = to_us(now);
    let until = now_us + i64::from(spec.lease_seconds) * 1_000_000;
    let available = e::envelopes
        .select(e::seq)
        .filter(e::recipient.eq(to.to_string()))
        .filter(e::acked_at_us.is_null())
        .filter(e::lease_until_us.is_null().or(e::lease_until_us.le(now_us)))
        .order(e::seq.asc())
        .limit(i64::from(spec.max));
    let seqs: Vec<i64> = match conn {
        DbConnection::Pg(c) => available.for_update().skip_locked().load(c)?,
        DbConnection::Sqlite(c) => available.load(c)?,
    };
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    diesel::update(e::envelopes.filter(e::seq.eq_any(&seqs)))
        .set((
            e::lease_until_us.eq(until),
            e::delivery_count.eq(e::delivery_count + 1),
        ))
        .execute(conn)?;
    let rows: Vec<Row> = e::envelopes
        .filter(e::seq.eq_any(&seqs))
        .order(e::seq.asc())
        .load(conn)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// One envelope of `to`'s inbox, acknowledged or not; another
/// recipient's envelope is NOT_FOUND, as if it did not exist.
pub fn get(conn: &mut DbConnection, to: &Recipient, id: &str) -> Result<Envelope> {
    let row: Option<Row> = e::envelopes
        .filter(e::recipient.eq(to.to_string()))
        .filter(e::id.eq(id))
        .first(conn)
        .optional()?;
    row.map(Into::into)
        .ok_or_else(|| Error::not_found("envelope", id.to_string()))
}

/// Unacknowledged envelopes after `cursor`, for a subscription stream.
pub fn after(conn: &mut DbConnection, to: &Recipient, cursor: i64, limit: i64) -> Result<Vec<Envelope>> {
    let rows: Vec<Row> = e::envelopes
        .filter(e::recipient.eq(to.to_string()))
        .filter(e::acked_at_us.is_null())
        .filter(e::seq.gt(cursor))
        .order(e::seq.asc())
        .limit(limit)
        .load(conn)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// The cursor of `to`'s newest envelope, acknowledged or not; 0 when the
/// inbox is empty.
pub fn last_cursor(conn: &mut DbConnection, to: &Recipient) -> Result<i64> {
    let max: Option<i64> = e::envelopes
        .filter(e::recipient.eq(to.to_string()))
        .select(diesel::dsl::max(e::seq))
        .first(conn)?;
    Ok(max.unwrap_or(0))
}

/// Acknowledges envelopes of `to`. All or nothing: an id that is not in this
/// recipient's inbox is NOT_FOUND and nothing is acknowledged. Acknowledging
/// twice is harmless (at-least-once consumers retry). Returns how many were
/// newly acknowledged.
pub fn ack(conn: &mut DbConnection, now: DateTime<Utc>, to: &Recipient, ids: &[String]) -> Result<usize> {
    let mine: Vec<String> = e::envelopes
        .select(e::id)
        .filter(e::recipient.eq(to.to_string()))
        .filter(e::id.eq_any(ids))
        .load(conn)?;
    if let Some(missing) = ids.iter().find(|id| !mine.contains(id)) {
        return Err(Error::not_found("envelope", missing.to_string()));
    }
    let n = diesel::update(
        e::envelopes
            .filter(e::recipient.eq(to.to_string()))
            .filter(e::id.eq_any(ids))
            .filter(e::acked_at_us.is_null()),
    )
    .set((e::acked_at_us.eq(to_us(now)), e::lease_until_us.eq(None::<i64>)))
    .execute(conn)?;
    Ok(n)
}
