//! `SubjectRequestService`: platform services forward requests to
//! controllers; controllers submit, follow, extend, cancel and export their
//! own; platform systems work the fulfilment tasks of their own name;
//! compliance reads everything (without identifiers); sre sees counts.
//! Each handler parses its request, scopes it through the policy table,
//! calls [`crate::subject_requests::service`] and converts the opened view.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::Role;
use crate::db::pipeline::Actor;
use crate::error::Error;
use crate::inbox::model::PullSpec;
use crate::proto::v1 as pb;
use crate::proto::v1::subject_request_service_server::SubjectRequestService;
use crate::rpc::convert::{from_ts, ts};
use crate::rpc::page::Page;
use crate::rpc::{AppState, Scope};
use crate::subject_requests::export::{BundleWriter, DocumentHead, RequestHead};
use crate::subject_requests::model as dom;
use crate::subject_requests::model::{
    IdKind, Origin, Regime, RejectionGround, RequestType, Subject, TaskStatus,
};
use crate::subject_requests::repo::{Closing, Completion, ListFilter};
use crate::subject_requests::service::{
    self, Incoming, QuestionReader, QuestionView, RequestView, Reveal, TaskView,
};
use crate::validate::Violations;

/// How often a watch looks for changes made by other replicas.
const WATCH_POLL: Duration = Duration::from_secs(1);
/// Export chunks read per query while streaming a bundle.
const EXPORT_BATCH: i64 = 16;
/// Artefact chunks read per query while streaming a ZIP (each up to
/// [`ARTIFACT_CHUNK`] bytes).
const ARTIFACT_BATCH: i64 = 4;
/// Bytes of an artefact sealed and stored as one chunk.
const ARTIFACT_CHUNK: usize = 1 << 20;
/// Bytes of a ZIP export per streamed message.
const ZIP_PIECE: usize = 64 * 1024;

/// The subject-request service.
#[derive(Debug, Clone)]
pub struct SubjectRequests {
    state: AppState,
    export_retention: chrono::Duration,
    limits: dom::Limits,
}

impl SubjectRequests {
    /// A service over `state` (whose secrets protect identifiers, exports
    /// and receipts), keeping export bundles `export_retention` after first
    /// download.
    pub fn new(state: AppState, export_retention: chrono::Duration) -> Self {
        Self {
            state,
            export_retention,
            limits: dom::Limits::default(),
        }
    }

    /// The same service under the operator's `limits` (task retries,
    /// artefact size) instead of the defaults.
    pub fn with_limits(mut self, limits: dom::Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// Whose reads open the identifiers: only the controller's.
fn reveal(role: Role) -> Reveal {
    if dom::sees_identifiers(role) {
        Reveal::Identity
    } else {
        Reveal::Sealed
    }
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
        dom::Status::AwaitingController => pb::Status::AwaitingController,
    }
}

fn task_status_pb(s: TaskStatus) -> pb::TaskStatus {
    match s {
        TaskStatus::Pending => pb::TaskStatus::Pending,
        TaskStatus::Leased => pb::TaskStatus::Leased,
        TaskStatus::Done => pb::TaskStatus::Done,
        TaskStatus::Failed => pb::TaskStatus::Failed,
        TaskStatus::Cancelled => pb::TaskStatus::Cancelled,
        TaskStatus::NeedsAttention => pb::TaskStatus::NeedsAttention,
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

fn required_id(id: &str, field: &str) -> Result<(), Error> {
    let mut v = Violations::new();
    v.required_text(field, id, 64);
    v.finish()
}

fn task_pb(t: TaskView) -> pb::Task {
    let TaskView {
        task: t,
        error,
        subject_ref,
        subject,
        corrections,
    } = t;
    pb::Task {
        corrections: corrections.into_iter().map(correction_pb).collect(),
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
        subject_ref: subject_ref.unwrap_or_default(),
        subject: subject.as_ref().map(subject_pb),
        created_at: Some(ts(t.created_at)),
        attempts: u32::try_from(t.attempts).unwrap_or(0),
        no_data_held: t.no_data_held,
        next_attempt_at: t.next_attempt_at.map(ts),
    }
}

fn correction_pb(c: dom::Correction) -> pb::Correction {
    pb::Correction {
        category: c.category,
        field: c.field,
        value: c.value,
    }
}

fn question_pb(q: QuestionView) -> pb::ControllerQuestion {
    let QuestionView {
        record: r,
        question,
        answer,
    } = q;
    pb::ControllerQuestion {
        id: r.id,
        request_id: r.request_id,
        asked_by: r.asked_by,
        question,
        asked_at: Some(ts(r.asked_at)),
        answer,
        answered_at: r.answered_at.map(ts),
    }
}

fn request_pb(v: RequestView) -> pb::SubjectRequest {
    let RequestView {
        record: r,
        tasks,
        identity,
        reasons,
        withheld_categories,
        questions,
    } = v;
    pb::SubjectRequest {
        withheld_categories,
        questions: questions.into_iter().map(question_pb).collect(),
        corrections: identity
            .as_ref()
            .map(|i| i.corrections.iter().cloned().map(correction_pb).collect())
            .unwrap_or_default(),
        sla_paused_since: r.sla_paused_at.map(ts),
        tasks: tasks.into_iter().map(task_pb).collect(),
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
        subject: identity.as_ref().map(|b| subject_pb(&b.subject)),
        subject_ref: r.subject_ref.unwrap_or_default(),
        idempotency_key: r.idempotency_key,
        closed_at: r.closed_at.map(ts),
        extension_reason: reasons.extension,
        message: identity.map(|b| b.message).unwrap_or_default(),
        close_reason: reasons.close,
        rejection_ground: r.rejection_ground.map_or(0, ground_to_pb),
    }
}

/// A forward, parsed: the request type is required, the rest checked.
fn parse_forward(r: pb::ForwardToControllerRequest, tenant: String) -> Result<Incoming, Error> {
    let mut v = Violations::new();
    v.max_len("tenant_id", &tenant, 128);
    let ty = request_type(r.request_type, "request_type", &mut v);
    let subject = parse_subject(r.subject.as_ref(), &mut v);
    v.max_len("channel", &r.channel, 64);
    v.max_len("message", &r.message, 8000);
    dom::check_idempotency_key(&r.idempotency_key, "idempotency_key", &mut v);
    let received_at = received_at(r.received_at.as_ref(), &mut v);
    v.finish()?;
    Ok(Incoming {
        tenant,
        origin: Origin::Forwarded,
        request_type: ty.ok_or_else(|| Error::invalid("request_type", "is required"))?,
        regime: Regime::Gdpr,
        subject,
        categories: Vec::new(),
        received_at,
        channel: r.channel,
        message: r.message,
        idempotency_key: r.idempotency_key,
        corrections: Vec::new(),
    })
}

/// A controller's submission, parsed.
fn parse_submit(r: pb::SubmitSubjectRequestRequest, tenant: String) -> Result<Incoming, Error> {
    let mut v = Violations::new();
    let ty = request_type(r.request_type, "request_type", &mut v);
    let subject = parse_subject(r.subject.as_ref(), &mut v);
    let categories = dom::parse_categories(&r.categories, "categories", &mut v);
    let raw: Vec<dom::Correction> = r
        .corrections
        .into_iter()
        .map(|c| dom::Correction {
            category: c.category,
            field: c.field,
            value: c.value,
        })
        .collect();
    let corrections = dom::parse_corrections(ty, &raw, &mut v);
    let regime = regime(r.regime, &mut v);
    dom::check_idempotency_key(&r.idempotency_key, "idempotency_key", &mut v);
    let received_at = received_at(r.received_at.as_ref(), &mut v);
    v.finish()?;
    Ok(Incoming {
        tenant,
        origin: Origin::Submitted,
        request_type: ty.ok_or_else(|| Error::invalid("request_type", "is required"))?,
        regime,
        subject,
        categories,
        received_at,
        channel: String::new(),
        message: String::new(),
        idempotency_key: r.idempotency_key,
        corrections,
    })
}

/// A listing's filter, parsed, for `tenant` (None: every tenant).
fn parse_filter(
    r: &pb::ListSubjectRequestsRequest,
    tenant: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ListFilter, Error> {
    let mut v = Violations::new();
    let status = match pb::Status::try_from(r.status) {
        Ok(pb::Status::Unspecified) => None,
        Ok(s) => dom::Status::parse(&s.as_str_name().trim_start_matches("STATUS_").to_lowercase()),
        Err(_) => {
            v.add("status", "is not a STATUS_* value");
            None
        }
    };
    let due_before = match &r.due_within {
        None => None,
        Some(d) if d.seconds < 0 || d.nanos < 0 => {
            v.add("due_within", "must not be negative");
            None
        }
        Some(d) => Some(now + chrono::Duration::seconds(d.seconds.min(10 * 366 * 86_400))),
    };
    v.finish()?;
    Ok(ListFilter {
        tenant,
        status,
        overdue_only: r.overdue_only,
        due_before,
    })
}

/// The bundle's header for request `r`.
fn export_head(r: &crate::subject_requests::repo::RequestRecord) -> RequestHead<'_> {
    RequestHead {
        id: &r.id,
        tenant_id: &r.tenant_id,
        request_type: r.request_type.as_str(),
        regime: r.regime.as_str(),
        received_at: r.received_at.to_rfc3339(),
        due_at: r.due_at.to_rfc3339(),
        completed_at: r.closed_at.map(|t| t.to_rfc3339()),
        subject_ref: r.subject_ref.as_deref(),
        categories: &r.categories,
    }
}

/// Writes a ZIP export on a blocking thread, reading its pieces through the
/// service batch by batch: the manifest, each system's records, each file
/// (its checksum verified as it streams). Never holds more than one batch.
struct ZipJob {
    handle: tokio::runtime::Handle,
    store: crate::db::Store,
    secrets: std::sync::Arc<crate::secrets::SubjectSecrets>,
}

fn zip_error(e: zip::result::ZipError) -> Error {
    Error::Unexpected(format!("writing the ZIP export: {e}"))
}

fn io_error(e: std::io::Error) -> Error {
    Error::Unexpected(format!("writing the ZIP export: {e}"))
}

impl ZipJob {
    fn write<W: std::io::Write>(
        &self,
        rec: &crate::subject_requests::repo::RequestRecord,
        tasks: &[crate::subject_requests::repo::TaskRecord],
        artifacts: &[crate::subject_requests::repo::ArtifactRecord],
        sink: W,
    ) -> Result<(), Error> {
        use crate::subject_requests::export::{Manifest, ManifestFile, ManifestSystem, ZIP_FORMAT};
        use std::io::Write;
        let done: Vec<_> = tasks.iter().filter(|t| t.status == TaskStatus::Done).collect();
        let files_of = |task_id: &str| -> Vec<&crate::subject_requests::repo::ArtifactRecord> {
            artifacts.iter().filter(|a| a.task_id == task_id).collect()
        };
        let path_of = |a: &crate::subject_requests::repo::ArtifactRecord| {
            format!(
                "files/{}/{}",
                dom::zip_segment(&a.system),
                dom::zip_segment(&a.file_name)
            )
        };
        let manifest = Manifest {
            format: ZIP_FORMAT,
            request_id: &rec.id,
            request_type: rec.request_type.as_str(),
            regime: rec.regime.as_str(),
            received_at: rec.received_at.to_rfc3339(),
            completed_at: rec.closed_at.map(|t| t.to_rfc3339()),
            systems: done
                .iter()
                .map(|t| ManifestSystem {
                    system: t.system.clone(),
                    categories: t.categories.clone(),
                    records: t.records_affected,
                    no_data_held: t.no_data_held,
                    records_path: format!("records/{}.json", dom::zip_segment(&t.system)),
                    files: files_of(&t.id)
                        .into_iter()
                        .map(|a| ManifestFile {
                            path: path_of(a),
                            file_name: a.file_name.clone(),
                            content_type: a.content_type.clone(),
                            size: a.size,
                            sha256: a.sha256.clone(),
                        })
                        .collect(),
                })
                .collect(),
        };
        let stored =
            zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let mut z = zip::ZipWriter::new_stream(sink);
        z.start_file("manifest.json", stored).map_err(zip_error)?;
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Unexpected(e.to_string()))?;
        z.write_all(&json).map_err(io_error)?;
        for t in &done {
            z.start_file(format!("records/{}.json", dom::zip_segment(&t.system)), stored)
                .map_err(zip_error)?;
            z.write_all(b"[").map_err(io_error)?;
            let (mut after, mut any) = (0, false);
            loop {
                let batch = self.handle.block_on(service::export_chunks(
                    &self.store,
                    self.secrets.clone(),
                    t.id.clone(),
                    after,
                    EXPORT_BATCH,
                ))?;
                let n = batch.len() as i64;
                for (seq, data) in batch {
                    after = seq;
                    let inner = dom::array_inner(&data);
                    if inner.is_empty() {
                        continue;
                    }
                    if any {
                        z.write_all(b",").map_err(io_error)?;
                    }
                    z.write_all(inner).map_err(io_error)?;
                    any = true;
                }
                if n < EXPORT_BATCH {
                    break;
                }
            }
            z.write_all(b"]").map_err(io_error)?;
        }
        for a in done.iter().flat_map(|t| files_of(&t.id)) {
            let large = a.size > i64::from(u32::MAX) - 1024;
            z.start_file(path_of(a), stored.large_file(large))
                .map_err(zip_error)?;
            let (mut after, mut size) = (-1, 0i64);
            let mut hash = <sha2::Sha256 as sha2::Digest>::new();
            loop {
                let batch = self.handle.block_on(service::artifact_chunks(
                    &self.store,
                    self.secrets.clone(),
                    a.id.clone(),
                    after,
                    ARTIFACT_BATCH,
                ))?;
                let n = batch.len() as i64;
                for (idx, data) in batch {
                    after = idx;
                    size += data.len() as i64;
                    sha2::Digest::update(&mut hash, &data);
                    z.write_all(&data).map_err(io_error)?;
                }
                if n < ARTIFACT_BATCH {
                    break;
                }
            }
            if size != a.size || hex::encode(sha2::Digest::finalize(hash)) != a.sha256 {
                return Err(Error::Unexpected(format!(
                    "artifact {} does not match its size and checksum",
                    a.id
                )));
            }
        }
        z.finish().map_err(zip_error)?.flush().map_err(io_error)
    }
}

type RequestStream = Pin<Box<dyn Stream<Item = Result<pb::SubjectRequest, Status>> + Send>>;
type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::ExportChunk, Status>> + Send>>;

#[tonic::async_trait]
impl SubjectRequestService for SubjectRequests {
    async fn forward_to_controller(
        &self,
        req: Request<pb::ForwardToControllerRequest>,
    ) -> Result<Response<pb::SubjectRequest>, Status> {
        let (who, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let cmd = parse_forward(req.into_inner(), tenant)?;
        let view = service::submit(&self.state, Actor::of(&who), cmd, reveal(who.role)).await?;
        Ok(Response::new(request_pb(view)))
    }

    async fn submit_subject_request(
        &self,
        req: Request<pb::SubmitSubjectRequestRequest>,
    ) -> Result<Response<pb::SubjectRequest>, Status> {
        let (who, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let cmd = parse_submit(req.into_inner(), tenant)?;
        let view = service::submit(&self.state, Actor::of(&who), cmd, reveal(who.role)).await?;
        Ok(Response::new(request_pb(view)))
    }

    async fn get_subject_request(
        &self,
        req: Request<pb::GetSubjectRequestRequest>,
    ) -> Result<Response<pb::SubjectRequest>, Status> {
        let Scope { caller, tenant, .. } = self.state.scope(&req, "").await?;
        let id = req.into_inner().id;
        required_id(&id, "id")?;
        let view = service::get(&self.state, tenant, id, reveal(caller.role)).await?;
        Ok(Response::new(request_pb(view)))
    }

    async fn list_subject_requests(
        &self,
        req: Request<pb::ListSubjectRequestsRequest>,
    ) -> Result<Response<pb::ListSubjectRequestsResponse>, Status> {
        let Scope { caller, tenant, .. } = self.state.scope(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let filter = parse_filter(&r, tenant, self.state.store.clock().now())?;
        let (views, overdue) = service::list(&self.state, filter, page.clone(), reveal(caller.role)).await?;
        let next = page.next_token(views.len(), views.last().map(|v| v.record.seq));
        Ok(Response::new(pb::ListSubjectRequestsResponse {
            requests: views.into_iter().map(request_pb).collect(),
            next_page_token: next,
            overdue_count: overdue,
        }))
    }

    type WatchSubjectRequestStream = RequestStream;

    async fn watch_subject_request(
        &self,
        req: Request<pb::WatchSubjectRequestRequest>,
    ) -> Result<Response<Self::WatchSubjectRequestStream>, Status> {
        let Scope { caller, tenant, .. } = self.state.scope(&req, "").await?;
        let slot = self.state.streams.open(&caller)?;
        let id = req.into_inner().id;
        required_id(&id, "id")?;
        let reveal = reveal(caller.role);
        // Existence (and visibility) is checked before the stream opens.
        service::get(&self.state, tenant.clone(), id.clone(), reveal).await?;
        let (tx, rx) = mpsc::channel(16);
        let state = self.state.clone();
        let mut changes = state
            .store
            .follow(crate::db::notify::Topic::SubjectRequest(id.clone()));
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                match service::get(&state, tenant.clone(), id.clone(), reveal).await {
                    Ok(view) if view.record.version != seen => {
                        seen = view.record.version;
                        let open = view.record.status.is_open();
                        if tx.send(Ok(request_pb(view))).await.is_err() || !open {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = state.stopping.cancelled() => return,
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
        let (who, tenant) = self.state.scope(&req, "").await?.one()?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("id", &r.id, 64);
        v.max_len("reason", &r.reason, 1000);
        v.finish()?;
        let closing = Closing {
            reason: Some(r.reason.trim().to_owned()),
            ground: None,
        };
        let view = service::close(&self.state, Actor::of(&who), tenant, r.id, closing).await?;
        Ok(Response::new(request_pb(view)))
    }

    async fn reject_subject_request(
        &self,
        req: Request<pb::RejectSubjectRequestRequest>,
    ) -> Result<Response<pb::SubjectRequest>, Status> {
        let (who, tenant) = self.state.scope(&req, "").await?.one()?;
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
        let view = service::close(&self.state, Actor::of(&who), tenant, r.id, closing).await?;
        Ok(Response::new(request_pb(view)))
    }

    async fn extend_deadline(
        &self,
        req: Request<pb::ExtendDeadlineRequest>,
    ) -> Result<Response<pb::SubjectRequest>, Status> {
        let (who, tenant) = self.state.scope(&req, "").await?.one()?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("id", &r.id, 64);
        v.required_text("reason", &r.reason, 1000);
        v.finish()?;
        let reason = r.reason.trim().to_owned();
        let view = service::extend(&self.state, Actor::of(&who), tenant, r.id, reason).await?;
        Ok(Response::new(request_pb(view)))
    }

    type GetExportStream = ChunkStream;

    async fn get_export(
        &self,
        req: Request<pb::GetExportRequest>,
    ) -> Result<Response<Self::GetExportStream>, Status> {
        let (who, tenant) = self.state.scope(&req, "").await?.one()?;
        let slot = self.state.streams.open(&who)?;
        let r = req.into_inner();
        let id = r.id;
        required_id(&id, "id")?;
        let zip = match pb::ExportFormat::try_from(r.format) {
            Ok(pb::ExportFormat::Unspecified | pb::ExportFormat::Json) => false,
            Ok(pb::ExportFormat::Zip) => true,
            _ => {
                return Err(
                    Error::invalid("format", "must be EXPORT_FORMAT_JSON or EXPORT_FORMAT_ZIP").into(),
                );
            }
        };
        let (rec, tasks) =
            service::start_export(&self.state, Actor::of(&who), tenant, id, self.export_retention).await?;
        let (tx, rx) = mpsc::channel(8);
        if zip {
            let artifacts = service::artifacts(&self.state.store, rec.id.clone()).await?;
            let (store, secrets) = (self.state.store.clone(), self.state.secrets.clone());
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                let out = tx.clone();
                let sink = crate::subject_requests::export::PieceSink::new(ZIP_PIECE, move |data| {
                    out.blocking_send(Ok(pb::ExportChunk {
                        data,
                        system: String::new(),
                    }))
                    .is_ok()
                });
                let job = ZipJob {
                    handle,
                    store,
                    secrets,
                };
                if let Err(e) = job.write(&rec, &tasks, &artifacts, sink) {
                    let _ = tx.blocking_send(Err(e.into()));
                }
            });
            return Ok(Response::new(crate::rpc::streams::hold(
                slot,
                ReceiverStream::new(rx),
            )));
        }
        let (store, secrets) = (self.state.store.clone(), self.state.secrets.clone());
        tokio::spawn(async move {
            let send = |data: Vec<u8>, system: &str| {
                let (tx, system) = (tx.clone(), system.to_owned());
                async move { data.is_empty() || tx.send(Ok(pb::ExportChunk { data, system })).await.is_ok() }
            };
            let mut w = BundleWriter::new();
            if !send(w.head(&export_head(&rec)), "").await {
                return;
            }
            for task in tasks.iter().filter(|t| t.status == TaskStatus::Done) {
                let doc = DocumentHead {
                    system: &task.system,
                    request_id: &task.request_id,
                    request_type: task.request_type.as_str(),
                    categories: &task.categories,
                    records_affected: task.records_affected,
                    no_data_held: task.no_data_held,
                };
                if !send(w.document(&doc), &task.system).await {
                    return;
                }
                let mut after = 0;
                loop {
                    let batch =
                        service::export_chunks(&store, secrets.clone(), task.id.clone(), after, EXPORT_BATCH)
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
                        if !send(w.records(&data), &task.system).await {
                            return;
                        }
                    }
                    if n < EXPORT_BATCH {
                        break;
                    }
                }
                if !send(w.end_document(), &task.system).await {
                    return;
                }
            }
            let _ = send(w.finish(), "").await;
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
        let (_, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let mut v = Violations::new();
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
                &tenant,
                kind,
                &value.unwrap_or_default(),
            ),
        }))
    }

    async fn register_system(
        &self,
        req: Request<pb::RegisterSystemRequest>,
    ) -> Result<Response<pb::PlatformSystem>, Status> {
        let who = self.state.scope(&req, "").await?.caller;
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
        let sys = service::register_system(&self.state, Actor::of(&who), r.name, cats).await?;
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
        let scope = self.state.scope(&req, "").await?;
        let r = req.into_inner();
        if let Err(e) = dom::own_system(&scope.caller.sub, &r.system) {
            return Err(self.state.refuse(&scope, "other_system", e).await);
        }
        let spec = PullSpec::parse(r.max, r.lease_seconds)?;
        let who = scope.caller;
        let tasks = service::pull_tasks(
            &self.state,
            Actor::of(&who),
            who.sub.clone(),
            spec,
            self.limits.tasks,
        )
        .await?;
        Ok(Response::new(pb::PullTasksResponse {
            tasks: tasks.into_iter().map(task_pb).collect(),
        }))
    }

    async fn complete_task(
        &self,
        req: Request<pb::CompleteTaskRequest>,
    ) -> Result<Response<pb::Task>, Status> {
        let who = self.state.scope(&req, "").await?.caller;
        let r = req.into_inner();
        required_id(&r.task_id, "task_id")?;
        let records = i64::try_from(r.records_affected)
            .map_err(|_| Error::invalid("records_affected", "is out of range"))?;
        let mut v = Violations::new();
        v.check(
            r.no_data_held && records > 0,
            "no_data_held",
            "a system that holds no data acted on no records (records_affected must be 0)",
        );
        v.check(
            r.no_data_held && !r.export_data.is_empty(),
            "no_data_held",
            "a system that holds no data sends no export data",
        );
        v.finish()?;
        let done = Completion {
            records_affected: records,
            export_data: r.export_data,
            more: r.more,
            no_data_held: r.no_data_held,
        };
        let system = who.sub.clone();
        let task = service::complete_task(&self.state, Actor::of(&who), system, r.task_id, done).await?;
        Ok(Response::new(task_pb(task)))
    }

    async fn fail_task(&self, req: Request<pb::FailTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let who = self.state.scope(&req, "").await?.caller;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("task_id", &r.task_id, 64);
        v.required_text("error", &r.error, 2000);
        v.finish()?;
        let (system, error) = (who.sub.clone(), r.error.trim().to_owned());
        let policy = self.limits.tasks;
        let task = service::fail_task(&self.state, Actor::of(&who), system, r.task_id, error, policy).await?;
        Ok(Response::new(task_pb(task)))
    }

    async fn count_subject_requests(
        &self,
        req: Request<pb::CountSubjectRequestsRequest>,
    ) -> Result<Response<pb::CountSubjectRequestsResponse>, Status> {
        let tenant = self.state.scope(&req, &req.get_ref().tenant_id).await?.tenant;
        let (open, overdue, open_tasks) = service::counts(&self.state, tenant).await?;
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
        let (who, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let mut v = Violations::new();
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
        let sla = (r.sla_days > 0).then_some(r.sla_days);
        let s = service::set_settings(&self.state, Actor::of(&who), tenant.clone(), tz, sla).await?;
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
        let (_, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let s = service::settings(&self.state, tenant.clone()).await?;
        Ok(Response::new(pb::SubjectRequestSettings {
            tenant_id: tenant,
            time_zone: s.time_zone,
            sla_days: s.sla_days,
        }))
    }

    async fn ask_controller(
        &self,
        req: Request<pb::AskControllerRequest>,
    ) -> Result<Response<pb::ControllerQuestion>, Status> {
        let who = self.state.scope(&req, "").await?.caller;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("request_id", &r.request_id, 64);
        v.required_text("question", &r.question, dom::MAX_QUESTION_CHARS);
        v.finish()?;
        let question = r.question.trim().to_owned();
        let q = service::ask_controller(&self.state, Actor::of(&who), r.request_id, question).await?;
        Ok(Response::new(question_pb(q)))
    }

    async fn get_controller_question(
        &self,
        req: Request<pb::GetControllerQuestionRequest>,
    ) -> Result<Response<pb::ControllerQuestion>, Status> {
        let Scope { caller, tenant, .. } = self.state.scope(&req, "").await?;
        let id = req.into_inner().id;
        required_id(&id, "id")?;
        let reader = match (caller.role, tenant) {
            (Role::Tenant, Some(t)) => QuestionReader::Tenant(t),
            _ => QuestionReader::System(caller.sub.clone()),
        };
        let q = service::get_question(&self.state, reader, id).await?;
        Ok(Response::new(question_pb(q)))
    }

    async fn confirm_sub_processor_deletion(
        &self,
        req: Request<pb::ConfirmSubProcessorDeletionRequest>,
    ) -> Result<Response<pb::SubProcessorDeletion>, Status> {
        let (who, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.max_len("tenant_id", &tenant, 128);
        v.required_text("sub_processor_id", &r.sub_processor_id, 128);
        v.required_text("reference", &r.reference, 512);
        let confirmed_at = match from_ts(r.confirmed_at.as_ref(), "confirmed_at") {
            Ok(Some(at)) => Some(at),
            Ok(None) => {
                v.add("confirmed_at", "is required");
                None
            }
            Err(Error::Invalid(found)) => {
                found.into_iter().for_each(|f| v.add(f.field, f.description));
                None
            }
            Err(e) => return Err(e.into()),
        };
        v.finish()?;
        let at = confirmed_at.ok_or_else(|| Error::invalid("confirmed_at", "is required"))?;
        let (sp, reference) = (r.sub_processor_id, r.reference.trim().to_owned());
        let c =
            service::confirm_sub_processor_deletion(&self.state, Actor::of(&who), tenant, sp, at, reference)
                .await?;
        Ok(Response::new(pb::SubProcessorDeletion {
            tenant_id: c.tenant_id,
            sub_processor_id: c.sub_processor_id,
            confirmed_at: Some(ts(c.confirmed_at)),
            reference: c.reference,
            recorded_at: Some(ts(c.recorded_at)),
        }))
    }

    async fn get_deletion_certificate(
        &self,
        req: Request<pb::GetDeletionCertificateRequest>,
    ) -> Result<Response<pb::DeletionCertificate>, Status> {
        let (_, tenant) = self.state.scope(&req, &req.get_ref().tenant_id).await?.one()?;
        let c = service::deletion_certificate(&self.state, tenant).await?;
        Ok(Response::new(pb::DeletionCertificate {
            document: c.document,
            signature: c.signature,
            key_id: c.key_id,
        }))
    }

    async fn upload_artifact(
        &self,
        req: Request<tonic::Streaming<pb::UploadArtifactChunk>>,
    ) -> Result<Response<pb::Artifact>, Status> {
        use sha2::Digest;
        let who = self.state.scope(&req, "").await?.caller;
        let mut stream = req.into_inner();
        let idle = self.limits.upload_idle;
        let Some(first) = next_message(&mut stream, idle).await? else {
            return Err(Error::invalid("task_id", "is required (the stream was empty)").into());
        };
        let mut v = Violations::new();
        v.required_text("task_id", &first.task_id, 64);
        dom::check_file_name(&first.file_name, &mut v);
        v.max_len("content_type", &first.content_type, dom::MAX_CONTENT_TYPE_LEN);
        v.finish()?;
        let content_type = match first.content_type.trim() {
            "" => dom::DEFAULT_CONTENT_TYPE.to_owned(),
            t => t.to_owned(),
        };
        let (task_id, file_name) = (first.task_id.clone(), first.file_name.clone());
        let system = who.sub.clone();
        let actor = Actor::of(&who);
        let started = service::start_artifact(
            &self.state,
            actor.clone(),
            system.clone(),
            task_id.clone(),
            file_name.clone(),
            content_type,
        )
        .await?;
        let max = self.limits.max_artifact_bytes;
        let upload = async {
            let (mut hash, mut size, mut idx) = (sha2::Sha256::new(), 0u64, 0i64);
            let mut buf = Vec::with_capacity(ARTIFACT_CHUNK);
            let mut next = Some(first);
            loop {
                let m = match next.take() {
                    Some(m) => m,
                    None => match next_message(&mut stream, idle).await? {
                        Some(m) => m,
                        None => break,
                    },
                };
                let renamed = (!m.task_id.is_empty() && m.task_id != task_id)
                    || (!m.file_name.is_empty() && m.file_name != file_name);
                if renamed {
                    return Err(Error::invalid("task_id", "one stream uploads one file of one task").into());
                }
                size += m.data.len() as u64;
                if size > max {
                    return Err(Error::invalid("data", format!("the file exceeds {max} bytes")).into());
                }
                hash.update(&m.data);
                let mut data = &m.data[..];
                while !data.is_empty() {
                    let n = (ARTIFACT_CHUNK - buf.len()).min(data.len());
                    buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if buf.len() == ARTIFACT_CHUNK {
                        let piece = std::mem::replace(&mut buf, Vec::with_capacity(ARTIFACT_CHUNK));
                        service::append_artifact_chunk(
                            &self.state,
                            actor.clone(),
                            started.id.clone(),
                            idx,
                            piece,
                        )
                        .await?;
                        idx += 1;
                    }
                }
            }
            if !buf.is_empty() {
                service::append_artifact_chunk(&self.state, actor.clone(), started.id.clone(), idx, buf)
                    .await?;
            }
            let size = i64::try_from(size).map_err(|_| Error::invalid("data", "is too large"))?;
            let sha = hex::encode(hash.finalize());
            service::finish_artifact(
                &self.state,
                actor.clone(),
                system.clone(),
                started.id.clone(),
                size,
                sha,
            )
            .await
            .map_err(Status::from)
        };
        match upload.await {
            Ok(a) => Ok(Response::new(pb::Artifact {
                id: a.id,
                task_id: a.task_id,
                file_name: a.file_name,
                content_type: a.content_type,
                size: u64::try_from(a.size).unwrap_or(0),
                sha256: a.sha256,
            })),
            Err(e) => {
                // A refused or broken upload leaves nothing behind.
                if let Err(cleanup) = service::abort_artifact(&self.state, actor, started.id).await {
                    tracing::warn!(error = %cleanup, "an unfinished artifact upload could not be removed");
                }
                Err(e)
            }
        }
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

/// The next message of a streamed upload, or DEADLINE_EXCEEDED when it is
/// more than `idle` late: such a stream has no bound on the whole call
/// (see `rpc::deadline`), so a caller that stops sending cannot hold a
/// task's upload open forever.
async fn next_message<T>(
    stream: &mut tonic::Streaming<T>,
    idle: std::time::Duration,
) -> Result<Option<T>, Status> {
    match tokio::time::timeout(idle, stream.message()).await {
        Ok(m) => m,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "no upload message for {} s (--request-timeout-seconds)",
            idle.as_secs()
        ))),
    }
}
