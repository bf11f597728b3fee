//! `AuditService`: tenants read and export their own trail and prove their
//! events are in the log; compliance reads everything and verifies the log;
//! anyone may fetch the signed checkpoint, its key and consistency proofs.

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
        leaf_index: e.leaf_index.and_then(|i| u64::try_from(i).ok()),
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::AuditEvent, Status>> + Send>>;

#[tonic::async_trait]
impl AuditService for Audit {
    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let crate::rpc::Scope { tenant, .. } = self.state.scope(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let page = Page::parse(r.page_size, &r.page_token)?;
        let (after, size) = (page.after, page.size);
        let (events, cursor) = service::events(&self.state.store, tenant, after, size).await?;
        // Only a page full of sequenced events has a next page; the events
        // still waiting for their leaf come last, and a later page (or
        // call) lists them again once they have it.
        let sequenced = events.iter().filter(|e| e.leaf_index.is_some()).count();
        let next = page.next_token(sequenced, cursor);
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events.into_iter().map(to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn verify_audit_log(
        &self,
        req: Request<pb::VerifyAuditLogRequest>,
    ) -> Result<Response<pb::VerifyAuditLogResponse>, Status> {
        let trusted = req.into_inner().trusted_checkpoint;
        let r = self
            .state
            .audit_log
            .verify(&self.state.store, Some(trusted))
            .await?;
        Ok(Response::new(pb::VerifyAuditLogResponse {
            ok: r.ok,
            events_checked: r.events_checked,
            first_bad_event_id: r.first_bad_event_id.unwrap_or_default(),
            tree_size: r.tree_size,
            consistent_with_trusted: r.consistent_with_trusted,
            problem: r.problem.unwrap_or_default(),
        }))
    }

    async fn get_checkpoint(
        &self,
        _req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::Checkpoint>, Status> {
        let cp = self.state.audit_log.checkpoint(&self.state.store).await?;
        Ok(Response::new(pb::Checkpoint {
            text: cp.text,
            tree_size: cp.size,
            root_hash: cp.root,
        }))
    }

    async fn get_audit_log_key(
        &self,
        _req: Request<pb::GetAuditLogKeyRequest>,
    ) -> Result<Response<pb::AuditLogKey>, Status> {
        Ok(Response::new(pb::AuditLogKey {
            verifier_key: self.state.audit_log.verifier_key()?,
        }))
    }

    async fn get_inclusion_proof(
        &self,
        req: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let tenant = self.state.scope(&req, "").await?.tenant;
        let r = req.into_inner();
        let mut v = crate::validate::Violations::new();
        v.required_text("event_id", &r.event_id, 64);
        v.finish()?;
        let p = self
            .state
            .audit_log
            .inclusion(&self.state.store, r.event_id, tenant, r.tree_size)
            .await?;
        Ok(Response::new(pb::InclusionProof {
            leaf_index: p.leaf_index,
            tree_size: p.tree_size,
            leaf_hash: p.leaf_hash,
            hashes: p.hashes,
        }))
    }

    async fn get_consistency_proof(
        &self,
        req: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let r = req.into_inner();
        let hashes = self
            .state
            .audit_log
            .consistency(&self.state.store, r.from_size, r.to_size)
            .await?;
        Ok(Response::new(pb::ConsistencyProof { hashes }))
    }

    type ExportAuditLogStream = EventStream;

    async fn export_audit_log(
        &self,
        req: Request<pb::ExportAuditLogRequest>,
    ) -> Result<Response<Self::ExportAuditLogStream>, Status> {
        let crate::rpc::Scope {
            caller: who, tenant, ..
        } = self.state.scope(&req, &req.get_ref().tenant_id).await?;
        let slot = self.state.streams.open(&who)?;
        let (tx, rx) = mpsc::channel(64);
        let store = self.state.store.clone();
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                match service::events(&store, tenant.clone(), after, EXPORT_BATCH).await {
                    Ok((batch, cursor)) => {
                        let sequenced = batch.iter().filter(|e| e.leaf_index.is_some()).count() as i64;
                        for e in batch {
                            if tx.send(Ok(to_pb(e))).await.is_err() {
                                return;
                            }
                        }
                        // A batch short of sequenced events reached the end
                        // (and carried the unsequenced tail).
                        match cursor {
                            Some(c) if sequenced == EXPORT_BATCH => after = c,
                            _ => return,
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
