//! `SubjectRequestService`: platform services forward requests to
//! controllers; controllers submit, follow, extend, cancel and export their
//! own; platform systems work the fulfilment tasks of their own name;
//! compliance reads everything (without identifiers); sre sees counts.
//!
//! Identifiers are sealed here, before the store sees them, and opened only
//! for the two parties that need them while a request is open: the
//! controller (to answer the person) and the system holding a task (to find
//! the data).

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Role};
use crate::error::Error;
use crate::inbox::model::PullSpec;
use crate::proto::v1 as pb;
use crate::proto::v1::subject_request_service_server::SubjectRequestService;
use crate::rpc::convert::{from_ts, ts};
use crate::rpc::page::Page;
use crate::rpc::{AppState, audit_entry, caller};
use crate::secrets::sealed::Field;
use crate::subject_requests::model as dom;
use crate::subject_requests::model::{
    CanonicalBody, IdKind, Origin, Regime, RejectionGround, RequestType, Subject, TaskStatus,
};
use crate::subject_requests::repo as store;
use crate::subject_requests::repo::{
    Closing, Completion, ExportStart, ListFilter, NewRequest, RequestRecord, Sealed, TaskRecord,
};
use crate::validate::Violations;

/// How often a watch looks for changes made by other replicas.
const WATCH_POLL: Duration = Duration::from_secs(1);
/// Export chunks read per query while streaming a bundle.
const EXPORT_BATCH: i64 = 16;

/// The subject-request service.
#[derive(Debug, Clone)]
pub struct SubjectRequests {
    state: AppState,
    export_retention: chrono::Duration,
}

impl SubjectRequests {
    /// A service over `state` (whose secrets protect identifiers, exports
    /// and receipts), keeping export bundles `export_retention` after first
    /// download.
    pub fn new(state: AppState, export_retention: chrono::Duration) -> Self {
        Self {
            state,
            export_retention,
        }
    }
}

/// What is sealed: everything that identifies or quotes the person.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct SealedBody {
    subject: Subject,
    #[serde(default)]
    message: String,
}

fn request_type(v: i32, field: &str, vs: &mut Violations) -> Option<RequestType> {
    let t = match pb::RequestType::try_from(v) {
        Ok(pb::RequestType::Access) => Some(RequestType::Access),
        Ok(pb::RequestType::Portability) => Some(RequestType::Portability),
        Ok(pb::RequestType::Rectification) => Some(RequestType::Rectification),
        Ok(pb::RequestType::Restriction) => Some(RequestType::Restriction),
        Ok(pb::RequestType::Erasure) => Some(RequestType::Erasure),
        Ok(pb::RequestType::Objection) => Some(RequestType::Objection),
        Ok(pb::RequestType::WithdrawConsent) => Some(RequestType::WithdrawConsent),
        Ok(pb::RequestType::Unspecified) | Err(_) => None,
    };
    vs.check(t.is_none(), field, "is required (a REQUEST_TYPE_* value)");
    t
}

fn type_pb(t: RequestType) -> pb::RequestType {
    match t {
        RequestType::Access => pb::RequestType::Access,
        RequestType::Portability => pb::RequestType::Portability,
        RequestType::Rectification => pb::RequestType::Rectification,
        RequestType::Restriction => pb::RequestType::Restriction,
        RequestType::Erasure => pb::RequestType::Erasure,
        RequestType::Objection => pb::RequestType::Objection,
        RequestType::WithdrawConsent => pb::RequestType::WithdrawConsent,
    }
}

fn regime(v: i32, vs: &mut Violations) -> Regime {
    match pb::Regime::try_from(v) {
        Ok(pb::Regime::Gdpr) | Ok(pb::Regime::Unspecified) => Regime::Gdpr,
        Ok(pb::Regime::Ccpa) => Regime::Ccpa,
        Ok(pb::Regime::Lgpd) => Regime::Lgpd,
        Err(_) => {
            vs.add("regime", "is not a REGIME_* value");
            Regime::Gdpr
        }
    }
}

fn regime_pb(r: Regime) -> pb::Regime {
    match r {
        Regime::Gdpr => pb::Regime::Gdpr,
        Regime::Ccpa => pb::Regime::Ccpa,
        Regime::Lgpd => pb::Regime::Lgpd,
    }
}

fn status_pb(s: dom::Status) -> pb::Status {
    match s {
        dom::Status::Received => pb::Status::Received,
        dom::Status::Forwarded => pb::Status::Forwarded,
        dom::Status::InProgress => pb::Status::InProgress,
        dom::Status::Completed => pb::Status::Completed,
        dom::Status::Rejected => pb::Status::Rejected,
        dom::Status::Cancelled => pb::Status::Cancelled,
    }
}

fn task_status_pb(s: TaskStatus) -> pb::TaskStatus {
    match s {
        TaskStatus::Pending => pb::TaskStatus::Pending,
        TaskStatus::Leased => pb::TaskStatus::Leased,
        TaskStatus::Done => pb::TaskStatus::Done,
        TaskStatus::Failed => pb::TaskStatus::Failed,
        TaskStatus::Cancelled => pb::TaskStatus::Cancelled,
    }
}

fn subject_pb(s: &Subject) -> pb::Subject {
    pb::Subject {
        email: s.email.clone().unwrap_or_default(),
        phone: s.phone.clone().unwrap_or_default(),
        name: s.name.clone().unwrap_or_default(),
        external_id: s.external_id.clone().unwrap_or_default(),
    }
}

/// The tenant whose rows the caller sees: its own for a tenant token,
/// every tenant's otherwise.
fn visible_tenant(c: &Caller) -> Result<Option<String>, Status> {
    match c.role {
        Role::Tenant => c
            .tenant_id
            .clone()
            .map(Some)
            .ok_or_else(|| Status::permission_denied("tenant token without tenant_id")),
        _ => Ok(None),
    }
}

fn required_id(id: &str, field: &str) -> Result<(), Error> {
    let mut v = Violations::new();
    v.required_text(field, id, 64);
    v.finish()
}

impl SubjectRequests {
    fn open_sealed(&self, id: &str, sealed: &Sealed) -> Result<SealedBody, Status> {
        let raw = sealed.open(&self.state.secrets.ring, id)?;
        serde_json::from_slice(&raw)
            .map_err(|_| Error::Unexpected("sealed identifiers are not JSON".into()).into())
    }

    fn task_pb(
        &self,
        t: TaskRecord,
        subject_ref: Option<&str>,
        subject: Option<&Subject>,
    ) -> Result<pb::Task, Status> {
        let error = t.error.open(&self.state.secrets.ring, Field::TaskError, &t.id)?;
        Ok(pb::Task {
            id: t.id,
            request_id: t.request_id,
            system: t.system,
            request_type: type_pb(t.request_type) as i32,
            status: task_status_pb(t.status) as i32,
            categories: t.categories,
            lease_expires_at: t.lease_until.map(ts),
            records_affected: u64::try_from(t.records_affected).unwrap_or(0),
            error,
            tenant_id: t.tenant_id,
            subject_ref: subject_ref.unwrap_or_default().to_owned(),
            subject: subject.map(subject_pb),
            created_at: Some(ts(t.created_at)),
            attempts: u32::try_from(t.attempts).unwrap_or(0),
        })
    }

    /// The wire form; `reveal` opens the sealed identifiers (the controller
    /// only, and only while the request is open).
    fn request_pb(
        &self,
        r: RequestRecord,
        tasks: Vec<TaskRecord>,
        reveal: bool,
    ) -> Result<pb::SubjectRequest, Status> {
        let body = match (&r.sealed, reveal) {
            (Some(s), true) => Some(self.open_sealed(&r.id, s)?),
            _ => None,
        };
        let sref = r.subject_ref.clone();
        let reasons = r.reasons.open(&self.state.secrets.ring, &r.id)?;
        Ok(pb::SubjectRequest {
            tasks: tasks
                .into_iter()
                .filter(|t| t.request_id == r.id)
                .map(|t| self.task_pb(t, sref.as_deref(), None))
                .collect::<Result<_, _>>()?,
            id: r.id,
            tenant_id: r.tenant_id,
            request_type: type_pb(r.request_type) as i32,
            status: status_pb(r.status) as i32,
            received_at: Some(ts(r.received_at)),
            due_at: Some(ts(r.due_at)),
            regime: regime_pb(r.regime) as i32,
            categories: r.categories,
            sla_due_at: Some(ts(r.sla_due_at)),
            extended: r.extended,
            receipt: Some(pb::Receipt {
                digest: r.body_digest,
                issued_at: Some(ts(r.receipt.issued_at)),
                signature: r.receipt.signature,
                key_id: r.receipt.key_id,
            }),
            channel: r.channel,
            subject: body.as_ref().map(|b| subject_pb(&b.subject)),
            subject_ref: sref.unwrap_or_default(),
            idempotency_key: r.idempotency_key,
            closed_at: r.closed_at.map(ts),
            extension_reason: reasons.extension,
            message: body.map(|b| b.message).unwrap_or_default(),
            close_reason: reasons.close,
            rejection_ground: r.rejection_ground.map_or(0, ground_to_pb),
        })
    }

    async fn load(
        &self,
        tenant: Option<String>,
        id: String,
    ) -> Result<(RequestRecord, Vec<TaskRecord>), Status> {
        Ok(self
            .state
            .store
            .read("subject_request.get", move |c, _| {
                let r = store::get(c, tenant.as_deref(), &id)?;
                let tasks = store::tasks_of(c, std::slice::from_ref(&r.id))?;
                Ok((r, tasks))
            })
            .await?)
    }

    /// Runs `change`, one command on one request, as one write transaction,
    /// and reads the request's tasks in it, for the reply.
    async fn write_request(
        &self,
        op: &'static str,
        change: impl FnOnce(
            &mut crate::db::DbConnection,
            &crate::clock::SharedClock,
        ) -> Result<RequestRecord, Error>
        + Send
        + 'static,
    ) -> Result<(RequestRecord, Vec<TaskRecord>), Status> {
        Ok(self
            .state
            .store
            .write(op, move |c, clock| {
                let rec = change(c, clock)?;
                let tasks = store::tasks_of(c, std::slice::from_ref(&rec.id))?;
                Ok((rec, tasks))
            })
            .await?)
    }

    /// Seals and records a forwarded or submitted request, once validated.
    async fn record(
        &self,
        who: &Caller,
        incoming: Incoming,
        action: &str,
    ) -> Result<pb::SubjectRequest, Status> {
        let Incoming {
            tenant,
            origin,
            ty,
            regime,
            subject,
            categories,
            received_at,
            channel,
            message,
            idempotency_key,
        } = incoming;
        let key = &self.state.secrets.hash_key;
        let digest = dom::body_digest(
            key,
            &CanonicalBody {
                tenant_id: &tenant,
                origin: origin.as_str(),
                request_type: ty.as_str(),
                regime: regime.as_str(),
                subject: &subject,
                categories: &categories,
                received_at_us: received_at.map(crate::db::to_us),
                channel: &channel,
                message: &message,
            },
        );
        let id = uuid::Uuid::new_v4().to_string();
        let refs = subject.refs(key, &tenant);
        let plain = serde_json::to_vec(&SealedBody { subject, message })
            .map_err(|e| Error::Unexpected(format!("encode identifiers: {e}")))?;
        let sealed = Sealed::seal(&self.state.secrets.ring, &id, &plain)?;
        let new = NewRequest {
            id,
            tenant_id: tenant.clone(),
            origin,
            request_type: ty,
            regime,
            channel,
            idempotency_key,
            body_digest: digest,
            subject_refs: refs,
            sealed: Some(sealed),
            categories,
            received_at,
        };
        let entry = audit_entry(who, Some(&tenant), action, "", "ok");
        let secrets = self.state.secrets.clone();
        let (rec, tasks) = self
            .write_request("subject_request.submit", move |c, clock| {
                Ok(store::submit(c, clock.now(), new, &secrets.receipt, entry)?.0)
            })
            .await?;
        self.state.follow_decisions().await;
        self.request_pb(rec, tasks, who.role == Role::Tenant)
    }

    /// Cancels or rejects (per `closing`) one of the caller's requests.
    async fn close(
        &self,
        who: &Caller,
        id: String,
        closing: Closing,
        action: &'static str,
    ) -> Result<Response<pb::SubjectRequest>, Status> {
        let tenant = visible_tenant(who)?.unwrap_or_default();
        let entry = audit_entry(who, Some(&tenant), action, &id, "ok");
        let secrets = self.state.secrets.clone();
        let (rec, tasks) = self
            .write_request(action, move |c, clock| {
                store::close(c, clock.now(), &secrets.ring, &tenant, &id, closing, entry)
            })
            .await?;
        self.state.follow_decisions().await;
        Ok(Response::new(self.request_pb(rec, tasks, true)?))
    }
}

fn ground_to_pb(g: RejectionGround) -> i32 {
    (match g {
        RejectionGround::ManifestlyUnfounded => pb::RejectionGround::ManifestlyUnfounded,
        RejectionGround::Excessive => pb::RejectionGround::Excessive,
        RejectionGround::IdentityNotVerified => pb::RejectionGround::IdentityNotVerified,
        RejectionGround::LegalExemption => pb::RejectionGround::LegalExemption,
    }) as i32
}

fn ground_from_pb(v: i32) -> Option<RejectionGround> {
    match pb::RejectionGround::try_from(v).ok()? {
        pb::RejectionGround::Unspecified => None,
        pb::RejectionGround::ManifestlyUnfounded => Some(RejectionGround::ManifestlyUnfounded),
        pb::RejectionGround::Excessive => Some(RejectionGround::Excessive),
        pb::RejectionGround::IdentityNotVerified => Some(RejectionGround::IdentityNotVerified),
        pb::RejectionGround::LegalExemption => Some(RejectionGround::LegalExemption),
    }
}

/// A validated request on its way in, forwarded or submitted.
struct Incoming {
    tenant: String,
    origin: Origin,
    ty: RequestType,
    regime: Regime,
    subject: Subject,
    categories: Vec<String>,
    received_at: Option<chrono::DateTime<chrono::Utc>>,
    channel: String,
    message: String,
    idempotency_key: String,
}

/// `received_at`, with a bad timestamp recorded among the violations.
fn received_at(
    t: Option<&prost_types::Timestamp>,
    v: &mut Violations,
) -> Option<chrono::DateTime<chrono::Utc>> {
    match from_ts(t, "received_at") {
        Ok(at) => at,
        Err(e) => {
            if let Error::Invalid(found) = e {
                found.into_iter().for_each(|f| v.add(f.field, f.description));
            }
            None
        }
    }
}

fn parse_subject(s: Option<&pb::Subject>, v: &mut Violations) -> Subject {
    let s = s.cloned().unwrap_or_default();
    Subject::parse(&s.email, &s.phone, &s.name, &s.external_id, "subject", v)
}

type RequestStream = Pin<Box<dyn Stream<Item = Result<pb::SubjectRequest, Status>> + Send>>;
type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::ExportChunk, Status>> + Send>>;

#[tonic::async_trait]
impl SubjectRequestService for SubjectRequests {
    async fn forward_to_controller(
        &self,
        req: Request<pb::ForwardToControllerRequest>,
    ) -> Result<Response<pb::SubjectRequest>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("tenant_id", &r.tenant_id, 128);
        let ty = request_type(r.request_type, "request_type", &mut v);
        let subject = parse_subject(r.subject.as_ref(), &mut v);
        v.max_len("channel", &r.channel, 64);
        v.max_len("message", &r.message, 8000);
        dom::check_idempotency_key(&r.idempotency_key, "idempotency_key", &mut v);
        let received_at = received_at(r.received_at.as_ref(), &mut v);
        v.finish()?;
        let tenant = self
            .state
            .scope_tenant(&who, &r.tenant_id, "SubjectRequestService/ForwardToController")
            .await?
            .unwrap_or_default();
        let incoming = Incoming {
            tenant,
            origin: Origin::Forwarded,
            ty: ty.expect("validated"),
            regime: Regime::Gdpr,
            subject,
            categories: Vec::new(),
            received_at,
            channel: r.channel,
            message: r.message,
            idempotency_key: r.idempotency_key,
        };
        Ok(Response::new(
            self.record(&who, incoming, "subject_request.forward").await?,
        ))
    }

    async fn submit_subject_request(
        &self,
        req: Request<pb::SubmitSubjectRequestRequest>,
    ) -> Result<Response<pb::SubjectRequest>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let tenant = self
            .state
            .scope_tenant(&who, &r.tenant_id, "SubjectRequestService/SubmitSubjectRequest")
            .await?
            .ok_or_else(|| Status::permission_denied("a tenant token is required"))?;
        let mut v = Violations::new();
        let ty = request_type(r.request_type, "request_type", &mut v);
        let subject = parse_subject(r.subject.as_ref(), &mut v);
        let cats = dom::parse_categories(&r.categories, "categories", &mut v);
        let regime = regime(r.regime, &mut v);
        dom::check_idempotency_key(&r.idempotency_key, "idempotency_key", &mut v);
        let received_at = received_at(r.received_at.as_ref(), &mut v);
        v.finish()?;
        let incoming = Incoming {
            tenant,
            origin: Origin::Submitted,
            ty: ty.expect("validated"),
            regime,
            subject,
            categories: cats,
            received_at,
            channel: String::new(),
            message: String::new(),
            idempotency_key: r.idempotency_key,
        };
        Ok(Response::new(
            self.record(&who, incoming, "subject_request.submit").await?,
        ))
    }

    async fn get_subject_request(
        &self,
        req: Request<pb::GetSubjectRequestRequest>,
    ) -> Result<Response<pb::SubjectRequest>, Status> {
        let who = caller(&req)?;
        let id = req.into_inner().id;
        required_id(&id, "id")?;
        let (r, tasks) = self.load(visible_tenant(&who)?, id).await?;
        Ok(Response::new(self.request_pb(
            r,
            tasks,
            who.role == Role::Tenant,
        )?))
    }

    async fn list_subject_requests(
        &self,
        req: Request<pb::ListSubjectRequestsRequest>,
    ) -> Result<Response<pb::ListSubjectRequestsResponse>, Status> {
        let crate::rpc::Scope { caller: who, tenant } =
            self.state.scope(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let mut v = Violations::new();
        let status = match pb::Status::try_from(r.status) {
            Ok(pb::Status::Unspecified) => None,
            Ok(s) => dom::Status::parse(&s.as_str_name().trim_start_matches("STATUS_").to_lowercase()),
            Err(_) => {
                v.add("status", "is not a STATUS_* value");
                None
            }
        };
        let now = self.state.store.clock().now();
        let due_before = match &r.due_within {
            None => None,
            Some(d) if d.seconds < 0 || d.nanos < 0 => {
                v.add("due_within", "must not be negative");
                None
            }
            Some(d) => Some(now + chrono::Duration::seconds(d.seconds.min(10 * 366 * 86_400))),
        };
        v.finish()?;
        let filter = ListFilter {
            tenant,
            status,
            overdue_only: r.overdue_only,
            due_before,
        };
        let (after, size) = (page.after, page.size);
        let (rows, overdue, tasks) = self
            .state
            .store
            .read("subject_request.list", move |c, clock| {
                let (rows, overdue) = store::list(c, clock.now(), &filter, after, size)?;
                let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
                let tasks = store::tasks_of(c, &ids)?;
                Ok((rows, overdue, tasks))
            })
            .await?;
        let next = page.next_token(rows.len(), rows.last().map(|r| r.seq));
        let reveal = who.role == Role::Tenant;
        let mut by_request: HashMap<String, Vec<TaskRecord>> = HashMap::new();
        for t in tasks {
            by_request.entry(t.request_id.clone()).or_default().push(t);
        }
        let requests = rows
            .into_iter()
            .map(|r| {
                let tasks = by_request.remove(&r.id).unwrap_or_default();
                self.request_pb(r, tasks, reveal)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(pb::ListSubjectRequestsResponse {
            requests,
            next_page_token: next,
            overdue_count: overdue,
        }))
    }

    type WatchSubjectRequestStream = RequestStream;

    async fn watch_subject_request(
        &self,
        req: Request<pb::WatchSubjectRequestRequest>,
    ) -> Result<Response<Self::WatchSubjectRequestStream>, Status> {
        let who = caller(&req)?;
        let slot = self.state.streams.open(&who)?;
        let id = req.into_inner().id;
        required_id(&id, "id")?;
        let tenant = visible_tenant(&who)?;
        // Existence (and visibility) is checked before the stream opens.
        self.load(tenant.clone(), id.clone()).await?;
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        let mut changes = self
            .state
            .store
            .follow(crate::db::notify::Topic::SubjectRequest(id.clone()));
        let stopping = self.state.stopping.clone();
        let reveal = who.role == Role::Tenant;
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                match this.load(tenant.clone(), id.clone()).await {
                    Ok((r, tasks)) => {
                        if r.version != seen {
                            seen = r.version;
                            let open = r.status.is_open();
                            let msg = this.request_pb(r, tasks, reveal);
                            if tx.send(msg).await.is_err() || !open {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = stopping.cancelled() => return,
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                }
            }
        });
        Ok(Response::new(crate::rpc::streams::hold(
            slot,
            ReceiverStream::new(rx),
        )))
    }

    async fn cancel_subject_request(
        &self,
        req: Request<pb::CancelSubjectRequestRequest>,
    ) -> Result<Response<pb::SubjectRequest>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("id", &r.id, 64);
        v.max_len("reason", &r.reason, 1000);
        v.finish()?;
        let closing = Closing {
            reason: Some(r.reason.trim().to_owned()),
            ground: None,
        };
        self.close(&who, r.id, closing, "subject_request.cancel").await
    }

    async fn reject_subject_request(
        &self,
        req: Request<pb::RejectSubjectRequestRequest>,
    ) -> Result<Response<pb::SubjectRequest>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("id", &r.id, 64);
        v.required_text("reason", &r.reason, 1000);
        let ground = ground_from_pb(r.ground);
        v.check(
            ground.is_none(),
            "ground",
            "must name a RejectionGround (manifestly unfounded, excessive, identity not verified, legal exemption)",
        );
        v.finish()?;
        let closing = Closing {
            reason: Some(r.reason.trim().to_owned()),
            ground,
        };
        self.close(&who, r.id, closing, "subject_request.reject").await
    }

    async fn extend_deadline(
        &self,
        req: Request<pb::ExtendDeadlineRequest>,
    ) -> Result<Response<pb::SubjectRequest>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("id", &r.id, 64);
        v.required_text("reason", &r.reason, 1000);
        v.finish()?;
        let tenant = visible_tenant(&who)?.unwrap_or_default();
        let entry = audit_entry(&who, Some(&tenant), "subject_request.extend", &r.id, "ok");
        let secrets = self.state.secrets.clone();
        let (rec, tasks) = self
            .write_request("subject_request.extend", move |c, clock| {
                store::extend(
                    c,
                    clock.now(),
                    &secrets.ring,
                    &tenant,
                    &r.id,
                    r.reason.trim(),
                    entry,
                )
            })
            .await?;
        Ok(Response::new(self.request_pb(rec, tasks, true)?))
    }

    type GetExportStream = ChunkStream;

    async fn get_export(
        &self,
        req: Request<pb::GetExportRequest>,
    ) -> Result<Response<Self::GetExportStream>, Status> {
        let who = caller(&req)?;
        let slot = self.state.streams.open(&who)?;
        let id = req.into_inner().id;
        required_id(&id, "id")?;
        let tenant = visible_tenant(&who)?.unwrap_or_default();
        let entry = audit_entry(&who, Some(&tenant), "subject_request.export", &id, "ok");
        let retention = self.export_retention;
        let start = self
            .state
            .store
            .write("subject_request.export", move |c, clock| {
                store::export_start(c, clock.now(), &tenant, &id, retention, entry)
            })
            .await?;
        let (rec, tasks) = match start {
            ExportStart::Ready(r, t) => (r, t),
            ExportStart::Deleted => {
                return Err(Status::failed_precondition(
                    "the export bundle was deleted when its retention after first download ran out",
                ));
            }
        };
        let (tx, rx) = mpsc::channel(8);
        let store = self.state.store.clone();
        let secrets = self.state.secrets.clone();
        tokio::spawn(async move {
            let send = |data: Vec<u8>, system: &str| {
                let tx = tx.clone();
                let system = system.to_owned();
                async move { tx.send(Ok(pb::ExportChunk { data, system })).await.is_ok() }
            };
            let head = serde_json::json!({
                "format": "proctor.export.v1",
                "request": {
                    "id": rec.id,
                    "tenant_id": rec.tenant_id,
                    "request_type": rec.request_type.as_str(),
                    "regime": rec.regime.as_str(),
                    "received_at": rec.received_at.to_rfc3339(),
                    "due_at": rec.due_at.to_rfc3339(),
                    "completed_at": rec.closed_at.map(|t| t.to_rfc3339()),
                    "subject_ref": rec.subject_ref,
                    "categories": rec.categories,
                },
            });
            let head = head.to_string();
            let mut buf = head.as_bytes()[..head.len() - 1].to_vec();
            buf.extend_from_slice(b",\"documents\":[");
            if !send(buf, "").await {
                return;
            }
            let done: Vec<&TaskRecord> = tasks.iter().filter(|t| t.status == TaskStatus::Done).collect();
            for (i, task) in done.iter().enumerate() {
                let open = serde_json::json!({
                    "system": task.system,
                    "request_id": task.request_id,
                    "request_type": task.request_type.as_str(),
                    "categories": task.categories,
                    "records_affected": task.records_affected,
                })
                .to_string();
                let mut doc = if i > 0 { b",".to_vec() } else { Vec::new() };
                doc.extend_from_slice(&open.as_bytes()[..open.len() - 1]);
                doc.extend_from_slice(b",\"records\":[");
                if !send(doc, &task.system).await {
                    return;
                }
                let mut after = 0;
                let mut first = true;
                loop {
                    let tid = task.id.clone();
                    let secrets = secrets.clone();
                    let batch = store
                        .read("subject_request.export_chunks", move |c, _| {
                            store::export_chunks(c, &secrets.ring, &tid, after, EXPORT_BATCH)
                        })
                        .await;
                    let batch = match batch {
                        Ok(b) => b,
                        Err(e) => {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                    };
                    let n = batch.len() as i64;
                    for (seq, data) in batch {
                        after = seq;
                        let inner = dom::array_inner(&data);
                        if inner.is_empty() {
                            continue;
                        }
                        let mut piece = if first { Vec::new() } else { b",".to_vec() };
                        first = false;
                        piece.extend_from_slice(inner);
                        if !send(piece, &task.system).await {
                            return;
                        }
                    }
                    if n < EXPORT_BATCH {
                        break;
                    }
                }
                if !send(b"]}".to_vec(), &task.system).await {
                    return;
                }
            }
            let _ = send(b"]}".to_vec(), "").await;
        });
        Ok(Response::new(crate::rpc::streams::hold(
            slot,
            ReceiverStream::new(rx),
        )))
    }

    async fn compute_subject_ref(
        &self,
        req: Request<pb::ComputeSubjectRefRequest>,
    ) -> Result<Response<pb::ComputeSubjectRefResponse>, Status> {
        use pb::compute_subject_ref_request::Identifier;
        let crate::rpc::Scope { caller: _, tenant } =
            self.state.scope(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.check(tenant.is_none(), "tenant_id", "is required");
        let (kind, value) = match &r.identifier {
            Some(Identifier::Email(e)) => (IdKind::Email, dom::normalize_email(e)),
            Some(Identifier::Phone(p)) => (IdKind::Phone, dom::normalize_phone(p)),
            Some(Identifier::ExternalId(x)) => (IdKind::ExternalId, dom::normalize_external_id(x)),
            None => {
                v.add("identifier", "one of email, phone or external_id is required");
                (IdKind::Email, Some(String::new()))
            }
        };
        let field = match kind {
            IdKind::Email => "email",
            IdKind::Phone => "phone",
            IdKind::ExternalId => "external_id",
        };
        v.check(value.is_none(), field, "is not a valid identifier of its kind");
        v.finish()?;
        Ok(Response::new(pb::ComputeSubjectRefResponse {
            subject_ref: dom::subject_ref(
                &self.state.secrets.hash_key,
                &tenant.unwrap_or_default(),
                kind,
                &value.unwrap_or_default(),
            ),
        }))
    }

    async fn register_system(
        &self,
        req: Request<pb::RegisterSystemRequest>,
    ) -> Result<Response<pb::PlatformSystem>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("name", &r.name, 128);
        v.check(
            r.name.chars().any(char::is_whitespace),
            "name",
            "must not contain spaces",
        );
        let cats = dom::parse_categories(&r.categories, "categories", &mut v);
        v.check(
            r.categories.is_empty(),
            "categories",
            "at least one category is required",
        );
        v.finish()?;
        let entry = audit_entry(&who, None, "subject_request.register_system", &r.name, "ok");
        let sys = self
            .state
            .store
            .write("subject_request.register_system", move |c, clock| {
                store::register_system(c, clock.now(), &r.name, &cats, entry)
            })
            .await?;
        Ok(Response::new(pb::PlatformSystem {
            name: sys.name,
            categories: sys.categories,
            registered_at: Some(ts(sys.registered_at)),
        }))
    }

    async fn pull_tasks(
        &self,
        req: Request<pb::PullTasksRequest>,
    ) -> Result<Response<pb::PullTasksResponse>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        if !r.system.is_empty() && r.system != who.sub {
            self.state
                .record_denial(audit_entry(
                    &who,
                    None,
                    "auth.denied",
                    "SubjectRequestService/PullTasks",
                    "other_system",
                ))
                .await;
            return Err(Status::permission_denied(
                "a platform system pulls only its own tasks",
            ));
        }
        let spec = PullSpec::parse(r.max, r.lease_seconds)?;
        let system = who.sub.clone();
        let leased = self
            .state
            .store
            .write("subject_request.pull_tasks", move |c, clock| {
                store::pull_tasks(c, clock.now(), &system, spec)
            })
            .await?;
        let mut tasks = Vec::with_capacity(leased.len());
        for l in leased {
            let body = match &l.sealed {
                Some(s) => Some(self.open_sealed(&l.task.request_id, s)?),
                None => None,
            };
            tasks.push(self.task_pb(
                l.task,
                l.subject_ref.as_deref(),
                body.as_ref().map(|b| &b.subject),
            )?);
        }
        Ok(Response::new(pb::PullTasksResponse { tasks }))
    }

    async fn complete_task(
        &self,
        req: Request<pb::CompleteTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        required_id(&r.task_id, "task_id")?;
        let records = i64::try_from(r.records_affected)
            .map_err(|_| Error::invalid("records_affected", "is out of range"))?;
        let entry = audit_entry(&who, None, "subject_request.complete_task", &r.task_id, "ok");
        let system = who.sub.clone();
        let done = Completion {
            records_affected: records,
            export_data: r.export_data,
            more: r.more,
        };
        let secrets = self.state.secrets.clone();
        let (task, req) = self
            .state
            .store
            .write("subject_request.complete_task", move |c, clock| {
                store::complete_task(c, clock.now(), &secrets.ring, &system, &r.task_id, done, entry)
            })
            .await?;
        self.state.follow_decisions().await;
        Ok(Response::new(self.task_pb(
            task,
            req.subject_ref.as_deref(),
            None,
        )?))
    }

    async fn fail_task(&self, req: Request<pb::FailTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("task_id", &r.task_id, 64);
        v.required_text("error", &r.error, 2000);
        v.finish()?;
        let entry = audit_entry(&who, None, "subject_request.fail_task", &r.task_id, "ok");
        let system = who.sub.clone();
        let secrets = self.state.secrets.clone();
        let task = self
            .state
            .store
            .write("subject_request.fail_task", move |c, clock| {
                store::fail_task(
                    c,
                    clock.now(),
                    &secrets.ring,
                    &system,
                    &r.task_id,
                    r.error.trim(),
                    entry,
                )
            })
            .await?;
        Ok(Response::new(self.task_pb(task, None, None)?))
    }

    async fn count_subject_requests(
        &self,
        req: Request<pb::CountSubjectRequestsRequest>,
    ) -> Result<Response<pb::CountSubjectRequestsResponse>, Status> {
        let who = caller(&req)?;
        let tenant = self
            .state
            .scope_tenant(
                &who,
                &req.get_ref().tenant_id,
                "SubjectRequestService/CountSubjectRequests",
            )
            .await?;
        let (open, overdue, open_tasks) = self
            .state
            .store
            .read("subject_request.count", move |c, clock| {
                store::counts(c, clock.now(), tenant.as_deref())
            })
            .await?;
        Ok(Response::new(pb::CountSubjectRequestsResponse {
            open,
            overdue,
            open_tasks,
        }))
    }

    async fn set_subject_request_settings(
        &self,
        req: Request<pb::SetSubjectRequestSettingsRequest>,
    ) -> Result<Response<pb::SubjectRequestSettings>, Status> {
        let who = caller(&req)?;
        let r = req.into_inner();
        let tenant = self
            .state
            .scope_tenant(
                &who,
                &r.tenant_id,
                "SubjectRequestService/SetSubjectRequestSettings",
            )
            .await?;
        let mut v = Violations::new();
        v.check(tenant.is_none(), "tenant_id", "is required");
        let tz = (!r.time_zone.is_empty()).then(|| r.time_zone.clone());
        v.check(
            tz.as_deref().is_some_and(|z| dom::parse_tz(z).is_none()),
            "time_zone",
            "is not an IANA time-zone name (e.g. Europe/Berlin)",
        );
        v.check(
            r.sla_days > dom::MAX_SLA_DAYS,
            "sla_days",
            format!("must be at most {}", dom::MAX_SLA_DAYS),
        );
        v.finish()?;
        let tenant = tenant.unwrap_or_default();
        let sla = (r.sla_days > 0).then_some(r.sla_days);
        let entry = audit_entry(&who, Some(&tenant), "subject_request.settings", &tenant, "ok");
        let t2 = tenant.clone();
        let s = self
            .state
            .store
            .write("subject_request.settings", move |c, clock| {
                store::put_settings(c, clock.now(), &t2, tz, sla, entry)
            })
            .await?;
        Ok(Response::new(pb::SubjectRequestSettings {
            tenant_id: tenant,
            time_zone: s.time_zone,
            sla_days: s.sla_days,
        }))
    }

    async fn get_subject_request_settings(
        &self,
        req: Request<pb::GetSubjectRequestSettingsRequest>,
    ) -> Result<Response<pb::SubjectRequestSettings>, Status> {
        let who = caller(&req)?;
        let tenant = self
            .state
            .scope_tenant(
                &who,
                &req.get_ref().tenant_id,
                "SubjectRequestService/GetSubjectRequestSettings",
            )
            .await?
            .ok_or_else(|| Error::invalid("tenant_id", "is required"))?;
        let t2 = tenant.clone();
        let s = self
            .state
            .store
            .read("subject_request.settings", move |c, _| store::settings(c, &t2))
            .await?;
        Ok(Response::new(pb::SubjectRequestSettings {
            tenant_id: tenant,
            time_zone: s.time_zone,
            sla_days: s.sla_days,
        }))
    }

    async fn get_receipt_key(
        &self,
        _req: Request<pb::GetReceiptKeyRequest>,
    ) -> Result<Response<pb::ReceiptKey>, Status> {
        let k = &self.state.secrets.receipt;
        Ok(Response::new(pb::ReceiptKey {
            key_id: k.key_id().to_owned(),
            public_key_pem: k.public_key_pem(),
            public_key: k.public_key().to_vec(),
        }))
    }
}
