//! Data-subject requests in the database: requests (identifiers only as
//! AEAD ciphertext, dropped on close), their subject refs, platform systems,
//! fulfilment tasks leased to those systems, export chunks, per-subject
//! flags for `CheckProcessing`, and per-tenant deadline settings.
//!
//! Every command runs inside the caller's one write transaction and takes
//! the chain lock first, so on PostgreSQL the idempotency check, the
//! sequence numbers, the fan-out and the audit append are serialised exactly
//! as SQLite's `BEGIN IMMEDIATE` serialises them.
//!
//! # For the decision engine (`CheckProcessing`)
//! [`subject_flags`] answers one `(tenant_id, subject_ref)`;
//! [`flags_changed_since`] pages through every change after a sequence
//! number so an in-memory snapshot can be built once and then refreshed
//! incrementally; [`tenant_flags`] lists one tenant's flagged subjects. The
//! flags row is written in the same transaction as the request, completion
//! or cancellation that changes it.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;

use crate::db::schema::subject_artifact_chunks::dsl as ac;
use crate::db::schema::subject_artifacts::dsl as ar;
use crate::db::schema::subject_deletion_confirmations::dsl as dc;
use crate::db::schema::subject_export_chunks::dsl as x;
use crate::db::schema::subject_flags::dsl as f;
use crate::db::schema::subject_questions::dsl as q;
use crate::db::schema::subject_request_refs::dsl as rr;
use crate::db::schema::subject_request_waits::dsl as w;
use crate::db::schema::subject_requests::dsl as r;
use crate::db::schema::subject_systems::dsl as sy;
use crate::db::schema::subject_tasks::dsl as t;
use crate::db::schema::subject_tenant_settings::dsl as ts;
use crate::db::{DbConnection, from_us, to_us};
use crate::error::{Error, Result};
use crate::inbox::model::PullSpec;
use crate::instructions::model::holds::Held;
use crate::secrets::KeyRing;
use crate::secrets::sealed::{Field, StoredText};
use crate::subject_requests::model as dom;
use crate::subject_requests::model::{
    Origin, Regime, RejectionGround, RequestType, Status, SubjectFlags, TaskStatus,
};

mod batched;
pub use batched::{ForwardedAtOnce, insert_forwarded_batch};

/// Identifiers sealed with the key ring: which key, and the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Id of the key that sealed it.
    pub key_id: String,
    /// base64 of nonce || ciphertext.
    pub data: String,
}

impl Sealed {
    /// Seals the identifiers (and message) of request `request_id`.
    pub fn seal(ring: &KeyRing, request_id: &str, plain: &[u8]) -> Result<Self> {
        let (key_id, data) = ring.seal(plain, request_id.as_bytes())?;
        Ok(Self { key_id, data })
    }

    /// The sealed bytes; `request_id` must be the request they belong to.
    pub fn open(&self, ring: &KeyRing, request_id: &str) -> Result<Vec<u8>> {
        ring.open(&self.key_id, &self.data, request_id.as_bytes())
    }
}

/// A request's free-text reasons in the clear.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reasons {
    /// The controller's reason for cancelling or rejecting it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub close: String,
    /// Why its deadline was extended.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub extension: String,
}

impl Reasons {
    /// The sealed form for request `id`: (key id, ciphertext), or neither
    /// when there is no reason at all.
    pub fn seal(&self, ring: &KeyRing, id: &str) -> Result<StoredText> {
        if self.close.is_empty() && self.extension.is_empty() {
            return Ok(StoredText::default());
        }
        let doc = serde_json::to_string(self).map_err(|e| Error::Unexpected(e.to_string()))?;
        StoredText::seal(ring, Field::RequestReasons, id, &doc)
    }
}

/// A request's reasons as stored: one sealed document, and the clear
/// columns that held them before sealing (a non-empty one wins; see
/// [`crate::secrets::sealed`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredReasons {
    /// Close reason in the clear, from before sealing.
    pub close_clear: Option<String>,
    /// Extension reason in the clear, from before sealing.
    pub extension_clear: Option<String>,
    /// Id of the key that sealed [`sealed`](Self::sealed).
    pub key_id: Option<String>,
    /// The sealed [`Reasons`].
    pub sealed: Option<String>,
}

impl StoredReasons {
    /// True while a reason is held in the clear: what must be sealed.
    pub fn is_clear(&self) -> bool {
        [&self.close_clear, &self.extension_clear]
            .iter()
            .any(|c| c.as_deref().is_some_and(|c| !c.is_empty()))
    }

    /// The reasons of request `id` in the clear.
    pub fn open(&self, ring: &KeyRing, id: &str) -> Result<Reasons> {
        let doc = StoredText::from_columns(None, self.key_id.clone(), self.sealed.clone()).open(
            ring,
            Field::RequestReasons,
            id,
        )?;
        let mut out: Reasons = if doc.is_empty() {
            Reasons::default()
        } else {
            serde_json::from_str(&doc).map_err(|_| corrupt("sealed reasons"))?
        };
        if let Some(c) = self.close_clear.as_deref().filter(|c| !c.is_empty()) {
            c.clone_into(&mut out.close);
        }
        if let Some(e) = self.extension_clear.as_deref().filter(|e| !e.is_empty()) {
            e.clone_into(&mut out.extension);
        }
        Ok(out)
    }
}

/// Writes `reasons` of request `id` sealed and empties the clear columns.
pub fn save_reasons(conn: &mut DbConnection, ring: &KeyRing, id: &str, reasons: &Reasons) -> Result<()> {
    let sealed = reasons.seal(ring, id)?;
    diesel::update(r::subject_requests.filter(r::id.eq(id)))
        .set((
            r::close_reason.eq(None::<String>),
            r::extension_reason.eq(None::<String>),
            r::reasons_sealed.eq(&sealed.sealed),
            r::reasons_key_id.eq(&sealed.key_id),
        ))
        .execute(conn)?;
    Ok(())
}

/// A signed receipt as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// Ed25519 signature over [`dom::receipt_message`].
    pub signature: Vec<u8>,
    /// Which receipt key signed it.
    pub key_id: String,
}

/// A request as the store returns it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// Order of creation (paging key).
    pub seq: i64,
    /// Public id.
    pub id: String,
    /// The controller.
    pub tenant_id: String,
    /// How it came to exist.
    pub origin: Origin,
    /// What is asked for.
    pub request_type: RequestType,
    /// Where it is.
    pub status: Status,
    /// Deadline rulebook.
    pub regime: Regime,
    /// Channel the person used (forwarded requests).
    pub channel: String,
    /// The caller's retry key.
    pub idempotency_key: String,
    /// Keyed digest of the canonical body (what the receipt signs).
    pub body_digest: String,
    /// Primary keyed hash of the subject.
    pub subject_ref: Option<String>,
    /// Sealed identifiers while open.
    pub sealed: Option<Sealed>,
    /// Scope; empty = everything.
    pub categories: Vec<String>,
    /// When the person's request arrived.
    pub received_at: DateTime<Utc>,
    /// Legal deadline.
    pub due_at: DateTime<Utc>,
    /// Processor SLA, never after `due_at`.
    pub sla_due_at: DateTime<Utc>,
    /// Whether the one extension was used.
    pub extended: bool,
    /// Why it was extended and why it was closed, sealed (they may name
    /// the person).
    pub reasons: StoredReasons,
    /// Signed receipt.
    pub receipt: Receipt,
    /// Row creation.
    pub created_at: DateTime<Utc>,
    /// Closing time (completed, rejected, cancelled).
    pub closed_at: Option<DateTime<Utc>>,
    /// Bumped on every change, so watchers see each one.
    pub version: i64,
    /// First download of the export bundle.
    pub export_downloaded_at: Option<DateTime<Utc>>,
    /// When the export bundle was deleted.
    pub export_deleted_at: Option<DateTime<Utc>>,
    /// The legal ground of a rejection.
    pub rejection_ground: Option<RejectionGround>,
    /// The platform system that forwarded it (forwarded requests).
    pub forwarded_by: Option<String>,
    /// While awaiting the controller: the status it returns to once every
    /// question is answered.
    pub resume_status: Option<Status>,
    /// While awaiting the controller: since when proctor's SLA is paused.
    pub sla_paused_at: Option<DateTime<Utc>>,
    /// How many questions platform systems asked about it (0: none to read).
    pub questions: i64,
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::subject_requests)]
struct Row {
    /// Drawn by the insert itself (the column's default on PostgreSQL,
    /// the row id on SQLite), not by a round trip before it.
    #[diesel(skip_insertion)]
    seq: i64,
    id: String,
    tenant_id: String,
    origin: String,
    request_type: String,
    status: String,
    regime: String,
    channel: String,
    idempotency_key: String,
    body_digest: String,
    subject_ref: Option<String>,
    subject_sealed: Option<String>,
    subject_key_id: Option<String>,
    categories: String,
    received_at_us: i64,
    due_at_us: i64,
    sla_due_at_us: i64,
    extended: bool,
    extension_reason: Option<String>,
    receipt_issued_at_us: i64,
    receipt_signature: String,
    receipt_key_id: String,
    created_at_us: i64,
    updated_at_us: i64,
    closed_at_us: Option<i64>,
    version: i64,
    export_downloaded_at_us: Option<i64>,
    export_deleted_at_us: Option<i64>,
    close_reason: Option<String>,
    rejection_ground: Option<String>,
    reasons_sealed: Option<String>,
    reasons_key_id: Option<String>,
}

impl Row {
    /// A new request's row, in status `initial`, before its insert draws
    /// its `seq`.
    fn new(new: &NewRequest, at: Deadlines, initial: Status, receipt: &Receipt) -> Self {
        use base64::Engine;
        let now = receipt.issued_at;
        Self {
            seq: 0,
            id: new.id.clone(),
            tenant_id: new.tenant_id.clone(),
            origin: new.origin.as_str().into(),
            request_type: new.request_type.as_str().into(),
            status: initial.as_str().into(),
            regime: new.regime.as_str().into(),
            channel: new.channel.clone(),
            idempotency_key: new.idempotency_key.clone(),
            body_digest: new.body_digest.clone(),
            subject_ref: new.subject_refs.first().cloned(),
            subject_sealed: new.sealed.as_ref().map(|s| s.data.clone()),
            subject_key_id: new.sealed.as_ref().map(|s| s.key_id.clone()),
            categories: cats_to_json(&new.categories),
            received_at_us: to_us(at.received),
            due_at_us: to_us(at.due),
            sla_due_at_us: to_us(at.sla),
            extended: false,
            extension_reason: None,
            receipt_issued_at_us: to_us(now),
            receipt_signature: base64::engine::general_purpose::STANDARD.encode(&receipt.signature),
            receipt_key_id: receipt.key_id.clone(),
            created_at_us: to_us(now),
            updated_at_us: to_us(now),
            closed_at_us: None,
            version: 1,
            export_downloaded_at_us: None,
            export_deleted_at_us: None,
            close_reason: None,
            rejection_ground: None,
            reasons_sealed: None,
            reasons_key_id: None,
        }
    }

    /// The request as stored once its insert drew `seq`: what a read would
    /// return, with no read.
    fn stored(self, seq: i64, new: &NewRequest) -> Result<RequestRecord> {
        let mut stored: RequestRecord = Row { seq, ..self }.try_into()?;
        stored.forwarded_by = new.forwarded_by.clone();
        Ok(stored)
    }
}

fn corrupt(what: &str) -> Error {
    Error::Unexpected(format!("stored subject request has a bad {what}"))
}

fn cats_to_json(c: &[String]) -> String {
    serde_json::to_string(c).unwrap_or_else(|_| "[]".into())
}

fn cats_from_json(s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).map_err(|_| corrupt("category list"))
}

impl TryFrom<Row> for RequestRecord {
    type Error = Error;
    fn try_from(w: Row) -> Result<Self> {
        use base64::Engine;
        Ok(Self {
            seq: w.seq,
            id: w.id,
            tenant_id: w.tenant_id,
            origin: Origin::parse(&w.origin).ok_or_else(|| corrupt("origin"))?,
            request_type: RequestType::parse(&w.request_type).ok_or_else(|| corrupt("type"))?,
            status: Status::parse(&w.status).ok_or_else(|| corrupt("status"))?,
            regime: Regime::parse(&w.regime).ok_or_else(|| corrupt("regime"))?,
            channel: w.channel,
            idempotency_key: w.idempotency_key,
            body_digest: w.body_digest,
            subject_ref: w.subject_ref,
            sealed: match (w.subject_key_id, w.subject_sealed) {
                (Some(key_id), Some(data)) => Some(Sealed { key_id, data }),
                _ => None,
            },
            categories: cats_from_json(&w.categories)?,
            received_at: from_us(w.received_at_us),
            due_at: from_us(w.due_at_us),
            sla_due_at: from_us(w.sla_due_at_us),
            extended: w.extended,
            reasons: StoredReasons {
                close_clear: w.close_reason,
                extension_clear: w.extension_reason,
                key_id: w.reasons_key_id,
                sealed: w.reasons_sealed,
            },
            receipt: Receipt {
                issued_at: from_us(w.receipt_issued_at_us),
                signature: base64::engine::general_purpose::STANDARD
                    .decode(&w.receipt_signature)
                    .map_err(|_| corrupt("receipt"))?,
                key_id: w.receipt_key_id,
            },
            created_at: from_us(w.created_at_us),
            closed_at: w.closed_at_us.map(from_us),
            version: w.version,
            export_downloaded_at: w.export_downloaded_at_us.map(from_us),
            export_deleted_at: w.export_deleted_at_us.map(from_us),
            rejection_ground: match w.rejection_ground {
                Some(g) => Some(RejectionGround::parse(&g).ok_or_else(|| corrupt("rejection ground"))?),
                None => None,
            },
            forwarded_by: None,
            resume_status: None,
            sla_paused_at: None,
            questions: 0,
        })
    }
}

/// A fulfilment task as the store returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// Order of creation.
    pub seq: i64,
    /// Public id.
    pub id: String,
    /// The request it serves.
    pub request_id: String,
    /// The request's tenant.
    pub tenant_id: String,
    /// The platform system that must act.
    pub system: String,
    /// What it must do.
    pub request_type: RequestType,
    /// The categories in scope for this system.
    pub categories: Vec<String>,
    /// Where it is.
    pub status: TaskStatus,
    /// End of the current lease.
    pub lease_until: Option<DateTime<Utc>>,
    /// How many times it was leased.
    pub attempts: i32,
    /// What the system reported.
    pub records_affected: i64,
    /// Last failure text, sealed (a system's message may name the person).
    pub error: StoredText,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// A failed task is not offered again before this instant (backoff).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Its system reported that it holds nothing for the person (distinct
    /// from acting on zero records).
    pub no_data_held: bool,
    /// Its last change (for a done task: when it was completed).
    pub updated_at: DateTime<Utc>,
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::subject_tasks)]
struct TaskRow {
    /// Drawn by the insert itself (the column's default on PostgreSQL,
    /// the row id on SQLite), not by a round trip before it.
    #[diesel(skip_insertion)]
    seq: i64,
    id: String,
    request_id: String,
    tenant_id: String,
    system: String,
    request_type: String,
    categories: String,
    status: String,
    lease_until_us: Option<i64>,
    attempts: i32,
    records_affected: i64,
    error: Option<String>,
    created_at_us: i64,
    updated_at_us: i64,
    error_sealed: Option<String>,
    error_key_id: Option<String>,
    next_attempt_at_us: Option<i64>,
    no_data_held: bool,
}

impl TryFrom<TaskRow> for TaskRecord {
    type Error = Error;
    fn try_from(w: TaskRow) -> Result<Self> {
        Ok(Self {
            seq: w.seq,
            id: w.id,
            request_id: w.request_id,
            tenant_id: w.tenant_id,
            system: w.system,
            request_type: RequestType::parse(&w.request_type).ok_or_else(|| corrupt("task type"))?,
            categories: cats_from_json(&w.categories)?,
            status: TaskStatus::parse(&w.status).ok_or_else(|| corrupt("task status"))?,
            lease_until: w.lease_until_us.map(from_us),
            attempts: w.attempts,
            records_affected: w.records_affected,
            error: StoredText::from_columns(w.error, w.error_key_id, w.error_sealed),
            created_at: from_us(w.created_at_us),
            next_attempt_at: w.next_attempt_at_us.map(from_us),
            no_data_held: w.no_data_held,
            updated_at: from_us(w.updated_at_us),
        })
    }
}

fn records<T, R: TryInto<T, Error = Error>>(rows: Vec<R>) -> Result<Vec<T>> {
    rows.into_iter().map(TryInto::try_into).collect()
}

/// A tenant's deadline settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSettings {
    /// IANA zone deadlines are computed in.
    pub time_zone: String,
    /// Processor SLA, calendar days.
    pub sla_days: u32,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            time_zone: "UTC".into(),
            sla_days: dom::DEFAULT_SLA_DAYS,
        }
    }
}

impl TenantSettings {
    /// The zone, UTC when the stored name no longer parses.
    pub fn tz(&self) -> Tz {
        dom::parse_tz(&self.time_zone).unwrap_or(chrono_tz::UTC)
    }
}

/// The tenant's settings (defaults when it has set none).
pub fn settings(conn: &mut DbConnection, tenant_id: &str) -> Result<TenantSettings> {
    let row: Option<(String, i32)> = ts::subject_tenant_settings
        .select((ts::time_zone, ts::sla_days))
        .filter(ts::tenant_id.eq(tenant_id))
        .first(conn)
        .optional()?;
    Ok(
        row.map_or_else(TenantSettings::default, |(tz, d)| TenantSettings {
            time_zone: tz,
            sla_days: u32::try_from(d).unwrap_or(dom::DEFAULT_SLA_DAYS),
        }),
    )
}

/// Stores the tenant's settings `s` (already merged with what it had);
/// they apply to requests received from now on.
pub fn store_settings(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    tenant_id: &str,
    s: &TenantSettings,
) -> Result<()> {
    let sla = i32::try_from(s.sla_days).unwrap_or(i32::MAX);
    let n = diesel::update(ts::subject_tenant_settings.filter(ts::tenant_id.eq(tenant_id)))
        .set((
            ts::time_zone.eq(&s.time_zone),
            ts::sla_days.eq(sla),
            ts::updated_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(ts::subject_tenant_settings)
            .values((
                ts::tenant_id.eq(tenant_id),
                ts::time_zone.eq(&s.time_zone),
                ts::sla_days.eq(sla),
                ts::updated_at_us.eq(to_us(now)),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// A request about to be recorded, already validated and with its
/// identifiers sealed.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// Id chosen by the caller (the ciphertext is bound to it).
    pub id: String,
    /// The controller.
    pub tenant_id: String,
    /// How it arrives.
    pub origin: Origin,
    /// What is asked.
    pub request_type: RequestType,
    /// Rulebook.
    pub regime: Regime,
    /// Channel (forwarded).
    pub channel: String,
    /// Retry key, unique per tenant.
    pub idempotency_key: String,
    /// Keyed digest of the canonical body.
    pub body_digest: String,
    /// Keyed hashes of every identifier; the first is the primary.
    pub subject_refs: Vec<String>,
    /// Sealed identifiers (and message).
    pub sealed: Option<Sealed>,
    /// Scope; empty = everything.
    pub categories: Vec<String>,
    /// When it reached the platform or the controller; `None` = now.
    pub received_at: Option<DateTime<Utc>>,
    /// The platform system that forwards it (forwarded requests).
    pub forwarded_by: Option<String>,
}

/// The request an idempotency key already named, within its origin: a
/// platform forward, a tenant's submission and proctor's own requests each
/// have their own key space, so one can never take another's key.
pub fn by_idempotency(
    conn: &mut DbConnection,
    tenant_id: &str,
    origin: Origin,
    key: &str,
) -> Result<Option<RequestRecord>> {
    let row: Option<Row> = r::subject_requests
        .filter(r::tenant_id.eq(tenant_id))
        .filter(r::origin.eq(origin.as_str()))
        .filter(r::idempotency_key.eq(key))
        .first(conn)
        .optional()?;
    row.map(TryInto::try_into).transpose()
}

/// When a request was received and what it is due by: the legal deadline
/// and the platform's own (SLA) one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// When it reached the platform or the controller.
    pub received: DateTime<Utc>,
    /// The legal deadline.
    pub due: DateTime<Utc>,
    /// proctor's SLA deadline (never after `due`).
    pub sla: DateTime<Utc>,
}

/// What [`insert_request`] did.
#[derive(Debug)]
pub enum Inserted {
    /// The request, as stored (what a read would return).
    New(Box<RequestRecord>),
    /// Nothing: another request of the tenant and origin already holds the
    /// idempotency key.
    KeyTaken,
    /// Nothing: the tenant's settings are no longer those the deadlines were
    /// computed from; compute them again from the stored settings.
    SettingsChanged,
}

/// The tenant's settings a request's deadlines were computed from.
#[derive(Debug, Clone, Copy)]
pub enum Assumed<'a> {
    /// Read in this transaction.
    Read(&'a TenantSettings),
    /// Remembered from earlier ([`super::settings_hints`]): checked against
    /// the stored ones before anything is inserted.
    Remembered(&'a TenantSettings),
}

/// Inserts a new request in status `initial` with its subject refs and
/// signed receipt, provided the tenant's settings are still `assumed` (the
/// ones its deadlines `at` were computed from), checked in the insert
/// itself on PostgreSQL so that a command need not read them first. On
/// SQLite only remembered settings are checked: between a read and the
/// insert, the one writer runs nothing else. On PostgreSQL the unique
/// key makes a concurrent insert of the same key wait for the first to
/// commit, so retries need no lock of their own.
pub fn insert_request(
    conn: &mut DbConnection,
    new: &NewRequest,
    at: Deadlines,
    initial: Status,
    receipt: &Receipt,
    assumed: Assumed<'_>,
) -> Result<Inserted> {
    let row = Row::new(new, at, initial, receipt);
    if let (DbConnection::Sqlite(_), Assumed::Remembered(known)) = (&*conn, assumed)
        && settings(conn, &new.tenant_id)? != *known
    {
        return Ok(Inserted::SettingsChanged);
    }
    let seq = match conn {
        DbConnection::Pg(c) => match insert_request_pg(c, &row, new, assumed.settings())? {
            PgInsert {
                same_settings: false, ..
            } => return Ok(Inserted::SettingsChanged),
            PgInsert { seq, .. } => seq,
        },
        DbConnection::Sqlite(c) => {
            // SQLite's own connection: diesel's upsert is not on the
            // connection that spans both.
            let seq = diesel::insert_into(r::subject_requests)
                .values(&row)
                .on_conflict((r::tenant_id, r::origin, r::idempotency_key))
                .do_nothing()
                .returning(r::seq)
                .get_result::<i64>(c)
                .optional()?;
            if seq.is_some() {
                insert_waits_and_refs_sqlite(c, new)?;
            }
            seq
        }
    };
    let Some(seq) = seq else {
        return Ok(Inserted::KeyTaken);
    };
    Ok(Inserted::New(Box::new(row.stored(seq, new)?)))
}

impl Assumed<'_> {
    fn settings(&self) -> &TenantSettings {
        match self {
            Self::Read(s) | Self::Remembered(s) => s,
        }
    }
}

/// What the PostgreSQL insert returns: the new row's `seq` (none when the
/// key was taken or the settings changed) and whether the stored settings
/// were the assumed ones.
#[derive(diesel::QueryableByName)]
struct PgInsert {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    seq: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    same_settings: bool,
}

/// A new request with its wait for its controller (a forwarded one) and
/// its subject refs, as common table expressions `ok` (whether the stored
/// settings, or the defaults for a tenant without any, are the assumed
/// ones), `req`, `waits` and `refs`, for one statement; `req` holds the new
/// row's `seq`, `id` and `tenant_id`, and nothing at all when the settings
/// changed or another request holds the idempotency key. Bound by
/// [`bind_request`].
macro_rules! request_ctes {
    () => {
            "ok AS (\
                 SELECT COALESCE(s.time_zone, d.tz) = ? AND COALESCE(s.sla_days, d.sla) = ? AS same \
                 FROM (SELECT ?::text AS tz, ?::integer AS sla) AS d \
                 LEFT JOIN subject_tenant_settings AS s ON s.tenant_id = ?), \
             req AS (\
                 INSERT INTO subject_requests (id, tenant_id, origin, request_type, status, regime, \
                     channel, idempotency_key, body_digest, subject_ref, subject_sealed, subject_key_id, \
                     categories, received_at_us, due_at_us, sla_due_at_us, extended, extension_reason, \
                     receipt_issued_at_us, receipt_signature, receipt_key_id, created_at_us, updated_at_us, \
                     closed_at_us, version, export_downloaded_at_us, export_deleted_at_us, close_reason, \
                     rejection_ground, reasons_sealed, reasons_key_id) \
                 SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
                 FROM ok WHERE ok.same \
                 ON CONFLICT (tenant_id, origin, idempotency_key) DO NOTHING \
                 RETURNING seq, id, tenant_id), \
             waits AS (\
                 INSERT INTO subject_request_waits (request_id, forwarded_by) \
                 SELECT req.id, v.by FROM req, (SELECT ?::text AS by) AS v \
                 WHERE v.by IS NOT NULL RETURNING 1), \
             refs AS (\
                 INSERT INTO subject_request_refs (request_id, tenant_id, subject_ref) \
                 SELECT req.id, req.tenant_id, u.r FROM req, unnest(?::text[]) WITH ORDINALITY AS u(r, n) \
                 ORDER BY u.n RETURNING 1)"
    };
}

/// Binds [`request_ctes!`]'s placeholders, in their order.
fn bind_request<'a>(
    q: crate::db::prepared::Prepared<'a>,
    row: &'a Row,
    new: &'a NewRequest,
    assumed: &'a TenantSettings,
) -> crate::db::prepared::Prepared<'a> {
    use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
    let defaults = TenantSettings::default();
    q.bind::<Text, _>(&assumed.time_zone)
        .bind::<Integer, _>(i32::try_from(assumed.sla_days).unwrap_or(i32::MAX))
        .bind::<Text, _>(defaults.time_zone)
        .bind::<Integer, _>(i32::try_from(defaults.sla_days).unwrap_or(i32::MAX))
        .bind::<Text, _>(&row.tenant_id)
        .bind::<Text, _>(&row.id)
        .bind::<Text, _>(&row.tenant_id)
        .bind::<Text, _>(&row.origin)
        .bind::<Text, _>(&row.request_type)
        .bind::<Text, _>(&row.status)
        .bind::<Text, _>(&row.regime)
        .bind::<Text, _>(&row.channel)
        .bind::<Text, _>(&row.idempotency_key)
        .bind::<Text, _>(&row.body_digest)
        .bind::<Nullable<Text>, _>(row.subject_ref.as_deref())
        .bind::<Nullable<Text>, _>(row.subject_sealed.as_deref())
        .bind::<Nullable<Text>, _>(row.subject_key_id.as_deref())
        .bind::<Text, _>(&row.categories)
        .bind::<BigInt, _>(row.received_at_us)
        .bind::<BigInt, _>(row.due_at_us)
        .bind::<BigInt, _>(row.sla_due_at_us)
        .bind::<Bool, _>(row.extended)
        .bind::<Nullable<Text>, _>(row.extension_reason.as_deref())
        .bind::<BigInt, _>(row.receipt_issued_at_us)
        .bind::<Text, _>(&row.receipt_signature)
        .bind::<Text, _>(&row.receipt_key_id)
        .bind::<BigInt, _>(row.created_at_us)
        .bind::<BigInt, _>(row.updated_at_us)
        .bind::<Nullable<BigInt>, _>(row.closed_at_us)
        .bind::<BigInt, _>(row.version)
        .bind::<Nullable<BigInt>, _>(row.export_downloaded_at_us)
        .bind::<Nullable<BigInt>, _>(row.export_deleted_at_us)
        .bind::<Nullable<Text>, _>(row.close_reason.as_deref())
        .bind::<Nullable<Text>, _>(row.rejection_ground.as_deref())
        .bind::<Nullable<Text>, _>(row.reasons_sealed.as_deref())
        .bind::<Nullable<Text>, _>(row.reasons_key_id.as_deref())
        .bind::<Nullable<Text>, _>(new.forwarded_by.as_deref())
        .bind::<Array<Text>, _>(&new.subject_refs)
}

/// The request `row` with its wait and refs, in one prepared statement
/// where diesel's own `INSERT` (parsed and planned on every call), the
/// refs and the read of the tenant's settings were three round trips.
fn insert_request_pg(
    c: &mut diesel::PgConnection,
    row: &Row,
    new: &NewRequest,
    assumed: &TenantSettings,
) -> Result<PgInsert> {
    const SQL: &str = concat!(
        "WITH ",
        request_ctes!(),
        " SELECT (SELECT seq FROM req) AS seq, ok.same AS same_settings FROM ok"
    );
    Ok(bind_request(crate::db::prepared::Prepared::new(SQL), row, new, assumed).get_result(c)?)
}

/// The new request's wait for its controller (a forwarded one) and its
/// subject refs, on SQLite (where a statement costs no round trip).
fn insert_waits_and_refs_sqlite(c: &mut diesel::SqliteConnection, new: &NewRequest) -> Result<()> {
    if let Some(by) = &new.forwarded_by {
        diesel::insert_into(w::subject_request_waits)
            .values((w::request_id.eq(&new.id), w::forwarded_by.eq(Some(by))))
            .execute(c)?;
    }
    if !new.subject_refs.is_empty() {
        let refs: Vec<_> = new
            .subject_refs
            .iter()
            .map(|sref| {
                (
                    rr::request_id.eq(&new.id),
                    rr::tenant_id.eq(&new.tenant_id),
                    rr::subject_ref.eq(sref),
                )
            })
            .collect();
        diesel::insert_into(rr::subject_request_refs)
            .values(&refs)
            .execute(c)?;
    }
    Ok(())
}

/// Per system, the categories a legal hold withheld from its task.
pub type Withheld = Vec<(String, Vec<String>)>;

/// A task just planned: its id and the system it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedTask {
    /// Task id.
    pub id: String,
    /// The system that holds data in scope.
    pub system: String,
}

/// Inserts one pending task per registered system whose categories meet
/// the request's scope, leaving out the categories `held` covers (a legal
/// hold: see [`crate::instructions::service::held_now`]). Returns the tasks
/// and, per system, the categories withheld.
pub fn plan_tasks(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    req: &NewRequest,
    held: &Held,
) -> Result<(Vec<PlannedTask>, Withheld)> {
    let systems: Vec<(String, String)> = sy::subject_systems
        .select((sy::name, sy::categories))
        .order(sy::name.asc())
        .load(conn)?;
    let mut out = Vec::new();
    let mut withheld = Vec::new();
    for (name, cats) in systems {
        let Some(scope) = dom::task_scope(&cats_from_json(&cats)?, &req.categories) else {
            continue;
        };
        let (scope, kept) = held.split(&scope);
        if !kept.is_empty() {
            withheld.push((name.clone(), kept));
        }
        if scope.is_empty() {
            continue;
        }
        let id = add_task(
            conn,
            now,
            &req.id,
            &req.tenant_id,
            &name,
            req.request_type,
            &scope,
        )?;
        out.push(PlannedTask { id, system: name });
    }
    Ok((out, withheld))
}

/// Inserts one pending task of `system` for request `request_id` over
/// `categories`; returns its id.
pub fn add_task(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    request_id: &str,
    tenant_id: &str,
    system: &str,
    request_type: RequestType,
    categories: &[String],
) -> Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    diesel::insert_into(t::subject_tasks)
        .values(&TaskRow {
            seq: 0,
            id: id.clone(),
            request_id: request_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            system: system.to_owned(),
            request_type: request_type.as_str().into(),
            categories: cats_to_json(categories),
            status: TaskStatus::Pending.as_str().into(),
            lease_until_us: None,
            attempts: 0,
            records_affected: 0,
            error: None,
            created_at_us: to_us(now),
            updated_at_us: to_us(now),
            error_sealed: None,
            error_key_id: None,
            next_attempt_at_us: None,
            no_data_held: false,
        })
        .execute(conn)?;
    Ok(id)
}

/// Cancels one unfinished task (a later completion is refused).
pub fn cancel_task(conn: &mut DbConnection, now: DateTime<Utc>, task_id: &str) -> Result<()> {
    diesel::update(
        t::subject_tasks
            .filter(t::id.eq(task_id))
            .filter(t::status.ne_all(FINISHED)),
    )
    .set(cancelled_at(now))
    .execute(conn)?;
    Ok(())
}

/// Statuses a task never leaves: what cancelling passes over.
const FINISHED: [&str; 2] = ["done", "cancelled"];

/// What [`cancelled_at`] sets: status, no lease, the time.
type Cancelled = (
    diesel::dsl::Eq<t::status, &'static str>,
    diesel::dsl::Eq<t::lease_until_us, Option<i64>>,
    diesel::dsl::Eq<t::updated_at_us, i64>,
);

/// The columns a cancelled task gets, for one task or a request's open
/// ones alike.
fn cancelled_at(now: DateTime<Utc>) -> Cancelled {
    (
        t::status.eq(TaskStatus::Cancelled.as_str()),
        t::lease_until_us.eq(None::<i64>),
        t::updated_at_us.eq(to_us(now)),
    )
}

/// The open requests of `tenant` of one type, oldest first.
pub fn open_of_type(
    conn: &mut DbConnection,
    tenant: &str,
    request_type: RequestType,
) -> Result<Vec<RequestRecord>> {
    let open: Vec<&str> = [Status::Received, Status::Forwarded, Status::InProgress]
        .iter()
        .map(|s| s.as_str())
        .collect();
    let rows: Vec<Row> = r::subject_requests
        .filter(r::tenant_id.eq(tenant))
        .filter(r::request_type.eq(request_type.as_str()))
        .filter(r::status.eq_any(open))
        .order(r::seq.asc())
        .load(conn)?;
    rows.into_iter().map(TryInto::try_into).collect()
}

/// Moves a request along the transition table; closing it drops its sealed
/// identifiers (only the keyed hash remains) and bumps its version.
pub fn set_status(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    id: &str,
    from: Status,
    to: Status,
) -> Result<()> {
    from.transition(to)?;
    let target = r::subject_requests
        .filter(r::id.eq(id))
        .filter(r::status.eq(from.as_str()));
    let n = if to.is_open() {
        diesel::update(target)
            .set((
                r::status.eq(to.as_str()),
                r::updated_at_us.eq(to_us(now)),
                r::version.eq(r::version + 1),
            ))
            .execute(conn)?
    } else {
        diesel::update(target)
            .set((
                r::status.eq(to.as_str()),
                r::updated_at_us.eq(to_us(now)),
                r::version.eq(r::version + 1),
                r::closed_at_us.eq(Some(to_us(now))),
                r::subject_sealed.eq(None::<String>),
                r::subject_key_id.eq(None::<String>),
            ))
            .execute(conn)?
    };
    if !to.is_open() {
        // A closed request awaits nobody.
        diesel::update(w::subject_request_waits.filter(w::request_id.eq(id)))
            .set((
                w::resume_status.eq(None::<String>),
                w::sla_paused_at_us.eq(None::<i64>),
            ))
            .execute(conn)?;
    }
    if n != 1 {
        return Err(Error::Conflict("the request changed concurrently; retry".into()));
    }
    new_version(id);
    Ok(())
}

/// Bumps request `id`'s version (a task of it changed) and wakes its
/// watchers.
pub fn touch(conn: &mut DbConnection, now: DateTime<Utc>, id: &str) -> Result<()> {
    diesel::update(r::subject_requests.filter(r::id.eq(id)))
        .set((r::updated_at_us.eq(to_us(now)), r::version.eq(r::version + 1)))
        .execute(conn)?;
    new_version(id);
    Ok(())
}

/// Wakes the watchers of request `id` once this transaction commits: each
/// place that bumps a request's version calls it.
fn new_version(id: &str) {
    crate::db::notify::changed(crate::db::notify::Topic::SubjectRequest(id.to_owned()));
}

/// Recomputes the flags of `refs` from every live controller request
/// (submitted or contract-end, open or completed) naming them; true when
/// any changed, so the caller logs a decision change for the tenant.
pub fn recompute_flags(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    tenant_id: &str,
    refs: &[String],
) -> Result<bool> {
    let mut changed = false;
    for sref in refs {
        let ids: Vec<String> = rr::subject_request_refs
            .select(rr::request_id)
            .filter(rr::tenant_id.eq(tenant_id))
            .filter(rr::subject_ref.eq(sref))
            .load(conn)?;
        let live: Vec<(String, String)> = r::subject_requests
            .select((r::request_type, r::status))
            .filter(r::id.eq_any(&ids))
            .filter(r::origin.ne(Origin::Forwarded.as_str()))
            .load(conn)?;
        let mut flags = SubjectFlags::default();
        for (ty, st) in live {
            let (Some(ty), Some(st)) = (RequestType::parse(&ty), Status::parse(&st)) else {
                return Err(corrupt("type or status"));
            };
            if dom::status_sets_flags(st) {
                flags.add(ty);
            }
        }
        let current = subject_flags(conn, tenant_id, sref)?;
        let exists: i64 = f::subject_flags
            .filter(f::tenant_id.eq(tenant_id))
            .filter(f::subject_ref.eq(sref))
            .count()
            .get_result(conn)?;
        if exists > 0 && current == flags {
            continue;
        }
        if exists == 0 && !flags.any() {
            continue;
        }
        let seq = crate::db::next_seq(conn, crate::db::Numbered::SubjectFlagChanges)?;
        let vals = (
            f::restricted.eq(flags.restricted),
            f::objected.eq(flags.objected),
            f::erased.eq(flags.erased),
            f::consent_withdrawn.eq(flags.consent_withdrawn),
            f::change_seq.eq(seq),
            f::updated_at_us.eq(to_us(now)),
        );
        if exists > 0 {
            diesel::update(
                f::subject_flags
                    .filter(f::tenant_id.eq(tenant_id))
                    .filter(f::subject_ref.eq(sref)),
            )
            .set(vals)
            .execute(conn)?;
        } else {
            diesel::insert_into(f::subject_flags)
                .values((f::tenant_id.eq(tenant_id), f::subject_ref.eq(sref), vals))
                .execute(conn)?;
        }
        changed = true;
    }
    Ok(changed)
}

/// The tenant and subject refs of request `id`.
pub fn refs_of(conn: &mut DbConnection, id: &str) -> Result<(String, Vec<String>)> {
    let rows: Vec<(String, String)> = rr::subject_request_refs
        .select((rr::tenant_id, rr::subject_ref))
        .filter(rr::request_id.eq(id))
        .load(conn)?;
    let tenant = rows.first().map(|(t, _)| t.clone()).unwrap_or_default();
    Ok((tenant, rows.into_iter().map(|(_, s)| s).collect()))
}

/// One request; `tenant` = `Some` restricts to that tenant, and another
/// tenant's id is NOT_FOUND exactly like an id that does not exist.
pub fn get(conn: &mut DbConnection, tenant: Option<&str>, id: &str) -> Result<RequestRecord> {
    let mut q = r::subject_requests
        .left_join(w::subject_request_waits.on(w::request_id.eq(r::id)))
        .select((
            crate::db::schema::subject_requests::all_columns,
            WAIT_COLUMNS.nullable(),
        ))
        .filter(r::id.eq(id))
        .into_boxed();
    if let Some(tn) = tenant {
        q = q.filter(r::tenant_id.eq(tn));
    }
    let row: Option<(Row, Option<WaitRow>)> = q.first(conn).optional()?;
    with_wait(row.ok_or_else(|| Error::not_found("subject request", id.to_string()))?)
}

type WaitRow = (Option<String>, Option<String>, Option<i64>, i64);

const WAIT_COLUMNS: (
    w::forwarded_by,
    w::resume_status,
    w::sla_paused_at_us,
    w::questions,
) = (
    w::forwarded_by,
    w::resume_status,
    w::sla_paused_at_us,
    w::questions,
);

/// A request row with what [`RequestRecord`] keeps beside it (who forwarded
/// it, its questions, its wait for the controller), read in the same query.
fn with_wait((row, wait): (Row, Option<WaitRow>)) -> Result<RequestRecord> {
    let mut rec: RequestRecord = row.try_into()?;
    if let Some((by, resume, paused, questions)) = wait {
        rec.forwarded_by = by;
        rec.resume_status = match resume {
            Some(st) => Some(Status::parse(&st).ok_or_else(|| corrupt("resume status"))?),
            None => None,
        };
        rec.sla_paused_at = paused.map(from_us);
        rec.questions = questions;
    }
    Ok(rec)
}

/// The tasks of the given requests, in creation order.
pub fn tasks_of(conn: &mut DbConnection, request_ids: &[String]) -> Result<Vec<TaskRecord>> {
    let rows: Vec<TaskRow> = t::subject_tasks
        .filter(t::request_id.eq_any(request_ids))
        .order(t::seq.asc())
        .load(conn)?;
    records(rows)
}

/// Filters of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only this status.
    pub status: Option<Status>,
    /// Only open requests past their deadline.
    pub overdue_only: bool,
    /// Only open requests due at or before this instant.
    pub due_before: Option<DateTime<Utc>>,
}

const OPEN: [&str; 4] = ["received", "forwarded", "in_progress", "awaiting_controller"];

/// One page of requests (after `after`, by creation order) and the number
/// of overdue open requests under the same tenant filter.
pub fn list(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    filter: &ListFilter,
    after: i64,
    limit: i64,
) -> Result<(Vec<RequestRecord>, u64)> {
    let mut q = r::subject_requests
        .left_join(w::subject_request_waits.on(w::request_id.eq(r::id)))
        .select((
            crate::db::schema::subject_requests::all_columns,
            WAIT_COLUMNS.nullable(),
        ))
        .filter(r::seq.gt(after))
        .order(r::seq.asc())
        .limit(limit)
        .into_boxed();
    if let Some(tn) = &filter.tenant {
        q = q.filter(r::tenant_id.eq(tn.clone()));
    }
    if let Some(s) = filter.status {
        q = q.filter(r::status.eq(s.as_str()));
    }
    if filter.overdue_only {
        q = q
            .filter(r::status.eq_any(OPEN))
            .filter(r::due_at_us.lt(to_us(now)));
    }
    if let Some(b) = filter.due_before {
        q = q.filter(r::status.eq_any(OPEN)).filter(r::due_at_us.le(to_us(b)));
    }
    let rows: Vec<(Row, Option<WaitRow>)> = q.load(conn)?;
    let (_, overdue, _) = counts(conn, now, filter.tenant.as_deref())?;
    let recs = rows.into_iter().map(with_wait).collect::<Result<_>>()?;
    Ok((recs, overdue))
}

/// (open requests, overdue open requests, unfinished tasks), optionally for
/// one tenant: numbers only, no personal data.
pub fn counts(conn: &mut DbConnection, now: DateTime<Utc>, tenant: Option<&str>) -> Result<(u64, u64, u64)> {
    let mut open = r::subject_requests.filter(r::status.eq_any(OPEN)).into_boxed();
    let mut overdue = r::subject_requests
        .filter(r::status.eq_any(OPEN))
        .filter(r::due_at_us.lt(to_us(now)))
        .into_boxed();
    let mut tasks = t::subject_tasks
        .filter(t::status.eq_any(["pending", "leased", "failed", "needs_attention"]))
        .into_boxed();
    if let Some(tn) = tenant {
        open = open.filter(r::tenant_id.eq(tn.to_owned()));
        overdue = overdue.filter(r::tenant_id.eq(tn.to_owned()));
        tasks = tasks.filter(t::tenant_id.eq(tn.to_owned()));
    }
    let o: i64 = open.count().get_result(conn)?;
    let d: i64 = overdue.count().get_result(conn)?;
    let k: i64 = tasks.count().get_result(conn)?;
    Ok((o as u64, d as u64, k as u64))
}

/// Moves open request `id` (now `from`) to awaiting the controller: it
/// returns to `from` once every question is answered, and proctor's SLA is
/// paused from `now`.
pub fn pause_for_controller(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    id: &str,
    from: Status,
) -> Result<()> {
    set_status(conn, now, id, from, Status::AwaitingController)?;
    let vals = (
        w::resume_status.eq(Some(from.as_str())),
        w::sla_paused_at_us.eq(Some(to_us(now))),
    );
    let n = diesel::update(w::subject_request_waits.filter(w::request_id.eq(id)))
        .set(vals)
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(w::subject_request_waits)
            .values((w::request_id.eq(id), vals))
            .execute(conn)?;
    }
    Ok(())
}

/// Ends request `id`'s wait for the controller: back to `to`, with
/// proctor's SLA deadline moved to `sla`.
pub fn resume_from_controller(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    id: &str,
    to: Status,
    sla: DateTime<Utc>,
) -> Result<()> {
    set_status(conn, now, id, Status::AwaitingController, to)?;
    diesel::update(w::subject_request_waits.filter(w::request_id.eq(id)))
        .set((
            w::resume_status.eq(None::<String>),
            w::sla_paused_at_us.eq(None::<i64>),
        ))
        .execute(conn)?;
    diesel::update(r::subject_requests.filter(r::id.eq(id)))
        .set(r::sla_due_at_us.eq(to_us(sla)))
        .execute(conn)?;
    Ok(())
}

/// A question a platform system asked a request's controller, both texts
/// sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionRecord {
    /// Public id.
    pub id: String,
    /// The request it is about.
    pub request_id: String,
    /// The request's tenant (the controller asked).
    pub tenant_id: String,
    /// The platform system that asked (gets the answer).
    pub asked_by: String,
    /// The question, sealed.
    pub question: StoredText,
    /// When it was asked.
    pub asked_at: DateTime<Utc>,
    /// The answer, sealed (empty while open).
    pub answer: StoredText,
    /// Who answered (the tenant token's subject).
    pub answered_by: Option<String>,
    /// When it was answered; `None` while open.
    pub answered_at: Option<DateTime<Utc>>,
}

type QuestionRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

fn question_record(w: QuestionRow) -> QuestionRecord {
    QuestionRecord {
        id: w.0,
        request_id: w.1,
        tenant_id: w.2,
        asked_by: w.3,
        question: StoredText::from_columns(None, Some(w.4), Some(w.5)),
        asked_at: from_us(w.6),
        answer: StoredText::from_columns(None, w.7, w.8),
        answered_by: w.9,
        answered_at: w.10.map(from_us),
    }
}

const QUESTION_COLUMNS: (
    q::id,
    q::request_id,
    q::tenant_id,
    q::asked_by,
    q::question_key_id,
    q::question_sealed,
    q::asked_at_us,
    q::answer_key_id,
    q::answer_sealed,
    q::answered_by,
    q::answered_at_us,
) = (
    q::id,
    q::request_id,
    q::tenant_id,
    q::asked_by,
    q::question_key_id,
    q::question_sealed,
    q::asked_at_us,
    q::answer_key_id,
    q::answer_sealed,
    q::answered_by,
    q::answered_at_us,
);

/// Records a question (`question` already sealed under its id).
pub fn insert_question(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    id: &str,
    req: &RequestRecord,
    asked_by: &str,
    question: &StoredText,
) -> Result<()> {
    diesel::insert_into(q::subject_questions)
        .values((
            q::id.eq(id),
            q::request_id.eq(&req.id),
            q::tenant_id.eq(&req.tenant_id),
            q::asked_by.eq(asked_by),
            q::question_key_id.eq(question.key_id.clone().unwrap_or_default()),
            q::question_sealed.eq(question.sealed.clone().unwrap_or_default()),
            q::asked_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    let n = diesel::update(w::subject_request_waits.filter(w::request_id.eq(&req.id)))
        .set(w::questions.eq(w::questions + 1))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(w::subject_request_waits)
            .values((w::request_id.eq(&req.id), w::questions.eq(1i64)))
            .execute(conn)?;
    }
    Ok(())
}

/// Question `id`; `tenant` = `Some` restricts to that tenant's, and
/// another tenant's is NOT_FOUND like one that does not exist.
pub fn question(conn: &mut DbConnection, tenant: Option<&str>, id: &str) -> Result<QuestionRecord> {
    let mut query = q::subject_questions
        .select(QUESTION_COLUMNS)
        .filter(q::id.eq(id))
        .into_boxed();
    if let Some(tn) = tenant {
        query = query.filter(q::tenant_id.eq(tn.to_owned()));
    }
    let row: Option<QuestionRow> = query.first(conn).optional()?;
    row.map(question_record)
        .ok_or_else(|| Error::Missing(format!("question {id}")))
}

/// The questions about the given requests, oldest first.
pub fn questions_of(conn: &mut DbConnection, request_ids: &[String]) -> Result<Vec<QuestionRecord>> {
    let rows: Vec<QuestionRow> = q::subject_questions
        .select(QUESTION_COLUMNS)
        .filter(q::request_id.eq_any(request_ids))
        .order((q::asked_at_us.asc(), q::id.asc()))
        .load(conn)?;
    Ok(rows.into_iter().map(question_record).collect())
}

/// How many questions about request `request_id` are still unanswered.
pub fn open_questions(conn: &mut DbConnection, request_id: &str) -> Result<i64> {
    Ok(q::subject_questions
        .filter(q::request_id.eq(request_id))
        .filter(q::answered_at_us.is_null())
        .count()
        .get_result(conn)?)
}

/// Records the answer (already sealed) to question `id`.
pub fn answer_question(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    id: &str,
    by: &str,
    answer: &StoredText,
) -> Result<()> {
    diesel::update(q::subject_questions.filter(q::id.eq(id)))
        .set((
            q::answer_key_id.eq(&answer.key_id),
            q::answer_sealed.eq(&answer.sealed),
            q::answered_by.eq(Some(by)),
            q::answered_at_us.eq(Some(to_us(now))),
        ))
        .execute(conn)?;
    Ok(())
}

/// Tasks that failed every attempt they were allowed and wait for a
/// person (the gauge SRE and compliance watch); numbers only.
pub fn count_needing_attention(conn: &mut DbConnection) -> Result<u64> {
    let n: i64 = t::subject_tasks
        .filter(t::status.eq(TaskStatus::NeedsAttention.as_str()))
        .count()
        .get_result(conn)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Stores the rejection ground of a closed request (None: cancelled).
pub fn set_rejection_ground(
    conn: &mut DbConnection,
    id: &str,
    ground: Option<RejectionGround>,
) -> Result<()> {
    diesel::update(r::subject_requests.filter(r::id.eq(id)))
        .set(r::rejection_ground.eq(ground.map(RejectionGround::as_str)))
        .execute(conn)?;
    Ok(())
}

/// Cancels every unfinished task of request `id`: a later completion is
/// FAILED_PRECONDITION.
pub fn cancel_open_tasks(conn: &mut DbConnection, now: DateTime<Utc>, id: &str) -> Result<()> {
    diesel::update(
        t::subject_tasks
            .filter(t::request_id.eq(id))
            .filter(t::status.ne_all(FINISHED)),
    )
    .set(cancelled_at(now))
    .execute(conn)?;
    Ok(())
}

/// Deletes the export chunks of request `id` (the bundle of a request that
/// closed without completing).
pub fn delete_export_chunks(conn: &mut DbConnection, id: &str) -> Result<()> {
    diesel::delete(x::subject_export_chunks.filter(x::request_id.eq(id))).execute(conn)?;
    delete_artifacts(conn, id)
}

/// How a controller closes a request without completing it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Closing {
    /// Its reason, kept with the request.
    pub reason: Option<String>,
    /// Some: a rejection on this ground; None: a cancellation.
    pub ground: Option<RejectionGround>,
}

/// Moves request `id`'s legal deadline to `due` and marks the one
/// extension used.
pub fn set_extended_due(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    id: &str,
    due: DateTime<Utc>,
) -> Result<()> {
    diesel::update(r::subject_requests.filter(r::id.eq(id)))
        .set((
            r::due_at_us.eq(to_us(due)),
            r::extended.eq(true),
            r::updated_at_us.eq(to_us(now)),
            r::version.eq(r::version + 1),
        ))
        .execute(conn)?;
    new_version(id);
    Ok(())
}

/// A registered platform system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemRecord {
    /// Name (a platform token's `sub`).
    pub name: String,
    /// Categories it holds.
    pub categories: Vec<String>,
    /// First registration.
    pub registered_at: DateTime<Utc>,
}

/// Registers a system or replaces its categories; returns it as stored.
pub fn upsert_system(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    name: &str,
    categories: &[String],
) -> Result<SystemRecord> {
    let n = diesel::update(sy::subject_systems.filter(sy::name.eq(name)))
        .set((
            sy::categories.eq(cats_to_json(categories)),
            sy::updated_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(sy::subject_systems)
            .values((
                sy::name.eq(name),
                sy::categories.eq(cats_to_json(categories)),
                sy::registered_at_us.eq(to_us(now)),
                sy::updated_at_us.eq(to_us(now)),
            ))
            .execute(conn)?;
    }
    let (cats, at): (String, i64) = sy::subject_systems
        .select((sy::categories, sy::registered_at_us))
        .filter(sy::name.eq(name))
        .first(conn)?;
    Ok(SystemRecord {
        name: name.to_owned(),
        categories: cats_from_json(&cats)?,
        registered_at: from_us(at),
    })
}

/// A leased task with what its system needs to act on it.
#[derive(Debug, Clone)]
pub struct LeasedTask {
    /// The task.
    pub task: TaskRecord,
    /// The request's primary subject ref.
    pub subject_ref: Option<String>,
    /// The request's sealed identifiers (the handler decrypts them for the
    /// system).
    pub sealed: Option<Sealed>,
}

/// Leases up to `spec.max` available tasks of `system` (pending, or failed
/// and past its backoff), oldest first. A task whose lease ran out is not
/// among them until its expiry was recorded as a failed attempt
/// ([`expired_leases`]): otherwise a system that dies holding it would get
/// it back at once, forever. On PostgreSQL tasks another replica is leasing
/// right now are skipped, never handed out twice.
pub fn pull_tasks(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    system: &str,
    spec: PullSpec,
) -> Result<Vec<LeasedTask>> {
    let now_us = to_us(now);
    let until = now_us + i64::from(spec.lease_seconds) * 1_000_000;
    let available = t::subject_tasks
        .select(t::seq)
        .filter(t::system.eq(system))
        .filter(
            t::status.eq("pending").or(t::status.eq("failed").and(
                t::next_attempt_at_us
                    .is_null()
                    .or(t::next_attempt_at_us.le(now_us)),
            )),
        )
        .order(t::seq.asc())
        .limit(i64::from(spec.max));
    let seqs: Vec<i64> = match conn {
        DbConnection::Pg(c) => available.for_update().skip_locked().load(c)?,
        DbConnection::Sqlite(c) => available.load(c)?,
    };
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    diesel::update(t::subject_tasks.filter(t::seq.eq_any(&seqs)))
        .set((
            t::status.eq(TaskStatus::Leased.as_str()),
            t::lease_until_us.eq(Some(until)),
            t::attempts.eq(t::attempts + 1),
            t::updated_at_us.eq(now_us),
        ))
        .execute(conn)?;
    let tasks: Vec<TaskRecord> = records(
        t::subject_tasks
            .filter(t::seq.eq_any(&seqs))
            .order(t::seq.asc())
            .load::<TaskRow>(conn)?,
    )?;
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        let req = get(conn, None, &task.request_id)?;
        out.push(LeasedTask {
            task,
            subject_ref: req.subject_ref,
            sealed: req.sealed,
        });
    }
    Ok(out)
}

/// Up to `limit` tasks (of `system`, or of every system) still leased
/// whose lease ended by `now`, oldest first: attempts whose system never
/// reported, for the caller to record as failed.
pub fn expired_leases(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    system: Option<&str>,
    limit: i64,
) -> Result<Vec<TaskRecord>> {
    let mut q = t::subject_tasks
        .filter(t::status.eq(TaskStatus::Leased.as_str()))
        .filter(t::lease_until_us.le(to_us(now)))
        .order(t::seq.asc())
        .limit(limit)
        .into_boxed();
    if let Some(system) = system {
        q = q.filter(t::system.eq(system.to_owned()));
    }
    records(q.load::<TaskRow>(conn)?)
}

/// `system`'s task `task_id`; another system's task is NOT_FOUND exactly
/// like one that does not exist.
pub fn task_of_system(conn: &mut DbConnection, system: &str, task_id: &str) -> Result<TaskRecord> {
    let row: Option<TaskRow> = t::subject_tasks
        .filter(t::id.eq(task_id))
        .filter(t::system.eq(system))
        .first(conn)
        .optional()?;
    row.ok_or_else(|| Error::not_found("task", task_id.to_string()))?
        .try_into()
}

/// What a system reports with `CompleteTask`.
#[derive(Debug, Clone, Default)]
pub struct Completion {
    /// Records it acted on (added up over chunks).
    pub records_affected: i64,
    /// One export chunk (a JSON array of records), when not empty.
    pub export_data: Vec<u8>,
    /// More chunks follow: keep the task open.
    pub more: bool,
    /// The system holds nothing for the person.
    pub no_data_held: bool,
}

/// Appends one export chunk of `task`, already sealed (`key_id`, `sealed`).
pub fn insert_export_chunk(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    task: &TaskRecord,
    key_id: &str,
    sealed: &[u8],
) -> Result<()> {
    diesel::insert_into(x::subject_export_chunks)
        .values((
            x::seq.eq(crate::db::next_seq(conn, crate::db::Numbered::ExportChunks)?),
            x::request_id.eq(&task.request_id),
            x::task_id.eq(&task.id),
            x::system.eq(&task.system),
            x::data.eq(sealed),
            x::key_id.eq(Some(key_id)),
            x::created_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records a completion step of `task`: done (its lease released), or
/// still `more` to come under its lease; its records added up, any earlier
/// error cleared.
pub fn record_completion(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    task: &TaskRecord,
    done: &Completion,
) -> Result<()> {
    let (records_affected, more) = (done.records_affected, done.more);
    let status = if more { task.status } else { TaskStatus::Done };
    let lease = if more { task.lease_until.map(to_us) } else { None };
    diesel::update(t::subject_tasks.filter(t::id.eq(&task.id)))
        .set((
            t::status.eq(status.as_str()),
            t::lease_until_us.eq(lease),
            t::records_affected.eq(t::records_affected + records_affected),
            t::no_data_held.eq(done.no_data_held),
            t::next_attempt_at_us.eq(None::<i64>),
            t::error.eq(None::<String>),
            t::error_sealed.eq(None::<String>),
            t::error_key_id.eq(None::<String>),
            t::updated_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// How many tasks of request `request_id` are not done yet.
pub fn unfinished_tasks(conn: &mut DbConnection, request_id: &str) -> Result<i64> {
    // A task cancelled while its request is open was withheld by a legal
    // hold (and reissued for what the hold does not cover): it no longer
    // holds the request back.
    Ok(t::subject_tasks
        .filter(t::request_id.eq(request_id))
        .filter(t::status.ne_all(FINISHED))
        .count()
        .get_result(conn)?)
}

/// Records a failed attempt of task `task_id` with its error, sealed:
/// the task is offered again from `retry_at` on, or (`None`) it needs
/// attention and is no longer offered.
pub fn record_failure(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    task_id: &str,
    error: &StoredText,
    retry_at: Option<DateTime<Utc>>,
) -> Result<()> {
    let status = match retry_at {
        Some(_) => TaskStatus::Failed,
        None => TaskStatus::NeedsAttention,
    };
    diesel::update(t::subject_tasks.filter(t::id.eq(task_id)))
        .set((
            t::status.eq(status.as_str()),
            t::next_attempt_at_us.eq(retry_at.map(to_us)),
            t::lease_until_us.eq(None::<i64>),
            t::error.eq(None::<String>),
            t::error_sealed.eq(&error.sealed),
            t::error_key_id.eq(&error.key_id),
            t::updated_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Starts the export's retention clock at its first download.
pub fn mark_downloaded(conn: &mut DbConnection, now: DateTime<Utc>, id: &str) -> Result<()> {
    diesel::update(r::subject_requests.filter(r::id.eq(id)))
        .set(r::export_downloaded_at_us.eq(Some(to_us(now))))
        .execute(conn)?;
    Ok(())
}

/// What `GetExport` may stream.
#[derive(Debug, Clone)]
pub enum ExportStart {
    /// The bundle is there: the request and its tasks, in order.
    Ready(Box<RequestRecord>, Vec<TaskRecord>),
    /// The retention after first download ran out; the chunks were deleted
    /// now or earlier.
    Deleted,
}

/// Deletes request `id`'s export bundle and records when.
pub fn delete_export(conn: &mut DbConnection, now: DateTime<Utc>, id: &str) -> Result<()> {
    diesel::delete(x::subject_export_chunks.filter(x::request_id.eq(id))).execute(conn)?;
    delete_artifacts(conn, id)?;
    diesel::update(r::subject_requests.filter(r::id.eq(id)))
        .set(r::export_deleted_at_us.eq(Some(to_us(now))))
        .execute(conn)?;
    Ok(())
}

/// Up to `limit` chunks of one task after chunk `after`, in order,
/// unsealed with `ring`.
pub fn export_chunks(
    conn: &mut DbConnection,
    ring: &KeyRing,
    task_id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, Vec<u8>)>> {
    let rows: Vec<(i64, Vec<u8>, Option<String>)> = x::subject_export_chunks
        .select((x::seq, x::data, x::key_id))
        .filter(x::task_id.eq(task_id))
        .filter(x::seq.gt(after))
        .order(x::seq.asc())
        .limit(limit)
        .load(conn)?;
    rows.into_iter()
        .map(|(seq, data, key)| Ok((seq, open_chunk(ring, task_id, seq, data, key.as_deref())?)))
        .collect()
}

/// Seals one export chunk of `task_id`: (key id, stored bytes).
pub fn seal_chunk(ring: &KeyRing, task_id: &str, plain: &[u8]) -> Result<(String, Vec<u8>)> {
    let (key_id, sealed) = ring.seal(plain, task_id.as_bytes())?;
    Ok((key_id, sealed.into_bytes()))
}

/// One stored export chunk in the clear: sealed under `key`, or stored in
/// the clear before chunks were sealed (`None`).
pub fn open_chunk(
    ring: &KeyRing,
    task_id: &str,
    seq: i64,
    data: Vec<u8>,
    key: Option<&str>,
) -> Result<Vec<u8>> {
    match key {
        None => Ok(data),
        Some(k) => {
            let sealed = String::from_utf8(data)
                .map_err(|_| Error::Unexpected(format!("export chunk {seq} is corrupt")))?;
            ring.open(k, &sealed, task_id.as_bytes())
        }
    }
}

/// Deletes every export bundle whose retention after first download has
/// run out; returns how many. Run periodically.
pub fn sweep_exports(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    retention: chrono::Duration,
) -> Result<usize> {
    let cutoff = to_us(now - retention);
    let ids: Vec<String> = r::subject_requests
        .select(r::id)
        .filter(r::export_downloaded_at_us.le(cutoff))
        .filter(r::export_deleted_at_us.is_null())
        .load(conn)?;
    for id in &ids {
        delete_export(conn, now, id)?;
    }
    Ok(ids.len())
}

/// The decision flags of one subject at one tenant (all false when none).
pub fn subject_flags(conn: &mut DbConnection, tenant_id: &str, subject_ref: &str) -> Result<SubjectFlags> {
    let row: Option<(bool, bool, bool, bool)> = f::subject_flags
        .select((f::restricted, f::objected, f::erased, f::consent_withdrawn))
        .filter(f::tenant_id.eq(tenant_id))
        .filter(f::subject_ref.eq(subject_ref))
        .first(conn)
        .optional()?;
    Ok(
        row.map_or_else(SubjectFlags::default, |(a, b, c, d)| SubjectFlags {
            restricted: a,
            objected: b,
            erased: c,
            consent_withdrawn: d,
        }),
    )
}

/// One change of a subject's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    /// Strictly increasing change number (resume after it).
    pub seq: i64,
    /// Tenant.
    pub tenant_id: String,
    /// Subject.
    pub subject_ref: String,
    /// The flags now (all false = lifted).
    pub flags: SubjectFlags,
}

type FlagRow = (String, String, bool, bool, bool, bool, i64);

fn flag_change(w: FlagRow) -> FlagChange {
    FlagChange {
        tenant_id: w.0,
        subject_ref: w.1,
        flags: SubjectFlags {
            restricted: w.2,
            objected: w.3,
            erased: w.4,
            consent_withdrawn: w.5,
        },
        seq: w.6,
    }
}

/// Flags changed after change number `after` (0 = all), oldest first, at
/// most `limit`: a snapshot loads from 0 and then polls with the last seq.
pub fn flags_changed_since(conn: &mut DbConnection, after: i64, limit: i64) -> Result<Vec<FlagChange>> {
    let rows: Vec<FlagRow> = f::subject_flags
        .select((
            f::tenant_id,
            f::subject_ref,
            f::restricted,
            f::objected,
            f::erased,
            f::consent_withdrawn,
            f::change_seq,
        ))
        .filter(f::change_seq.gt(after))
        .order(f::change_seq.asc())
        .limit(limit)
        .load(conn)?;
    Ok(rows.into_iter().map(flag_change).collect())
}

/// Every flagged subject of one tenant.
pub fn tenant_flags(conn: &mut DbConnection, tenant_id: &str) -> Result<Vec<FlagChange>> {
    let rows: Vec<FlagRow> = f::subject_flags
        .select((
            f::tenant_id,
            f::subject_ref,
            f::restricted,
            f::objected,
            f::erased,
            f::consent_withdrawn,
            f::change_seq,
        ))
        .filter(f::tenant_id.eq(tenant_id))
        .order(f::change_seq.asc())
        .load(conn)?;
    Ok(rows.into_iter().map(flag_change).collect())
}

/// A sub-processor's confirmation that a tenant's data is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionConfirmation {
    /// The tenant whose data it deleted.
    pub tenant_id: String,
    /// The sub-processor (registry id).
    pub sub_processor_id: String,
    /// When the sub-processor says it deleted it.
    pub confirmed_at: DateTime<Utc>,
    /// Its document or ticket reference.
    pub reference: String,
    /// Who recorded it (compliance).
    pub recorded_by: String,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// Records (or replaces) sub-processor `c.sub_processor_id`'s deletion
/// confirmation for `c.tenant_id`.
pub fn upsert_confirmation(conn: &mut DbConnection, c: &DeletionConfirmation) -> Result<()> {
    let target = dc::subject_deletion_confirmations
        .filter(dc::tenant_id.eq(&c.tenant_id))
        .filter(dc::sub_processor_id.eq(&c.sub_processor_id));
    let vals = (
        dc::confirmed_at_us.eq(to_us(c.confirmed_at)),
        dc::reference.eq(&c.reference),
        dc::recorded_by.eq(&c.recorded_by),
        dc::recorded_at_us.eq(to_us(c.recorded_at)),
    );
    let n = diesel::update(target).set(vals).execute(conn)?;
    if n == 0 {
        diesel::insert_into(dc::subject_deletion_confirmations)
            .values((
                dc::tenant_id.eq(&c.tenant_id),
                dc::sub_processor_id.eq(&c.sub_processor_id),
                vals,
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Every deletion confirmation of a tenant, by sub-processor id.
pub fn confirmations(conn: &mut DbConnection, tenant_id: &str) -> Result<Vec<DeletionConfirmation>> {
    let rows: Vec<(String, String, i64, String, String, i64)> = dc::subject_deletion_confirmations
        .select((
            dc::tenant_id,
            dc::sub_processor_id,
            dc::confirmed_at_us,
            dc::reference,
            dc::recorded_by,
            dc::recorded_at_us,
        ))
        .filter(dc::tenant_id.eq(tenant_id))
        .order(dc::sub_processor_id.asc())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(tenant_id, sub_processor_id, at, reference, by, rec)| DeletionConfirmation {
                tenant_id,
                sub_processor_id,
                confirmed_at: from_us(at),
                reference,
                recorded_by: by,
                recorded_at: from_us(rec),
            },
        )
        .collect())
}

/// A file a platform system attached to an export task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRecord {
    /// Public id.
    pub id: String,
    /// The task it belongs to.
    pub task_id: String,
    /// The task's request.
    pub request_id: String,
    /// The system that uploaded it.
    pub system: String,
    /// Its file name (checked: a single path segment).
    pub file_name: String,
    /// Its media type.
    pub content_type: String,
    /// Bytes (once complete).
    pub size: i64,
    /// Hex SHA-256 of its bytes (once complete).
    pub sha256: String,
    /// Whether the upload finished; unfinished ones are never exported.
    pub complete: bool,
}

type ArtifactRow = (String, String, String, String, String, String, i64, String, bool);

fn artifact_record(w: ArtifactRow) -> ArtifactRecord {
    ArtifactRecord {
        id: w.0,
        task_id: w.1,
        request_id: w.2,
        system: w.3,
        file_name: w.4,
        content_type: w.5,
        size: w.6,
        sha256: w.7,
        complete: w.8,
    }
}

const ARTIFACT_COLUMNS: (
    ar::id,
    ar::task_id,
    ar::request_id,
    ar::system,
    ar::file_name,
    ar::content_type,
    ar::size,
    ar::sha256,
    ar::complete,
) = (
    ar::id,
    ar::task_id,
    ar::request_id,
    ar::system,
    ar::file_name,
    ar::content_type,
    ar::size,
    ar::sha256,
    ar::complete,
);

/// Starts an artefact of `task` (no bytes yet, not complete).
pub fn insert_artifact(conn: &mut DbConnection, now: DateTime<Utc>, a: &ArtifactRecord) -> Result<()> {
    diesel::insert_into(ar::subject_artifacts)
        .values((
            ar::id.eq(&a.id),
            ar::task_id.eq(&a.task_id),
            ar::request_id.eq(&a.request_id),
            ar::system.eq(&a.system),
            ar::file_name.eq(&a.file_name),
            ar::content_type.eq(&a.content_type),
            ar::size.eq(0i64),
            ar::sha256.eq(""),
            ar::complete.eq(false),
            ar::created_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Artefact `id` as stored, or NOT_FOUND.
pub fn artifact(conn: &mut DbConnection, id: &str) -> Result<ArtifactRecord> {
    let row: Option<ArtifactRow> = ar::subject_artifacts
        .select(ARTIFACT_COLUMNS)
        .filter(ar::id.eq(id))
        .first(conn)
        .optional()?;
    row.map(artifact_record)
        .ok_or_else(|| Error::Missing(format!("artifact {id}")))
}

/// The artefacts of task `task_id`, complete or not.
pub fn artifacts_of_task(conn: &mut DbConnection, task_id: &str) -> Result<Vec<ArtifactRecord>> {
    let rows: Vec<ArtifactRow> = ar::subject_artifacts
        .select(ARTIFACT_COLUMNS)
        .filter(ar::task_id.eq(task_id))
        .order((ar::created_at_us.asc(), ar::id.asc()))
        .load(conn)?;
    Ok(rows.into_iter().map(artifact_record).collect())
}

/// The complete artefacts of request `request_id`, by system then name.
pub fn artifacts_of_request(conn: &mut DbConnection, request_id: &str) -> Result<Vec<ArtifactRecord>> {
    let rows: Vec<ArtifactRow> = ar::subject_artifacts
        .select(ARTIFACT_COLUMNS)
        .filter(ar::request_id.eq(request_id))
        .filter(ar::complete.eq(true))
        .order((ar::system.asc(), ar::file_name.asc()))
        .load(conn)?;
    Ok(rows.into_iter().map(artifact_record).collect())
}

/// The AAD of chunk `idx` of artefact `id`: a chunk opens only in its own
/// place of its own file.
fn chunk_aad(id: &str, idx: i64) -> Vec<u8> {
    format!("artifact/{id}/{idx}").into_bytes()
}

/// Seals chunk `idx` of artefact `id`: (key id, stored text). Public so
/// `keys reseal` seals a chunk exactly as an upload does.
pub fn seal_artifact_chunk(ring: &KeyRing, id: &str, idx: i64, plain: &[u8]) -> Result<(String, String)> {
    ring.seal(plain, &chunk_aad(id, idx))
}

/// Chunk `idx` of artefact `id` in the clear, sealed under `key`.
pub fn open_artifact_chunk(ring: &KeyRing, id: &str, idx: i64, key: &str, data: &str) -> Result<Vec<u8>> {
    ring.open(key, data, &chunk_aad(id, idx))
}

/// Seals and stores chunk `idx` of artefact `id`.
pub fn insert_artifact_chunk(
    conn: &mut DbConnection,
    ring: &KeyRing,
    id: &str,
    idx: i64,
    plain: &[u8],
) -> Result<()> {
    let (key_id, data) = seal_artifact_chunk(ring, id, idx, plain)?;
    diesel::insert_into(ac::subject_artifact_chunks)
        .values((
            ac::artifact_id.eq(id),
            ac::idx.eq(idx),
            ac::key_id.eq(key_id),
            ac::data.eq(data),
        ))
        .execute(conn)?;
    Ok(())
}

/// Marks artefact `id` complete with its size and checksum.
pub fn complete_artifact(conn: &mut DbConnection, id: &str, size: i64, sha256: &str) -> Result<()> {
    diesel::update(ar::subject_artifacts.filter(ar::id.eq(id)))
        .set((ar::size.eq(size), ar::sha256.eq(sha256), ar::complete.eq(true)))
        .execute(conn)?;
    Ok(())
}

/// Deletes artefact `id` and its chunks (an upload that failed).
pub fn delete_artifact(conn: &mut DbConnection, id: &str) -> Result<()> {
    diesel::delete(ac::subject_artifact_chunks.filter(ac::artifact_id.eq(id))).execute(conn)?;
    diesel::delete(ar::subject_artifacts.filter(ar::id.eq(id))).execute(conn)?;
    Ok(())
}

/// Deletes every artefact of request `request_id` with its chunks.
pub fn delete_artifacts(conn: &mut DbConnection, request_id: &str) -> Result<()> {
    let ids: Vec<String> = ar::subject_artifacts
        .select(ar::id)
        .filter(ar::request_id.eq(request_id))
        .load(conn)?;
    diesel::delete(ac::subject_artifact_chunks.filter(ac::artifact_id.eq_any(&ids))).execute(conn)?;
    diesel::delete(ar::subject_artifacts.filter(ar::request_id.eq(request_id))).execute(conn)?;
    Ok(())
}

/// Up to `limit` chunks of artefact `id` after chunk `after` (-1: from
/// the start), in order and in the clear.
pub fn artifact_chunks(
    conn: &mut DbConnection,
    ring: &KeyRing,
    id: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, Vec<u8>)>> {
    let rows: Vec<(i64, String, String)> = ac::subject_artifact_chunks
        .select((ac::idx, ac::key_id, ac::data))
        .filter(ac::artifact_id.eq(id))
        .filter(ac::idx.gt(after))
        .order(ac::idx.asc())
        .limit(limit)
        .load(conn)?;
    rows.into_iter()
        .map(|(idx, key, data)| Ok((idx, open_artifact_chunk(ring, id, idx, &key, &data)?)))
        .collect()
}
