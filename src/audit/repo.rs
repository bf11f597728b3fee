//! The audit log in the database: append without a lock, page through in
//! tree order (per tenant), and the rows the sequencer and the verifier
//! read and write.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::audit::model::{AuditEntry, AuditEvent, leaf_data};
use crate::db::schema::audit_events::dsl as a;
use crate::db::{DbConnection, from_us, to_us};
use crate::error::Result;

#[derive(Queryable, QueryableByName, Insertable)]
#[diesel(table_name = crate::db::schema::audit_events)]
struct Row {
    /// Drawn by the insert itself (the column's default on PostgreSQL, the
    /// row id on SQLite), not by a round trip before it.
    #[diesel(skip_insertion)]
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
    leaf_index: Option<i64>,
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
            leaf_index: r.leaf_index,
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
            leaf_index: e.leaf_index,
        }
    }
}

/// Appends `entry` inside the caller's transaction, so the event commits
/// exactly when the change it records does. No lock is taken: the event's
/// place in the log is its leaf, which the sequencer gives it after commit;
/// its `digest` is its leaf hash from the start.
pub fn append(conn: &mut DbConnection, at: DateTime<Utc>, entry: AuditEntry) -> Result<AuditEvent> {
    let mut ev = new_event(at, entry);
    ev.seq = insert(conn, &ev)?;
    Ok(ev)
}

/// Inserts event `ev` (from [`new_event`]) on its own and returns its seq.
pub fn insert(conn: &mut DbConnection, ev: &AuditEvent) -> Result<i64> {
    let seq = diesel::insert_into(a::audit_events)
        .values(Row::from(ev))
        .returning(a::seq)
        .get_result(conn)?;
    written();
    Ok(seq)
}

/// The event `entry` becomes at `at`, before it is inserted: its id and
/// leaf hash, no seq yet and no leaf. For writers that insert events
/// together with other rows ([`crate::db::flush`]); [`append`] inserts one.
pub fn new_event(at: DateTime<Utc>, entry: AuditEntry) -> AuditEvent {
    let id = uuid::Uuid::new_v4().to_string();
    let digest = hex::encode(tlog_tiles::record_hash(&leaf_data(&id, at, &entry)).0);
    AuditEvent {
        seq: 0,
        id,
        at,
        entry,
        prev_digest: String::new(),
        digest,
        leaf_index: None,
    }
}

/// Tells the sequencer, once the transaction commits, that events wait for
/// their leaves: every insert of an event calls it.
pub fn written() {
    crate::db::notify::changed(crate::db::notify::Topic::AuditLog);
}

/// One page of the log in tree order, optionally of one tenant only:
/// events at leaves from `after` on (`after` = the last leaf returned + 1,
/// 0 = from the start). A page that reaches the end of the tree is followed
/// by the events still waiting for their leaf, in the order they were
/// written, so a command's event is listed as soon as it commits; the
/// second value is the cursor after the page's last leaf.
pub fn list(
    conn: &mut DbConnection,
    tenant: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<(Vec<AuditEvent>, Option<i64>)> {
    let mut q = a::audit_events
        .filter(a::leaf_index.ge(after))
        .order(a::leaf_index.asc())
        .limit(limit)
        .into_boxed();
    if let Some(t) = tenant {
        q = q.filter(a::tenant_id.eq(t));
    }
    let mut events: Vec<AuditEvent> = q.load::<Row>(conn)?.into_iter().map(Into::into).collect();
    if (events.len() as i64) < limit {
        // The sequencer may commit between the two queries (each sees the
        // log as of its own start on PostgreSQL): an event still waiting
        // when the first ran can have its leaf by the second. Leaves are
        // only ever added after the tree's end, so such an event lies past
        // every leaf the first query saw, and is taken here, in tree order.
        let seen = events.last().and_then(|e| e.leaf_index).unwrap_or(after - 1);
        let mut tail = a::audit_events
            .filter(a::leaf_index.is_null().or(a::leaf_index.gt(seen)))
            .order((a::leaf_index.is_null().asc(), a::leaf_index.asc(), a::seq.asc()))
            .limit(limit - events.len() as i64)
            .into_boxed();
        if let Some(t) = tenant {
            tail = tail.filter(a::tenant_id.eq(t));
        }
        events.extend(tail.load::<Row>(conn)?.into_iter().map(AuditEvent::from));
    }
    let cursor = events.iter().rev().find_map(|e| e.leaf_index).map(|l| l + 1);
    Ok((events, cursor))
}

/// Up to `limit` events not yet in the tree, in the order they were
/// written: what the sequencer integrates next.
fn unsequenced(conn: &mut DbConnection, limit: i64) -> Result<Vec<AuditEvent>> {
    Ok(a::audit_events
        .filter(a::leaf_index.is_null())
        .order(a::seq.asc())
        .limit(limit)
        .load::<Row>(conn)?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// The events waiting for their leaves (up to `limit`, in the order they
/// were written) with the tree's size then; None when none waits. One
/// statement on PostgreSQL, read after the sequencing lock is taken, so
/// the size is the one its last holder committed.
pub fn waiting(conn: &mut DbConnection, limit: i64) -> Result<Option<(u64, Vec<AuditEvent>)>> {
    match conn {
        DbConnection::Pg(c) => {
            #[derive(QueryableByName)]
            struct Waiting {
                #[diesel(embed)]
                event: Row,
                #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
                top: Option<i64>,
            }
            let rows: Vec<Waiting> = crate::db::prepared::Prepared::new(
                "SELECT a.*, (SELECT max(leaf_index) FROM audit_events) AS top FROM audit_events AS a \
                 WHERE a.leaf_index IS NULL ORDER BY a.seq LIMIT ?",
            )
            .bind::<diesel::sql_types::BigInt, _>(limit)
            .load(c)?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let size = first.top.map_or(0, |m| m as u64 + 1);
            Ok(Some((size, rows.into_iter().map(|w| w.event.into()).collect())))
        }
        DbConnection::Sqlite(_) => {
            let events = unsequenced(conn, limit)?;
            if events.is_empty() {
                return Ok(None);
            }
            Ok(Some((sequenced_size(conn)?, events)))
        }
    }
}

/// A batch the sequencer integrates: its events' seqs (ascending) go to
/// the leaves from `first` on, its tree hashes are stored, and the grown
/// tree's checkpoint is recorded.
pub struct Integration<'a> {
    /// The events, in the order they take leaves.
    pub seqs: &'a [i64],
    /// The first leaf index.
    pub first: i64,
    /// New stored hashes, by stored-hash index.
    pub hashes: &'a std::collections::HashMap<u64, tlog_tiles::Hash>,
    /// The signed checkpoint of the grown tree.
    pub checkpoint: &'a StoredCheckpoint,
}

/// Writes `batch`: on PostgreSQL in one statement (they were a round trip
/// each, and the sequencer's rounds run beside every write), on SQLite, in
/// process, one by one. The unique index on `leaf_index` refuses a second
/// event at the same leaf, and the tree's primary key a second hash at one
/// index, whoever sequences.
pub fn integrate(conn: &mut DbConnection, at: DateTime<Utc>, batch: &Integration<'_>) -> Result<()> {
    let placed = match conn {
        DbConnection::Pg(c) => {
            use diesel::sql_types::{Array, BigInt, Binary, Text};
            #[derive(QueryableByName)]
            struct Placed {
                #[diesel(sql_type = BigInt)]
                placed: i64,
            }
            let mut hashes: Vec<(i64, &[u8])> = batch
                .hashes
                .iter()
                .map(|(i, h)| (*i as i64, h.0.as_slice()))
                .collect();
            hashes.sort_unstable_by_key(|(i, _)| *i);
            let (idx, values): (Vec<i64>, Vec<&[u8]>) = hashes.into_iter().unzip();
            let done: Placed = crate::db::prepared::Prepared::new(
                "WITH h AS (INSERT INTO audit_tree_hashes (idx, hash) SELECT * FROM unnest(?::bigint[], ?::bytea[])), \
                 p AS (UPDATE audit_events AS a SET leaf_index = ? + s.ord - 1 \
                       FROM unnest(?::bigint[]) WITH ORDINALITY AS s (seq, ord) \
                       WHERE a.seq = s.seq AND a.leaf_index IS NULL RETURNING 1), \
                 c AS (INSERT INTO audit_checkpoints (tree_size, root_hash, note, signed_at_us) VALUES (?, ?, ?, ?)) \
                 SELECT count(*) AS placed FROM p",
            )
            .bind::<Array<BigInt>, _>(idx)
            .bind::<Array<Binary>, _>(values)
            .bind::<BigInt, _>(batch.first)
            .bind::<Array<BigInt>, _>(batch.seqs)
            .bind::<BigInt, _>(batch.checkpoint.size as i64)
            .bind::<Binary, _>(batch.checkpoint.root.as_slice())
            .bind::<Text, _>(batch.checkpoint.note.as_str())
            .bind::<BigInt, _>(to_us(at))
            .get_result(c)?;
            done.placed as usize
        }
        DbConnection::Sqlite(_) => {
            crate::audit::tree::store(conn, batch.hashes)?;
            for (i, seq) in batch.seqs.iter().enumerate() {
                place(conn, *seq, batch.first + i as i64)?;
            }
            store_checkpoint(conn, at, batch.checkpoint)?;
            batch.seqs.len()
        }
    };
    if placed != batch.seqs.len() {
        return Err(crate::error::Error::Conflict(
            "audit event sequenced concurrently".into(),
        ));
    }
    Ok(())
}

/// Places the event `seq` at leaf `leaf_index`. The unique index on
/// `leaf_index` refuses a second event at the same leaf, whoever sequences.
fn place(conn: &mut DbConnection, seq: i64, leaf_index: i64) -> Result<()> {
    let n = diesel::update(
        a::audit_events
            .filter(a::seq.eq(seq))
            .filter(a::leaf_index.is_null()),
    )
    .set(a::leaf_index.eq(Some(leaf_index)))
    .execute(conn)?;
    if n != 1 {
        return Err(crate::error::Error::Conflict(
            "audit event sequenced concurrently".into(),
        ));
    }
    Ok(())
}

/// How many events the tree holds: one past the highest leaf index.
pub fn sequenced_size(conn: &mut DbConnection) -> Result<u64> {
    let max: Option<i64> = a::audit_events
        .select(diesel::dsl::max(a::leaf_index))
        .first(conn)?;
    Ok(max.map_or(0, |m| m as u64 + 1))
}

/// How many events hold a leaf index (equal to [`sequenced_size`] unless
/// events were deleted).
pub fn sequenced_count(conn: &mut DbConnection) -> Result<u64> {
    let n: i64 = a::audit_events
        .filter(a::leaf_index.is_not_null())
        .count()
        .get_result(conn)?;
    Ok(n as u64)
}

/// The oldest write time of an event still waiting for its leaf.
pub fn oldest_unsequenced(conn: &mut DbConnection) -> Result<Option<DateTime<Utc>>> {
    let at: Option<i64> = a::audit_events
        .filter(a::leaf_index.is_null())
        .select(diesel::dsl::min(a::at_us))
        .first(conn)?;
    Ok(at.map(from_us))
}

/// Events at leaves `from..to`, in leaf order (missing leaves are absent).
pub fn by_leaf(conn: &mut DbConnection, from: u64, to: u64) -> Result<Vec<AuditEvent>> {
    Ok(a::audit_events
        .filter(a::leaf_index.ge(from as i64))
        .filter(a::leaf_index.lt(to as i64))
        .order(a::leaf_index.asc())
        .load::<Row>(conn)?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// One event by id, visible to `tenant` (None: any); NOT_FOUND otherwise.
pub fn by_id(conn: &mut DbConnection, id: &str, tenant: Option<&str>) -> Result<AuditEvent> {
    let row: Option<Row> = a::audit_events.filter(a::id.eq(id)).first(conn).optional()?;
    match row {
        Some(r) if tenant.is_none() || r.tenant_id.as_deref() == tenant => Ok(r.into()),
        _ => Err(crate::error::Error::not_found("audit event", id.to_string())),
    }
}

/// A stored checkpoint: the tree size, its root and the signed note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Leaves.
    pub size: u64,
    /// Root hash as stored.
    pub root: Vec<u8>,
    /// The signed note text.
    pub note: String,
}

/// Records the signed checkpoint of a tree size.
fn store_checkpoint(conn: &mut DbConnection, at: DateTime<Utc>, cp: &StoredCheckpoint) -> Result<()> {
    use crate::db::schema::audit_checkpoints::dsl as k;
    diesel::insert_into(k::audit_checkpoints)
        .values((
            k::tree_size.eq(cp.size as i64),
            k::root_hash.eq(&cp.root),
            k::note.eq(&cp.note),
            k::signed_at_us.eq(to_us(at)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The checkpoint of the largest tree signed so far.
pub fn latest_checkpoint(conn: &mut DbConnection) -> Result<Option<StoredCheckpoint>> {
    use crate::db::schema::audit_checkpoints::dsl as k;
    let row: Option<(i64, Vec<u8>, String)> = k::audit_checkpoints
        .order(k::tree_size.desc())
        .select((k::tree_size, k::root_hash, k::note))
        .first(conn)
        .optional()?;
    Ok(row.map(|(size, root, note)| StoredCheckpoint {
        size: size as u64,
        root,
        note,
    }))
}
