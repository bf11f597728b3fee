//! `InboxService`: the caller's own inbox (its tenant, or its platform
//! system), never anyone else's.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Role};
use crate::db::notify::Topic;
use crate::inbox::model::{MAX_REPLY_CHARS, PullSpec, Recipient, ReplyTarget, reply_target};
use crate::inbox::repo as inbox;
use crate::inbox::repo::Envelope;
use crate::proto::v1 as pb;
use crate::proto::v1::inbox_service_server::InboxService;
use crate::rpc::convert::ts;
use crate::rpc::{AppState, audit_entry, caller};
use crate::screening::case_answers;
use crate::validate::Violations;

/// Most ids one `Ack` takes.
pub const MAX_ACK_IDS: usize = 1000;
/// Envelopes a subscription reads per query.
const SUBSCRIBE_BATCH: i64 = 100;
/// How often a subscription looks for envelopes written by other replicas.
const SUBSCRIBE_POLL: Duration = Duration::from_secs(1);

/// The inbox service.
#[derive(Debug, Clone)]
pub struct Inbox {
    state: AppState,
}

impl Inbox {
    /// A service over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn recipient(c: &Caller) -> Result<Recipient, Status> {
    match (c.role, &c.tenant_id) {
        (Role::Tenant, Some(t)) => Ok(Recipient::Tenant(t.clone())),
        (Role::Platform, _) => Ok(Recipient::System(c.sub.clone())),
        _ => Err(Status::permission_denied(
            "only tenants and platform systems have inboxes",
        )),
    }
}

fn to_pb(e: Envelope) -> pb::Envelope {
    pb::Envelope {
        id: e.id,
        cursor: u64::try_from(e.cursor).unwrap_or(0),
        kind: e.kind,
        created_at: Some(ts(e.created_at)),
        payload: e.payload.into_bytes(),
        delivery_count: u32::try_from(e.delivery_count).unwrap_or(0),
        lease_expires_at: e.lease_until.map(ts),
    }
}

fn tenant_of(r: &Recipient) -> Option<&str> {
    match r {
        Recipient::Tenant(t) => Some(t),
        Recipient::System(_) => None,
    }
}

type EnvelopeStream = Pin<Box<dyn Stream<Item = Result<pb::Envelope, Status>> + Send>>;

#[tonic::async_trait]
impl InboxService for Inbox {
    type SubscribeStream = EnvelopeStream;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let who = caller(&req)?;
        let to = recipient(&who)?;
        let slot = self.state.streams.open(&who)?;
        let mut cursor = i64::try_from(req.get_ref().after_cursor)
            .map_err(|_| crate::error::Error::invalid("after_cursor", "is out of range"))?;
        let (tx, rx) = mpsc::channel(SUBSCRIBE_BATCH as usize);
        let store = self.state.store.clone();
        let mut changes = store.follow(Topic::Inbox(to.clone()));
        let stopping = self.state.stopping.clone();
        tokio::spawn(async move {
            loop {
                let to2 = to.clone();
                let batch = store
                    .read("inbox.subscribe", move |c, _| {
                        inbox::after(c, &to2, cursor, SUBSCRIBE_BATCH)
                    })
                    .await;
                match batch {
                    Ok(envs) if !envs.is_empty() => {
                        for e in envs {
                            cursor = e.cursor;
                            if tx.send(Ok(to_pb(e))).await.is_err() {
                                return;
                            }
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = stopping.cancelled() => return,
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(SUBSCRIBE_POLL) => {}
                }
            }
        });
        Ok(Response::new(crate::rpc::streams::hold(
            slot,
            ReceiverStream::new(rx),
        )))
    }

    async fn pull(&self, req: Request<pb::PullRequest>) -> Result<Response<pb::PullResponse>, Status> {
        let to = recipient(&caller(&req)?)?;
        let spec = PullSpec::parse(req.get_ref().max, req.get_ref().lease_seconds)?;
        let envs = self
            .state
            .store
            .write("inbox.pull", move |c, clock| {
                inbox::pull(c, clock.now(), &to, spec)
            })
            .await?;
        Ok(Response::new(pb::PullResponse {
            envelopes: envs.into_iter().map(to_pb).collect(),
        }))
    }

    async fn ack(&self, req: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        let who = caller(&req)?;
        let to = recipient(&who)?;
        let ids = req.into_inner().ids;
        let mut v = Violations::new();
        v.check(ids.is_empty(), "ids", "at least one id is required");
        v.check(
            ids.len() > MAX_ACK_IDS,
            "ids",
            format!("at most {MAX_ACK_IDS} ids per call"),
        );
        for (i, id) in ids.iter().enumerate() {
            v.check(
                id.is_empty() || id.len() > 64,
                format!("ids[{i}]"),
                "is not an envelope id",
            );
        }
        v.finish()?;
        let entry = audit_entry(
            &who,
            tenant_of(&to),
            "inbox.ack",
            &format!("{} envelopes", ids.len()),
            "ok",
        );
        let n = self
            .state
            .store
            .write("inbox.ack", move |c, clock| {
                let now = clock.now();
                let n = inbox::ack(c, now, &to, &ids)?;
                let mut entry = entry;
                entry.detail = serde_json::json!({ "ids": ids }).to_string();
                crate::audit::repo::append(c, now, entry)?;
                Ok(n)
            })
            .await?;
        Ok(Response::new(pb::AckResponse {
            acknowledged: u32::try_from(n).unwrap_or(u32::MAX),
        }))
    }

    async fn reply(&self, req: Request<pb::ReplyRequest>) -> Result<Response<pb::ReplyResponse>, Status> {
        let who = caller(&req)?;
        let to = recipient(&who)?;
        let r = req.into_inner();
        let mut v = Violations::new();
        v.required_text("id", &r.id, 64);
        v.required_text("text", &r.text, MAX_REPLY_CHARS);
        v.finish()?;
        let entry = audit_entry(&who, tenant_of(&to), "inbox.reply", &r.id, "ok");
        let secrets = self.state.secrets.clone();
        let target = self
            .state
            .store
            .write("inbox.reply", move |c, clock| {
                let now = clock.now();
                let envelope = inbox::get(c, &to, &r.id)?;
                let target = match reply_target(&envelope.kind, &envelope.payload)? {
                    ReplyTarget::ScreeningCase(case) => {
                        case_answers::answer(
                            c,
                            now,
                            entry,
                            &secrets.ring,
                            &case,
                            tenant_of(&to),
                            r.text.trim(),
                        )?;
                        format!("case/{case}")
                    }
                };
                inbox::ack(c, now, &to, std::slice::from_ref(&r.id))?;
                Ok(target)
            })
            .await?;
        Ok(Response::new(pb::ReplyResponse { target }))
    }
}
