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

use crate::audit::model::AuditEntry;
use crate::db::schema::subject_export_chunks::dsl as x;
use crate::db::schema::subject_flags::dsl as f;
use crate::db::schema::subject_request_refs::dsl as rr;
use crate::db::schema::subject_requests::dsl as r;
use crate::db::schema::subject_systems::dsl as sy;
use crate::db::schema::subject_tasks::dsl as t;
use crate::db::schema::subject_tenant_settings::dsl as ts;
use crate::db::{DbConnection, chain_lock, from_us, to_us};
use crate::error::{Error, Result};
use crate::inbox::model::{PullSpec, Recipient};
use crate::secrets::sealed::{Field, StoredText};
use crate::secrets::{KeyRing, ReceiptSigner};
use crate::subject_requests::model as dom;
use crate::subject_requests::model::{
    Origin, Regime, RejectionGround, RequestType, Status, SubjectFlags, TaskStatus,
};

/// How far in the future a `received_at` may lie (clock skew of callers).
const RECEIVED_AT_SKEW_SECONDS: i64 = 300;
/// Envelope kind announcing a forwarded request to its controller.
pub const KIND_FORWARDED: &str = "subject_request.forwarded";
/// Envelope kind announcing a fulfilment task to its system.
pub const KIND_TASK: &str = "subject_request.task";
/// Envelope kind telling the controller a request completed.
pub const KIND_COMPLETED: &str = "subject_request.completed";

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
fn save_reasons(conn: &mut DbConnection, ring: &KeyRing, id: &str, reasons: &Reasons) -> Result<()> {
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
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::subject_requests)]
struct Row {
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
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = crate::db::schema::subject_tasks)]
struct TaskRow {
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

/// Changes the tenant's settings (`None` keeps a value); applies to
/// requests received from now on.
pub fn put_settings(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    tenant_id: &str,
    time_zone: Option<String>,
    sla_days: Option<u32>,
    mut entry: AuditEntry,
) -> Result<TenantSettings> {
    chain_lock(conn)?;
    let mut s = settings(conn, tenant_id)?;
    if let Some(z) = time_zone {
        s.time_zone = z;
    }
    if let Some(d) = sla_days {
        s.sla_days = d;
    }
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
    entry.target = tenant_id.to_owned();
    entry.detail = serde_json::json!({"time_zone": s.time_zone, "sla_days": s.sla_days}).to_string();
    crate::audit::repo::append(conn, now, entry)?;
    Ok(s)
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
}

fn next_seq_requests(conn: &mut DbConnection) -> Result<i64> {
    let last: Option<i64> = r::subject_requests.select(diesel::dsl::max(r::seq)).first(conn)?;
    Ok(last.unwrap_or(0) + 1)
}

fn next_seq_tasks(conn: &mut DbConnection) -> Result<i64> {
    let last: Option<i64> = t::subject_tasks.select(diesel::dsl::max(t::seq)).first(conn)?;
    Ok(last.unwrap_or(0) + 1)
}

/// The request an idempotency key already named, within its origin: a
/// platform forward, a tenant's submission and proctor's own requests each
/// have their own key space, so one can never take another's key.
fn by_idempotency(
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

/// Records a request (forwarded, submitted or created at contract end):
/// returns it and whether it was created now. A retry with the same
/// idempotency key and the same body digest returns the stored request; the
/// same key with another body is ALREADY_EXISTS. A forwarded request lands
/// in the tenant's inbox; any other fans out into one task per system
/// holding a category in scope, each announced in that system's inbox. The
/// receipt is signed, the subject flags updated and the audit event
/// appended, all in this transaction.
pub fn submit(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    new: NewRequest,
    signer: &ReceiptSigner,
    mut entry: AuditEntry,
) -> Result<(RequestRecord, bool)> {
    chain_lock(conn)?;
    if let Some(existing) = by_idempotency(conn, &new.tenant_id, new.origin, &new.idempotency_key)? {
        if existing.body_digest == new.body_digest {
            return Ok((existing, false));
        }
        return Err(Error::Duplicate(
            "idempotency_key was already used for a different request".into(),
        ));
    }
    let received = new.received_at.unwrap_or(now);
    if received > now + chrono::Duration::seconds(RECEIVED_AT_SKEW_SECONDS) {
        return Err(Error::invalid("received_at", "must not be in the future"));
    }
    if received < now - chrono::Duration::days(dom::MAX_RECEIVED_AGE_DAYS) {
        return Err(Error::invalid(
            "received_at",
            format!("must lie at most {} days in the past", dom::MAX_RECEIVED_AGE_DAYS),
        ));
    }
    crate::instructions::repo::check_known_categories(conn, "categories", &new.categories)?;
    let settings = settings(conn, &new.tenant_id)?;
    let tz = settings.tz();
    let due = dom::due_at(new.regime, received, tz, false);
    let sla = dom::sla_due_at(received, tz, settings.sla_days, due);
    let signature = signer.sign(&dom::receipt_message(&new.tenant_id, &new.body_digest, now));
    use base64::Engine;
    let initial = if new.origin == Origin::Forwarded {
        Status::Forwarded
    } else {
        Status::Received
    };
    let row = Row {
        seq: next_seq_requests(conn)?,
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
        received_at_us: to_us(received),
        due_at_us: to_us(due),
        sla_due_at_us: to_us(sla),
        extended: false,
        extension_reason: None,
        receipt_issued_at_us: to_us(now),
        receipt_signature: base64::engine::general_purpose::STANDARD.encode(signature),
        receipt_key_id: signer.key_id().to_owned(),
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
    };
    diesel::insert_into(r::subject_requests)
        .values(&row)
        .execute(conn)?;
    for sref in &new.subject_refs {
        diesel::insert_into(rr::subject_request_refs)
            .values((
                rr::request_id.eq(&new.id),
                rr::tenant_id.eq(&new.tenant_id),
                rr::subject_ref.eq(sref),
            ))
            .execute(conn)?;
    }
    let mut detail = serde_json::json!({
        "origin": new.origin.as_str(),
        "type": new.request_type.as_str(),
        "regime": new.regime.as_str(),
        "digest": new.body_digest,
    });
    if initial == Status::Forwarded {
        crate::inbox::repo::enqueue(
            conn,
            now,
            &Recipient::Tenant(new.tenant_id.clone()),
            KIND_FORWARDED,
            &serde_json::json!({"id": new.id, "request_type": new.request_type.as_str()}),
        )?;
    } else {
        let tasks = fan_out(conn, now, &new)?;
        let to = if tasks.is_empty() {
            Status::Completed
        } else {
            Status::InProgress
        };
        set_status(conn, now, &new.id, initial, to)?;
        if to == Status::Completed {
            // No system holds data in scope: done at once, and the controller
            // still hears of it as of any other completion.
            announce_completed(conn, now, &new.tenant_id, &new.id, new.request_type)?;
        }
        detail["tasks"] = serde_json::json!(tasks.len());
    }
    recompute_flags(conn, now, &new.tenant_id, &new.subject_refs)?;
    entry.target = new.id.clone();
    entry.tenant_id = Some(new.tenant_id.clone());
    entry.detail = detail.to_string();
    crate::audit::repo::append(conn, now, entry)?;
    Ok((get(conn, None, &new.id)?, true))
}

/// Tells the controller in its inbox that request `id` completed.
fn announce_completed(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    tenant_id: &str,
    id: &str,
    request_type: RequestType,
) -> Result<()> {
    crate::inbox::repo::enqueue(
        conn,
        now,
        &Recipient::Tenant(tenant_id.to_owned()),
        KIND_COMPLETED,
        &serde_json::json!({"id": id, "request_type": request_type.as_str()}),
    )?;
    Ok(())
}

/// One task per registered system whose categories meet the scope, each
/// announced in the system's inbox.
fn fan_out(conn: &mut DbConnection, now: DateTime<Utc>, req: &NewRequest) -> Result<Vec<String>> {
    let systems: Vec<(String, String)> = sy::subject_systems
        .select((sy::name, sy::categories))
        .order(sy::name.asc())
        .load(conn)?;
    let mut seq = next_seq_tasks(conn)?;
    let mut ids = Vec::new();
    for (name, cats) in systems {
        let Some(scope) = dom::task_scope(&cats_from_json(&cats)?, &req.categories) else {
            continue;
        };
        let id = uuid::Uuid::new_v4().to_string();
        diesel::insert_into(t::subject_tasks)
            .values(&TaskRow {
                seq,
                id: id.clone(),
                request_id: req.id.clone(),
                tenant_id: req.tenant_id.clone(),
                system: name.clone(),
                request_type: req.request_type.as_str().into(),
                categories: cats_to_json(&scope),
                status: TaskStatus::Pending.as_str().into(),
                lease_until_us: None,
                attempts: 0,
                records_affected: 0,
                error: None,
                created_at_us: to_us(now),
                updated_at_us: to_us(now),
                error_sealed: None,
                error_key_id: None,
            })
            .execute(conn)?;
        crate::inbox::repo::enqueue(
            conn,
            now,
            &Recipient::System(name),
            KIND_TASK,
            &serde_json::json!({"id": id, "request_id": req.id, "request_type": req.request_type.as_str()}),
        )?;
        seq += 1;
        ids.push(id);
    }
    Ok(ids)
}

/// Moves a request along the transition table; closing it drops its sealed
/// identifiers (only the keyed hash remains) and bumps its version.
fn set_status(conn: &mut DbConnection, now: DateTime<Utc>, id: &str, from: Status, to: Status) -> Result<()> {
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
    if n != 1 {
        return Err(Error::Conflict("the request changed concurrently; retry".into()));
    }
    new_version(id);
    Ok(())
}

fn touch(conn: &mut DbConnection, now: DateTime<Utc>, id: &str) -> Result<()> {
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
/// (submitted or contract-end, open or completed) naming them.
fn recompute_flags(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    tenant_id: &str,
    refs: &[String],
) -> Result<()> {
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
        let last: Option<i64> = f::subject_flags
            .select(diesel::dsl::max(f::change_seq))
            .first(conn)?;
        let seq = last.unwrap_or(0) + 1;
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
    if changed {
        // Decision snapshots follow this log: the new flags reach
        // CheckProcessing on every replica.
        crate::instructions::repo::record_change(conn, now, tenant_id)?;
    }
    Ok(())
}

fn refs_of(conn: &mut DbConnection, id: &str) -> Result<(String, Vec<String>)> {
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
    let mut q = r::subject_requests.filter(r::id.eq(id)).into_boxed();
    if let Some(tn) = tenant {
        q = q.filter(r::tenant_id.eq(tn));
    }
    let row: Option<Row> = q.first(conn).optional()?;
    row.ok_or_else(|| Error::Missing(format!("subject request {id}")))?
        .try_into()
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

const OPEN: [&str; 3] = ["received", "forwarded", "in_progress"];

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
    let rows: Vec<Row> = q.load(conn)?;
    let (_, overdue, _) = counts(conn, now, filter.tenant.as_deref())?;
    Ok((records(rows)?, overdue))
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
        .filter(t::status.eq_any(["pending", "leased", "failed"]))
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

/// Closes an open request of `tenant` without completing it: cancelled, or
/// rejected when `closing` names a legal ground. Its unfinished tasks are
/// cancelled (later completions are FAILED_PRECONDITION), its identifiers
/// dropped, its export chunks deleted, its flags recomputed, the reason
/// (sealed with `ring`) and ground kept with it.
pub fn close(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    ring: &KeyRing,
    tenant: &str,
    id: &str,
    closing: Closing,
    mut entry: AuditEntry,
) -> Result<RequestRecord> {
    chain_lock(conn)?;
    let req = get(conn, Some(tenant), id)?;
    let to = if closing.ground.is_some() {
        Status::Rejected
    } else {
        Status::Cancelled
    };
    set_status(conn, now, id, req.status, to)?;
    let reason = closing.reason.as_deref().unwrap_or_default();
    let mut reasons = req.reasons.open(ring, id)?;
    reasons.close = reason.to_owned();
    save_reasons(conn, ring, id, &reasons)?;
    diesel::update(r::subject_requests.filter(r::id.eq(id)))
        .set(r::rejection_ground.eq(closing.ground.map(RejectionGround::as_str)))
        .execute(conn)?;
    diesel::update(
        t::subject_tasks
            .filter(t::request_id.eq(id))
            .filter(t::status.ne_all(["done", "cancelled"])),
    )
    .set((
        t::status.eq(TaskStatus::Cancelled.as_str()),
        t::lease_until_us.eq(None::<i64>),
        t::updated_at_us.eq(to_us(now)),
    ))
    .execute(conn)?;
    diesel::delete(x::subject_export_chunks.filter(x::request_id.eq(id))).execute(conn)?;
    let (_, refs) = refs_of(conn, id)?;
    recompute_flags(conn, now, tenant, &refs)?;
    entry.target = id.to_owned();
    entry.detail = serde_json::json!({
        "from": req.status.as_str(),
        "to": to.as_str(),
        "ground": closing.ground.map(RejectionGround::as_str),
        "reason_chars": reason.chars().count(),
    })
    .to_string();
    crate::audit::repo::append(conn, now, entry)?;
    get(conn, None, id)
}

/// How a controller closes a request without completing it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Closing {
    /// Its reason, kept with the request.
    pub reason: Option<String>,
    /// Some: a rejection on this ground; None: a cancellation.
    pub ground: Option<RejectionGround>,
}

/// Uses the one extension (see [`dom::extend`]); `reason` is kept with it,
/// sealed with `ring`; the audit log records its length only.
pub fn extend(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    ring: &KeyRing,
    tenant: &str,
    id: &str,
    reason: &str,
    mut entry: AuditEntry,
) -> Result<RequestRecord> {
    chain_lock(conn)?;
    let req = get(conn, Some(tenant), id)?;
    let tz = settings(conn, tenant)?.tz();
    let due = dom::extend(
        req.regime,
        req.status,
        req.extended,
        req.received_at,
        req.due_at,
        now,
        tz,
    )?;
    let mut reasons = req.reasons.open(ring, id)?;
    reasons.extension = reason.to_owned();
    save_reasons(conn, ring, id, &reasons)?;
    diesel::update(r::subject_requests.filter(r::id.eq(id)))
        .set((
            r::due_at_us.eq(to_us(due)),
            r::extended.eq(true),
            r::updated_at_us.eq(to_us(now)),
            r::version.eq(r::version + 1),
        ))
        .execute(conn)?;
    new_version(id);
    entry.target = id.to_owned();
    entry.detail = serde_json::json!({
        "from": to_us(req.due_at),
        "to": to_us(due),
        "reason_chars": reason.chars().count(),
    })
    .to_string();
    crate::audit::repo::append(conn, now, entry)?;
    get(conn, None, id)
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

/// Registers a system or replaces its categories (later requests only; open
/// tasks are not re-planned).
pub fn register_system(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    name: &str,
    categories: &[String],
    mut entry: AuditEntry,
) -> Result<SystemRecord> {
    chain_lock(conn)?;
    crate::instructions::repo::check_known_categories(conn, "categories", categories)?;
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
    entry.target = name.to_owned();
    entry.detail = serde_json::json!({"categories": categories}).to_string();
    crate::audit::repo::append(conn, now, entry)?;
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

/// Leases up to `spec.max` available tasks of `system` (pending, failed, or
/// leased with an expired lease), oldest first. On PostgreSQL tasks another
/// replica is leasing right now are skipped, never handed out twice.
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
            t::status
                .eq_any(["pending", "failed"])
                .or(t::status.eq("leased").and(t::lease_until_us.le(now_us))),
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

fn task_of_system(conn: &mut DbConnection, system: &str, task_id: &str) -> Result<TaskRecord> {
    let row: Option<TaskRow> = t::subject_tasks
        .filter(t::id.eq(task_id))
        .filter(t::system.eq(system))
        .first(conn)
        .optional()?;
    row.ok_or_else(|| Error::Missing(format!("task {task_id}")))?
        .try_into()
}

fn refuse_terminal(task: &TaskRecord) -> Result<()> {
    match task.status {
        TaskStatus::Cancelled => Err(Error::WrongState("the task's request was cancelled".into())),
        TaskStatus::Done => Err(Error::WrongState("the task is already done".into())),
        _ => Ok(()),
    }
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
}

/// Records a completion (or one export chunk) of `system`'s task. When the
/// last task of a request is done, the request completes, its identifiers
/// are dropped, and the controller's inbox gets a notice.
pub fn complete_task(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    ring: &KeyRing,
    system: &str,
    task_id: &str,
    done: Completion,
    mut entry: AuditEntry,
) -> Result<(TaskRecord, RequestRecord)> {
    chain_lock(conn)?;
    let task = task_of_system(conn, system, task_id)?;
    refuse_terminal(&task)?;
    if !done.export_data.is_empty() {
        if !task.request_type.exports() {
            return Err(Error::invalid(
                "export_data",
                format!("a {} task sends no export data", task.request_type.as_str()),
            ));
        }
        dom::export_chunk_inner(&done.export_data)?;
        // A subject's records at rest are sealed like its identifiers.
        let (key_id, sealed) = seal_chunk(ring, &task.id, &done.export_data)?;
        let last: Option<i64> = x::subject_export_chunks
            .select(diesel::dsl::max(x::seq))
            .first(conn)?;
        diesel::insert_into(x::subject_export_chunks)
            .values((
                x::seq.eq(last.unwrap_or(0) + 1),
                x::request_id.eq(&task.request_id),
                x::task_id.eq(&task.id),
                x::system.eq(system),
                x::data.eq(&sealed),
                x::key_id.eq(Some(key_id)),
                x::created_at_us.eq(to_us(now)),
            ))
            .execute(conn)?;
    }
    let status = if done.more { task.status } else { TaskStatus::Done };
    let lease = if done.more {
        task.lease_until.map(to_us)
    } else {
        None
    };
    diesel::update(t::subject_tasks.filter(t::id.eq(task_id)))
        .set((
            t::status.eq(status.as_str()),
            t::lease_until_us.eq(lease),
            t::records_affected.eq(t::records_affected + done.records_affected),
            t::error.eq(None::<String>),
            t::error_sealed.eq(None::<String>),
            t::error_key_id.eq(None::<String>),
            t::updated_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    let req = get(conn, None, &task.request_id)?;
    let remaining: i64 = t::subject_tasks
        .filter(t::request_id.eq(&task.request_id))
        .filter(t::status.ne(TaskStatus::Done.as_str()))
        .count()
        .get_result(conn)?;
    if remaining == 0 && req.status.is_open() {
        set_status(conn, now, &req.id, req.status, Status::Completed)?;
        let (_, refs) = refs_of(conn, &req.id)?;
        recompute_flags(conn, now, &req.tenant_id, &refs)?;
        announce_completed(conn, now, &req.tenant_id, &req.id, req.request_type)?;
    } else {
        touch(conn, now, &req.id)?;
    }
    entry.target = task_id.to_owned();
    entry.tenant_id = Some(req.tenant_id.clone());
    entry.detail = serde_json::json!({
        "request_id": req.id,
        "records_affected": done.records_affected,
        "export_bytes": done.export_data.len(),
        "more": done.more,
    })
    .to_string();
    crate::audit::repo::append(conn, now, entry)?;
    let task = task_of_system(conn, system, task_id)?;
    Ok((task, get(conn, None, &req.id)?))
}

/// Records a failed attempt: the task is offered again on the next pull.
/// The error is sealed with `ring`; the audit log records its length only.
pub fn fail_task(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    ring: &KeyRing,
    system: &str,
    task_id: &str,
    error: &str,
    mut entry: AuditEntry,
) -> Result<TaskRecord> {
    chain_lock(conn)?;
    let task = task_of_system(conn, system, task_id)?;
    refuse_terminal(&task)?;
    let sealed = StoredText::seal(ring, Field::TaskError, task_id, error)?;
    diesel::update(t::subject_tasks.filter(t::id.eq(task_id)))
        .set((
            t::status.eq(TaskStatus::Failed.as_str()),
            t::lease_until_us.eq(None::<i64>),
            t::error.eq(None::<String>),
            t::error_sealed.eq(&sealed.sealed),
            t::error_key_id.eq(&sealed.key_id),
            t::updated_at_us.eq(to_us(now)),
        ))
        .execute(conn)?;
    touch(conn, now, &task.request_id)?;
    entry.target = task_id.to_owned();
    entry.tenant_id = Some(task.tenant_id.clone());
    entry.detail = serde_json::json!({
        "request_id": task.request_id,
        "error_chars": error.chars().count(),
    })
    .to_string();
    crate::audit::repo::append(conn, now, entry)?;
    task_of_system(conn, system, task_id)
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

/// Opens an export download of `tenant`'s request: only for completed
/// access/portability requests; the first download starts the retention
/// clock, after which the chunks are deleted.
pub fn export_start(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    tenant: &str,
    id: &str,
    retention: chrono::Duration,
    mut entry: AuditEntry,
) -> Result<ExportStart> {
    chain_lock(conn)?;
    let req = get(conn, Some(tenant), id)?;
    if !req.request_type.exports() {
        return Err(Error::WrongState(format!(
            "a {} request has no export",
            req.request_type.as_str()
        )));
    }
    if req.status != Status::Completed {
        return Err(Error::WrongState(format!(
            "the export is ready when the request is completed; it is {}",
            req.status.as_str()
        )));
    }
    if req.export_deleted_at.is_some() {
        return Ok(ExportStart::Deleted);
    }
    if let Some(first) = req.export_downloaded_at {
        if first + retention <= now {
            delete_export(conn, now, id)?;
            return Ok(ExportStart::Deleted);
        }
    } else {
        diesel::update(r::subject_requests.filter(r::id.eq(id)))
            .set(r::export_downloaded_at_us.eq(Some(to_us(now))))
            .execute(conn)?;
    }
    entry.target = id.to_owned();
    crate::audit::repo::append(conn, now, entry)?;
    let tasks = tasks_of(conn, &[id.to_owned()])?;
    Ok(ExportStart::Ready(Box::new(get(conn, None, id)?), tasks))
}

fn delete_export(conn: &mut DbConnection, now: DateTime<Utc>, id: &str) -> Result<()> {
    diesel::delete(x::subject_export_chunks.filter(x::request_id.eq(id))).execute(conn)?;
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

/// Creates (once) the erasure of everything a terminated tenant's data is
/// owed after the contract-end grace period: an erasure over all categories
/// with no subject, fanned out like any other request. Idempotent per
/// tenant. Called by the instructions capability's grace-period sweep.
pub fn contract_end_erasure(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    tenant_id: &str,
    signer: &ReceiptSigner,
    entry: AuditEntry,
) -> Result<(RequestRecord, bool)> {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(format!(
        "proctor.contract_end.v1\0{tenant_id}"
    )));
    let new = NewRequest {
        id: uuid::Uuid::new_v4().to_string(),
        tenant_id: tenant_id.to_owned(),
        origin: Origin::ContractEnd,
        request_type: RequestType::Erasure,
        regime: Regime::Gdpr,
        channel: "contract_end".into(),
        idempotency_key: dom::CONTRACT_END_KEY.into(),
        body_digest: digest,
        subject_refs: Vec::new(),
        sealed: None,
        categories: Vec::new(),
        received_at: Some(now),
    };
    submit(conn, now, new, signer, entry)
}
