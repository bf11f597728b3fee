//! `InboxService`: the caller's own inbox (its tenant, or its platform
//! system), never anyone else's.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::Caller;
use crate::db::Store;
use crate::db::notify::{Follower, Topic};
use crate::db::pipeline::Actor;
use crate::error::Error;
use crate::inbox::model::{AckIds, PullSpec, Recipient, Reply, inbox_of, parse_after_cursor};
use crate::inbox::repo::Envelope;
use crate::inbox::service;
use crate::periodic::CancellationToken;
use crate::proto::v1 as pb;
use crate::proto::v1::inbox_service_server::InboxService;
use crate::rpc::convert::ts;
use crate::rpc::{AppState, caller};

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

/// The caller's own inbox; other roles have none.
fn recipient(c: &Caller) -> Result<Recipient, Error> {
    inbox_of(c.role, &c.sub, c.tenant_id.as_deref())
}

fn to_pb(e: Envelope) -> pb::Envelope {
    pb::Envelope {
        id: e.id,
        cursor: u64::try_from(e.cursor).unwrap_or(0),
        kind: e.kind,
        created_at: Some(ts(e.created_at)),
        payload: e.payload,
        delivery_count: u32::try_from(e.delivery_count).unwrap_or(0),
        lease_expires_at: e.lease_until.map(ts),
    }
}

/// What a subscription's background task follows: `to`'s inbox, woken by
/// this replica's writes and polled for other replicas', until the client
/// goes away or the server stops.
struct Feed {
    store: Store,
    to: Recipient,
    changes: Follower,
    stopping: CancellationToken,
}

impl Feed {
    /// Sends every unacknowledged envelope after `cursor` to `tx`, in order,
    /// then waits for more; a read error ends the stream with its status.
    async fn run(mut self, mut cursor: i64, tx: mpsc::Sender<Result<pb::Envelope, Status>>) {
        let (store, to) = (&self.store, &self.to);
        loop {
            let batch = service::after(store, to, cursor, SUBSCRIBE_BATCH).await;
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
                _ = self.stopping.cancelled() => return,
                _ = self.changes.changed() => {}
                _ = tokio::time::sleep(SUBSCRIBE_POLL) => {}
            }
        }
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
        let cursor = parse_after_cursor(req.get_ref().after_cursor)?;
        let (tx, rx) = mpsc::channel(SUBSCRIBE_BATCH as usize);
        let changes = self.state.store.follow(Topic::Inbox(to.clone()));
        let feed = Feed {
            store: self.state.store.clone(),
            to,
            changes,
            stopping: self.state.stopping.clone(),
        };
        tokio::spawn(feed.run(cursor, tx));
        Ok(Response::new(crate::rpc::streams::hold(
            slot,
            ReceiverStream::new(rx),
        )))
    }

    async fn pull(&self, req: Request<pb::PullRequest>) -> Result<Response<pb::PullResponse>, Status> {
        let who = caller(&req)?;
        let to = recipient(&who)?;
        let spec = PullSpec::parse(req.get_ref().max, req.get_ref().lease_seconds)?;
        let envs = service::pull(&self.state, Actor::of(&who), to, spec).await?;
        Ok(Response::new(pb::PullResponse {
            envelopes: envs.into_iter().map(to_pb).collect(),
        }))
    }

    async fn ack(&self, req: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        let who = caller(&req)?;
        let to = recipient(&who)?;
        let ids = AckIds::parse(req.into_inner().ids)?;
        let n = service::ack(&self.state, Actor::of(&who), to, ids).await?;
        Ok(Response::new(pb::AckResponse {
            acknowledged: u32::try_from(n).unwrap_or(u32::MAX),
        }))
    }

    async fn reply(&self, req: Request<pb::ReplyRequest>) -> Result<Response<pb::ReplyResponse>, Status> {
        let who = caller(&req)?;
        let to = recipient(&who)?;
        let r = req.into_inner();
        let cmd = Reply::parse(r.id, r.text)?;
        let target = service::reply(&self.state, Actor::of(&who), to, cmd).await?;
        Ok(Response::new(pb::ReplyResponse { target }))
    }
}
