//! Subject requests' commands and reads. Each command is one transaction
//! through the pipeline ([`crate::db::pipeline`]): the request's rows, its
//! tasks, the envelopes that announce them, the subject flags and their
//! decision change-log entry, and the audit event commit together. A reply
//! comes back opened ([`RequestView`]): identifiers are unsealed only for
//! the two parties that need them while a request is open, the controller
//! (to answer the person) and the system holding a task (to find the data).

use std::collections::HashMap;
use std::sync::Arc;

use crate::db::pipeline::{Actor, Tx};
use crate::db::{DbConnection, Store};
use crate::error::{Error, Result};
use crate::inbox::kinds::EnvelopeKind;
use crate::inbox::model::{PullSpec, Recipient};
use crate::rpc::AppState;
use crate::rpc::page::Page;
use crate::secrets::sealed::{Field, StoredText};
use crate::secrets::{KeyRing, ReceiptSigner, SubjectSecrets};
use crate::subject_requests::model as dom;
use crate::subject_requests::model::{
    CanonicalBody, Origin, Regime, RequestType, Status, Subject, TaskStatus,
};
use crate::subject_requests::repo as store;
use crate::subject_requests::repo::{
    Assumed, Closing, Completion, Deadlines, ExportStart, Inserted, ListFilter, NewRequest, QuestionRecord,
    Reasons, Receipt, RequestRecord, Sealed, SystemRecord, TaskRecord, TenantSettings,
};
use crate::subject_requests::settings_hints::SettingsHints;

/// How far in the future a `received_at` may lie (clock skew of callers).
const RECEIVED_AT_SKEW_SECONDS: i64 = 300;

/// What is sealed: everything that identifies or quotes the person.
#[derive(serde::Serialize, serde::Deserialize, Default, Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The person's identifiers.
    pub subject: Subject,
    /// The forwarding system's message (forwarded requests).
    #[serde(default)]
    pub message: String,
    /// A rectification's corrected values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub corrections: Vec<dom::Correction>,
}

impl Identity {
    /// Opens the sealed identity of request `id`.
    fn open(ring: &KeyRing, id: &str, sealed: &Sealed) -> Result<Self> {
        serde_json::from_slice(&sealed.open(ring, id)?)
            .map_err(|_| Error::Unexpected("sealed identifiers are not JSON".into()))
    }
}

/// A task as its readers see it: its error opened, and for the system that
/// holds it, the request's subject.
#[derive(Debug, Clone)]
pub struct TaskView {
    /// The task.
    pub task: TaskRecord,
    /// Its last error, in the clear.
    pub error: String,
    /// The request's primary subject ref.
    pub subject_ref: Option<String>,
    /// The person's identifiers (only for the system holding the task).
    pub subject: Option<Subject>,
    /// The corrections in the task's categories (only for the system
    /// holding a rectification task).
    pub corrections: Vec<dom::Correction>,
}

/// A request as its reader may see it.
#[derive(Debug, Clone)]
pub struct RequestView {
    /// The request.
    pub record: RequestRecord,
    /// Its tasks, in creation order.
    pub tasks: Vec<TaskView>,
    /// The identity, when the reader may see it and the request still has it.
    pub identity: Option<Identity>,
    /// The reasons given for an extension or a close.
    pub reasons: Reasons,
    /// Erasure categories a legal hold withholds for now (see
    /// [`crate::instructions::service::withheld_categories`]).
    pub withheld_categories: Vec<String>,
    /// Questions platform systems asked the controller about it, oldest
    /// first (texts only for the controller).
    pub questions: Vec<QuestionView>,
}

/// A question to the controller as its reader sees it: the texts opened
/// for the controller and the asker, left empty for everyone else.
#[derive(Debug, Clone)]
pub struct QuestionView {
    /// The question.
    pub record: QuestionRecord,
    /// Its text in the clear (empty when the reader may not see it).
    pub question: String,
    /// The answer in the clear (empty while open or not to be shown).
    pub answer: String,
}

fn open_question(ring: &KeyRing, q: QuestionRecord, reveal: Reveal) -> Result<QuestionView> {
    let (question, answer) = match reveal {
        Reveal::Identity => (
            q.question.open(ring, Field::SubjectQuestion, &q.id)?,
            q.answer.open(ring, Field::SubjectAnswer, &q.id)?,
        ),
        Reveal::Sealed => (String::new(), String::new()),
    };
    Ok(QuestionView {
        record: q,
        question,
        answer,
    })
}

/// Who reads a request: whether its identifiers may be shown. Only the
/// controller sees them; compliance reads requests without them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// Open the identity (the controller).
    Identity,
    /// Keep it sealed (every other reader).
    Sealed,
}

fn open_task(
    ring: &KeyRing,
    t: TaskRecord,
    subject_ref: Option<String>,
    subject: Option<Subject>,
) -> Result<TaskView> {
    let error = t.error.open(ring, Field::TaskError, &t.id)?;
    Ok(TaskView {
        task: t,
        error,
        subject_ref,
        subject,
        corrections: Vec::new(),
    })
}

fn open_request(
    conn: &mut DbConnection,
    ring: &KeyRing,
    r: RequestRecord,
    tasks: Vec<TaskRecord>,
    reveal: Reveal,
) -> Result<RequestView> {
    let questions = if r.questions == 0 {
        Vec::new()
    } else {
        store::questions_of(conn, std::slice::from_ref(&r.id))?
            .into_iter()
            .map(|q| open_question(ring, q, reveal))
            .collect::<Result<_>>()?
    };
    open_with(ring, r, tasks, reveal, questions)
}

/// [`open_request`] with its questions already opened.
fn open_with(
    ring: &KeyRing,
    r: RequestRecord,
    tasks: Vec<TaskRecord>,
    reveal: Reveal,
    questions: Vec<QuestionView>,
) -> Result<RequestView> {
    let identity = match (&r.sealed, reveal) {
        (Some(s), Reveal::Identity) => Some(Identity::open(ring, &r.id, s)?),
        _ => None,
    };
    let reasons = r.reasons.open(ring, &r.id)?;
    let tasks = tasks
        .into_iter()
        .filter(|t| t.request_id == r.id)
        .map(|t| open_task(ring, t, r.subject_ref.clone(), None))
        .collect::<Result<_>>()?;
    Ok(RequestView {
        record: r,
        tasks,
        identity,
        reasons,
        withheld_categories: Vec::new(),
        questions,
    })
}

/// Fills in what legal holds withhold of each view's request.
fn with_withheld(
    conn: &mut crate::db::DbConnection,
    mut views: Vec<RequestView>,
) -> Result<Vec<RequestView>> {
    // Only erasures are ever withheld: other reads make no extra query.
    let ids: Vec<String> = views
        .iter()
        .filter(|v| v.record.request_type == RequestType::Erasure)
        .map(|v| v.record.id.clone())
        .collect();
    let mut withheld = crate::instructions::service::withheld_categories(conn, &ids)?;
    for v in &mut views {
        v.withheld_categories = withheld.remove(&v.record.id).unwrap_or_default();
    }
    Ok(views)
}

/// [`with_withheld`] of one view.
fn one_with_withheld(conn: &mut crate::db::DbConnection, view: RequestView) -> Result<RequestView> {
    Ok(with_withheld(conn, vec![view])?.remove(0))
}

/// The subject refs of request `id` (empty for a contract-end erasure), for
/// the legal holds that may cover it.
pub fn request_refs(conn: &mut crate::db::DbConnection, id: &str) -> Result<Vec<String>> {
    Ok(store::refs_of(conn, id)?.1)
}

/// Takes what the legal holds now cover out of the unfinished tasks of
/// `tenant`'s open erasure requests (a hold placed after they opened): a
/// task with held categories is cancelled (a later completion of it is
/// refused), reissued over the rest if any, and what it withheld is
/// recorded with the request; a request left with nothing to wait for
/// completes. Returns how many tasks were withheld. Runs in the caller's
/// transaction (the hold's placement).
pub fn withhold_open_erasures(tx: &mut Tx<'_>, tenant: &str) -> Result<usize> {
    let now = tx.now();
    let mut n = 0;
    // Subject locks come last in every command: flags are recomputed once,
    // after every request lock.
    let mut completed_refs = Vec::new();
    for req in store::open_of_type(tx.conn(), tenant, RequestType::Erasure)? {
        lock_request(tx, &req.id)?;
        let refs = request_refs(tx.conn(), &req.id)?;
        let held = crate::instructions::service::held_now(tx.conn(), now, tenant, &refs)?;
        if held.is_empty() {
            continue;
        }
        let tasks = store::tasks_of(tx.conn(), std::slice::from_ref(&req.id))?;
        for task in tasks {
            if matches!(task.status, TaskStatus::Done | TaskStatus::Cancelled) {
                continue;
            }
            let (rest, kept) = held.split(&task.categories);
            if kept.is_empty() {
                continue;
            }
            store::cancel_task(tx.conn(), now, &task.id)?;
            crate::instructions::service::record_withheld(
                tx.conn(),
                now,
                &req.id,
                tenant,
                &task.system,
                &kept,
            )?;
            if !rest.is_empty() {
                issue_task(tx, &req.id, tenant, &task.system, req.request_type, &rest)?;
            }
            n += 1;
        }
        if store::unfinished_tasks(tx.conn(), &req.id)? == 0 {
            store::set_status(tx.conn(), now, &req.id, req.status, Status::Completed)?;
            announce_completed(tx, &req.tenant_id, &req.id, req.request_type)?;
            completed_refs.extend(refs);
        } else {
            store::touch(tx.conn(), now, &req.id)?;
        }
    }
    if !completed_refs.is_empty() {
        refresh_flags(tx, tenant, &completed_refs)?;
    }
    Ok(n)
}

/// Issues the erasure a legal hold withheld from request `request_id`
/// once the hold no longer covers `categories`: one new task of `system`,
/// announced in its inbox, on the request as it is now (a completed
/// request keeps its status; the task carries its subject ref). Runs in
/// the caller's transaction (a release, or the job that ends holds).
/// A request cancelled or rejected meanwhile gets nothing (`None`).
pub fn issue_withheld_erasure(
    tx: &mut Tx<'_>,
    request_id: &str,
    system: &str,
    categories: &[String],
) -> Result<Option<String>> {
    lock_request(tx, request_id)?;
    let req = store::get(tx.conn(), None, request_id)?;
    if matches!(req.status, Status::Cancelled | Status::Rejected) {
        return Ok(None);
    }
    let id = issue_task(tx, &req.id, &req.tenant_id, system, req.request_type, categories)?;
    let now = tx.now();
    store::touch(tx.conn(), now, &req.id)?;
    Ok(Some(id))
}

/// Inserts a task and announces it to its system.
fn issue_task(
    tx: &mut Tx<'_>,
    request_id: &str,
    tenant: &str,
    system: &str,
    request_type: RequestType,
    categories: &[String],
) -> Result<String> {
    let now = tx.now();
    let id = store::add_task(
        tx.conn(),
        now,
        request_id,
        tenant,
        system,
        request_type,
        categories,
    )?;
    tx.envelope(
        &Recipient::System(system.to_owned()),
        EnvelopeKind::SubjectRequestTask,
        &serde_json::json!({"id": id, "request_id": request_id, "request_type": request_type.as_str()}),
    )?;
    Ok(id)
}

/// A request with its tasks, read in the command's transaction.
fn with_tasks(tx: &mut Tx<'_>, id: &str) -> Result<(RequestRecord, Vec<TaskRecord>)> {
    let r = store::get(tx.conn(), None, id)?;
    // A forwarded request never fans out (its controller submits its own).
    let tasks = if r.origin == Origin::Forwarded {
        Vec::new()
    } else {
        store::tasks_of(tx.conn(), std::slice::from_ref(&r.id))?
    };
    Ok((r, tasks))
}

/// Recomputes the subject flags of request `id`'s refs, logging a decision
/// change for its tenant when they changed.
fn refresh_flags(tx: &mut Tx<'_>, tenant: &str, refs: &[String]) -> Result<()> {
    // One subject's flags are recomputed by one command at a time, else two
    // requests naming the subject could each miss the other's. Locks are
    // taken in ref order, and last in every command, so they never cross.
    let mut sorted: Vec<&String> = refs.iter().collect();
    sorted.sort();
    sorted.dedup();
    for r in sorted {
        crate::db::key_lock(tx.conn(), "subject", &format!("{tenant}\0{r}"))?;
    }
    let now = tx.now();
    if store::recompute_flags(tx.conn(), now, tenant, refs)? {
        // Decision snapshots follow this log: the new flags reach
        // CheckProcessing on every replica.
        tx.decisions_changed(tenant)?;
    }
    Ok(())
}

/// A validated request on its way in, forwarded by a platform system or
/// submitted by its controller.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The controller.
    pub tenant: String,
    /// Forwarded or submitted.
    pub origin: Origin,
    /// What is asked.
    pub request_type: RequestType,
    /// Rulebook.
    pub regime: Regime,
    /// The person's identifiers.
    pub subject: Subject,
    /// Scope; empty = everything.
    pub categories: Vec<String>,
    /// When it reached the platform or the controller; `None` = now.
    pub received_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Channel (forwarded).
    pub channel: String,
    /// The forwarding system's message.
    pub message: String,
    /// Retry key.
    pub idempotency_key: String,
    /// A rectification's corrected values (checked).
    pub corrections: Vec<dom::Correction>,
}

impl Incoming {
    /// The audit action this request is recorded under.
    fn action(&self) -> &'static str {
        action_of(self.origin)
    }

    /// Seals the identity and computes the digest and refs: the request as
    /// the store takes it.
    fn seal(self, secrets: &SubjectSecrets) -> Result<NewRequest> {
        let key = &secrets.hash_key;
        let digest = dom::body_digest(
            key,
            &CanonicalBody {
                tenant_id: &self.tenant,
                origin: self.origin.as_str(),
                request_type: self.request_type.as_str(),
                regime: self.regime.as_str(),
                subject: &self.subject,
                categories: &self.categories,
                received_at_us: self.received_at.map(crate::db::to_us),
                channel: &self.channel,
                message: &self.message,
                corrections: &self.corrections,
            },
        );
        let id = uuid::Uuid::new_v4().to_string();
        let refs = self.subject.refs(key, &self.tenant);
        let identity = Identity {
            subject: self.subject,
            message: self.message,
            corrections: self.corrections,
        };
        let plain = serde_json::to_vec(&identity)
            .map_err(|e| Error::Unexpected(format!("encode identifiers: {e}")))?;
        let sealed = Sealed::seal(&secrets.ring, &id, &plain)?;
        Ok(NewRequest {
            id,
            tenant_id: self.tenant,
            origin: self.origin,
            request_type: self.request_type,
            regime: self.regime,
            channel: self.channel,
            idempotency_key: self.idempotency_key,
            body_digest: digest,
            subject_refs: refs,
            sealed: Some(sealed),
            categories: self.categories,
            received_at: self.received_at,
            forwarded_by: None,
        })
    }
}

/// Records a forwarded or submitted request (see [`submit_in`]) and returns
/// it as `reveal` allows.
pub async fn submit(state: &AppState, actor: Actor, cmd: Incoming, reveal: Reveal) -> Result<RequestView> {
    let secrets = state.secrets.clone();
    let action = cmd.action();
    let fixed: Vec<String> = cmd.corrections.iter().map(|c| c.category.clone()).collect();
    let hints = state.settings_hints.clone();
    let mut new = cmd.seal(&secrets)?;
    if new.origin == Origin::Forwarded {
        // The forwarding system may ask the controller about it later.
        new.forwarded_by = Some(actor.sub.clone());
        if let Some(view) = forward_at_once(state, &actor, &new, reveal).await? {
            return Ok(view);
        }
    }
    state
        .command("subject_request.submit", actor, move |tx| {
            check_correction_categories(tx.conn(), &fixed)?;
            let done = submit_in(tx, new, &secrets.receipt, action, Some(&hints))?;
            let (rec, tasks) = match done.unchanged {
                // A new forwarded request: what it stored is the reply.
                Some(rec) => (rec, Vec::new()),
                None => with_tasks(tx, &done.id)?,
            };
            let view = open_request(tx.conn(), &secrets.ring, rec, tasks, reveal)?;
            one_with_withheld(tx.conn(), view)
        })
        .await
}

/// New forwarded requests waiting to be recorded together.
pub type ForwardBatch = crate::db::batch::Batch<store::ForwardedAtOnce, Option<RequestRecord>>;

/// A new forwarded request recorded in one statement that commits on its
/// own: the request, its wait and refs, the controller's envelope and the
/// audit event, with no BEGIN, COMMIT or read before it, and, while others
/// wait for a write turn, in the same statement as theirs
/// ([`crate::db::batch`]). Only when nothing else needs reading: the
/// tenant's settings are remembered here ([`SettingsHints`]; the statement
/// checks they still hold), no categories are named and `received_at`
/// passes. None when it did not apply or wrote nothing (settings changed,
/// the key already used, a refusal to explain): then the caller records
/// the request as a transaction, which answers each of those.
async fn forward_at_once(
    state: &AppState,
    actor: &Actor,
    new: &NewRequest,
    reveal: Reveal,
) -> Result<Option<RequestView>> {
    if !new.categories.is_empty() || state.store.backend() != "postgresql" {
        return Ok(None);
    }
    let Some(settings) = state.settings_hints.get(&new.tenant_id) else {
        return Ok(None);
    };
    let now = state.store.clock().now();
    let Ok(received) = check_received(new, now) else {
        return Ok(None);
    };
    let receipt = receipt_of(&state.secrets.receipt, new, now);
    let at = deadlines(new, received, &settings);
    let mut pending = crate::db::flush::Pending::default();
    pending.envelope(
        now,
        &Recipient::Tenant(new.tenant_id.clone()),
        EnvelopeKind::SubjectRequestForwarded,
        &forwarded_payload(new),
    );
    pending.audit(
        now,
        actor,
        action_of(Origin::Forwarded),
        &new.id,
        Some(&new.tenant_id),
        "ok",
        &audit_detail(new).to_string(),
    );
    let item = store::ForwardedAtOnce {
        new: new.clone(),
        at,
        receipt,
        assumed: settings,
        pending,
    };
    let stored = state
        .store
        .batched(
            "subject_request.submit",
            &state.forwards,
            item,
            store::insert_forwarded_batch,
        )
        .await?;
    // New and forwarded: no tasks, questions or withheld categories to read.
    match stored.flatten() {
        Some(stored) => open_with(&state.secrets.ring, stored, Vec::new(), reveal, Vec::new()).map(Some),
        None => Ok(None),
    }
}

/// The audit action a request from `origin` is recorded under.
fn action_of(origin: Origin) -> &'static str {
    match origin {
        Origin::Forwarded => "subject_request.forward",
        _ => "subject_request.submit",
    }
}

/// The receipt for `new`, received by proctor at `now`.
fn receipt_of(signer: &ReceiptSigner, new: &NewRequest, now: chrono::DateTime<chrono::Utc>) -> Receipt {
    Receipt {
        issued_at: now,
        signature: signer
            .sign(&dom::receipt_message(&new.tenant_id, &new.body_digest, now))
            .to_vec(),
        key_id: signer.key_id().to_owned(),
    }
}

/// The controller's envelope about forwarded request `new`.
fn forwarded_payload(new: &NewRequest) -> serde_json::Value {
    serde_json::json!({"id": new.id, "request_type": new.request_type.as_str()})
}

/// The audit detail of a request recorded (no personal data: kinds and
/// the body digest).
fn audit_detail(new: &NewRequest) -> serde_json::Value {
    serde_json::json!({
        "origin": new.origin.as_str(),
        "type": new.request_type.as_str(),
        "regime": new.regime.as_str(),
        "digest": new.body_digest,
    })
}

/// Refuses corrections in categories the taxonomy does not know, naming
/// each (`corrections[i].category`).
fn check_correction_categories(conn: &mut DbConnection, categories: &[String]) -> Result<()> {
    crate::instructions::repo::check_known_categories_named(conn, categories, |i| {
        format!("corrections[{i}].category")
    })
}

/// What [`submit_in`] recorded.
struct Submitted {
    /// The request's id.
    id: String,
    /// False for a retry that found the stored request.
    created: bool,
    /// The request as stored, when nothing changed it after its insert (a
    /// new forwarded request): its reply needs no read.
    unchanged: Option<RequestRecord>,
}

/// Records a request (forwarded, submitted or created at contract end):
/// returns what it recorded (the caller reads what its reply needs, at
/// most once). A retry with the same
/// idempotency key and the same body digest returns the stored request; the
/// same key with another body is ALREADY_EXISTS. A forwarded request lands
/// in the tenant's inbox; any other fans out into one task per system
/// holding a category in scope, each announced in that system's inbox. The
/// receipt is signed, the subject flags updated and the audit event
/// appended under `action`.
fn submit_in(
    tx: &mut Tx<'_>,
    new: NewRequest,
    signer: &ReceiptSigner,
    action: &str,
    hints: Option<&SettingsHints>,
) -> Result<Submitted> {
    let now = tx.now();
    // No read of the key first: the insert below finds a stored request
    // under it (and waits for one being committed). Only a request refused
    // here is looked up, so that a retry of one stored earlier is answered
    // with it even where it would not pass today (its received_at has aged
    // past the limit, a category left the taxonomy).
    let received = match admit(tx, &new, now) {
        Ok(received) => received,
        Err(refused @ Error::Invalid(_)) => {
            return match store::by_idempotency(tx.conn(), &new.tenant_id, new.origin, &new.idempotency_key)? {
                Some(existing) => retried(existing, &new),
                None => Err(refused),
            };
        }
        Err(e) => return Err(e),
    };
    let receipt = receipt_of(signer, &new, now);
    let initial = if new.origin == Origin::Forwarded {
        Status::Forwarded
    } else {
        Status::Received
    };
    // The settings as last seen here, if they were: the insert checks they
    // still hold, and when they do not, they are read and the deadlines
    // computed again (a change committed between the two is caught the
    // same way; a few in a row mean settings changing faster than requests
    // can be recorded, which the caller may retry).
    let (mut settings, mut remembered) = match hints.and_then(|h| h.get(&new.tenant_id)) {
        Some(known) => (known, true),
        None => (read_settings(tx, &new.tenant_id, hints)?, false),
    };
    let mut attempts = 0;
    let stored = loop {
        let at = deadlines(&new, received, &settings);
        let assumed = if remembered {
            Assumed::Remembered(&settings)
        } else {
            Assumed::Read(&settings)
        };
        match store::insert_request(tx.conn(), &new, at, initial, &receipt, assumed)? {
            Inserted::New(stored) => break *stored,
            Inserted::KeyTaken => {
                // A retry with the same key committed while this one ran:
                // the unique key made this insert wait for it, and its row
                // stands.
                let existing =
                    store::by_idempotency(tx.conn(), &new.tenant_id, new.origin, &new.idempotency_key)?
                        .ok_or_else(|| {
                            Error::Unexpected("an idempotency key conflicted with no request".into())
                        })?;
                return retried(existing, &new);
            }
            Inserted::SettingsChanged if attempts < SETTINGS_ATTEMPTS => {
                attempts += 1;
                settings = read_settings(tx, &new.tenant_id, hints)?;
                remembered = false;
            }
            Inserted::SettingsChanged => {
                return Err(Error::NotReady(
                    "the tenant's settings changed while the request was recorded".into(),
                ));
            }
        }
    };
    let mut detail = audit_detail(&new);
    let tenant = Recipient::Tenant(new.tenant_id.clone());
    if initial == Status::Forwarded {
        tx.envelope(
            &tenant,
            EnvelopeKind::SubjectRequestForwarded,
            &forwarded_payload(&new),
        )?;
    } else {
        // Erasure leaves out what a legal hold covers; the rest is issued.
        let held = if new.request_type == RequestType::Erasure {
            crate::instructions::service::held_now(tx.conn(), now, &new.tenant_id, &new.subject_refs)?
        } else {
            Default::default()
        };
        let (tasks, withheld) = store::plan_tasks(tx.conn(), now, &new, &held)?;
        for (system, cats) in &withheld {
            crate::instructions::service::record_withheld(
                tx.conn(),
                now,
                &new.id,
                &new.tenant_id,
                system,
                cats,
            )?;
        }
        if !withheld.is_empty() {
            detail["withheld_systems"] = serde_json::json!(withheld.len());
        }
        for task in &tasks {
            tx.envelope(
                &Recipient::System(task.system.clone()),
                EnvelopeKind::SubjectRequestTask,
                &serde_json::json!({"id": task.id, "request_id": new.id, "request_type": new.request_type.as_str()}),
            )?;
        }
        let to = if tasks.is_empty() {
            Status::Completed
        } else {
            Status::InProgress
        };
        store::set_status(tx.conn(), now, &new.id, initial, to)?;
        if to == Status::Completed {
            // No system holds data in scope: done at once, and the controller
            // still hears of it as of any other completion.
            announce_completed(tx, &new.tenant_id, &new.id, new.request_type)?;
        }
        detail["tasks"] = serde_json::json!(tasks.len());
    }
    if new.origin != Origin::Forwarded {
        // A forwarded request sets no flags until its controller submits it.
        refresh_flags(tx, &new.tenant_id, &new.subject_refs)?;
    }
    tx.audit(action, &new.id, Some(&new.tenant_id), &detail.to_string())?;
    Ok(Submitted {
        id: new.id,
        created: true,
        // Only a forwarded request stays as inserted: any other had its
        // status set and its tasks planned since.
        unchanged: (initial == Status::Forwarded).then_some(stored),
    })
}

/// How often a request is computed again when its tenant's settings
/// changed under it: beyond the first, each means another change committed
/// in the few microseconds between reading the settings and the insert.
const SETTINGS_ATTEMPTS: u32 = 3;

/// Checks when `new` was received and that its categories exist; returns
/// when it was received. INVALID_ARGUMENT names what is refused.
fn admit(
    tx: &mut Tx<'_>,
    new: &NewRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>> {
    let received = check_received(new, now)?;
    crate::instructions::repo::check_known_categories(tx.conn(), "categories", &new.categories)?;
    Ok(received)
}

/// When `new` was received, if that is neither in the future nor too long
/// ago; INVALID_ARGUMENT otherwise.
fn check_received(
    new: &NewRequest,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>> {
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
    Ok(received)
}

/// The tenant's settings as stored now, remembered in `hints`.
fn read_settings(tx: &mut Tx<'_>, tenant: &str, hints: Option<&SettingsHints>) -> Result<TenantSettings> {
    let settings = store::settings(tx.conn(), tenant)?;
    if let Some(h) = hints {
        h.put(tenant, settings.clone());
    }
    Ok(settings)
}

/// `new`'s deadlines under its tenant's `settings`.
fn deadlines(
    new: &NewRequest,
    received: chrono::DateTime<chrono::Utc>,
    settings: &TenantSettings,
) -> Deadlines {
    let tz = settings.tz();
    let due = dom::due_at(new.regime, received, tz, false);
    Deadlines {
        received,
        due,
        sla: dom::sla_due_at(received, tz, settings.sla_days, due),
    }
}

/// The answer to a retry of `new` that found `existing` under its
/// idempotency key: the stored request when the bodies match, else
/// ALREADY_EXISTS.
fn retried(existing: RequestRecord, new: &NewRequest) -> Result<Submitted> {
    if existing.body_digest == new.body_digest {
        return Ok(Submitted {
            id: existing.id,
            created: false,
            unchanged: None,
        });
    }
    Err(Error::Duplicate(
        "idempotency_key was already used for a different request".into(),
    ))
}

/// Tells the controller in its inbox that request `id` completed.
fn announce_completed(tx: &mut Tx<'_>, tenant_id: &str, id: &str, request_type: RequestType) -> Result<()> {
    tx.envelope(
        &Recipient::Tenant(tenant_id.to_owned()),
        EnvelopeKind::SubjectRequestCompleted,
        &serde_json::json!({"id": id, "request_type": request_type.as_str()}),
    )
}

/// Opens (once) the erasure a terminated tenant's data is owed after the
/// contract-end grace period, as one command of its own: an erasure over
/// all categories with no subject, fanned out like any other request, and
/// the tenant marked as having it. Idempotent per tenant: returns the
/// request and whether it was opened now.
pub async fn contract_end_erasure(
    store: &Store,
    secrets: Arc<SubjectSecrets>,
    tenant: String,
) -> Result<(RequestRecord, bool)> {
    store
        .command("tenant.contract_end_erasure", Actor::service(), move |tx| {
            use sha2::Digest;
            let now = tx.now();
            let digest = hex::encode(sha2::Sha256::digest(format!("proctor.contract_end.v1\0{tenant}")));
            let new = NewRequest {
                id: uuid::Uuid::new_v4().to_string(),
                tenant_id: tenant.clone(),
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
                forwarded_by: None,
            };
            let done = submit_in(tx, new, &secrets.receipt, "subject_request.contract_end", None)?;
            let opened = (store::get(tx.conn(), None, &done.id)?, done.created);
            crate::instructions::repo::mark_erasure_requested(tx.conn(), now, &tenant)?;
            Ok(opened)
        })
        .await
        .map(|done| done.value)
}

/// Closes an open request of the actor's tenant without completing it:
/// cancelled, or rejected when `closing` names a legal ground. Its
/// unfinished tasks are cancelled (later completions are
/// FAILED_PRECONDITION), its identifiers dropped, its export chunks
/// deleted, its flags recomputed, the reason (sealed) and ground kept.
pub async fn close(
    state: &AppState,
    actor: Actor,
    tenant: String,
    id: String,
    closing: Closing,
) -> Result<RequestView> {
    let secrets = state.secrets.clone();
    let action = if closing.ground.is_some() {
        "subject_request.reject"
    } else {
        "subject_request.cancel"
    };
    state
        .command(action, actor, move |tx| {
            lock_request(tx, &id)?;
            let now = tx.now();
            let ring = &secrets.ring;
            let req = store::get(tx.conn(), Some(&tenant), &id)?;
            let to = if closing.ground.is_some() {
                Status::Rejected
            } else {
                Status::Cancelled
            };
            store::set_status(tx.conn(), now, &id, req.status, to)?;
            let reason = closing.reason.as_deref().unwrap_or_default();
            let mut reasons = req.reasons.open(ring, &id)?;
            reasons.close = reason.to_owned();
            store::save_reasons(tx.conn(), ring, &id, &reasons)?;
            store::set_rejection_ground(tx.conn(), &id, closing.ground)?;
            store::cancel_open_tasks(tx.conn(), now, &id)?;
            store::delete_export_chunks(tx.conn(), &id)?;
            let (_, refs) = store::refs_of(tx.conn(), &id)?;
            refresh_flags(tx, &tenant, &refs)?;
            let detail = serde_json::json!({
                "from": req.status.as_str(),
                "to": to.as_str(),
                "ground": closing.ground.map(dom::RejectionGround::as_str),
                "reason_chars": reason.chars().count(),
            });
            tx.audit(action, &id, Some(&tenant), &detail.to_string())?;
            let (rec, tasks) = with_tasks(tx, &id)?;
            let view = open_request(tx.conn(), ring, rec, tasks, Reveal::Identity)?;
            one_with_withheld(tx.conn(), view)
        })
        .await
}

/// Uses the one extension of the actor's tenant's request (see
/// [`dom::extend`]); `reason` is kept with it, sealed; the audit log
/// records its length only.
pub async fn extend(
    state: &AppState,
    actor: Actor,
    tenant: String,
    id: String,
    reason: String,
) -> Result<RequestView> {
    let secrets = state.secrets.clone();
    state
        .command("subject_request.extend", actor, move |tx| {
            lock_request(tx, &id)?;
            let now = tx.now();
            let ring = &secrets.ring;
            let req = store::get(tx.conn(), Some(&tenant), &id)?;
            let tz = store::settings(tx.conn(), &tenant)?.tz();
            let due = dom::extend(
                req.regime,
                req.status,
                req.extended,
                req.received_at,
                req.due_at,
                now,
                tz,
            )?;
            let mut reasons = req.reasons.open(ring, &id)?;
            reasons.extension = reason.clone();
            store::save_reasons(tx.conn(), ring, &id, &reasons)?;
            store::set_extended_due(tx.conn(), now, &id, due)?;
            let detail = serde_json::json!({
                "from": crate::db::to_us(req.due_at),
                "to": crate::db::to_us(due),
                "reason_chars": reason.chars().count(),
            });
            tx.audit("subject_request.extend", &id, Some(&tenant), &detail.to_string())?;
            let (rec, tasks) = with_tasks(tx, &id)?;
            let view = open_request(tx.conn(), ring, rec, tasks, Reveal::Identity)?;
            one_with_withheld(tx.conn(), view)
        })
        .await
}

/// Opens an export download of the actor's tenant's request: only for
/// completed access/portability requests; the first download starts the
/// retention clock, after which the chunks are deleted (then the download
/// is FAILED_PRECONDITION). Audited; the chunks are read afterwards, batch
/// by batch, with [`export_chunks`].
pub async fn start_export(
    state: &AppState,
    actor: Actor,
    tenant: String,
    id: String,
    retention: chrono::Duration,
) -> Result<(RequestRecord, Vec<TaskRecord>)> {
    let start = state
        .command("subject_request.export", actor, move |tx| {
            lock_request(tx, &id)?;
            let now = tx.now();
            let req = store::get(tx.conn(), Some(&tenant), &id)?;
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
            match req.export_downloaded_at {
                Some(first) if first + retention <= now => {
                    store::delete_export(tx.conn(), now, &id)?;
                    return Ok(ExportStart::Deleted);
                }
                Some(_) => {}
                None => store::mark_downloaded(tx.conn(), now, &id)?,
            }
            tx.audit("subject_request.export", &id, Some(&tenant), "")?;
            let (rec, tasks) = with_tasks(tx, &id)?;
            Ok(ExportStart::Ready(Box::new(rec), tasks))
        })
        .await?;
    match start {
        ExportStart::Ready(r, t) => Ok((*r, t)),
        ExportStart::Deleted => Err(Error::WrongState(
            "the export bundle was deleted when its retention after first download ran out".into(),
        )),
    }
}

/// Up to `limit` export chunks of task `task_id` after chunk `after`, in
/// the clear.
pub async fn export_chunks(
    store: &Store,
    secrets: Arc<SubjectSecrets>,
    task_id: String,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, Vec<u8>)>> {
    store
        .read("subject_request.export_chunks", move |c, _| {
            store::export_chunks(c, &secrets.ring, &task_id, after, limit)
        })
        .await
}

/// Registers a platform system with the categories it holds, or replaces
/// them (later requests only; open tasks are not re-planned).
pub async fn register_system(
    state: &AppState,
    actor: Actor,
    name: String,
    categories: Vec<String>,
) -> Result<SystemRecord> {
    state
        .command("subject_request.register_system", actor, move |tx| {
            crate::db::key_lock(tx.conn(), "subject_request.system", &name)?;
            crate::instructions::repo::check_known_categories(tx.conn(), "categories", &categories)?;
            let now = tx.now();
            let sys = store::upsert_system(tx.conn(), now, &name, &categories)?;
            let detail = serde_json::json!({"categories": categories}).to_string();
            tx.audit("subject_request.register_system", &name, None, &detail)?;
            Ok(sys)
        })
        .await
}

/// Leases up to `spec.max` available tasks of `system` and opens, for the
/// system, the identity of each task's request. The system's leases that
/// ran out are first recorded as failed attempts under `policy`, in the
/// same transaction: a task is never handed out again on an expired lease
/// without its backoff, whether or not the sweep got to it yet.
pub async fn pull_tasks(
    state: &AppState,
    actor: Actor,
    system: String,
    spec: PullSpec,
    policy: dom::TaskPolicy,
) -> Result<Vec<TaskView>> {
    let secrets = state.secrets.clone();
    state
        .command("subject_request.pull_tasks", actor, move |tx| {
            expire_leases_in(tx, &secrets.ring, Some(&system), policy)?;
            let now = tx.now();
            let leased = store::pull_tasks(tx.conn(), now, &system, spec)?;
            leased
                .into_iter()
                .map(|l| {
                    let identity = match &l.sealed {
                        Some(s) => Some(Identity::open(&secrets.ring, &l.task.request_id, s)?),
                        None => None,
                    };
                    let corrections = identity
                        .as_ref()
                        .map(|i| dom::corrections_for(&i.corrections, &l.task.categories))
                        .unwrap_or_default();
                    let mut view =
                        open_task(&secrets.ring, l.task, l.subject_ref, identity.map(|i| i.subject))?;
                    view.corrections = corrections;
                    Ok(view)
                })
                .collect()
        })
        .await
}

/// Takes request `id`'s lock: the commands on one request (close, extend,
/// export, its tasks' reports) run in turn, those on different requests in
/// parallel.
fn lock_request(tx: &mut Tx<'_>, id: &str) -> Result<()> {
    crate::db::key_lock(tx.conn(), "subject_request", id)
}

/// `system`'s task `task_id`, read again under its request's lock.
fn lock_task(tx: &mut Tx<'_>, system: &str, task_id: &str) -> Result<TaskRecord> {
    let request = store::task_of_system(tx.conn(), system, task_id)?.request_id;
    lock_request(tx, &request)?;
    store::task_of_system(tx.conn(), system, task_id)
}

/// A terminal task takes no more reports.
fn refuse_terminal(task: &TaskRecord) -> Result<()> {
    match task.status {
        TaskStatus::Cancelled => Err(Error::WrongState("the task's request was cancelled".into())),
        TaskStatus::Done => Err(Error::WrongState("the task is already done".into())),
        _ => Ok(()),
    }
}

/// Records a completion (or one export chunk, sealed at rest) of
/// `system`'s task. When the last task of a request is done, the request
/// completes, its identifiers are dropped, its flags recomputed and the
/// controller's inbox gets a notice.
pub async fn complete_task(
    state: &AppState,
    actor: Actor,
    system: String,
    task_id: String,
    done: Completion,
) -> Result<TaskView> {
    let secrets = state.secrets.clone();
    state
        .command("subject_request.complete_task", actor, move |tx| {
            let task = lock_task(tx, &system, &task_id)?;
            let now = tx.now();
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
                let (key_id, sealed) = store::seal_chunk(&secrets.ring, &task.id, &done.export_data)?;
                store::insert_export_chunk(tx.conn(), now, &task, &key_id, &sealed)?;
            }
            store::record_completion(tx.conn(), now, &task, &done)?;
            let req = store::get(tx.conn(), None, &task.request_id)?;
            if store::unfinished_tasks(tx.conn(), &req.id)? == 0 && req.status.is_open() {
                store::set_status(tx.conn(), now, &req.id, req.status, Status::Completed)?;
                let (_, refs) = store::refs_of(tx.conn(), &req.id)?;
                refresh_flags(tx, &req.tenant_id, &refs)?;
                announce_completed(tx, &req.tenant_id, &req.id, req.request_type)?;
            } else {
                store::touch(tx.conn(), now, &req.id)?;
            }
            let detail = serde_json::json!({
                "request_id": req.id,
                "records_affected": done.records_affected,
                "export_bytes": done.export_data.len(),
                "more": done.more,
                "no_data_held": done.no_data_held,
            });
            tx.audit(
                "subject_request.complete_task",
                &task_id,
                Some(&req.tenant_id),
                &detail.to_string(),
            )?;
            let task = store::task_of_system(tx.conn(), &system, &task_id)?;
            let req = store::get(tx.conn(), None, &req.id)?;
            open_task(&secrets.ring, task, req.subject_ref, None)
        })
        .await
}

/// Records a failed attempt of `system`'s task: it is offered again after
/// its backoff (see [`dom::TaskPolicy`]), or, out of attempts, it needs
/// attention: no longer offered, and the compliance queue gets a
/// `subject_request.task_stuck` envelope in the same transaction. The
/// error is sealed; the audit log records its length only.
pub async fn fail_task(
    state: &AppState,
    actor: Actor,
    system: String,
    task_id: String,
    error: String,
    policy: dom::TaskPolicy,
) -> Result<TaskView> {
    let secrets = state.secrets.clone();
    state
        .command("subject_request.fail_task", actor, move |tx| {
            let task = lock_task(tx, &system, &task_id)?;
            refuse_terminal(&task)?;
            if task.status == TaskStatus::NeedsAttention {
                return Err(Error::WrongState(
                    "the task already needs attention; it is no longer retried".into(),
                ));
            }
            fail_attempt(tx, &secrets.ring, &task, FailedAttempt::Reported(&error), policy)?;
            let task = store::task_of_system(tx.conn(), &system, &task_id)?;
            open_task(&secrets.ring, task, None, None)
        })
        .await
}

/// The error recorded for an attempt whose lease ran out: no personal
/// data, so the compliance queue and the system may both read it.
pub const LEASE_EXPIRED: &str = "lease expired";

/// Why an attempt of a task failed.
#[derive(Debug, Clone, Copy)]
enum FailedAttempt<'a> {
    /// Its system said so (`FailTask`), with this error.
    Reported(&'a str),
    /// Its system neither completed nor failed it before its lease ran out
    /// (the system died or hung): an attempt like any other, or a task
    /// whose system keeps dying would be offered forever and never reach
    /// a person.
    LeaseExpired,
}

/// Records the failure of `task`'s current attempt, reported or by lease
/// expiry alike: the error sealed, the backoff before the next offer (from
/// the failure: the report, or the end of the lease), or, out of attempts,
/// NEEDS_ATTENTION with the `subject_request.task_stuck` envelope to the
/// compliance queue; audited with counts and ids only. The caller holds
/// the task's request lock and checked its state.
fn fail_attempt(
    tx: &mut Tx<'_>,
    ring: &KeyRing,
    task: &TaskRecord,
    cause: FailedAttempt<'_>,
    policy: dom::TaskPolicy,
) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    let now = tx.now();
    let (error, failed_at, action) = match cause {
        FailedAttempt::Reported(error) => (error, now, "subject_request.fail_task"),
        FailedAttempt::LeaseExpired => (
            LEASE_EXPIRED,
            task.lease_until.unwrap_or(now).min(now),
            "subject_request.lease_expired",
        ),
    };
    let sealed = StoredText::seal(ring, Field::TaskError, &task.id, error)?;
    let attempts = u32::try_from(task.attempts.max(1)).unwrap_or(u32::MAX);
    let retry_at = match policy.after_failure(attempts, failed_at) {
        dom::AfterFailure::RetryAt(at) => Some(at),
        dom::AfterFailure::NeedsAttention => None,
    };
    store::record_failure(tx.conn(), now, &task.id, &sealed, retry_at)?;
    store::touch(tx.conn(), now, &task.request_id)?;
    if retry_at.is_none() {
        tx.envelope(
            &Recipient::System(crate::screening::cases::COMPLIANCE_QUEUE.to_owned()),
            EnvelopeKind::SubjectRequestTaskStuck,
            &serde_json::json!({
                "task_id": task.id,
                "request_id": task.request_id,
                "tenant_id": task.tenant_id,
                "system": task.system,
                "attempts": attempts,
            }),
        )?;
    }
    let mut detail = serde_json::json!({
        "request_id": task.request_id,
        "attempts": attempts,
        "needs_attention": retry_at.is_none(),
    });
    match cause {
        FailedAttempt::Reported(error) => detail["error_chars"] = error.chars().count().into(),
        FailedAttempt::LeaseExpired => {
            detail["reason"] = LEASE_EXPIRED.into();
            detail["system"] = task.system.clone().into();
        }
    }
    tx.audit(action, &task.id, Some(&task.tenant_id), &detail.to_string())?;
    Ok(retry_at)
}

/// Records the expiry of every lease of `system` that ran out (all
/// systems' when `None`), as failed attempts ([`FailedAttempt::LeaseExpired`]).
/// Each task is read again under its request's lock, so a completion or a
/// report that got there first wins and the expiry is skipped.
fn expire_leases_in(
    tx: &mut Tx<'_>,
    ring: &KeyRing,
    system: Option<&str>,
    policy: dom::TaskPolicy,
) -> Result<usize> {
    let now = tx.now();
    let mut due = store::expired_leases(tx.conn(), now, system, EXPIRY_BATCH)?;
    // One order for every replica's locks: two sweeps never wait on each other in a cycle.
    due.sort_by(|a, b| a.request_id.cmp(&b.request_id).then(a.id.cmp(&b.id)));
    let mut expired = 0;
    for stale in due {
        lock_request(tx, &stale.request_id)?;
        let task = store::task_of_system(tx.conn(), &stale.system, &stale.id)?;
        let still_expired =
            task.status == TaskStatus::Leased && task.lease_until.is_some_and(|until| until <= now);
        if still_expired {
            fail_attempt(tx, ring, &task, FailedAttempt::LeaseExpired, policy)?;
            expired += 1;
        }
    }
    Ok(expired)
}

/// Expired leases handled per transaction by [`expire_leases`].
const EXPIRY_BATCH: i64 = 100;

/// One round of the lease sweep: records up to a batch of expired leases
/// of any system as failed attempts, so a task whose system died reaches
/// its backoff and, out of attempts, NEEDS_ATTENTION even if no system
/// ever pulls again. Returns how many it recorded.
pub async fn expire_leases(
    store: &Store,
    secrets: Arc<SubjectSecrets>,
    policy: dom::TaskPolicy,
) -> Result<usize> {
    store
        .command("subject_request.expire_leases", Actor::service(), move |tx| {
            expire_leases_in(tx, &secrets.ring, None, policy)
        })
        .await
        .map(|done| done.value)
}

/// Changes a tenant's deadline settings (`None` keeps a value); they apply
/// to requests received from now on.
pub async fn set_settings(
    state: &AppState,
    actor: Actor,
    tenant: String,
    time_zone: Option<String>,
    sla_days: Option<u32>,
) -> Result<TenantSettings> {
    let (tenant, s) = state
        .command("subject_request.settings", actor, move |tx| {
            crate::db::key_lock(tx.conn(), "subject_request.settings", &tenant)?;
            let now = tx.now();
            let mut s = store::settings(tx.conn(), &tenant)?;
            if let Some(z) = time_zone {
                s.time_zone = z;
            }
            if let Some(d) = sla_days {
                s.sla_days = d;
            }
            store::store_settings(tx.conn(), now, &tenant, &s)?;
            let detail = serde_json::json!({"time_zone": s.time_zone, "sla_days": s.sla_days}).to_string();
            tx.audit("subject_request.settings", &tenant, Some(&tenant), &detail)?;
            Ok((tenant, s))
        })
        .await?;
    // Committed: requests recorded here from now on start from these.
    state.settings_hints.put(&tenant, s.clone());
    Ok(s)
}

/// A tenant's deadline settings (defaults when it has set none).
pub async fn settings(state: &AppState, tenant: String) -> Result<TenantSettings> {
    state
        .store
        .read("subject_request.settings", move |c, _| {
            store::settings(c, &tenant)
        })
        .await
}

/// One request, if `tenant` may see it (None: any); another tenant's is
/// NOT_FOUND exactly like one that does not exist.
pub async fn get(
    state: &AppState,
    tenant: Option<String>,
    id: String,
    reveal: Reveal,
) -> Result<RequestView> {
    let secrets = state.secrets.clone();
    state
        .store
        .read("subject_request.get", move |c, _| {
            let r = store::get(c, tenant.as_deref(), &id)?;
            let tasks = store::tasks_of(c, std::slice::from_ref(&r.id))?;
            let view = open_request(c, &secrets.ring, r, tasks, reveal)?;
            one_with_withheld(c, view)
        })
        .await
}

/// One page of requests under `filter` and the number of overdue open
/// requests under the same tenant filter.
pub async fn list(
    state: &AppState,
    filter: ListFilter,
    page: Page,
    reveal: Reveal,
) -> Result<(Vec<RequestView>, u64)> {
    let secrets = state.secrets.clone();
    state
        .store
        .read("subject_request.list", move |c, clock| {
            let (rows, overdue) = store::list(c, clock.now(), &filter, page.after, page.size)?;
            let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let mut by_request: HashMap<String, Vec<TaskRecord>> = HashMap::new();
            for t in store::tasks_of(c, &ids)? {
                by_request.entry(t.request_id.clone()).or_default().push(t);
            }
            let views = rows
                .into_iter()
                .map(|r| {
                    let tasks = by_request.remove(&r.id).unwrap_or_default();
                    open_request(c, &secrets.ring, r, tasks, reveal)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((with_withheld(c, views)?, overdue))
        })
        .await
}

/// (open requests, overdue open requests, unfinished tasks), optionally for
/// one tenant: numbers only, no personal data.
pub async fn counts(state: &AppState, tenant: Option<String>) -> Result<(u64, u64, u64)> {
    state
        .store
        .read("subject_request.count", move |c, clock| {
            store::counts(c, clock.now(), tenant.as_deref())
        })
        .await
}

/// Records platform system `asker`'s question about request `request_id`
/// to its controller, sealed: the tenant's inbox gets a
/// `subject_request.question` envelope (answered with `InboxService.Reply`,
/// see [`answer_question`]), and an open request awaits the controller,
/// with proctor's SLA paused (the legal deadline runs on). Only the system
/// that forwarded the request or one holding one of its tasks may ask;
/// anyone else gets NOT_FOUND, as for a request that does not exist. A
/// closed request takes no question (FAILED_PRECONDITION).
pub async fn ask_controller(
    state: &AppState,
    actor: Actor,
    request_id: String,
    question: String,
) -> Result<QuestionView> {
    let secrets = state.secrets.clone();
    state
        .command("subject_request.ask", actor, move |tx| {
            lock_request(tx, &request_id)?;
            let now = tx.now();
            let asker = tx.actor().sub.clone();
            let missing = || Error::Missing(format!("subject request {request_id}"));
            let req = store::get(tx.conn(), None, &request_id).map_err(|_| missing())?;
            let systems: Vec<String> = store::tasks_of(tx.conn(), std::slice::from_ref(&req.id))?
                .into_iter()
                .map(|t| t.system)
                .collect();
            if !dom::may_ask(&asker, req.forwarded_by.as_deref(), &systems) {
                return Err(missing());
            }
            if !req.status.is_open() {
                return Err(Error::WrongState(format!(
                    "a {} request takes no more questions",
                    req.status.as_str()
                )));
            }
            let id = uuid::Uuid::new_v4().to_string();
            let sealed = StoredText::seal(&secrets.ring, Field::SubjectQuestion, &id, &question)?;
            store::insert_question(tx.conn(), now, &id, &req, &asker, &sealed)?;
            if req.status == Status::AwaitingController {
                store::touch(tx.conn(), now, &req.id)?;
            } else {
                store::pause_for_controller(tx.conn(), now, &req.id, req.status)?;
            }
            tx.envelope(
                &Recipient::Tenant(req.tenant_id.clone()),
                EnvelopeKind::SubjectRequestQuestion,
                &serde_json::json!({"id": id, "question_id": id, "request_id": req.id}),
            )?;
            let detail = serde_json::json!({
                "request_id": req.id,
                "question_chars": question.chars().count(),
            });
            tx.audit(
                "subject_request.ask",
                &format!("question/{id}"),
                Some(&req.tenant_id),
                &detail.to_string(),
            )?;
            let q = store::question(tx.conn(), None, &id)?;
            open_question(&secrets.ring, q, Reveal::Identity)
        })
        .await
}

/// Records the controller's answer `text` to question `question_id` inside
/// the caller's transaction (an inbox reply), sealed: the asking system's
/// inbox gets a `subject_request.answer` envelope, and when no question of
/// the request is left open, the request returns to where it was, its SLA
/// deadline moved by the time it waited (never past the legal deadline).
/// `tenant` is the answering inbox's tenant: another tenant's question is
/// NOT_FOUND; an answered one, or one of a closed request, is
/// FAILED_PRECONDITION.
pub(crate) fn answer_question(
    tx: &mut Tx<'_>,
    ring: &KeyRing,
    question_id: &str,
    tenant: Option<&str>,
    text: &str,
) -> Result<()> {
    let Some(tenant) = tenant else {
        return Err(Error::Missing(format!("question {question_id}")));
    };
    let request_id = store::question(tx.conn(), Some(tenant), question_id)?.request_id;
    lock_request(tx, &request_id)?;
    let q = store::question(tx.conn(), Some(tenant), question_id)?;
    if q.answered_at.is_some() {
        return Err(Error::WrongState("the question was already answered".into()));
    }
    if text.trim().is_empty() {
        return Err(Error::invalid("text", "an answer is required"));
    }
    let req = store::get(tx.conn(), Some(tenant), &request_id)?;
    if !req.status.is_open() {
        return Err(Error::WrongState(format!(
            "the request is {}; its questions take no answer",
            req.status.as_str()
        )));
    }
    let (now, by) = (tx.now(), tx.actor().sub.clone());
    let sealed = StoredText::seal(ring, Field::SubjectAnswer, &q.id, text)?;
    store::answer_question(tx.conn(), now, &q.id, &by, &sealed)?;
    let resumed = store::open_questions(tx.conn(), &req.id)? == 0 && req.status == Status::AwaitingController;
    if resumed {
        let to = req.resume_status.unwrap_or(Status::InProgress);
        let sla = match req.sla_paused_at {
            Some(at) => dom::resumed_sla(req.sla_due_at, at, now, req.due_at),
            None => req.sla_due_at,
        };
        store::resume_from_controller(tx.conn(), now, &req.id, to, sla)?;
    } else {
        store::touch(tx.conn(), now, &req.id)?;
    }
    tx.envelope(
        &Recipient::System(q.asked_by.clone()),
        EnvelopeKind::SubjectRequestAnswer,
        &serde_json::json!({"id": q.id, "question_id": q.id, "request_id": req.id}),
    )?;
    let detail = serde_json::json!({
        "request_id": req.id,
        "answer_chars": text.chars().count(),
        "resumed": resumed,
    });
    tx.audit(
        "subject_request.answer",
        &format!("question/{}", q.id),
        Some(tenant),
        &detail.to_string(),
    )
}

/// Who reads a question: the controller (its tenant) or the system that
/// asked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuestionReader {
    /// A tenant token: its own tenant's questions.
    Tenant(String),
    /// A platform system: only the questions it asked.
    System(String),
}

/// Question `id` with both texts, for the controller or the system that
/// asked it; anyone else gets NOT_FOUND.
pub async fn get_question(state: &AppState, reader: QuestionReader, id: String) -> Result<QuestionView> {
    let secrets = state.secrets.clone();
    state
        .store
        .read("subject_request.question", move |c, _| {
            let q = match &reader {
                QuestionReader::Tenant(t) => store::question(c, Some(t), &id)?,
                QuestionReader::System(sys) => {
                    let q = store::question(c, None, &id)?;
                    if &q.asked_by != sys {
                        return Err(Error::Missing(format!("question {id}")));
                    }
                    q
                }
            };
            open_question(&secrets.ring, q, Reveal::Identity)
        })
        .await
}

/// Records sub-processor `sub_processor_id`'s confirmation that it deleted
/// `tenant`'s data (compliance, from the sub-processor's statement), or
/// replaces an earlier one; the deletion certificate lists it. An unknown
/// sub-processor is NOT_FOUND; a confirmation dated in the future is
/// INVALID_ARGUMENT on `confirmed_at`.
pub async fn confirm_sub_processor_deletion(
    state: &AppState,
    actor: Actor,
    tenant: String,
    sub_processor_id: String,
    confirmed_at: chrono::DateTime<chrono::Utc>,
    reference: String,
) -> Result<store::DeletionConfirmation> {
    // The registry is the sub-processors capability's: asked through its
    // service (NOT_FOUND for an id it does not have).
    crate::subprocessors::service::get(state, sub_processor_id.clone()).await?;
    state
        .command("subject_request.sub_processor_deletion", actor, move |tx| {
            crate::db::key_lock(tx.conn(), "subject_request.deletion", &tenant)?;
            let now = tx.now();
            if confirmed_at > now + chrono::Duration::seconds(RECEIVED_AT_SKEW_SECONDS) {
                return Err(Error::invalid("confirmed_at", "must not be in the future"));
            }
            let c = store::DeletionConfirmation {
                tenant_id: tenant.clone(),
                sub_processor_id: sub_processor_id.clone(),
                confirmed_at,
                reference: reference.clone(),
                recorded_by: tx.actor().sub.clone(),
                recorded_at: now,
            };
            store::upsert_confirmation(tx.conn(), &c)?;
            let detail = serde_json::json!({
                "sub_processor_id": sub_processor_id,
                "confirmed_at": dom::rfc3339_us(confirmed_at),
                "reference": reference,
            });
            tx.audit(
                "subject_request.sub_processor_deletion",
                &format!("tenant/{tenant}"),
                Some(&tenant),
                &detail.to_string(),
            )?;
            Ok(c)
        })
        .await
}

/// A signed deletion certificate: the document (JSON text), the Ed25519
/// signature of its UTF-8 bytes under the receipt key, and that key's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCertificate {
    /// The JSON document.
    pub document: String,
    /// Ed25519 signature of `document`'s bytes.
    pub signature: Vec<u8>,
    /// The receipt key that signed it (`GetReceiptKey`).
    pub key_id: String,
}

/// `tenant`'s deletion certificate, once its contract-end erasure has
/// completed (FAILED_PRECONDITION before): each system's completion (time,
/// records, `no_data_held`), each sub-processor's confirmation, and the
/// categories withheld under a legal hold, signed with the receipt key so
/// it verifies offline.
pub async fn deletion_certificate(state: &AppState, tenant: String) -> Result<SignedCertificate> {
    let secrets = state.secrets.clone();
    state
        .store
        .read("subject_request.deletion_certificate", move |c, clock| {
            let erasure = store::by_idempotency(c, &tenant, Origin::ContractEnd, dom::CONTRACT_END_KEY)?;
            dom::certificate_ready(erasure.as_ref().map(|r| r.status))?;
            let erasure = erasure.ok_or_else(|| Error::Unexpected("erasure vanished".into()))?;
            let tasks = store::tasks_of(c, std::slice::from_ref(&erasure.id))?;
            let systems = tasks
                .iter()
                .filter(|t| t.status == TaskStatus::Done)
                .map(|t| dom::SystemDeletion {
                    system: t.system.clone(),
                    completed_at: dom::rfc3339_us(t.updated_at),
                    records_affected: t.records_affected,
                    no_data_held: t.no_data_held,
                })
                .collect();
            let sub_processors = store::confirmations(c, &tenant)?
                .into_iter()
                .map(|d| dom::SubProcessorDeletion {
                    sub_processor_id: d.sub_processor_id,
                    confirmed_at: dom::rfc3339_us(d.confirmed_at),
                    reference: d.reference,
                })
                .collect();
            let ended = crate::instructions::repo::tenant_state(c, &tenant)?.and_then(|s| s.terminated_at);
            let completed = erasure.closed_at.unwrap_or(erasure.created_at);
            let document = dom::DeletionCertificate {
                format: dom::CERTIFICATE_FORMAT,
                tenant_id: tenant.clone(),
                contract_ended_at: ended.map(dom::rfc3339_us),
                erasure_request_id: erasure.id.clone(),
                erasure_opened_at: dom::rfc3339_us(erasure.created_at),
                erasure_completed_at: dom::rfc3339_us(completed),
                systems,
                sub_processors,
                withheld_categories: crate::instructions::service::withheld_categories(
                    c,
                    std::slice::from_ref(&erasure.id),
                )?
                .remove(&erasure.id)
                .unwrap_or_default(),
                issued_at: dom::rfc3339_us(clock.now()),
            }
            .document();
            Ok(SignedCertificate {
                signature: secrets.receipt.sign(document.as_bytes()),
                key_id: secrets.receipt.key_id().to_owned(),
                document,
            })
        })
        .await
}

/// Starts an artefact upload of `system`'s task `task_id`: only an access
/// or portability task (else FAILED_PRECONDITION), currently leased to the
/// system (else FAILED_PRECONDITION; another system's task is NOT_FOUND),
/// and one file name once per task (ALREADY_EXISTS). Returns the
/// artefact's id; its bytes follow with [`append_artifact_chunk`].
pub async fn start_artifact(
    state: &AppState,
    actor: Actor,
    system: String,
    task_id: String,
    file_name: String,
    content_type: String,
) -> Result<store::ArtifactRecord> {
    state
        .command("subject_request.artifact_start", actor, move |tx| {
            let task = lock_task(tx, &system, &task_id)?;
            let now = tx.now();
            refuse_unleased(&task, now)?;
            if !task.request_type.exports() {
                return Err(Error::WrongState(format!(
                    "a {} task takes no files",
                    task.request_type.as_str()
                )));
            }
            if store::artifacts_of_task(tx.conn(), &task.id)?
                .iter()
                .any(|a| a.file_name == file_name)
            {
                return Err(Error::Duplicate(format!(
                    "the task already has a file named {file_name:?}"
                )));
            }
            let a = store::ArtifactRecord {
                id: uuid::Uuid::new_v4().to_string(),
                task_id: task.id.clone(),
                request_id: task.request_id.clone(),
                system: task.system.clone(),
                file_name,
                content_type,
                size: 0,
                sha256: String::new(),
                complete: false,
            };
            store::insert_artifact(tx.conn(), now, &a)?;
            Ok(a)
        })
        .await
}

/// A task takes files only while leased to its system.
fn refuse_unleased(task: &TaskRecord, now: chrono::DateTime<chrono::Utc>) -> Result<()> {
    refuse_terminal(task)?;
    match (task.status, task.lease_until) {
        (TaskStatus::Leased, Some(until)) if until > now => Ok(()),
        _ => Err(Error::WrongState(
            "the task is not leased to this system; pull it first".into(),
        )),
    }
}

/// Seals and stores chunk `idx` of an artefact being uploaded.
pub async fn append_artifact_chunk(
    state: &AppState,
    actor: Actor,
    artifact_id: String,
    idx: i64,
    data: Vec<u8>,
) -> Result<()> {
    let secrets = state.secrets.clone();
    state
        .command("subject_request.artifact_chunk", actor, move |tx| {
            store::insert_artifact_chunk(tx.conn(), &secrets.ring, &artifact_id, idx, &data)
        })
        .await
}

/// Completes an artefact of `system`'s task with its size and checksum,
/// audited (ids, size and checksum only). The task must still be leased.
pub async fn finish_artifact(
    state: &AppState,
    actor: Actor,
    system: String,
    artifact_id: String,
    size: i64,
    sha256: String,
) -> Result<store::ArtifactRecord> {
    state
        .command("subject_request.artifact", actor, move |tx| {
            let a = store::artifact(tx.conn(), &artifact_id)?;
            let task = lock_task(tx, &system, &a.task_id)?;
            refuse_unleased(&task, tx.now())?;
            store::complete_artifact(tx.conn(), &a.id, size, &sha256)?;
            let detail = serde_json::json!({
                "request_id": a.request_id,
                "task_id": a.task_id,
                "size": size,
                "sha256": sha256,
            });
            tx.audit(
                "subject_request.upload_artifact",
                &format!("artifact/{}", a.id),
                Some(&task.tenant_id),
                &detail.to_string(),
            )?;
            store::artifact(tx.conn(), &a.id)
        })
        .await
}

/// Deletes an upload that did not finish (refused, too large, cancelled).
pub async fn abort_artifact(state: &AppState, actor: Actor, artifact_id: String) -> Result<()> {
    state
        .command("subject_request.artifact_abort", actor, move |tx| {
            store::delete_artifact(tx.conn(), &artifact_id)
        })
        .await
}

/// The complete artefacts of request `request_id`.
pub async fn artifacts(store: &Store, request_id: String) -> Result<Vec<store::ArtifactRecord>> {
    store
        .read("subject_request.artifacts", move |c, _| {
            store::artifacts_of_request(c, &request_id)
        })
        .await
}

/// Up to `limit` chunks of artefact `id` after chunk `after`, in the clear.
pub async fn artifact_chunks(
    store: &Store,
    secrets: Arc<SubjectSecrets>,
    id: String,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, Vec<u8>)>> {
    store
        .read("subject_request.artifact_chunks", move |c, _| {
            store::artifact_chunks(c, &secrets.ring, &id, after, limit)
        })
        .await
}
