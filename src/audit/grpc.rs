//! `AuditService`: tenants read and export their own trail; compliance reads
//! everything and verifies the chain.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::audit::model::AuditEvent;
use crate::audit::service;
use crate::proto::v1 as pb;
use crate::proto::v1::audit_service_server::AuditService;
use crate::rpc::AppState;
use crate::rpc::convert::ts;
use crate::rpc::page::Page;

/// Events per query while exporting.
const EXPORT_BATCH: i64 = 500;

/// The audit service.
#[derive(Debug, Clone)]
pub struct Audit {
    state: AppState,
}

impl Audit {
    /// A service over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn to_pb(e: AuditEvent) -> pb::AuditEvent {
    pb::AuditEvent {
        id: e.id,
        seq: u64::try_from(e.seq).unwrap_or(0),
        at: Some(ts(e.at)),
        actor: e.entry.actor,
        role: e.entry.role,
        tenant_id: e.entry.tenant_id.unwrap_or_default(),
        action: e.entry.action,
        target: e.entry.target,
        outcome: e.entry.outcome,
        trace_id: e.entry.trace_id,
        digest: e.digest,
        prev_digest: e.prev_digest,
        detail: e.entry.detail,
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::AuditEvent, Status>> + Send>>;

#[tonic::async_trait]
impl AuditService for Audit {
    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let crate::rpc::Scope { caller: _, tenant } =
            self.state.scope(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let (after, size) = (page.after, page.size);
        let events = service::events(&self.state.store, tenant, after, size).await?;
        let next = page.next_token(events.len(), events.last().map(|e| e.seq));
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events.into_iter().map(to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn verify_audit_log(
        &self,
        _req: Request<pb::VerifyAuditLogRequest>,
    ) -> Result<Response<pb::VerifyAuditLogResponse>, Status> {
        let (checked, bad) = service::verify(&self.state.store).await?;
        Ok(Response::new(pb::VerifyAuditLogResponse {
            ok: bad.is_none(),
            events_checked: checked,
            first_bad_event_id: bad.unwrap_or_default(),
        }))
    }

    type ExportAuditLogStream = EventStream;

    async fn export_audit_log(
        &self,
        req: Request<pb::ExportAuditLogRequest>,
    ) -> Result<Response<Self::ExportAuditLogStream>, Status> {
        let crate::rpc::Scope { caller: who, tenant } =
            self.state.scope(&req, &req.get_ref().tenant_id).await?;
        let slot = self.state.streams.open(&who)?;
        let (tx, rx) = mpsc::channel(64);
        let store = self.state.store.clone();
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                match service::events(&store, tenant.clone(), after, EXPORT_BATCH).await {
                    Ok(batch) => {
                        let n = batch.len() as i64;
                        for e in batch {
                            after = e.seq;
                            if tx.send(Ok(to_pb(e))).await.is_err() {
                                return;
                            }
                        }
                        if n < EXPORT_BATCH {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(crate::rpc::streams::hold(
            slot,
            ReceiverStream::new(rx),
        )))
    }
}
